//! The CRM's AI conversations (#17): the executor's side of the [`AiTurn`] workflow and the
//! intake's hooks (a contact's message starts a turn, an operator's message hands the
//! conversation over or, as "+", sends the pending suggestion).
//!
//! Every change to a conversation's AI goes through [`Shared::update_ai`]: read the stored
//! record, apply a pure change (`jobbot_core::ai::AiRecord`), write it back if the version is
//! still the one read, else read again and reapply. The record keeps each turn's decision and
//! the turns already sent, so a step replayed after a crash asks the model nothing again and
//! counts nothing twice; every message goes through the outbox under a key per turn
//! (`ai_reply:<conversation>:<turn>`), so a reply goes out once whichever way it is sent.
//!
//! Nothing here logs a prompt, a reply or a key: failures are logged by their typed kinds.

use std::sync::Arc;

use jobbot_ai::{LlmClient, TurnInput, run_turn};
use jobbot_core::ai::knowledge::KnowledgeIndex;
use jobbot_core::ai::{
    AiPolicy, AiRecord, AiSettings, AiStore, ContactDecision, StoredAi, TurnDecision, TurnResult,
};
use jobbot_core::notification::fit_message;
use jobbot_core::store::{Conversation, ConversationId, NewWorkflow};
use jobbot_core::telegram::{IncomingMessage, MessageContent};
use jobbot_core::workflow::{AiOutcome, AiTurn, Event, Workflow};
use rand::Rng;

use super::{Crm, CrmError, Shared, lock, topic_post};
use crate::supervisor::ShutdownSignal;

/// What the CRM needs for AI conversations.
pub struct AiParts {
    pub store: Arc<dyn AiStore>,
    pub client: Arc<LlmClient>,
    /// The channels' knowledge files, searched for facts (none: no facts).
    pub knowledge: Option<Arc<dyn KnowledgeIndex>>,
    /// The directory `ai_config.knowledge_files` are relative to (the data directory): with an
    /// index, [`super::Crm::run_knowledge`] indexes them at start and on every change.
    pub knowledge_root: Option<std::path::PathBuf>,
}

/// What an operator's "+" in the topic (or the web's send button) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuggestionSent {
    /// Queued to the contact by the conversation's agent.
    Queued,
    /// No suggestion is pending.
    NonePending,
    NoConversation,
}

/// The text an operator writes in the topic to send the pending suggestion.
pub const SEND_SUGGESTION: &str = "+";

impl Shared {
    fn ai_policy(&self, channel_id: &str) -> (AiSettings, AiPolicy) {
        let settings = self
            .config()
            .channel(channel_id)
            .filter(|channel| channel.enabled)
            .map(|channel| channel.ai.clone())
            .unwrap_or_else(|| AiSettings {
                enabled: false,
                ..AiSettings::default()
            });
        let policy = AiPolicy::from_settings(&settings);
        (settings, policy)
    }

    /// Applies `change` to the conversation's AI record and stores it (compare-and-set, read
    /// again on a conflict). A change that leaves the record as it was writes nothing.
    pub(super) async fn update_ai<R>(
        &self,
        store: &dyn AiStore,
        conversation: &Conversation,
        mut change: impl FnMut(&mut AiRecord) -> R,
    ) -> Result<(R, AiRecord), CrmError> {
        loop {
            let stored = store.ai_record(conversation.id).await?;
            let (version, before) = stored
                .map(
                    |StoredAi {
                         version, record, ..
                     }| (version, record),
                )
                .unwrap_or_default();
            let mut record = before.clone();
            let result = change(&mut record);
            if record == before {
                return Ok((result, record));
            }
            if store
                .save_ai_record(
                    conversation.id,
                    &conversation.channel_id,
                    version,
                    &record,
                    self.now(),
                )
                .await?
                .is_some()
            {
                return Ok((result, record));
            }
        }
    }

    /// Starts (idempotently, by key) the workflow of the turn in flight, if any.
    async fn ensure_turn(&self, id: ConversationId, record: &AiRecord) -> Result<(), CrmError> {
        let Some(turn) = record.state.in_flight else {
            return Ok(());
        };
        let (workflow, _) = self
            .store
            .start_workflow(&NewWorkflow {
                key: AiTurn::key(id, turn.number),
                state: Workflow::AiTurn(AiTurn::new(id, turn.number)),
                created_at: self.now(),
            })
            .await?;
        let _ = self.wake.send(workflow);
        Ok(())
    }

