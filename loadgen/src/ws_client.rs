//! The chat clients: WebSocket connections (one task each), the recorder every received
//! frame reports to, and the open-loop pacer that decides when messages (or heartbeats)
//! are sent.
//!
//! Two dialects: Kith's own (`/v1/chat/ws`, a bearer token, JSON frames) and Socket.IO v5
//! over WebSocket (the Engine.IO open packet `0{…}`, a connect `40{auth}` answered by
//! `40{…}`, events `42["msg",{…}]`, acks `43<id>[…]`, the server's ping `2` answered with
//! `3`), which `loadgen versus` speaks to the peer it measures Kith against.
//!
//! Latency needs no correlation table: a message's content carries its send time
//! (`lg <ns since the run's epoch> …`), and sender and receivers share this process's
//! monotonic clock, so whoever receives it (a WebSocket member, a long-poll client, the
//! sender's own `ack`) subtracts. Frames are classified by substring rather than parsed:
//! at 100,000 deliveries a second on one core, a full JSON parse per frame would make the
//! client the bottleneck.

use crate::error::Error;
use futures_util::{SinkExt as _, StreamExt as _};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};
use tokio::{net::TcpStream, sync::mpsc};
use tokio_tungstenite::{
    connect_async_with_config,
    tungstenite::{
        client::IntoClientRequest as _,
        http::{header::AUTHORIZATION, HeaderValue},
        protocol::WebSocketConfig,
        Message,
    },
    MaybeTlsStream, WebSocketStream,
};

/// Which protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Kith's chat WebSocket: the credential is a session token, sent as a bearer token.
    Kith,
    /// Socket.IO v5 over WebSocket: the credential is the connect packet's auth payload
    /// (JSON); a message into channel `c` is the event `msg` `{"to":"c",…}` with an ack.
    SocketIo,
}

/// Messages a connection's pacer may queue before it counts as not keeping up.
const OUTBOX: usize = 64;
/// Connections opened at once: enough to keep the server's accept path busy, few enough
/// that a slow upgrade shows as a slow ramp rather than as timeouts.
const CONNECT_CONCURRENCY: usize = 32;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The marker that starts every load message's content.
const STAMP: &str = "lg ";

/// Locks a mutex that a panicking holder may have poisoned: the recorder's counters are
/// plain numbers, still meaningful after a panic elsewhere.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one phase saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Send→receive latencies (ns) of message deliveries stamped since the phase began.
    pub latencies: Vec<u64>,
    /// Deliveries received while the window was open, whatever their stamp.
    pub received_in_window: u64,
    /// Send→ack latencies (ns) of acks stamped since the phase began.
    pub acks: Vec<u64>,
    /// Acks received while the window was open, whatever their stamp.
    pub acked_in_window: u64,
    /// `error` frames (by code) and failed HTTP sends (by status).
    pub errors: BTreeMap<String, u64>,
    /// Connections that ended without being asked to, by close code or error.
    pub disconnects: BTreeMap<String, u64>,
    /// `presence` frames, in order of arrival (whatever the window: they are rare).
    pub presence: Vec<PresenceSeen>,
}

/// One `presence` frame as a client received it.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceSeen {
    /// Whose presence changed.
    pub user_id: i64,
    pub online: bool,
    /// When it arrived, on the recorder's clock (ns).
    pub at_ns: u64,
    /// The frame's `last_active_at`, ms since the Unix epoch (`None` if null or unreadable).
    pub last_active_ms: Option<i64>,
}

impl PresenceSeen {
    /// Reads a frame `{"type":"presence","user_id","status","last_active_at"}`.
    fn parse(text: &str, at_ns: u64) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        // Ids travel as strings (they exceed JavaScript's integers); accept numbers too.
        let user_id = match v.get("user_id")? {
            serde_json::Value::String(s) => s.parse().ok()?,
            n => n.as_i64()?,
        };
        let online = match v.get("status")?.as_str()? {
            "online" => true,
            "offline" => false,
            _ => return None,
        };
        let last_active_ms = v
            .get("last_active_at")
            .and_then(|t| t.as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis());
        Some(Self {
            user_id,
            online,
            at_ns,
            last_active_ms,
        })
    }
}

#[derive(Default)]
struct State {
    /// The phase's window (ns): a delivery *received* in [start, end) counts towards its
    /// throughput; a message *stamped* at or after start (until `take`) is the phase's own,
    /// even if its connection wrote it a moment after the pacer stopped at `end`.
    window: (u64, u64),
    tally: Tally,
    /// Deliveries and acks seen since the run began, for drain detection.
    frames_total: u64,
}

