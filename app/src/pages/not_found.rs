use leptos::prelude::*;
use leptos_meta::Title;

/// Any path no route matches.
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    crate::backend::set_status(404);
    view! {
        <Title text="Not found" />
        <section class="card narrow">
            <h1>"Page not found"</h1>
            <p>"There is nothing at this address. " <a href="/">"Go home"</a></p>
        </section>
    }
}
