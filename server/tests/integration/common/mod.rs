//! Test harness: a real Kith node on port 0 with a database of its own, on the embedded
//! backends or on the machine's Redis (under a namespace of its own).
//!
//! The database is a fresh SQLite file, or, when `KITH_TEST_DATABASE_URL` names a
//! PostgreSQL database, a fresh schema in it (`scripts/test.sh` runs the suite once each
//! way), so every test runs on {SQLite, PostgreSQL} × {in-process, Redis}.

pub mod gate;
pub mod hosts;
pub mod live;
pub mod traffic;

use anyhow::{anyhow, Result};
use kith::{
    config::Config,
    startup::Application,
    state::{AppState, Clock, ManualClock, SystemClock},
};
use reqwest::{header, Response, StatusCode};
use serde_json::{json, Value};
use std::{collections::HashMap, sync::Arc};

/// The origin tests pretend the site is served from.
pub const ORIGIN: &str = "http://kith.test";

/// Which shared-state backend a test node uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Redis,
}

/// Runs one async test body against both backends; the Redis run is skipped (with a note)
/// when `KITH_TEST_REDIS_URL` is unset.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() -> anyhow::Result<()> {
                    super::$name($crate::common::Backend::Memory).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $name() -> anyhow::Result<()> {
                    if !$crate::common::redis_available() {
                        eprintln!("skipped: KITH_TEST_REDIS_URL is not set");
                        return Ok(());
                    }
                    super::$name($crate::common::Backend::Redis).await
                }
            )*
        }
    };
}

pub fn redis_available() -> bool {
    std::env::var("KITH_TEST_REDIS_URL").is_ok_and(|v| !v.is_empty())
}

pub fn redis_url() -> String {
    std::env::var("KITH_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The node's near cache of Redis entries, if it runs one.
/// Cuts one Redis client's connection (`CLIENT KILL ID`), as a network fault would.
pub async fn kill_redis_client(id: i64) -> Result<()> {
    let mut admin = ::redis::Client::open(redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    let () = ::redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(&mut admin)
        .await?;
    Ok(())
}

pub fn near_cache(backends: &kith::backend::Backends) -> Option<&kith::backend::near::NearCache> {
    backends.redis.as_ref().and_then(|r| r.near())
}

/// Reads the node's near cache answered from memory (0 without one).
pub fn near_hits(backends: &kith::backend::Backends) -> u64 {
    near_cache(backends).map_or(0, |n| {
        n.stats().hits.load(std::sync::atomic::Ordering::Relaxed)
    })
}

/// A fresh key prefix, so concurrent tests sharing one Redis never see each other's keys.
pub fn unique_namespace() -> String {
    format!("kith-test-{:016x}", rand_u64())
}

/// The PostgreSQL database the suite runs on, if any (`KITH_TEST_DATABASE_URL`).
pub fn postgres_url() -> Option<String> {
    std::env::var("KITH_TEST_DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres:") || url.starts_with("postgresql:"))
}

/// A fresh database for one test: a new schema in the suite's PostgreSQL database (its
/// URL selects the schema), or a SQLite file in `dir`.
pub async fn fresh_database(dir: &std::path::Path, name: &str) -> Result<String> {
    let Some(url) = postgres_url() else {
        return Ok(format!("sqlite://{}/{name}.db", dir.display()));
    };
    let schema = format!("t_{:016x}", rand_u64());
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await?;
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{separator}options[search_path]={schema}"))
}

/// Nodes of one cluster: a shared database and Redis namespace, for tests where one
/// node dies and another carries on.
pub struct Cluster {
    _dir: tempfile::TempDir,
    namespace: String,
    database_url: String,
}

impl Cluster {
    pub async fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let database_url = fresh_database(dir.path(), "shared").await?;
        Ok(Self {
            _dir: dir,
            namespace: unique_namespace(),
            database_url,
        })
    }

    /// The cluster's Redis namespace (the prefix of its keys).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A node of the cluster with `workers` background workers per outbox (0: jobs stay in
    /// the outboxes, as a crash would leave them).
    pub fn node(&self, workers: usize) -> Options {
        Options {
            env: vec![("KITH_FANOUT_WORKERS", workers.to_string())],
            namespace: Some(self.namespace.clone()),
            database_url: Some(self.database_url.clone()),
            ..Default::default()
        }
    }
}

pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

/// A running node and a client for it.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub state: AppState,
    pub client: reqwest::Client,
    pub clock: Option<Arc<ManualClock>>,
    _dir: tempfile::TempDir,
}