/// Where every client reports what it received.
pub struct Recorder {
    epoch: Instant,
    state: Mutex<State>,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            state: Mutex::new(State::default()),
        })
    }

    /// Nanoseconds since the recorder's epoch: the clock of every stamp.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The content of a load message sent now.
    pub fn stamped_content(&self, tag: &str) -> String {
        format!(
            "{STAMP}{} {tag}: load message with a sentence or so of text",
            self.now_ns()
        )
    }

    /// Starts a phase: counts messages stamped from now until `duration` from now.
    pub fn begin(&self, duration: Duration) {
        let start = self.now_ns();
        let mut s = lock(&self.state);
        s.window = (start, start + duration.as_nanos() as u64);
        s.tally = Tally::default();
    }

    /// Ends a phase and hands over what it saw.
    pub fn take(&self) -> Tally {
        let mut s = lock(&self.state);
        s.window = (0, 0);
        std::mem::take(&mut s.tally)
    }

    /// Ends a phase and begins the next, of `duration`, at the same instant: nothing that
    /// arrives in between goes uncounted.
    pub fn rotate(&self, duration: Duration) -> Tally {
        let start = self.now_ns();
        let mut s = lock(&self.state);
        s.window = (start, start + duration.as_nanos() as u64);
        std::mem::take(&mut s.tally)
    }

    /// Deliveries and acks so far: when it stops moving, the server has drained.
    pub fn frames_total(&self) -> u64 {
        lock(&self.state).frames_total
    }

    /// A delivered message sent at `stamp` (long-poll, or a WebSocket frame).
    pub fn delivery(&self, stamp: Option<u64>) {
        let now = self.now_ns();
        let mut s = lock(&self.state);
        s.frames_total += 1;
        let (start, end) = s.window;
        if now >= start && now < end {
            s.tally.received_in_window += 1;
        }
        if let Some(sent) = stamp.filter(|t| start > 0 && *t >= start) {
            s.tally.latencies.push(now.saturating_sub(sent));
        }
    }

    /// The sender learnt that its message is stored (`ack` frame, or the POST's 201).
    pub fn ack(&self, stamp: Option<u64>) {
        let now = self.now_ns();
        let mut s = lock(&self.state);
        s.frames_total += 1;
        let (start, end) = s.window;
        if now >= start && now < end {
            s.tally.acked_in_window += 1;
        }
        if let Some(sent) = stamp.filter(|t| start > 0 && *t >= start) {
            s.tally.acks.push(now.saturating_sub(sent));
        }
    }

    pub fn error(&self, kind: String) {
        *lock(&self.state).tally.errors.entry(kind).or_default() += 1;
    }

    fn disconnect(&self, why: String) {
        *lock(&self.state).tally.disconnects.entry(why).or_default() += 1;
    }

    /// Classifies one text frame from the server.
    fn frame(&self, text: &str) {
        if text.contains(r#""type":"message""#) {
            self.delivery(stamp_of(text));
        } else if text.contains(r#""type":"ack""#) {
            self.ack(stamp_of(text));
        } else if text.contains(r#""type":"presence""#) {
            let now = self.now_ns();
            match PresenceSeen::parse(text, now) {
                Some(seen) => lock(&self.state).tally.presence.push(seen),
                None => self.error("unreadable presence frame".into()),
            }
        } else if text.contains(r#""type":"error""#) {
            let code = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.get("code")?.as_str().map(str::to_string))
                .unwrap_or_else(|| "unparsable".into());
            self.error(format!("error frame `{code}`"));
        }
    }
}

/// What a Socket.IO packet asks of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The server's ping: answer `3`.
    Pong,
}

impl Recorder {
    /// Classifies one Socket.IO packet (a WebSocket frame, or one packet of a long-poll
    /// payload): `42["msg",…]` is a delivery, `43<id>[…]` an ack, `2` a ping to answer.
    pub fn socketio_packet(&self, packet: &str) -> Option<Reply> {
        if packet == "2" {
            return Some(Reply::Pong);
        }
        if packet.starts_with("42") {
            self.delivery(stamp_of(packet));
        } else if packet.starts_with("43") {
            self.ack(None);
        } else if packet.starts_with("44") || packet.starts_with('1') {
            let head: String = packet.chars().take(40).collect();
            self.error(format!("Socket.IO packet `{head}`"));
        }
        None
    }
}

