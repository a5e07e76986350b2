//! Redis implementations of the backend traits, for several nodes sharing one Redis.
//!
//! Commands go through a [`ConnectionManager`] (one multiplexed, auto-reconnecting
//! connection; batches are pipelined). Blocking pops get connections of their own from a
//! small pool, because a `BLPOP` would stall every other command on a multiplexed one.
//! Pub/sub is one channel per namespace, the wake bus, that every node subscribes to with
//! a connection of its own; see [`super::redis_bus`].
//!
//! This module holds the connections, the scripts, the queue and the rate limiter; the
//! cache is `cache`, presence `presence`.

use super::{
    lock, near::NearCache, redis_bus::RedisPubSub, BackendError, Decision, Queue, Quota,
    RateLimiter, Result,
};
use async_trait::async_trait;

mod cache;
mod presence;

use bytes::Bytes;
use redis::{aio::ConnectionManager, AsyncCommands, Client, Script};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

/// GCRA in one atomic step. KEYS[1] = the key; ARGV = now, interval, tolerance, consume.
/// Returns -1 when allowed, else the milliseconds until a retry can succeed.
const GCRA_LUA: &str = r"
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local over = tat - now - tolerance
if over > 0 then return over end
if ARGV[4] == '1' then
  local new_tat = tat + interval
  redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now + 1000)
end
return -1
";

/// The set listing every id set (sorted set) of the namespace that `ids_add` created, so
/// that a fanout looks only at feeds that may exist.
const IDS_INDEX: &str = "idsets";
/// Member of [`IDS_INDEX`] saying it is complete (keys all start with the namespace, so
/// no set has this name).
const IDS_INDEX_COMPLETE: &str = "!complete";
/// Prefix of the member a rebuild puts in [`IDS_INDEX`] while it runs.
const IDS_INDEX_REBUILD: &str = "!rebuilding:";

/// The major and minor numbers of a version such as `7.0.15` (missing or odd parts: 0).
fn major_minor(version: &str) -> (u32, u32) {
    let mut parts = version.split('.').map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// `text` with Redis's glob characters escaped, for a `MATCH` pattern.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Adds one id to each of many sorted sets, trimming a set only when it outgrows the cap,
/// and lists each set in the index of id sets. KEYS[1] = the index, KEYS[i + 1] = the sets;
/// ARGV[1] = cap; ARGV[i + 1] = the id for KEYS[i + 1]. One round trip and no per-key trim
/// command for sets still under the cap.
const IDS_ADD_LUA: &str = r"
local cap = tonumber(ARGV[1])
for i = 2, #KEYS do
  local key = KEYS[i]
  redis.call('ZADD', key, ARGV[i], ARGV[i])
  redis.call('SADD', KEYS[1], key)
  if redis.call('ZCARD', key) > cap then
    redis.call('ZREMRANGEBYRANK', key, 0, -cap - 1)
  end
end
return 0
";

/// Adds one id to those of many sorted sets that exist. KEYS[1] = the index of id sets,
/// KEYS[2..] = the sets; ARGV[1] = the cap, ARGV[2] = the id, ARGV[3] = how far past the
/// cap a set may grow before it is trimmed back to the cap, ARGV[4] = the index's
/// completeness mark. One id argument for the whole
/// batch: a fanout of 2,000 feeds parses one id, not 2,000.
///
/// The caller passes the sets the index listed (see [`RedisBackend::ids_push`]), or every
/// set when the index was not complete. Each set is still checked to exist: one evicted or
/// deleted since it was listed is not re-created, and its listing goes. While the index is
/// not complete (lost, or being rebuilt), the sets found are listed. Returns 1 if the index
/// was complete.
const IDS_PUSH_LUA: &str = r"
local cap, id, slack = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local index = KEYS[1]
local complete = redis.call('SISMEMBER', index, ARGV[4]) == 1
for i = 2, #KEYS do
  local key = KEYS[i]
  if redis.call('EXISTS', key) == 1 then
    redis.call('ZADD', key, id, id)
    if redis.call('ZCARD', key) > cap + slack then
      redis.call('ZREMRANGEBYRANK', key, 0, -cap - 1)
    end
    if not complete then redis.call('SADD', index, key) end
  elseif complete then
    redis.call('SREM', index, key)
  end
end
if complete then return 1 end
return 0
";

/// Sets per [`IDS_PUSH_LUA`] call. A script holds Redis for its whole run: 500 pushes into
/// feeds that exist take it ~2.5 ms on the benchmark machine (2,000 took 12–27 ms, which
/// every other client waited out).
const PUSH_SCRIPT_SETS: usize = 500;

/// Marks the index of id sets complete, if the rebuild's own mark (ARGV[1]) is still in it:
/// an index evicted during the rebuild lost that mark too, and is not marked. KEYS[1] = the
/// index; ARGV[2] = the completeness mark.
const IDS_INDEX_DONE_LUA: &str = r"
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SADD', KEYS[1], ARGV[2])
return 1
";

/// Finishes a rebuild. KEYS[1] = the set; ARGV[1] = the cap, ARGV[2] = the marker,
/// ARGV[3..] = the ids. Returns 1 if the marker was there (and the ids went in), else 0.
const IDS_FILL_LUA: &str = r"
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[2])
for i = 3, #ARGV, 500 do
  local args = {}
  for j = i, math.min(i + 499, #ARGV) do
    table.insert(args, ARGV[j])
    table.insert(args, ARGV[j])
  end
  redis.call('ZADD', KEYS[1], unpack(args))
end
local cap = tonumber(ARGV[1])
if redis.call('ZCARD', KEYS[1]) > cap then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -cap - 1)
end
return 1
";

