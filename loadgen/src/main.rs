//! `loadgen`: a load tool for Kith's news feed, chat and presence.
//!
//! ```sh
//! cargo build -p server --release && cargo run -p loadgen --release -- feed
//! cargo build -p server --release && cargo run -p loadgen --release -- chat
//! cargo build -p server --release && cargo run -p loadgen --release -- presence
//! ```
//!
//! For each backend (in-process memory, then Redis) it starts the real release `server`
//! binary pinned to one core, seeds a social graph straight into that server's database
//! (a SQLite file, or with `--database postgres` a fresh PostgreSQL database per server),
//! publishes posts through the API so fanout runs for real, and measures from another core:
//! the `/healthz` baseline, warm feed reads, post latency, fanout to 10,000 followers, and a
//! celebrity's post against a normal author's. It prints a markdown section per backend.
//!
//! `chat` does the same per backend and runtime flavour for the chat hub: memory per idle
//! WebSocket, 1:1 latency at a fixed rate, 100-member group fanout stepped to saturation,
//! and long-poll delivery against WebSocket delivery.
//!
//! `presence`, per backend and runtime flavour: the server's CPU while 10,000 connected
//! users heartbeat every 5 s, against the same sockets idle, and how long friends wait for
//! the `presence` frame when someone comes online or goes offline.
//!
//! `versus`: Kith against a Socket.IO peer (socketioxide, `socketio-peer` in this tree) on
//! the same scenarios in turns: memory per idle connection, 1:1 latency, group fanout and
//! long-poll, with Kith's ratios to the peer.
//!
//! `soak`: one server under steady mixed load (chat on both transports, feed, presence)
//! for many minutes, its memory, files, tasks and Redis memory sampled each minute, with
//! the slopes and an exactly-once check of the chat traffic at the end.
//!
//! `media`: image uploads per second (2 MiB JPEG photographs) on the server's one core.
//!
//! `chaos`: a cluster of nodes behind HAProxy on PostgreSQL and Redis, chat and feed
//! traffic through it while nodes are killed with SIGKILL and restarted, and an
//! exactly-once check of what every device received.
//!
//! # Layout
//! * `cli`: the command line; `options`: what each command takes, and its defaults.
//! * `feed`: the scenario, once per backend: start, seed, measure, tear down.
//! * `chat`: the chat scenario, once per backend and runtime flavour.
//! * `chat_nodes`: `chat --nodes N`, the group steps on 1 node against N nodes.
//! * `chat_seed`: users, sessions, 1:1 channels and groups, written into the database.
//! * `db`: the tool's own connection to the server's database (SQLite or PostgreSQL):
//!   seeding inserts, probes, and creating and dropping PostgreSQL scratch databases.
//! * `ws_client`: WebSocket clients, the frame recorder and the open-loop pacer.
//! * `chat_report`: the chat figures and their markdown.
//! * `presence`: the presence scenario, once per backend and runtime flavour (heartbeat
//!   sender, CPU windows, fanout timing and report in its submodules).
//! * `seed`: the population (celebrity, big author, normal authors, readers) and its SQL.
//! * `load`: the closed-loop request runner and percentiles.
//! * `media`: the upload scenario.
//! * `posting`: publishing posts, and timing one until its fanout is done (outbox empty).
//! * `chaos`: the chaos scenario (population, devices, traffic, checker, report).
//! * `soak`: the soak run (traffic, minute samples, slopes, report).
//! * `versus`: the side-by-side scenarios (the long-poll closed loop in `versus::longpoll`,
//!   the ratios in `versus::report`).
//! * `cluster`: N nodes on one PostgreSQL database and Redis namespace, optionally behind
//!   HAProxy; nodes killed and restarted on their port.
//! * `server`: the server child process (readiness, log, killed on drop), its directory,
//!   and `UnderTest`, the server configured for one backend.
//! * `cpu`: core pinning with `taskset` and CPU time from `/proc`.
//! * `redis_ns`: checking Redis, its CPU time, and deleting the run's key namespace.
//! * `report`: the figures, the targets and their markdown.
//! * `error`: the error type.

