//! A cluster under test: N release server nodes on one fresh PostgreSQL database and one
//! Redis namespace, optionally behind a real HAProxy configured from `deploy/haproxy.cfg`
//! (as `scripts/cluster.sh` does). A node can be killed with SIGKILL and started again on
//! the same port with the same environment, which is what `loadgen chaos` does to it; each
//! incarnation logs into a directory of its own, so a crash's last words survive the
//! restart. Dropping the cluster kills every process and drops the database; its Redis keys
//! go only with [`Cluster::finish`].

use crate::{
    error::{io, Error},
    redis_ns,
    server::{free_port, Launch, LogSummary, ScratchDatabase, ServerProcess, TempDir},
};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// The balancer's configuration, with `BIND_ADDRESS` for its listen address.
const HAPROXY_CFG: &str = include_str!("../../deploy/haproxy.cfg");
/// How long a node (or the balancer) may take to answer `/readyz` after starting.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Rate limits far above anything a load tool user does, so that a refusal never stands
/// in for the behaviour under test: each node keeps its own per-user windows, and a
/// client retrying through a dying node would otherwise run into them.
const HIGH_LIMITS: [(&str, &str); 5] = [
    ("KITH_CHAT_SEND_RATE_PER_SEC", "100000"),
    ("KITH_WS_CONNECT_RATE_PER_MIN", "100000"),
    ("KITH_POST_RATE_PER_MIN", "100000"),
    // Every simulated client comes from this machine's one address.
    ("KITH_SIGNUP_RATE_PER_HOUR", "1000000"),
    ("KITH_WS_PER_ADDRESS", "1000000"),
];

/// What a cluster is made of.
pub struct Spec<'a> {
    pub bin: &'a Path,
    pub nodes: usize,
    pub redis_url: &'a str,
    /// The admin URL the scratch database is created with.
    pub postgres_url: &'a str,
    /// `KITH_*` settings on top of the shared ones (a variable here replaces its default).
    pub env: &'a [(&'a str, &'a str)],
    /// Whether to put HAProxy in front.
    pub balancer: bool,
    /// Open-file limit for each node (see [`Launch::fd_limit`]).
    pub fd_limit: Option<u64>,
}

/// One node: its port, its environment, and the process while it is up.
pub struct Node {
    pub port: u16,
    env: Vec<(String, String)>,
    /// `None` while the node is down.
    process: Option<ServerProcess>,
    /// The logs of every incarnation so far.
    logs: Vec<PathBuf>,
}

impl Node {
    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn process(&self) -> Option<&ServerProcess> {
        self.process.as_ref()
    }
}

/// N nodes, the balancer if asked for, the database and the namespace they share.
pub struct Cluster {
    pub nodes: Vec<Node>,
    bin: PathBuf,
    fd_limit: Option<u64>,
    /// Declared before the database and directory: dropped (killed) first.
    balancer: Option<Balancer>,
    redis_url: String,
    pub namespace: String,
    database: ScratchDatabase,
    dir: TempDir,
}

