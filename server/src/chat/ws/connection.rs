//! An authenticated connection: its state ([`Conn`]) and its loop, which multiplexes the
//! client's frames, wake-ups from pub/sub, pings, the write deadline and the node's
//! shutdown on one task, and writes what is queued whenever the socket takes it.

use super::{
    close, close_frame, frame_text, FIRST_SYNC_WAIT, HEARTBEAT, IDLE_TIMEOUT, OUTBOUND_KEPT,
    OUTBOUND_QUEUE, PING_EVERY, WRITE_TIMEOUT,
};
use crate::{chat::delivered::Delivered, state::AppState};
use app::{
    model::{ErrorCode, User},
    protocol::ServerFrame,
};
use axum::extract::ws::Message as WsMessage;
use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt};
use std::{
    collections::VecDeque,
    pin::Pin,
    sync::atomic::Ordering,
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    sync::broadcast::error::RecvError,
    time::{timeout, Instant},
};

/// What a connection runs on: axum's WebSocket, or anything else that carries its messages
/// both ways (the tests drive the loop through an in-memory pair).
pub trait Socket:
    Stream<Item = Result<WsMessage, axum::Error>>
    + Sink<WsMessage, Error = axum::Error>
    + Unpin
    + Send
    + 'static
{
}

impl<T> Socket for T where
    T: Stream<Item = Result<WsMessage, axum::Error>>
        + Sink<WsMessage, Error = axum::Error>
        + Unpin
        + Send
        + 'static
{
}

