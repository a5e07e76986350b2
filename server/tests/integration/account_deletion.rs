//! Deleting one's account (`DELETE /v1/me`): what goes, what stays, what every cache and
//! node forgets, and when the username is free again, on both backends.

use crate::common;

use anyhow::{Context as _, Result};
use common::{
    assert_error,
    live::{text, Socket},
    spawn_with, Backend, Options, TestApp, TestUser,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn delete_me(app: &TestApp, token: Option<&str>, body: Value) -> Result<reqwest::Response> {
    app.json_request(reqwest::Method::DELETE, "/v1/me", &body, token)
        .await
}

async fn json_of(app: &TestApp, path: &str, user: &TestUser) -> Result<Value> {
    let resp = app.get(path, Some(&user.token)).await?;
    assert_eq!(resp.status(), 200, "{path}");
    Ok(resp.json().await?)
}

async fn like(app: &TestApp, user: &TestUser, post: &str) -> Result<()> {
    let r = app
        .client
        .put(app.url(&format!("/v1/posts/{post}/like")))
        .bearer_auth(&user.token)
        .send()
        .await?;
    assert_eq!(r.status(), 204);
    Ok(())
}

async fn a_deleted_account_leaves_only_its_messages_behind(backend: Backend) -> Result<()> {
    let app = spawn_with(
        backend,
        Options {
            manual_clock: true,
            ..Default::default()
        },
    )
    .await?;
    let clock = app.clock.clone().context("manual clock")?;
    let ana = app.register("ana_d").await?;
    let ben = app.register("ben_d").await?;
    let cy = app.register("cy_d").await?;
    // Ana posts, follows Ben and likes his post; Ben follows her; they talk.
    app.follow(&ben, "ana_d").await?;
    app.follow(&ana, "ben_d").await?;
    let post = app.post_as(&ana, "ana's post").await?;
    let bens = app.post_as(&ben, "ben's post").await?;
    like(&app, &ana, text(&bens, "id")).await?;
    app.settle().await?;
    let dm = app.dm(&ben, &ana).await?;
    let said = app.say(&ana, &dm, "bye for now").await?;
    let group = app.group(&ben, "trio", &["ana_d", "cy_d"]).await?;
    // Everything Ben sees of her is read (and cached) first.
    let feed = json_of(&app, "/v1/me/feed", &ben).await?;
    assert_eq!(feed["items"][1]["id"], post["id"], "{feed}");
    assert_eq!(feed["items"][0]["like_count"], 1, "{feed}");
    let phone = app.login(&ana).await?;
    let socket = Socket::open(&app, &phone).await?;

    // A wrong password, or none, changes nothing.
    assert_error(
        delete_me(&app, Some(&ana.token), json!({"password": "not it at all"})).await?,
        401,
        "invalid_credentials",
    )
    .await?;
    assert_error(
        delete_me(&app, Some(&ana.token), json!({})).await?,
        400,
        "invalid_request",
    )
    .await?;
    assert_error(
        delete_me(&app, None, json!({"password": ana.password})).await?,
        401,
        "unauthorized",
    )
    .await?;
    assert_eq!(app.get("/v1/users/ana_d", None).await?.status(), 200);

    let r = delete_me(&app, Some(&ana.token), json!({"password": ana.password})).await?;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // Every session ends at once, the open socket included; the password opens nothing.
    for token in [&ana.token, &phone.token] {
        assert_error(app.get("/v1/me", Some(token)).await?, 401, "unauthorized").await?;
    }
    socket.closed_with(4001).await?;
    assert_error(
        app.post_json(
            "/v1/auth/login",
            &json!({"username": "ana_d", "password": ana.password}),
            None,
        )
        .await?,
        401,
        "invalid_credentials",
    )
    .await?;
    assert_error(app.get("/v1/users/ana_d", None).await?, 404, "not_found").await?;
    let found = json_of(&app, "/v1/users?prefix=ana_", &ben).await?;
    assert_eq!(found["items"], json!([]), "{found}");

    // Her post, like and follows are gone from what Ben sees, caches included.
    let feed = json_of(&app, "/v1/me/feed", &ben).await?;
    let items = feed["items"].as_array().context("items")?;
    assert_eq!(items.len(), 1, "{feed}");
    assert_eq!(items[0]["id"], bens["id"]);
    assert_eq!(items[0]["like_count"], 0, "{feed}");
    assert_error(
        app.get(&format!("/v1/posts/{}", text(&post, "id")), None)
            .await?,
        404,
        "not_found",
    )
    .await?;
    let profile = json_of(&app, "/v1/users/ben_d", &ben).await?;
    assert_eq!(
        (&profile["followers"], &profile["following"]),
        (&json!(0), &json!(0))
    );

    // Her messages stay, from "Deleted user"; she leaves the group.
    let history = json_of(&app, &format!("/v1/chat/channels/{dm}/messages"), &ben).await?;
    let m = &history["items"][0];
    assert_eq!(
        (&m["id"], &m["content"]),
        (&said["id"], &json!("bye for now"))
    );
    assert_eq!(m["sender"]["display_name"], "Deleted user");
    assert_ne!(m["sender"]["username"], "ana_d");
    let channels = json_of(&app, "/v1/chat/channels", &cy).await?;
    let trio = channels["items"]
        .as_array()
        .and_then(|items| items.iter().find(|c| c["id"] == json!(group)))
        .context("the group")?;
    let members: Vec<&str> = trio["members"]
        .as_array()
        .context("members")?
        .iter()
        .filter_map(|m| m["username"].as_str())
        .collect();
    assert_eq!(members, ["ben_d", "cy_d"], "{trio}");

    // The username is held for 30 days, then free.
    let taken = app
        .post_json(
            "/v1/auth/register",
            &json!({"username": "ana_d", "password": "a new password"}),
            None,
        )
        .await?;
    assert_error(taken, 409, "username_taken").await?;
    clock.advance(30 * 24 * 3600 * 1000 + 1);
    let again = app.register("ana_d").await?;
    assert_ne!(again.id, ana.id);
    let fresh: Value = app.get("/v1/users/ana_d", None).await?.json().await?;
    assert_eq!(
        (&fresh["id"], &fresh["posts"]),
        (&json!(again.id), &json!(0))
    );
    Ok(())
}

async fn reserved_usernames_cannot_be_registered(backend: Backend) -> Result<()> {
    let app = spawn_with(backend, Options::default()).await?;
    let m = assert_error(
        app.post_json(
            "/v1/auth/register",
            &json!({"username": "deleted_12", "password": "a long password"}),
            None,
        )
        .await?,
        422,
        "validation_failed",
    )
    .await?;
    assert!(m.starts_with("username:"), "{m}");
    Ok(())
}

both_backends!(
    a_deleted_account_leaves_only_its_messages_behind,
    reserved_usernames_cannot_be_registered,
);
