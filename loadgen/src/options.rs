//! What each command measures with: the options of `feed`, `chat`, `presence` and `chaos`,
//! their defaults, and the command line that reproduces a run (printed above every report).

use std::{path::PathBuf, time::Duration};

/// Which backend the server under test uses for caches, queues and rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Redis,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Redis => "redis",
        }
    }
}

/// Which database engine the server under test stores its data in (`KITH_DATABASE_URL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// A file in the run's private directory.
    Sqlite,
    /// A fresh database on the PostgreSQL server of `--postgres-url`.
    Postgres,
}

impl Engine {
    /// Its `--database` spelling, also used in the reports.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// `--database` and `--postgres-url`: where the servers under test keep their data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseOptions {
    pub engine: Engine,
    /// The PostgreSQL server and the account that creates and drops each server's database
    /// (`kith_load_<hex>`); only used with [`Engine::Postgres`].
    pub postgres_url: String,
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        Self {
            engine: Engine::Sqlite,
            postgres_url: "postgres://postgres@127.0.0.1:5432/postgres".into(),
        }
    }
}

impl DatabaseOptions {
    /// ` --database …` (and ` --postgres-url …` with PostgreSQL), for a command line.
    fn push_args(&self, cmd: &mut String) {
        cmd.push_str(&format!(" --database {}", self.engine.name()));
        if self.engine == Engine::Postgres {
            cmd.push_str(&format!(" --postgres-url {}", self.postgres_url));
        }
    }
}

/// Options of the `feed` command.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    pub backends: Vec<Backend>,
    pub redis_url: String,
    pub database: DatabaseOptions,
    /// How long each throughput measurement (healthz, feed reads) runs.
    pub duration: Duration,
    /// Concurrent client tasks for the throughput measurements.
    pub concurrency: usize,
    /// Cores to pin to; `None` leaves scheduling to the OS.
    pub server_cpu: Option<usize>,
    pub client_cpu: Option<usize>,
    /// `None`: the `server` binary next to this executable (same cargo profile).
    pub server_bin: Option<PathBuf>,
}

impl Default for FeedOptions {
    fn default() -> Self {
        Self {
            backends: vec![Backend::Memory, Backend::Redis],
            redis_url: "redis://127.0.0.1:6379".into(),
            database: DatabaseOptions::default(),
            duration: Duration::from_secs(10),
            concurrency: 64,
            server_cpu: Some(0),
            client_cpu: Some(1),
            server_bin: None,
        }
    }
}

impl FeedOptions {
    /// The command that reproduces this run, every option spelled out.
    pub fn command_line(&self) -> String {
        let backends: Vec<&str> = self.backends.iter().map(|b| b.name()).collect();
        let mut cmd = format!(
            "cargo build -p server --release && cargo run -p loadgen --release -- feed \
             --backends {} --redis-url {} --duration-secs {} --concurrency {} \
             --server-cpu {} --client-cpu {}",
            backends.join(","),
            self.redis_url,
            self.duration.as_secs(),
            self.concurrency,
            cpu(self.server_cpu),
            cpu(self.client_cpu),
        );
        self.database.push_args(&mut cmd);
        push_server_bin(&mut cmd, &self.server_bin);
        cmd
    }
}

/// Which tokio scheduler the server under test runs (`KITH_RUNTIME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    CurrentThread,
    MultiThread,
}

impl Flavour {
    pub fn name(self) -> &'static str {
        match self {
            Flavour::CurrentThread => "current_thread",
            Flavour::MultiThread => "multi_thread",
        }
    }
}

/// Options of the `chat` command. The shared ones mean what they mean for `feed`.
#[derive(Debug, Clone)]
pub struct ChatOptions {
    pub backends: Vec<Backend>,
    pub redis_url: String,
    pub database: DatabaseOptions,
    /// Length of each measured send run.
    pub duration: Duration,
    pub server_cpu: Option<usize>,
    pub client_cpu: Option<usize>,
    pub server_bin: Option<PathBuf>,
    /// One server per backend and flavour; the first flavour gets the long-poll run too.
    pub flavours: Vec<Flavour>,
    /// Aggregate 1:1 send rates (messages/s), one run each.
    pub pair_rates: Vec<u32>,
    /// Aggregate group send rates (messages/s), stepped in this order. The default steps
    /// go past 1,010 messages/s: below that, 99 deliveries a message cannot reach the
    /// 100,000 deliveries/s target whatever the server does.
    pub group_rates: Vec<u32>,
    /// Groups of 100 the group rates are spread over, round-robin: with fewer, each member
    /// gets a larger share of the traffic (1: one room, as socket.io benchmarks measure).
    pub groups: usize,
    /// Messages/s POSTed while receivers long-poll (and then listen on WebSockets).
    pub longpoll_rate: u32,
    /// The server's `KITH_SQLITE_SYNCHRONOUS`: `NORMAL` like every other scenario, or
    /// `FULL` (the server's default: an acknowledged message survives a power loss). SQLite
    /// only: on PostgreSQL the server always commits with `synchronous_commit = on`.
    pub synchronous: Synchronous,
    /// More than 1: instead of the full scenario, the group steps on one node and then on
    /// this many (PostgreSQL and Redis), side by side.
    pub nodes: usize,
}

