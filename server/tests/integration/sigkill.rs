//! A node process killed with SIGKILL mid-traffic, in a cluster of three behind HAProxy:
//! every acknowledged message reaches every device of the receiver exactly once, in `seq`
//! order, whether the device was on the dead node (it reconnects through the balancer and
//! syncs from its cursor) or long-polls through the balancer.

use crate::common::processes::{self, ProcessCluster};
use anyhow::{anyhow, Context as _, Result};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest as _, http::HeaderValue, Message};

/// Messages the sender sends (one at a time, each retried until acknowledged).
const SENDS: usize = 150;
/// The node is killed once this many are acknowledged.
const KILL_AFTER: usize = 50;

/// What a device received: seq → message id; a second delivery fails the test.
#[derive(Default)]
struct Device {
    name: &'static str,
    held: BTreeMap<i64, i64>,
    cursor: i64,
    /// Connections opened (sockets) or polls answered.
    connections: usize,
}

impl Device {
    fn take(&mut self, message: &Value) -> Result<()> {
        let id: i64 = message["id"].as_str().context("id")?.parse()?;
        let seq = message["seq"].as_i64().context("seq")?;
        if self.held.insert(seq, id).is_some() {
            return Err(anyhow!("{}: seq {seq} delivered twice", self.name));
        }
        self.cursor = self.cursor.max(id);
        Ok(())
    }
}

async fn register(http: &reqwest::Client, base: &str, name: &str) -> Result<String> {
    let resp = http
        .post(format!("{base}/v1/auth/register"))
        .json(&json!({"username": name, "password": "long enough password"}))
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 201, "register {name}: {}", resp.status());
    let body: Value = resp.json().await?;
    Ok(body["token"].as_str().context("token")?.to_string())
}

#[tokio::test]
async fn a_node_killed_mid_traffic_loses_and_doubles_nothing() -> Result<()> {
    if let Some(why) = processes::unavailable() {
        eprintln!("skipped: {why}");
        return Ok(());
    }
    let mut cluster = ProcessCluster::start(
        3,
        &[
            ("KITH_CHAT_SEND_RATE_PER_SEC", "10000"),
            ("KITH_WS_CONNECT_RATE_PER_MIN", "10000"),
        ],
    )
    .await?;
    let lb = cluster.url();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let alice = register(&http, &lb, "kill_alice").await?;
    let bob = register(&http, &lb, "kill_bob").await?;

    // Three nodes, three leased node ids, all listed by discovery.
    let servers: Value = http
        .get(format!("{lb}/v1/chat/servers"))
        .bearer_auth(&bob)
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
    ids.dedup();
    assert_eq!(ids.len(), 3, "three distinct node ids listed: {servers}");

    let channel: Value = http
        .post(format!("{lb}/v1/chat/dm/kill_bob"))
        .bearer_auth(&alice)
        .send()
        .await?
        .json()
        .await?;
    let channel = channel["id"].as_str().context("channel")?.to_string();

    let acknowledged = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    // Bob's socket starts on the node that will die; later sockets go through the balancer.
    let doomed = format!("ws://127.0.0.1:{}/v1/chat/ws", cluster.nodes[2].port);
    let balanced = format!("ws://127.0.0.1:{}/v1/chat/ws", cluster.port);
    let socket = tokio::spawn(socket_device(doomed, balanced, bob.clone(), done.clone()));
    let poller = tokio::spawn(long_poll_device(
        http.clone(),
        lb.clone(),
        bob.clone(),
        done.clone(),
    ));

    // Alice sends through the balancer, one at a time; a failure (the dying node) is
    // retried with the same client_msg_id until it is acknowledged.
    let mut killed = false;
    for i in 0..SENDS {
        let body = json!({"content": format!("m{i}"), "client_msg_id": format!("k-{i}")});
        let mut attempts = 0;
        loop {
            attempts += 1;
            let sent = http
                .post(format!("{lb}/v1/chat/channels/{channel}/messages"))
                .bearer_auth(&alice)
                .json(&body)
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status() == 201 => break,
                _ if attempts < 50 => tokio::time::sleep(Duration::from_millis(100)).await,
                other => return Err(anyhow!("send {i} never acknowledged: {other:?}")),
            }
        }
        let n = acknowledged.fetch_add(1, Ordering::SeqCst) + 1;
        if n == KILL_AFTER && !killed {
            cluster.nodes[2].kill()?;
            killed = true;
        }
    }
    done.store(true, Ordering::SeqCst);

    let want: Vec<i64> = (1..=SENDS as i64).collect();
    let (socket, poller) = (socket.await??, poller.await??);
    assert!(
        socket.connections >= 2,
        "the socket moved off the dead node ({} connections)",
        socket.connections
    );
    for device in [socket, poller] {
        let seqs: Vec<i64> = device.held.keys().copied().collect();
        assert_eq!(
            seqs, want,
            "{}: every message once, seq 1..={SENDS}",
            device.name
        );
        let ids: Vec<i64> = device.held.values().copied().collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{}: ids in seq order",
            device.name
        );
    }
    Ok(())
}

