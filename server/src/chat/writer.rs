//! The message store's writer: every send on this node goes through one task that commits
//! messages in groups (group commit).
//!
//! A send is acknowledged only after its transaction commits, and a commit is the expensive
//! part of a send (the write lock, the WAL append, with `synchronous = FULL` an fsync, and
//! on sqlx a round trip to the connection's thread per statement). One writer taking every
//! send queued while the previous group committed turns N sends into one transaction of
//! a fixed number of statements: the batch goes in as JSON (`json_each`), so its size does
//! not change the number of round trips. It also ends the contention of many connections
//! queueing on SQLite's write lock, which is where the old per-send transactions stalled.
//!
//! In the transaction (`BEGIN IMMEDIATE`, so the reads below see the state the writes build
//! on, even with other processes writing the same file):
//! 1. membership of every sender, and whether the channel exists;
//! 2. messages already stored under a sender's `client_msg_id` (retries);
//! 3. the channels' last `seq` and the newest message id: new ids must exceed every stored
//!    one (nodes' clocks may disagree) so that a device's sync cursor never skips a message;
//! 4. one `INSERT` of the new messages, one `UPDATE` of their channels;
//! 5. the members of those channels, for the wake-ups after commit.

use super::store::MessageRow;
use crate::{error::AppError, id::IdGenerator};
use serde_json::json;
use sqlx::{pool::PoolConnection, Connection, FromRow, Sqlite, SqliteConnection, SqlitePool};
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};
use tokio::sync::{mpsc, oneshot};

/// Most sends committed in one transaction.
const MAX_BATCH: usize = 256;
/// Sends waiting for the writer; a full queue makes senders wait (backpressure).
const QUEUE: usize = 4096;

/// A message to store.
#[derive(Debug)]
pub struct NewMessage {
    pub channel: i64,
    pub sender: i64,
    pub content: String,
    pub client_msg_id: String,
    pub now: i64,
}

/// What storing a message did.
#[derive(Debug)]
pub enum Written {
    /// Stored by this call; `members` are the channel's members at commit, to wake.
    Stored {
        row: MessageRow,
        members: Arc<[i64]>,
    },
    /// A retry: the message first stored under this `client_msg_id` (maybe in another
    /// channel, which the caller reports).
    Existing(MessageRow),
}

struct Job {
    message: NewMessage,
    reply: oneshot::Sender<Result<Written, AppError>>,
}

/// Handle to the node's writer task.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task; it ends when the last handle is dropped.
    pub fn spawn(db: SqlitePool, ids: Arc<IdGenerator>) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, ids, queue));
        Self { jobs }
    }

    /// Stores a message, checking that the sender is a member of the channel (404 if the
    /// channel does not exist, 403 if they are not in it). Returns after the commit.
    pub async fn write(&self, message: NewMessage) -> Result<Written, AppError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { message, reply })
            .await
            .map_err(|_| AppError::internal("message writer stopped"))?;
        answer
            .await
            .map_err(|_| AppError::internal("message writer dropped a send"))?
    }
}

async fn run(db: SqlitePool, ids: Arc<IdGenerator>, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // The writer keeps one connection. SQLite empties a connection's page cache whenever
    // another connection has written since its last transaction, so a writer taking
    // whichever pooled connection was free read the pages of the message indexes back from
    // the file on most batches. After a failure it starts again with a fresh one.
    let mut held: Option<PoolConnection<Sqlite>> = None;
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let messages: Vec<&NewMessage> = batch.iter().map(|j| &j.message).collect();
        let result = async {
            let conn = match held.as_mut() {
                Some(conn) => conn,
                None => held.insert(db.acquire().await?),
            };
            commit(conn, &ids, &messages).await
        }
        .await;
        if result.is_err() {
            held = None;
        }
        match result {
            Ok(results) => {
                for (job, result) in batch.drain(..).zip(results) {
                    // A sender that went away (connection closed) no longer needs the
                    // answer; the message is stored and its sync will bring it back.
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, sends = batch.len(), "message batch failed");
                for job in batch.drain(..) {
                    let _ = job
                        .reply
                        .send(Err(AppError::internal("message store unavailable")));
                }
            }
        }
    }
}

/// What the batch will do with one send.
enum Plan {
    Reject(AppError),
    Existing(MessageRow),
    /// The `n`th new message of this batch.
    New(usize),
    /// A repeat, within this batch, of the `n`th new message's `client_msg_id`.
    Repeat(usize),
}

#[derive(FromRow)]
struct Access {
    i: i64,
    channel_exists: bool,
    member: bool,
}

#[derive(FromRow)]
struct Retry {
    i: i64,
    #[sqlx(flatten)]
    row: MessageRow,
}

#[derive(FromRow)]
struct ChannelState {
    id: i64,
    last_seq: i64,
    floor: i64,
}

