//! The parts a conversation is drawn with, each reading the conversation's state
//! ([`ThreadState`]) or the live client: the message list, the "seen by" and typing lines,
//! the announcer for screen readers and the composer.

use super::thread::ThreadState;
use crate::{
    chat::send_typing,
    feed::{csrf_token, viewer_id},
    live::LiveClient,
    model::Id,
};
use leptos::prelude::*;

/// The typing indicator is sent at most this often while the draft changes.
const TYPING_EVERY_MS: f64 = 3_000.0;

/// The history with its "Load earlier messages" button, then the sends on their way.
#[component]
pub(super) fn MessageList(state: ThreadState) -> impl IntoView {
    let retry = move |client_msg_id: String| {
        state.retry(&client_msg_id);
        // The Retry button goes away with the failure it offered to fix.
        state.focus_composer();
    };
    view! {
        // The history scrolls inside the card, so the send box stays in view. The outer
        // box is a reversed column (with one child): browsers then keep it scrolled to
        // the newest message as messages arrive, unless the reader scrolled up.
        <div class="scroller" tabindex="0" role="region" aria-label="Message history">
            <div>
                <Show when=move || state.cursor.with(Option::is_some)>
                    // aria-disabled, not disabled: a disabled button would drop the
                    // keyboard focus while the page loads.
                    <button type="button" class="button-quiet" on:click=move |_| state.load_older()
                        aria-disabled=move || state.loading_older.get().to_string()>
                        {move || if state.loading_older.get() { "Loading earlier messages…" } else { "Load earlier messages" }}
                    </button>
                </Show>
                <Show when=move || state.older_failed.with(Option::is_some)>
                    <p role="alert" class="error">{move || format!("Could not load earlier messages: {}", state.older_failed.get().unwrap_or_default())}</p>
                </Show>
                <ol class="messages" aria-label="Messages">
                    <For each=move || state.messages.get() key=|m| m.id let:m>
                        <li class="message">
                            <span class="sender">{m.sender.display_name.clone()}</span>
                            <time class="muted" datetime=m.created_at.to_rfc3339()>{m.created_at.format("%H:%M").to_string()}</time>
                            <p class="message-body">{m.content.clone()}</p>
                        </li>
                    </For>
                    <For each=move || state.waiting() key=|p| (p.client_msg_id.clone(), p.failed.clone()) let:p>
                        <li class="message pending">
                            <span class="sender">"You"</span>
                            <p class="message-body">{p.content.clone()}</p>
                            {match p.failed.clone() {
                                None => view! { <span class="muted">"Sending…"</span> }.into_any(),
                                Some(reason) => {
                                    let id = p.client_msg_id.clone();
                                    view! {
                                        <span role="alert" class="error">{format!("Not sent: {reason}")}</span>
                                        <button type="button" class="button-quiet" on:click=move |_| retry(id.clone())>"Retry"</button>
                                    }.into_any()
                                }
                            }}
                        </li>
                    </For>
                </ol>
            </div>
        </div>
    }
}

/// "Seen by …" under the newest message, from read receipts that arrived live.
#[component]
pub(super) fn SeenBy(state: ThreadState, names: Vec<(Id, String)>) -> impl IntoView {
    let client = LiveClient::get();
    let me = viewer_id();
    let seen_by = Signal::derive(move || {
        let newest = state.messages.with(|all| all.last().map(|m| m.id))?;
        let who: Vec<String> = client.reads.with(|reads| {
            reads
                .iter()
                .filter(|r| {
                    r.channel_id == state.channel_id
                        && Some(r.user_id) != me
                        && r.message_id >= newest
                })
                .filter_map(|r| names.iter().find(|(id, _)| *id == r.user_id))
                .map(|(_, name)| name.clone())
                .collect()
        });
        (!who.is_empty()).then(|| format!("Seen by {}", who.join(", ")))
    });
    view! {
        <Show when=move || seen_by.with(Option::is_some)>
            <p class="muted seen">{seen_by}</p>
        </Show>
    }
}

/// Who else is typing in the channel right now.
#[component]
pub(super) fn TypingLine(channel_id: Id, names: Vec<(Id, String)>) -> impl IntoView {
    let client = LiveClient::get();
    let me = viewer_id();
    let text = move || {
        let typing: Vec<String> = client.typing.with(|t| {
            t.iter()
                .filter(|t| t.channel_id == channel_id && Some(t.user_id) != me)
                .filter_map(|t| names.iter().find(|(id, _)| *id == t.user_id))
                .map(|(_, name)| name.clone())
                .collect()
        });
        match typing.as_slice() {
            [] => String::new(),
            [one] => format!("{one} is typing…"),
            many => format!("{} are typing…", many.join(", ")),
        }
    };
    view! { <p class="muted typing">{text}</p> }
}

/// New messages from the others, announced one at a time to screen readers (not the whole
/// list, which older pages and filled holes also change).
#[component]
pub(super) fn Announcer(channel_id: Id) -> impl IntoView {
    let client = LiveClient::get();
    let me = viewer_id();
    let newest = Memo::new(move |_| {
        client.messages.with(|live| {
            live.get(&channel_id)?
                .iter()
                .rev()
                .find(|m| Some(m.sender.id) != me && client.arrived_live(m.id))
                .map(|m| (m.id, format!("{}: {}", m.sender.display_name, m.content)))
        })
    });
    view! {
        <p class="visually-hidden" role="status">
            {move || newest.get().map(|(_, text)| text).unwrap_or_default()}
        </p>
    }
}

/// The message box: Enter or the Send button sends; typing tells the others, at most
/// every few seconds.
#[component]
pub(super) fn Composer(state: ThreadState) -> impl IntoView {
    let (draft, set_draft) = signal(String::new());
    let last_typing = StoredValue::new(0f64);
    let typed = move || {
        let now = now_ms();
        if now - last_typing.get_value() < TYPING_EVERY_MS {
            return;
        }
        last_typing.set_value(now);
        let channel = state.channel_id.to_string();
        leptos::task::spawn_local(async move {
            let _ = send_typing(csrf_token(), channel).await;
        });
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        state.focus_composer();
        let content = draft.get_untracked();
        if !content.trim().is_empty() {
            set_draft.set(String::new());
            state.send(content);
        }
    };
    view! {
        <form class="send" on:submit=submit>
            <label for="message-input" class="visually-hidden">"Message"</label>
            <input id="message-input" node_ref=state.input type="text" autocomplete="off" maxlength="4000" placeholder="Write a message"
                aria-label="Message" prop:value=draft on:input=move |ev| {
                    set_draft.set(event_target_value(&ev));
                    typed();
                } />
            <button type="submit">"Send"</button>
        </form>
    }
}

/// Milliseconds on the browser's clock (0 on the server, where nothing is typed).
fn now_ms() -> f64 {
    #[cfg(feature = "hydrate")]
    {
        js_sys::Date::now()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        0.0
    }
}
