//! One-click setup of a channel's chats (issue #14 item 9), as the original's channel wizard did
//! it: the main account creates the output channel (a broadcast channel) and the CRM group (a
//! forum supergroup whose members may create topics, so each agent opens its contacts' topics),
//! exports an invite link to the group, and brings the channel's agents in;
//! when a step fails, the chats already created are deleted again. An output channel the
//! operator set already is kept ([`SetupRequest::output_channel`]): only the CRM group is made,
//! and nothing the operator chose is replaced or deleted.
//!
//! Agents come in two ways. The main account invites those it can address
//! (`channels.inviteToChannel`, after resolving the agent's username with a resolve permit):
//! one call, and the agent spends nothing. An agent it cannot add — no username, not connected,
//! or its privacy settings refuse invitations from strangers (`missing_invitees`) — joins by the
//! link itself with a join permit; one that is not connected now joins by the link when it
//! connects (the CRM joins every agent of a CRM-enabled channel by `crm_invite_link`).
//!
//! Every rate-limited call takes a permit of its account's scheduler ([`Engine::call_permit`]):
//! `channels.createChannel` its own class, the invite and the joins the join class, the
//! resolves the resolve class. Setting the members' rights, exporting the link and deleting a
//! chat take none: one call each per setup, and a rollback must not queue behind a limiter
//! while the chats it undoes exist.
//!
//! The setup runs within one call and is not a stored workflow: `channels.createChannel` carries
//! no `random_id`, so a step recorded before the call could not tell after a crash whether the
//! chat exists, nor find it but by searching the dialogs for its title. A crash mid-setup can
//! leave a chat behind; every chat is logged with its id when it is created and when it is
//! deleted, so it can be found and removed.

use std::time::Duration;

use jobbot_core::config::SourceRef;
use jobbot_core::ids::{ChatId, SessionName};
use jobbot_core::notification::fit_to_utf16;
use jobbot_core::scheduling::CallClass;
use jobbot_core::telegram::{
    JoinTarget, MAX_CHAT_ABOUT_UTF16, MAX_CHAT_TITLE_UTF16, NewChatKind, PeerRef, TelegramError,
};
use serde::Serialize;

use crate::{CallPermit, Engine, LinkState};

/// How long one step waits for its account's permit before the setup gives up on it (a creation
/// or the invite: the setup fails; an agent's join: the agent joins later by the link).
const PERMIT_WAIT: Duration = Duration::from_secs(60);

/// The chats to create. Titles and descriptions are cut to Telegram's limits here
/// ([`MAX_CHAT_TITLE_UTF16`], [`MAX_CHAT_ABOUT_UTF16`]), so any text may be passed.
#[derive(Debug, Clone)]
pub struct SetupRequest {
    pub channel_title: String,
    pub channel_about: String,
    pub group_title: String,
    pub group_about: String,
    /// The channel's agents, to bring into the CRM group.
    pub agents: Vec<SessionName>,
    /// The output channel the operator set already: kept, not created (and never deleted by a
    /// rollback). `None` creates one.
    pub output_channel: Option<ChatId>,
}

impl SetupRequest {
    /// The original wizard's titles and descriptions for a channel called `name`:
    /// "{name} - Вакансии" and "{name} - CRM".
    pub fn for_channel(name: &str, agents: Vec<SessionName>) -> Self {
        Self {
            channel_title: format!("{name} - Вакансии"),
            channel_about: format!("Уведомления о вакансиях: {name}"),
            group_title: format!("{name} - CRM"),
            group_about: format!("CRM для управления откликами: {name}"),
            agents,
            output_channel: None,
        }
    }
}

/// What a finished setup created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetupResult {
    /// The output channel (`telegram_id`): the new one, or the one the request kept.
    pub output_channel: ChatId,
    /// Whether the setup created `output_channel` (false: the request's, kept).
    pub output_channel_created: bool,
    /// The new CRM forum group (`crm_group_id`).
    pub crm_group: ChatId,
    /// The group's invite link (`crm_invite_link`).
    pub crm_invite_link: String,
    /// How each agent came into the group, in the request's order.
    pub agents: Vec<AgentSetup>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentSetup {
    pub session: SessionName,
    /// `{"session": …, "outcome": "invited"}`; a failure adds its `error`.
    #[serde(flatten)]
    pub outcome: AgentJoin,
}

