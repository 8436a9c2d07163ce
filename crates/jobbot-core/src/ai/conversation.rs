//! One conversation's AI state and the decisions on it, as functions of `(state, event, now)`.
//!
//! The state is a plain serialisable value: the engine stores it with the conversation and
//! applies each event in one transaction with the messages it records, so a restart resumes where
//! the process stopped. The rules, each a flaw of the original fixed:
//! - An operator writing in the topic hands the conversation over: the AI stops for it until an
//!   operator releases it (the original kept answering beside the human).
//! - A contact's opt-out ("не пишите", "stop", …) ends AI for that contact, whatever the mode.
//! - At most one reply in flight: a message that arrives meanwhile marks the running turn as
//!   superseded; its answer is dropped when it comes back and one new turn covers every message.
//!   A turn left running by a process that died is abandoned after [`AiPolicy::turn_timeout`].
//! - At most [`AiPolicy::max_replies_per_day`] replies per conversation per UTC day.
//! - A bad analysis keeps the phase; a declined call is never offered again.

use serde::{Deserialize, Serialize};

use super::analysis::Analysis;
use super::safety::{OptOutPhrases, bound_reply, mentions_call};
use super::settings::{AiMode, AiSettings};
use crate::store::UnixMillis;

/// The stage of a conversation, each with its own prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Discovery,
    Engagement,
    CallReady,
    CallPending,
    CallDeclined,
}

impl Phase {
    pub const ALL: [Self; 5] = [
        Self::Discovery,
        Self::Engagement,
        Self::CallReady,
        Self::CallPending,
        Self::CallDeclined,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Discovery => "discovery",
            Self::Engagement => "engagement",
            Self::CallReady => "call_ready",
            Self::CallPending => "call_pending",
            Self::CallDeclined => "call_declined",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|phase| phase.as_str() == text)
    }

    /// As models write it: any case, `-` or spaces for `_`.
    pub fn parse_loose(text: &str) -> Option<Self> {
        let normalised: String = text
            .trim()
            .chars()
            .map(|c| match c {
                '-' | ' ' => '_',
                c => c.to_ascii_lowercase(),
            })
            .collect();
        Self::parse(&normalised)
    }
}

/// Who is answering the contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum AiControl {
    /// The AI, in the channel's mode.
    Active,
    /// An operator wrote in the topic; the AI is silent until released.
    HandedOver { at: UnixMillis },
    /// The contact asked not to be written to.
    OptedOut { at: UnixMillis },
}

/// One generation of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub number: u64,
    pub started_at: UnixMillis,
}

/// Replies produced on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DailyCount {
    /// Days since the Unix epoch.
    pub day: i64,
    pub count: u32,
}

/// One conversation's AI state (the original's `ConversationState`, plus the hand-over, the
/// opt-out, the turn in flight and the daily count).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiConversation {
    pub phase: Phase,
    /// Contact messages since the phase last changed.
    pub messages_in_phase: u32,
    /// Contact messages in all.
    pub total_messages: u32,
    pub call_offered: bool,
    pub call_declined: bool,
    pub call_scheduled: bool,
    pub control: AiControl,
    pub in_flight: Option<Turn>,
    /// A contact message arrived while `in_flight` was generating.
    #[serde(default)]
    pub superseded: bool,
    #[serde(default)]
    pub replies: DailyCount,
    #[serde(default)]
    pub turns_started: u64,
    pub last_interaction: Option<UnixMillis>,
}

impl AiConversation {
    pub fn new() -> Self {
        Self {
            phase: Phase::Discovery,
            messages_in_phase: 0,
            total_messages: 0,
            call_offered: false,
            call_declined: false,
            call_scheduled: false,
            control: AiControl::Active,
            in_flight: None,
            superseded: false,
            replies: DailyCount::default(),
            turns_started: 0,
            last_interaction: None,
        }
    }
}

impl Default for AiConversation {
    fn default() -> Self {
        Self::new()
    }
}

/// What a channel's settings make of the events.
#[derive(Debug, Clone, PartialEq)]
pub struct AiPolicy {
    pub enabled: bool,
    pub mode: AiMode,
    pub max_replies_per_day: u32,
    pub opt_out: OptOutPhrases,
    /// An analysis less sure than this keeps the phase.
    pub min_confidence: f32,
    /// A turn running longer than this was lost (a process died mid-way) and no longer blocks.
    pub turn_timeout_ms: i64,
}

