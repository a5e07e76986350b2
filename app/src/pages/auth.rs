//! Sign-up and sign-in pages. Plain forms posting to server functions: they work before
//! (or without) hydration, and errors come back inline next to the form.

use crate::{components::csrf::CsrfField, error::ApiError, model::rules, session::SessionContext};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

/// The error of the last submission of `value`'s action, if it failed.
fn last_error(
    value: MappedSignal<Option<Result<(), ApiError>>>,
) -> impl Fn() -> Option<ApiError> + Copy {
    let error = Memo::new(move |_| value.get().and_then(Result::err));
    move || error.get()
}

#[component]
pub fn SignIn() -> impl IntoView {
    let action = SessionContext::get().sign_in;
    let error = last_error(action.value());
    view! {
        <Title text="Sign in" />
        <section class="card narrow">
            <h1>"Sign in"</h1>
            <ActionForm action=action>
                <CsrfField />
                <label for="signin-username">"Username"</label>
                <input id="signin-username" name="username" autocomplete="username" required
                    autocapitalize="none" spellcheck="false" maxlength="32" />
                <label for="signin-password">"Password"</label>
                <input id="signin-password" name="password" type="password"
                    autocomplete="current-password" required />
                <Show when=move || error().is_some()>
                    <p role="alert" class="error">{move || error().map(|e| e.message)}</p>
                </Show>
                <button type="submit" disabled=move || action.pending().get()>"Sign in"</button>
            </ActionForm>
            <p class="muted">"New here? " <A href="/signup">"Create an account"</A></p>
        </section>
    }
}

#[component]
pub fn SignUp() -> impl IntoView {
    let action = SessionContext::get().sign_up;
    let error = last_error(action.value());
    let (username, set_username) = signal(String::new());
    let (password, set_password) = signal(String::new());
    // Hints as the person types; the server enforces the same rules.
    let username_hint = move || {
        let u = username.get();
        (!u.is_empty())
            .then(|| rules::check_new_username(&u).err())
            .flatten()
    };
    let password_hint = move || {
        let p = password.get();
        (!p.is_empty())
            .then(|| rules::check_password(&p).err())
            .flatten()
    };
    let field_error = move |field: &'static str| {
        move || {
            error()
                .filter(|e| e.field() == Some(field))
                .map(|e| e.message)
        }
    };
    let other_error = move || error().filter(|e| e.field().is_none()).map(|e| e.message);

    view! {
        <Title text="Sign up" />
        <section class="card narrow">
            <h1>"Create your account"</h1>
            <ActionForm action=action>
                <CsrfField />
                <label for="signup-username">"Username"</label>
                <input id="signup-username" name="username" autocomplete="username" required
                    autocapitalize="none" spellcheck="false" maxlength="32"
                    aria-describedby="signup-username-help"
                    on:input=move |ev| set_username.set(event_target_value(&ev)) />
                <p id="signup-username-help" class="help">
                    {move || username_hint().unwrap_or("3 to 32 characters: a-z, 0-9 and _")}
                </p>
                <Show when=move || field_error("username")().is_some()>
                    <p role="alert" class="error">{field_error("username")}</p>
                </Show>
                <label for="signup-display-name">"Display name (optional)"</label>
                <input id="signup-display-name" name="display_name" autocomplete="name" maxlength="64" />
                <Show when=move || field_error("display_name")().is_some()>
                    <p role="alert" class="error">{field_error("display_name")}</p>
                </Show>
                <label for="signup-password">"Password"</label>
                <input id="signup-password" name="password" type="password" autocomplete="new-password"
                    required aria-describedby="signup-password-help"
                    on:input=move |ev| set_password.set(event_target_value(&ev)) />
                <p id="signup-password-help" class="help">
                    {move || password_hint().unwrap_or("8 to 128 characters")}
                </p>
                <Show when=move || field_error("password")().is_some()>
                    <p role="alert" class="error">{field_error("password")}</p>
                </Show>
                <Show when=move || other_error().is_some()>
                    <p role="alert" class="error">{other_error}</p>
                </Show>
                <button type="submit" disabled=move || action.pending().get()>"Sign up"</button>
            </ActionForm>
            <p class="muted">"Already have an account? " <A href="/signin">"Sign in"</A></p>
        </section>
    }
}
