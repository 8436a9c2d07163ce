//! Ready-made worlds with their own activity, shared by `jobbot demo` (in process) and
//! `jobbot sim serve --world demo|scripted` (in its own process).
//!
//! The layout ([`DemoWorld`]): three sources posting realistic vacancies, two output channels, a
//! CRM channel with three agents and its forum group, recruiters (two of whom accept messages from
//! contacts only), an operator, and one agent with a small cold-DM budget that ends in
//! `PEER_FLOOD`. [`DemoWorld::config_json`] is the matching `channels_config.json`.
//!
//! Two activities drive it:
//! - the demo's ([`DemoWorld::run_activity`]): a vacancy every `pace` in a random source,
//!   recruiters who sometimes reply, an operator who sometimes answers in topics;
//! - the scripted one ([`Scripted`]): a fixed number of vacancies, each drawn from the seed and
//!   its index, every recruiter replying once to each agent that wrote to them, and the operator
//!   answering every relayed contact message in its topic. The first vacancy waits until the
//!   main account has connected once. Each step is derived from the world's
//!   record plus a counter of posts made, so a restart (of the simulator or of jobbot) resumes
//!   it without repeating or skipping anything: the crash suite's traffic.

use std::time::Duration;

use jobbot_core::ids::ChatId;
use jobbot_core::telegram::TopicId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::{MessageRecord, NewUser, SimParams, SimWorld};

/// Everything the demo needs to know about its world. The ids (everything but the world itself)
/// serialise, so a saved world's scenario can be driven again after a restart.
#[derive(Clone, Serialize, Deserialize)]
pub struct DemoWorld {
    #[serde(skip, default = "detached")]
    pub world: SimWorld,
    pub agents: Vec<(String, String, ChatId)>,
    pub sources: Vec<(String, ChatId)>,
    pub python_channel: ChatId,
    pub design_channel: ChatId,
    pub crm_group: ChatId,
    pub operator: ChatId,
    pub recruiters: Vec<(String, ChatId)>,
    pub crm_invite: String,
}

const AGENTS: [(&str, &str); 3] = [
    ("agent_demo_1", "+79990000001"),
    ("agent_demo_2", "+79990000002"),
    ("agent_demo_3", "+79990000003"),
];

const RECRUITER_NAMES: [(&str, &str); 12] = [
    ("anna_hr_it", "Анна"),
    ("ivan_recruiter", "Иван"),
    ("olga_talent", "Ольга"),
    ("sergey_cto_hiring", "Сергей"),
    ("maria_jobs_lead", "Мария"),
    ("kate_people_ops", "Kate"),
    ("john_hiring_mgr", "John"),
    ("elena_hrbp", "Елена"),
    ("dmitry_techlead", "Дмитрий"),
    ("alex_founder_io", "Alex"),
    ("natalia_hr_team", "Наталья"),
    ("pavel_eng_manager", "Павел"),
];

/// A placeholder until [`DemoWorld::attach`] puts the loaded world in.
fn detached() -> SimWorld {
    SimWorld::new(SimParams::default())
}

