//! The receiving devices, both through the balancer, both keeping the API's one cursor
//! (`cur_max_message_id`): a WebSocket that reconnects with backoff and jitter after every
//! drop and `sync`s from its cursor, and a long-poll loop. Each records every message in
//! order of arrival for the checker; neither dedups, sorts or fills gaps, since that would
//! hide exactly what the run looks for.

use super::{
    checker::{DeviceLog, Msg},
    Phase,
};
use futures_util::{SinkExt as _, StreamExt as _};
use rand::Rng as _;
use serde_json::{json, Value};
use std::{collections::BTreeMap, time::Duration};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{
    client::IntoClientRequest as _,
    http::{header::AUTHORIZATION, HeaderValue},
    Message,
};

/// A draining device is done once nothing has arrived for this long.
const QUIET: Duration = Duration::from_secs(2);
/// How long a WebSocket upgrade may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The wait each long poll asks for: short, so a drained poller notices soon.
const POLL_WAIT_SECS: &str = "2";

/// What a device brings back.
#[derive(Debug)]
pub struct DeviceOutcome {
    pub log: DeviceLog,
    /// Sockets opened, or polls answered.
    pub connections: u64,
    /// Failed connects, dropped sockets and failed polls, by kind.
    pub failures: BTreeMap<String, u64>,
}

impl DeviceOutcome {
    fn new(log: DeviceLog) -> Self {
        Self {
            log,
            connections: 0,
            failures: BTreeMap::new(),
        }
    }

    fn fail(&mut self, why: impl Into<String>) {
        *self.failures.entry(why.into()).or_default() += 1;
    }

    /// Records a message; returns its id, which the cursor follows.
    fn take(&mut self, message: &Value) -> Option<i64> {
        let Some(msg) = Msg::parse(message) else {
            self.fail("unreadable message");
            return None;
        };
        let id = msg.id;
        self.log.received.push(msg);
        Some(id)
    }
}

/// Exponential backoff from 100 ms up to 2 s, each wait drawn from its upper half: many
/// devices dropped by one node's death do not all come back in the same instant.
pub fn backoff(attempt: u32) -> Duration {
    let ceiling = Duration::from_millis(100 << attempt.min(4)).min(Duration::from_secs(2));
    ceiling.mul_f64(rand::thread_rng().gen_range(0.5..1.0))
}

fn draining(phase: &watch::Receiver<Phase>) -> bool {
    *phase.borrow() == Phase::Drain
}

/// A WebSocket device on `ws_url` (the balancer) until the drain finds it connected and
/// quiet.
pub async fn websocket(
    ws_url: String,
    token: String,
    log: DeviceLog,
    phase: watch::Receiver<Phase>,
) -> DeviceOutcome {
    let mut device = DeviceOutcome::new(log);
    let mut cursor = 0_i64;
    let mut attempt = 0_u32;
    loop {
        let ws = match connect(&ws_url, &token).await {
            Ok(ws) => ws,
            Err(why) => {
                device.fail(format!("connect: {why}"));
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                continue;
            }
        };
        attempt = 0;
        if device.connections > 0 {
            device.log.reconnects.push(device.log.received.len());
        }
        device.connections += 1;
        match listen(ws, &mut device, &mut cursor, &phase).await {
            Ended::Drained => return device,
            Ended::Dropped(why) => {
                device.fail(why);
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
    }
}

enum Ended {
    Drained,
    Dropped(String),
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, token: &str) -> Result<Socket, String> {
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?;
    request.headers_mut().insert(AUTHORIZATION, bearer);
    let (ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// One connection: `sync` from the cursor, then record every `message` frame until the
/// socket drops or, while draining, falls quiet.
async fn listen(
    mut ws: Socket,
    device: &mut DeviceOutcome,
    cursor: &mut i64,
    phase: &watch::Receiver<Phase>,
) -> Ended {
    let sync = json!({"type": "sync", "since": cursor.to_string()}).to_string();
    if let Err(e) = ws.send(Message::Text(sync.into())).await {
        return Ended::Dropped(format!("sync not sent: {e}"));
    }
    loop {
        let frame = match tokio::time::timeout(QUIET, ws.next()).await {
            Err(_) if draining(phase) => return Ended::Drained,
            Err(_) => continue,
            Ok(frame) => frame,
        };
        match frame {
            Some(Ok(Message::Text(text))) => {
                let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                    device.fail("unparsable frame");
                    continue;
                };
                match frame["type"].as_str() {
                    Some("message") => {
                        if let Some(id) = device.take(&frame["message"]) {
                            *cursor = (*cursor).max(id);
                        }
                    }
                    Some("error") => device.fail(format!("error frame {}", frame["code"])),
                    _ => {}
                }
            }
            Some(Ok(Message::Close(_))) | None => return Ended::Dropped("socket closed".into()),
            Some(Ok(_)) => {}
            Some(Err(_)) => return Ended::Dropped("socket error".into()),
        }
    }
}

/// A long-poll device through `base` (the balancer): a different node may answer each
/// poll. Done once a poll while draining comes back empty.
pub async fn long_poll(
    http: reqwest::Client,
    base: String,
    token: String,
    log: DeviceLog,
    phase: watch::Receiver<Phase>,
) -> DeviceOutcome {
    let mut device = DeviceOutcome::new(log);
    let url = format!("{base}/v1/chat/sync");
    let mut cursor = "0".to_string();
    let mut attempt = 0_u32;
    loop {
        let was_draining = draining(&phase);
        let body = match poll(&http, &url, &token, &cursor).await {
            Ok(body) => body,
            Err(why) => {
                device.fail(why);
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                continue;
            }
        };
        attempt = 0;
        device.connections += 1;
        let messages = body["messages"].as_array().map_or(&[][..], Vec::as_slice);
        for message in messages {
            device.take(message);
        }
        match body["cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => device.fail("answer without a cursor"),
        }
        if messages.is_empty() && was_draining {
            return device;
        }
    }
}

async fn poll(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    since: &str,
) -> Result<Value, String> {
    let resp = http
        .get(url)
        .query(&[("since", since), ("timeout", POLL_WAIT_SECS)])
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| request_error(&e))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(format!("HTTP {}", resp.status().as_u16()));
    }
    resp.json().await.map_err(|e| request_error(&e))
}

/// A short name for a failed request, for the tallies.
pub fn request_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect error".into()
    } else if e.is_decode() {
        "unreadable body".into()
    } else {
        "request error".into()
    }
}
