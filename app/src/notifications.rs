//! Notifications in the UI: server functions for the badge and the list.

use crate::{
    error::ApiError,
    model::{Notification, Page},
};
use leptos::prelude::*;

#[server(input = server_fn::codec::GetUrl, endpoint = "notifications")]
pub async fn list_notifications(cursor: Option<String>) -> Result<Page<Notification>, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(backend.notifications(&parts, cursor).await)
}

#[server(input = server_fn::codec::GetUrl, endpoint = "notifications_unread")]
pub async fn unread_notifications() -> Result<i64, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(backend.unread_notifications(&parts).await)
}

#[server(endpoint = "notifications_read")]
pub async fn mark_notifications_read(csrf: String, up_to: String) -> Result<(), ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(match backend.check_csrf(&parts, &csrf) {
        Ok(()) => backend.mark_notifications_read(&parts, &up_to).await,
        Err(e) => Err(e),
    })
}

/// Asks the browser for permission to show notifications while the tab is hidden.
pub fn request_browser_permission() {
    #[cfg(feature = "hydrate")]
    {
        let _ = web_sys::Notification::request_permission();
    }
}

/// Whether the browser could still be asked (not yet granted or denied).
pub fn browser_permission_undecided() -> bool {
    #[cfg(feature = "hydrate")]
    {
        web_sys::Notification::permission() == web_sys::NotificationPermission::Default
    }
    #[cfg(not(feature = "hydrate"))]
    {
        false
    }
}
