//! The crash suite's checks against the simulator's record (and, for how an auto-response
//! ended, jobbot's store), shared by the tests that stop `jobbot run` processes: one node
//! killed and restarted (`crash.rs`), several nodes on one database (`sim_serve.rs`).
//!
//! - every matching vacancy is notified exactly once in each output channel it matches, and in
//!   no other;
//! - every vacancy's author gets the channel's auto-response at most once, and at least once
//!   unless its outbox message ended failed or expired (typed) or its workflow ended without
//!   one (typed);
//! - every recruiter reply is relayed into the contact's topic exactly once;
//! - every operator answer reaches the contact exactly once.

use std::collections::BTreeMap;

use jobbot_core::ids::ChatId;
use jobbot_core::store::{OutboxStatus, Store};
use jobbot_core::workflow::{AutoResponseEnd, AutoResponseStep, Workflow};
use jobbot_sim::scenario::DemoWorld;
use jobbot_sim::{MessageRecord, RateLimitParams, SimParams};
use jobbot_sim_remote::RemoteConnector;
use jobbot_sim_remote::client::RpcClient;
use jobbot_sim_remote::rpc::AdminRpcClient;

/// The marks the checks find things by (`jobbot_sim::scenario` and the demo's configuration).
pub const AUTO_RESPONSE_MARK: &str = "Увидел вашу вакансию";
pub const RELAYED_MARK: &str = "👤";
pub const ANSWER_MARK: &str = "[answer ";
pub const CRM_CHANNEL: &str = "channel_python";

/// What the checks found.
#[derive(Debug, Default)]
pub struct Tally {
    pub checked: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub problems: Vec<String>,
    /// Things found that happened, by kind: a run without traffic of every kind proves nothing.
    pub seen: BTreeMap<&'static str, u64>,
}

impl Tally {
    /// Something that must have happened exactly `count == 1` times.
    pub fn once(&mut self, kind: &'static str, count: usize, what: impl FnOnce() -> String) {
        self.checked += 1;
        if count > 0 {
            *self.seen.entry(kind).or_default() += 1;
        }
        match count {
            1 => {}
            0 => self.lose(what()),
            _ => self.duplicate(format!("{count}× {}", what())),
        }
    }

    /// Something that may have happened once, never more.
    pub fn at_most_once(&mut self, count: usize, what: impl FnOnce() -> String) {
        self.checked += 1;
        if count > 1 {
            self.duplicate(format!("{count}× {}", what()));
        }
    }

    /// Something that must not have happened at all.
    pub fn never(&mut self, count: usize, what: impl FnOnce() -> String) {
        self.checked += 1;
        if count > 0 {
            self.duplicate(format!("{count}× (unexpected) {}", what()));
        }
    }

    pub fn lose(&mut self, what: String) {
        self.lost += 1;
        self.problems.push(format!("lost: {what}"));
    }

    pub fn duplicate(&mut self, what: String) {
        self.duplicated += 1;
        self.problems.push(format!("duplicated: {what}"));
    }

    pub fn add(&mut self, other: Tally) {
        self.checked += other.checked;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.problems.extend(other.problems);
        for (kind, count) in other.seen {
            *self.seen.entry(kind).or_default() += count;
        }
    }
}

/// The scripted world's parameters with Telegram's limits scaled to the suite's minutes: the
/// same kinds of answers (flood waits that double, `PEER_FLOOD` for the young agent), with waits
/// of seconds instead of minutes, so the last process can finish within [`SETTLE`]. The limits
/// themselves are tested elsewhere (the simulator's contract suite, the engine's tests).
pub fn world_params(seed: u64) -> SimParams {
    let defaults = DemoWorld::params(seed);
    let scaled =
        |limit: RateLimitParams, per_minute: u32, first_wait_seconds: u32| RateLimitParams {
            per_minute,
            burst: limit.burst * 2,
            first_wait_seconds,
            max_wait_seconds: first_wait_seconds * 4,
            violation_memory_seconds: 60,
        };
    SimParams {
        send_messages: scaled(defaults.send_messages, 60, 3),
        resolve_username: scaled(defaults.resolve_username, 30, 5),
        create_forum_topic: scaled(defaults.create_forum_topic, 30, 3),
        ..defaults
    }
}

