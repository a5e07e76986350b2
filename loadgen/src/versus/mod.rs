//! `loadgen versus`: Kith against a Socket.IO peer (socketioxide 0.18 on a `current_thread`
//! runtime, `socketio-peer` in this tree), on the same scenarios, in turns, in one run.
//! Absolute figures on a small machine move by 2–3× between days; ratios measured side by
//! side do not.
//!
//! Each target (Kith on a backend, or the peer) runs, with the server pinned to its core:
//!
//! 1. **memory**: 5,000 then 10,000 idle connections (the pairs' members, authenticated),
//!    the server's RSS at each: bytes per connection from the difference;
//! 2. **1:1**: those 10,000 connections heartbeat every 10 s (Kith's clients send a
//!    `heartbeat` frame; the peer's engine pings and the client answers) while 5,000 pairs
//!    send 5,000 messages/s open loop for 20 s: delivery latency;
//! 3. **groups**: 10 rooms of 100, every member connected and heartbeating, senders taking
//!    turns over all members, the rate stepped until p99 passes 50 ms: the most
//!    deliveries/s within it;
//! 4. **long-poll**: 200 pairs in a closed loop, each with one message in flight that
//!    bounces between its two members, both long-polling (Kith: `GET /v1/chat/sync` and
//!    `POST …/messages`; the peer: Engine.IO's polling transport): messages/s.
//!
//! Messages carry 64 bytes of content besides their send stamp. Kith stores every message
//! durably before it acknowledges or delivers it (SQLite `synchronous=FULL` unless asked
//! otherwise); the peer keeps nothing.

mod longpoll;
pub mod report;

use crate::{
    chat::{self, SendRun, FD_LIMIT, GROUP_P99_TARGET, MEMORY_POINTS},
    chat_seed::{self, ChatPopulation, ChatUser, Sizes, GROUP_SIZE},
    cpu::CpuClock,
    db::Db,
    error::Error,
    options::{Backend, ChatOptions, Flavour, VersusOptions},
    server::{Launch, ServerProcess, TempDir, UnderTest},
    ws_client::{self, Conn, Dialect, Recorder},
};
use reqwest::Client;
use std::{path::PathBuf, time::Duration};

pub use longpoll::LongPollRun;

/// Pairs in the 1:1 scenario (two connections each).
pub const PAIRS: usize = 5_000;
/// Rooms of [`GROUP_SIZE`] in the group scenario.
pub const GROUPS: usize = 10;
/// Pairs in the long-poll closed loop (taken from the 1:1 pairs).
pub const LONGPOLL_PAIRS: usize = 200;
/// How the reports name Node's `ws` server (`loadgen/peer/ws`), measured for memory only.
pub const WS_PEER: &str = "ws 8 (Node)";
/// Every client heartbeats this often (Kith's browser client; the peer's ping interval).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Kith's release server on this backend.
    Kith(Backend),
    /// The Socket.IO peer.
    SocketIo,
}

impl Target {
    pub fn name(self) -> String {
        match self {
            Target::Kith(Backend::Memory) => "Kith".into(),
            Target::Kith(b) => format!("Kith on {}", b.name()),
            Target::SocketIo => "socketioxide 0.18".into(),
        }
    }

    fn dialect(self) -> Dialect {
        match self {
            Target::Kith(_) => Dialect::Kith,
            Target::SocketIo => Dialect::SocketIo,
        }
    }
}

/// What every run shares.
pub struct Setup {
    pub opts: VersusOptions,
    pub server_bin: PathBuf,
    pub peer_bin: PathBuf,
    /// `loadgen/peer/ws/ws-peer`, when its memory is measured too.
    pub ws_peer: Option<PathBuf>,
    pub server_cpu: Option<usize>,
    pub clock: CpuClock,
}

impl Setup {
    /// The chat scenario's setup with this command's group steps, for its shared runners.
    fn chat(&self) -> chat::Setup {
        chat::Setup {
            opts: ChatOptions {
                duration: self.opts.duration,
                group_rates: self.opts.group_rates.clone(),
                ..ChatOptions::default()
            },
            server_bin: self.server_bin.clone(),
            server_cpu: self.server_cpu,
            clock: self.clock,
        }
    }
}

/// One target's figures in one round.
#[derive(Debug)]
pub struct VersusRun {
    pub target: Target,
    /// Server RSS (KiB) at 5,000 and 10,000 idle connections.
    pub rss_kib: [Option<u64>; 2],
    pub pair: SendRun,
    pub groups: Vec<SendRun>,
    pub longpoll: LongPollRun,
}

