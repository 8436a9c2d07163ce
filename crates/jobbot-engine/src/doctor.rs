//! `jobbot doctor`'s checks: connects (or borrows) each account, asks Telegram what each may do
//! in the configured chats, reaches each proxy, and judges every answer with
//! `jobbot_core::doctor`. The CLI runs it over a connector ([`ConnectorAccounts`]: it opens each
//! session, so it refuses a session a running jobbot holds); the web runs it over the running
//! engine's own connections ([`EngineAccounts`]), so it never opens a second connection.
//!
//! Nothing is changed anywhere: every Telegram call made is a read (`get_me`,
//! `contacts.resolveUsername` through the account's cache, `channels.getChannels`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jobbot_core::config::SourceRef;
use jobbot_core::doctor::{
    DoctorPlan, DoctorReport, Problem, ProxyProbeError, Skip, Subject, Verdict, judge_crm_agent,
    judge_crm_group, judge_output, judge_source, proxy_host_port, session_problem,
};
use jobbot_core::ids::{ChatId, SessionName};
use jobbot_core::telegram::{
    AccountConnector, ChatAccess, ConnectError, ConnectOptions, Me, TelegramAccount, TelegramError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Engine, LinkState};

/// Whether the Telegram API credentials are there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiCredentials {
    Present,
    /// The names of the variables that are not set or not valid.
    Missing(Vec<String>),
    /// A simulator needs none.
    NotNeeded,
}

/// Why a session's account cannot be used for the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    Problem(Problem),
    Skip(Skip),
}

/// Where the checks get each session's account.
#[async_trait]
pub trait DoctorAccounts: Send + Sync {
    async fn account(
        &self,
        session: &SessionName,
        options: &ConnectOptions,
    ) -> Result<Arc<dyn TelegramAccount>, Unavailable>;

    /// Called once the checks are done: closes whatever [`DoctorAccounts::account`] opened.
    async fn release(&self);
}

/// Whether a session has a file at all.
type SessionExists = Box<dyn Fn(&SessionName) -> bool + Send + Sync>;

/// Opens each session through a connector, and closes it again in [`DoctorAccounts::release`].
pub struct ConnectorAccounts {
    connector: Arc<dyn AccountConnector>,
    /// Tells a session that has no file at all (the CLI knows the sessions directory); `None`
    /// where there are no files (the simulator).
    session_exists: Option<SessionExists>,
    opened: Mutex<Vec<Arc<dyn TelegramAccount>>>,
}

impl ConnectorAccounts {
    pub fn new(connector: Arc<dyn AccountConnector>) -> Self {
        Self {
            connector,
            session_exists: None,
            opened: Mutex::new(Vec::new()),
        }
    }

    pub fn with_session_files(
        mut self,
        session_exists: impl Fn(&SessionName) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.session_exists = Some(Box::new(session_exists));
        self
    }
}

#[async_trait]
impl DoctorAccounts for ConnectorAccounts {
    async fn account(
        &self,
        session: &SessionName,
        options: &ConnectOptions,
    ) -> Result<Arc<dyn TelegramAccount>, Unavailable> {
        if let Some(exists) = &self.session_exists
            && !exists(session)
        {
            return Err(Unavailable::Problem(Problem::SessionMissing));
        }
        let account = self
            .connector
            .connect(session, options)
            .await
            .map_err(|error| Unavailable::Problem(session_problem(&error)))?;
        self.opened
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Arc::clone(&account));
        Ok(account)
    }

    async fn release(&self) {
        let opened = std::mem::take(
            &mut *self
                .opened
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for account in opened {
            account.disconnect().await;
        }
    }
}

/// The running engine's own connections: a session is checked as its owner sees it now.
pub struct EngineAccounts {
    engine: Engine,
}

impl EngineAccounts {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

#[async_trait]
impl DoctorAccounts for EngineAccounts {
    async fn account(
        &self,
        session: &SessionName,
        _options: &ConnectOptions,
    ) -> Result<Arc<dyn TelegramAccount>, Unavailable> {
        let link = self.engine.link_states().borrow().get(session).cloned();
        let problem = match link {
            Some(LinkState::Ready { .. }) => match self.engine.account(session) {
                Some(account) => return Ok(account),
                None => Problem::SessionUnreachable {
                    message: "the connection is being re-established".to_owned(),
                },
            },
            Some(LinkState::NotLoggedIn) => Problem::SessionNotLoggedIn,
            Some(LinkState::Dead { reason }) => Problem::SessionDead { reason },
            Some(LinkState::Paused) => return Err(Unavailable::Skip(Skip::Paused)),
            Some(LinkState::ElsewhereInCluster) => {
                return Err(Unavailable::Skip(Skip::ElsewhereInCluster));
            }
            Some(LinkState::Disconnected { reason }) => Problem::SessionUnreachable {
                message: jobbot_core::config::mask_urls_in(&reason),
            },
            Some(LinkState::Connecting) => Problem::SessionUnreachable {
                message: "still connecting".to_owned(),
            },
            Some(LinkState::Stopped) | None => Problem::SessionUnreachable {
                message: "jobbot runs no connection for it".to_owned(),
            },
        };
        Err(Unavailable::Problem(problem))
    }

