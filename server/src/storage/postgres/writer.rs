//! The chat group commit ([`ChatStore::commit_messages`]): one call stores every send the
//! node's message writer (`crate::chat::writer`) queued while the previous batch
//! committed.
//!
//! The work is the SQL function `commit_messages` (its current body is in
//! `server/migrations/postgres/20261207000008_commit_messages_set_wide.sql`), called on a
//! connection of the writer's own, outside any explicit transaction: the call is its own
//! transaction, committed before the answer arrives, and a batch is one round trip. In it:
//! 1. `SELECT … FROM message_stream FOR UPDATE`: the row lock that makes the message
//!    commits of every node sharing the database one after another;
//! 2. if the batch's first id does not exceed the stream's `last_id` (another node's clock
//!    is ahead), nothing is written and the answer carries that `last_id`: the batch is
//!    numbered again above it and sent again;
//! 3. otherwise one statement decides the sends as SQLite's writer does (no channel, not a
//!    member, a retry of a stored message, a repeat within the batch, a 1:1 apart by a
//!    block, or new), each with probes of an index; it numbers each channel's new messages
//!    from its `seq`, inserts them, stores the new `last_id`, and answers one row per send,
//!    the first new message of each channel with the channel's members.
//!
//! The lock makes every new id exceed every id already visible, whatever the nodes'
//! clocks, so the visible messages are always a prefix in id order, which the sync cursor
//! (`since`) relies on (`docs/decisions/0001-sync-cursor.md`).
//!
//! [`ChatStore::commit_messages`]: crate::storage::ChatStore::commit_messages

use super::PgStore;
use crate::{
    id::IdGenerator,
    storage::{
        chat::{Committed, MessageRow, NewMessage},
        Result,
    },
};
use sqlx::{ConnectOptions, Connection, FromRow, PgConnection};
use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

/// How long connecting the writer's connection may take before the batch fails (503).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A writer connection unused for this long is checked before its next batch.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// Times a batch is numbered again because another node committed larger ids meanwhile;
/// each renumbering jumps past the ids it saw, so more than one is rare.
const MAX_RENUMBERINGS: usize = 8;

/// One row of `commit_messages`' answer.
#[derive(FromRow)]
struct Outcome {
    /// 1-based position of the send in the batch (0 on a renumbering answer).
    ord: i64,
    /// `n` new, `e` existing (a retry or a repeat), `c` no such channel, `m` not a member,
    /// `b` a 1:1 whose members are apart by a block,
    /// `s` renumber above `id`.
    outcome: i8,
    channel_id: Option<i64>,
    id: Option<i64>,
    seq: Option<i64>,
    /// The stored content of an existing message (NULL for a new one: it is the send's).
    content: Option<String>,
    created_at: Option<i64>,
    /// The channel's members, on the first new message of each channel.
    members: Option<Vec<i64>>,
    /// On a new message: the members who blocked its sender.
    hidden_from: Option<Vec<i64>>,
    /// The stored images of an existing message (NULL for a new one: they are the send's).
    media: Option<String>,
}

