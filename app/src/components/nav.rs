//! The top bar: the brand, the main links and who is signed in.

use super::csrf::CsrfField;
use crate::{live::LiveClient, notifications::unread_notifications, session::SessionContext};
use leptos::prelude::*;
use leptos_router::components::A;

#[component]
pub fn Nav() -> impl IntoView {
    let cx = SessionContext::get();
    view! {
        <header class="topbar">
            <a class="skip-link" href="#main">"Skip to content"</a>
            <nav class="topbar-inner" aria-label="Main">
                <A href="/" attr:class="brand">"Kith"</A>
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        match cx.session.await {
                            Ok(session) => match session.user {
                                Some(user) => {
                                    let href = format!("/u/{}", user.username);
                                    let live = LiveClient::get();
                                    live.start();
                                    view! {
                                        <div class="topbar-links">
                                            <A href="/">"Home"</A>
                                            <A href="/people">"People"</A>
                                            <A href="/chat">"Chat"</A>
                                            <NotificationsLink />
                                            <span class="whoami">
                                                "Signed in as "
                                                <A href=href>{format!("@{}", user.username)}</A>
                                            </span>
                                            <A href="/settings">"Settings"</A>
                                            <ActionForm action=cx.sign_out attr:class="inline-form">
                                                // Drawn after an await: given the token.
                                                <CsrfField token=session.csrf.clone() />
                                                <button type="submit" class="button-quiet">"Sign out"</button>
                                            </ActionForm>
                                        </div>
                                    }
                                    .into_any()
                                }
                                None => view! {
                                    <div class="topbar-links">
                                        <A href="/signin">"Sign in"</A>
                                        <A href="/signup" attr:class="button">"Sign up"</A>
                                    </div>
                                }
                                .into_any(),
                            },
                            Err(e) => view! { <p role="alert" class="error">{e.message}</p> }.into_any(),
                        }
                    })}
                </Transition>
            </nav>
        </header>
    }
}

/// "Notifications", with the unread count as a badge.
#[component]
fn NotificationsLink() -> impl IntoView {
    let live = LiveClient::get();
    // Fetched in the browser after hydration: a resource created in the nav's Suspend
    // would make its Transition render again.
    Effect::new(move |_| {
        leptos::task::spawn_local(async move {
            if let Ok(n) = unread_notifications().await {
                live.unread_notifications.set(n);
            }
        });
    });
    let unread = move || live.unread_notifications.get();
    view! {
        <A href="/notifications">
            "Notifications"
            <Show when=move || { unread() > 0 }>
                " "<span class="badge" aria-label=move || format!("{} unread", unread())>{unread}</span>
            </Show>
        </A>
    }
}
