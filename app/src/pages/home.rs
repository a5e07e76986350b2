//! The home page: the signed-in person's timeline, or a welcome for visitors.

use crate::{
    feed::{get_feed, Compose, PostList, Source},
    live::LiveClient,
    model::Post,
    session::SessionContext,
};
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
                    Some(_) => view! { <Timeline /> }.into_any(),
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

/// The compose box over the news feed, and the "N new posts" banner for posts that
/// arrived live (they go in on click, so the list never jumps while being read).
#[component]
fn Timeline() -> impl IntoView {
    let live = LiveClient::get();
    let first = Resource::new(|| (), |_| get_feed(None));
    let (fresh, set_fresh) = signal(Vec::<Post>::new());
    let on_posted = Callback::new(move |post: Post| set_fresh.update(|f| f.insert(0, post)));
    let waiting = move || live.new_posts.with(Vec::len);
    let show_new = move |_| {
        let arrived = live
            .new_posts
            .try_update(std::mem::take)
            .unwrap_or_default();
        set_fresh.update(|f| {
            for post in arrived.into_iter().rev() {
                if !f.iter().any(|p| p.id == post.id) {
                    f.insert(0, post);
                }
            }
            f.sort_by_key(|p| std::cmp::Reverse(p.id));
        });
    };
    view! {
        <h1 class="visually-hidden">"Home"</h1>
        <Compose on_posted />
        <Show when=move || { waiting() > 0 }>
            <button type="button" class="banner new-posts" on:click=show_new>
                {move || match waiting() {
                    1 => "1 new post".to_string(),
                    n => format!("{n} new posts"),
                }}
            </button>
        </Show>
        <Transition fallback=|| view! { <p class="muted">"Loading your feed…"</p> }>
            {move || Suspend::new(async move {
                match first.await {
                    Ok(page) => view! {
                        <PostList first=page source=Source::Feed fresh
                            empty_text="Your feed is empty. Post something, or find people to follow." />
                    }
                    .into_any(),
                    Err(e) => view! { <p role="alert" class="error">{e.message}</p> }.into_any(),
                }
            })}
        </Transition>
        <p class="muted"><A href="/people">"Find people to follow"</A></p>
    }
}