impl VersusRun {
    /// Bytes of server memory per idle connection, from the two RSS readings.
    pub fn bytes_per_connection(&self) -> Option<f64> {
        bytes_per_connection(self.rss_kib)
    }

    /// The group step with the most deliveries/s among those within p99 50 ms.
    pub fn best_group_step(&self) -> Option<&SendRun> {
        self.groups
            .iter()
            .filter(|r| r.within_target(GROUP_P99_TARGET))
            .max_by(|a, b| a.delivered_per_sec().total_cmp(&b.delivered_per_sec()))
    }
}

/// The server under test and whatever it needs kept alive until the run ends.
struct Running {
    guard: Guard,
    /// The `/metrics` gauge of open connections.
    gauge: &'static str,
    ws_url: String,
    pop: ChatPopulation,
}

enum Guard {
    /// Kith with its database, directory and Redis namespace.
    Kith(UnderTest),
    /// The peer; `server` is declared first, so it is killed before its directory goes.
    Peer {
        server: ServerProcess,
        _dir: TempDir,
    },
}

impl Guard {
    fn server(&mut self) -> &mut ServerProcess {
        match self {
            Guard::Kith(under_test) => &mut under_test.server,
            Guard::Peer { server, .. } => server,
        }
    }
}

/// One target, start to finish; its server is killed whatever happens.
pub async fn run(setup: &Setup, target: Target) -> Result<VersusRun, Error> {
    let http = Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(40))
        .build()?;
    let mut running = start(setup, target, &http).await?;
    let outcome = measure(setup, target, &http, &mut running).await;
    if let Guard::Kith(under_test) = running.guard {
        under_test.finish(&target.name()).await;
    }
    outcome
}

async fn start(setup: &Setup, target: Target, http: &Client) -> Result<Running, Error> {
    let sizes = Sizes {
        idle: 0,
        pairs: PAIRS,
        groups: GROUPS,
    };
    match target {
        Target::Kith(backend) => {
            let mut under_test = UnderTest::start(
                &setup.server_bin,
                setup.server_cpu,
                backend,
                &setup.opts.redis_url,
                &setup.opts.database,
                &[
                    ("KITH_RUNTIME", Flavour::CurrentThread.name()),
                    ("KITH_SQLITE_SYNCHRONOUS", setup.opts.synchronous.name()),
                    // Lifted, as for the peer, which has none: one client machine plays
                    // 11,000 users.
                    ("KITH_CHAT_SEND_RATE_PER_SEC", "100000"),
                    ("KITH_WS_CONNECT_RATE_PER_MIN", "1000000"),
                ],
                Some(FD_LIMIT),
            )
            .await?;
            under_test
                .server
                .wait_ready(http, Duration::from_secs(60))
                .await?;
            eprintln!("[{}] seeding users, sessions and channels", target.name());
            let writer = Db::writer(&under_test.db_url).await?;
            let pop = chat_seed::write_sized(&writer, chat::now_ms(), sizes).await?;
            writer.settle().await?;
            writer.close().await;
            let ws_url = format!(
                "{}/v1/chat/ws",
                under_test.server.base_url.replacen("http://", "ws://", 1)
            );
            Ok(Running {
                guard: Guard::Kith(under_test),
                gauge: "kith_websockets_open",
                ws_url,
                pop,
            })
        }
        Target::SocketIo => {
            let dir = TempDir::new()?;
            let mut server = ServerProcess::start(Launch {
                bin: &setup.peer_bin,
                cpu: setup.server_cpu,
                dir: &dir.0,
                env: Vec::new(),
                fd_limit: Some(FD_LIMIT),
            })?;
            server.wait_ready(http, Duration::from_secs(30)).await?;
            let ws_url = format!(
                "{}/socket.io/?EIO=4&transport=websocket",
                server.base_url.replacen("http://", "ws://", 1)
            );
            Ok(Running {
                guard: Guard::Peer { server, _dir: dir },
                gauge: "socketio_sockets_open",
                ws_url,
                pop: peer_population(sizes),
            })
        }
    }
}

