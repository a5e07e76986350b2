//! The hidden CSRF field every state-changing form carries.

use crate::session::SessionContext;
use leptos::prelude::*;

/// `<input type="hidden" name="csrf">` with the session's token.
///
/// Without `token` it waits for the session in a `Transition`, so the server renders the
/// token into the page. A `Transition` takes a hydration id when it renders, so a form
/// drawn after an `await` (inside a `Suspend`, where the session is already at hand) must
/// pass `token` instead: there the moment it renders depends on when the server's
/// resources resolve, and the ids taken after it would not match the browser's.
#[component]
pub fn CsrfField(#[prop(optional, into)] token: Option<String>) -> impl IntoView {
    if let Some(token) = token {
        return view! { <input type="hidden" name="csrf" value=token /> }.into_any();
    }
    let cx = SessionContext::get();
    let token = move || {
        cx.session
            .get()
            .and_then(Result::ok)
            .map(|s| s.csrf)
            .unwrap_or_default()
    };
    view! {
        <Transition fallback=|| view! { <input type="hidden" name="csrf" value="" /> }>
            <input type="hidden" name="csrf" value=token />
        </Transition>
    }
    .into_any()
}
