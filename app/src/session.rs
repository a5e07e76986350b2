//! Session server functions: who is signed in, sign-up, sign-in, sign-out, editing one's
//! profile, changing one's password, listing and ending one's sessions, and deleting
//! one's account.
//!
//! Each state change takes the page's CSRF token (`csrf`, a hidden form field) and checks
//! it against the `kith_csrf` cookie: server functions get no CSRF check from Leptos.

use crate::{
    error::ApiError,
    model::{SessionInfo, User},
};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// What the UI knows about the visitor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user: Option<User>,
    /// Echoed back by every form that changes state.
    pub csrf: String,
}

#[server(input = server_fn::codec::GetUrl, endpoint = "session")]
pub async fn get_session() -> Result<Session, ApiError> {
    crate::backend::finish(
        async {
            let (backend, parts) = crate::backend::context()?;
            Ok(Session {
                user: backend.current_user(&parts).await?,
                csrf: backend.csrf_token(&parts),
            })
        }
        .await,
    )
}

#[server(endpoint = "sign_up")]
pub async fn sign_up(
    csrf: String,
    username: String,
    password: String,
    display_name: Option<String>,
) -> Result<(), ApiError> {
    crate::backend::finish(
        async {
            let (backend, parts) = crate::backend::context()?;
            backend.check_csrf(&parts, &csrf)?;
            let username = username.trim().to_string();
            let auth = backend
                .register(&parts, &username, password, display_name)
                .await?;
            crate::backend::set_cookie(&backend.session_cookie(&parts, Some(&auth.token)));
            leptos_axum::redirect("/");
            Ok(())
        }
        .await,
    )
}

#[server(endpoint = "sign_in")]
pub async fn sign_in(csrf: String, username: String, password: String) -> Result<(), ApiError> {
    crate::backend::finish(
        async {
            let (backend, parts) = crate::backend::context()?;
            backend.check_csrf(&parts, &csrf)?;
            let auth = backend.login(&parts, username.trim(), password).await?;
            crate::backend::set_cookie(&backend.session_cookie(&parts, Some(&auth.token)));
            leptos_axum::redirect("/");
            Ok(())
        }
        .await,
    )
}

#[server(endpoint = "sign_out")]
pub async fn sign_out(csrf: String) -> Result<(), ApiError> {
    crate::backend::finish(
        async {
            let (backend, parts) = crate::backend::context()?;
            backend.check_csrf(&parts, &csrf)?;
            backend.logout(&parts).await?;
            crate::backend::set_cookie(&backend.session_cookie(&parts, None));
            leptos_axum::redirect("/");
            Ok(())
        }
        .await,
    )
}

#[server(endpoint = "change_password")]
pub async fn change_password(
    csrf: String,
    current_password: String,
    new_password: String,
) -> Result<(), ApiError> {
    crate::backend::finish(
        async {
            let (backend, parts) = crate::backend::context()?;
            backend.check_csrf(&parts, &csrf)?;
            backend
                .change_password(&parts, current_password, new_password)
                .await
        }
        .await,
    )
}

#[server(endpoint = "delete_account")]
pub async fn delete_account(csrf: String, password: String) -> Result<(), ApiError> {
    crate::backend::finish(
        async {
            let (backend, parts) = crate::backend::context()?;
            backend.check_csrf(&parts, &csrf)?;
            backend.delete_account(&parts, password).await?;
            crate::backend::set_cookie(&backend.session_cookie(&parts, None));
            leptos_axum::redirect("/");
            Ok(())
        }
        .await,
    )
}

#[server(endpoint = "update_profile")]
pub async fn update_profile(
    csrf: String,
    display_name: String,
    bio: String,
) -> Result<User, ApiError> {
    crate::backend::finish(
        async {
            let (backend, parts) = crate::backend::context()?;
            backend.check_csrf(&parts, &csrf)?;
            backend.update_profile(&parts, display_name, bio).await
        }
        .await,
    )
}

#[server(input = server_fn::codec::GetUrl, endpoint = "sessions")]
pub async fn list_sessions() -> Result<Vec<SessionInfo>, ApiError> {
    crate::backend::finish(
        async {
            let (backend, parts) = crate::backend::context()?;
            backend.sessions(&parts).await
        }
        .await,
    )
}

#[server(endpoint = "end_session")]
pub async fn end_session(csrf: String, id: String) -> Result<(), ApiError> {
    crate::backend::finish(
        async {
            let (backend, parts) = crate::backend::context()?;
            backend.check_csrf(&parts, &csrf)?;
            backend.end_session(&parts, &id).await
        }
        .await,
    )
}

/// The session resource and the actions that change it, shared through context.
#[derive(Clone, Copy)]
pub struct SessionContext {
    pub session: Resource<Result<Session, ApiError>>,
    pub sign_up: ServerAction<SignUp>,
    pub sign_in: ServerAction<SignIn>,
    pub sign_out: ServerAction<SignOut>,
    pub delete_account: ServerAction<DeleteAccount>,
}

impl SessionContext {
    /// Creates the session resource; it reloads whenever one of the actions completes.
    pub fn provide() -> Self {
        let sign_up = ServerAction::<SignUp>::new();
        let sign_in = ServerAction::<SignIn>::new();
        let sign_out = ServerAction::<SignOut>::new();
        let delete_account = ServerAction::<DeleteAccount>::new();
        let session = Resource::new(
            move || {
                (
                    sign_up.version().get(),
                    sign_in.version().get(),
                    sign_out.version().get(),
                    delete_account.version().get(),
                )
            },
            |_| get_session(),
        );
        let cx = Self {
            session,
            sign_up,
            sign_in,
            sign_out,
            delete_account,
        };
        provide_context(cx);
        cx
    }

    pub fn get() -> Self {
        expect_context::<Self>()
    }
}
