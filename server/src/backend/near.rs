//! The near cache: a node's own copy of the Redis cache entries it reads, kept coherent
//! by Redis itself (server-assisted client-side caching, `CLIENT TRACKING`).
//!
//! Why: a warm feed read asks Redis for the session, the feed's ids, the followed
//! celebrities, the posts, their like counts, the viewer's likes and the authors, in five
//! dependent round trips that cost the node more CPU than the rest of the read. Most of
//! those entries rarely change (posts and users never, a session at logout, a feed when
//! someone followed posts), so the node keeps what it read and Redis says when to drop it.
//!
//! How:
//! * Reads that fill the near cache use a connection of their own, with tracking on and
//!   its invalidations redirected to a subscriber connection (RESP2: `CLIENT TRACKING ON
//!   REDIRECT <id>`, channel `__redis__:invalidate`). Redis then sends the key of every
//!   entry this node read whenever anyone changes, deletes or expires it.
//! * A reply that raced an invalidation of its key must not be kept: a fill registers a
//!   token per key before it asks, an invalidation removes the tokens of its keys, and a
//!   reply is kept only while its token is still registered.
//! * The node's own writes drop their keys when they return, so a node reads its own
//!   writes without waiting for the invalidation to come round.
//! * While either connection is down nothing is served from here (reads go to Redis
//!   directly) and everything held is dropped, since invalidations may have been missed.
//!   The tracked connection is pinged every 250 ms, as Redis says nothing when it dies.
//! * Entries also go after [`MAX_AGE`], a bound on an invalidation lost some other way,
//!   and the entries held are kept under `KITH_NEAR_CACHE_MB` (keys, values and ids, plus
//!   an estimate of the bookkeeping).
//!
//! Sorted sets of ids (feeds, liked sets) are held whole; they are capped at about a
//! thousand ids, and a page or a membership probe is then answered in memory.

use super::{lock, FastMap, Result};
use bytes::Bytes;
use futures::StreamExt;
use redis::{aio::MultiplexedConnection, Client, ConnectionAddr, Msg, RedisError};
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Notify,
};
use tokio_util::sync::{CancellationToken, DropGuard};

/// The longest an entry is served without Redis having been asked again.
pub const MAX_AGE: Duration = Duration::from_secs(30);
/// Where Redis publishes invalidations for redirected tracking.
const INVALIDATE_CHANNEL: &str = "__redis__:invalidate";
/// How often the tracked connection is checked: Redis tells nobody when it drops, and its
/// invalidations stop with it, so this bounds how long a dead one goes unnoticed.
const PING_EVERY: Duration = Duration::from_millis(250);

/// What the near cache holds for a key.
#[derive(Clone)]
enum Held {
    /// A string value, or that the key does not exist.
    Value(Option<Bytes>),
    /// The members of a sorted set of ids, largest first (empty: no such key).
    Ids(Arc<[i64]>),
}

struct Entry {
    held: Held,
    at: Instant,
}

/// Bytes an entry costs beyond its key and contents (map slot, `Entry`, allocations).
const ENTRY_OVERHEAD: usize = 96;
/// In-flight fills tracked at most; abandoned ones (a cancelled request) are dropped
/// past this.
const PENDING_LIMIT: usize = 100_000;

impl Entry {
    fn size(key: &str, held: &Held) -> usize {
        key.len()
            + ENTRY_OVERHEAD
            + match held {
                Held::Value(v) => v.as_ref().map_or(0, Bytes::len),
                Held::Ids(ids) => ids.len() * std::mem::size_of::<i64>(),
            }
    }
}

/// The tracked connection and the epoch it was set up in (fills of an older epoch are
/// not kept).
#[derive(Clone)]
struct Live {
    conn: MultiplexedConnection,
    epoch: u64,
    /// Redis's client id of the subscriber connection the invalidations go to.
    subscriber: i64,
}

#[derive(Default)]
struct State {
    /// `None` while the invalidation channel or the tracked connection is down.
    live: Option<Live>,
    entries: FastMap<String, Entry>,
    /// What `entries` cost, by [`Entry::size`].
    bytes: usize,
    /// Fills in flight: key → token of the latest.
    pending: FastMap<String, u64>,
    next_token: u64,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Stats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub invalidations: AtomicU64,
}

struct Shared {
    state: Mutex<State>,
    /// The node's key prefix (`{namespace}:`). Entries are held under the key without it,
    /// as callers name them, so a hit builds no string.
    prefix: String,
    /// The byte budget of the entries.
    budget: usize,
    stats: Stats,
    /// Woken when a read on the tracked connection failed.
    broken: Notify,
}

/// A node's near cache; the maintaining task stops when the last handle goes.
pub struct NearCache {
    shared: Arc<Shared>,
    _stop: DropGuard,
}

