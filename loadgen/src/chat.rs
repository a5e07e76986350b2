//! The chat scenario, run once per backend and runtime flavour: start a server, seed it,
//! then measure in this order, each step building on the connections of the one before:
//!
//! 1. memory: 5,000 then 10,000 idle authenticated WebSockets, the server's RSS at each;
//!    the second 5,000 close again afterwards;
//! 2. 1:1: the 1,000 pairs connect (with the 5,000 idle ones still open) and send at fixed
//!    aggregate rates, each message timed from send to the peer's receipt;
//! 3. groups: 20 groups of 100 (`--groups`) connect; the send rate steps up until the server
//!    is past saturation (deliveries during the run fall 10% short of the offered fanout,
//!    or p99 passes a second): steps beyond the first over 50 ms still show where the
//!    curve goes;
//! 4. long-poll (first flavour only): pairs and groups disconnect; 500 receivers long-poll
//!    while their peers POST, then the same receivers listen on WebSockets for the same
//!    POSTs.
//!
//! Steps 2 and 3 begin with a second of unmeasured traffic at their first rate (a warm-up:
//! the server's and the database's caches, cached plans and allocators as after a while
//! in service). Every send run is followed by a drain (until no frame has arrived for a moment), so one
//! run's backlog never lands in the next run's figures.

use crate::{
    chat_seed::{self, ChatPopulation, GROUP_SIZE},
    cpu::CpuClock,
    db::Db,
    error::Error,
    options::{Backend, ChatOptions, Engine, Flavour},
    server::{ServerProcess, UnderTest},
    ws_client::{self, Conn, Recorder, Tally},
};
use reqwest::Client;
use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::task::JoinSet;

/// Idle connections at the two memory points.
pub const MEMORY_POINTS: [usize; 2] = [5_000, 10_000];
/// Pairs whose receivers long-poll (and then listen on WebSockets) in step 4.
pub const LONGPOLL_PAIRS: usize = 500;
/// A group step passes with p99 at or under this.
pub const GROUP_P99_TARGET: Duration = Duration::from_millis(50);
/// Share of expected deliveries a passing step must deliver.
pub const COMPLETE: f64 = 0.999;
/// Group stepping stops after a step that delivers less than this share of the offered
/// fanout while sending, or whose p99 passes `GIVE_UP_P99`: the server is saturated, and
/// higher rates would only take longer to drain.
const SATURATED_SHARE: f64 = 0.9;
/// How often pair and group members heartbeat (the browser client's interval).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
pub const GIVE_UP_P99: Duration = Duration::from_secs(1);
/// Open-file limit asked for the server (and, as far as allowed, this process).
pub const FD_LIMIT: u64 = 65_536;
/// Wait after the open-socket gauge reaches its target before reading RSS: lets the
/// connection tasks finish their start-up allocations.
pub const SETTLE: Duration = Duration::from_secs(2);
/// Unmeasured traffic before the first 1:1 and the first group run.
const WARM_UP: Duration = Duration::from_secs(1);
/// The server has drained once no frame has arrived for this long.
const QUIET: Duration = Duration::from_millis(500);
/// Longest drain; a server still delivering after this is far past saturation.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// The long-poll wait each request asks for (as the API's clients do).
const LONGPOLL_TIMEOUT_SECS: u32 = 25;

/// What every run shares.
pub struct Setup {
    pub opts: ChatOptions,
    pub server_bin: PathBuf,
    pub server_cpu: Option<usize>,
    pub clock: CpuClock,
}

/// Server RSS at each point of the memory measurement.
#[derive(Debug, Default)]
pub struct Memory {
    /// KiB with no connection, after seeding.
    pub rss_idle: Option<u64>,
    /// KiB at each of `MEMORY_POINTS`.
    pub rss: Vec<Option<u64>>,
    /// Seconds to open each batch of 5,000.
    pub open_secs: Vec<f64>,
}

impl Memory {
    /// (RSS@10k − RSS@5k) / 5,000, KiB per connection.
    pub fn per_connection_kib(&self) -> Option<f64> {
        let (a, b) = (self.rss.first().copied()??, self.rss.get(1).copied()??);
        let n = MEMORY_POINTS[1] - MEMORY_POINTS[0];
        Some((b as f64 - a as f64) / n as f64)
    }
}

