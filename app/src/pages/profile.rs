//! A user's profile page.

use crate::{
    error::ApiError,
    model::{ErrorCode, Profile},
};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

#[server(input = server_fn::codec::GetUrl, endpoint = "profile")]
pub async fn get_profile(username: String) -> Result<Profile, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(backend.profile(&parts, &username).await)
}

#[component]
pub fn ProfilePage() -> impl IntoView {
    let params = use_params_map();
    let username = move || params.read().get("username").unwrap_or_default();
    let profile = Resource::new(username, get_profile);
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match profile.await {
                    Ok(p) => view! {
                        <Title text=p.user.display_name.clone() />
                        <section class="card profile">
                            <h1>{p.user.display_name.clone()}</h1>
                            <p class="handle">{format!("@{}", p.user.username)}</p>
                            <p class="muted">{format!("Joined {}", p.user.created_at.format("%B %Y"))}</p>
                            <dl class="counts">
                                <div><dt>"Posts"</dt><dd>{p.posts}</dd></div>
                                <div><dt>"Followers"</dt><dd>{p.followers}</dd></div>
                                <div><dt>"Following"</dt><dd>{p.following}</dd></div>
                            </dl>
                        </section>
                    }
                    .into_any(),
                    Err(e) if e.code == ErrorCode::NotFound => view! {
                        <Title text="No such user" />
                        <section class="card narrow">
                            <h1>"No such user"</h1>
                            <p>"Nobody here goes by that name."</p>
                        </section>
                    }
                    .into_any(),
                    Err(e) => view! { <p role="alert" class="error">{e.message}</p> }.into_any(),
                }
            })}
        </Transition>
    }
}