/// How hard SQLite syncs a commit in the server under test (`KITH_SQLITE_SYNCHRONOUS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    Normal,
    Full,
}

impl Synchronous {
    pub fn name(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

impl Default for ChatOptions {
    fn default() -> Self {
        let feed = FeedOptions::default();
        Self {
            backends: feed.backends,
            redis_url: feed.redis_url,
            database: feed.database,
            duration: feed.duration,
            server_cpu: feed.server_cpu,
            client_cpu: feed.client_cpu,
            server_bin: None,
            flavours: vec![Flavour::CurrentThread, Flavour::MultiThread],
            pair_rates: vec![5_000, 1_000, 500],
            group_rates: vec![
                100, 200, 300, 400, 500, 750, 1_000, 1_050, 1_100, 1_200, 1_300,
            ],
            groups: crate::chat_seed::GROUPS,
            longpoll_rate: 500,
            synchronous: Synchronous::Normal,
            nodes: 1,
        }
    }
}

impl ChatOptions {
    /// The command that reproduces this run, every option spelled out.
    pub fn command_line(&self) -> String {
        let list = |v: &[u32]| {
            v.iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let backends: Vec<&str> = self.backends.iter().map(|b| b.name()).collect();
        let mut cmd = format!(
            "cargo build -p server --release && cargo run -p loadgen --release -- chat \
             --backends {} --redis-url {} --duration-secs {} --server-cpu {} --client-cpu {} \
             --flavours {} --pair-rates {} --group-rates {} --groups {} --longpoll-rate {} \
             --synchronous {}",
            backends.join(","),
            self.redis_url,
            self.duration.as_secs(),
            cpu(self.server_cpu),
            cpu(self.client_cpu),
            flavours(&self.flavours),
            list(&self.pair_rates),
            list(&self.group_rates),
            self.groups,
            self.longpoll_rate,
            self.synchronous.name().to_lowercase(),
        );
        self.database.push_args(&mut cmd);
        if self.nodes > 1 {
            cmd.push_str(&format!(" --nodes {}", self.nodes));
        }
        push_server_bin(&mut cmd, &self.server_bin);
        cmd
    }
}

/// Options of the `versus` command: Kith (on each of `backends`) and the Socket.IO peer,
/// measured in turns on the same scenarios, `rounds` times.
#[derive(Debug, Clone)]
pub struct VersusOptions {
    pub backends: Vec<Backend>,
    pub redis_url: String,
    pub database: DatabaseOptions,
    /// Length of each group step.
    pub duration: Duration,
    pub server_cpu: Option<usize>,
    pub client_cpu: Option<usize>,
    pub server_bin: Option<PathBuf>,
    /// `None`: the `socketio-peer` binary next to this executable.
    pub peer_bin: Option<PathBuf>,
    /// Node's `ws` server (`loadgen/peer/ws/ws-peer`), whose memory per idle connection is
    /// measured too when given.
    pub ws_peer: Option<PathBuf>,
    /// Each target is measured this many times, in turns; the report gives medians.
    pub rounds: usize,
    /// The 1:1 rate (messages/s over all pairs) and how long it is held.
    pub pair_rate: u32,
    pub pair_duration: Duration,
    /// Group send rates (messages/s), stepped until p99 passes 50 ms.
    pub group_rates: Vec<u32>,
    /// How long the long-poll pairs run their closed loop.
    pub longpoll_duration: Duration,
    /// Kith's `KITH_SQLITE_SYNCHRONOUS` (default `FULL`, the server's own).
    pub synchronous: Synchronous,
}

impl Default for VersusOptions {
    fn default() -> Self {
        let chat = ChatOptions::default();
        Self {
            backends: vec![Backend::Memory],
            redis_url: chat.redis_url,
            database: chat.database,
            duration: Duration::from_secs(10),
            server_cpu: chat.server_cpu,
            client_cpu: chat.client_cpu,
            server_bin: None,
            peer_bin: None,
            ws_peer: None,
            rounds: 1,
            pair_rate: 5_000,
            pair_duration: Duration::from_secs(20),
            group_rates: vec![
                400, 600, 800, 1_000, 1_200, 1_400, 1_600, 1_800, 2_000, 2_400, 2_800,
            ],
            longpoll_duration: Duration::from_secs(10),
            synchronous: Synchronous::Full,
        }
    }
}

impl VersusOptions {
    /// The command that reproduces this run, every option spelled out.
    pub fn command_line(&self) -> String {
        let backends: Vec<&str> = self.backends.iter().map(|b| b.name()).collect();
        let rates: Vec<String> = self.group_rates.iter().map(|r| r.to_string()).collect();
        let mut cmd = format!(
            "cargo build --release -p server -p loadgen -p socketio-peer && \
             ./target/release/loadgen versus --backends {} --redis-url {} --rounds {} \
             --duration-secs {} --pair-rate {} --pair-secs {} --group-rates {} \
             --longpoll-secs {} --synchronous {} --server-cpu {} --client-cpu {}",
            backends.join(","),
            self.redis_url,
            self.rounds,
            self.duration.as_secs(),
            self.pair_rate,
            self.pair_duration.as_secs(),
            rates.join(","),
            self.longpoll_duration.as_secs(),
            self.synchronous.name().to_lowercase(),
            cpu(self.server_cpu),
            cpu(self.client_cpu),
        );
        self.database.push_args(&mut cmd);
        push_server_bin(&mut cmd, &self.server_bin);
        if let Some(bin) = &self.peer_bin {
            cmd.push_str(&format!(" --peer-bin {}", bin.display()));
        }
        if let Some(bin) = &self.ws_peer {
            cmd.push_str(&format!(" --ws-peer {}", bin.display()));
        }
        cmd
    }
}

/// Options of the `presence` command. The shared ones mean what they mean for `chat`,
/// except `duration`: the length of the two CPU windows (heartbeats, then idle).
#[derive(Debug, Clone)]
pub struct PresenceOptions {
    pub backends: Vec<Backend>,
    pub redis_url: String,
    pub database: DatabaseOptions,
    /// Length of the heartbeat window and of the idle baseline window. 30 s, the server's
    /// ping interval, puts exactly one ping per connection in each.
    pub duration: Duration,
    pub server_cpu: Option<usize>,
    pub client_cpu: Option<usize>,
    pub server_bin: Option<PathBuf>,
    pub flavours: Vec<Flavour>,
    /// Connected users, each heartbeating every `heartbeat`.
    pub users: usize,
    pub heartbeat: Duration,
    /// Users who come online and go offline once each, for the fanout latency.
    pub subjects: usize,
    /// Friends (mutual follows) of each subject, all among the heartbeating users.
    pub friends: usize,
    /// `KITH_PRESENCE_TIMEOUT_SECS` of the server.
    pub timeout: Duration,
}

impl Default for PresenceOptions {
    fn default() -> Self {
        let chat = ChatOptions::default();
        Self {
            backends: chat.backends,
            redis_url: chat.redis_url,
            database: chat.database,
            duration: Duration::from_secs(30),
            server_cpu: chat.server_cpu,
            client_cpu: chat.client_cpu,
            server_bin: None,
            flavours: chat.flavours,
            users: 10_000,
            heartbeat: Duration::from_secs(5),
            subjects: 200,
            friends: 4,
            // The server's default.
            timeout: Duration::from_secs(30),
        }
    }
}

impl PresenceOptions {
    /// The command that reproduces this run, every option spelled out.
    pub fn command_line(&self) -> String {
        let backends: Vec<&str> = self.backends.iter().map(|b| b.name()).collect();
        let mut cmd = format!(
            "cargo build -p server --release && cargo run -p loadgen --release -- presence \
             --backends {} --redis-url {} --duration-secs {} --server-cpu {} --client-cpu {} \
             --flavours {} --users {} --heartbeat-secs {} --subjects {} --friends {} \
             --presence-timeout-secs {}",
            backends.join(","),
            self.redis_url,
            self.duration.as_secs(),
            cpu(self.server_cpu),
            cpu(self.client_cpu),
            flavours(&self.flavours),
            self.users,
            self.heartbeat.as_secs(),
            self.subjects,
            self.friends,
            self.timeout.as_secs(),
        );
        self.database.push_args(&mut cmd);
        push_server_bin(&mut cmd, &self.server_bin);
        cmd
    }
}

/// Options of the `chaos` command: a cluster behind HAProxy on PostgreSQL and Redis, one
/// node killed with SIGKILL every so often under traffic.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    pub redis_url: String,
    /// The PostgreSQL server and account that create and drop the run's database.
    pub postgres_url: String,
    /// Nodes behind the balancer; at least 2, so a kill never leaves none.
    pub nodes: usize,
    /// How long the traffic (and the killing) runs.
    pub duration: Duration,
    /// Mean time between two kills (each drawn within ±25%).
    pub kill_every: Duration,
    pub server_bin: Option<PathBuf>,
}

impl Default for ChaosOptions {
    fn default() -> Self {
        let feed = FeedOptions::default();
        Self {
            redis_url: feed.redis_url,
            postgres_url: feed.database.postgres_url,
            nodes: 3,
            duration: Duration::from_secs(60),
            kill_every: Duration::from_secs(8),
            server_bin: None,
        }
    }
}

impl ChaosOptions {
    /// The command that reproduces this run, every option spelled out.
    pub fn command_line(&self) -> String {
        let mut cmd = format!(
            "cargo build -p server --release && cargo run -p loadgen --release -- chaos \
             --nodes {} --duration-secs {} --kill-every-secs {} --redis-url {} --postgres-url {}",
            self.nodes,
            self.duration.as_secs(),
            self.kill_every.as_secs(),
            self.redis_url,
            self.postgres_url,
        );
        push_server_bin(&mut cmd, &self.server_bin);
        cmd
    }
}

fn cpu(c: Option<usize>) -> String {
    c.map_or_else(|| "none".to_string(), |c| c.to_string())
}

fn flavours(list: &[Flavour]) -> String {
    list.iter().map(|f| f.name()).collect::<Vec<_>>().join(",")
}

fn push_server_bin(cmd: &mut String, bin: &Option<PathBuf>) {
    if let Some(bin) = bin {
        cmd.push_str(&format!(" --server-bin {}", bin.display()));
    }
}

/// Options of the `soak` command.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub backend: Backend,
    pub redis_url: String,
    pub database: DatabaseOptions,
    /// How long the load runs; one sample a minute.
    pub minutes: u32,
    pub server_cpu: Option<usize>,
    pub client_cpu: Option<usize>,
    pub server_bin: Option<PathBuf>,
    /// 1:1 messages/s over the WebSocket pairs.
    pub pair_rate: u32,
    /// Group messages/s over the groups' members (each delivered to 99).
    pub group_rate: u32,
    /// Messages/s POSTed to the long-polling receivers.
    pub longpoll_rate: u32,
    /// `GET /v1/me/feed`/s.
    pub feed_read_rate: u32,
    /// `POST /v1/me/feed`/s (each fanned out to ~500 followers and notified).
    pub post_rate: u32,
    pub synchronous: Synchronous,
    /// The server's `KITH_NEAR_CACHE_MB` (on Redis), when not its default: a small one
    /// fills within minutes, so what grows after that is not the cache.
    pub near_cache_mb: Option<u32>,
}

impl Default for SoakOptions {
    /// About half of what the server on one core sustains: these rates keep its core
    /// ~55% busy on Redis under SQLite `FULL` (2.5 times them, 79%), each kind of load
    /// taking its share: 1:1 400 msg/s, groups 8 msg/s (792 deliveries/s), long-poll 120
    /// msg/s, 200 feed reads/s and a post a second (~500 followers: feed pushes,
    /// notifications and `new_post` events), with 2,200 sockets heartbeating every 10 s.
    fn default() -> Self {
        let chat = ChatOptions::default();
        Self {
            backend: Backend::Redis,
            redis_url: chat.redis_url,
            database: chat.database,
            minutes: 30,
            server_cpu: chat.server_cpu,
            client_cpu: chat.client_cpu,
            server_bin: None,
            pair_rate: 400,
            group_rate: 8,
            longpoll_rate: 120,
            feed_read_rate: 200,
            post_rate: 1,
            synchronous: Synchronous::Full,
            near_cache_mb: None,
        }
    }
}

impl SoakOptions {
    /// The command that reproduces this run, every option spelled out.
    pub fn command_line(&self) -> String {
        let mut cmd = format!(
            "cargo build --release -p server -p loadgen && ./target/release/loadgen soak \
             --backends {} --redis-url {} --minutes {} --pair-rate {} --group-rate {} \
             --longpoll-rate {} --feed-read-rate {} --post-rate {} --synchronous {} \
             --server-cpu {} --client-cpu {}",
            self.backend.name(),
            self.redis_url,
            self.minutes,
            self.pair_rate,
            self.group_rate,
            self.longpoll_rate,
            self.feed_read_rate,
            self.post_rate,
            self.synchronous.name().to_ascii_lowercase(),
            cpu(self.server_cpu),
            cpu(self.client_cpu),
        );
        if let Some(mb) = self.near_cache_mb {
            cmd.push_str(&format!(" --near-cache-mb {mb}"));
        }
        self.database.push_args(&mut cmd);
        push_server_bin(&mut cmd, &self.server_bin);
        cmd
    }
}