/// One paced send run and what it delivered.
#[derive(Debug)]
pub struct SendRun {
    /// Messages per second offered.
    pub rate: u32,
    pub duration: Duration,
    /// Messages handed to a connection (or a POST) during the run.
    pub dispatched: u64,
    /// Messages the client could not even queue (connection gone or its queue full).
    pub not_queued: u64,
    /// Receivers per message: 1 for a pair, 99 for a group of 100.
    pub fanout: u64,
    pub tally: Tally,
    /// Server and loadgen CPU seconds over the send window.
    pub server_cpu: Option<f64>,
    pub client_cpu: Option<f64>,
    /// From the end of sending until the last delivery arrived.
    pub drain: Duration,
    /// The server's own timing of the run's sends, queue to commit.
    pub store: Option<StoreLatency>,
}

/// How long the server took to store a run's sends, from its `kith_message_store_seconds`
/// histogram (the writer's queue to the commit): per bucket bound in seconds (the last is
/// infinite), how many of the run's sends took at most that long.
#[derive(Debug)]
pub struct StoreLatency(Vec<(f64, u64)>);

impl StoreLatency {
    /// The smallest bucket bound (seconds) within which `p` percent of the sends were
    /// stored; `None` without sends.
    pub fn bound_of(&self, p: f64) -> Option<f64> {
        let total = self.0.last()?.1;
        if total == 0 {
            return None;
        }
        let wanted = (p / 100.0 * total as f64).ceil() as u64;
        self.0.iter().find(|(_, n)| *n >= wanted).map(|(b, _)| *b)
    }

    /// The largest finite bucket bound (seconds).
    pub fn largest_bound(&self) -> Option<f64> {
        self.0
            .iter()
            .map(|(b, _)| *b)
            .filter(|b| b.is_finite())
            .reduce(f64::max)
    }

    /// What was added between two readings of the histogram.
    fn since(before: &[(f64, u64)], after: Vec<(f64, u64)>) -> Option<Self> {
        if before.len() != after.len() {
            return None;
        }
        let buckets = after
            .into_iter()
            .zip(before)
            .map(|((bound, n), (_, was))| (bound, n.saturating_sub(*was)))
            .collect();
        Some(Self(buckets))
    }
}

/// The cumulative buckets of `kith_message_store_seconds` from `/metrics` (empty if the
/// server does not export it or cannot be reached).
async fn store_buckets(http: &Client, base: &str) -> Vec<(f64, u64)> {
    let Ok(response) = http.get(format!("{base}/metrics")).send().await else {
        return Vec::new();
    };
    let Ok(text) = response.text().await else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("kith_message_store_seconds_bucket{le=\"")?;
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = match bound {
                "+Inf" => f64::INFINITY,
                b => b.parse().ok()?,
            };
            Some((bound, count.trim().parse().ok()?))
        })
        .collect()
}

impl SendRun {
    pub fn expected(&self) -> u64 {
        self.dispatched.saturating_sub(self.not_queued) * self.fanout
    }

    /// Delivered share of what was sent (after the drain).
    pub fn completeness(&self) -> f64 {
        let expected = self.expected();
        if expected == 0 {
            return 0.0;
        }
        self.tally.latencies.len() as f64 / expected as f64
    }

    /// Deliveries that arrived while sending, per second.
    pub fn delivered_per_sec(&self) -> f64 {
        self.tally.received_in_window as f64 / self.duration.as_secs_f64()
    }

    /// Whether the run meets the group criteria: p99 within target, (nearly) everything
    /// delivered, nobody disconnected.
    pub fn within_target(&self, p99_target: Duration) -> bool {
        let mut sorted = self.tally.latencies.clone();
        sorted.sort_unstable();
        let p99 = crate::chat_report::percentile_ns(&sorted, 99.0);
        p99 <= p99_target.as_nanos() as u64
            && self.completeness() >= COMPLETE
            && self.tally.disconnects.is_empty()
            && self.not_queued == 0
    }
}

