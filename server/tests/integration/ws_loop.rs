//! The chat hub's connection loop driven without a socket: `chat::ws::serve` runs on an
//! in-memory pair of channels, so a test reads exactly the frames the loop queued, in
//! order, and can end the client's side at will.

use crate::common::{spawn_app, Backend, TestApp, TestUser};

use anyhow::{anyhow, Context as _, Result};
use app::protocol::{ClientFrame, ServerFrame};
use axum::extract::ws::Message as WsMessage;
use futures::{channel::mpsc, StreamExt};
use kith::chat::ws::PipeClient;
use std::time::Duration;

/// The client's end, and the task serving the other.
struct Client {
    to_server: mpsc::UnboundedSender<Result<WsMessage, axum::Error>>,
    from_server: mpsc::UnboundedReceiver<WsMessage>,
    served: tokio::task::JoinHandle<()>,
}

impl Client {
    async fn connect(app: &TestApp, user: &TestUser) -> Result<Self> {
        let me = kith::auth::service::authenticate(&app.state, &user.token)
            .await?
            .context("the user's session")?;
        let (
            pipe,
            PipeClient {
                to_server,
                from_server,
            },
        ) = kith::chat::ws::pipe();
        let served = tokio::spawn(kith::chat::ws::serve(
            app.state.clone(),
            pipe,
            me,
            user.token.clone(),
            (),
        ));
        Ok(Self {
            to_server,
            from_server,
            served,
        })
    }

    fn send_text(&self, text: &str) -> Result<()> {
        self.to_server
            .unbounded_send(Ok(WsMessage::Text(text.into())))
            .map_err(|e| anyhow!("{e}"))
    }

    fn send(&self, frame: &ClientFrame) -> Result<()> {
        self.send_text(&serde_json::to_string(frame)?)
    }

    /// The next frame the loop wrote, pings skipped, as a [`ServerFrame`].
    async fn next(&mut self) -> Result<ServerFrame> {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(5), self.from_server.next())
                .await
                .context("no frame within 5 s")?
                .context("the loop closed its side")?;
            match message {
                WsMessage::Text(text) => return Ok(serde_json::from_str(text.as_str())?),
                WsMessage::Ping(_) | WsMessage::Pong(_) => {}
                other => return Err(anyhow!("unexpected {other:?}")),
            }
        }
    }

    /// The next frame that is not a presence change.
    async fn next_not_presence(&mut self) -> Result<ServerFrame> {
        loop {
            match self.next().await? {
                ServerFrame::Presence { .. } => {}
                frame => return Ok(frame),
            }
        }
    }
}

/// The code and `client_msg_id` of an `error` frame.
fn error_of(frame: &ServerFrame) -> Option<(&'static str, Option<&str>)> {
    match frame {
        ServerFrame::Error {
            code,
            client_msg_id,
            ..
        } => Some((code.as_str(), client_msg_id.as_deref())),
        _ => None,
    }
}

async fn two_people(app: &TestApp) -> Result<(TestUser, TestUser, app::model::Id)> {
    let (ann, bob) = (
        app.register("ann_loop").await?,
        app.register("bob_loop").await?,
    );
    let channel: serde_json::Value = app
        .post_json(
            "/v1/chat/dm/bob_loop",
            &serde_json::json!({}),
            Some(&ann.token),
        )
        .await?
        .json()
        .await?;
    let id: i64 = channel["id"].as_str().context("channel id")?.parse()?;
    Ok((ann, bob, app::model::Id(id)))
}

#[tokio::test]
async fn a_send_is_acked_and_reaches_the_other_persons_connection() -> Result<()> {
    let app = spawn_app(Backend::Memory).await?;
    let (ann, bob, channel) = two_people(&app).await?;
    let mut a = Client::connect(&app, &ann).await?;
    let mut b = Client::connect(&app, &bob).await?;
    b.send(&ClientFrame::Sync {
        since: app::model::Id(0),
    })?;
    a.send(&ClientFrame::Sync {
        since: app::model::Id(0),
    })?;
    a.send(&ClientFrame::Send {
        channel_id: channel,
        client_msg_id: "loop-1".into(),
        content: "hello".into(),
        media: Vec::new(),
    })?;
    let ServerFrame::Ack {
        client_msg_id,
        message,
    } = a.next_not_presence().await?
    else {
        return Err(anyhow!("no ack"));
    };
    assert_eq!((client_msg_id.as_str(), message.seq), ("loop-1", 1));
    match b.next_not_presence().await? {
        ServerFrame::Message { message: got } => assert_eq!(got, message),
        other => return Err(anyhow!("bob got {other:?}")),
    }
    Ok(())
}

