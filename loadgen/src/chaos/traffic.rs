//! The writing side of the chaos run, all through the balancer: chat senders and feed
//! authors that send one thing at a time and retry it with the same key
//! (`client_msg_id`, `Idempotency-Key`) until it is acknowledged; feed readers; and the
//! final check that every acknowledged post reached every follower's feed.

use super::{
    checker::Msg,
    devices::{backoff, request_error},
    population::{id_of, User},
    Phase,
};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::{
    collections::{BTreeMap, HashSet},
    time::{Duration, Instant},
};
use tokio::sync::watch;

/// Attempts per message or post before it counts as failed: with the backoff capped at
/// 2 s, about 30 s, far longer than a node takes to restart.
const MAX_ATTEMPTS: u32 = 20;
/// Pause between a sender's acknowledged message and its next one.
const SEND_GAP: Duration = Duration::from_millis(20);
/// Pause between an author's posts.
const POST_GAP: Duration = Duration::from_millis(250);
/// Pause between a follower's feed reads.
const READ_GAP: Duration = Duration::from_millis(500);
/// How long a post may take to reach every follower's feed once the traffic stopped
/// (the API promises a second; the rest is room for a restarted node's fanout workers).
const FEED_DEADLINE: Duration = Duration::from_secs(15);

/// What a writer (sender or author) brings back.
#[derive(Debug, Default)]
pub struct Writes {
    /// The writer's user id.
    pub user: i64,
    /// Keys sent at least once.
    pub attempted: Vec<String>,
    /// What was acknowledged, with the run time (ms) of the acknowledgement.
    pub acknowledged: Vec<(Msg, u64)>,
    /// Post ids acknowledged (authors only).
    pub posts: Vec<i64>,
    /// Requests sent again after a failure.
    pub retries: u64,
    /// Messages or posts given up after `MAX_ATTEMPTS`.
    pub failed: u64,
    /// Why attempts failed.
    pub errors: BTreeMap<String, u64>,
}

/// What to send, to whom, and how to read the acknowledgement.
struct Write<'a> {
    url: String,
    token: &'a str,
    body: Value,
    /// For posts: the `Idempotency-Key` header.
    idempotency_key: Option<&'a str>,
}

/// Sends `write` until it is acknowledged (201); `None` after `MAX_ATTEMPTS`.
async fn until_acknowledged(http: &Client, write: &Write<'_>, out: &mut Writes) -> Option<Value> {
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            out.retries += 1;
            tokio::time::sleep(backoff(attempt - 1)).await;
        }
        let mut request = http
            .post(&write.url)
            .bearer_auth(write.token)
            .json(&write.body);
        if let Some(key) = write.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let why = match request.send().await {
            Ok(resp) if resp.status() == StatusCode::CREATED => match resp.json().await {
                Ok(body) => return Some(body),
                Err(e) => request_error(&e),
            },
            Ok(resp) => format!("HTTP {}", resp.status().as_u16()),
            Err(e) => request_error(&e),
        };
        *out.errors.entry(why).or_default() += 1;
    }
    out.failed += 1;
    None
}

/// One chat sender in one channel, one message at a time, until the traffic stops.
pub async fn sender(
    http: Client,
    base: String,
    user: User,
    channel: i64,
    phase: watch::Receiver<Phase>,
    clock: Instant,
) -> Writes {
    let mut out = Writes {
        user: user.id,
        ..Writes::default()
    };
    let url = format!("{base}/v1/chat/channels/{channel}/messages");
    let mut n = 0_u64;
    while *phase.borrow() == Phase::Traffic {
        let client_msg_id = format!("{}-{n}", user.name);
        n += 1;
        out.attempted.push(client_msg_id.clone());
        let write = Write {
            url: url.clone(),
            token: &user.token,
            body: json!({"content": format!("chaos {client_msg_id}"), "client_msg_id": client_msg_id}),
            idempotency_key: None,
        };
        if let Some(body) = until_acknowledged(&http, &write, &mut out).await {
            match Msg::parse(&body) {
                Some(msg) => out.acknowledged.push((msg, ms_since(clock))),
                None => *out.errors.entry("unreadable 201".into()).or_default() += 1,
            }
        }
        tokio::time::sleep(SEND_GAP).await;
    }
    out
}

