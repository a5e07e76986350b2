//! Kith's user interface and the types it shares with the server.
//!
//! # Layout
//! * [`model`]: the API's data types (`User`, `Profile`, error codes, validation rules).
//! * [`error`]: [`error::ApiError`], the error of every server function.
//! * [`session`]: sign-up, sign-in, sign-out and the session resource.
//! * [`feed`]: the timeline's server functions, compose box and post cards.
//! * [`chat`]: chat server functions and the live client (WebSocket, long-poll fallback).
//! * `backend` (`ssr` only): the trait through which server functions reach the server.
//! * `pages`: one module per route; `components`: the pieces pages share.
//!
//! Built with `ssr` into the server (rendering) and with `hydrate` into the wasm bundle
//! (interactivity). Nothing here depends on sqlx, Redis or tokio's server parts.

// Leptos' typed views nest deeply; the default limit is too small for the page types.
#![recursion_limit = "256"]

pub mod chat;
pub mod error;
pub mod feed;
pub mod live;
pub mod model;
pub mod notifications;
pub mod presence;
pub mod protocol;
pub mod session;

#[cfg(feature = "ssr")]
pub mod backend;

mod components;
mod pages;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    path, SsrMode,
};

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The application: the navigation shell and the routes.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    session::SessionContext::provide();
    live::LiveClient::provide();

    view! {
        <Stylesheet id="leptos" href="/pkg/kith.css" />
        <Title formatter=|page: String| if page.is_empty() { "Kith".to_string() } else { format!("{page} · Kith") } />
        <Router>
            <components::nav::Nav />
            <main id="main">
                <Routes fallback=pages::not_found::NotFound>
                    <Route path=path!("/") view=pages::home::Home />
                    <Route path=path!("/signin") view=pages::auth::SignIn />
                    <Route path=path!("/signup") view=pages::auth::SignUp />
                    <Route path=path!("/people") view=pages::people::People />
                    <Route path=path!("/chat") view=pages::chat::ChatList />
                    <Route path=path!("/chat/:id") view=pages::chat::Conversation />
                    <Route path=path!("/notifications") view=pages::notifications::NotificationsPage />
                    <Route path=path!("/settings") view=pages::settings::Settings />
                    // Async so a missing user gets a real 404 status, not a streamed 200.
                    <Route path=path!("/u/:username") view=pages::profile::ProfilePage ssr=SsrMode::Async />
                </Routes>
            </main>
        </Router>
    }
}
