//! Validation: document → typed [`Config`], collecting every problem with its path rather than
//! stopping at the first, so `jobbot config check` and the web form can show them all at once.

use std::collections::HashMap;

use super::model::{AgentDocument, ChannelDocument, ConfigDocument, HumanDelay, Pacing};
use super::typed::{Agent, Channel, Config, Filters, SourceRef};
use super::{ConfigProblem, ConfigProblems, ProblemKind};
use crate::ai::LlmProviders;
use crate::ids::{ChatId, PhoneNumber, SessionName};

/// The longest human-like delay that makes sense before a reply (an hour).
const MAX_HUMAN_DELAY_SECONDS: u32 = 3600;
/// A channel's name: Telegram's limit on a chat title (128 characters), in UTF-16 units so it
/// also fits wherever a title goes (a topic title, a notification's header).
pub const MAX_CHANNEL_NAME_UTF16: usize = 128;
/// An auto-response template must fit a message by itself (4,096 UTF-16 units); what the
/// placeholders add is cut when the message is composed.
pub const MAX_TEMPLATE_UTF16: usize = crate::notification::MAX_MESSAGE_UTF16;

fn check_utf16_length(path: String, value: &str, max_utf16: usize, problems: &mut Problems) {
    let length = crate::notification::utf16_len(value);
    if length > max_utf16 {
        problems.add(
            path,
            ProblemKind::TooLong { max_utf16 },
            format!("is {length} UTF-16 units long; Telegram takes at most {max_utf16}"),
        );
    }
}

pub(super) fn validate(document: &ConfigDocument) -> Result<Config, ConfigProblems> {
    let mut problems = Problems::default();
    let mut agent_problems = Problems::default();
    let llm_providers =
        crate::ai::settings::parse_providers(document.llm_providers.as_ref(), &mut problems.0);
    let channels: Vec<Option<Channel>> = document
        .output_channels
        .iter()
        .enumerate()
        .map(|(index, channel)| {
            validate_channel(
                &format!("output_channels[{index}]"),
                channel,
                &llm_providers,
                &mut problems,
                &mut agent_problems,
            )
        })
        .collect();
    check_unique_channel_ids(document, &mut problems);
    check_accounts_across_channels(document, &mut problems);
    if problems.0.is_empty() {
        Ok(Config {
            channels: channels
                .into_iter()
                .map(|c| c.expect("no problems, so every channel validated"))
                .collect(),
            llm_providers,
            skipped_agents: agent_problems.0,
        })
    } else {
        // The file does not load: every problem at once, the agents' included, in file order.
        let mut all = problems.0;
        all.extend(agent_problems.0);
        all.sort_by_key(|problem| problem_order(&problem.path));
        Err(ConfigProblems(all))
    }
}

/// Problems in file order: by channel index, then as they were found (a stable sort keeps the
/// order within a channel).
fn problem_order(path: &str) -> usize {
    path.strip_prefix("output_channels[")
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(index, _)| index.parse().ok())
        .unwrap_or(usize::MAX)
}

#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, kind: ProblemKind, message: impl Into<String>) {
        self.0.push(ConfigProblem::of_kind(path, kind, message));
    }

    /// Records the error of a parse and returns the value when it parsed.
    fn parsed<T, E: std::fmt::Display>(
        &mut self,
        path: String,
        kind: impl FnOnce(&E) -> ProblemKind,
        result: Result<T, E>,
    ) -> Option<T> {
        result
            .map_err(|error| self.add(path, kind(&error), error.to_string()))
            .ok()
    }
}

