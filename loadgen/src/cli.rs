//! The command line: `loadgen feed|chat|presence|chaos [options]`, parsed by hand (a dozen flags
//! do not justify a parser dependency). The options themselves live in `options`.

use crate::{
    error::Error,
    options::{
        Backend, ChaosOptions, ChatOptions, Engine, FeedOptions, Flavour, PresenceOptions,
        SoakOptions, Synchronous, VersusOptions,
    },
};
use std::{path::PathBuf, time::Duration};

pub const USAGE: &str = "\
usage: loadgen feed [options]
       loadgen chat [options]
       loadgen presence [options]
       loadgen chaos [options]
       loadgen versus [options]
       loadgen soak [options]
       loadgen media [options]

feed: starts target/release/server once per backend, seeds a social graph, and measures
the news feed (healthz baseline, feed reads, post latency, fanout, celebrity vs normal).
chat: starts it once per backend and runtime flavour, seeds users and channels, and
measures the chat hub (memory per idle WebSocket, 1:1 latency, 100-member group fanout,
long-poll against WebSocket delivery).
presence: starts it once per backend and runtime flavour, connects 10,000 users who
heartbeat every 5 s, and measures the server's CPU for it against an idle baseline, and
how fast friends hear that someone came online or went offline.
chaos: starts N nodes on one fresh PostgreSQL database and Redis namespace behind HAProxy,
runs chat and feed traffic through it while killing a random node with SIGKILL every few
seconds (and starting it again), then checks that every acknowledged message reached every
member device exactly once and in order, and every acknowledged post every follower's
feed; exits non-zero when not.
versus: Kith against socketioxide 0.18 (`socketio-peer`, a Socket.IO rooms server in this
tool's tree), in turns on the same scenarios: memory per idle connection (5,000 → 10,000),
1:1 (5,000 pairs heartbeating every 10 s, 5,000 msg/s open loop for 20 s: p99), 10 rooms of
100 with senders rotating over all members (most deliveries/s within p99 50 ms) and 200
long-poll pairs in a closed loop (msg/s); prints each round, then medians and Kith's ratios
to the peer against their targets.
soak: starts the server once (one backend), and for --minutes runs mixed load at about half
of what the server on one core sustains: 1:1 and group chat over WebSockets, long-poll receivers, feed
reads and posts, every socket heartbeating (presence). Each minute it samples the server's
RSS, open files, runtime tasks and Redis memory and the minute's traffic; at the end it checks
that every acknowledged message was delivered once, prints the slopes, and exits non-zero on
any error, disconnect or lost message.
media: starts it once per backend and measures image uploads: --concurrency clients (default
2) post 2 MiB JPEG photographs to POST /v1/media in a closed loop for --duration-secs
(uploads/s, latency, server CPU per upload).
Build the server first: cargo build -p server --release (versus: -p socketio-peer too)

options (all; chaos takes only --redis-url, --postgres-url, --duration-secs, --server-bin):
  --backends LIST        memory,redis (default: both, in that order)
  --redis-url URL        Redis for the redis backend (default: redis://127.0.0.1:6379)
  --database ENGINE      sqlite|postgres: where each server keeps its data (default: sqlite,
                         a file in the run's directory); postgres: a fresh database
                         kith_load_<hex> per server, dropped after its run
  --postgres-url URL     PostgreSQL server and account that create and drop those databases
                         (default: postgres://postgres@127.0.0.1:5432/postgres)
  --duration-secs N      length of each throughput measurement (default: 10; presence:
                         each CPU window, default 30)
  --server-cpu N|none    core the server is pinned to with taskset (default: 0)
  --client-cpu N|none    core this tool is pinned to with taskset (default: 1)
  --server-bin PATH      server binary (default: `server` next to this executable)

options (feed and media):
  --concurrency N        concurrent clients for the throughput measurements (default: 64;
                         media: 2)

options (chat and presence):
  --flavours LIST        current_thread,multi_thread (default: both; in chat only the first
                         one runs the long-poll comparison)

options (chat only):
  --pair-rates LIST      1:1 send rates in messages/s, one run each (default: 5000,1000,500)
  --group-rates LIST     group send rates in messages/s, ascending, stepped until the server
                         saturates (default: 100,200,300,400,500,750,1000,1050,
                         1100,1200,1300)
  --groups N             groups of 100 the group rates are spread over, senders taking turns
                         (default: 20; 1 is one room, each member getting every message).
                         A step may not exceed N × 100 × 18 messages/s (the hub lets a
                         connection send 20 frames a second, heartbeats included)
  --longpoll-rate N      messages/s POSTed in the long-poll vs WebSocket run (default: 500)
  --synchronous MODE     normal|full: the server's KITH_SQLITE_SYNCHRONOUS (default: normal,
                         as in the other commands; full is the server's own default); SQLite
                         only, PostgreSQL commits with synchronous_commit = on
  --nodes N              N > 1: instead of the full scenario, the group steps on 1 node and
                         then on N nodes (needs --database postgres --backends redis), the
                         members' sockets spread over the nodes, side by side; nodes run
                         unpinned; runs the first --flavours entry only (default: 1)

options (versus only; --backends defaults to memory, --synchronous to full,
--duration-secs is each group step's length, default 10):
  --rounds N             each target measured N times, in turns; medians reported (default: 1)
  --pair-rate N          1:1 messages/s over all pairs (default: 5000)
  --pair-secs N          how long the 1:1 rate is held (default: 20)
  --group-rates LIST     group messages/s, stepped until p99 passes 50 ms (default:
                         400,600,800,1000,1200,1400,1600,1800,2000,2400,2800)
  --longpoll-secs N      length of the long-poll closed loop (default: 10)
  --peer-bin PATH        the peer (default: `socketio-peer` next to this executable)
  --ws-peer PATH         also measure memory per idle connection of Node's ws server,
                         loadgen/peer/ws/ws-peer (after npm ci in its directory)

options (soak only; --backends takes one backend, default redis; --synchronous defaults
to full):
  --minutes N            how long the load runs, one sample a minute (default: 30)
  --pair-rate N          1:1 messages/s over 1,000 WebSocket pairs (default: 400)
  --group-rate N         messages/s over 2 groups of 100, each delivered to 99 (default: 8)
  --longpoll-rate N      messages/s POSTed to 100 long-polling receivers (default: 120)
  --feed-read-rate N     feed reads/s by the 2,000 pair members (default: 200)
  --post-rate N          posts/s by 20 authors, ~500 followers each (default: 1)
  --near-cache-mb N      the server's KITH_NEAR_CACHE_MB (default: the server's, 64): a
                         small near cache is full within minutes, so later growth is not it

options (presence only):
  --users N              connected users, all heartbeating (default: 10000)
  --heartbeat-secs N     each user's heartbeat interval, random phase (default: 5)
  --subjects N           users who come online and go offline once, timed (default: 200)
  --friends N            friends of each subject among the users (default: 4)
  --presence-timeout-secs N
                         the server's KITH_PRESENCE_TIMEOUT_SECS (default: 30, its own)

options (chaos only; --duration-secs defaults to 60):
  --nodes N              nodes behind the balancer, at least 2 (default: 3)
  --kill-every-secs N    mean time between kills, each drawn within ±25% (default: 8)";

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Feed(FeedOptions),
    Chat(ChatOptions),
    Presence(PresenceOptions),
    Chaos(ChaosOptions),
    Versus(VersusOptions),
    Soak(SoakOptions),
    /// Takes the feed's options; `concurrency` defaults to 2.
    Media(FeedOptions),
    Help,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Feed,
    Chat,
    Presence,
    Chaos,
    Versus,
    Soak,
    Media,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, Error> {
    let mut args = args.into_iter();
    let which = match args.next().as_deref() {
        Some("feed") => Which::Feed,
        Some("chat") => Which::Chat,
        Some("presence") => Which::Presence,
        Some("chaos") => Which::Chaos,
        Some("versus") => Which::Versus,
        Some("soak") => Which::Soak,
        Some("media") => Which::Media,
        None | Some("-h") | Some("--help") | Some("help") => return Ok(Command::Help),
        Some(other) => return Err(usage(format!("unknown command {other:?}"))),
    };
    let (chat, presence, chaos, versus, soak) = (
        which == Which::Chat,
        which == Which::Presence,
        which == Which::Chaos,
        which == Which::Versus,
        which == Which::Soak,
    );
    let mut opts = FeedOptions::default();
    let mut chat_opts = ChatOptions::default();
    let mut presence_opts = PresenceOptions::default();
    let mut chaos_opts = ChaosOptions::default();
    let mut versus_opts = VersusOptions::default();
    let mut soak_opts = SoakOptions::default();
    let mut backend_list = None;
    let mut duration = None;
    let mut flavour_list = None;
    let mut concurrency = None;
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        // Both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg, None),
        };
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => return Err(usage(format!("{flag} needs a value"))),
        };
        let secs = |flag: &str, value: &str| -> Result<Duration, Error> {
            Ok(Duration::from_secs(positive(flag, value)? as u64))
        };
        match flag.as_str() {
            "--backends" if !chaos => backend_list = Some(backends(&value)?),
            "--redis-url" => opts.redis_url = value,
            "--database" if !chaos => {
                opts.database.engine = match value.to_ascii_lowercase().as_str() {
                    "sqlite" => Engine::Sqlite,
                    "postgres" | "postgresql" => Engine::Postgres,
                    _ => {
                        return Err(usage(format!(
                            "--database takes sqlite or postgres, not {value:?}"
                        )))
                    }
                }
            }
            "--postgres-url" => {
                if !(value.starts_with("postgres://") || value.starts_with("postgresql://")) {
                    return Err(usage(format!(
                        "--postgres-url wants a postgres:// URL, not {value:?}"
                    )));
                }
                opts.database.postgres_url = value;
            }
            "--duration-secs" => duration = Some(secs(&flag, &value)?),
            "--concurrency" if which == Which::Feed || which == Which::Media => {
                concurrency = Some(positive(&flag, &value)?);
            }
            "--server-cpu" if !chaos => opts.server_cpu = cpu(&flag, &value)?,
            "--client-cpu" if !chaos => opts.client_cpu = cpu(&flag, &value)?,
            "--server-bin" => opts.server_bin = Some(PathBuf::from(value)),
            "--flavours" if chat || presence => flavour_list = Some(flavours(&value)?),
            "--pair-rates" if chat => chat_opts.pair_rates = rates(&flag, &value)?,
            "--group-rates" if chat => chat_opts.group_rates = rates(&flag, &value)?,
            "--groups" if chat => chat_opts.groups = positive(&flag, &value)?,
            "--longpoll-rate" if chat => chat_opts.longpoll_rate = rate(&flag, &value)?,
            "--longpoll-rate" if soak => soak_opts.longpoll_rate = rate(&flag, &value)?,
            "--minutes" if soak => soak_opts.minutes = rate(&flag, &value)?,
            "--pair-rate" if soak => soak_opts.pair_rate = rate(&flag, &value)?,
            "--group-rate" if soak => soak_opts.group_rate = rate(&flag, &value)?,
            "--feed-read-rate" if soak => soak_opts.feed_read_rate = rate(&flag, &value)?,
            "--post-rate" if soak => soak_opts.post_rate = rate(&flag, &value)?,
            "--near-cache-mb" if soak => soak_opts.near_cache_mb = Some(rate(&flag, &value)?),
            "--synchronous" if chat || versus || soak => {
                let synchronous = match value.to_ascii_lowercase().as_str() {
                    "normal" => Synchronous::Normal,
                    "full" => Synchronous::Full,
                    _ => {
                        return Err(usage(format!(
                            "--synchronous takes normal or full, not {value:?}"
                        )))
                    }
                };
                chat_opts.synchronous = synchronous;
                versus_opts.synchronous = synchronous;
                soak_opts.synchronous = synchronous;
            }
            "--rounds" if versus => versus_opts.rounds = positive(&flag, &value)?,
            "--pair-rate" if versus => versus_opts.pair_rate = rate(&flag, &value)?,
            "--pair-secs" if versus => versus_opts.pair_duration = secs(&flag, &value)?,
            "--group-rates" if versus => versus_opts.group_rates = rates(&flag, &value)?,
            "--longpoll-secs" if versus => {
                versus_opts.longpoll_duration = secs(&flag, &value)?;
            }
            "--peer-bin" if versus => versus_opts.peer_bin = Some(PathBuf::from(value)),
            "--ws-peer" if versus => versus_opts.ws_peer = Some(PathBuf::from(value)),
            "--users" if presence => presence_opts.users = positive(&flag, &value)?,
            "--heartbeat-secs" if presence => presence_opts.heartbeat = secs(&flag, &value)?,
            "--subjects" if presence => presence_opts.subjects = positive(&flag, &value)?,
            "--friends" if presence => presence_opts.friends = positive(&flag, &value)?,
            "--presence-timeout-secs" if presence => {
                presence_opts.timeout = secs(&flag, &value)?;
            }
            "--nodes" if chaos => chaos_opts.nodes = positive(&flag, &value)?,
            "--nodes" if chat => chat_opts.nodes = positive(&flag, &value)?,
            "--kill-every-secs" if chaos => chaos_opts.kill_every = secs(&flag, &value)?,
            other => return Err(usage(format!("unknown option {other:?}"))),
        }
    }
    if let Some(list) = &backend_list {
        opts.backends = list.clone();
        versus_opts.backends = list.clone();
    }
    match which {
        Which::Feed => Ok(Command::Feed(FeedOptions {
            duration: duration.unwrap_or(opts.duration),
            concurrency: concurrency.unwrap_or(opts.concurrency),
            ..opts
        })),
        // Decoding a photograph takes the server's core for a good part of a second:
        // two clients keep it busy without queueing.
        Which::Media => Ok(Command::Media(FeedOptions {
            duration: duration.unwrap_or(opts.duration),
            concurrency: concurrency.unwrap_or(2),
            ..opts
        })),
        Which::Chat => {
            // Senders take turns over every member of every group, and the hub lets a
            // connection send 20 frames a second: a faster step would measure refusals.
            let members = chat_opts.groups * crate::chat_seed::GROUP_SIZE;
            if let Some(rate) = chat_opts
                .group_rates
                .iter()
                .find(|&&r| r as usize > members * MEMBER_SENDS_PER_SEC)
            {
                return Err(usage(format!(
                    "--group-rates {rate} is more than {} groups of {} can send ({} messages/s: \
                     the hub lets a connection send 20 frames a second, heartbeats included)",
                    chat_opts.groups,
                    crate::chat_seed::GROUP_SIZE,
                    members * MEMBER_SENDS_PER_SEC
                )));
            }
            if chat_opts.nodes > 1
                && (opts.database.engine != Engine::Postgres || opts.backends != [Backend::Redis])
            {
                return Err(usage(
                    "--nodes needs --database postgres --backends redis: nodes share one \
                     database and one Redis"
                        .into(),
                ));
            }
            Ok(Command::Chat(ChatOptions {
                backends: opts.backends,
                redis_url: opts.redis_url,
                database: opts.database,
                duration: duration.unwrap_or(chat_opts.duration),
                // Nodes share the cores unpinned: one core each would leave none to the
                // load tool, PostgreSQL and Redis on a small machine.
                server_cpu: opts.server_cpu.filter(|_| chat_opts.nodes == 1),
                client_cpu: opts.client_cpu,
                server_bin: opts.server_bin,
                flavours: flavour_list.unwrap_or(chat_opts.flavours),
                ..chat_opts
            }))
        }
        Which::Presence => {
            let p = PresenceOptions {
                backends: opts.backends,
                redis_url: opts.redis_url,
                database: opts.database,
                duration: duration.unwrap_or(presence_opts.duration),
                server_cpu: opts.server_cpu,
                client_cpu: opts.client_cpu,
                server_bin: opts.server_bin,
                flavours: flavour_list.unwrap_or(presence_opts.flavours),
                ..presence_opts
            };
            // A user silent for less than the timeout must never expire between two
            // heartbeats (the server flushes them up to a second late).
            if p.timeout <= p.heartbeat + Duration::from_secs(1) {
                return Err(usage(
                    "--presence-timeout-secs must exceed --heartbeat-secs by more than 1 s".into(),
                ));
            }
            if p.subjects * p.friends > p.users {
                return Err(usage(
                    "--subjects × --friends must not exceed --users (friends are distinct users)"
                        .into(),
                ));
            }
            Ok(Command::Presence(p))
        }
        Which::Soak => {
            let backend = match backend_list.as_deref() {
                None => soak_opts.backend,
                Some([one]) => *one,
                Some(_) => {
                    return Err(usage(
                        "--backends takes one backend for soak: memory or redis".into(),
                    ))
                }
            };
            if duration.is_some() {
                return Err(usage("soak takes --minutes, not --duration-secs".into()));
            }
            Ok(Command::Soak(SoakOptions {
                backend,
                redis_url: opts.redis_url,
                database: opts.database,
                server_cpu: opts.server_cpu,
                client_cpu: opts.client_cpu,
                server_bin: opts.server_bin,
                ..soak_opts
            }))
        }
        Which::Versus => Ok(Command::Versus(VersusOptions {
            redis_url: opts.redis_url,
            database: opts.database,
            duration: duration.unwrap_or(versus_opts.duration),
            server_cpu: opts.server_cpu,
            client_cpu: opts.client_cpu,
            server_bin: opts.server_bin,
            ..versus_opts
        })),
        Which::Chaos => {
            if chaos_opts.nodes < 2 {
                return Err(usage(
                    "--nodes must be at least 2: a kill may never leave no node up".into(),
                ));
            }
            Ok(Command::Chaos(ChaosOptions {
                redis_url: opts.redis_url,
                postgres_url: opts.database.postgres_url,
                duration: duration.unwrap_or(chaos_opts.duration),
                server_bin: opts.server_bin,
                ..chaos_opts
            }))
        }
    }
}

fn flavours(list: &str) -> Result<Vec<Flavour>, Error> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let flavour = match name {
            "current_thread" => Flavour::CurrentThread,
            "multi_thread" => Flavour::MultiThread,
            other => return Err(usage(format!("unknown runtime flavour {other:?}"))),
        };
        if !out.contains(&flavour) {
            out.push(flavour);
        }
    }
    if out.is_empty() {
        return Err(usage("--flavours names no flavour".into()));
    }
    Ok(out)
}

