//! `jobbot doctor`, the pure part: what to check for a configuration ([`DoctorPlan`]), how each
//! answer is judged ([`judge_source`], [`judge_output`], …), and the typed report with the fix
//! for every problem ([`DoctorReport`], [`Problem::fix`]).
//!
//! The checks themselves (connecting sessions, asking Telegram, reaching proxies) run in
//! `jobbot_engine::doctor`; the CLI prints the report and the web shows it on its Doctor page.
//! Nothing here holds a secret: proxies are masked, sessions are named, errors are typed.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::{Config, SourceRef, mask_proxy};
use crate::ids::{ChatId, SessionName};
use crate::telegram::{ChatAccess, ConnectError, DeadReason, PeerKind, TelegramError};

/// Everything one configuration asks to be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoctorPlan {
    pub main: SessionName,
    /// Every agent account of the enabled channels, once each, with its proxy.
    pub agents: Vec<PlannedAgent>,
    /// Every source of the enabled channels, once each.
    pub sources: Vec<SourceRef>,
    /// Every enabled channel's output chat.
    pub outputs: Vec<(String, ChatId)>,
    /// Every enabled channel with the CRM on: its group and the agents that create its topics.
    pub crm_groups: Vec<PlannedCrm>,
    /// Every LLM provider a channel's AI calls (CRM and AI on, mode `suggest` or `auto`), once
    /// per channel, in the order the channel tries them.
    pub ai_providers: Vec<PlannedAiProvider>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedAiProvider {
    pub channel: String,
    pub provider: String,
    pub key: PlannedKey,
}

