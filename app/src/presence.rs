//! Presence in the UI: a user's online dot, kept current by the live client.

use crate::{
    error::ApiError,
    live::LiveClient,
    model::{Id, PresenceStatus, UserPresence},
};
use leptos::prelude::*;

#[server(input = server_fn::codec::GetUrl, endpoint = "presence")]
pub async fn get_presence(username: String) -> Result<UserPresence, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(backend.presence(&parts, &username).await)
}

/// "Online" or "Offline · last seen …" for one user: fetched once, then updated by the
/// `presence` events the server pushes to friends and small-channel members.
#[component]
pub fn PresenceDot(user_id: Id, username: String, display_name: String) -> impl IntoView {
    let client = LiveClient::get();
    let fetched = Resource::new(move || username.clone(), get_presence);
    view! {
        <Transition fallback=|| ()>
            {move || {
                let name = display_name.clone();
                Suspend::new(async move {
                    let first = fetched.await.ok();
                    let state = Signal::derive(move || {
                        client
                            .presence
                            .with(|p| p.get(&user_id).map(|s| (s.status, s.last_active_at)))
                            .or_else(|| first.as_ref().map(|p| (p.status, p.last_active_at)))
                    });
                    let online = Signal::derive(move || {
                        state.get().is_some_and(|(s, _)| s == PresenceStatus::Online)
                    });
                    let label = {
                        let name = name.clone();
                        move || format!("{name} is {}", if online.get() { "online" } else { "offline" })
                    };
                    let text = move || match state.get() {
                        Some((PresenceStatus::Online, _)) => "Online".to_string(),
                        Some((PresenceStatus::Offline, Some(at))) => {
                            format!("Offline · last seen {}", at.format("%b %-d, %H:%M UTC"))
                        }
                        _ => "Offline".to_string(),
                    };
                    view! {
                        <span class="presence" class:online=online role="status" aria-label=label>
                            <span class="presence-dot" aria-hidden="true"></span>
                            {text}
                        </span>
                    }
                })
            }}
        </Transition>
    }
}