fn rate(flag: &str, value: &str) -> Result<u32, Error> {
    u32::try_from(positive(flag, value)?)
        .map_err(|_| usage(format!("{flag}: {value} is too large")))
}

fn rates(flag: &str, list: &str) -> Result<Vec<u32>, Error> {
    let out = list
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| rate(flag, r))
        .collect::<Result<Vec<_>, _>>()?;
    if out.is_empty() {
        return Err(usage(format!("{flag} names no rate")));
    }
    Ok(out)
}

fn usage(problem: String) -> Error {
    Error::Usage(format!("{problem}\n\n{USAGE}"))
}

fn backends(list: &str) -> Result<Vec<Backend>, Error> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let backend = match name {
            "memory" => Backend::Memory,
            "redis" => Backend::Redis,
            other => return Err(usage(format!("unknown backend {other:?}"))),
        };
        if !out.contains(&backend) {
            out.push(backend);
        }
    }
    if out.is_empty() {
        return Err(usage("--backends names no backend".into()));
    }
    Ok(out)
}

/// Messages a second a group member may be asked to send: 90% of the 20 frames a second the
/// hub lets one connection send (`FRAME_QUOTA` in `server/src/chat/ws.rs`), leaving room
/// for its heartbeats.
const MEMBER_SENDS_PER_SEC: usize = 18;