/// How one agent came into the CRM group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum AgentJoin {
    /// The main account added it (`channels.inviteToChannel`).
    Invited,
    /// It joined by the invite link.
    Joined,
    /// It is not connected (or its join limiter is waiting): it joins by the link when it
    /// connects, if the channel's CRM is enabled.
    ByLinkLater,
    /// Telegram refused its join by the link.
    Failed { error: TelegramError },
}

/// A step of the setup, named in a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SetupStep {
    CreateChannel,
    CreateGroup,
    /// Letting the group's members (the agents) create topics.
    OpenTopics,
    ExportInvite,
    /// No agent came into the group (every one was refused).
    AddAgents,
    /// Writing the result into the configuration (the caller's step, see
    /// [`Engine::undo_chat_setup`]).
    SaveConfiguration,
}

impl std::fmt::Display for SetupStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::CreateChannel => "creating the output channel",
            Self::CreateGroup => "creating the CRM group",
            Self::OpenTopics => "letting the agents create topics in the CRM group",
            Self::ExportInvite => "exporting the CRM group's invite link",
            Self::AddAgents => "adding the agents to the CRM group",
            Self::SaveConfiguration => "saving the channel's configuration",
        })
    }
}

/// What a rollback did with the chats created before the failure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rollback {
    pub deleted: Vec<ChatId>,
    /// Chats that could not be deleted (they are still in Telegram), with why.
    pub left: Vec<LeftChat>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeftChat {
    pub chat: ChatId,
    pub error: TelegramError,
}

/// Why a setup did not finish. Chats created before the failure were deleted as `rollback`
/// says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("the engine runs without a main account")]
    NoMainAccount,
    #[error("the main account {session} is not connected")]
    MainAccountNotReady { session: SessionName },
    #[error("{step} waited too long for the account's rate limit")]
    RateLimited { step: SetupStep, rollback: Rollback },
    #[error("{step} failed: {error}")]
    Telegram {
        step: SetupStep,
        error: TelegramError,
        rollback: Rollback,
    },
}

impl SetupError {
    /// What was undone, when anything had been created.
    pub fn rollback(&self) -> Option<&Rollback> {
        match self {
            Self::RateLimited { rollback, .. } | Self::Telegram { rollback, .. } => Some(rollback),
            Self::NoMainAccount | Self::MainAccountNotReady { .. } => None,
        }
    }
}

/// A failed step before rollback: what it was and why.
enum StepFailure {
    RateLimited(SetupStep),
    Telegram(SetupStep, TelegramError),
}

impl Engine {
    /// Creates a channel's output channel and CRM forum group with the main account and brings
    /// the agents in (see the module documentation). On failure the chats created so far are
    /// deleted and the error says which step failed and what was undone.
    pub async fn set_up_channel_chats(
        &self,
        request: &SetupRequest,
    ) -> Result<SetupResult, SetupError> {
        let main = self
            .main_session()
            .cloned()
            .ok_or(SetupError::NoMainAccount)?;
        if self.account(&main).is_none() {
            return Err(SetupError::MainAccountNotReady { session: main });
        }
        let mut created = Vec::new();
        match self.create_chats(&main, request, &mut created).await {
            Ok(result) => Ok(result),
            Err(failure) => {
                let rollback = self.delete_chats(&main, &created).await;
                Err(match failure {
                    StepFailure::RateLimited(step) => SetupError::RateLimited { step, rollback },
                    StepFailure::Telegram(step, error) => SetupError::Telegram {
                        step,
                        error,
                        rollback,
                    },
                })
            }
        }
    }