/// The send stamp in a frame or message holding a load message's content.
pub fn stamp_of(text: &str) -> Option<u64> {
    let at = text.find(&format!(r#""content":"{STAMP}"#))? + r#""content":""#.len() + STAMP.len();
    let digits = &text[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// What a connection's task is asked to do.
enum Outgoing {
    /// Send a message into `channel` with this `client_msg_id`.
    Send { channel: i64, client_msg_id: String },
    /// Send `{"type":"heartbeat"}`.
    Heartbeat,
    /// Close the connection (a normal end, not counted as a disconnect).
    Close,
}

/// A live connection: its task owns the socket; this handle queues work for it.
#[derive(Clone)]
pub struct Conn {
    tx: mpsc::Sender<Outgoing>,
}

impl Conn {
    /// Queues a message; false if the connection's queue is full or it is gone (the client
    /// is not keeping up, or the server closed it).
    pub fn send(&self, channel: i64, client_msg_id: String) -> bool {
        self.tx
            .try_send(Outgoing::Send {
                channel,
                client_msg_id,
            })
            .is_ok()
    }

    /// Queues a heartbeat; false as for [`Conn::send`].
    pub fn heartbeat(&self) -> bool {
        self.tx.try_send(Outgoing::Heartbeat).is_ok()
    }

    /// Asks the connection to close.
    pub async fn close(&self) {
        let _ = self.tx.send(Outgoing::Close).await;
    }
}

/// Heartbeats every connection once per `every`, spread evenly over the interval, as the
/// browser client does (every 10 s). Without it a connected member falls silent for longer
/// than the presence timeout and counts as offline, and every message to them would also
/// write a notification, which real clients do not cause. Abort the handle to stop.
pub fn keep_present(conns: Vec<Conn>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if conns.is_empty() {
            return;
        }
        let mut tick = tokio::time::interval(every / conns.len() as u32);
        for conn in conns.iter().cycle() {
            tick.tick().await;
            // A full queue means the connection is busy sending, which counts as activity.
            let _ = conn.heartbeat();
        }
    })
}

/// Opens authenticated Kith connections for `tokens`, in order; fails if any cannot connect.
pub async fn open_all(
    url: &str,
    tokens: &[String],
    recorder: &Arc<Recorder>,
) -> Result<Vec<Conn>, Error> {
    open_all_in(Dialect::Kith, url, tokens, recorder).await
}

/// Opens connections speaking `dialect`, one per credential (a session token, or a
/// Socket.IO auth payload), in order; fails if any cannot connect.
pub async fn open_all_in(
    dialect: Dialect,
    url: &str,
    tokens: &[String],
    recorder: &Arc<Recorder>,
) -> Result<Vec<Conn>, Error> {
    let results: Vec<Result<Conn, String>> = futures_util::stream::iter(tokens.iter())
        .map(|token| open(dialect, url, token, recorder.clone()))
        .buffered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    let mut conns = Vec::with_capacity(results.len());
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for r in results {
        match r {
            Ok(c) => conns.push(c),
            Err(e) => *failures.entry(e).or_default() += 1,
        }
    }
    if failures.is_empty() {
        return Ok(conns);
    }
    let text: Vec<String> = failures.iter().map(|(e, n)| format!("{n} × {e}")).collect();
    // Dropping the opened handles ends their tasks, which close their sockets.
    Err(Error::Run(format!(
        "{} of {} WebSocket connections failed: {}",
        failures.values().sum::<usize>(),
        tokens.len(),
        text.join("; ")
    )))
}

async fn open(
    dialect: Dialect,
    url: &str,
    token: &str,
    recorder: Arc<Recorder>,
) -> Result<Conn, String> {
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    if dialect == Dialect::Kith {
        let bearer =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?;
        request.headers_mut().insert(AUTHORIZATION, bearer);
    }
    // Small buffers: 10,000 clients with tungstenite's default 128 KiB read buffer would
    // put a gigabyte on the client's core for nothing.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let ws = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let (mut ws, _) = connect_async_with_config(request, Some(config), true)
            .await
            .map_err(|e| e.to_string())?;
        if dialect == Dialect::SocketIo {
            socketio_connect(&mut ws, token).await?;
        }
        Ok::<_, String>(ws)
    })
    .await
    .map_err(|_| "timed out".to_string())??;
    let (tx, rx) = mpsc::channel(OUTBOX);
    tokio::spawn(drive(dialect, ws, rx, recorder));
    Ok(Conn { tx })
}

