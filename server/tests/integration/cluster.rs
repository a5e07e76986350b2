//! Cluster membership on Redis: node ids leased without configuration, the fence of a node
//! that cannot renew its lease, and discovery (`GET /v1/chat/servers`).

use crate::common::{self, gate::Gate, live::eventually, Backend, Options, TestApp};
use anyhow::{Context as _, Result};
use serde_json::Value;
use std::collections::HashSet;

/// A short lease, so the tests see it lapse in a second or two (its last fifth, 400 ms, is
/// the margin between the fence and the lease's end that one test checks).
const LEASE_MS: &str = "2000";

fn node_options(cluster: &common::Cluster) -> Options {
    let mut options = cluster.node(1);
    options.env.push(("KITH_NODE_LEASE_MS", LEASE_MS.into()));
    options
}

/// The node ids `GET /v1/chat/servers` lists on `app`, in its order.
async fn listed(app: &TestApp, token: &str) -> Result<Vec<(u64, u64)>> {
    let body: Value = app
        .get("/v1/chat/servers", Some(token))
        .await?
        .json()
        .await?;
    body["items"]
        .as_array()
        .context("items")?
        .iter()
        .map(|s| {
            let url = s["url"].as_str().context("url")?;
            anyhow::ensure!(
                url.starts_with("ws://") && url.ends_with("/v1/chat/ws"),
                "url {url}"
            );
            Ok((
                s["node_id"].as_u64().context("node_id")?,
                s["connections"].as_u64().context("connections")?,
            ))
        })
        .collect()
}