    /// Deletes the chats of a finished setup whose result could not be used (the configuration
    /// refused it), as a failed setup does itself.
    pub async fn undo_chat_setup(&self, result: &SetupResult) -> Result<Rollback, SetupError> {
        let main = self
            .main_session()
            .cloned()
            .ok_or(SetupError::NoMainAccount)?;
        let created: Vec<ChatId> = result
            .output_channel_created
            .then_some(result.output_channel)
            .into_iter()
            .chain([result.crm_group])
            .collect();
        Ok(self.delete_chats(&main, &created).await)
    }

    async fn create_chats(
        &self,
        main: &SessionName,
        request: &SetupRequest,
        created: &mut Vec<ChatId>,
    ) -> Result<SetupResult, StepFailure> {
        let output_channel = match request.output_channel {
            Some(kept) => kept,
            None => {
                let chat = self
                    .create_chat(
                        main,
                        SetupStep::CreateChannel,
                        NewChatKind::Broadcast,
                        &request.channel_title,
                        &request.channel_about,
                    )
                    .await?;
                created.push(chat);
                chat
            }
        };
        let crm_group = self
            .create_chat(
                main,
                SetupStep::CreateGroup,
                NewChatKind::Forum,
                &request.group_title,
                &request.group_about,
            )
            .await?;
        created.push(crm_group);
        let step = SetupStep::OpenTopics;
        let account = self
            .account(main)
            .ok_or(StepFailure::Telegram(step, not_connected()))?;
        account
            .allow_members_to_create_topics(crm_group)
            .await
            .map_err(|error| StepFailure::Telegram(step, error))?;
        let step = SetupStep::ExportInvite;
        let crm_invite_link = account
            .export_invite_link(crm_group)
            .await
            .map_err(|error| StepFailure::Telegram(step, error))?;
        let Some(SourceRef::Invite(hash)) = SourceRef::parse(&crm_invite_link) else {
            return Err(StepFailure::Telegram(
                step,
                TelegramError::Other {
                    message: "Telegram's invite link is not a t.me/+ link".into(),
                },
            ));
        };
        let agents = self
            .add_agents(main, crm_group, &hash, &request.agents)
            .await;
        let refused = agents.iter().find_map(|agent| match &agent.outcome {
            AgentJoin::Failed { error } => Some(error.clone()),
            _ => None,
        });
        let none_in = agents
            .iter()
            .all(|agent| matches!(agent.outcome, AgentJoin::Failed { .. }));
        if let (true, Some(error)) = (none_in, refused) {
            return Err(StepFailure::Telegram(SetupStep::AddAgents, error));
        }
        Ok(SetupResult {
            output_channel,
            output_channel_created: request.output_channel.is_none(),
            crm_group,
            crm_invite_link,
            agents,
        })
    }

    async fn create_chat(
        &self,
        main: &SessionName,
        step: SetupStep,
        kind: NewChatKind,
        title: &str,
        about: &str,
    ) -> Result<ChatId, StepFailure> {
        let permit = self
            .setup_permit(main, CallClass::CreateChannel)
            .await
            .ok_or(StepFailure::RateLimited(step))?;
        let title = fit_to_utf16(title, MAX_CHAT_TITLE_UTF16);
        let about = fit_to_utf16(about, MAX_CHAT_ABOUT_UTF16);
        let created = permit.account().create_channel(kind, &title, &about).await;
        permit.report(&created);
        let chat = created
            .map_err(|error| StepFailure::Telegram(step, error))?
            .id();
        tracing::info!(target: "setup", %chat, ?kind, "chat created for a channel's setup");
        Ok(chat)
    }

    /// Brings each agent into the group: invited by the main account where it can address the
    /// agent, else by the link (see the module documentation).
    async fn add_agents(
        &self,
        main: &SessionName,
        group: ChatId,
        invite_hash: &str,
        agents: &[SessionName],
    ) -> Vec<AgentSetup> {
        let invited = self.invite_agents(main, group, agents).await;
        let links = self.link_states().borrow().clone();
        let mut outcomes = Vec::with_capacity(agents.len());
        for agent in agents {
            let outcome = if invited.contains(agent) {
                AgentJoin::Invited
            } else if links.get(agent).is_some_and(LinkState::is_ready) {
                self.join_by_link(agent, invite_hash).await
            } else {
                AgentJoin::ByLinkLater
            };
            outcomes.push(AgentSetup {
                session: agent.clone(),
                outcome,
            });
        }
        outcomes
    }