/// Where a provider's API key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedKey {
    /// The provider takes none (a local ollama, LM Studio).
    NotNeeded,
    /// Given by the configuration itself (or the provider's preset, e.g. ollama's).
    Written,
    /// `${VARIABLE}`: the environment or `DATA_DIR/.env` must have it.
    Variable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedAgent {
    pub session: SessionName,
    /// The full address (it may hold a password): only for connecting, never shown unmasked.
    pub proxy: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCrm {
    pub channel: String,
    pub group: ChatId,
    pub agents: Vec<SessionName>,
}

impl DoctorPlan {
    pub fn of(config: &Config) -> Self {
        let agents = config
            .agent_accounts()
            .into_values()
            .filter(|agent| agent.session_name != SessionName::main())
            .map(|agent| PlannedAgent {
                session: agent.session_name,
                proxy: agent.proxy,
            })
            .collect();
        let sources: BTreeSet<SourceRef> = config
            .enabled_channels()
            .flat_map(|channel| channel.sources.iter().cloned())
            .collect();
        let outputs = config
            .enabled_channels()
            .map(|channel| (channel.id.clone(), channel.telegram_id))
            .collect();
        let crm_groups = config
            .enabled_channels()
            .filter(|channel| channel.crm_enabled)
            .filter_map(|channel| {
                Some(PlannedCrm {
                    channel: channel.id.clone(),
                    group: channel.crm_group_id?,
                    agents: channel
                        .agents
                        .iter()
                        .map(|agent| agent.session_name.clone())
                        .collect(),
                })
            })
            .collect();
        let mut ai_providers: Vec<PlannedAiProvider> = Vec::new();
        let talking = config.enabled_channels().filter(|channel| {
            channel.crm_enabled
                && channel.ai.enabled
                && channel.ai.mode != crate::ai::AiMode::Manual
        });
        for channel in talking {
            for choice in channel.ai.chain() {
                let Some(provider) = config.llm_providers.get(&choice.provider) else {
                    continue;
                };
                let planned = PlannedAiProvider {
                    channel: channel.id.clone(),
                    provider: provider.name.clone(),
                    key: match &provider.api_key {
                        None => PlannedKey::NotNeeded,
                        Some(crate::ai::ApiKeySource::Literal(_)) => PlannedKey::Written,
                        Some(crate::ai::ApiKeySource::Env(variable)) => {
                            PlannedKey::Variable(variable.clone())
                        }
                    },
                };
                if !ai_providers.contains(&planned) {
                    ai_providers.push(planned);
                }
            }
        }
        Self {
            main: SessionName::main(),
            agents,
            sources: sources.into_iter().collect(),
            outputs,
            crm_groups,
            ai_providers,
        }
    }
}

/// A provider's key as `variables` (the environment, then `DATA_DIR/.env`) has it.
pub fn judge_ai_key(key: &PlannedKey, variables: &dyn Fn(&str) -> bool) -> Verdict {
    match key {
        PlannedKey::NotNeeded => Verdict::passed("needs no API key"),
        PlannedKey::Written => {
            Verdict::passed("its API key is given by the configuration (or its preset)")
        }
        PlannedKey::Variable(variable) if variables(variable) => {
            Verdict::passed(format!("{variable} is set"))
        }
        PlannedKey::Variable(variable) => Verdict::failed(Problem::AiKeyMissing {
            variable: variable.clone(),
        }),
    }
}

/// What one finding is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "item")]
pub enum Subject {
    /// `API_ID` / `API_HASH` (from my.telegram.org).
    ApiCredentials,
    /// A session file and whether Telegram accepts it.
    Session { session: SessionName, main: bool },
    /// An agent's proxy, masked.
    Proxy { session: SessionName, proxy: String },
    /// A source, as written in the configuration, read by the main account.
    Source { source: String },
    /// A channel's output chat, posted to by the main account.
    OutputChannel { channel: String, chat: ChatId },
    /// A channel's CRM group: a forum.
    CrmGroup { channel: String, group: ChatId },
    /// An agent of a channel in that channel's CRM group: a member that can create topics.
    CrmAgent {
        channel: String,
        group: ChatId,
        session: SessionName,
    },
    /// An LLM provider a channel's AI calls: its API key is there.
    AiProvider { channel: String, provider: String },
}

impl Subject {
    pub fn proxy(session: &SessionName, proxy: &str) -> Self {
        Self::Proxy {
            session: session.clone(),
            proxy: mask_proxy(proxy),
        }
    }

    pub fn source(source: &SourceRef) -> Self {
        Self::Source {
            source: source_text(source),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ApiCredentials => f.write_str("API_ID / API_HASH"),
            Self::Session {
                session,
                main: true,
            } => write!(f, "session {session} (main account)"),
            Self::Session {
                session,
                main: false,
            } => write!(f, "session {session}"),
            Self::Proxy { session, proxy } => write!(f, "proxy of {session} ({proxy})"),
            Self::Source { source } => write!(f, "source {source}"),
            Self::OutputChannel { channel, chat } => {
                write!(f, "output channel {} of {channel}", chat)
            }
            Self::CrmGroup { channel, group } => {
                write!(f, "CRM group {} of {channel}", group)
            }
            Self::CrmAgent {
                channel,
                group,
                session,
            } => write!(f, "agent {session} in the CRM group {} of {channel}", group),
            Self::AiProvider { channel, provider } => {
                write!(f, "AI provider {provider} of {channel}")
            }
        }
    }
}

/// A source as the person wrote it (an invite hash is not shown: it is an access credential).
fn source_text(source: &SourceRef) -> String {
    match source {
        SourceRef::Username(username) => username.to_string(),
        SourceRef::Id(id) => id.to_string(),
        SourceRef::Invite(_) => "t.me/+… (invite link)".to_owned(),
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Verdict {
    /// Fine; `detail` says what was seen (the account's name, the chat's title).
    Passed {
        detail: Option<String>,
    },
    Failed {
        problem: Problem,
    },
    /// Not checked, and why.
    Skipped {
        because: Skip,
    },
}

impl Verdict {
    pub fn passed(detail: impl Into<String>) -> Self {
        Self::Passed {
            detail: Some(detail.into()),
        }
    }

    pub fn failed(problem: Problem) -> Self {
        Self::Failed { problem }
    }
}

/// Why a check did not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "skip")]
pub enum Skip {
    /// The account that would make the check is not available (see its own finding).
    AccountUnavailable { session: SessionName },
    /// The account's proxy does not answer, so the session was not connected through it.
    ProxyUnreachable,
    /// Paused by an operator: not connected.
    Paused,
    /// Another node of the cluster holds the session's lease: that node's doctor checks it.
    ElsewhereInCluster,
    /// A private source known by its invite link: only joining it would tell.
    InviteLink,
    /// The simulator needs no API credentials.
    Simulator,
    /// Without API_ID / API_HASH no session can be connected.
    NoApiCredentials,
    /// The CRM group is not a forum (its own finding says so): there are no topics to create.
    NotAForum,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AccountUnavailable { session } => {
                write!(f, "not checked: {session} is not available")
            }
            Self::ProxyUnreachable => f.write_str("not checked: its proxy does not answer"),
            Self::Paused => f.write_str("not checked: the agent is paused"),
            Self::ElsewhereInCluster => {
                f.write_str("not checked here: another node of the cluster holds it")
            }
            Self::InviteLink => {
                f.write_str("not checked: a private source is joined by its link when jobbot runs")
            }
            Self::Simulator => f.write_str("not needed with the simulator"),
            Self::NoApiCredentials => f.write_str("not checked: API_ID / API_HASH are missing"),
            Self::NotAForum => {
                f.write_str("a member; topics are checked once the group is a forum")
            }
        }
    }
}

/// Something that stops jobbot from working as configured. Each has a fix ([`Problem::fix`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "problem")]
pub enum Problem {
    /// These of `API_ID` / `API_HASH` are not set (or `API_ID` is not a number).
    ApiCredentialsMissing { missing: Vec<String> },
    /// No session file.
    SessionMissing,
    /// The session never logged in.
    SessionNotLoggedIn,
    /// Telegram refuses the session.
    SessionDead { reason: DeadReason },
    /// Another process holds the session.
    SessionBusy,
    /// The session could not be connected now.
    SessionUnreachable { message: String },
    /// Nothing accepts connections at the proxy's address, or it is not a SOCKS5 proxy.
    ProxyUnreachable { message: String },
    /// The main account can see the source but is not in it, so it receives none of its posts.
    SourceNotJoined,
    /// The main account cannot see the source: private and not joined, or no such chat.
    SourceUnreadable { error: TelegramError },
    /// The main account is not in the output channel.
    OutputNotJoined,
    /// The main account is in the output chat but may not post there.
    OutputCannotPost { kind: PeerKind },
    /// The main account cannot see the output chat.
    OutputUnreachable { error: TelegramError },
    /// The CRM group is not a supergroup with topics.
    NotAForum { kind: PeerKind },
    /// No account of the channel can see the CRM group.
    CrmGroupUnreachable { error: TelegramError },
    /// The agent is not in the CRM group.
    AgentNotMember,
    /// The agent is in the CRM group but may not create topics.
    AgentCannotCreateTopics,
    /// The check itself failed (a flood wait, the network): nothing is known.
    CheckFailed { error: TelegramError },
    /// The provider's key is `${variable}`, which neither the environment nor `DATA_DIR/.env`
    /// has: every AI turn of the channel fails.
    AiKeyMissing { variable: String },
}

impl Problem {
    /// What to do about it, for `subject`.
    pub fn fix(&self, subject: &Subject) -> String {
        let session = match subject {
            Subject::Session { session, .. }
            | Subject::Proxy { session, .. }
            | Subject::CrmAgent { session, .. } => session.clone(),
            _ => SessionName::main(),
        };
        let login = format!(
            "log it in: `jobbot login {session} --phone +…` (or on the web interface's Logins page)"
        );
        match self {
            Self::ApiCredentialsMissing { missing } => format!(
                "set {} in the environment or DATA_DIR/.env (create them at https://my.telegram.org → API development tools)",
                missing.join(" and ")
            ),
            Self::SessionMissing | Self::SessionNotLoggedIn => login,
            Self::SessionDead {
                reason: DeadReason::Banned | DeadReason::Deactivated,
            } => {
                "the account cannot come back: replace it with another account (and its session_name)"
                    .to_owned()
            }
            Self::SessionDead { .. } => format!("the session is lost; {login}"),
            Self::SessionBusy => {
                "another jobbot process uses this session: stop it, or open the Doctor page of the running jobbot's web interface"
                    .to_owned()
            }
            Self::SessionUnreachable { .. } => {
                "check the network (and the agent's proxy), then run `jobbot doctor` again"
                    .to_owned()
            }
            Self::ProxyUnreachable { .. } => format!(
                "start the proxy, or correct {session}'s proxy in its channel's agents (socks5://[user:password@]host:port)"
            ),
            Self::SourceNotJoined => format!(
                "join {} with the main account (jobbot receives posts only from chats it is in)",
                subject_chat(subject)
            ),
            Self::SourceUnreadable { .. } => format!(
                "check the source's address; a private channel needs the main account in it (add it, or give the source as its invite link t.me/+…): {}",
                subject_chat(subject)
            ),
            Self::OutputNotJoined => format!(
                "add the main account to {} as an admin allowed to post messages",
                subject_chat(subject)
            ),
            Self::OutputCannotPost {
                kind: PeerKind::Channel,
            } => format!(
                "make the main account an admin of {} with the right to post messages",
                subject_chat(subject)
            ),
            Self::OutputCannotPost { .. } => format!(
                "let the main account write in {} (remove its restriction, or make it an admin)",
                subject_chat(subject)
            ),
            Self::OutputUnreachable { .. } => format!(
                "check the channel's telegram_id and add the main account to {} as an admin",
                subject_chat(subject)
            ),
            Self::NotAForum { kind: PeerKind::Channel } => format!(
                "{} is a broadcast channel: use a supergroup with Topics on as the CRM group (crm_group_id)",
                subject_chat(subject)
            ),
            Self::NotAForum { .. } => format!(
                "turn on Topics in {}'s settings (Edit → Topics): the CRM keeps one topic per contact",
                subject_chat(subject)
            ),
            Self::CrmGroupUnreachable { .. } => format!(
                "check the channel's crm_group_id and add the main account to {}",
                subject_chat(subject)
            ),
            Self::AgentNotMember => format!(
                "add {session} to {} (or set the channel's crm_invite_link so agents join by it)",
                subject_chat(subject)
            ),
            Self::AgentCannotCreateTopics => format!(
                "make {session} an admin of {} with the right to manage topics",
                subject_chat(subject)
            ),
            Self::CheckFailed { .. } => "run `jobbot doctor` again later".to_owned(),
            Self::AiKeyMissing { variable } => format!(
                "set {variable} (the provider's API key) in the environment or DATA_DIR/.env and restart jobbot, or pick another provider or the manual mode in the channel's AI settings"
            ),
        }
    }
}

/// The chat a subject names, for fix texts.
fn subject_chat(subject: &Subject) -> String {
    match subject {
        Subject::Source { source } => source.clone(),
        Subject::OutputChannel { chat, .. } => chat.to_string(),
        Subject::CrmGroup { group, .. } | Subject::CrmAgent { group, .. } => group.to_string(),
        _ => "the chat".to_owned(),
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ApiCredentialsMissing { missing } => {
                write!(f, "{} not set or not valid", missing.join(", "))
            }
            Self::SessionMissing => f.write_str("no session file"),
            Self::SessionNotLoggedIn => f.write_str("not logged in"),
            Self::SessionDead { reason } => write!(f, "Telegram refuses it: {reason}"),
            Self::SessionBusy => f.write_str("in use by another jobbot process"),
            Self::SessionUnreachable { message } => write!(f, "could not connect: {message}"),
            Self::ProxyUnreachable { message } => write!(f, "unreachable: {message}"),
            Self::SourceNotJoined => f.write_str("the main account is not in it"),
            Self::SourceUnreadable { error } => {
                write!(f, "the main account cannot see it ({})", invisible(error))
            }
            Self::OutputNotJoined => f.write_str("the main account is not in it"),
            Self::OutputCannotPost { .. } => f.write_str("the main account may not post there"),
            Self::OutputUnreachable { error } => {
                write!(f, "the main account cannot see it ({})", invisible(error))
            }
            Self::NotAForum {
                kind: PeerKind::Channel,
            } => f.write_str("a broadcast channel, not a forum"),
            Self::NotAForum { .. } => f.write_str("not a forum (topics are off)"),
            Self::CrmGroupUnreachable { error } => {
                write!(
                    f,
                    "no account of the channel can see it ({})",
                    invisible(error)
                )
            }
            Self::AgentNotMember => f.write_str("not a member"),
            Self::AgentCannotCreateTopics => f.write_str("a member, but may not create topics"),
            Self::CheckFailed { error } => write!(f, "the check failed: {error}"),
            Self::AiKeyMissing { variable } => write!(f, "no API key: {variable} is not set"),
        }
    }
}

