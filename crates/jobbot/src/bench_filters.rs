//! The keyword-filter benchmark: messages per second of [`FilterEngine::evaluate_into`] (with
//! one reused [`Matches`], as a hot loop would use it) and of the allocating
//! [`FilterEngine::evaluate`], against the original system's per-channel lower-case substring
//! loop ([`naive_matches`]), measured in the same run for 10, 100 and 1,000 channels of 20
//! keywords each, on two workloads:
//!
//! - **topical**: channels are topical (Python, Go, design, …): most of a channel's keywords come
//!   from one topic's shared vocabulary, the rest from the whole vocabulary, some channels have
//!   exclude keywords. Many channels share each keyword, so a message matches about a fifth of
//!   all channels (about 200 of 1,000): the answer grows with the channel count, and so does the
//!   work of producing it.
//! - **niche**: every channel has keywords of its own (generated product-like names: an
//!   employer's stack, a region's board), shared excludes as in topical; each message mentions
//!   the terms of one to three channels, so it matches a handful of channels at every size. This
//!   shows what the channel count alone costs.
//!
//! Channels and messages are generated from a fixed seed, so two runs measure the same work. The
//! corpus is the hand-written vacancies of `jobbot-core`'s tests plus generated Russian and
//! English vacancies; the niche workload appends one line naming niche terms to each. Before
//! timing, both engines must agree on every message; the benchmark is also a cross-check of the
//! engine against the reference loop.
//!
//! No result is asserted: timings belong in a report, not in a test.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use jobbot_core::config::Filters;
use jobbot_core::filters::{FilterEngine, Matches, naive_matches};
use serde_json::json;

#[derive(Debug, Clone, clap::Args)]
pub struct FiltersBenchArgs {
    /// Channel counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [10, 100, 1000])]
    pub channels: Vec<usize>,
    /// Include keywords per channel.
    #[arg(long, default_value_t = 20)]
    pub keywords_per_channel: usize,
    /// Passes over the corpus per engine and channel count; default: as many as fit in
    /// --seconds (at least one).
    #[arg(long)]
    pub iterations: Option<u32>,
    /// Time budget per engine and channel count when --iterations is not given.
    #[arg(long, default_value_t = 1.5)]
    pub seconds: f64,
    /// Workloads to measure, comma-separated (see the module documentation).
    #[arg(long, value_delimiter = ',', default_values_t = [Workload::Topical, Workload::Niche])]
    pub workloads: Vec<Workload>,
    /// Seed of the generated channels and messages.
    #[arg(long, default_value_t = 20_250_901)]
    pub seed: u64,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// How the generated channels relate to each other and to the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Topical channels sharing a vocabulary: a message matches about a fifth of them.
    Topical,
    /// Channels with keywords of their own: a message matches a handful of them.
    Niche,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Self::Topical => "topical",
            Self::Niche => "niche",
        }
    }
}

