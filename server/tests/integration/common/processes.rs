//! Nodes as separate server processes (the binary cargo built for these tests) behind a
//! real HAProxy, on the suite's PostgreSQL and Redis: what a cluster is in production, down
//! to a node dying by SIGKILL.

use super::{fresh_database, postgres_url, redis_available, redis_url, unique_namespace};
use anyhow::{anyhow, Context as _, Result};
use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A free local port (bound then released: fine for tests, which start at once).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Why a process cluster cannot run here, if it cannot.
pub fn unavailable() -> Option<&'static str> {
    if postgres_url().is_none() {
        Some("KITH_TEST_DATABASE_URL names no PostgreSQL database")
    } else if !redis_available() {
        Some("KITH_TEST_REDIS_URL is not set")
    } else if Command::new("haproxy").arg("-v").output().is_err() {
        Some("haproxy is not installed (scripts/setup.sh installs it)")
    } else {
        None
    }
}

/// One node process.
pub struct Node {
    pub port: u16,
    child: Child,
}

impl Node {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the process at once, as a crash would: no graceful shutdown, no lease given
    /// back, no close frames.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// N node processes on one database and Redis namespace, behind HAProxy.
pub struct ProcessCluster {
    pub nodes: Vec<Node>,
    /// The balancer's port.
    pub port: u16,
    balancer: Child,
    _dir: tempfile::TempDir,
}

impl ProcessCluster {
    /// Starts `n` nodes and the balancer, and waits until every node is ready.
    pub async fn start(n: usize, extra_env: &[(&str, &str)]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let database = fresh_database(dir.path(), "cluster").await?;
        let namespace = unique_namespace();
        let port = free_port()?;
        let mut nodes = Vec::new();
        for i in 0..n {
            let node_port = free_port()?;
            let log = std::fs::File::create(dir.path().join(format!("node-{i}.log")))?;
            let mut command = Command::new(env!("CARGO_BIN_EXE_server"));
            command
                .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{node_port}"))
                .env("KITH_DATABASE_URL", &database)
                .env("KITH_REDIS_URL", redis_url())
                .env("KITH_REDIS_NAMESPACE", &namespace)
                .env(
                    "KITH_ADVERTISE_URL",
                    format!("http://127.0.0.1:{node_port}"),
                )
                .env("KITH_ALLOWED_ORIGINS", super::ORIGIN)
                .env("KITH_TRUST_PROXY", "true")
                .env("KITH_NODE_LEASE_MS", "2000")
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log);
            for (k, v) in extra_env {
                command.env(k, v);
            }
            nodes.push(Node {
                port: node_port,
                child: command.spawn().context("starting a node process")?,
            });
        }
        let client = reqwest::Client::new();
        for node in &nodes {
            wait_ready(&client, &node.url()).await?;
        }
        let mut config = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/haproxy.cfg"
        ))?
        .replace("BIND_ADDRESS", &format!("127.0.0.1:{port}"))
        // HAProxy's own log on stdout would only be noise here.
        .replace("log stdout format raw local0 warning", "");
        for (i, node) in nodes.iter().enumerate() {
            config.push_str(&format!(
                "    server node{i} 127.0.0.1:{} check inter 500ms fall 1 rise 1\n",
                node.port
            ));
        }
        let config_path = dir.path().join("haproxy.cfg");
        std::fs::write(&config_path, config)?;
        let balancer = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting haproxy")?;
        let cluster = Self {
            nodes,
            port,
            balancer,
            _dir: dir,
        };
        wait_ready(&client, &cluster.url()).await?;
        Ok(cluster)
    }

    /// The balancer's URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        let _ = self.balancer.kill();
        let _ = self.balancer.wait();
    }
}

async fn wait_ready(client: &reqwest::Client, url: &str) -> Result<()> {
    for _ in 0..300 {
        if let Ok(resp) = client.get(format!("{url}/readyz")).send().await {
            if resp.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(anyhow!("{url} did not become ready within 15 s"))
}
