//! `jobbot bench store`: what a commit that is on disk when it returns (`synchronous=FULL`, what
//! jobbot runs with) costs against `synchronous=NORMAL`, on the file system the benchmark's
//! directory is on. The workload is an outbox message's life as the engine writes it, one commit
//! per step: enqueue, begin the attempt, note a holdup, mark it sent.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use jobbot_core::ids::{SessionName, Username};
use jobbot_core::store::{
    Holdup, NewOutboxMessage, OutboxKind, Recipient, SenderSelection, Store, UnixMillis,
};
use jobbot_core::telegram::{MessageContent, RandomId, SentMessage, TelegramError};
use jobbot_store::{Durability, SqliteStore};

/// Commits per message in the workload.
const COMMITS_PER_MESSAGE: u32 = 4;

pub fn run(
    messages: u32,
    directory: Option<&std::path::Path>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start a runtime")?;
    let base = directory
        .map_or_else(std::env::temp_dir, std::path::Path::to_path_buf)
        .join(format!("jobbot-bench-store-{}", std::process::id()));
    writeln!(
        out,
        "{messages} outbox messages, {COMMITS_PER_MESSAGE} commits each (enqueue, begin attempt, holdup, sent), one at a time, in {}",
        base.display()
    )?;
    let mut results = Vec::new();
    for (name, durability) in [("NORMAL", Durability::Normal), ("FULL", Durability::Full)] {
        let directory = base.join(name);
        let elapsed = runtime.block_on(lifecycle(&directory, durability, messages));
        // Removed whatever happened; a failed run's error is the one to report.
        let _ = std::fs::remove_dir_all(&directory);
        let elapsed = elapsed?;
        let commits = f64::from(messages * COMMITS_PER_MESSAGE);
        let per_second = commits / elapsed.as_secs_f64();
        writeln!(
            out,
            "synchronous={name:<6} {:>8.1} ms  {:>9.0} commits/s  {:>7.3} ms/commit",
            elapsed.as_secs_f64() * 1000.0,
            per_second,
            elapsed.as_secs_f64() * 1000.0 / commits
        )?;
        results.push(elapsed);
    }
    let _ = std::fs::remove_dir(&base);
    let ratio = results[1].as_secs_f64() / results[0].as_secs_f64();
    writeln!(out, "FULL / NORMAL time: {ratio:.2}")?;
    Ok(())
}

async fn lifecycle(
    directory: &std::path::Path,
    durability: Durability,
    messages: u32,
) -> anyhow::Result<Duration> {
    let store = SqliteStore::open_with(directory, durability)
        .await
        .context("could not open the benchmark's database")?;
    let agent = SessionName::parse("agent_1").expect("a valid name");
    let recipient = Username::parse("recruiter").expect("a valid username");
    let chat = jobbot_core::ids::ChatId::user(42).expect("a valid id");
    let started = Instant::now();
    for index in 0..messages {
        let at = UnixMillis(i64::from(index));
        let id = store
            .enqueue(NewOutboxMessage {
                channel_id: "channel_1".to_owned(),
                kind: OutboxKind::AutoResponse,
                sender: SenderSelection::ChannelAgents { sticky: None },
                recipient: Recipient::Username {
                    username: recipient.clone(),
                },
                content: MessageContent::plain("Hello! Your vacancy caught our eye."),
                first_contact: true,
                idempotency_key: Some(format!("bench:{index}")),
                created_at: at,
                not_before: None,
                expires_at: UnixMillis(i64::MAX),
            })
            .await?
            .id();
        store
            .begin_attempt(id, &agent, RandomId(i64::from(index)), at)
            .await?;
        store
            .note_holdup(
                id,
                &Holdup::Refused {
                    agent: agent.clone(),
                    error: TelegramError::FloodWait { seconds: 3 },
                },
                at,
            )
            .await?;
        store
            .mark_sent(
                id,
                &agent,
                Some(SentMessage {
                    chat,
                    message_id: i32::try_from(index).unwrap_or(i32::MAX),
                }),
                at,
            )
            .await?;
    }
    let elapsed = started.elapsed();
    store.close().await;
    Ok(elapsed)
}
