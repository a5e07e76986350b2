//! The SQL of the chat group commit ([`ChatStore::commit_messages`]): one transaction
//! stores every send the node's message writer (`crate::chat::writer`) queued while the
//! previous batch committed.
//!
//! In the transaction:
//! 1. `SELECT … FROM message_stream FOR UPDATE`: the row lock that makes the message
//!    commits of every node sharing the database one after another (see [`commit_batch`]);
//! 2. per send, whether its channel exists, whether its sender is a member, and the message
//!    already stored under its `client_msg_id` (a retry), the batch bound as parallel
//!    arrays (one statement);
//! 3. if anything is new: each target channel's last `seq` and members (one statement);
//! 4. the new messages numbered with ids above the stream's `last_id` and each channel's
//!    next `seq`s, then one statement that inserts them, moves their channels on and
//!    stores the new `last_id`, and the COMMIT.
//!
//! Any error drops the transaction, which rolls it back and releases the lock.
//!
//! [`ChatStore::commit_messages`]: crate::storage::ChatStore::commit_messages
//! [`commit_batch`]: PgStore::commit_batch

use super::PgStore;
use crate::{
    id::IdGenerator,
    storage::{
        chat::{BatchPlan, Committed, Found, MessageRow, NewMessage},
        Result,
    },
};
use sqlx::{FromRow, PgConnection};
use std::{collections::HashMap, sync::Arc};

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
        let mut tx = self.pool.begin().await?;
        // The cluster's message commits, one at a time. This row lock is held until COMMIT,
        // and PostgreSQL makes a commit visible before it releases the transaction's
        // locks: the next writer to get the lock reads the `last_id` this one stores, and
        // its reads below (each a new snapshot, at READ COMMITTED) see these messages.
        // Every new id then exceeds every id already visible, whatever the nodes' clocks,
        // so the visible messages are always a prefix in id order, which the sync cursor
        // (`since`) relies on. The reads are separate statements for that reason: a
        // statement's snapshot is taken before it waits for a lock.
        let last_id: i64 = sqlx::query_scalar("SELECT last_id FROM message_stream FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        let states = read_sends(&mut tx, batch).await?;

        let found = batch.iter().zip(states).map(|(m, state)| Found {
            channel_exists: state.channel_exists,
            member: state.member,
            stored: state.stored(m),
        });
        let plan = BatchPlan::decide(batch, found);
        let (rows, members) = if plan.new.is_empty() {
            // Nothing to write (rejections and retries only): COMMIT ends it all the same.
            (Vec::new(), HashMap::new())
        } else {
            let (last_seq, members) = read_channels(&mut tx, batch, &plan.new).await?;
            let rows = plan.number(ids, batch, last_id, last_seq)?;
            write(&mut tx, &rows).await?;
            (rows, members)
        };
        tx.commit().await?;
        Ok(plan.answers(&rows, &members))
    }
}

/// One send's situation before the batch writes: whether its channel exists, whether its
/// sender is a member, and the message already stored under its `client_msg_id` if this is
/// a retry (columns NULL otherwise; sender and `client_msg_id` are the send's own).
#[derive(FromRow)]
struct SendState {
    channel_exists: bool,
    member: bool,
    stored_channel: Option<i64>,
    stored_id: Option<i64>,
    stored_seq: Option<i64>,
    stored_content: Option<String>,
    stored_created_at: Option<i64>,
}

impl SendState {
    /// The message a retry of `m` finds, if any.
    fn stored(self, m: &NewMessage) -> Option<MessageRow> {
        Some(MessageRow {
            channel_id: self.stored_channel?,
            id: self.stored_id?,
            seq: self.stored_seq?,
            sender_id: m.sender,
            content: self.stored_content?,
            client_msg_id: m.client_msg_id.clone(),
            created_at: self.stored_created_at?,
        })
    }
}

