//! Chat in the UI: server functions, and the live client that keeps a signed-in page up
//! to date over a WebSocket, falling back to long-polling when the socket cannot be
//! opened (or when `?transport=longpoll` asks for it).
//!
//! Sends always go through `send_message` (an HTTP call, idempotent on `client_msg_id`), so
//! pending, sent and failed-then-retried messages behave the same whichever transport
//! receives. Receiving: the socket (or the poll) delivers every message of every channel
//! after the client's cursor; pages pick their channel's messages from [`ChatClient::live`].

use crate::{
    error::ApiError,
    model::{Channel, ChannelSummary, Message, Page, SyncResponse},
};
use leptos::prelude::*;

#[server(input = server_fn::codec::GetUrl, endpoint = "channels")]
pub async fn list_channels() -> Result<Vec<ChannelSummary>, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(backend.channels(&parts).await)
}

#[server(input = server_fn::codec::GetUrl, endpoint = "channel")]
pub async fn get_channel(id: String) -> Result<Channel, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(backend.channel(&parts, &id).await)
}

#[server(endpoint = "open_dm")]
pub async fn open_dm(csrf: String, username: String) -> Result<Channel, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(match backend.check_csrf(&parts, &csrf) {
        Ok(()) => backend.open_dm(&parts, &username).await,
        Err(e) => Err(e),
    })
}

#[server(endpoint = "create_group")]
pub async fn create_group(
    csrf: String,
    name: String,
    members: String,
) -> Result<Channel, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    let members: Vec<String> = members
        .split([',', ' ', '\n'])
        .map(|m| m.trim().trim_start_matches('@').to_string())
        .filter(|m| !m.is_empty())
        .collect();
    crate::backend::finish(match backend.check_csrf(&parts, &csrf) {
        Ok(()) => backend.create_group(&parts, &name, &members).await,
        Err(e) => Err(e),
    })
}

#[server(input = server_fn::codec::GetUrl, endpoint = "history")]
pub async fn get_history(id: String, before: Option<String>) -> Result<Page<Message>, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(backend.history(&parts, &id, before).await)
}

#[server(endpoint = "send_message")]
pub async fn send_message(
    csrf: String,
    channel_id: String,
    content: String,
    client_msg_id: String,
) -> Result<Message, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(match backend.check_csrf(&parts, &csrf) {
        Ok(()) => {
            backend
                .send_message(&parts, &channel_id, &content, &client_msg_id)
                .await
        }
        Err(e) => Err(e),
    })
}

#[server(input = server_fn::codec::GetUrl, endpoint = "poll")]
pub async fn poll(since: String, timeout: u64) -> Result<SyncResponse, ApiError> {
    let (backend, parts) = crate::backend::context()?;
    crate::backend::finish(backend.sync(&parts, &since, timeout).await)
}

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
}

/// The live chat client of a signed-in page.
#[derive(Clone, Copy)]
pub struct ChatClient {
    pub transport: RwSignal<Transport>,
    /// Every message received live since the page loaded, in arrival order.
    pub live: RwSignal<Vec<Message>>,
    started: StoredValue<bool>,
}

impl ChatClient {
    /// Creates the (idle) client for the whole app; chat pages start it.
    pub fn provide() -> Self {
        let client = Self {
            transport: RwSignal::new(Transport::Idle),
            live: RwSignal::new(Vec::new()),
            started: StoredValue::new(false),
        };
        provide_context(client);
        client
    }

    pub fn get() -> Self {
        expect_context::<Self>()
    }

    /// Starts receiving (in the browser, once).
    pub fn start(&self) {
        if self.started.get_value() {
            return;
        }
        self.started.set_value(true);
        #[cfg(feature = "hydrate")]
        live::start(*self);
    }

    /// Records messages (from any transport); duplicates are ignored.
    pub fn receive(&self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        self.live.update(|live| {
            for m in messages {
                if !live.iter().any(|x| x.id == m.id) {
                    live.push(m);
                }
            }
        });
    }
}

