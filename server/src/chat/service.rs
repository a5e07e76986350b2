//! Channels, membership, sending, history and sync.

use super::writer::Written;
use crate::{
    error::AppError,
    feed::caches,
    live::{self, Event},
    state::AppState,
    storage::{
        chat::{Added, ChannelRow, MessageRow, NewMessage},
        to_datetime, UserRow,
    },
};
use app::{
    model::{
        rules, Channel, ChannelKind, ChannelSummary, ErrorCode, Id, Message, Page, SyncResponse,
        User,
    },
    protocol::ServerFrame,
};
use serde_json::value::RawValue;
use std::{collections::HashMap, sync::Arc};

/// Looks a channel up and checks `user` is a member: 404 if it does not exist, 403 if
/// they are not in it.
pub async fn member_channel(
    state: &AppState,
    user: i64,
    channel: i64,
) -> Result<ChannelRow, AppError> {
    let row = state
        .store
        .chat
        .channel(channel)
        .await?
        .ok_or_else(|| AppError::not_found("channel"))?;
    if !state.store.chat.is_member(channel, user).await? {
        return Err(AppError::forbidden("you are not a member of this channel"));
    }
    Ok(row)
}

async fn user_by_name(state: &AppState, username: &str) -> Result<UserRow, AppError> {
    state
        .store
        .accounts
        .user_by_username(username)
        .await?
        .ok_or_else(|| AppError::not_found(&format!("user {username:?}")))
}

/// The `Channel` for a row.
pub async fn channel_view(state: &AppState, row: &ChannelRow) -> Result<Channel, AppError> {
    let members = state.store.chat.members(row.id).await?;
    Ok(Channel {
        id: Id(row.id),
        kind: if row.kind == "dm" {
            ChannelKind::Dm
        } else {
            ChannelKind::Group
        },
        name: row.name.clone(),
        creator_id: Id(row.creator_id),
        members: members.into_iter().map(User::from).collect(),
    })
}

/// The one 1:1 channel between `me` and `username`, created on first use.
pub async fn open_dm(state: &AppState, me: &User, username: &str) -> Result<Channel, AppError> {
    let other = user_by_name(state, username).await?;
    if other.id == me.id.0 {
        return Err(AppError::validation(
            "username",
            "you cannot message yourself",
        ));
    }
    crate::graph::service::keep_apart(
        state,
        me.id.0,
        other.id,
        "you cannot message this person: one of you blocked the other",
    )
    .await?;
    let key = format!("{}:{}", me.id.0.min(other.id), me.id.0.max(other.id));
    if let Some(row) = state.store.chat.channel_by_dm_key(&key).await? {
        return channel_view(state, &row).await;
    }
    let now = state.clock.now_ms();
    let id = state.ids.next_id()?;
    // False when both opened it at once and the other won: its channel is used below.
    state
        .store
        .chat
        .create_dm(id, &key, me.id.0, other.id, now)
        .await?;
    let row = state
        .store
        .chat
        .channel_by_dm_key(&key)
        .await?
        .ok_or_else(|| AppError::internal("dm channel vanished"))?;
    channel_view(state, &row).await
}

/// Creates a group of `me` and `members` (usernames).
pub async fn create_group(
    state: &AppState,
    me: &User,
    name: &str,
    members: &[String],
) -> Result<Channel, AppError> {
    let name = group_name(name)?;
    let too_large = || {
        AppError::new(
            ErrorCode::GroupTooLarge,
            format!(
                "members: a group has at most {} members, creator included",
                rules::MAX_GROUP_MEMBERS
            ),
        )
    };
    // Counted before any name is looked up: a request naming thousands costs nothing.
    // Usernames compare without case, as the store does.
    let mut seen = std::collections::HashSet::new();
    let names: Vec<&str> = members
        .iter()
        .map(|m| m.trim())
        .filter(|n| !n.eq_ignore_ascii_case(&me.username) && seen.insert(n.to_ascii_lowercase()))
        .collect();
    if names.len() + 1 > rules::MAX_GROUP_MEMBERS {
        return Err(too_large());
    }
    let mut ids = vec![me.id.0];
    for username in names {
        let user = user_by_name(state, username).await?;
        if !ids.contains(&user.id) {
            ids.push(user.id);
        }
    }
    if ids.len() > rules::MAX_GROUP_MEMBERS {
        return Err(too_large());
    }
    let per_hour = state.config.limits.group_create_rate_per_hour;
    let quota = crate::backend::Quota {
        limit: per_hour,
        period: std::time::Duration::from_secs(3600),
        burst: per_hour,
    };
    state
        .take_quota(&crate::backend::id_key("group-create:", me.id.0), quota)
        .await?;
    let now = state.clock.now_ms();
    let id = state.ids.next_id()?;
    state.store.chat.create_group(id, name, &ids, now).await?;
    let row = state
        .store
        .chat
        .channel(id)
        .await?
        .ok_or_else(|| AppError::internal("group vanished"))?;
    channel_view(state, &row).await
}

