//! The parts a conversation is drawn with, each reading the conversation's state
//! ([`ThreadState`]) or the live client: the message list, the "seen by" and typing lines,
//! the announcer for screen readers and the composer.

use super::thread::ThreadState;
use crate::{
    chat::{delete_message, edit_message, send_typing},
    components::{
        media::{on_dragover, on_drop, on_paste, AttachPicker, Attachments, MediaGallery},
        time::LocalTime,
    },
    feed::{csrf_token, viewer_id},
    live::{Change, LiveClient},
    model::{Id, Message},
};
use chrono::{DateTime, Utc};
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
                    <For each=move || shown(state) key=|s| s.key() let:s>
                        <MessageItem state shown=s />
                    </For>
                    <For each=move || state.waiting() key=|p| (p.client_msg_id.clone(), p.failed.clone()) let:p>
                        <li class="message pending">
                            <span class="sender">"You"</span>
                            {(!p.content.is_empty()).then(|| view! { <p class="message-body">{p.content.clone()}</p> })}
                            {(!p.media.is_empty()).then(|| view! { <MediaGallery media=p.media.clone() /> })}
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

/// Consecutive messages of one sender within this time are drawn as one group.
const GROUP_WITHIN_SECS: i64 = 5 * 60;

/// A message as the list draws it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Shown {
    message: Message,
    /// Sent by the reader.
    mine: bool,
    /// Follows a message of the same sender closely: drawn without the sender's name.
    continues: bool,
}

impl Shown {
    /// Redraws the item when what it shows changes.
    fn key(&self) -> (Id, bool, Option<DateTime<Utc>>, bool, bool) {
        let m = &self.message;
        (
            m.id,
            self.continues,
            m.edited_at,
            m.deleted_at.is_some(),
            m.hidden,
        )
    }
}

fn shown(state: ThreadState) -> Vec<Shown> {
    let me = viewer_id();
    state.messages.with(|all| {
        let mut before: Option<&Message> = None;
        all.iter()
            .map(|m| {
                let continues = before.is_some_and(|b| {
                    b.sender.id == m.sender.id
                        && (m.created_at - b.created_at).num_seconds() < GROUP_WITHIN_SECS
                });
                before = Some(m);
                Shown {
                    message: m.clone(),
                    mine: Some(m.sender.id) == me,
                    continues,
                }
            })
            .collect()
    })
}

