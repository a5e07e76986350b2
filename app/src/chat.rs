//! Chat in the UI: the server functions of the chat pages.
//!
//! Sends always go through `send_message` (an HTTP call, idempotent on `client_msg_id`), so
//! pending, sent and failed-then-retried messages behave the same whichever transport
//! receives. Receiving is the live client's job ([`crate::live`]).

use crate::{
    error::ApiError,
    model::{Channel, ChannelSummary, Message, Page, SyncResponse},
};
use leptos::prelude::*;

#[server(input = server_fn::codec::GetUrl, endpoint = "channels")]
pub async fn list_channels() -> Result<Vec<ChannelSummary>, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(backend.channels(&parts).await)
}

#[server(input = server_fn::codec::GetUrl, endpoint = "channel")]
pub async fn get_channel(id: String) -> Result<Channel, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(backend.channel(&parts, &id).await)
}

#[server(endpoint = "open_dm")]
pub async fn open_dm(csrf: String, username: String) -> Result<Channel, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(match backend.check_csrf(&parts, &csrf) {
        Ok(()) => backend.open_dm(&parts, &username).await,
        Err(e) => Err(e),
    })
}

#[server(endpoint = "create_group")]
pub async fn create_group(
    csrf: String,
    name: String,
    members: String,
) -> Result<Channel, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    let members: Vec<String> = members
        .split([',', ' ', '\n'])
        .map(|m| m.trim().trim_start_matches('@').to_string())
        .filter(|m| !m.is_empty())
        .collect();
    crate::backend::finish(match backend.check_csrf(&parts, &csrf) {
        Ok(()) => backend.create_group(&parts, &name, &members).await,
        Err(e) => Err(e),
    })
}

#[server(input = server_fn::codec::GetUrl, endpoint = "history")]
pub async fn get_history(id: String, before: Option<String>) -> Result<Page<Message>, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(backend.history(&parts, &id, before).await)
}

#[server(endpoint = "send_message")]
pub async fn send_message(
    csrf: String,
    channel_id: String,
    content: String,
    client_msg_id: String,
) -> Result<Message, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(match backend.check_csrf(&parts, &csrf) {
        Ok(()) => {
            backend
                .send_message(&parts, &channel_id, &content, &client_msg_id)
                .await
        }
        Err(e) => Err(e),
    })
}

#[server(input = server_fn::codec::GetUrl, endpoint = "poll")]
pub async fn poll(since: String, timeout: u64) -> Result<SyncResponse, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(backend.sync(&parts, &since, timeout).await)
}

#[server(endpoint = "typing")]
pub async fn send_typing(csrf: String, channel_id: String) -> Result<(), ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(match backend.check_csrf(&parts, &csrf) {
        Ok(()) => backend.typing(&parts, &channel_id).await,
        Err(e) => Err(e),
    })
}

#[server(endpoint = "mark_read")]
pub async fn mark_read(
    csrf: String,
    channel_id: String,
    message_id: String,
) -> Result<(), ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(match backend.check_csrf(&parts, &csrf) {
        Ok(()) => backend.mark_read(&parts, &channel_id, &message_id).await,
        Err(e) => Err(e),
    })
}

/// A fresh `client_msg_id`.
pub fn new_client_msg_id() -> String {
    #[cfg(feature = "hydrate")]
    {
        format!(
            "web-{:x}-{:x}",
            js_sys::Date::now() as u64,
            (js_sys::Math::random() * 1e15) as u64
        )
    }
    #[cfg(not(feature = "hydrate"))]
    {
        "server-render".to_string()
    }
}