/// A group's name, trimmed: 1 to 100 characters, none of them control characters.
fn group_name(name: &str) -> Result<&str, AppError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(AppError::validation("name", "must be 1 to 100 characters"));
    }
    Ok(name)
}

/// Renames a group `me` belongs to (any member may); the group as it now is.
pub async fn rename_group(
    state: &AppState,
    me: &User,
    channel: i64,
    name: &str,
) -> Result<Channel, AppError> {
    let name = group_name(name)?;
    let row = member_channel(state, me.id.0, channel).await?;
    if row.kind != "group" || !state.store.chat.rename_group(channel, name).await? {
        return Err(AppError::validation(
            "channel",
            "a 1:1 conversation has no name to change",
        ));
    }
    channel_view(
        state,
        &ChannelRow {
            name: name.to_string(),
            ..row
        },
    )
    .await
}

/// The group `me` belongs to and the user named `username`, for membership changes (a 1:1
/// channel's membership is fixed).
async fn group_and_user(
    state: &AppState,
    me: &User,
    channel: i64,
    username: &str,
) -> Result<(ChannelRow, UserRow), AppError> {
    let row = member_channel(state, me.id.0, channel).await?;
    if row.kind != "group" {
        return Err(AppError::validation(
            "channel",
            "a 1:1 conversation's members cannot change",
        ));
    }
    Ok((row, user_by_name(state, username).await?))
}

/// Adds `username` to a group `me` belongs to.
pub async fn add_member(
    state: &AppState,
    me: &User,
    channel: i64,
    username: &str,
) -> Result<(), AppError> {
    let (_, user) = group_and_user(state, me, channel, username).await?;
    let max = rules::MAX_GROUP_MEMBERS as i64;
    match state
        .store
        .chat
        .add_member(channel, user.id, max, state.clock.now_ms())
        .await?
    {
        Added::Added | Added::AlreadyMember => Ok(()),
        Added::Full => Err(AppError::new(
            ErrorCode::GroupTooLarge,
            "members: the group is full (100 members)",
        )),
    }
}

/// Removes `username` from a group: themselves, or anyone if `me` created the group.
pub async fn remove_member(
    state: &AppState,
    me: &User,
    channel: i64,
    username: &str,
) -> Result<(), AppError> {
    let (row, user) = group_and_user(state, me, channel, username).await?;
    if user.id != me.id.0 && row.creator_id != me.id.0 {
        return Err(AppError::forbidden(
            "only the group's creator can remove others",
        ));
    }
    if !state.store.chat.delete_member(channel, user.id).await? {
        return Err(AppError::not_found("member"));
    }
    Ok(())
}

/// The conversation list.
pub async fn list(state: &AppState, me: &User) -> Result<Vec<ChannelSummary>, AppError> {
    let rows = state.store.chat.channels_of(me.id.0).await?;
    let blocked = state.store.graph.blocked_by(me.id.0).await?;
    let mut out = Vec::with_capacity(rows.len());
    for (row, unread) in rows {
        let channel = channel_view(state, &row).await?;
        let last = match state.store.chat.last_message(row.id).await? {
            Some(m) => hydrate(state, hide_from(&blocked, vec![m])).await?.pop(),
            None => None,
        };
        out.push(ChannelSummary {
            channel,
            last_message: last,
            unread_count: unread,
        });
    }
    Ok(out)
}

