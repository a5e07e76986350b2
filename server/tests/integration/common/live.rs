//! Live connections for tests of presence, notifications, typing and read receipts: a
//! WebSocket client that keeps the frames it has not been asked for yet, a fence that
//! proves a frame was *not* sent (without sleeping), and the manual clock of presence.
//!
//! Why a fence works: every wake-up reaches a user's sockets through the user's topic, in
//! the order it was published (one inbox per subscription on the node, and on Redis one
//! channel for every wake-up of the namespace), and each connection forwards its wake-ups
//! in order. A read receipt the user posts in a
//! group of their own is published after everything the test did before, so a frame that
//! has not arrived by the time the receipt does was never sent.

use super::{TestApp, TestUser};
use anyhow::{anyhow, Context as _, Result};
use futures::{SinkExt, StreamExt};
use kith::state::Clock as _;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::{collections::VecDeque, time::Duration};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{client::IntoClientRequest, http::HeaderValue, Message},
    MaybeTlsStream, WebSocketStream,
};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// The presence timeout the presence tests configure (`KITH_PRESENCE_TIMEOUT_SECS`).
pub const TIMEOUT_SECS: i64 = 30;
pub const TIMEOUT_MS: i64 = TIMEOUT_SECS * 1000;

/// How long a test waits for a frame or a record it expects.
pub const WAIT: Duration = Duration::from_secs(10);

/// The environment of a node whose presence timeout is [`TIMEOUT_SECS`].
pub fn presence_env() -> Vec<(&'static str, String)> {
    vec![("KITH_PRESENCE_TIMEOUT_SECS", TIMEOUT_SECS.to_string())]
}

/// One WebSocket of one user.
pub struct Socket {
    ws: Ws,
    /// Frames received while waiting for another one, oldest first.
    backlog: VecDeque<Value>,
    user: TestUser,
    /// A group with only this user in it, created by the first [`Socket::fence`]: a read
    /// receipt there reaches this user's sockets and nobody else's.
    notes: Option<String>,
}

impl Socket {
    /// Opens a socket for `user` and waits until the server has taken it in (subscribed to
    /// the user's wake-ups, recorded their presence).
    pub async fn open(app: &TestApp, user: &TestUser) -> Result<Self> {
        let mut req = format!("ws://127.0.0.1:{}/v1/chat/ws", app.port).into_client_request()?;
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {}", user.token))?,
        );
        let mut socket = Self {
            ws: connect_async(req).await?.0,
            backlog: VecDeque::new(),
            user: user.clone(),
            notes: None,
        };
        socket.round_trip().await?;
        Ok(socket)
    }

    pub async fn send(&mut self, frame: Value) -> Result<()> {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await?;
        Ok(())
    }

    /// Waits until the server has handled every frame sent so far. The server answers a
    /// second `auth` frame with an error and nothing else, and handles a connection's frames
    /// in order, so its answer comes back after everything sent before it was done.
    pub async fn round_trip(&mut self) -> Result<()> {
        self.send(json!({"type": "auth", "token": "again"})).await?;
        self.next_where("the answer to a second auth frame", |f| {
            f["type"] == "error" && f["message"] == "already authenticated"
        })
        .await?;
        Ok(())
    }

    /// A heartbeat, handled by the server when this returns.
    pub async fn heartbeat(&mut self) -> Result<()> {
        self.send(json!({"type": "heartbeat"})).await?;
        self.round_trip().await
    }

    /// The first frame, kept or new, that `matches`; the others are kept. Fails after
    /// [`WAIT`].
    pub async fn next_where(
        &mut self,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        if let Some(at) = self.backlog.iter().position(&matches) {
            return Ok(self.backlog.remove(at).unwrap_or_default());
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let frame = self.next_frame(deadline).await.with_context(|| {
                format!(
                    "{}: waiting for {what}; received meanwhile: {:?}",
                    self.user.username, self.backlog
                )
            })?;
            if matches(&frame) {
                return Ok(frame);
            }
            self.backlog.push_back(frame);
        }
    }

    /// Every frame this socket received up to now, kept ones included: ends at a fence (a
    /// read receipt of this socket's user in their own group, posted over HTTP), so any
    /// frame published before this call is in the answer.
    pub async fn fence(&mut self, app: &TestApp) -> Result<Vec<Value>> {
        let notes = match &self.notes {
            Some(id) => id.clone(),
            None => {
                let id = app.group(&self.user, "notes", &[]).await?;
                self.notes = Some(id.clone());
                id
            }
        };
        let resp = app
            .post_json(
                &format!("/v1/chat/channels/{notes}/read"),
                &json!({"message_id": "1"}),
                Some(&self.user.token),
            )
            .await?;
        if resp.status() != StatusCode::NO_CONTENT {
            return Err(anyhow!("fence: {} {}", resp.status(), resp.text().await?));
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut seen: Vec<Value> = self.backlog.drain(..).collect();
        let is_fence = |f: &Value| f["type"] == "read" && f["channel_id"] == notes.as_str();
        // A fence of an earlier call may still be kept; only a new one counts.
        seen.retain(|f| !is_fence(f));
        loop {
            let frame = self
                .next_frame(deadline)
                .await
                .with_context(|| format!("{}: waiting for a fence", self.user.username))?;
            if is_fence(&frame) {
                return Ok(seen);
            }
            seen.push(frame);
        }
    }

    /// Closes the socket (the server sees the client leave).
    pub async fn close(mut self) -> Result<()> {
        self.ws.close(None).await?;
        // Read until the server's close answer so the connection is really gone.
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(frame)) = self.ws.next().await {
                if matches!(frame, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
        Ok(())
    }

    /// Waits for the server to close the socket; fails unless it closes with `code`.
    pub async fn closed_with(mut self, code: u16) -> Result<()> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| anyhow!("not closed within {WAIT:?}"))?;
            match frame {
                Some(Ok(Message::Close(Some(frame)))) => {
                    let got = u16::from(frame.code);
                    return if got == code {
                        Ok(())
                    } else {
                        Err(anyhow!("closed with {got}, not {code}"))
                    };
                }
                Some(Ok(_)) => {}
                other => return Err(anyhow!("ended without a close frame: {other:?}")),
            }
        }
    }

    async fn next_frame(&mut self, deadline: tokio::time::Instant) -> Result<Value> {
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| anyhow!("no frame within {WAIT:?}"))?
                .context("socket closed")??;
            match frame {
                Message::Text(t) => return Ok(serde_json::from_str(t.as_str())?),
                Message::Close(c) => return Err(anyhow!("closed: {c:?}")),
                _ => {}
            }
        }
    }
}