/// Reads every send's [`SendState`] in one statement, the batch bound as parallel arrays;
/// one state per send, in order.
async fn read_sends(tx: &mut PgConnection, batch: &[&NewMessage]) -> Result<Vec<SendState>> {
    let channels: Vec<i64> = batch.iter().map(|m| m.channel).collect();
    let senders: Vec<i64> = batch.iter().map(|m| m.sender).collect();
    let keys: Vec<&str> = batch.iter().map(|m| m.client_msg_id.as_str()).collect();
    // `messages_client_msg_id` is unique, so the LEFT JOIN keeps one row per send.
    let states: Vec<SendState> = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM channels c WHERE c.id = s.channel) AS channel_exists,
                EXISTS (SELECT 1 FROM channel_members m
                         WHERE m.channel_id = s.channel AND m.user_id = s.sender) AS member,
                x.channel_id AS stored_channel, x.id AS stored_id, x.seq AS stored_seq,
                x.content AS stored_content, x.created_at AS stored_created_at
           FROM unnest($1::bigint[], $2::bigint[], $3::text[])
                WITH ORDINALITY AS s(channel, sender, client_msg_id, ord)
           LEFT JOIN messages x
             ON x.sender_id = s.sender AND x.client_msg_id = s.client_msg_id
          ORDER BY s.ord",
    )
    .bind(&channels)
    .bind(&senders)
    .bind(&keys)
    .fetch_all(tx)
    .await?;
    if states.len() != batch.len() {
        return Err(sqlx::Error::Decode(
            format!("{} send states for {} sends", states.len(), batch.len()).into(),
        ));
    }
    Ok(states)
}

/// The last `seq` and the member ids of each channel the new sends (`new` indexes
/// `batch`) go to.
async fn read_channels(
    tx: &mut PgConnection,
    batch: &[&NewMessage],
    new: &[usize],
) -> Result<(HashMap<i64, i64>, HashMap<i64, Arc<[i64]>>)> {
    let mut channels: Vec<i64> = new.iter().map(|&i| batch[i].channel).collect();
    channels.sort_unstable();
    channels.dedup();
    let found: Vec<(i64, i64, Vec<i64>)> = sqlx::query_as(
        "SELECT c.id, c.last_seq,
                (SELECT COALESCE(array_agg(m.user_id), '{}') FROM channel_members m
                  WHERE m.channel_id = c.id) AS members
           FROM channels c WHERE c.id = ANY($1)",
    )
    .bind(&channels)
    .fetch_all(tx)
    .await?;
    let mut last_seq = HashMap::with_capacity(found.len());
    let mut members = HashMap::with_capacity(found.len());
    for (channel, seq, list) in found {
        last_seq.insert(channel, seq);
        members.insert(channel, Arc::<[i64]>::from(list));
    }
    Ok((last_seq, members))
}

/// Inserts `rows` (in id order), moves their channels' `last_seq` and `last_message_id`
/// on, and stores the new `last_id` of the stream, in one statement: the row lock on
/// `message_stream` is held for every round trip until COMMIT, so each one saved is
/// saved for the whole cluster's message throughput.
async fn write(tx: &mut PgConnection, rows: &[MessageRow]) -> Result<()> {
    let Some(last) = rows.last() else {
        return Ok(());
    };
    // Rows are in id order, so each channel's last row carries its newest id and seq.
    let mut newest: HashMap<i64, (i64, i64)> = HashMap::new();
    for row in rows {
        newest.insert(row.channel_id, (row.seq, row.id));
    }
    let (mut moved, mut moved_seq, mut moved_id) = (Vec::new(), Vec::new(), Vec::new());
    for (channel, (seq, id)) in newest {
        moved.push(channel);
        moved_seq.push(seq);
        moved_id.push(id);
    }
    // The rows as columns, one array each.
    let n = rows.len();
    let (mut channels, mut ids, mut seqs, mut senders) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut contents, mut keys, mut times) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for r in rows {
        channels.push(r.channel_id);
        ids.push(r.id);
        seqs.push(r.seq);
        senders.push(r.sender_id);
        contents.push(r.content.as_str());
        keys.push(r.client_msg_id.as_str());
        times.push(r.created_at);
    }
    sqlx::query(
        "WITH stored AS (
             INSERT INTO messages
                 (channel_id, id, seq, sender_id, content, client_msg_id, created_at)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                                  $5::text[], $6::text[], $7::bigint[])
         ), moved AS (
             UPDATE channels SET last_seq = u.seq, last_message_id = u.id
               FROM unnest($8::bigint[], $9::bigint[], $10::bigint[]) AS u(channel, seq, id)
              WHERE channels.id = u.channel
         )
         UPDATE message_stream SET last_id = $11",
    )
    .bind(channels)
    .bind(ids)
    .bind(seqs)
    .bind(senders)
    .bind(contents)
    .bind(keys)
    .bind(times)
    .bind(moved)
    .bind(moved_seq)
    .bind(moved_id)
    .bind(last.id)
    .execute(tx)
    .await?;
    Ok(())
}