impl std::fmt::Display for Workload {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

/// One row of the results table.
#[derive(Debug, Clone, PartialEq)]
pub struct FiltersBenchResult {
    pub workload: Workload,
    pub channels: usize,
    pub keywords_per_channel: usize,
    /// [`FilterEngine::evaluate_into`] with one [`Matches`] reused for every message.
    pub jobbot_msgs_per_s: f64,
    /// [`FilterEngine::evaluate`], which allocates its buffers and answer per message.
    pub jobbot_evaluate_msgs_per_s: f64,
    pub naive_msgs_per_s: f64,
    /// `jobbot_msgs_per_s / naive_msgs_per_s`.
    pub ratio: f64,
    /// How many channels a message matched on average: the size of the answer, which any
    /// engine has to produce, so throughput cannot stay flat when it grows with the channels.
    pub mean_matched_channels: f64,
    /// How many (channel, keyword) pairs the answer to a message listed on average.
    pub mean_matched_keywords: f64,
    pub compile_ms: f64,
}

/// Runs the benchmark, prints the table, and writes the JSON file when asked.
pub fn run_filters_bench(args: FiltersBenchArgs) -> anyhow::Result<ExitCode> {
    if args.keywords_per_channel == 0 || args.channels.contains(&0) {
        anyhow::bail!("--channels and --keywords-per-channel must be positive");
    }
    let mut rng = SplitMix64::new(args.seed);
    let corpus = corpus(&mut rng);
    println!(
        "filters benchmark: {} messages ({} KiB), {} keywords per channel, seed {}",
        corpus.len(),
        corpus.iter().map(String::len).sum::<usize>() / 1024,
        args.keywords_per_channel,
        args.seed
    );
    println!(
        "jobbot: evaluate_into with a reused Matches; evaluate(): allocating per message; \
         naive: the original per-channel loop"
    );
    for workload in &args.workloads {
        println!(
            "  {workload}: {}",
            match workload {
                Workload::Topical => {
                    "channels share a topical vocabulary; a message matches ~20% of all channels, \
                     so the answer grows with the channel count"
                }
                Workload::Niche => {
                    "channels have keywords of their own; a message names 1-3 channels' terms \
                     and matches a handful at every size"
                }
            }
        );
    }
    println!(
        "{:>8} {:>8} {:>9} {:>14} {:>14} {:>14} {:>8} {:>13} {:>13} {:>11}",
        "workload",
        "channels",
        "keywords",
        "jobbot msg/s",
        "evaluate() /s",
        "naive msg/s",
        "ratio",
        "matches/msg",
        "keywords/msg",
        "compile ms"
    );
    let mut results = Vec::new();
    for &workload in &args.workloads {
        for &channel_count in &args.channels {
            // Each size gets its own generator state derived from the seed, so adding a size to
            // the list does not change the channels of the others.
            let mut channel_rng =
                SplitMix64::new(args.seed ^ (channel_count as u64).rotate_left(32));
            let (channels, messages) = match workload {
                Workload::Topical => (
                    generate_channels(&mut channel_rng, channel_count, args.keywords_per_channel),
                    corpus.clone(),
                ),
                Workload::Niche => {
                    let channels = generate_niche_channels(
                        &mut channel_rng,
                        channel_count,
                        args.keywords_per_channel,
                    );
                    let messages = niche_corpus(&mut channel_rng, &corpus, &channels);
                    (channels, messages)
                }
            };
            let result = measure(
                workload,
                &channels,
                args.keywords_per_channel,
                &messages,
                &args,
            )?;
            println!(
                "{:>8} {:>8} {:>9} {:>14.0} {:>14.0} {:>14.0} {:>7.1}x {:>13.1} {:>13.1} {:>11.2}",
                result.workload.name(),
                result.channels,
                result.keywords_per_channel,
                result.jobbot_msgs_per_s,
                result.jobbot_evaluate_msgs_per_s,
                result.naive_msgs_per_s,
                result.ratio,
                result.mean_matched_channels,
                result.mean_matched_keywords,
                result.compile_ms
            );
            results.push(result);
        }
    }
    if let Some(file) = &args.json {
        let document = json!({
            "results": results
                .iter()
                .map(|result| json!({
                    "workload": result.workload.name(),
                    "channels": result.channels,
                    "keywords_per_channel": result.keywords_per_channel,
                    "jobbot_msgs_per_s": result.jobbot_msgs_per_s,
                    "jobbot_evaluate_msgs_per_s": result.jobbot_evaluate_msgs_per_s,
                    "naive_msgs_per_s": result.naive_msgs_per_s,
                    "ratio": result.ratio,
                    "mean_matched_channels": result.mean_matched_channels,
                    "mean_matched_keywords": result.mean_matched_keywords,
                    "compile_ms": result.compile_ms,
                }))
                .collect::<Vec<_>>(),
        });
        std::fs::write(file, serde_json::to_string_pretty(&document)? + "\n")
            .with_context(|| format!("could not write {}", file.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn measure(
    workload: Workload,
    channels: &[Filters],
    keywords_per_channel: usize,
    corpus: &[String],
    args: &FiltersBenchArgs,
) -> anyhow::Result<FiltersBenchResult> {
    let keyed: Vec<(usize, &Filters)> = channels.iter().enumerate().collect();
    let compile_started = Instant::now();
    let engine = FilterEngine::compile(&keyed).context("the generated keywords compile")?;
    let compile_ms = compile_started.elapsed().as_secs_f64() * 1000.0;

    let mut total_matches = 0usize;
    let mut total_keywords = 0usize;
    let mut matches = Matches::new();
    for (number, text) in corpus.iter().enumerate() {
        engine.evaluate_into(text, &mut matches);
        let ours: Vec<usize> = matches.iter().map(|found| found.index).collect();
        let allocating: Vec<usize> = engine
            .evaluate(text)
            .iter()
            .map(|found| found.index)
            .collect();
        let reference = naive_matches(&keyed, text);
        if ours != reference || allocating != reference {
            anyhow::bail!(
                "the engine and the reference loop disagree on {workload} message {number} with \
                 {} channels: {ours:?} / {allocating:?} vs {reference:?}",
                channels.len()
            );
        }
        total_matches += ours.len();
        total_keywords += matches
            .iter()
            .map(|found| found.matched_keywords.len())
            .sum::<usize>();
    }

    let budget = Duration::from_secs_f64(args.seconds.max(0.0));
    // The keyword lists are read so that producing them is part of the measured work, as it is
    // for the monitor, which copies them into notifications.
    let jobbot_msgs_per_s = messages_per_second(corpus, args.iterations, budget, |text| {
        engine.evaluate_into(black_box(text), &mut matches);
        black_box(
            matches
                .iter()
                .map(|found| found.matched_keywords.len())
                .sum::<usize>(),
        )
    });
    let jobbot_evaluate_msgs_per_s = messages_per_second(corpus, args.iterations, budget, |text| {
        black_box(
            engine
                .evaluate(black_box(text))
                .iter()
                .map(|found| found.matched_keywords.len())
                .sum::<usize>(),
        )
    });
    let naive_msgs_per_s = messages_per_second(corpus, args.iterations, budget, |text| {
        black_box(naive_matches(&keyed, black_box(text)).len())
    });
    Ok(FiltersBenchResult {
        workload,
        channels: channels.len(),
        keywords_per_channel,
        jobbot_msgs_per_s,
        jobbot_evaluate_msgs_per_s,
        naive_msgs_per_s,
        ratio: jobbot_msgs_per_s / naive_msgs_per_s,
        mean_matched_channels: total_matches as f64 / corpus.len() as f64,
        mean_matched_keywords: total_keywords as f64 / corpus.len() as f64,
        compile_ms,
    })
}

/// Runs `evaluate` over the whole corpus `iterations` times, or (without) until `budget` has
/// passed, after one untimed warm-up pass.
fn messages_per_second(
    corpus: &[String],
    iterations: Option<u32>,
    budget: Duration,
    mut evaluate: impl FnMut(&str) -> usize,
) -> f64 {
    for text in corpus {
        evaluate(text);
    }
    let started = Instant::now();
    let mut passes = 0u64;
    loop {
        for text in corpus {
            evaluate(text);
        }
        passes += 1;
        let done = match iterations {
            Some(iterations) => passes >= u64::from(iterations.max(1)),
            None => started.elapsed() >= budget,
        };
        if done {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    (passes * corpus.len() as u64) as f64 / seconds
}

// ---------------------------------------------------------------------------------------------
// Generated channels and messages
// ---------------------------------------------------------------------------------------------

/// SplitMix64 (Steele, Lea, Flood 2014). Hand-written rather than `rand::StdRng` because the
/// benchmark's inputs must stay the same across `rand` releases, which `StdRng` does not
/// promise, and so that comparing numbers between commits compares the same work.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (the modulo bias is irrelevant at these sizes).
    fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// One field of IT vacancies: how channels specialise. `roles` are (Russian, English) titles.
struct Topic {
    roles: &'static [(&'static str, &'static str)],
    keywords: &'static [&'static str],
}

// The vocabulary avoids `ё` on purpose: the reference loop does not fold `ё` to `е` (the engine
// does), and the corpus is folded too, so both engines answer the same question.
const TOPICS: &[Topic] = &[
    Topic {
        roles: &[
            ("Python-разработчик", "Python Developer"),
            ("Backend-разработчик на Python", "Backend Engineer (Python)"),
        ],
        keywords: &[
            "python",
            "Django",
            "FastAPI",
            "flask",
            "celery",
            "asyncio",
            "sqlalchemy",
            "pydantic",
            "pytest",
            "aiohttp",
            "pandas",
            "numpy",
            "python developer",
            "python-разработчик",
            "бэкенд на python",
            "poetry",
            "jupyter",
            "django rest framework",
            "drf",
            "uvicorn",
            "gunicorn",
            "mypy",
            "scrapy",
            "airflow",
            "питон",
            "postgresql",
            "redis",
        ],
    },
    Topic {
        roles: &[
            ("Go-разработчик", "Go Developer"),
            ("Golang-инженер", "Golang Engineer"),
        ],
        keywords: &[
            "golang",
            "go developer",
            "go-разработчик",
            "gin",
            "grpc",
            "protobuf",
            "goroutine",
            "микросервисы на go",
            "fiber",
            "gorm",
            "kafka",
            "nats",
            "clickhouse",
            "highload",
            "высоконагруженные системы",
            "prometheus",
            "grafana",
            "etcd",
            "consul",
            "go modules",
            "postgresql",
            "redis",
            "микросервисы",
            "rabbitmq",
        ],
    },
    Topic {
        roles: &[
            ("Frontend-разработчик", "Frontend Developer"),
            ("React-разработчик", "React Engineer"),
        ],
        keywords: &[
            "javascript",
            "TypeScript",
            "React",
            "vue",
            "vue.js",
            "angular",
            "nextjs",
            "next.js",
            "nuxt",
            "redux",
            "mobx",
            "webpack",
            "vite",
            "html",
            "css",
            "scss",
            "tailwind",
            "frontend developer",
            "фронтенд",
            "фронтенд-разработчик",
            "верстка",
            "storybook",
            "jest",
            "playwright",
            "single page application",
            "svelte",
        ],
    },
    Topic {
        roles: &[
            ("Java-разработчик", "Java Developer"),
            ("Kotlin-разработчик", "Kotlin Backend Developer"),
        ],
        keywords: &[
            "java",
            "spring",
            "spring boot",
            "hibernate",
            "kotlin",
            "maven",
            "gradle",
            "jvm",
            "java developer",
            "java-разработчик",
            "microservices",
            "kafka streams",
            "jpa",
            "apache camel",
            "quarkus",
            "junit",
            "scala",
            "akka",
            "tomcat",
            "oracle",
            "kafka",
        ],
    },
    Topic {
        roles: &[
            ("iOS-разработчик", "iOS Developer"),
            ("Android-разработчик", "Android Developer"),
            ("Flutter-разработчик", "Flutter Developer"),
        ],
        keywords: &[
            "ios",
            "android",
            "swift",
            "swiftui",
            "objective-c",
            "kotlin multiplatform",
            "flutter",
            "dart",
            "react native",
            "mobile developer",
            "мобильный разработчик",
            "ios-разработчик",
            "android-разработчик",
            "jetpack compose",
            "xcode",
            "app store",
            "google play",
            "firebase",
            "push-уведомления",
            "combine",
            "rxswift",
            "kotlin",
        ],
    },
    Topic {
        roles: &[
            ("DevOps-инженер", "DevOps Engineer"),
            ("SRE-инженер", "Site Reliability Engineer"),
        ],
        keywords: &[
            "devops",
            "kubernetes",
            "k8s",
            "docker",
            "terraform",
            "ansible",
            "helm",
            "ci/cd",
            "gitlab ci",
            "jenkins",
            "github actions",
            "aws",
            "gcp",
            "azure",
            "linux",
            "nginx",
            "sre",
            "site reliability",
            "мониторинг",
            "prometheus",
            "инфраструктура",
            "облако",
            "yandex cloud",
            "argocd",
            "vault",
            "bash",
            "devops-инженер",
        ],
    },
    Topic {
        roles: &[
            ("Data Scientist", "Data Scientist"),
            ("ML-инженер", "Machine Learning Engineer"),
            ("Аналитик данных", "Data Analyst"),
        ],
        keywords: &[
            "data scientist",
            "machine learning",
            "машинное обучение",
            "deep learning",
            "pytorch",
            "tensorflow",
            "computer vision",
            "nlp",
            "llm",
            "data engineer",
            "spark",
            "hadoop",
            "airflow",
            "dbt",
            "sql",
            "аналитик данных",
            "data analyst",
            "tableau",
            "power bi",
            "a/b тесты",
            "статистика",
            "catboost",
            "scikit-learn",
            "mlops",
            "рекомендательные системы",
            "python",
        ],
    },
    Topic {
        roles: &[
            ("QA-инженер", "QA Engineer"),
            ("Тестировщик", "QA Automation Engineer"),
        ],
        keywords: &[
            "qa engineer",
            "тестировщик",
            "автотесты",
            "selenium",
            "ручное тестирование",
            "нагрузочное тестирование",
            "jmeter",
            "postman",
            "test cases",
            "тест-кейсы",
            "qa automation",
            "cypress",
            "allure",
            "регресс",
            "баг-репорты",
            "testrail",
            "appium",
            "api testing",
            "тестирование",
        ],
    },
    Topic {
        roles: &[
            ("Продуктовый дизайнер", "Product Designer"),
            ("UI/UX-дизайнер", "UI/UX Designer"),
            ("Графический дизайнер", "Graphic Designer"),
        ],
        keywords: &[
            "figma",
            "дизайнер",
            "ui/ux",
            "product designer",
            "продуктовый дизайнер",
            "веб-дизайн",
            "photoshop",
            "illustrator",
            "motion design",
            "after effects",
            "дизайн-система",
            "прототипы",
            "графический дизайнер",
            "иллюстратор",
            "brand identity",
            "айдентика",
            "blender",
            "tilda",
            "ux-исследования",
        ],
    },
    Topic {
        roles: &[
            ("Менеджер проектов", "Project Manager"),
            ("Product Manager", "Product Manager"),
            ("Системный аналитик", "Business Analyst"),
        ],
        keywords: &[
            "project manager",
            "product manager",
            "продакт",
            "менеджер проектов",
            "scrum",
            "agile",
            "kanban",
            "jira",
            "confluence",
            "team lead",
            "тимлид",
            "head of engineering",
            "delivery manager",
            "product owner",
            "roadmap",
            "стейкхолдеры",
            "бизнес-аналитик",
            "системный аналитик",
            "bpmn",
            "uml",
        ],
    },
    Topic {
        roles: &[
            ("Программист 1С", "PHP Developer"),
            ("PHP-разработчик", "Bitrix Developer"),
            ("C#-разработчик", ".NET Developer"),
        ],
        keywords: &[
            "1с:предприятие",
            "программист 1с",
            "битрикс",
            "bitrix",
            "php",
            "laravel",
            "symfony",
            "wordpress",
            "yii",
            "erp",
            "sap",
            "abap",
            "pl/sql",
            "delphi",
            "c#",
            ".net",
            "asp.net",
            "unity",
            "gamedev",
            "unreal engine",
            "mysql",
        ],
    },
    Topic {
        roles: &[
            ("Rust-разработчик", "Rust Engineer"),
            ("C++-разработчик", "C++ Developer"),
            ("Blockchain-разработчик", "Smart Contract Engineer"),
        ],
        keywords: &[
            "rust",
            "tokio",
            "async rust",
            "embedded",
            "c++",
            "linux kernel",
            "системное программирование",
            "low latency",
            "blockchain",
            "solidity",
            "смарт-контракты",
            "криптобиржа",
            "defi",
            "trading",
            "hft",
            "алготрейдинг",
            "fpga",
            "verilog",
            "stl",
            "qt",
        ],
    },
];

/// Words any vacancy may contain: format, level, place, conditions.
const GENERAL_KEYWORDS: &[&str] = &[
    "удаленка",
    "удаленно",
    "remote",
    "офис",
    "гибрид",
    "full-time",
    "полная занятость",
    "part-time",
    "фриланс",
    "проектная работа",
    "senior",
    "middle",
    "lead",
    "стартап",
    "релокация",
    "relocation",
    "белая зарплата",
    "дмс",
    "оформление по тк",
    "самозанятый",
    "вилка",
    "зарплата",
    "salary",
    "equity",
    "опцион",
    "hiring",
    "вакансия",
    "ищем",
    "english",
    "b2",
    "москва",
    "санкт-петербург",
    "казань",
    "минск",
    "алматы",
    "тбилиси",
    "белград",
    "кипр",
    "дубай",
    "eu timezone",
    "git",
    "rest api",
    "code review",
    "ревью",
    "английский",
];

const EXCLUDE_KEYWORDS: &[&str] = &[
    "стажировка",
    "стажер",
    "intern",
    "internship",
    "unpaid",
    "без оплаты",
    "казино",
    "casino",
    "ставки",
    "беттинг",
    "gambling",
    "арбитраж трафика",
    "млм",
    "сетевой маркетинг",
    "крипта",
    "web3",
    "nft",
    "forex",
    "junior",
    "волонтер",
    "обучение за наш счет",
];

/// Channels of `keywords_per_channel` distinct include keywords, about 85% from one topic and
/// the rest from the other topics' keywords; 40% of channels also have one to three excludes.
/// One channel in ten is the "Python, but remote" kind instead: two includes, one from its topic
/// and one general word, both required. Real channels are topical like this; drawing uniformly
/// from the whole vocabulary would make a message match a third of all channels, an answer no
/// configuration gives and one whose size alone would decide the throughput.
fn generate_channels(
    rng: &mut SplitMix64,
    count: usize,
    keywords_per_channel: usize,
) -> Vec<Filters> {
    let technical: Vec<&str> = TOPICS
        .iter()
        .flat_map(|topic| topic.keywords.iter().copied())
        .collect();
    (0..count)
        .map(|_| {
            let topic = rng.pick(TOPICS);
            let require_all_includes = rng.chance(10);
            let mut include_keywords: Vec<String> = Vec::with_capacity(keywords_per_channel);
            if require_all_includes {
                include_keywords.push((*rng.pick(topic.keywords)).to_owned());
                include_keywords.push((*rng.pick(GENERAL_KEYWORDS)).to_owned());
            } else {
                let mut attempts = 0;
                while include_keywords.len() < keywords_per_channel
                    && attempts < keywords_per_channel * 50
                {
                    attempts += 1;
                    let keyword = if rng.chance(85) {
                        *rng.pick(topic.keywords)
                    } else {
                        *rng.pick(&technical)
                    };
                    if !include_keywords.iter().any(|known| known == keyword) {
                        include_keywords.push(keyword.to_owned());
                    }
                }
            }
            let exclude_count = if rng.chance(40) { 1 + rng.below(3) } else { 0 };
            let mut exclude_keywords: Vec<String> = Vec::new();
            for _ in 0..exclude_count {
                let keyword = *rng.pick(EXCLUDE_KEYWORDS);
                if !exclude_keywords.iter().any(|known| known == keyword) {
                    exclude_keywords.push(keyword.to_owned());
                }
            }
            Filters {
                include_keywords,
                exclude_keywords,
                require_all_includes,
            }
        })
        .collect()
}

/// Channels of `keywords_per_channel` include keywords of their own: generated product-like
/// names (see [`niche_term`]), so no two channels share an include. 10% require two of them
/// together; 40% have one to three excludes from the same shared list as the topical channels.
fn generate_niche_channels(
    rng: &mut SplitMix64,
    count: usize,
    keywords_per_channel: usize,
) -> Vec<Filters> {
    let mut taken = std::collections::HashSet::new();
    (0..count)
        .map(|_| {
            let require_all_includes = rng.chance(10);
            let wanted = if require_all_includes {
                keywords_per_channel.min(2)
            } else {
                keywords_per_channel
            };
            let mut include_keywords = Vec::with_capacity(wanted);
            while include_keywords.len() < wanted {
                let term = niche_term(rng);
                if taken.insert(term.clone()) {
                    include_keywords.push(term);
                }
            }
            let exclude_count = if rng.chance(40) { 1 + rng.below(3) } else { 0 };
            let mut exclude_keywords: Vec<String> = Vec::new();
            for _ in 0..exclude_count {
                let keyword = *rng.pick(EXCLUDE_KEYWORDS);
                if !exclude_keywords.iter().any(|known| known == keyword) {
                    exclude_keywords.push(keyword.to_owned());
                }
            }
            Filters {
                include_keywords,
                exclude_keywords,
                require_all_includes,
            }
        })
        .collect()
}

/// A pronounceable made-up name of four syllables, Latin or Cyrillic (`kalomeru`, `зотиваре`):
/// long enough that it does not occur by chance inside the vacancy text or inside another term.
fn niche_term(rng: &mut SplitMix64) -> String {
    const LATIN: (&[&str], &[&str]) = (
        &[
            "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
        ],
        &["a", "e", "i", "o", "u"],
    );
    const CYRILLIC: (&[&str], &[&str]) = (
        &[
            "б", "д", "ж", "з", "к", "л", "м", "н", "п", "р", "с", "т", "ф", "ш",
        ],
        &["а", "е", "и", "о", "у"],
    );
    let (consonants, vowels) = if rng.chance(50) { LATIN } else { CYRILLIC };
    (0..4)
        .map(|_| format!("{}{}", rng.pick(consonants), rng.pick(vowels)))
        .collect()
}

/// The corpus with one line appended to each message, naming two terms each of one to three
/// random channels (both terms, so a channel requiring two of its includes can match too).
fn niche_corpus(rng: &mut SplitMix64, corpus: &[String], channels: &[Filters]) -> Vec<String> {
    corpus
        .iter()
        .map(|text| {
            let mentioned = 1 + rng.below(3);
            let mut terms = Vec::new();
            for _ in 0..mentioned {
                let channel = rng.pick(channels);
                for _ in 0..2 {
                    let term = rng.pick(&channel.include_keywords);
                    terms.push(capitalise(term));
                }
            }
            format!(
                "{text}\n\nСтек проекта / project stack: {}.",
                terms.join(", ")
            )
        })
        .collect()
}

fn capitalise(word: &str) -> String {
    let mut characters = word.chars();
    match characters.next() {
        Some(first) => first.to_uppercase().chain(characters).collect(),
        None => String::new(),
    }
}

const HAND_WRITTEN: &[&str] = &[
    include_str!("../../jobbot-core/tests/corpus/en_frontend_dm.txt"),
    include_str!("../../jobbot-core/tests/corpus/en_rust_remote.txt"),
    include_str!("../../jobbot-core/tests/corpus/ru_crypto_casino.txt"),
    include_str!("../../jobbot-core/tests/corpus/ru_designer_eight_phone.txt"),
    include_str!("../../jobbot-core/tests/corpus/ru_go_channel_plug.txt"),
    include_str!("../../jobbot-core/tests/corpus/ru_group_post_by_user.txt"),
    include_str!("../../jobbot-core/tests/corpus/ru_links_no_person.txt"),
    include_str!("../../jobbot-core/tests/corpus/ru_only_email.txt"),
    include_str!("../../jobbot-core/tests/corpus/ru_python_backend.txt"),
    include_str!("../../jobbot-core/tests/corpus/ru_short.txt"),
    include_str!("../../jobbot-core/tests/corpus/ua_qa_phone.txt"),
];

const GENERATED_MESSAGES: usize = 189;

/// The hand-written vacancies and generated ones, `ё` folded to `е` (see [`TOPICS`]).
fn corpus(rng: &mut SplitMix64) -> Vec<String> {
    HAND_WRITTEN
        .iter()
        .map(|text| (*text).to_owned())
        .chain((0..GENERATED_MESSAGES).map(|_| generate_vacancy(rng)))
        .map(|text| text.replace('ё', "е").replace('Ё', "Е"))
        .collect()
}

fn generate_vacancy(rng: &mut SplitMix64) -> String {
    const COMPANIES: &[&str] = &[
        "ООО «Северный Код»",
        "Ferrous Payments",
        "Альфа Диджитал",
        "Nimbus Labs",
        "ТехноПарк",
        "Kite Analytics",
        "Облачные Решения",
        "Brightwave",
        "Маркетплейс Плюс",
        "Quantum Retail",
    ];
    const LEVELS: &[&str] = &["Junior", "Middle", "Senior", "Middle+/Senior", "Lead"];
    const NAMES: &[&str] = &[
        "anna", "ivan", "olga", "dmitry", "maria", "alex", "kate", "sergey",
    ];
    const TASKS_RU: &[&str] = &[
        "развивать бэкенд маркетплейса",
        "писать тесты и ревьюить код коллег",
        "проектировать новые сервисы",
        "оптимизировать производительность",
        "участвовать в планировании спринтов",
        "поддерживать внутренние инструменты",
    ];
    const TASKS_EN: &[&str] = &[
        "own services end to end",
        "review code and mentor colleagues",
        "design new features with product",
        "improve reliability and latency",
        "ship weekly to production",
    ];

    let topic = rng.pick(TOPICS);
    let (role_ru, role_en) = *rng.pick(topic.roles);
    let stack_size = 4 + rng.below(4);
    let mut stack: Vec<&str> = (0..stack_size).map(|_| *rng.pick(topic.keywords)).collect();
    stack.push(*rng.pick(GENERAL_KEYWORDS));
    stack.dedup();
    let stack = stack.join(", ");
    let extra = rng.pick(topic.keywords);
    let level = rng.pick(LEVELS);
    let company = rng.pick(COMPANIES);
    let name = rng.pick(NAMES);
    let number = rng.below(100);
    let salary_low = 80 + rng.below(250);
    let salary_high = salary_low + 30 + rng.below(150);
    let years = 1 + rng.below(6);
    let place = rng.pick(GENERAL_KEYWORDS);
    let trap = if rng.chance(12) {
        format!(" ({})", rng.pick(EXCLUDE_KEYWORDS))
    } else {
        String::new()
    };
    if rng.chance(60) {
        format!(
            "🔥 Вакансия: {role_ru} ({level}){trap}\n\n🏢 Компания: {company}\n\
             💰 Зарплата: {salary_low} 000 – {salary_high} 000 ₽ на руки\n📍 Формат: {place}\n\n\
             Стек: {stack}.\n\nЧто делать:\n— {};\n— {}.\n\n\
             Требования: опыт от {years} лет, уверенное знание {extra}.\n\n\
             📩 Пишите @hr_{name}_{number} или на почту {name}.hr@example.ru\n📞 +7 9{:02} {:03}-{:02}-{:02}",
            rng.pick(TASKS_RU),
            rng.pick(TASKS_RU),
            rng.below(100),
            rng.below(1000),
            rng.below(100),
            rng.below(100),
        )
    } else {
        format!(
            "{role_en} — {place} ({level}){trap}\n\n{company} is hiring! You'll {} and {} \
             with {stack}.\nSalary: ${salary_low},000 - ${salary_high},000 + equity.\n\n\
             Requirements: {years}+ years of production experience, {extra}.\n\n\
             To apply, DM https://t.me/{name}_recruits{number} or send a CV to jobs@{name}.dev",
            rng.pick(TASKS_EN),
            rng.pick(TASKS_EN),
        )
    }
}