/// Options for [`spawn_with`].
#[derive(Default)]
pub struct Options {
    pub manual_clock: bool,
    pub env: Vec<(&'static str, String)>,
    /// Share this Redis namespace (several nodes of one cluster).
    pub namespace: Option<String>,
    /// Share this database (several nodes of one cluster).
    pub database_url: Option<String>,
    /// Run on SQLite whatever the suite's database (tests of SQLite's own upkeep).
    pub sqlite: bool,
    /// Stops the node (graceful shutdown) when this fires.
    pub stop: Option<tokio::sync::oneshot::Receiver<()>>,
}

pub async fn spawn_app(backend: Backend) -> Result<TestApp> {
    spawn_with(backend, Options::default()).await
}

pub async fn spawn_with(backend: Backend, options: Options) -> Result<TestApp> {
    let dir = tempfile::tempdir()?;
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("LEPTOS_SITE_ADDR".into(), "127.0.0.1:0".into());
    let database_url = match (&options.database_url, options.sqlite) {
        (Some(url), _) => url.clone(),
        (None, true) => format!("sqlite://{}/kith.db", dir.path().display()),
        (None, false) => fresh_database(dir.path(), "kith").await?,
    };
    env.insert("KITH_DATABASE_URL".into(), database_url.clone());
    env.insert("KITH_ALLOWED_ORIGINS".into(), ORIGIN.into());
    // NORMAL keeps tests fast; durability settings are not what these tests check.
    env.insert("KITH_SQLITE_SYNCHRONOUS".into(), "NORMAL".into());
    // Media files beside a SQLite database; on PostgreSQL they go in the database (its
    // default), so the suite runs both blob stores.
    if database_url.starts_with("sqlite:") {
        env.insert(
            "KITH_MEDIA_DIR".into(),
            dir.path().join("media").display().to_string(),
        );
    }
    if backend == Backend::Redis {
        env.insert("KITH_REDIS_URL".into(), redis_url());
        env.insert(
            "KITH_REDIS_NAMESPACE".into(),
            options.namespace.clone().unwrap_or_else(unique_namespace),
        );
    }
    for (k, v) in &options.env {
        env.insert((*k).to_string(), v.clone());
    }
    let config = Config::from_lookup(|k| env.get(k).cloned()).map_err(|e| anyhow!("{e}"))?;
    let manual = options
        .manual_clock
        .then(|| Arc::new(ManualClock::new(kith::storage::now_ms())));
    let clock: Arc<dyn Clock> = match &manual {
        Some(c) => c.clone(),
        None => Arc::new(SystemClock),
    };
    let app = Application::build_with_clock(config, clock).await?;
    let port = app.port();
    let state = app.state().clone();
    match options.stop {
        Some(stop) => {
            tokio::spawn(app.run_until(async move {
                let _ = stop.await;
            }));
        }
        None => {
            tokio::spawn(app.run_until(std::future::pending()));
        }
    }
    Ok(TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        state,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A request that never answers fails its test instead of stalling the suite.
            .timeout(std::time::Duration::from_secs(30))
            .build()?,
        clock: manual,
        _dir: dir,
    })
}

/// A registered user and their token.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: String,
    pub username: String,
    pub password: String,
    pub token: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<Response> {
        self.json_request(reqwest::Method::POST, path, body, token)
            .await
    }

    /// `method path` with a JSON body, signed in with `token` when one is given.
    pub async fn json_request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<Response> {
        let mut req = self.client.request(method, self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Ok(req.send().await?)
    }

    /// `DELETE path` as `user`.
    pub async fn delete_as(&self, user: &TestUser, path: &str) -> Result<Response> {
        Ok(self
            .client
            .delete(self.url(path))
            .bearer_auth(&user.token)
            .send()
            .await?)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Result<Response> {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Ok(req.send().await?)
    }

    pub async fn register(&self, username: &str) -> Result<TestUser> {
        let password = format!("pw-{username}-secret");
        let resp = self
            .post_json(
                "/v1/auth/register",
                &json!({"username": username, "password": password}),
                None,
            )
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(anyhow!(
                "register {username}: {} {}",
                resp.status(),
                resp.text().await?
            ));
        }
        let body: Value = resp.json().await?;
        Ok(TestUser {
            id: body["user"]["id"].as_str().unwrap_or_default().to_string(),
            username: username.to_string(),
            password,
            token: body["token"].as_str().unwrap_or_default().to_string(),
        })
    }
}

impl TestApp {
    pub async fn post_as(&self, user: &TestUser, content: &str) -> Result<Value> {
        let resp = self
            .post_json(
                "/v1/me/feed",
                &json!({"content": content}),
                Some(&user.token),
            )
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(anyhow!("post: {} {}", resp.status(), resp.text().await?));
        }
        Ok(resp.json().await?)
    }

    pub async fn follow(&self, follower: &TestUser, followee: &str) -> Result<()> {
        let resp = self
            .client
            .put(self.url(&format!("/v1/me/following/{followee}")))
            .bearer_auth(&follower.token)
            .send()
            .await?;
        if resp.status() != StatusCode::NO_CONTENT {
            return Err(anyhow!("follow: {} {}", resp.status(), resp.text().await?));
        }
        Ok(())
    }

    /// Waits until every fanout and notification job has been processed (both outboxes
    /// empty). Polls a condition; it does not sleep for a fixed time.
    pub async fn settle(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let pending = self.state.store.outbox.pending().await?;
            if pending == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(anyhow!("{pending} fanout jobs still pending"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Every post id of `user`'s feed, paging with `limit`.
    pub async fn whole_feed(&self, user: &TestUser, limit: usize) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/me/feed?limit={limit}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page: Value = self.get(&path, Some(&user.token)).await?.json().await?;
            for item in page["items"]
                .as_array()
                .ok_or_else(|| anyhow!("no items: {page}"))?
            {
                ids.push(item["id"].as_str().unwrap_or_default().to_string());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return Ok(ids),
            }
        }
    }
}

/// Asserts an error answer: status, `{"error": {"code", "message"}}` shape and code.
/// Returns the message.
pub async fn assert_error(resp: Response, status: u16, code: &str) -> Result<String> {
    let got = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = resp.text().await?;
    assert_eq!(got, status, "status (body: {text})");
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type}"
    );
    let body: Value = serde_json::from_str(&text)?;
    assert_eq!(body["error"]["code"], code, "code (body: {text})");
    let message = body["error"]["message"]
        .as_str()
        .ok_or_else(|| anyhow!("no message in {text}"))?;
    assert!(!message.is_empty());
    Ok(message.to_string())
}