impl PgStore {
    /// Commits a batch of sends in one transaction; one answer per send, in order.
    pub(super) async fn commit_batch(
        &self,
        ids: &IdGenerator,
        batch: &[&NewMessage],
    ) -> Result<Vec<Committed>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // One writer per node: the lock is never contended, it only hands the connection
        // over.
        let mut writer = self.writer.lock().await;
        if let Some((conn, used)) = writer.as_mut() {
            // Like the pool's check before each use, but only after a quiet spell: a
            // connection the database dropped meanwhile (a restart) is replaced here, not
            // found by a failing batch.
            if used.elapsed() > IDLE_CHECK && conn.ping().await.is_err() {
                *writer = None;
            }
        }
        let (conn, used) = match writer.as_mut() {
            Some(open) => open,
            None => {
                let conn = tokio::time::timeout(CONNECT_TIMEOUT, self.options.connect())
                    .await
                    .map_err(|_| sqlx::Error::PoolTimedOut)??;
                writer.insert((conn, Instant::now()))
            }
        };
        let result = self.commit_on(conn, ids, batch).await;
        *used = Instant::now();
        if result.is_err() {
            // The connection may be broken: the next batch opens a new one. An error
            // inside the call rolled its transaction back.
            *writer = None;
        }
        result
    }

    async fn commit_on(
        &self,
        conn: &mut PgConnection,
        ids: &IdGenerator,
        batch: &[&NewMessage],
    ) -> Result<Vec<Committed>> {
        let channels: Vec<i64> = batch.iter().map(|m| m.channel).collect();
        let senders: Vec<i64> = batch.iter().map(|m| m.sender).collect();
        let keys: Vec<&str> = batch.iter().map(|m| m.client_msg_id.as_str()).collect();
        let contents: Vec<&str> = batch.iter().map(|m| m.content.as_str()).collect();
        let times: Vec<i64> = batch.iter().map(|m| m.now).collect();
        let media: Vec<Option<&str>> = batch.iter().map(|m| m.media.as_deref()).collect();
        for _ in 0..MAX_RENUMBERINGS {
            ids.check_writable()
                .map_err(|fenced| sqlx::Error::Io(std::io::Error::other(fenced)))?;
            // One id per send, increasing, above the largest id this node has seen
            // stored; those of sends that do not become messages go unused.
            let mut floor = self.stream_floor.load(Ordering::Relaxed);
            let numbers: Vec<i64> = batch
                .iter()
                .map(|_| {
                    floor = ids.next_id_above(floor);
                    floor
                })
                .collect();
            let outcomes: Vec<Outcome> =
                sqlx::query_as("SELECT * FROM commit_messages($1, $2, $3, $4, $5, $6, $7)")
                    .bind(&channels)
                    .bind(&senders)
                    .bind(&keys)
                    .bind(&contents)
                    .bind(&times)
                    .bind(&numbers)
                    .bind(&media)
                    .fetch_all(&mut *conn)
                    .await?;
            if let [Outcome {
                outcome,
                id: Some(stored),
                ..
            }] = outcomes.as_slice()
            {
                if *outcome as u8 == b's' {
                    self.stream_floor.fetch_max(*stored, Ordering::Relaxed);
                    continue;
                }
            }
            self.stream_floor.fetch_max(floor, Ordering::Relaxed);
            return answers(batch, outcomes);
        }
        Err(sqlx::Error::Protocol(format!(
            "other nodes kept committing larger message ids: batch numbered {MAX_RENUMBERINGS} times"
        )))
    }
}

/// Turns the function's rows into one answer per send, in order.
fn answers(batch: &[&NewMessage], outcomes: Vec<Outcome>) -> Result<Vec<Committed>> {
    let malformed = |what: String| sqlx::Error::Decode(what.into());
    if outcomes.len() != batch.len() {
        return Err(malformed(format!(
            "{} answers for {} sends",
            outcomes.len(),
            batch.len()
        )));
    }
    let mut members: HashMap<i64, Arc<[i64]>> = HashMap::new();
    let mut answers = Vec::with_capacity(batch.len());
    for (i, (m, o)) in batch.iter().zip(outcomes).enumerate() {
        if o.ord != i as i64 + 1 {
            return Err(malformed(format!("answer {} for send {}", o.ord, i + 1)));
        }
        let row = |content: String, media: Option<String>| -> Result<MessageRow> {
            match (o.channel_id, o.id, o.seq, o.created_at) {
                (Some(channel_id), Some(id), Some(seq), Some(created_at)) => Ok(MessageRow {
                    channel_id,
                    id,
                    seq,
                    sender_id: m.sender,
                    content,
                    client_msg_id: m.client_msg_id.clone(),
                    created_at,
                    edited_at: None,
                    deleted_at: None,
                    hidden: false,
                    media,
                }),
                _ => Err(malformed(format!(
                    "send {} answered without its message",
                    i + 1
                ))),
            }
        };
        let answer = match o.outcome as u8 {
            b'n' => {
                let row = row(m.content.clone(), m.media.clone())?;
                if let Some(list) = o.members.clone() {
                    members.insert(row.channel_id, list.into());
                }
                let members = members
                    .get(&row.channel_id)
                    .cloned()
                    .ok_or_else(|| malformed(format!("no members for send {}", i + 1)))?;
                Committed::Stored {
                    row,
                    members,
                    hidden_from: o.hidden_from.clone().unwrap_or_default(),
                }
            }
            b'e' => {
                Committed::Existing(row(o.content.clone().unwrap_or_default(), o.media.clone())?)
            }
            b'c' => Committed::NoChannel,
            b'm' => Committed::NotMember,
            b'b' => Committed::Apart,
            other => {
                return Err(malformed(format!(
                    "send {} answered {:?}",
                    i + 1,
                    char::from(other)
                )))
            }
        };
        answers.push(answer);
    }
    Ok(answers)
}
