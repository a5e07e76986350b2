//! The API's data types, shared by the server (which produces them) and the UI (which
//! renders them). Field names are the public contract of API.md.
//!
//! IDs travel as decimal strings because JavaScript numbers lose precision above 2^53.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A 64-bit Snowflake ID, serialized as a decimal string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema), schema(value_type = String, example = "7263512873491456"))]
pub struct Id(pub i64);

impl From<Id> for String {
    fn from(id: Id) -> Self {
        id.0.to_string()
    }
}

impl TryFrom<String> for Id {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl std::str::FromStr for Id {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<i64>() {
            Ok(v) if v >= 0 => Ok(Id(v)),
            _ => Err(format!("{s:?} is not an id")),
        }
    }
}

/// The low bits of a Snowflake id that hold its node and sequence; the milliseconds are
/// above them (the server's `id.rs` issues them).
const ID_LOW_BITS: u32 = 22;

impl Id {
    /// The smallest id that could have been issued `ms` milliseconds before this one.
    pub fn millis_earlier(self, ms: i64) -> Id {
        Id((((self.0 >> ID_LOW_BITS) - ms).max(0)) << ID_LOW_BITS)
    }
}

#[cfg(test)]
mod id_tests {
    use super::Id;

    #[test]
    fn ids_step_back_by_their_milliseconds() {
        assert_eq!(Id((5 << 22) | 7).millis_earlier(2), Id(3 << 22));
        assert_eq!(Id((5 << 22) | 7).millis_earlier(60_000), Id(0));
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `User` of API.md.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct User {
    pub id: Id,
    pub username: String,
    pub display_name: String,
    /// What the user says about themselves (at most 300 characters; empty when unset).
    #[serde(default)]
    pub bio: String,
    pub created_at: DateTime<Utc>,
}

/// `Profile` of API.md: a user with their counts, as seen by the viewer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Profile {
    #[serde(flatten)]
    pub user: User,
    pub followers: i64,
    pub following: i64,
    pub posts: i64,
    pub followed_by_me: bool,
    /// Whether the viewer blocked this user.
    #[serde(default)]
    pub blocked_by_me: bool,
}

/// `Post` of API.md, as seen by the viewer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Post {
    pub id: Id,
    pub author: User,
    pub content: String,
    pub created_at: DateTime<Utc>,
    /// The images attached to the post, in the order given.
    #[serde(default)]
    pub media: Vec<Media>,
    pub like_count: i64,
    pub liked_by_me: bool,
}

/// `Media` of API.md: an uploaded image, re-encoded without its metadata. `url` and
/// `thumbnail_url` are paths on this server (`/media/{sha256}.{ext}`), the same on every
/// node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Media {
    pub id: Id,
    /// The image, at most 2048 pixels on its longest side.
    pub url: String,
    /// The image at most 400 pixels on its longest side.
    pub thumbnail_url: String,
    /// Of the image at `url`.
    pub width: u32,
    pub height: u32,
    /// `image/jpeg` or `image/png`, of both files.
    pub content_type: String,
    /// Size of the file at `url`.
    pub bytes: u64,
    /// The description of the image, its accessible name (may be empty).
    pub alt: String,
}

/// One of the signed-in user's sessions (`GET /v1/me/sessions`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    /// What `DELETE /v1/me/sessions/{id}` takes.
    pub id: Id,
    /// The device, from the client's User-Agent when it signed in ("Firefox on Linux").
    pub device: String,
    /// The client address it signed in from, if known.
    pub client_address: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When it was last used (to within a few minutes).
    pub last_used_at: DateTime<Utc>,
    /// Whether this is the session the request came with.
    pub current: bool,
}

/// The answer of `GET /v1/me/sessions`, most recently used first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Sessions {
    pub items: Vec<SessionInfo>,
}

/// One page of a list: `{"items", "next_cursor"}`; `next_cursor` is `None` on the last page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Kind of a chat channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Dm,
    Group,
}

/// `Channel` of API.md.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Channel {
    pub id: Id,
    pub kind: ChannelKind,
    pub name: String,
    /// Who created it (for a group: the one who may remove others).
    pub creator_id: Id,
    pub members: Vec<User>,
}

/// An entry of the conversation list: a channel with its newest message and how many
/// messages the viewer has not read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ChannelSummary {
    #[serde(flatten)]
    pub channel: Channel,
    pub last_message: Option<Message>,
    pub unread_count: i64,
}

/// `Message` of API.md. `seq` is the message's gap-free position in its channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Message {
    pub id: Id,
    pub channel_id: Id,
    pub seq: i64,
    pub sender: User,
    /// Empty once the message is deleted.
    pub content: String,
    pub created_at: DateTime<Utc>,
    pub client_msg_id: String,
    /// When the sender last edited it; absent if never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
    /// When the sender deleted it; absent unless deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// True when the reader blocked the sender: the content is left out (empty).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
    /// The images attached to the message, in the order given (none once deleted or
    /// hidden).
    #[serde(default)]
    pub media: Vec<Media>,
}

