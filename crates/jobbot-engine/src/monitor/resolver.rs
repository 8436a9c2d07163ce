//! Turns configured usernames (and, with auto-join, invite links) into chat ids through the main
//! account, one call at a time.
//!
//! `contacts.resolveUsername` is the call Telegram punishes hardest. Each call is made with a
//! permit of the main account's scheduler (`Engine::call_permit`, class `ResolveUsername` or
//! `JoinChannel`), which paces it with the account's other calls of that class, waits out a flood
//! wait on that method in full and learns from it. This task never asks twice for a source it has
//! resolved (the answer is cached for the process's life: a chat's id never changes), and asks
//! again for one it failed only after the configuration changes. It runs beside the monitor so
//! a slow call never holds up the messages.

use std::collections::BTreeSet;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jobbot_core::config::SourceRef;
use jobbot_core::ids::{ChatId, SessionName};
use jobbot_core::scheduling::CallClass;
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
    /// How long to wait before asking again while the main account is not connected.
    pub interval: Duration,
    /// Join public sources (and invite links) instead of only resolving them.
    pub join: bool,
}

impl Resolver {
    pub async fn run(mut self) {
        let mut done: HashSet<SourceRef> = HashSet::new();
        let mut failed: HashSet<SourceRef> = HashSet::new();
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
            let (class, join) = match (&source, self.join) {
                (SourceRef::Username(_), false) => (CallClass::ResolveUsername, None),
                (SourceRef::Username(name), true) => (
                    CallClass::JoinChannel,
                    Some(JoinTarget::Username(name.clone())),
                ),
                (SourceRef::Invite(hash), _) => (
                    CallClass::JoinChannel,
                    Some(JoinTarget::InviteHash(hash.clone())),
                ),
                // Ids are canonical already; they are never asked for.
                (SourceRef::Id(_), _) => {
                    done.insert(source);
                    continue;
                }
            };
            // While the main account is disconnected there is nobody to ask; try again later.
            let Some(permit) = self
                .engine
                .call_permit(std::slice::from_ref(&self.session), class, None)
                .await
            else {
                tokio::time::sleep_until(Instant::now() + self.interval).await;
                continue;
            };
            let account = permit.account();
            let result = match (&join, &source) {
                (Some(target), _) => account.join_chat(target).await,
                (None, SourceRef::Username(name)) => account.resolve_username(name).await,
                (None, _) => continue,
            };
            permit.report(&result);
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
                // The scheduler holds this class's calls until the wait is over.
                Err(TelegramError::FloodWait { seconds }) => {
                    tracing::warn!(target: "monitor", "⏳ FloodWait {seconds} с при поиске источника {source}");
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
