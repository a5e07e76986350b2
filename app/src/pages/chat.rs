//! The chat pages: the conversation list (with group creation) and a conversation.

use crate::{
    chat::{
        gaps, get_channel, get_history, list_channels, mark_read, new_client_msg_id, send_message,
        send_typing, CreateGroup,
    },
    components::csrf::CsrfField,
    error::ApiError,
    feed::{csrf_token, viewer_id},
    live::{LiveClient, Transport},
    model::{Channel, ChannelKind, Message, Page},
    presence::{GroupPresence, PresenceDot},
};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{
    components::A,
    hooks::{use_navigate, use_params_map},
};

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
pub fn ChatList() -> impl IntoView {
    let client = LiveClient::get();
    client.start();
    let create = ServerAction::<CreateGroup>::new();
    // A live message or read receipt (this user's other devices included) changes the
    // order and the unread counts: fetch the list again.
    let channels = Resource::new(
        move || {
            (
                create.version().get(),
                client.arrivals.get(),
                client.reads.get(),
            )
        },
        |_| list_channels(),
    );
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(channel)) = create.value().get() {
            navigate(&format!("/chat/{}", channel.id), Default::default());
        }
    });
    let error = move || {
        create
            .value()
            .get()
            .and_then(Result::err)
            .map(|e| e.message)
    };
    view! {
        <Title text="Chat" />
        <h1>"Chat"</h1>
        <Transition fallback=|| view! { <p class="muted">"Loading conversations…"</p> }>
            {move || Suspend::new(async move {
                match channels.await {
                    Ok(list) if list.is_empty() => view! {
                        <p class="muted">"No conversations yet. Open someone's profile and choose Message, or start a group."</p>
                    }.into_any(),
                    Ok(list) => view! {
                        <ul class="conversations" aria-label="Conversations">
                            {list.into_iter().map(|c| {
                                let href = format!("/chat/{}", c.channel.id);
                                let name = title(&c.channel);
                                let preview = c.last_message.map(|m| format!("{}: {}", m.sender.display_name, m.content)).unwrap_or_default();
                                let unread = c.unread_count;
                                view! {
                                    <li class="card conversation">
                                        <A href=href>{name}</A>
                                        <Show when=move || { unread > 0 }>
                                            <span class="badge">{format!("{unread} unread")}</span>
                                        </Show>
                                        <p class="muted preview">{preview.clone()}</p>
                                    </li>
                                }
                            }).collect_view()}
                        </ul>
                    }.into_any(),
                    Err(e) => view! { <p role="alert" class="error">{e.message}</p> }.into_any(),
                }
            })}
        </Transition>
        <section class="card">
            <h2>"New group"</h2>
            <ActionForm action=create>
                <CsrfField />
                <label for="group-name">"Group name"</label>
                <input id="group-name" name="name" maxlength="100" required />
                <label for="group-members">"Members (usernames, separated by commas)"</label>
                <input id="group-members" name="members" autocapitalize="none" spellcheck="false" />
                <Show when=move || error().is_some()>
                    <p role="alert" class="error">{error}</p>
                </Show>
                <button type="submit" disabled=move || create.pending().get()>"Create group"</button>
            </ActionForm>
        </section>
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
    let reconnecting = move || client.transport.get() == Transport::Reconnecting;
    view! {
        // Always in the page, so screen readers announce the change of its text.
        <p role="status" class=move || if reconnecting() { "banner" } else { "visually-hidden" }>
            {move || if reconnecting() { "Reconnecting…" } else { "" }}
        </p>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match (info.await, first.await) {
                    (Ok(channel), Ok(page)) => view! { <Thread channel page /> }.into_any(),
                    (Err(e), _) | (_, Err(e)) => view! {
                        <Title text="Conversation" />
                        <p role="alert" class="error">{e.message}</p>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

/// A message being sent from this page.
#[derive(Clone, Debug, PartialEq)]
struct Pending {
    client_msg_id: String,
    content: String,
    failed: Option<String>,
}

#[component]
fn Thread(channel: Channel, page: Page<Message>) -> impl IntoView {
    let client = LiveClient::get();
    let channel_id = channel.id;
    let name = title(&channel);
    let members = channel
        .members
        .iter()
        .map(|m| m.display_name.clone())
        .collect::<Vec<_>>()
        .join(", ");
    let first = page.items;
    let older = RwSignal::new(Vec::<Message>::new());
    let cursor = RwSignal::new(page.next_cursor);
    let confirmed = RwSignal::new(Vec::<Message>::new());
    // Messages fetched to fill a hole in the `seq`s.
    let filled = RwSignal::new(Vec::<Message>::new());
    let pending = RwSignal::new(Vec::<Pending>::new());
    let (draft, set_draft) = signal(String::new());
    let me = viewer_id();
    let dm_partner = (channel.kind == ChannelKind::Dm)
        .then(|| channel.members.iter().find(|m| Some(m.id) != me).cloned())
        .flatten();
    let member_names: Vec<(crate::model::Id, String)> = channel
        .members
        .iter()
        .map(|m| (m.id, m.display_name.clone()))
        .collect();

    // This channel's live messages, kept here: the live client keeps only the newest of
    // all channels.
    let received = RwSignal::new(Vec::<Message>::new());
    let received_ids = StoredValue::new(std::collections::HashSet::<crate::model::Id>::new());
    Effect::new(move |_| {
        let fresh: Vec<Message> = client.messages.with(|live| {
            live.iter()
                .filter(|m| m.channel_id == channel_id)
                .filter(|m| received_ids.with_value(|ids| !ids.contains(&m.id)))
                .cloned()
                .collect()
        });
        if !fresh.is_empty() {
            received_ids.update_value(|ids| ids.extend(fresh.iter().map(|m| m.id)));
            received.update(|r| r.extend(fresh));
        }
    });
    // Everything known of this channel, in id order, each message once.
    let messages = Memo::new(move |_| {
        let mut all: Vec<Message> = older.get();
        all.extend(first.iter().cloned());
        all.extend(confirmed.get());
        all.extend(filled.get());
        received.with(|r| all.extend(r.iter().cloned()));
        all.sort_by_key(|m| m.id);
        all.dedup_by_key(|m| m.id);
        all
    });
    // A hole in the `seq`s is a message this page never received (sent while the page
    // loaded, or a delivery lost on the way): fetch what follows the message before it.
    // Each answer fills the hole or moves it up, until none is left. A hole is asked for
    // once (one the server cannot fill does not repeat); a failed fetch is tried again a
    // few seconds later.
    let tried = StoredValue::new(Vec::<crate::model::Id>::new());
    let retry = RwSignal::new(0u32);
    Effect::new(move |_| {
        retry.track();
        let holes = messages.with(|all| gaps(all.iter().map(|m| (m.id, m.seq))));
        let Some(after) = holes
            .into_iter()
            .find(|hole| tried.with_value(|t| !t.contains(hole)))
        else {
            return;
        };
        tried.update_value(|t| t.push(after));
        let channel = channel_id.to_string();
        leptos::task::spawn_local(async move {
            match get_history(channel, None, Some(after.to_string())).await {
                Ok(page) => filled.update(|f| f.extend(page.items)),
                Err(_) => {
                    tried.update_value(|t| t.retain(|hole| *hole != after));
                    set_timeout(
                        move || retry.update(|n| *n += 1),
                        std::time::Duration::from_secs(3),
                    );
                }
            }
        });
    });
    let announcement = Memo::new(move |_| {
        client.messages.with(|live| {
            live.iter()
                .rev()
                .find(|m| {
                    m.channel_id == channel_id
                        && Some(m.sender.id) != me
                        && client.arrived_live(m.id)
                })
                .map(|m| (m.id, format!("{}: {}", m.sender.display_name, m.content)))
        })
    });
    let waiting = move || {
        let done = messages.get();
        pending
            .get()
            .into_iter()
            .filter(|p| !done.iter().any(|m| m.client_msg_id == p.client_msg_id))
            .collect::<Vec<_>>()
    };

    let deliver = move |p: Pending| {
        let channel = channel_id.to_string();
        leptos::task::spawn_local(async move {
            let result = send_message(
                csrf_token(),
                channel,
                p.content.clone(),
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
    };
    let input = NodeRef::<leptos::html::Input>::new();
    let focus_input = move || {
        if let Some(el) = input.get_untracked() {
            let _ = el.focus();
        }
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        focus_input();
        let content = draft.get_untracked();
        if content.trim().is_empty() {
            return;
        }
        set_draft.set(String::new());
        let p = Pending {
            client_msg_id: new_client_msg_id(),
            content,
            failed: None,
        };
        pending.update(|ps| ps.push(p.clone()));
        deliver(p);
    };
    let retry = move |client_msg_id: String| {
        let mut again = None;
        pending.update(|ps| {
            if let Some(x) = ps.iter_mut().find(|x| x.client_msg_id == client_msg_id) {
                x.failed = None;
                again = Some(x.clone());
            }
        });
        if let Some(p) = again {
            deliver(p);
        }
        // The Retry button goes away with the failure it offered to fix.
        focus_input();
    };
    // Read receipts: the newest message shown while the page is visible is read, including
    // what arrived while the tab was hidden, once it is shown again.
    let marked = StoredValue::new(crate::model::Id(0));
    let shown_again = RwSignal::new(0u32);
    let visibility = window_event_listener_untyped("visibilitychange", move |_| {
        shown_again.update(|n| *n += 1);
    });
    on_cleanup(move || visibility.remove());
    Effect::new(move |_| {
        shown_again.track();
        let Some(newest) = messages.with(|all| all.last().map(|m| m.id)) else {
            return;
        };
        if newest <= marked.get_value() || !page_visible() {
            return;
        }
        marked.set_value(newest);
        let channel = channel_id.to_string();
        leptos::task::spawn_local(async move {
            let _ = mark_read(csrf_token(), channel, newest.to_string()).await;
        });
    });
    // Typing: at most one indicator every few seconds while the draft changes.
    let last_typing = StoredValue::new(0f64);
    let typed = move || {
        let now = now_ms();
        if now - last_typing.get_value() < 3_000.0 {
            return;
        }
        last_typing.set_value(now);
        let channel = channel_id.to_string();
        leptos::task::spawn_local(async move {
            let _ = send_typing(csrf_token(), channel).await;
        });
    };
    let typing_names = {
        let names = member_names.clone();
        move || {
            client.typing.with(|t| {
                t.iter()
                    .filter(|t| t.channel_id == channel_id && Some(t.user_id) != me)
                    .filter_map(|t| names.iter().find(|(id, _)| *id == t.user_id))
                    .map(|(_, name)| name.clone())
                    .collect::<Vec<_>>()
            })
        }
    };
    let typing_text = move || match typing_names().as_slice() {
        [] => String::new(),
        [one] => format!("{one} is typing…"),
        many => format!("{} are typing…", many.join(", ")),
    };
    // "Seen by …" under the newest message, from receipts that arrived live.
    let seen_by = {
        let names = member_names.clone();
        Signal::derive(move || {
            let newest = messages.with(|all| all.last().map(|m| m.id))?;
            let who: Vec<String> = client.reads.with(|reads| {
                reads
                    .iter()
                    .filter(|r| {
                        r.channel_id == channel_id
                            && Some(r.user_id) != me
                            && r.message_id >= newest
                    })
                    .filter_map(|r| names.iter().find(|(id, _)| *id == r.user_id))
                    .map(|(_, name)| name.clone())
                    .collect()
            });
            (!who.is_empty()).then(|| format!("Seen by {}", who.join(", ")))
        })
    };
    let loading_older = RwSignal::new(false);
    let older_failed = RwSignal::new(None::<String>);
    let load_older = move |_| {
        let Some(before) = cursor.get_untracked() else {
            return;
        };
        if loading_older.get_untracked() {
            return;
        }
        loading_older.set(true);
        older_failed.set(None);
        let channel = channel_id.to_string();
        leptos::task::spawn_local(async move {
            match get_history(channel, Some(before), None).await {
                Ok(page) => {
                    older.update(|o| o.extend(page.items));
                    cursor.set(page.next_cursor);
                }
                Err(e) => older_failed.set(Some(e.message)),
            }
            loading_older.set(false);
        });
    };

    view! {
        <Title text=name.clone() />
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
            </header>
            // The history scrolls inside the card, so the send box stays in view. The outer
            // box is a reversed column (with one child): browsers then keep it scrolled to
            // the newest message as messages arrive, unless the reader scrolled up.
            <div class="scroller" tabindex="0" role="region" aria-label="Message history">
                <div>
                    <Show when=move || cursor.get().is_some()>
                        // aria-disabled, not disabled: a disabled button would drop the
                        // keyboard focus while the page loads.
                        <button type="button" class="button-quiet" on:click=load_older
                            aria-disabled=move || loading_older.get().to_string()>
                            {move || if loading_older.get() { "Loading earlier messages…" } else { "Load earlier messages" }}
                        </button>
                    </Show>
                    <Show when=move || older_failed.with(Option::is_some)>
                        <p role="alert" class="error">{move || format!("Could not load earlier messages: {}", older_failed.get().unwrap_or_default())}</p>
                    </Show>
                    <ol class="messages" aria-label="Messages">
                        <For each=move || messages.get() key=|m| m.id let:m>
                            <li class="message">
                                <span class="sender">{m.sender.display_name.clone()}</span>
                                <time class="muted" datetime=m.created_at.to_rfc3339()>{m.created_at.format("%H:%M").to_string()}</time>
                                <p class="message-body">{m.content.clone()}</p>
                            </li>
                        </For>
                        <For each=waiting key=|p| (p.client_msg_id.clone(), p.failed.clone()) let:p>
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
            <Show when=move || seen_by.with(Option::is_some)>
                <p class="muted seen">{seen_by}</p>
            </Show>
            <p class="muted typing">{typing_text}</p>
            // New messages from the others, announced one at a time (not the whole list,
            // which older pages and gap fills also change).
            <p class="visually-hidden" role="status">
                {move || announcement.get().map(|(_, text)| text).unwrap_or_default()}
            </p>
            <form class="send" on:submit=submit>
                <label for="message-input" class="visually-hidden">"Message"</label>
                <input id="message-input" node_ref=input type="text" autocomplete="off" maxlength="4000" placeholder="Write a message"
                    aria-label="Message" prop:value=draft on:input=move |ev| {
                        set_draft.set(event_target_value(&ev));
                        typed();
                    } />
                <button type="submit">"Send"</button>
            </form>
        </section>
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