/// Bob's WebSocket device: on `first`, then, after each drop, through the balancer with a
/// backoff, syncing from its cursor each time; ends once the sender is done and nothing
/// new came for three fences of 300 ms.
async fn socket_device(
    first: String,
    balanced: String,
    token: String,
    done: Arc<AtomicBool>,
) -> Result<Device> {
    let mut device = Device {
        name: "bob's socket",
        ..Default::default()
    };
    let mut url = first;
    let mut quiet = 0;
    let mut attempt = 0u32;
    while quiet < 3 {
        let mut request = url.as_str().into_client_request()?;
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}"))?,
        );
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(request).await else {
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
            url = balanced.clone();
            continue;
        };
        attempt = 0;
        device.connections += 1;
        let sync = json!({"type": "sync", "since": device.cursor.to_string()});
        ws.send(Message::Text(sync.to_string().into())).await?;
        loop {
            match tokio::time::timeout(Duration::from_millis(300), ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame: Value = serde_json::from_str(text.as_str())?;
                    if frame["type"] == "message" {
                        device.take(&frame["message"])?;
                        quiet = 0;
                    }
                }
                Ok(Some(Ok(_))) => {}
                // Dropped (the node died): reconnect through the balancer.
                Ok(Some(Err(_))) | Ok(None) => break,
                Err(_) if done.load(Ordering::SeqCst) => {
                    quiet += 1;
                    if quiet >= 3 {
                        break;
                    }
                }
                Err(_) => {}
            }
        }
        url = balanced.clone();
    }
    Ok(device)
}

/// Bob's long-polling device, through the balancer (a different node each time, one of
/// them dead for a while); ends once the sender is done and three polls found nothing.
async fn long_poll_device(
    http: reqwest::Client,
    lb: String,
    token: String,
    done: Arc<AtomicBool>,
) -> Result<Device> {
    let mut device = Device {
        name: "bob's long poll",
        ..Default::default()
    };
    let mut quiet = 0;
    while quiet < 3 {
        let answer = http
            .get(format!(
                "{lb}/v1/chat/sync?since={}&timeout=1",
                device.cursor
            ))
            .bearer_auth(&token)
            .send()
            .await;
        let body: Value = match answer {
            Ok(resp) if resp.status() == 200 => resp.json().await?,
            // The balancer picked the dead node before its health check noticed: again.
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let messages = body["messages"].as_array().context("messages")?;
        for message in messages {
            device.take(message)?;
        }
        if messages.is_empty() && done.load(Ordering::SeqCst) {
            quiet += 1;
        } else {
            quiet = 0;
        }
        let cursor: i64 = body["cursor"].as_str().context("cursor")?.parse()?;
        device.cursor = device.cursor.max(cursor);
    }
    Ok(device)
}
