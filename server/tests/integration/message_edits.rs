//! Editing and deleting chat messages (README, "Chat"): who may, until when, what history
//! and sync show afterwards, and the live `message_updated` / `message_deleted` events on
//! WebSockets and long polls, on both backends.

use crate::common;

use anyhow::{Context as _, Result};
use common::{
    assert_error,
    live::{eventually, text, Socket},
    spawn_app, spawn_with, Backend, Options, TestApp, TestUser,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn path(channel: &str, message: &str) -> String {
    format!("/v1/chat/channels/{channel}/messages/{message}")
}

async fn edit(
    app: &TestApp,
    who: Option<&TestUser>,
    path: &str,
    body: Value,
) -> Result<reqwest::Response> {
    let token = who.map(|user| user.token.as_str());
    app.json_request(reqwest::Method::PATCH, path, &body, token)
        .await
}

/// The channel's history as `user` reads it, oldest first.
async fn history(app: &TestApp, user: &TestUser, channel: &str) -> Result<Vec<Value>> {
    let page: Value = app
        .get(
            &format!("/v1/chat/channels/{channel}/messages"),
            Some(&user.token),
        )
        .await?
        .json()
        .await?;
    Ok(page["items"].as_array().context("items")?.clone())
}

async fn a_sender_edits_and_deletes_and_every_device_is_told(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let ana = app.register("ana_e").await?;
    let ben = app.register("ben_e").await?;
    let channel = app.dm(&ana, &ben).await?;
    let mut ben_socket = Socket::open(&app, &ben).await?;
    let ana_phone = app.login(&ana).await?;
    let mut ana_socket = Socket::open(&app, &ana_phone).await?;

    let sent = app.say(&ana, &channel, "helo").await?;
    let id = text(&sent, "id").to_string();
    ben_socket
        .next_where("the message", |f| f["type"] == "message")
        .await?;
    // Ben's other device long-polls, in step with everything so far.
    let ben_laptop = app.login(&ben).await?;
    let poll = app.waiting_sync(&ben_laptop, &id, 10).await?;

    let r = edit(
        &app,
        Some(&ana),
        &path(&channel, &id),
        json!({"content": "hello"}),
    )
    .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let edited: Value = r.json().await?;
    assert_eq!(edited["content"], "hello");
    assert_eq!((&edited["id"], &edited["seq"]), (&sent["id"], &sent["seq"]));
    assert_eq!(edited["client_msg_id"], sent["client_msg_id"]);
    assert!(edited["edited_at"].is_string(), "{edited}");
    assert!(edited.get("deleted_at").is_none(), "{edited}");

    for socket in [&mut ben_socket, &mut ana_socket] {
        let frame = socket
            .next_where("message_updated", |f| f["type"] == "message_updated")
            .await?;
        assert_eq!(frame["message"], edited);
    }
    let polled = poll.await??;
    assert_eq!(polled["messages"], json!([]), "{polled}");
    assert_eq!(
        polled["events"],
        json!([{"type": "message_updated", "message": edited}])
    );
    assert_eq!(history(&app, &ben, &channel).await?, vec![edited.clone()]);

    let r = app.delete_as(&ana, &path(&channel, &id)).await?;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for socket in [&mut ben_socket, &mut ana_socket] {
        let frame = socket
            .next_where("message_deleted", |f| f["type"] == "message_deleted")
            .await?;
        assert_eq!(
            (&frame["channel_id"], &frame["message_id"]),
            (&json!(channel), &json!(id))
        );
        assert!(frame["deleted_at"].is_string(), "{frame}");
    }
    // History and a sync from before it keep the message's place, without its words.
    for shown in [
        history(&app, &ben, &channel).await?,
        app.sync(&ben, "0", 0).await?["messages"]
            .as_array()
            .context("messages")?
            .clone(),
    ] {
        let [m] = shown.as_slice() else {
            anyhow::bail!("one message expected: {shown:?}");
        };
        assert_eq!((&m["id"], &m["seq"]), (&sent["id"], &sent["seq"]));
        assert_eq!(m["content"], "");
        assert!(m["deleted_at"].is_string(), "{m}");
    }
    // Deleting again changes nothing; a deleted message cannot be edited.
    let again = app.delete_as(&ana, &path(&channel, &id)).await?;
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    assert_error(
        edit(
            &app,
            Some(&ana),
            &path(&channel, &id),
            json!({"content": "back"}),
        )
        .await?,
        404,
        "not_found",
    )
    .await?;
    // The sequence goes on without a gap.
    let next = app.say(&ben, &channel, "what was that?").await?;
    assert_eq!(next["seq"].as_i64(), sent["seq"].as_i64().map(|s| s + 1));
    Ok(())
}

async fn only_the_sender_changes_a_message_and_edits_only_for_a_day(
    backend: Backend,
) -> Result<()> {
    let app = spawn_with(
        backend,
        Options {
            manual_clock: true,
            ..Default::default()
        },
    )
    .await?;
    let clock = app.clock.clone().context("manual clock")?;
    let ana = app.register("ana_f").await?;
    let ben = app.register("ben_f").await?;
    let cy = app.register("cy_f").await?;
    let group = app.group(&ana, "crew", &["ben_f"]).await?;
    let other = app.dm(&ana, &cy).await?;
    let m = app.say(&ana, &group, "original").await?;
    let at = path(&group, text(&m, "id"));
    let content = json!({"content": "changed"});

    for who in [&ben, &cy] {
        assert_error(
            edit(&app, Some(who), &at, content.clone()).await?,
            403,
            "forbidden",
        )
        .await?;
        assert_error(app.delete_as(who, &at).await?, 403, "forbidden").await?;
    }
    assert_error(
        edit(&app, None, &at, content.clone()).await?,
        401,
        "unauthorized",
    )
    .await?;
    for missing in [
        path(&group, "999999999"),
        path(&group, "abc"),
        path(&group, "0"),
        // The message exists, in another channel.
        path(&other, text(&m, "id")),
    ] {
        assert_error(
            edit(&app, Some(&ana), &missing, content.clone()).await?,
            404,
            "not_found",
        )
        .await?;
        assert_error(app.delete_as(&ana, &missing).await?, 404, "not_found").await?;
    }
    for (body, status, code) in [
        (json!({"content": "   "}), 422, "validation_failed"),
        (
            json!({"content": "x".repeat(4001)}),
            422,
            "validation_failed",
        ),
        (
            json!({"content": "ok", "pinned": true}),
            400,
            "invalid_request",
        ),
        (json!({}), 400, "invalid_request"),
    ] {
        assert_error(edit(&app, Some(&ana), &at, body).await?, status, code).await?;
    }
    assert_eq!(
        history(&app, &ana, &group).await?,
        vec![m.clone()],
        "nothing refused was stored"
    );

    // Editable for 24 hours after sending; deletable after that too.
    clock.advance(24 * 3600 * 1000 - 1);
    let r = edit(&app, Some(&ana), &at, content.clone()).await?;
    assert_eq!(r.status(), StatusCode::OK);
    clock.advance(2);
    let m = assert_error(
        edit(&app, Some(&ana), &at, content).await?,
        403,
        "forbidden",
    )
    .await?;
    assert!(m.contains("24 hours"), "{m}");
    assert_eq!(app.delete_as(&ana, &at).await?.status(), 204);
    Ok(())
}

async fn a_deleted_message_leaves_no_notification_behind(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let ana = app.register("ana_n").await?;
    let ben = app.register("ben_n").await?;
    let channel = app.dm(&ana, &ben).await?;
    // Ben has no live connection: he is notified.
    let m = app.say(&ana, &channel, "the door code is 4711").await?;
    let excerpt = |items: &Value| items["items"][0]["excerpt"].clone();
    let notified = eventually("ben's notification", || async {
        let page: Value = app
            .get("/v1/me/notifications", Some(&ben.token))
            .await?
            .json()
            .await?;
        Ok((excerpt(&page) == "the door code is 4711").then_some(page))
    })
    .await?;
    assert_eq!(notified["items"][0]["message_id"], m["id"]);

    let at = path(&channel, text(&m, "id"));
    let r = edit(
        &app,
        Some(&ana),
        &at,
        json!({"content": "ask me for the code"}),
    )
    .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let page: Value = app
        .get("/v1/me/notifications", Some(&ben.token))
        .await?
        .json()
        .await?;
    assert_eq!(excerpt(&page), "ask me for the code");

    assert_eq!(app.delete_as(&ana, &at).await?.status(), 204);
    let page: Value = app
        .get("/v1/me/notifications", Some(&ben.token))
        .await?
        .json()
        .await?;
    assert_eq!(page["items"], json!([]), "{page}");
    Ok(())
}

both_backends!(
    a_sender_edits_and_deletes_and_every_device_is_told,
    only_the_sender_changes_a_message_and_edits_only_for_a_day,
    a_deleted_message_leaves_no_notification_behind,
);
