//! Several nodes as one service: each node's Snowflake node id, leased from Redis so that
//! no configuration is needed and no two live nodes share one, and discovery (the book's
//! service discovery: which chat servers are live, least loaded first).
//!
//! # Layout
//! * this module: [`Membership`], joining at start, the renewal loop and leaving at
//!   shutdown;
//! * `routes`: `GET /v1/chat/servers`.
//!
//! The Redis commands are in `backend::redis_cluster`. Without Redis a node is on its own:
//! node id `KITH_NODE_ID` or 0, and discovery lists the node itself.
//!
//! # The lease and the fence
//! A lease lasts `KITH_NODE_LEASE_MS` (10 s) from when the node asked for it, and is renewed
//! every fifth of that. The node issues ids only until a fifth of the lease before the end of the
//! last lease it was granted, measured on its own monotonic clock from the moment it *sent*
//! the request (Redis started the lease later than that, so it ends later too). A node
//! that cannot renew (Redis out of reach, the node paused) therefore stops issuing ids,
//! and so stops writing anything new (503 `unavailable`), before Redis can give its id to
//! another node. A node that renews again carries on; one whose id was taken meanwhile
//! leases another.
//!
//! Redis may also lose the leases themselves while their holders still issue ids: it keeps
//! nothing on disk, so a restart forgets them all. Every holder's last renewal came before
//! the restart, so each stops within a lease of it, or takes its own id back (no wait:
//! nobody else used it). A new lease granted within a lease of a restart is therefore
//! used only once a lease has passed since Redis started.
//!
//! With Redis, `KITH_NODE_ID` is leased the same way, so that no leasing node can take a
//! configured id; a node whose configured id another node holds does not start.

pub mod routes;

use crate::{
    backend::{
        redis::RedisBackend,
        redis_cluster::{Lease, Registered},
    },
    config::Config,
    id::IdGenerator,
    state::AppState,
};
use app::model::ChatServer;
use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

/// How long before its lease's end a node stops issuing ids: room for the clocks of the
/// node and of Redis to run at slightly different rates, and for a write begun with an id
/// just before the fence to finish. A fifth of the lease (2 s of the default 10 s).
fn safety(lease: Duration) -> Duration {
    lease / 5
}

/// This node's place in the cluster.
pub struct Membership {
    /// Where clients reach this node (`KITH_ADVERTISE_URL`, or its listening address).
    pub advertise_url: String,
    /// How long a lease and a registration last.
    lease: Duration,
    /// The lease holder's token, when the node id is leased.
    token: Option<String>,
    /// The node id is `KITH_NODE_ID`, only reserved in Redis: when the reservation is lost
    /// the node waits to take that id back rather than leasing another.
    configured: bool,
    /// The other nodes discovery listed at the last renewal.
    peers: std::sync::Mutex<Vec<u16>>,
    /// The WebSocket origins of the live nodes, for the pages' `connect-src`: the browser
    /// connects to the servers discovery lists.
    origins: std::sync::RwLock<Arc<str>>,
}

impl Membership {
    /// Joins: the node's id generator, with its node id configured, leased from Redis, or
    /// 0 for a node on its own. With Redis, a configured id is leased too, so that no
    /// other node leases it; another node holding it is an error.
    pub async fn join(
        config: &Config,
        redis: Option<&RedisBackend>,
        addr: SocketAddr,
    ) -> Result<(Self, IdGenerator), crate::backend::BackendError> {
        let lease = Duration::from_millis(config.node_lease_ms);
        let advertise_url = config
            .advertise_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let (ids, token) = match redis {
            None => (IdGenerator::new(config.node_id.unwrap_or(0)), None),
            Some(redis) => {
                let token = format!("{:032x}", rand::random::<u128>());
                let asked = Instant::now();
                let granted = take_lease(redis, &token, lease, config.node_id)
                    .await?
                    .ok_or(match config.node_id {
                        Some(node) => crate::backend::BackendError::NodeIdTaken(node),
                        None => crate::backend::BackendError::NoNodeId,
                    })?;
                if !granted.wait.is_zero() {
                    tracing::info!(
                        wait_ms = granted.wait.as_millis() as u64,
                        "Redis restarted lately, forgetting node leases: waiting before issuing ids"
                    );
                }
                tracing::info!(node = granted.node, "leased a node id");
                let (from, until) = window(asked, granted, lease);
                (IdGenerator::leased(granted.node, from, until), Some(token))
            }
        };
        Ok((
            Self {
                advertise_url,
                lease,
                token,
                configured: config.node_id.is_some(),
                peers: std::sync::Mutex::default(),
                origins: std::sync::RwLock::new(Arc::from("")),
            },
            ids,
        ))
    }

