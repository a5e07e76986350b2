//! The SQL of the chat group commit ([`ChatStore::commit_messages`]): one transaction
//! stores every send the node's message writer (`crate::chat::writer`) queued while the
//! previous batch committed.
//!
//! A commit is the expensive part of a send (the write lock, the WAL append, with
//! `synchronous = FULL` an fsync, and on sqlx a round trip to the connection's thread per
//! query). A batch is one transaction of a fixed number of statements, so its size does
//! not change the number of round trips: the reads take the batch as JSON (`json_each`),
//! the writes bind each row's values in a multi-row `VALUES`.
//!
//! In the transaction (`BEGIN IMMEDIATE`, so the reads below see the state the writes build
//! on, even with other processes writing the same file):
//! 1. membership of every sender, and whether the channel exists;
//! 2. messages already stored under a sender's `client_msg_id` (retries);
//! 3. the channels' last `seq` and the newest message id: new ids must exceed every stored
//!    one (nodes' clocks may disagree) so that a device's sync cursor never skips a message;
//! 4. with 1–3, the members of the batch's channels, for the wake-ups after commit (1–4
//!    are one statement, sent together with the `BEGIN`);
//! 5. one `INSERT` of the new messages, one `UPDATE` of their channels, and the `COMMIT`,
//!    sent together: a batch is two round trips to the connection's thread.
//!
//! Neither write needs a statement journal (SQLite's copy of every page a statement
//! changes, kept so that a constraint failure can undo that statement alone): the
//! messages' foreign keys are declared deferred, so they are checked at `COMMIT`, and a
//! conflict rolls back the whole transaction (`OR ROLLBACK`), which [`commit_batch`] does
//! on any error anyway by closing the connection. Under 1:1 chat at 5,000/s the server's
//! `pwrite`s fell from 5.7 to 5.0 per message without it (and without the `messages_seq`
//! index; docs/benchmarks.md). The keys are deferred in the schema, not by
//! `PRAGMA defer_foreign_keys` in each transaction: setting a flag pragma expires every
//! prepared statement of the connection, and each batch then compiled its SQL again.
//!
//! [`ChatStore::commit_messages`]: crate::storage::ChatStore::commit_messages
//! [`commit_batch`]: SqliteStore::commit_batch

use super::SqliteStore;
use crate::{
    id::IdGenerator,
    storage::{
        chat::{Committed, MessageRow, NewMessage},
        Result,
    },
};
use serde_json::json;
use sqlx::SqliteConnection;
use std::{collections::HashMap, sync::Arc};

impl SqliteStore {
    /// Commits a batch of sends on the write connection (see the module's documentation);
    /// one answer per send, in order.
    pub(super) async fn commit_batch(
        &self,
        ids: &IdGenerator,
        messages: &[&NewMessage],
    ) -> Result<Vec<Committed>> {
        // The node's one write connection, taken per batch, so other writes queue between
        // batches. Being the only connection that writes, it also keeps its page cache
        // (SQLite empties a connection's cache whenever another has written).
        let mut conn = self.writes.acquire().await?;
        let result = commit(&mut conn, ids, messages).await;
        if result.is_err() {
            // The batch's transaction may be left open half-done: closing the
            // connection rolls it back, and the pool opens a fresh one.
            conn.close_on_drop();
        }
        result
    }
}

/// What the transaction reads before it writes, in one statement (see [`BEGIN_AND_READ`]).
#[derive(serde::Deserialize)]
struct Before {
    /// Per send: its index, whether its channel exists, whether its sender is a member,
    /// whether it is a 1:1 whose members are apart by a block (SQLite's booleans: 0 or 1),
    /// and the members who blocked the sender.
    access: Vec<(usize, u8, u8, u8, Vec<i64>)>,
    /// Per send already stored under its `client_msg_id` (a retry): its index and row.
    retries: Vec<(usize, MessageRow)>,
    /// The newest stored message id: new ids must exceed it.
    floor: i64,
    /// Per channel of the batch: id, last `seq`, members.
    channels: Vec<(i64, i64, Vec<i64>)>,
}