    /// The agents the main account added: those connected with a username it could resolve and
    /// that Telegram did not leave out. Any failure here only sends the agents to the link.
    async fn invite_agents(
        &self,
        main: &SessionName,
        group: ChatId,
        agents: &[SessionName],
    ) -> Vec<SessionName> {
        let links = self.link_states().borrow().clone();
        let mut addressed: Vec<(SessionName, PeerRef)> = Vec::new();
        for agent in agents {
            let Some(LinkState::Ready { me }) = links.get(agent) else {
                continue;
            };
            let Some(username) = &me.username else {
                continue;
            };
            let Some(permit) = self.setup_permit(main, CallClass::ResolveUsername).await else {
                break;
            };
            let resolved = permit.account().resolve_username(username).await;
            permit.report(&resolved);
            match resolved {
                Ok(peer) if peer.id() == me.user_id => addressed.push((agent.clone(), peer.peer)),
                Ok(_) => {}
                Err(error) => {
                    tracing::info!(target: "setup", %agent, %error, "the main account could not resolve an agent; it joins by the link");
                }
            }
        }
        if addressed.is_empty() {
            return Vec::new();
        }
        let Some(permit) = self.setup_permit(main, CallClass::JoinChannel).await else {
            return Vec::new();
        };
        let users: Vec<PeerRef> = addressed.iter().map(|(_, peer)| *peer).collect();
        let invited = permit.account().invite_to_channel(group, &users).await;
        permit.report(&invited);
        match invited {
            Ok(missing) => addressed
                .into_iter()
                .filter(|(_, peer)| !missing.contains(&peer.id))
                .map(|(agent, _)| agent)
                .collect(),
            Err(error) => {
                tracing::info!(target: "setup", %group, %error, "the main account could not invite the agents; they join by the link");
                Vec::new()
            }
        }
    }

    async fn join_by_link(&self, agent: &SessionName, invite_hash: &str) -> AgentJoin {
        let Some(permit) = self.setup_permit(agent, CallClass::JoinChannel).await else {
            return AgentJoin::ByLinkLater;
        };
        let joined = permit
            .account()
            .join_chat(&JoinTarget::InviteHash(invite_hash.to_owned()))
            .await;
        permit.report(&joined);
        match joined {
            Ok(_) => AgentJoin::Joined,
            Err(error) => AgentJoin::Failed { error },
        }
    }

    /// Deletes `chats` (newest first) with the main account; what could not be deleted is
    /// listed with why.
    /// A permit for one of the setup's calls, waited for at most [`PERMIT_WAIT`].
    async fn setup_permit(&self, session: &SessionName, class: CallClass) -> Option<CallPermit> {
        self.call_permit(std::slice::from_ref(session), class, Some(PERMIT_WAIT))
            .await
    }

    async fn delete_chats(&self, main: &SessionName, chats: &[ChatId]) -> Rollback {
        let mut rollback = Rollback::default();
        for chat in chats.iter().rev().copied() {
            let deleted = match self.account(main) {
                Some(account) => account.delete_channel(chat).await,
                None => Err(not_connected()),
            };
            match deleted {
                Ok(()) => {
                    tracing::info!(target: "setup", %chat, "chat of a failed setup deleted");
                    rollback.deleted.push(chat);
                }
                Err(error) => {
                    tracing::warn!(target: "setup", %chat, %error, "could not delete a chat of a failed setup; delete it by hand");
                    rollback.left.push(LeftChat { chat, error });
                }
            }
        }
        rollback
    }
}

fn not_connected() -> TelegramError {
    TelegramError::Network {
        message: "the main account is not connected".into(),
    }
}
