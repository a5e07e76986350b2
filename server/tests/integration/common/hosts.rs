//! A cluster on separate hosts, as in production: each node is the server binary cargo
//! built for these tests, running in its own network namespace (`ip netns`, one veth into
//! a bridge), so nodes share no loopback and reach PostgreSQL and Redis, and are reached by
//! clients, over a network. PostgreSQL and Redis are private instances listening on the
//! bridge, so that a test can restart them; a real HAProxy on the host balances requests
//! round robin across the nodes. Needs root (namespaces, links, `runuser postgres`).
//!
//! Network namespaces and links are machine-wide, so one such cluster runs at a time: the
//! constructor waits for the previous one to be dropped, which removes everything it made.

use anyhow::{anyhow, ensure, Context as _, Result};
use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// One cluster on the machine at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The port every node listens on, in its own namespace.
const NODE_PORT: u16 = 3000;

/// Why a host cluster cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    if !root {
        return Some("network namespaces need root (CI runs as root)".into());
    }
    for (tool, arg) in [
        ("ip", "-V"),
        ("haproxy", "-v"),
        ("redis-server", "--version"),
    ] {
        if Command::new(tool).arg(arg).output().is_err() {
            return Some(format!(
                "{tool} is not installed (scripts/setup.sh installs it)"
            ));
        }
    }
    postgres_bin().err().map(|e| format!("{e:#}"))
}

/// Runs a command to completion; its stderr in the error when it fails.
fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    ensure!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// [`run`] on a blocking thread: the test's own clients keep running meanwhile (a
/// disruption that blocked them would disrupt the traffic, not the cluster).
async fn run_off(program: &'static str, args: Vec<String>) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(program, &args)
    })
    .await?
}

/// A free port on the host's loopback (bound then released: fine for tests).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The newest installed PostgreSQL's server programs.
fn postgres_bin() -> Result<PathBuf> {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL's server programs are not installed")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let newest = versions.last().context("no PostgreSQL version installed")?;
    Ok(PathBuf::from(format!("/usr/lib/postgresql/{newest}/bin")))
}

/// The network: a bridge on the host, which holds the database's and Redis's address.
struct Network {
    bridge: String,
    /// The first three octets of the /24, e.g. `10.123.45`.
    subnet: String,
    namespaces: Vec<String>,
}

