//! The live connection of a signed-in page, app-wide: one WebSocket (falling back to
//! long-polling when sockets keep failing, or when `?transport=longpoll` asks for it) that
//! brings chat messages, presence changes, typing indicators, read receipts and new posts
//! of followed people. Pages read what they need from the signals of [`LiveClient`].

use crate::{
    model::{Id, Message, Post, PresenceStatus},
    protocol::ServerFrame,
};
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use std::collections::HashMap;

/// Live messages kept per channel for the pages (a long session in a busy group would
/// otherwise keep every message it ever received, and scan them all for each new one).
pub const LIVE_MESSAGES_KEPT: usize = 500;

/// How long a typing indicator shows without a new `typing` event.
pub const TYPING_SHOWS_MS: u32 = 6_000;

/// How the live client is doing, for the reconnect banner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Not started (server rendering, or before hydration).
    Idle,
    Connecting,
    WebSocket,
    /// Receiving by long-poll.
    LongPoll,
    /// Lost the connection; trying again after a pause.
    Reconnecting,
    /// The session ended (signed out on another device, the password changed, the account
    /// deleted): the client has stopped.
    SignedOut,
}

/// The last known presence of a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub status: PresenceStatus,
    pub last_active_at: Option<DateTime<Utc>>,
}

/// Someone typing in a channel; `token` tells a refreshed indicator from an expired one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Typing {
    pub channel_id: Id,
    pub user_id: Id,
    token: u64,
}

/// A member's read position in a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadPosition {
    pub channel_id: Id,
    pub user_id: Id,
    pub message_id: Id,
}

/// What became of a message after it was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Edited: the message as it now stands (boxed: a message is large, a deletion small).
    Edited(Box<Message>),
    /// Deleted by its sender, at this time.
    Deleted(DateTime<Utc>),
}

impl Change {
    /// `message` with this change applied (an older edit does not undo a newer one).
    pub fn apply(&self, message: &mut Message) {
        match self {
            Change::Edited(edited) => {
                if message.deleted_at.is_none() && edited.edited_at >= message.edited_at {
                    message.content.clone_from(&edited.content);
                    message.edited_at = edited.edited_at;
                }
            }
            Change::Deleted(at) => {
                message.content.clear();
                message.media.clear();
                message.deleted_at = Some(*at);
            }
        }
    }
}

/// The live client of a signed-in page.
#[derive(Clone, Copy)]
pub struct LiveClient {
    pub transport: RwSignal<Transport>,
    /// The newest messages received live since the page loaded, by channel (at most
    /// [`LIVE_MESSAGES_KEPT`] each), in arrival order. A conversation shows them after its
    /// history; one whose older live messages were dropped from here finds the hole by
    /// `seq` below the newer ones and fetches it.
    pub messages: RwSignal<HashMap<Id, Vec<Message>>>,
    /// Edits and deletions received live (or made on this page), by message id.
    pub changes: RwSignal<HashMap<Id, Change>>,
    /// How many new messages have arrived (a signal for lists that show their effect).
    pub arrivals: RwSignal<u64>,
    /// Presence changes pushed since the page loaded (pages fetch the initial state).
    pub presence: RwSignal<HashMap<Id, Seen>>,
    /// Who is typing where, right now.
    pub typing: RwSignal<Vec<Typing>>,
    /// Read positions received live (the user's own other devices included).
    pub reads: RwSignal<Vec<ReadPosition>>,
    /// Posts of followed people that arrived live and are not shown yet.
    pub new_posts: RwSignal<Vec<Post>>,
    /// Unread notifications (the badge); set from the server, bumped by live events.
    pub unread_notifications: RwSignal<i64>,
    started: StoredValue<bool>,
    typing_tokens: StoredValue<u64>,
    /// Messages up to this id were there when the client started: received again (the
    /// transport starts a little before them), they raise no browser notification.
    known_at_start: StoredValue<Id>,
}

