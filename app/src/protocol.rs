//! The WebSocket protocol of API.md ("WebSocket frames"): every frame a client and the
//! server send each other, as types. The server parses what clients send and builds what
//! it sends only through these, and the browser's live client does the same, so the two
//! cannot drift apart. JSON text frames, tagged by `type`.

use crate::model::{ErrorCode, Id, Message, Post, PresenceStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Client → server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Authenticates a socket opened without a token or cookie; the first frame, once.
    Auth {
        token: String,
    },
    Send {
        channel_id: Id,
        client_msg_id: String,
        content: String,
        /// Ids of the sender's own unattached uploads (`POST /v1/media`), at most 4.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        media: Vec<Id>,
    },
    /// Asks for every message after `since` (a message id), then live ones.
    Sync {
        since: Id,
    },
    Heartbeat,
    Typing {
        channel_id: Id,
    },
    Read {
        channel_id: Id,
        message_id: Id,
    },
}

/// Server → client. The long-poll `events` list carries the same frames, messages aside.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The send with this `client_msg_id` is durably stored as `message`.
    Ack {
        client_msg_id: String,
        message: Message,
    },
    /// A message in one of the user's channels (their own from another device included).
    Message {
        message: Message,
    },
    /// A message was edited: `message` as it now stands (same `id` and `seq`).
    MessageUpdated {
        message: Message,
    },
    /// A message was deleted by its sender: its content is gone from history.
    MessageDeleted {
        channel_id: Id,
        message_id: Id,
        deleted_at: DateTime<Utc>,
    },
    Presence {
        user_id: Id,
        status: PresenceStatus,
        last_active_at: Option<DateTime<Utc>>,
    },
    Typing {
        channel_id: Id,
        user_id: Id,
    },
    Read {
        channel_id: Id,
        user_id: Id,
        message_id: Id,
    },
    /// Someone the user follows posted.
    NewPost {
        post: Post,
    },
    /// A frame could not be handled; the connection stays open. `client_msg_id` names the
    /// send it is about, when it is about one.
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<String>,
    },
}

impl ServerFrame {
    /// An `error` frame.
    pub fn error(code: ErrorCode, message: impl Into<String>, client_msg_id: Option<&str>) -> Self {
        Self::Error {
            code,
            message: message.into(),
            client_msg_id: client_msg_id.map(str::to_string),
        }
    }

    /// The frame as the JSON text sent on the wire.
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: every map key is a string and no value
        // serialises itself fallibly.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What a client frame's text is, once read.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, FrameError> {
    serde_json::from_str(text).map_err(|e| FrameError {
        message: format!("bad frame: {e}"),
        client_msg_id: echoed_client_msg_id(text),
    })
}

/// A client frame that could not be read, with the `client_msg_id` it named if one could
/// be found (so the client can mark that send failed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameError {
    pub message: String,
    pub client_msg_id: Option<String>,
}

impl FrameError {
    /// The `error` frame that answers it.
    pub fn to_frame(&self) -> ServerFrame {
        ServerFrame::error(
            ErrorCode::InvalidRequest,
            self.message.clone(),
            self.client_msg_id.as_deref(),
        )
    }
}