/// Tells the other members that `user` is typing (never stored), but for those who
/// blocked them.
pub async fn typing(state: &AppState, user: &User, channel: i64) -> Result<(), AppError> {
    member_channel(state, user.id.0, channel).await?;
    let event = Event::new(&ServerFrame::Typing {
        channel_id: Id(channel),
        user_id: user.id,
    });
    let mut others = state.store.chat.member_ids(channel).await?;
    let blockers = state.store.graph.blockers_of(user.id.0).await?;
    others.retain(|m| *m != user.id.0 && !blockers.contains(m));
    live::send(state, &others, &event).await
}

/// Stores a read receipt (it never moves back) and tells the members, the reader's other
/// devices included (`origin`, the connection that sent it, excepted). They are told the
/// position stored, not the one asked for: a receipt past the newest message, or behind
/// an earlier one, must not make their view differ from the server's.
pub async fn read(
    state: &AppState,
    user: &User,
    channel: i64,
    message_id: i64,
    origin: u64,
) -> Result<(), AppError> {
    member_channel(state, user.id.0, channel).await?;
    let position = state
        .store
        .chat
        .mark_read(channel, user.id.0, message_id)
        .await?
        .ok_or_else(|| AppError::forbidden("you are not a member of this channel"))?;
    let event = Event::from_connection(
        &ServerFrame::Read {
            channel_id: Id(channel),
            user_id: user.id,
            message_id: Id(position),
        },
        origin,
    );
    let members = state.store.chat.member_ids(channel).await?;
    live::send(state, &members, &event).await
}

/// `rows` as a reader who blocked `blocked` sees them: their messages without content.
fn hide_from(blocked: &[i64], mut rows: Vec<MessageRow>) -> Vec<MessageRow> {
    for row in rows.iter_mut().filter(|r| blocked.contains(&r.sender_id)) {
        row.content.clear();
        row.hidden = true;
    }
    rows
}

/// Sends a message-bearing `frame` (made by `make` from the message as each reader may see
/// it) to the members of its channel; those who blocked the sender get it hidden.
async fn send_to_members(
    state: &AppState,
    message: &Message,
    make: impl Fn(Message) -> ServerFrame,
) -> Result<(), AppError> {
    let mut members = state.store.chat.member_ids(message.channel_id.0).await?;
    let blockers = state.store.graph.blockers_of(message.sender.id.0).await?;
    let hidden: Vec<i64> = members
        .iter()
        .copied()
        .filter(|m| blockers.contains(m))
        .collect();
    members.retain(|m| !hidden.contains(m));
    live::send(state, &members, &Event::new(&make(message.clone()))).await?;
    live::send(state, &hidden, &Event::new(&make(message.hidden()))).await
}

/// Turns stored messages into API messages (senders from the user cache).
pub async fn hydrate(state: &AppState, rows: Vec<MessageRow>) -> Result<Vec<Message>, AppError> {
    let sender_ids: Vec<i64> = rows.iter().map(|m| m.sender_id).collect();
    let senders: HashMap<i64, User> = caches::users(state, &sender_ids).await?;
    Ok(rows
        .into_iter()
        .filter_map(|m| {
            let sender = senders.get(&m.sender_id)?.clone();
            Some(m.into_message(sender))
        })
        .collect())
}

/// [`send`] for a client without a socket (the REST API, the UI's pages): within the
/// user's HTTP send quota (`KITH_CHAT_SEND_RATE_PER_SEC`, shared by every node through the
/// rate limiter), else 429. Over a WebSocket each connection has its own frame limit.
pub async fn send_over_http(
    state: &AppState,
    me: &User,
    channel: i64,
    content: &str,
    media: &[Id],
    client_msg_id: &str,
) -> Result<Message, AppError> {
    let rate = state.config.chat_send_rate_per_sec;
    let quota = crate::backend::Quota {
        limit: rate,
        period: std::time::Duration::from_secs(1),
        burst: rate.saturating_mul(5) / 2,
    };
    state
        .take_quota(&crate::backend::id_key("chat-send:", me.id.0), quota)
        .await?;
    send(state, me, channel, content, media, client_msg_id, 0).await
}