/// One feed author, one post at a time, until the traffic stops.
pub async fn author(
    http: Client,
    base: String,
    user: User,
    phase: watch::Receiver<Phase>,
) -> Writes {
    let mut out = Writes {
        user: user.id,
        ..Writes::default()
    };
    let url = format!("{base}/v1/me/feed");
    let mut n = 0_u64;
    while *phase.borrow() == Phase::Traffic {
        let key = format!("{}-{n}", user.name);
        n += 1;
        out.attempted.push(key.clone());
        let write = Write {
            url: url.clone(),
            token: &user.token,
            body: json!({"content": format!("chaos post {key}")}),
            idempotency_key: Some(&key),
        };
        if let Some(body) = until_acknowledged(&http, &write, &mut out).await {
            match id_of(&body["id"], "post id") {
                Ok(id) => out.posts.push(id),
                Err(_) => *out.errors.entry("unreadable 201".into()).or_default() += 1,
            }
        }
        tokio::time::sleep(POST_GAP).await;
    }
    out
}

/// What a follower's reads during the run came to.
#[derive(Debug, Default)]
pub struct Reads {
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
}

/// A follower reading the first page of their feed until the traffic stops.
pub async fn reader(
    http: Client,
    base: String,
    user: User,
    phase: watch::Receiver<Phase>,
) -> Reads {
    let mut out = Reads::default();
    let url = format!("{base}/v1/me/feed");
    while *phase.borrow() == Phase::Traffic {
        let answer = http
            .get(&url)
            .query(&[("limit", "20")])
            .bearer_auth(&user.token)
            .send()
            .await;
        match answer {
            Ok(resp) if resp.status() == StatusCode::OK => out.ok += 1,
            Ok(resp) => {
                *out.errors
                    .entry(format!("HTTP {}", resp.status().as_u16()))
                    .or_default() += 1
            }
            Err(e) => *out.errors.entry(request_error(&e)).or_default() += 1,
        }
        tokio::time::sleep(READ_GAP).await;
    }
    out
}

/// After the traffic: how many of `posts` each follower's feed lacks, asked again until
/// none is missing or `FEED_DEADLINE` passed.
pub async fn missing_from_feeds(
    http: &Client,
    base: &str,
    followers: &[User],
    posts: &[i64],
) -> Vec<(String, Vec<i64>)> {
    let deadline = Instant::now() + FEED_DEADLINE;
    let mut out = Vec::with_capacity(followers.len());
    for follower in followers {
        loop {
            let missing = match feed_ids(http, base, &follower.token).await {
                Ok(seen) => posts
                    .iter()
                    .copied()
                    .filter(|p| !seen.contains(p))
                    .collect(),
                // Unreadable now: everything counts as missing until a read succeeds.
                Err(_) => posts.to_vec(),
            };
            if missing.is_empty() || Instant::now() >= deadline {
                out.push((follower.name.clone(), missing));
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    out
}

/// Every post id in a user's feed, page by page.
async fn feed_ids(http: &Client, base: &str, token: &str) -> Result<HashSet<i64>, String> {
    let mut ids = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = http
            .get(format!("{base}/v1/me/feed"))
            .query(&[("limit", "100")])
            .bearer_auth(token);
        if let Some(c) = &cursor {
            request = request.query(&[("cursor", c)]);
        }
        let resp = request.send().await.map_err(|e| request_error(&e))?;
        if resp.status() != StatusCode::OK {
            return Err(format!("HTTP {}", resp.status().as_u16()));
        }
        let page: Value = resp.json().await.map_err(|e| request_error(&e))?;
        for post in page["items"].as_array().map_or(&[][..], Vec::as_slice) {
            if let Ok(id) = id_of(&post["id"], "post id") {
                ids.insert(id);
            }
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok(ids),
        }
    }
}

/// Milliseconds since `clock`, the run's time axis.
pub fn ms_since(clock: Instant) -> u64 {
    clock.elapsed().as_millis() as u64
}