/// A fresh `client_msg_id`.
pub fn new_client_msg_id() -> String {
    #[cfg(feature = "hydrate")]
    {
        format!(
            "web-{:x}-{:x}",
            js_sys::Date::now() as u64,
            (js_sys::Math::random() * 1e15) as u64
        )
    }
    #[cfg(not(feature = "hydrate"))]
    {
        "server-render".to_string()
    }
}

#[cfg(feature = "hydrate")]
mod live {
    //! The browser side: WebSocket with reconnect (exponential backoff with jitter), and a
    //! long-poll loop when sockets keep failing, retrying the socket now and then.

    use super::{poll, ChatClient, Transport};
    use crate::model::Message;
    use futures::channel::oneshot;
    use leptos::prelude::*;
    use std::{cell::Cell, rc::Rc};
    use wasm_bindgen::{closure::Closure, JsCast};
    use web_sys::{CloseEvent, MessageEvent, WebSocket};

    /// Socket failures in a row before falling back to long-polling.
    const FAILURES_BEFORE_LONGPOLL: u32 = 3;
    /// Long-poll rounds between attempts to get back to a socket.
    const POLLS_BEFORE_RETRYING_SOCKET: u32 = 4;

    async fn sleep_ms(ms: f64) {
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

    pub fn start(client: ChatClient) {
        let cursor = Rc::new(Cell::new(0i64));
        leptos::task::spawn_local(async move {
            let mut failures = 0u32;
            let mut polls = 0u32;
            let force = forced_longpoll();
            loop {
                if force || failures >= FAILURES_BEFORE_LONGPOLL {
                    client.transport.set(Transport::LongPoll);
                    match poll(cursor.get().to_string(), 25).await {
                        Ok(answer) => {
                            cursor.set(cursor.get().max(answer.cursor.0));
                            client.receive(answer.messages);
                            polls += 1;
                        }
                        Err(_) => {
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
                let opened = run_socket(client, cursor.clone()).await;
                if opened {
                    failures = 0;
                } else {
                    failures += 1;
                }
                client.transport.set(Transport::Reconnecting);
                sleep_ms(backoff_ms(failures)).await;
            }
        });
    }

    /// Runs one socket until it closes; true if it opened at all.
    async fn run_socket(client: ChatClient, cursor: Rc<Cell<i64>>) -> bool {
        let Some(url) = ws_url() else { return false };
        let Ok(ws) = WebSocket::new(&url) else {
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
                let frame = serde_json::json!({"type": "sync", "since": cursor.get().to_string()});
                let _ = ws.send_with_str(&frame.to_string());
            })
        };
        let on_message = {
            let cursor = cursor.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
                let Some(text) = ev.data().as_string() else {
                    return;
                };
                let Ok(frame) = serde_json::from_str::<serde_json::Value>(&text) else {
                    return;
                };
                if frame["type"] == "message" {
                    if let Ok(m) = serde_json::from_value::<Message>(frame["message"].clone()) {
                        cursor.set(cursor.get().max(m.id.0));
                        client.receive(vec![m]);
                    }
                }
            })
        };
        let on_close = {
            let closed_tx = closed_tx.clone();
            Closure::<dyn FnMut(CloseEvent)>::new(move |_ev: CloseEvent| {
                if let Some(tx) = closed_tx.take() {
                    let _ = tx.send(());
                }
            })
        };
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));

        // Heartbeats keep the server's idle timer from closing a quiet socket.
        let beating = Rc::new(Cell::new(true));
        {
            let (ws, beating) = (ws.clone(), beating.clone());
            leptos::task::spawn_local(async move {
                while beating.get() {
                    sleep_ms(25_000.0).await;
                    if beating.get() {
                        let _ = ws.send_with_str(r#"{"type":"heartbeat"}"#);
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
