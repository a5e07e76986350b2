//! What the fuzz targets share: one Kith node per process, built on the first input, on a
//! SQLite file of its own and the in-process backends, with three users, a group with a
//! message in it and a post to aim requests at.
//!
//! The node is the real one (`startup::router` and `chat::ws::serve`), so an input travels
//! the path a client's request or frame travels: middleware, extractors, handlers, the
//! store. Limits that would turn most inputs into 429s are lifted.

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{header, Method, Request, StatusCode},
    Router,
};
use http_body_util::BodyExt;
use kith::{config::Config, startup, state::AppState};
use serde_json::{json, Value};
use std::{collections::HashMap, net::SocketAddr, sync::OnceLock};
use tower::ServiceExt;

pub mod api;
pub mod frames;
pub mod values;

/// A signed-in user of the fuzzed node.
pub struct Account {
    pub username: String,
    pub token: String,
    pub user: app::model::User,
}

/// The node and what it holds.
pub struct Harness {
    pub runtime: tokio::runtime::Runtime,
    pub state: AppState,
    pub router: Router,
    /// Owns the group, the message and the post.
    pub alice: Account,
    /// A member of the group.
    pub bob: Account,
    /// A member of the group whom requests may remove.
    pub carol: Account,
    pub group: String,
    pub message: String,
    pub post: String,
    /// The built node, never served: dropping it would tell its connections that it is
    /// shutting down.
    _node: startup::Application,
    _dir: tempfile::TempDir,
}

/// What a request got back.
pub struct Answer {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// The node, built once per process.
pub fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| match Harness::build() {
        Ok(h) => h,
        Err(e) => panic!("the fuzzed node did not start: {e}"),
    })
}

impl Harness {
    fn build() -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut env: HashMap<&str, String> = HashMap::new();
        env.insert("LEPTOS_SITE_ADDR", "127.0.0.1:0".into());
        env.insert(
            "KITH_DATABASE_URL",
            format!("sqlite://{}/kith.db", dir.path().display()),
        );
        env.insert(
            "KITH_MEDIA_DIR",
            dir.path().join("media").display().to_string(),
        );
        // Fuzzing looks for wrong answers, not lost power: no fsync per commit.
        env.insert("KITH_SQLITE_SYNCHRONOUS", "NORMAL".into());
        env.insert("KITH_ALLOWED_ORIGINS", "http://kith.test".into());
        for var in [
            "KITH_SIGNUP_RATE_PER_HOUR",
            "KITH_POST_RATE_PER_MIN",
            "KITH_CHAT_SEND_RATE_PER_SEC",
            "KITH_WS_CONNECT_RATE_PER_MIN",
            "KITH_GROUP_CREATE_RATE_PER_HOUR",
            "KITH_MEDIA_UPLOADS_PER_DAY",
        ] {
            env.insert(var, "1000000".into());
        }
        let config = Config::from_lookup(|k| env.get(k).cloned()).map_err(|e| e.to_string())?;
        let fixtures = runtime.block_on(async move {
            let node = startup::Application::build(config)
                .await
                .map_err(|e| e.to_string())?;
            let state = node.state().clone();
            let router = startup::router(state.clone());
            let mut partial = Partial {
                router,
                state,
                node,
            };
            let alice = partial.register("fz_alice").await?;
            let bob = partial.register("fz_bob").await?;
            let carol = partial.register("fz_carol").await?;
            let group = partial
                .created(
                    "/v1/chat/groups",
                    &alice.token,
                    json!({"name": "fuzz", "members": ["fz_bob", "fz_carol"]}),
                )
                .await?;
            let message = partial
                .created(
                    &format!("/v1/chat/channels/{group}/messages"),
                    &alice.token,
                    json!({"content": "first", "client_msg_id": "fz-0"}),
                )
                .await?;
            let post = partial
                .created("/v1/me/feed", &alice.token, json!({"content": "a post"}))
                .await?;
            Ok::<_, String>((partial, [alice, bob, carol], [group, message, post]))
        })?;
        let (
            Partial {
                router,
                state,
                node,
            },
            [alice, bob, carol],
            [group, message, post],
        ) = fixtures;
        Ok(Harness {
            // The node's tasks live on this runtime: they run whenever an input does.
            runtime,
            state,
            router,
            alice,
            bob,
            carol,
            group,
            message,
            post,
            _node: node,
            _dir: dir,
        })
    }

    /// Sends one request through the node's router, from a fixed client address.
    pub async fn call(&self, request: Request<Body>) -> Answer {
        call(&self.router, request).await
    }
}