/// One message: sender and time (unless it continues a group), its text or "Message
/// deleted", "(edited)", and for the reader's own messages Edit and Delete.
#[component]
fn MessageItem(state: ThreadState, shown: Shown) -> impl IntoView {
    let Shown {
        message: m,
        mine,
        continues,
    } = shown;
    let client = LiveClient::get();
    let editing = RwSignal::new(false);
    let confirming = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let deleted = m.deleted_at.is_some();
    let (channel, id) = (state.channel_id, m.id);
    let class = match (mine, continues) {
        (true, true) => "message mine continues",
        (true, false) => "message mine",
        (false, true) => "message continues",
        (false, false) => "message",
    };
    let excerpt: String = m.content.chars().take(40).collect();
    let remove = move |_| {
        leptos::task::spawn_local(async move {
            match delete_message(csrf_token(), channel.to_string(), id.to_string()).await {
                Ok(()) => {
                    client.changed(id, Change::Deleted(now()));
                    state.focus_composer();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let media = (!deleted && !m.hidden && !m.media.is_empty()).then(|| m.media.clone());
    let body = if deleted {
        view! { <p class="message-body muted deleted">"Message deleted"</p> }.into_any()
    } else if m.hidden {
        view! { <p class="message-body muted hidden-message">"Hidden: you blocked this person"</p> }
            .into_any()
    } else {
        let content = m.content.clone();
        let edited = m
            .edited_at
            .map(|at| format!("Edited {}", at.format("%b %-d, %Y, %H:%M UTC")));
        view! {
            <Show when=move || !editing.get()
                fallback=move || view! { <EditForm channel id content=content.clone() editing error /> }>
                <p class="message-body">
                    {m.content.clone()}
                    {edited.clone().map(|title| view! { " " <span class="muted edited" title=title>"(edited)"</span> })}
                </p>
            </Show>
        }
        .into_any()
    };
    view! {
        <li class=class>
            {(!continues).then(|| view! {
                <span class="sender">{m.sender.display_name.clone()}</span>
                <LocalTime at=m.created_at class="muted" />
            })}
            {body}
            {media.map(|media| view! { <MediaGallery media /> })}
            {(mine && !deleted).then(|| view! {
                <div class="message-actions">
                    <Show when=move || !editing.get() && !confirming.get()>
                        <button type="button" class="button-quiet" aria-label=format!("Edit message: {excerpt}")
                            on:click=move |_| { error.set(None); editing.set(true); }>"Edit"</button>
                        <button type="button" class="button-quiet danger" aria-label=format!("Delete message: {excerpt}")
                            on:click=move |_| { error.set(None); confirming.set(true); }>"Delete"</button>
                    </Show>
                    <Show when=move || confirming.get()>
                        <span>"Delete this message for everyone?"</span>
                        <button type="button" class="button-quiet danger" on:click=remove>"Yes, delete"</button>
                        <button type="button" class="button-quiet" on:click=move |_| confirming.set(false)>"Keep it"</button>
                    </Show>
                </div>
            })}
            <Show when=move || error.with(Option::is_some)>
                <p role="alert" class="error">{move || error.get()}</p>
            </Show>
        </li>
    }
}

/// The text box that replaces a message being edited: Enter saves, Escape cancels.
#[component]
fn EditForm(
    channel: Id,
    id: Id,
    content: String,
    editing: RwSignal<bool>,
    error: RwSignal<Option<String>>,
) -> impl IntoView {
    let client = LiveClient::get();
    let draft = RwSignal::new(content);
    let input = NodeRef::<leptos::html::Input>::new();
    Effect::new(move |_| {
        if let Some(el) = input.get() {
            let _ = el.focus();
        }
    });
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let text = draft.get_untracked();
        leptos::task::spawn_local(async move {
            match edit_message(csrf_token(), channel.to_string(), id.to_string(), text).await {
                Ok(message) => {
                    client.changed(id, Change::Edited(Box::new(message)));
                    editing.set(false);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let field = format!("edit-{id}");
    view! {
        <form class="edit" on:submit=save>
            <label for=field.clone() class="visually-hidden">"Edit message"</label>
            <input id=field type="text" maxlength="4000" node_ref=input prop:value=draft
                on:input=move |ev| draft.set(event_target_value(&ev))
                on:keydown=move |ev| if ev.key() == "Escape" { editing.set(false); } />
            <button type="submit">"Save"</button>
            <button type="button" class="button-quiet" on:click=move |_| editing.set(false)>"Cancel"</button>
        </form>
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
    let attachments = Attachments::new();
    let error = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        state.focus_composer();
        if attachments.uploading() {
            error.set(Some("Wait for the images to finish uploading".into()));
            return;
        }
        let content = draft.get_untracked();
        if content.trim().is_empty() && attachments.is_empty() {
            return;
        }
        error.set(None);
        set_draft.set(String::new());
        // The images' descriptions are saved before the message goes.
        let taken = attachments.take();
        leptos::task::spawn_local(async move {
            match crate::components::media::finish(taken.clone()).await {
                Ok(media) => state.send(content, media),
                Err(message) => {
                    attachments.restore(taken);
                    set_draft.set(content);
                    error.set(Some(message));
                }
            }
        });
    };
    view! {
        <form class="send" on:submit=submit on:paste=on_paste(attachments)
            on:drop=on_drop(attachments) on:dragover=on_dragover>
            <label for="message-input" class="visually-hidden">"Message"</label>
            <input id="message-input" node_ref=state.input type="text" autocomplete="off" maxlength="4000" placeholder="Write a message"
                aria-label="Message" prop:value=draft on:input=move |ev| {
                    set_draft.set(event_target_value(&ev));
                    typed();
                } />
            <button type="submit">"Send"</button>
            <AttachPicker attachments id="message-images" />
            <Show when=move || error.with(Option::is_some)>
                <p role="alert" class="error">{move || error.get()}</p>
            </Show>
        </form>
    }
}

/// The browser's time (a deletion made here shows before its live event confirms it).
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(now_ms() as i64).unwrap_or_default()
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