    /// The live nodes' WebSocket origins as CSP sources (` ws://host:port` each), empty for
    /// a node on its own.
    pub fn connect_sources(&self) -> Arc<str> {
        self.origins
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The node's WebSocket URL, as discovery lists it.
    pub fn websocket_url(&self) -> String {
        websocket_url(&self.advertise_url)
    }
}

/// Leases `configured`, or any free node id from a random one on.
async fn take_lease(
    redis: &RedisBackend,
    token: &str,
    lease: Duration,
    configured: Option<u16>,
) -> Result<Option<Lease>, crate::backend::BackendError> {
    let (first, count) = match configured {
        Some(node) => (node, 1),
        None => (
            rand::random::<u16>() % (crate::id::MAX_NODE_ID + 1),
            crate::id::MAX_NODE_ID + 1,
        ),
    };
    redis
        .lease_node_id(token, lease.as_millis() as u64, first, count)
        .await
}

/// When ids may be issued under a lease asked for at `asked`: from when it is safe (now,
/// unless Redis restarted lately) until a fifth of the lease before its end.
fn window(asked: Instant, granted: Lease, lease: Duration) -> (Instant, Instant) {
    (Instant::now() + granted.wait, asked + lease - safety(lease))
}

/// A WebSocket URL's origin (`ws://host:port`) as a CSP source; `None` for anything that
/// is not a plain `ws(s)://authority/…` URL, so that a bad advertised URL cannot add to or
/// break the policy.
fn csp_source(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))?;
    let authority = rest.split('/').next()?;
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    (!authority.is_empty() && authority.chars().all(plain))
        .then(|| &url[..url.len() - rest.len() + authority.len()])
}

/// `http(s)://host` → `ws(s)://host/v1/chat/ws`.
pub fn websocket_url(advertise_url: &str) -> String {
    let base = advertise_url
        .strip_prefix("https://")
        .map(|rest| format!("wss://{rest}"))
        .or_else(|| {
            advertise_url
                .strip_prefix("http://")
                .map(|rest| format!("ws://{rest}"))
        })
        .unwrap_or_else(|| advertise_url.to_string());
    format!("{base}/v1/chat/ws")
}

/// Renews the node's lease and registration every fifth of the lease; at shutdown it leaves
/// discovery and keeps renewing the lease until the process ends. Nothing to do without
/// Redis.
pub fn spawn(state: &AppState) {
    let Some(redis) = state.backends.redis.clone() else {
        return;
    };
    let state = state.clone();
    tokio::spawn(async move {
        let every = state.cluster.lease / 5;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = state.shutdown.clone();
        let mut leaving = false;
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                // Stopping, or the node's state gone (the same for this task).
                () = async { let _ = shutdown.wait_for(|stop| *stop).await; }, if !leaving => true,
            };
            if stopping {
                // Out of discovery at once, so that clients go elsewhere; the lease is kept
                // (renewed) while in-flight requests drain, and never given back: it lapses
                // after the process ends, when this node can no longer issue ids under it.
                leaving = true;
                if let Err(e) = redis.deregister_server(state.ids.node()).await {
                    tracing::warn!(error = %e, "leaving discovery failed");
                }
                continue;
            }
            // A renewal that takes longer than a tick is as good as failed.
            if tokio::time::timeout(every, renew(&state, &redis, !leaving))
                .await
                .is_err()
            {
                tracing::warn!("node lease renewal timed out");
            }
        }
    });
}

