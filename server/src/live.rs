//! Live events: what reaches a user's open connections, on whichever node holds them (the
//! WebSocket frames of the chat hub, and the events a waiting long poll returns).
//!
//! Features say what to send and to whom; how it travels is this module's: each user has
//! a pub/sub topic (`user:{id}`) that their connections subscribe to, an event is serialized
//! once and published to all its recipients' topics in one publish, and the hub forwards
//! it as it is. Pub/sub only wakes connections up: what a lost wake-up carried is in the
//! database (messages) or is of the moment (presence, typing), so nothing here is durable,
//! but for the revocation of a session, which waits until every node can hear it.

use crate::{chat::ws::wake, error::AppError, state::AppState};
use app::{model::Message, protocol::ServerFrame};
use bytes::Bytes;

/// The pub/sub topic of a user's connections.
pub fn topic(user: i64) -> String {
    crate::backend::id_key("user:", user)
}

fn topics(users: &[i64]) -> Vec<String> {
    users.iter().map(|user| topic(*user)).collect()
}

/// A frame ready to go to any number of users, serialized once.
#[derive(Clone)]
pub struct Event(Bytes);

impl Event {
    /// An event that carries no message (presence, typing, a new post).
    pub fn new(frame: &ServerFrame) -> Self {
        Self(wake::frame(0, None, frame.to_json().as_bytes()))
    }

    /// An event caused by the connection `origin`, which does not get it back (a read
    /// receipt the reader's other devices apply).
    pub fn from_connection(frame: &ServerFrame, origin: u64) -> Self {
        Self(wake::frame(origin, None, frame.to_json().as_bytes()))
    }

    /// A stored message for its channel's members: the connection that sent it (`origin`,
    /// 0 for none) has its `ack` instead, and each connection places it in its channel's
    /// `seq` order.
    pub fn message(message: &Message, origin: u64) -> Self {
        let frame = ServerFrame::Message {
            message: message.clone(),
        };
        let placed = wake::Placed {
            id: message.id.0,
            channel: message.channel_id.0,
            seq: message.seq,
        };
        Self(wake::frame(
            origin,
            Some(placed),
            frame.to_json().as_bytes(),
        ))
    }
}

/// Sends `event` to every connection of `users`, on every node (one publish however many
/// users).
pub async fn send(state: &AppState, users: &[i64], event: &Event) -> Result<(), AppError> {
    publish(&*state.backends.pubsub, users, event).await
}

/// [`send`] on a given bus (the message writer holds the bus, not the whole state).
pub async fn publish(
    pubsub: &dyn crate::backend::PubSub,
    users: &[i64],
    event: &Event,
) -> Result<(), AppError> {
    if users.is_empty() {
        return Ok(());
    }
    pubsub.publish(&topics(users), event.0.clone()).await?;
    Ok(())
}

/// Closes `user`'s connections that were opened with the session whose token hash is
/// `token_hash`; returns once every node can hear it (a lost revocation would leave them
/// open, and no `sync` brings it back).
pub async fn revoke_session(
    state: &AppState,
    user: i64,
    token_hash: &[u8; 32],
) -> Result<(), AppError> {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
    let payload = wake::revoke(&URL_SAFE_NO_PAD.encode(token_hash));
    state
        .backends
        .pubsub
        .publish_confirmed(&topics(&[user]), payload)
        .await?;
    Ok(())
}