fn validate_channel(
    path: &str,
    channel: &ChannelDocument,
    llm_providers: &LlmProviders,
    problems: &mut Problems,
    agent_problems: &mut Problems,
) -> Option<Channel> {
    let before = problems.0.len();
    if channel.id.trim().is_empty() {
        problems.add(
            format!("{path}.id"),
            ProblemKind::Required,
            "must not be empty",
        );
    }
    if channel.name.trim().is_empty() {
        problems.add(
            format!("{path}.name"),
            ProblemKind::Required,
            "must not be empty",
        );
    }
    check_utf16_length(
        format!("{path}.name"),
        &channel.name,
        MAX_CHANNEL_NAME_UTF16,
        problems,
    );
    check_utf16_length(
        format!("{path}.auto_response_template"),
        &channel.auto_response_template,
        MAX_TEMPLATE_UTF16,
        problems,
    );
    let telegram_id = if channel.telegram_id == 0 {
        problems.add(
            format!("{path}.telegram_id"),
            ProblemKind::Required,
            "is required: the id of the channel notifications go to (-100…)",
        );
        None
    } else {
        problems.parsed(
            format!("{path}.telegram_id"),
            |_| ProblemKind::NotChannelId,
            parse_channel_id(channel.telegram_id),
        )
    };

    let sources: Vec<SourceRef> = channel
        .input_sources
        .iter()
        .enumerate()
        .filter_map(|(index, source)| {
            let parsed = SourceRef::parse(source);
            if parsed.is_none() {
                problems.add(
                    format!("{path}.input_sources[{index}]"),
                    ProblemKind::NotSource,
                    format!("{source:?} {}", SourceRef::INVALID),
                );
            }
            parsed
        })
        .collect();

    let filters = validate_filters(path, channel, problems);

    let crm_group_id = match (channel.crm_group_id, channel.crm_enabled) {
        (0, true) => {
            problems.add(
                format!("{path}.crm_group_id"),
                ProblemKind::CrmGroupRequired,
                "CRM is enabled, so the id of its forum supergroup (-100…) is needed",
            );
            None
        }
        (0, false) => None,
        (id, _) => problems.parsed(
            format!("{path}.crm_group_id"),
            |_| ProblemKind::NotChannelId,
            parse_channel_id(id),
        ),
    };
    if channel.crm_enabled && channel.agents.is_empty() {
        problems.add(
            format!("{path}.agents"),
            ProblemKind::CrmAgentRequired,
            "CRM is enabled, so at least one agent (phone and session_name) is needed",
        );
    }
    let legacy_phone = channel
        .agent_phone
        .as_deref()
        .is_some_and(|s| !s.trim().is_empty());
    let legacy_session = channel
        .agent_session_name
        .as_deref()
        .is_some_and(|s| !s.trim().is_empty());
    if channel.agents.is_empty() && legacy_phone != legacy_session {
        let (present, missing) = if legacy_phone {
            ("agent_phone", "agent_session_name")
        } else {
            ("agent_session_name", "agent_phone")
        };
        problems.add(
            format!("{path}.{missing}"),
            ProblemKind::LegacyAgentIncomplete {
                present: present.to_owned(),
            },
            format!("missing: the old-format {present} needs it to become an agent"),
        );
    }

    let channel_pacing = validate_pacing(
        &format!("{path}.agent_pacing"),
        &channel.agent_pacing,
        problems,
    );
    let agents = validate_agents(path, &channel.agents, channel_pacing, agent_problems);

    if channel.auto_response_enabled && channel.auto_response_template.trim().is_empty() {
        problems.add(
            format!("{path}.auto_response_template"),
            ProblemKind::TemplateEmpty,
            "is empty, but auto_response_enabled is true",
        );
    }
    // Checked even with auto-responses off: turning them on later must not reveal a broken
    // template only when a recruiter is about to receive it.
    problems.parsed(
        format!("{path}.auto_response_template"),
        |error| ProblemKind::NotTemplate {
            detail: error.to_string(),
        },
        crate::template::parse_template(&channel.auto_response_template),
    );
    let crm_invite_hash =
        channel
            .crm_invite_link
            .as_deref()
            .and_then(|link| match SourceRef::parse(link) {
                Some(SourceRef::Invite(hash)) => Some(hash),
                _ => {
                    problems.add(
                        format!("{path}.crm_invite_link"),
                        ProblemKind::NotInviteLink,
                        format!(
                            "{link:?} is not an invite link (t.me/+HASH or t.me/joinchat/HASH)"
                        ),
                    );
                    None
                }
            });
    validate_human_delay(
        &format!("{path}.human_delay"),
        &channel.human_delay,
        problems,
    );

    let ai = crate::ai::settings::parse_channel_ai(
        path,
        channel.ai_conversation_enabled,
        channel.ai_config.as_ref(),
        channel.prompts.as_ref(),
        llm_providers,
        &mut problems.0,
    );

    if problems.0.len() != before {
        return None;
    }
    Some(Channel {
        id: channel.id.clone(),
        name: channel.name.clone(),
        telegram_id: telegram_id?,
        enabled: channel.enabled,
        sources,
        filters,
        crm_enabled: channel.crm_enabled,
        crm_group_id,
        agents,
        auto_response_enabled: channel.auto_response_enabled,
        auto_response_template: channel.auto_response_template.clone(),
        instant_response: channel.instant_response,
        human_delay: channel.human_delay,
        crm_invite_hash,
        ai,
    })
}

