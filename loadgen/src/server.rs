//! The server under test: the real release binary as a child process, pinned to its own
//! core, with a private database, and killed when its guard is dropped, so an error or a
//! panic halfway through a run never leaves a server behind. Its temporary directory (the
//! SQLite database and the log) is removed the same way. [`UnderTest`] is what every
//! scenario starts: the server configured for one backend and database engine, with its
//! directory, its PostgreSQL database if any, and its Redis namespace.

use crate::{
    db,
    error::{io, Error},
    options::{Backend, DatabaseOptions, Engine},
    redis_ns,
};
use std::{
    fs::File,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How to start one server.
pub struct Launch<'a> {
    pub bin: &'a Path,
    /// Core for `taskset -c`; `None` runs it unpinned.
    pub cpu: Option<usize>,
    /// Working directory: the run's temporary directory, so nothing the server might write
    /// by default (`kith.db`) lands in the workspace.
    pub dir: &'a Path,
    /// `KITH_*`/`RUST_LOG` settings; the listen address is added here.
    pub env: Vec<(String, String)>,
    /// Open-file limit to start the server with (`ulimit -n` in a shell that then execs it;
    /// capped at the hard limit when that is lower). `None` inherits this process's limit.
    pub fd_limit: Option<u64>,
}

/// A running server; dropping it kills the process.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// Its stdout and stderr, read back for warnings after the run.
    pub log_path: PathBuf,
}

impl ServerProcess {
    /// Starts a server on a free port.
    pub fn start(launch: Launch<'_>) -> Result<Self, Error> {
        Self::start_on(launch, free_port()?)
    }