impl Network {
    fn create(tag: &str) -> Result<Self> {
        let bits = u32::from_str_radix(tag, 16)?;
        let subnet = format!("10.{}.{}", 100 + (bits >> 8) % 150, bits & 0xff);
        let network = Self {
            bridge: format!("kb{tag}"),
            subnet,
            namespaces: Vec::new(),
        };
        run("ip", &["link", "add", &network.bridge, "type", "bridge"])?;
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", network.gateway()),
                "dev",
                &network.bridge,
            ],
        )?;
        run("ip", &["link", "set", &network.bridge, "up"])?;
        Ok(network)
    }

    /// The host's address on the bridge, where PostgreSQL and Redis listen.
    fn gateway(&self) -> String {
        format!("{}.1", self.subnet)
    }

    /// A new host: a namespace whose `eth0` is plugged into the bridge at `.{10 + i}`.
    /// Returns its namespace, address and the host end of its link.
    fn add_host(&mut self, tag: &str, i: usize) -> Result<(String, String, String)> {
        let namespace = format!("kith-{tag}-{i}");
        let link = format!("kv{tag}n{i}");
        let address = format!("{}.{}", self.subnet, 10 + i);
        run("ip", &["netns", "add", &namespace])?;
        self.namespaces.push(namespace.clone());
        run(
            "ip",
            &[
                "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &namespace,
            ],
        )?;
        run("ip", &["link", "set", &link, "master", &self.bridge, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", namespace.as_str()];
            all.extend_from_slice(args);
            run("ip", &all)
        };
        inside(&["addr", "add", &format!("{address}/24"), "dev", "eth0"])?;
        inside(&["link", "set", "eth0", "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok((namespace, address, link))
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and so the pair.
        for namespace in &self.namespaces {
            let _ = run("ip", &["netns", "del", namespace]);
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
    }
}

/// A private Redis on the bridge (nothing on disk, like the machine's).
pub struct Redis {
    address: String,
    child: Option<Child>,
}

impl Redis {
    async fn start(address: &str) -> Result<Self> {
        let mut redis = Self {
            address: address.to_string(),
            child: None,
        };
        redis.restart().await?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://{}:6379", self.address)
    }

    /// Kills it (SIGKILL: everything it held is gone).
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts it (again), empty, and waits until it accepts connections.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill()?;
        let child = Command::new("redis-server")
            .args(["--bind", &self.address, "--port", "6379", "--save", ""])
            .args(["--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        self.child = Some(child);
        wait_for_port(&format!("{}:6379", self.address)).await
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A private PostgreSQL on the bridge, its data in the cluster's directory.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    address: String,
}

impl Postgres {
    async fn create(dir: &Path, address: &str) -> Result<Self> {
        let data = dir.join("postgres");
        std::fs::create_dir(&data)?;
        run("chown", &["postgres:postgres", &data.display().to_string()])?;
        let postgres = Self {
            bin: postgres_bin()?,
            data,
            address: address.to_string(),
        };
        run_off(
            "runuser",
            postgres.as_postgres("initdb", &["-A", "trust", "-U", "postgres", "--no-sync"]),
        )
        .await?;
        let hba = postgres.data.join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba)?;
        rules.push_str("host all all 10.0.0.0/8 trust\n");
        std::fs::write(&hba, rules)?;
        postgres.start().await?;
        Ok(postgres)
    }

    /// `runuser`'s arguments that run one of PostgreSQL's programs as the `postgres` user,
    /// on this data directory.
    fn as_postgres(&self, program: &str, args: &[&str]) -> Vec<String> {
        let mut all: Vec<String> = ["-u", "postgres", "--"].map(String::from).to_vec();
        all.push(self.bin.join(program).display().to_string());
        all.push("-D".into());
        all.push(self.data.display().to_string());
        all.extend(args.iter().map(|a| a.to_string()));
        all
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@{}:5432/postgres", self.address)
    }

    /// Starts it and waits until it accepts connections.
    pub async fn start(&self) -> Result<()> {
        let options = format!(
            "-c listen_addresses={} -c port=5432 -c unix_socket_directories={} -c max_connections=200",
            self.address,
            self.data.display()
        );
        let log = self.data.join("log").display().to_string();
        run_off(
            "runuser",
            self.as_postgres("pg_ctl", &["-w", "-l", &log, "-o", &options, "start"]),
        )
        .await
    }

    /// `pg_ctl stop` as a crash would (`immediate`: no checkpoint, connections cut).
    fn crash_args(&self) -> Vec<String> {
        self.as_postgres("pg_ctl", &["-w", "-m", "immediate", "stop"])
    }

    /// Stops it as a crash would.
    pub async fn crash(&self) -> Result<()> {
        run_off("runuser", self.crash_args()).await
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let args = self.crash_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let _ = run("runuser", &args);
    }
}

/// One node: its namespace, its address there, and its process while it runs.
pub struct Node {
    namespace: String,
    pub address: String,
    /// The host end of its link: down is a partition.
    link: String,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    pub fn url(&self) -> String {
        format!("http://{}:{NODE_PORT}", self.address)
    }

    pub fn websocket_url(&self) -> String {
        format!("ws://{}:{NODE_PORT}/v1/chat/ws", self.address)
    }

    /// Starts the process and waits until it is ready.
    pub async fn start(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        // `ip netns exec` execs the server, so the child's pid is the server's.
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.namespace,
                env!("CARGO_BIN_EXE_server"),
            ])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting a node")?;
        self.child = Some(child);
        wait_ready(&self.url()).await
    }

    /// Kills the process at once, as a crash would: no graceful shutdown, no close frames.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Stops the process as an operator would (SIGTERM), and waits until it has exited
    /// (it drains its connections meanwhile; the test's clients keep running).
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            run("kill", &["-TERM", &child.id().to_string()])?;
            while child.try_wait()?.is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// Takes its link down: nothing reaches it, it reaches nothing.
    pub fn partition(&self) -> Result<()> {
        run("ip", &["link", "set", &self.link, "down"])
    }

    /// Brings its link back up.
    pub fn heal(&self) -> Result<()> {
        run("ip", &["link", "set", &self.link, "up"])
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// N nodes on their own hosts, PostgreSQL, Redis, and HAProxy in front.
pub struct HostCluster {
    pub nodes: Vec<Node>,
    balancer: Child,
    /// The balancer's port on the host's loopback.
    port: u16,
    pub redis: Redis,
    pub postgres: Postgres,
    _network: Network,
    _dir: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl HostCluster {
    /// Starts `n` nodes (with `extra_env` on top of the cluster's settings) and the
    /// balancer, and waits until every node is ready.
    pub async fn start(n: usize, extra_env: &[(&str, &str)]) -> Result<Self> {
        let turn = ONE_AT_A_TIME.lock().await;
        let tag = format!("{:04x}", super::rand_u64() & 0xffff);
        let dir = tempfile::tempdir()?;
        // PostgreSQL (the `postgres` user) keeps its data below it.
        run("chmod", &["755", &dir.path().display().to_string()])?;
        let mut network = Network::create(&tag)?;
        let gateway = network.gateway();
        let redis = Redis::start(&gateway).await?;
        let postgres = Postgres::create(dir.path(), &gateway).await?;
        let mut nodes = Vec::new();
        for i in 0..n {
            let (namespace, address, link) = network.add_host(&tag, i)?;
            let mut env: Vec<(String, String)> = [
                ("LEPTOS_SITE_ADDR", format!("{address}:{NODE_PORT}")),
                (
                    "KITH_ADVERTISE_URL",
                    format!("http://{address}:{NODE_PORT}"),
                ),
                ("KITH_DATABASE_URL", postgres.url()),
                ("KITH_POSTGRES_POOL_SIZE", "8".into()),
                ("KITH_REDIS_URL", redis.url()),
                ("KITH_ALLOWED_ORIGINS", super::ORIGIN.into()),
                ("KITH_TRUST_PROXY", "true".into()),
                ("KITH_NODE_LEASE_MS", "2000".into()),
                ("RUST_LOG", "warn".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            env.extend(
                extra_env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string())),
            );
            nodes.push(Node {
                namespace,
                address,
                link,
                env,
                log: dir.path().join(format!("node-{i}.log")),
                child: None,
            });
        }
        // One at a time: the first runs the migrations, the others find them done.
        for node in &mut nodes {
            node.start().await?;
        }
        let port = free_port()?;
        let balancer = start_balancer(dir.path(), port, &nodes)?;
        let cluster = Self {
            nodes,
            balancer,
            port,
            redis,
            postgres,
            _network: network,
            _dir: dir,
            _turn: turn,
        };
        wait_ready(&cluster.url()).await?;
        Ok(cluster)
    }

    /// The balancer's URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn websocket_url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1/chat/ws", self.port)
    }

    /// Whether node `i` answers `/readyz` 200 now.
    pub async fn ready(&self, i: usize) -> Result<bool> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let resp = client
            .get(format!("{}/readyz", self.nodes[i].url()))
            .send()
            .await?;
        Ok(resp.status().is_success())
    }

    /// Waits until every running node answers `/readyz` 200 (database and Redis reachable,
    /// node id lease live).
    pub async fn wait_all_ready(&self) -> Result<()> {
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            wait_ready(&node.url()).await?;
        }
        Ok(())
    }
}

impl Drop for HostCluster {
    fn drop(&mut self) {
        let _ = self.balancer.kill();
        let _ = self.balancer.wait();
        // The nodes go before their namespaces (the network, dropped after this).
        self.nodes.clear();
    }
}

/// HAProxy with the project's configuration, balancing over the nodes' addresses.
fn start_balancer(dir: &Path, port: u16, nodes: &[Node]) -> Result<Child> {
    let mut config = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/haproxy.cfg"
    ))?
    .replace("BIND_ADDRESS", &format!("127.0.0.1:{port}"))
    // HAProxy's own log on stdout would only be noise here.
    .replace("log stdout format raw local0 warning", "");
    for (i, node) in nodes.iter().enumerate() {
        config.push_str(&format!(
            "    server node{i} {}:{NODE_PORT} check inter 500ms fall 1 rise 1\n",
            node.address
        ));
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config)?;
    Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting haproxy")
}

/// Waits until something accepts TCP connections at `address` (10 s at most).
async fn wait_for_port(address: &str) -> Result<()> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(anyhow!("nothing listens on {address} after 10 s"))
}

/// Waits until `url/readyz` answers 200 (30 s at most: a node that joins just after Redis
/// restarted waits out a lease first, and Redis clients reconnect with a backoff).
pub async fn wait_ready(url: &str) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    for _ in 0..300 {
        if let Ok(resp) = client.get(format!("{url}/readyz")).send().await {
            if resp.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(anyhow!("{url} did not become ready within 30 s"))
}