impl LiveClient {
    /// Creates the (idle) client for the whole app.
    pub fn provide() -> Self {
        let client = Self {
            transport: RwSignal::new(Transport::Idle),
            messages: RwSignal::new(HashMap::new()),
            changes: RwSignal::new(HashMap::new()),
            arrivals: RwSignal::new(0),
            presence: RwSignal::new(HashMap::new()),
            typing: RwSignal::new(Vec::new()),
            reads: RwSignal::new(Vec::new()),
            new_posts: RwSignal::new(Vec::new()),
            unread_notifications: RwSignal::new(0),
            started: StoredValue::new(false),
            typing_tokens: StoredValue::new(0),
            known_at_start: StoredValue::new(Id(i64::MAX)),
        };
        provide_context(client);
        client
    }

    pub fn get() -> Self {
        expect_context::<Self>()
    }

    /// Starts receiving (in the browser, once); signed-in pages call it.
    pub fn start(&self) {
        if self.started.get_value() {
            return;
        }
        self.started.set_value(true);
        #[cfg(feature = "hydrate")]
        transport::start(*self);
    }

    /// Whether the message `id` is newer than what the user's conversations held when this
    /// client started (a message received since, not one received again).
    pub fn arrived_live(&self, id: Id) -> bool {
        id > self.known_at_start.get_value()
    }

    /// The live messages of `channel`, in arrival order (tracked).
    pub fn channel_messages(&self, channel: Id) -> Vec<Message> {
        self.messages
            .with(|live| live.get(&channel).cloned().unwrap_or_default())
    }

    /// Records messages (from any transport); duplicates are ignored. Returns how many
    /// were new.
    pub fn receive(&self, messages: Vec<Message>) -> u64 {
        if messages.is_empty() {
            return 0;
        }
        self.typing.update(|typing| {
            typing.retain(|t| {
                !messages
                    .iter()
                    .any(|m| m.channel_id == t.channel_id && m.sender.id == t.user_id)
            })
        });
        let mut added = 0;
        self.messages.update(|live| {
            for m in messages {
                let channel = live.entry(m.channel_id).or_default();
                if !channel.iter().any(|x| x.id == m.id) {
                    channel.push(m);
                    added += 1;
                    if channel.len() > LIVE_MESSAGES_KEPT {
                        channel.drain(..channel.len() - LIVE_MESSAGES_KEPT);
                    }
                }
            }
        });
        if added > 0 {
            self.arrivals.update(|n| *n += added);
        }
        added
    }

    /// Acts on one frame from the server (or event of a long poll).
    pub fn handle(&self, frame: ServerFrame) {
        match frame {
            // An ack carries the stored message, like the `message` frame of another device.
            ServerFrame::Message { message } | ServerFrame::Ack { message, .. } => {
                let alert_for = (Some(message.sender.id) != crate::feed::viewer_id()
                    && self.arrived_live(message.id))
                .then(|| {
                    (
                        format!("{} sent a message", message.sender.display_name),
                        message.content.clone(),
                    )
                });
                // A message received twice (a replay, a catch-up) alerts once.
                if self.receive(vec![message]) > 0 {
                    if let Some((title, body)) = alert_for {
                        alert(&title, &body);
                    }
                }
            }
            ServerFrame::MessageUpdated { message } => {
                self.changed(message.id, Change::Edited(Box::new(message)));
            }
            ServerFrame::MessageDeleted {
                message_id,
                deleted_at,
                ..
            } => self.changed(message_id, Change::Deleted(deleted_at)),
            ServerFrame::Presence {
                user_id,
                status,
                last_active_at,
            } => self.presence.update(|p| {
                p.insert(
                    user_id,
                    Seen {
                        status,
                        last_active_at,
                    },
                );
            }),
            ServerFrame::Typing {
                channel_id,
                user_id,
            } => self.typing_started(channel_id, user_id),
            ServerFrame::Read {
                channel_id,
                user_id,
                message_id,
            } => self.reads.update(|reads| {
                match reads
                    .iter_mut()
                    .find(|r| r.channel_id == channel_id && r.user_id == user_id)
                {
                    Some(r) => r.message_id = r.message_id.max(message_id),
                    None => reads.push(ReadPosition {
                        channel_id,
                        user_id,
                        message_id,
                    }),
                }
            }),
            ServerFrame::NewPost { post } => {
                alert(
                    &format!("{} posted", post.author.display_name),
                    &post.content,
                );
                let mut added = false;
                self.new_posts.update(|posts| {
                    if !posts.iter().any(|p| p.id == post.id) {
                        posts.insert(0, post);
                        added = true;
                    }
                });
                if added {
                    self.unread_notifications.update(|n| *n += 1);
                }
            }
            ServerFrame::Error {
                code,
                message,
                client_msg_id,
            } => leptos::logging::warn!(
                "live connection: {} {message} (send {client_msg_id:?})",
                code.as_str()
            ),
        }
    }

