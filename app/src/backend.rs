//! The server's side of the UI (compiled with `ssr` only): what the server functions need
//! from the server, as a trait the `server` crate implements and provides through Leptos
//! context. `app` thereby stays free of sqlx, Redis and the rest of the server.

use crate::{
    error::ApiError,
    model::{
        AuthResponse, Channel, ChannelSummary, ChatServer, ErrorCode, Message, Notification, Page,
        Post, Profile, SessionInfo, SyncResponse, User, UserPresence,
    },
};
use http::request::Parts;
use std::sync::Arc;

/// Services the UI's server functions call. `parts` is the current request.
#[async_trait::async_trait]
pub trait UiBackend: Send + Sync + 'static {
    /// The signed-in user of the request's session cookie.
    async fn current_user(&self, parts: &Parts) -> Result<Option<User>, ApiError>;
    /// The CSRF token forms must echo back.
    fn csrf_token(&self, parts: &Parts) -> String;
    /// Checks an echoed CSRF token.
    fn check_csrf(&self, parts: &Parts, submitted: &str) -> Result<(), ApiError>;
    async fn register(
        &self,
        parts: &Parts,
        username: &str,
        password: String,
        display_name: Option<String>,
    ) -> Result<AuthResponse, ApiError>;
    async fn login(
        &self,
        parts: &Parts,
        username: &str,
        password: String,
    ) -> Result<AuthResponse, ApiError>;
    /// Revokes the request's session.
    async fn logout(&self, parts: &Parts) -> Result<(), ApiError>;
    /// Changes the signed-in user's password; their other sessions end.
    async fn change_password(
        &self,
        parts: &Parts,
        current: String,
        new: String,
    ) -> Result<(), ApiError>;
    /// Deletes the signed-in user's account once `password` is confirmed.
    async fn delete_account(&self, parts: &Parts, password: String) -> Result<(), ApiError>;
    /// Sets the signed-in user's display name and bio; the user as now stored.
    async fn update_profile(
        &self,
        parts: &Parts,
        display_name: String,
        bio: String,
    ) -> Result<User, ApiError>;
    /// The signed-in user's sessions, most recently used first.
    async fn sessions(&self, parts: &Parts) -> Result<Vec<SessionInfo>, ApiError>;
    /// Ends one of the signed-in user's sessions.
    async fn end_session(&self, parts: &Parts, id: &str) -> Result<(), ApiError>;
    /// The `Set-Cookie` value carrying `token` (or clearing the session when `None`).
    fn session_cookie(&self, parts: &Parts, token: Option<&str>) -> String;
    async fn profile(&self, parts: &Parts, username: &str) -> Result<Profile, ApiError>;
    /// A page of the signed-in user's news feed.
    async fn feed(&self, parts: &Parts, cursor: Option<String>) -> Result<Page<Post>, ApiError>;
    /// Publishes a post as the signed-in user, with the uploads `media` (ids,
    /// comma-separated).
    async fn publish(&self, parts: &Parts, content: &str, media: &str) -> Result<Post, ApiError>;
    async fn delete_post(&self, parts: &Parts, id: &str) -> Result<(), ApiError>;
    async fn set_like(&self, parts: &Parts, id: &str, like: bool) -> Result<(), ApiError>;
    /// A page of one user's posts.
    async fn user_posts(
        &self,
        parts: &Parts,
        username: &str,
        cursor: Option<String>,
    ) -> Result<Page<Post>, ApiError>;
    async fn set_follow(&self, parts: &Parts, username: &str, follow: bool)
        -> Result<(), ApiError>;
    /// Blocks (`true`) or unblocks `username` for the signed-in user.
    async fn set_block(&self, parts: &Parts, username: &str, block: bool) -> Result<(), ApiError>;
    /// Everyone the signed-in user blocked, most recent first.
    async fn blocks(&self, parts: &Parts) -> Result<Vec<User>, ApiError>;
    /// People whose username starts with `prefix`, with the viewer's follow state.
    async fn search(&self, parts: &Parts, prefix: &str) -> Result<Vec<Profile>, ApiError>;
    /// The signed-in user's conversations, most recent first.
    async fn channels(&self, parts: &Parts) -> Result<Vec<ChannelSummary>, ApiError>;
    /// The live chat servers, least loaded first (discovery).
    async fn chat_servers(&self, parts: &Parts) -> Result<Vec<ChatServer>, ApiError>;
    async fn channel(&self, parts: &Parts, id: &str) -> Result<Channel, ApiError>;
    async fn open_dm(&self, parts: &Parts, username: &str) -> Result<Channel, ApiError>;
    async fn create_group(
        &self,
        parts: &Parts,
        name: &str,
        members: &[String],
    ) -> Result<Channel, ApiError>;
    /// A page of a channel's history: before `before`, or after `after` (the newest page
    /// when neither is given).
    async fn history(
        &self,
        parts: &Parts,
        id: &str,
        before: Option<String>,
        after: Option<String>,
    ) -> Result<Page<Message>, ApiError>;
    /// Sends a message with the uploads `media` (ids, comma-separated).
    async fn send_message(
        &self,
        parts: &Parts,
        id: &str,
        content: &str,
        media: &str,
        client_msg_id: &str,
    ) -> Result<Message, ApiError>;
    /// Renames a group the signed-in user belongs to.
    async fn rename_group(
        &self,
        parts: &Parts,
        channel: &str,
        name: &str,
    ) -> Result<Channel, ApiError>;
    /// Adds (`add`) or removes `username` in a group the signed-in user belongs to.
    async fn change_member(
        &self,
        parts: &Parts,
        channel: &str,
        username: &str,
        add: bool,
    ) -> Result<(), ApiError>;
    /// Edits one of the signed-in user's messages.
    async fn edit_message(
        &self,
        parts: &Parts,
        channel: &str,
        message: &str,
        content: &str,
    ) -> Result<Message, ApiError>;
    /// Deletes one of the signed-in user's messages.
    async fn delete_message(
        &self,
        parts: &Parts,
        channel: &str,
        message: &str,
    ) -> Result<(), ApiError>;
    /// Long poll: messages after `since`, waiting up to `timeout_secs` for one.
    async fn sync(
        &self,
        parts: &Parts,
        since: &str,
        timeout_secs: u64,
    ) -> Result<SyncResponse, ApiError>;
    /// Tells a channel's other members the signed-in user is typing.
    async fn typing(&self, parts: &Parts, channel: &str) -> Result<(), ApiError>;
    /// Stores the signed-in user's read receipt in a channel.
    async fn mark_read(
        &self,
        parts: &Parts,
        channel: &str,
        message_id: &str,
    ) -> Result<(), ApiError>;
    /// The presence of each of `usernames` (at most 100), in order.
    async fn presence(
        &self,
        parts: &Parts,
        usernames: &[String],
    ) -> Result<Vec<UserPresence>, ApiError>;
    /// A page of the signed-in user's notifications, newest first.
    async fn notifications(
        &self,
        parts: &Parts,
        cursor: Option<String>,
    ) -> Result<Page<Notification>, ApiError>;
    async fn unread_notifications(&self, parts: &Parts) -> Result<i64, ApiError>;
    /// Marks notifications up to `up_to` read.
    async fn mark_notifications_read(&self, parts: &Parts, up_to: &str) -> Result<(), ApiError>;
}

