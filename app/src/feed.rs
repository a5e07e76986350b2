//! The news feed in the UI: server functions, the compose box and post cards.

use crate::{
    components::{
        avatar::Avatar,
        media::{on_dragover, on_drop, on_paste, AttachPicker, Attachments, MediaGallery},
        time::LocalTime,
    },
    error::ApiError,
    model::{rules::MAX_POST_CHARS, Page, Post, Profile},
    session::SessionContext,
};
use leptos::prelude::*;
use leptos_router::components::A;

#[server(input = server_fn::codec::GetUrl, endpoint = "feed")]
pub async fn get_feed(cursor: Option<String>) -> Result<Page<Post>, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(backend.feed(&parts, cursor).await)
}

/// Publishes a post; `media` is the ids of the author's uploads, comma-separated.
#[server(endpoint = "publish")]
pub async fn publish(csrf: String, content: String, media: String) -> Result<Post, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(match backend.check_csrf(&parts, &csrf) {
        Ok(()) => backend.publish(&parts, &content, &media).await,
        Err(e) => Err(e),
    })
}

/// Media ids as the server functions take them: comma-separated.
pub fn media_ids(media: &[crate::model::Media]) -> String {
    media
        .iter()
        .map(|m| m.id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[server(endpoint = "delete_post")]
pub async fn delete_post(csrf: String, id: String) -> Result<(), ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(match backend.check_csrf(&parts, &csrf) {
        Ok(()) => backend.delete_post(&parts, &id).await,
        Err(e) => Err(e),
    })
}

#[server(endpoint = "like")]
pub async fn set_like(csrf: String, id: String, like: bool) -> Result<(), ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(match backend.check_csrf(&parts, &csrf) {
        Ok(()) => backend.set_like(&parts, &id, like).await,
        Err(e) => Err(e),
    })
}

#[server(input = server_fn::codec::GetUrl, endpoint = "user_posts")]
pub async fn get_user_posts(
    username: String,
    cursor: Option<String>,
) -> Result<Page<Post>, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(backend.user_posts(&parts, &username, cursor).await)
}

#[server(endpoint = "follow")]
pub async fn set_follow(csrf: String, username: String, follow: bool) -> Result<(), ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(match backend.check_csrf(&parts, &csrf) {
        Ok(()) => backend.set_follow(&parts, &username, follow).await,
        Err(e) => Err(e),
    })
}

#[server(input = server_fn::codec::GetUrl, endpoint = "search")]
pub async fn search_people(prefix: String) -> Result<Vec<Profile>, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(backend.search(&parts, &prefix).await)
}

/// The session's CSRF token, for server functions called from code.
pub fn csrf_token() -> String {
    SessionContext::get()
        .session
        .get_untracked()
        .and_then(Result::ok)
        .map(|s| s.csrf)
        .unwrap_or_default()
}

/// The signed-in user's id, if any.
pub fn viewer_id() -> Option<crate::model::Id> {
    SessionContext::get()
        .session
        .get_untracked()
        .and_then(Result::ok)
        .and_then(|s| s.user)
        .map(|u| u.id)
}

/// The compose box: a labelled text area with a live character counter and images
/// (picked, pasted or dropped); calls `on_posted` with the new post.
#[component]
pub fn Compose(on_posted: Callback<Post>) -> impl IntoView {
    let (content, set_content) = signal(String::new());
    let attachments = Attachments::new();
    // The images' descriptions are saved first, from the browser: not `Send`.
    let action = Action::new_unsync(move |text: &String| {
        let text = text.clone();
        async move {
            let media = attachments.finish().await.map_err(|message| {
                ApiError::new(crate::model::ErrorCode::ValidationFailed, message)
            })?;
            publish(csrf_token(), text, media_ids(&media)).await
        }
    });
    let used = move || content.with(|c| c.trim().chars().count());
    let too_long = move || used() > MAX_POST_CHARS;
    let nothing = move || used() == 0 && attachments.is_empty();
    Effect::new(move |_| {
        if let Some(Ok(post)) = action.value().get() {
            set_content.set(String::new());
            attachments.clear();
            on_posted.run(post);
        }
    });
    let error = move || {
        action
            .value()
            .get()
            .and_then(Result::err)
            .map(|e| e.message)
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        action.dispatch(content.get_untracked());
    };
    view! {
        <form class="card compose" on:submit=submit on:paste=on_paste(attachments)
            on:drop=on_drop(attachments) on:dragover=on_dragover>
            <label for="compose">"What's on your mind?"</label>
            <textarea id="compose" name="content" rows="3" aria-describedby="compose-count"
                prop:value=content
                on:input=move |ev| set_content.set(event_target_value(&ev))></textarea>
            <AttachPicker attachments id="compose-images" />
            <div class="compose-bar">
                <span id="compose-count" class="counter" class:over=too_long aria-live="polite">
                    {move || format!("{} / {MAX_POST_CHARS}", used())}
                </span>
                <button type="submit"
                    disabled=move || action.pending().get() || too_long() || nothing() || attachments.uploading()>
                    "Post"
                </button>
            </div>
            <Show when=move || error().is_some()>
                <p role="alert" class="error">{error}</p>
            </Show>
        </form>
    }
}

