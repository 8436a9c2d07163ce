//! Several nodes sharing one agent pool: who may use which Telegram session, as pure decisions.
//!
//! Telegram destroys an auth key used from two connections at once (`AUTH_KEY_DUPLICATED`), so
//! a node connects an account only while it holds that account's **lease**: a stored row with a
//! holder, an expiry and a fencing token (the store's `acquire_lease` / `renew_lease`). This
//! module decides, from what the store says and `now`, which leases a node takes, keeps and
//! gives back ([`plan_leases`]), and until when a held lease may be used ([`usable_until`]).
//!
//! The rules:
//! - A node stops using a session [`LeaseTimings::drift_margin`] before its lease expires, so a
//!   node whose clock runs behind, or whose renewal did not get through, has let go before any
//!   other node can take the lease (which needs the lease expired by the taker's clock).
//! - Leases are spread evenly over the live nodes (those whose heartbeat has not expired): each
//!   holds ⌊n/k⌋ or ⌈n/k⌉ of the n wanted sessions. The ⌈⌉ places go to the nodes that already
//!   hold most (then by node id), so a balanced cluster stays as it is; a node above its share
//!   gives leases back, a node below it takes free ones. Every node computes the same shares
//!   from the same view, so leases move only when nodes join or leave.
//! - A lease held by a node that is gone is taken only once it has expired: the fencing token
//!   then grows, and the old holder's late writes (a send, a session save) are refused by it.
//! - Free sessions are taken in an order of their own per node (a hash of node and session), so
//!   nodes starting together mostly reach for different sessions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::SessionName;
use crate::store::UnixMillis;

/// A node's name, unique in the cluster (default: host name and process id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(String);

impl NodeId {
    pub const INVALID: &'static str =
        "is not a node name (1 to 64 letters, digits, '_', '-', '.' or ':')";

    pub fn parse(input: &str) -> Result<Self, crate::ids::ParseIdError> {
        let ok = !input.is_empty()
            && input.len() <= 64
            && input
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
        if ok {
            Ok(Self(input.to_owned()))
        } else {
            Err(crate::ids::ParseIdError::new(input, Self::INVALID))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Grows each time a session's lease changes hands; never given out twice for one session.
/// Whatever a holder writes on the strength of its lease names the token, and is refused once
/// the lease has a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FencingToken(pub i64);

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A node as the store has it: alive while `expires_at` is ahead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node: NodeId,
    pub started_at: UnixMillis,
    pub heartbeat_at: UnixMillis,
    pub expires_at: UnixMillis,
}

impl NodeRecord {
    pub fn is_alive(&self, now: UnixMillis) -> bool {
        self.expires_at > now
    }
}

/// A session's lease as the store has it. A released lease keeps its row (and its token) with
/// no holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub session: SessionName,
    pub holder: Option<NodeId>,
    pub token: FencingToken,
    pub acquired_at: UnixMillis,
    pub renewed_at: UnixMillis,
    pub expires_at: UnixMillis,
}

impl LeaseRecord {
    /// The node holding the lease at `now`, if any (an expired lease has none).
    pub fn holder_at(&self, now: UnixMillis) -> Option<&NodeId> {
        self.holder.as_ref().filter(|_| self.expires_at > now)
    }
}

/// What a node gets when it asks to send a pending outbox message through one of its agents
/// (`Store::claim_attempt`): the attempt is recorded with the claim, in one transaction, or
/// refused with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptClaim {
    /// The message is this node's until its claim expires (the agent's lease expiry at the
    /// attempt), the attempt is on record, and this is the `random_id` to send with.
    Taken(crate::telegram::RandomId),
    Refused(ClaimRefusal),
}

