//! Three nodes on three hosts (network namespaces) on one PostgreSQL and one Redis, behind
//! a round-robin HAProxy: any node serves any request, and nothing acknowledged is lost or
//! doubled when a node is killed, stopped for a rolling restart or partitioned away, or
//! when Redis or PostgreSQL restarts under traffic.

use crate::common::{
    hosts::{self, HostCluster},
    traffic,
};
use anyhow::{ensure, Context as _, Result};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest as _, http::HeaderValue, Message};

/// Rate limits out of the way: the traffic is one client sending as fast as it can.
const GENEROUS: &[(&str, &str)] = &[
    ("KITH_CHAT_SEND_RATE_PER_SEC", "10000"),
    ("KITH_WS_CONNECT_RATE_PER_MIN", "10000"),
];

/// Starts three nodes, or says why the test is skipped.
async fn cluster() -> Result<Option<HostCluster>> {
    if let Some(why) = hosts::unavailable() {
        eprintln!("skipped: {why}");
        return Ok(None);
    }
    Ok(Some(HostCluster::start(3, GENEROUS).await?))
}

/// Each node's leased id, as discovery lists them (distinct, or the test fails).
async fn listed_node_ids(
    http: &reqwest::Client,
    cluster: &HostCluster,
    token: &str,
) -> Result<Vec<u64>> {
    let servers: Value = http
        .get(format!("{}/v1/chat/servers", cluster.url()))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    let mut ids: Vec<u64> = servers["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|s| s["node_id"].as_u64())
        .collect();
    ids.sort_unstable();
    let listed = ids.len();
    ids.dedup();
    ensure!(
        ids.len() == listed,
        "two nodes listed with one id: {servers}"
    );
    Ok(ids)
}

struct Api {
    http: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        url: String,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let resp = request.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    async fn register(&self, base: &str, name: &str) -> Result<String> {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                format!("{base}/v1/auth/register"),
                None,
                Some(json!({"username": name, "password": "long enough password"})),
            )
            .await?;
        ensure!(status == 201, "register {name}: {status} {body}");
        Ok(body["token"].as_str().context("token")?.to_string())
    }
}