/// The node while the fixtures are made.
struct Partial {
    router: Router,
    state: AppState,
    node: startup::Application,
}

impl Partial {
    async fn register(&mut self, username: &str) -> Result<Account, String> {
        let body = json!({"username": username, "password": format!("pw-{username}-secret")});
        let answer = call(
            &self.router,
            json_request(Method::POST, "/v1/auth/register", None, &body)?,
        )
        .await;
        let value = expect(answer, StatusCode::CREATED, "register")?;
        let token = value["token"].as_str().unwrap_or_default().to_string();
        let user = kith::auth::service::authenticate(&self.state, &token)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the new session is not valid")?;
        Ok(Account {
            username: username.to_string(),
            token,
            user,
        })
    }

    /// POSTs `body` and returns the new resource's id.
    async fn created(&mut self, path: &str, token: &str, body: Value) -> Result<String, String> {
        let answer = call(
            &self.router,
            json_request(Method::POST, path, Some(token), &body)?,
        )
        .await;
        let value = expect(answer, StatusCode::CREATED, path)?;
        value["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{path}: no id in {value}"))
    }
}

fn json_request(
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> Result<Request<Body>, String> {
    request(method, path, token, body.to_string().into_bytes())
}

/// A request with a JSON content type.
pub fn request(
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> Result<Request<Body>, String> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(Body::from(body)).map_err(|e| e.to_string())
}

async fn call(router: &Router, mut request: Request<Body>) -> Answer {
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let response = match router.clone().oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match response.into_body().collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(e) => panic!("the response body failed: {e}"),
    };
    Answer {
        status,
        content_type,
        body,
    }
}

fn expect(answer: Answer, status: StatusCode, what: &str) -> Result<Value, String> {
    if answer.status != status {
        return Err(format!(
            "{what}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        ));
    }
    serde_json::from_slice(&answer.body).map_err(|e| format!("{what}: {e}"))
}

/// Whether to print what each input did (`KITH_FUZZ_TRACE=1`, when replaying one input).
pub fn tracing() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("KITH_FUZZ_TRACE").is_some())
}

/// Checks what every API answer must be (API.md "Errors"): no server error, and every
/// 4xx a JSON body `{"error": {"code", "message"}}`.
pub fn check_api_answer(what: &str, answer: &Answer) {
    if tracing() {
        eprintln!(
            "{what} -> {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    assert!(
        !answer.status.is_server_error(),
        "{what}: server error {} {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    if answer.status.is_client_error() {
        assert!(
            answer
                .content_type
                .as_deref()
                .is_some_and(|t| t.starts_with("application/json")),
            "{what}: {} without a JSON body",
            answer.status
        );
        let value: Value = match serde_json::from_slice(&answer.body) {
            Ok(v) => v,
            Err(e) => panic!(
                "{what}: {} with a body that is not JSON: {e}",
                answer.status
            ),
        };
        assert!(
            value["error"]["code"].is_string() && value["error"]["message"].is_string(),
            "{what}: {} with an error body out of shape: {value}",
            answer.status
        );
    }
}

impl Harness {
    /// The input with `$G`, `$M` and `$P` replaced by the group's, the message's and the
    /// post's ids: ids are random per run, and inputs need to name real ones to get past
    /// "not found".
    pub fn expand(&self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() + 32);
        let mut rest = input;
        while let Some(at) = rest.iter().position(|b| *b == b'$') {
            out.extend_from_slice(&rest[..at]);
            let id = match rest.get(at + 1) {
                Some(b'G') => Some(&self.group),
                Some(b'M') => Some(&self.message),
                Some(b'P') => Some(&self.post),
                _ => None,
            };
            match id {
                Some(id) => {
                    out.extend_from_slice(id.as_bytes());
                    rest = &rest[at + 2..];
                }
                None => {
                    out.push(b'$');
                    rest = &rest[at + 1..];
                }
            }
        }
        out.extend_from_slice(rest);
        out
    }
}
