//! The heartbeat sender: one thread that hands `{"type":"heartbeat"}` to every connection
//! once per interval, in a shuffled order, so each connection has its own random phase
//! and the heartbeats are spaced evenly (10,000 users every 5 s: one every 500 µs).
//!
//! A thread rather than a task: tokio's timers tick in whole milliseconds, so a task would
//! send the 2,000 heartbeats a second in pairs, one burst per millisecond, and the server
//! would wake about half as often as it does for independent clients, whose frames arrive
//! one at a time. The connection tasks still do the writing; this thread only queues.

use crate::{
    error::{io, Error},
    ws_client::Conn,
};
use rand::seq::SliceRandom as _;
use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// Longest single sleep, so a stop request is seen within this long.
const NAP: Duration = Duration::from_millis(10);
/// A heartbeat queued later than this after its time counts as late: a starved sender
/// (its core busy with something else) bunches heartbeats up, and the server then wakes
/// less often than for independent clients, which makes presence look cheaper.
pub const LATE: Duration = Duration::from_micros(250);

/// The running sender; [`Heartbeats::stop`] (or dropping it) ends it.
pub struct Heartbeats {
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Counts {
    /// Heartbeats queued to a connection.
    sent: AtomicU64,
    /// Heartbeats a full (or closed) connection queue refused.
    refused: AtomicU64,
    /// Heartbeats queued more than `LATE` after their time.
    late: AtomicU64,
}

impl Heartbeats {
    /// Starts sending: every connection once per `every`, the first round spread over the
    /// first interval.
    pub fn start(conns: Arc<Vec<Conn>>, every: Duration) -> Result<Self, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let mut order: Vec<usize> = (0..conns.len()).collect();
        order.shuffle(&mut rand::thread_rng());
        let gap = every / conns.len().max(1) as u32;
        let thread = {
            let (stop, counts) = (stop.clone(), counts.clone());
            std::thread::Builder::new()
                .name("heartbeats".into())
                .spawn(move || send(&conns, &order, gap, &stop, &counts))
                .map_err(io("starting the heartbeat thread"))?
        };
        Ok(Self {
            stop,
            counts,
            thread: Some(thread),
        })
    }

    /// Heartbeats queued so far, those refused, and those queued late.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.counts.sent.load(Ordering::Relaxed),
            self.counts.refused.load(Ordering::Relaxed),
            self.counts.late.load(Ordering::Relaxed),
        )
    }

    /// Stops sending; once this returns, no further heartbeat is queued. Blocks for up to
    /// `NAP`, which this tool's own runtime can afford once.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The thread's loop: heartbeat n goes to `order[n % len]` at `n · gap` after the start,
/// on time by the clock (a late wake-up sends what is due at once, then goes on).
fn send(conns: &[Conn], order: &[usize], gap: Duration, stop: &AtomicBool, counts: &Counts) {
    if order.is_empty() {
        return;
    }
    let start = Instant::now();
    let mut n: u64 = 0;
    loop {
        let due = start + gap.mul_f64(n as f64);
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let now = Instant::now();
            if now >= due {
                break;
            }
            std::thread::sleep((due - now).min(NAP));
        }
        if due.elapsed() > LATE {
            counts.late.fetch_add(1, Ordering::Relaxed);
        }
        let conn = &conns[order[(n % order.len() as u64) as usize]];
        let counter = if conn.heartbeat() {
            &counts.sent
        } else {
            &counts.refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
        n += 1;
    }
}
