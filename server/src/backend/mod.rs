//! The shared, non-durable state of a Kith node: caches, work queues, pub/sub, rate
//! limits and presence, each behind a small trait with two real implementations.
//!
//! * [`memory`]: in-process, the default; one process runs everything.
//! * [`redis`]: Redis (`KITH_REDIS_URL`), so several processes share caches, queues and
//!   limits and route pub/sub between them.
//! * [`topics`]: the node's local pub/sub topics, through which both deliver.
//!
//! None of this is the source of truth: SQLite is. Everything here can be lost (a Redis
//! restart, a node restart) and is rebuilt from the database or recovered by clients'
//! `sync`. The same test suite (`server/tests/integration/backend.rs`) runs against both.

pub mod memory;
pub mod near;
pub mod redis;
pub mod redis_bus;
pub mod redis_cluster;
pub mod topics;

use async_trait::async_trait;
use bytes::Bytes;
use std::{sync::Arc, time::Duration};
use tokio::sync::broadcast;

/// Locks a std mutex, ignoring poisoning: every critical section in the backends leaves
/// its data consistent, and none awaits.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A failure of the shared-state backend (only Redis can fail).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// A pub/sub message past what its encoding can carry (4 GiB).
    #[error("pub/sub message too large")]
    TooLarge,
    /// The task that sends this node's publishes to Redis is gone (it ends only with the
    /// node's pub/sub).
    #[error("the pub/sub publisher stopped")]
    PublisherStopped,
    /// A publish that had to reach the other nodes did not: Redis refused or was
    /// unreachable.
    #[error("the publish did not reach Redis")]
    NotPublished,
    /// Every Snowflake node id (0..=1023) is leased by a live node.
    #[error("all 1,024 node ids are leased by live nodes")]
    NoNodeId,
    /// `KITH_NODE_ID` is leased by another live node.
    #[error("KITH_NODE_ID {0} is leased by another live node")]
    NodeIdTaken(u16),
    /// The Redis server lacks a command Kith uses.
    #[error("Redis {found} is too old: Kith needs {needed} or newer")]
    TooOld { found: String, needed: &'static str },
    /// `incr` on a value that is not a decimal integer (or would overflow).
    #[error("{0} does not hold an integer")]
    NotAnInteger(String),
}

pub type Result<T> = std::result::Result<T, BackendError>;

/// The hash map of the node's hot in-process state (caches, pub/sub topics, presence):
/// foldhash rather than SipHash, which was a visible part of a feed read's dozens of
/// lookups. The seed is still random per process.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The key `{prefix}{id}` (`prefix` ends with its separator, e.g. `"post:"`). Keys are built
/// for every cache read, dozens per feed page, so without `format!`'s machinery.
pub fn id_key(prefix: &str, id: i64) -> String {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(id);
    let mut key = String::with_capacity(prefix.len() + digits.len());
    key.push_str(prefix);
    key.push_str(digits);
    key
}

/// See [`Cache::ids_push`].
pub const PUSH_TRIM_SLACK: usize = 16;

/// Key-value cache plus bounded sorted ID sets (feeds keep the newest IDs of each user).
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;
    /// Values of `keys`, in the same order (`None` for misses); one round trip on Redis.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>>;
    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()>;
    /// Sets several keys with one expiry; one round trip on Redis.
    async fn set_many(&self, entries: &[(String, Bytes)], ttl: Option<Duration>) -> Result<()>;
    /// Like [`set_many`](Self::set_many), but only keys that hold nothing are set (a
    /// cache fill must not overwrite what a writer put there since the fill's read).
    async fn add_many(&self, entries: &[(String, Bytes)], ttl: Option<Duration>) -> Result<()>;
    async fn delete(&self, key: &str) -> Result<()>;
    /// Whether `key` exists (a feed that was never built vs. one that is empty).
    async fn exists(&self, key: &str) -> Result<bool>;
    /// Adds `delta` to a counter and returns the new value (missing counts as 0). A counter
    /// is a value holding a decimal integer, so `get` reads it; any other value is an error.
    async fn incr(&self, key: &str, delta: i64) -> Result<i64>;
    /// Adds each `(key, id)` to its sorted set and trims every touched set to the `cap`
    /// largest ids. Adding an id twice is a no-op (fanout is at-least-once).
    async fn ids_add(&self, entries: &[(String, i64)], cap: usize) -> Result<()>;
    /// Adds the one `id` to the sorted set at each of `keys` that exists (a post fanned out
    /// to its followers' feeds: a feed nobody has read is not created, it is built from
    /// SQLite when it is first read). Each set keeps at least its `cap` largest ids. Redis
    /// lets a set grow [`PUSH_TRIM_SLACK`] ids past its cap before trimming it back to the
    /// cap (trimming is most of a push's cost there), so a set is trimmed once every that
    /// many pushes and never holds more than `cap + PUSH_TRIM_SLACK`: a soft cap that
    /// readers, who take only what they ask for, do not notice.
    async fn ids_push(&self, keys: &[String], id: i64, cap: usize) -> Result<()>;
    /// Finishes a rebuild that began by adding `marker` to the set at `key`: if the set
    /// still holds `marker`, adds `ids`, removes `marker` and trims the set to its `cap`
    /// largest ids, in one step; returns whether it did. A set deleted or finished by
    /// another rebuild in the meantime is left alone.
    async fn ids_fill(&self, key: &str, marker: i64, ids: &[i64], cap: usize) -> Result<bool>;
    /// Removes each `(key, id)` from its sorted set (pipelined on Redis).
    async fn ids_remove(&self, entries: &[(String, i64)]) -> Result<()>;
    /// Up to `limit` ids of the set at `key` smaller than `below` (all if `None`),
    /// largest first.
    async fn ids_range(&self, key: &str, below: Option<i64>, limit: usize) -> Result<Vec<i64>>;
    /// For each of `ids`, whether the set at `key` holds it (one round trip on Redis).
    async fn ids_contain(&self, key: &str, ids: &[i64]) -> Result<Vec<bool>>;
}