fn positive(flag: &str, value: &str) -> Result<usize, Error> {
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(usage(format!(
            "{flag} wants a positive integer, not {value:?}"
        ))),
    }
}

fn cpu(flag: &str, value: &str) -> Result<Option<usize>, Error> {
    if value == "none" {
        return Ok(None);
    }
    value
        .parse::<usize>()
        .map(Some)
        .map_err(|_| usage(format!("{flag} wants a core number or none, not {value:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(args: &[&str]) -> FeedOptions {
        let args: Vec<String> = std::iter::once("feed")
            .chain(args.iter().copied())
            .map(String::from)
            .collect();
        match parse(args.clone()) {
            Ok(Command::Feed(o)) => o,
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn defaults_are_both_backends_pinned_apart() {
        let o = feed(&[]);
        assert_eq!(o.backends, vec![Backend::Memory, Backend::Redis]);
        assert_eq!((o.server_cpu, o.client_cpu), (Some(0), Some(1)));
        assert_eq!(o.duration, Duration::from_secs(10));
    }

    #[test]
    fn flags_take_both_spellings() {
        let o = feed(&[
            "--backends=redis",
            "--duration-secs",
            "3",
            "--client-cpu=none",
        ]);
        assert_eq!(o.backends, vec![Backend::Redis]);
        assert_eq!(o.duration, Duration::from_secs(3));
        assert_eq!(o.client_cpu, None);
    }

    #[test]
    fn the_database_is_sqlite_unless_postgres_is_asked_for() {
        let o = feed(&[]);
        assert_eq!(o.database.engine, Engine::Sqlite);
        assert!(o.command_line().contains(" --database sqlite"));
        assert!(!o.command_line().contains("--postgres-url"));
        let o = feed(&["--database", "postgres"]);
        assert_eq!(o.database.engine, Engine::Postgres);
        assert_eq!(
            o.database.postgres_url,
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
        assert!(o.command_line().contains(
            " --database postgres --postgres-url postgres://postgres@127.0.0.1:5432/postgres"
        ));
        let o = feed(&[
            "--postgres-url=postgres://kith@db:5433/admin",
            "--database=postgres",
        ]);
        assert_eq!(o.database.postgres_url, "postgres://kith@db:5433/admin");
        for command in ["chat", "presence"] {
            let args = [command, "--database", "postgres"].map(String::from);
            match parse(args) {
                Ok(Command::Chat(o)) => assert_eq!(o.database.engine, Engine::Postgres),
                Ok(Command::Presence(o)) => assert_eq!(o.database.engine, Engine::Postgres),
                other => panic!("{command} parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn soak_runs_one_backend_for_minutes() {
        let soak = |args: &[&str]| {
            parse(
                std::iter::once("soak")
                    .chain(args.iter().copied())
                    .map(String::from),
            )
        };
        match soak(&[]) {
            Ok(Command::Soak(o)) => {
                assert_eq!((o.backend, o.minutes), (Backend::Redis, 30));
                assert_eq!(o.synchronous, Synchronous::Full);
                assert!(o.command_line().contains(" --backends redis "));
            }
            other => panic!("parsed as {other:?}"),
        }
        match soak(&["--backends=memory", "--minutes", "2", "--feed-read-rate=50"]) {
            Ok(Command::Soak(o)) => {
                assert_eq!(
                    (o.backend, o.minutes, o.feed_read_rate),
                    (Backend::Memory, 2, 50)
                );
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(soak(&["--backends", "memory,redis"]).is_err());
        assert!(soak(&["--duration-secs", "60"]).is_err());
        assert!(soak(&["--minutes", "0"]).is_err());
        assert!(soak(&["--rounds", "2"]).is_err());
    }

    #[test]
    fn chat_takes_shared_and_own_flags() {
        let args = [
            "chat",
            "--backends=memory",
            "--flavours",
            "multi_thread",
            "--group-rates",
            "100,200",
        ];
        match parse(args.iter().map(|s| s.to_string())) {
            Ok(Command::Chat(o)) => {
                assert_eq!(o.backends, vec![Backend::Memory]);
                assert_eq!(o.flavours, vec![Flavour::MultiThread]);
                assert_eq!(o.group_rates, vec![100, 200]);
                assert_eq!(o.pair_rates, vec![5_000, 1_000, 500]);
                assert_eq!(o.groups, 20);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn group_steps_stay_within_what_the_members_may_send() {
        let chat = |args: &[&str]| {
            parse(
                std::iter::once("chat")
                    .chain(args.iter().copied())
                    .map(String::from),
            )
        };
        match chat(&["--synchronous", "FULL"]) {
            Ok(Command::Chat(o)) => {
                assert_eq!(o.synchronous, Synchronous::Full);
                assert!(o.command_line().contains("--synchronous full"));
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(chat(&["--synchronous", "off"]).is_err());
        match chat(&["--groups", "1", "--group-rates", "1000,1800"]) {
            Ok(Command::Chat(o)) => {
                assert_eq!(o.groups, 1);
                assert!(o.command_line().contains("--groups 1 "));
            }
            other => panic!("parsed as {other:?}"),
        }
        // One group's 100 members may send 1,800 a second between them, not more.
        assert!(chat(&["--groups", "1", "--group-rates", "1800"]).is_ok());
        let err = chat(&["--groups", "1", "--group-rates", "1000,1801"]).unwrap_err();
        assert!(err.to_string().contains("1801"), "{err}");
        assert!(chat(&["--groups", "0"]).is_err());
    }

    #[test]
    fn presence_has_its_own_defaults_and_flags() {
        let parse_presence = |args: &[&str]| match parse(
            std::iter::once("presence")
                .chain(args.iter().copied())
                .map(String::from),
        ) {
            Ok(Command::Presence(o)) => o,
            other => panic!("{args:?} parsed as {other:?}"),
        };
        let o = parse_presence(&[]);
        assert_eq!((o.users, o.subjects, o.friends), (10_000, 200, 4));
        assert_eq!(o.duration, Duration::from_secs(30));
        assert_eq!(o.heartbeat, Duration::from_secs(5));
        assert_eq!(o.timeout, Duration::from_secs(30));
        assert_eq!(o.flavours.len(), 2);
        let o = parse_presence(&[
            "--users=800",
            "--flavours",
            "multi_thread",
            "--duration-secs=5",
        ]);
        assert_eq!(o.users, 800);
        assert_eq!(o.flavours, vec![Flavour::MultiThread]);
        assert_eq!(o.duration, Duration::from_secs(5));
    }

    #[test]
    fn chat_on_nodes_wants_postgres_and_redis() {
        let args = [
            "chat",
            "--nodes",
            "2",
            "--database",
            "postgres",
            "--backends",
            "redis",
        ];
        match parse(args.iter().map(|s| s.to_string())) {
            Ok(Command::Chat(o)) => {
                assert_eq!(o.nodes, 2);
                assert_eq!(o.server_cpu, None);
                assert!(o.command_line().contains(" --nodes 2"));
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn chaos_has_its_own_defaults_and_flags() {
        let parse_chaos = |args: &[&str]| match parse(
            std::iter::once("chaos")
                .chain(args.iter().copied())
                .map(String::from),
        ) {
            Ok(Command::Chaos(o)) => o,
            other => panic!("{args:?} parsed as {other:?}"),
        };
        let o = parse_chaos(&[]);
        assert_eq!(o.nodes, 3);
        assert_eq!(o.duration, Duration::from_secs(60));
        assert_eq!(o.kill_every, Duration::from_secs(8));
        let o = parse_chaos(&["--nodes=2", "--kill-every-secs", "5", "--duration-secs=20"]);
        assert_eq!(
            (o.nodes, o.kill_every.as_secs(), o.duration.as_secs()),
            (2, 5, 20)
        );
        assert!(o
            .command_line()
            .contains("chaos --nodes 2 --duration-secs 20 --kill-every-secs 5"));
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        for args in [
            vec!["feed", "--backends", "postgres"],
            vec!["feed", "--database", "mysql"],
            vec!["chat", "--postgres-url", "127.0.0.1:5432"],
            vec!["feed", "--duration-secs", "0"],
            vec!["feed", "--concurrency"],
            vec!["feed", "--group-rates", "100"],
            vec!["chat", "--pair-rates", "0"],
            vec!["chat", "--flavours", "work_stealing"],
            vec!["chat", "--concurrency", "8"],
            vec!["feed", "--flavours", "multi_thread"],
            vec!["presence", "--pair-rates", "100"],
            vec!["presence", "--presence-timeout-secs", "5"],
            vec![
                "presence",
                "--users",
                "100",
                "--subjects",
                "30",
                "--friends",
                "4",
            ],
            vec!["bench"],
            vec!["chaos", "--nodes", "1"],
            vec!["chat", "--nodes", "2"],
            vec!["chat", "--nodes", "2", "--database", "postgres"],
            vec!["chaos", "--backends", "redis"],
            vec!["chaos", "--server-cpu", "0"],
            vec!["feed", "--kill-every-secs", "5"],
            vec!["versus", "--rounds", "0"],
            vec!["versus", "--flavours", "multi_thread"],
            vec!["chat", "--peer-bin", "x"],
            vec!["versus", "--synchronous", "off"],
        ] {
            let parsed = parse(args.iter().map(|s| s.to_string()));
            assert!(matches!(parsed, Err(Error::Usage(_))), "{args:?}");
        }
    }

    #[test]
    fn versus_defaults_to_kith_in_process_durable_against_the_peer() {
        let Ok(Command::Versus(o)) = parse(["versus".to_string()]) else {
            panic!("versus did not parse");
        };
        assert_eq!(o.backends, vec![Backend::Memory]);
        assert_eq!((o.synchronous, o.ws_peer), (Synchronous::Full, None));
        assert_eq!((o.rounds, o.pair_rate), (1, 5_000));
        assert_eq!(o.pair_duration, Duration::from_secs(20));
        let args = [
            "versus",
            "--backends=memory,redis",
            "--rounds",
            "3",
            "--synchronous",
            "normal",
            "--group-rates",
            "500,900",
            "--peer-bin",
            "/tmp/peer",
            "--ws-peer",
            "/tmp/ws-peer",
            "--duration-secs",
            "4",
        ];
        let Ok(Command::Versus(o)) = parse(args.iter().map(|s| s.to_string())) else {
            panic!("{args:?} did not parse");
        };
        assert_eq!(o.backends, vec![Backend::Memory, Backend::Redis]);
        assert_eq!((o.rounds, o.synchronous), (3, Synchronous::Normal));
        assert_eq!(o.group_rates, vec![500, 900]);
        assert_eq!(o.peer_bin, Some(PathBuf::from("/tmp/peer")));
        assert_eq!(o.ws_peer, Some(PathBuf::from("/tmp/ws-peer")));
        assert_eq!(o.duration, Duration::from_secs(4));
        assert!(o.command_line().contains("--rounds 3"));
    }
}