impl NearCache {
    /// Starts the near cache of a node, holding entries of at most `budget` bytes (`None`:
    /// disabled, by a budget of 0 or a Redis address other than plain TCP).
    pub fn start(client: Client, namespace: &str, budget: usize) -> Option<Self> {
        if budget == 0 {
            return None;
        }
        if !matches!(client.get_connection_info().addr, ConnectionAddr::Tcp(..)) {
            tracing::warn!("the near cache needs a plain TCP Redis address; it is off");
            return None;
        }
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            prefix: format!("{namespace}:"),
            budget,
            stats: Stats::default(),
            broken: Notify::new(),
        });
        let stop = CancellationToken::new();
        tokio::spawn(maintain(shared.clone(), client, stop.clone()));
        Some(Self {
            shared,
            _stop: stop.drop_guard(),
        })
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Whether entries are being served (the tracked connection and its invalidation
    /// channel are up).
    pub fn is_live(&self) -> bool {
        lock(&self.shared.state).live.is_some()
    }

    /// Redis's client id of the connection receiving the invalidations, while live (for
    /// diagnostics: `CLIENT LIST` shows the tracked connection with `redir=` this id).
    pub fn subscriber_id(&self) -> Option<i64> {
        lock(&self.shared.state).live.as_ref().map(|l| l.subscriber)
    }

    /// String values of `keys` (without the namespace), from memory where held, the rest read
    /// (and kept) in one `MGET`. `None` when the near cache is down or the read failed:
    /// the caller reads from Redis itself.
    pub async fn values(&self, keys: &[String]) -> Option<Vec<Option<Bytes>>> {
        let shared = &self.shared;
        let mut found: Vec<Option<Option<Bytes>>> = Vec::with_capacity(keys.len());
        let (live, missing, tokens) = {
            let mut state = lock(&shared.state);
            let live = state.live.clone()?;
            let now = Instant::now();
            let mut missing = Vec::new();
            for (i, key) in keys.iter().enumerate() {
                match state.entries.get(key.as_str()) {
                    Some(Entry {
                        held: Held::Value(v),
                        at,
                    }) if now.duration_since(*at) < MAX_AGE => found.push(Some(v.clone())),
                    _ => {
                        found.push(None);
                        missing.push(i);
                    }
                }
            }
            shared.count(keys.len() - missing.len(), missing.len());
            if missing.is_empty() {
                return Some(found.into_iter().flatten().collect());
            }
            let tokens = state.register(missing.iter().map(|i| keys[*i].as_str()));
            (live, missing, tokens)
        };
        let asked: Vec<&str> = missing.iter().map(|i| keys[*i].as_str()).collect();
        let full: Vec<String> = asked.iter().map(|k| shared.full(k)).collect();
        let mut conn = live.conn.clone();
        let read: std::result::Result<Vec<Option<Vec<u8>>>, RedisError> =
            redis::cmd("MGET").arg(&full).query_async(&mut conn).await;
        let values: Vec<Option<Bytes>> = match read {
            Ok(values) if values.len() == asked.len() => {
                values.into_iter().map(|v| v.map(Bytes::from)).collect()
            }
            Ok(_) => return None,
            Err(e) => {
                shared.fail(live.epoch, &e);
                return None;
            }
        };
        shared.keep(
            live.epoch,
            asked
                .iter()
                .zip(&tokens)
                .zip(&values)
                .map(|((key, token), v)| (*key, *token, Held::Value(v.clone()))),
        );
        for (i, value) in missing.into_iter().zip(values) {
            found[i] = Some(value);
        }
        Some(found.into_iter().flatten().collect())
    }

    /// The whole sorted set of ids at `key` (without the namespace), largest first; empty when
    /// there is no such key. `None` as for [`values`](Self::values).
    pub async fn ids(&self, key: &str) -> Option<Arc<[i64]>> {
        let shared = &self.shared;
        let (live, token) = {
            let mut state = lock(&shared.state);
            let live = state.live.clone()?;
            if let Some(Entry {
                held: Held::Ids(ids),
                at,
            }) = state.entries.get(key)
            {
                if at.elapsed() < MAX_AGE {
                    shared.count(1, 0);
                    return Some(ids.clone());
                }
            }
            shared.count(0, 1);
            let token = state.register(std::iter::once(key))[0];
            (live, token)
        };
        let mut conn = live.conn.clone();
        let read: std::result::Result<Vec<i64>, RedisError> = redis::cmd("ZRANGE")
            .arg(shared.full(key))
            .arg(0)
            .arg(-1)
            .arg("REV")
            .query_async(&mut conn)
            .await;
        let ids: Arc<[i64]> = match read {
            Ok(ids) => ids.into(),
            Err(e) => {
                shared.fail(live.epoch, &e);
                return None;
            }
        };
        shared.keep(
            live.epoch,
            std::iter::once((key, token, Held::Ids(ids.clone()))),
        );
        Some(ids)
    }

    /// Whether `key` exists, if the near cache holds it (no read otherwise).
    pub fn exists(&self, key: &str) -> Option<bool> {
        let state = lock(&self.shared.state);
        state.live.as_ref()?;
        let entry = state.entries.get(key)?;
        if entry.at.elapsed() >= MAX_AGE {
            return None;
        }
        Some(match &entry.held {
            Held::Value(v) => v.is_some(),
            Held::Ids(ids) => !ids.is_empty(),
        })
    }

    /// Drops `keys` (full Redis keys) after this node changed them.
    pub fn forget<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        let mut state = lock(&self.shared.state);
        if state.entries.is_empty() && state.pending.is_empty() {
            return;
        }
        for key in keys {
            if let Some(key) = key.strip_prefix(self.shared.prefix.as_str()) {
                state.drop_key(key);
            }
        }
    }

    /// Bytes the entries held cost (by the estimate the budget is checked against).
    pub fn bytes(&self) -> usize {
        lock(&self.shared.state).bytes
    }
}