/// The population as the peer sees it: the same users and channels as Kith's, each user's
/// credential the Socket.IO auth that joins the rooms of its channels.
fn peer_population(sizes: Sizes) -> ChatPopulation {
    let users = (1..=sizes.users() as i64)
        .map(|id| ChatUser {
            id,
            token: String::new(),
        })
        .collect();
    let mut pop = chat_seed::assemble(users, sizes);
    let auth = |channel: i64| format!(r#"{{"rooms":["{channel}"]}}"#);
    for p in &mut pop.pairs {
        p.a.token = auth(p.channel);
        p.b.token = auth(p.channel);
    }
    for g in &mut pop.groups {
        for m in &mut g.members {
            m.token = auth(g.channel);
        }
    }
    pop
}

async fn measure(
    setup: &Setup,
    target: Target,
    http: &Client,
    running: &mut Running,
) -> Result<VersusRun, Error> {
    let tag = target.name();
    let dialect = target.dialect();
    let chat_setup = setup.chat();
    let Running {
        guard,
        gauge,
        ws_url,
        pop,
    } = running;
    let db_url = match guard {
        Guard::Kith(under_test) => Some(under_test.db_url.clone()),
        Guard::Peer { .. } => None,
    };
    let server = guard.server();
    let base = server.base_url.clone();
    let recorder = Recorder::new();
    let settle = |n: usize| chat::settle_on(http, &base, gauge, n as i64);

    // 1. Memory: the pairs' members, idle.
    let pair_tokens: Vec<String> = pop
        .pairs
        .iter()
        .flat_map(|p| [p.a.token.clone(), p.b.token.clone()])
        .collect();
    let (mut pair_conns, rss_kib) = idle_memory(
        (&tag, dialect),
        server,
        http,
        &Endpoint { ws_url, gauge },
        &pair_tokens,
        &recorder,
    )
    .await?;
    let rest = pair_tokens.get(pair_conns.len()..).unwrap_or_default();
    pair_conns.extend(ws_client::open_all_in(dialect, ws_url, rest, &recorder).await?);
    settle(pair_conns.len()).await?;
    let _ = recorder.take();

    // 2. 1:1, every connection heartbeating.
    let beats = ws_client::keep_present(pair_conns.clone(), HEARTBEAT_EVERY);
    let send_pair = |n: u64, client_msg_id: String| {
        let p = (n as usize) % pop.pairs.len();
        let from_b = (n as usize / pop.pairs.len()) % 2;
        pair_conns[2 * p + from_b].send(pop.pairs[p].channel, client_msg_id)
    };
    let rate = setup.opts.pair_rate;
    chat::warm_up(&tag, &recorder, rate, |n| {
        send_pair(n, format!("pw-{n}"));
    })
    .await;
    eprintln!("[{tag}] 1:1 at {rate} messages/s");
    let pair = chat::ws_run(
        &chat_setup,
        &[&*server],
        http,
        &recorder,
        rate,
        setup.opts.pair_duration,
        1,
        |n, not_queued| {
            if !send_pair(n, format!("p-{n}")) {
                *not_queued += 1;
            }
        },
    )
    .await;
    server.check_alive()?;
    beats.abort();
    for conn in &pair_conns {
        conn.close().await;
    }
    drop(pair_conns);
    settle(0).await?;

    // 3. Groups, stepped until p99 passes 50 ms.
    let group_tokens: Vec<String> = pop
        .groups
        .iter()
        .flat_map(|g| g.members.iter().map(|m| m.token.clone()))
        .collect();
    eprintln!("[{tag}] connecting {} group members", group_tokens.len());
    let group_conns = ws_client::open_all_in(dialect, ws_url, &group_tokens, &recorder).await?;
    let beats = ws_client::keep_present(group_conns.clone(), HEARTBEAT_EVERY);
    settle(group_conns.len()).await?;
    let groups = chat::step_groups(
        &chat_setup,
        &[&*server],
        http,
        &recorder,
        &tag,
        pop,
        &group_conns,
        GROUP_P99_TARGET,
    )
    .await;
    server.check_alive()?;
    beats.abort();
    for conn in &group_conns {
        conn.close().await;
    }
    drop(group_conns);
    settle(0).await?;

    // 4. Long-poll, closed loop, from Kith's newest message on.
    let since = match &db_url {
        Some(url) => {
            let probe = Db::probe(url).await?;
            let newest = probe.newest_message_id().await?;
            probe.close().await;
            newest
        }
        None => 0,
    };
    let pairs = &pop.pairs[..LONGPOLL_PAIRS.min(pop.pairs.len())];
    eprintln!("[{tag}] long-poll: {} pairs, closed loop", pairs.len());
    let longpoll = longpoll::run(
        target,
        &longpoll::Bench {
            http,
            base: &base,
            clock: &setup.clock,
            server_pid: server.pid(),
            recorder: &recorder,
            duration: setup.opts.longpoll_duration,
            since,
        },
        pairs,
    )
    .await?;
    server.check_alive()?;

    Ok(VersusRun {
        target,
        rss_kib,
        pair,
        groups,
        longpoll,
    })
}

/// Where a server takes connections and counts them.
struct Endpoint<'a> {
    ws_url: &'a str,
    /// The `/metrics` gauge of open connections.
    gauge: &'a str,
}

