//! The message writer: every send on this node goes through one task that commits
//! messages in groups (group commit).
//!
//! A send is acknowledged only after its transaction commits, and a commit is the expensive
//! part of a send (the write lock, the log append and its fsync, round trips to the
//! database). One writer taking every send queued while the previous group committed
//! turns N sends into one transaction of a fixed number of statements
//! ([`ChatStore::commit_messages`]; each engine's SQL is in `storage/*/writer.rs`). It also ends
//! the contention of many connections queueing for the database's write lock.
//!
//! The writer also publishes each stored message's wake-up to its channel's members,
//! right after the commit and before the next one: the node's wake-ups leave in commit
//! order, which is id order. On the in-process bus every subscriber then receives them in
//! id order, which is what lets a long poll answer from its wake-ups alone
//! (`service::wait_for_messages`). A sender's task could not promise that: tasks run in
//! any order, and one may be dropped (its client gone) between commit and publish.

use crate::{
    backend::PubSub,
    error::{AppError, InternalError},
    id::IdGenerator,
    live::{self, Event},
    storage::chat::{ChatStore, Committed, MessageRow, NewMessage},
    telemetry::Metrics,
};
use app::model::{Message, User};
use std::{sync::Arc, time::Instant};
use tokio::sync::{mpsc, oneshot};

/// Most sends committed in one transaction.
const MAX_BATCH: usize = 256;
/// Sends waiting for the writer; a full queue makes senders wait (backpressure).
const QUEUE: usize = 4096;

/// What storing a message did.
#[derive(Debug)]
pub enum Written {
    /// Stored, and its wake-up published to `members` (the channel's members at
    /// commit); `hidden_from` are those of them who blocked the sender, who got it hidden.
    Stored {
        message: Message,
        members: Arc<[i64]>,
        hidden_from: Vec<i64>,
    },
    /// A retry: the message first stored under this `client_msg_id` (maybe in another
    /// channel, which the caller reports).
    Existing(MessageRow),
}

struct Job {
    message: NewMessage,
    /// The sender, as the message's frame names them.
    author: User,
    /// The connection that sent it (0: none), which gets an `ack` instead of the frame.
    origin: u64,
    reply: oneshot::Sender<Result<Written, AppError>>,
    /// When the send was handed to the writer (for [`Metrics::message_store`]).
    queued: Instant,
}

/// Handle to the node's writer task.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task; it ends when the last handle is dropped.
    pub fn spawn(
        store: Arc<dyn ChatStore>,
        ids: Arc<IdGenerator>,
        metrics: Arc<Metrics>,
        pubsub: Arc<dyn PubSub>,
    ) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, ids, metrics, pubsub, queue));
        Self { jobs }
    }

    /// Stores a message, checking that the sender is a member of the channel (404 if the
    /// channel does not exist, 403 if they are not in it). Returns after the commit.
    pub async fn write(
        &self,
        message: NewMessage,
        author: User,
        origin: u64,
    ) -> Result<Written, AppError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                message,
                author,
                origin,
                reply,
                queued: Instant::now(),
            })
            .await
            .map_err(|_| AppError::internal("message writer stopped"))?;
        answer
            .await
            .map_err(|_| AppError::internal("message writer dropped a send"))?
    }
}

async fn run(
    store: Arc<dyn ChatStore>,
    ids: Arc<IdGenerator>,
    metrics: Arc<Metrics>,
    pubsub: Arc<dyn PubSub>,
    mut queue: mpsc::Receiver<Job>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // The tasks already woken run first, and the sends they queue join this batch: a
        // commit costs two hand-overs to the connection's thread however many it stores.
        tokio::task::yield_now().await;
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let messages: Vec<&NewMessage> = batch.iter().map(|j| &j.message).collect();
        // A node whose id lease lapsed stores nothing: the batch answers 503.
        // (whether retrying later may succeed, what failed) when nothing was stored.
        let result = match ids.check_writable() {
            Ok(()) => store
                .commit_messages(&ids, &messages)
                .await
                .map_err(|e| (crate::storage::is_unavailable(&e), e.to_string())),
            Err(fenced) => Err((true, fenced.to_string())),
        };
        let committed = Instant::now();
        for job in &batch {
            let waited = committed.saturating_duration_since(job.queued);
            metrics.message_store.observe(waited.as_secs_f64());
        }
        match result {
            Ok(results) => {
                for (job, result) in batch.drain(..).zip(results) {
                    let answer = match result {
                        Committed::Stored {
                            row,
                            members,
                            hidden_from,
                        } => {
                            let message = row.into_message(job.author);
                            if let Err(e) =
                                publish(&*pubsub, &message, job.origin, &members, &hidden_from)
                                    .await
                            {
                                tracing::warn!(error = %e, "wake-up publish failed; clients will catch up by sync");
                            }
                            Ok(Written::Stored {
                                message,
                                members,
                                hidden_from,
                            })
                        }
                        Committed::Existing(row) => Ok(Written::Existing(row)),
                        Committed::NoChannel => Err(AppError::not_found("channel")),
                        Committed::NotMember => {
                            Err(AppError::forbidden("you are not a member of this channel"))
                        }
                        Committed::Apart => Err(AppError::forbidden(
                            "you cannot write to this person: one of you blocked the other",
                        )),
                    };
                    // A sender that went away (connection closed) no longer needs the
                    // answer; the message is stored and its sync will bring it back.
                    let _ = job.reply.send(answer);
                }
            }
            Err((unavailable, e)) => {
                tracing::error!(error = %e, sends = batch.len(), "message batch failed");
                // Nothing of the batch is stored: each sender hears so, as a 503 when the
                // database is out of reach or the node may not write (retrying later
                // succeeds), else as a 500.
                for job in batch.drain(..) {
                    let cause = InternalError::Other(format!("message batch failed: {e}"));
                    let _ = job.reply.send(Err(if unavailable {
                        AppError::Unavailable(cause)
                    } else {
                        AppError::Internal(cause)
                    }));
                }
            }
        }
    }
}

/// Publishes a stored message's wake-up to its channel's `members`; those in
/// `hidden_from` (who blocked the sender) get it hidden.
async fn publish(
    pubsub: &dyn PubSub,
    message: &Message,
    origin: u64,
    members: &[i64],
    hidden_from: &[i64],
) -> Result<(), AppError> {
    if hidden_from.is_empty() {
        return live::publish(pubsub, members, &Event::message(message, origin)).await;
    }
    let (hidden, shown): (Vec<i64>, Vec<i64>) =
        members.iter().partition(|m| hidden_from.contains(m));
    live::publish(pubsub, &shown, &Event::message(message, origin)).await?;
    live::publish(pubsub, &hidden, &Event::message(&message.hidden(), origin)).await
}