    /// A contact's message reached the topic: it joins the history the model sees and, when the
    /// channel's mode and the conversation's state allow, starts a turn.
    pub(super) async fn ai_on_contact(
        &self,
        id: ConversationId,
        incoming: &IncomingMessage,
    ) -> Result<(), CrmError> {
        let Some(ai) = &self.ai else {
            return Ok(());
        };
        if incoming.text.trim().is_empty() {
            return Ok(());
        }
        let Some(conversation) = self.store.conversation(id).await? else {
            return Ok(());
        };
        let (_, policy) = self.ai_policy(&conversation.channel_id);
        let now = self.now();
        let (decision, record) = self
            .update_ai(ai.store.as_ref(), &conversation, |record| {
                record.take_contact_message(incoming.message_id, &incoming.text, &policy, now)
            })
            .await?;
        if decision == Some(ContactDecision::OptedOut)
            && let Some(topic) = conversation.topic
        {
            tracing::info!(target: "crm", conversation = id.0, "the contact opted out; AI has ended for them");
            self.engine
                .enqueue(topic_post(
                    &conversation,
                    topic,
                    MessageContent::plain(
                        "⛔ Контакт попросил ему не писать: ИИ для этого контакта выключен."
                            .to_owned(),
                    ),
                    format!("ai_opt_out:{}", id.0),
                    now,
                ))
                .await?;
        }
        self.ensure_turn(id, &record).await
    }

    /// The [`AiTurn`]'s generate step: the stored decision of this turn, or the model's answer
    /// applied to the record now.
    pub(super) async fn ai_generate(
        &self,
        id: ConversationId,
        turn: u64,
    ) -> Result<Event, CrmError> {
        let nothing = Ok(Event::AiDecided(AiOutcome::Nothing));
        let Some(ai) = &self.ai else {
            return nothing;
        };
        let Some(conversation) = self.store.conversation(id).await? else {
            return nothing;
        };
        let snapshot = ai
            .store
            .ai_record(id)
            .await?
            .map(|stored| stored.record)
            .unwrap_or_default();
        let decided = snapshot.decided.as_ref().filter(|d| d.turn == turn);
        let in_flight = snapshot.state.in_flight.is_some_and(|t| t.number == turn);
        if decided.is_none() && !in_flight {
            return nothing;
        }
        let (settings, policy) = self.ai_policy(&conversation.channel_id);
        let outcome = if decided.is_none() && settings.enabled {
            let facts = match (&ai.knowledge, snapshot.history.last()) {
                (Some(index), Some(last)) => {
                    jobbot_ai::knowledge::facts_for(
                        index.as_ref(),
                        &conversation.channel_id,
                        &last.text,
                    )
                    .await?
                }
                _ => Vec::new(),
            };
            let config = self.config();
            Some(
                run_turn(
                    &ai.client,
                    TurnInput {
                        settings: &settings,
                        providers: &config.llm_providers,
                        state: &snapshot.state,
                        turn,
                        history: &snapshot.history,
                        facts: &facts,
                    },
                )
                .await,
            )
        } else {
            None
        };
        if let Some(outcome) = &outcome {
            for error in [outcome.analysis_call.as_ref(), Some(&outcome.reply)]
                .into_iter()
                .flatten()
                .filter_map(|call| call.as_ref().err())
            {
                for failure in &error.failures {
                    tracing::warn!(target: "crm", conversation = id.0, provider = %failure.provider, model = %failure.model, error = failure.error.kind(), "an AI call failed");
                }
            }
        }
        let now = self.now();
        let (decision, record) = self
            .update_ai(ai.store.as_ref(), &conversation, |record| {
                let result = match &outcome {
                    Some(outcome) => {
                        let usage = outcome.usage();
                        TurnResult {
                            analysis: outcome.analysis.as_ref().map(|result| result.as_ref()),
                            reply: outcome.reply.as_ref().ok().map(|c| c.text.as_str()),
                            prompt_tokens: usage.prompt_tokens,
                            completion_tokens: usage.completion_tokens,
                            failed_calls: [outcome.analysis_call.as_ref(), Some(&outcome.reply)]
                                .into_iter()
                                .flatten()
                                .filter(|call| call.is_err())
                                .count() as u64,
                        }
                    }
                    // The channel's AI went off (or the decision is stored): nothing is asked.
                    None => TurnResult {
                        analysis: None,
                        reply: None,
                        prompt_tokens: 0,
                        completion_tokens: 0,
                        failed_calls: 0,
                    },
                };
                record.decide(turn, result, &policy, now).0
            })
            .await?;
        // A message that arrived meanwhile started the next turn.
        self.ensure_turn(id, &record).await?;
        tracing::info!(target: "crm", conversation = id.0, turn, decision = ?decision, "AI turn decided");
        Ok(Event::AiDecided(match decision {
            TurnDecision::Suggest { text } => AiOutcome::Suggest { text },
            TurnDecision::Send { text } => AiOutcome::Send { text },
            TurnDecision::Discard { .. } | TurnDecision::Failed => AiOutcome::Nothing,
        }))
    }