impl Cluster {
    /// Creates the database, starts every node and the balancer, and waits until all are
    /// ready. Fails early when Redis does not answer.
    pub async fn start(spec: Spec<'_>, http: &reqwest::Client) -> Result<Self, Error> {
        redis_ns::ping(spec.redis_url)
            .await
            .map_err(|e| Error::Run(format!("Redis at {} does not answer: {e}", spec.redis_url)))?;
        let namespace = format!("loadgen-{:016x}", rand::random::<u64>());
        let database = ScratchDatabase::create(spec.postgres_url).await?;
        let dir = TempDir::new()?;
        let mut nodes = Vec::with_capacity(spec.nodes);
        for _ in 0..spec.nodes {
            let port = free_port()?;
            let env = node_env(&spec, port, database.url(), &namespace);
            nodes.push(Node {
                port,
                env,
                process: None,
                logs: Vec::new(),
            });
        }
        let mut cluster = Self {
            nodes,
            bin: spec.bin.to_path_buf(),
            fd_limit: spec.fd_limit,
            balancer: None,
            redis_url: spec.redis_url.to_string(),
            namespace,
            database,
            dir,
        };
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i)?;
        }
        for i in 0..cluster.nodes.len() {
            cluster.wait_ready(i, http).await?;
        }
        if spec.balancer {
            let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
            let balancer = Balancer::start(&cluster.dir.0, &ports)?;
            wait_url_ready(http, &balancer.base_url(), READY_TIMEOUT).await?;
            cluster.balancer = Some(balancer);
        }
        Ok(cluster)
    }

    /// The balancer's `http://127.0.0.1:<port>`, when there is one.
    pub fn balancer_url(&self) -> Option<String> {
        self.balancer.as_ref().map(Balancer::base_url)
    }

    /// The database every node shares, for seeding straight into it.
    pub fn database_url(&self) -> &str {
        self.database.url()
    }

    /// Indexes of the nodes that are up.
    pub fn up(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].process.is_some())
            .collect()
    }

    /// Kills node `i` with SIGKILL, as a crash would: no graceful shutdown, no lease
    /// given back, no close frames.
    pub fn kill(&mut self, i: usize) {
        // Dropping the process kills and reaps it.
        self.nodes[i].process = None;
    }

    /// Starts node `i` again (same port, same environment) and waits until it is ready.
    pub async fn restart(&mut self, i: usize, http: &reqwest::Client) -> Result<(), Error> {
        self.spawn(i)?;
        self.wait_ready(i, http).await
    }

    fn spawn(&mut self, i: usize) -> Result<(), Error> {
        let node = &mut self.nodes[i];
        let dir = self.dir.0.join(format!("node{i}.{}", node.logs.len()));
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let process = ServerProcess::start_on(
            Launch {
                bin: &self.bin,
                cpu: None,
                dir: &dir,
                env: node.env.clone(),
                fd_limit: self.fd_limit,
            },
            node.port,
        )?;
        node.logs.push(process.log_path.clone());
        node.process = Some(process);
        Ok(())
    }

    async fn wait_ready(&mut self, i: usize, http: &reqwest::Client) -> Result<(), Error> {
        match self.nodes[i].process.as_mut() {
            Some(process) => process.wait_ready(http, READY_TIMEOUT).await,
            None => Err(Error::Run(format!("node {i} is not running"))),
        }
    }

    /// Nodes whose process exited without being killed, with the reason and the last lines
    /// of their log; they are marked down, so [`Cluster::restart`] can bring them back.
    pub fn reap_dead(&mut self) -> Vec<(usize, String)> {
        let mut dead = Vec::new();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if let Some(Err(e)) = node.process.as_mut().map(ServerProcess::check_alive) {
                node.process = None;
                dead.push((i, e.to_string()));
            }
        }
        dead
    }

    /// An error naming the first node that died by itself (a kill is not a death: killed
    /// nodes hold no process).
    pub fn check_alive(&mut self) -> Result<(), Error> {
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if let Some(process) = node.process.as_mut() {
                process
                    .check_alive()
                    .map_err(|e| Error::Run(format!("node {i}: {e}")))?;
            }
        }
        Ok(())
    }

    /// Stops everything, drops the database and deletes the namespace; returns what every
    /// incarnation of every node logged, together.
    pub async fn finish(self, tag: &str) -> LogSummary {
        let Self {
            nodes,
            balancer,
            redis_url,
            namespace,
            database,
            dir,
            ..
        } = self;
        drop(balancer);
        let mut log = LogSummary::default();
        for node in nodes {
            drop(node.process);
            for path in &node.logs {
                log.add(LogSummary::read(path));
            }
        }
        database.drop_now(tag).await;
        match redis_ns::delete_namespace(&redis_url, &namespace).await {
            Ok(n) => eprintln!("[{tag}] deleted {n} Redis keys under {namespace}:"),
            Err(e) => eprintln!("[{tag}] could not delete {namespace}:*: {e}"),
        }
        drop(dir);
        log
    }
}