    /// Records what became of message `id`: a deletion stays, a later edit replaces an
    /// earlier one.
    pub fn changed(&self, id: Id, change: Change) {
        self.changes.update(|changes| {
            let keep = match (changes.get(&id), &change) {
                (Some(Change::Deleted(_)), _) => false,
                (Some(Change::Edited(old)), Change::Edited(new)) => new.edited_at >= old.edited_at,
                _ => true,
            };
            if keep {
                changes.insert(id, change);
            }
        });
    }

    fn typing_started(&self, channel_id: Id, user_id: Id) {
        let token = self.typing_tokens.get_value() + 1;
        self.typing_tokens.set_value(token);
        self.typing.update(|typing| {
            typing.retain(|t| !(t.channel_id == channel_id && t.user_id == user_id));
            typing.push(Typing {
                channel_id,
                user_id,
                token,
            });
        });
        #[cfg(feature = "hydrate")]
        {
            let typing = self.typing;
            leptos::task::spawn_local(async move {
                transport::sleep_ms(f64::from(TYPING_SHOWS_MS)).await;
                typing.update(|t| t.retain(|x| x.token != token));
            });
        }
    }
}

/// Raises a browser notification when the tab is hidden and the user has allowed them.
fn alert(title: &str, body: &str) {
    #[cfg(feature = "hydrate")]
    {
        use web_sys::{Notification, NotificationOptions, NotificationPermission};
        let hidden = web_sys::window()
            .and_then(|w| w.document())
            .is_some_and(|d| d.hidden());
        if hidden && Notification::permission() == NotificationPermission::Granted {
            let options = NotificationOptions::new();
            options.set_body(body);
            let _ = Notification::new_with_options(title, &options);
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (title, body);
}

#[cfg(feature = "hydrate")]
mod transport {
    //! The browser side: WebSocket with reconnect (exponential backoff with jitter), and a
    //! long-poll loop when sockets keep failing, retrying the socket now and then.

    use super::{LiveClient, Transport};
    use crate::protocol::{ClientFrame, ServerFrame};
    use crate::{
        chat::{chat_servers, list_channels, poll},
        model::{ErrorCode, Id},
    };
    use futures::channel::oneshot;
    use leptos::prelude::*;
    use std::{cell::Cell, rc::Rc};
    use wasm_bindgen::{closure::Closure, JsCast};
    use web_sys::{CloseEvent, MessageEvent, WebSocket};

    /// The close code of a socket whose session ended.
    const SIGNED_OUT: u16 = 4001;
    /// Socket failures in a row before falling back to long-polling.
    const FAILURES_BEFORE_LONGPOLL: u32 = 3;
    /// Heartbeats keep the user present (the server's presence timeout is 30 s by default)
    /// and the idle timer from closing a quiet socket.
    const HEARTBEAT_MS: f64 = 10_000.0;
    /// How long a socket may take to open before it counts as failed: a server that
    /// swallows the handshake, or a connection the browser blocked without a word, must not
    /// stall the client.
    const OPEN_TIMEOUT_MS: f64 = 5_000.0;
    /// Long-poll rounds between attempts to get back to a socket.
    const POLLS_BEFORE_RETRYING_SOCKET: u32 = 4;
    /// How far before the newest message at start the client begins receiving: what was
    /// sent while the page loaded (after the page read its data, before the client read
    /// the newest id) comes again rather than not at all. Pages drop what they hold.
    const REPLAY_MS: i64 = 60_000;

    pub async fn sleep_ms(ms: f64) {
        let promise = js_sys::Promise::new(&mut |resolve, _| {
            if let Some(w) = web_sys::window() {
                let _ =
                    w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms as i32);
            }
        });
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    }

    /// Exponential backoff with full jitter, capped at 30 s, so a restarted node is not
    /// hit by every client in the same second.
    fn backoff_ms(attempt: u32) -> f64 {
        let cap = (500.0 * 2f64.powi(attempt.min(6) as i32)).min(30_000.0);
        cap / 2.0 + js_sys::Math::random() * cap / 2.0
    }

    fn forced_longpoll() -> bool {
        web_sys::window()
            .and_then(|w| w.location().search().ok())
            .is_some_and(|s| s.contains("transport=longpoll"))
    }

    fn ws_url() -> Option<String> {
        let location = web_sys::window()?.location();
        let scheme = if location.protocol().ok()? == "https:" {
            "wss"
        } else {
            "ws"
        };
        Some(format!("{scheme}://{}/v1/chat/ws", location.host().ok()?))
    }

    /// The WebSocket URLs to try, best first: the chat servers discovery lists (least
    /// loaded first), then the page's own origin, which works behind any balancer. A node
    /// on its own lists only itself: then the page's origin alone.
    async fn candidates() -> Vec<String> {
        let own = ws_url();
        let mut urls: Vec<String> = match chat_servers().await {
            Ok(list) if list.len() > 1 => list.into_iter().map(|s| s.url).collect(),
            _ => Vec::new(),
        };
        if let Some(own) = own {
            if !urls.contains(&own) {
                urls.push(own);
            }
        }
        urls
    }

    /// The newest message of the user's conversations (0 if none): where receiving
    /// starts. Not from 0, which would replay every conversation's whole history.
    async fn newest_message(client: LiveClient) -> Id {
        let mut attempt = 0;
        loop {
            match list_channels().await {
                Ok(list) => {
                    return list
                        .iter()
                        .filter_map(|c| c.last_message.as_ref().map(|m| m.id))
                        .max()
                        .unwrap_or(Id(0))
                }
                Err(_) => {
                    client.transport.set(Transport::Reconnecting);
                    attempt += 1;
                    sleep_ms(backoff_ms(attempt)).await;
                }
            }
        }
    }

    pub fn start(client: LiveClient) {
        let cursor = Rc::new(Cell::new(0i64));
        leptos::task::spawn_local(async move {
            let newest = newest_message(client).await;
            client.known_at_start.set_value(newest);
            cursor.set(newest.millis_earlier(REPLAY_MS).0);
            let mut failures = 0u32;
            let mut polls = 0u32;
            let mut poll_failed = false;
            let force = forced_longpoll();
            // Where the next socket goes: `urls[next]`, the list fetched again once every
            // entry has been tried.
            let mut urls: Vec<String> = Vec::new();
            let mut next = 0usize;
            loop {
                // Long-poll only once every server has failed (and at least the usual
                // number of times in a row).
                let give_up = FAILURES_BEFORE_LONGPOLL.max(urls.len() as u32);
                if force || failures >= give_up {
                    // After a failed poll the state stays "reconnecting" until one answers,
                    // so an outage shows one steady banner rather than one per try.
                    if !poll_failed {
                        client.transport.set(Transport::LongPoll);
                    }
                    match poll(cursor.get().to_string(), 25).await {
                        Ok(answer) => {
                            poll_failed = false;
                            client.transport.set(Transport::LongPoll);
                            cursor.set(cursor.get().max(answer.cursor.0));
                            client.receive(answer.messages);
                            for event in answer.events {
                                if let Ok(event) = serde_json::from_value::<ServerFrame>(event) {
                                    client.handle(event);
                                }
                            }
                            polls += 1;
                        }
                        Err(e) if e.code == ErrorCode::Unauthorized => {
                            client.transport.set(Transport::SignedOut);
                            return;
                        }
                        Err(_) => {
                            poll_failed = true;
                            client.transport.set(Transport::Reconnecting);
                            sleep_ms(backoff_ms(2)).await;
                        }
                    }
                    if !force && polls >= POLLS_BEFORE_RETRYING_SOCKET {
                        polls = 0;
                        failures = FAILURES_BEFORE_LONGPOLL - 1;
                    }
                    continue;
                }
                client.transport.set(Transport::Connecting);
                if next >= urls.len() {
                    urls = candidates().await;
                    next = 0;
                }
                let Some(url) = urls.get(next).cloned() else {
                    failures += 1;
                    sleep_ms(backoff_ms(failures)).await;
                    continue;
                };
                let opened = run_socket(client, cursor.clone(), &url).await;
                if client.transport.get_untracked() == Transport::SignedOut {
                    return;
                }
                if opened {
                    failures = 0;
                } else {
                    failures += 1;
                }
                // After a drop or a failure, the next server on the list (the node may be
                // gone), after a backoff with jitter; the socket syncs from the cursor.
                next += 1;
                client.transport.set(Transport::Reconnecting);
                sleep_ms(backoff_ms(failures)).await;
            }
        });
    }

    /// Runs one socket to `url` until it closes; true if it opened and was let in.
    async fn run_socket(client: LiveClient, cursor: Rc<Cell<i64>>, url: &str) -> bool {
        let Ok(ws) = WebSocket::new(url) else {
            return false;
        };
        let opened = Rc::new(Cell::new(false));
        let (closed_tx, closed_rx) = oneshot::channel::<()>();
        let closed_tx = Rc::new(Cell::new(Some(closed_tx)));

        let on_open = {
            let (ws, opened, cursor) = (ws.clone(), opened.clone(), cursor.clone());
            Closure::<dyn FnMut()>::new(move || {
                opened.set(true);
                client.transport.set(Transport::WebSocket);
                // Catch up on everything missed while away, then receive live.
                let frame = ClientFrame::Sync {
                    since: Id(cursor.get()),
                };
                if let Ok(text) = serde_json::to_string(&frame) {
                    let _ = ws.send_with_str(&text);
                }
            })
        };
        let on_message = {
            let cursor = cursor.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
                let Some(text) = ev.data().as_string() else {
                    return;
                };
                // A frame of a later version than this client knows is left alone.
                let Ok(event) = serde_json::from_str::<ServerFrame>(&text) else {
                    return;
                };
                if let ServerFrame::Message { message } | ServerFrame::Ack { message, .. } = &event
                {
                    cursor.set(cursor.get().max(message.id.0));
                }
                client.handle(event);
            })
        };
        let on_close = {
            let (closed_tx, opened) = (closed_tx.clone(), opened.clone());
            Closure::<dyn FnMut(CloseEvent)>::new(move |ev: CloseEvent| {
                // The server did not keep the socket: 1008, not let in (no session cookie
                // reached a node on another host); 1013, try again later (its pub/sub is
                // down, or too many connections). As good as not opened: back off further,
                // try the next server, and long-poll once none keeps a socket.
                if matches!(ev.code(), 1008 | 1013) {
                    opened.set(false);
                }
                // 4001: the session ended; nothing to reconnect with.
                if ev.code() == SIGNED_OUT {
                    client.transport.set(Transport::SignedOut);
                }
                if let Some(tx) = closed_tx.take() {
                    let _ = tx.send(());
                }
            })
        };
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));

        {
            // Not by `readyState`: a connection the page's policy blocked may be closed
            // without a close event.
            let (ws, closed_tx, opened) = (ws.clone(), closed_tx.clone(), opened.clone());
            leptos::task::spawn_local(async move {
                sleep_ms(OPEN_TIMEOUT_MS).await;
                if !opened.get() {
                    if let Some(tx) = closed_tx.take() {
                        let _ = ws.close();
                        let _ = tx.send(());
                    }
                }
            });
        }
        let beating = Rc::new(Cell::new(true));
        {
            let (ws, beating) = (ws.clone(), beating.clone());
            leptos::task::spawn_local(async move {
                while beating.get() {
                    sleep_ms(HEARTBEAT_MS).await;
                    if beating.get() {
                        if let Ok(text) = serde_json::to_string(&ClientFrame::Heartbeat) {
                            let _ = ws.send_with_str(&text);
                        }
                    }
                }
            });
        }
        let _ = closed_rx.await;
        beating.set(false);
        ws.set_onopen(None);
        ws.set_onmessage(None);
        ws.set_onclose(None);
        drop((on_open, on_message, on_close));
        opened.get()
    }
}

