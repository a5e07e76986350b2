//! What a connection does with what reaches it: a client frame, a wake-up from pub/sub, a
//! `sync`, and the catch-up from the database after lost wake-ups.

use super::{
    close,
    connection::{Conn, End, Socket},
    frame_text, token_hash_b64, wake, FRAME_QUOTA, HOLD_MAX, OUTBOUND_QUEUE, WAKE_BATCH,
};
use crate::{
    backend::{gcra, Decision, GAP},
    chat::service,
    error::AppError,
};
use app::{
    model::ErrorCode,
    protocol::{parse_client_frame, ClientFrame, ServerFrame},
};
use axum::extract::ws::{Message as WsMessage, Utf8Bytes};
use bytes::Bytes;
use std::sync::atomic::Ordering;

impl<S: Socket> Conn<S> {
    pub(super) fn error(&mut self, e: &AppError, client_msg_id: Option<&str>) -> Result<(), End> {
        let (code, message) = match e {
            AppError::Client { code, message } => (*code, message.clone()),
            AppError::RateLimited { .. } => (ErrorCode::RateLimited, "slow down".to_string()),
            AppError::Unavailable(cause) => {
                tracing::warn!(cause = %cause, "chat frame: database unavailable");
                (
                    ErrorCode::Unavailable,
                    "briefly unavailable, retry".to_string(),
                )
            }
            AppError::Internal(cause) => {
                tracing::error!(cause = %cause, "chat frame failed");
                (ErrorCode::Internal, "internal error".to_string())
            }
        };
        self.push(frame_text(&ServerFrame::error(
            code,
            message,
            client_msg_id,
        )))
    }

    /// Hands one wake-up to the client; `true` when it was a message that would open a hole
    /// in its channel's `seq`s and was held back: the caller catches up from the database,
    /// which sends the missing one and this one in order.
    pub(super) fn wake(&mut self, payload: Bytes) -> Result<bool, End> {
        match wake::parse(&payload) {
            Some(wake::Wake::Frame {
                origin,
                message,
                json,
            }) => {
                if origin == self.id {
                    // The sender's own connection has its `ack`.
                    return Ok(false);
                }
                let Ok(text) = Utf8Bytes::try_from(json) else {
                    return Ok(false);
                };
                let Some(placed) = message else {
                    self.push(WsMessage::Text(text))?;
                    return Ok(false);
                };
                if let Some(held) = self.held.as_mut().filter(|h| h.wakes.len() < HOLD_MAX) {
                    held.wakes.push(payload);
                    return Ok(false);
                }
                if self.delivered.has(placed.channel, placed.seq, placed.id) {
                    return Ok(false);
                }
                if !self.delivered.in_order(placed.channel, placed.seq) {
                    return Ok(true);
                }
                // A message a sync or catch-up already sent is not sent again.
                if !self.delivered.record(placed.id) {
                    return Ok(false);
                }
                self.delivered.placed(placed.channel, placed.seq);
                self.push(WsMessage::Text(text))?;
                self.state
                    .metrics
                    .messages_delivered
                    .fetch_add(1, Ordering::Relaxed);
                Ok(false)
            }
            Some(wake::Wake::Revoke(hash)) if hash == token_hash_b64(&self.token_hash) => {
                Err(End::Close(close::REVOKED, "signed out"))
            }
            _ => Ok(false),
        }
    }

    /// Handles `first`, then the wake-ups already waiting behind it (up to [`WAKE_BATCH`]),
    /// so that the loop's next flush writes them all at once. `true` means some were lost
    /// on the way (the subscription lagged, or a [`GAP`]): the caller catches up from the
    /// database.
    pub(super) fn wake_buffered(
        &mut self,
        first: Bytes,
        wake: &mut crate::backend::Subscription,
    ) -> Result<bool, End> {
        use tokio::sync::broadcast::error::TryRecvError;
        if first == GAP || self.wake(first)? {
            return Ok(true);
        }
        for _ in 1..WAKE_BATCH {
            match wake.try_recv() {
                Ok(payload) if payload == GAP => return Ok(true),
                Ok(payload) => {
                    if self.wake(payload)? {
                        return Ok(true);
                    }
                }
                Err(TryRecvError::Lagged(_)) => return Ok(true),
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
            }
        }
        Ok(false)
    }

    /// After lost wake-ups, empties the subscription before the catch-up reads the
    /// database: the messages still buffered are committed, so the catch-up sends them (in
    /// id order, which the buffer's may not be). Other events (presence, typing, a revoked
    /// session) are not in the database and are handled now.
    pub(super) fn skip_buffered(
        &mut self,
        wake: &mut crate::backend::Subscription,
    ) -> Result<(), End> {
        use tokio::sync::broadcast::error::TryRecvError;
        loop {
            match wake.try_recv() {
                Ok(payload) => {
                    let message = matches!(
                        wake::parse(&payload),
                        Some(wake::Wake::Frame {
                            message: Some(_),
                            ..
                        })
                    );
                    if !message {
                        self.wake(payload)?;
                    }
                }
                Err(TryRecvError::Lagged(_)) => {}
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => return Ok(()),
            }
        }
    }

    /// After lost wake-ups: sends what the connection may have missed, from a little before
    /// the newest message it sent (wake-ups arrive out of order) and skipping what it sent.
    pub(super) async fn catch_up(&mut self) -> Result<(), End> {
        let since = self.delivered.resume_after();
        self.send_stored(since, false).await
    }