/// Why a chat cannot be seen, in Telegram's words where it gave some.
pub fn invisible(error: &TelegramError) -> String {
    match error {
        TelegramError::ChatForbidden { code } => code.clone(),
        other => other.to_string(),
    }
}

/// One checked item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub subject: Subject,
    pub verdict: Verdict,
    /// The fix, when the verdict is a problem.
    pub fix: Option<String>,
}

impl Finding {
    pub fn new(subject: Subject, verdict: Verdict) -> Self {
        let fix = match &verdict {
            Verdict::Failed { problem } => Some(problem.fix(&subject)),
            _ => None,
        };
        Self {
            subject,
            verdict,
            fix,
        }
    }

    pub fn problem(&self) -> Option<&Problem> {
        match &self.verdict {
            Verdict::Failed { problem } => Some(problem),
            _ => None,
        }
    }
}

/// Every finding, in the order checked: credentials, proxies, sessions, sources, outputs, CRM.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DoctorReport {
    pub findings: Vec<Finding>,
}

impl DoctorReport {
    pub fn push(&mut self, subject: Subject, verdict: Verdict) {
        self.findings.push(Finding::new(subject, verdict));
    }

    pub fn problems(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|finding| finding.problem().is_some())
    }

    pub fn is_healthy(&self) -> bool {
        self.problems().next().is_none()
    }

    /// The finding about `subject`, if it was checked.
    pub fn finding(&self, subject: &Subject) -> Option<&Finding> {
        self.findings
            .iter()
            .find(|finding| &finding.subject == subject)
    }
}