impl DemoWorld {
    /// The simulator's documented defaults, except a seed of the demo's own and today's date
    /// (messages are dated by the simulator's clock; monitoring ignores old ones).
    pub fn params(seed: u64) -> SimParams {
        let start_unix_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs() as i64)
            .unwrap_or_default();
        SimParams {
            seed,
            start_unix_time,
            ..SimParams::default()
        }
    }

    pub fn build(seed: u64) -> Self {
        Self::build_in(SimWorld::new(Self::params(seed)))
    }

    /// Builds the layout in `world` (which must not have its usernames or phones yet).
    pub fn build_in(world: SimWorld) -> Self {
        let main_account = world.create_account(
            "bot_session",
            NewUser::named("Jobbot").phone("+79990000000"),
        );
        let agents: Vec<(String, String, ChatId)> = AGENTS
            .iter()
            .enumerate()
            .map(|(index, (session, phone))| {
                let id = world.create_account(
                    session,
                    NewUser::named(&format!("Агент {}", index + 1)).phone(phone),
                );
                (session.to_string(), phone.to_string(), id)
            })
            .collect();
        // One agent's account is young: Telegram limits its chats with strangers sooner.
        world.set_cold_dm_budget(agents[2].2, 4);

        let publisher = world.create_user(NewUser::named("Publisher"));
        let sources: Vec<(String, ChatId)> = [
            "python_jobs_demo",
            "remote_it_demo",
            "design_vacancies_demo",
        ]
        .iter()
        .map(|name| {
            let channel = world.create_channel(&format!("@{name}"), Some(name), &[publisher]);
            world.add_member(channel, main_account);
            (name.to_string(), channel)
        })
        .collect();
        let python_channel = world.create_channel("Python вакансии (демо)", None, &[main_account]);
        let design_channel = world.create_channel("Дизайн вакансии (демо)", None, &[main_account]);
        let operator = world.create_user(NewUser::named("Оператор"));
        let crm_group =
            world.create_group("Python — CRM (демо)", None, true, &[main_account, operator]);
        // The group's owner made the agents admins with the right to manage topics (creating a
        // topic needs it); they also have the invite link the configuration names.
        for (_, _, agent) in &agents {
            world.add_admin(crm_group, *agent);
        }
        let crm_invite = world.create_invite(crm_group);
        let recruiters = RECRUITER_NAMES
            .iter()
            .enumerate()
            .map(|(index, (username, name))| {
                let user = NewUser::named(name).username(username);
                // Some people accept messages from contacts only.
                let user = if index % 6 == 5 {
                    user.refusing_strangers()
                } else {
                    user
                };
                (username.to_string(), world.create_user(user))
            })
            .collect();
        world.create_bot("python_jobs_alerts_bot", "Alerts");
        Self {
            world,
            agents,
            sources,
            python_channel,
            design_channel,
            crm_group,
            operator,
            recruiters,
            crm_invite,
        }
    }

    /// The same layout, driving `world` (a loaded copy of the world it was built in).
    pub fn attach(mut self, world: SimWorld) -> Self {
        self.world = world;
        self
    }

    /// The demo's configuration file: two output channels, the Python one with CRM and three
    /// agents. Pacing is the seed's 20 a minute, with a burst a little above what the simulated
    /// Telegram tolerates, so flood waits happen now and then and the failover shows.
    pub fn config_json(&self) -> serde_json::Value {
        let agents: Vec<serde_json::Value> = self
            .agents
            .iter()
            .map(|(session, phone, _)| serde_json::json!({"phone": phone, "session_name": session}))
            .collect();
        serde_json::json!({
            "output_channels": [
                {
                    "id": "channel_python",
                    "name": "Python Jobs (demo)",
                    "telegram_id": self.python_channel.get(),
                    "enabled": true,
                    "input_sources": ["@python_jobs_demo", "https://t.me/remote_it_demo"],
                    "filters": {"include_keywords": ["python", "django", "fastapi", "backend"], "exclude_keywords": ["стажировка"], "require_all_includes": false},
                    "crm_enabled": true,
                    "crm_group_id": self.crm_group.get(),
                    "crm_invite_link": format!("https://t.me/+{}", self.crm_invite),
                    "agents": agents,
                    "auto_response_enabled": true,
                    "auto_response_template": "Здравствуйте, {first_name}! Увидел вашу вакансию в «{source_title}» — расскажите, пожалуйста, подробнее?",
                    "human_delay": {"min_seconds": 1, "max_seconds": 3},
                    "agent_pacing": {"messages_per_minute": 20, "burst": 6}
                },
                {
                    "id": "channel_design",
                    "name": "Design Jobs (demo)",
                    "telegram_id": self.design_channel.get(),
                    "enabled": true,
                    "input_sources": ["@design_vacancies_demo", "@remote_it_demo"],
                    "filters": {"include_keywords": ["figma", "дизайнер", "designer", "ui/ux"], "exclude_keywords": [], "require_all_includes": false}
                }
            ]
        })
    }

    /// Drives the world forever: a vacancy every `pace` in a random source, recruiters replying
    /// to agents that wrote to them, the operator answering in topics.
    pub async fn run_activity(&self, pace: Duration, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut answered: std::collections::HashSet<(ChatId, i32)> =
            std::collections::HashSet::new();
        let mut replied: std::collections::HashSet<ChatId> = std::collections::HashSet::new();
        let mut interval = tokio::time::interval(pace);
        loop {
            interval.tick().await;
            let (source_name, source) = &self.sources[rng.random_range(0..self.sources.len())];
            let (recruiter, _) = &self.recruiters[rng.random_range(0..self.recruiters.len())];
            let reference = rng.random_range(1000..99999);
            let text = vacancy_text(&mut rng, source_name, recruiter, reference);
            self.world.channel_post(*source, &text);

            // Recruiters who got a message reply now and then.
            for (_, recruiter_id) in &self.recruiters {
                for (_, _, agent) in &self.agents {
                    let got = !self.world.received_from(*recruiter_id, *agent).is_empty();
                    if got && !replied.contains(recruiter_id) && rng.random_bool(0.5) {
                        replied.insert(*recruiter_id);
                        let reply = REPLIES[rng.random_range(0..REPLIES.len())];
                        self.world.send_direct(*recruiter_id, *agent, reply);
                    }
                }
            }
            // The operator answers contacts' messages in topics now and then.
            let messages = self.world.chat_messages(self.crm_group);
            for message in messages.iter().rev().take(20) {
                let Some(topic) = message.topic else { continue };
                let from_contact = is_relayed_contact_message(message);
                if from_contact
                    && answered.insert((self.crm_group, message.message_id))
                    && rng.random_bool(0.6)
                {
                    let answer = OPERATOR_ANSWERS[rng.random_range(0..OPERATOR_ANSWERS.len())];
                    let _ = self.world.group_post(
                        self.crm_group,
                        self.operator,
                        Some(TopicId(topic.0)),
                        answer,
                    );
                }
            }
        }
    }
}