#[tokio::test]
async fn any_node_serves_any_request_from_its_own_host() -> Result<()> {
    let Some(cluster) = cluster().await? else {
        return Ok(());
    };
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
    };
    let node = |i: usize| cluster.nodes[i].url();
    use reqwest::Method;

    // Accounts made on two nodes work on the third.
    let ann = api.register(&node(0), "ann").await?;
    let ben = api.register(&node(1), "ben").await?;
    let ids = listed_node_ids(&api.http, &cluster, &ann).await?;
    ensure!(ids.len() == 3, "three nodes, three leased ids: {ids:?}");
    let (status, me) = api
        .call(Method::GET, format!("{}/v1/me", node(2)), Some(&ann), None)
        .await?;
    ensure!(status == 200 && me["username"] == "ann", "{status} {me}");

    // The feed crosses nodes: a follow on one, a post on another, the read on a third.
    let (status, _) = api
        .call(
            Method::PUT,
            format!("{}/v1/me/following/ann", node(1)),
            Some(&ben),
            None,
        )
        .await?;
    ensure!(status == 204, "follow: {status}");
    let (status, post) = api
        .call(
            Method::POST,
            format!("{}/v1/me/feed", node(2)),
            Some(&ann),
            Some(json!({"content": "hello from node 2"})),
        )
        .await?;
    ensure!(status == 201, "post: {status} {post}");
    let mut seen = false;
    for _ in 0..50 {
        let (_, feed) = api
            .call(
                Method::GET,
                format!("{}/v1/me/feed", node(0)),
                Some(&ben),
                None,
            )
            .await?;
        if feed["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|p| p["id"] == post["id"]))
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(
        seen,
        "ben's feed on node 0 never showed ann's post from node 2"
    );

    // Chat crosses nodes: Ben's socket on node 0 gets what Ann sends through node 2.
    let (status, channel) = api
        .call(
            Method::POST,
            format!("{}/v1/chat/dm/ben", node(1)),
            Some(&ann),
            None,
        )
        .await?;
    ensure!(status == 200 || status == 201, "dm: {status} {channel}");
    let channel = channel["id"].as_str().context("channel id")?.to_string();
    let mut request = cluster.nodes[0].websocket_url().into_client_request()?;
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {ben}"))?,
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    socket
        .send(Message::Text(
            json!({"type": "sync", "since": "0"}).to_string().into(),
        ))
        .await?;
    let (status, sent) = api
        .call(
            Method::POST,
            format!("{}/v1/chat/channels/{channel}/messages", node(2)),
            Some(&ann),
            Some(json!({"content": "across hosts", "client_msg_id": "across-1"})),
        )
        .await?;
    ensure!(status == 201, "send: {status} {sent}");
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(frame) = socket.next().await {
            if let Message::Text(text) = frame? {
                let frame: Value = serde_json::from_str(text.as_str())?;
                if frame["type"] == "message" && frame["message"]["id"] == sent["id"] {
                    return Ok::<_, anyhow::Error>(());
                }
            }
        }
        anyhow::bail!("socket closed")
    })
    .await;
    ensure!(
        matches!(got, Ok(Ok(()))),
        "the message never reached node 0's socket: {got:?}"
    );

    // A long poll through the balancer lands on any node and is answered from the store.
    let (status, poll) = api
        .call(
            Method::GET,
            format!("{}/v1/chat/sync?since=0&timeout=1", cluster.url()),
            Some(&ben),
            None,
        )
        .await?;
    ensure!(status == 200, "poll: {status}");
    ensure!(
        poll["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["id"] == sent["id"])),
        "{poll}"
    );

    // Logging out on one node ends the session on every node at once.
    let (status, _) = api
        .call(
            Method::POST,
            format!("{}/v1/auth/logout", node(2)),
            Some(&ann),
            None,
        )
        .await?;
    ensure!(status == 204, "logout: {status}");
    for base in [node(0), node(1), node(2), cluster.url()] {
        let (status, _) = api
            .call(Method::GET, format!("{base}/v1/me"), Some(&ann), None)
            .await?;
        ensure!(
            status == 401,
            "{base}: the token still works after logout ({status})"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_node_killed_mid_traffic_loses_and_doubles_nothing() -> Result<()> {
    let Some(mut cluster) = cluster().await? else {
        return Ok(());
    };
    let doomed = cluster.nodes[2].websocket_url();
    let outcome = traffic::run(&mut cluster, doomed, |c| {
        Box::pin(async move { c.nodes[2].kill() })
    })
    .await?;
    ensure!(
        outcome.socket.connections >= 2,
        "the socket moved off the dead node ({} connections)",
        outcome.socket.connections
    );
    Ok(())
}

#[tokio::test]
async fn a_rolling_restart_under_traffic_fails_no_client_operation() -> Result<()> {
    let Some(mut cluster) = cluster().await? else {
        return Ok(());
    };
    let first = cluster.nodes[0].websocket_url();
    let outcome = traffic::run(&mut cluster, first, |c| {
        Box::pin(async move {
            for node in &mut c.nodes {
                node.stop().await?;
                node.start().await?;
            }
            Ok(())
        })
    })
    .await?;
    ensure!(
        outcome.socket.connections >= 2,
        "the socket moved when its node stopped"
    );
    Ok(())
}

#[tokio::test]
async fn redis_restarted_mid_traffic_loses_and_doubles_nothing() -> Result<()> {
    let Some(mut cluster) = cluster().await? else {
        return Ok(());
    };
    let first = cluster.nodes[1].websocket_url();
    let outcome = traffic::run(&mut cluster, first, |c| {
        Box::pin(async move {
            c.redis.kill()?;
            ensure!(!c.ready(0).await?, "node 0 saw Redis go");
            tokio::time::sleep(Duration::from_secs(1)).await;
            c.redis.restart().await?;
            c.wait_all_ready().await
        })
    })
    .await?;
    eprintln!(
        "redis restart: {} acknowledged, {} needed retries",
        outcome.acknowledged, outcome.retried
    );
    // Every node leases (or takes back) a distinct id from the new, empty Redis.
    let token = traffic_token(&cluster).await?;
    let ids = listed_node_ids(&reqwest::Client::new(), &cluster, &token).await?;
    ensure!(
        ids.len() == 3,
        "three distinct ids after the restart: {ids:?}"
    );
    Ok(())
}

#[tokio::test]
async fn postgres_restarted_mid_traffic_loses_and_doubles_nothing() -> Result<()> {
    let Some(mut cluster) = cluster().await? else {
        return Ok(());
    };
    let first = cluster.nodes[1].websocket_url();
    let outcome = traffic::run(&mut cluster, first, |c| {
        Box::pin(async move {
            c.postgres.crash().await?;
            ensure!(!c.ready(0).await?, "node 0 saw the database go");
            tokio::time::sleep(Duration::from_secs(1)).await;
            c.postgres.start().await?;
            c.wait_all_ready().await
        })
    })
    .await?;
    eprintln!(
        "postgres restart: {} acknowledged, {} needed retries",
        outcome.acknowledged, outcome.retried
    );
    Ok(())
}

#[tokio::test]
async fn a_partitioned_node_loses_its_clients_and_its_id_and_nothing_else() -> Result<()> {
    let Some(mut cluster) = cluster().await? else {
        return Ok(());
    };
    let cut_off = cluster.nodes[2].websocket_url();
    let outcome = traffic::run(&mut cluster, cut_off, |c| {
        Box::pin(async move {
            c.nodes[2].partition()?;
            // Two leases: its id lapses, the balancer and its clients give up on it.
            tokio::time::sleep(Duration::from_secs(4)).await;
            c.nodes[2].heal()?;
            c.wait_all_ready().await
        })
    })
    .await?;
    ensure!(
        outcome.socket.connections >= 2,
        "the socket moved off the partitioned node ({} connections)",
        outcome.socket.connections
    );
    let token = traffic_token(&cluster).await?;
    let ids = listed_node_ids(&reqwest::Client::new(), &cluster, &token).await?;
    ensure!(
        ids.len() == 3,
        "the healed node is back under an id of its own: {ids:?}"
    );
    Ok(())
}

/// A fresh account's token, for calls after a run.
async fn traffic_token(cluster: &HostCluster) -> Result<String> {
    let api = Api {
        http: reqwest::Client::new(),
    };
    api.register(
        &cluster.url(),
        &format!("after_{}", crate::common::rand_u64() % 100_000),
    )
    .await
}
