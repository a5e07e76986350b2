//! Crash consistency: the server process is killed with SIGKILL at random moments while
//! chat messages and posts are being sent (SQLite, `synchronous = FULL`), and started
//! again, many times over. Every acknowledged write must be there exactly once, each
//! channel's `seq`s without a gap, and every post's fanout (its outbox job) must finish.
//! Sends cut off by a kill are in doubt and are retried with the same idempotency key
//! after the restart, as a client would.

use anyhow::{anyhow, ensure, Context as _, Result};
use rand::Rng as _;
use serde_json::{json, Value};
use std::{
    collections::BTreeMap,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// Kills in one run (`KITH_CRASH_ROUNDS` overrides it).
const ROUNDS: usize = 50;

/// The server binary on a fixed port and one SQLite file, started and killed at will.
struct Process {
    port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Process {
    fn new(dir: &Path) -> Result<Self> {
        // A free port, kept across restarts so that clients find the server again.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let env = [
            ("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}")),
            (
                "KITH_DATABASE_URL",
                format!("sqlite://{}", dir.join("kith.db").display()),
            ),
            ("KITH_SQLITE_SYNCHRONOUS", "FULL".to_string()),
            ("KITH_CHAT_SEND_RATE_PER_SEC", "100000".to_string()),
            ("KITH_POST_RATE_PER_MIN", "100000".to_string()),
            ("RUST_LOG", "error".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Ok(Self {
            port,
            env,
            child: None,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn start(&mut self, http: &reqwest::Client) -> Result<()> {
        let child = Command::new(env!("CARGO_BIN_EXE_server"))
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the server")?;
        self.child = Some(child);
        for _ in 0..600 {
            if let Ok(r) = http.get(self.url("/readyz")).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(anyhow!("the server exited at start: {status}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(anyhow!("the server was not ready within 30 s"))
    }

    /// SIGKILL: no shutdown of any kind.
    fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// What the clients know: acknowledged writes and those in doubt (cut off by a kill).
#[derive(Default)]
struct Ledger {
    /// client_msg_id → (message id, seq) as acknowledged.
    messages: BTreeMap<String, (String, i64)>,
    /// Idempotency-Key → post id as acknowledged.
    posts: BTreeMap<String, String>,
    message_in_doubt: Option<String>,
    post_in_doubt: Option<String>,
    next: usize,
}

struct Session {
    token: String,
    channel: String,
}

async fn send_message(
    http: &reqwest::Client,
    base: &str,
    me: &Session,
    key: String,
) -> Result<Option<(String, i64)>> {
    let sent = http
        .post(format!("{base}/v1/chat/channels/{}/messages", me.channel))
        .bearer_auth(&me.token)
        .json(&json!({"content": format!("message {key}"), "client_msg_id": key}))
        .send()
        .await;
    let Ok(resp) = sent else { return Ok(None) };
    if resp.status() != 201 {
        return Ok(None);
    }
    let Ok(body) = resp.json::<Value>().await else {
        return Ok(None);
    };
    let id = body["id"].as_str().context("message id")?.to_string();
    Ok(Some((id, body["seq"].as_i64().context("seq")?)))
}

async fn send_post(
    http: &reqwest::Client,
    base: &str,
    me: &Session,
    key: String,
) -> Result<Option<String>> {
    let sent = http
        .post(format!("{base}/v1/me/feed"))
        .bearer_auth(&me.token)
        .header("idempotency-key", &key)
        .json(&json!({"content": format!("post {key}")}))
        .send()
        .await;
    let Ok(resp) = sent else { return Ok(None) };
    if resp.status() != 201 {
        return Ok(None);
    }
    let Ok(body) = resp.json::<Value>().await else {
        return Ok(None);
    };
    Ok(Some(body["id"].as_str().context("post id")?.to_string()))
}

/// Sends messages and posts, one at a time, until the server goes away; the write cut off
/// stays in doubt, and one left in doubt by an earlier round is retried first.
async fn traffic(
    http: &reqwest::Client,
    base: &str,
    me: &Session,
    ledger: &mut Ledger,
) -> Result<()> {
    loop {
        let next = &mut ledger.next;
        let fresh = || {
            *next += 1;
            format!("m{next}")
        };
        let sent = one_write(
            &mut ledger.message_in_doubt,
            fresh,
            &mut ledger.messages,
            |key| send_message(http, base, me, key),
        );
        if !sent.await? {
            return Ok(());
        }
        let fresh = || format!("p{}", ledger.next);
        let sent = one_write(&mut ledger.post_in_doubt, fresh, &mut ledger.posts, |key| {
            send_post(http, base, me, key)
        });
        if !sent.await? {
            return Ok(());
        }
    }
}

/// One write under an idempotency key: the key left in doubt by an earlier attempt, or a
/// `fresh` one. The key is in doubt from the moment the write is sent until its answer is
/// read (the kill, or the round's end, which drops this future, may come in between); an
/// answer is recorded in `acked` and must match any earlier one for the same key. `false`
/// when the write got no answer.
async fn one_write<T, Fut>(
    in_doubt: &mut Option<String>,
    fresh: impl FnOnce() -> String,
    acked: &mut BTreeMap<String, T>,
    send: impl FnOnce(String) -> Fut,
) -> Result<bool>
where
    T: PartialEq + Clone + std::fmt::Debug,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let key = in_doubt.get_or_insert_with(fresh).clone();
    let Some(answer) = send(key.clone()).await? else {
        return Ok(false);
    };
    if let Some(earlier) = acked.insert(key.clone(), answer.clone()) {
        ensure!(
            earlier == answer,
            "{key} acknowledged as {earlier:?}, then {answer:?}"
        );
    }
    *in_doubt = None;
    Ok(true)
}

async fn json_of(resp: reqwest::Response) -> Result<Value> {
    let status = resp.status();
    let body: Value = resp.json().await?;
    ensure!(status.is_success(), "{status}: {body}");
    Ok(body)
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_exactly_once() -> Result<()> {
    let rounds = std::env::var("KITH_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS);
    let dir = tempfile::tempdir()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut server = Process::new(dir.path())?;
    server.start(&http).await?;

    let register = |name: &'static str| {
        let (http, url) = (http.clone(), server.url("/v1/auth/register"));
        async move {
            json_of(
                http.post(url)
                    .json(&json!({"username": name, "password": "crash test password"}))
                    .send()
                    .await?,
            )
            .await
        }
    };
    let ann = register("ann_crash").await?;
    let bob = register("bob_crash").await?;
    let (ann_token, bob_token) = (
        ann["token"].as_str().context("token")?.to_string(),
        bob["token"].as_str().context("token")?.to_string(),
    );
    let follow = http
        .put(server.url("/v1/me/following/ann_crash"))
        .bearer_auth(&bob_token)
        .send()
        .await?;
    ensure!(follow.status() == 204, "follow: {}", follow.status());
    let dm = json_of(
        http.post(server.url("/v1/chat/dm/bob_crash"))
            .bearer_auth(&ann_token)
            .send()
            .await?,
    )
    .await?;
    let me = Session {
        token: ann_token,
        channel: dm["id"].as_str().context("channel id")?.to_string(),
    };

    let mut ledger = Ledger::default();
    for _ in 0..rounds {
        let lifetime = Duration::from_millis(rand::thread_rng().gen_range(20..400));
        // The kill comes while the clients wait for an answer; they see the connection
        // fail and leave that write in doubt.
        let base = server.base();
        let clients = traffic(&http, &base, &me, &mut ledger);
        tokio::pin!(clients);
        tokio::select! {
            finished = &mut clients => finished?,
            () = tokio::time::sleep(lifetime) => {}
        }
        server.kill()?;
        tokio::time::timeout(Duration::from_secs(15), clients)
            .await
            .context("the clients did not notice the kill")??;
        server.start(&http).await?;
    }
    // The last writes in doubt go through now.
    traffic_once(&http, &server.base(), &me, &mut ledger).await?;

    // Every acknowledged message once, at its acknowledged id and seq, seqs 1..=n.
    let mut stored: Vec<Value> = Vec::new();
    let mut after = "0".to_string();
    loop {
        let page = json_of(
            http.get(server.url(&format!(
                "/v1/chat/channels/{}/messages?after={after}&limit=100",
                me.channel
            )))
            .bearer_auth(&bob_token)
            .send()
            .await?,
        )
        .await?;
        let items = page["items"].as_array().context("items")?.clone();
        let Some(last) = items.last() else { break };
        after = last["id"].as_str().context("id")?.to_string();
        stored.extend(items);
    }
    let seqs: Vec<i64> = stored.iter().filter_map(|m| m["seq"].as_i64()).collect();
    ensure!(
        seqs == (1..=stored.len() as i64).collect::<Vec<_>>(),
        "seqs with a gap or a repeat: {seqs:?}"
    );
    let mut by_key: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for m in &stored {
        let key = m["client_msg_id"]
            .as_str()
            .context("client_msg_id")?
            .to_string();
        let at = (
            m["id"].as_str().context("id")?.to_string(),
            m["seq"].as_i64().context("seq")?,
        );
        ensure!(
            by_key.insert(key.clone(), at).is_none(),
            "{key} stored twice"
        );
    }
    for (key, acked) in &ledger.messages {
        ensure!(
            by_key.get(key) == Some(acked),
            "acknowledged {key} {acked:?} is not stored as such"
        );
    }
    ensure!(
        by_key.len() == ledger.messages.len(),
        "{} messages stored, {} acknowledged (nothing is left in doubt)",
        by_key.len(),
        ledger.messages.len()
    );

    // Every acknowledged post once in the author's posts, and in the follower's feed once
    // its fanout finished.
    let posts: Vec<&String> = ledger.posts.values().collect();
    let mut feed_complete = false;
    for _ in 0..200 {
        let feed = whole_feed(&http, &server, &bob_token).await?;
        ensure!(
            feed.len() == feed.iter().collect::<std::collections::BTreeSet<_>>().len(),
            "a post twice in the feed"
        );
        if posts.iter().all(|p| feed.contains(p)) && feed.len() == posts.len() {
            feed_complete = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(
        feed_complete,
        "the follower's feed lacks acknowledged posts or holds others"
    );
    eprintln!(
        "{rounds} kills: {} messages and {} posts acknowledged, all stored once",
        ledger.messages.len(),
        ledger.posts.len()
    );
    ensure!(!ledger.messages.is_empty() && !ledger.posts.is_empty());
    Ok(())
}

/// Retries whatever is in doubt, once the server is up for good.
async fn traffic_once(
    http: &reqwest::Client,
    base: &str,
    me: &Session,
    ledger: &mut Ledger,
) -> Result<()> {
    if ledger.message_in_doubt.is_some() {
        let answered = one_write(
            &mut ledger.message_in_doubt,
            String::new,
            &mut ledger.messages,
            |key| send_message(http, base, me, key),
        );
        ensure!(answered.await?, "the message left in doubt got no answer");
    }
    if ledger.post_in_doubt.is_some() {
        let answered = one_write(
            &mut ledger.post_in_doubt,
            String::new,
            &mut ledger.posts,
            |key| send_post(http, base, me, key),
        );
        ensure!(answered.await?, "the post left in doubt got no answer");
    }
    Ok(())
}

async fn whole_feed(http: &reqwest::Client, server: &Process, token: &str) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = server.url("/v1/me/feed?limit=100");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = json_of(http.get(url).bearer_auth(token).send().await?).await?;
        for post in page["items"].as_array().context("items")? {
            ids.push(post["id"].as_str().context("post id")?.to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return Ok(ids),
        }
    }
}