/// Why a connection ends.
pub(super) enum End {
    Close(u16, &'static str),
    Gone,
}

/// One connection's state.
pub(super) struct Conn<S> {
    pub(super) state: AppState,
    pub(super) user: User,
    /// The session's token hash, to recognise its revocation (kept raw: 32 bytes in place
    /// rather than a heap string per connection).
    pub(super) token_hash: [u8; 32],
    /// Identifies this connection in wake-ups it caused itself.
    pub(super) id: u64,
    /// The socket, read and written by this task alone (no split halves and their lock).
    pub(super) socket: S,
    /// Frames waiting for the socket (at most `OUTBOUND_QUEUE`).
    pub(super) outbound: VecDeque<WsMessage>,
    /// Since when queued frames have been waiting for the socket to take them.
    pub(super) blocked_since: Option<Instant>,
    /// The messages handed to the client: where a catch-up resumes, and the recent ids
    /// not to send twice (a wake-up that a sync or catch-up overtook, or one that arrives
    /// again after a catch-up).
    pub(super) delivered: Delivered,
    /// Whether the client has sent a `sync` on this connection (see [`Conn::sync`]).
    pub(super) synced: bool,
    /// Live messages held back until the client's first `sync` (or [`FIRST_SYNC_WAIT`]);
    /// `None` once released.
    pub(super) held: Option<Box<Held>>,
    /// GCRA state of the per-connection frame limit.
    pub(super) tat: Option<i64>,
}

/// Live messages a new connection holds back for its first `sync`.
pub(super) struct Held {
    pub(super) until: Instant,
    pub(super) wakes: Vec<Bytes>,
    /// Wake-ups were lost meanwhile (a gap, a lagged inbox).
    pub(super) lost: bool,
}

/// What the socket had for the connection loop.
pub(super) enum Io {
    /// A frame from the client, the end of its stream, or a read error.
    Frame(Option<Result<WsMessage, axum::Error>>),
    /// Writing failed: the peer is gone.
    WriteFailed,
}

/// Serves an authenticated connection of `user` (whose session `token` is) on `socket`
/// until it ends, and closes it.
///
/// `held` lives as long as the connection (the open-socket gauge, the slots it takes).
/// The hub spawns this as a task of its own rather than awaiting it in the upgrade's:
/// a future awaiting another keeps room for the arguments it passed on, the socket among
/// them, for the whole life of the connection.
pub async fn serve<S: Socket, H: Send + 'static>(
    state: AppState,
    mut socket: S,
    user: User,
    token: String,
    held: H,
) {
    let _held = held;
    let mut wake = match Box::pin(
        state
            .backends
            .pubsub
            .subscribe(&crate::live::topic(user.id.0)),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot subscribe a connection");
            let _ = timeout(
                WRITE_TIMEOUT,
                socket.send(close_frame(close::TRY_AGAIN_LATER, "try again later")),
            )
            .await;
            return;
        }
    };
    // Subscribed: every message committed from now on reaches this connection live (or as
    // a lost wake-up that a catch-up reads from here on).
    let delivered = Delivered::opened_at(crate::storage::now_ms());
    Box::pin(crate::presence::activity(&state, user.id.0)).await;
    let mut conn = Conn {
        token_hash: crate::auth::token::hash(&token),
        state,
        user,
        id: rand::random::<u64>() | 1,
        socket,
        outbound: VecDeque::new(),
        blocked_since: None,
        delivered,
        synced: false,
        held: Some(Box::new(Held {
            until: Instant::now() + FIRST_SYNC_WAIT,
            wakes: Vec::new(),
            lost: false,
        })),
        tat: None,
    };
    drop(token);
    // The futures that wait across many wake-ups live outside the loop: re-creating them on
    // every frame would unlink and relink this connection in lists shared with the other
    // connections (the shutdown signal's waiters), which is most of an idle wake-up's cost.
    let mut shutdown = conn.state.shutdown.clone();
    let shutdown = async move {
        let _ = shutdown.changed().await;
    };
    tokio::pin!(shutdown);
    let ping = tokio::time::sleep(PING_EVERY);
    tokio::pin!(ping);
    let mut last_heard = Instant::now();

    let end = loop {
        // What the last turn queued usually goes out right here, so the write deadline
        // below is armed only for frames the socket could not take.
        if let Err(end) = conn.flush_now() {
            break end;
        }
        // Unflushed frames count as queued too: the socket has not taken them yet.
        let write_deadline = conn.blocked_since.map(|since| since + WRITE_TIMEOUT);
        let hold_deadline = conn.held.as_ref().map(|held| held.until);
        tokio::select! {
            biased;
            () = &mut shutdown => break End::Close(close::RESTARTING, "server restarting; reconnect"),
            io = futures::future::poll_fn(|cx| conn.poll_io(cx)) => {
                last_heard = Instant::now();
                match io {
                    Io::WriteFailed | Io::Frame(None) | Io::Frame(Some(Ok(WsMessage::Close(_)))) => break End::Gone,
                    Io::Frame(Some(Err(e))) => break read_failed(e),
                    Io::Frame(Some(Ok(WsMessage::Text(text)))) => {
                        let result = if text.as_str() == HEARTBEAT {
                            conn.heartbeat().await
                        } else {
                            // Boxed, like every large await below: a future is as big as
                            // its largest state, and an idle connection should not carry
                            // the room a send needs while it waits for the next frame.
                            Box::pin(conn.client_frame(text.as_str())).await
                        };
                        if let Err(end) = result {
                            break end;
                        }
                    }
                    Io::Frame(Some(Ok(WsMessage::Binary(_)))) => {
                        if let Err(end) = conn.push(frame_text(&ServerFrame::error(ErrorCode::InvalidRequest, "binary frames are not supported; send JSON text", None))) {
                            break end;
                        }
                    }
                    Io::Frame(Some(Ok(_))) => {}
                }
            }
            // Armed only while frames wait for the socket: the client stopped reading.
            () = async { tokio::time::sleep_until(write_deadline.unwrap_or_else(Instant::now)).await }, if write_deadline.is_some() => {
                // The deadline was computed before this select; the socket may have taken
                // frames since.
                if conn.blocked_since.is_some_and(|since| since.elapsed() >= WRITE_TIMEOUT) {
                    break End::Close(close::TRY_AGAIN_LATER, "too slow; reconnect and sync");
                }
            }
            // The client did not sync in time: what was held back goes out now.
            () = async { tokio::time::sleep_until(hold_deadline.unwrap_or_else(Instant::now)).await }, if hold_deadline.is_some() => {
                let result = match conn.release_held(false) {
                    Ok(true) => Box::pin(conn.catch_up()).await,
                    Ok(false) => Ok(()),
                    Err(end) => Err(end),
                };
                if let Err(end) = result {
                    break end;
                }
            }
            woke = wake.recv() => {
                // Whether wake-ups were dropped, before this one or among those behind it.
                let lagged = match woke {
                    Ok(payload) => conn.wake_buffered(payload, &mut wake),
                    Err(RecvError::Lagged(_)) => Ok(true),
                    Err(RecvError::Closed) => Err(End::Close(close::RESTARTING, "reconnect")),
                };
                let result = match lagged {
                    Ok(false) => Ok(()),
                    // Before the first sync, which reads from the client's cursor: it
                    // covers what was lost, and a catch-up now would read from a guess.
                    Ok(true) if conn.defer_catch_up() => Ok(()),
                    // Dropped wake-ups: catch up from the database.
                    Ok(true) => match conn.skip_buffered(&mut wake) {
                        Ok(()) => Box::pin(conn.catch_up()).await,
                        Err(end) => Err(end),
                    },
                    Err(end) => Err(end),
                };
                if let Err(end) = result {
                    break end;
                }
            }
            () = &mut ping => {
                if last_heard.elapsed() > IDLE_TIMEOUT {
                    break End::Close(close::GOING_AWAY, "idle");
                }
                ping.as_mut().reset(Instant::now() + PING_EVERY);
                if let Err(end) = conn.push(WsMessage::Ping(Bytes::new())) {
                    break end;
                }
            }
        }
    };
    if let End::Close(code, reason) = end {
        if code == close::TRY_AGAIN_LATER {
            conn.state
                .metrics
                .slow_consumers
                .fetch_add(1, Ordering::Relaxed);
        }
        // The close jumps ahead of queued frames (a slow consumer's queue is full).
        conn.outbound.clear();
        let _ = timeout(
            Duration::from_secs(1),
            conn.socket.send(close_frame(code, reason)),
        )
        .await;
    }
    let _ = timeout(Duration::from_secs(1), conn.socket.close()).await;
}