/// The CRM relay copies a contact's message into its topic under this mark (jobbot-engine's
/// `crm`): the messages an operator answers.
const RELAYED_CONTACT_MARK: &str = "👤";

fn is_relayed_contact_message(message: &MessageRecord) -> bool {
    !message.is_service && message.text.starts_with(RELAYED_CONTACT_MARK)
}

/// The scripted activity over a [`DemoWorld`] layout (see the module documentation). It
/// serialises with its progress, so a restarted simulator goes on where it stopped.
#[derive(Clone, Serialize, Deserialize)]
pub struct Scripted {
    pub layout: DemoWorld,
    pub seed: u64,
    /// Vacancies to post in all.
    pub posts: u32,
    /// Vacancies posted so far.
    #[serde(default)]
    pub posted: u32,
}

/// What one [`Scripted::step`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    pub vacancies: u32,
    pub replies: u32,
    pub answers: u32,
}

impl Scripted {
    pub fn new(layout: DemoWorld, seed: u64, posts: u32) -> Self {
        Self {
            layout,
            seed,
            posts,
            posted: 0,
        }
    }

    /// One step: the next vacancy while any are left, then every recruiter reply and operator
    /// answer that is due. Everything but the vacancy counter is read from the world's record, so
    /// a step repeated after a restart does nothing twice.
    pub fn step(&mut self) -> StepReport {
        let mut report = StepReport::default();
        if self.posted < self.posts && self.listened_to() {
            self.post_vacancy(self.posted);
            self.posted += 1;
            report.vacancies = 1;
        }
        report.replies = self.reply_to_first_messages(Do::Act);
        report.answers = self.answer_relayed_messages(Do::Act);
        report
    }

    /// Whether the main account has ever connected. The sources wait for it: a session that never
    /// connected has no update position to catch up from (Telegram's `updates.getState` starts
    /// it), so posts before its first connection would be history, not traffic.
    fn listened_to(&self) -> bool {
        let main = jobbot_core::ids::SessionName::main();
        self.layout
            .world
            .connection_history()
            .iter()
            .any(|entry| entry.session == main)
    }

    /// What the next step would do besides posting (recruiter replies and operator answers due
    /// now), without doing it: the crash suite waits until nothing is due and nothing is posted.
    pub fn due(&self) -> StepReport {
        StepReport {
            vacancies: self.posts - self.posted.min(self.posts),
            replies: self.reply_to_first_messages(Do::Count),
            answers: self.answer_relayed_messages(Do::Count),
        }
    }