/// The start of a batch's transaction and its reads, as one JSON row: every query is a
/// round trip to the connection's thread, so reading membership, retries, channel states
/// and members separately cost four where this costs one. `?1` is the batch: `[{c, s, k}]`.
const BEGIN_AND_READ: &str = "BEGIN IMMEDIATE;
SELECT json_object(
    'access', (SELECT json_group_array(json_array(j.key,
            EXISTS (SELECT 1 FROM channels c WHERE c.id = j.value->>'c'),
            EXISTS (SELECT 1 FROM channel_members m
                     WHERE m.channel_id = j.value->>'c' AND m.user_id = j.value->>'s'),
            EXISTS (SELECT 1 FROM channels c
                      JOIN channel_members o ON o.channel_id = c.id AND o.user_id != j.value->>'s'
                     WHERE c.id = j.value->>'c' AND c.kind = 'dm'
                       AND (EXISTS (SELECT 1 FROM blocks b
                                     WHERE b.blocker_id = j.value->>'s' AND b.blocked_id = o.user_id)
                            OR EXISTS (SELECT 1 FROM blocks b
                                        WHERE b.blocker_id = o.user_id AND b.blocked_id = j.value->>'s'))),
            (SELECT json_group_array(b.blocker_id) FROM blocks b
               JOIN channel_members m ON m.channel_id = j.value->>'c' AND m.user_id = b.blocker_id
              WHERE b.blocked_id = j.value->>'s')))
        FROM json_each(?1) j),
    'retries', (SELECT json_group_array(json_array(j.key, json_object(
            'channel_id', x.channel_id, 'id', x.id, 'seq', x.seq, 'sender_id', x.sender_id,
            'content', x.content, 'client_msg_id', x.client_msg_id, 'created_at', x.created_at,
            'media', x.media)))
        FROM json_each(?1) j
        JOIN messages x ON x.sender_id = j.value->>'s' AND x.client_msg_id = j.value->>'k'),
    'floor', (SELECT COALESCE(MAX(id), 0) FROM messages),
    'channels', (SELECT json_group_array(json_array(c.id, c.last_seq,
            (SELECT json_group_array(m.user_id) FROM channel_members m WHERE m.channel_id = c.id)))
        FROM channels c WHERE c.id IN (SELECT j.value->>'c' FROM json_each(?1) j)))";

/// Stores a batch in one transaction, in two round trips to the connection's thread:
/// `BEGIN` with the reads, then the writes with `COMMIT` (sqlx runs the statements of one
/// query string in order, binding each its own parameters); one result per message, in
/// order. Five round trips (begin, read, insert, update, commit) each woke the
/// connection's thread and then this one. On an error the transaction may still be open:
/// the caller closes the connection.
async fn commit(
    db: &mut SqliteConnection,
    ids: &IdGenerator,
    messages: &[&NewMessage],
) -> Result<Vec<Committed>> {
    let keys = json!(messages
        .iter()
        .map(|m| json!({"c": m.channel, "s": m.sender, "k": m.client_msg_id}))
        .collect::<Vec<_>>())
    .to_string();
    let before: String = sqlx::query_scalar(BEGIN_AND_READ)
        .bind(&keys)
        .fetch_one(&mut *db)
        .await?;
    let before: Before =
        serde_json::from_str(&before).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let mut allowed = vec![(false, false, false, Vec::new()); messages.len()];
    for (i, channel_exists, member, apart, hidden_from) in before.access {
        if let Some(slot) = allowed.get_mut(i) {
            *slot = (channel_exists != 0, member != 0, apart != 0, hidden_from);
        }
    }
    let mut stored: HashMap<usize, MessageRow> = before.retries.into_iter().collect();
    let found =
        allowed
            .into_iter()
            .enumerate()
            .map(|(i, (channel_exists, member, apart, hidden_from))| Found {
                channel_exists,
                member,
                apart,
                hidden_from,
                stored: stored.remove(&i),
            });
    let plan = BatchPlan::decide(messages, found);

    let mut members = HashMap::with_capacity(before.channels.len());
    let mut last_seq = HashMap::with_capacity(before.channels.len());
    for (channel, seq, list) in before.channels {
        last_seq.insert(channel, seq);
        members.insert(channel, Arc::<[i64]>::from(list));
    }
    let rows = if plan.new.is_empty() {
        sqlx::query("COMMIT").execute(&mut *db).await?;
        Vec::new()
    } else {
        let rows = plan.number(ids, messages, before.floor, last_seq)?;
        insert_and_commit(db, &rows).await?;
        rows
    };
    Ok(plan.answers(&rows, &members))
}

/// Inserts `rows` (in id order), moves their channels on, and commits, in one round trip.
/// Every value is a bound parameter of a multi-row `VALUES` (the statement text depends
/// only on how many rows and channels there are, so sqlx's statement cache keeps each
/// shape prepared). Rows passed as JSON were parsed again for each of their seven
/// columns: SQLite's JSON functions took ~10% of the server's `perf` samples under 1:1
/// chat at 5,000 messages/s, most of them here.
async fn insert_and_commit(tx: &mut SqliteConnection, rows: &[MessageRow]) -> Result<()> {
    // Rows are in id order, so each channel's last row carries its newest id and seq.
    let mut newest: HashMap<i64, &MessageRow> = HashMap::new();
    for row in rows {
        newest.insert(row.channel_id, row);
    }
    let sql = insert_sql(rows.len(), newest.len());
    let mut query = sqlx::query(&sql);
    for r in rows {
        query = query
            .bind(r.channel_id)
            .bind(r.id)
            .bind(r.seq)
            .bind(r.sender_id)
            .bind(r.content.as_str())
            .bind(r.client_msg_id.as_str())
            .bind(r.created_at)
            .bind(r.media.as_deref());
    }
    for r in newest.values() {
        query = query.bind(r.channel_id).bind(r.seq).bind(r.id);
    }
    query.execute(&mut *tx).await?;
    Ok(())
}

