//! Blocking: the server functions, and the block / unblock toggle of a profile.

use crate::{error::ApiError, feed::csrf_token, model::User};
use leptos::prelude::*;

#[server(endpoint = "block")]
pub async fn set_block(csrf: String, username: String, block: bool) -> Result<(), ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(match backend.check_csrf(&parts, &csrf) {
        Ok(()) => backend.set_block(&parts, &username, block).await,
        Err(e) => Err(e),
    })
}

/// Lifts a block (a form's action: the settings' list of blocked people).
#[server(endpoint = "unblock")]
pub async fn unblock(csrf: String, username: String) -> Result<(), ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(match backend.check_csrf(&parts, &csrf) {
        Ok(()) => backend.set_block(&parts, &username, false).await,
        Err(e) => Err(e),
    })
}

#[server(input = server_fn::codec::GetUrl, endpoint = "blocks")]
pub async fn list_blocks() -> Result<Vec<User>, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(backend.blocks(&parts).await)
}

/// Blocks `username` after asking, or unblocks them; `on_change` hears the new state once
/// the server agreed.
#[component]
pub fn BlockButton(username: String, blocked: bool, on_change: Callback<bool>) -> impl IntoView {
    let (state, set_state) = signal(blocked);
    let confirming = RwSignal::new(false);
    let (error, set_error) = signal(None::<String>);
    let action = {
        let username = username.clone();
        Action::new(move |want: &bool| {
            let (username, want) = (username.clone(), *want);
            async move { (want, set_block(csrf_token(), username, want).await) }
        })
    };
    Effect::new(move |_| match action.value().get() {
        Some((want, Ok(()))) => {
            set_error.set(None);
            set_state.set(want);
            on_change.run(want);
        }
        Some((_, Err(e))) => set_error.set(Some(e.message)),
        None => {}
    });
    let name = format!("@{username}");
    let (block_label, unblock_label) = (format!("Block {name}"), format!("Unblock {name}"));
    let question = format!(
        "Block {name}? Neither of you will see the other's posts or presence, you cannot \
         write to each other, and their messages in shared groups are hidden from you."
    );
    view! {
        <Show when=move || !state.get() && !confirming.get()>
            <button type="button" class="button-quiet danger" aria-label=block_label.clone()
                on:click=move |_| { set_error.set(None); confirming.set(true); }>"Block"</button>
        </Show>
        <Show when=move || confirming.get() && !state.get()>
            <span class="confirm" role="group" aria-label="Confirm block">
                <span>{question.clone()}</span>
                <button type="button" class="button-quiet danger" disabled=move || action.pending().get()
                    on:click=move |_| { confirming.set(false); action.dispatch(true); }>"Yes, block"</button>
                <button type="button" class="button-quiet" on:click=move |_| confirming.set(false)>"Cancel"</button>
            </span>
        </Show>
        <Show when=move || state.get()>
            <button type="button" class="button-small" aria-label=unblock_label.clone()
                disabled=move || action.pending().get()
                on:click=move |_| { action.dispatch(false); }>"Unblock"</button>
        </Show>
        <Show when=move || error.get().is_some()>
            <span role="alert" class="error">{move || error.get()}</span>
        </Show>
    }
}