fn parse_channel_id(id: i64) -> Result<ChatId, String> {
    ChatId::parse_channel(id).map_err(|_| format!("{id} {}", ChatId::NOT_CHANNEL))
}

fn validate_filters(path: &str, channel: &ChannelDocument, problems: &mut Problems) -> Filters {
    let mut keywords = |field: &str, list: &[String]| -> Vec<String> {
        for (index, keyword) in list.iter().enumerate() {
            if let Err(error) = crate::filters::parse_keyword(keyword) {
                problems.add(
                    format!("{path}.filters.{field}[{index}]"),
                    ProblemKind::NotKeyword {
                        detail: error.to_string(),
                    },
                    format!("{keyword:?}: {error}"),
                );
            }
        }
        list.to_vec()
    };
    Filters {
        include_keywords: keywords("include_keywords", &channel.filters.include_keywords),
        exclude_keywords: keywords("exclude_keywords", &channel.filters.exclude_keywords),
        require_all_includes: channel.filters.require_all_includes,
    }
}

fn validate_agents(
    path: &str,
    agents: &[AgentDocument],
    channel_pacing: Pacing,
    problems: &mut Problems,
) -> Vec<Agent> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut valid = Vec::with_capacity(agents.len());
    for (index, agent) in agents.iter().enumerate() {
        let agent_path = format!("{path}.agents[{index}]");
        let before = problems.0.len();
        // No phone is not a problem: the original's wizard saves agents that way, and the
        // session (once logged in) is what jobbot uses.
        let phone = if agent.phone.trim().is_empty() {
            None
        } else {
            problems.parsed(
                format!("{agent_path}.phone"),
                |_| ProblemKind::NotPhone,
                PhoneNumber::parse(&agent.phone),
            )
        };
        let session = if agent.session_name.is_empty() {
            problems.add(
                format!("{agent_path}.session_name"),
                ProblemKind::Required,
                "is required",
            );
            None
        } else {
            problems.parsed(
                format!("{agent_path}.session_name"),
                |_| ProblemKind::NotSessionName,
                SessionName::parse(&agent.session_name),
            )
        };
        if session
            .as_ref()
            .is_some_and(|s| s.as_str() == SessionName::MAIN)
        {
            problems.add(
                format!("{agent_path}.session_name"),
                ProblemKind::MainSession,
                format!(
                    "{:?} is the main account's session; an agent needs its own",
                    SessionName::MAIN
                ),
            );
        }
        if let Some(first) = seen.insert(agent.session_name.as_str(), index) {
            problems.add(
                format!("{agent_path}.session_name"),
                ProblemKind::SessionTwice { first },
                format!(
                    "{:?} is listed twice in this channel (also agents[{first}])",
                    agent.session_name
                ),
            );
        }
        let proxy = agent.proxy.as_deref().and_then(|proxy| {
            problems
                .parsed(
                    format!("{agent_path}.proxy"),
                    |error| match error {
                        super::proxy::ProxyError::Invalid => ProblemKind::NotProxy,
                        super::proxy::ProxyError::Masked => ProblemKind::ProxyMasked,
                    },
                    super::proxy::check_proxy(proxy),
                )
                .map(|()| proxy.to_owned())
        });
        let pacing = match &agent.pacing {
            Some(own) => validate_pacing(&format!("{agent_path}.pacing"), own, problems),
            None => channel_pacing,
        };
        if let Some(session_name) = session
            && problems.0.len() == before
        {
            valid.push(Agent {
                phone,
                session_name,
                proxy,
                pacing,
            });
        }
    }
    valid
}