impl fmt::Display for DoctorReport {
    /// One line per finding (`ok`, `FAIL`, `skip`), the fix indented under each problem, and a
    /// summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            match &finding.verdict {
                Verdict::Passed {
                    detail: Some(detail),
                } => writeln!(f, "ok    {}: {detail}", finding.subject)?,
                Verdict::Passed { detail: None } => writeln!(f, "ok    {}", finding.subject)?,
                Verdict::Failed { problem } => {
                    writeln!(f, "FAIL  {}: {problem}", finding.subject)?;
                    if let Some(fix) = &finding.fix {
                        writeln!(f, "      fix: {fix}")?;
                    }
                }
                Verdict::Skipped { because } => {
                    writeln!(f, "skip  {}: {because}", finding.subject)?
                }
            }
        }
        let problems = self.problems().count();
        let passed = self
            .findings
            .iter()
            .filter(|finding| matches!(finding.verdict, Verdict::Passed { .. }))
            .count();
        let skipped = self.findings.len() - problems - passed;
        write!(
            f,
            "{passed} passed, {problems} problem{}, {skipped} not checked",
            if problems == 1 { "" } else { "s" }
        )
    }
}

/// A session's connection attempt.
pub fn judge_session(result: &Result<String, ConnectError>) -> Verdict {
    match result {
        Ok(who) => Verdict::passed(who.clone()),
        Err(error) => Verdict::failed(session_problem(error)),
    }
}