    /// Vacancy `index`, drawn from the seed and the index alone. Its `#reference` is unique, so
    /// every post is a new vacancy, never a repost.
    fn post_vacancy(&self, index: u32) {
        let layout = &self.layout;
        let mut rng =
            StdRng::seed_from_u64(self.seed ^ u64::from(index).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (source_name, source) = &layout.sources[rng.random_range(0..layout.sources.len())];
        let (recruiter, _) = &layout.recruiters[rng.random_range(0..layout.recruiters.len())];
        let text = vacancy_text(&mut rng, source_name, recruiter, 100_000 + index);
        layout.world.channel_post(*source, &text);
    }

    /// Every recruiter answers each agent that wrote to them, once: the reply names both, so it
    /// can be found in the CRM topic it must be relayed to.
    fn reply_to_first_messages(&self, what: Do) -> u32 {
        let layout = &self.layout;
        let mut replies = 0;
        for (index, (recruiter_name, recruiter)) in layout.recruiters.iter().enumerate() {
            for (session, _, agent) in &layout.agents {
                let wrote = !layout.world.received_from(*recruiter, *agent).is_empty();
                let answered = !layout.world.received_from(*agent, *recruiter).is_empty();
                if wrote && !answered {
                    replies += 1;
                    if what == Do::Count {
                        continue;
                    }
                    let reply = REPLIES[index % REPLIES.len()];
                    let text = format!("{reply} [{recruiter_name} → {session}]");
                    layout.world.send_direct(*recruiter, *agent, &text);
                }
            }
        }
        replies
    }

    /// In every live topic of the CRM group, the operator answers each relayed contact message
    /// once (answers counted by the operator's own posts in that topic).
    fn answer_relayed_messages(&self, what: Do) -> u32 {
        let layout = &self.layout;
        let operator = layout.operator;
        let group = layout.crm_group;
        let mut per_topic: std::collections::BTreeMap<TopicId, (u32, u32)> = Default::default();
        for message in layout.world.chat_messages(group) {
            let Some(topic) = message.topic else { continue };
            let (relayed, answered) = per_topic.entry(topic).or_default();
            if message.author == Some(operator) {
                *answered += 1;
            } else if is_relayed_contact_message(&message) {
                *relayed += 1;
            }
        }
        let mut answers = 0;
        for (topic, (relayed, answered)) in per_topic {
            for number in answered..relayed {
                if what == Do::Count {
                    answers += 1;
                    continue;
                }
                let answer = OPERATOR_ANSWERS[number as usize % OPERATOR_ANSWERS.len()];
                let text = format!("{answer} [answer {}-{}]", topic.0, number + 1);
                // A topic deleted meanwhile refuses the post; nothing is due there any more.
                if layout
                    .world
                    .group_post(group, operator, Some(topic), &text)
                    .is_ok()
                {
                    answers += 1;
                }
            }
        }
        answers
    }
}

/// Whether a scripted step acts or only counts what it would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Do {
    Act,
    Count,
}

const REPLIES: [&str; 4] = [
    "Добрый день! Да, вакансия актуальна. Пришлите, пожалуйста, резюме.",
    "Hi! Yes, still open. Could you share your CV and salary expectations?",
    "Здравствуйте. Какой у вас опыт с Django?",
    "Thanks for reaching out — are you available for a call this week?",
];

const OPERATOR_ANSWERS: [&str; 3] = [
    "Спасибо! Отправляю резюме в течение часа.",
    "Опыт с Django — 5 лет, последние 2 года FastAPI. Удобно созвониться завтра?",
    "Sure — tomorrow 11:00 CET works. I'll send the CV right away.",
];

/// A realistic vacancy post for `source`, naming `recruiter` as the contact, tagged `#reference`.
fn vacancy_text(rng: &mut StdRng, source: &str, recruiter: &str, reference: u32) -> String {
    let python = [
        "🐍 Python Backend Developer (Django/DRF)\n\nКомпания: финтех-стартап, удалённо по РФ.\nЗадачи: развитие API, интеграции с платёжными системами, PostgreSQL, Celery.\nЗП: 250–320 тыс. ₽ на руки.\n\nРезюме и вопросы: @{r}",
        "Senior Python Engineer — FastAPI, async, Kafka\nRemote (EU time zones), full-time, $5,000–6,500/month.\nWe build logistics APIs used by 300+ warehouses.\n\nApply: DM @{r} with your CV or write to jobs@example.com",
        "Ищем backend-разработчика (Python) в продуктовую команду.\nСтек: Python 3.12, FastAPI, PostgreSQL, Redis, Docker.\nГибрид, Москва. Оклад до 280 000 ₽.\nКонтакт для отклика: t.me/{r}\nПодписывайтесь на наш канал @{s}",
    ];
    let design = [
        "🎨 UI/UX дизайнер в мобильное приложение (Figma)\nУдалённо, проектная занятость с переходом в штат.\nПортфолио присылайте: @{r}",
        "Product Designer (Figma, design systems)\nRemote, part-time 20h/week, €35/hour.\nPortfolio to @{r} — tell us about a product you shipped.",
    ];
    let other = [
        "Стажировка Python для студентов — без оплаты, 3 месяца. Пишите @{r}",
        "Frontend developer (React, TypeScript), офис в Санкт-Петербурге, 220–260 тыс. ₽. Контакт: @{r}, тел. +7 (921) 555-12-34",
    ];
    let pool: Vec<&str> = match source {
        "design_vacancies_demo" => design.to_vec(),
        "python_jobs_demo" => python.to_vec(),
        _ => python
            .iter()
            .chain(design.iter())
            .chain(other.iter())
            .copied()
            .collect(),
    };
    let template = pool[rng.random_range(0..pool.len())];
    // A unique tail keeps repeated templates from being taken for reposts of one vacancy.
    format!(
        "{}\n\n#вакансия #{reference}",
        template.replace("{r}", recruiter).replace("{s}", source)
    )
}
