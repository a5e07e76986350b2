//! `loadgen chat --nodes N`: the group fanout measurement (step 3 of the chat scenario) on
//! one node and then on N nodes, both on PostgreSQL and Redis, side by side. The members'
//! WebSockets are spread over the nodes round-robin and connect to their node directly (no
//! balancer in the path); a sender is a member, so the sends spread the same way, and most
//! deliveries cross from one node to another through Redis.
//!
//! Both runs use the same kind of cluster (a fresh database and namespace, the same
//! environment), so the only difference is the node count. Nodes run unpinned.

use crate::{
    chat::{self, SendRun, Setup, FD_LIMIT, GROUP_P99_TARGET},
    chat_report::percentile_ns,
    chat_seed::{self, GROUP_SIZE},
    cluster::{Cluster, Node, Spec},
    db::Db,
    error::Error,
    markdown::{server_log, thousands},
    options::Flavour,
    server::{LogSummary, ServerProcess},
    ws_client::{self, Conn, Recorder},
};
use reqwest::Client;
use std::{fmt::Write as _, sync::Arc, time::Duration};

/// How often members heartbeat, as in the chat scenario.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// One node count's group steps.
#[derive(Debug)]
pub struct NodesRun {
    pub nodes: usize,
    pub groups: Vec<SendRun>,
    pub log: LogSummary,
}

impl NodesRun {
    /// The highest-rate step within p99 ≤ 50 ms, everything delivered, no disconnect.
    fn best(&self) -> Option<&SendRun> {
        self.groups
            .iter()
            .filter(|r| r.within_target(GROUP_P99_TARGET))
            .max_by_key(|r| r.rate)
    }
}

/// One node count, start to finish; the cluster is torn down whatever happens.
pub async fn run(setup: &Setup, flavour: Flavour, nodes: usize) -> Result<NodesRun, Error> {
    let http = Client::builder().tcp_nodelay(true).build()?;
    eprintln!("[{nodes} node(s)] starting on PostgreSQL and Redis");
    let mut cluster = Cluster::start(
        Spec {
            bin: &setup.server_bin,
            nodes,
            redis_url: &setup.opts.redis_url,
            postgres_url: &setup.opts.database.postgres_url,
            env: &[("KITH_RUNTIME", flavour.name())],
            balancer: false,
            fd_limit: Some(FD_LIMIT),
        },
        &http,
    )
    .await?;
    let outcome = measure(setup, &mut cluster, &http).await;
    let log = cluster.finish(&format!("{nodes} node(s)")).await;
    outcome.map(|groups| NodesRun { nodes, groups, log })
}

async fn measure(
    setup: &Setup,
    cluster: &mut Cluster,
    http: &Client,
) -> Result<Vec<SendRun>, Error> {
    let tag = format!("{} node(s)", cluster.nodes.len());
    eprintln!("[{tag}] seeding users, sessions and channels");
    let writer = Db::writer(cluster.database_url()).await?;
    let pop = chat_seed::write(&writer, chat::now_ms(), setup.opts.groups).await?;
    writer.settle().await?;
    writer.close().await;

    let recorder = Recorder::new();
    eprintln!(
        "[{tag}] connecting {} group members",
        pop.groups.len() * GROUP_SIZE
    );
    let tokens: Vec<String> = pop
        .groups
        .iter()
        .flat_map(|g| g.members.iter().map(|m| m.token.clone()))
        .collect();
    let conns = open_spread(&cluster.nodes, &tokens, &recorder).await?;
    let beats = ws_client::keep_present(conns.clone(), HEARTBEAT_EVERY);
    for (i, node) in cluster.nodes.iter().enumerate() {
        let here = tokens.len() / cluster.nodes.len()
            + usize::from(i < tokens.len() % cluster.nodes.len());
        chat::settle(http, &node.base_url(), here as i64).await?;
    }
    let servers: Vec<&ServerProcess> = cluster.nodes.iter().filter_map(Node::process).collect();
    let groups = chat::step_groups(
        setup,
        &servers,
        http,
        &recorder,
        &tag,
        &pop,
        &conns,
        chat::GIVE_UP_P99,
    )
    .await;
    beats.abort();
    for conn in &conns {
        conn.close().await;
    }
    cluster.check_alive()?;
    Ok(groups)
}

