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

/// Logs `user` in again: a second session.
async fn second_session(
    app: &TestApp,
    username: &str,
    password: &str,
) -> Result<reqwest::Response> {
    app.post_json(
        "/v1/auth/login",
        &json!({"username": username, "password": password}),
        None,
    )
    .await
}

async fn changing_the_password_ends_every_other_session(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let gail = app.register("gail").await?;
    let other: Value = second_session(&app, "gail", &gail.password)
        .await?
        .json()
        .await?;
    let other = other["token"].as_str().context("token")?.to_string();
    let change = |body: Value, token: Option<String>| {
        let app = &app;
        async move {
            app.post_json("/v1/me/password", &body, token.as_deref())
                .await
        }
    };
    let new_password = "a brand new passphrase";

    // Refused: no token, a wrong current password, a new one too short, a missing field.
    let body = json!({"current_password": gail.password, "new_password": new_password});
    assert_error(change(body.clone(), None).await?, 401, "unauthorized").await?;
    assert_error(
        change(
            json!({"current_password": "not it at all", "new_password": new_password}),
            Some(gail.token.clone()),
        )
        .await?,
        401,
        "invalid_credentials",
    )
    .await?;
    assert_error(
        change(
            json!({"current_password": gail.password, "new_password": "short"}),
            Some(gail.token.clone()),
        )
        .await?,
        422,
        "validation_failed",
    )
    .await?;
    assert_error(
        change(
            json!({"new_password": new_password}),
            Some(gail.token.clone()),
        )
        .await?,
        400,
        "invalid_request",
    )
    .await?;
    // Nothing changed so far: both sessions and the old password still work.
    assert_eq!(app.get("/v1/me", Some(&other)).await?.status(), 200);

    let done = change(body, Some(gail.token.clone())).await?;
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    // The session that asked stays; the other one ends at once, cached or not.
    assert_eq!(app.get("/v1/me", Some(&gail.token)).await?.status(), 200);
    assert_error(app.get("/v1/me", Some(&other)).await?, 401, "unauthorized").await?;
    // Only the new password opens a session now.
    assert_error(
        second_session(&app, "gail", &gail.password).await?,
        401,
        "invalid_credentials",
    )
    .await?;
    assert_eq!(
        second_session(&app, "gail", new_password).await?.status(),
        200
    );
    Ok(())
}

async fn wrong_current_passwords_are_throttled(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let hal = app.register("hal").await?;
    let wrong = json!({"current_password": "a guess, not it", "new_password": "whatever it is"});
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = app
            .post_json("/v1/me/password", &wrong, Some(&hal.token))
            .await?;
        statuses.push(r.status().as_u16());
    }
    // The account's failed-login budget (10 per 15 minutes) covers these guesses too.
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert_eq!(statuses[10..], [429, 429], "{statuses:?}");
    let right = json!({"current_password": hal.password, "new_password": "whatever it is"});
    let r = app
        .post_json("/v1/me/password", &right, Some(&hal.token))
        .await?;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    Ok(())
}

async fn sessions_are_listed_and_can_be_ended(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let jo = app.register("jo_s").await?;
    let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let login: Value = app
        .client
        .post(app.url("/v1/auth/login"))
        .header(header::USER_AGENT, firefox)
        .json(&json!({"username": "jo_s", "password": jo.password}))
        .send()
        .await?
        .json()
        .await?;
    let laptop = login["token"].as_str().context("token")?.to_string();

    let list: Value = app
        .get("/v1/me/sessions", Some(&jo.token))
        .await?
        .json()
        .await?;
    let items = list["items"].as_array().context("items")?;
    assert_eq!(items.len(), 2, "{list}");
    // Most recently used first: the laptop signed in last.
    assert_eq!(items[0]["device"], "Firefox on Linux", "{list}");
    assert_eq!(items[0]["current"], false);
    assert_eq!(items[1]["device"], "API client");
    assert_eq!(items[1]["current"], true);
    for item in items {
        assert_eq!(item["client_address"], "127.0.0.1", "{item}");
        assert!(item["created_at"].is_string() && item["last_used_at"].is_string());
    }
    let laptop_id = items[0]["id"].as_str().context("id")?.to_string();

    // Nobody else can end it, and what is not an id is refused.
    let kim = app.register("kim").await?;
    let path = format!("/v1/me/sessions/{laptop_id}");
    assert_error(app.delete_as(&kim, &path).await?, 404, "not_found").await?;
    assert_error(
        app.delete_as(&jo, "/v1/me/sessions/laptop").await?,
        400,
        "invalid_request",
    )
    .await?;
    assert_eq!(app.get("/v1/me", Some(&laptop)).await?.status(), 200);

    let r = app.delete_as(&jo, &path).await?;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_error(app.get("/v1/me", Some(&laptop)).await?, 401, "unauthorized").await?;
    assert_error(app.delete_as(&jo, &path).await?, 404, "not_found").await?;
    let list: Value = app
        .get("/v1/me/sessions", Some(&jo.token))
        .await?
        .json()
        .await?;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    Ok(())
}

