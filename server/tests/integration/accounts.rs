//! API.md "Accounts": every rule and error path, through a real server.

use crate::common;

use anyhow::{Context as _, Result};
use common::{assert_error, spawn_app, spawn_with, Backend, Options, TestApp};
use reqwest::{header, StatusCode};
use serde_json::{json, Value};

async fn register_raw(app: &TestApp, body: Value) -> Result<reqwest::Response> {
    app.post_json("/v1/auth/register", &body, None).await
}

async fn register_returns_the_user_and_a_working_token(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let resp = register_raw(
        &app,
        json!({"username": "alice_1", "password": "hunter22!", "display_name": "  Alice  "}),
    )
    .await?;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = resp.json().await?;
    let user = &body["user"];
    assert_eq!(user["username"], "alice_1");
    assert_eq!(user["display_name"], "Alice");
    let id = user["id"].as_str().context("id is a string")?;
    assert!(id.parse::<i64>()? > 0);
    chrono::DateTime::parse_from_rfc3339(user["created_at"].as_str().context("created_at")?)?;
    let token = body["token"].as_str().context("token")?;
    assert!(token.starts_with("kith_") && token.len() >= 40);

    let me: Value = app.get("/v1/me", Some(token)).await?.json().await?;
    assert_eq!(&me, user);

    // Without a display name, the username is used.
    let bob = app.register("bob").await?;
    let me: Value = app.get("/v1/me", Some(&bob.token)).await?.json().await?;
    assert_eq!(me["display_name"], "bob");
    Ok(())
}

async fn register_validates_every_field(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let long_name = "a".repeat(33);
    let cases = [
        (
            json!({"username": "ab", "password": "password1"}),
            "username",
        ),
        (
            json!({"username": long_name, "password": "password1"}),
            "username",
        ),
        (
            json!({"username": "Alice", "password": "password1"}),
            "username",
        ),
        (
            json!({"username": "al ice", "password": "password1"}),
            "username",
        ),
        (
            json!({"username": "al-ice", "password": "password1"}),
            "username",
        ),
        (json!({"username": "", "password": "password1"}), "username"),
        (
            json!({"username": "alice", "password": "short77"}),
            "password",
        ),
        (
            json!({"username": "alice", "password": "x".repeat(129)}),
            "password",
        ),
        (
            json!({"username": "alice", "password": "password1", "display_name": "d".repeat(65)}),
            "display_name",
        ),
        (
            json!({"username": "alice", "password": "password1", "display_name": "bad\u{0007}"}),
            "display_name",
        ),
    ];
    for (body, field) in &cases {
        let message = assert_error(
            register_raw(&app, body.clone()).await?,
            422,
            "validation_failed",
        )
        .await?;
        assert!(
            message.starts_with(field),
            "{message:?} should name {field}"
        );
    }
    // Boundaries that must pass: 3 and 32 characters, 8 and 128 (multi-byte) characters.
    for (username, password) in [
        ("abc".to_string(), "12345678".to_string()),
        ("b".repeat(32), "é".repeat(128)),
    ] {
        let resp = register_raw(&app, json!({"username": username, "password": password})).await?;
        assert_eq!(resp.status(), StatusCode::CREATED, "{username}");
    }
    // The 128-character Unicode password works for login: nothing was truncated.
    let resp = app
        .post_json(
            "/v1/auth/login",
            &json!({"username": "b".repeat(32), "password": "é".repeat(128)}),
            None,
        )
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = app
        .post_json(
            "/v1/auth/login",
            &json!({"username": "b".repeat(32), "password": "é".repeat(127)}),
            None,
        )
        .await?;
    assert_error(resp, 401, "invalid_credentials").await?;
    println!(
        "register-validation: {} invalid bodies rejected with 422",
        cases.len()
    );
    Ok(())
}