/// Socket.IO's handshake on an open WebSocket: the Engine.IO open packet, then a connect
/// to namespace `/` with `auth`, until the server confirms it (`40{…}`) or refuses (`44…`).
async fn socketio_connect(
    ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>,
    auth: &str,
) -> Result<(), String> {
    let mut opened = false;
    while let Some(frame) = ws.next().await {
        let text = match frame.map_err(|e| e.to_string())? {
            Message::Text(text) => text,
            Message::Close(_) => break,
            _ => continue,
        };
        match text.as_str() {
            t if t.starts_with('0') && !opened => {
                opened = true;
                ws.send(Message::Text(format!("40{auth}").into()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            t if t.starts_with("40") => return Ok(()),
            t if t.starts_with("44") => return Err(format!("connect refused: {t}")),
            "2" => ws
                .send(Message::text("3"))
                .await
                .map_err(|e| e.to_string())?,
            _ => {}
        }
    }
    Err("closed during the Socket.IO handshake".into())
}

/// One connection's life: writes what it is asked to send, reports every frame it reads.
/// Reading also answers the server's pings (tungstenite queues the pong and flushes it on
/// the next read), which is what keeps an idle connection within the server's 75 s.
///
/// A Socket.IO connection acknowledges through its ack ids, answers the server's pings,
/// and ignores heartbeat requests: the server's pings are its heartbeat.
async fn drive(
    dialect: Dialect,
    mut ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    mut rx: mpsc::Receiver<Outgoing>,
    recorder: Arc<Recorder>,
) {
    let mut next_ack: u64 = 0;
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Outgoing::Send { channel, client_msg_id }) => {
                    let content = recorder.stamped_content(&client_msg_id);
                    let frame = match dialect {
                        Dialect::Kith => serde_json::json!({
                            "type": "send",
                            "channel_id": channel.to_string(),
                            "client_msg_id": client_msg_id,
                            "content": content,
                        })
                        .to_string(),
                        Dialect::SocketIo => {
                            next_ack += 1;
                            let event = serde_json::json!(["msg", {
                                "to": channel.to_string(),
                                "client_msg_id": client_msg_id,
                                "content": content,
                            }]);
                            format!("42{next_ack}{event}")
                        }
                    };
                    if let Err(e) = ws.send(Message::Text(frame.into())).await {
                        recorder.disconnect(format!("send failed: {e}"));
                        return;
                    }
                }
                Some(Outgoing::Heartbeat) if dialect == Dialect::SocketIo => {}
                Some(Outgoing::Heartbeat) => {
                    if let Err(e) = ws.send(Message::text(r#"{"type":"heartbeat"}"#)).await {
                        recorder.disconnect(format!("send failed: {e}"));
                        return;
                    }
                }
                Some(Outgoing::Close) | None => {
                    let _ = ws.close(None).await;
                    return;
                }
            },
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => match dialect {
                    Dialect::Kith => recorder.frame(text.as_str()),
                    Dialect::SocketIo => {
                        if recorder.socketio_packet(text.as_str()) == Some(Reply::Pong) {
                            if let Err(e) = ws.send(Message::text("3")).await {
                                recorder.disconnect(format!("send failed: {e}"));
                                return;
                            }
                        }
                    }
                },
                Some(Ok(Message::Close(frame))) => {
                    let why = frame.map_or_else(
                        || "close without code".to_string(),
                        |f| format!("close {} ({})", u16::from(f.code), f.reason),
                    );
                    recorder.disconnect(why);
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    recorder.disconnect(format!("read error: {e}"));
                    return;
                }
                None => {
                    recorder.disconnect("connection ended".into());
                    return;
                }
            },
        }
    }
}

/// One long-poll request's answer, read by `read` (`reqwest::Response::json`, or `text`
/// for Engine.IO's payloads); a failure (a status, a timeout, an unreadable body) is
/// counted and answered `None` after a short pause, so a poll loop simply asks again.
pub async fn poll<T, F>(
    recorder: &Recorder,
    request: reqwest::RequestBuilder,
    read: impl FnOnce(reqwest::Response) -> F,
) -> Option<T>
where
    F: std::future::Future<Output = reqwest::Result<T>>,
{
    let failure = match request.send().await {
        Ok(r) if r.status().is_success() => match read(r).await {
            Ok(body) => return Some(body),
            Err(_) => "long-poll: unreadable answer".to_string(),
        },
        Ok(r) => format!("long-poll HTTP {}", r.status().as_u16()),
        Err(e) if e.is_timeout() => "long-poll: timeout".to_string(),
        Err(_) => "long-poll: request error".to_string(),
    };
    recorder.error(failure);
    tokio::time::sleep(Duration::from_millis(100)).await;
    None
}