impl AiPolicy {
    pub const DEFAULT_MIN_CONFIDENCE: f32 = 0.5;
    /// Longer than any provider chain can take (timeouts × retries × providers).
    pub const DEFAULT_TURN_TIMEOUT_MS: i64 = 15 * 60 * 1000;

    pub fn from_settings(settings: &AiSettings) -> Self {
        Self {
            enabled: settings.enabled,
            mode: settings.mode,
            max_replies_per_day: settings.max_replies_per_day,
            opt_out: OptOutPhrases::with_extra(&settings.opt_out_phrases),
            min_confidence: Self::DEFAULT_MIN_CONFIDENCE,
            turn_timeout_ms: Self::DEFAULT_TURN_TIMEOUT_MS,
        }
    }

    /// The longest a turn can run before it is considered lost.
    pub fn turn_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.turn_timeout_ms.max(0) as u64)
    }
}

/// What to do about a contact's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactDecision {
    /// Start this turn: analyse (when on), then generate a reply.
    Generate(Turn),
    /// The message is an opt-out: AI has ended for this contact (say so in the topic).
    OptedOut,
    Skip(SkipReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// AI is off for the channel.
    Disabled,
    /// The channel records only.
    Manual,
    HandedOver,
    OptedOut,
    DailyCap,
    /// A reply is being generated; it is superseded and a new turn follows it.
    InFlight,
}