/// Stores a batch in one transaction; one result per message, in order.
async fn commit(
    db: &mut SqliteConnection,
    ids: &IdGenerator,
    messages: &[&NewMessage],
) -> Result<Vec<Result<Written, AppError>>, sqlx::Error> {
    let mut tx = db.begin_with("BEGIN IMMEDIATE").await?;
    let keys = json!(messages
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"i": i, "c": m.channel, "s": m.sender, "k": m.client_msg_id}))
        .collect::<Vec<_>>())
    .to_string();
    let access: Vec<Access> = sqlx::query_as(
        "SELECT j.value->>'i' AS i,
                EXISTS (SELECT 1 FROM channels c WHERE c.id = j.value->>'c') AS channel_exists,
                EXISTS (SELECT 1 FROM channel_members m
                        WHERE m.channel_id = j.value->>'c' AND m.user_id = j.value->>'s') AS member
         FROM json_each(?) j",
    )
    .bind(&keys)
    .fetch_all(&mut *tx)
    .await?;
    let retries: Vec<Retry> = sqlx::query_as(
        "SELECT j.value->>'i' AS i, x.channel_id, x.id, x.seq, x.sender_id, x.content,
                x.client_msg_id, x.created_at
         FROM json_each(?) j
         JOIN messages x ON x.sender_id = j.value->>'s' AND x.client_msg_id = j.value->>'k'",
    )
    .bind(&keys)
    .fetch_all(&mut *tx)
    .await?;
    let mut allowed = vec![None; messages.len()];
    for a in access {
        if let Some(slot) = allowed.get_mut(a.i as usize) {
            *slot = Some((a.channel_exists, a.member));
        }
    }
    let mut stored: HashMap<usize, MessageRow> =
        retries.into_iter().map(|r| (r.i as usize, r.row)).collect();

    // Decide each send, in order; new messages are numbered as they will be inserted.
    let mut new: Vec<usize> = Vec::new();
    let mut first_of: HashMap<(i64, &str), usize> = HashMap::new();
    let mut plans = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let plan = match allowed[i] {
            None | Some((false, _)) => Plan::Reject(AppError::not_found("channel")),
            Some((true, false)) => {
                Plan::Reject(AppError::forbidden("you are not a member of this channel"))
            }
            Some((true, true)) => match stored.remove(&i) {
                Some(row) => Plan::Existing(row),
                None => match first_of.get(&(m.sender, m.client_msg_id.as_str())) {
                    Some(&n) => Plan::Repeat(n),
                    None => {
                        first_of.insert((m.sender, m.client_msg_id.as_str()), new.len());
                        new.push(i);
                        Plan::New(new.len() - 1)
                    }
                },
            },
        };
        plans.push(plan);
    }

    let (rows, members) = if new.is_empty() {
        (Vec::new(), HashMap::new())
    } else {
        insert(&mut tx, ids, messages, &new).await?
    };
    tx.commit().await?;

    Ok(plans
        .into_iter()
        .map(|plan| match plan {
            Plan::Reject(e) => Err(e),
            Plan::Existing(row) => Ok(Written::Existing(row)),
            Plan::Repeat(n) => Ok(Written::Existing(rows[n].clone())),
            Plan::New(n) => {
                let row = rows[n].clone();
                let members = members
                    .get(&row.channel_id)
                    .cloned()
                    .unwrap_or_else(|| Arc::from([]));
                Ok(Written::Stored { row, members })
            }
        })
        .collect())
}

/// Numbers and inserts the new messages (`new` indexes `messages`); returns their rows and
/// the members of their channels.
async fn insert(
    tx: &mut SqliteConnection,
    ids: &IdGenerator,
    messages: &[&NewMessage],
    new: &[usize],
) -> Result<(Vec<MessageRow>, HashMap<i64, Arc<[i64]>>), sqlx::Error> {
    let channels: Vec<i64> = new
        .iter()
        .map(|&i| messages[i].channel)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let channel_list = json!(channels).to_string();
    let states: Vec<ChannelState> = sqlx::query_as(
        "SELECT id, last_seq, (SELECT COALESCE(MAX(id), 0) FROM messages) AS floor
         FROM channels WHERE id IN (SELECT value FROM json_each(?))",
    )
    .bind(&channel_list)
    .fetch_all(&mut *tx)
    .await?;
    let mut floor = states.iter().map(|s| s.floor).max().unwrap_or(0);
    let mut last_seq: HashMap<i64, i64> = states.iter().map(|s| (s.id, s.last_seq)).collect();

    let mut rows = Vec::with_capacity(new.len());
    for &i in new {
        let m = messages[i];
        let seq = last_seq.entry(m.channel).or_insert(0);
        *seq += 1;
        let id = ids.next_id_above(floor);
        floor = id;
        rows.push(MessageRow {
            channel_id: m.channel,
            id,
            seq: *seq,
            sender_id: m.sender,
            content: m.content.clone(),
            client_msg_id: m.client_msg_id.clone(),
            created_at: m.now,
        });
    }
    let inserts = serde_json::to_string(&rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO messages (channel_id, id, seq, sender_id, content, client_msg_id, created_at)
         SELECT value->>'channel_id', value->>'id', value->>'seq', value->>'sender_id',
                value->>'content', value->>'client_msg_id', value->>'created_at'
         FROM json_each(?)",
    )
    .bind(inserts)
    .execute(&mut *tx)
    .await?;
    // Rows are in id order, so each channel's last row carries its newest id and seq.
    let mut newest: HashMap<i64, &MessageRow> = HashMap::new();
    for row in &rows {
        newest.insert(row.channel_id, row);
    }
    let updates = json!(newest
        .values()
        .map(|r| json!({"c": r.channel_id, "q": r.seq, "id": r.id}))
        .collect::<Vec<_>>())
    .to_string();
    sqlx::query(
        "UPDATE channels SET last_seq = u.value->>'q', last_message_id = u.value->>'id'
         FROM json_each(?) u WHERE channels.id = u.value->>'c'",
    )
    .bind(updates)
    .execute(&mut *tx)
    .await?;
    // One row per channel (see `db::id_list`).
    let lists: Vec<(i64, String)> = sqlx::query_as(
        "SELECT channel_id, json_group_array(user_id) FROM channel_members
         WHERE channel_id IN (SELECT value FROM json_each(?)) GROUP BY channel_id",
    )
    .bind(&channel_list)
    .fetch_all(&mut *tx)
    .await?;
    let mut members = HashMap::with_capacity(lists.len());
    for (channel, list) in lists {
        members.insert(channel, Arc::from(crate::db::id_list(&list)?));
    }
    Ok((rows, members))
}
