//! The Leptos UI wired into the server: the [`UiBackend`] the UI's server functions call,
//! and the per-request context (CSP nonce, backend handle) the renderer needs.

use crate::{
    auth::{extract::request_token, service},
    chat,
    error::AppError,
    feed, graph,
    http::{client::ClientInfo, cookies, csrf, security::CspNonce},
    notifications,
    pagination::DEFAULT_LIMIT,
    presence,
    state::AppState,
    users::routes::load_profile,
};
use app::{
    backend::{UiBackend, UiBackendHandle},
    error::ApiError,
    model::{
        AuthResponse, Channel, ChannelSummary, ChatServer, ErrorCode, Message, Notification, Page,
        Post, Profile, SessionInfo, SyncResponse, User, UserPresence,
    },
};
use axum::http::request::Parts;
use leptos::prelude::provide_context;
use std::sync::Arc;

/// Converts the server's error for the UI; internal causes are logged here and never shown.
impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Client { code, message } => ApiError::new(code, message),
            AppError::RateLimited {
                retry_after_secs,
                reason,
            } => ApiError::new(
                ErrorCode::RateLimited,
                match reason {
                    Some(reason) => format!("{reason}; try again in {retry_after_secs} s"),
                    None => format!("too many attempts; try again in {retry_after_secs} s"),
                },
            ),
            AppError::Unavailable(cause) => {
                tracing::warn!(cause = %cause, "server function: database unavailable");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the service is briefly unavailable; please try again",
                )
            }
            AppError::Internal(cause) => {
                tracing::error!(cause = %cause, "server function failed");
                ApiError::new(
                    ErrorCode::Internal,
                    "something went wrong; please try again",
                )
            }
        }
    }
}

/// The server's implementation of the UI's backend.
pub struct ServerUi {
    state: AppState,
}

impl ServerUi {
    async fn viewer(&self, parts: &Parts) -> Result<Option<User>, AppError> {
        match request_token(parts)? {
            Some(token) => service::authenticate(&self.state, &token).await,
            None => Ok(None),
        }
    }

    async fn signed_in(&self, parts: &Parts) -> Result<User, AppError> {
        self.viewer(parts).await?.ok_or_else(AppError::unauthorized)
    }

    /// The signed-in user and the token of their session.
    async fn session(&self, parts: &Parts) -> Result<(User, String), AppError> {
        let token = request_token(parts)?.ok_or_else(AppError::unauthorized)?;
        let user = service::authenticate(&self.state, &token)
            .await?
            .ok_or_else(AppError::unauthorized)?;
        Ok((user, token))
    }
}

/// A cursor or id from the UI, validated like the API's.
fn parse_id(text: &str, what: &str) -> Result<i64, AppError> {
    text.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| AppError::not_found(what))
}

/// Upload ids as the UI's server functions pass them: comma-separated.
fn media_ids(text: &str) -> Result<Vec<app::model::Id>, AppError> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse::<i64>()
                .map(app::model::Id)
                .map_err(|_| AppError::validation("media", "not a list of upload ids"))
        })
        .collect()
}

fn parse_cursor(cursor: Option<String>) -> Result<Option<i64>, AppError> {
    crate::pagination::PageQuery {
        limit: None,
        cursor,
    }
    .id_cursor()
}

#[async_trait::async_trait]
impl UiBackend for ServerUi {
    async fn current_user(&self, parts: &Parts) -> Result<Option<User>, ApiError> {
        Ok(self.viewer(parts).await?)
    }

    fn csrf_token(&self, parts: &Parts) -> String {
        parts
            .extensions
            .get::<csrf::CsrfToken>()
            .map(|t| t.0.clone())
            .unwrap_or_default()
    }

    fn check_csrf(&self, parts: &Parts, submitted: &str) -> Result<(), ApiError> {
        Ok(csrf::verify_token(&parts.headers, submitted)?)
    }

    async fn register(
        &self,
        parts: &Parts,
        username: &str,
        password: String,
        display_name: Option<String>,
    ) -> Result<AuthResponse, ApiError> {
        let client = ClientInfo::of(parts, self.state.config.trust_proxy);
        Ok(service::register(&self.state, username, password, display_name, &client).await?)
    }