/// Matches a `presence` frame about `user` with `status`.
pub fn presence_frame<'a>(user: &'a TestUser, status: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |f| f["type"] == "presence" && f["user_id"] == user.id.as_str() && f["status"] == status
}

/// Milliseconds since the epoch of an RFC 3339 timestamp in a JSON answer.
pub fn millis(v: &Value) -> Result<i64> {
    let text = v
        .as_str()
        .with_context(|| format!("not a timestamp: {v}"))?;
    Ok(chrono::DateTime::parse_from_rfc3339(text)?.timestamp_millis())
}

/// A JSON string field, or "".
pub fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// Polls `probe` until it yields a value, for at most [`WAIT`]: for work the server does
/// off the request path (spawned tasks, fanout workers). It checks a condition; it does not
/// sleep for a fixed time.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(found) = probe().await? {
            return Ok(found);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(anyhow!("{what}: not within {WAIT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Lets `ms` of presence time pass on `nodes` (one node, or several of one cluster with
/// clocks in step), in steps shorter than the timeout, keeping `awake` heartbeating: each
/// step runs a presence round on every node (recording the activity of the moment it
/// happened), moves the clocks, heartbeats, and runs a round on `nodes[0]`, which then
/// expires whoever has been silent for longer than the timeout and announces it.
pub async fn pass_time(nodes: &[&TestApp], ms: i64, awake: &mut [&mut Socket]) -> Result<()> {
    let mut left = ms;
    while left > 0 {
        let step = left.min(TIMEOUT_MS / 3);
        for node in nodes {
            node.presence_round().await?;
        }
        for node in nodes {
            node.manual_clock()?.advance(step);
        }
        for socket in awake.iter_mut() {
            socket.heartbeat().await?;
        }
        nodes[0].presence_round().await?;
        left -= step;
    }
    Ok(())
}

/// Sets the manual clocks of two nodes of one cluster to the later of their times, so
/// that the cluster has one time.
pub fn clocks_in_step(a: &TestApp, b: &TestApp) -> Result<()> {
    let (ta, tb) = (a.now_ms()?, b.now_ms()?);
    a.manual_clock()?.advance((tb - ta).max(0));
    b.manual_clock()?.advance((ta - tb).max(0));
    Ok(())
}

impl TestApp {
    /// The node's manual clock (spawned with `manual_clock: true`).
    pub fn manual_clock(&self) -> Result<&kith::state::ManualClock> {
        self.clock
            .as_deref()
            .context("this node was spawned without a manual clock")
    }

    /// The node's time, in Unix milliseconds.
    pub fn now_ms(&self) -> Result<i64> {
        Ok(self.manual_clock()?.now_ms())
    }

    /// One round of the presence server, as its timer would run it.
    pub async fn presence_round(&self) -> Result<()> {
        kith::presence::tick(&self.state).await?;
        Ok(())
    }

    /// Makes `a` and `b` friends (mutual follows).
    pub async fn befriend(&self, a: &TestUser, b: &TestUser) -> Result<()> {
        self.follow(a, &b.username).await?;
        self.follow(b, &a.username).await
    }

    /// Creates a group of `creator` and `members` (usernames); returns its id.
    pub async fn group(&self, creator: &TestUser, name: &str, members: &[&str]) -> Result<String> {
        let resp = self
            .post_json(
                "/v1/chat/groups",
                &json!({"name": name, "members": members}),
                Some(&creator.token),
            )
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(anyhow!("group: {} {}", resp.status(), resp.text().await?));
        }
        Ok(text(&resp.json::<Value>().await?, "id").to_string())
    }

    /// The 1:1 channel of `a` and `b`; returns its id.
    pub async fn dm(&self, a: &TestUser, b: &TestUser) -> Result<String> {
        let resp = self
            .post_json(
                &format!("/v1/chat/dm/{}", b.username),
                &json!(null),
                Some(&a.token),
            )
            .await?;
        if resp.status() != StatusCode::OK {
            return Err(anyhow!("dm: {} {}", resp.status(), resp.text().await?));
        }
        Ok(text(&resp.json::<Value>().await?, "id").to_string())
    }

    /// Sends a message over HTTP; returns it.
    pub async fn say(&self, from: &TestUser, channel: &str, content: &str) -> Result<Value> {
        let resp = self
            .post_json(
                &format!("/v1/chat/channels/{channel}/messages"),
                &json!({"content": content, "client_msg_id": format!("c-{}", super::rand_u64())}),
                Some(&from.token),
            )
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(anyhow!("send: {} {}", resp.status(), resp.text().await?));
        }
        Ok(resp.json().await?)
    }

    /// A second session of `user` (another device).
    pub async fn login(&self, user: &TestUser) -> Result<TestUser> {
        let resp = self
            .post_json(
                "/v1/auth/login",
                &json!({"username": user.username, "password": user.password}),
                None,
            )
            .await?;
        if resp.status() != StatusCode::OK {
            return Err(anyhow!("login: {} {}", resp.status(), resp.text().await?));
        }
        Ok(TestUser {
            token: text(&resp.json::<Value>().await?, "token").to_string(),
            ..user.clone()
        })
    }

    /// `GET /v1/chat/sync` of `user` from `since`, waiting up to `timeout` seconds.
    pub async fn sync(&self, user: &TestUser, since: &str, timeout: u64) -> Result<Value> {
        let resp = self
            .get(
                &format!("/v1/chat/sync?since={since}&timeout={timeout}"),
                Some(&user.token),
            )
            .await?;
        if resp.status() != StatusCode::OK {
            return Err(anyhow!("sync: {} {}", resp.status(), resp.text().await?));
        }
        Ok(resp.json().await?)
    }

    /// Starts a long poll of `user` and waits until the server holds it (registered its
    /// wake-up and found nothing new), so whatever happens next ends it.
    pub async fn waiting_sync(
        &self,
        user: &TestUser,
        since: &str,
        timeout: u64,
    ) -> Result<tokio::task::JoinHandle<Result<Value>>> {
        use std::sync::atomic::Ordering;
        let waiters = || self.state.metrics.longpoll_waiters.load(Ordering::Relaxed);
        let before = waiters();
        let (client, url, token) = (
            self.client.clone(),
            self.url(&format!("/v1/chat/sync?since={since}&timeout={timeout}")),
            user.token.clone(),
        );
        let poll = tokio::spawn(async move {
            let resp = client.get(url).bearer_auth(token).send().await?;
            if resp.status() != StatusCode::OK {
                return Err(anyhow!("sync: {} {}", resp.status(), resp.text().await?));
            }
            Ok(resp.json::<Value>().await?)
        });
        eventually("the long poll to wait", || async {
            Ok((waiters() > before).then_some(()))
        })
        .await?;
        Ok(poll)
    }

    /// `GET /v1/presence` of one user, asked by `asker`: the item.
    pub async fn presence_of(&self, asker: &TestUser, user: &TestUser) -> Result<Value> {
        let resp = self
            .get(
                &format!("/v1/presence?user={}", user.username),
                Some(&asker.token),
            )
            .await?;
        if resp.status() != StatusCode::OK {
            return Err(anyhow!(
                "presence: {} {}",
                resp.status(),
                resp.text().await?
            ));
        }
        let body: Value = resp.json().await?;
        let item = body["items"][0].clone();
        assert_eq!(item["user_id"], user.id.as_str(), "{body}");
        Ok(item)
    }

    /// `unread_count` of `channel` in `user`'s conversation list.
    pub async fn unread_in(&self, user: &TestUser, channel: &str) -> Result<i64> {
        let list: Value = self
            .get("/v1/chat/channels", Some(&user.token))
            .await?
            .json()
            .await?;
        list["items"]
            .as_array()
            .and_then(|items| items.iter().find(|c| c["id"] == channel))
            .and_then(|c| c["unread_count"].as_i64())
            .with_context(|| format!("channel {channel} not in {list}"))
    }
}