impl State {
    /// Registers a fill of `keys`, returning a token per key.
    fn register<'a>(&mut self, keys: impl Iterator<Item = &'a str>) -> Vec<u64> {
        if self.pending.len() > PENDING_LIMIT {
            self.pending.clear();
        }
        keys.map(|key| {
            self.next_token += 1;
            self.pending.insert(key.to_owned(), self.next_token);
            self.next_token
        })
        .collect()
    }

    fn flush(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        self.pending.clear();
    }

    /// Drops what is held or being filled for `key`.
    fn drop_key(&mut self, key: &str) {
        if let Some((key, entry)) = self.entries.remove_entry(key) {
            self.bytes -= Entry::size(&key, &entry.held);
        }
        self.pending.remove(key);
    }

    fn insert(&mut self, key: &str, held: Held, at: Instant, budget: usize) {
        let size = Entry::size(key, &held);
        if size > budget {
            return;
        }
        self.drop_key(key);
        self.make_room(size, budget);
        self.bytes += size;
        self.entries.insert(key.to_owned(), Entry { held, at });
    }

    /// Makes room for `size` more bytes: drops what is past its age, then, while still
    /// over, an eighth of the entries at a time (hash order, so effectively at random).
    fn make_room(&mut self, size: usize, budget: usize) {
        if self.bytes + size <= budget {
            return;
        }
        let now = Instant::now();
        self.entries
            .retain(|_, e| now.duration_since(e.at) < MAX_AGE);
        self.recount();
        while self.bytes + size > budget && !self.entries.is_empty() {
            let victims: Vec<String> = self
                .entries
                .keys()
                .take((self.entries.len() / 8).max(1))
                .cloned()
                .collect();
            for key in victims {
                self.entries.remove(&key);
            }
            self.recount();
        }
    }

    fn recount(&mut self) {
        self.bytes = self
            .entries
            .iter()
            .map(|(k, e)| Entry::size(k, &e.held))
            .sum();
    }
}

impl Shared {
    fn full(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.len());
        full.push_str(&self.prefix);
        full.push_str(key);
        full
    }

    fn count(&self, hits: usize, misses: usize) {
        if hits > 0 {
            self.stats.hits.fetch_add(hits as u64, Ordering::Relaxed);
        }
        if misses > 0 {
            self.stats
                .misses
                .fetch_add(misses as u64, Ordering::Relaxed);
        }
    }

    /// Keeps the replies of a fill whose tokens survived.
    fn keep<'a>(&self, epoch: u64, fills: impl Iterator<Item = (&'a str, u64, Held)>) {
        let mut state = lock(&self.state);
        if state.live.as_ref().map(|l| l.epoch) != Some(epoch) {
            return;
        }
        let now = Instant::now();
        for (key, token, held) in fills {
            if state.pending.get(key) != Some(&token) {
                continue;
            }
            state.pending.remove(key);
            state.insert(key, held, now, self.budget);
        }
    }

    /// Applies one message of the invalidation channel.
    fn invalidate(&self, msg: &Msg) {
        if msg.get_channel_name() != INVALIDATE_CHANNEL {
            return;
        }
        let mut state = lock(&self.state);
        match msg.get_payload::<Option<Vec<Vec<u8>>>>() {
            Ok(Some(keys)) => {
                self.stats
                    .invalidations
                    .fetch_add(keys.len() as u64, Ordering::Relaxed);
                for key in keys {
                    let key = String::from_utf8_lossy(&key);
                    if let Some(key) = key.strip_prefix(self.prefix.as_str()) {
                        state.drop_key(key);
                    }
                }
            }
            // Nil: the database was flushed. Anything unreadable is treated alike.
            _ => state.flush(),
        }
    }

    /// Takes the near cache down after a read on the tracked connection of `epoch` failed
    /// for the connection's sake; the maintaining task reconnects. An error reply (say, a
    /// key of another type) leaves it up: the caller reads from Redis itself and gets
    /// the error there.
    fn fail(&self, epoch: u64, error: &RedisError) {
        let connection = error.is_io_error()
            || error.is_connection_dropped()
            || error.is_timeout()
            || error.is_unrecoverable_error();
        if !connection {
            return;
        }
        let mut state = lock(&self.state);
        if state.live.as_ref().map(|l| l.epoch) == Some(epoch) {
            tracing::warn!(%error, "near cache connection failed; serving from Redis until it is back");
            state.live = None;
            state.flush();
            drop(state);
            self.broken.notify_one();
        }
    }

    fn down(&self) {
        let mut state = lock(&self.state);
        state.live = None;
        state.flush();
    }
}

