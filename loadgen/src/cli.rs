//! The command line: `loadgen feed|chat [options]`, parsed by hand (a dozen flags do not
//! justify a parser dependency).

use crate::error::Error;
use std::{path::PathBuf, time::Duration};

pub const USAGE: &str = "\
usage: loadgen feed [options]
       loadgen chat [options]

feed: starts target/release/server once per backend, seeds a social graph, and measures
the news feed (healthz baseline, feed reads, post latency, fanout, celebrity vs normal).
chat: starts it once per backend and runtime flavour, seeds users and channels, and
measures the chat hub (memory per idle WebSocket, 1:1 latency, 100-member group fanout,
long-poll against WebSocket delivery).
Build the server first: cargo build -p server --release

options (both):
  --backends LIST        memory,redis (default: both, in that order)
  --redis-url URL        Redis for the redis backend (default: redis://127.0.0.1:6379)
  --duration-secs N      length of each throughput measurement (default: 10)
  --concurrency N        concurrent clients for the throughput measurements (default: 64)
  --server-cpu N|none    core the server is pinned to with taskset (default: 0)
  --client-cpu N|none    core this tool is pinned to with taskset (default: 1)
  --server-bin PATH      server binary (default: `server` next to this executable)

options (chat only):
  --flavours LIST        current_thread,multi_thread (default: both; only the first one
                         runs the long-poll comparison)
  --pair-rates LIST      1:1 send rates in messages/s, one run each (default: 5000,1000,500)
  --group-rates LIST     group send rates in messages/s, ascending, stepped until the server
                         saturates (default: 100,200,300,400,500,750,1000)
  --longpoll-rate N      messages/s POSTed in the long-poll vs WebSocket run (default: 500)";

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

/// Options of the `feed` command.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    pub backends: Vec<Backend>,
    pub redis_url: String,
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
        let cpu = |c: Option<usize>| c.map_or_else(|| "none".to_string(), |c| c.to_string());
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
        if let Some(bin) = &self.server_bin {
            cmd.push_str(&format!(" --server-bin {}", bin.display()));
        }
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
    /// Length of each measured send run.
    pub duration: Duration,
    pub server_cpu: Option<usize>,
    pub client_cpu: Option<usize>,
    pub server_bin: Option<PathBuf>,
    /// One server per backend and flavour; the first flavour gets the long-poll run too.
    pub flavours: Vec<Flavour>,
    /// Aggregate 1:1 send rates (messages/s), one run each.
    pub pair_rates: Vec<u32>,
    /// Aggregate group send rates (messages/s), stepped in this order.
    pub group_rates: Vec<u32>,
    /// Messages/s POSTed while receivers long-poll (and then listen on WebSockets).
    pub longpoll_rate: u32,
}

impl Default for ChatOptions {
    fn default() -> Self {
        let feed = FeedOptions::default();
        Self {
            backends: feed.backends,
            redis_url: feed.redis_url,
            duration: feed.duration,
            server_cpu: feed.server_cpu,
            client_cpu: feed.client_cpu,
            server_bin: None,
            flavours: vec![Flavour::CurrentThread, Flavour::MultiThread],
            pair_rates: vec![5_000, 1_000, 500],
            group_rates: vec![100, 200, 300, 400, 500, 750, 1_000],
            longpoll_rate: 500,
        }
    }
}

impl ChatOptions {
    /// The command that reproduces this run, every option spelled out.
    pub fn command_line(&self) -> String {
        let cpu = |c: Option<usize>| c.map_or_else(|| "none".to_string(), |c| c.to_string());
        let list = |v: &[u32]| {
            v.iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let backends: Vec<&str> = self.backends.iter().map(|b| b.name()).collect();
        let flavours: Vec<&str> = self.flavours.iter().map(|f| f.name()).collect();
        let mut cmd = format!(
            "cargo build -p server --release && cargo run -p loadgen --release -- chat \
             --backends {} --redis-url {} --duration-secs {} --server-cpu {} --client-cpu {} \
             --flavours {} --pair-rates {} --group-rates {} --longpoll-rate {}",
            backends.join(","),
            self.redis_url,
            self.duration.as_secs(),
            cpu(self.server_cpu),
            cpu(self.client_cpu),
            flavours.join(","),
            list(&self.pair_rates),
            list(&self.group_rates),
            self.longpoll_rate,
        );
        if let Some(bin) = &self.server_bin {
            cmd.push_str(&format!(" --server-bin {}", bin.display()));
        }
        cmd
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Feed(FeedOptions),
    Chat(ChatOptions),
    Help,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, Error> {
    let mut args = args.into_iter();
    let chat = match args.next().as_deref() {
        Some("feed") => false,
        Some("chat") => true,
        None | Some("-h") | Some("--help") | Some("help") => return Ok(Command::Help),
        Some(other) => return Err(usage(format!("unknown command {other:?}"))),
    };
    let mut opts = FeedOptions::default();
    let mut chat_opts = ChatOptions::default();
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
        match flag.as_str() {
            "--backends" => opts.backends = backends(&value)?,
            "--redis-url" => opts.redis_url = value,
            "--duration-secs" => {
                opts.duration = Duration::from_secs(positive(&flag, &value)? as u64);
            }
            "--concurrency" => opts.concurrency = positive(&flag, &value)?,
            "--server-cpu" => opts.server_cpu = cpu(&flag, &value)?,
            "--client-cpu" => opts.client_cpu = cpu(&flag, &value)?,
            "--server-bin" => opts.server_bin = Some(PathBuf::from(value)),
            "--flavours" if chat => chat_opts.flavours = flavours(&value)?,
            "--pair-rates" if chat => chat_opts.pair_rates = rates(&flag, &value)?,
            "--group-rates" if chat => chat_opts.group_rates = rates(&flag, &value)?,
            "--longpoll-rate" if chat => chat_opts.longpoll_rate = rate(&flag, &value)?,
            other => return Err(usage(format!("unknown option {other:?}"))),
        }
    }
    if !chat {
        return Ok(Command::Feed(opts));
    }
    if opts.concurrency != FeedOptions::default().concurrency {
        return Err(usage("--concurrency applies to feed only".into()));
    }
    Ok(Command::Chat(ChatOptions {
        backends: opts.backends,
        redis_url: opts.redis_url,
        duration: opts.duration,
        server_cpu: opts.server_cpu,
        client_cpu: opts.client_cpu,
        server_bin: opts.server_bin,
        ..chat_opts
    }))
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
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        for args in [
            vec!["feed", "--backends", "postgres"],
            vec!["feed", "--duration-secs", "0"],
            vec!["feed", "--concurrency"],
            vec!["feed", "--group-rates", "100"],
            vec!["chat", "--pair-rates", "0"],
            vec!["chat", "--flavours", "work_stealing"],
            vec!["bench"],
        ] {
            let parsed = parse(args.iter().map(|s| s.to_string()));
            assert!(matches!(parsed, Err(Error::Usage(_))), "{args:?}");
        }
    }
}
