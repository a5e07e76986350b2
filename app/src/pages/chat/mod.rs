//! The chat pages: the conversation list with group creation ([`ChatList`]) and one
//! conversation ([`Conversation`]): its state (`thread`) and the parts it is drawn with
//! (`parts`: message list, composer, typing line; `group`: a group's members and name).

mod group;
mod list;
mod parts;
mod thread;

use crate::{
    chat::{get_channel, get_history},
    feed::viewer_id,
    live::{LiveClient, Transport},
    model::{Channel, ChannelKind},
};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

pub use list::ChatList;

/// What to call a channel: the other person in a 1:1, the name of a group.
fn title(channel: &Channel) -> String {
    match channel.kind {
        ChannelKind::Group => channel.name.clone(),
        ChannelKind::Dm => {
            let me = viewer_id();
            channel
                .members
                .iter()
                .find(|m| Some(m.id) != me)
                .map(|m| m.display_name.clone())
                .unwrap_or_else(|| "Conversation".to_string())
        }
    }
}

#[component]
pub fn Conversation() -> impl IntoView {
    let client = LiveClient::get();
    client.start();
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let info = Resource::new(id, get_channel);
    let first = Resource::new(id, |id| get_history(id, None, None));
    let banner = move || match client.transport.get() {
        Transport::Reconnecting => Some("Reconnecting…"),
        Transport::SignedOut => Some("You were signed out. Sign in again to keep chatting."),
        _ => None,
    };
    view! {
        // Always in the page, so screen readers announce the change of its text.
        <p role="status" class=move || if banner().is_some() { "banner" } else { "visually-hidden" }>
            {move || banner().unwrap_or_default()}
        </p>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match (info.await, first.await) {
                    (Ok(channel), Ok(page)) => view! { <thread::Thread channel page /> }.into_any(),
                    (Err(e), _) | (_, Err(e)) => view! {
                        <Title text="Conversation" />
                        <p role="alert" class="error">{e.message}</p>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}