/// Records activity. KEYS[1] = the online sorted set (score: last activity), KEYS[2] = the
/// last-seen hash; ARGV = user, time, user, time, ... Returns the users who were not online.
const PRESENCE_TOUCH_LUA: &str = r"
local came = {}
for i = 1, #ARGV, 2 do
  local user, at = ARGV[i], ARGV[i + 1]
  if not redis.call('ZSCORE', KEYS[1], user) then
    table.insert(came, user)
    redis.call('ZADD', KEYS[1], at, user)
  else
    redis.call('ZADD', KEYS[1], 'GT', at, user)
  end
  local seen = tonumber(redis.call('HGET', KEYS[2], user) or 0)
  if seen < tonumber(at) then redis.call('HSET', KEYS[2], user, at) end
end
return came
";

/// Takes silent users offline, atomically, so each is announced by one node. KEYS[1] = the
/// online set; ARGV[1] = the cutoff. Returns user, last activity, user, ... (at most 1000).
const PRESENCE_EXPIRE_LUA: &str = r"
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, 1000)
for i = 1, #gone, 2 do redis.call('ZREM', KEYS[1], gone[i]) end
return gone
";

/// A connection to Redis shared by the cache, queue and limiter of one node.
#[derive(Clone)]
pub struct RedisBackend {
    client: Client,
    conn: ConnectionManager,
    namespace: Arc<str>,
    /// Idle dedicated connections for blocking pops.
    blocking: Arc<Mutex<Vec<redis::aio::MultiplexedConnection>>>,
    gcra: Arc<Script>,
    ids_add: Arc<Script>,
    ids_push: Arc<Script>,
    ids_fill: Arc<Script>,
    ids_index_done: Arc<Script>,
    /// Set while this node rebuilds the index of id sets.
    rebuilding_index: Arc<std::sync::atomic::AtomicBool>,
    presence_touch: Arc<Script>,
    presence_expire: Arc<Script>,
    /// This node's copy of the cache entries it reads (see [`super::near`]).
    near: Option<Arc<NearCache>>,
    /// The node's pub/sub, with its subscription to the wake bus.
    pubsub: Arc<RedisPubSub>,
}

/// How the shared connection behaves when Redis goes away: a command fails within about
/// two seconds (a 503 to the client, who retries) instead of queueing behind a reconnect
/// that backs off for many seconds, and the connection comes back within half a second of
/// Redis. Commands on it never block on the server (blocking pops use their own
/// connections), so a reply that takes two seconds means Redis is not there.
fn manager_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(1))
        .set_response_timeout(Duration::from_secs(2))
        .set_number_of_retries(2)
        .set_max_delay(500)
}