    async fn login(
        &self,
        parts: &Parts,
        username: &str,
        password: String,
    ) -> Result<AuthResponse, ApiError> {
        let client = ClientInfo::of(parts, self.state.config.trust_proxy);
        Ok(service::login(&self.state, username, password, &client).await?)
    }

    async fn logout(&self, parts: &Parts) -> Result<(), ApiError> {
        if let Some(token) = request_token(parts)? {
            if let Some(user) = service::authenticate(&self.state, &token).await? {
                service::logout(&self.state, user.id.0, &token).await?;
            }
        }
        Ok(())
    }

    async fn change_password(
        &self,
        parts: &Parts,
        current: String,
        new: String,
    ) -> Result<(), ApiError> {
        let (user, token) = self.session(parts).await?;
        Ok(service::change_password(&self.state, &user, &token, current, new).await?)
    }

    async fn delete_account(&self, parts: &Parts, password: String) -> Result<(), ApiError> {
        let user = self.signed_in(parts).await?;
        Ok(crate::users::service::delete_account(&self.state, &user, password).await?)
    }

    async fn update_profile(
        &self,
        parts: &Parts,
        display_name: String,
        bio: String,
    ) -> Result<User, ApiError> {
        let user = self.signed_in(parts).await?;
        Ok(
            crate::users::service::update_profile(
                &self.state,
                &user,
                Some(display_name),
                Some(bio),
            )
            .await?,
        )
    }

    async fn sessions(&self, parts: &Parts) -> Result<Vec<SessionInfo>, ApiError> {
        let (user, token) = self.session(parts).await?;
        Ok(service::sessions(&self.state, &user, &token).await?)
    }

    async fn end_session(&self, parts: &Parts, id: &str) -> Result<(), ApiError> {
        let user = self.signed_in(parts).await?;
        let id = parse_id(id, "session id")?;
        Ok(service::end_session(&self.state, &user, id).await?)
    }

    fn session_cookie(&self, parts: &Parts, token: Option<&str>) -> String {
        let secure = cookies::is_https(&parts.headers, self.state.config.trust_proxy);
        cookies::session(token, self.state.config.session_ttl.as_secs(), secure)
    }

    async fn profile(&self, parts: &Parts, username: &str) -> Result<Profile, ApiError> {
        let viewer = self.viewer(parts).await?;
        Ok(load_profile(&self.state, viewer.as_ref(), username).await?)
    }

    async fn feed(&self, parts: &Parts, cursor: Option<String>) -> Result<Page<Post>, ApiError> {
        let me = self.signed_in(parts).await?;
        let cursor = parse_cursor(cursor)?;
        Ok(
            feed::timeline::read(&self.state, me.id.0, cursor, DEFAULT_LIMIT)
                .await?
                .to_page()?,
        )
    }

    async fn publish(&self, parts: &Parts, content: &str, media: &str) -> Result<Post, ApiError> {
        let me = self.signed_in(parts).await?;
        let media = media_ids(media)?;
        Ok(feed::posts::publish(&self.state, &me, content, &media, None).await?)
    }

    async fn delete_post(&self, parts: &Parts, id: &str) -> Result<(), ApiError> {
        let me = self.signed_in(parts).await?;
        Ok(feed::posts::delete(&self.state, me.id.0, parse_id(id, "post")?).await?)
    }

    async fn set_like(&self, parts: &Parts, id: &str, like: bool) -> Result<(), ApiError> {
        let me = self.signed_in(parts).await?;
        Ok(feed::posts::set_like(&self.state, me.id.0, parse_id(id, "post")?, like).await?)
    }

    async fn user_posts(
        &self,
        parts: &Parts,
        username: &str,
        cursor: Option<String>,
    ) -> Result<Page<Post>, ApiError> {
        let viewer = self.viewer(parts).await?.map(|v| v.id.0);
        let cursor = parse_cursor(cursor)?;
        let author = self
            .state
            .store
            .accounts
            .user_by_username(username)
            .await
            .map_err(AppError::from)?
            .ok_or_else(|| AppError::not_found("user"))?;
        Ok(
            feed::posts::by_author(&self.state, viewer, author.id, cursor, DEFAULT_LIMIT)
                .await?
                .to_page()?,
        )
    }

