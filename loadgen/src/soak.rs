//! `loadgen soak`: one server under steady mixed load for a long time, watched for leaks.
//!
//! The population: 1,100 pairs (1,000 on WebSockets, 100 whose receivers long-poll) and
//! 2 groups of 100, written into the server's database; every WebSocket member follows 5
//! of 20 authors (through the API), who have 200 posts each from before the run, so every
//! feed cache is full from its first read on. Then, for `--minutes`, open loop and at once:
//!
//! * 1:1 messages over the WebSocket pairs, each side sending in turn;
//! * group messages, senders taking turns over every member (99 deliveries each);
//! * messages POSTed to the long-polling receivers;
//! * feed reads by the pair members, and posts by the authors (fanout, notifications);
//! * every socket heartbeating every 10 s (presence).
//!
//! Each minute it samples the server's RSS (its anonymous part split between Rust's heap
//! and the rest), open files, runtime tasks (`kith_runtime_tasks_alive`), CPU, and Redis's
//! memory, with the minute's traffic:
//! messages acknowledged and delivered, delivery p99, feed reads and their p99, errors.
//! At the end it lets deliveries drain and checks that every acknowledged message reached
//! its receivers once: the figures must stay flat and the run must see no error.

use crate::{
    chat::{self, gauge, now_ms, post_message, FD_LIMIT},
    chat_seed::{self, Group, Pair, Sizes, GROUP_SIZE},
    cpu::CpuClock,
    db::{Db, Rows, Value},
    error::Error,
    load::percentile,
    options::{Flavour, SoakOptions},
    redis_ns, seed,
    server::{AnonSplit, LogSummary, UnderTest},
    ws_client::{self, Conn, Recorder, Tally},
};
use futures_util::StreamExt as _;
use reqwest::Client;
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::task::JoinSet;

/// Pairs whose members are both on WebSockets.
const WS_PAIRS: usize = 1_000;
/// Pairs whose receiver long-polls (their senders POST).
const LONGPOLL_PAIRS: usize = 100;
const GROUPS: usize = 2;
/// Authors among the WebSocket pairs' members; every member follows [`FOLLOWS`] of them.
const AUTHORS: usize = 20;
const FOLLOWS: usize = 5;
/// Posts each author has before the run: [`FOLLOWS`] × this exceeds a feed cache's 800.
const BACKLOG: usize = 200;
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
const MINUTE: Duration = Duration::from_secs(60);
/// Longer than any drain (`chat::drain` gives up after a minute).
const DRAIN_ROOM: Duration = Duration::from_secs(600);
/// A figure is flat when its slope adds less than this share of its mean over the run.
const FLAT: f64 = 0.05;
/// Concurrent follow requests while the graph is set up.
const SETUP_CONCURRENCY: usize = 32;

pub struct Setup {
    pub opts: SoakOptions,
    pub server_bin: PathBuf,
    pub server_cpu: Option<usize>,
    pub clock: CpuClock,
}

/// One minute's figures.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub minute: u32,
    pub rss_kib: Option<u64>,
    /// The RSS's anonymous part by allocator (Rust's heap, glibc's arenas and the rest).
    pub anon: Option<AnonSplit>,
    pub open_fds: Option<u64>,
    pub tasks: Option<i64>,
    pub redis_bytes: Option<u64>,
    /// Server CPU over the minute, as a share of one core.
    pub cpu_share: Option<f64>,
    /// Chat messages acknowledged (WebSocket acks and POST 201s) and deliveries received.
    pub acked: u64,
    pub delivered: u64,
    /// Delivery latency p99 of the messages sent this minute, ms.
    pub delivery_p99_ms: Option<f64>,
    pub feed_reads: u64,
    pub feed_p99_ms: Option<f64>,
    pub posts: u64,
    /// Errors of every kind: error frames, failed requests, disconnects, refused sends.
    pub errors: u64,
}

