//! The notification service: a chat message for a member with no live connection, and a
//! new post from someone followed, leave a notification the recipient finds later (the
//! badge and list of the UI, `GET /v1/me/notifications`).
//!
//! "No live connection" is the presence server's answer: a member who is offline (silent
//! for longer than the presence timeout) is notified; one who is online got the message
//! live. Post notifications are written by their own workers (`posts`, fed by the
//! notification outbox once the post's feed fanout is done), in batches, for authors below
//! the celebrity threshold. A celebrity's post is recorded once instead, and their
//! followers' lists pull it (fanout-on-read, as in the feed: a row per follower would be
//! the fanout-on-write the threshold exists to avoid); pulled notifications are kept for
//! [`PULLED_DAYS`] days.
//!
//! A notification's id is its subject's (the message's or the post's), so at-least-once
//! delivery cannot notify twice; reading is a per-user watermark ("everything up to").

pub mod posts;
pub mod routes;

use crate::{error::AppError, feed::caches, presence, state::AppState};
use app::model::{Id, Message, Notification, NotificationKind, Page};
use std::collections::HashMap;

/// Characters of a message or post kept in its notification.
const EXCERPT_CHARS: usize = 140;

/// Days a celebrity's post stays in its followers' notifications (they are pulled, see the
/// module's note; stored rows are kept until their post is deleted).
pub const PULLED_DAYS: i64 = 30;

/// The oldest id a pulled notification may have now.
fn pulled_since(state: &AppState) -> i64 {
    crate::id::min_id_at(state.clock.now_ms() - PULLED_DAYS * 24 * 3600 * 1000)
}

pub fn excerpt(text: &str) -> String {
    let mut out: String = text.chars().take(EXCERPT_CHARS).collect();
    if text.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    out
}

/// Notifies the members of a message's channel who are offline (the sender excepted).
pub async fn for_message(
    state: &AppState,
    message: &Message,
    members: &[i64],
) -> Result<(), AppError> {
    let sender = message.sender.id.0;
    let others: Vec<i64> = members.iter().copied().filter(|m| *m != sender).collect();
    if others.is_empty() {
        return Ok(());
    }
    let online = presence::online_among(state, &others).await?;
    let offline: Vec<i64> = others.into_iter().filter(|m| !online.contains(m)).collect();
    let text = excerpt(&message.content);
    let about = crate::storage::notifications::About {
        kind: "message",
        subject: message.id.0,
        actor_id: sender,
        channel_id: Some(message.channel_id.0),
        excerpt: &text,
        created_at: message.created_at.timestamp_millis(),
    };
    state
        .store
        .notifications
        .insert_many(&about, &offline)
        .await?;
    Ok(())
}

/// Notifies `followers` of a new post; those notified now (not by an earlier run).
pub async fn for_post(
    state: &AppState,
    author: i64,
    post_id: i64,
    content: &str,
    followers: &[i64],
) -> Result<Vec<i64>, AppError> {
    let text = excerpt(content);
    let about = crate::storage::notifications::About {
        kind: "post",
        subject: post_id,
        actor_id: author,
        channel_id: None,
        excerpt: &text,
        created_at: state.clock.now_ms(),
    };
    Ok(state
        .store
        .notifications
        .insert_many(&about, followers)
        .await?)
}

/// A page of the user's notifications, newest first.
pub async fn list(
    state: &AppState,
    user: i64,
    before: Option<i64>,
    limit: usize,
) -> Result<Page<Notification>, AppError> {
    let mut rows = state
        .store
        .notifications
        .page(
            user,
            before,
            limit as i64 + 1,
            pulled_since(state),
            EXCERPT_CHARS as i64,
        )
        .await?;
    let read_up_to = state.store.notifications.read_up_to(user).await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let actor_ids: Vec<i64> = rows.iter().map(|r| r.actor_id).collect();
    let actors = caches::users(state, &actor_ids).await?;
    let next_cursor = more
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    let items = rows
        .into_iter()
        .filter_map(|r| to_api(r, &actors, read_up_to))
        .collect();
    Ok(Page { items, next_cursor })
}

fn to_api(
    r: crate::storage::notifications::NotificationRow,
    actors: &HashMap<i64, app::model::User>,
    read_up_to: i64,
) -> Option<Notification> {
    let post = r.kind == "post";
    Some(Notification {
        id: Id(r.id),
        kind: if post {
            NotificationKind::Post
        } else {
            NotificationKind::Message
        },
        actor: actors.get(&r.actor_id)?.clone(),
        channel_id: r.channel_id.map(Id),
        message_id: (!post).then_some(Id(r.id)),
        post_id: post.then_some(Id(r.id)),
        excerpt: r.excerpt,
        created_at: crate::storage::to_datetime(r.created_at),
        read: r.id <= read_up_to,
    })
}

/// Marks the user's notifications up to `up_to` read.
pub async fn mark_read(state: &AppState, user: i64, up_to: i64) -> Result<(), AppError> {
    state.store.notifications.mark_read(user, up_to).await?;
    Ok(())
}

pub async fn unread(state: &AppState, user: i64) -> Result<i64, AppError> {
    Ok(state
        .store
        .notifications
        .unread_count(user, pulled_since(state))
        .await?)
}