/// One post: author, time, text (always rendered as text), like and delete.
#[component]
pub fn PostCard(post: Post) -> impl IntoView {
    let id = post.id.to_string();
    let mine = viewer_id() == Some(post.author.id);
    let signed_in = viewer_id().is_some();
    let (liked, set_liked) = signal(post.liked_by_me);
    let (likes, set_likes) = signal(post.like_count);
    let (deleted, set_deleted) = signal(false);
    let (error, set_error) = signal(None::<String>);
    let like_action = {
        let id = id.clone();
        Action::new(move |want: &bool| {
            let (id, want) = (id.clone(), *want);
            async move { (want, set_like(csrf_token(), id, want).await) }
        })
    };
    Effect::new(move |_| {
        // Roll the optimistic change back if the server refused it.
        if let Some((want, Err(e))) = like_action.value().get() {
            set_liked.set(!want);
            set_likes.update(|n| *n += if want { -1 } else { 1 });
            set_error.set(Some(e.message));
        }
    });
    let toggle_like = move |_| {
        let want = !liked.get_untracked();
        set_liked.set(want);
        set_likes.update(|n| *n += if want { 1 } else { -1 });
        like_action.dispatch(want);
    };
    let delete_action = {
        let id = id.clone();
        Action::new(move |_: &()| {
            let id = id.clone();
            async move { delete_post(csrf_token(), id).await }
        })
    };
    Effect::new(move |_| match delete_action.value().get() {
        Some(Ok(())) => set_deleted.set(true),
        Some(Err(e)) => set_error.set(Some(e.message)),
        None => {}
    });
    let profile = format!("/u/{}", post.author.username);
    let label = format!("Post by {}", post.author.display_name);
    let avatar = post.author.clone();
    let name = post.author.display_name;
    let handle = format!("@{}", post.author.username);
    let content = post.content;
    let media = post.media;
    let at = post.created_at;
    view! {
        <article class="card post" hidden=move || deleted.get()
            aria-label=label>
                <header class="post-head">
                    <Avatar user=avatar />
                    <A href=profile attr:class="post-author">{name}</A>
                    <span class="muted">{handle}</span>
                    <LocalTime at class="muted" />
                </header>
                {(!content.is_empty()).then(|| view! { <p class="post-body">{content}</p> })}
                {(!media.is_empty()).then(|| view! { <MediaGallery media /> })}
                <footer class="post-actions">
                    <button type="button" class="button-quiet" aria-pressed=move || liked.get().to_string()
                        disabled=!signed_in on:click=toggle_like>
                        {move || if liked.get() { "Liked" } else { "Like" }}
                        " "<span aria-label="likes">{move || likes.get()}</span>
                    </button>
                    <Show when=move || mine>
                        <button type="button" class="button-quiet danger"
                            on:click=move |_| { delete_action.dispatch(()); }>"Delete"</button>
                    </Show>
                </footer>
                <Show when=move || error.get().is_some()>
                    <p role="alert" class="error">{move || error.get()}</p>
                </Show>
        </article>
    }
}

/// Where a [`PostList`] loads its later pages from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The signed-in user's news feed.
    Feed,
    /// One user's posts.
    User(String),
}

async fn load(source: Source, cursor: String) -> Result<Page<Post>, ApiError> {
    match source {
        Source::Feed => get_feed(Some(cursor)).await,
        Source::User(username) => get_user_posts(username, Some(cursor)).await,
    }
}

/// A list of posts: `fresh` ones (just posted or just arrived) on top, then the first page
/// (rendered on the server), then older pages loaded by "Load more".
#[component]
pub fn PostList(
    first: Page<Post>,
    source: Source,
    #[prop(into, optional)] fresh: Signal<Vec<Post>>,
    #[prop(into)] empty_text: String,
) -> impl IntoView {
    let (older, set_older) = signal(Vec::<Post>::new());
    let (cursor, set_cursor) = signal(first.next_cursor.clone());
    let more = Action::new(move |c: &String| load(source.clone(), c.clone()));
    Effect::new(move |_| {
        if let Some(Ok(page)) = more.value().get() {
            set_older.update(|o| o.extend(page.items));
            set_cursor.set(page.next_cursor);
        }
    });
    let more_error = move || more.value().get().and_then(Result::err).map(|e| e.message);
    let empty = first.items.is_empty();
    let first_items = first
        .items
        .into_iter()
        .map(|post| view! { <PostCard post /> })
        .collect_view();
    view! {
        <section aria-label="Posts" class="post-list">
            <For each=move || fresh.get() key=|p| p.id let:post>
                <PostCard post />
            </For>
            {first_items}
            <For each=move || older.get() key=|p| p.id let:post>
                <PostCard post />
            </For>
            <Show when=move || empty && fresh.with(Vec::is_empty)>
                <p class="muted empty">{empty_text.clone()}</p>
            </Show>
            <Show when=move || more_error().is_some()>
                <p role="alert" class="error">{more_error}</p>
            </Show>
            <Show when=move || cursor.get().is_some()>
                <button type="button" class="button-quiet load-more" disabled=move || more.pending().get()
                    on:click=move |_| {
                        if let Some(c) = cursor.get_untracked() {
                            more.dispatch(c);
                        }
                    }>
                    "Load more"
                </button>
            </Show>
        </section>
    }
}
