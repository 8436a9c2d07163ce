//! Fair share between the queues that draw on the same agents.
//!
//! Several channels (each a pool, each with its own queues) may list the same accounts, and an
//! account's permits are one resource however many channels want them. Serving the queues in a
//! fixed order, each until it is blocked, gives every freed permit to the first queue in that
//! order: under load the first channel is served at its full arrival rate and the last one only
//! with what is left, possibly nothing (measured in `jobbot bench pool`'s `churn`, issue #12).
//!
//! The rule is round robin over the queues with a message to send (Nagle, *On Packet Switches
//! with Infinite Storage*, RFC 970, 1985: one queue per source, served in turn, so that no source
//! can take another's share; fair queuing, Demers, Keshav & Shenker, SIGCOMM 1989, is its
//! weighted generalisation, and with messages of one size plain round robin is the same thing).
//! The turn is kept between passes: the next pass starts with the queue after the last one
//! served, so a permit that frees alone (the common case under load: one agent's pacing instant)
//! goes to each backlogged queue in turn, not always to the first. A queue that was backlogged at
//! every turn is served within one message of every other such queue (see the tests).

/// The turn among queues keyed by `K` (any total order; the queues are visited in it, cyclically).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundRobin<K> {
    last_served: Option<K>,
}

impl<K> Default for RoundRobin<K> {
    fn default() -> Self {
        Self { last_served: None }
    }
}

impl<K: Ord + Copy> RoundRobin<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `keys` in the order to offer them the next permit: the keys after the last one
    /// served first, in key order, then the others from the smallest (wrapping around).
    pub fn order(&self, keys: &mut [K]) {
        keys.sort_unstable();
        if let Some(last) = self.last_served {
            let after = keys.partition_point(|key| *key <= last);
            keys.rotate_left(after);
        }
    }

    /// Records that `key`'s queue got a permit: the turn passes to the queue after it.
    pub fn served(&mut self, key: K) {
        self.last_served = Some(key);
    }

    pub fn last_served(&self) -> Option<K> {
        self.last_served
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_turn_starts_after_the_last_queue_served_and_wraps() {
        let mut turn = RoundRobin::new();
        let mut keys = vec![3, 1, 2];
        turn.order(&mut keys);
        assert_eq!(keys, [1, 2, 3], "no queue served yet: key order");
        turn.served(1);
        turn.order(&mut keys);
        assert_eq!(keys, [2, 3, 1]);
        turn.served(3);
        turn.order(&mut keys);
        assert_eq!(keys, [1, 2, 3]);
        // The last one served is no longer waiting: the turn still passes to the next one.
        turn.served(2);
        let mut without = vec![1, 3];
        turn.order(&mut without);
        assert_eq!(without, [3, 1]);
    }

    /// Permits that free one at a time (one agent's pacing instant each) go to the backlogged
    /// queues in turn; a fixed order would give all of them to the first queue.
    #[test]
    fn one_permit_at_a_time_reaches_every_backlogged_queue_in_turn() {
        let mut turn = RoundRobin::new();
        let mut served = [0u32; 3];
        for _ in 0..300 {
            let mut keys = vec![0usize, 1, 2];
            turn.order(&mut keys);
            served[keys[0]] += 1;
            turn.served(keys[0]);
        }
        assert_eq!(served, [100, 100, 100]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Permits free one at a time while queues come and go (a queue is absent when it is
        /// empty or blocked on its own limit); the queues present at every permit are served
        /// within one permit of each other, and a permit never goes to an absent queue.
        #[test]
        fn queues_backlogged_throughout_get_equal_shares(
            always in proptest::collection::btree_set(0u8..8, 1..5),
            sometimes in proptest::collection::vec(proptest::collection::btree_set(0u8..8, 0..6), 1..300),
        ) {
            let mut turn = RoundRobin::new();
            let mut served = [0u32; 8];
            for extra in sometimes {
                let mut keys: Vec<u8> = always.union(&extra).copied().collect();
                turn.order(&mut keys);
                let chosen = keys[0];
                prop_assert!(always.contains(&chosen) || extra.contains(&chosen));
                served[usize::from(chosen)] += 1;
                turn.served(chosen);
            }
            let shares: Vec<u32> = always.iter().map(|key| served[usize::from(*key)]).collect();
            let most = shares.iter().max().copied().unwrap_or(0);
            let least = shares.iter().min().copied().unwrap_or(0);
            prop_assert!(most - least <= 1, "{shares:?}");
        }
    }
}
