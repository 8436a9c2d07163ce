//! The lease keeper of a node that shares its sessions with other nodes: it announces the node
//! (heartbeats), applies `jobbot_core::cluster::plan_leases` against the store, and tells the
//! engine which sessions it may use ([`Engine::set_leased`]).
//!
//! Safety comes from three rules:
//! - a session is usable only until `usable_until` (a drift margin before its lease expires) of
//!   the last successful take or renewal; when the store does not answer, the keeper withdraws
//!   each session at that instant, so its owner stops before another node can take the lease;
//! - a lease given up is not released early: the keeper stops using it and lets it expire, so
//!   the next holder cannot connect while this node's owner may still be disconnecting. Only an
//!   orderly stop ([`LeaseKeeper::leave`], after the engine has stopped every owner) releases
//!   leases at once;
//! - the store refuses a renewal whose fencing token is not the lease's: a lease that moved is
//!   never used again by its old holder.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use jobbot_core::cluster::{
    FencingToken, LeaseRecord, LeaseTimings, NodeId, plan_leases, usable_until,
};
use jobbot_core::ids::SessionName;
use jobbot_core::store::{Store, StoreError, UnixMillis};
use tokio::sync::watch;

use crate::{Engine, EngineClock};

/// A lease this node holds, as of its last take or renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldLease {
    pub token: FencingToken,
    pub acquired_at: UnixMillis,
    /// The holder stops using the session at this instant unless renewed before.
    pub usable_until: UnixMillis,
}

/// One node's leases: the steps of the keeper, callable one at a time (tests drive it on their
/// own clock).
pub struct LeaseKeeper {
    store: Arc<dyn Store>,
    node: NodeId,
    timings: LeaseTimings,
    held: BTreeMap<SessionName, HeldLease>,
}

impl std::fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKeeper")
            .field("node", &self.node)
            .field("held", &self.held)
            .finish_non_exhaustive()
    }
}

impl LeaseKeeper {
    pub fn new(store: Arc<dyn Store>, node: NodeId, timings: LeaseTimings) -> Self {
        Self {
            store,
            node,
            timings,
            held: BTreeMap::new(),
        }
    }

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The leases usable at `now` (taken or renewed, and not past `usable_until`), with their
    /// fencing tokens.
    pub fn usable(&self, now: UnixMillis) -> HashMap<SessionName, FencingToken> {
        self.held
            .iter()
            .filter(|(_, lease)| now < lease.usable_until)
            .map(|(session, lease)| (session.clone(), lease.token))
            .collect()
    }

    /// The next instant after `now` a held lease stops being usable, if any.
    pub fn next_expiry(&self, now: UnixMillis) -> Option<UnixMillis> {
        self.held
            .values()
            .map(|lease| lease.usable_until)
            .filter(|until| *until > now)
            .min()
    }

    /// One round at `now`: heartbeat, then take, renew and give up leases as the plan says.
    /// A store failure leaves what is held as it was (each lease usable until its own instant).
    pub async fn step(
        &mut self,
        wanted: &[SessionName],
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        self.store
            .heartbeat(&self.node, now, self.timings.node_expiry_from(now))
            .await?;
        let nodes = self.store.cluster_nodes().await?;
        let leases = self.store.session_leases().await?;
        let plan = plan_leases(&self.node, wanted, &nodes, &leases, now);
        let expires_at = self.timings.expiry_from(now);
        // Given up: used no more from now on, and left to expire (see the module's rules).
        for (session, _) in &plan.release {
            self.held.remove(session);
        }
        // One statement for all of them: a node holds hundreds of sessions.
        let renewed = self
            .store
            .renew_leases(&self.node, &plan.renew, now, expires_at)
            .await?;
        for (session, _) in &plan.renew {
            self.held.remove(session);
        }
        for lease in renewed {
            self.hold(lease);
        }
        for session in plan.acquire {
            if let Some(lease) = self
                .store
                .acquire_lease(&session, &self.node, now, expires_at)
                .await?
            {
                self.hold(lease);
            }
        }
        Ok(())
    }

    fn hold(&mut self, lease: LeaseRecord) {
        self.held.insert(
            lease.session,
            HeldLease {
                token: lease.token,
                acquired_at: lease.acquired_at,
                usable_until: usable_until(lease.expires_at, &self.timings),
            },
        );
    }

    /// An orderly stop, once nothing uses the sessions any more: the node leaves and its leases
    /// are free at once.
    pub async fn leave(&mut self) -> Result<(), StoreError> {
        self.held.clear();
        self.store.leave_cluster(&self.node).await
    }
}

/// Runs `keeper` until `shutdown`: a round every `renew_every` (and when the wanted sessions
/// change), and the engine told whenever the usable set changes, including the instant a lease
/// the store could not renew stops being usable.
pub async fn run_lease_keeper(
    mut keeper: LeaseKeeper,
    engine: Engine,
    clock: EngineClock,
    mut wanted: watch::Receiver<Vec<SessionName>>,
    shutdown: impl Future<Output = ()>,
) -> LeaseKeeper {
    tokio::pin!(shutdown);
    let renew_every = keeper.timings.renew_every;
    let mut told: Option<HashMap<SessionName, FencingToken>> = None;
    let mut next_round = tokio::time::Instant::now();
    loop {
        let now = clock.now_unix();
        if tokio::time::Instant::now() >= next_round {
            let sessions = wanted.borrow_and_update().clone();
            if let Err(error) = keeper.step(&sessions, now).await {
                tracing::warn!(target: "cluster", node = %keeper.node, %error, "could not renew the session leases; each stays usable until its margin");
            }
            next_round = tokio::time::Instant::now() + renew_every;
        }
        let usable = keeper.usable(clock.now_unix());
        if told.as_ref() != Some(&usable) {
            if engine
                .set_leased(keeper.node.clone(), usable.clone())
                .await
                .is_err()
            {
                return keeper;
            }
            told = Some(usable);
        }
        // Wake for the next round, or the instant a held lease stops being usable.
        let mut wake = next_round;
        let now = clock.now_unix();
        if let Some(expiry) = keeper.next_expiry(now) {
            let in_millis = u64::try_from(expiry.0 - now.0).unwrap_or(0);
            wake =
                wake.min(tokio::time::Instant::now() + std::time::Duration::from_millis(in_millis));
        }
        tokio::select! {
            () = &mut shutdown => return keeper,
            () = tokio::time::sleep_until(wake) => {}
            changed = wanted.changed() => {
                if changed.is_err() {
                    return keeper;
                }
                next_round = tokio::time::Instant::now();
            }
        }
    }
}