#[tokio::test]
async fn nodes_lease_distinct_ids_and_discovery_lists_them_least_loaded_first() -> Result<()> {
    if !common::redis_available() {
        eprintln!("skipped: KITH_TEST_REDIS_URL is not set");
        return Ok(());
    }
    let cluster = common::Cluster::new().await?;
    // Node c reaches Redis through a gate, so that it can vanish without a word.
    let redis_url = common::redis_url();
    let gate = Gate::to(
        redis_url
            .trim_start_matches("redis://")
            .trim_end_matches('/'),
    )
    .await?;
    let mut gated = node_options(&cluster);
    gated.env.push((
        "KITH_REDIS_URL",
        format!("redis://127.0.0.1:{}", gate.port()),
    ));
    let (a, b, c) = tokio::try_join!(
        common::spawn_with(Backend::Redis, node_options(&cluster)),
        common::spawn_with(Backend::Redis, node_options(&cluster)),
        common::spawn_with(Backend::Redis, gated),
    )?;
    let ids: HashSet<u16> = [&a, &b, &c].iter().map(|n| n.state.ids.node()).collect();
    assert_eq!(
        ids.len(),
        3,
        "three nodes started together, three node ids: {ids:?}"
    );

    let user = a.register("disco").await?;
    // Two sockets on node a: it becomes the busiest, and moves to the end of the list.
    let _s1 = common::live::Socket::open(&a, &user).await?;
    let _s2 = common::live::Socket::open(&a, &user).await?;
    let node_a = u64::from(a.state.ids.node());
    let listing = eventually("all three listed, node a last", || async {
        let list = listed(&b, &user.token).await?;
        Ok((list.len() == 3 && list.last() == Some(&(node_a, 2))).then_some(list))
    })
    .await?;
    let counts: Vec<u64> = listing.iter().map(|s| s.1).collect();
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]),
        "fewest connections first: {listing:?}"
    );

    // Pages let the browser connect to every listed server (their policy's connect-src),
    // once the node has renewed since they all registered.
    let servers: Value = b
        .get("/v1/chat/servers", Some(&user.token))
        .await?
        .json()
        .await?;
    let origins: Vec<String> = servers["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|s| s["url"].as_str())
        .map(|url| url.trim_end_matches("/v1/chat/ws").to_string())
        .collect();
    eventually("every listed server in the page's connect-src", || async {
        let page = a.get("/healthz", None).await?;
        let policy = page
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Ok(origins
            .iter()
            .all(|o| policy.contains(o.as_str()))
            .then_some(()))
    })
    .await?;

    // Node c dies without a word (its link to Redis cut): it leaves the list by itself.
    let node_c = u64::from(c.state.ids.node());
    gate.shut();
    eventually("the dead node to leave the list", || async {
        let list = listed(&a, &user.token).await?;
        Ok((!list.iter().any(|s| s.0 == node_c)).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_node_cut_off_from_redis_stops_writing_before_its_lease_lapses() -> Result<()> {
    if !common::redis_available() {
        eprintln!("skipped: KITH_TEST_REDIS_URL is not set");
        return Ok(());
    }
    let redis_url = common::redis_url();
    let upstream = redis_url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_string();
    let gate = Gate::to(&upstream).await?;
    let cluster = common::Cluster::new().await?;
    let mut options = node_options(&cluster);
    options.env.push((
        "KITH_REDIS_URL",
        format!("redis://127.0.0.1:{}", gate.port()),
    ));
    let app = common::spawn_with(Backend::Redis, options).await?;
    let node = app.state.ids.node();
    app.register("fenced_a").await?;
    let lease_key = format!("{}:node:{node}", cluster.namespace());
    let mut admin = ::redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;

    gate.shut();
    // The node stops issuing ids while Redis still holds its lease...
    eventually("the node to stop writing", || async {
        Ok(app.state.ids.check_writable().is_err().then_some(()))
    })
    .await?;
    let left: i64 = ::redis::cmd("PTTL")
        .arg(&lease_key)
        .query_async(&mut admin)
        .await?;
    assert!(
        left > 0,
        "the lease lapsed before the node stopped writing ({left} ms left)"
    );
    // ...and a write answers a clear 503.
    let resp = app
        .post_json(
            "/v1/auth/register",
            &serde_json::json!({"username": "fenced_b", "password": "long enough pw"}),
            None,
        )
        .await?;
    common::assert_error(resp, 503, "unavailable").await?;

    // Back in touch: it renews (the same id, nobody took it) and writes again.
    gate.open();
    // Redis's client reconnects with a growing backoff after the outage: up to 30 s.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while app.state.ids.check_writable().is_err() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the node did not write again within 30 s of Redis coming back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(app.state.ids.node(), node);
    app.register("fenced_b").await?;
    Ok(())
}

#[tokio::test]
async fn a_configured_node_id_is_reserved_against_every_other_node() -> Result<()> {
    if !common::redis_available() {
        eprintln!("skipped: KITH_TEST_REDIS_URL is not set");
        return Ok(());
    }
    let cluster = common::Cluster::new().await?;
    let leased = common::spawn_with(Backend::Redis, node_options(&cluster)).await?;
    let taken = leased.state.ids.node();

    // Configured with the id another node leased: the node refuses to start, by name.
    let mut clash = node_options(&cluster);
    clash.env.push(("KITH_NODE_ID", taken.to_string()));
    let refused = common::spawn_with(Backend::Redis, clash).await;
    let error = refused.err().context("a node started with a taken id")?;
    assert!(
        format!("{error:#}").contains(&format!("KITH_NODE_ID {taken} is leased")),
        "{error:#}"
    );

    // Configured with a free id: it holds it, and nodes that lease skip it.
    let free = (taken + 1) % 1024;
    let mut configured = node_options(&cluster);
    configured.env.push(("KITH_NODE_ID", free.to_string()));
    let owner = common::spawn_with(Backend::Redis, configured).await?;
    assert_eq!(owner.state.ids.node(), free);
    let mut admin = ::redis::Client::open(common::redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    let held: Option<String> = ::redis::cmd("GET")
        .arg(format!("{}:node:{free}", cluster.namespace()))
        .query_async(&mut admin)
        .await?;
    assert!(held.is_some(), "the configured id is leased in Redis");
    Ok(())
}