/// Why a node may not attempt a message now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimRefusal {
    /// The agent's lease is not this node's with this token, or it has expired: the node must
    /// not use the account at all.
    LeaseNotHeld,
    /// An earlier attempt through another agent may have been delivered: the message stays
    /// with that agent (and whichever node holds its lease).
    InDoubtOn { agent: SessionName },
    /// Another node claimed the message and its claim runs until `until`.
    ClaimedElsewhere { node: NodeId, until: UnixMillis },
    /// The message has ended (sent, failed, expired) or does not exist.
    NotPending,
}

impl fmt::Display for ClaimRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LeaseNotHeld => f.write_str("the agent's lease is not this node's"),
            Self::InDoubtOn { agent } => write!(f, "an attempt through {agent} may have gone"),
            Self::ClaimedElsewhere { node, until } => {
                write!(f, "node {node} claimed it until {}", until.0)
            }
            Self::NotPending => f.write_str("the message is not pending"),
        }
    }
}

/// The lease clock. Renewals come every `renew_every`; a lease lasts `lease_time` from its last
/// renewal; its holder stops `drift_margin` before that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimings {
    pub lease_time: Duration,
    pub renew_every: Duration,
    /// How far apart two nodes' clocks may be, plus how long a send may take once started.
    pub drift_margin: Duration,
    /// How long a node counts as alive after its last heartbeat (sent every `renew_every`).
    pub node_time: Duration,
}

impl Default for LeaseTimings {
    /// A lease of 30 s renewed every 5 s: five renewals may fail before it is lost; a node that
    /// dies is replaced within 30 s. 10 s for clock drift and a send in flight.
    fn default() -> Self {
        Self {
            lease_time: Duration::from_secs(30),
            renew_every: Duration::from_secs(5),
            drift_margin: Duration::from_secs(10),
            node_time: Duration::from_secs(30),
        }
    }
}

/// Why a [`LeaseTimings`] cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseTimingsError {
    #[error(
        "lease_time ({lease_time:?}) must exceed renew_every ({renew_every:?}) plus drift_margin \
         ({drift_margin:?}), or a lease would be unusable before it is renewed"
    )]
    TooShort {
        lease_time: Duration,
        renew_every: Duration,
        drift_margin: Duration,
    },
}

impl LeaseTimings {
    pub fn check(self) -> Result<Self, LeaseTimingsError> {
        if self.lease_time <= self.renew_every + self.drift_margin {
            return Err(LeaseTimingsError::TooShort {
                lease_time: self.lease_time,
                renew_every: self.renew_every,
                drift_margin: self.drift_margin,
            });
        }
        Ok(self)
    }

    /// The expiry of a lease taken or renewed at `now`.
    pub fn expiry_from(&self, now: UnixMillis) -> UnixMillis {
        plus(now, self.lease_time)
    }

    /// The expiry of a node's heartbeat sent at `now`.
    pub fn node_expiry_from(&self, now: UnixMillis) -> UnixMillis {
        plus(now, self.node_time)
    }
}

fn plus(at: UnixMillis, duration: Duration) -> UnixMillis {
    UnixMillis(at.0.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)))
}

/// Until when the holder of a lease expiring at `expires_at` may use its session.
pub fn usable_until(expires_at: UnixMillis, timings: &LeaseTimings) -> UnixMillis {
    UnixMillis(
        expires_at
            .0
            .saturating_sub(i64::try_from(timings.drift_margin.as_millis()).unwrap_or(i64::MAX)),
    )
}

/// What a node should do with leases now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeasePlan {
    /// Free (or expired) leases to take, in order of preference.
    pub acquire: Vec<SessionName>,
    /// Held leases to keep: renew each with its token.
    pub renew: Vec<(SessionName, FencingToken)>,
    /// Held leases to give back (above this node's share, or no longer wanted): stop using the
    /// session first, then release with the token.
    pub release: Vec<(SessionName, FencingToken)>,
}