    async fn set_follow(
        &self,
        parts: &Parts,
        username: &str,
        follow: bool,
    ) -> Result<(), ApiError> {
        let me = self.signed_in(parts).await?;
        if follow {
            Ok(graph::service::follow(&self.state, me.id.0, username).await?)
        } else {
            Ok(graph::service::unfollow(&self.state, me.id.0, username).await?)
        }
    }

    async fn set_block(&self, parts: &Parts, username: &str, block: bool) -> Result<(), ApiError> {
        let me = self.signed_in(parts).await?;
        if block {
            Ok(graph::service::block(&self.state, me.id.0, username).await?)
        } else {
            Ok(graph::service::unblock(&self.state, me.id.0, username).await?)
        }
    }

    async fn blocks(&self, parts: &Parts) -> Result<Vec<User>, ApiError> {
        let me = self.signed_in(parts).await?;
        let page = crate::pagination::PageQuery {
            limit: Some(crate::pagination::MAX_LIMIT.to_string()),
            cursor: None,
        };
        let blocked = graph::routes::list(
            &self.state,
            me.id.0,
            crate::storage::graph::List::Blocks,
            &page,
        )
        .await?;
        Ok(blocked.items)
    }

    async fn search(&self, parts: &Parts, prefix: &str) -> Result<Vec<Profile>, ApiError> {
        let viewer = self.viewer(parts).await?;
        let page = crate::pagination::PageQuery::default();
        let found = graph::routes::search_users(&self.state, prefix, None, &page).await?;
        let mut profiles = Vec::with_capacity(found.items.len());
        for user in found.items {
            profiles.push(load_profile(&self.state, viewer.as_ref(), &user.username).await?);
        }
        Ok(profiles)
    }

    async fn channels(&self, parts: &Parts) -> Result<Vec<ChannelSummary>, ApiError> {
        let me = self.signed_in(parts).await?;
        Ok(chat::service::list(&self.state, &me).await?)
    }

    async fn chat_servers(&self, parts: &Parts) -> Result<Vec<ChatServer>, ApiError> {
        self.signed_in(parts).await?;
        Ok(crate::cluster::servers(&self.state).await?)
    }

    async fn channel(&self, parts: &Parts, id: &str) -> Result<Channel, ApiError> {
        let me = self.signed_in(parts).await?;
        let row =
            chat::service::member_channel(&self.state, me.id.0, parse_id(id, "channel")?).await?;
        Ok(chat::service::channel_view(&self.state, &row).await?)
    }

    async fn open_dm(&self, parts: &Parts, username: &str) -> Result<Channel, ApiError> {
        let me = self.signed_in(parts).await?;
        Ok(chat::service::open_dm(&self.state, &me, username).await?)
    }

    async fn create_group(
        &self,
        parts: &Parts,
        name: &str,
        members: &[String],
    ) -> Result<Channel, ApiError> {
        let me = self.signed_in(parts).await?;
        Ok(chat::service::create_group(&self.state, &me, name, members).await?)
    }

    async fn history(
        &self,
        parts: &Parts,
        id: &str,
        before: Option<String>,
        after: Option<String>,
    ) -> Result<Page<Message>, ApiError> {
        let me = self.signed_in(parts).await?;
        let (before, after) = (parse_cursor(before)?, parse_cursor(after)?);
        if before.is_some() && after.is_some() {
            return Err(AppError::invalid_request("give before or after, not both").into());
        }
        let id = parse_id(id, "channel")?;
        Ok(chat::service::history(&self.state, &me, id, before, after, 30).await?)
    }

    async fn rename_group(
        &self,
        parts: &Parts,
        channel: &str,
        name: &str,
    ) -> Result<Channel, ApiError> {
        let me = self.signed_in(parts).await?;
        Ok(
            chat::service::rename_group(&self.state, &me, parse_id(channel, "channel")?, name)
                .await?,
        )
    }

    async fn change_member(
        &self,
        parts: &Parts,
        channel: &str,
        username: &str,
        add: bool,
    ) -> Result<(), ApiError> {
        let me = self.signed_in(parts).await?;
        let channel = parse_id(channel, "channel")?;
        if add {
            chat::service::add_member(&self.state, &me, channel, username).await?;
        } else {
            chat::service::remove_member(&self.state, &me, channel, username).await?;
        }
        Ok(())
    }