    /// A client's `sync`: every message after `since`. The connection's first sync skips
    /// what the connection already sent live: a client subscribes and then syncs from its
    /// cursor, so a message committed in between reaches it once, by whichever path came
    /// first. A later sync is a client asking again, and is answered in full.
    pub(super) async fn sync(&mut self, since: i64) -> Result<(), End> {
        let again = std::mem::replace(&mut self.synced, true);
        self.delivered.synced_from(since);
        self.send_stored(since, again).await?;
        if self.release_held(true)? {
            self.catch_up().await?;
        }
        Ok(())
    }

    /// Hands over the live messages held back for the first `sync` (those it sent are
    /// skipped); `true` if the caller must catch up: one would have opened a hole, or
    /// wake-ups were lost while holding and no sync (`synced`) read them since.
    pub(super) fn release_held(&mut self, synced: bool) -> Result<bool, End> {
        let Some(held) = self.held.take() else {
            return Ok(false);
        };
        let mut catch_up = held.lost && !synced;
        for payload in held.wakes {
            catch_up |= self.wake(payload)?;
        }
        Ok(catch_up)
    }

    /// Notes lost wake-ups for after the first `sync`, if the connection still waits for
    /// it; `false` if it does not (catch up now).
    pub(super) fn defer_catch_up(&mut self) -> bool {
        self.held.as_mut().map(|held| held.lost = true).is_some()
    }

    pub(super) async fn send_stored(&mut self, mut since: i64, again: bool) -> Result<(), End> {
        loop {
            let batch = match service::since(&self.state, self.user.id.0, since, 200).await {
                Ok(b) => b,
                Err(e) => return self.error(&e, None),
            };
            let Some(last) = batch.last() else {
                return Ok(());
            };
            since = last.id.0;
            for message in &batch {
                self.delivered.placed(message.channel_id.0, message.seq);
                if !self.delivered.record(message.id.0) && !again {
                    continue;
                }
                let frame = ServerFrame::Message {
                    message: message.clone(),
                }
                .to_json();
                if self.outbound.len() >= OUTBOUND_QUEUE {
                    self.drain().await?;
                }
                self.push(WsMessage::Text(frame.into()))?;
            }
            if batch.len() < 200 {
                return Ok(());
            }
        }
    }

    /// Applies the per-connection frame limit: the time of a frame within it, `None` for
    /// a frame over it (the client has been told, with the `client_msg_id` of a refused
    /// send, read from `text`, so it can mark that message failed).
    pub(super) fn admit(&mut self, text: Option<&str>) -> Result<Option<i64>, End> {
        let now = self.state.clock.now_ms();
        let (decision, tat) = gcra(self.tat, FRAME_QUOTA, now, true);
        if let Decision::Denied { .. } = decision {
            let client_msg_id = text.and_then(app::protocol::echoed_client_msg_id);
            self.push(frame_text(&ServerFrame::error(
                ErrorCode::RateLimited,
                "too many frames; slow down",
                client_msg_id.as_deref(),
            )))?;
            return Ok(None);
        }
        self.tat = tat;
        Ok(Some(now))
    }

    /// A bare `{"type":"heartbeat"}`: activity, usually batched in memory; only a write
    /// through to the presence store needs the (boxed) async path.
    pub(super) async fn heartbeat(&mut self) -> Result<(), End> {
        let Some(now) = self.admit(None)? else {
            return Ok(());
        };
        if !crate::presence::batched(&self.state, self.user.id.0, now) {
            Box::pin(crate::presence::activity(&self.state, self.user.id.0)).await;
        }
        Ok(())
    }

    pub(super) async fn client_frame(&mut self, text: &str) -> Result<(), End> {
        // Limited before it is parsed: a flood costs no more than counting it.
        if self.admit(Some(text))?.is_none() {
            return Ok(());
        }
        crate::presence::activity(&self.state, self.user.id.0).await;
        let frame = match parse_client_frame(text) {
            Ok(frame) => frame,
            Err(e) => return self.push(frame_text(&e.to_frame())),
        };
        match frame {
            ClientFrame::Auth { .. } => self.push(frame_text(&ServerFrame::error(
                ErrorCode::InvalidRequest,
                "already authenticated",
                None,
            ))),
            ClientFrame::Heartbeat => Ok(()),
            ClientFrame::Sync { since } => self.sync(since.0).await,
            ClientFrame::Send {
                channel_id,
                client_msg_id,
                content,
                media,
            } => {
                match service::send(
                    &self.state,
                    &self.user,
                    channel_id.0,
                    &content,
                    &media,
                    &client_msg_id,
                    self.id,
                )
                .await
                {
                    Ok(message) => {
                        self.delivered.record(message.id.0);
                        self.delivered.placed(message.channel_id.0, message.seq);
                        self.push(frame_text(&ServerFrame::Ack {
                            client_msg_id,
                            message,
                        }))
                    }
                    Err(e) => self.error(&e, Some(&client_msg_id)),
                }
            }
            ClientFrame::Typing { channel_id } => {
                let result = service::typing(&self.state, &self.user, channel_id.0).await;
                match result {
                    Ok(()) => Ok(()),
                    Err(e) => self.error(&e, None),
                }
            }
            ClientFrame::Read {
                channel_id,
                message_id,
            } => match service::read(&self.state, &self.user, channel_id.0, message_id.0, self.id)
                .await
            {
                Ok(()) => Ok(()),
                Err(e) => self.error(&e, None),
            },
        }
    }
}
