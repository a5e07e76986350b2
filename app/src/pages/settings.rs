//! Account settings: one's display name and bio, one's password (changing it signs out
//! every other session), one's sessions, each of which can be signed out, the people one
//! blocked, each of whom can be unblocked, and deleting the account.

use crate::{
    components::{
        avatar::Avatar,
        block::{list_blocks, Unblock},
        csrf::CsrfField,
        time::LocalTime,
    },
    model::{rules, SessionInfo, User},
    session::{list_sessions, ChangePassword, EndSession, SessionContext, UpdateProfile},
};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

#[component]
pub fn Settings() -> impl IntoView {
    let session = SessionContext::get().session;
    view! {
        <Title text="Settings" />
        <section class="card narrow">
            <h1>"Settings"</h1>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match session.await.ok().and_then(|s| s.user.map(|user| (user, s.csrf))) {
                        // Forms here are drawn after an await: each is given the token.
                        Some((user, csrf)) => view! {
                            <ProfileForm user csrf=csrf.clone() />
                            <PasswordForm csrf=csrf.clone() />
                            <SessionList csrf=csrf.clone() />
                            <BlockList csrf=csrf.clone() />
                            <DeleteAccount csrf />
                        }
                        .into_any(),
                        None => view! {
                            <p>"Please " <A href="/signin">"sign in"</A> " to change your settings."</p>
                        }
                        .into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// Display name and bio, filled with what is stored; says what happened.
#[component]
fn ProfileForm(user: User, csrf: String) -> impl IntoView {
    let action = ServerAction::<UpdateProfile>::new();
    let value = action.value();
    let (bio_len, set_bio_len) = signal(user.bio.chars().count());
    let error_for = move |field: Option<&'static str>| {
        move || {
            value
                .get()
                .and_then(Result::err)
                .filter(|e| e.field() == field)
                .map(|e| e.message)
        }
    };
    let done = move || matches!(value.get(), Some(Ok(_)));
    view! {
        <h2>"Profile"</h2>
        <ActionForm action=action>
            <CsrfField token=csrf.clone() />
            <label for="settings-display-name">"Display name"</label>
            <input id="settings-display-name" name="display_name" type="text" maxlength="64"
                autocomplete="nickname" value=user.display_name.clone()
                aria-describedby="settings-display-name-help" />
            <p id="settings-display-name-help" class="help">"Up to 64 characters; empty shows your username."</p>
            <Show when=move || error_for(Some("display_name"))().is_some()>
                <p role="alert" class="error">{error_for(Some("display_name"))}</p>
            </Show>
            <label for="settings-bio">"Bio"</label>
            <textarea id="settings-bio" name="bio" rows="3" aria-describedby="settings-bio-help"
                on:input=move |ev| set_bio_len.set(event_target_value(&ev).trim().chars().count())>
                {user.bio.clone()}
            </textarea>
            <p id="settings-bio-help" class="help">
                {move || format!("{} of {} characters", bio_len.get(), rules::MAX_BIO_CHARS)}
            </p>
            <Show when=move || error_for(Some("bio"))().is_some()>
                <p role="alert" class="error">{error_for(Some("bio"))}</p>
            </Show>
            <Show when=move || error_for(None)().is_some()>
                <p role="alert" class="error">{error_for(None)}</p>
            </Show>
            <Show when=done>
                <p role="status">"Profile saved."</p>
            </Show>
            <button type="submit" disabled=move || action.pending().get()>"Save profile"</button>
        </ActionForm>
    }
}

/// Current and new password; says what happened.
#[component]
fn PasswordForm(csrf: String) -> impl IntoView {
    let action = ServerAction::<ChangePassword>::new();
    let value = action.value();
    let (new_password, set_new_password) = signal(String::new());
    let hint = move || {
        let p = new_password.get();
        (!p.is_empty())
            .then(|| rules::check_password(&p).err())
            .flatten()
    };
    let field_error = move |field: &'static str| {
        move || {
            value
                .get()
                .and_then(Result::err)
                .filter(|e| e.field() == Some(field))
                .map(|e| e.message)
        }
    };
    let other_error = move || {
        value
            .get()
            .and_then(Result::err)
            .filter(|e| e.field().is_none())
            .map(|e| e.message)
    };
    let done = move || matches!(value.get(), Some(Ok(())));
    view! {
        <h2>"Change password"</h2>
        <ActionForm action=action>
            <CsrfField token=csrf.clone() />
            <label for="settings-current-password">"Current password"</label>
            <input id="settings-current-password" name="current_password" type="password"
                autocomplete="current-password" required />
            <label for="settings-new-password">"New password"</label>
            <input id="settings-new-password" name="new_password" type="password"
                autocomplete="new-password" required aria-describedby="settings-new-password-help"
                on:input=move |ev| set_new_password.set(event_target_value(&ev)) />
            <p id="settings-new-password-help" class="help">
                {move || hint().unwrap_or("8 to 128 characters; your other sessions will be signed out")}
            </p>
            <Show when=move || field_error("new_password")().is_some()>
                <p role="alert" class="error">{field_error("new_password")}</p>
            </Show>
            <Show when=move || other_error().is_some()>
                <p role="alert" class="error">{other_error}</p>
            </Show>
            <Show when=done>
                <p role="status">"Password changed. Your other sessions are signed out."</p>
            </Show>
            <button type="submit" disabled=move || action.pending().get()>"Change password"</button>
        </ActionForm>
    }
}

/// The user's sessions, this one marked, each other one with its "Sign out" button.
#[component]
fn SessionList(csrf: String) -> impl IntoView {
    let end = ServerAction::<EndSession>::new();
    let sessions = Resource::new(move || end.version().get(), |_| list_sessions());
    view! {
        <h2 id="sessions-heading">"Sessions"</h2>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || {
                let csrf = csrf.clone();
                Suspend::new(async move {
                match sessions.await {
                    Ok(items) => view! {
                        <ul class="sessions" aria-labelledby="sessions-heading">
                            {items.into_iter().map(|s| view! { <SessionItem session=s end=end csrf=csrf.clone() /> }).collect_view()}
                        </ul>
                    }
                    .into_any(),
                    Err(e) => view! { <p role="alert" class="error">{e.message}</p> }.into_any(),
                }
            })}}
        </Transition>
    }
}