/// Whether the world waits for nothing: the scripted activity has nothing left to do, jobbot
/// has no workflow running and no message pending, and the checks miss nothing. Otherwise, what
/// is outstanding.
pub async fn settled(
    admin: &RpcClient,
    store: &dyn Store,
    layout: &DemoWorld,
    config: &serde_json::Value,
) -> Result<(), String> {
    let progress = admin.scripted_progress().await.unwrap().unwrap();
    let due = progress.due;
    if due.vacancies + due.replies + due.answers > 0 {
        return Err(format!("the scripted world has this due: {due:?}"));
    }
    let active = store
        .active_workflows()
        .await
        .map_err(|error| error.to_string())?;
    if !active.is_empty() {
        let keys: Vec<_> = active.iter().map(|workflow| &workflow.key).collect();
        return Err(format!("workflows running: {keys:?}"));
    }
    let pending = store
        .pending_outbox()
        .await
        .map_err(|error| error.to_string())?;
    if !pending.is_empty() {
        let keys: Vec<_> = pending
            .iter()
            .map(|message| {
                (
                    message.id,
                    &message.message.idempotency_key,
                    &message.holdup,
                )
            })
            .collect();
        return Err(format!("messages pending: {keys:?}"));
    }
    let missing = check(admin, store, layout, config).await;
    if missing.lost > 0 {
        return Err(format!("missing: {:?}", missing.problems));
    }
    Ok(())
}

/// A channel's filters and sources, as the configuration has them.
struct ChannelRule {
    id: String,
    output: ChatId,
    sources: Vec<String>,
    include: Vec<String>,
    exclude: Vec<String>,
}

impl ChannelRule {
    fn all(config: &serde_json::Value) -> Vec<Self> {
        let strings = |value: &serde_json::Value| -> Vec<String> {
            value
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| item.as_str().map(str::to_lowercase))
                .collect()
        };
        config["output_channels"]
            .as_array()
            .expect("output_channels")
            .iter()
            .map(|channel| {
                assert_eq!(
                    channel["filters"]["require_all_includes"],
                    serde_json::json!(false)
                );
                Self {
                    id: channel["id"].as_str().unwrap().to_owned(),
                    output: ChatId::from_bot_api(channel["telegram_id"].as_i64().unwrap()).unwrap(),
                    sources: strings(&channel["input_sources"])
                        .iter()
                        .map(|source| {
                            source
                                .trim_start_matches("https://t.me/")
                                .trim_start_matches('@')
                                .to_owned()
                        })
                        .collect(),
                    include: strings(&channel["filters"]["include_keywords"]),
                    exclude: strings(&channel["filters"]["exclude_keywords"]),
                }
            })
            .collect()
    }

    /// The original's rule, on its own: case-insensitive substrings, any exclude rejects, any
    /// include accepts.
    fn matches(&self, source: &str, text: &str) -> bool {
        let text = text.to_lowercase();
        self.sources.iter().any(|name| name == source)
            && !self.exclude.iter().any(|keyword| text.contains(keyword))
            && self.include.iter().any(|keyword| text.contains(keyword))
    }
}

/// A vacancy the scripted world posted.
struct Posted {
    source: ChatId,
    source_name: String,
    message: MessageRecord,
    /// `#<reference>`, unique per vacancy.
    tag: String,
}

/// `#<digits>` at the end of a scripted vacancy.
fn reference_tag(text: &str) -> Option<String> {
    let tag = text.rsplit('#').next()?;
    (!tag.is_empty() && tag.chars().all(|c| c.is_ascii_digit())).then(|| format!("#{tag}"))
}