/// Opens a connection per token, token k on node k mod N; returns them in token order.
async fn open_spread(
    nodes: &[Node],
    tokens: &[String],
    recorder: &Arc<Recorder>,
) -> Result<Vec<Conn>, Error> {
    let n = nodes.len();
    let mut per_node = Vec::with_capacity(n);
    for (i, node) in nodes.iter().enumerate() {
        let mine: Vec<String> = tokens.iter().skip(i).step_by(n).cloned().collect();
        let url = format!(
            "{}/v1/chat/ws",
            node.base_url().replacen("http://", "ws://", 1)
        );
        per_node.push(
            ws_client::open_all(&url, &mine, recorder)
                .await?
                .into_iter(),
        );
    }
    // Token k is the (k / n)-th connection of node k % n.
    Ok((0..tokens.len())
        .filter_map(|k| per_node[k % n].next())
        .collect())
}

/// The side-by-side table, then each node count's steps.
pub fn markdown(runs: &[NodesRun], groups: usize) -> String {
    let mut out = String::new();
    let _ = write(&mut out, runs, groups);
    out
}

fn write(out: &mut String, runs: &[NodesRun], groups: usize) -> std::fmt::Result {
    writeln!(
        out,
        "{groups} groups of {GROUP_SIZE}, every member connected straight to its node (members \
         spread round-robin over the nodes), senders round-robin over groups and members; a \
         message is {} deliveries. **Caveat: this machine has 2 cores, shared by every node, \
         PostgreSQL, Redis and this tool**: a second node here adds a process, not a core, \
         so the comparison shows what the cross-node path costs rather than what a second \
         machine would add.\n",
        GROUP_SIZE - 1
    )?;
    writeln!(out, "| nodes | best step within p99 ≤ {} ms | its deliveries/s | its p99 ms | nodes' CPU there | steps run |", GROUP_P99_TARGET.as_millis())?;
    writeln!(out, "|--:|--:|--:|--:|--:|--:|")?;
    for run in runs {
        let best = run.best();
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            run.nodes,
            best.map_or_else(|| "none".into(), |b| format!("{} msg/s", b.rate)),
            best.map_or_else(
                || "–".into(),
                |b| thousands(b.delivered_per_sec().round() as u64)
            ),
            best.map_or_else(|| "–".into(), |b| format!("{:.2}", p99_ms(b))),
            best.map_or_else(|| "–".into(), cpu_share),
            run.groups.len(),
        )?;
    }
    for run in runs {
        writeln!(out, "\n#### {} node(s): every step\n", run.nodes)?;
        writeln!(out, "| msg/s offered | delivered/s | delivered of expected | p99 ms | nodes' CPU | within target |")?;
        writeln!(out, "|--:|--:|--:|--:|--:|---|")?;
        for step in &run.groups {
            writeln!(
                out,
                "| {} | {} | {:.1}% | {:.2} | {} | {} |",
                thousands(step.rate),
                thousands(step.delivered_per_sec().round() as u64),
                step.completeness() * 100.0,
                p99_ms(step),
                cpu_share(step),
                crate::markdown::yes(step.within_target(GROUP_P99_TARGET)),
            )?;
        }
        server_log(out, &run.log)?;
    }
    Ok(())
}

fn p99_ms(run: &SendRun) -> f64 {
    let mut sorted = run.tally.latencies.clone();
    sorted.sort_unstable();
    percentile_ns(&sorted, 99.0) as f64 / 1e6
}

/// The nodes' CPU over the send window, in cores' worth ("140%": 1.4 cores busy).
fn cpu_share(run: &SendRun) -> String {
    run.server_cpu.map_or_else(
        || "n/a".into(),
        |c| format!("{:.0}%", c / run.duration.as_secs_f64() * 100.0),
    )
}