/// How the server hands its [`UiBackend`] to Leptos.
#[derive(Clone)]
pub struct UiBackendHandle(pub Arc<dyn UiBackend>);

/// The backend and the current request, for a server function.
pub fn context() -> Result<(Arc<dyn UiBackend>, Parts), ApiError> {
    let missing = || ApiError::new(ErrorCode::Internal, "server context missing");
    let backend = leptos::prelude::use_context::<UiBackendHandle>().ok_or_else(missing)?;
    let parts = leptos::prelude::use_context::<Parts>().ok_or_else(missing)?;
    Ok((backend.0, parts))
}

/// Adds a `Set-Cookie` header to the server function's response.
pub fn set_cookie(value: &str) {
    if let (Some(options), Ok(value)) = (
        leptos::prelude::use_context::<leptos_axum::ResponseOptions>(),
        http::HeaderValue::from_str(value),
    ) {
        options.append_header(http::header::SET_COOKIE, value);
    }
}

/// Sets the HTTP status of the page being rendered (404 for a missing profile).
pub fn set_status(status: u16) {
    if let (Some(options), Ok(status)) = (
        leptos::prelude::use_context::<leptos_axum::ResponseOptions>(),
        http::StatusCode::from_u16(status),
    ) {
        options.set_status(status);
    }
}

/// Ends a server function: an error answer gets the HTTP status API.md pairs with its code
/// (Leptos would send every error as a 500).
pub fn finish<T>(result: Result<T, ApiError>) -> Result<T, ApiError> {
    if let Err(e) = &result {
        set_status(e.code.http_status());
    }
    result
}