/// How a connection whose read failed ends: a message over the size limit, and text that
/// is not UTF-8, get the close code that says so; anything else means the peer is gone.
fn read_failed(e: axum::Error) -> End {
    match e.into_inner().downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => {
            End::Close(close::TOO_BIG, "message too big (64 KiB at most)")
        }
        Some(tungstenite::Error::Utf8(_)) => {
            End::Close(close::INVALID_DATA, "text frames must be UTF-8")
        }
        _ => End::Gone,
    }
}

impl<S: Socket> Conn<S> {
    /// Hands queued frames to the socket as far as it takes them, then flushes. A frame
    /// leaves the queue only together with its hand-over, so dropping this poll loses
    /// nothing. `blocked_since` restarts whenever the socket takes a frame, and clears once
    /// all is out.
    pub(super) fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        while !self.outbound.is_empty() {
            match Pin::new(&mut self.socket).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            if let Some(frame) = self.outbound.pop_front() {
                Pin::new(&mut self.socket).start_send(frame)?;
                self.blocked_since = Some(Instant::now());
            }
        }
        if self.outbound.capacity() > OUTBOUND_KEPT {
            self.outbound.shrink_to(OUTBOUND_KEPT);
        }
        let flushed = Pin::new(&mut self.socket).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            self.blocked_since = None;
        }
        flushed
    }

    /// Writes what is queued (when anything is) and reads the next frame: one poll for both
    /// directions of the one socket.
    pub(super) fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<Io> {
        if self.blocked_since.is_some() {
            if let Poll::Ready(Err(_)) = self.poll_write(cx) {
                return Poll::Ready(Io::WriteFailed);
            }
        }
        self.socket.poll_next_unpin(cx).map(Io::Frame)
    }

    /// Hands queued frames to the socket if it takes them without waiting. (Polled with a
    /// no-op waker: if the socket is full, the loop's next poll registers the real one.)
    pub(super) fn flush_now(&mut self) -> Result<(), End> {
        if self.blocked_since.is_none() {
            return Ok(());
        }
        let attempt = futures::future::poll_fn(|cx| self.poll_write(cx));
        match futures::FutureExt::now_or_never(attempt) {
            Some(Err(_)) => Err(End::Gone),
            Some(Ok(())) | None => Ok(()),
        }
    }

    /// Queues a frame; a full queue means the client is not keeping up.
    pub(super) fn push(&mut self, frame: WsMessage) -> Result<(), End> {
        if self.outbound.len() >= OUTBOUND_QUEUE {
            return Err(End::Close(
                close::TRY_AGAIN_LATER,
                "too slow; reconnect and sync",
            ));
        }
        if self.blocked_since.is_none() {
            self.blocked_since = Some(Instant::now());
        }
        self.outbound.push_back(frame);
        Ok(())
    }

    /// Writes out every queued frame (the client asked for them and is reading: waiting
    /// for room is right, not treating a large catch-up as a slow consumer).
    pub(super) async fn drain(&mut self) -> Result<(), End> {
        match timeout(
            WRITE_TIMEOUT,
            futures::future::poll_fn(|cx| self.poll_write(cx)),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(End::Close(
                close::TRY_AGAIN_LATER,
                "too slow; reconnect and sync",
            )),
        }
    }
}
