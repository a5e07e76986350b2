//! The presence scenario, run once per backend and runtime flavour: start a server with
//! `--users` heartbeating users and `--subjects` users whose friends wait for them, then:
//!
//! 1. seed users and sessions into the database (as the chat scenario does: registering
//!    through the API would hash 10,000 passwords with Argon2) and make each subject mutual
//!    friends with `--friends` of the users through the API (`PUT /v1/me/following/{username}`
//!    both ways), so the server's own follow path writes the graph presence reads;
//! 2. connect every user and start heartbeats: `{"type":"heartbeat"}` every 5 s per
//!    connection, each at its own random phase (see `heartbeats`);
//! 3. after two heartbeat periods of warm-up, the **heartbeat window**: server CPU over
//!    `--duration-secs` (30 s: the server pings every 30 s, so each window holds exactly
//!    one ping per connection);
//! 4. **fanout latency**, heartbeats still running: every 50 ms a subject connects (its
//!    friends should hear `online`), 2 s later it sends one heartbeat and closes (they
//!    should hear `offline` once the timeout has passed since that heartbeat);
//! 5. heartbeats stop; every user expires (the server announces each, so this is a burst
//!    of work, measured on its own); then the **idle window**: the same sockets, connected
//!    and answering pings, no heartbeats, over the same duration.
//!
//! Heartbeat cost = heartbeat window − idle window: what presence adds to holding the
//! sockets open. This machine is shared: a window in which other processes took more than
//! a little of the server's core is measured again (see `window::quiet`).
//!
//! # Layout
//! * `heartbeats`: the thread that sends the heartbeats.
//! * `window`: CPU and counters over a measured stretch; the online gauge.
//! * `fanout`: step 4, the subjects and their friends' frames.
//! * `report`: the figures as markdown.

mod fanout;
mod heartbeats;
pub mod report;
mod window;

use crate::{
    chat::{self, settle, FD_LIMIT, SETTLE},
    chat_seed::{self, ChatUser},
    cpu::CpuClock,
    db::Db,
    error::Error,
    options::{Backend, Engine, Flavour, PresenceOptions},
    seed::username,
    server::{ServerProcess, UnderTest},
    ws_client::{self, Recorder},
};
use fanout::{Fanout, EXPIRY_SLACK};
use futures_util::StreamExt as _;
use heartbeats::Heartbeats;
use report::PresenceReport;
use reqwest::Client;
use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};
use window::{expect_online, wait_for_online, Probe, Window};

/// Follows created at once through the API.
const FOLLOW_CONCURRENCY: usize = 8;

/// What every run shares.
pub struct Setup {
    pub opts: PresenceOptions,
    pub server_bin: PathBuf,
    pub server_cpu: Option<usize>,
    pub clock: CpuClock,
}

/// Everything measured on one server.
#[derive(Debug)]
pub struct Run {
    pub backend: Backend,
    pub flavour: Flavour,
    /// The database engine the server stored in.
    pub database: Engine,
    pub users: usize,
    pub subjects: usize,
    pub friends: usize,
    pub heartbeat: Duration,
    pub timeout: Duration,
    pub seed_time: Duration,
    /// `PUT /v1/me/following/…` requests and how long they took.
    pub follows: usize,
    pub follow_time: Duration,
    pub server_fd_limit: Option<u64>,
    /// Opening the users' sockets (each connect is written through and announced).
    pub connect: Window,
    pub busy: Window,
    pub fanout: Fanout,
    /// From the last heartbeat until the server counted nobody online.
    pub expiry: Window,
    pub idle: Window,
    /// Presence frames received outside the latency phase (none expected).
    pub stray_frames: usize,
    /// Error frames and unexpected disconnects over the whole run.
    pub problems: BTreeMap<String, u64>,
}

/// One server, start to finish; the server is killed and the Redis namespace deleted
/// whatever happens.
pub async fn run(
    setup: &Setup,
    backend: Backend,
    flavour: Flavour,
) -> Result<PresenceReport, Error> {
    let timeout = setup.opts.timeout.as_secs().to_string();
    let mut under = UnderTest::start(
        &setup.server_bin,
        setup.server_cpu,
        backend,
        &setup.opts.redis_url,
        &setup.opts.database,
        &[
            ("KITH_RUNTIME", flavour.name()),
            ("KITH_PRESENCE_TIMEOUT_SECS", timeout.as_str()),
        ],
        Some(FD_LIMIT),
    )
    .await?;
    let redis_url = under.redis.as_ref().map(|(url, _)| url.clone());
    let outcome = measure(
        setup,
        backend,
        flavour,
        &mut under.server,
        &under.db_url,
        redis_url.as_deref(),
    )
    .await;
    let log = under
        .finish(&format!("{}/{}", backend.name(), flavour.name()))
        .await;
    outcome.map(|run| PresenceReport { run, log })
}