async fn a_session_records_when_it_was_last_used(backend: Backend) -> Result<()> {
    let app = spawn_with(
        backend,
        Options {
            manual_clock: true,
            ..Default::default()
        },
    )
    .await?;
    let clock = app.clock.clone().context("manual clock")?;
    let lu = app.register("lu_s").await?;
    let last_used = |list: &Value| -> Result<(String, String)> {
        let item = list["items"]
            .as_array()
            .and_then(|items| items.first())
            .context("a session")?;
        Ok((
            item["created_at"]
                .as_str()
                .context("created_at")?
                .to_string(),
            item["last_used_at"]
                .as_str()
                .context("last_used_at")?
                .to_string(),
        ))
    };
    let fresh: Value = app
        .get("/v1/me/sessions", Some(&lu.token))
        .await?
        .json()
        .await?;
    let (created, used) = last_used(&fresh)?;
    assert_eq!(created, used, "{fresh}");
    // A login whose session no node has checked yet, used six minutes later.
    let login: Value = second_session(&app, "lu_s", &lu.password)
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().context("token")?.to_string();
    clock.advance(6 * 60_000);
    let later: Value = app
        .get("/v1/me/sessions", Some(&token))
        .await?
        .json()
        .await?;
    let (created, used) = last_used(&later)?;
    assert!(used > created, "{later}");
    Ok(())
}

async fn patch_me(app: &TestApp, token: Option<&str>, body: Value) -> Result<reqwest::Response> {
    app.json_request(reqwest::Method::PATCH, "/v1/me", &body, token)
        .await
}

async fn a_profile_edit_shows_at_once_wherever_the_user_appears(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let ana = app.register("ana_p").await?;
    let phone: Value = second_session(&app, "ana_p", &ana.password)
        .await?
        .json()
        .await?;
    let phone = phone["token"].as_str().context("token")?.to_string();
    // Both sessions and the post's author are read (and cached) before the edit.
    let post = app.post_as(&ana, "before the edit").await?;
    let post_path = format!("/v1/posts/{}", post["id"].as_str().context("post id")?);
    let before: Value = app.get(&post_path, None).await?.json().await?;
    assert_eq!(before["author"]["display_name"], "ana_p");
    assert_eq!(before["author"]["bio"], "");
    assert_eq!(app.get("/v1/me", Some(&phone)).await?.status(), 200);

    let r = patch_me(
        &app,
        Some(&ana.token),
        json!({"display_name": "  Ana Pérez ", "bio": " Painter.\nLisbon. "}),
    )
    .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let user: Value = r.json().await?;
    assert_eq!(user["display_name"], "Ana Pérez");
    assert_eq!(user["bio"], "Painter.\nLisbon.");
    assert_eq!(user["username"], "ana_p");
    assert_eq!(user["id"], ana.id.as_str());

    let me: Value = app.get("/v1/me", Some(&phone)).await?.json().await?;
    assert_eq!(me, user, "the other session sees the edit at once");
    let profile: Value = app.get("/v1/users/ana_p", None).await?.json().await?;
    assert_eq!(profile["bio"], "Painter.\nLisbon.");
    assert_eq!(profile["display_name"], "Ana Pérez");
    let after: Value = app.get(&post_path, None).await?.json().await?;
    assert_eq!(after["author"], user, "the cached author is refreshed");

    // Only what is given changes; an empty display name is the username again, an empty
    // bio clears it; nothing given changes nothing.
    let user: Value = patch_me(&app, Some(&ana.token), json!({"bio": "Sculptor."}))
        .await?
        .json()
        .await?;
    assert_eq!(
        (&user["display_name"], &user["bio"]),
        (&json!("Ana Pérez"), &json!("Sculptor."))
    );
    let user: Value = patch_me(&app, Some(&ana.token), json!({}))
        .await?
        .json()
        .await?;
    assert_eq!(user["bio"], "Sculptor.");
    let user: Value = patch_me(
        &app,
        Some(&ana.token),
        json!({"display_name": "", "bio": "  "}),
    )
    .await?
    .json()
    .await?;
    assert_eq!(
        (&user["display_name"], &user["bio"]),
        (&json!("ana_p"), &json!(""))
    );
    Ok(())
}

async fn profile_edits_are_validated(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let bo = app.register("bo_p").await?;
    let token = Some(bo.token.as_str());
    let long_bio = "é".repeat(301);
    let m = assert_error(
        patch_me(&app, token, json!({"bio": long_bio})).await?,
        422,
        "validation_failed",
    )
    .await?;
    assert!(m.starts_with("bio:") && m.contains("300"), "{m}");
    assert_eq!(
        patch_me(&app, token, json!({"bio": "é".repeat(300)}))
            .await?
            .status(),
        200
    );
    let m = assert_error(
        patch_me(&app, token, json!({"display_name": "x".repeat(65)})).await?,
        422,
        "validation_failed",
    )
    .await?;
    assert!(m.starts_with("display_name:"), "{m}");
    assert_error(
        patch_me(&app, token, json!({"bio": "bell\u{7}"})).await?,
        422,
        "validation_failed",
    )
    .await?;
    assert_error(
        patch_me(&app, token, json!({"username": "other"})).await?,
        400,
        "invalid_request",
    )
    .await?;
    assert_error(
        patch_me(&app, token, json!({"bio": 5})).await?,
        400,
        "invalid_request",
    )
    .await?;
    assert_error(
        patch_me(&app, None, json!({"bio": "hi"})).await?,
        401,
        "unauthorized",
    )
    .await?;
    // Nothing refused was stored.
    let me: Value = app.get("/v1/me", token).await?.json().await?;
    assert_eq!(me["display_name"], "bo_p");
    assert_eq!(me["bio"], "é".repeat(300));
    Ok(())
}

both_backends!(
    a_profile_edit_shows_at_once_wherever_the_user_appears,
    profile_edits_are_validated,
    a_session_records_when_it_was_last_used,
    sessions_are_listed_and_can_be_ended,
    changing_the_password_ends_every_other_session,
    wrong_current_passwords_are_throttled,
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