/// Stores a message with the images `media` (the sender's unused uploads; claimed for it
/// first, so a retry claims them again), acknowledged only after commit (the node's writer
/// wakes every member's connections right after it), then notifies members with none. A
/// retry with the same `client_msg_id` returns the first message. `origin` identifies the
/// WebSocket connection that sent it (0 for HTTP), which gets an `ack` instead of the
/// `message` frame.
pub async fn send(
    state: &AppState,
    me: &User,
    channel: i64,
    content: &str,
    media: &[Id],
    client_msg_id: &str,
    origin: u64,
) -> Result<Message, AppError> {
    if client_msg_id.is_empty()
        || client_msg_id.len() > 64
        || !client_msg_id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(AppError::validation(
            "client_msg_id",
            "must be 1 to 64 visible ASCII characters",
        ));
    }
    rules::check_message(content, media.len()).map_err(|p| AppError::validation("content", p))?;
    let media = if media.is_empty() {
        None
    } else {
        // A retry of a stored send is answered before its images are looked at: they are
        // attached already (or gone with the deleted message).
        if let Some(first) = state
            .store
            .chat
            .message_by_key(me.id.0, client_msg_id)
            .await?
        {
            return first_of_retry(state, first, channel).await;
        }
        crate::media::service::claim_for_message(state, me.id.0, media, client_msg_id).await?
    };
    let claimed = media.is_some();
    let written = state
        .messages
        .write(
            NewMessage {
                channel,
                sender: me.id.0,
                content: content.to_string(),
                client_msg_id: client_msg_id.to_string(),
                now: state.clock.now_ms(),
                media,
            },
            me.clone(),
            origin,
        )
        .await;
    if claimed && written.is_err() {
        crate::media::service::unclaim(state, me.id.0, client_msg_id).await;
    }
    match written? {
        Written::Existing(first) => first_of_retry(state, first, channel).await,
        Written::Stored {
            message,
            members,
            hidden_from,
        } => {
            // Nobody is notified of a message hidden from them.
            let members = if hidden_from.is_empty() {
                members
            } else {
                members
                    .iter()
                    .copied()
                    .filter(|m| !hidden_from.contains(m))
                    .collect()
            };
            notify_absent_members(state, &message, members);
            Ok(message)
        }
    }
}

async fn first_of_retry(
    state: &AppState,
    existing: MessageRow,
    channel: i64,
) -> Result<Message, AppError> {
    if existing.channel_id != channel {
        return Err(AppError::validation(
            "client_msg_id",
            "already used for a message in another channel",
        ));
    }
    hydrate(state, vec![existing])
        .await?
        .pop()
        .ok_or_else(|| AppError::internal("sender vanished"))
}

/// Members with no live connection get a notification, off the sender's path; when this
/// node knows every other member to be online (the common case: they are connected here)
/// there is nobody to notify, and no task to start. (The writer published the wake-ups.)
fn notify_absent_members(state: &AppState, message: &Message, members: Arc<[i64]>) {
    let sender = message.sender.id.0;
    let others = members.iter().copied().filter(|m| *m != sender);
    if crate::presence::all_known_online(state, others) {
        return;
    }
    let (state, message) = (state.clone(), message.clone());
    tokio::spawn(async move {
        if let Err(e) = crate::notifications::for_message(&state, &message, &members).await {
            tracing::warn!(error = %e, "cannot create message notifications");
        }
    });
}

/// How long after sending a message its sender may edit it.
pub const EDIT_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// Why a message cannot be changed by `user`, read after the conditional write found
/// nothing to change: 404 if the channel or message is unknown (or already deleted, for an
/// edit), 403 if someone else sent it.
async fn refusal(
    state: &AppState,
    user: &User,
    channel: i64,
    message: i64,
) -> Result<Option<MessageRow>, AppError> {
    let row = state.store.chat.message(channel, message).await?;
    match &row {
        None => Err(AppError::not_found("message")),
        Some(row) if row.sender_id != user.id.0 => {
            Err(AppError::forbidden("only its sender can change a message"))
        }
        Some(_) => Ok(row),
    }
}