    /// Queues an `auto` reply to the contact by the conversation's agent after the channel's
    /// AI reply delay (typing shown before it).
    pub(super) async fn ai_queue_reply(
        &self,
        state: &Workflow,
        id: ConversationId,
        turn: u64,
    ) -> Result<Event, CrmError> {
        let (Workflow::AiTurn(workflow), Some(conversation)) =
            (state, self.store.conversation(id).await?)
        else {
            return Ok(Event::NoConversation);
        };
        let text = workflow.text().unwrap_or_default().to_owned();
        match self.queue_ai_message(&conversation, turn, text).await? {
            Some(outbox) => Ok(Event::Queued { outbox }),
            None => Ok(Event::NoConversation),
        }
    }

    async fn queue_ai_message(
        &self,
        conversation: &Conversation,
        turn: u64,
        text: String,
    ) -> Result<Option<jobbot_core::store::OutboxId>, CrmError> {
        let (settings, _) = self.ai_policy(&conversation.channel_id);
        let delay = settings.reply_delay;
        let seconds = lock(&self.rng).random_range(delay.min_seconds..=delay.max_seconds);
        let now = self.now();
        self.enqueue_to_contact(
            conversation,
            MessageContent::plain(text),
            AiTurn::reply_key(conversation.id, turn),
            Some(now.plus_seconds(u64::from(seconds))),
        )
        .await
    }

    /// The reply of `turn` reached the contact.
    pub(super) async fn ai_record_sent(
        &self,
        state: &Workflow,
        id: ConversationId,
        turn: u64,
    ) -> Result<Event, CrmError> {
        let (Some(ai), Workflow::AiTurn(workflow), Some(conversation)) =
            (&self.ai, state, self.store.conversation(id).await?)
        else {
            return Ok(Event::Recorded);
        };
        let text = workflow.text().unwrap_or_default();
        let now = self.now();
        self.update_ai(ai.store.as_ref(), &conversation, |record| {
            record.reply_sent(turn, text, now)
        })
        .await?;
        Ok(Event::Recorded)
    }

    /// The suggestion's post reached the topic: remember its message.
    pub(super) async fn ai_suggestion_posted(
        &self,
        conversation: &Conversation,
        turn: u64,
        message_id: i32,
    ) -> Result<(), CrmError> {
        if let Some(ai) = &self.ai {
            self.update_ai(ai.store.as_ref(), conversation, |record| {
                record.suggestion_posted(turn, message_id)
            })
            .await?;
        }
        Ok(())
    }

    /// An operator wrote in the conversation's topic. "+" sends the pending suggestion (and is
    /// not relayed); anything else hands the conversation over to the operator. Returns whether
    /// the message was consumed here.
    pub(super) async fn ai_on_operator(
        &self,
        conversation: &Conversation,
        text: &str,
    ) -> Result<bool, CrmError> {
        let Some(ai) = &self.ai else {
            return Ok(false);
        };
        if text.trim() == SEND_SUGGESTION {
            let sent = self.send_suggestion(conversation).await?;
            if sent == SuggestionSent::NonePending {
                tracing::info!(target: "crm", conversation = conversation.id.0, "'+' in the topic, but no AI suggestion is pending");
            }
            return Ok(true);
        }
        let now = self.now();
        self.update_ai(ai.store.as_ref(), conversation, |record| {
            record.operator_wrote(text, now)
        })
        .await?;
        Ok(false)
    }

