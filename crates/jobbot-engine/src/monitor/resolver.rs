//! Turns configured usernames (and, with auto-join, invite links) into chat ids through the main
//! account, one call at a time.
//!
//! `contacts.resolveUsername` is the call Telegram punishes hardest, so this task makes at most
//! one call per `interval`, honours a flood wait in full, never asks twice for a source it has
//! resolved (the answer is cached for the process's life: a chat's id never changes), and asks
//! again for one it failed only after the configuration changes. It runs beside the monitor so
//! a slow call never holds up the messages.

use std::collections::BTreeSet;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jobbot_core::config::SourceRef;
use jobbot_core::ids::{ChatId, SessionName};
use jobbot_core::telegram::{JoinTarget, TelegramError};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::engine::Engine;

/// What one call found.
#[derive(Debug, Clone)]
pub(crate) enum Resolution {
    Resolved {
        source: SourceRef,
        chat: ChatId,
        title: String,
    },
    Failed {
        source: SourceRef,
        error: TelegramError,
    },
}

pub(crate) struct Resolver {
    pub engine: Engine,
    pub session: SessionName,
    /// The sources the current configuration needs resolved.
    pub wanted: watch::Receiver<Arc<BTreeSet<SourceRef>>>,
    pub results: mpsc::UnboundedSender<Resolution>,
    pub interval: Duration,
    /// Join public sources (and invite links) instead of only resolving them.
    pub join: bool,
}

impl Resolver {
    pub async fn run(mut self) {
        let mut done: HashSet<SourceRef> = HashSet::new();
        let mut failed: HashSet<SourceRef> = HashSet::new();
        let mut next_call = Instant::now();
        loop {
            let next = self
                .wanted
                .borrow_and_update()
                .iter()
                .find(|source| !done.contains(*source) && !failed.contains(*source))
                .cloned();
            let Some(source) = next else {
                if self.wanted.changed().await.is_err() {
                    return;
                }
                // A changed configuration may have fixed what failed (a typo, a revoked link).
                failed.clear();
                continue;
            };
            tokio::time::sleep_until(next_call).await;
            // While the main account is disconnected there is nobody to ask; try again later.
            let Some(account) = self.engine.account(&self.session) else {
                next_call = Instant::now() + self.interval;
                continue;
            };
            let result = match (&source, self.join) {
                (SourceRef::Username(name), false) => account.resolve_username(name).await,
                (SourceRef::Username(name), true) => {
                    account.join_chat(&JoinTarget::Username(name.clone())).await
                }
                (SourceRef::Invite(hash), _) => {
                    account
                        .join_chat(&JoinTarget::InviteHash(hash.clone()))
                        .await
                }
                // Ids are canonical already; they are never asked for.
                (SourceRef::Id(_), _) => {
                    done.insert(source);
                    continue;
                }
            };
            next_call = Instant::now() + self.interval;
            match result {
                Ok(peer) => {
                    done.insert(source.clone());
                    let resolution = Resolution::Resolved {
                        source,
                        chat: peer.id(),
                        title: peer.full_name(),
                    };
                    if self.results.send(resolution).is_err() {
                        return;
                    }
                }
                Err(TelegramError::FloodWait { seconds }) => {
                    tracing::warn!(target: "monitor", "⏳ FloodWait {seconds} с при поиске источника {source}");
                    next_call =
                        Instant::now() + Duration::from_secs(u64::from(seconds)).max(self.interval);
                }
                // The connection or the account is the problem, not the source: ask again.
                Err(error) if error.is_account_level() => {
                    tracing::debug!(target: "monitor", "источник {source}: {error}; повтор позже");
                }
                Err(error) => {
                    failed.insert(source.clone());
                    if self
                        .results
                        .send(Resolution::Failed { source, error })
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    }
}
