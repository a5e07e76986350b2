//! Chat in the UI: the server functions of the chat pages.
//!
//! Sends always go through `send_message` (an HTTP call, idempotent on `client_msg_id`), so
//! pending, sent and failed-then-retried messages behave the same whichever transport
//! receives. Receiving is the live client's job ([`crate::live`]).

use crate::{
    error::ApiError,
    model::{Channel, ChannelSummary, ChatServer, Id, Message, Page, SyncResponse},
};
use leptos::prelude::*;

#[server(input = server_fn::codec::GetUrl, endpoint = "channels")]
pub async fn list_channels() -> Result<Vec<ChannelSummary>, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(backend.channels(&parts).await)
}

/// The live chat servers, least loaded first (discovery), for the live client.
#[server(input = server_fn::codec::GetUrl, endpoint = "chat_servers")]
pub async fn chat_servers() -> Result<Vec<ChatServer>, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(backend.chat_servers(&parts).await)
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

/// A page of a channel's history: the newest, the one before `before`, or the one after
/// `after` (oldest first, to fill a gap).
#[server(input = server_fn::codec::GetUrl, endpoint = "history")]
pub async fn get_history(
    id: String,
    before: Option<String>,
    after: Option<String>,
) -> Result<Page<Message>, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(backend.history(&parts, &id, before, after).await)
}

/// The holes in one channel's messages, given as `(id, seq)` in id order: the ids of the
/// messages after which a `seq` is missing. `seq`s have no gaps, so a hole is a message this
/// client has not received (a lost delivery, or one sent while the page loaded); the page
/// fetches the history after it rather than show a conversation with a silent gap.
pub fn gaps(messages: impl IntoIterator<Item = (Id, i64)>) -> Vec<Id> {
    let mut found = Vec::new();
    let mut previous: Option<(Id, i64)> = None;
    for (id, seq) in messages {
        if let Some((before, before_seq)) = previous {
            if seq > before_seq + 1 {
                found.push(before);
            }
        }
        previous = Some((id, seq));
    }
    found
}

/// Sends a message; `media` is the ids of the sender's uploads, comma-separated.
#[server(endpoint = "send_message")]
pub async fn send_message(
    csrf: String,
    channel_id: String,
    content: String,
    media: String,
    client_msg_id: String,
) -> Result<Message, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(match backend.check_csrf(&parts, &csrf) {
        Ok(()) => {
            backend
                .send_message(&parts, &channel_id, &content, &media, &client_msg_id)
                .await
        }
        Err(e) => Err(e),
    })
}

#[server(endpoint = "rename_group")]
pub async fn rename_group(
    csrf: String,
    channel_id: String,
    name: String,
) -> Result<Channel, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(match backend.check_csrf(&parts, &csrf) {
        Ok(()) => backend.rename_group(&parts, &channel_id, &name).await,
        Err(e) => Err(e),
    })
}

/// Adds (`add`) or removes a member of a group.
#[server(endpoint = "change_member")]
pub async fn change_member(
    csrf: String,
    channel_id: String,
    username: String,
    add: bool,
) -> Result<(), ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(match backend.check_csrf(&parts, &csrf) {
        Ok(()) => {
            backend
                .change_member(&parts, &channel_id, username.trim(), add)
                .await
        }
        Err(e) => Err(e),
    })
}

#[server(endpoint = "edit_message")]
pub async fn edit_message(
    csrf: String,
    channel_id: String,
    message_id: String,
    content: String,
) -> Result<Message, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(match backend.check_csrf(&parts, &csrf) {
        Ok(()) => {
            backend
                .edit_message(&parts, &channel_id, &message_id, &content)
                .await
        }
        Err(e) => Err(e),
    })
}

#[server(endpoint = "delete_message")]
pub async fn delete_message(
    csrf: String,
    channel_id: String,
    message_id: String,
) -> Result<(), ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(match backend.check_csrf(&parts, &csrf) {
        Ok(()) => {
            backend
                .delete_message(&parts, &channel_id, &message_id)
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

#[cfg(test)]
mod tests {
    use super::gaps;
    use crate::model::Id;

    #[test]
    fn a_missing_seq_is_found_after_the_message_before_it() {
        assert!(gaps([]).is_empty());
        assert!(gaps([(Id(10), 1)]).is_empty());
        assert!(gaps([(Id(10), 4), (Id(11), 5), (Id(12), 6)]).is_empty());
        assert_eq!(
            gaps([(Id(10), 4), (Id(11), 5), (Id(14), 8), (Id(20), 10)]),
            vec![Id(11), Id(14)]
        );
    }
}