impl RedisBackend {
    /// Connects and checks the server answers. The near cache holds up to `near_bytes`
    /// (0: none).
    pub async fn connect(url: &str, namespace: &str, near_bytes: usize) -> Result<Self> {
        let client = Client::open(url)?;
        let conn = ConnectionManager::new_with_config(client.clone(), manager_config()).await?;
        let namespace: Arc<str> = namespace.into();
        let backend = Self {
            client: client.clone(),
            conn: conn.clone(),
            namespace: namespace.clone(),
            blocking: Arc::default(),
            gcra: Arc::new(Script::new(GCRA_LUA)),
            ids_add: Arc::new(Script::new(IDS_ADD_LUA)),
            ids_push: Arc::new(Script::new(IDS_PUSH_LUA)),
            ids_fill: Arc::new(Script::new(IDS_FILL_LUA)),
            ids_index_done: Arc::new(Script::new(IDS_INDEX_DONE_LUA)),
            rebuilding_index: Arc::default(),
            presence_touch: Arc::new(Script::new(PRESENCE_TOUCH_LUA)),
            presence_expire: Arc::new(Script::new(PRESENCE_EXPIRE_LUA)),
            near: NearCache::start(client.clone(), &namespace, near_bytes).map(Arc::new),
            pubsub: Arc::new(RedisPubSub::start(client, conn.clone(), &namespace)),
        };
        backend.ping().await?;
        backend.check_version().await?;
        backend.check_ids_index();
        Ok(backend)
    }

    /// The key prefix of this node's cluster.
    pub(super) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A handle on the shared multiplexed connection.
    pub(super) fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Fails unless the server has every command Kith uses (`SMISMEMBER`: Redis 6.2).
    async fn check_version(&self) -> Result<()> {
        const NEEDED: &str = "6.2";
        let mut conn = self.conn.clone();
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await?;
        let found = info
            .lines()
            .find_map(|line| line.strip_prefix("redis_version:"))
            .unwrap_or("unknown")
            .trim();
        if major_minor(found) < major_minor(NEEDED) {
            return Err(BackendError::TooOld {
                found: found.to_string(),
                needed: NEEDED,
            });
        }
        Ok(())
    }

    /// Rebuilds the index of id sets in the background unless it is complete (or this
    /// node is already at it).
    fn check_ids_index(&self) {
        use std::sync::atomic::Ordering;
        if self.rebuilding_index.swap(true, Ordering::AcqRel) {
            return;
        }
        let backend = self.clone();
        tokio::spawn(async move {
            if let Err(e) = backend.rebuild_ids_index().await {
                tracing::warn!(error = %e, "cannot rebuild the index of feed caches");
            }
            backend.rebuilding_index.store(false, Ordering::Release);
        });
    }

    /// Lists every sorted set of this namespace in the index of id sets (a `SCAN`), then
    /// marks the index complete. Sets created meanwhile list themselves ([`IDS_ADD_LUA`]).
    async fn rebuild_ids_index(&self) -> Result<()> {
        let index = self.key(IDS_INDEX);
        let mut conn = self.conn.clone();
        let complete: bool = conn.sismember(&index, IDS_INDEX_COMPLETE).await?;
        if complete {
            return Ok(());
        }
        tracing::info!("rebuilding the index of feed caches");
        let token = format!("{IDS_INDEX_REBUILD}{:016x}", rand::random::<u64>());
        let _: i64 = conn.sadd(&index, &token).await?;
        let result = self.list_id_sets(&index, &token).await;
        if result.is_err() {
            // Best effort: a token left behind is harmless, but should not pile up.
            let _: redis::RedisResult<i64> = conn.srem(&index, &token).await;
        }
        result
    }