/// What to do with a generated reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyDecision {
    /// Send it (`auto`) or post it as a suggestion (`suggest`): the text is trimmed and bounded
    /// to a Telegram message.
    Deliver {
        text: String,
        mode: AiMode,
    },
    Discard(DiscardReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscardReason {
    /// Not the turn in flight (abandoned and replaced, or answered twice).
    Stale,
    /// The contact wrote again meanwhile; a new turn answers everything.
    Superseded,
    HandedOver,
    OptedOut,
    /// The channel's AI was switched off or to `manual` meanwhile.
    Disabled,
    DailyCap,
    Empty,
}

impl AiConversation {
    /// A message from the contact.
    pub fn on_contact_message(
        &mut self,
        text: &str,
        policy: &AiPolicy,
        now: UnixMillis,
    ) -> ContactDecision {
        self.total_messages = self.total_messages.saturating_add(1);
        self.messages_in_phase = self.messages_in_phase.saturating_add(1);
        self.last_interaction = Some(now);
        if policy.opt_out.matches(text) {
            let first_time = !matches!(self.control, AiControl::OptedOut { .. });
            self.control = AiControl::OptedOut { at: now };
            self.in_flight = None;
            self.superseded = false;
            return if first_time {
                ContactDecision::OptedOut
            } else {
                ContactDecision::Skip(SkipReason::OptedOut)
            };
        }
        if let Some(reason) = self.why_silent(policy, now) {
            return ContactDecision::Skip(reason);
        }
        if let Some(turn) = self.in_flight
            && !self.turn_lost(turn, policy, now)
        {
            self.superseded = true;
            return ContactDecision::Skip(SkipReason::InFlight);
        }
        ContactDecision::Generate(self.start_turn(now))
    }

    /// The analysis step's answer for `turn`. A bad answer, a low confidence or a stale turn keep
    /// the phase; a declined call is never offered again, an offered one is not offered twice.
    /// Returns whether the phase changed.
    pub fn on_analysis(
        &mut self,
        turn: u64,
        analysis: Result<&Analysis, &super::AnalysisError>,
        policy: &AiPolicy,
    ) -> bool {
        let Ok(analysis) = analysis else {
            return false;
        };
        if self.in_flight.map(|t| t.number) != Some(turn) {
            return false;
        }
        self.call_offered |= analysis.call_offered_in_history;
        self.call_declined |= analysis.call_declined_in_history;
        let confident = analysis
            .confidence
            .is_none_or(|confidence| confidence >= policy.min_confidence);
        let proposed = match analysis.phase {
            Some(phase) if confident => phase,
            _ => self.phase,
        };
        let phase = if self.call_declined || proposed == Phase::CallDeclined {
            self.call_declined = true;
            Phase::CallDeclined
        } else if self.call_offered && proposed == Phase::CallReady {
            Phase::CallPending
        } else {
            proposed
        };
        self.set_phase(phase)
    }

    /// The generated reply of `turn`. Returns what to do with it and, when the contact wrote
    /// while it was generating, the next turn to start.
    pub fn on_reply(
        &mut self,
        turn: u64,
        text: &str,
        policy: &AiPolicy,
        now: UnixMillis,
    ) -> (ReplyDecision, Option<Turn>) {
        if self.in_flight.map(|t| t.number) != Some(turn) {
            return (ReplyDecision::Discard(DiscardReason::Stale), None);
        }
        self.in_flight = None;
        if let Some(reason) = self.why_silent(policy, now) {
            self.superseded = false;
            let reason = match reason {
                SkipReason::HandedOver => DiscardReason::HandedOver,
                SkipReason::OptedOut => DiscardReason::OptedOut,
                SkipReason::DailyCap => DiscardReason::DailyCap,
                SkipReason::Disabled | SkipReason::Manual | SkipReason::InFlight => {
                    DiscardReason::Disabled
                }
            };
            return (ReplyDecision::Discard(reason), None);
        }
        if std::mem::take(&mut self.superseded) {
            let next = self.start_turn(now);
            return (
                ReplyDecision::Discard(DiscardReason::Superseded),
                Some(next),
            );
        }
        let text = bound_reply(text);
        if text.is_empty() {
            return (ReplyDecision::Discard(DiscardReason::Empty), None);
        }
        self.count_reply(now);
        (
            ReplyDecision::Deliver {
                text,
                mode: policy.mode,
            },
            None,
        )
    }

    /// Generation of `turn` failed (every provider). Returns the next turn when the contact wrote
    /// meanwhile.
    pub fn on_reply_failed(
        &mut self,
        turn: u64,
        policy: &AiPolicy,
        now: UnixMillis,
    ) -> Option<Turn> {
        if self.in_flight.map(|t| t.number) != Some(turn) {
            return None;
        }
        self.in_flight = None;
        if std::mem::take(&mut self.superseded) && self.why_silent(policy, now).is_none() {
            return Some(self.start_turn(now));
        }
        None
    }

    /// An AI reply reached the contact (an `auto` reply, or a suggestion an operator sent). A
    /// reply that proposes a call marks the call offered (the original's keyword rule).
    pub fn on_ai_message_sent(&mut self, text: &str, now: UnixMillis) {
        self.last_interaction = Some(now);
        if mentions_call(text) && !self.call_declined {
            self.call_offered = true;
            self.set_phase(Phase::CallPending);
        }
    }

    /// An operator wrote to the contact from the topic: the AI stops for this conversation.
    /// A turn in flight is left to finish and its answer is discarded.
    pub fn on_operator_message(&mut self, now: UnixMillis) {
        self.last_interaction = Some(now);
        if self.control == AiControl::Active {
            self.control = AiControl::HandedOver { at: now };
        }
    }

    /// An operator gives the conversation back to the AI (also after an opt-out, as a deliberate
    /// act). Returns whether anything changed.
    pub fn release(&mut self) -> bool {
        let changed = self.control != AiControl::Active;
        self.control = AiControl::Active;
        changed
    }

    /// Replies produced today.
    pub fn replies_today(&self, now: UnixMillis) -> u32 {
        if self.replies.day == day_of(now) {
            self.replies.count
        } else {
            0
        }
    }

    fn why_silent(&self, policy: &AiPolicy, now: UnixMillis) -> Option<SkipReason> {
        match self.control {
            AiControl::OptedOut { .. } => return Some(SkipReason::OptedOut),
            AiControl::HandedOver { .. } => return Some(SkipReason::HandedOver),
            AiControl::Active => {}
        }
        if !policy.enabled {
            return Some(SkipReason::Disabled);
        }
        if policy.mode == AiMode::Manual {
            return Some(SkipReason::Manual);
        }
        if self.replies_today(now) >= policy.max_replies_per_day {
            return Some(SkipReason::DailyCap);
        }
        None
    }

    fn turn_lost(&self, turn: Turn, policy: &AiPolicy, now: UnixMillis) -> bool {
        now.0.saturating_sub(turn.started_at.0) > policy.turn_timeout_ms
    }

    fn start_turn(&mut self, now: UnixMillis) -> Turn {
        self.turns_started += 1;
        self.superseded = false;
        let turn = Turn {
            number: self.turns_started,
            started_at: now,
        };
        self.in_flight = Some(turn);
        turn
    }

    fn count_reply(&mut self, now: UnixMillis) {
        let today = day_of(now);
        if self.replies.day != today {
            self.replies = DailyCount {
                day: today,
                count: 0,
            };
        }
        self.replies.count = self.replies.count.saturating_add(1);
    }

    fn set_phase(&mut self, phase: Phase) -> bool {
        if phase == self.phase {
            return false;
        }
        self.phase = phase;
        self.messages_in_phase = 0;
        true
    }
}

fn day_of(now: UnixMillis) -> i64 {
    now.0.div_euclid(86_400_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn policy(mode: AiMode) -> AiPolicy {
        AiPolicy::from_settings(&AiSettings {
            mode,
            max_replies_per_day: 3,
            ..AiSettings::default()
        })
    }

    fn at(minutes: i64) -> UnixMillis {
        UnixMillis(1_700_000_000_000 + minutes * MINUTE)
    }

    fn generate(
        state: &mut AiConversation,
        policy: &AiPolicy,
        text: &str,
        now: UnixMillis,
    ) -> Turn {
        match state.on_contact_message(text, policy, now) {
            ContactDecision::Generate(turn) => turn,
            other => panic!("expected a turn, got {other:?}"),
        }
    }

    #[test]
    fn a_message_starts_a_turn_and_its_reply_is_delivered_in_the_channels_mode() {
        for mode in [AiMode::Suggest, AiMode::Auto] {
            let policy = policy(mode);
            let mut state = AiConversation::new();
            let turn = generate(&mut state, &policy, "Здравствуйте", at(0));
            let (decision, next) = state.on_reply(turn.number, "  Добрый день!  ", &policy, at(1));
            assert_eq!(
                decision,
                ReplyDecision::Deliver {
                    text: "Добрый день!".into(),
                    mode
                }
            );
            assert_eq!(next, None);
            assert_eq!(state.in_flight, None);
            assert_eq!(state.replies_today(at(1)), 1);
        }
    }

    #[test]
    fn manual_and_disabled_channels_record_without_replying() {
        let mut state = AiConversation::new();
        assert_eq!(
            state.on_contact_message("Привет", &policy(AiMode::Manual), at(0)),
            ContactDecision::Skip(SkipReason::Manual)
        );
        let disabled = AiPolicy {
            enabled: false,
            ..policy(AiMode::Auto)
        };
        assert_eq!(
            state.on_contact_message("Привет", &disabled, at(0)),
            ContactDecision::Skip(SkipReason::Disabled)
        );
        assert_eq!(state.total_messages, 2);
    }

    #[test]
    fn one_reply_in_flight_and_a_message_meanwhile_supersedes_it() {
        let policy = policy(AiMode::Auto);
        let mut state = AiConversation::new();
        let first = generate(&mut state, &policy, "Сколько стоит?", at(0));
        assert_eq!(
            state.on_contact_message("И сроки?", &policy, at(1)),
            ContactDecision::Skip(SkipReason::InFlight)
        );
        let (decision, next) = state.on_reply(first.number, "От 50к", &policy, at(2));
        assert_eq!(decision, ReplyDecision::Discard(DiscardReason::Superseded));
        let next = next.expect("a new turn answers both messages");
        assert_eq!(state.in_flight, Some(next));
        assert_eq!(state.replies_today(at(2)), 0);
        // The old turn answering late changes nothing.
        let (late, _) = state.on_reply(first.number, "x", &policy, at(3));
        assert_eq!(late, ReplyDecision::Discard(DiscardReason::Stale));
        assert_eq!(state.in_flight, Some(next));
        let (decision, _) = state.on_reply(next.number, "От 50к, срок неделя", &policy, at(3));
        assert!(matches!(decision, ReplyDecision::Deliver { .. }));
    }

    #[test]
    fn a_turn_lost_with_a_dead_process_stops_blocking_after_the_timeout() {
        let policy = policy(AiMode::Auto);
        let mut state = AiConversation::new();
        let lost = generate(&mut state, &policy, "Алло", at(0));
        assert_eq!(
            state.on_contact_message("Алло?", &policy, at(5)),
            ContactDecision::Skip(SkipReason::InFlight)
        );
        let next = generate(&mut state, &policy, "Есть кто?", at(20));
        assert_ne!(next.number, lost.number);
        let (late, _) = state.on_reply(lost.number, "Да", &policy, at(21));
        assert_eq!(late, ReplyDecision::Discard(DiscardReason::Stale));
    }

    #[test]
    fn an_operator_hands_the_conversation_over_until_released() {
        let policy = policy(AiMode::Auto);
        let mut state = AiConversation::new();
        let turn = generate(&mut state, &policy, "Вопрос", at(0));
        state.on_operator_message(at(1));
        let (decision, _) = state.on_reply(turn.number, "Ответ ИИ", &policy, at(2));
        assert_eq!(decision, ReplyDecision::Discard(DiscardReason::HandedOver));
        assert_eq!(
            state.on_contact_message("Ещё вопрос", &policy, at(3)),
            ContactDecision::Skip(SkipReason::HandedOver)
        );
        assert!(state.release());
        generate(&mut state, &policy, "И ещё", at(4));
    }

    #[test]
    fn an_opt_out_ends_ai_for_the_contact_in_every_mode() {
        for mode in [AiMode::Manual, AiMode::Suggest, AiMode::Auto] {
            let policy = policy(mode);
            let mut state = AiConversation::new();
            assert_eq!(
                state.on_contact_message("Пожалуйста, не пишите мне больше", &policy, at(0)),
                ContactDecision::OptedOut
            );
            assert_eq!(
                state.on_contact_message("Здравствуйте", &policy, at(1)),
                ContactDecision::Skip(SkipReason::OptedOut)
            );
        }
        // A turn in flight when the contact opts out is dropped.
        let policy = policy(AiMode::Auto);
        let mut state = AiConversation::new();
        let turn = generate(&mut state, &policy, "Что за компания?", at(0));
        state.on_contact_message("STOP", &policy, at(1));
        let (decision, next) = state.on_reply(turn.number, "Мы…", &policy, at(2));
        assert_eq!(decision, ReplyDecision::Discard(DiscardReason::Stale));
        assert_eq!(next, None);
    }

    #[test]
    fn the_daily_cap_counts_replies_per_utc_day() {
        let policy = policy(AiMode::Auto);
        let mut state = AiConversation::new();
        for minute in 0..3 {
            let turn = generate(&mut state, &policy, "?", at(minute));
            state.on_reply(turn.number, "!", &policy, at(minute));
        }
        assert_eq!(
            state.on_contact_message("?", &policy, at(4)),
            ContactDecision::Skip(SkipReason::DailyCap)
        );
        let next_day = UnixMillis((at(4).0 / 86_400_000 + 1) * 86_400_000);
        generate(&mut state, &policy, "?", next_day);
    }

    #[test]
    fn analysis_moves_the_phase_unless_bad_unsure_or_against_a_declined_call() {
        let policy = policy(AiMode::Auto);
        let mut state = AiConversation::new();
        let turn = generate(&mut state, &policy, "Интересно", at(0)).number;
        let said = |phase: Phase, confidence: f32| Analysis {
            phase: Some(phase),
            confidence: Some(confidence),
            ..Analysis::default()
        };
        assert!(!state.on_analysis(turn, Err(&super::super::AnalysisError::NoObject), &policy));
        assert!(!state.on_analysis(turn, Ok(&said(Phase::Engagement, 0.2)), &policy));
        assert_eq!(state.phase, Phase::Discovery);
        assert!(state.on_analysis(turn, Ok(&said(Phase::Engagement, 0.9)), &policy));
        assert_eq!(
            (state.phase, state.messages_in_phase),
            (Phase::Engagement, 0)
        );
        // An offered call is not offered again.
        state.on_ai_message_sent("Давайте созвонимся завтра?", at(1));
        assert_eq!(state.phase, Phase::CallPending);
        state.on_analysis(turn, Ok(&said(Phase::CallReady, 0.9)), &policy);
        assert_eq!(state.phase, Phase::CallPending);
        // A declined call stays declined.
        state.on_analysis(turn, Ok(&said(Phase::CallDeclined, 0.9)), &policy);
        state.on_analysis(turn, Ok(&said(Phase::CallReady, 0.9)), &policy);
        assert_eq!(state.phase, Phase::CallDeclined);
        state.on_ai_message_sent("Можем созвониться", at(2));
        assert_eq!(state.phase, Phase::CallDeclined);
    }

    #[test]
    fn a_failed_generation_frees_the_conversation_and_follows_up_a_newer_message() {
        let policy = policy(AiMode::Auto);
        let mut state = AiConversation::new();
        let turn = generate(&mut state, &policy, "a", at(0));
        assert_eq!(state.on_reply_failed(turn.number, &policy, at(1)), None);
        assert_eq!(state.in_flight, None);
        let turn = generate(&mut state, &policy, "b", at(2));
        state.on_contact_message("c", &policy, at(3));
        let next = state.on_reply_failed(turn.number, &policy, at(4));
        assert!(next.is_some());
    }

    #[test]
    fn the_state_round_trips_through_json() {
        let policy = policy(AiMode::Auto);
        let mut state = AiConversation::new();
        generate(&mut state, &policy, "a", at(0));
        state.on_operator_message(at(1));
        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(
            serde_json::from_str::<AiConversation>(&text).unwrap(),
            state
        );
    }
}