/// Everything measured on one server.
#[derive(Debug)]
pub struct ChatReport {
    pub backend: Backend,
    pub flavour: Flavour,
    /// The database engine the server stored in.
    pub database: Engine,
    pub users: usize,
    pub channels: usize,
    pub memberships: usize,
    /// Groups of [`GROUP_SIZE`] seeded, which the group runs sent to.
    pub group_count: usize,
    pub seed_time: Duration,
    pub server_fd_limit: Option<u64>,
    pub memory: Memory,
    pub pairs: Vec<SendRun>,
    pub groups: Vec<SendRun>,
    /// Long-poll, then WebSocket, for the same POSTs.
    pub longpoll: Option<(SendRun, SendRun)>,
    /// Disconnects of idle connections over the whole run (nobody asked them to close).
    pub idle_disconnects: Tally,
    pub log: crate::server::LogSummary,
}

/// One server, start to finish; the server is killed and the Redis namespace deleted
/// whatever happens.
pub async fn run(
    setup: &Setup,
    backend: Backend,
    flavour: Flavour,
    with_longpoll: bool,
) -> Result<ChatReport, Error> {
    let mut run = UnderTest::start(
        &setup.server_bin,
        setup.server_cpu,
        backend,
        &setup.opts.redis_url,
        &setup.opts.database,
        &[
            ("KITH_RUNTIME", flavour.name()),
            ("KITH_SQLITE_SYNCHRONOUS", setup.opts.synchronous.name()),
        ],
        Some(FD_LIMIT),
    )
    .await?;
    let outcome = measure(
        setup,
        backend,
        flavour,
        with_longpoll,
        &mut run.server,
        &run.db_url,
    )
    .await;
    let log = run.finish(backend.name()).await;
    outcome.map(|mut r| {
        r.log = log;
        r
    })
}

