//! The browser path: cookies, CSRF on the JSON API and on server functions, security
//! headers and the pages, plus the operational endpoints.

use crate::common;

use anyhow::{anyhow, Result};
use common::{assert_error, spawn_app, Backend, TestApp, ORIGIN};
use reqwest::{header, StatusCode};
use serde_json::Value;

/// Loads the home page and returns the `kith_csrf` cookie value it set.
async fn csrf_cookie(app: &TestApp) -> Result<String> {
    let resp = app.get("/", None).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    set_cookie(&resp, "kith_csrf").ok_or_else(|| anyhow!("no kith_csrf cookie"))
}

fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| {
            v[name.len() + 1..]
                .split(';')
                .next()
                .unwrap_or_default()
                .to_string()
        })
}

fn set_cookie_line(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

/// Calls a server function with a form body, as the browser does.
async fn server_fn(
    app: &TestApp,
    name: &str,
    form: &[(&str, &str)],
    cookies: &str,
    origin: Option<&str>,
) -> Result<reqwest::Response> {
    let mut req = app
        .client
        .post(app.url(&format!("/api/{name}")))
        .header(header::COOKIE, cookies)
        .header(header::ACCEPT, "application/json")
        .form(form);
    if let Some(o) = origin {
        req = req.header(header::ORIGIN, o);
    }
    Ok(req.send().await?)
}

async fn ui_sign_in_sets_an_http_only_session_cookie(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let user = app.register("kate").await?;
    let csrf = csrf_cookie(&app).await?;
    let cookies = format!("kith_csrf={csrf}");
    let form = [
        ("csrf", csrf.as_str()),
        ("username", "kate"),
        ("password", user.password.as_str()),
    ];

    // Missing or foreign Origin: refused before the function runs.
    assert_error(
        server_fn(&app, "sign_in", &form, &cookies, None).await?,
        403,
        "forbidden",
    )
    .await?;
    assert_error(
        server_fn(&app, "sign_in", &form, &cookies, Some("http://evil.test")).await?,
        403,
        "forbidden",
    )
    .await?;
    // Right origin but a wrong CSRF token: refused by the function.
    let bad = [
        ("csrf", "wrong-token-value!"),
        ("username", "kate"),
        ("password", user.password.as_str()),
    ];
    let resp = server_fn(&app, "sign_in", &bad, &cookies, Some(ORIGIN)).await?;
    assert!(set_cookie(&resp, "kith_session").is_none());
    assert!(resp.text().await?.contains("CSRF"));

    let resp = server_fn(&app, "sign_in", &form, &cookies, Some(ORIGIN)).await?;
    let line = set_cookie_line(&resp, "kith_session")
        .ok_or_else(|| anyhow!("no session cookie: {}", resp.status()))?;
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(line.contains(attribute), "{line} lacks {attribute}");
    }
    let session = set_cookie(&resp, "kith_session").unwrap_or_default();

    // The cookie authenticates reads…
    let me = app
        .client
        .get(app.url("/v1/me"))
        .header(header::COOKIE, format!("kith_session={session}"))
        .send()
        .await?;
    assert_eq!(me.status(), StatusCode::OK);
    let me: Value = me.json().await?;
    assert_eq!(me["username"], "kate");

    // …and the page shows who is signed in.
    let page = app
        .client
        .get(app.url("/"))
        .header(
            header::COOKIE,
            format!("kith_session={session}; kith_csrf={csrf}"),
        )
        .send()
        .await?
        .text()
        .await?;
    assert!(page.contains("@kate"), "home page does not show the user");

    // A wrong password through the UI gives the API's error, and no cookie.
    let wrong = [
        ("csrf", csrf.as_str()),
        ("username", "kate"),
        ("password", "nope-nope-nope"),
    ];
    let resp = server_fn(&app, "sign_in", &wrong, &cookies, Some(ORIGIN)).await?;
    assert!(set_cookie(&resp, "kith_session").is_none());
    assert!(resp.text().await?.contains("invalid_credentials"));
    Ok(())
}

async fn cookie_authenticated_writes_need_origin_and_csrf_token(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let user = app.register("liam").await?;
    let csrf = csrf_cookie(&app).await?;
    let cookies = format!("kith_session={}; kith_csrf={csrf}", user.token);
    let logout = |origin: Option<&'static str>, token: Option<String>| {
        let mut req = app
            .client
            .post(app.url("/v1/auth/logout"))
            .header(header::COOKIE, cookies.clone());
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        req.send()
    };
    let mut refused = 0;
    for (origin, token) in [
        (None, Some(csrf.clone())),
        (Some("http://evil.test"), Some(csrf.clone())),
        (Some(ORIGIN), None),
        (Some(ORIGIN), Some("forged-token-123456".to_string())),
    ] {
        assert_error(logout(origin, token).await?, 403, "forbidden").await?;
        refused += 1;
    }
    assert_eq!(
        app.get("/v1/me", Some(&user.token)).await?.status(),
        StatusCode::OK,
        "still signed in"
    );
    let resp = logout(Some(ORIGIN), Some(csrf.clone())).await?;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.get("/v1/me", Some(&user.token)).await?,
        401,
        "unauthorized",
    )
    .await?;
    println!("csrf-matrix: {refused} forged cookie-authenticated writes tried, 0 succeeded");
    Ok(())
}