#[tokio::test]
async fn bad_frames_get_typed_errors_and_the_connection_stays() -> Result<()> {
    let app = spawn_app(Backend::Memory).await?;
    let (ann, _bob, channel) = two_people(&app).await?;
    let mut a = Client::connect(&app, &ann).await?;
    a.send_text(r#"{"type": "shout", "client_msg_id": "c7"}"#)?;
    let frame = a.next_not_presence().await?;
    assert_eq!(
        error_of(&frame),
        Some(("invalid_request", Some("c7"))),
        "{frame:?}"
    );
    a.to_server
        .unbounded_send(Ok(WsMessage::Binary(vec![1, 2, 3].into())))
        .map_err(|e| anyhow!("{e}"))?;
    let frame = a.next_not_presence().await?;
    assert!(error_of(&frame).is_some(), "{frame:?}");
    a.send(&ClientFrame::Send {
        channel_id: app::model::Id(channel.0 + 1),
        client_msg_id: "c8".into(),
        content: "nowhere".into(),
        media: Vec::new(),
    })?;
    let frame = a.next_not_presence().await?;
    assert_eq!(
        error_of(&frame),
        Some(("not_found", Some("c8"))),
        "{frame:?}"
    );
    // Still open: a good send after the bad ones is acked.
    a.send(&ClientFrame::Send {
        channel_id: channel,
        client_msg_id: "c9".into(),
        content: "fine".into(),
        media: Vec::new(),
    })?;
    assert!(matches!(
        a.next_not_presence().await?,
        ServerFrame::Ack { .. }
    ));
    Ok(())
}

#[tokio::test]
async fn sync_sends_what_was_missed_in_order_then_live_ones() -> Result<()> {
    let app = spawn_app(Backend::Memory).await?;
    let (ann, bob, channel) = two_people(&app).await?;
    for i in 0..3 {
        app.post_json(
            &format!("/v1/chat/channels/{}/messages", channel.0),
            &serde_json::json!({"content": format!("early {i}"), "client_msg_id": format!("e{i}")}),
            Some(&ann.token),
        )
        .await?;
    }
    let mut b = Client::connect(&app, &bob).await?;
    b.send(&ClientFrame::Sync {
        since: app::model::Id(0),
    })?;
    let mut seqs = Vec::new();
    for _ in 0..3 {
        match b.next_not_presence().await? {
            ServerFrame::Message { message } => seqs.push(message.seq),
            other => return Err(anyhow!("{other:?}")),
        }
    }
    assert_eq!(seqs, [1, 2, 3]);
    app.post_json(
        &format!("/v1/chat/channels/{}/messages", channel.0),
        &serde_json::json!({"content": "live", "client_msg_id": "l1"}),
        Some(&ann.token),
    )
    .await?;
    match b.next_not_presence().await? {
        ServerFrame::Message { message } => {
            assert_eq!((message.seq, message.content.as_str()), (4, "live"))
        }
        other => return Err(anyhow!("{other:?}")),
    }
    Ok(())
}

#[tokio::test]
async fn a_flood_of_frames_is_refused_past_the_connections_limit() -> Result<()> {
    let app = spawn_app(Backend::Memory).await?;
    let (ann, _bob, channel) = two_people(&app).await?;
    let mut a = Client::connect(&app, &ann).await?;
    for i in 0..60 {
        a.send(&ClientFrame::Typing {
            channel_id: channel,
        })?;
        if i == 59 {
            a.send(&ClientFrame::Send {
                channel_id: channel,
                client_msg_id: "flood".into(),
                content: "too many".into(),
                media: Vec::new(),
            })?;
        }
    }
    let refused = loop {
        let frame = a.next_not_presence().await?;
        match error_of(&frame) {
            Some(("rate_limited", Some(named))) => break named.to_string(),
            Some(("rate_limited", None)) => {}
            _ => return Err(anyhow!("{frame:?}")),
        }
    };
    assert_eq!(refused, "flood", "the refused send is named");
    Ok(())
}

#[tokio::test]
async fn the_loop_ends_when_the_client_goes() -> Result<()> {
    let app = spawn_app(Backend::Memory).await?;
    let (ann, _bob, _channel) = two_people(&app).await?;
    let client = Client::connect(&app, &ann).await?;
    let Client {
        to_server, served, ..
    } = client;
    drop(to_server);
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .context("the loop outlived its client")??;
    Ok(())
}
