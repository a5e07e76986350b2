//! The chat pages: the conversation list (with group creation) and a conversation.

use crate::{
    chat::{
        get_channel, get_history, list_channels, new_client_msg_id, send_message, ChatClient,
        CreateGroup, Transport,
    },
    components::csrf::CsrfField,
    error::ApiError,
    feed::{csrf_token, viewer_id},
    model::{Channel, ChannelKind, Message, Page},
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
    ChatClient::get().start();
    let create = ServerAction::<CreateGroup>::new();
    let channels = Resource::new(move || create.version().get(), |_| list_channels());
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
    let client = ChatClient::get();
    client.start();
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let info = Resource::new(id, get_channel);
    let first = Resource::new(id, |id| get_history(id, None));
    view! {
        <Show when=move || matches!(client.transport.get(), Transport::Reconnecting | Transport::Connecting)>
            <p role="status" class="banner">"Reconnecting…"</p>
        </Show>
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
    let client = ChatClient::get();
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
    let pending = RwSignal::new(Vec::<Pending>::new());
    let (draft, set_draft) = signal(String::new());

    // Everything known of this channel, in id order, each message once.
    let messages = Memo::new(move |_| {
        let mut all: Vec<Message> = older.get();
        all.extend(first.iter().cloned());
        all.extend(confirmed.get());
        all.extend(
            client
                .live
                .get()
                .into_iter()
                .filter(|m| m.channel_id == channel_id),
        );
        all.sort_by_key(|m| m.id);
        all.dedup_by_key(|m| m.id);
        all
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
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
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
    };
    let load_older = move |_| {
        let Some(before) = cursor.get_untracked() else {
            return;
        };
        let channel = channel_id.to_string();
        leptos::task::spawn_local(async move {
            if let Ok(page) = get_history(channel, Some(before)).await {
                older.update(|o| o.extend(page.items));
                cursor.set(page.next_cursor);
            }
        });
    };

    view! {
        <Title text=name.clone() />
        <section class="card thread">
            <header>
                <h1>{name}</h1>
                <p class="muted">{members}</p>
            </header>
            <Show when=move || cursor.get().is_some()>
                <button type="button" class="button-quiet" on:click=load_older>"Load earlier messages"</button>
            </Show>
            <ol class="messages" aria-label="Messages" aria-live="polite">
                <For each=move || messages.get() key=|m| m.id let:m>
                    <li class="message">
                        <span class="sender">{m.sender.display_name.clone()}</span>
                        <time class="muted" datetime=m.created_at.to_rfc3339()>{m.created_at.format("%H:%M").to_string()}</time>
                        <p class="message-body">{m.content.clone()}</p>
                    </li>
                </For>
                <For each=waiting key=|p| (p.client_msg_id.clone(), p.failed.clone()) let:p>
                    <li class="message pending">
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
            <form class="send" on:submit=submit>
                <label for="message-input" class="visually-hidden">"Message"</label>
                <input id="message-input" type="text" autocomplete="off" maxlength="4000" placeholder="Write a message"
                    aria-label="Message" prop:value=draft on:input=move |ev| set_draft.set(event_target_value(&ev)) />
                <button type="submit">"Send"</button>
            </form>
        </section>
    }
}