    async fn edit_message(
        &self,
        parts: &Parts,
        channel: &str,
        message: &str,
        content: &str,
    ) -> Result<Message, ApiError> {
        let me = self.signed_in(parts).await?;
        Ok(chat::service::edit_message(
            &self.state,
            &me,
            parse_id(channel, "channel")?,
            parse_id(message, "message")?,
            content,
        )
        .await?)
    }

    async fn delete_message(
        &self,
        parts: &Parts,
        channel: &str,
        message: &str,
    ) -> Result<(), ApiError> {
        let me = self.signed_in(parts).await?;
        Ok(chat::service::delete_message(
            &self.state,
            &me,
            parse_id(channel, "channel")?,
            parse_id(message, "message")?,
        )
        .await?)
    }

    async fn send_message(
        &self,
        parts: &Parts,
        id: &str,
        content: &str,
        media: &str,
        client_msg_id: &str,
    ) -> Result<Message, ApiError> {
        let me = self.signed_in(parts).await?;
        let media = media_ids(media)?;
        Ok(chat::service::send_over_http(
            &self.state,
            &me,
            parse_id(id, "channel")?,
            content,
            &media,
            client_msg_id,
        )
        .await?)
    }

    async fn sync(
        &self,
        parts: &Parts,
        since: &str,
        timeout_secs: u64,
    ) -> Result<SyncResponse, ApiError> {
        let me = self.signed_in(parts).await?;
        let since = since
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .ok_or_else(|| AppError::invalid_request("since must be a message id"))?;
        let wait = timeout_secs.min(chat::routes::MAX_WAIT_SECS);
        Ok(
            chat::service::wait_for_messages(&self.state, me.id.0, since, wait)
                .await?
                .into_model()?,
        )
    }

    async fn typing(&self, parts: &Parts, channel: &str) -> Result<(), ApiError> {
        let me = self.signed_in(parts).await?;
        Ok(chat::service::typing(&self.state, &me, parse_id(channel, "channel")?).await?)
    }

    async fn mark_read(
        &self,
        parts: &Parts,
        channel: &str,
        message_id: &str,
    ) -> Result<(), ApiError> {
        let me = self.signed_in(parts).await?;
        let message = parse_id(message_id, "message")?;
        Ok(
            chat::service::read(&self.state, &me, parse_id(channel, "channel")?, message, 0)
                .await?,
        )
    }

    async fn presence(
        &self,
        parts: &Parts,
        usernames: &[String],
    ) -> Result<Vec<UserPresence>, ApiError> {
        let me = self.signed_in(parts).await?;
        Ok(presence::routes::by_usernames(&self.state, me.id.0, usernames).await?)
    }

    async fn notifications(
        &self,
        parts: &Parts,
        cursor: Option<String>,
    ) -> Result<Page<Notification>, ApiError> {
        let me = self.signed_in(parts).await?;
        let before = cursor
            .as_deref()
            .map(|c| parse_id(c, "cursor"))
            .transpose()?;
        Ok(notifications::list(&self.state, me.id.0, before, DEFAULT_LIMIT).await?)
    }

    async fn unread_notifications(&self, parts: &Parts) -> Result<i64, ApiError> {
        let me = self.signed_in(parts).await?;
        Ok(notifications::unread(&self.state, me.id.0).await?)
    }

    async fn mark_notifications_read(&self, parts: &Parts, up_to: &str) -> Result<(), ApiError> {
        let me = self.signed_in(parts).await?;
        let up_to = parse_id(up_to, "notification")?;
        Ok(notifications::mark_read(&self.state, me.id.0, up_to).await?)
    }
}

/// The context every render and server-function call gets: the backend handle, and the
/// request's CSP nonce so emitted scripts match the `Content-Security-Policy` header.
pub fn context_provider(state: &AppState) -> impl Fn() + Clone + Send + Sync + 'static {
    let handle = UiBackendHandle(Arc::new(ServerUi {
        state: state.clone(),
    }));
    move || {
        provide_context(handle.clone());
        if let Some(parts) = leptos::prelude::use_context::<Parts>() {
            if let Some(CspNonce(nonce)) = parts.extensions.get::<CspNonce>() {
                provide_context(leptos::nonce::Nonce::from_value(nonce.as_str()));
            }
        }
    }
}