/// The send stamp of a load message's content (`lg <ns> …`).
pub fn stamp_of_content(content: &str) -> Option<u64> {
    let digits = content.strip_prefix(STAMP)?;
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// Calls `dispatch(n)` for n = 0, 1, … at `rate` per second for `duration`, on a 1 ms
/// grid: open loop, so a slow server gets the same offered load rather than a politely
/// reduced one. Returns how many were dispatched.
pub async fn pace(rate: u32, duration: Duration, mut dispatch: impl FnMut(u64)) -> u64 {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let total = (f64::from(rate) * duration.as_secs_f64()) as u64;
    let mut sent = 0;
    while sent < total {
        tick.tick().await;
        // Due by the clock, not by ticks: a late tick sends the backlog at once.
        let due = ((start.elapsed().as_secs_f64() * f64::from(rate)) as u64).min(total);
        while sent < due {
            dispatch(sent);
            sent += 1;
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_found_in_frames() {
        let frame = r#"{"message":{"channel_id":"3","content":"lg 123456 p1: load","id":"9"},"type":"message"}"#;
        assert_eq!(stamp_of(frame), Some(123_456));
        assert_eq!(stamp_of(r#"{"content":"hello"}"#), None);
        assert_eq!(stamp_of_content("lg 77 p2: load"), Some(77));
        assert_eq!(stamp_of_content("hello"), None);
    }

    #[test]
    fn frames_are_classified_and_windowed() {
        let r = Recorder::new();
        r.begin(Duration::from_secs(60));
        let sent = r.now_ns();
        r.frame(&format!(
            r#"{{"message":{{"content":"lg {sent} x"}},"type":"message"}}"#
        ));
        r.frame(&format!(
            r#"{{"client_msg_id":"x","message":{{"content":"lg {sent} x"}},"type":"ack"}}"#
        ));
        r.frame(r#"{"code":"rate_limited","message":"slow down","type":"error"}"#);
        // Stamped before the window: delivered, but no latency sample.
        r.frame(r#"{"message":{"content":"lg 0 old"},"type":"message"}"#);
        let t = r.take();
        assert_eq!(t.latencies.len(), 1);
        assert_eq!(t.acks.len(), 1);
        assert_eq!(t.received_in_window, 2);
        assert_eq!(t.errors.get("error frame `rate_limited`"), Some(&1));
        assert_eq!(r.frames_total(), 3);
    }

    #[test]
    fn presence_frames_are_recorded() {
        let r = Recorder::new();
        r.frame(r#"{"last_active_at":"2026-11-25T19:01:01.250Z","status":"offline","type":"presence","user_id":"42"}"#);
        r.frame(r#"{"last_active_at":null,"status":"online","type":"presence","user_id":"7"}"#);
        r.frame(r#"{"status":"away","type":"presence","user_id":"7"}"#);
        let t = r.take();
        assert_eq!(t.presence.len(), 2);
        assert_eq!(t.presence[0].user_id, 42);
        assert!(!t.presence[0].online);
        assert_eq!(t.presence[0].last_active_ms, Some(1_795_633_261_250));
        assert!(t.presence[1].online);
        assert_eq!(t.presence[1].last_active_ms, None);
        assert_eq!(t.errors.get("unreadable presence frame"), Some(&1));
        // Presence frames are neither deliveries nor acks.
        assert_eq!(r.frames_total(), 0);
    }

    #[test]
    fn socketio_packets_are_classified() {
        let r = Recorder::new();
        r.begin(Duration::from_secs(60));
        let sent = r.now_ns();
        assert_eq!(r.socketio_packet("2"), Some(Reply::Pong));
        let event =
            format!(r#"42["msg",{{"client_msg_id":"p-1","content":"lg {sent} p-1: x","to":"7"}}]"#);
        assert_eq!(r.socketio_packet(&event), None);
        assert_eq!(r.socketio_packet(r#"431["ok"]"#), None);
        assert_eq!(r.socketio_packet("6"), None);
        assert_eq!(r.socketio_packet(r#"44{"message":"refused"}"#), None);
        let t = r.take();
        assert_eq!(t.latencies.len(), 1);
        assert_eq!(t.errors.len(), 1);
        // The event and the ack; the ping, the noop and the refusal are neither.
        assert_eq!(r.frames_total(), 2);
    }
}