/// The problem a failed connection is.
pub fn session_problem(error: &ConnectError) -> Problem {
    match error {
        ConnectError::SessionBusy { .. } => Problem::SessionBusy,
        ConnectError::NotLoggedIn { .. } => Problem::SessionNotLoggedIn,
        ConnectError::Dead { reason, .. } => Problem::SessionDead { reason: *reason },
        ConnectError::Storage { message, .. } | ConnectError::Network { message } => {
            Problem::SessionUnreachable {
                message: crate::config::mask_urls_in(message),
            }
        }
    }
}

/// The main account reading a source.
pub fn judge_source(access: Result<ChatAccess, TelegramError>) -> Verdict {
    match access {
        Ok(access) if access.member => Verdict::passed(access.title),
        Ok(_) => Verdict::failed(Problem::SourceNotJoined),
        Err(error) if is_invisible(&error) => Verdict::failed(Problem::SourceUnreadable { error }),
        Err(error) => Verdict::failed(Problem::CheckFailed { error }),
    }
}

/// The main account posting to an output chat.
pub fn judge_output(access: Result<ChatAccess, TelegramError>) -> Verdict {
    match access {
        Ok(access) if access.member && access.can_post => Verdict::passed(access.title),
        Ok(access) if access.member => {
            Verdict::failed(Problem::OutputCannotPost { kind: access.kind })
        }
        Ok(_) => Verdict::failed(Problem::OutputNotJoined),
        Err(error) if is_invisible(&error) => Verdict::failed(Problem::OutputUnreachable { error }),
        Err(error) => Verdict::failed(Problem::CheckFailed { error }),
    }
}

