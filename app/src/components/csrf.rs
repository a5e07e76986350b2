//! The hidden CSRF field every state-changing form carries.

use crate::session::SessionContext;
use leptos::prelude::*;

/// `<input type="hidden" name="csrf">` with the session's token.
#[component]
pub fn CsrfField() -> impl IntoView {
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
}
