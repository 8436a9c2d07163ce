//! The demo's simulated Telegram: sources posting realistic vacancies at a steady pace, two
//! output channels, a CRM channel with three agents and its forum group, recruiters who
//! sometimes reply, an operator who sometimes answers in topics, occasional flood waits, and one
//! agent with a small cold-DM budget that ends in `PEER_FLOOD`.

use std::time::Duration;

use jobbot_core::ids::ChatId;
use jobbot_core::telegram::TopicId;
use jobbot_sim::{NewUser, SimParams, SimWorld};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Everything the demo needs to know about its world.
pub struct DemoWorld {
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

impl DemoWorld {
    pub fn build(seed: u64) -> Self {
        // The simulator's documented defaults, except a seed of the demo's own and today's date
        // (messages are dated by the simulator's clock; monitoring ignores old ones).
        let start_unix_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs() as i64)
            .unwrap_or_default();
        let world = SimWorld::new(SimParams {
            seed,
            start_unix_time,
            ..SimParams::default()
        });
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
            let text = vacancy_text(&mut rng, source_name, recruiter);
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
                let from_contact = message.text.starts_with("👤");
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

/// A realistic vacancy post for `source`, naming `recruiter` as the contact.
fn vacancy_text(rng: &mut StdRng, source: &str, recruiter: &str) -> String {
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
    let reference = rng.random_range(1000..99999);
    format!(
        "{}\n\n#вакансия #{reference}",
        template.replace("{r}", recruiter).replace("{s}", source)
    )
}