mod chaos;
mod chat;
mod chat_nodes;
mod chat_report;
mod chat_seed;
mod cli;
mod cluster;
mod cpu;
mod db;
mod error;
mod feed;
mod load;
mod markdown;
mod media;
mod options;
mod posting;
mod presence;
mod redis_ns;
mod report;
mod seed;
mod server;
mod soak;
mod versus;
mod ws_client;

use cli::Command;
use error::Error;
use options::{
    Backend, ChaosOptions, ChatOptions, DatabaseOptions, Engine, FeedOptions, Flavour,
    PresenceOptions, SoakOptions, VersusOptions,
};
use std::{future::Future, path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let outcome = match cli::parse(std::env::args().skip(1)) {
        Ok(Command::Feed(opts)) => run_feed(opts),
        Ok(Command::Chat(opts)) => run_chat(opts),
        Ok(Command::Presence(opts)) => run_presence(opts),
        Ok(Command::Chaos(opts)) => run_chaos(opts),
        Ok(Command::Versus(opts)) => run_versus(opts),
        Ok(Command::Soak(opts)) => run_soak(opts),
        Ok(Command::Media(opts)) => run_media(opts),
        Ok(Command::Help) => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What every command sets up before its first server.
struct Bench {
    /// Cores of the machine, asked before pinning (afterwards this process sees only its own).
    cores: usize,
    server_bin: PathBuf,
    /// Core for the servers, or `None` (unpinned, or taskset missing).
    server_cpu: Option<usize>,
    /// "server on CPU 0", "loadgen on CPU 1": what the pinning came to, for the report.
    pinning: Vec<String>,
    /// A `current_thread` runtime, so the client is one thread on its one core.
    runtime: tokio::runtime::Runtime,
}

impl Bench {
    fn prepare(
        server_bin: Option<&PathBuf>,
        server_cpu: Option<usize>,
        client_cpu: Option<usize>,
    ) -> Result<Self, Error> {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let server_bin = match server_bin {
            Some(path) => path.clone(),
            None => sibling_server()?,
        };
        if !server_bin.is_file() {
            return Err(Error::Usage(format!(
                "no server binary at {}; build it first: cargo build -p server --release",
                server_bin.display()
            )));
        }
        let taskset = cpu::taskset_available();
        let mut pinning = Vec::new();
        let server_cpu = server_cpu.filter(|_| taskset);
        if let Some(c) = server_cpu {
            pinning.push(format!("server on CPU {c}"));
        }
        if let Some(c) = client_cpu.filter(|_| taskset) {
            // Before the runtime exists, so every thread it (and sqlx) starts inherits the mask.
            match cpu::pin_self(c) {
                Ok(()) => pinning.push(format!("loadgen on CPU {c}")),
                Err(e) => eprintln!("loadgen: running unpinned: {e}"),
            }
        }
        if !taskset && (server_cpu.is_some() || client_cpu.is_some()) {
            eprintln!("loadgen: taskset not found; running unpinned");
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(error::io("starting the tokio runtime"))?;
        Ok(Self {
            cores,
            server_bin,
            server_cpu,
            pinning,
            runtime,
        })
    }

    /// "2 core(s) (model); server on CPU 0, loadgen on CPU 1".
    fn machine(&self) -> String {
        format!(
            "{} core(s){}; {}",
            self.cores,
            cpu::model_name()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default(),
            if self.pinning.is_empty() {
                "unpinned".to_string()
            } else {
                self.pinning.join(", ")
            },
        )
    }

    /// The database part of a report's header: the engine and how it commits. PostgreSQL is
    /// asked for its version and `fsync` setting, which also checks, before any server
    /// starts, that it answers.
    fn database(
        &self,
        database: &DatabaseOptions,
        sqlite_synchronous: &str,
    ) -> Result<String, Error> {
        match database.engine {
            Engine::Sqlite => Ok(format!(
                "database SQLite (`KITH_SQLITE_SYNCHRONOUS={sqlite_synchronous}`)"
            )),
            Engine::Postgres => {
                let url = &database.postgres_url;
                let server = self
                    .block_on(db::describe_postgres(url))
                    .map_err(|e| match e {
                        Error::Interrupted => e,
                        e => Error::Run(format!("PostgreSQL at {url} does not answer: {e}")),
                    })?;
                Ok(format!(
                    "database {server} (a fresh database per server, committed with \
                     `synchronous_commit = on`; PostgreSQL unpinned, its CPU not in the server \
                     CPU figures)"
                ))
            }
        }
    }

    /// Runs one server's scenario to its end, or until Ctrl-C: dropping the unfinished run
    /// drops its server guard, which kills the server and drops its PostgreSQL database;
    /// without this, Ctrl-C would leave the server running. (Its Redis keys stay: each run
    /// uses a fresh namespace.)
    fn block_on<T>(&self, scenario: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        self.runtime.block_on(async {
            tokio::select! {
                outcome = scenario => outcome,
                _ = tokio::signal::ctrl_c() => Err(Error::Interrupted),
            }
        })
    }
}

/// Runs every requested backend; `Ok(false)` if one of them failed (the others still ran).
fn run_feed(opts: FeedOptions) -> Result<bool, Error> {
    let bench = Bench::prepare(opts.server_bin.as_ref(), opts.server_cpu, opts.client_cpu)?;
    let setup = feed::Setup {
        opts: opts.clone(),
        server_bin: bench.server_bin.clone(),
        server_cpu: bench.server_cpu,
        clock: cpu::CpuClock::new(),
    };

    let database = bench.database(&opts.database, "NORMAL")?;

    println!("## News feed\n");
    println!("```sh\n{}\n```\n", opts.command_line());
    println!(
        "Machine: {}; server runtime `current_thread`, {database}; {} client tasks, {} s per \
         throughput run.\n",
        bench.machine(),
        opts.concurrency,
        opts.duration.as_secs(),
    );

    let mut all_ok = true;
    for backend in &opts.backends {
        eprintln!("[{}] starting", backend.name());
        match bench.block_on(feed::run(&setup, *backend)) {
            Ok(report) => println!("{}", report.markdown()),
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(e) => {
                all_ok = false;
                println!(
                    "### Backend: {}, database: {}\n\nFailed: {e}\n",
                    backend.name(),
                    opts.database.engine.name()
                );
            }
        }
    }
    Ok(all_ok)
}

/// Measures uploads on every backend; `Ok(false)` if one failed or lost an upload.
fn run_media(opts: FeedOptions) -> Result<bool, Error> {
    let bench = Bench::prepare(opts.server_bin.as_ref(), opts.server_cpu, opts.client_cpu)?;
    let setup = feed::Setup {
        opts: opts.clone(),
        server_bin: bench.server_bin.clone(),
        server_cpu: bench.server_cpu,
        clock: cpu::CpuClock::new(),
    };
    let database = bench.database(&opts.database, "NORMAL")?;
    println!(
        "## Media uploads
"
    );
    println!(
        "```sh
{}
```
",
        opts.command_line().replacen(" -- feed ", " -- media ", 1)
    );
    println!(
        "Machine: {}; server runtime `current_thread`, {database}; {} s of uploads.\n",
        bench.machine(),
        opts.duration.as_secs(),
    );
    let mut all_ok = true;
    for backend in &opts.backends {
        eprintln!("[{}] starting", backend.name());
        match bench.block_on(media::run(&setup, *backend)) {
            Ok(report) => {
                all_ok &= report.valid();
                println!("{}", report.markdown());
            }
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(e) => {
                all_ok = false;
                println!("### Backend: {}\n\nFailed: {e}\n", backend.name());
            }
        }
    }
    Ok(all_ok)
}

/// Runs the chat scenario on every backend and flavour; `Ok(false)` if one failed.
fn run_chat(opts: ChatOptions) -> Result<bool, Error> {
    let fd_limit = chat::raise_fd_limit();
    let bench = Bench::prepare(opts.server_bin.as_ref(), opts.server_cpu, opts.client_cpu)?;
    let setup = chat::Setup {
        opts: opts.clone(),
        server_bin: bench.server_bin.clone(),
        server_cpu: bench.server_cpu,
        clock: cpu::CpuClock::new(),
    };

    let database = bench.database(&opts.database, opts.synchronous.name())?;
    if opts.nodes > 1 {
        return run_chat_nodes(&bench, &setup, &database);
    }

    println!("## Chat\n");
    println!("```sh\n{}\n```\n", opts.command_line());
    println!(
        "Machine: {}; {database}; loadgen open-file limit {}; {} s per send run.\n",
        bench.machine(),
        fd_limit.map_or_else(|| "n/a".into(), |l| l.to_string()),
        opts.duration.as_secs(),
    );

    let (reports, all_ok) = each_server(
        &bench,
        &opts.backends,
        &opts.flavours,
        opts.database.engine,
        |backend, flavour, i| chat::run(&setup, backend, flavour, i == 0),
        |report| report.markdown(),
    )?;
    if !reports.is_empty() {
        println!("{}", chat_report::flavours_markdown(&reports));
    }
    Ok(all_ok)
}

/// `chat --nodes N`: the group steps on 1 node, then on N, the first flavour only;
/// `Ok(false)` if either failed.
fn run_chat_nodes(bench: &Bench, setup: &chat::Setup, database: &str) -> Result<bool, Error> {
    let opts = &setup.opts;
    let flavour = opts
        .flavours
        .first()
        .copied()
        .unwrap_or(Flavour::CurrentThread);
    println!("## Chat: {} nodes against one\n", opts.nodes);
    println!("```sh\n{}\n```\n", opts.command_line());
    println!(
        "Machine: {}; nodes unpinned, runtime `{}`, Redis backend; {database}; {} s per send \
         run.\n",
        bench.machine(),
        flavour.name(),
        opts.duration.as_secs(),
    );
    let mut runs = Vec::new();
    let mut all_ok = true;
    for nodes in [1, opts.nodes] {
        match bench.block_on(chat_nodes::run(setup, flavour, nodes)) {
            Ok(run) => runs.push(run),
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(e) => {
                all_ok = false;
                println!("{nodes} node(s) failed: {e}\n");
            }
        }
    }
    println!("{}", chat_nodes::markdown(&runs, opts.groups));
    Ok(all_ok)
}

/// Runs the presence scenario on every backend and flavour; `Ok(false)` if one failed.
fn run_presence(opts: PresenceOptions) -> Result<bool, Error> {
    let fd_limit = chat::raise_fd_limit();
    let bench = Bench::prepare(opts.server_bin.as_ref(), opts.server_cpu, opts.client_cpu)?;
    let setup = presence::Setup {
        opts: opts.clone(),
        server_bin: bench.server_bin.clone(),
        server_cpu: bench.server_cpu,
        clock: cpu::CpuClock::new(),
    };

    let database = bench.database(&opts.database, "NORMAL")?;

    println!("## Presence\n");
    println!("```sh\n{}\n```\n", opts.command_line());
    println!(
        "Machine: {}; {database}; loadgen open-file limit {}.\n",
        bench.machine(),
        fd_limit.map_or_else(|| "n/a".into(), |l| l.to_string()),
    );

    let (reports, all_ok) = each_server(
        &bench,
        &opts.backends,
        &opts.flavours,
        opts.database.engine,
        |backend, flavour, _| presence::run(&setup, backend, flavour),
        |report| report.markdown(),
    )?;
    if !reports.is_empty() {
        println!("{}", presence::report::summary_markdown(&reports));
    }
    Ok(all_ok)
}

/// Runs the chaos scenario; `Ok(false)` if the checker found an anomaly or the run failed.
fn run_chaos(opts: ChaosOptions) -> Result<bool, Error> {
    // Unpinned: this is a correctness run, and the nodes, PostgreSQL, Redis and HAProxy
    // share the machine's cores with the clients.
    let bench = Bench::prepare(opts.server_bin.as_ref(), None, None)?;
    let postgres = bench
        .block_on(db::describe_postgres(&opts.postgres_url))
        .map_err(|e| match e {
            Error::Interrupted => e,
            e => Error::Run(format!(
                "PostgreSQL at {} does not answer: {e}",
                opts.postgres_url
            )),
        })?;
    let setup = chaos::Setup {
        opts: opts.clone(),
        server_bin: bench.server_bin.clone(),
    };
    println!("## Chaos: nodes killed under traffic\n");
    println!("```sh\n{}\n```\n", opts.command_line());
    println!(
        "Machine: {}; {} nodes (`current_thread`, unpinned) on {postgres} and one Redis \
         namespace, behind HAProxy (health check every 500 ms, out after one failure); \
         {} s of traffic, a random node killed with SIGKILL every {} s ± 25% and started \
         again 2 s later on its port.\n",
        bench.machine(),
        opts.nodes,
        opts.duration.as_secs(),
        opts.kill_every.as_secs(),
    );
    match bench.block_on(chaos::run(&setup)) {
        Ok(report) => {
            println!("{}", report.markdown());
            Ok(report.valid())
        }
        Err(Error::Interrupted) => Err(Error::Interrupted),
        Err(e) => {
            println!("Failed: {e}\n");
            Ok(false)
        }
    }
}

/// Runs the soak; `Ok(false)` if it saw an error, lost a message or a figure grew.
fn run_soak(opts: SoakOptions) -> Result<bool, Error> {
    let fd_limit = chat::raise_fd_limit();
    let bench = Bench::prepare(opts.server_bin.as_ref(), opts.server_cpu, opts.client_cpu)?;
    let database = bench.database(&opts.database, opts.synchronous.name())?;
    let setup = soak::Setup {
        opts: opts.clone(),
        server_bin: bench.server_bin.clone(),
        server_cpu: bench.server_cpu,
        clock: cpu::CpuClock::new(),
    };
    println!("## Soak\n");
    println!("```sh\n{}\n```\n", opts.command_line());
    println!(
        "Machine: {}; server runtime `current_thread`, {database}, backend {}; loadgen \
         open-file limit {}. Load: 1:1 {} msg/s over 1,000 WebSocket pairs, groups {} msg/s \
         over 2 groups of 100, long-poll {} msg/s to 100 receivers, {} feed reads/s, {} \
         posts/s, 2,200 sockets heartbeating every 10 s.\n",
        bench.machine(),
        opts.backend.name(),
        fd_limit.map_or_else(|| "n/a".into(), |l| l.to_string()),
        opts.pair_rate,
        opts.group_rate,
        opts.longpoll_rate,
        opts.feed_read_rate,
        opts.post_rate,
    );
    match bench.block_on(soak::run(&setup)) {
        Ok(report) => {
            println!("{}", report.markdown());
            Ok(report.valid())
        }
        Err(Error::Interrupted) => Err(Error::Interrupted),
        Err(e) => {
            println!("Failed: {e}\n");
            Ok(false)
        }
    }
}

/// Runs Kith (on each backend) and the peer in turns, `--rounds` times; prints each round,
/// then the medians and ratios. `Ok(false)` if a run failed (the others still ran).
fn run_versus(opts: VersusOptions) -> Result<bool, Error> {
    let fd_limit = chat::raise_fd_limit();
    let bench = Bench::prepare(opts.server_bin.as_ref(), opts.server_cpu, opts.client_cpu)?;
    let peer_bin = match &opts.peer_bin {
        Some(path) => path.clone(),
        None => sibling("socketio-peer")?,
    };
    if !peer_bin.is_file() {
        return Err(Error::Usage(format!(
            "no peer binary at {}; build it first: cargo build -p socketio-peer --release",
            peer_bin.display()
        )));
    }
    let database = bench.database(&opts.database, opts.synchronous.name())?;
    let setup = versus::Setup {
        opts: opts.clone(),
        server_bin: bench.server_bin.clone(),
        peer_bin,
        ws_peer: opts.ws_peer.clone(),
        server_cpu: bench.server_cpu,
        clock: cpu::CpuClock::new(),
    };
    println!("## Kith against socketioxide\n");
    println!("```sh\n{}\n```\n", opts.command_line());
    println!(
        "Machine: {}; Kith: runtime `current_thread`, {database}, send and connect limits \
         lifted; socketioxide 0.18.9 on a `current_thread` runtime, nothing stored; loadgen \
         open-file limit {}; group steps of {} s.\n",
        bench.machine(),
        fd_limit.map_or_else(|| "n/a".into(), |l| l.to_string()),
        opts.duration.as_secs(),
    );
    let kith: Vec<versus::Target> = opts
        .backends
        .iter()
        .map(|b| versus::Target::Kith(*b))
        .collect();
    let mut rounds = Vec::new();
    let mut ws_memory = Vec::new();
    let mut all_ok = true;
    for round in 1..=opts.rounds {
        if let Some(bin) = &setup.ws_peer {
            eprintln!("[{}] round {round}", versus::WS_PEER);
            match bench.block_on(versus::ws_memory(&setup, bin)) {
                Ok(bytes) => ws_memory.push(bytes),
                Err(Error::Interrupted) => return Err(Error::Interrupted),
                Err(e) => {
                    all_ok = false;
                    println!("{} failed in round {round}: {e}\n", versus::WS_PEER);
                }
            }
        }
        let mut runs = Vec::new();
        for target in kith.iter().copied().chain([versus::Target::SocketIo]) {
            eprintln!("[{}] round {round}", target.name());
            match bench.block_on(versus::run(&setup, target)) {
                Ok(run) => runs.push(run),
                Err(Error::Interrupted) => return Err(Error::Interrupted),
                Err(e) => {
                    all_ok = false;
                    println!("{} failed in round {round}: {e}\n", target.name());
                }
            }
        }
        println!(
            "{}",
            versus::report::round_markdown(round, &runs, ws_memory.last().copied().flatten())
        );
        rounds.push(runs);
    }
    println!(
        "{}",
        versus::report::summary_markdown(&rounds, &kith, &ws_memory)
    );
    Ok(all_ok)
}

/// Runs `scenario` once per backend and runtime flavour (`i`: the flavour's position), and
/// prints each report as it finishes, or why it failed (`database` names the engine there).
/// Returns the reports and whether every run succeeded; Ctrl-C stops everything.
fn each_server<R, Fut>(
    bench: &Bench,
    backends: &[Backend],
    flavours: &[Flavour],
    database: Engine,
    mut scenario: impl FnMut(Backend, Flavour, usize) -> Fut,
    markdown: impl Fn(&R) -> String,
) -> Result<(Vec<R>, bool), Error>
where
    Fut: Future<Output = Result<R, Error>>,
{
    let mut all_ok = true;
    let mut reports = Vec::new();
    for backend in backends {
        for (i, flavour) in flavours.iter().enumerate() {
            eprintln!("[{}/{}] starting", backend.name(), flavour.name());
            match bench.block_on(scenario(*backend, *flavour, i)) {
                Ok(report) => {
                    println!("{}", markdown(&report));
                    reports.push(report);
                }
                Err(Error::Interrupted) => return Err(Error::Interrupted),
                Err(e) => {
                    all_ok = false;
                    println!(
                        "### Backend: {}, runtime: {}, database: {}\n\nFailed: {e}\n",
                        backend.name(),
                        flavour.name(),
                        database.name()
                    );
                }
            }
        }
    }
    Ok((reports, all_ok))
}

/// `server` in the directory of this executable: `cargo run --release` puts both in
/// `target/release`, wherever the target directory is.
fn sibling_server() -> Result<PathBuf, Error> {
    sibling("server")
}

/// The executable `name` in the directory of this one.
fn sibling(name: &str) -> Result<PathBuf, Error> {
    let me = std::env::current_exe().map_err(error::io("locating this executable"))?;
    let dir = me
        .parent()
        .ok_or_else(|| Error::Usage("cannot tell where this executable lives".into()))?;
    Ok(dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX)))
}