/// The `client_msg_id` of a frame's text, if it names one, even when the frame as a whole
/// does not parse.
pub fn echoed_client_msg_id(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Echo {
        client_msg_id: Option<String>,
    }
    serde_json::from_str::<Echo>(text).ok()?.client_msg_id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::User;
    use serde_json::{json, Value};

    fn message() -> Message {
        Message {
            id: Id(42),
            channel_id: Id(7),
            seq: 3,
            sender: User {
                id: Id(5),
                username: "ana".into(),
                display_name: "Ana".into(),
                bio: String::new(),
                created_at: DateTime::from_timestamp(1_765_000_000, 0).unwrap_or_default(),
            },
            content: "hi".into(),
            client_msg_id: "c1".into(),
            created_at: DateTime::from_timestamp(1_765_000_001, 0).unwrap_or_default(),
            edited_at: None,
            deleted_at: None,
            hidden: false,
            media: Vec::new(),
        }
    }

    #[test]
    fn every_client_frame_round_trips_in_the_api_spelling() {
        let frames = [
            (
                ClientFrame::Auth { token: "t".into() },
                json!({"type": "auth", "token": "t"}),
            ),
            (
                ClientFrame::Send {
                    channel_id: Id(7),
                    client_msg_id: "c1".into(),
                    content: "hi".into(),
                    media: Vec::new(),
                },
                json!({"type": "send", "channel_id": "7", "client_msg_id": "c1", "content": "hi"}),
            ),
            (
                ClientFrame::Send {
                    channel_id: Id(7),
                    client_msg_id: "c2".into(),
                    content: String::new(),
                    media: vec![Id(11), Id(12)],
                },
                json!({"type": "send", "channel_id": "7", "client_msg_id": "c2", "content": "",
                       "media": ["11", "12"]}),
            ),
            (
                ClientFrame::Sync { since: Id(9) },
                json!({"type": "sync", "since": "9"}),
            ),
            (ClientFrame::Heartbeat, json!({"type": "heartbeat"})),
            (
                ClientFrame::Typing { channel_id: Id(7) },
                json!({"type": "typing", "channel_id": "7"}),
            ),
            (
                ClientFrame::Read {
                    channel_id: Id(7),
                    message_id: Id(42),
                },
                json!({"type": "read", "channel_id": "7", "message_id": "42"}),
            ),
        ];
        for (frame, wire) in frames {
            assert_eq!(serde_json::to_value(&frame).ok(), Some(wire.clone()));
            assert_eq!(parse_client_frame(&wire.to_string()), Ok(frame));
        }
    }

    #[test]
    fn every_server_frame_round_trips_in_the_api_spelling() {
        let m = message();
        let m_json = serde_json::to_value(&m).unwrap_or_default();
        let frames = [
            (
                ServerFrame::Ack {
                    client_msg_id: "c1".into(),
                    message: m.clone(),
                },
                json!({"type": "ack", "client_msg_id": "c1", "message": m_json}),
            ),
            (
                ServerFrame::Message { message: m.clone() },
                json!({"type": "message", "message": m_json}),
            ),
            (
                ServerFrame::MessageUpdated { message: m.clone() },
                json!({"type": "message_updated", "message": m_json}),
            ),
            (
                ServerFrame::MessageDeleted {
                    channel_id: Id(7),
                    message_id: Id(42),
                    deleted_at: DateTime::from_timestamp(1_765_000_002, 0).unwrap_or_default(),
                },
                json!({"type": "message_deleted", "channel_id": "7", "message_id": "42",
                    "deleted_at": "2025-12-06T05:46:42Z"}),
            ),
            (
                ServerFrame::Presence {
                    user_id: Id(5),
                    status: PresenceStatus::Offline,
                    last_active_at: None,
                },
                json!({"type": "presence", "user_id": "5", "status": "offline", "last_active_at": null}),
            ),
            (
                ServerFrame::Typing {
                    channel_id: Id(7),
                    user_id: Id(5),
                },
                json!({"type": "typing", "channel_id": "7", "user_id": "5"}),
            ),
            (
                ServerFrame::Read {
                    channel_id: Id(7),
                    user_id: Id(5),
                    message_id: Id(42),
                },
                json!({"type": "read", "channel_id": "7", "user_id": "5", "message_id": "42"}),
            ),
            (
                ServerFrame::error(ErrorCode::RateLimited, "slow down", Some("c1")),
                json!({"type": "error", "code": "rate_limited", "message": "slow down", "client_msg_id": "c1"}),
            ),
            (
                ServerFrame::error(ErrorCode::InvalidRequest, "no", None),
                json!({"type": "error", "code": "invalid_request", "message": "no"}),
            ),
        ];
        for (frame, wire) in frames {
            let text = frame.to_json();
            assert_eq!(serde_json::from_str::<Value>(&text).ok(), Some(wire));
            assert_eq!(serde_json::from_str::<ServerFrame>(&text).ok(), Some(frame));
        }
    }

    #[test]
    fn unknown_and_malformed_frames_are_errors_that_name_the_send() {
        for text in [
            r#"{"type": "shout", "client_msg_id": "c9"}"#,
            r#"{"type": "send", "channel_id": "7", "client_msg_id": "c9"}"#,
            r#"{"type": "send", "channel_id": "x", "client_msg_id": "c9", "content": "a"}"#,
            r#"{"type": "send", "channel_id": "7", "client_msg_id": "c9", "content": "a", "x": 1}"#,
        ] {
            let e = parse_client_frame(text).err();
            assert_eq!(
                e.as_ref().and_then(|e| e.client_msg_id.as_deref()),
                Some("c9"),
                "{text}"
            );
            let frame = e.map(|e| e.to_frame());
            assert!(matches!(
                frame,
                Some(ServerFrame::Error {
                    code: ErrorCode::InvalidRequest,
                    ..
                })
            ));
        }
        assert_eq!(
            parse_client_frame("not json")
                .err()
                .and_then(|e| e.client_msg_id),
            None
        );
    }
}
