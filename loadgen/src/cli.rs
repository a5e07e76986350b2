//! The command line: `loadgen feed [options]`, parsed by hand (five flags do not justify a
//! parser dependency).

use crate::error::Error;
use std::{path::PathBuf, time::Duration};

pub const USAGE: &str = "\
usage: loadgen feed [options]

Starts target/release/server once per backend, seeds a social graph, and measures the
news feed (healthz baseline, feed reads, post latency, fanout, celebrity vs normal).
Build the server first: cargo build -p server --release

options:
  --backends LIST        memory,redis (default: both, in that order)
  --redis-url URL        Redis for the redis backend (default: redis://127.0.0.1:6379)
  --duration-secs N      length of each throughput measurement (default: 10)
  --concurrency N        concurrent clients for the throughput measurements (default: 64)
  --server-cpu N|none    core the server is pinned to with taskset (default: 0)
  --client-cpu N|none    core this tool is pinned to with taskset (default: 1)
  --server-bin PATH      server binary (default: `server` next to this executable)";

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

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Feed(FeedOptions),
    Help,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, Error> {
    let mut args = args.into_iter();
    match args.next().as_deref() {
        Some("feed") => {}
        None | Some("-h") | Some("--help") | Some("help") => return Ok(Command::Help),
        Some(other) => return Err(usage(format!("unknown command {other:?}"))),
    }
    let mut opts = FeedOptions::default();
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
            other => return Err(usage(format!("unknown option {other:?}"))),
        }
    }
    Ok(Command::Feed(opts))
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
    fn bad_input_is_a_usage_error() {
        for args in [
            vec!["feed", "--backends", "postgres"],
            vec!["feed", "--duration-secs", "0"],
            vec!["feed", "--concurrency"],
            vec!["bench"],
        ] {
            let parsed = parse(args.iter().map(|s| s.to_string()));
            assert!(matches!(parsed, Err(Error::Usage(_))), "{args:?}");
        }
    }
}
