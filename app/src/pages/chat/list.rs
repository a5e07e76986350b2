//! The conversation list, newest activity first, and the form that starts a group.

use super::title;
use crate::{
    chat::{list_channels, CreateGroup},
    components::csrf::CsrfField,
    live::LiveClient,
};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{components::A, hooks::use_navigate};

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
