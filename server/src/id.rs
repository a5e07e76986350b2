//! Snowflake ID generator: 41 bits of milliseconds since the Kith epoch, 10 bits of node id,
//! 12 bits of sequence. IDs sort by creation time across nodes and are unique per node.
//!
//! The generator never goes backwards: if the wall clock steps back (NTP) or the 4096
//! sequence numbers of one millisecond run out, it keeps counting on a logical clock that is
//! ahead of the wall clock, instead of sleeping or repeating an ID. The logical clock falls
//! back in step as soon as the wall clock passes it again.

use std::sync::Mutex;

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
    node: i64,
    /// (logical milliseconds since the epoch, last sequence used in it).
    /// A std mutex: the critical section is a few integer operations and never awaits.
    last: Mutex<(i64, i64)>,
}

impl IdGenerator {
    /// A generator for `node` (0..=1023; larger values are masked by the config check).
    pub fn new(node: u16) -> Self {
        Self {
            node: i64::from(node & MAX_NODE_ID),
            last: Mutex::new((-1, 0)),
        }
    }

    /// The next ID, from the system clock.
    pub fn next_id(&self) -> i64 {
        self.next_at(chrono::Utc::now().timestamp_millis())
    }

    /// The next ID, guaranteed larger than `floor` (an id another node may have issued with
    /// a clock ahead of ours): the logical clock jumps past it if needed.
    pub fn next_id_above(&self, floor: i64) -> i64 {
        let now = chrono::Utc::now().timestamp_millis();
        self.next_at(now.max(timestamp_ms(floor) + 1))
    }

    /// The next ID given the wall clock `now_ms` (Unix milliseconds); exposed for tests.
    pub fn next_at(&self, now_ms: i64) -> i64 {
        let wall = (now_ms - KITH_EPOCH_MS).max(0);
        let mut last = match self.last.lock() {
            Ok(guard) => guard,
            // The guarded value is two integers that are always consistent.
            Err(poisoned) => poisoned.into_inner(),
        };
        let (last_ms, last_seq) = *last;
        let (ms, seq) = if wall > last_ms {
            (wall, 0)
        } else if last_seq < MAX_SEQ {
            (last_ms, last_seq + 1)
        } else {
            (last_ms + 1, 0)
        };
        *last = (ms, seq);
        (ms << (NODE_BITS + SEQ_BITS)) | (self.node << SEQ_BITS) | seq
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
    fn ids_can_be_forced_above_a_floor() {
        let g = IdGenerator::new(3);
        let far_future = g.next_at(KITH_EPOCH_MS + 10_000_000_000);
        let other = IdGenerator::new(4);
        assert!(other.next_id_above(far_future) > far_future);
        assert!(other.next_id() > far_future, "later ids stay above it too");
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
