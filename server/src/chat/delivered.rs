//! What one WebSocket connection has handed its client: where a catch-up starts, and which
//! recent messages it must not send twice.
//!
//! Wake-ups can arrive out of id order: two senders' tasks publish in whichever order they
//! run, and two nodes' wake-ups reach a third over separate paths. So "the newest id sent"
//! is no safe point to resume from after lost wake-ups: a message older than it may be the
//! one whose wake-up was lost. A catch-up therefore reads from [`REORDER_WINDOW_MS`] before
//! the newest id sent, and skips the ids this connection sent in that window
//! ([`Delivered::record`]).
//!
//! Ids grow in commit order (the writer makes every new id exceed every stored one), and
//! each carries the clock of the node that wrote it. A message committed before one already
//! sent therefore has an id inside the window as long as its wake-up arrived within the
//! window of the other's, and the nodes' clocks agree to well within the window (NTP keeps
//! them within milliseconds). A connection's starting point allows for a larger
//! disagreement ([`CLOCK_ALLOWANCE_MS`]), since nothing it sent bounds it yet.
//!
//! The same record drops a wake-up for a message that a `sync` or catch-up already read from
//! the database while the wake-up was on its way.
//!
//! It also keeps, per channel, the run of `seq`s sent without a gap, so that a wake-up
//! that would open a hole (seq n+2 after n: the wake-up of n+1 is late, from another node,
//! or lost) is not sent (the connection catches up from the database instead, which sends
//! n+1 and n+2 in order, since a message is committed before any with a larger `seq`), and
//! a wake-up for a message inside that run is known to be sent already however late it
//! arrives (a node that published it long after its commit, past the reorder window).

use crate::id;
use std::collections::VecDeque;

/// How far out of order wake-ups may arrive, as time encoded in message ids.
pub const REORDER_WINDOW_MS: i64 = 5_000;
/// How far the clock of the node holding a connection may run ahead of the nodes that
/// write messages: a connection starts this long before the moment it opened.
pub const CLOCK_ALLOWANCE_MS: i64 = 30_000;
/// Most channels whose newest `seq` is remembered; past this the least recently used is
/// forgotten, and its next message is taken as it comes.
const MAX_CHANNELS: usize = 64;
/// Most ids remembered. Past this the oldest are forgotten, which at worst sends a message
/// twice (clients drop a message whose id they hold), never loses one.
const MAX_REMEMBERED: usize = 1024;

/// A connection's record of the messages it sent.
#[derive(Debug)]
pub struct Delivered {
    /// The newest message id sent, or for a connection that has sent none, the smallest id
    /// of the moment it opened (it was subscribed by then: later messages reach it live),
    /// less [`CLOCK_ALLOWANCE_MS`].
    newest: i64,
    /// Ids sent within [`REORDER_WINDOW_MS`] of `newest`, ascending. It holds no memory
    /// until a message is sent, and gives back what it no longer uses.
    recent: VecDeque<i64>,
    /// The cursor of the client's last `sync`: it holds every message up to it (perhaps
    /// from an earlier connection), so a catch-up never reads from before it.
    floor: i64,
    /// Per channel, the run of seqs sent, most recently used last; empty (no memory) until
    /// a message is sent.
    channels: Vec<Run>,
}

/// Seqs `first..=newest` of `channel` have all been sent on this connection.
#[derive(Debug, Clone, Copy)]
struct Run {
    channel: i64,
    first: i64,
    newest: i64,
}

impl Delivered {
    /// The record of a connection subscribed at `now_ms` (this node's wall clock).
    pub fn opened_at(now_ms: i64) -> Self {
        Self {
            newest: id::min_id_at(now_ms - CLOCK_ALLOWANCE_MS),
            recent: VecDeque::new(),
            floor: i64::MIN,
            channels: Vec::new(),
        }
    }

    /// Where a catch-up reads from: every message with a larger id may not have been
    /// sent, and [`Self::record`] tells which were.
    pub fn resume_after(&self) -> i64 {
        self.window_start().max(self.floor)
    }

    /// The client synced from `since`: it holds every message up to that id.
    pub fn synced_from(&mut self, since: i64) {
        self.floor = since;
    }