/// What the run as a whole saw.
#[derive(Debug, Default)]
pub struct Totals {
    /// (acknowledged sends, deliveries expected from them, deliveries received) per kind.
    pub pairs: (u64, u64, u64),
    pub groups: (u64, u64, u64),
    pub longpoll: (u64, u64, u64),
    pub feed_reads: u64,
    pub posts: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Totals {
    pub fn lost(&self) -> i64 {
        [self.pairs, self.groups, self.longpoll]
            .iter()
            .map(|(_, expected, got)| *expected as i64 - *got as i64)
            .filter(|d| *d > 0)
            .sum()
    }

    pub fn extra(&self) -> i64 {
        [self.pairs, self.groups, self.longpoll]
            .iter()
            .map(|(_, expected, got)| *got as i64 - *expected as i64)
            .filter(|d| *d > 0)
            .sum()
    }
}

pub struct SoakReport {
    pub opts: SoakOptions,
    pub samples: Vec<Sample>,
    pub totals: Totals,
    pub log: LogSummary,
}

/// Feed traffic's own tally (its requests are plain HTTP, not chat).
#[derive(Default)]
struct FeedTally {
    read_latencies_ns: Vec<u64>,
    posts: u64,
    errors: BTreeMap<String, u64>,
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The recorders of the three kinds of chat traffic, so each is checked against its own
/// fanout.
struct Recorders {
    pairs: Arc<Recorder>,
    groups: Arc<Recorder>,
    longpoll: Arc<Recorder>,
}

impl Recorders {
    fn all(&self) -> [&Arc<Recorder>; 3] {
        [&self.pairs, &self.groups, &self.longpoll]
    }
}

pub async fn run(setup: &Setup) -> Result<SoakReport, Error> {
    let opts = &setup.opts;
    let http = Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(40))
        // The server closes a keep-alive connection idle for its header timeout (10 s);
        // a request sent on one just then fails. Idle connections are dropped first.
        .pool_idle_timeout(Duration::from_secs(5))
        .build()?;
    let near_cache = opts.near_cache_mb.map(|mb| mb.to_string());
    let mut env = vec![
        ("KITH_RUNTIME", Flavour::CurrentThread.name()),
        ("KITH_SQLITE_SYNCHRONOUS", opts.synchronous.name()),
        // One client machine plays 2,300 users; the per-user limits stay as they are.
        ("KITH_WS_CONNECT_RATE_PER_MIN", "1000000"),
        ("KITH_POST_RATE_PER_MIN", "1000"),
    ];
    if let Some(mb) = &near_cache {
        env.push(("KITH_NEAR_CACHE_MB", mb.as_str()));
    }
    let mut under_test = UnderTest::start(
        &setup.server_bin,
        setup.server_cpu,
        opts.backend,
        &opts.redis_url,
        &opts.database,
        &env,
        Some(FD_LIMIT),
    )
    .await?;
    under_test
        .server
        .wait_ready(&http, Duration::from_secs(60))
        .await?;
    let outcome = soak(setup, &http, &mut under_test).await;
    let log = under_test.finish("soak").await;
    outcome.map(|(samples, totals)| SoakReport {
        opts: opts.clone(),
        samples,
        totals,
        log,
    })
}

async fn soak(
    setup: &Setup,
    http: &Client,
    under_test: &mut UnderTest,
) -> Result<(Vec<Sample>, Totals), Error> {
    let opts = &setup.opts;
    let base = under_test.server.base_url.clone();
    eprintln!("[soak] seeding users, sessions and channels");
    let writer = Db::writer(&under_test.db_url).await?;
    let pop = chat_seed::write_sized(
        &writer,
        now_ms(),
        Sizes {
            idle: 0,
            pairs: WS_PAIRS + LONGPOLL_PAIRS,
            groups: GROUPS,
        },
    )
    .await?;
    writer.settle().await?;
    writer.close().await;
    let (ws_pairs, lp_pairs) = pop.pairs.split_at(WS_PAIRS);
    let readers: Vec<&chat_seed::ChatUser> = ws_pairs.iter().flat_map(|p| [&p.a, &p.b]).collect();
    eprintln!(
        "[soak] {} members following {FOLLOWS} of {AUTHORS} authors each",
        readers.len()
    );
    follow_authors(http, &base, &readers).await?;
    eprintln!("[soak] {BACKLOG} earlier posts by each author, so every feed cache starts full");
    let writer = Db::writer(&under_test.db_url).await?;
    write_backlog(&writer, &readers[..AUTHORS]).await?;
    writer.settle().await?;
    writer.close().await;

    let recorders = Recorders {
        pairs: Recorder::new(),
        groups: Recorder::new(),
        longpoll: Recorder::new(),
    };
    let ws_url = format!("{}/v1/chat/ws", base.replacen("http://", "ws://", 1));
    let pair_tokens: Vec<String> = ws_pairs
        .iter()
        .flat_map(|p| [p.a.token.clone(), p.b.token.clone()])
        .collect();
    let group_tokens: Vec<String> = pop
        .groups
        .iter()
        .flat_map(|g| g.members.iter().map(|m| m.token.clone()))
        .collect();
    eprintln!(
        "[soak] opening {} WebSockets",
        pair_tokens.len() + group_tokens.len()
    );
    let pair_conns = ws_client::open_all(&ws_url, &pair_tokens, &recorders.pairs).await?;
    let group_conns = ws_client::open_all(&ws_url, &group_tokens, &recorders.groups).await?;
    chat::settle(http, &base, (pair_conns.len() + group_conns.len()) as i64).await?;
    let heartbeats = ws_client::keep_present(
        pair_conns.iter().chain(&group_conns).cloned().collect(),
        HEARTBEAT_EVERY,
    );

    let mut pollers = JoinSet::new();
    for p in lp_pairs {
        pollers.spawn(chat::poll_loop(
            http.clone(),
            format!("{base}/v1/chat/sync"),
            p.b.token.clone(),
            0,
            recorders.longpoll.clone(),
        ));
    }

    let total = MINUTE * opts.minutes;
    // Each window is rotated away long before it would close, the last after the drain.
    let window = total + DRAIN_ROOM;
    for r in recorders.all() {
        r.begin(window);
    }
    let feed = Shared::<FeedTally>::default();
    let mut traffic = JoinSet::new();
    traffic.spawn(pair_traffic(
        opts.pair_rate,
        total,
        ws_pairs.to_vec(),
        pair_conns.clone(),
    ));
    traffic.spawn(group_traffic(
        opts.group_rate,
        total,
        pop.groups.clone(),
        group_conns.clone(),
    ));
    traffic.spawn(longpoll_traffic(
        opts.longpoll_rate,
        total,
        http.clone(),
        base.clone(),
        lp_pairs.to_vec(),
        recorders.longpoll.clone(),
    ));
    let reader_tokens: Vec<String> = readers.iter().map(|u| u.token.clone()).collect();
    traffic.spawn(feed_reads(
        opts.feed_read_rate,
        total,
        http.clone(),
        base.clone(),
        reader_tokens.clone(),
        feed.clone(),
    ));
    traffic.spawn(posts(
        opts.post_rate,
        total,
        http.clone(),
        base.clone(),
        reader_tokens[..AUTHORS].to_vec(),
        feed.clone(),
    ));

    let pid = under_test.server.pid();
    let redis_url = under_test.redis.as_ref().map(|(url, _)| url.clone());
    let started = Instant::now();
    let mut samples = vec![sample_server(http, under_test, &redis_url, 0).await];
    let mut cpu_before = setup.clock.seconds(pid);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut counts = Counts::default();
    for minute in 1..=opts.minutes {
        tokio::time::sleep_until((started + MINUTE * minute).into()).await;
        under_test.server.check_alive()?;
        let mut sample = sample_server(http, under_test, &redis_url, minute).await;
        let cpu_now = setup.clock.seconds(pid);
        sample.cpu_share = chat::delta(cpu_before, cpu_now).map(|s| s / MINUTE.as_secs_f64());
        cpu_before = cpu_now;
        let tallies = recorders.all().map(|r| r.rotate(window));
        add_chat(&mut sample, &tallies, &mut counts, &mut errors);
        add_feed(&mut sample, &feed, &mut errors);
        eprintln!("[soak] {}", sample_line(&sample));
        samples.push(sample);
    }

    // The pacers stop at `total`; their last requests finish, then deliveries drain.
    while let Some(done) = traffic.join_next().await {
        if let Ok(not_queued) = done {
            if not_queued > 0 {
                *errors
                    .entry("send not queued (client busy)".into())
                    .or_default() += not_queued;
            }
        }
    }
    for r in recorders.all() {
        chat::drain(r).await;
    }
    pollers.abort_all();
    heartbeats.abort();
    let mut last = Sample::default();
    let tallies = recorders.all().map(|r| r.take());
    add_chat(&mut last, &tallies, &mut counts, &mut errors);
    add_feed(&mut last, &feed, &mut errors);
    for conn in pair_conns.iter().chain(&group_conns) {
        conn.close().await;
    }

    let totals = totals(&samples, counts, &last, errors);
    Ok((samples, totals))
}

/// The low bits of the server's Snowflake ids (node and sequence); its milliseconds are
/// above them.
const ID_LOW_BITS: u32 = 22;

/// Posts older than the run, [`BACKLOG`] per author, written into the database: the
/// first read of each feed rebuilds its cache from them at full length, so the caches do
/// not grow during the run, and what grows is not them. Their ids are Snowflakes of their
/// times (a second apart, counted back from an id the server issued at sign-up): as long
/// as the ids of the run's posts, so a feed cache holds as much memory at the start as
/// once the run's posts have replaced them (short ids made each feed grow by ~16 bytes a
/// post for the first hour).
async fn write_backlog(writer: &Db, authors: &[&chat_seed::ChatUser]) -> Result<(), Error> {
    let now = now_ms();
    let total = authors.len() * BACKLOG;
    let issued_ms = authors
        .iter()
        .map(|a| a.id >> ID_LOW_BITS)
        .min()
        .unwrap_or(0);
    let mut batch = writer.batch().await?;
    batch
        .insert(&Rows::new(
            "INSERT INTO posts (id, author_id, content, created_at) ",
            (0..total).map(|i| {
                [
                    // Below every id the server issues from now on: older than its posts.
                    Value::Int(((issued_ms - (total - i) as i64 * 1_000) << ID_LOW_BITS) | 1),
                    Value::Int(authors[i % authors.len()].id),
                    Value::Text(format!(
                        "Earlier post {i}: a few words from before the run."
                    )),
                    Value::Int(now - (total - i) as i64 * 1_000),
                ]
            }),
        ))
        .await?;
    batch.commit().await
}

/// Every reader follows [`FOLLOWS`] of the first [`AUTHORS`] readers (not themselves).
async fn follow_authors(
    http: &Client,
    base: &str,
    readers: &[&chat_seed::ChatUser],
) -> Result<(), Error> {
    let authors: Vec<String> = readers[..AUTHORS]
        .iter()
        .map(|a| seed::username(a.id))
        .collect();
    let follows = readers.iter().enumerate().flat_map(|(i, reader)| {
        (0..FOLLOWS)
            .map(move |k| (i + 1 + k * 3) % AUTHORS)
            .filter(move |a| *a != i)
            .map(move |a| (reader.token.clone(), a))
    });
    let failed: Vec<String> = futures_util::stream::iter(follows)
        .map(|(token, a)| {
            let request = http
                .put(format!("{base}/v1/me/following/{}", authors[a]))
                .bearer_auth(token);
            async move {
                match request.send().await {
                    Ok(r) if r.status().as_u16() == 204 => None,
                    Ok(r) => Some(format!("HTTP {}", r.status())),
                    Err(e) => Some(e.to_string()),
                }
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .filter_map(|r| async move { r })
        .collect()
        .await;
    match failed.first() {
        None => Ok(()),
        Some(e) => Err(Error::Run(format!(
            "{} follows failed, the first: {e}",
            failed.len()
        ))),
    }
}

/// 1:1 messages, pair after pair, each side in turn; returns the sends not queued.
async fn pair_traffic(rate: u32, total: Duration, pairs: Vec<Pair>, conns: Vec<Conn>) -> u64 {
    let mut not_queued = 0;
    ws_client::pace(rate, total, |n| {
        let i = (n as usize) % pairs.len();
        let side = (n as usize / pairs.len()) % 2;
        if !conns[2 * i + side].send(pairs[i].channel, format!("s{n}")) {
            not_queued += 1;
        }
    })
    .await;
    not_queued
}

/// Group messages, senders taking turns over every member of every group.
async fn group_traffic(rate: u32, total: Duration, groups: Vec<Group>, conns: Vec<Conn>) -> u64 {
    let mut not_queued = 0;
    ws_client::pace(rate, total, |n| {
        let g = (n as usize) % groups.len();
        let member = (n as usize / groups.len()) % GROUP_SIZE;
        if !conns[g * GROUP_SIZE + member].send(groups[g].channel, format!("g{n}")) {
            not_queued += 1;
        }
    })
    .await;
    not_queued
}

/// Messages POSTed to the long-polling receivers.
async fn longpoll_traffic(
    rate: u32,
    total: Duration,
    http: Client,
    base: String,
    pairs: Vec<Pair>,
    recorder: Arc<Recorder>,
) -> u64 {
    let mut posts = JoinSet::new();
    ws_client::pace(rate, total, |n| {
        let p = &pairs[(n as usize) % pairs.len()];
        posts.spawn(post_message(&http, &base, p, &recorder, "lp", n));
    })
    .await;
    while posts.join_next().await.is_some() {}
    0
}

/// `GET /v1/me/feed` by the readers in turn.
async fn feed_reads(
    rate: u32,
    total: Duration,
    http: Client,
    base: String,
    tokens: Vec<String>,
    tally: Shared<FeedTally>,
) -> u64 {
    let mut reads = JoinSet::new();
    let url = format!("{base}/v1/me/feed");
    ws_client::pace(rate, total, |n| {
        let request = http
            .get(&url)
            .bearer_auth(&tokens[(n as usize) % tokens.len()]);
        let tally = tally.clone();
        reads.spawn(async move {
            let sent = Instant::now();
            let outcome = match request.send().await {
                Ok(r) if r.status().is_success() => r.bytes().await.map(|_| ()).map_err(|e| {
                    format!(
                        "feed read: {}",
                        if e.is_timeout() { "timeout" } else { "body" }
                    )
                }),
                Ok(r) => Err(format!("feed read HTTP {}", r.status().as_u16())),
                Err(e) => Err(format!(
                    "feed read: {}",
                    if e.is_timeout() {
                        "timeout"
                    } else {
                        "request error"
                    }
                )),
            };
            let mut t = lock(&tally);
            match outcome {
                Ok(()) => t.read_latencies_ns.push(sent.elapsed().as_nanos() as u64),
                Err(e) => *t.errors.entry(e).or_default() += 1,
            }
        });
    })
    .await;
    while reads.join_next().await.is_some() {}
    0
}

/// `POST /v1/me/feed` by the authors in turn.
async fn posts(
    rate: u32,
    total: Duration,
    http: Client,
    base: String,
    authors: Vec<String>,
    tally: Shared<FeedTally>,
) -> u64 {
    let mut posts = JoinSet::new();
    let url = format!("{base}/v1/me/feed");
    ws_client::pace(rate, total, |n| {
        let request =
            crate::posting::publish(&http, &url, &authors[(n as usize) % authors.len()], n);
        let tally = tally.clone();
        posts.spawn(async move {
            let outcome = match request.send().await {
                Ok(r) if r.status().as_u16() == 201 => Ok(()),
                Ok(r) => Err(format!("post HTTP {}", r.status().as_u16())),
                Err(_) => Err("post: request error".to_string()),
            };
            let mut t = lock(&tally);
            match outcome {
                Ok(()) => t.posts += 1,
                Err(e) => *t.errors.entry(e).or_default() += 1,
            }
        });
    })
    .await;
    while posts.join_next().await.is_some() {}
    0
}

/// The server's own figures now.
async fn sample_server(
    http: &Client,
    under_test: &UnderTest,
    redis_url: &Option<String>,
    minute: u32,
) -> Sample {
    let server = &under_test.server;
    let redis_bytes = match redis_url {
        Some(url) => redis_ns::used_memory(url).await.ok(),
        None => None,
    };
    Sample {
        minute,
        rss_kib: server.rss_kib(),
        anon: server.anon_kib(),
        open_fds: server.open_fds(),
        tasks: gauge(http, &server.base_url, "kith_runtime_tasks_alive")
            .await
            .ok()
            .flatten(),
        redis_bytes,
        ..Sample::default()
    }
}

/// Acknowledged sends and deliveries so far, per kind (pairs, groups, long-poll).
type Counts = [(u64, u64); 3];

/// Adds the chat tallies (pairs, groups, long-poll) of a minute to its sample and to the
/// run's counts.
fn add_chat(
    sample: &mut Sample,
    tallies: &[Tally; 3],
    counts: &mut Counts,
    errors: &mut BTreeMap<String, u64>,
) {
    let mut latencies: Vec<u64> = Vec::new();
    for (t, count) in tallies.iter().zip(counts.iter_mut()) {
        sample.acked += t.acked_in_window;
        sample.delivered += t.received_in_window;
        count.0 += t.acked_in_window;
        count.1 += t.received_in_window;
        latencies.extend(&t.latencies);
        for (kind, n) in t.errors.iter().chain(&t.disconnects) {
            *errors.entry(kind.clone()).or_default() += n;
            sample.errors += n;
        }
    }
    sample.delivery_p99_ms = p99_ms(latencies);
}

fn add_feed(sample: &mut Sample, feed: &Shared<FeedTally>, errors: &mut BTreeMap<String, u64>) {
    let t = std::mem::take(&mut *lock(feed));
    sample.feed_reads = t.read_latencies_ns.len() as u64;
    sample.feed_p99_ms = p99_ms(t.read_latencies_ns);
    sample.posts = t.posts;
    for (kind, n) in t.errors {
        sample.errors += n;
        *errors.entry(kind).or_default() += n;
    }
}

fn p99_ms(mut ns: Vec<u64>) -> Option<f64> {
    if ns.is_empty() {
        return None;
    }
    ns.sort_unstable();
    let durations: Vec<Duration> = ns.into_iter().map(Duration::from_nanos).collect();
    Some(percentile(&durations, 99.0).as_secs_f64() * 1e3)
}

/// The run's totals: each kind of chat traffic against its fanout (a group message goes
/// to every member but its sender).
fn totals(
    samples: &[Sample],
    counts: Counts,
    feed_tail: &Sample,
    errors: BTreeMap<String, u64>,
) -> Totals {
    let [(pa, pd), (ga, gd), (la, ld)] = counts;
    Totals {
        pairs: (pa, pa, pd),
        groups: (ga, ga * (GROUP_SIZE as u64 - 1), gd),
        longpoll: (la, la, ld),
        feed_reads: samples.iter().map(|s| s.feed_reads).sum::<u64>() + feed_tail.feed_reads,
        posts: samples.iter().map(|s| s.posts).sum::<u64>() + feed_tail.posts,
        errors,
    }
}

fn sample_line(s: &Sample) -> String {
    let mib = |kib: u64| format!("{:.1}", kib as f64 / 1024.0);
    let anon = s.anon.map_or("?".into(), |a| {
        format!(
            "Rust heap {} MiB, other {} MiB",
            mib(a.rust_heap),
            mib(a.other)
        )
    });
    let mut line = format!("minute {}:", s.minute);
    let _ = write!(
        line,
        " RSS {} MiB (anonymous: {anon}), {} fds, {} tasks, CPU {}, {} acked, {} delivered \
         (p99 {} ms), {} feed reads (p99 {} ms), {} posts, {} errors",
        s.rss_kib.map_or("?".into(), mib),
        s.open_fds.map_or("?".into(), |n| n.to_string()),
        s.tasks.map_or("?".into(), |n| n.to_string()),
        s.cpu_share
            .map_or("?".into(), |c| format!("{:.0}%", c * 100.0)),
        s.acked,
        s.delivered,
        s.delivery_p99_ms.map_or("–".into(), |v| format!("{v:.1}")),
        s.feed_reads,
        s.feed_p99_ms.map_or("–".into(), |v| format!("{v:.1}")),
        s.posts,
        s.errors,
    );
    line
}

/// Least-squares slope of `points` (x, y); `None` with fewer than two distinct x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    Some(sxy / sxx)
}

/// One resource's course over the run.
pub struct Trend {
    pub name: &'static str,
    pub unit: &'static str,
    pub first: f64,
    pub last: f64,
    pub max: f64,
    /// Per minute.
    pub slope: f64,
    /// What the slope adds over the run, as a share of the mean.
    pub growth: f64,
}

impl Trend {
    /// The trend of a figure over the loaded minutes (minute 0, before the load, left out).
    fn of(
        name: &'static str,
        unit: &'static str,
        samples: &[Sample],
        value: impl Fn(&Sample) -> Option<f64>,
    ) -> Option<Self> {
        let points: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| s.minute > 0)
            .filter_map(|s| Some((f64::from(s.minute), value(s)?)))
            .collect();
        let slope = slope(&points)?;
        let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
        let span = points.last()?.0 - points.first()?.0;
        Some(Self {
            name,
            unit,
            first: points.first()?.1,
            last: points.last()?.1,
            max: points.iter().map(|p| p.1).fold(f64::MIN, f64::max),
            slope,
            growth: if mean > 0.0 { slope * span / mean } else { 0.0 },
        })
    }

    pub fn flat(&self) -> bool {
        self.growth < FLAT
    }
}

impl SoakReport {
    pub fn trends(&self) -> Vec<Trend> {
        let s = &self.samples;
        [
            Trend::of("RSS", "MiB", s, |s| Some(s.rss_kib? as f64 / 1024.0)),
            Trend::of("open files", "", s, |s| Some(s.open_fds? as f64)),
            Trend::of("runtime tasks", "", s, |s| Some(s.tasks? as f64)),
            Trend::of("Redis memory", "MiB", s, |s| {
                Some(s.redis_bytes? as f64 / (1024.0 * 1024.0))
            }),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// No error, nothing lost or twice, every figure flat.
    pub fn valid(&self) -> bool {
        self.totals.errors.is_empty()
            && self.totals.lost() == 0
            && self.totals.extra() == 0
            && self.trends().iter().all(Trend::flat)
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "### {} minutes, backend {}, database {}\n",
            self.opts.minutes,
            self.opts.backend.name(),
            self.opts.database.engine.name()
        );
        out.push_str(
            "| minute | RSS MiB | of it Rust heap MiB | other anonymous MiB | open files | tasks | \
             Redis MiB | server CPU | chat acked | delivered | delivery p99 ms | feed reads | \
             feed p99 ms | posts | errors |\n\
             |--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
        );
        let opt =
            |v: Option<f64>, digits: usize| v.map_or("–".into(), |v| format!("{v:.digits$}"));
        for s in &self.samples {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.minute,
                opt(s.rss_kib.map(|k| k as f64 / 1024.0), 1),
                opt(s.anon.map(|a| a.rust_heap as f64 / 1024.0), 1),
                opt(s.anon.map(|a| a.other as f64 / 1024.0), 1),
                opt(s.open_fds.map(|n| n as f64), 0),
                opt(s.tasks.map(|n| n as f64), 0),
                opt(s.redis_bytes.map(|b| b as f64 / (1024.0 * 1024.0)), 1),
                s.cpu_share
                    .map_or("–".into(), |c| format!("{:.0}%", c * 100.0)),
                s.acked,
                s.delivered,
                opt(s.delivery_p99_ms, 1),
                s.feed_reads,
                opt(s.feed_p99_ms, 1),
                s.posts,
                s.errors,
            );
        }
        out.push_str(
            "\n| figure | minute 1 | last | max | slope per minute | growth over the run | flat |\n\
             |---|--:|--:|--:|--:|--:|---|\n",
        );
        for t in self.trends() {
            let _ = writeln!(
                out,
                "| {} | {:.1} {unit} | {:.1} {unit} | {:.1} {unit} | {:+.3} {unit} | {:+.1}% | {} |",
                t.name,
                t.first,
                t.last,
                t.max,
                t.slope,
                t.growth * 100.0,
                if t.flat() { "yes" } else { "**no**" },
                unit = t.unit,
            );
        }
        let t = &self.totals;
        let _ = writeln!(
            out,
            "\nChat, acknowledged → deliveries expected / received: 1:1 {} → {} / {}; groups {} → \
             {} / {}; long-poll {} → {} / {}. Lost {}, delivered twice {}. Feed reads {}, posts {}.",
            t.pairs.0,
            t.pairs.1,
            t.pairs.2,
            t.groups.0,
            t.groups.1,
            t.groups.2,
            t.longpoll.0,
            t.longpoll.1,
            t.longpoll.2,
            t.lost(),
            t.extra(),
            t.feed_reads,
            t.posts,
        );
        if t.errors.is_empty() {
            out.push_str("Errors: none.\n");
        } else {
            let list: Vec<String> = t.errors.iter().map(|(k, n)| format!("{n} × {k}")).collect();
            let _ = writeln!(out, "Errors: {}.", list.join(", "));
        }
        let _ = writeln!(
            out,
            "Server log: {} warnings, {} errors.\n\nVerdict: **{}**.",
            self.log.warnings,
            self.log.errors,
            if self.valid() {
                "flat, 0 errors, nothing lost"
            } else {
                "FAILED"
            }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slopes_fit_a_line() {
        assert_eq!(slope(&[(1.0, 2.0), (2.0, 4.0), (3.0, 6.0)]), Some(2.0));
        assert_eq!(slope(&[(1.0, 5.0), (2.0, 5.0)]), Some(0.0));
        assert_eq!(slope(&[(1.0, 5.0)]), None);
        assert_eq!(slope(&[(1.0, 5.0), (1.0, 6.0)]), None);
    }

    #[test]
    fn growth_is_judged_over_the_loaded_minutes() {
        let samples: Vec<Sample> = (0..=10)
            .map(|minute| Sample {
                minute,
                // Minute 0 (before the load) is far lower and must not count.
                rss_kib: Some(if minute == 0 {
                    1_000
                } else {
                    100_000 + u64::from(minute)
                }),
                open_fds: Some(2_000 + 100 * u64::from(minute)),
                ..Sample::default()
            })
            .collect();
        let rss = Trend::of("RSS", "MiB", &samples, |s| Some(s.rss_kib? as f64)).unwrap();
        assert!(rss.flat(), "growth {}", rss.growth);
        let fds = Trend::of("fds", "", &samples, |s| Some(s.open_fds? as f64)).unwrap();
        assert!(!fds.flat(), "growth {}", fds.growth);
        assert!((fds.slope - 100.0).abs() < 1e-9);
    }

    #[test]
    fn losses_and_doubles_are_counted_per_kind() {
        let t = Totals {
            pairs: (10, 10, 9),
            groups: (2, 198, 199),
            longpoll: (5, 5, 5),
            ..Totals::default()
        };
        assert_eq!((t.lost(), t.extra()), (1, 1));
    }
}