/// The writes of a batch of `rows` new messages in `channels` channels, and the `COMMIT`
/// (sqlx binds the parameters of the statements in order).
fn insert_sql(rows: usize, channels: usize) -> String {
    let values = |n: usize, row: &str| vec![row; n].join(", ");
    format!(
        "INSERT OR ROLLBACK INTO messages (channel_id, id, seq, sender_id, content, client_msg_id, created_at, media)
         VALUES {};
         UPDATE OR ROLLBACK channels SET last_seq = u.seq, last_message_id = u.id
           FROM (SELECT column1 AS channel, column2 AS seq, column3 AS id FROM (VALUES {})) AS u
          WHERE channels.id = u.channel;
         COMMIT",
        values(rows, "(?, ?, ?, ?, ?, ?, ?, ?)"),
        values(channels, "(?, ?, ?)"),
    )
}

/// A send as a batch's transaction found it, before writing.
#[derive(Debug)]
struct Found {
    channel_exists: bool,
    member: bool,
    /// A 1:1 whose two members are apart by a block (either way).
    apart: bool,
    /// The channel's members who blocked the sender.
    hidden_from: Vec<i64>,
    /// The message already stored under the send's `client_msg_id` (a retry).
    stored: Option<MessageRow>,
}

/// What a batch does with each send (PostgreSQL's `commit_messages` function decides the
/// same in SQL).
#[derive(Debug)]
struct BatchPlan {
    plans: Vec<Plan>,
    /// Indexes (into the batch) of the sends that become new messages, in order.
    new: Vec<usize>,
}

#[derive(Debug)]
enum Plan {
    NoChannel,
    NotMember,
    Apart,
    Existing(MessageRow),
    /// The `n`th new message of this batch, and the members who get it hidden.
    New(usize, Vec<i64>),
    /// A repeat, within this batch, of the `n`th new message's `client_msg_id`.
    Repeat(usize),
}

impl BatchPlan {
    /// Decides each send, in order, from what the transaction found (one per send).
    fn decide(batch: &[&NewMessage], found: impl IntoIterator<Item = Found>) -> Self {
        let mut new: Vec<usize> = Vec::new();
        let mut first_of: HashMap<(i64, &str), usize> = Default::default();
        let mut plans = Vec::with_capacity(batch.len());
        for (i, (m, found)) in batch.iter().zip(found).enumerate() {
            let plan = if !found.channel_exists {
                Plan::NoChannel
            } else if !found.member {
                Plan::NotMember
            } else if let Some(row) = found.stored {
                Plan::Existing(row)
            } else if found.apart {
                Plan::Apart
            } else if let Some(&n) = first_of.get(&(m.sender, m.client_msg_id.as_str())) {
                Plan::Repeat(n)
            } else {
                first_of.insert((m.sender, m.client_msg_id.as_str()), new.len());
                new.push(i);
                Plan::New(new.len() - 1, found.hidden_from)
            };
            plans.push(plan);
        }
        Self { plans, new }
    }

    /// The rows of the new sends: ids above `floor` and increasing in batch order, each
    /// channel's seqs continuing from its `last_seq`. Refused (as the database being out
    /// of reach: 503) when the node's id lease lapsed while the batch waited for its locks.
    fn number(
        &self,
        ids: &IdGenerator,
        batch: &[&NewMessage],
        mut floor: i64,
        mut last_seq: HashMap<i64, i64>,
    ) -> Result<Vec<MessageRow>> {
        ids.check_writable()
            .map_err(|fenced| sqlx::Error::Io(std::io::Error::other(fenced)))?;
        let mut rows = Vec::with_capacity(self.new.len());
        for &i in &self.new {
            let m = batch[i];
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
                edited_at: None,
                deleted_at: None,
                hidden: false,
                media: m.media.clone(),
            });
        }
        Ok(rows)
    }

    /// One answer per send, in order, once `rows` (from [`Self::number`]) are committed;
    /// `members` are the members of each channel written to.
    fn answers(self, rows: &[MessageRow], members: &HashMap<i64, Arc<[i64]>>) -> Vec<Committed> {
        self.plans
            .into_iter()
            .map(|plan| match plan {
                Plan::NoChannel => Committed::NoChannel,
                Plan::NotMember => Committed::NotMember,
                Plan::Apart => Committed::Apart,
                Plan::Existing(row) => Committed::Existing(row),
                Plan::Repeat(n) => Committed::Existing(rows[n].clone()),
                Plan::New(n, hidden_from) => {
                    let row = rows[n].clone();
                    let members = members
                        .get(&row.channel_id)
                        .cloned()
                        .unwrap_or_else(|| Arc::from([]));
                    Committed::Stored {
                        row,
                        members,
                        hidden_from,
                    }
                }
            })
            .collect()
    }
}