/// The leases node `me` should take, keep and give back at `now`, given the sessions the
/// configuration wants connected (agents and the main account), the nodes and the leases the
/// store lists. `me` counts as alive whatever its own row says.
pub fn plan_leases(
    me: &NodeId,
    wanted: &[SessionName],
    nodes: &[NodeRecord],
    leases: &[LeaseRecord],
    now: UnixMillis,
) -> LeasePlan {
    let wanted: BTreeSet<&SessionName> = wanted.iter().collect();
    let mut live: BTreeSet<&NodeId> = nodes
        .iter()
        .filter(|node| node.is_alive(now))
        .map(|node| &node.node)
        .collect();
    live.insert(me);
    let leases: BTreeMap<&SessionName, &LeaseRecord> =
        leases.iter().map(|lease| (&lease.session, lease)).collect();

    let mut plan = LeasePlan::default();
    // Held by each live node, among the wanted sessions.
    let mut held: BTreeMap<&NodeId, usize> = live.iter().map(|node| (*node, 0)).collect();
    let mut mine = Vec::new();
    let mut free = Vec::new();
    for session in &wanted {
        match leases
            .get(session)
            .and_then(|lease| Some((lease, lease.holder_at(now)?)))
        {
            Some((lease, holder)) if holder == me => mine.push((*session, lease.token)),
            Some((_, holder)) => {
                if let Some(count) = held.get_mut(holder) {
                    *count += 1;
                }
            }
            None => free.push(*session),
        }
    }
    held.insert(me, mine.len());
    // Held but no longer wanted: give back.
    for lease in leases.values() {
        if !wanted.contains(&lease.session) && lease.holder_at(now) == Some(me) {
            plan.release.push((lease.session.clone(), lease.token));
        }
    }

    let share = share_of(me, &held, wanted.len());
    // Keep the ones this node likes best, give back the rest.
    mine.sort_by_key(|(session, _)| std::cmp::Reverse(affinity(me, session)));
    for (index, (session, token)) in mine.iter().enumerate() {
        if index < share {
            plan.renew.push(((*session).clone(), *token));
        } else {
            plan.release.push(((*session).clone(), *token));
        }
    }
    free.sort_by_key(|session| std::cmp::Reverse(affinity(me, session)));
    plan.acquire = free
        .into_iter()
        .take(share.saturating_sub(mine.len()))
        .cloned()
        .collect();
    plan
}

/// `me`'s share of `sessions` over the live nodes in `held` (with how many each holds): ⌊n/k⌋,
/// plus one for the first n mod k nodes by (most held, node id).
fn share_of(me: &NodeId, held: &BTreeMap<&NodeId, usize>, sessions: usize) -> usize {
    let nodes = held.len().max(1);
    let base = sessions / nodes;
    let extra = sessions % nodes;
    let mut order: Vec<(&NodeId, usize)> =
        held.iter().map(|(node, count)| (*node, *count)).collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let rank = order
        .iter()
        .position(|(node, _)| *node == me)
        .unwrap_or(nodes);
    base + usize::from(rank < extra)
}