async fn measure(
    setup: &Setup,
    backend: Backend,
    flavour: Flavour,
    with_longpoll: bool,
    server: &mut ServerProcess,
    db_url: &str,
) -> Result<ChatReport, Error> {
    let tag = format!("{}/{}", backend.name(), flavour.name());
    let http = Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(u64::from(LONGPOLL_TIMEOUT_SECS) + 10))
        .build()?;
    server.wait_ready(&http, Duration::from_secs(60)).await?;
    let base = server.base_url.clone();
    let ws_url = format!("{}/v1/chat/ws", base.replacen("http://", "ws://", 1));
    let server_fd_limit = server.fd_limit();

    eprintln!("[{tag}] seeding users, sessions and channels");
    let writer = Db::writer(db_url).await?;
    let started = Instant::now();
    let pop = chat_seed::write(&writer, now_ms(), setup.opts.groups).await?;
    writer.settle().await?;
    let seed_time = started.elapsed();
    writer.close().await;

    let recorder = Recorder::new();
    let mut memory = Memory::default();
    tokio::time::sleep(SETTLE).await;
    memory.rss_idle = server.rss_kib();

    // 1. Memory per idle connection.
    let idle_tokens: Vec<String> = pop.idle.iter().map(|u| u.token.clone()).collect();
    let mut idle: Vec<Conn> = Vec::new();
    for point in MEMORY_POINTS {
        eprintln!("[{tag}] opening idle WebSockets up to {point}");
        let started = Instant::now();
        let batch = idle_tokens.get(idle.len()..point).unwrap_or_default();
        idle.extend(ws_client::open_all(&ws_url, batch, &recorder).await?);
        memory.open_secs.push(started.elapsed().as_secs_f64());
        settle(&http, &base, point as i64).await?;
        memory.rss.push(server.rss_kib());
        server.check_alive()?;
    }
    let keep = MEMORY_POINTS[0];
    for conn in idle.drain(keep..) {
        conn.close().await;
    }
    settle(&http, &base, keep as i64).await?;
    // Nothing closed by itself so far: any disconnect from here on is the server's doing.
    let mut idle_disconnects = recorder.take();

    // 2. 1:1 latency.
    eprintln!("[{tag}] connecting {} pairs", pop.pairs.len());
    let pair_tokens: Vec<String> = pop
        .pairs
        .iter()
        .flat_map(|p| [p.a.token.clone(), p.b.token.clone()])
        .collect();
    let pair_conns = ws_client::open_all(&ws_url, &pair_tokens, &recorder).await?;
    let pair_beats = ws_client::keep_present(pair_conns.clone(), HEARTBEAT_EVERY);
    let mut open_now = keep + pair_conns.len();
    settle(&http, &base, open_now as i64).await?;
    // Pair n % PAIRS sends message n; the direction alternates each round through the
    // pairs. False if the client could not queue it.
    let send_pair = |n: u64, client_msg_id: String| {
        let p = (n as usize) % pop.pairs.len();
        let from_b = (n as usize / pop.pairs.len()) % 2;
        pair_conns[2 * p + from_b].send(pop.pairs[p].channel, client_msg_id)
    };
    if let Some(&rate) = setup.opts.pair_rates.first() {
        warm_up(&tag, &recorder, rate, |n| {
            send_pair(n, format!("pw-{n}"));
        })
        .await;
    }
    let mut pairs = Vec::new();
    for (i, rate) in setup.opts.pair_rates.iter().enumerate() {
        eprintln!("[{tag}] 1:1 at {rate} messages/s");
        let run = ws_run(
            setup,
            &[&*server],
            &http,
            &recorder,
            *rate,
            setup.opts.duration,
            1,
            |n, not_queued| {
                if !send_pair(n, format!("p{i}-{n}")) {
                    *not_queued += 1;
                }
            },
        )
        .await;
        pairs.push(run);
        server.check_alive()?;
    }

    // 3. Group fanout, stepped.
    eprintln!(
        "[{tag}] connecting {} group members",
        pop.groups.len() * GROUP_SIZE
    );
    let group_tokens: Vec<String> = pop
        .groups
        .iter()
        .flat_map(|g| g.members.iter().map(|m| m.token.clone()))
        .collect();
    let group_conns = ws_client::open_all(&ws_url, &group_tokens, &recorder).await?;
    let group_beats = ws_client::keep_present(group_conns.clone(), HEARTBEAT_EVERY);
    open_now += group_conns.len();
    settle(&http, &base, open_now as i64).await?;
    let groups = step_groups(
        setup,
        &[&*server],
        &http,
        &recorder,
        &tag,
        &pop,
        &group_conns,
        GIVE_UP_P99,
    )
    .await;
    server.check_alive()?;

    // The pairs' and groups' connections close; only the 5,000 idle ones stay.
    pair_beats.abort();
    group_beats.abort();
    for conn in pair_conns.iter().chain(group_conns.iter()) {
        conn.close().await;
    }
    drop((pair_conns, group_conns));
    settle(&http, &base, keep as i64).await?;

    // 4. Long-poll against WebSocket.
    let longpoll = if with_longpoll {
        Some(longpoll_vs_ws(setup, server, &http, &ws_url, &recorder, &pop, db_url).await?)
    } else {
        None
    };
    server.check_alive()?;
    // Whatever the idle connections suffered during the whole run.
    let after = recorder.take();
    for (k, n) in after.disconnects {
        *idle_disconnects.disconnects.entry(k).or_default() += n;
    }
    drop(idle);

    Ok(ChatReport {
        backend,
        flavour,
        database: setup.opts.database.engine,
        users: pop.users,
        channels: pop.channels,
        memberships: pop.memberships,
        group_count: pop.groups.len(),
        seed_time,
        server_fd_limit,
        memory,
        pairs,
        groups,
        longpoll,
        idle_disconnects,
        log: Default::default(),
    })
}

/// Step 3's runs: the group send rate stepped through `--group-rates`, senders round-robin
/// over groups and members (`group_conns` in member order), until a step saturates the
/// servers or its p99 passes `stop_past`. A server that died saturates at once, so callers
/// check liveness afterwards.
#[allow(clippy::too_many_arguments)]
pub async fn step_groups(
    setup: &Setup,
    servers: &[&ServerProcess],
    http: &Client,
    recorder: &Arc<Recorder>,
    tag: &str,
    pop: &ChatPopulation,
    group_conns: &[Conn],
    stop_past: Duration,
) -> Vec<SendRun> {
    // Message n goes to group n % groups, from its members in turn. False if the client
    // could not queue it.
    let send_group = |n: u64, client_msg_id: String| {
        let g = (n as usize) % pop.groups.len();
        let member = (n as usize / pop.groups.len()) % GROUP_SIZE;
        group_conns[g * GROUP_SIZE + member].send(pop.groups[g].channel, client_msg_id)
    };
    if let Some(&rate) = setup.opts.group_rates.first() {
        warm_up(tag, recorder, rate, |n| {
            send_group(n, format!("gw-{n}"));
        })
        .await;
    }
    let mut groups = Vec::new();
    for (i, rate) in setup.opts.group_rates.iter().enumerate() {
        eprintln!("[{tag}] groups at {rate} messages/s");
        let run = ws_run(
            setup,
            servers,
            http,
            recorder,
            *rate,
            setup.opts.duration,
            (GROUP_SIZE - 1) as u64,
            |n, not_queued| {
                if !send_group(n, format!("g{i}-{n}")) {
                    *not_queued += 1;
                }
            },
        )
        .await;
        let saturated = !run.within_target(GIVE_UP_P99.min(stop_past))
            || run.delivered_per_sec() < SATURATED_SHARE * f64::from(run.rate) * run.fanout as f64;
        groups.push(run);
        if saturated {
            break;
        }
    }
    groups
}

