//! One conversation: [`ThreadState`] holds what the page knows of it and the actions on
//! it (send, retry, load earlier messages, fill holes, mark read); [`Thread`] lays out
//! the parts of `super::parts` around it.

use super::{
    group::{GroupPanel, GroupState},
    parts::{Announcer, Composer, MessageList, SeenBy, TypingLine},
    title,
};
use crate::{
    chat::{gaps, get_history, mark_read, new_client_msg_id, send_message},
    error::ApiError,
    feed::{csrf_token, viewer_id},
    live::LiveClient,
    model::{Channel, ChannelKind, Id, Message, Page},
    presence::{GroupPresence, PresenceDot},
};
use leptos::{html::Input, prelude::*};
use leptos_meta::Title;
use std::time::Duration;

/// A failed fetch of a hole in the `seq`s is tried again after this.
const REFILL_AFTER: Duration = Duration::from_secs(3);

/// A message being sent from this page.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Pending {
    pub client_msg_id: String,
    pub content: String,
    /// The images, uploaded and described.
    pub media: Vec<crate::model::Media>,
    /// Why the last attempt failed (`None` while it is on its way).
    pub failed: Option<String>,
}

/// What the page knows of one conversation, and what can be done to it. Every field is a
/// handle to a signal, so the state is `Copy` and each part takes it whole.
#[derive(Clone, Copy)]
pub(super) struct ThreadState {
    pub channel_id: Id,
    /// Everything known of the channel, in id order, each message once: the history pages,
    /// what this page sent, the holes it filled and what arrived live, with the edits and
    /// deletions received since applied.
    pub messages: Memo<Vec<Message>>,
    /// Sends not stored yet, or failed.
    pending: RwSignal<Vec<Pending>>,
    /// Older pages loaded on request, and where the next one starts (`None`: at the start
    /// of the conversation).
    older: RwSignal<Vec<Message>>,
    pub cursor: RwSignal<Option<String>>,
    pub loading_older: RwSignal<bool>,
    pub older_failed: RwSignal<Option<String>>,
    /// Sent from this page, as the server stored them.
    confirmed: RwSignal<Vec<Message>>,
    /// Fetched to fill a hole in the `seq`s.
    filled: RwSignal<Vec<Message>>,
    /// The composer's text box, which keeps the focus after a send or a retry.
    pub input: NodeRef<Input>,
}

impl ThreadState {
    pub fn new(channel_id: Id, page: Page<Message>) -> Self {
        let client = LiveClient::get();
        let first = StoredValue::new(page.items);
        let older = RwSignal::new(Vec::new());
        let confirmed = RwSignal::new(Vec::new());
        let filled = RwSignal::new(Vec::new());
        // This channel's live messages: a message to another channel leaves it unchanged,
        // so the merge below runs again only for arrivals here.
        let live = Memo::new(move |_| client.channel_messages(channel_id));
        let messages = Memo::new(move |_| {
            let mut all: Vec<Message> = older.get();
            first.with_value(|f| all.extend(f.iter().cloned()));
            all.extend(confirmed.get());
            all.extend(filled.get());
            all.extend(live.get());
            all.sort_by_key(|m| m.id);
            all.dedup_by_key(|m| m.id);
            client.changes.with(|changes| {
                for m in &mut all {
                    if let Some(change) = changes.get(&m.id) {
                        change.apply(m);
                    }
                }
            });
            all
        });
        Self {
            channel_id,
            messages,
            pending: RwSignal::new(Vec::new()),
            older,
            cursor: RwSignal::new(page.next_cursor),
            loading_older: RwSignal::new(false),
            older_failed: RwSignal::new(None),
            confirmed,
            filled,
            input: NodeRef::new(),
        }
    }

    /// Sends not among the stored messages yet (tracked).
    pub fn waiting(&self) -> Vec<Pending> {
        let pending = self.pending.get();
        self.messages.with(|done| {
            pending
                .into_iter()
                .filter(|p| !done.iter().any(|m| m.client_msg_id == p.client_msg_id))
                .collect()
        })
    }

    /// Sends `content` with the images `media` as a new message (blank text and no
    /// images sends nothing).
    pub fn send(&self, content: String, media: Vec<crate::model::Media>) {
        if content.trim().is_empty() && media.is_empty() {
            return;
        }
        let p = Pending {
            client_msg_id: new_client_msg_id(),
            content,
            media,
            failed: None,
        };
        self.pending.update(|ps| ps.push(p.clone()));
        self.deliver(p);
    }

    /// Sends a failed message again, under the same `client_msg_id` (stored at most once).
    pub fn retry(&self, client_msg_id: &str) {
        let mut again = None;
        self.pending.update(|ps| {
            if let Some(x) = ps.iter_mut().find(|x| x.client_msg_id == client_msg_id) {
                x.failed = None;
                again = Some(x.clone());
            }
        });
        if let Some(p) = again {
            self.deliver(p);
        }
    }

    fn deliver(&self, p: Pending) {
        let (channel, pending, confirmed) =
            (self.channel_id.to_string(), self.pending, self.confirmed);
        leptos::task::spawn_local(async move {
            let result = send_message(
                csrf_token(),
                channel,
                p.content.clone(),
                crate::feed::media_ids(&p.media),
                p.client_msg_id.clone(),
            )
            .await;
            match result {
                Ok(message) => {
                    confirmed.update(|c| c.push(message));
                    pending.update(|ps| ps.retain(|x| x.client_msg_id != p.client_msg_id));
                }
                Err(ApiError { message, .. }) => pending.update(|ps| {
                    if let Some(x) = ps.iter_mut().find(|x| x.client_msg_id == p.client_msg_id) {
                        x.failed = Some(message);
                    }
                }),
            }
        });
    }