/// A CRM group, as the first account that could see it saw it.
pub fn judge_crm_group(access: Result<ChatAccess, TelegramError>) -> Verdict {
    match access {
        Ok(access) if access.forum => Verdict::passed(access.title),
        Ok(access) => Verdict::failed(Problem::NotAForum { kind: access.kind }),
        Err(error) if is_invisible(&error) => {
            Verdict::failed(Problem::CrmGroupUnreachable { error })
        }
        Err(error) => Verdict::failed(Problem::CheckFailed { error }),
    }
}

/// An agent in its channel's CRM group.
pub fn judge_crm_agent(access: Result<ChatAccess, TelegramError>) -> Verdict {
    match access {
        Ok(access) if access.member && !access.forum => Verdict::Skipped {
            because: Skip::NotAForum,
        },
        Ok(access) if access.member && access.can_create_topics => {
            Verdict::passed(if access.admin { "admin" } else { "member" })
        }
        Ok(access) if access.member => Verdict::failed(Problem::AgentCannotCreateTopics),
        Ok(_) => Verdict::failed(Problem::AgentNotMember),
        Err(error) if is_invisible(&error) => Verdict::failed(Problem::AgentNotMember),
        Err(error) => Verdict::failed(Problem::CheckFailed { error }),
    }
}

/// The chat does not exist for this account (private and not joined, no such id, no such
/// username), as opposed to a check that failed for a passing reason.
fn is_invisible(error: &TelegramError) -> bool {
    matches!(
        error,
        TelegramError::ChatForbidden { .. }
            | TelegramError::PeerInvalid
            | TelegramError::UsernameNotFound
            | TelegramError::InvalidInvite
            | TelegramError::NotAUser
    )
}

/// What a proxy probe found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyProbeError {
    #[error("nothing answers at {address} ({message})")]
    NoAnswer { address: String, message: String },
    #[error("{address} answered, but not as a SOCKS5 proxy")]
    NotSocks5 { address: String },
    #[error("no answer from {address} within {seconds} s")]
    TimedOut { address: String, seconds: u64 },
}