/// A FIFO work queue. Delivery is at-most-once; durability comes from the caller's outbox
/// in SQLite, which re-enqueues unfinished work at start-up.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    async fn push(&self, queue: &str, item: Bytes) -> Result<()>;
    /// The oldest item, waiting up to `wait` for one to arrive.
    async fn pop(&self, queue: &str, wait: Duration) -> Result<Option<Bytes>>;
    async fn len(&self, queue: &str) -> Result<u64>;
}

/// Topic-based publish/subscribe, used only to wake things up: a lost message is recovered
/// from the database by the receiver.
#[async_trait]
pub trait PubSub: Send + Sync + 'static {
    /// Delivers `payload` to the subscribers of each of `topics` (a chat message to every
    /// member of its channel): one publish, however many topics. `payload` is never empty:
    /// the empty payload is [`GAP`].
    async fn publish(&self, topics: &[String], payload: Bytes) -> Result<()>;
    /// [`publish`](PubSub::publish), returning only once the other nodes can hear it (on
    /// Redis: once Redis took it), for a wake-up that `sync` cannot stand in for (a
    /// session's revocation).
    async fn publish_confirmed(&self, topics: &[String], payload: Bytes) -> Result<()> {
        self.publish(topics, payload).await
    }
    /// Returns once everything published before it has left this node (at shutdown).
    async fn flush(&self) -> Result<()> {
        Ok(())
    }
    /// Subscribes to `topic`; what is published after this returns reaches the
    /// subscription (or a [`GAP`] says that some of it may not have).
    async fn subscribe(&self, topic: &str) -> Result<Subscription>;
    /// Whether every wake-up a subscriber can receive was published on this node, by its
    /// message writer, in commit order, and arrives in that order: true for the in-process
    /// bus of a node on its own. A long poll then answers from its wake-ups alone. On
    /// Redis other nodes' wake-ups interleave with this one's in no particular order.
    fn ordered(&self) -> bool {
        false
    }
    /// Sends every local subscriber a [`GAP`]: wake-ups published elsewhere may have been
    /// lost (another node died between committing a message and publishing its wake-up),
    /// so they catch up from the durable store. Nothing to do on a node on its own.
    fn announce_gap(&self) {}
}

/// The payload that tells subscribers messages may have been lost on the way (the node's
/// link to Redis broke and was restored): they recover from the durable store, as after
/// `Lagged`. Publishers never send it.
pub const GAP: Bytes = Bytes::new();

/// A live subscription; dropping it unsubscribes.
///
/// Receivers that fall behind get `RecvError::Lagged` from [`Subscription::recv`] and must
/// recover from the durable store rather than assume nothing was missed. (The error types
/// are tokio's broadcast ones; the queue behind them is the subscription's own inbox, see
/// [`topics`], which is never closed while the subscription lives: `Closed` does not come.)
pub struct Subscription {
    /// The inbox, registered with its topic while this lives.
    registered: topics::TopicGuard,
}

impl Subscription {
    pub(crate) fn new(registered: topics::TopicGuard) -> Self {
        Self { registered }
    }

    /// The next message, or `Lagged(n)` if `n` were dropped because this receiver was slow.
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn recv(&mut self) -> std::result::Result<Bytes, broadcast::error::RecvError> {
        std::future::poll_fn(|cx| self.registered.inbox.poll_recv(cx)).await
    }

    /// The next message already waiting, without waiting.
    pub fn try_recv(&mut self) -> std::result::Result<Bytes, broadcast::error::TryRecvError> {
        self.registered.inbox.try_recv()
    }
}