/// Sends over WebSockets at `rate` for `duration` (`dispatch(n, &mut not_queued)` sends
/// message n), then waits for the deliveries to drain.
#[allow(clippy::too_many_arguments)]
pub async fn ws_run(
    setup: &Setup,
    servers: &[&ServerProcess],
    http: &Client,
    recorder: &Arc<Recorder>,
    rate: u32,
    duration: Duration,
    fanout: u64,
    mut dispatch: impl FnMut(u64, &mut u64),
) -> SendRun {
    let me = std::process::id();
    let stored_before = stores_buckets(http, servers).await;
    recorder.begin(duration);
    let before = (servers_cpu(&setup.clock, servers), setup.clock.seconds(me));
    let mut not_queued = 0;
    let dispatched = ws_client::pace(rate, duration, |n| dispatch(n, &mut not_queued)).await;
    let after = (servers_cpu(&setup.clock, servers), setup.clock.seconds(me));
    let drain = drain(recorder).await;
    let tally = recorder.take();
    SendRun {
        rate,
        duration,
        dispatched,
        not_queued,
        fanout,
        tally,
        server_cpu: delta(before.0, after.0),
        client_cpu: delta(before.1, after.1),
        drain,
        store: StoreLatency::since(&stored_before, stores_buckets(http, servers).await),
    }
}

/// Sends `WARM_UP` worth of unmeasured traffic at `rate` (`dispatch(n)` sends message n)
/// and waits for it to drain; says so if any of it failed.
pub async fn warm_up(tag: &str, recorder: &Recorder, rate: u32, dispatch: impl FnMut(u64)) {
    eprintln!("[{tag}] warming up at {rate} messages/s");
    ws_client::pace(rate, WARM_UP, dispatch).await;
    drain(recorder).await;
    let tally = recorder.take();
    if !tally.errors.is_empty() || !tally.disconnects.is_empty() {
        eprintln!(
            "[{tag}] warm-up: errors {:?}, disconnects {:?}",
            tally.errors, tally.disconnects
        );
    }
}

/// CPU seconds of all `servers` together (`None` if one cannot be read).
fn servers_cpu(clock: &CpuClock, servers: &[&ServerProcess]) -> Option<f64> {
    servers.iter().map(|s| clock.seconds(s.pid())).sum()
}

/// The store histograms of all `servers`, added up bucket by bucket (servers of one build
/// share their buckets; any other shape compares to nothing).
async fn stores_buckets(http: &Client, servers: &[&ServerProcess]) -> Vec<(f64, u64)> {
    let mut total: Vec<(f64, u64)> = Vec::new();
    for server in servers {
        let buckets = store_buckets(http, &server.base_url).await;
        if total.is_empty() {
            total = buckets;
        } else if buckets.len() == total.len() {
            for ((_, sum), (_, n)) in total.iter_mut().zip(buckets) {
                *sum += n;
            }
        } else {
            return Vec::new();
        }
    }
    total
}

pub fn delta(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(b? - a?)
}

/// Waits until no frame has arrived for `QUIET` (or `DRAIN_LIMIT` passed); returns how
/// long that took, the quiet period excluded.
pub async fn drain(recorder: &Recorder) -> Duration {
    let started = Instant::now();
    let mut last = recorder.frames_total();
    let mut last_change = Instant::now();
    while last_change.elapsed() < QUIET && started.elapsed() < DRAIN_LIMIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = recorder.frames_total();
        if now != last {
            last = now;
            last_change = Instant::now();
        }
    }
    last_change.saturating_duration_since(started)
}

