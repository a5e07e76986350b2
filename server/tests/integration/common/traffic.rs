//! Chat traffic through a cluster's balancer while something goes wrong, and the check
//! that nothing was lost or doubled: Alice sends to Bob one message at a time, retrying
//! each with the same `client_msg_id` until it is acknowledged; Bob reads on two devices, a
//! WebSocket (which reconnects through the balancer and syncs from its cursor after every
//! drop) and a long poll through the balancer (a different node each time). Once some
//! messages are acknowledged the test's disruption runs; the sending goes on until it is
//! over. Then every acknowledged message must have reached each device exactly once, in
//! `seq` order with no gap.

use super::hosts::HostCluster;
use anyhow::{anyhow, ensure, Context as _, Result};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest as _, http::HeaderValue, Message};

/// The disruption starts once this many messages are acknowledged.
const BEFORE: usize = 40;
/// Messages sent after the disruption is over.
const AFTER: usize = 40;
/// Attempts per message before the test fails: a client's patience, at 100 ms apart.
const ATTEMPTS: usize = 300;
/// A WebSocket silent this long while messages are being sent is dead (a half-open
/// connection to a node cut off): the device reconnects, as the browser's heartbeat does.
const SILENCE: Duration = Duration::from_secs(3);

/// When a device may stop reading: once the sender is done, when it holds every
/// acknowledged message, or when nothing new came for [`GRACE`] (the check then reports
/// what is missing).
#[derive(Default)]
struct Finish {
    /// Messages acknowledged in all; 0 while the sender is at work.
    acknowledged: AtomicUsize,
}

/// How long a device keeps reading without receiving anything once the sender is done:
/// room for the nodes to finish recovering (a Redis client reconnecting, a sync waiting
/// behind it) before a missing message counts as lost.
const GRACE: Duration = Duration::from_secs(10);

impl Finish {
    fn done(&self) -> bool {
        self.acknowledged.load(Ordering::SeqCst) > 0
    }

    /// Whether `device` may stop, given when it last received something.
    fn reached(&self, device: &Device, last_progress: tokio::time::Instant) -> bool {
        let acknowledged = self.acknowledged.load(Ordering::SeqCst);
        acknowledged > 0 && (device.held.len() >= acknowledged || last_progress.elapsed() >= GRACE)
    }
}

/// What a device received: seq → message id; a second delivery fails the test.
#[derive(Default, Debug)]
pub struct Device {
    pub name: &'static str,
    held: BTreeMap<i64, i64>,
    cursor: i64,
    /// Connections opened (sockets) or polls answered.
    pub connections: usize,
}

impl Device {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            ..Self::default()
        }
    }

    fn take(&mut self, message: &Value) -> Result<()> {
        let id: i64 = message["id"].as_str().context("id")?.parse()?;
        let seq = message["seq"].as_i64().context("seq")?;
        if self.held.insert(seq, id).is_some() {
            return Err(anyhow!("{}: seq {seq} delivered twice", self.name));
        }
        self.cursor = self.cursor.max(id);
        Ok(())
    }

    /// Every one of `acknowledged` messages exactly once, seq 1..=n, ids in seq order.
    fn check(&self, acknowledged: usize) -> Result<()> {
        let seqs: Vec<i64> = self.held.keys().copied().collect();
        let want: Vec<i64> = (1..=acknowledged as i64).collect();
        ensure!(
            seqs == want,
            "{}: want every message once, seq 1..={acknowledged}; got {} messages, missing {:?}",
            self.name,
            seqs.len(),
            want.iter()
                .filter(|s| !self.held.contains_key(s))
                .collect::<Vec<_>>()
        );
        let ids: Vec<i64> = self.held.values().copied().collect();
        ensure!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{}: ids not in seq order",
            self.name
        );
        Ok(())
    }
}

/// What a run saw.
pub struct Outcome {
    pub acknowledged: usize,
    pub socket: Device,
    /// Sends that needed more than one attempt.
    pub retried: usize,
}

/// The two users and their conversation.
struct Conversation {
    http: reqwest::Client,
    alice: String,
    bob: String,
    channel: String,
}

async fn register(http: &reqwest::Client, base: &str, name: &str) -> Result<String> {
    let resp = http
        .post(format!("{base}/v1/auth/register"))
        .json(&json!({"username": name, "password": "long enough password"}))
        .send()
        .await?;
    ensure!(resp.status() == 201, "register {name}: {}", resp.status());
    let body: Value = resp.json().await?;
    Ok(body["token"].as_str().context("token")?.to_string())
}

impl Conversation {
    async fn open(lb: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let suffix = super::rand_u64() % 100_000;
        let alice = register(&http, lb, &format!("alice_{suffix}")).await?;
        let bob_name = format!("bob_{suffix}");
        let bob = register(&http, lb, &bob_name).await?;
        let channel: Value = http
            .post(format!("{lb}/v1/chat/dm/{bob_name}"))
            .bearer_auth(&alice)
            .send()
            .await?
            .json()
            .await?;
        let channel = channel["id"].as_str().context("channel")?.to_string();
        Ok(Self {
            http,
            alice,
            bob,
            channel,
        })
    }

