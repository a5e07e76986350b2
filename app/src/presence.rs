//! Presence in the UI: a user's online dot, kept current by the live client.

use crate::{
    error::ApiError,
    live::LiveClient,
    model::{Id, PresenceStatus, UserPresence},
};
use leptos::prelude::*;

/// The presence of users, `usernames` separated by commas.
#[server(input = server_fn::codec::GetUrl, endpoint = "presence")]
pub async fn get_presence(usernames: String) -> Result<Vec<UserPresence>, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    let names: Vec<String> = usernames
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect();
    crate::backend::finish(backend.presence(&parts, &names).await)
}

/// "Online" or "Offline · last seen …" for one user: fetched in the browser, then updated
/// by the `presence` events the server pushes to friends and small-channel members.
///
/// The first state is fetched after hydration, not by a resource: the dot sits inside
/// other components' Suspense, where a resource of its own would make them render again.
#[component]
pub fn PresenceDot(user_id: Id, username: String, display_name: String) -> impl IntoView {
    let client = LiveClient::get();
    let fetched = RwSignal::new(None::<UserPresence>);
    Effect::new(move |_| {
        let username = username.clone();
        leptos::task::spawn_local(async move {
            if let Ok(mut p) = get_presence(username).await {
                fetched.set(p.pop());
            }
        });
    });
    let state = Signal::derive(move || {
        client
            .presence
            .with(|p| p.get(&user_id).map(|s| (s.status, s.last_active_at)))
            .or_else(|| fetched.with(|f| f.as_ref().map(|p| (p.status, p.last_active_at))))
    });
    let online = Signal::derive(move || {
        state
            .get()
            .is_some_and(|(s, _)| s == PresenceStatus::Online)
    });
    let label = move || {
        format!(
            "{display_name} is {}",
            if online.get() { "online" } else { "offline" }
        )
    };
    let text = move || match state.get() {
        Some((PresenceStatus::Online, _)) => "Online".to_string(),
        Some((PresenceStatus::Offline, Some(at))) => {
            format!("Offline · last seen {}", at.format("%b %-d, %H:%M UTC"))
        }
        Some((PresenceStatus::Offline, None)) => "Offline".to_string(),
        None => String::new(),
    };
    view! {
        <Show when=move || state.with(Option::is_some)>
            <span class="presence" class:online=move || online.get() role="status" aria-label=label.clone()>
                <span class="presence-dot" aria-hidden="true"></span>
                {text}
            </span>
        </Show>
    }
}

/// Who of a group is online, read once when the group is opened: groups larger than a few
/// people get no presence pushed (every change would go to every member).
#[component]
pub fn GroupPresence(members: Vec<crate::model::User>) -> impl IntoView {
    let online = RwSignal::new(None::<Vec<String>>);
    let usernames = members
        .iter()
        .map(|m| m.username.clone())
        .collect::<Vec<_>>()
        .join(",");
    let names: Vec<(Id, String)> = members
        .iter()
        .map(|m| (m.id, m.display_name.clone()))
        .collect();
    let me = crate::feed::viewer_id();
    Effect::new(move |_| {
        let (usernames, names) = (usernames.clone(), names.clone());
        leptos::task::spawn_local(async move {
            if let Ok(items) = get_presence(usernames).await {
                online.set(Some(
                    items
                        .into_iter()
                        .filter(|p| p.status == PresenceStatus::Online && Some(p.user_id) != me)
                        .filter_map(|p| names.iter().find(|(id, _)| *id == p.user_id))
                        .map(|(_, name)| name.clone())
                        .collect(),
                ));
            }
        });
    });
    let text = move || match online.get() {
        None => String::new(),
        Some(names) if names.is_empty() => "Nobody else is online".to_string(),
        Some(names) => format!("Online now: {}", names.join(", ")),
    };
    view! { <p class="presence muted" role="status">{text}</p> }
}