/// Renews the lease, and the discovery entry when `listed`.
async fn renew(state: &AppState, redis: &RedisBackend, listed: bool) {
    let membership = &state.cluster;
    let ttl = membership.lease.as_millis() as u64;
    if let Some(token) = &membership.token {
        let node = state.ids.node();
        let asked = Instant::now();
        match redis.renew_node_id(node, token, ttl).await {
            Ok(true) => state
                .ids
                .extend(asked + membership.lease - safety(membership.lease)),
            Ok(false) => {
                // Lost (the node could not renew for a whole lease, or Redis lost its
                // keys and another node took it): no more ids under it, whatever the
                // fence said.
                state.ids.fence();
                if membership.configured {
                    tracing::error!(
                        node,
                        "KITH_NODE_ID is leased by another node; waiting for it"
                    );
                } else {
                    tracing::warn!(node, "node id lease lost to another node; leasing another");
                    relet(state, redis, token, asked).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "node id lease renewal failed"),
        }
    }
    if !listed || state.ids.check_writable().is_err() {
        // Not under an id of its own just now: another node's entry may carry it.
        return;
    }
    let me = Registered {
        node_id: state.ids.node(),
        url: membership.websocket_url(),
        connections: state
            .metrics
            .websockets_open
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(0) as u64,
    };
    let expires = state.clock.now_ms() + ttl as i64;
    if let Err(e) = redis.register_server(&me, expires, ttl).await {
        tracing::warn!(error = %e, "discovery registration failed");
    }
    watch_peers(state, redis).await;
}

/// Keeps the live nodes' origins for the pages' policy, and notices nodes that left
/// discovery since the last renewal. One that died may have
/// committed a message and answered its sender without publishing the wake-up: this node's
/// connections would never hear of it, so they catch up from the database.
async fn watch_peers(state: &AppState, redis: &RedisBackend) {
    let Ok(live) = redis.live_servers(state.clock.now_ms()).await else {
        return;
    };
    let sources: String = live
        .iter()
        .filter_map(|s| csp_source(&s.url))
        .map(|origin| format!(" {origin}"))
        .collect();
    *state
        .cluster
        .origins
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::from(sources);
    let me = state.ids.node();
    let mut now: Vec<u16> = live
        .iter()
        .map(|s| s.node_id)
        .filter(|&id| id != me)
        .collect();
    now.sort_unstable();
    let before = std::mem::replace(
        &mut *state
            .cluster
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        now.clone(),
    );
    let gone: Vec<u16> = before
        .into_iter()
        .filter(|id| now.binary_search(id).is_err())
        .collect();
    if !gone.is_empty() {
        tracing::info!(
            ?gone,
            "nodes left discovery; connections catch up from the database"
        );
        state.backends.pubsub.announce_gap();
    }
}

/// Leases another node id after the node's own was taken.
async fn relet(state: &AppState, redis: &RedisBackend, token: &str, asked: Instant) {
    let lease = state.cluster.lease;
    match take_lease(redis, token, lease, None).await {
        Ok(Some(granted)) => {
            tracing::info!(node = granted.node, "leased a node id");
            let (from, until) = window(asked, granted, lease);
            state.ids.switch(granted.node, from, until);
        }
        Ok(None) => tracing::error!("all 1,024 node ids are leased"),
        Err(e) => tracing::warn!(error = %e, "node id lease failed"),
    }
}

/// The live nodes, fewest connections first (then by node id, so the order is stable).
pub async fn servers(state: &AppState) -> Result<Vec<ChatServer>, crate::error::AppError> {
    let mut list: Vec<ChatServer> = match &state.backends.redis {
        Some(redis) => redis
            .live_servers(state.clock.now_ms())
            .await?
            .into_iter()
            .map(|r| ChatServer {
                url: r.url,
                node_id: r.node_id,
                connections: r.connections,
            })
            .collect(),
        None => Vec::new(),
    };
    if !list.iter().any(|s| s.node_id == state.ids.node()) {
        // This node answers, so it is live, whether or not its registration is in yet.
        list.push(ChatServer {
            url: state.cluster.websocket_url(),
            node_id: state.ids.node(),
            connections: state
                .metrics
                .websockets_open
                .load(std::sync::atomic::Ordering::Relaxed)
                .max(0) as u64,
        });
    }
    list.sort_by_key(|s| (s.connections, s.node_id));
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::csp_source;

    #[test]
    fn only_plain_websocket_origins_become_csp_sources() {
        assert_eq!(
            csp_source("ws://10.0.0.7:3000/v1/chat/ws"),
            Some("ws://10.0.0.7:3000")
        );
        assert_eq!(
            csp_source("wss://chat-3.example.com/v1/chat/ws"),
            Some("wss://chat-3.example.com")
        );
        assert_eq!(
            csp_source("ws://[::1]:3000/v1/chat/ws"),
            Some("ws://[::1]:3000")
        );
        assert_eq!(csp_source("http://10.0.0.7:3000/v1/chat/ws"), None);
        assert_eq!(csp_source("ws://evil; script-src *"), None);
        assert_eq!(csp_source("ws:///v1/chat/ws"), None);
    }
}