/// A stable per-(node, session) preference (FNV-1a), so different nodes prefer different free
/// sessions.
fn affinity(node: &NodeId, session: &SessionName) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in node
        .as_str()
        .bytes()
        .chain([0xff])
        .chain(session.as_str().bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(name: &str) -> NodeId {
        NodeId::parse(name).unwrap()
    }

    fn session(index: usize) -> SessionName {
        SessionName::parse(&format!("agent_{index}")).unwrap()
    }

    const LEASE: i64 = 30_000;

    /// Rounds of every node stepping once, after which the cluster must be balanced: a node's
    /// share depends on what the others hold, so one round may leave a gap the next fills.
    const ROUNDS: u64 = 4;

    /// A store that applies plans the way the SQL does: a lease is taken only when free or
    /// expired, and then gets the next token.
    #[derive(Default)]
    struct Cluster {
        nodes: BTreeMap<NodeId, NodeRecord>,
        leases: BTreeMap<SessionName, LeaseRecord>,
    }

    impl Cluster {
        fn heartbeat(&mut self, me: &NodeId, now: UnixMillis) {
            self.nodes.insert(
                me.clone(),
                NodeRecord {
                    node: me.clone(),
                    started_at: now,
                    heartbeat_at: now,
                    expires_at: UnixMillis(now.0 + LEASE),
                },
            );
        }

        fn step(&mut self, me: &NodeId, wanted: &[SessionName], now: UnixMillis) -> LeasePlan {
            self.heartbeat(me, now);
            let nodes: Vec<_> = self.nodes.values().cloned().collect();
            let leases: Vec<_> = self.leases.values().cloned().collect();
            let plan = plan_leases(me, wanted, &nodes, &leases, now);
            for (session, token) in &plan.release {
                let lease = self.leases.get_mut(session).unwrap();
                assert_eq!(lease.holder.as_ref(), Some(me), "released another's lease");
                assert_eq!(lease.token, *token);
                lease.holder = None;
            }
            for (session, token) in &plan.renew {
                let lease = self.leases.get_mut(session).unwrap();
                assert_eq!(lease.holder_at(now), Some(me), "renewed a lease not held");
                assert_eq!(lease.token, *token);
                lease.expires_at = UnixMillis(now.0 + LEASE);
            }
            for session in &plan.acquire {
                let lease = self.leases.entry(session.clone()).or_insert(LeaseRecord {
                    session: session.clone(),
                    holder: None,
                    token: FencingToken(0),
                    acquired_at: now,
                    renewed_at: now,
                    expires_at: now,
                });
                assert!(
                    lease.holder_at(now).is_none(),
                    "took a lease held by another"
                );
                lease.holder = Some(me.clone());
                lease.token = FencingToken(lease.token.0 + 1);
                lease.expires_at = UnixMillis(now.0 + LEASE);
            }
            plan
        }

        fn held(&self, now: UnixMillis) -> BTreeMap<NodeId, usize> {
            let mut held = BTreeMap::new();
            for lease in self.leases.values() {
                if let Some(holder) = lease.holder_at(now) {
                    *held.entry(holder.clone()).or_insert(0) += 1;
                }
            }
            held
        }

        /// Every wanted session held, each live node ⌊n/k⌋ or ⌈n/k⌉.
        fn assert_balanced(&self, live: &[NodeId], wanted: usize, now: UnixMillis) {
            let held = self.held(now);
            let total: usize = held.values().sum();
            assert_eq!(total, wanted, "{held:?}");
            let low = wanted / live.len();
            let high = low + usize::from(!wanted.is_multiple_of(live.len()));
            for node in live {
                let count = held.get(node).copied().unwrap_or(0);
                assert!(
                    (low..=high).contains(&count),
                    "{node} holds {count}, not {low}..={high}: {held:?}"
                );
            }
        }
    }

    #[test]
    fn one_node_takes_every_session_and_then_only_renews() {
        let me = node("a");
        let wanted: Vec<_> = (0..5).map(session).collect();
        let mut cluster = Cluster::default();
        let first = cluster.step(&me, &wanted, UnixMillis(1_000));
        assert_eq!(first.acquire.len(), 5);
        let second = cluster.step(&me, &wanted, UnixMillis(2_000));
        assert!(second.acquire.is_empty() && second.release.is_empty());
        assert_eq!(second.renew.len(), 5);
    }

    #[test]
    fn a_session_no_longer_wanted_is_given_back() {
        let me = node("a");
        let mut cluster = Cluster::default();
        cluster.step(&me, &[session(1), session(2)], UnixMillis(1_000));
        let plan = cluster.step(&me, &[session(1)], UnixMillis(2_000));
        assert_eq!(plan.release, vec![(session(2), FencingToken(1))]);
        assert_eq!(plan.renew, vec![(session(1), FencingToken(1))]);
    }

    #[test]
    fn a_lease_of_a_dead_node_is_taken_only_once_expired_and_with_a_new_token() {
        let (a, b) = (node("a"), node("b"));
        let wanted = vec![session(1), session(2)];
        let mut cluster = Cluster::default();
        cluster.step(&a, &wanted, UnixMillis(0));
        assert_eq!(
            cluster.held(UnixMillis(0)).get(&a),
            Some(&2),
            "a, alone, took both"
        );
        // a dies at 0 (no more heartbeats or renewals); b cannot take a's leases before they
        // expire, even though a's heartbeat has expired by then too.
        let before = cluster.step(&b, &wanted, UnixMillis(LEASE - 1));
        assert!(before.acquire.is_empty(), "{before:?}");
        let after = cluster.step(&b, &wanted, UnixMillis(LEASE));
        assert_eq!(after.acquire.len(), 2, "{after:?}");
        assert!(
            cluster
                .leases
                .values()
                .all(|lease| lease.token == FencingToken(2))
        );
    }

    #[test]
    fn the_holder_stops_a_drift_margin_before_the_lease_expires() {
        let timings = LeaseTimings::default();
        let expires_at = timings.expiry_from(UnixMillis(1_000));
        assert_eq!(expires_at, UnixMillis(31_000));
        assert_eq!(usable_until(expires_at, &timings), UnixMillis(21_000));
        assert!(LeaseTimings::default().check().is_ok());
        let too_short = LeaseTimings {
            lease_time: Duration::from_secs(10),
            ..LeaseTimings::default()
        };
        assert!(matches!(
            too_short.check(),
            Err(LeaseTimingsError::TooShort { .. })
        ));
    }

    #[test]
    fn node_names_parse() {
        assert!(NodeId::parse("host-1:4242").is_ok());
        assert!(NodeId::parse("").is_err());
        assert!(NodeId::parse("a b").is_err());
        assert!(NodeId::parse(&"x".repeat(65)).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Whatever the order nodes step in, after a few rounds every wanted session is held and
        /// the leases are spread evenly; a node that joins gets its share within a few more
        /// rounds, and the leases of one that leaves are spread over the others once they
        /// expire.
        #[test]
        fn leases_spread_evenly_and_follow_joins_and_leaves(
            sessions in 0usize..40,
            node_count in 1usize..6,
            order_seed in any::<u64>(),
        ) {
            let wanted: Vec<_> = (0..sessions).map(session).collect();
            let nodes: Vec<_> = (0..node_count).map(|i| node(&format!("n{i}"))).collect();
            let mut cluster = Cluster::default();
            let mut now = UnixMillis(1_000);
            let shuffled = |nodes: &[NodeId], round: u64| {
                let mut order = nodes.to_vec();
                order.sort_by_key(|node| affinity(node, &session(round as usize)) ^ order_seed);
                order
            };
            let run_rounds = |cluster: &mut Cluster, nodes: &[NodeId], now: &mut UnixMillis, rounds: u64| {
                for round in 0..rounds {
                    // Everyone announces itself first, as nodes do at start.
                    for node in nodes {
                        cluster.heartbeat(node, *now);
                    }
                    for node in shuffled(nodes, round) {
                        cluster.step(&node, &wanted, *now);
                    }
                    now.0 += 1_000;
                }
            };
            run_rounds(&mut cluster, &nodes, &mut now, ROUNDS);
            cluster.assert_balanced(&nodes, sessions, now);

            // A node joins.
            let mut joined = nodes.clone();
            joined.push(node("joiner"));
            run_rounds(&mut cluster, &joined, &mut now, ROUNDS);
            cluster.assert_balanced(&joined, sessions, now);

            // The first node leaves without a word; its leases expire.
            // The others keep renewing meanwhile (a round is a second).
            let remaining: Vec<_> = joined[1..].to_vec();
            run_rounds(&mut cluster, &remaining, &mut now, LEASE as u64 / 1_000 + ROUNDS);
            cluster.assert_balanced(&remaining, sessions, now);
        }
    }
}