    async fn release(&self) {}
}

/// How long the checks wait.
#[derive(Debug, Clone, Copy)]
pub struct DoctorSettings {
    /// For each Telegram call.
    pub call_timeout: Duration,
    /// For a proxy to accept a connection and answer the SOCKS5 greeting.
    pub proxy_timeout: Duration,
}

impl Default for DoctorSettings {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(30),
            proxy_timeout: Duration::from_secs(5),
        }
    }
}

/// Runs every check of `plan` and reports each item. Accounts opened for it are released before
/// it returns. `variables` says whether a variable is set (the environment, then
/// `DATA_DIR/.env`): the AI providers' keys.
pub async fn run_doctor(
    plan: &DoctorPlan,
    credentials: &ApiCredentials,
    variables: &(dyn Fn(&str) -> bool + Sync),
    accounts: &dyn DoctorAccounts,
    settings: DoctorSettings,
) -> DoctorReport {
    let mut doctor = Doctor {
        report: DoctorReport::default(),
        accounts: HashMap::new(),
        access: HashMap::new(),
        settings,
    };
    doctor.report.push(
        Subject::ApiCredentials,
        match credentials {
            ApiCredentials::Present => Verdict::Passed { detail: None },
            ApiCredentials::Missing(missing) => Verdict::failed(Problem::ApiCredentialsMissing {
                missing: missing.clone(),
            }),
            ApiCredentials::NotNeeded => Verdict::Skipped {
                because: Skip::Simulator,
            },
        },
    );
    for planned in &plan.ai_providers {
        doctor.report.push(
            Subject::AiProvider {
                channel: planned.channel.clone(),
                provider: planned.provider.clone(),
            },
            jobbot_core::doctor::judge_ai_key(&planned.key, variables),
        );
    }
    let mut unreachable_proxies = BTreeSet::new();
    for agent in &plan.agents {
        let Some(proxy) = &agent.proxy else { continue };
        let verdict = match probe_proxy(proxy, settings.proxy_timeout).await {
            Ok(()) => Verdict::passed("answers as a SOCKS5 proxy"),
            Err(error) => {
                unreachable_proxies.insert(agent.session.clone());
                Verdict::failed(Problem::ProxyUnreachable {
                    message: error.to_string(),
                })
            }
        };
        doctor
            .report
            .push(Subject::proxy(&agent.session, proxy), verdict);
    }
    doctor
        .open(accounts, &plan.main, true, &ConnectOptions::default())
        .await;
    for agent in &plan.agents {
        let subject = Subject::Session {
            session: agent.session.clone(),
            main: false,
        };
        if unreachable_proxies.contains(&agent.session) {
            doctor.report.push(
                subject,
                Verdict::Skipped {
                    because: Skip::ProxyUnreachable,
                },
            );
            continue;
        }
        let options = ConnectOptions {
            proxy: agent.proxy.clone(),
        };
        doctor.open(accounts, &agent.session, false, &options).await;
    }
    for source in &plan.sources {
        let verdict = doctor.check_source(&plan.main, source).await;
        doctor.report.push(Subject::source(source), verdict);
    }
    for (channel, chat) in &plan.outputs {
        let verdict = match doctor.access(&plan.main, *chat).await {
            Ok(access) => judge_output(access),
            Err(skip) => skip,
        };
        doctor.report.push(
            Subject::OutputChannel {
                channel: channel.clone(),
                chat: *chat,
            },
            verdict,
        );
    }
    for crm in &plan.crm_groups {
        let verdict = doctor
            .check_crm_group(&plan.main, &crm.agents, crm.group)
            .await;
        doctor.report.push(
            Subject::CrmGroup {
                channel: crm.channel.clone(),
                group: crm.group,
            },
            verdict,
        );
        for session in &crm.agents {
            let verdict = match doctor.access(session, crm.group).await {
                Ok(access) => judge_crm_agent(access),
                Err(skip) => skip,
            };
            doctor.report.push(
                Subject::CrmAgent {
                    channel: crm.channel.clone(),
                    group: crm.group,
                    session: session.clone(),
                },
                verdict,
            );
        }
    }
    accounts.release().await;
    doctor.report
}

struct Doctor {
    report: DoctorReport,
    /// The accounts that could be used, by session.
    accounts: HashMap<SessionName, Arc<dyn TelegramAccount>>,
    /// Answers already had, so a chat listed twice is asked once per account.
    access: HashMap<(SessionName, ChatId), Result<ChatAccess, TelegramError>>,
    settings: DoctorSettings,
}