    /// The rebuild's `SCAN`, then its completion (see [`IDS_INDEX_DONE_LUA`]).
    async fn list_id_sets(&self, index: &str, token: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}:*", glob_escape(&self.namespace));
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .arg("TYPE")
                .arg("zset")
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                let _: i64 = conn.sadd(index, &keys).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let done: i64 = self
            .ids_index_done
            .key(index)
            .arg(token)
            .arg(IDS_INDEX_COMPLETE)
            .invoke_async(&mut conn)
            .await?;
        if done == 1 {
            tracing::info!("the index of feed caches is complete");
        }
        Ok(())
    }

    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.namespace)
    }

    /// The near cache, if this node runs one.
    pub fn near(&self) -> Option<&NearCache> {
        self.near.as_deref()
    }

    /// Drops keys this node just wrote from its near cache.
    fn written<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        if let Some(near) = &self.near {
            near.forget(keys);
        }
    }

    /// `SET` of each entry in one pipeline; `only_if_absent` adds `NX`.
    async fn set_each(
        &self,
        entries: &[(String, Bytes)],
        ttl: Option<Duration>,
        only_if_absent: bool,
    ) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let full: Vec<String> = entries.iter().map(|(k, _)| self.key(k)).collect();
        let mut pipe = redis::pipe();
        for (key, (_, value)) in full.iter().zip(entries) {
            let set = pipe.cmd("SET").arg(key).arg(value.as_ref());
            if only_if_absent {
                set.arg("NX");
            }
            if let Some(ttl) = ttl {
                set.arg("PX").arg(ttl.as_millis().max(1) as u64);
            }
            set.ignore();
        }
        let mut conn = self.conn.clone();
        let result: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        self.written(full.iter().map(String::as_str));
        result?;
        Ok(())
    }

    /// The ids of the sorted set at `key` as the near cache holds them.
    async fn near_ids(&self, key: &str) -> Option<Arc<[i64]>> {
        self.near.as_ref()?.ids(key).await
    }

    /// The node's pub/sub.
    pub fn pubsub(&self) -> Arc<RedisPubSub> {
        self.pubsub.clone()
    }

    async fn limit(&self, key: &str, quota: Quota, now_ms: i64, consume: bool) -> Result<Decision> {
        let mut conn = self.conn.clone();
        let over: i64 = self
            .gcra
            .key(self.key(&format!("rl:{key}")))
            .arg(now_ms)
            .arg(quota.interval_ms())
            .arg(quota.tolerance_ms())
            .arg(if consume { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await?;
        Ok(if over < 0 {
            Decision::Allowed
        } else {
            Decision::Denied {
                retry_after: Duration::from_millis(over as u64),
            }
        })
    }
}

#[async_trait]
impl Queue for RedisBackend {
    async fn push(&self, queue: &str, item: Bytes) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: () = conn
            .rpush(self.key(&format!("q:{queue}")), item.as_ref())
            .await?;
        Ok(())
    }

    async fn pop(&self, queue: &str, wait: Duration) -> Result<Option<Bytes>> {
        let pooled = lock(&self.blocking).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.client.get_multiplexed_async_connection().await?,
        };
        let secs = wait.as_secs_f64().max(0.01);
        let popped: Option<(String, Vec<u8>)> =
            conn.blpop(self.key(&format!("q:{queue}")), secs).await?;
        // Only a connection that answered goes back; a failed one is dropped.
        let mut pool = lock(&self.blocking);
        if pool.len() < 16 {
            pool.push(conn);
        }
        Ok(popped.map(|(_, v)| Bytes::from(v)))
    }

    async fn len(&self, queue: &str) -> Result<u64> {
        let mut conn = self.conn.clone();
        Ok(conn.llen(self.key(&format!("q:{queue}"))).await?)
    }
}

#[async_trait]
impl RateLimiter for RedisBackend {
    async fn acquire(&self, key: &str, quota: Quota, now_ms: i64) -> Result<Decision> {
        self.limit(key, quota, now_ms, true).await
    }

    async fn peek(&self, key: &str, quota: Quota, now_ms: i64) -> Result<Decision> {
        self.limit(key, quota, now_ms, false).await
    }
}

#[cfg(test)]
mod tests {
    use super::{glob_escape, major_minor};

    #[test]
    fn versions_compare_by_major_then_minor() {
        assert_eq!(major_minor("7.0.15"), (7, 0));
        assert!(major_minor("6.0.9") < major_minor("6.2"));
        assert!(major_minor("10.0") > major_minor("6.2"));
        assert_eq!(major_minor("unknown"), (0, 0));
    }

    #[test]
    fn namespaces_match_themselves_only() {
        assert_eq!(glob_escape("kith"), "kith");
        assert_eq!(glob_escape(r"a*b?[c]\d"), r"a\*b\?\[c\]\\d");
    }
}