/// Waits until the server's open-socket gauge reads `expected`, then a little longer.
pub async fn settle(http: &Client, base: &str, expected: i64) -> Result<(), Error> {
    settle_on(http, base, "kith_websockets_open", expected).await
}

/// Waits until the `/metrics` gauge `name` reads `expected`, then a little longer.
pub async fn settle_on(http: &Client, base: &str, name: &str, expected: i64) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let open = gauge(http, base, name).await?;
        if open == Some(expected) {
            break;
        }
        if Instant::now() >= deadline {
            return Err(Error::Run(format!(
                "the server's {name} reads {open:?}, expected {expected}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(SETTLE).await;
    Ok(())
}

/// A gauge (`name value` line) from `/metrics`.
pub async fn gauge(http: &Client, base: &str, name: &str) -> Result<Option<i64>, Error> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok()))
}

/// Step 4: the first `LONGPOLL_PAIRS` pairs; `a` POSTs at the long-poll rate, `b`
/// receives, first by long-poll, then over a WebSocket.
async fn longpoll_vs_ws(
    setup: &Setup,
    server: &ServerProcess,
    http: &Client,
    ws_url: &str,
    recorder: &Arc<Recorder>,
    pop: &ChatPopulation,
    db_url: &str,
) -> Result<(SendRun, SendRun), Error> {
    let base = server.base_url.clone();
    let pairs = &pop.pairs[..LONGPOLL_PAIRS.min(pop.pairs.len())];
    let rate = setup.opts.longpoll_rate;

    // Every receiver starts from the newest message, so the first answers carry only what
    // this run sends, not the backlog of the earlier runs.
    let probe = Db::probe(db_url).await?;
    let newest = probe.newest_message_id().await?;
    probe.close().await;

    eprintln!(
        "[longpoll] {} receivers long-polling, {rate} POSTs/s",
        pairs.len()
    );
    let mut pollers = JoinSet::new();
    for p in pairs {
        pollers.spawn(poll_loop(
            http.clone(),
            format!("{base}/v1/chat/sync"),
            p.b.token.clone(),
            newest,
            recorder.clone(),
        ));
    }
    // Let every poller reach its wait before the first POST.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let lp = post_run(setup, server, http, recorder, pairs, rate, "l").await;
    pollers.abort_all();
    while pollers.join_next().await.is_some() {}

    eprintln!("[longpoll] the same receivers on WebSockets, {rate} POSTs/s");
    let tokens: Vec<String> = pairs.iter().map(|p| p.b.token.clone()).collect();
    let conns = ws_client::open_all(ws_url, &tokens, recorder).await?;
    settle(http, &base, (MEMORY_POINTS[0] + conns.len()) as i64).await?;
    let ws = post_run(setup, server, http, recorder, pairs, rate, "w").await;
    for conn in &conns {
        conn.close().await;
    }
    Ok((lp, ws))
}

/// One receiver's long-poll loop, until aborted.
pub async fn poll_loop(
    http: Client,
    url: String,
    token: String,
    since: i64,
    recorder: Arc<Recorder>,
) {
    let mut cursor = since.to_string();
    loop {
        for m in sync_once(&http, &url, &token, &mut cursor, &recorder).await {
            let content = m.get("content").and_then(|c| c.as_str());
            recorder.delivery(content.and_then(ws_client::stamp_of_content));
        }
    }
}

/// One long poll of Kith's `GET /v1/chat/sync` (`url`) from `cursor`, waiting up to
/// [`LONGPOLL_TIMEOUT_SECS`]: the messages it answered (none after a failure, which the
/// recorder counts), with `cursor` moved to the answer's.
pub async fn sync_once(
    http: &Client,
    url: &str,
    token: &str,
    cursor: &mut String,
    recorder: &Recorder,
) -> Vec<serde_json::Value> {
    let request = http
        .get(url)
        .query(&[
            ("since", cursor.as_str()),
            ("timeout", &LONGPOLL_TIMEOUT_SECS.to_string()),
        ])
        .bearer_auth(token);
    let answer = ws_client::poll(
        recorder,
        request,
        reqwest::Response::json::<serde_json::Value>,
    );
    let Some(mut body) = answer.await else {
        return Vec::new();
    };
    if let Some(next) = body.get("cursor").and_then(|c| c.as_str()) {
        *cursor = next.to_string();
    }
    match body.get_mut("messages").map(serde_json::Value::take) {
        Some(serde_json::Value::Array(messages)) => messages,
        _ => Vec::new(),
    }
}

