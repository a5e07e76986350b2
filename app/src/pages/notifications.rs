//! The notifications page: newest first, unread ones marked, "Mark all as read", and the
//! switch for browser notifications.

use crate::{
    components::time::LocalTime,
    feed::csrf_token,
    live::LiveClient,
    model::{Notification, NotificationKind},
    notifications::{
        browser_permission_undecided, list_notifications, mark_notifications_read,
        request_browser_permission,
    },
};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

#[component]
pub fn NotificationsPage() -> impl IntoView {
    let client = LiveClient::get();
    client.start();
    let version = RwSignal::new(0u32);
    let first = Resource::new(move || version.get(), |_| list_notifications(None));
    let older = RwSignal::new(Vec::<Notification>::new());
    let cursor = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let can_ask = RwSignal::new(false);
    Effect::new(move |_| can_ask.set(browser_permission_undecided()));

    let mark_all = move |newest: String| {
        leptos::task::spawn_local(async move {
            match mark_notifications_read(csrf_token(), newest).await {
                Ok(()) => {
                    client.unread_notifications.set(0);
                    older.set(Vec::new());
                    version.update(|v| *v += 1);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let load_more = move |_| {
        let Some(c) = cursor.get_untracked() else {
            return;
        };
        leptos::task::spawn_local(async move {
            match list_notifications(Some(c)).await {
                Ok(page) => {
                    older.update(|o| o.extend(page.items));
                    cursor.set(page.next_cursor);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };

    view! {
        <Title text="Notifications" />
        <h1>"Notifications"</h1>
        <Show when=move || can_ask.get()>
            <p class="card">
                "Get a notification from your browser when something arrives while Kith is in the background. "
                <button type="button" class="button-quiet" on:click=move |_| {
                    request_browser_permission();
                    can_ask.set(false);
                }>"Enable browser notifications"</button>
            </p>
        </Show>
        <Show when=move || error.get().is_some()>
            <p role="alert" class="error">{move || error.get()}</p>
        </Show>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match first.await {
                    Ok(page) if page.items.is_empty() => view! {
                        <p class="muted">"Nothing yet. Messages that arrive while you are away and new posts from people you follow show up here."</p>
                    }.into_any(),
                    Ok(page) => {
                        cursor.set(page.next_cursor.clone());
                        let newest = page.items.first().map(|n| n.id.to_string()).unwrap_or_default();
                        let any_unread = page.items.iter().any(|n| !n.read);
                        view! {
                            <Show when=move || any_unread>
                                <button type="button" on:click={
                                    let newest = newest.clone();
                                    move |_| mark_all(newest.clone())
                                }>"Mark all as read"</button>
                            </Show>
                            <ul class="notifications" aria-label="Notifications">
                                {page.items.into_iter().map(|n| view! { <Item n /> }).collect_view()}
                                <For each=move || older.get() key=|n| n.id let:n>
                                    <Item n />
                                </For>
                            </ul>
                            <Show when=move || cursor.get().is_some()>
                                <button type="button" class="button-quiet load-more" on:click=load_more>"Load more"</button>
                            </Show>
                        }.into_any()
                    }
                    Err(e) => view! { <p role="alert" class="error">{e.message}</p> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn Item(n: Notification) -> impl IntoView {
    let who = n.actor.display_name.clone();
    let (what, href) = match n.kind {
        NotificationKind::Post => (format!("{who} posted"), format!("/u/{}", n.actor.username)),
        NotificationKind::Message => (
            format!("{who} sent you a message"),
            n.channel_id
                .map(|c| format!("/chat/{c}"))
                .unwrap_or_else(|| "/chat".to_string()),
        ),
    };
    let unread = !n.read;
    view! {
        <li class="card notification" class:unread=unread>
            <A href=href>{what}</A>
            <Show when=move || unread>
                <span class="badge">"New"</span>
            </Show>
            <LocalTime at=n.created_at class="muted" />
            <p class="muted preview">{n.excerpt.clone()}</p>
        </li>
    }
}