    /// Sends message `i`, retrying until it is acknowledged; whether it took retries.
    async fn send(&self, lb: &str, i: usize) -> Result<bool> {
        let body = json!({"content": format!("m{i}"), "client_msg_id": format!("t-{i}")});
        for attempt in 1..=ATTEMPTS {
            let sent = self
                .http
                .post(format!("{lb}/v1/chat/channels/{}/messages", self.channel))
                .bearer_auth(&self.alice)
                .json(&body)
                .send()
                .await;
            if sent.is_ok_and(|resp| resp.status().is_success()) {
                return Ok(attempt > 1);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(anyhow!(
            "message {i} not acknowledged after {ATTEMPTS} attempts"
        ))
    }
}

/// Runs the traffic on `cluster` with Bob's socket first on `first_socket`, and `disrupt`
/// once [`BEFORE`] messages are acknowledged; checks exactly-once delivery.
pub async fn run<F>(cluster: &mut HostCluster, first_socket: String, disrupt: F) -> Result<Outcome>
where
    F: for<'a> FnOnce(
        &'a mut HostCluster,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<()>> + 'a>>,
{
    let lb = cluster.url();
    let talk = Conversation::open(&lb).await?;
    let finish = Arc::new(Finish::default());
    let socket = tokio::spawn(socket_device(
        first_socket,
        cluster.websocket_url(),
        talk.bob.clone(),
        finish.clone(),
    ));
    let poller = tokio::spawn(long_poll_device(
        talk.http.clone(),
        lb.clone(),
        talk.bob.clone(),
        finish.clone(),
    ));

    let acknowledged = AtomicUsize::new(0);
    let over = AtomicBool::new(false);
    let sending = async {
        let mut retried = 0;
        let mut after = 0;
        let mut i = 0;
        while after < AFTER {
            retried += usize::from(talk.send(&lb, i).await?);
            i += 1;
            acknowledged.store(i, Ordering::SeqCst);
            if over.load(Ordering::SeqCst) {
                after += 1;
            }
        }
        Ok::<_, anyhow::Error>(retried)
    };
    let disruption = async {
        while acknowledged.load(Ordering::SeqCst) < BEFORE {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let result = disrupt(cluster).await;
        over.store(true, Ordering::SeqCst);
        result
    };
    let (retried, disrupted) = tokio::join!(sending, disruption);
    disrupted.context("the disruption")?;
    let retried = retried?;
    let acknowledged = acknowledged.into_inner();
    finish.acknowledged.store(acknowledged, Ordering::SeqCst);

    let (socket, poller) = (socket.await??, poller.await??);
    socket.check(acknowledged)?;
    poller.check(acknowledged)?;
    Ok(Outcome {
        acknowledged,
        socket,
        retried,
    })
}

/// Bob's WebSocket device: on `first`, then, after each drop, through the balancer with a
/// backoff, syncing from its cursor each time, until `finish` says it may stop.
async fn socket_device(
    first: String,
    balanced: String,
    token: String,
    finish: Arc<Finish>,
) -> Result<Device> {
    let mut device = Device::new("bob's socket");
    let mut url = first;
    let mut attempt = 0u32;
    let mut progress = tokio::time::Instant::now();
    while !finish.reached(&device, progress) {
        let mut request = url.as_str().into_client_request()?;
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}"))?,
        );
        url.clone_from(&balanced);
        let connected =
            tokio::time::timeout(SILENCE, tokio_tungstenite::connect_async(request)).await;
        let Ok(Ok((mut ws, _))) = connected else {
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
            continue;
        };
        attempt = 0;
        device.connections += 1;
        let sync = json!({"type": "sync", "since": device.cursor.to_string()});
        ws.send(Message::Text(sync.to_string().into())).await?;
        let mut silent = Duration::ZERO;
        while !finish.reached(&device, progress) {
            let fence = Duration::from_millis(300);
            match tokio::time::timeout(fence, ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame: Value = serde_json::from_str(text.as_str())?;
                    if frame["type"] == "message" {
                        device.take(&frame["message"])?;
                        progress = tokio::time::Instant::now();
                    }
                    silent = Duration::ZERO;
                }
                Ok(Some(Ok(_))) => silent = Duration::ZERO,
                // Dropped (the node died or left): reconnect through the balancer.
                Ok(Some(Err(_)) | None) => break,
                Err(_) => {
                    silent += fence;
                    // Silent while messages are being sent: a half-open connection.
                    if silent >= SILENCE && !finish.done() {
                        break;
                    }
                }
            }
        }
    }
    Ok(device)
}

/// Bob's long-polling device, through the balancer (a different node each time), until
/// `finish` says it may stop.
async fn long_poll_device(
    http: reqwest::Client,
    lb: String,
    token: String,
    finish: Arc<Finish>,
) -> Result<Device> {
    let mut device = Device::new("bob's long poll");
    let mut progress = tokio::time::Instant::now();
    while !finish.reached(&device, progress) {
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
            // A node going away, or a dependency out for a while: again.
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        device.connections += 1;
        let messages = body["messages"].as_array().context("messages")?;
        for message in messages {
            device.take(message)?;
            progress = tokio::time::Instant::now();
        }
        let cursor: i64 = body["cursor"].as_str().context("cursor")?.parse()?;
        device.cursor = device.cursor.max(cursor);
    }
    Ok(device)
}
