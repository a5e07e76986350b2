//! Finding people by username prefix, and following them.

use crate::{
    components::follow::FollowButton,
    feed::{search_people, viewer_id},
};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{components::A, hooks::use_query_map};

#[component]
pub fn People() -> impl IntoView {
    let query = use_query_map();
    let q = move || query.read().get("q").unwrap_or_default();
    let results = Resource::new(q, search_people);
    view! {
        <Title text="People" />
        <section class="card">
            <h1>"People"</h1>
            // A plain GET form: the query lands in the URL, so results render on the server
            // and the page works before hydration.
            <form method="get" action="/people" class="search">
                <label for="people-q">"Find people by username"</label>
                <div class="search-row">
                    <input id="people-q" type="search" name="q" prop:value=q autocapitalize="none"
                        spellcheck="false" maxlength="32" />
                    <button type="submit">"Search"</button>
                </div>
            </form>
        </section>
        <Transition fallback=|| view! { <p class="muted">"Searching…"</p> }>
            {move || Suspend::new(async move {
                match results.await {
                    Ok(people) if people.is_empty() => view! { <p class="muted">"Nobody found."</p> }.into_any(),
                    Ok(people) => {
                        let viewer = viewer_id();
                        view! {
                            <ul class="people" aria-label="People found">
                                {people.into_iter().map(|p| {
                                    let href = format!("/u/{}", p.user.username);
                                    let can_follow = viewer.is_some() && viewer != Some(p.user.id);
                                    view! {
                                        <li class="card person">
                                            <div>
                                                <A href=href>{p.user.display_name.clone()}</A>
                                                <span class="muted">{format!(" @{} · {} followers", p.user.username, p.followers)}</span>
                                            </div>
                                            <Show when=move || can_follow>
                                                <FollowButton username=p.user.username.clone() following=p.followed_by_me />
                                            </Show>
                                        </li>
                                    }
                                }).collect_view()}
                            </ul>
                        }
                        .into_any()
                    }
                    Err(e) => view! { <p role="alert" class="error">{e.message}</p> }.into_any(),
                }
            })}
        </Transition>
    }
}
