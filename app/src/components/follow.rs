//! The follow / unfollow toggle.

use crate::feed::{csrf_token, set_follow};
use leptos::prelude::*;

/// A button that follows or unfollows `username`, optimistically; `on_change` hears the
/// new state once the server agreed.
#[component]
pub fn FollowButton(
    username: String,
    following: bool,
    #[prop(optional)] on_change: Option<Callback<bool>>,
) -> impl IntoView {
    let (state, set_state) = signal(following);
    let (error, set_error) = signal(None::<String>);
    let action = {
        let username = username.clone();
        Action::new(move |want: &bool| {
            let (username, want) = (username.clone(), *want);
            async move { (want, set_follow(csrf_token(), username, want).await) }
        })
    };
    Effect::new(move |_| match action.value().get() {
        Some((want, Ok(()))) => {
            set_error.set(None);
            if let Some(cb) = on_change {
                cb.run(want);
            }
        }
        Some((want, Err(e))) => {
            set_state.set(!want);
            set_error.set(Some(e.message));
        }
        None => {}
    });
    let label = format!("@{username}");
    view! {
        <button type="button" class=move || if state.get() { "button-quiet" } else { "button-small" }
            aria-pressed=move || state.get().to_string()
            aria-label=move || format!("{} {label}", if state.get() { "Unfollow" } else { "Follow" })
            disabled=move || action.pending().get()
            on:click=move |_| {
                let want = !state.get_untracked();
                set_state.set(want);
                action.dispatch(want);
            }>
            {move || if state.get() { "Following" } else { "Follow" }}
        </button>
        <Show when=move || error.get().is_some()>
            <span role="alert" class="error">{move || error.get()}</span>
        </Show>
    }
}