/// `a` of `pair` POSTs load message `n` to their channel (`…/messages` on `base`); the 201
/// counts as its ack, anything else as an error.
pub fn post_message(
    http: &Client,
    base: &str,
    pair: &chat_seed::Pair,
    recorder: &Arc<Recorder>,
    tag: &str,
    n: u64,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let request = http
        .post(format!("{base}/v1/chat/channels/{}/messages", pair.channel))
        .bearer_auth(&pair.a.token)
        .json(&serde_json::json!({
            "content": recorder.stamped_content(tag),
            "client_msg_id": format!("{tag}-{n}"),
        }));
    let recorder = recorder.clone();
    async move {
        let sent = recorder.now_ns();
        match request.send().await {
            Ok(r) if r.status().as_u16() == 201 => {
                let _ = r.bytes().await;
                recorder.ack(Some(sent));
            }
            Ok(r) => recorder.error(format!("POST HTTP {}", r.status().as_u16())),
            Err(e) => recorder.error(format!(
                "POST {}",
                if e.is_timeout() {
                    "timeout"
                } else {
                    "request error"
                }
            )),
        }
    }
}

/// POSTs at `rate`, round-robin over the pairs' `a` users, then drains.
async fn post_run(
    setup: &Setup,
    server: &ServerProcess,
    http: &Client,
    recorder: &Arc<Recorder>,
    pairs: &[chat_seed::Pair],
    rate: u32,
    tag: &str,
) -> SendRun {
    let duration = setup.opts.duration;
    let me = std::process::id();
    let base = &server.base_url;
    let stored_before = store_buckets(http, base).await;
    recorder.begin(duration);
    let before = (setup.clock.seconds(server.pid()), setup.clock.seconds(me));
    let mut posts = JoinSet::new();
    let dispatched = ws_client::pace(rate, duration, |n| {
        let p = &pairs[(n as usize) % pairs.len()];
        posts.spawn(post_message(http, base, p, recorder, tag, n));
    })
    .await;
    let after = (setup.clock.seconds(server.pid()), setup.clock.seconds(me));
    while posts.join_next().await.is_some() {}
    let drain = drain(recorder).await;
    let tally = recorder.take();
    SendRun {
        rate,
        duration,
        dispatched,
        not_queued: 0,
        fanout: 1,
        tally,
        server_cpu: delta(before.0, after.0),
        client_cpu: delta(before.1, after.1),
        drain,
        store: StoreLatency::since(&stored_before, store_buckets(http, base).await),
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Raises this process's soft open-file limit to the hard one (10,000 client sockets);
/// returns the limit in force.
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let current = getrlimit(Resource::Nofile);
    let wanted = current.maximum.map_or(FD_LIMIT, |hard| hard.min(FD_LIMIT));
    if current.current.is_some_and(|soft| soft < wanted) {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(wanted),
                maximum: current.maximum,
            },
        );
    }
    getrlimit(Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    use super::StoreLatency;

    #[test]
    fn store_percentiles_come_from_the_runs_share_of_the_histogram() {
        let before = [(0.001, 10), (0.0025, 10), (f64::INFINITY, 10)];
        // The run added 100 sends: 97 within 1 ms, 2 more within 2.5 ms, 1 beyond.
        let run = StoreLatency::since(
            &before,
            vec![(0.001, 107), (0.0025, 109), (f64::INFINITY, 110)],
        )
        .expect("same buckets");
        assert_eq!(run.bound_of(50.0), Some(0.001));
        assert_eq!(run.bound_of(99.0), Some(0.0025));
        assert_eq!(run.bound_of(100.0), Some(f64::INFINITY));
        assert_eq!(run.largest_bound(), Some(0.0025));
        // Different buckets (another server version) compare to nothing.
        assert!(StoreLatency::since(&before, vec![(0.001, 1)]).is_none());
        // No sends in the run: no percentile.
        let idle = StoreLatency::since(&before, before.to_vec()).expect("same buckets");
        assert_eq!(idle.bound_of(99.0), None);
    }
}