impl Message {
    /// The message as someone who blocked its sender reads it: without its content.
    pub fn hidden(&self) -> Self {
        Self {
            content: String::new(),
            hidden: true,
            media: Vec::new(),
            ..self.clone()
        }
    }
}

/// The answer of `GET /v1/chat/sync`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SyncResponse {
    pub messages: Vec<Message>,
    #[cfg_attr(feature = "ssr", schema(value_type = Vec<Object>))]
    pub events: Vec<serde_json::Value>,
    /// The largest message id the client now holds: its next `since`.
    pub cursor: Id,
}

/// A live chat server, as discovery lists it (`GET /v1/chat/servers`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ChatServer {
    /// The node's WebSocket URL (`ws://…/v1/chat/ws` or `wss://…`).
    pub url: String,
    pub node_id: u16,
    /// Its open WebSockets: the list is sorted by this, fewest first.
    pub connections: u64,
}

/// The answer of `GET /v1/chat/servers`: the live nodes, best first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ChatServers {
    pub items: Vec<ChatServer>,
}

/// Whether a user is online (API.md "Presence").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    Online,
    Offline,
}

/// An item of `GET /v1/presence`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct UserPresence {
    pub user_id: Id,
    pub username: String,
    pub status: PresenceStatus,
    /// `null` for someone never seen online.
    pub last_active_at: Option<DateTime<Utc>>,
}

/// What a notification is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A chat message that arrived while the recipient had no live connection.
    Message,
    /// A new post from someone the recipient follows.
    Post,
}

/// An item of `GET /v1/me/notifications`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Notification {
    pub id: Id,
    pub kind: NotificationKind,
    /// Who sent the message or wrote the post.
    pub actor: User,
    /// For `message`: the channel and the message.
    pub channel_id: Option<Id>,
    pub message_id: Option<Id>,
    /// For `post`: the post.
    pub post_id: Option<Id>,
    /// The start of the message or post.
    pub excerpt: String,
    pub created_at: DateTime<Utc>,
    pub read: bool,
}

/// The answer of `GET /v1/me/notifications/unread`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct UnreadCount {
    pub count: i64,
}

/// The answer to register and login.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AuthResponse {
    pub user: User,
    pub token: String,
}

/// The body of every 4xx/5xx answer: `{"error": {"code", "message"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// See [`ErrorBody`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

/// The machine-readable error codes of API.md, in `snake_case` on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    InvalidCredentials,
    Forbidden,
    NotFound,
    /// 405: the path exists, not with this method (the `Allow` header lists the others).
    MethodNotAllowed,
    UsernameTaken,
    PayloadTooLarge,
    ValidationFailed,
    GroupTooLarge,
    /// 422: an upload that is not a JPEG, PNG, WebP or GIF image Kith can take.
    UnsupportedMedia,
    RateLimited,
    Internal,
    /// 503: a dependency (the database) cannot be reached; retrying shortly may succeed.
    Unavailable,
}

impl ErrorCode {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UsernameTaken => "username_taken",
            Self::PayloadTooLarge => "payload_too_large",
            Self::ValidationFailed => "validation_failed",
            Self::GroupTooLarge => "group_too_large",
            Self::UnsupportedMedia => "unsupported_media",
            Self::RateLimited => "rate_limited",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
        }
    }

    /// The HTTP status API.md pairs with the code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidRequest => 400,
            Self::Unauthorized | Self::InvalidCredentials => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::UsernameTaken => 409,
            Self::PayloadTooLarge => 413,
            Self::ValidationFailed | Self::GroupTooLarge | Self::UnsupportedMedia => 422,
            Self::RateLimited => 429,
            Self::Internal => 500,
            Self::Unavailable => 503,
        }
    }
}

