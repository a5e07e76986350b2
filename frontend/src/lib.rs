//! The browser entry point: hydrates the server-rendered Kith shell.
//!
//! Everything the UI does lives in the `app` crate; this crate only exists so that the
//! wasm bundle is built from `app` with the `hydrate` feature and nothing server-side.

// Leptos' typed views nest deeply; the default limit is too small for the page types.
#![recursion_limit = "256"]

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
    // Lets tests (and scripts) wait until the page is interactive.
    if let Some(body) = leptos::prelude::document().body() {
        let _ = body.set_attribute("data-hydrated", "");
    }
}