/// Edits one of `user`'s messages within [`EDIT_WINDOW_MS`] of sending it: the stored
/// message gets the new content and an `edited_at`, keeps its `id` and `seq`, and every
/// member's connections (the editor's other devices too) get `message_updated`.
pub async fn edit_message(
    state: &AppState,
    user: &User,
    channel: i64,
    message: i64,
    content: &str,
) -> Result<Message, AppError> {
    member_channel(state, user.id.0, channel).await?;
    // A message with images may be edited down to no text.
    let images = if content.trim().is_empty() {
        let stored = state.store.chat.message(channel, message).await?;
        stored.map_or(0, |m| {
            crate::storage::media::parse_media(m.media.as_deref()).len()
        })
    } else {
        0
    };
    rules::check_message(content, images).map_err(|p| AppError::validation("content", p))?;
    let now = state.clock.now_ms();
    let excerpt = crate::notifications::excerpt(content);
    let edited = state
        .store
        .chat
        .edit_message(
            channel,
            message,
            user.id.0,
            content,
            &excerpt,
            now - EDIT_WINDOW_MS,
            now,
        )
        .await?;
    let Some(row) = edited else {
        return Err(match refusal(state, user, channel, message).await? {
            Some(row) if row.deleted_at.is_some() => AppError::not_found("message"),
            _ => AppError::forbidden("a message can be edited for 24 hours after it is sent"),
        });
    };
    let message = row.into_message(user.clone());
    send_to_members(state, &message, |message| ServerFrame::MessageUpdated {
        message,
    })
    .await?;
    Ok(message)
}

/// Deletes one of `user`'s messages: its content goes from history (the message stays as
/// "deleted", with its `id` and `seq`), its notifications go, and every member's
/// connections get `message_deleted`. Deleting it again changes nothing.
pub async fn delete_message(
    state: &AppState,
    user: &User,
    channel: i64,
    message: i64,
) -> Result<(), AppError> {
    member_channel(state, user.id.0, channel).await?;
    let now = state.clock.now_ms();
    let deleted = state
        .store
        .chat
        .delete_message(channel, message, user.id.0, now)
        .await?;
    let Some((deleted_at, key)) =
        deleted.and_then(|row| Some((row.deleted_at?, row.client_msg_id)))
    else {
        // Theirs and deleted already: nothing to do, nobody to tell.
        refusal(state, user, channel, message).await?;
        return Ok(());
    };
    // Its images go with it.
    let released = state.store.media.release_message(user.id.0, &key).await;
    crate::media::service::release(state, released).await;
    let members = state.store.chat.member_ids(channel).await?;
    let event = Event::new(&ServerFrame::MessageDeleted {
        channel_id: Id(channel),
        message_id: Id(message),
        deleted_at: to_datetime(deleted_at),
    });
    live::send(state, &members, &event).await
}

/// A page of history for a member, in id order: the `limit` messages before `before` (the
/// newest when `None`), or after `after`. `next_cursor` continues in the same direction.
pub async fn history(
    state: &AppState,
    me: &User,
    channel: i64,
    before: Option<i64>,
    after: Option<i64>,
    limit: usize,
) -> Result<Page<Message>, AppError> {
    member_channel(state, me.id.0, channel).await?;
    let rows = state
        .store
        .chat
        .history(channel, before, after, limit as i64 + 1)
        .await?;
    let blocked = state.store.graph.blocked_by(me.id.0).await?;
    let mut items = hydrate(state, hide_from(&blocked, rows)).await?;
    let next_cursor = if items.len() <= limit {
        None
    } else if after.is_some() {
        items.truncate(limit);
        items.last().map(|m| m.id.to_string())
    } else {
        items.remove(0);
        items.first().map(|m| m.id.to_string())
    };
    Ok(Page { items, next_cursor })
}

/// Messages after `since` across the user's channels, oldest first (at most `limit`).
pub async fn since(
    state: &AppState,
    me: i64,
    since: i64,
    limit: usize,
) -> Result<Vec<Message>, AppError> {
    let rows = state.store.chat.since(me, since, limit as i64).await?;
    hydrate(state, rows).await
}

/// Most messages one sync answer carries; the client asks again from the new cursor.
const SYNC_BATCH: usize = 500;

/// Counts a waiting long-poll for `/metrics` while it lives.
struct WaiterGauge(AppState);

