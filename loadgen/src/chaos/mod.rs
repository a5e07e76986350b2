//! `loadgen chaos`: N nodes behind HAProxy on one PostgreSQL database and one Redis
//! namespace, mixed chat and feed traffic through the balancer, and every few seconds one
//! node killed with SIGKILL and started again. At the end the killing stops, every node
//! runs, the devices drain, and a checker in the manner of Jepsen's queue checker says
//! whether every acknowledged message reached every member device exactly once, in `seq`
//! order, and every acknowledged post every follower's feed (the API's "Clusters" promise).
//!
//! # Layout
//! * `population`: the users, channels and follows, made through the API.
//! * `devices`: the receiving WebSocket and long-poll devices.
//! * `traffic`: senders and authors that retry until acknowledged, feed readers, and the
//!   final feed check.
//! * `checker`: lost, duplicated, reordered and unexpected deliveries, from the history.
//! * `report`: the figures as markdown.

mod checker;
mod devices;
mod population;
mod report;
mod traffic;

pub use report::ChaosReport;

use crate::{
    cluster::{Cluster, Spec},
    error::Error,
    options::ChaosOptions,
};
use checker::{DeviceLog, Kind, Sends};
use devices::DeviceOutcome;
use population::Population;
use rand::Rng as _;
use reqwest::Client;
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};
use tokio::{sync::watch, task::JoinSet};
use traffic::{Reads, Writes};

/// How long a killed node stays down before it is started again.
const DOWN_FOR: Duration = Duration::from_secs(2);
/// Devices connect this long before the first send, so the run starts live, not by sync.
const DEVICES_FIRST: Duration = Duration::from_secs(1);

/// Where the run is: the writers stop when it leaves `Traffic`; the devices stop, once
/// quiet, in `Drain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Traffic,
    /// The writers finish what they are sending; the devices keep receiving.
    Stop,
    Drain,
}

/// What the run is given.
pub struct Setup {
    pub opts: ChaosOptions,
    pub server_bin: PathBuf,
}

/// A kill, a restart, or a node that died by itself, on the run's time axis.
#[derive(Debug, Clone)]
pub struct Event {
    pub at_ms: u64,
    pub node: usize,
    pub what: What,
}

#[derive(Debug, Clone)]
pub enum What {
    Killed,
    /// Started again; ready after this many ms.
    Restarted(u64),
    /// Exited without being killed; why.
    Died(String),
}

/// Starts the cluster, runs the traffic and the chaos, checks, and tears everything down
/// whatever happened.
pub async fn run(setup: &Setup) -> Result<ChaosReport, Error> {
    let http = Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(10))
        .build()?;
    eprintln!("[chaos] starting {} nodes behind HAProxy", setup.opts.nodes);
    let mut cluster = Cluster::start(
        Spec {
            bin: &setup.server_bin,
            nodes: setup.opts.nodes,
            redis_url: &setup.opts.redis_url,
            postgres_url: &setup.opts.postgres_url,
            env: &[],
            balancer: true,
            fd_limit: None,
        },
        &http,
    )
    .await?;
    let outcome = exercise(setup, &mut cluster, &http).await;
    let log = cluster.finish("chaos").await;
    outcome.map(|mut r| {
        r.log = log;
        r
    })
}

/// Every task of the run, by role.
struct Tasks {
    devices: JoinSet<DeviceOutcome>,
    senders: JoinSet<Writes>,
    authors: JoinSet<Writes>,
    readers: JoinSet<Reads>,
}

async fn exercise(
    setup: &Setup,
    cluster: &mut Cluster,
    http: &Client,
) -> Result<ChaosReport, Error> {
    let base = cluster
        .balancer_url()
        .ok_or_else(|| Error::Run("the cluster has no balancer".into()))?;
    eprintln!("[chaos] registering users, channels and follows");
    let pop = population::create(http, &base).await?;
    let (phase, watch_phase) = watch::channel(Phase::Traffic);
    let clock = Instant::now();
    let mut tasks = Tasks {
        devices: start_devices(http, &base, &pop, &watch_phase),
        senders: JoinSet::new(),
        authors: JoinSet::new(),
        readers: JoinSet::new(),
    };
    tokio::time::sleep(DEVICES_FIRST).await;
    start_writers(&mut tasks, http, &base, &pop, &watch_phase, clock);

    eprintln!(
        "[chaos] traffic for {} s, a node killed every ~{} s",
        setup.opts.duration.as_secs(),
        setup.opts.kill_every.as_secs()
    );
    let until = Instant::now() + setup.opts.duration;
    let mut events = kill_until(cluster, http, setup.opts.kill_every, until, clock).await?;
    events.extend(revive_all(cluster, http, clock).await?);

    eprintln!("[chaos] every node up; the writers finish");
    phase.send_replace(Phase::Stop);
    let senders = join_all(&mut tasks.senders).await?;
    let authors = join_all(&mut tasks.authors).await?;
    let readers = join_all(&mut tasks.readers).await?;
    let posts: Vec<i64> = authors
        .iter()
        .flat_map(|a| a.posts.iter().copied())
        .collect();
    eprintln!(
        "[chaos] checking {} posts in every follower's feed",
        posts.len()
    );
    let feed_missing = traffic::missing_from_feeds(http, &base, &pop.followers, &posts).await;

    eprintln!("[chaos] draining the devices");
    phase.send_replace(Phase::Drain);
    let devices = join_all(&mut tasks.devices).await?;
    cluster.check_alive()?;

    let sends = history(&senders);
    let logs: Vec<DeviceLog> = devices.iter().map(|d| d.log.clone()).collect();
    let verdict = checker::check(&pop.members(), &sends, &logs);
    Ok(ChaosReport {
        population: report::Shape::of(&pop),
        verdict,
        senders,
        authors,
        readers,
        devices,
        feed_missing,
        posts: posts.len(),
        events,
        log: Default::default(),
    })
}

