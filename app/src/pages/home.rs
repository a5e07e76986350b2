//! The home page: a welcome for visitors, the signed-in person's landing otherwise.

use crate::session::SessionContext;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

#[component]
pub fn Home() -> impl IntoView {
    let cx = SessionContext::get();
    view! {
        <Title text="" />
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match cx.session.await.ok().and_then(|s| s.user) {
                    Some(user) => {
                        let href = format!("/u/{}", user.username);
                        view! {
                            <section class="card">
                                <h1>{format!("Welcome, {}", user.display_name)}</h1>
                                <p>"You are signed in as " <strong>{format!("@{}", user.username)}</strong> "."</p>
                                <p><A href=href>"View your profile"</A></p>
                            </section>
                        }
                        .into_any()
                    }
                    None => view! {
                        <section class="hero">
                            <h1>"Kith"</h1>
                            <p class="lead">"Follow the people you care about and talk with them, one to one or in small groups."</p>
                            <p class="actions">
                                <A href="/signup" attr:class="button">"Create an account"</A>
                                <A href="/signin">"Sign in"</A>
                            </p>
                        </section>
                    }
                    .into_any(),
                }
            })}
        </Transition>
    }
}