async fn usernames_are_unique_even_under_races(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    app.register("carol").await?;
    let resp = register_raw(&app, json!({"username": "carol", "password": "password1"})).await?;
    assert_error(resp, 409, "username_taken").await?;

    let attempts =
        (0..8).map(|_| register_raw(&app, json!({"username": "dave", "password": "password1"})));
    let results = futures::future::join_all(attempts).await;
    let mut created = 0;
    for r in results {
        match r?.status().as_u16() {
            201 => created += 1,
            409 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(created, 1, "exactly one concurrent registration wins");
    Ok(())
}

async fn login_is_uniform_for_wrong_password_and_unknown_user(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let erin = app.register("erin").await?;
    let ok = app
        .post_json(
            "/v1/auth/login",
            &json!({"username": "erin", "password": erin.password}),
            None,
        )
        .await?;
    assert_eq!(ok.status(), StatusCode::OK);
    let body: Value = ok.json().await?;
    assert_eq!(body["user"]["username"], "erin");
    let token = body["token"].as_str().context("token")?;
    assert_ne!(token, erin.token, "each login opens a new session");
    assert_eq!(
        app.get("/v1/me", Some(token)).await?.status(),
        StatusCode::OK
    );

    let wrong = app
        .post_json(
            "/v1/auth/login",
            &json!({"username": "erin", "password": "wrong-password"}),
            None,
        )
        .await?;
    let unknown = app
        .post_json(
            "/v1/auth/login",
            &json!({"username": "nobody_here", "password": "wrong-password"}),
            None,
        )
        .await?;
    let a = assert_error(wrong, 401, "invalid_credentials").await?;
    let b = assert_error(unknown, 401, "invalid_credentials").await?;
    assert_eq!(a, b, "the two failures must be indistinguishable");
    Ok(())
}

async fn tokens_are_checked_and_logout_revokes(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let frank = app.register("frank").await?;

    assert_error(app.get("/v1/me", None).await?, 401, "unauthorized").await?;
    let forged = format!("kith_{}", "A".repeat(43));
    let bad_tokens = [
        forged.as_str(),
        "kith_short",
        "",
        "not-a-token",
        &frank.token[..frank.token.len() - 1],
    ];
    for t in bad_tokens {
        assert_error(app.get("/v1/me", Some(t)).await?, 401, "unauthorized").await?;
    }
    let basic = app
        .client
        .get(app.url("/v1/me"))
        .header(header::AUTHORIZATION, "Basic Zm9vOmJhcg==")
        .send()
        .await?;
    assert_error(basic, 401, "unauthorized").await?;

    // A second session survives the first one's logout.
    let other: Value = app
        .post_json(
            "/v1/auth/login",
            &json!({"username": "frank", "password": frank.password}),
            None,
        )
        .await?
        .json()
        .await?;
    let other = other["token"].as_str().context("token")?.to_string();

    let out = app
        .post_json("/v1/auth/logout", &json!(null), Some(&frank.token))
        .await?;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.get("/v1/me", Some(&frank.token)).await?,
        401,
        "unauthorized",
    )
    .await?;
    assert_error(
        app.post_json("/v1/auth/logout", &json!(null), Some(&frank.token))
            .await?,
        401,
        "unauthorized",
    )
    .await?;
    assert_eq!(
        app.get("/v1/me", Some(&other)).await?.status(),
        StatusCode::OK
    );
    println!(
        "auth-tokens: {} forged or malformed tokens tried, 0 accepted",
        bad_tokens.len() + 2
    );
    Ok(())
}

async fn profiles_show_counts_and_404_for_unknown_users(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let gina = app.register("gina").await?;
    let p: Value = app.get("/v1/users/gina", None).await?.json().await?;
    assert_eq!(p["username"], "gina");
    assert_eq!(p["id"], gina.id.as_str());
    assert_eq!(p["followers"], 0);
    assert_eq!(p["following"], 0);
    assert_eq!(p["posts"], 0);
    assert_eq!(p["followed_by_me"], false);
    assert_error(app.get("/v1/users/nobody", None).await?, 404, "not_found").await?;
    assert_error(
        app.get("/v1/users/gina", Some("kith_bogus")).await?,
        401,
        "unauthorized",
    )
    .await?;
    Ok(())
}

async fn malformed_and_oversized_bodies_get_clear_errors(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let url = app.url("/v1/auth/register");
    let send = |body: String, content_type: &'static str| {
        app.client
            .post(&url)
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
    };
    assert_error(
        send("{not json".into(), "application/json").await?,
        400,
        "invalid_request",
    )
    .await?;
    assert_error(
        send("".into(), "application/json").await?,
        400,
        "invalid_request",
    )
    .await?;
    assert_error(
        send("[1,2]".into(), "application/json").await?,
        400,
        "invalid_request",
    )
    .await?;
    assert_error(
        send(
            r#"{"username": 5, "password": "password1"}"#.into(),
            "application/json",
        )
        .await?,
        400,
        "invalid_request",
    )
    .await?;
    assert_error(
        send(r#"{"username": "x"}"#.into(), "application/json").await?,
        400,
        "invalid_request",
    )
    .await?;
    assert_error(
        send(
            r#"{"username":"hank","password":"password1","admin":true}"#.into(),
            "application/json",
        )
        .await?,
        400,
        "invalid_request",
    )
    .await?;
    assert_error(
        send(
            r#"{"username":"hank","password":"password1"}"#.into(),
            "text/plain",
        )
        .await?,
        400,
        "invalid_request",
    )
    .await?;
    let huge = format!(
        r#"{{"username":"hank","password":"{}"}}"#,
        "p".repeat(70 * 1024)
    );
    assert_error(
        send(huge.clone(), "application/json").await?,
        413,
        "payload_too_large",
    )
    .await?;
    // Without a Content-Length (chunked), the limit still holds.
    let stream = futures::stream::iter(
        huge.into_bytes()
            .chunks(4096)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let chunked = app
        .client
        .post(&url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await?;
    assert_error(chunked, 413, "payload_too_large").await?;
    // The server is still up and answering.
    assert_eq!(app.get("/healthz", None).await?.status(), StatusCode::OK);
    Ok(())
}

async fn failed_logins_are_throttled_per_account(backend: Backend) -> Result<()> {
    let app = spawn_with(
        backend,
        Options {
            manual_clock: true,
            ..Default::default()
        },
    )
    .await?;
    let ivy = app.register("ivy").await?;
    let clock = app.clock.clone().context("manual clock")?;
    let attempt = |password: String| {
        let body = json!({"username": "ivy", "password": password});
        let app = &app;
        async move { app.post_json("/v1/auth/login", &body, None).await }
    };
    let mut failures = 0;
    loop {
        let resp = attempt("wrong-password".into()).await?;
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = resp.headers()[header::RETRY_AFTER].to_str()?.parse()?;
            assert!(retry >= 1);
            assert_error(resp, 429, "rate_limited").await?;
            break;
        }
        assert_error(resp, 401, "invalid_credentials").await?;
        failures += 1;
        assert!(failures < 100, "never throttled");
    }
    assert_eq!(failures, 10, "throttled after 10 failures");
    // Even the right password is refused while throttled…
    assert_error(attempt(ivy.password.clone()).await?, 429, "rate_limited").await?;
    // …and accepted once the window has moved on (one failure's worth: 90 s).
    clock.advance(91_000);
    assert_eq!(
        attempt(ivy.password.clone()).await?.status(),
        StatusCode::OK
    );
    println!("login-throttle: throttled after {failures} failures, recovered after 91 s");
    Ok(())
}

async fn sessions_expire(backend: Backend) -> Result<()> {
    let app = spawn_with(
        backend,
        Options {
            manual_clock: true,
            ..Default::default()
        },
    )
    .await?;
    let jack = app.register("jack").await?;
    let clock = app.clock.clone().context("manual clock")?;
    clock.advance(29 * 24 * 3600 * 1000);
    assert_eq!(
        app.get("/v1/me", Some(&jack.token)).await?.status(),
        StatusCode::OK
    );
    clock.advance(2 * 24 * 3600 * 1000);
    assert_error(
        app.get("/v1/me", Some(&jack.token)).await?,
        401,
        "unauthorized",
    )
    .await?;
    Ok(())
}

both_backends!(
    register_returns_the_user_and_a_working_token,
    register_validates_every_field,
    usernames_are_unique_even_under_races,
    login_is_uniform_for_wrong_password_and_unknown_user,
    tokens_are_checked_and_logout_revokes,
    profiles_show_counts_and_404_for_unknown_users,
    malformed_and_oversized_bodies_get_clear_errors,
    failed_logins_are_throttled_per_account,
    sessions_expire,
);