impl Drop for WaiterGauge {
    fn drop(&mut self) {
        self.0
            .metrics
            .longpoll_waiters
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A message of a sync answer, as JSON: one taken from a wake-up keeps the JSON its frame
/// carried (the writer serialized it once for every member), so an answer made from
/// wake-ups neither parses nor writes a message again; one read from the database is
/// serialized here.
#[derive(Debug)]
pub struct SyncedMessage {
    id: i64,
    json: Box<RawValue>,
}

impl SyncedMessage {
    fn new(message: &Message) -> Result<Self, AppError> {
        let json = serde_json::value::to_raw_value(message)
            .map_err(|e| AppError::internal(format!("cannot serialize a message: {e}")))?;
        Ok(Self {
            id: message.id.0,
            json,
        })
    }
}

impl serde::Serialize for SyncedMessage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(serializer)
    }
}

/// The answer of a long poll, in the shape of [`SyncResponse`] (which the HTTP API
/// documents), with its messages and events kept as JSON; [`Synced::into_model`] reads
/// them for the UI.
#[derive(Debug, serde::Serialize)]
pub struct Synced {
    messages: Vec<SyncedMessage>,
    events: Vec<Box<RawValue>>,
    cursor: Id,
}

impl Synced {
    /// The answer as the model's types.
    pub fn into_model(self) -> Result<SyncResponse, AppError> {
        let unreadable = |e: serde_json::Error| {
            AppError::internal(format!("cannot read a sync answer's JSON: {e}"))
        };
        let messages = self
            .messages
            .iter()
            .map(|m| serde_json::from_str(m.json.get()))
            .collect::<Result<_, _>>()
            .map_err(unreadable)?;
        let events = self
            .events
            .iter()
            .map(|e| serde_json::from_str(e.get()))
            .collect::<Result<_, _>>()
            .map_err(unreadable)?;
        Ok(SyncResponse {
            messages,
            events,
            cursor: self.cursor,
        })
    }
}

/// Long poll: messages after `since`, waiting up to `wait_secs` for one to arrive. The
/// wake-up subscription is registered before the database is read, so a message committed
/// in between still ends the wait. Other events (presence, typing, read receipts, new posts)
/// arriving during the wait end it too and come back in `events`. A waiting poll keeps its
/// user present.
///
/// When wake-ups arrive in commit order (one node on the in-process bus), a subscription
/// that holds every wake-up after `since` is *in step*: the one parked by the poll that
/// answered `since` (`chat::longpoll`), or a fresh one whose read reached the newest
/// message. An in-step poll answers from its wake-ups without reading the database, and
/// parks its subscription for the poll that continues from its answer. A lagged inbox, a
/// [`GAP`](crate::backend::GAP) or a wake-up out of id order puts it out of step: it reads
/// the database, as every poll does on Redis.
pub async fn wait_for_messages(
    state: &AppState,
    me: i64,
    since: i64,
    wait_secs: u64,
) -> Result<Synced, AppError> {
    use tokio::sync::broadcast::error::RecvError;
    crate::presence::activity(state, me).await;
    let _present = crate::presence::hold(state, me);
    let ordered = state.backends.pubsub.ordered();
    let resumed = if ordered {
        state.longpolls.resume(me, since)
    } else {
        None
    };
    let mut events = Vec::new();
    let (mut wake, mut messages, mut in_step) = match resumed {
        Some(wake) => (wake, Vec::new(), true),
        None => {
            let wake = state.backends.pubsub.subscribe(&live::topic(me)).await?;
            let messages = since_batch(state, me, since).await?;
            let complete = messages.len() < SYNC_BATCH;
            (wake, messages, ordered && complete)
        }
    };
    if in_step && messages.is_empty() {
        // What arrived while the subscription was parked, or since the read.
        let mut taken = Taken::new(since, &mut messages, &mut events);
        if !taken.waiting(&mut wake) {
            in_step = false;
            messages = since_batch(state, me, since).await?;
        }
    }
    if messages.is_empty() && events.is_empty() && wait_secs > 0 {
        state
            .metrics
            .longpoll_waiters
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _gauge = WaiterGauge(state.clone());
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait_secs);
        loop {
            match tokio::time::timeout_at(deadline, wake.recv()).await {
                // One last look, in step or not: a message whose wake-up was lost (one
                // stored by another process on the same file) is answered now rather than
                // one poll later. The subscription predates the read, so a complete read
                // leaves it in step.
                Err(_) => {
                    messages = since_batch(state, me, since).await?;
                    in_step = in_step && messages.len() < SYNC_BATCH;
                    break;
                }
                Ok(Ok(payload)) => {
                    let mut taken = Taken::new(since, &mut messages, &mut events);
                    taken.messages_too = in_step;
                    if !(taken.one(&payload) && (!in_step || taken.waiting(&mut wake))) {
                        in_step = false;
                    }
                }
                // A lagged receiver: the database says what is new.
                Ok(Err(RecvError::Lagged(_))) => in_step = false,
                // No more wake-ups will come (the node is stopping): answer with what the
                // database has now rather than spin until the deadline.
                Ok(Err(RecvError::Closed)) => {
                    messages = since_batch(state, me, since).await?;
                    in_step = false;
                    break;
                }
            }
            if !in_step {
                messages = since_batch(state, me, since).await?;
            }
            if !messages.is_empty() || !events.is_empty() {
                break;
            }
        }
    }
    let cursor = messages.last().map_or(since, |m| m.id);
    if in_step {
        state.longpolls.park(me, cursor, wake);
    }
    Ok(Synced {
        messages,
        events,
        cursor: Id(cursor),
    })
}