/// Who is online, shared by every node: each online user's last activity, plus the last
/// activity of everyone ever seen (`last_active_at`).
///
/// A user goes online when activity is recorded for them while they are not online, and
/// offline only through [`PresenceStore::expire`], which hands each expired user to exactly
/// one caller, so with several nodes one of them announces each change.
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// Records activity: each `(user, at_ms)` was active at that time (a user's last
    /// activity never moves back). Returns the users who were not online before.
    async fn touch(&self, activity: &[(i64, i64)]) -> Result<Vec<i64>>;
    /// Takes offline every online user whose last activity is at or before `cutoff_ms` and
    /// returns them with that time.
    async fn expire(&self, cutoff_ms: i64) -> Result<Vec<(i64, i64)>>;
    /// For each user, in order: whether they are online, and their last activity if any.
    async fn status(&self, users: &[i64]) -> Result<Vec<(bool, Option<i64>)>>;
    /// How many users are online.
    async fn online_count(&self) -> Result<u64>;
}

/// A GCRA quota: `limit` events per `period`, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub period: Duration,
    pub burst: u32,
}

impl Quota {
    pub fn per_minute(limit: u32) -> Self {
        Self {
            limit,
            period: Duration::from_secs(60),
            burst: limit,
        }
    }
    /// Milliseconds between two events at the sustained rate (the GCRA emission interval).
    fn interval_ms(&self) -> i64 {
        (self.period.as_millis() as i64 / i64::from(self.limit.max(1))).max(1)
    }
    /// How far ahead of now the theoretical arrival time may run (the burst tolerance).
    fn tolerance_ms(&self) -> i64 {
        self.interval_ms() * i64::from(self.burst.max(1) - 1)
    }
}

/// Outcome of a rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Denied; the earliest time a retry can succeed.
    Denied {
        retry_after: Duration,
    },
}

/// GCRA rate limiting with the caller's clock (so tests can control time and several
/// nodes sharing Redis enforce one limit).
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Takes one unit from `key` if the quota allows it.
    async fn acquire(&self, key: &str, quota: Quota, now_ms: i64) -> Result<Decision>;
    /// Whether `acquire` would succeed now, without taking anything.
    async fn peek(&self, key: &str, quota: Quota, now_ms: i64) -> Result<Decision>;
}

/// The GCRA step shared by both implementations: given the stored theoretical arrival time,
/// returns the decision and the new TAT to store (if any).
pub(crate) fn gcra(
    stored_tat: Option<i64>,
    quota: Quota,
    now_ms: i64,
    consume: bool,
) -> (Decision, Option<i64>) {
    let tat = stored_tat.unwrap_or(now_ms).max(now_ms);
    let over = tat - now_ms - quota.tolerance_ms();
    if over > 0 {
        let retry_after = Duration::from_millis(over as u64);
        return (Decision::Denied { retry_after }, None);
    }
    let new_tat = consume.then(|| tat + quota.interval_ms());
    (Decision::Allowed, new_tat)
}

/// The four backends of a node, chosen once at start-up.
#[derive(Clone)]
pub struct Backends {
    pub cache: Arc<dyn Cache>,
    pub queue: Arc<dyn Queue>,
    pub pubsub: Arc<dyn PubSub>,
    pub limiter: Arc<dyn RateLimiter>,
    pub presence: Arc<dyn PresenceStore>,
    /// Redis connection used by readiness checks; `None` when running in-process.
    pub redis: Option<redis::RedisBackend>,
}

impl Backends {
    /// In-process backends.
    pub fn memory() -> Self {
        Self {
            cache: Arc::new(memory::MemoryCache::default()),
            queue: Arc::new(memory::MemoryQueue::default()),
            pubsub: Arc::new(memory::MemoryPubSub::default()),
            limiter: Arc::new(memory::MemoryRateLimiter::default()),
            presence: Arc::new(memory::MemoryPresence::default()),
            redis: None,
        }
    }

    /// Redis backends, all under the key prefix `namespace`, with a near cache of up to
    /// `near_bytes` (0: none).
    pub async fn redis(url: &str, namespace: &str, near_bytes: usize) -> Result<Self> {
        let backend = redis::RedisBackend::connect(url, namespace, near_bytes).await?;
        Ok(Self {
            cache: Arc::new(backend.clone()),
            queue: Arc::new(backend.clone()),
            pubsub: backend.pubsub(),
            limiter: Arc::new(backend.clone()),
            presence: Arc::new(backend.clone()),
            redis: Some(backend),
        })
    }

    /// Checks the backend is reachable (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        match &self.redis {
            Some(r) => r.ping().await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_a_burst_then_spaces_requests() {
        let q = Quota::per_minute(3);
        let mut tat = None;
        let now = 1_000_000;
        for _ in 0..3 {
            let (d, new) = gcra(tat, q, now, true);
            assert_eq!(d, Decision::Allowed);
            tat = new;
        }
        let (d, _) = gcra(tat, q, now, true);
        assert_eq!(
            d,
            Decision::Denied {
                retry_after: Duration::from_secs(20)
            }
        );
        let (d, _) = gcra(tat, q, now + 20_000, true);
        assert_eq!(d, Decision::Allowed);
    }
}