/// One WebSocket and one long-poll device per chat user, through the balancer.
fn start_devices(
    http: &Client,
    base: &str,
    pop: &Population,
    phase: &watch::Receiver<Phase>,
) -> JoinSet<DeviceOutcome> {
    let ws_url = format!("{}/v1/chat/ws", base.replacen("http://", "ws://", 1));
    let mut devices = JoinSet::new();
    for user in &pop.chat_users {
        let log = |kind: Kind| DeviceLog {
            kind,
            user: user.id,
            name: format!("{} {}", user.name, kind.name()),
            received: Vec::new(),
            reconnects: Vec::new(),
        };
        devices.spawn(devices::websocket(
            ws_url.clone(),
            user.token.clone(),
            log(Kind::WebSocket),
            phase.clone(),
        ));
        devices.spawn(devices::long_poll(
            http.clone(),
            base.to_string(),
            user.token.clone(),
            log(Kind::LongPoll),
            phase.clone(),
        ));
    }
    devices
}

/// Every channel's senders, every author and every follower's reads.
fn start_writers(
    tasks: &mut Tasks,
    http: &Client,
    base: &str,
    pop: &Population,
    phase: &watch::Receiver<Phase>,
    clock: Instant,
) {
    for channel in &pop.channels {
        for sender in &channel.senders {
            tasks.senders.spawn(traffic::sender(
                http.clone(),
                base.to_string(),
                sender.clone(),
                channel.id,
                phase.clone(),
                clock,
            ));
        }
    }
    for author in &pop.authors {
        tasks.authors.spawn(traffic::author(
            http.clone(),
            base.to_string(),
            author.clone(),
            phase.clone(),
        ));
    }
    for follower in &pop.followers {
        tasks.readers.spawn(traffic::reader(
            http.clone(),
            base.to_string(),
            follower.clone(),
            phase.clone(),
        ));
    }
}

/// The chaos: until `until`, every `every` (±25%) kills a random running node with
/// SIGKILL, waits `DOWN_FOR`, and starts it again, so at most one node is down at a time
/// and never the last one. A node found dead by itself is recorded and started again.
async fn kill_until(
    cluster: &mut Cluster,
    http: &Client,
    every: Duration,
    until: Instant,
    clock: Instant,
) -> Result<Vec<Event>, Error> {
    let mut events = Vec::new();
    loop {
        let wait = every.mul_f64(rand::thread_rng().gen_range(0.75..1.25));
        if Instant::now() + wait >= until {
            tokio::time::sleep_until(until.into()).await;
            return Ok(events);
        }
        tokio::time::sleep(wait).await;
        events.extend(revive_all(cluster, http, clock).await?);
        let up = cluster.up();
        if up.len() < 2 {
            continue;
        }
        let node = up[rand::thread_rng().gen_range(0..up.len())];
        cluster.kill(node);
        eprintln!("[chaos] killed node {node}");
        events.push(Event {
            at_ms: traffic::ms_since(clock),
            node,
            what: What::Killed,
        });
        tokio::time::sleep(DOWN_FOR).await;
        events.push(restart(cluster, http, node, clock).await?);
    }
}

/// Starts every node that is down (after a kill, or dead by itself), recording why.
async fn revive_all(
    cluster: &mut Cluster,
    http: &Client,
    clock: Instant,
) -> Result<Vec<Event>, Error> {
    let mut events: Vec<Event> = cluster
        .reap_dead()
        .into_iter()
        .map(|(node, why)| Event {
            at_ms: traffic::ms_since(clock),
            node,
            what: What::Died(why),
        })
        .collect();
    let down: Vec<usize> = (0..cluster.nodes.len())
        .filter(|i| !cluster.up().contains(i))
        .collect();
    for node in down {
        events.push(restart(cluster, http, node, clock).await?);
    }
    Ok(events)
}

async fn restart(
    cluster: &mut Cluster,
    http: &Client,
    node: usize,
    clock: Instant,
) -> Result<Event, Error> {
    let started = Instant::now();
    let at_ms = traffic::ms_since(clock);
    cluster.restart(node, http).await?;
    let ready = started.elapsed().as_millis() as u64;
    eprintln!("[chaos] node {node} ready again after {ready} ms");
    Ok(Event {
        at_ms,
        node,
        what: What::Restarted(ready),
    })
}

/// Waits for every task of a set; a panicked task stops the run (its history is gone).
async fn join_all<T: 'static>(set: &mut JoinSet<T>) -> Result<Vec<T>, Error> {
    let mut out = Vec::with_capacity(set.len());
    while let Some(joined) = set.join_next().await {
        out.push(joined.map_err(|e| Error::Run(format!("a client task failed: {e}")))?);
    }
    Ok(out)
}

/// The send side of the history, keyed by sender id as deliveries carry it.
fn history(senders: &[Writes]) -> Sends {
    let mut sends = Sends::default();
    for writes in senders {
        sends
            .acknowledged
            .extend(writes.acknowledged.iter().cloned());
        sends.attempted.extend(
            writes
                .attempted
                .iter()
                .map(|client_msg_id| (writes.user, client_msg_id.clone())),
        );
    }
    sends
}