/// The `host:port` of a proxy address, without its credentials (safe to show and to connect
/// to). `None` for an address that is not `socks5://…` (validation refuses those).
pub fn proxy_host_port(proxy: &str) -> Option<&str> {
    let rest = proxy.strip_prefix("socks5://")?;
    Some(
        rest.rsplit_once('@')
            .map_or(rest, |(_, host_port)| host_port),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(kind: PeerKind) -> ChatAccess {
        ChatAccess {
            chat: ChatId::channel(77).unwrap(),
            kind,
            title: "Chat".into(),
            public: false,
            forum: false,
            member: true,
            admin: false,
            can_post: false,
            can_create_topics: false,
        }
    }

    fn private() -> TelegramError {
        TelegramError::ChatForbidden {
            code: "CHANNEL_PRIVATE".into(),
        }
    }

    fn problem(verdict: Verdict) -> Option<Problem> {
        match verdict {
            Verdict::Failed { problem } => Some(problem),
            _ => None,
        }
    }

    #[test]
    fn sources_are_judged_by_membership_and_visibility() {
        assert_eq!(problem(judge_source(Ok(access(PeerKind::Channel)))), None);
        let left = ChatAccess {
            member: false,
            public: true,
            ..access(PeerKind::Channel)
        };
        assert_eq!(
            problem(judge_source(Ok(left))),
            Some(Problem::SourceNotJoined)
        );
        assert_eq!(
            problem(judge_source(Err(private()))),
            Some(Problem::SourceUnreadable { error: private() })
        );
        let flood = TelegramError::FloodWait { seconds: 30 };
        assert_eq!(
            problem(judge_source(Err(flood.clone()))),
            Some(Problem::CheckFailed { error: flood })
        );
    }

    #[test]
    fn outputs_need_the_right_to_post() {
        let admin = ChatAccess {
            can_post: true,
            admin: true,
            ..access(PeerKind::Channel)
        };
        assert_eq!(problem(judge_output(Ok(admin))), None);
        assert_eq!(
            problem(judge_output(Ok(access(PeerKind::Channel)))),
            Some(Problem::OutputCannotPost {
                kind: PeerKind::Channel
            })
        );
        let outside = ChatAccess {
            member: false,
            ..access(PeerKind::Channel)
        };
        assert_eq!(
            problem(judge_output(Ok(outside))),
            Some(Problem::OutputNotJoined)
        );
    }

    #[test]
    fn crm_groups_must_be_forums_whose_agents_create_topics() {
        assert_eq!(
            problem(judge_crm_group(Ok(access(PeerKind::Group)))),
            Some(Problem::NotAForum {
                kind: PeerKind::Group
            })
        );
        let forum = ChatAccess {
            forum: true,
            ..access(PeerKind::Group)
        };
        assert_eq!(problem(judge_crm_group(Ok(forum.clone()))), None);
        assert_eq!(
            problem(judge_crm_agent(Ok(forum.clone()))),
            Some(Problem::AgentCannotCreateTopics)
        );
        let creator = ChatAccess {
            can_create_topics: true,
            ..forum
        };
        assert_eq!(problem(judge_crm_agent(Ok(creator))), None);
        assert_eq!(
            problem(judge_crm_agent(Err(private()))),
            Some(Problem::AgentNotMember)
        );
    }

    #[test]
    fn every_problem_has_a_fix_naming_what_to_change() {
        let subject = Subject::CrmAgent {
            channel: "jobs".into(),
            group: ChatId::channel(77).unwrap(),
            session: SessionName::parse("agent_1").unwrap(),
        };
        let fix = Problem::AgentNotMember.fix(&subject);
        assert!(
            fix.contains("agent_1") && fix.contains("-1000000000077"),
            "{fix}"
        );
        let proxy = Subject::proxy(
            &SessionName::parse("agent_1").unwrap(),
            "socks5://user:secret@127.0.0.1:9",
        );
        let report = {
            let mut report = DoctorReport::default();
            report.push(
                proxy,
                Verdict::failed(Problem::ProxyUnreachable {
                    message: "connection refused".into(),
                }),
            );
            report
        };
        let text = report.to_string();
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("FAIL") && text.contains("fix:"), "{text}");
        assert!(!report.is_healthy());
    }

    #[test]
    fn proxy_addresses_lose_their_credentials() {
        assert_eq!(
            proxy_host_port("socks5://u:p@proxy.example:1080"),
            Some("proxy.example:1080")
        );
        assert_eq!(
            proxy_host_port("socks5://10.0.0.1:1080"),
            Some("10.0.0.1:1080")
        );
        assert_eq!(proxy_host_port("http://x:1"), None);
    }
}