async fn measure(
    setup: &Setup,
    backend: Backend,
    flavour: Flavour,
    server: &mut ServerProcess,
    db_url: &str,
    redis_url: Option<&str>,
) -> Result<Run, Error> {
    let opts = &setup.opts;
    let tag = format!("{}/{}", backend.name(), flavour.name());
    let http = Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    server.wait_ready(&http, Duration::from_secs(60)).await?;
    let base = server.base_url.clone();
    let ws_url = format!("{}/v1/chat/ws", base.replacen("http://", "ws://", 1));
    let server_fd_limit = server.fd_limit();

    // 1. Users, sessions, friendships.
    eprintln!("[{tag}] seeding {} users", opts.users + opts.subjects);
    let writer = Db::writer(db_url).await?;
    let started = Instant::now();
    let mut users = chat_seed::write_users(
        &writer,
        1,
        opts.users + opts.subjects,
        "Presence user",
        chat::now_ms(),
    )
    .await?;
    writer.settle().await?;
    let seed_time = started.elapsed();
    writer.close().await;
    let subjects = users.split_off(opts.users);

    eprintln!(
        "[{tag}] making {} friendships",
        opts.subjects * opts.friends
    );
    let started = Instant::now();
    let follows = befriend(&http, &base, &subjects, &users, opts.friends).await?;
    let follow_time = started.elapsed();

    // 2. Every user connects.
    eprintln!("[{tag}] opening {} WebSockets", users.len());
    let recorder = Recorder::new();
    let tokens: Vec<String> = users.iter().map(|u| u.token.clone()).collect();
    let connect = Probe::start(setup, server, redis_url, None).await;
    let conns = Arc::new(ws_client::open_all(&ws_url, &tokens, &recorder).await?);
    let connect = connect.finish(setup, server, None).await;
    settle(&http, &base, users.len() as i64).await?;
    server.check_alive()?;

    // Heartbeats run through steps 3 and 4.
    let heartbeats = Heartbeats::start(conns.clone(), opts.heartbeat)?;
    tokio::time::sleep(2 * opts.heartbeat).await;
    expect_online(&http, &base, users.len() as i64).await?;

    // 3. The heartbeat window.
    eprintln!("[{tag}] heartbeat window, {} s", opts.duration.as_secs());
    let busy = window::quiet(setup, server, &http, &base, redis_url, Some(&heartbeats)).await?;

    // 4. Online and offline fanout.
    let before = recorder.take();
    eprintln!(
        "[{tag}] {} subjects come online and go offline",
        subjects.len()
    );
    let probe = Probe::start(setup, server, redis_url, Some(&heartbeats)).await;
    let (mut fanout, during) = fanout::run(opts, &ws_url, &recorder, &subjects).await;
    fanout.window = probe.finish(setup, server, Some(&heartbeats)).await;
    heartbeats.stop();
    server.check_alive()?;

    // 5. Mass expiry, then the idle window.
    eprintln!("[{tag}] heartbeats stopped; waiting for every user to expire");
    let expiry = Probe::start(setup, server, redis_url, None).await;
    wait_for_online(
        &http,
        &base,
        0,
        opts.timeout + 2 * opts.heartbeat + EXPIRY_SLACK,
    )
    .await?;
    let expiry = expiry.finish(setup, server, None).await;
    tokio::time::sleep(SETTLE).await;
    eprintln!("[{tag}] idle window, {} s", opts.duration.as_secs());
    let idle = window::quiet(setup, server, &http, &base, redis_url, None).await?;
    server.check_alive()?;
    let after = recorder.take();
    drop(conns);

    let mut problems = BTreeMap::new();
    for tally in [&before, &during, &after] {
        for (k, n) in tally.errors.iter().chain(&tally.disconnects) {
            *problems.entry(k.clone()).or_default() += n;
        }
    }
    Ok(Run {
        backend,
        flavour,
        database: opts.database.engine,
        users: opts.users,
        subjects: opts.subjects,
        friends: opts.friends,
        heartbeat: opts.heartbeat,
        timeout: opts.timeout,
        seed_time,
        follows,
        follow_time,
        server_fd_limit,
        connect,
        busy,
        fanout,
        expiry,
        idle,
        stray_frames: before.presence.len() + after.presence.len(),
        problems,
    })
}

/// Makes subject i mutual friends with users i·f … i·f + f − 1; returns the requests made.
async fn befriend(
    http: &Client,
    base: &str,
    subjects: &[ChatUser],
    users: &[ChatUser],
    friends: usize,
) -> Result<usize, Error> {
    let mut pairs = Vec::with_capacity(2 * subjects.len() * friends);
    for (i, subject) in subjects.iter().enumerate() {
        for friend in &users[i * friends..(i + 1) * friends] {
            pairs.push((subject, friend));
            pairs.push((friend, subject));
        }
    }
    let results: Vec<Result<(), Error>> = futures_util::stream::iter(&pairs)
        .map(|(who, whom)| async move {
            let response = http
                .put(format!("{base}/v1/me/following/{}", username(whom.id)))
                .bearer_auth(&who.token)
                .send()
                .await?;
            match response.status().as_u16() {
                204 => Ok(()),
                status => Err(Error::Run(format!(
                    "PUT /v1/me/following answered {status}: {}",
                    response.text().await.unwrap_or_default()
                ))),
            }
        })
        .buffer_unordered(FOLLOW_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(pairs.len())
}