    /// Loads the page of history before the oldest shown (once at a time).
    pub fn load_older(&self) {
        let Some(before) = self.cursor.get_untracked() else {
            return;
        };
        if self.loading_older.get_untracked() {
            return;
        }
        self.loading_older.set(true);
        self.older_failed.set(None);
        let state = *self;
        leptos::task::spawn_local(async move {
            match get_history(state.channel_id.to_string(), Some(before), None).await {
                Ok(page) => {
                    state.older.update(|o| o.extend(page.items));
                    state.cursor.set(page.next_cursor);
                }
                Err(e) => state.older_failed.set(Some(e.message)),
            }
            state.loading_older.set(false);
        });
    }

    /// Keeps the history whole: a hole in the `seq`s is a message this page never received
    /// (sent while the page loaded, a delivery lost on the way, a live message dropped by
    /// the live client), so what follows the message before it is fetched. Each answer
    /// fills the hole or moves it up, until none is left. A hole is asked for once (one
    /// the server cannot fill does not repeat); a failed fetch is tried again later.
    pub fn fill_holes(&self) {
        let state = *self;
        let tried = StoredValue::new(Vec::<Id>::new());
        let retry = RwSignal::new(0u32);
        Effect::new(move |_| {
            retry.track();
            let holes = state
                .messages
                .with(|all| gaps(all.iter().map(|m| (m.id, m.seq))));
            let Some(after) = holes
                .into_iter()
                .find(|hole| tried.with_value(|t| !t.contains(hole)))
            else {
                return;
            };
            tried.update_value(|t| t.push(after));
            leptos::task::spawn_local(async move {
                let channel = state.channel_id.to_string();
                match get_history(channel, None, Some(after.to_string())).await {
                    Ok(page) => state.filled.update(|f| f.extend(page.items)),
                    Err(_) => {
                        tried.update_value(|t| t.retain(|hole| *hole != after));
                        set_timeout(move || retry.update(|n| *n += 1), REFILL_AFTER);
                    }
                }
            });
        });
    }

    /// Read receipts: the newest message shown while the page is visible is read,
    /// including what arrived while the tab was hidden, once it is shown again.
    pub fn mark_read_while_shown(&self) {
        let state = *self;
        let marked = StoredValue::new(Id(0));
        let shown_again = RwSignal::new(0u32);
        let visibility = window_event_listener_untyped("visibilitychange", move |_| {
            shown_again.update(|n| *n += 1);
        });
        on_cleanup(move || visibility.remove());
        Effect::new(move |_| {
            shown_again.track();
            let Some(newest) = state.messages.with(|all| all.last().map(|m| m.id)) else {
                return;
            };
            if newest <= marked.get_value() || !page_visible() {
                return;
            }
            marked.set_value(newest);
            let channel = state.channel_id.to_string();
            leptos::task::spawn_local(async move {
                let _ = mark_read(csrf_token(), channel, newest.to_string()).await;
            });
        });
    }

    /// Puts the keyboard focus back in the composer.
    pub fn focus_composer(&self) {
        if let Some(el) = self.input.get_untracked() {
            let _ = el.focus();
        }
    }
}

#[component]
pub(super) fn Thread(channel: Channel, page: Page<Message>) -> impl IntoView {
    let state = ThreadState::new(channel.id, page);
    state.fill_holes();
    state.mark_read_while_shown();
    let me = viewer_id();
    // A group's name and members change from its panel; a 1:1 conversation's do not.
    let group = (channel.kind == ChannelKind::Group).then(|| GroupState::new(&channel));
    let fixed_name = title(&channel);
    let dm_members = channel.members.clone();
    let name = Signal::derive(move || match group {
        Some(g) => g.name.get(),
        None => fixed_name.clone(),
    });
    let members = Signal::derive(move || {
        let names = |users: &Vec<crate::model::User>| {
            users
                .iter()
                .map(|m| m.display_name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match group {
            Some(g) => g.members.with(names),
            None => names(&dm_members),
        }
    });
    let dm_partner = (channel.kind == ChannelKind::Dm)
        .then(|| channel.members.iter().find(|m| Some(m.id) != me).cloned())
        .flatten();
    let names: Vec<(Id, String)> = channel
        .members
        .iter()
        .map(|m| (m.id, m.display_name.clone()))
        .collect();
    view! {
        <Title text=move || name.get() />
        <section class="card thread">
            <header>
                <h1>{name}</h1>
                {match dm_partner {
                    Some(u) => view! {
                        <PresenceDot user_id=u.id username=u.username display_name=u.display_name />
                    }.into_any(),
                    None => view! { <GroupPresence members=channel.members.clone() /> }.into_any(),
                }}
                <p class="muted">{members}</p>
                {group.map(|group| view! { <GroupPanel group /> })}
            </header>
            <MessageList state />
            <SeenBy state names=names.clone() />
            <TypingLine channel_id=state.channel_id names />
            <Announcer channel_id=state.channel_id />
            <Composer state />
        </section>
    }
}

/// Whether the page is in front of the user (a hidden tab has not read anything).
fn page_visible() -> bool {
    #[cfg(feature = "hydrate")]
    {
        web_sys::window()
            .and_then(|w| w.document())
            .is_some_and(|d| !d.hidden())
    }
    #[cfg(not(feature = "hydrate"))]
    {
        false
    }
}
