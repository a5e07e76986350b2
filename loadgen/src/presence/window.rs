//! What a measured stretch of the presence scenario cost: CPU of the server, of this tool
//! and of Redis, the server's context switches, what else ran on the server's core, and
//! the heartbeats sent meanwhile; and the server's online gauge, read during a window or
//! waited for.

use super::{heartbeats::Heartbeats, Setup};
use crate::{chat::gauge, cpu, error::Error, redis_ns, server::ServerProcess};
use reqwest::Client;
use std::time::{Duration, Instant};

/// The online gauge is read this often during a CPU window (both windows alike).
const GAUGE_EVERY: Duration = Duration::from_secs(5);
/// A CPU window counts as quiet when other processes took at most this share of the
/// server's core and at most this share of the heartbeats went out late; otherwise it is
/// measured again, up to `TRIES` times in all.
pub const QUIET_CORE: f64 = 0.10;
pub const TRIES: u32 = 3;

/// Resources used over one measured stretch.
#[derive(Debug, Default, Clone)]
pub struct Window {
    /// Wall time it lasted.
    pub wall: Duration,
    /// CPU seconds of the server, of this tool, and of Redis (whole instance).
    pub server_cpu: Option<f64>,
    pub client_cpu: Option<f64>,
    pub redis_cpu: Option<f64>,
    /// Context switches of all server threads.
    pub server_switches: Option<u64>,
    /// CPU seconds that other processes took on the server's core (when it is pinned):
    /// this machine is shared, and what else ran there shows in latencies.
    pub core_others: Option<f64>,
    /// Heartbeats handed to connections, those a full queue refused, and those sent late
    /// (see `heartbeats::LATE`).
    pub heartbeats: u64,
    pub not_queued: u64,
    pub late: u64,
    /// Lowest and highest `kith_presence_online` read during the window.
    pub online: Option<(i64, i64)>,
    /// Which attempt this was (see [`quiet`]); 1 for windows measured once.
    pub attempt: u32,
}

impl Window {
    /// Server CPU as a share of one core.
    pub fn server_share(&self) -> Option<f64> {
        Some(self.server_cpu? / self.wall.as_secs_f64())
    }

    /// Other processes' share of the server's core.
    pub fn others_share(&self) -> Option<f64> {
        Some(self.core_others? / self.wall.as_secs_f64())
    }

    /// How disturbed the window was: the larger of other processes' share of the server's
    /// core and the share of heartbeats sent late (a busy client core bunches them up).
    pub fn disturbance(&self) -> f64 {
        let late = if self.heartbeats > 0 {
            self.late as f64 / self.heartbeats as f64
        } else {
            0.0
        };
        self.others_share().unwrap_or(0.0).max(late)
    }
}

/// A CPU window of `--duration-secs`, the online gauge read meanwhile. When it was
/// disturbed by more than `QUIET_CORE` (see [`Window::disturbance`]: a busy neighbour on
/// the server's core costs it cache misses and preemptions; a busy client core bunches the
/// heartbeats up), it is measured again; the quietest of at most `TRIES` attempts is kept.
pub async fn quiet(
    setup: &Setup,
    server: &ServerProcess,
    http: &Client,
    base: &str,
    redis_url: Option<&str>,
    heartbeats: Option<&Heartbeats>,
) -> Result<Window, Error> {
    let mut best: Option<Window> = None;
    for attempt in 1..=TRIES {
        let probe = Probe::start(setup, server, redis_url, heartbeats).await;
        let online = sample_online(http, base, setup.opts.duration).await?;
        let mut window = probe.finish(setup, server, heartbeats).await;
        window.online = online;
        window.attempt = attempt;
        let disturbance = window.disturbance();
        if best.as_ref().is_none_or(|b| disturbance < b.disturbance()) {
            best = Some(window);
        }
        if disturbance <= QUIET_CORE {
            break;
        }
        eprintln!(
            "  disturbed ({:.0}%: other processes on the server's core, or late heartbeats); {}",
            disturbance * 100.0,
            if attempt < TRIES {
                "measuring again"
            } else {
                "keeping the quietest attempt"
            }
        );
    }
    best.ok_or_else(|| Error::Run("no CPU window was measured".into()))
}