    /// Records that the message `id` is being sent; `false` if it was already.
    pub fn record(&mut self, id: i64) -> bool {
        if id > self.newest {
            self.newest = id;
            let start = self.window_start();
            while self.recent.front().is_some_and(|&old| old <= start) {
                self.recent.pop_front();
            }
        } else if id <= self.window_start() {
            // Older than the window: a message a client asked for again by `sync`.
            return true;
        }
        match self.recent.back() {
            Some(&last) if last >= id => match self.recent.binary_search(&id) {
                Ok(_) => return false,
                Err(at) => self.recent.insert(at, id),
            },
            _ => self.recent.push_back(id),
        }
        if self.recent.len() > MAX_REMEMBERED {
            self.recent.pop_front();
        }
        if self.recent.capacity() > 16 && self.recent.len() < self.recent.capacity() / 4 {
            // A burst's room is given back once the window has moved past it.
            self.recent.shrink_to((2 * self.recent.len()).max(16));
        }
        true
    }

    /// Whether message `seq` of `channel` may be sent now: not if it would open a hole
    /// after the newest sent in that channel (an older one, arriving late, may).
    pub fn in_order(&self, channel: i64, seq: i64) -> bool {
        self.channels
            .iter()
            .find(|run| run.channel == channel)
            .is_none_or(|run| seq <= run.newest + 1)
    }

    /// Whether the client has message `id` (`seq` of `channel`) already: it is at or
    /// below the cursor of its last `sync`, or inside the run of seqs sent in its channel.
    pub fn has(&self, channel: i64, seq: i64, id: i64) -> bool {
        id <= self.floor
            || self
                .channels
                .iter()
                .any(|run| run.channel == channel && (run.first..=run.newest).contains(&seq))
    }

    /// Records that message `seq` of `channel` is being sent.
    pub fn placed(&mut self, channel: i64, seq: i64) {
        let fresh = Run {
            channel,
            first: seq,
            newest: seq,
        };
        let run = match self.channels.iter().position(|run| run.channel == channel) {
            Some(at) => {
                let mut run = self.channels.remove(at);
                if seq > run.newest + 1 {
                    // Past a hole (a catch-up that read from after some unsent seqs): the
                    // run starts again here.
                    run = fresh;
                } else if seq == run.first - 1 {
                    run.first = seq;
                } else {
                    run.newest = run.newest.max(seq);
                }
                run
            }
            None => {
                if self.channels.len() == MAX_CHANNELS {
                    self.channels.remove(0);
                }
                fresh
            }
        };
        self.channels.push(run);
    }

    fn window_start(&self) -> i64 {
        id::min_id_at(id::timestamp_ms(self.newest) - REORDER_WINDOW_MS)
    }

    /// Whether the message `id` is remembered as sent.
    #[cfg(test)]
    fn contains(&self, id: i64) -> bool {
        self.recent.binary_search(&id).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64, n: i64) -> i64 {
        id::min_id_at(ms) + n
    }

    const T: i64 = 1_800_000_000_000;

    #[test]
    fn a_new_connection_resumes_from_just_before_it_opened() {
        let d = Delivered::opened_at(T);
        assert_eq!(
            d.resume_after(),
            id::min_id_at(T - CLOCK_ALLOWANCE_MS - REORDER_WINDOW_MS)
        );
        assert!(!d.contains(at(T, 1)));
    }

    #[test]
    fn a_catch_up_never_resends_what_the_client_synced_past() {
        let mut d = Delivered::opened_at(T);
        let cursor = at(T - 1_000, 0);
        d.synced_from(cursor);
        assert_eq!(
            d.resume_after(),
            cursor,
            "the client holds everything up to its cursor"
        );
        d.record(at(T + 10 * REORDER_WINDOW_MS, 0));
        assert_eq!(
            d.resume_after(),
            at(T + 9 * REORDER_WINDOW_MS, 0),
            "then the window"
        );
    }

    #[test]
    fn a_message_that_would_open_a_hole_waits_for_a_catch_up() {
        let mut d = Delivered::opened_at(T);
        assert!(d.in_order(7, 40), "an unknown channel takes what comes");
        d.placed(7, 40);
        assert!(d.in_order(7, 41));
        assert!(!d.in_order(7, 42), "41 is missing");
        assert!(d.in_order(7, 39), "an older one arriving late");
        d.placed(7, 39);
        d.placed(7, 42);
        assert!(d.in_order(7, 43), "the newest stays 42");
        assert!(d.in_order(8, 5), "channels are apart");
    }