impl Doctor {
    async fn open(
        &mut self,
        accounts: &dyn DoctorAccounts,
        session: &SessionName,
        main: bool,
        options: &ConnectOptions,
    ) {
        let subject = Subject::Session {
            session: session.clone(),
            main,
        };
        let verdict = match accounts.account(session, options).await {
            Ok(account) => match self.call(account.get_me()).await {
                Ok(me) => {
                    self.accounts.insert(session.clone(), account);
                    Verdict::passed(describe(&me))
                }
                Err(TelegramError::AccountDead { reason }) => {
                    Verdict::failed(session_problem(&ConnectError::Dead {
                        session: session.clone(),
                        reason,
                    }))
                }
                Err(error) => Verdict::failed(Problem::CheckFailed { error }),
            },
            Err(Unavailable::Problem(problem)) => Verdict::failed(problem),
            Err(Unavailable::Skip(because)) => Verdict::Skipped { because },
        };
        self.report.push(subject, verdict);
    }

    /// `session`'s view of `chat`, or the skip verdict when the session is not available.
    async fn access(
        &mut self,
        session: &SessionName,
        chat: ChatId,
    ) -> Result<Result<ChatAccess, TelegramError>, Verdict> {
        let key = (session.clone(), chat);
        if let Some(known) = self.access.get(&key) {
            return Ok(known.clone());
        }
        let Some(account) = self.accounts.get(session).cloned() else {
            return Err(Verdict::Skipped {
                because: Skip::AccountUnavailable {
                    session: session.clone(),
                },
            });
        };
        let access = self.call(account.chat_access(chat)).await;
        self.access.insert(key, access.clone());
        Ok(access)
    }

    async fn check_source(&mut self, main: &SessionName, source: &SourceRef) -> Verdict {
        let chat = match source {
            SourceRef::Id(id) => *id,
            SourceRef::Invite(_) => {
                return Verdict::Skipped {
                    because: Skip::InviteLink,
                };
            }
            SourceRef::Username(username) => {
                let Some(account) = self.accounts.get(main).cloned() else {
                    return Verdict::Skipped {
                        because: Skip::AccountUnavailable {
                            session: main.clone(),
                        },
                    };
                };
                match self.call(account.resolve_username(username)).await {
                    Ok(peer) => peer.id(),
                    Err(error) => return judge_source(Err(error)),
                }
            }
        };
        match self.access(main, chat).await {
            Ok(access) => judge_source(access),
            Err(skip) => skip,
        }
    }

    /// The group as the main account sees it, else as the first of its agents that can see it.
    async fn check_crm_group(
        &mut self,
        main: &SessionName,
        agents: &[SessionName],
        group: ChatId,
    ) -> Verdict {
        let mut first = None;
        for session in std::iter::once(main).chain(agents) {
            match self.access(session, group).await {
                Ok(Ok(access)) => return judge_crm_group(Ok(access)),
                Ok(Err(error)) => {
                    first.get_or_insert(judge_crm_group(Err(error)));
                }
                Err(skip) => {
                    first.get_or_insert(skip);
                }
            }
        }
        first.unwrap_or(Verdict::Skipped {
            because: Skip::AccountUnavailable {
                session: main.clone(),
            },
        })
    }

    async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, TelegramError>>,
    ) -> Result<T, TelegramError> {
        let limit = self.settings.call_timeout;
        tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
            Err(TelegramError::Network {
                message: format!("no answer within {} s", limit.as_secs()),
            })
        })
    }
}

fn describe(me: &Me) -> String {
    let mut name = me.first_name.clone();
    if let Some(last) = me.last_name.as_deref().filter(|last| !last.is_empty()) {
        name = format!("{name} {last}");
    }
    match &me.username {
        Some(username) => format!("{name} ({username}, id {})", me.user_id),
        None => format!("{name} (id {})", me.user_id),
    }
}

/// Connects to the proxy and asks for a SOCKS5 session without authentication or with a user
/// name and password (RFC 1928 §3: `VER=5, NMETHODS, METHODS`); a SOCKS5 server answers
/// `VER=5, METHOD`. Only `host:port` is used: the credentials never leave this process here.
pub async fn probe_proxy(proxy: &str, timeout: Duration) -> Result<(), ProxyProbeError> {
    let address = proxy_host_port(proxy)
        .ok_or_else(|| ProxyProbeError::NoAnswer {
            address: jobbot_core::config::mask_proxy(proxy),
            message: "not a socks5:// address".to_owned(),
        })?
        .to_owned();
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(address.as_str())
            .await
            .map_err(|error| ProxyProbeError::NoAnswer {
                address: address.clone(),
                message: error.kind().to_string(),
            })?;
        let not_socks = || ProxyProbeError::NotSocks5 {
            address: address.clone(),
        };
        stream
            .write_all(&[5, 2, 0, 2])
            .await
            .map_err(|_| not_socks())?;
        let mut answer = [0u8; 2];
        stream
            .read_exact(&mut answer)
            .await
            .map_err(|_| not_socks())?;
        if answer[0] == 5 {
            Ok(())
        } else {
            Err(not_socks())
        }
    };
    tokio::time::timeout(timeout, probe)
        .await
        .unwrap_or_else(|_| {
            Err(ProxyProbeError::TimedOut {
                address: address.clone(),
                seconds: timeout.as_secs(),
            })
        })
}
