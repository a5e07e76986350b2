//! Abuse limits (`config::Limits`): sign-ups per client address, group creations per
//! user, open WebSockets per user and per address, waiting long polls per user, and the
//! deadline for a request's headers.

use crate::common::{self, live::eventually, spawn_with, Backend, Options, TestApp, TestUser};

use anyhow::{Context as _, Result};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{client::IntoClientRequest, http::HeaderValue},
};

async fn node(env: &[(&'static str, &str)]) -> Result<TestApp> {
    spawn_with(
        Backend::Memory,
        Options {
            manual_clock: true,
            env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            ..Default::default()
        },
    )
    .await
}

/// `POST /v1/auth/register` as a client at `address` (the node trusts `X-Forwarded-For`).
async fn sign_up(app: &TestApp, name: &str, address: &str) -> Result<reqwest::Response> {
    Ok(app
        .client
        .post(app.url("/v1/auth/register"))
        .header("x-forwarded-for", address)
        .json(&json!({"username": name, "password": "correct horse battery"}))
        .send()
        .await?)
}

async fn refused_with_retry_after(resp: reqwest::Response) -> Result<u64> {
    let retry_after: u64 = resp
        .headers()
        .get("retry-after")
        .context("Retry-After")?
        .to_str()?
        .parse()?;
    assert!(retry_after >= 1);
    common::assert_error(resp, 429, "rate_limited").await?;
    Ok(retry_after)
}

#[tokio::test]
async fn each_address_signs_up_at_most_its_hourly_share() -> Result<()> {
    let app = node(&[
        ("KITH_SIGNUP_RATE_PER_HOUR", "3"),
        ("KITH_TRUST_PROXY", "true"),
    ])
    .await?;
    for i in 0..3 {
        let resp = sign_up(&app, &format!("early_{i}"), "203.0.113.7").await?;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let refused = sign_up(&app, "one_too_many", "203.0.113.7").await?;
    let retry_after = refused_with_retry_after(refused).await?;
    assert!(retry_after <= 3600, "{retry_after}");
    // Nothing was created by the refusal.
    let login = app
        .post_json(
            "/v1/auth/login",
            &json!({"username": "one_too_many", "password": "correct horse battery"}),
            None,
        )
        .await?;
    common::assert_error(login, 401, "invalid_credentials").await?;
    // Another address has its own share; mistakes in a form use none of it.
    let invalid = sign_up(&app, "x", "203.0.113.8").await?;
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    for i in 0..3 {
        let resp = sign_up(&app, &format!("other_{i}"), "203.0.113.8").await?;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    // An explicit limit holds for loopback clients too.
    let local = sign_up(&app, "local_0", "127.0.0.1").await?;
    assert_eq!(local.status(), StatusCode::CREATED);
    // The share comes back with time: a third of an hour gives one sign-up back.
    app.clock
        .as_ref()
        .context("manual clock")?
        .advance(20 * 60 * 1000);
    let resp = sign_up(&app, "later_0", "203.0.113.7").await?;
    assert_eq!(resp.status(), StatusCode::CREATED);
    refused_with_retry_after(sign_up(&app, "later_1", "203.0.113.7").await?).await?;
    Ok(())
}

#[tokio::test]
async fn the_default_sign_up_limit_spares_only_this_machine() -> Result<()> {
    let app = node(&[("KITH_TRUST_PROXY", "true")]).await?;
    for i in 0..20 {
        let resp = sign_up(&app, &format!("remote_{i}"), "198.51.100.4").await?;
        assert_eq!(resp.status(), StatusCode::CREATED, "sign-up {i}");
    }
    refused_with_retry_after(sign_up(&app, "remote_20", "198.51.100.4").await?).await?;
    for i in 0..25 {
        let resp = sign_up(&app, &format!("local_{i}"), "127.0.0.1").await?;
        assert_eq!(resp.status(), StatusCode::CREATED, "loopback sign-up {i}");
    }
    Ok(())
}

#[tokio::test]
async fn a_user_creates_a_bounded_number_of_groups_an_hour() -> Result<()> {
    let app = node(&[("KITH_GROUP_CREATE_RATE_PER_HOUR", "2")]).await?;
    let (owner, _friend) = (app.register("gemma").await?, app.register("hugo").await?);
    let create = |name: &'static str, who: &TestUser| {
        let body = json!({"name": name, "members": ["hugo"]});
        let token = who.token.clone();
        let app = &app;
        async move { app.post_json("/v1/chat/groups", &body, Some(&token)).await }
    };
    assert_eq!(create("one", &owner).await?.status(), StatusCode::CREATED);
    assert_eq!(create("two", &owner).await?.status(), StatusCode::CREATED);
    refused_with_retry_after(create("three", &owner).await?).await?;
    let other = app.register("ivo").await?;
    let theirs = create("theirs", &other).await?;
    assert_eq!(
        theirs.status(),
        StatusCode::CREATED,
        "each user has their own"
    );
    Ok(())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket for `user`; the HTTP status of a refused upgrade as an error.
async fn open_socket(app: &TestApp, user: &TestUser) -> Result<Ws, u16> {
    let mut req = format!("ws://127.0.0.1:{}/v1/chat/ws", app.port)
        .into_client_request()
        .map_err(|_| 0u16)?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", user.token)).map_err(|_| 0u16)?;
    req.headers_mut().insert("authorization", bearer);
    match connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(_) => Err(0),
    }
}

#[tokio::test]
async fn a_user_holds_a_bounded_number_of_websockets() -> Result<()> {
    let app = node(&[("KITH_WS_PER_USER", "2")]).await?;
    let (jo, kim) = (app.register("jo_ws").await?, app.register("kim_ws").await?);
    let first = open_socket(&app, &jo).await;
    let second = open_socket(&app, &jo).await;
    assert!(first.is_ok() && second.is_ok());
    assert_eq!(open_socket(&app, &jo).await.err(), Some(429));
    assert!(
        open_socket(&app, &kim).await.is_ok(),
        "another user has their own"
    );
    // Closing one frees its slot once the server has seen it go.
    let mut first = first.map_err(|s| anyhow::anyhow!("{s}"))?;
    first.close(None).await?;
    drop(first);
    let slots = &app.state.slots.ws_per_user;
    let jo_id: i64 = jo.id.parse()?;
    eventually("the closed socket's slot is free", || async {
        Ok((slots.held(jo_id) < 2).then_some(()))
    })
    .await?;
    assert!(open_socket(&app, &jo).await.is_ok());
    Ok(())
}

#[tokio::test]
async fn an_address_holds_a_bounded_number_of_websockets() -> Result<()> {
    let app = node(&[("KITH_WS_PER_ADDRESS", "2")]).await?;
    let users = [
        app.register("lea_ws").await?,
        app.register("max_ws").await?,
        app.register("nia_ws").await?,
    ];
    let a = open_socket(&app, &users[0]).await;
    let b = open_socket(&app, &users[1]).await;
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(open_socket(&app, &users[2]).await.err(), Some(429));
    Ok(())
}

#[tokio::test]
async fn a_user_has_a_bounded_number_of_long_polls_waiting() -> Result<()> {
    let app = node(&[("KITH_LONGPOLLS_PER_USER", "1")]).await?;
    let ola = app.register("ola_lp").await?;
    let waiting = {
        let (client, url, token) = (
            app.client.clone(),
            app.url("/v1/chat/sync?since=0&timeout=30"),
            ola.token.clone(),
        );
        tokio::spawn(async move { client.get(url).bearer_auth(token).send().await })
    };
    let slots = &app.state.slots.longpolls_per_user;
    let ola_id: i64 = ola.id.parse()?;
    eventually("the first poll waits", || async {
        Ok((slots.held(ola_id) == 1).then_some(()))
    })
    .await?;
    let second = app
        .get("/v1/chat/sync?since=0&timeout=30", Some(&ola.token))
        .await?;
    refused_with_retry_after(second).await?;
    // A poll that does not wait needs no slot.
    let at_once = app
        .get("/v1/chat/sync?since=0&timeout=0", Some(&ola.token))
        .await?;
    assert_eq!(at_once.status(), StatusCode::OK);
    waiting.abort();
    Ok(())
}

#[tokio::test]
async fn clients_trickling_headers_are_cut_off_and_others_are_served() -> Result<()> {
    let app = node(&[("KITH_HEADER_TIMEOUT_SECS", "1")]).await?;
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await?;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: kith.test\r\nX-Slow: ")
            .await?;
        slow.push(tcp);
    }
    // Someone sending whole requests is served while they wait.
    let health = app.get("/healthz", None).await?;
    assert_eq!(health.status(), StatusCode::OK);
    let page: Value = app.get("/v1/no-such-thing", None).await?.json().await?;
    assert_eq!(page["error"]["code"], "not_found");
    // Each slow connection is closed once its deadline passes (hyper answers 408 first).
    for tcp in &mut slow {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut answer))
            .await
            .context("a slow connection outlived its header deadline")??;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
    Ok(())
}