/// Whether `text` holds `tag` as a whole token (`#1001` is not in `#10012`).
fn has_tag(text: &str, tag: &str) -> bool {
    text.match_indices(tag).any(|(at, _)| {
        !text[at + tag.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

/// How many private messages `contact` received from any of `agents` containing `mark`.
async fn received_from_agents(
    admin: &RpcClient,
    contact: ChatId,
    agents: &[ChatId],
    mark: &str,
) -> usize {
    let mut received = 0;
    for agent in agents {
        received += admin
            .received_from(contact, *agent)
            .await
            .unwrap()
            .unwrap()
            .iter()
            .filter(|message| message.text.contains(mark))
            .count();
    }
    received
}

/// Everything the suite promises, checked from the record.
pub async fn check(
    admin: &RpcClient,
    store: &dyn Store,
    layout: &DemoWorld,
    config: &serde_json::Value,
) -> Tally {
    let mut tally = Tally::default();
    let rules = ChannelRule::all(config);
    let mut posted = Vec::new();
    for (name, source) in &layout.sources {
        for message in admin.chat_messages(*source).await.unwrap().unwrap() {
            if message.is_service {
                continue;
            }
            let tag = reference_tag(&message.text).expect("a scripted vacancy ends with its tag");
            posted.push(Posted {
                source: *source,
                source_name: name.clone(),
                message,
                tag,
            });
        }
    }

    // Notifications: exactly once in each channel a vacancy matches, never in another.
    for rule in &rules {
        let notifications = admin.chat_messages(rule.output).await.unwrap().unwrap();
        for vacancy in &posted {
            let count = notifications
                .iter()
                .filter(|message| has_tag(&message.text, &vacancy.tag))
                .count();
            let what = || format!("notification of {} in {}", vacancy.tag, rule.id);
            if rule.matches(&vacancy.source_name, &vacancy.message.text) {
                tally.once("notification", count, what);
            } else {
                tally.never(count, what);
            }
        }
    }

    // Auto-responses: one workflow per matching vacancy, finished; per contact at most one
    // message, and one unless it ended typed without delivery.
    let crm_rule = rules
        .iter()
        .find(|rule| rule.id == CRM_CHANNEL)
        .expect("the CRM channel");
    let agents: Vec<ChatId> = layout.agents.iter().map(|(_, _, id)| *id).collect();
    let mut delivered_by_contact: BTreeMap<String, bool> = BTreeMap::new();
    for vacancy in posted
        .iter()
        .filter(|vacancy| crm_rule.matches(&vacancy.source_name, &vacancy.message.text))
    {
        let key = jobbot_core::workflow::AutoResponse::key(
            CRM_CHANNEL,
            vacancy.source,
            vacancy.message.message_id,
        );
        let Some(record) = store.workflow_by_key(&key).await.unwrap() else {
            tally.lose(format!("auto-response workflow {key}"));
            continue;
        };
        let Workflow::AutoResponse(workflow) = record.state else {
            panic!("{key} is not an auto-response workflow");
        };
        let contact = workflow
            .contact
            .username()
            .expect("the crash world's recruiters have usernames")
            .as_str()
            .to_lowercase();
        tally.checked += 1;
        match &workflow.step {
            AutoResponseStep::Finished { end } => {
                let delivered = matches!(end, AutoResponseEnd::Completed { .. });
                *delivered_by_contact.entry(contact).or_default() |= delivered;
            }
            step => tally.lose(format!("auto-response workflow {key} stuck at {step:?}")),
        }
    }
    for (username, recruiter) in &layout.recruiters {
        let received = received_from_agents(admin, *recruiter, &agents, AUTO_RESPONSE_MARK).await;
        let what = || format!("auto-response to @{username}");
        let outbox = store
            .outbox_by_key(&format!("auto_response:{CRM_CHANNEL}:{}", recruiter.get()))
            .await
            .unwrap();
        match (
            outbox.map(|message| message.status),
            delivered_by_contact.get(username),
        ) {
            // Sent (Telegram answered): exactly once in the record.
            (Some(OutboxStatus::Sent), _) => tally.once("auto-response", received, what),
            // Ended failed or expired, typed (`OutboxEnd`): it may have gone out before the
            // answer was lost, never twice.
            (Some(OutboxStatus::Failed | OutboxStatus::Expired), _) => {
                tally.at_most_once(received, what)
            }
            (Some(OutboxStatus::Pending), _) => tally.lose(format!("{} still pending", what())),
            // Never queued: every workflow for the contact ended typed before that.
            (None, Some(false) | None) => tally.never(received, what),
            (None, Some(true)) => tally.lose(format!("{}: completed without a message", what())),
        }
    }

    // The CRM: each contact's topic, recruiter replies in it, operator answers to the contact.
    let topics = admin.topics(layout.crm_group).await.unwrap().unwrap();
    let group_messages = admin
        .chat_messages(layout.crm_group)
        .await
        .unwrap()
        .unwrap();
    let topic_of = |username: &str| {
        let suffix = format!("(@{username})");
        topics
            .iter()
            .filter(|topic| !topic.deleted && topic.title.to_lowercase().ends_with(&suffix))
            .map(|topic| topic.id)
            .collect::<Vec<_>>()
    };
    for (username, recruiter) in &layout.recruiters {
        let own_topics = topic_of(username);
        tally.at_most_once(own_topics.len(), || format!("topic of @{username}"));
        for agent in &agents {
            let replies = admin
                .received_from(*agent, *recruiter)
                .await
                .unwrap()
                .unwrap();
            for reply in replies {
                let relayed: Vec<&MessageRecord> = group_messages
                    .iter()
                    .filter(|message| {
                        message.text.starts_with(RELAYED_MARK) && message.text.contains(&reply.text)
                    })
                    .collect();
                let in_topic = relayed
                    .iter()
                    .filter(|message| {
                        message
                            .topic
                            .is_some_and(|topic| own_topics.contains(&topic))
                    })
                    .count();
                let what = || format!("reply of @{username} ({:?}) in its topic", reply.text);
                if in_topic == 0 && !relayed.is_empty() {
                    tally.checked += 1;
                    tally.lose(format!("{} (relayed elsewhere)", what()));
                } else {
                    tally.once("relayed reply", relayed.len(), what);
                }
            }
        }
    }
    for answer in group_messages
        .iter()
        .filter(|message| message.author == Some(layout.operator))
    {
        let (Some(topic), Some(at)) = (answer.topic, answer.text.find(ANSWER_MARK)) else {
            continue;
        };
        let tag = &answer.text[at..];
        let contact = topics
            .iter()
            .find(|view| view.id == topic)
            .and_then(|view| view.title.rsplit("(@").next())
            .map(|rest| rest.trim_end_matches(')').to_lowercase());
        let Some((username, recruiter)) = contact.and_then(|contact| {
            layout
                .recruiters
                .iter()
                .find(|(username, _)| *username == contact)
        }) else {
            panic!("an operator answer {tag:?} in topic {topic:?} of nobody known");
        };
        let received = received_from_agents(admin, *recruiter, &agents, tag).await;
        tally.once("operator answer", received, || {
            format!("operator answer {tag} to @{username}")
        });
    }
    tally
}

/// The admin client of the scripted world `jobbot sim serve` runs at `address`, its layout, and
/// the configuration it wrote (`--write-config config_file`).
pub async fn scripted_world(
    address: std::net::SocketAddr,
    config_file: &std::path::Path,
) -> (std::sync::Arc<RpcClient>, DemoWorld, serde_json::Value) {
    let admin = RemoteConnector::new(address).client().await.unwrap();
    let layout = admin
        .scenario_layout()
        .await
        .unwrap()
        .expect("a scripted world");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(config_file).unwrap()).unwrap();
    (admin, layout, config)
}