/// A program that authenticates with `Authorization: Bearer` is not a browser: its
/// requests get no CSRF cookie, while a browser without one gets it on any request, the
/// API's included. Every response carries the security headers either way.
async fn bearer_clients_get_no_csrf_cookie(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let user = app.register("csrf_bearer").await?;
    let api = app.get("/v1/me", Some(&user.token)).await?;
    assert_eq!(api.status(), StatusCode::OK);
    assert_eq!(set_cookie(&api, "kith_csrf"), None);
    let csp = api.headers()["content-security-policy"].to_str()?;
    assert!(csp.contains("'strict-dynamic'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");
    assert_eq!(api.headers()["cross-origin-opener-policy"], "same-origin");

    let browser = app.get("/v1/me", None).await?;
    assert_eq!(browser.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&browser, "kith_csrf").is_some_and(|v| v.len() >= 16));
    assert!(set_cookie(&app.get("/", None).await?, "kith_csrf").is_some());
    Ok(())
}

async fn pages_carry_security_headers_and_a_matching_nonce(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let resp = app.get("/signin", None).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers().clone();
    let csp = h["content-security-policy"].to_str()?.to_string();
    for directive in [
        "'strict-dynamic'",
        "'wasm-unsafe-eval'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp} lacks {directive}");
    }
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin");
    assert_eq!(h["cross-origin-opener-policy"], "same-origin");
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .ok_or_else(|| anyhow!("no nonce in {csp}"))?
        .to_string();
    let html = resp.text().await?;
    assert!(
        html.contains(&format!("nonce=\"{nonce}\"")),
        "scripts do not carry the header's nonce"
    );
    assert!(html.contains("<label for=\"signin-username\">Username</label>"));
    // Each response gets a fresh nonce.
    let again = app.get("/signin", None).await?;
    assert!(!again.headers()["content-security-policy"]
        .to_str()?
        .contains(&nonce));

    let missing = app.get("/u/nobody_at_all", None).await?;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.text().await?.contains("No such user"));
    assert_eq!(
        app.get("/no/such/page", None).await?.status(),
        StatusCode::NOT_FOUND
    );
    Ok(())
}

async fn operational_endpoints_answer(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let mona = app.register("mona").await?;
    app.register("nico").await?;
    let club = app.group(&mona, "club", &["nico"]).await?;
    for text in ["one", "two", "three"] {
        app.say(&mona, &club, text).await?;
    }
    assert_eq!(app.get("/healthz", None).await?.text().await?, "ok");
    // Made-up methods are counted under one label, not a series each.
    for made_up in ["FROB", "BLEEP"] {
        let method = reqwest::Method::from_bytes(made_up.as_bytes())?;
        let resp = app
            .json_request(method, "/v1/auth/register", &serde_json::json!({}), None)
            .await?;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
    let ready = app.get("/readyz", None).await?;
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await?;
    assert_eq!(ready["database"], "ok");
    let expected_redis = if backend == Backend::Redis {
        "ok"
    } else {
        "not configured"
    };
    assert_eq!(ready["redis"], expected_redis);

    let metrics = app.get("/metrics", None).await?.text().await?;
    assert!(
        metrics.contains(
            r#"kith_http_requests_total{method="POST",route="/v1/auth/register",status="201"} 2"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("kith_http_request_duration_seconds_bucket"));
    assert!(
        metrics.contains(
            r#"kith_http_requests_total{method="other",route="/v1/auth/register",status="405"} 2"#
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("FROB"), "{metrics}");
    // Every send is timed from the writer's queue to its commit.
    assert!(
        metrics.contains("\nkith_message_store_seconds_count{} 3\n"),
        "{metrics}"
    );
    assert!(metrics.contains(r#"kith_message_store_seconds_bucket{le="+Inf"} 3"#));
    for gauge in [
        "kith_websockets_open",
        "kith_fanout_queue_depth",
        "kith_longpoll_waiters",
        "kith_presence_online",
    ] {
        assert!(metrics.contains(gauge), "{gauge} missing");
    }
    // The node's own tasks (its workers, the server loop) are alive, so the count is not 0.
    let tasks: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kith_runtime_tasks_alive "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    assert!(tasks > 0, "kith_runtime_tasks_alive: {tasks}");

    let doc: Value = app.get("/v1/openapi.json", None).await?.json().await?;
    assert!(doc["openapi"]
        .as_str()
        .unwrap_or_default()
        .starts_with("3."));
    for path in [
        "/v1/auth/register",
        "/v1/auth/login",
        "/v1/auth/logout",
        "/v1/me",
        "/v1/users/{username}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"].get("User").is_some());
    assert!(doc["components"]["schemas"].get("Post").is_some());
    Ok(())
}

/// Every API error has the API's JSON shape, including those no handler wrote: an unknown
/// path, a known path with the wrong method (with `Allow`), a path that does not decode.
/// Pages outside the API keep their HTML.
async fn api_errors_are_json_even_without_a_handler(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let user = app.register("json_errors").await?;
    let unknown = app.get("/v1/chat/nowhere", Some(&user.token)).await?;
    assert_error(unknown, 404, "not_found").await?;
    let wrong_method = app
        .client
        .put(app.url("/v1/chat/channels/1/messages"))
        .bearer_auth(&user.token)
        .send()
        .await?;
    let allow = wrong_method
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(allow.contains("POST"), "Allow: {allow}");
    assert_error(wrong_method, 405, "method_not_allowed").await?;
    let undecodable = app.get("/v1/users/%FF%FE/posts", Some(&user.token)).await?;
    assert_error(undecodable, 400, "invalid_request").await?;
    let page = app.get("/nowhere", None).await?;
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert!(page
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html")));
    Ok(())
}

both_backends!(
    api_errors_are_json_even_without_a_handler,
    ui_sign_in_sets_an_http_only_session_cookie,
    cookie_authenticated_writes_need_origin_and_csrf_token,
    pages_carry_security_headers_and_a_matching_nonce,
    bearer_clients_get_no_csrf_cookie,
    operational_endpoints_answer,
);