    /// Sends the pending suggestion to the contact by the conversation's agent (the same key as
    /// an `auto` reply of its turn: once, however often it is asked).
    pub(super) async fn send_suggestion(
        &self,
        conversation: &Conversation,
    ) -> Result<SuggestionSent, CrmError> {
        let Some(ai) = &self.ai else {
            return Ok(SuggestionSent::NonePending);
        };
        let Some(suggestion) = ai
            .store
            .ai_record(conversation.id)
            .await?
            .and_then(|stored| stored.record.suggestion)
        else {
            return Ok(SuggestionSent::NonePending);
        };
        if self
            .queue_ai_message(conversation, suggestion.turn, suggestion.text.clone())
            .await?
            .is_none()
        {
            return Ok(SuggestionSent::NoConversation);
        }
        let now = self.now();
        self.update_ai(ai.store.as_ref(), conversation, |record| {
            record.reply_sent(suggestion.turn, &suggestion.text, now)
        })
        .await?;
        Ok(SuggestionSent::Queued)
    }

    /// Gives a handed-over (or opted-out) conversation back to the AI.
    pub(super) async fn release_ai(&self, conversation: &Conversation) -> Result<bool, CrmError> {
        let Some(ai) = &self.ai else {
            return Ok(false);
        };
        Ok(self
            .update_ai(ai.store.as_ref(), conversation, |record| {
                record.state.release()
            })
            .await?
            .0)
    }
}

/// A post of the AI into the topic: its key and text.
pub(super) fn ai_post(
    id: ConversationId,
    workflow: &AiTurn,
    suggestion: bool,
) -> (String, MessageContent) {
    let text = workflow.text().unwrap_or_default();
    if suggestion {
        (
            format!("ai_suggestion:{}:{}", id.0, workflow.turn),
            MessageContent::plain(fit_message(&format!(
                "💡 Подсказка ИИ — контакту не отправлена. Ответьте «{SEND_SUGGESTION}» в теме, \
                 чтобы отправить её:\n\n{text}"
            ))),
        )
    } else {
        (
            format!("ai_mirror:{}:{}", id.0, workflow.turn),
            MessageContent::plain(fit_message(&format!("🤖 ИИ ответил:\n\n{text}"))),
        )
    }
}

impl Crm {
    /// The index of the channels' knowledge files, when the CRM has one.
    pub fn ai_knowledge(&self) -> Option<Arc<dyn KnowledgeIndex>> {
        self.shared.ai.as_ref()?.knowledge.clone()
    }

    /// Keeps each AI channel's knowledge index in line with its `ai_config.knowledge_files`: at
    /// start and after every configuration change, until `shutdown`. A file that cannot be read
    /// is reported and skipped (what was indexed from it stays); without an index or a directory
    /// there is nothing to do.
    pub async fn run_knowledge(&self, mut shutdown: ShutdownSignal) -> Result<(), CrmError> {
        let shared = &self.shared;
        let Some((index, root)) = shared.ai.as_ref().and_then(|ai| {
            Some((
                Arc::clone(ai.knowledge.as_ref()?),
                ai.knowledge_root.clone()?,
            ))
        }) else {
            shutdown.requested().await;
            return Ok(());
        };
        let mut config = shared.config.clone();
        loop {
            let current = config.borrow_and_update().clone();
            for channel in current
                .enabled_channels()
                .filter(|channel| channel.ai.enabled)
            {
                // A store error (another node indexing the same file at this moment) leaves
                // that channel for the next change or start; the others go on.
                match jobbot_ai::knowledge::sync_knowledge(
                    index.as_ref(),
                    &root,
                    &channel.id,
                    &channel.ai.knowledge_files,
                    shared.now(),
                )
                .await
                {
                    Ok(report) if !report.indexed.is_empty() || !report.removed.is_empty() => {
                        tracing::info!(target: "ai", channel = %channel.id, indexed = ?report.indexed, removed = ?report.removed, "knowledge files indexed");
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(target: "ai", channel = %channel.id, %error, "knowledge files not indexed");
                    }
                }
            }
            tokio::select! {
                _ = shutdown.requested() => return Ok(()),
                changed = config.changed() => {
                    if changed.is_err() {
                        shutdown.requested().await;
                        return Ok(());
                    }
                }
            }
        }
    }
}