/// Step 1: opens idle connections for the first 5,000 then 10,000 of `tokens`, reading
/// the server's RSS (KiB) once it reports each point open; returns the connections.
async fn idle_memory(
    (tag, dialect): (&str, Dialect),
    server: &mut ServerProcess,
    http: &Client,
    endpoint: &Endpoint<'_>,
    tokens: &[String],
    recorder: &std::sync::Arc<Recorder>,
) -> Result<(Vec<Conn>, [Option<u64>; 2]), Error> {
    let mut conns: Vec<Conn> = Vec::new();
    let mut rss_kib = [None; 2];
    for (i, point) in MEMORY_POINTS.into_iter().enumerate() {
        eprintln!("[{tag}] opening idle connections up to {point}");
        let batch = tokens.get(conns.len()..point).unwrap_or_default();
        conns.extend(ws_client::open_all_in(dialect, endpoint.ws_url, batch, recorder).await?);
        chat::settle_on(http, &server.base_url, endpoint.gauge, point as i64).await?;
        rss_kib[i] = server.rss_kib();
        server.check_alive()?;
    }
    Ok((conns, rss_kib))
}

/// Node's `ws` server at `bin`: bytes per idle connection, from 5,000 to 10,000 open.
pub async fn ws_memory(setup: &Setup, bin: &std::path::Path) -> Result<Option<f64>, Error> {
    let http = Client::builder().tcp_nodelay(true).build()?;
    let dir = TempDir::new()?;
    let mut server = ServerProcess::start(Launch {
        bin,
        cpu: setup.server_cpu,
        dir: &dir.0,
        env: Vec::new(),
        fd_limit: Some(FD_LIMIT),
    })?;
    server.wait_ready(&http, Duration::from_secs(30)).await?;
    let ws_url = server.base_url.replacen("http://", "ws://", 1) + "/";
    let tokens = vec!["idle".to_string(); MEMORY_POINTS[1]];
    let recorder = Recorder::new();
    let endpoint = Endpoint {
        ws_url: &ws_url,
        gauge: "ws_sockets_open",
    };
    // Kith's dialect: a plain WebSocket, whose bearer token the server ignores.
    let who = (WS_PEER, Dialect::Kith);
    let (conns, rss_kib) =
        idle_memory(who, &mut server, &http, &endpoint, &tokens, &recorder).await?;
    drop(conns);
    Ok(bytes_per_connection(rss_kib))
}

/// Bytes of server memory per idle connection, from the RSS at the two points.
fn bytes_per_connection([a, b]: [Option<u64>; 2]) -> Option<f64> {
    let n = (MEMORY_POINTS[1] - MEMORY_POINTS[0]) as f64;
    Some((b? as f64 - a? as f64) * 1024.0 / n)
}

/// Guards against a population too small for the scenarios (the constants above).
const _: () = assert!(LONGPOLL_PAIRS <= PAIRS && GROUP_SIZE == 100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_sees_kiths_channels_as_rooms() {
        let pop = peer_population(Sizes {
            idle: 0,
            pairs: 3,
            groups: 2,
        });
        assert_eq!((pop.pairs.len(), pop.groups.len()), (3, 2));
        assert_eq!((pop.users, pop.channels, pop.memberships), (206, 5, 206));
        assert_eq!(pop.pairs[1].channel, 2);
        assert_eq!(pop.pairs[1].a.token, r#"{"rooms":["2"]}"#);
        assert_eq!(pop.pairs[1].b.token, r#"{"rooms":["2"]}"#);
        assert_eq!(pop.groups[1].channel, 5);
        assert_eq!(pop.groups[1].members.len(), GROUP_SIZE);
        assert!(pop.groups[1]
            .members
            .iter()
            .all(|m| m.token == r#"{"rooms":["5"]}"#));
        // Users in id order: pairs first, then the groups.
        assert_eq!(pop.pairs[0].a.id, 1);
        assert_eq!(pop.groups[0].members[0].id, 7);
    }
}
