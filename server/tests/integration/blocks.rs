//! Blocking (`PUT` / `DELETE /v1/me/blocks/{username}`, `GET /v1/me/blocks`): what a block
//! ends, what it refuses both ways, how group messages reach the blocker hidden (live, on
//! long polls, in history and sync), and what unblocking gives back, on both backends.

use crate::common;

use anyhow::{Context as _, Result};
use common::{
    assert_error,
    live::{text, Socket},
    spawn_app, Backend, TestApp, TestUser,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn set_block(app: &TestApp, who: &TestUser, name: &str, on: bool) -> Result<StatusCode> {
    let method = if on { Method::PUT } else { Method::DELETE };
    let r = app
        .json_request(
            method,
            &format!("/v1/me/blocks/{name}"),
            &json!({}),
            Some(&who.token),
        )
        .await?;
    Ok(r.status())
}

async fn json_of(app: &TestApp, path: &str, user: &TestUser) -> Result<Value> {
    let resp = app.get(path, Some(&user.token)).await?;
    assert_eq!(resp.status(), 200, "{path}");
    Ok(resp.json().await?)
}

fn usernames(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|u| u["username"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn post_ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|p| p["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn a_block_ends_follows_and_refuses_each_way_in(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let ana = app.register("ana_b").await?;
    let ben = app.register("ben_b").await?;
    app.follow(&ana, "ben_b").await?;
    app.follow(&ben, "ana_b").await?;
    let anas = app.post_as(&ana, "ana writes").await?;
    let bens = app.post_as(&ben, "ben writes").await?;
    app.settle().await?;
    let dm = app.dm(&ana, &ben).await?;
    app.say(&ben, &dm, "hi ana").await?;
    // Both feeds hold both posts (and are cached) before the block.
    for who in [&ana, &ben] {
        let feed = json_of(&app, "/v1/me/feed", who).await?;
        assert_eq!(post_ids(&feed).len(), 2, "{feed}");
    }

    // Refusals of the call itself.
    assert_eq!(set_block(&app, &ana, "nobody_here", true).await?, 404);
    assert_eq!(set_block(&app, &ana, "ana_b", true).await?, 422);

    assert_eq!(set_block(&app, &ana, "ben_b", true).await?, 204);
    assert_eq!(set_block(&app, &ana, "ben_b", true).await?, 204, "again");
    let blocks = json_of(&app, "/v1/me/blocks", &ana).await?;
    assert_eq!(usernames(&blocks), ["ben_b"], "{blocks}");
    assert!(blocks["next_cursor"].is_null(), "{blocks}");
    assert_eq!(
        usernames(&json_of(&app, "/v1/me/blocks", &ben).await?),
        Vec::<String>::new()
    );
    let profile = json_of(&app, "/v1/users/ben_b", &ana).await?;
    assert_eq!(profile["blocked_by_me"], true, "{profile}");
    assert_eq!(
        (&profile["followers"], &profile["following"]),
        (&json!(0), &json!(0))
    );
    let theirs = json_of(&app, "/v1/users/ana_b", &ben).await?;
    assert_eq!(theirs["blocked_by_me"], false, "{theirs}");

    // The follows are gone both ways, and each feed lost the other's post.
    for (who, own) in [(&ana, &anas), (&ben, &bens)] {
        let feed = json_of(&app, "/v1/me/feed", who).await?;
        assert_eq!(post_ids(&feed), [text(own, "id")], "{feed}");
        assert_eq!(
            usernames(&json_of(&app, "/v1/me/following", who).await?),
            Vec::<String>::new()
        );
    }

    // Each way: no follow, no 1:1 (opened or written), no posts, no likes, no presence.
    for (who, other, theirs) in [(&ben, "ana_b", &anas), (&ana, "ben_b", &bens)] {
        let r = app
            .json_request(
                Method::PUT,
                &format!("/v1/me/following/{other}"),
                &json!({}),
                Some(&who.token),
            )
            .await?;
        assert_error(r, 403, "forbidden").await?;
        let r = app
            .post_json(
                &format!("/v1/chat/dm/{other}"),
                &json!({}),
                Some(&who.token),
            )
            .await?;
        assert_error(r, 403, "forbidden").await?;
        let r = app
            .post_json(
                &format!("/v1/chat/channels/{dm}/messages"),
                &json!({"content": "still there?", "client_msg_id": "after-block"}),
                Some(&who.token),
            )
            .await?;
        let m = assert_error(r, 403, "forbidden").await?;
        assert!(m.contains("blocked"), "{m}");
        let r = app
            .get(&format!("/v1/users/{other}/posts"), Some(&who.token))
            .await?;
        assert_error(r, 403, "forbidden").await?;
        let post = format!("/v1/posts/{}", text(theirs, "id"));
        assert_error(app.get(&post, Some(&who.token)).await?, 403, "forbidden").await?;
        let r = app
            .json_request(
                Method::PUT,
                &format!("{post}/like"),
                &json!({}),
                Some(&who.token),
            )
            .await?;
        assert_error(r, 403, "forbidden").await?;
        let r = app
            .get(&format!("/v1/presence?user={other}"), Some(&who.token))
            .await?;
        assert_error(r, 403, "forbidden").await?;
    }
    // Others still see both.
    assert_eq!(
        app.get("/v1/users/ana_b/posts", None).await?.status(),
        StatusCode::OK
    );

    // A send over a WebSocket is refused with an error frame naming it.
    let mut socket = Socket::open(&app, &ben).await?;
    socket
        .send(json!({"type": "send", "channel_id": dm, "client_msg_id": "ws-1", "content": "hey"}))
        .await?;
    let error = socket
        .next_where("the refusal", |f| f["type"] == "error")
        .await?;
    assert_eq!(
        (&error["code"], &error["client_msg_id"]),
        (&json!("forbidden"), &json!("ws-1")),
        "{error}"
    );

    // Unblocking lets them meet again; the follows stay gone until made anew.
    assert_eq!(set_block(&app, &ana, "ben_b", false).await?, 204);
    assert_eq!(set_block(&app, &ana, "ben_b", false).await?, 204, "again");
    assert_eq!(
        usernames(&json_of(&app, "/v1/me/blocks", &ana).await?),
        Vec::<String>::new()
    );
    assert_eq!(
        usernames(&json_of(&app, "/v1/me/following", &ben).await?),
        Vec::<String>::new()
    );
    app.follow(&ben, "ana_b").await?;
    app.say(&ben, &dm, "friends again").await?;
    Ok(())
}

/// Whether `frame` is a message frame of `id` hidden from its reader.
fn hidden(frame: &Value) -> bool {
    frame["message"]["hidden"] == true && frame["message"]["content"] == ""
}

async fn group_messages_reach_the_blocker_hidden_in(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let ana = app.register("ana_g").await?;
    let ben = app.register("ben_g").await?;
    let cy = app.register("cy_g").await?;
    let group = app.group(&cy, "three", &["ana_g", "ben_g"]).await?;
    let before = app.say(&ben, &group, "before the block").await?;
    assert_eq!(set_block(&app, &ana, "ben_g", true).await?, 204);

    let mut ana_socket = Socket::open(&app, &ana).await?;
    let mut cy_socket = Socket::open(&app, &cy).await?;
    let ana_laptop = app.login(&ana).await?;
    let poll = app
        .waiting_sync(&ana_laptop, text(&before, "id"), 10)
        .await?;

    // Ben may still write in the group; Ana gets it hidden (sender, id and seq kept, so
    // her `seq` has no gap), Cy gets it whole.
    let sent = app.say(&ben, &group, "after the block").await?;
    let live = ana_socket
        .next_where("the hidden message", |f| f["type"] == "message")
        .await?;
    assert!(hidden(&live), "{live}");
    assert_eq!(
        (
            &live["message"]["id"],
            &live["message"]["seq"],
            &live["message"]["sender"]["username"]
        ),
        (&sent["id"], &sent["seq"], &json!("ben_g"))
    );
    let whole = cy_socket
        .next_where("the message", |f| f["type"] == "message")
        .await?;
    assert_eq!(whole["message"]["content"], "after the block", "{whole}");
    assert!(whole["message"].get("hidden").is_none(), "{whole}");
    let polled = poll.await??;
    let m = &polled["messages"][0];
    assert_eq!(
        (&m["id"], &m["hidden"], &m["content"]),
        (&sent["id"], &json!(true), &json!(""))
    );

    // An edit reaches her hidden too.
    let r = app
        .json_request(
            Method::PATCH,
            &format!("/v1/chat/channels/{group}/messages/{}", text(&sent, "id")),
            &json!({"content": "edited after the block"}),
            Some(&ben.token),
        )
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let updated = ana_socket
        .next_where("the update", |f| f["type"] == "message_updated")
        .await?;
    assert!(hidden(&updated), "{updated}");
    let updated = cy_socket
        .next_where("the update", |f| f["type"] == "message_updated")
        .await?;
    assert_eq!(updated["message"]["content"], "edited after the block");

    // History, sync and the conversation list hide every message of his, the older ones
    // too; Cy's reads are untouched.
    let page = json_of(&app, &format!("/v1/chat/channels/{group}/messages"), &ana).await?;
    let items = page["items"].as_array().context("items")?;
    assert_eq!(items.len(), 2, "{page}");
    assert!(
        items
            .iter()
            .all(|m| m["hidden"] == true && m["content"] == ""),
        "{page}"
    );
    let seqs: Vec<&Value> = items.iter().map(|m| &m["seq"]).collect();
    assert_eq!(seqs, [&json!(1), &json!(2)]);
    let synced = app.sync(&ana, "0", 0).await?;
    let messages = synced["messages"].as_array().context("messages")?;
    assert!(messages.iter().all(|m| m["hidden"] == true), "{synced}");
    let list = json_of(&app, "/v1/chat/channels", &ana).await?;
    let last = &list["items"][0]["last_message"];
    assert_eq!(
        (&last["hidden"], &last["content"]),
        (&json!(true), &json!("")),
        "{list}"
    );
    let page = json_of(&app, &format!("/v1/chat/channels/{group}/messages"), &cy).await?;
    assert_eq!(
        page["items"][1]["content"], "edited after the block",
        "{page}"
    );
    // Nobody else is told: Ben's messages to the group are not hidden from him or Cy.
    let own = json_of(&app, &format!("/v1/chat/channels/{group}/messages"), &ben).await?;
    assert!(own["items"][0].get("hidden").is_none(), "{own}");

    // His typing does not reach her; Cy sees it. (Ana's fence comes after the typing
    // event was published: had it been sent to her, it would be among the frames before.)
    let r = app
        .post_json(
            &format!("/v1/chat/channels/{group}/typing"),
            &json!({}),
            Some(&ben.token),
        )
        .await?;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    cy_socket
        .next_where("his typing", |f| f["type"] == "typing")
        .await?;
    let before_fence = ana_socket.fence(&app).await?;
    assert!(
        before_fence.iter().all(|f| f["type"] != "typing"),
        "{before_fence:?}"
    );

    // Unblocked, she reads them whole again, from then on and back in history.
    assert_eq!(set_block(&app, &ana, "ben_g", false).await?, 204);
    app.say(&ben, &group, "seen again").await?;
    let live = ana_socket
        .next_where("the message", |f| {
            f["type"] == "message" && f["message"]["content"] == "seen again"
        })
        .await?;
    assert!(live["message"].get("hidden").is_none(), "{live}");
    let page = json_of(&app, &format!("/v1/chat/channels/{group}/messages"), &ana).await?;
    assert_eq!(page["items"][0]["content"], "before the block", "{page}");
    Ok(())
}

both_backends!(
    a_block_ends_follows_and_refuses_each_way_in,
    group_messages_reach_the_blocker_hidden_in,
);