    #[test]
    fn a_late_wake_up_of_a_message_sent_is_known_by_its_seq() {
        let mut d = Delivered::opened_at(T);
        let old = at(T, 0);
        d.record(old);
        d.placed(7, 10);
        for seq in 11..=20 {
            d.record(at(T + seq * REORDER_WINDOW_MS, 0));
            d.placed(7, seq);
        }
        assert!(d.record(old), "past the window, the id alone is no guide");
        assert!(d.has(7, 10, old), "its seq is inside the run sent");
        assert!(d.has(7, 20, at(T, 1)) && !d.has(7, 21, at(T, 1)));
        assert!(
            !d.has(7, 9, at(T, 1)),
            "below the first seq sent: maybe never sent"
        );
        assert!(!d.has(8, 10, at(T, 1)), "channels are apart");
    }

    #[test]
    fn the_run_of_seqs_sent_has_no_holes() {
        let mut d = Delivered::opened_at(T);
        d.placed(7, 40);
        d.placed(7, 39);
        d.placed(7, 37);
        assert!(d.has(7, 39, 0) && !d.has(7, 38, 0) && !d.has(7, 37, 0));
        d.placed(7, 41);
        d.placed(7, 45);
        assert!(d.has(7, 45, 0));
        assert!(!d.has(7, 41, 0), "a jump starts the run again");
    }

    #[test]
    fn the_client_holds_everything_up_to_its_sync_cursor() {
        let mut d = Delivered::opened_at(T);
        assert!(!d.has(7, 1, at(T, 5)));
        d.synced_from(at(T, 5));
        assert!(d.has(7, 1, at(T, 5)) && d.has(9, 1, at(T - 1, 0)));
        assert!(!d.has(7, 2, at(T, 6)));
    }

    #[test]
    fn channels_remembered_are_bounded() {
        let mut d = Delivered::opened_at(T);
        for channel in 0..(MAX_CHANNELS as i64 + 1) {
            d.placed(channel, 10);
        }
        assert_eq!(d.channels.len(), MAX_CHANNELS);
        assert!(d.in_order(0, 50), "the least recently used was forgotten");
        assert!(!d.in_order(1, 50));
    }

    #[test]
    fn out_of_order_ids_are_kept_and_duplicates_refused() {
        let mut d = Delivered::opened_at(T);
        assert!(d.record(at(T + 10, 2)));
        assert!(d.record(at(T + 5, 0)), "an older id arriving late is new");
        assert!(d.record(at(T + 10, 1)));
        assert!(!d.record(at(T + 10, 2)));
        assert!(!d.record(at(T + 5, 0)));
        assert!(d.contains(at(T + 10, 1)));
        assert!(!d.contains(at(T + 7, 0)));
        assert_eq!(
            d.recent.iter().copied().collect::<Vec<_>>(),
            vec![at(T + 5, 0), at(T + 10, 1), at(T + 10, 2)]
        );
    }

    #[test]
    fn the_window_follows_the_newest_id() {
        let mut d = Delivered::opened_at(T);
        d.record(at(T + 1, 0));
        d.record(at(T + 2, 0));
        d.record(at(T + 1 + REORDER_WINDOW_MS, 0));
        assert_eq!(d.recent.len(), 2, "the first id left the window");
        assert_eq!(d.resume_after(), id::min_id_at(T + 1));
        assert!(!d.contains(at(T + 1, 0)));
        // A sync may send messages older than the window: they are not remembered.
        assert!(d.record(at(T, 0)));
        assert!(d.record(at(T, 0)));
        assert_eq!(d.recent.len(), 2);
    }

    #[test]
    fn memory_is_bounded_and_given_back() {
        let mut d = Delivered::opened_at(T);
        for n in 0..(MAX_REMEMBERED as i64 + 100) {
            d.record(at(T + 1, n));
        }
        assert_eq!(d.recent.len(), MAX_REMEMBERED);
        assert!(!d.contains(at(T + 1, 0)));
        // A window later, a steady trickle holds only what it uses.
        for n in 0..10 {
            d.record(at(T + 10 * REORDER_WINDOW_MS + n, 0));
        }
        assert_eq!(d.recent.len(), 10);
        assert!(d.recent.capacity() <= 4 * 10, "{}", d.recent.capacity());
    }
}
