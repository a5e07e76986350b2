//! Snowflake ID generator: 41 bits of milliseconds since the Kith epoch, 10 bits of node id,
//! 12 bits of sequence. IDs sort by creation time across nodes and are unique per node.
//!
//! The generator never goes backwards: if the wall clock steps back (NTP) or the 4096
//! sequence numbers of one millisecond run out, it keeps counting on a logical clock that is
//! ahead of the wall clock, instead of sleeping or repeating an ID. The logical clock falls
//! back in step as soon as the wall clock passes it again.
//!
//! A node's id is either configured (`KITH_NODE_ID`, or 0 for a node on its own) or leased
//! from Redis (`crate::cluster`). A leased generator issues ids only inside its lease's
//! safe window ([`IdGenerator::extend`] moves its end on at each renewal): a node that
//! cannot renew stops before another node can be given the same id, and a lease granted
//! just after Redis lost its keys starts only once every earlier holder has stopped.

use std::{sync::Mutex, time::Instant};

/// The node may not issue ids: its node-id lease could not be renewed in time.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("this node's id lease lapsed; it issues no ids until it renews one")]
pub struct Fenced;

/// 2025-01-01T00:00:00Z in Unix milliseconds.
pub const KITH_EPOCH_MS: i64 = 1_735_689_600_000;
/// Largest valid `KITH_NODE_ID`.
pub const MAX_NODE_ID: u16 = (1 << NODE_BITS) - 1;

const NODE_BITS: u32 = 10;
const SEQ_BITS: u32 = 12;
const MAX_SEQ: i64 = (1 << SEQ_BITS) - 1;

/// Issues strictly increasing 64-bit IDs for one node.
#[derive(Debug)]
pub struct IdGenerator {
    /// A std mutex: the critical section is a few integer operations and never awaits.
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The node bits, already shifted into place.
    node: i64,
    /// Logical milliseconds since the epoch of the last id, and the last sequence used in it.
    last_ms: i64,
    last_seq: i64,
    /// Ids may be issued from `.0` until `.1` (`None`: always, the node id is not leased).
    writable: Option<(Instant, Instant)>,
}

impl IdGenerator {
    /// A generator for a configured `node` (0..=1023; larger values are masked by the
    /// config check).
    pub fn new(node: u16) -> Self {
        Self::with(node, None)
    }

    /// A generator for a leased `node`, issuing ids from `from` until `until` unless
    /// extended.
    pub fn leased(node: u16, from: Instant, until: Instant) -> Self {
        Self::with(node, Some((from, until)))
    }