/// Keeps the tracked connection and its invalidation channel up, reconnecting both when
/// either fails.
async fn maintain(shared: Arc<Shared>, client: Client, stop: CancellationToken) {
    let mut epoch = 0;
    let mut backoff = Duration::from_millis(100);
    loop {
        let connected = tokio::select! {
            () = stop.cancelled() => return,
            connected = connect(&client) => connected,
        };
        let (mut conn, mut messages, subscriber) = match connected {
            Ok(connected) => connected,
            Err(e) => {
                tracing::warn!(error = %e, "near cache cannot connect; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        epoch += 1;
        {
            let mut state = lock(&shared.state);
            state.flush();
            state.live = Some(Live {
                conn: conn.clone(),
                epoch,
                subscriber,
            });
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = shared.broken.notified() => break,
                message = messages.next() => match message {
                    Some(msg) => shared.invalidate(&msg),
                    None => {
                        tracing::warn!("near cache lost its invalidation channel; reconnecting");
                        break;
                    }
                },
                _ = ping.tick() => {
                    let pong: std::result::Result<String, RedisError> =
                        redis::cmd("PING").query_async(&mut conn).await;
                    if let Err(e) = pong {
                        tracing::warn!(error = %e, "near cache connection lost; reconnecting");
                        break;
                    }
                }
            }
        }
        shared.down();
    }
}

/// Opens the subscriber connection (learning its client id first), subscribes it to the
/// invalidation channel, then opens the connection whose reads are tracked into it.
async fn connect(
    client: &Client,
) -> Result<(MultiplexedConnection, redis::aio::PubSubStream, i64)> {
    let (mut subscriber, id) = subscriber_connection(client).await?;
    subscriber.subscribe(INVALIDATE_CHANNEL).await?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let () = redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("REDIRECT")
        .arg(id)
        .query_async(&mut conn)
        .await?;
    Ok((conn, subscriber.into_on_message(), id))
}

/// A new pub/sub connection and its client id (for `CLIENT TRACKING REDIRECT`, and for
/// finding the connection in `CLIENT LIST`). redis-rs cannot send `CLIENT ID` on a pub/sub
/// connection, so the id is asked on the raw socket first.
pub(super) async fn subscriber_connection(client: &Client) -> Result<(redis::aio::PubSub, i64)> {
    let info = client.get_connection_info();
    let ConnectionAddr::Tcp(host, port) = &info.addr else {
        return Err(RedisError::from(std::io::Error::other("not a TCP address")).into());
    };
    let mut stream = TcpStream::connect((host.as_str(), *port))
        .await
        .map_err(RedisError::from)?;
    stream.set_nodelay(true).map_err(RedisError::from)?;
    if let Some(password) = &info.redis.password {
        let mut auth = vec!["AUTH"];
        if let Some(user) = &info.redis.username {
            auth.push(user);
        }
        auth.push(password);
        simple_command(&mut stream, &auth).await?;
    }
    let id = simple_command(&mut stream, &["CLIENT", "ID"]).await?;
    let id: i64 = id
        .strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| RedisError::from(std::io::Error::other(format!("CLIENT ID: {id}"))))?;
    Ok((redis::aio::PubSub::new(&info.redis, stream).await?, id))
}

/// Sends one command on a fresh connection, before it is handed to the pub/sub client,
/// and returns its one-line reply (`+OK`, `:42`); an error reply is an error.
async fn simple_command(stream: &mut TcpStream, args: &[&str]) -> Result<String> {
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(RedisError::from)?;
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        line.push(stream.read_u8().await.map_err(RedisError::from)?);
        if line.len() > 512 {
            break;
        }
    }
    let line = String::from_utf8_lossy(&line).trim_end().to_string();
    if line.starts_with('-') || !line.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(RedisError::from(std::io::Error::other(format!("{}: {line}", args[0]))).into());
    }
    Ok(line)
}