/// What a long poll takes from its wake-ups: events always, messages (after `since`, in id
/// order, up to [`SYNC_BATCH`]) when it is in step.
struct Taken<'a> {
    since: i64,
    messages: &'a mut Vec<SyncedMessage>,
    events: &'a mut Vec<Box<RawValue>>,
    messages_too: bool,
}

impl<'a> Taken<'a> {
    fn new(
        since: i64,
        messages: &'a mut Vec<SyncedMessage>,
        events: &'a mut Vec<Box<RawValue>>,
    ) -> Self {
        Self {
            since,
            messages,
            events,
            messages_too: true,
        }
    }

    /// Takes one wake-up; false if it says wake-ups were lost, or its message is out of id
    /// order or unreadable.
    fn one(&mut self, payload: &bytes::Bytes) -> bool {
        use super::ws::wake::{parse, Wake};
        if *payload == crate::backend::GAP {
            return false;
        }
        match parse(payload) {
            Some(Wake::Frame {
                message: Some(placed),
                json,
                ..
            }) => {
                if !self.messages_too || placed.id <= self.since {
                    return true;
                }
                let newest = self.messages.last().map_or(self.since, |m| m.id);
                match serde_json::from_slice::<MessageFrame>(&json) {
                    Ok(frame) if frame.kind == "message" && placed.id > newest => {
                        self.messages.push(SyncedMessage {
                            id: placed.id,
                            json: frame.message,
                        });
                        true
                    }
                    _ => false,
                }
            }
            Some(Wake::Frame {
                message: None,
                json,
                ..
            }) => {
                if let Ok(event) = serde_json::from_slice::<Box<RawValue>>(&json) {
                    self.events.push(event);
                }
                true
            }
            // A revoked session is the WebSocket's concern; a poll ends on its own.
            _ => true,
        }
    }

    /// Takes the wake-ups already waiting, until a batch is full; false as for
    /// [`Taken::one`], or if the inbox lagged.
    fn waiting(&mut self, wake: &mut crate::backend::Subscription) -> bool {
        use tokio::sync::broadcast::error::TryRecvError;
        while self.messages.len() < SYNC_BATCH {
            match wake.try_recv() {
                Ok(payload) => {
                    if !self.one(&payload) {
                        return false;
                    }
                }
                Err(TryRecvError::Lagged(_)) => return false,
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
            }
        }
        true
    }
}

/// A message frame (`ServerFrame::Message`) as a wake-up carries it, its message left as
/// JSON.
#[derive(serde::Deserialize)]
struct MessageFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    message: Box<RawValue>,
}

async fn since_batch(
    state: &AppState,
    me: i64,
    since_id: i64,
) -> Result<Vec<SyncedMessage>, AppError> {
    since(state, me, since_id, SYNC_BATCH)
        .await?
        .iter()
        .map(SyncedMessage::new)
        .collect()
}
