//! The long-poll scenario: pairs in a closed loop. Each pair has one message in flight; it
//! bounces between the pair's two members, each of whom long-polls for the other's, so a
//! message costs one POST and one long-poll answer (and the new long-poll that follows).
//!
//! On Kith a member polls `GET /v1/chat/sync?since&timeout=25` and sends with
//! `POST /v1/chat/channels/{id}/messages`. Sync also returns the member's own messages
//! (another device of theirs would want them); the poller skips those, as a client does.
//! On the peer a member speaks Engine.IO's polling transport: a handshake `GET` for its
//! session id, a `POST` of the connect packet, then one `GET` outstanding at a time whose
//! answer holds packets separated by `\x1e` (`42["msg",…]` events, `2` pings, answered by
//! a `POST` of `3`), and `POST`s of `42["msg",{…}]` to send.

use super::Target;
use crate::{
    chat,
    chat_seed::Pair,
    cpu::CpuClock,
    error::Error,
    ws_client::{self, Recorder, Reply, Tally},
};
use reqwest::Client;
use std::{sync::Arc, time::Duration};
use tokio::{
    sync::{mpsc, Mutex},
    task::JoinSet,
};

/// A message not received this long after it was sent counts as lost, and the pair sends
/// the next one.
const LOST_AFTER: Duration = Duration::from_secs(5);
/// Engine.IO's record separator between packets of one polling payload.
const SEPARATOR: char = '\u{1e}';

/// What the scenario needs from its caller.
pub struct Bench<'a> {
    pub http: &'a Client,
    pub base: &'a str,
    pub clock: &'a CpuClock,
    pub server_pid: u32,
    pub recorder: &'a Arc<Recorder>,
    pub duration: Duration,
    /// Kith: the newest stored message id, where every poller starts (so the first answers
    /// carry only this scenario's messages).
    pub since: i64,
}

/// What the closed loop achieved.
#[derive(Debug)]
pub struct LongPollRun {
    pub duration: Duration,
    /// Deliveries and their latencies over the window.
    pub tally: Tally,
    /// Messages that did not arrive within [`LOST_AFTER`].
    pub lost: u64,
    pub server_cpu: Option<f64>,
}

impl LongPollRun {
    pub fn messages_per_sec(&self) -> f64 {
        self.tally.received_in_window as f64 / self.duration.as_secs_f64()
    }
}