fn validate_pacing(path: &str, pacing: &Pacing, problems: &mut Problems) -> Pacing {
    if pacing.messages_per_minute == 0 {
        problems.add(
            format!("{path}.messages_per_minute"),
            ProblemKind::AtLeastOne,
            "must be at least 1",
        );
    }
    if pacing.burst == 0 {
        problems.add(
            format!("{path}.burst"),
            ProblemKind::AtLeastOne,
            "must be at least 1",
        );
    }
    *pacing
}

fn validate_human_delay(path: &str, delay: &HumanDelay, problems: &mut Problems) {
    if delay.min_seconds > delay.max_seconds {
        problems.add(
            format!("{path}.min_seconds"),
            ProblemKind::DelayOrder {
                max: delay.max_seconds,
            },
            format!(
                "{} is more than max_seconds ({})",
                delay.min_seconds, delay.max_seconds
            ),
        );
    }
    if delay.max_seconds > MAX_HUMAN_DELAY_SECONDS {
        problems.add(
            format!("{path}.max_seconds"),
            ProblemKind::DelayTooLong,
            format!("{} is more than an hour", delay.max_seconds),
        );
    }
}

fn check_unique_channel_ids(document: &ConfigDocument, problems: &mut Problems) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (index, channel) in document.output_channels.iter().enumerate() {
        if channel.id.trim().is_empty() {
            continue;
        }
        if let Some(first) = seen.insert(channel.id.as_str(), index) {
            problems.add(
                format!("output_channels[{index}].id"),
                ProblemKind::ChannelIdTwice { first },
                format!(
                    "{:?} is also the id of output_channels[{first}]; channel ids must be unique",
                    channel.id
                ),
            );
        }
    }
}

/// One session is one Telegram account, shared by every channel that lists it: the same session
/// name must have the same phone everywhere, and one phone must not have two sessions (two
/// sessions of one account would be two clients of one person, which the pool cannot share).
fn check_accounts_across_channels(document: &ConfigDocument, problems: &mut Problems) {
    let mut phone_of_session: HashMap<&str, (PhoneNumber, String)> = HashMap::new();
    let mut session_of_phone: HashMap<PhoneNumber, (&str, String)> = HashMap::new();
    for (channel_index, channel) in document.output_channels.iter().enumerate() {
        for (agent_index, agent) in channel.agents.iter().enumerate() {
            let (Ok(phone), Ok(_)) = (
                PhoneNumber::parse(&agent.phone),
                SessionName::parse(&agent.session_name),
            ) else {
                continue; // reported on the agent itself
            };
            let here = format!("output_channels[{channel_index}].agents[{agent_index}]");
            match phone_of_session.get(agent.session_name.as_str()) {
                Some((known_phone, there)) if *known_phone != phone => problems.add(
                    format!("{here}.phone"),
                    ProblemKind::SessionPhoneElsewhere {
                        there: there.clone(),
                    },
                    format!(
                        "session {:?} has phone {known_phone} in {there}; one session is one account, so its phone must be the same everywhere",
                        agent.session_name,
                    ),
                ),
                Some(_) => {}
                None => {
                    phone_of_session.insert(agent.session_name.as_str(), (phone.clone(), here.clone()));
                }
            }
            match session_of_phone.get(&phone) {
                Some((known_session, there)) if *known_session != agent.session_name => problems.add(
                    format!("{here}.session_name"),
                    ProblemKind::PhoneSessionElsewhere {
                        session: (*known_session).to_owned(),
                        there: there.clone(),
                    },
                    format!(
                        "phone {phone} already has session {known_session:?} in {there}; one account must have one session",
                    ),
                ),
                Some(_) => {}
                None => {
                    session_of_phone.insert(phone, (agent.session_name.as_str(), here));
                }
            }
        }
    }
}
