//! A user's profile page: who they are, their counts, follow/unfollow, their posts.

use crate::{
    components::{avatar::Avatar, block::BlockButton, follow::FollowButton},
    error::ApiError,
    feed::{get_user_posts, viewer_id, PostList, Source},
    model::{ErrorCode, Profile},
    presence::PresenceDot,
};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map};

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
    // Bumped by a block or unblock: the posts are read again (refused while blocked).
    let blocks = RwSignal::new(0u32);
    let posts = Resource::new(
        move || (username(), blocks.get()),
        |(u, _)| get_user_posts(u, None),
    );
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match profile.await {
                    Ok(p) => view! { <ProfileCard profile=p blocks /> }.into_any(),
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
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match posts.await {
                    Ok(page) => view! {
                        <PostList first=page source=Source::User(username()) empty_text="No posts yet." />
                    }
                    .into_any(),
                    Err(e) if e.code == ErrorCode::NotFound => ().into_any(),
                    // A block between the viewer and this user: said, not an alarm.
                    Err(e) if e.code == ErrorCode::Forbidden => {
                        view! { <p class="muted card">{e.message}</p> }.into_any()
                    }
                    Err(e) => view! { <p role="alert" class="error">{e.message}</p> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn ProfileCard(profile: Profile, blocks: RwSignal<u32>) -> impl IntoView {
    let p = profile;
    let (followers, set_followers) = signal(p.followers);
    let (blocked, set_blocked) = signal(p.blocked_by_me);
    let (following, set_following) = signal(p.followed_by_me);
    let on_block = Callback::new(move |now_blocked: bool| {
        if now_blocked && following.get_untracked() {
            // The block ended the viewer's follow.
            set_following.set(false);
            set_followers.update(|n| *n -= 1);
        }
        set_blocked.set(now_blocked);
        blocks.update(|n| *n += 1);
    });
    let viewer = viewer_id();
    let can_follow = viewer.is_some() && viewer != Some(p.user.id);
    let on_change = Callback::new(move |now_following: bool| {
        set_following.set(now_following);
        set_followers.update(|n| *n += if now_following { 1 } else { -1 });
    });
    let name = StoredValue::new(p.user.username.clone());
    let (dot_id, dot_username, dot_display) = (
        p.user.id,
        p.user.username.clone(),
        p.user.display_name.clone(),
    );
    view! {
        <Title text=p.user.display_name.clone() />
        <section class="card profile">
            <div class="profile-head">
                <Avatar user=p.user.clone() large=true />
                <div class="profile-name">
                    <h1>{p.user.display_name.clone()}</h1>
                    <p class="handle">{format!("@{}", p.user.username)}</p>
                    <Show when=move || can_follow>
                        <PresenceDot user_id=dot_id username=dot_username.clone()
                            display_name=dot_display.clone() />
                    </Show>
                </div>
                <Show when=move || can_follow>
                    <div class="profile-actions">
                        <Show when=move || !blocked.get()>
                            <FollowButton username=name.get_value() following=following.get_untracked() on_change />
                            <MessageButton username=name.get_value() />
                        </Show>
                        <BlockButton username=p.user.username.clone() blocked=p.blocked_by_me on_change=on_block />
                    </div>
                </Show>
            </div>
            {(!p.user.bio.is_empty()).then(|| view! { <p class="bio">{p.user.bio.clone()}</p> })}
            <p class="muted">{format!("Joined {}", p.user.created_at.format("%B %Y"))}</p>
            <dl class="counts">
                <div><dt>"Posts"</dt><dd>{p.posts}</dd></div>
                <div><dt>"Followers"</dt><dd>{move || followers.get()}</dd></div>
                <div><dt>"Following"</dt><dd>{p.following}</dd></div>
            </dl>
        </section>
    }
}

/// Opens (or creates) the 1:1 conversation with `username`.
#[component]
fn MessageButton(username: String) -> impl IntoView {
    let navigate = use_navigate();
    let open = Action::new(move |name: &String| {
        let name = name.clone();
        async move { crate::chat::open_dm(crate::feed::csrf_token(), name).await }
    });
    Effect::new(move |_| {
        if let Some(Ok(channel)) = open.value().get() {
            navigate(&format!("/chat/{}", channel.id), Default::default());
        }
    });
    let error = move || open.value().get().and_then(Result::err).map(|e| e.message);
    view! {
        <button type="button" class="button-small" disabled=move || open.pending().get()
            on:click=move |_| { open.dispatch(username.clone()); }>"Message"</button>
        <Show when=move || error().is_some()>
            <span role="alert" class="error">{error}</span>
        </Show>
    }
}
