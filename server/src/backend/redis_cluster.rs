//! Cluster membership on Redis: Snowflake node-id leases and the registry of live chat
//! servers (the book's service discovery). The logic that renews them and fences a node
//! that cannot is `crate::cluster`.
//!
//! Keys, under the node's namespace:
//! * `node:{id}`: the lease of node id `id`; its value is the holder's random token, its
//!   expiry the lease's end. Only the holder renews it (checked by token); nobody deletes
//!   it: it lapses after its holder ends.
//! * `servers`: a sorted set of node ids scored by when their registration expires (Unix
//!   ms), and `server:{id}`: the node's `{"url", "connections"}` as JSON.

use super::{redis::RedisBackend, Result};
use redis::Script;
use std::time::Duration;

/// Takes the first free node id among `count` from `first` on (wrapping at 1024), in one
/// round trip: `SET NX PX` each until one succeeds. Returns it, or -1 when all are held.
const LEASE_LUA: &str = r"
local prefix, token, ttl, first, count = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 0, count - 1 do
  local id = (first + i) % 1024
  if redis.call('SET', prefix .. id, token, 'NX', 'PX', ttl) then
    return id
  end
end
return -1
";

/// Extends a lease still held by this token, or takes it again if it lapsed and nobody
/// took it (its holder may use it at once: nobody else did meanwhile); 0 when another
/// node holds it.
const RENEW_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
";

/// A node id granted by [`RedisBackend::lease_node_id`].
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    pub node: u16,
    /// How long to wait before issuing ids under it: zero, unless Redis restarted within
    /// the last lease (it keeps nothing on disk), so that an earlier holder of the id may
    /// still be issuing under a lease Redis forgot.
    pub wait: Duration,
}

/// A live node as the registry holds it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Registered {
    pub node_id: u16,
    /// Where clients reach the node (`KITH_ADVERTISE_URL`).
    pub url: String,
    /// Its open WebSockets when it last registered.
    pub connections: u64,
}

impl RedisBackend {
    fn node_prefix(&self) -> String {
        format!("{}:node:", self.namespace())
    }

    /// Leases a free node id for `ttl_ms`, trying `count` ids from `first` on (1 to reserve
    /// a configured id); `None` if all of them are held.
    pub async fn lease_node_id(
        &self,
        token: &str,
        ttl_ms: u64,
        first: u16,
        count: u16,
    ) -> Result<Option<Lease>> {
        let mut conn = self.connection();
        let uptime = self.uptime().await?;
        let id: i64 = Script::new(LEASE_LUA)
            .key(self.node_prefix())
            .arg(token)
            .arg(ttl_ms)
            .arg(first)
            .arg(count)
            .invoke_async(&mut conn)
            .await?;
        Ok(u16::try_from(id).ok().map(|node| Lease {
            node,
            wait: Duration::from_millis(ttl_ms).saturating_sub(uptime),
        }))
    }

    /// How long the Redis server has run (`INFO server`, whole seconds: rounded down, so a
    /// wait computed from it errs long).
    async fn uptime(&self) -> Result<Duration> {
        let mut conn = self.connection();
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await?;
        let seconds = info
            .lines()
            .find_map(|line| line.strip_prefix("uptime_in_seconds:"))
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        Ok(Duration::from_secs(seconds))
    }

    /// Renews the lease of `id` for `ttl_ms` (or takes it again if it lapsed and nobody
    /// took it); false if another node holds it now.
    pub async fn renew_node_id(&self, id: u16, token: &str, ttl_ms: u64) -> Result<bool> {
        let mut conn = self.connection();
        let renewed: i64 = Script::new(RENEW_LUA)
            .key(format!("{}{id}", self.node_prefix()))
            .arg(token)
            .arg(ttl_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(renewed == 1)
    }

    /// Registers (or refreshes) a live node until `expires_at_ms`.
    pub async fn register_server(
        &self,
        node: &Registered,
        expires_at_ms: i64,
        ttl_ms: u64,
    ) -> Result<()> {
        let mut conn = self.connection();
        let json = serde_json::to_string(node).unwrap_or_default();
        let ns = self.namespace();
        let () = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(format!("{ns}:server:{}", node.node_id))
            .arg(json)
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .cmd("ZADD")
            .arg(format!("{ns}:servers"))
            .arg(expires_at_ms)
            .arg(node.node_id)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Removes a node from the registry (shutdown).
    pub async fn deregister_server(&self, node_id: u16) -> Result<()> {
        let mut conn = self.connection();
        let ns = self.namespace();
        let () = redis::pipe()
            .atomic()
            .cmd("DEL")
            .arg(format!("{ns}:server:{node_id}"))
            .ignore()
            .cmd("ZREM")
            .arg(format!("{ns}:servers"))
            .arg(node_id)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The nodes registered until after `now_ms` (expired entries are dropped on the way).
    pub async fn live_servers(&self, now_ms: i64) -> Result<Vec<Registered>> {
        let mut conn = self.connection();
        let ns = self.namespace();
        let (_, ids): ((), Vec<u16>) = redis::pipe()
            .cmd("ZREMRANGEBYSCORE")
            .arg(format!("{ns}:servers"))
            .arg("-inf")
            .arg(now_ms)
            .cmd("ZRANGEBYSCORE")
            .arg(format!("{ns}:servers"))
            .arg(format!("({now_ms}"))
            .arg("+inf")
            .query_async(&mut conn)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| format!("{ns}:server:{id}")).collect();
        let found: Vec<Option<String>> =
            redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        Ok(found
            .into_iter()
            .flatten()
            .filter_map(|json| serde_json::from_str(&json).ok())
            .collect())
    }
}
