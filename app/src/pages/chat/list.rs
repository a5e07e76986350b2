//! The conversation list, newest activity first, a screenful at a time, and the form that
//! starts a group.
//!
//! A live message or read receipt reloads the list (the order and the unread counts
//! change), which draws its items again: the conversation that had the keyboard focus gets
//! it back, and the items already shown stay shown.

use super::title;
use crate::{
    chat::{list_channels, CreateGroup},
    components::csrf::CsrfField,
    live::LiveClient,
    model::Id,
};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{components::A, hooks::use_navigate};

/// Conversations shown at first, and added by each "Show more conversations".
const PAGE: usize = 20;

/// The element id of a conversation's link.
fn link_id(channel: Id) -> String {
    format!("conversation-{channel}")
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
    // How many conversations are shown, and which one's link had the focus: both outlive
    // the list's redrawing.
    let shown = RwSignal::new(PAGE);
    let focused = StoredValue::new(None::<Id>);
    Effect::new(move |_| {
        channels.track();
        if let Some(channel) = focused.get_value() {
            refocus(&link_id(channel), true);
        }
    });
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
                    Ok(list) => {
                        let total = list.len();
                        let ids: Vec<Id> = list.iter().map(|c| c.channel.id).collect();
                        let more = move |_| {
                            let first_new = shown.get_untracked();
                            shown.update(|n| *n += PAGE);
                            // The keyboard goes on with the first conversation just shown.
                            if let Some(channel) = ids.get(first_new) {
                                focused.set_value(Some(*channel));
                                refocus(&link_id(*channel), false);
                            }
                        };
                        view! {
                            <ul class="conversations" aria-label="Conversations">
                                {list.into_iter().enumerate().map(|(at, c)| {
                                    let id = c.channel.id;
                                    let href = format!("/chat/{id}");
                                    let name = title(&c.channel);
                                    let preview = c.last_message.map(|m| {
                                        let text = if m.deleted_at.is_some() {
                                            "Message deleted".to_string()
                                        } else if m.hidden {
                                            "Hidden message".to_string()
                                        } else {
                                            m.content
                                        };
                                        format!("{}: {text}", m.sender.display_name)
                                    }).unwrap_or_default();
                                    let unread = c.unread_count;
                                    view! {
                                        <li class="card conversation" hidden=move || { at >= shown.get() }>
                                            <A href=href attr:id=link_id(id)
                                                on:focus=move |_| focused.set_value(Some(id))
                                                on:blur=move |ev| forget_focus(&ev, focused)>{name}</A>
                                            <Show when=move || { unread > 0 }>
                                                <span class="badge">{format!("{unread} unread")}</span>
                                            </Show>
                                            <p class="muted preview">{preview.clone()}</p>
                                        </li>
                                    }
                                }).collect_view()}
                            </ul>
                            <Show when=move || { total > shown.get() }>
                                <button type="button" class="button-quiet load-more" on:click=more.clone()>
                                    {move || format!("Show more conversations ({} more)", total.saturating_sub(shown.get()))}
                                </button>
                            </Show>
                        }.into_any()
                    }
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

/// Forgets the focused conversation when the reader moved the focus away themselves (to
/// another element, or nowhere while the link is still in the page); a link that loses
/// it because the list is being drawn again keeps its claim.
fn forget_focus(ev: &leptos::ev::FocusEvent, focused: StoredValue<Option<Id>>) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast as _;
        let still_here = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Node>().ok())
            .is_some_and(|n| n.is_connected());
        if ev.related_target().is_some() || still_here {
            focused.set_value(None);
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (ev, focused);
}

/// Gives the focus to the element `id` once the page has been drawn; `if_lost`: only if
/// nothing has it (the reader may have put it somewhere meanwhile).
fn refocus(id: &str, if_lost: bool) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast as _;
        let id = id.to_string();
        request_animation_frame(move || {
            let Some(document) = web_sys::window().and_then(|w| w.document()) else {
                return;
            };
            let elsewhere = document
                .active_element()
                .is_some_and(|el| el.tag_name() != "BODY");
            if if_lost && elsewhere {
                return;
            }
            if let Some(el) = document
                .get_element_by_id(&id)
                .and_then(|el| el.dyn_into::<web_sys::HtmlElement>().ok())
            {
                let _ = el.focus();
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (id, if_lost);
}