/// Runs the closed loop on `pairs` for `bench.duration`.
pub async fn run(target: Target, bench: &Bench<'_>, pairs: &[Pair]) -> Result<LongPollRun, Error> {
    let mut pollers = JoinSet::new();
    let mut loops = Vec::with_capacity(pairs.len());
    for (i, pair) in pairs.iter().enumerate() {
        // Either member's poller reports a receipt here; the pair's loop waits on it.
        let (received_tx, received_rx) = mpsc::unbounded_channel();
        let mut members = Vec::with_capacity(2);
        for (side, user) in [('a', &pair.a), ('b', &pair.b)] {
            let member = Member::join(target, bench, pair.channel, &user.token).await?;
            let member = Arc::new(member);
            pollers.spawn(poll(
                member.clone(),
                bench.http.clone(),
                bench.base.to_string(),
                side,
                bench.recorder.clone(),
                received_tx.clone(),
            ));
            members.push(member);
        }
        loops.push((i, members, received_rx));
    }
    // Every poller is waiting before the first message.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let recorder = bench.recorder;
    recorder.begin(bench.duration);
    let before = bench.clock.seconds(bench.server_pid);
    let deadline = tokio::time::Instant::now() + bench.duration;
    let mut senders = JoinSet::new();
    for (i, members, mut received) in loops {
        let (http, base, recorder) = (bench.http.clone(), bench.base.to_string(), recorder.clone());
        senders.spawn(async move {
            let mut lost = 0_u64;
            let mut n = 0_u64;
            while tokio::time::Instant::now() < deadline {
                let (side, from) = if n.is_multiple_of(2) {
                    ('a', &members[0])
                } else {
                    ('b', &members[1])
                };
                let client_msg_id = format!("{side}{i}-{n}");
                let content = recorder.stamped_content(&client_msg_id);
                if let Err(e) = from.send(&http, &base, &client_msg_id, &content).await {
                    recorder.error(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                match tokio::time::timeout(LOST_AFTER, received.recv()).await {
                    Ok(Some(())) => {}
                    Ok(None) => break,
                    Err(_) => lost += 1,
                }
                n += 1;
            }
            lost
        });
    }
    let mut lost = 0;
    while let Some(done) = senders.join_next().await {
        lost += done.unwrap_or_default();
    }
    let after = bench.clock.seconds(bench.server_pid);
    pollers.abort_all();
    while pollers.join_next().await.is_some() {}
    Ok(LongPollRun {
        duration: bench.duration,
        tally: recorder.take(),
        lost,
        server_cpu: crate::chat::delta(before, after),
    })
}

/// One member of a pair.
struct Member {
    /// The pair's channel (on the peer, the room of that name).
    channel: i64,
    transport: Transport,
}

/// How a member reaches the target.
enum Transport {
    Kith {
        token: String,
        /// Where its first long-poll starts.
        since: i64,
    },
    SocketIo {
        /// The polling URL with the session id.
        url: String,
        /// Engine.IO takes one POST at a time per session: a pong and a message queue here.
        posting: Mutex<()>,
    },
}

impl Member {
    /// Kith: nothing to do. The peer: the Engine.IO handshake and the Socket.IO connect to
    /// the pair's room.
    async fn join(
        target: Target,
        bench: &Bench<'_>,
        channel: i64,
        credential: &str,
    ) -> Result<Self, Error> {
        match target {
            Target::Kith(_) => Ok(Member {
                channel,
                transport: Transport::Kith {
                    token: credential.to_string(),
                    since: bench.since,
                },
            }),
            Target::SocketIo => {
                let open = format!("{}/socket.io/?EIO=4&transport=polling", bench.base);
                let text = bench.http.get(&open).send().await?.text().await?;
                let sid = text
                    .strip_prefix('0')
                    .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok())
                    .and_then(|v| v.get("sid")?.as_str().map(str::to_string))
                    .ok_or_else(|| Error::Run(format!("Engine.IO handshake answered {text:?}")))?;
                let url = format!("{open}&sid={sid}");
                let answer = bench
                    .http
                    .post(&url)
                    .body(format!("40{credential}"))
                    .send()
                    .await?;
                if !answer.status().is_success() {
                    return Err(Error::Run(format!(
                        "Socket.IO connect over polling answered HTTP {}",
                        answer.status()
                    )));
                }
                Ok(Member {
                    channel,
                    transport: Transport::SocketIo {
                        url,
                        posting: Mutex::new(()),
                    },
                })
            }
        }
    }

    /// Sends one message; the error names what failed.
    async fn send(
        &self,
        http: &Client,
        base: &str,
        client_msg_id: &str,
        content: &str,
    ) -> Result<(), String> {
        let channel = self.channel;
        let (request, created) = match &self.transport {
            Transport::Kith { token, .. } => (
                http.post(format!("{base}/v1/chat/channels/{channel}/messages"))
                    .bearer_auth(token)
                    .json(&serde_json::json!({
                        "content": content,
                        "client_msg_id": client_msg_id,
                    })),
                201,
            ),
            Transport::SocketIo { url, .. } => {
                let event = serde_json::json!(["msg", {
                    "to": channel.to_string(),
                    "client_msg_id": client_msg_id,
                    "content": content,
                }]);
                (http.post(url).body(format!("42{event}")), 200)
            }
        };
        let _turn = match &self.transport {
            Transport::SocketIo { posting, .. } => Some(posting.lock().await),
            Transport::Kith { .. } => None,
        };
        match request.send().await {
            Ok(r) if r.status().as_u16() == created => {
                let _ = r.bytes().await;
                Ok(())
            }
            Ok(r) => Err(format!("POST HTTP {}", r.status().as_u16())),
            Err(e) if e.is_timeout() => Err("POST timeout".into()),
            Err(_) => Err("POST request error".into()),
        }
    }
}

/// One member's long-poll loop, until aborted: reports every message from the other
/// member (deliveries to the recorder, receipts to the pair's loop). `side` ('a' or 'b')
/// starts the `client_msg_id` of the member's own messages.
async fn poll(
    member: Arc<Member>,
    http: Client,
    base: String,
    side: char,
    recorder: Arc<Recorder>,
    received: mpsc::UnboundedSender<()>,
) {
    match &member.transport {
        Transport::Kith { token, since } => {
            let url = format!("{base}/v1/chat/sync");
            let mut cursor = since.to_string();
            loop {
                for m in chat::sync_once(&http, &url, token, &mut cursor, &recorder).await {
                    let id = m.get("client_msg_id").and_then(|c| c.as_str());
                    if id.is_some_and(|id| id.starts_with(side)) {
                        continue;
                    }
                    let content = m.get("content").and_then(|c| c.as_str());
                    recorder.delivery(content.and_then(ws_client::stamp_of_content));
                    let _ = received.send(());
                }
            }
        }
        // The peer relays to the rest of the room only: every event is the other member's.
        Transport::SocketIo { url, posting } => loop {
            let Some(payload) =
                ws_client::poll(&recorder, http.get(url), reqwest::Response::text).await
            else {
                continue;
            };
            for packet in payload.split(SEPARATOR) {
                if packet.starts_with("42") {
                    let _ = received.send(());
                }
                if recorder.socketio_packet(packet) == Some(Reply::Pong) {
                    let _turn = posting.lock().await;
                    if http.post(url).body("3").send().await.is_err() {
                        recorder.error("pong POST failed".into());
                    }
                }
            }
        },
    }
}