#[cfg(test)]
mod tests {
    use super::{Change, LiveClient, LIVE_MESSAGES_KEPT};
    use crate::model::{Id, Message, User};
    use leptos::prelude::*;

    fn message(channel: i64, id: i64) -> Message {
        Message {
            id: Id(id),
            channel_id: Id(channel),
            seq: id,
            sender: User {
                id: Id(1),
                username: "ana".into(),
                display_name: "Ana".into(),
                bio: String::new(),
                created_at: Default::default(),
            },
            content: format!("message {id}"),
            created_at: Default::default(),
            client_msg_id: format!("c{id}"),
            edited_at: None,
            deleted_at: None,
            hidden: false,
            media: Vec::new(),
        }
    }

    #[test]
    fn live_messages_are_kept_per_channel_each_once() {
        let owner = Owner::new();
        owner.set();
        let client = LiveClient::provide();
        client.receive(vec![message(2, 1)]);
        // A busy channel drops its own oldest messages, not another channel's.
        let busy: Vec<Message> = (0..LIVE_MESSAGES_KEPT as i64 + 10)
            .map(|i| message(3, 100 + i))
            .collect();
        assert_eq!(client.receive(busy), LIVE_MESSAGES_KEPT as u64 + 10);
        assert_eq!(client.channel_messages(Id(2)), vec![message(2, 1)]);
        let kept = client.channel_messages(Id(3));
        assert_eq!(kept.len(), LIVE_MESSAGES_KEPT);
        assert_eq!(kept.first().map(|m| m.id), Some(Id(110)));
        // A message received again (a replay, a catch-up) is not added twice.
        assert_eq!(client.receive(vec![message(2, 1), message(2, 2)]), 1);
        assert_eq!(client.channel_messages(Id(2)).len(), 2);
        assert_eq!(
            client.arrivals.get_untracked(),
            LIVE_MESSAGES_KEPT as u64 + 12
        );
        assert!(client.channel_messages(Id(4)).is_empty());
    }

    #[test]
    fn a_deletion_stays_and_a_later_edit_wins() {
        let owner = Owner::new();
        owner.set();
        let client = LiveClient::provide();
        let at = |secs: i64| chrono::DateTime::from_timestamp(secs, 0);
        let edit = |text: &str, secs: i64| {
            let mut m = message(2, 1);
            m.content = text.into();
            m.edited_at = at(secs);
            Change::Edited(Box::new(m))
        };
        let shown = || {
            let mut m = message(2, 1);
            if let Some(change) = client.changes.with_untracked(|c| c.get(&Id(1)).cloned()) {
                change.apply(&mut m);
            }
            m
        };
        client.changed(Id(1), edit("second", 20));
        client.changed(Id(1), edit("first", 10));
        assert_eq!(shown().content, "second");
        assert_eq!(shown().edited_at, at(20));
        let deleted = at(30).unwrap_or_default();
        client.changed(Id(1), Change::Deleted(deleted));
        client.changed(Id(1), edit("third", 40));
        assert_eq!(shown().content, "");
        assert_eq!(shown().deleted_at, Some(deleted));
    }
}