/// The validation rules of accounts, shared so the UI can check as the user types and the
/// server enforces the same rules.
pub mod rules {
    /// Usernames: 3..=32 of `[a-z0-9_]`.
    pub fn check_username(username: &str) -> Result<(), &'static str> {
        let len = username.chars().count();
        if !(3..=32).contains(&len) {
            return Err("must be 3 to 32 characters");
        }
        if !username
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err("may contain only a-z, 0-9 and _");
        }
        Ok(())
    }

    /// Deleted accounts are renamed `deleted_{id}`: no new account may start so.
    pub const RESERVED_PREFIX: &str = "deleted_";

    /// A username for a new account: the username rules, and not the reserved prefix.
    pub fn check_new_username(username: &str) -> Result<(), &'static str> {
        check_username(username)?;
        if username.starts_with(RESERVED_PREFIX) {
            return Err("may not start with \"deleted_\"");
        }
        Ok(())
    }

    /// Passwords: 8..=128 characters (Unicode scalar values), never truncated.
    pub fn check_password(password: &str) -> Result<(), &'static str> {
        let len = password.chars().count();
        if len < 8 {
            Err("must be at least 8 characters")
        } else if len > 128 {
            Err("must be at most 128 characters")
        } else {
            Ok(())
        }
    }

    /// Longest post, in characters after trimming.
    pub const MAX_POST_CHARS: usize = 5000;

    /// Posts: 1..=5000 characters after trimming; with images, 0 is allowed too.
    pub fn check_post(content: &str, images: usize) -> Result<(), &'static str> {
        let len = content.trim().chars().count();
        if len == 0 && images == 0 {
            Err("must not be empty")
        } else if len > MAX_POST_CHARS {
            Err("must be at most 5000 characters")
        } else {
            Ok(())
        }
    }

    /// Longest chat message, in characters.
    pub const MAX_MESSAGE_CHARS: usize = 4000;
    /// Most members of a group, creator included.
    pub const MAX_GROUP_MEMBERS: usize = 100;

    /// Chat messages: 1..=4000 characters, not only whitespace; with images, the text may
    /// be empty.
    pub fn check_message(content: &str, images: usize) -> Result<(), &'static str> {
        if content.trim().is_empty() && images == 0 {
            Err("must not be empty")
        } else if content.chars().count() > MAX_MESSAGE_CHARS {
            Err("must be at most 4000 characters")
        } else {
            Ok(())
        }
    }

    /// Most images on one post or message.
    pub const MAX_ATTACHED_MEDIA: usize = 4;
    /// Longest image description, in characters.
    pub const MAX_ALT_CHARS: usize = 1500;

    /// The images of a post or message: at most 4, none twice.
    pub fn check_attached<T: PartialEq>(ids: &[T]) -> Result<(), &'static str> {
        if ids.len() > MAX_ATTACHED_MEDIA {
            return Err("at most 4 images");
        }
        if ids.iter().enumerate().any(|(i, id)| ids[..i].contains(id)) {
            return Err("lists an image twice");
        }
        Ok(())
    }

    /// Image descriptions: at most 1500 characters; line breaks are the only control
    /// characters allowed.
    pub fn check_alt(alt: &str) -> Result<(), &'static str> {
        if alt.chars().count() > MAX_ALT_CHARS {
            Err("must be at most 1500 characters")
        } else if alt.chars().any(|c| c.is_control() && c != '\n') {
            Err("must not contain control characters other than line breaks")
        } else {
            Ok(())
        }
    }

    /// Longest bio, in characters after trimming.
    pub const MAX_BIO_CHARS: usize = 300;

    /// Bios: at most 300 characters after trimming; line breaks are the only control
    /// characters allowed.
    pub fn check_bio(bio: &str) -> Result<(), &'static str> {
        if bio.trim().chars().count() > MAX_BIO_CHARS {
            Err("must be at most 300 characters")
        } else if bio.chars().any(|c| c.is_control() && c != '\n') {
            Err("must not contain control characters other than line breaks")
        } else {
            Ok(())
        }
    }

    /// Display names: at most 64 characters after trimming, no control characters.
    pub fn check_display_name(name: &str) -> Result<(), &'static str> {
        if name.trim().chars().count() > 64 {
            Err("must be at most 64 characters")
        } else if name.chars().any(char::is_control) {
            Err("must not contain control characters")
        } else {
            Ok(())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn usernames() {
            assert!(check_username("ab").is_err());
            assert!(check_username("abc").is_ok());
            assert!(check_username(&"a".repeat(32)).is_ok());
            assert!(check_username(&"a".repeat(33)).is_err());
            assert!(check_username("Abc").is_err());
            assert!(check_username("a-b").is_err());
            assert!(check_username("a_b9").is_ok());
            assert!(check_username("deleted_42").is_ok());
            assert!(check_new_username("deleted_42").is_err());
            assert!(check_new_username("deleted").is_ok());
        }

        #[test]
        fn passwords_count_characters_not_bytes() {
            assert!(check_password("1234567").is_err());
            assert!(check_password("12345678").is_ok());
            assert!(check_password(&"é".repeat(128)).is_ok());
            assert!(check_password(&"é".repeat(129)).is_err());
        }

        #[test]
        fn bios_count_characters_after_trimming_and_keep_line_breaks() {
            assert!(check_bio("").is_ok());
            assert!(check_bio(&"é".repeat(300)).is_ok());
            assert!(check_bio(&format!("  {}  ", "a".repeat(300))).is_ok());
            assert!(check_bio(&"a".repeat(301)).is_err());
            assert!(check_bio("two\nlines").is_ok());
            assert!(check_bio("tab\there").is_err());
        }
    }
}