    /// Starts a server on `port`: a cluster node restarted after a kill comes back where
    /// the balancer and its clients expect it.
    pub fn start_on(launch: Launch<'_>, port: u16) -> Result<Self, Error> {
        // taskset execs the server, so the child's pid is the server's own.
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(cpu) = launch.cpu {
            argv.extend(["taskset".into(), "-c".into(), cpu.to_string().into()]);
        }
        argv.push(launch.bin.into());
        let mut cmd = match launch.fd_limit {
            Some(limit) => {
                // The shell execs too, so the pid is still the server's. A container may
                // forbid raising the hard limit; then the soft one goes as high as allowed.
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!(
                        "ulimit -n {limit} 2>/dev/null || ulimit -n \"$(ulimit -Hn)\"; exec \"$@\""
                    ))
                    .arg("sh")
                    .args(&argv);
                c
            }
            None => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        // The server must see exactly the configuration below, not whatever KITH_* the
        // caller's shell happens to export.
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("KITH_") || k.starts_with("LEPTOS_") || k == "RUST_LOG" {
                cmd.env_remove(&key);
            }
        }
        let log_path = launch.dir.join("server.log");
        let log = File::create(&log_path).map_err(io("creating the server log"))?;
        let log_err = log.try_clone().map_err(io("creating the server log"))?;
        cmd.env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
            .env("NO_COLOR", "1")
            .envs(launch.env)
            .current_dir(launch.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = cmd
            .spawn()
            .map_err(io(format!("starting {}", launch.bin.display())))?;
        Ok(Self {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            log_path,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `GET /readyz` answers 200 (migrations applied, backends reachable).
    pub async fn wait_ready(
        &mut self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let url = format!("{}/readyz", self.base_url);
        loop {
            self.check_alive()?;
            if let Ok(resp) = http.get(&url).send().await {
                if resp.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Run(format!(
                    "server not ready after {timeout:?}; see {}",
                    self.log_path.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// An error if the server has exited (a crash under load is a result, not noise).
    pub fn check_alive(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Run(format!(
                "server exited ({status}); last log lines:\n{}",
                tail(&self.log_path, 15)
            ))),
            Err(e) => Err(io("checking the server process")(e)),
        }
    }

    /// Resident memory of the server process (`VmRSS` of `/proc/<pid>/status`), KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status_kib(&status, "VmRSS:")
    }

    /// The server's resident anonymous memory by allocator, KiB: (Rust's heap, the rest).
    /// mimalloc, Rust's allocator in the server, reserves its heap as one anonymous mapping
    /// of 1 GiB and fills it; the rest is glibc's arenas (where SQLite allocates: its page
    /// caches and prepared statements) and the threads' stacks.
    pub fn anon_kib(&self) -> Option<AnonSplit> {
        let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", self.pid())).ok()?;
        Some(anon_split(&smaps))
    }

    /// Files the server process holds open (its sockets among them).
    pub fn open_fds(&self) -> Option<u64> {
        let entries = std::fs::read_dir(format!("/proc/{}/fd", self.pid())).ok()?;
        Some(entries.count() as u64)
    }

    /// The soft open-file limit the server actually runs with.
    pub fn fd_limit(&self) -> Option<u64> {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.pid())).ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line["Max open files".len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Warning and error lines of the server's log so far.
    pub fn log_summary(&self) -> LogSummary {
        LogSummary::read(&self.log_path)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Errors mean it is already gone; either way wait() reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server started for one backend, with its own database (a file in a private directory,
/// or a fresh PostgreSQL database) and, on Redis, its own random key namespace.
/// [`UnderTest::finish`] kills it, drops its PostgreSQL database and deletes the namespace;
/// dropping it (an error, Ctrl-C) still kills it and drops the database, but leaves the keys.
pub struct UnderTest {
    pub server: ServerProcess,
    /// The server's database, for seeding straight into it: `sqlite://…/kith.db` or
    /// `postgres://…/kith_load_<hex>`.
    pub db_url: String,
    /// Redis URL and the run's namespace, when the server uses Redis.
    pub redis: Option<(String, String)>,
    /// The PostgreSQL database, when the server uses one; declared after the server so it
    /// is dropped after the server is killed.
    database: Option<ScratchDatabase>,
    /// Declared last so it is removed after the server is killed.
    dir: TempDir,
}

impl UnderTest {
    /// Starts `bin` for `backend` with `env` on top of the settings every scenario shares
    /// (database, `KITH_SQLITE_SYNCHRONOUS=NORMAL`, `RUST_LOG=warn`, no cap on the sockets
    /// of one client address (every simulated client is on this machine), the Redis URL
    /// and a fresh namespace); a variable in `env` replaces its shared setting. With PostgreSQL,
    /// creates the server's database first. Fails early, and says so, when Redis does not
    /// answer.
    pub async fn start(
        bin: &Path,
        cpu: Option<usize>,
        backend: Backend,
        redis_url: &str,
        database: &DatabaseOptions,
        env: &[(&str, &str)],
        fd_limit: Option<u64>,
    ) -> Result<Self, Error> {
        let redis = match backend {
            Backend::Memory => None,
            Backend::Redis => {
                redis_ns::ping(redis_url).await.map_err(|e| {
                    Error::Run(format!("Redis at {redis_url} does not answer: {e}"))
                })?;
                let namespace = format!("loadgen-{:016x}", rand::random::<u64>());
                Some((redis_url.to_string(), namespace))
            }
        };
        let scratch = match database.engine {
            Engine::Sqlite => None,
            Engine::Postgres => Some(ScratchDatabase::create(&database.postgres_url).await?),
        };
        let dir = TempDir::new()?;
        let db_url = match &scratch {
            Some(scratch) => scratch.url.clone(),
            None => format!("sqlite://{}", dir.0.join("kith.db").display()),
        };
        let mut all: Vec<(String, String)> = [
            ("KITH_DATABASE_URL", db_url.as_str()),
            ("KITH_SQLITE_SYNCHRONOUS", "NORMAL"),
            ("KITH_WS_PER_ADDRESS", "1000000"),
            ("RUST_LOG", "warn"),
        ]
        .iter()
        .filter(|(shared, _)| !env.iter().any(|(k, _)| k == shared))
        .chain(env)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if let Some((url, namespace)) = &redis {
            all.push(("KITH_REDIS_URL".into(), url.clone()));
            all.push(("KITH_REDIS_NAMESPACE".into(), namespace.clone()));
        }
        let server = ServerProcess::start(Launch {
            bin,
            cpu,
            dir: &dir.0,
            env: all,
            fd_limit,
        })?;
        Ok(Self {
            server,
            db_url,
            redis,
            database: scratch,
            dir,
        })
    }

    /// The Redis namespace, if any.
    pub fn namespace(&self) -> Option<&str> {
        self.redis.as_ref().map(|(_, ns)| ns.as_str())
    }

    /// Kills the server, drops its PostgreSQL database, deletes its Redis keys and directory;
    /// returns what it logged.
    pub async fn finish(self, tag: &str) -> LogSummary {
        let Self {
            server,
            redis,
            database,
            dir,
            ..
        } = self;
        let log = server.log_summary();
        drop(server);
        if let Some(database) = database {
            database.drop_now(tag).await;
        }
        if let Some((url, namespace)) = redis {
            match redis_ns::delete_namespace(&url, &namespace).await {
                Ok(n) => eprintln!("[{tag}] deleted {n} Redis keys under {namespace}:"),
                Err(e) => eprintln!("[{tag}] could not delete {namespace}:*: {e}"),
            }
        }
        drop(dir);
        log
    }
}

/// A database of its own on a PostgreSQL server, for one server under test: made by
/// [`ScratchDatabase::create`], dropped by [`ScratchDatabase::drop_now`] at the end of the
/// run. Dropping the guard without that (an error on the way, Ctrl-C) drops the database
/// from a thread with a runtime of its own, best effort: `Drop` cannot await, and the
/// runtime dropping the guard cannot block on itself.
pub struct ScratchDatabase {
    admin_url: String,
    /// `kith_load_<hex>`.
    name: String,
    /// The admin URL with `name` as its database: what the server and seeders connect to.
    url: String,
    /// Set once [`ScratchDatabase::drop_now`] tried, so `Drop` does not try again.
    done: bool,
}

impl ScratchDatabase {
    /// Creates `kith_load_<hex>` on the server of `admin_url`.
    pub async fn create(admin_url: &str) -> Result<Self, Error> {
        let name = format!("kith_load_{:016x}", rand::random::<u64>());
        let url = db::database_url(admin_url, &name)?;
        db::create_database(admin_url, &name)
            .await
            .map_err(|e| Error::Run(format!("creating the PostgreSQL database {name}: {e}")))?;
        Ok(Self {
            admin_url: admin_url.to_string(),
            name,
            url,
            done: false,
        })
    }

    /// What the servers and seeders connect to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database (disconnecting whoever is left) and says so; a failure is only
    /// reported, with the statement that finishes the job by hand.
    pub async fn drop_now(mut self, tag: &str) {
        self.done = true;
        match db::drop_database(&self.admin_url, &self.name).await {
            Ok(()) => eprintln!("[{tag}] dropped the PostgreSQL database {}", self.name),
            Err(e) => eprintln!(
                "[{tag}] could not drop the PostgreSQL database {0} ({e}); by hand: DROP \
                 DATABASE {0} WITH (FORCE)",
                self.name
            ),
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(db::drop_database(&admin_url, &name))
                .map_err(|e| e.to_string())
        })
        .join();
        match dropped {
            Ok(Ok(())) => eprintln!("loadgen: dropped the PostgreSQL database {}", self.name),
            Ok(Err(e)) => eprintln!(
                "loadgen: could not drop the PostgreSQL database {0} ({e}); by hand: DROP \
                 DATABASE {0} WITH (FORCE)",
                self.name
            ),
            Err(_) => eprintln!(
                "loadgen: could not drop the PostgreSQL database {0}; by hand: DROP DATABASE \
                 {0} WITH (FORCE)",
                self.name
            ),
        }
    }
}

/// A free loopback port. It is released before the server binds it; the gap is tiny and
/// only another process grabbing that very port could fill it.
pub fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io("finding a free port"))?
        .port();
    Ok(port)
}

/// A `Name:   1234 kB` field of `/proc/<pid>/status`.
fn status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// Resident anonymous memory, KiB, split by the size of the mapping holding it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnonSplit {
    /// In mappings of at least [`HEAP_MAPPING`]: mimalloc's reserved heap.
    pub rust_heap: u64,
    /// In smaller ones: glibc's arenas (SQLite), stacks, the rest.
    pub other: u64,
}

/// Smallest mapping counted as mimalloc's heap: it reserves 1 GiB at a time, while glibc's
/// arenas are at most 64 MiB and thread stacks 2 MiB.
const HEAP_MAPPING: u64 = 256 * 1024 * 1024;

/// Sums `Anonymous:` of `/proc/<pid>/smaps` per kind of mapping.
fn anon_split(smaps: &str) -> AnonSplit {
    let mut split = AnonSplit::default();
    let mut in_heap = false;
    for line in smaps.lines() {
        if let Some(kib) = line.strip_prefix("Anonymous:") {
            let kib: u64 = kib
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if in_heap {
                split.rust_heap += kib;
            } else {
                split.other += kib;
            }
        } else if let Some((start, end)) = line
            .split_whitespace()
            .next()
            .and_then(|range| range.split_once('-'))
        {
            // A mapping's header line: `start-end perms offset dev inode [path]`.
            if let (Ok(start), Ok(end)) =
                (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
            {
                in_heap = end.saturating_sub(start) >= HEAP_MAPPING;
            }
        }
    }
    split
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What the server logged at WARN or ERROR (the run sets `RUST_LOG=warn`).
#[derive(Debug, Default, Clone)]
pub struct LogSummary {
    pub warnings: usize,
    pub errors: usize,
    /// Distinct messages (timestamps stripped), with how often each appeared.
    pub distinct: Vec<(String, usize)>,
}

impl LogSummary {
    /// Reads the log at `path` (an unreadable log reads as empty).
    pub fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut summary = Self::default();
        for line in text.lines() {
            let (level, message) = if let Some(i) = line.find(" WARN ") {
                (&mut summary.warnings, &line[i + 1..])
            } else if let Some(i) = line.find(" ERROR ") {
                (&mut summary.errors, &line[i + 1..])
            } else {
                continue;
            };
            *level += 1;
            let message: String = message.chars().take(300).collect();
            match summary.distinct.iter_mut().find(|(m, _)| *m == message) {
                Some((_, n)) => *n += 1,
                None => summary.distinct.push((message, 1)),
            }
        }
        summary
    }

    /// Adds another log's counts: a cluster node's incarnations, or all nodes of a run.
    pub fn add(&mut self, other: LogSummary) {
        self.warnings += other.warnings;
        self.errors += other.errors;
        for (message, count) in other.distinct {
            match self.distinct.iter_mut().find(|(m, _)| *m == message) {
                Some((_, n)) => *n += count,
                None => self.distinct.push((message, count)),
            }
        }
    }
}

/// The run's private directory (database, server log), removed with everything in it.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Result<Self, Error> {
        let path = std::env::temp_dir().join(format!(
            "kith-loadgen-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&path).map_err(io(format!("creating {}", path.display())))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\tserver\nVmPeak:\t  90000 kB\nVmRSS:\t   51234 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(51_234));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn anonymous_memory_is_split_by_mapping_size() {
        let smaps = "\
7f0000000000-7f0040000000 rw-p 00000000 00:00 0 
Size:            1048576 kB
Rss:               30720 kB
Anonymous:         30720 kB
7f1000000000-7f1000021000 rw-p 00000000 00:00 0 
Size:                132 kB
Anonymous:           124 kB
55d000000000-55d000100000 r--p 00000000 08:01 42      /usr/bin/server
Anonymous:             8 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0      [stack]
Anonymous:            68 kB
";
        assert_eq!(
            anon_split(smaps),
            AnonSplit {
                rust_heap: 30_720,
                other: 200
            }
        );
    }
}