/// Counters read at the start of a window.
pub struct Probe {
    started: Instant,
    server: Option<f64>,
    client: Option<f64>,
    /// Redis URL and its CPU seconds so far, on the Redis backend.
    redis: Option<(String, f64)>,
    /// Busy seconds of the server's core so far.
    core: Option<f64>,
    switches: Option<u64>,
    heartbeats: (u64, u64, u64),
}

fn read(heartbeats: Option<&Heartbeats>) -> (u64, u64, u64) {
    heartbeats.map_or((0, 0, 0), Heartbeats::counts)
}

impl Probe {
    pub async fn start(
        setup: &Setup,
        server: &ServerProcess,
        redis_url: Option<&str>,
        heartbeats: Option<&Heartbeats>,
    ) -> Self {
        let redis = match redis_url {
            Some(url) => redis_ns::cpu_seconds(url)
                .await
                .ok()
                .map(|cpu| (url.to_string(), cpu)),
            None => None,
        };
        Self {
            redis,
            server: setup.clock.seconds(server.pid()),
            client: setup.clock.seconds(std::process::id()),
            switches: cpu::context_switches(server.pid()),
            core: setup
                .server_cpu
                .and_then(|c| setup.clock.core_busy_seconds(c)),
            heartbeats: read(heartbeats),
            started: Instant::now(),
        }
    }

    pub async fn finish(
        self,
        setup: &Setup,
        server: &ServerProcess,
        heartbeats: Option<&Heartbeats>,
    ) -> Window {
        let wall = self.started.elapsed();
        let server_cpu = setup.clock.seconds(server.pid());
        let client_cpu = setup.clock.seconds(std::process::id());
        let switches = cpu::context_switches(server.pid());
        let core = setup
            .server_cpu
            .and_then(|c| setup.clock.core_busy_seconds(c));
        let (sent, refused, late) = read(heartbeats);
        let redis_cpu = match &self.redis {
            Some((url, before)) => redis_ns::cpu_seconds(url)
                .await
                .ok()
                .map(|after| after - before),
            None => None,
        };
        Window {
            wall,
            server_cpu: delta(self.server, server_cpu),
            client_cpu: delta(self.client, client_cpu),
            redis_cpu,
            server_switches: switches
                .zip(self.switches)
                .map(|(a, b)| a.saturating_sub(b)),
            core_others: delta(self.core, core)
                .zip(delta(self.server, server_cpu))
                .map(|(core, own)| (core - own).max(0.0)),
            heartbeats: sent - self.heartbeats.0,
            not_queued: refused - self.heartbeats.1,
            late: late - self.heartbeats.2,
            online: None,
            attempt: 1,
        }
    }
}

pub fn delta(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    Some(after? - before?)
}

/// Reads `kith_presence_online` every `GAUGE_EVERY` for `duration`; returns the lowest
/// and highest reading.
async fn sample_online(
    http: &Client,
    base: &str,
    duration: Duration,
) -> Result<Option<(i64, i64)>, Error> {
    let end = tokio::time::Instant::now() + duration;
    let mut range: Option<(i64, i64)> = None;
    loop {
        if let Some(n) = gauge(http, base, "kith_presence_online").await? {
            range = Some(range.map_or((n, n), |(lo, hi)| (lo.min(n), hi.max(n))));
        }
        let next = tokio::time::Instant::now() + GAUGE_EVERY;
        if next >= end {
            tokio::time::sleep_until(end).await;
            return Ok(range);
        }
        tokio::time::sleep_until(next).await;
    }
}

/// Waits (up to a few seconds: the gauge is refreshed by the once-a-second sweep) until
/// the server counts `expected` users online; an error otherwise.
pub async fn expect_online(http: &Client, base: &str, expected: i64) -> Result<(), Error> {
    wait_for_online(http, base, expected, Duration::from_secs(5)).await
}

pub async fn wait_for_online(
    http: &Client,
    base: &str,
    expected: i64,
    limit: Duration,
) -> Result<(), Error> {
    let deadline = Instant::now() + limit;
    loop {
        let online = gauge(http, base, "kith_presence_online").await?;
        if online == Some(expected) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Run(format!(
                "the server counts {online:?} users online, expected {expected}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