#[component]
fn SessionItem(session: SessionInfo, end: ServerAction<EndSession>, csrf: String) -> impl IntoView {
    let place = session
        .client_address
        .clone()
        .map(|a| format!(" · {a}"))
        .unwrap_or_default();
    let label = format!(
        "Sign out {} (signed in {})",
        session.device,
        session.created_at.format("%b %-d, %Y %H:%M UTC")
    );
    view! {
        <li>
            <p>
                <strong>{session.device.clone()}</strong>
                {place}
                {session.current.then(|| view! { " " <span class="badge">"This device"</span> })}
            </p>
            <p class="muted">
                "Signed in " <LocalTime at=session.created_at /> "; last used " <LocalTime at=session.last_used_at />
            </p>
            {(!session.current).then(|| view! {
                <ActionForm action=end attr:class="inline-form">
                    <CsrfField token=csrf.clone() />
                    <input type="hidden" name="id" value=session.id.to_string() />
                    <button type="submit" class="button-quiet" aria-label=label>"Sign out"</button>
                </ActionForm>
            })}
        </li>
    }
}

/// The people the user blocked, each with an "Unblock" button.
#[component]
fn BlockList(csrf: String) -> impl IntoView {
    let unblock = ServerAction::<Unblock>::new();
    let blocked = Resource::new(move || unblock.version().get(), |_| list_blocks());
    view! {
        <h2 id="blocks-heading">"Blocked people"</h2>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || {
                let csrf = csrf.clone();
                Suspend::new(async move {
                match blocked.await {
                    Ok(users) if users.is_empty() => {
                        view! { <p class="muted">"You have not blocked anyone."</p> }.into_any()
                    }
                    Ok(users) => view! {
                        <ul class="members" aria-labelledby="blocks-heading">
                            {users.into_iter().map(|u| {
                                let label = format!("Unblock @{}", u.username);
                                let token = csrf.clone();
                                view! {
                                    <li>
                                        <Avatar user=u.clone() />
                                        <A href=format!("/u/{}", u.username)>{u.display_name.clone()}</A>
                                        " " <span class="muted">{format!("@{}", u.username)}</span>
                                        <ActionForm action=unblock attr:class="inline-form">
                                            <CsrfField token />
                                            <input type="hidden" name="username" value=u.username.clone() />
                                            <button type="submit" class="button-quiet" aria-label=label>"Unblock"</button>
                                        </ActionForm>
                                    </li>
                                }
                            }).collect_view()}
                        </ul>
                    }
                    .into_any(),
                    Err(e) => view! { <p role="alert" class="error">{e.message}</p> }.into_any(),
                }
            })}}
        </Transition>
    }
}

/// Deletes the account once the password is typed again; says what goes and what stays.
#[component]
fn DeleteAccount(csrf: String) -> impl IntoView {
    let action = SessionContext::get().delete_account;
    let error = move || {
        action
            .value()
            .get()
            .and_then(Result::err)
            .map(|e| e.message)
    };
    view! {
        <h2 id="delete-heading">"Delete account"</h2>
        <p id="delete-help" class="help">
            "Your posts, likes, follows and sessions are deleted at once. Your chat messages stay in "
            "their conversations, from \u{201c}Deleted user\u{201d}. Your username can be taken by "
            "someone else after 30 days. This cannot be undone."
        </p>
        <ActionForm action=action attr:aria-labelledby="delete-heading">
            <CsrfField token=csrf.clone() />
            <label for="delete-password">"Password"</label>
            <input id="delete-password" name="password" type="password" autocomplete="current-password"
                required aria-describedby="delete-help" />
            <Show when=move || error().is_some()>
                <p role="alert" class="error">{error}</p>
            </Show>
            <button type="submit" class="danger-button" disabled=move || action.pending().get()>
                "Delete my account"
            </button>
        </ActionForm>
    }
}
