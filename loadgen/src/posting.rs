//! Publishing posts through the API, and timing a post until its fanout is done.
//!
//! "Done" is observed from outside, the way an operator would: the server deletes a post's
//! `fanout_outbox` row only after every feed it goes to has been written, so an empty
//! outbox means no fanout is in flight. The post's notifications follow from the
//! `notification_outbox`; each timed post starts with both empty, so one post's
//! notifications never overlap the next post's fanout. The tables are read through a
//! read-only connection (on SQLite, WAL lets those reads run alongside the server's writes).

use crate::{db::Db, error::Error, seed::Account};
use reqwest::{Client, RequestBuilder, StatusCode};
use std::time::{Duration, Instant};

/// Outbox polling interval: fanout timings are late by up to this much (half on average).
const POLL: Duration = Duration::from_millis(1);
/// Longest acceptable wait for the outbox to drain; longer means fanout is stuck.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// A `POST /v1/me/feed` as `token`; `seq` only makes the text differ.
pub fn publish(client: &Client, url: &str, token: &str, seq: u64) -> RequestBuilder {
    let content = format!(
        "Load post {seq}: a few words about the day, long enough to look like a real post."
    );
    client
        .post(url)
        .bearer_auth(token)
        .json(&serde_json::json!({ "content": content }))
}

/// Which outboxes [`drained`] waits for.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    /// Feed fanout done: every follower's feed holds the post.
    Feeds,
    /// Notifications written and live events sent as well.
    All,
}

impl Stage {
    /// The count of pending jobs, in SQL both engines answer.
    pub fn query(self) -> &'static str {
        match self {
            Stage::Feeds => "SELECT COUNT(*) FROM fanout_outbox",
            Stage::All => {
                "SELECT (SELECT COUNT(*) FROM fanout_outbox) + (SELECT COUNT(*) FROM notification_outbox)"
            }
        }
    }
}

/// One post and its delivery: time to the 201, time until the fanout outbox is empty again
/// and time until the notification outbox is too, all from the moment the request is sent,
/// and the new post's id.
pub async fn post_until_drained(
    http: &Client,
    base: &str,
    probe: &Db,
    author: &Account,
    seq: usize,
) -> Result<(Duration, Duration, Duration, Option<i64>), Error> {
    drained(probe, Stage::All).await?;
    let sent = Instant::now();
    let response = publish(
        http,
        &format!("{base}/v1/me/feed"),
        &author.token,
        seq as u64,
    )
    .send()
    .await?;
    let status = response.status();
    let body = response.bytes().await?;
    let ack = sent.elapsed();
    if status != StatusCode::CREATED {
        return Err(Error::Run(format!(
            "POST /v1/me/feed as user {} answered {status}",
            author.id
        )));
    }
    drained(probe, Stage::Feeds).await?;
    let done = sent.elapsed();
    drained(probe, Stage::All).await?;
    let notified = sent.elapsed();
    // IDs travel as decimal strings (JavaScript cannot hold 64-bit integers).
    let id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("id")?.as_str()?.parse().ok());
    Ok((ack, done, notified, id))
}

/// Waits until the outboxes of `stage` are empty, polling every millisecond.
pub async fn drained(probe: &Db, stage: Stage) -> Result<(), Error> {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let polled = Instant::now();
        let pending = probe.pending_jobs(stage).await?;
        if pending == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Run(format!(
                "the outboxes still hold {pending} jobs after {DRAIN_TIMEOUT:?}"
            )));
        }
        // tokio's timer rounds a 1 ms sleep up to the next millisecond tick (1-2 ms), which
        // would blur timings of a few ms, and spinning until the instant would keep this
        // core busy while Redis, which is not pinned, needs it to do the fanout being
        // timed. A thread's sleep is precise to ~0.1 ms and leaves the core idle.
        let rest = POLL.saturating_sub(polled.elapsed());
        tokio::task::spawn_blocking(move || std::thread::sleep(rest))
            .await
            .map_err(|e| Error::Run(format!("poll sleep: {e}")))?;
    }
}