/// A node's environment: the shared database and namespace, its own advertised URL, the
/// short lease of the cluster tests (a killed node's id is free again within 2 s), trust
/// in the balancer's forwarded headers, high rate limits, then `spec.env` on top.
fn node_env(spec: &Spec<'_>, port: u16, database: &str, namespace: &str) -> Vec<(String, String)> {
    let advertise = format!("http://127.0.0.1:{port}");
    let shared = [
        ("KITH_DATABASE_URL", database),
        ("KITH_REDIS_URL", spec.redis_url),
        ("KITH_REDIS_NAMESPACE", namespace),
        ("KITH_ADVERTISE_URL", advertise.as_str()),
        ("KITH_TRUST_PROXY", "true"),
        ("KITH_NODE_LEASE_MS", "2000"),
        ("RUST_LOG", "warn"),
    ];
    shared
        .iter()
        .chain(HIGH_LIMITS.iter())
        .filter(|(k, _)| !spec.env.iter().any(|(own, _)| own == k))
        .chain(spec.env)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// HAProxy in the foreground (`-db`), killed on drop.
struct Balancer {
    port: u16,
    child: Child,
}

impl Balancer {
    fn start(dir: &Path, node_ports: &[u16]) -> Result<Self, Error> {
        let port = free_port()?;
        let config_path = dir.join("haproxy.cfg");
        std::fs::write(&config_path, haproxy_config(port, node_ports))
            .map_err(io("writing haproxy.cfg"))?;
        let log = std::fs::File::create(dir.join("haproxy.log"))
            .map_err(io("creating the HAProxy log"))?;
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io(
                "starting haproxy (is it installed? scripts/setup.sh does)",
            ))?;
        Ok(Self { port, child })
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `deploy/haproxy.cfg` listening on `port`, with one server line per node. Health checks
/// every 500 ms and one failure to leave the rotation (the cluster tests' settings): a
/// killed node is out within half a second rather than the production config's 4 s.
fn haproxy_config(port: u16, node_ports: &[u16]) -> String {
    let mut config = HAPROXY_CFG
        .replace("BIND_ADDRESS", &format!("127.0.0.1:{port}"))
        // Its request log on stdout would only be noise here.
        .replace("log stdout format raw local0 warning", "");
    for (i, node_port) in node_ports.iter().enumerate() {
        config.push_str(&format!(
            "    server node{i} 127.0.0.1:{node_port} check inter 500ms fall 1 rise 1\n"
        ));
    }
    config
}

/// Waits until `GET {base}/readyz` answers 200.
async fn wait_url_ready(
    http: &reqwest::Client,
    base: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(resp) = http.get(format!("{base}/readyz")).send().await {
            if resp.status().is_success() {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Run(format!("{base} not ready after {timeout:?}")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_balancer_lists_every_node_and_binds_its_port() {
        let config = haproxy_config(8080, &[3101, 3102]);
        assert!(config.contains("bind 127.0.0.1:8080"));
        assert!(!config.contains("BIND_ADDRESS"));
        assert!(config.ends_with(
            "    server node0 127.0.0.1:3101 check inter 500ms fall 1 rise 1\n    server node1 \
             127.0.0.1:3102 check inter 500ms fall 1 rise 1\n"
        ));
    }

    #[test]
    fn a_scenario_setting_replaces_the_shared_one() {
        let spec = Spec {
            bin: Path::new("server"),
            nodes: 1,
            redis_url: "redis://127.0.0.1:6379",
            postgres_url: "postgres://postgres@127.0.0.1/postgres",
            env: &[("RUST_LOG", "info"), ("KITH_RUNTIME", "multi_thread")],
            balancer: false,
            fd_limit: None,
        };
        let env = node_env(&spec, 3101, "postgres://x/db", "ns");
        let get = |k: &str| -> Vec<&str> {
            env.iter()
                .filter(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(get("RUST_LOG"), ["info"]);
        assert_eq!(get("KITH_RUNTIME"), ["multi_thread"]);
        assert_eq!(get("KITH_ADVERTISE_URL"), ["http://127.0.0.1:3101"]);
        assert_eq!(get("KITH_REDIS_NAMESPACE"), ["ns"]);
    }
}