    fn with(node: u16, writable: Option<(Instant, Instant)>) -> Self {
        Self {
            state: Mutex::new(State {
                node: i64::from(node & MAX_NODE_ID) << SEQ_BITS,
                last_ms: -1,
                last_seq: 0,
                writable,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The node id in the ids' node bits.
    pub fn node(&self) -> u16 {
        (self.lock().node >> SEQ_BITS) as u16
    }

    /// A renewed lease: ids may be issued until `until`, under the same node id, from when
    /// they could be before.
    pub fn extend(&self, until: Instant) {
        let mut state = self.lock();
        if let Some((_, end)) = &mut state.writable {
            *end = until;
        }
    }

    /// A lease of another node id (the first was lost): ids may be issued under `node` from
    /// `from` until `until`.
    pub fn switch(&self, node: u16, from: Instant, until: Instant) {
        let mut state = self.lock();
        state.node = i64::from(node & MAX_NODE_ID) << SEQ_BITS;
        state.writable = Some((from, until));
    }

    /// No more ids under the current lease until it is renewed or replaced.
    pub fn fence(&self) {
        self.extend(Instant::now());
    }

    /// Whether ids may be issued now.
    pub fn check_writable(&self) -> Result<(), Fenced> {
        match self.lock().writable {
            Some((from, until)) if !(from..until).contains(&Instant::now()) => Err(Fenced),
            _ => Ok(()),
        }
    }

    /// The next ID, from the system clock; [`Fenced`] once a leased node id is past its
    /// lease's safe end.
    pub fn next_id(&self) -> Result<i64, Fenced> {
        self.check_writable()?;
        Ok(self.next_at(chrono::Utc::now().timestamp_millis()))
    }

    /// The next ID, guaranteed larger than `floor` (an id another node may have issued with
    /// a clock ahead of ours): the logical clock jumps past it if needed. The message
    /// writer's, which checks [`Self::check_writable`] once per batch.
    pub fn next_id_above(&self, floor: i64) -> i64 {
        self.next_above_at(floor, chrono::Utc::now().timestamp_millis())
    }

    /// [`Self::next_id_above`] given the wall clock `now_ms`; exposed for tests. A floor
    /// this generator issued itself costs nothing: the next id is above it already.
    pub fn next_above_at(&self, floor: i64, now_ms: i64) -> i64 {
        let id = self.next_at(now_ms);
        if id > floor {
            id
        } else {
            self.next_at(timestamp_ms(floor) + 1)
        }
    }

    /// The next ID given the wall clock `now_ms` (Unix milliseconds); exposed for tests.
    pub fn next_at(&self, now_ms: i64) -> i64 {
        let wall = (now_ms - KITH_EPOCH_MS).max(0);
        // A poisoned lock still holds consistent integers: `lock` takes it anyway.
        let mut state = self.lock();
        let (ms, seq) = if wall > state.last_ms {
            (wall, 0)
        } else if state.last_seq < MAX_SEQ {
            (state.last_ms, state.last_seq + 1)
        } else {
            (state.last_ms + 1, 0)
        };
        state.last_ms = ms;
        state.last_seq = seq;
        (ms << (NODE_BITS + SEQ_BITS)) | state.node | seq
    }
}

/// The creation time encoded in an ID, in Unix milliseconds.
pub fn timestamp_ms(id: i64) -> i64 {
    (id >> (NODE_BITS + SEQ_BITS)) + KITH_EPOCH_MS
}

/// The smallest ID that could have been issued at `unix_ms` (for time-based cursors).
pub fn min_id_at(unix_ms: i64) -> i64 {
    ((unix_ms - KITH_EPOCH_MS).max(0)) << (NODE_BITS + SEQ_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_puts_time_node_and_sequence_in_place() {
        let g = IdGenerator::new(5);
        let id = g.next_at(KITH_EPOCH_MS + 1000);
        assert_eq!(id >> 22, 1000);
        assert_eq!((id >> 12) & 0x3ff, 5);
        assert_eq!(id & 0xfff, 0);
        assert_eq!(timestamp_ms(id), KITH_EPOCH_MS + 1000);
    }

    #[test]
    fn sequence_overflow_moves_to_the_next_millisecond() {
        let g = IdGenerator::new(1);
        let now = KITH_EPOCH_MS + 50;
        let ids: Vec<i64> = (0..5000).map(|_| g.next_at(now)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(ids[4096] >> 22, 51);
    }

    #[test]
    fn ids_can_be_forced_above_a_floor() -> Result<(), Fenced> {
        let g = IdGenerator::new(3);
        let far_future = g.next_at(KITH_EPOCH_MS + 10_000_000_000);
        let other = IdGenerator::new(4);
        assert!(other.next_id_above(far_future) > far_future);
        assert!(other.next_id()? > far_future, "later ids stay above it too");
        Ok(())
    }

    #[test]
    fn ids_above_the_previous_one_stay_in_step_with_the_clock() {
        let g = IdGenerator::new(2);
        let now = KITH_EPOCH_MS + 70;
        let mut floor = 0;
        for _ in 0..1000 {
            let id = g.next_above_at(floor, now);
            assert!(id > floor);
            floor = id;
        }
        assert_eq!(
            timestamp_ms(floor),
            now,
            "a batch of 1,000 ids within one millisecond"
        );
    }

    #[test]
    fn a_leased_generator_stops_at_its_lease_and_resumes_when_extended() {
        let minute = std::time::Duration::from_secs(60);
        let now = Instant::now();
        let g = IdGenerator::leased(7, now, now + minute);
        assert!(g.next_id().is_ok());
        g.fence();
        assert!(g.next_id().is_err(), "past the lease's safe end");
        assert!(g.check_writable().is_err());
        g.extend(now + minute);
        assert!(g.next_id().is_ok(), "renewed");
        // Leased under another id (the first was lost): ids carry the new one.
        g.switch(9, now, now + minute);
        let id = g.next_id().unwrap_or_default();
        assert_eq!((id >> 12) & 0x3ff, 9);
        assert_eq!(g.node(), 9);
    }

    #[test]
    fn a_fresh_lease_waits_until_its_start() {
        let minute = std::time::Duration::from_secs(60);
        let now = Instant::now();
        let g = IdGenerator::leased(7, now + minute, now + 2 * minute);
        assert!(g.next_id().is_err(), "not before the lease may be used");
        g.switch(8, now, now + minute);
        assert!(g.next_id().is_ok());
    }

    #[test]
    fn a_configured_generator_is_never_fenced() {
        let g = IdGenerator::new(1023);
        assert!(g.check_writable().is_ok());
        assert_eq!(g.node(), 1023);
    }

    proptest! {
        /// Whatever the clock does (jumps forward, steps back, stalls), IDs strictly increase
        /// and carry the node id.
        #[test]
        fn ids_strictly_increase_under_any_clock(
            node in 0u16..=MAX_NODE_ID,
            steps in proptest::collection::vec(-5_000i64..5_000, 1..2_000),
        ) {
            let g = IdGenerator::new(node);
            let mut clock = KITH_EPOCH_MS + 10_000_000;
            let mut prev = i64::MIN;
            for step in steps {
                // Mostly stall (same ms) to exercise the sequence, sometimes jump.
                if step.rem_euclid(3) == 0 { clock += step; }
                let id = g.next_at(clock);
                prop_assert!(id > prev, "{id} after {prev}");
                prop_assert_eq!((id >> 12) & 0x3ff, i64::from(node));
                prop_assert!(id > 0);
                prev = id;
            }
        }
    }
}
