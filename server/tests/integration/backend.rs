//! One suite for both implementations of the backend traits (in-process and Redis).

use crate::common;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use common::{redis_url, unique_namespace, Backend};
use kith::backend::{Backends, Decision, Quota, PUSH_TRIM_SLACK};
use std::time::Duration;

async fn backends(backend: Backend, namespace: &str) -> Result<Backends> {
    Ok(match backend {
        Backend::Memory => Backends::memory(),
        Backend::Redis => Backends::redis(&redis_url(), namespace, 1 << 20).await?,
    })
}

async fn cache_values_and_counters(backend: Backend) -> Result<()> {
    let b = backends(backend, &unique_namespace()).await?;
    let cache = &b.cache;
    assert_eq!(cache.get("post:1").await?, None);
    assert!(!cache.exists("post:1").await?);
    cache
        .set("post:1", Bytes::from_static(b"one"), None)
        .await?;
    cache
        .set(
            "post:2",
            Bytes::from_static(b"two"),
            Some(Duration::from_secs(60)),
        )
        .await?;
    assert_eq!(cache.get("post:1").await?, Some(Bytes::from_static(b"one")));
    assert!(cache.exists("post:2").await?);
    let many = cache
        .get_many(&["post:2".into(), "post:9".into(), "post:1".into()])
        .await?;
    assert_eq!(
        many,
        vec![
            Some(Bytes::from_static(b"two")),
            None,
            Some(Bytes::from_static(b"one"))
        ]
    );
    assert!(cache.get_many(&[]).await?.is_empty());
    // A fill (`add_many`) does not overwrite what a writer put there meanwhile.
    cache
        .set("count:1", Bytes::from_static(b"written"), None)
        .await?;
    cache
        .add_many(
            &[
                ("count:1".into(), Bytes::from_static(b"filled")),
                ("count:2".into(), Bytes::from_static(b"filled")),
            ],
            Some(Duration::from_secs(60)),
        )
        .await?;
    assert_eq!(
        cache
            .get_many(&["count:1".into(), "count:2".into()])
            .await?,
        vec![
            Some(Bytes::from_static(b"written")),
            Some(Bytes::from_static(b"filled"))
        ]
    );
    cache.add_many(&[], None).await?;
    cache.delete("post:1").await?;
    assert_eq!(cache.get("post:1").await?, None);
    cache
        .set_many(
            &[
                ("u:1".into(), Bytes::from_static(b"a")),
                ("u:2".into(), Bytes::from_static(b"b")),
            ],
            Some(Duration::from_secs(60)),
        )
        .await?;
    assert_eq!(
        cache.get_many(&["u:1".into(), "u:2".into()]).await?,
        vec![
            Some(Bytes::from_static(b"a")),
            Some(Bytes::from_static(b"b"))
        ]
    );
    cache.set_many(&[], None).await?;

    assert_eq!(cache.incr("likes:7", 1).await?, 1);
    assert_eq!(cache.incr("likes:7", 5).await?, 6);
    assert_eq!(cache.incr("likes:7", -2).await?, 4);
    // A counter is a value like any other (the celebrity-list version is read with `get`).
    assert_eq!(cache.get("likes:7").await?, Some(Bytes::from_static(b"4")));
    cache.set("n", Bytes::from_static(b"41"), None).await?;
    assert_eq!(cache.incr("n", 1).await?, 42);
    assert!(cache.exists("likes:7").await?);
    cache.delete("likes:7").await?;
    assert_eq!(cache.incr("likes:7", 1).await?, 1);
    cache.set("text", Bytes::from_static(b"abc"), None).await?;
    assert!(cache.incr("text", 1).await.is_err());
    Ok(())
}

async fn sorted_id_sets_are_bounded_and_idempotent(backend: Backend) -> Result<()> {
    let b = backends(backend, &unique_namespace()).await?;
    let cache = &b.cache;
    let entries: Vec<(String, i64)> = (1..=10)
        .flat_map(|id| [("feed:a".to_string(), id), ("feed:b".to_string(), id * 10)])
        .collect();
    cache.ids_add(&entries, 5).await?;
    // Adding again (at-least-once fanout) changes nothing.
    cache.ids_add(&entries, 5).await?;
    assert_eq!(
        cache.ids_range("feed:a", None, 100).await?,
        vec![10, 9, 8, 7, 6]
    );
    assert_eq!(cache.ids_range("feed:b", None, 2).await?, vec![100, 90]);
    assert_eq!(cache.ids_range("feed:a", Some(8), 100).await?, vec![7, 6]);
    assert_eq!(
        cache.ids_range("feed:a", Some(6), 100).await?,
        Vec::<i64>::new()
    );
    cache
        .ids_remove(&[
            ("feed:a".into(), 9),
            ("feed:a".into(), 7),
            ("feed:a".into(), 12345),
            ("feed:none".into(), 1),
        ])
        .await?;
    assert_eq!(cache.ids_range("feed:a", None, 100).await?, vec![10, 8, 6]);
    assert_eq!(
        cache.ids_contain("feed:a", &[10, 9, 6, 1]).await?,
        vec![true, false, true, false]
    );
    assert_eq!(cache.ids_contain("feed:none", &[1]).await?, vec![false]);
    assert!(cache.ids_contain("feed:a", &[]).await?.is_empty());
    assert!(cache.exists("feed:a").await?);
    assert!(cache.ids_range("feed:none", None, 10).await?.is_empty());
    assert!(!cache.exists("feed:none").await?);

    // One id into many sets (fanout): idempotent, and each set keeps its largest ids.
    // Ids shaped like Snowflakes (a millisecond above bit 22).
    // Only sets that exist are pushed into: a feed nobody built stays unbuilt.
    let keys = vec!["feed:c".to_string(), "feed:d".to_string()];
    cache
        .ids_add(&[("feed:c".into(), 0), ("feed:d".into(), 0)], 5)
        .await?;
    let ids: Vec<i64> = (1..=40).map(|ms| (ms << 22) | 1).collect();
    for id in &ids {
        cache.ids_push(&keys, *id, 5).await?;
        cache.ids_push(&keys, *id, 5).await?;
        cache.ids_push(&["feed:unbuilt".into()], *id, 5).await?;
    }
    assert!(!cache.exists("feed:unbuilt").await?);
    cache.ids_push(&[], (41 << 22) | 1, 5).await?;
    let newest: Vec<i64> = ids.iter().rev().take(5).copied().collect();
    for key in &keys {
        let held = cache.ids_range(key, None, 100).await?;
        assert_eq!(held[..5], newest[..]);
        assert!(held.len() <= 5 + PUSH_TRIM_SLACK, "{key} holds {held:?}");
        let mut distinct = held.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), held.len(), "no duplicates in {held:?}");
    }

    // An author who posts like clockwork (every 1,000 ms, so every id's millisecond is
    // the same modulo 16) still has their followers' sets trimmed.
    cache.ids_add(&[("feed:clock".into(), 0)], 5).await?;
    for k in 0..200 {
        let id = (3 + 1000 * k) << 22;
        cache.ids_push(&["feed:clock".into()], id, 5).await?;
    }
    let held = cache.ids_range("feed:clock", None, 1000).await?;
    assert!(held.len() <= 5 + PUSH_TRIM_SLACK, "{} ids held", held.len());
    assert_eq!(held.first(), Some(&((3 + 1000 * 199) << 22)));

    // A rebuild: the marker goes in first, a push lands meanwhile, the fill adds the rest
    // and takes the marker out; a second fill (another reader was slower) does nothing.
    cache.ids_add(&[("feed:e".into(), -1)], 10).await?;
    cache.ids_push(&["feed:e".into()], 50, 10).await?;
    assert_eq!(cache.ids_range("feed:e", None, 10).await?, vec![50, -1]);
    assert!(cache.ids_fill("feed:e", -1, &[30, 20, 10, 0], 4).await?);
    assert_eq!(
        cache.ids_range("feed:e", None, 10).await?,
        vec![50, 30, 20, 10]
    );
    assert!(!cache.ids_fill("feed:e", -1, &[40], 10).await?);
    assert_eq!(
        cache.ids_range("feed:e", None, 10).await?,
        vec![50, 30, 20, 10]
    );
    // A set dropped mid-rebuild (a follow) is not brought back by the fill.
    cache.ids_add(&[("feed:f".into(), -1)], 10).await?;
    cache.delete("feed:f").await?;
    assert!(!cache.ids_fill("feed:f", -1, &[1, 2], 10).await?);
    assert!(!cache.exists("feed:f").await?);
    // Many ids at once (the Redis script adds them in chunks).
    cache.ids_add(&[("feed:g".into(), -1)], 2000).await?;
    let many: Vec<i64> = (1..=1200).collect();
    assert!(cache.ids_fill("feed:g", -1, &many, 1000).await?);
    let held = cache.ids_range("feed:g", None, 2000).await?;
    assert_eq!(held.len(), 1000);
    assert_eq!((held[0], held[999]), (1200, 201));
    Ok(())
}

async fn queues_are_fifo_and_wake_waiting_consumers(backend: Backend) -> Result<()> {
    let b = backends(backend, &unique_namespace()).await?;
    let q = b.queue.clone();
    assert_eq!(q.pop("jobs", Duration::from_millis(20)).await?, None);
    for i in 0..3u8 {
        q.push("jobs", Bytes::from(vec![i])).await?;
    }
    assert_eq!(q.len("jobs").await?, 3);
    for i in 0..3u8 {
        assert_eq!(
            q.pop("jobs", Duration::from_millis(100)).await?,
            Some(Bytes::from(vec![i]))
        );
    }
    assert_eq!(q.len("jobs").await?, 0);

    // A consumer already waiting is woken by a later push.
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move { q.pop("jobs", Duration::from_secs(5)).await })
    };
    tokio::task::yield_now().await;
    q.push("jobs", Bytes::from_static(b"late")).await?;
    assert_eq!(waiter.await??, Some(Bytes::from_static(b"late")));
    // Other queues are separate.
    q.push("other", Bytes::from_static(b"x")).await?;
    assert_eq!(q.len("jobs").await?, 0);
    Ok(())
}

async fn pubsub_delivers_to_subscribers_across_instances(backend: Backend) -> Result<()> {
    let ns = unique_namespace();
    let a = backends(backend, &ns).await?;
    // With Redis a second node (own connections, same namespace) must hear the first; in
    // process "another node" is the same instance.
    let b = match backend {
        Backend::Memory => a.clone(),
        Backend::Redis => backends(backend, &ns).await?,
    };
    let mut sub1 = b.pubsub.subscribe("user:1").await?;
    let mut sub2 = b.pubsub.subscribe("user:1").await?;
    let mut other = b.pubsub.subscribe("user:2").await?;
    a.pubsub
        .publish(&["user:1".into()], Bytes::from_static(b"hello"))
        .await?;
    assert_eq!(recv(&mut sub1).await??, Bytes::from_static(b"hello"));
    assert_eq!(recv(&mut sub2).await??, Bytes::from_static(b"hello"));
    a.pubsub
        .publish(&["user:2".into()], Bytes::from_static(b"two"))
        .await?;
    assert_eq!(recv(&mut other).await??, Bytes::from_static(b"two"));
    // Publishing to a topic nobody listens to is fine.
    a.pubsub
        .publish(&["user:404".into()], Bytes::from_static(b"void"))
        .await?;
    // Dropping one of two subscriptions leaves the other one working.
    drop(sub2);
    a.pubsub
        .publish(&["user:1".into()], Bytes::from_static(b"still"))
        .await?;
    assert_eq!(recv(&mut sub1).await??, Bytes::from_static(b"still"));
    let sub2 = b.pubsub.subscribe("user:1").await?;
    // After dropping every subscription, a new one still works (the topic was cleaned up
    // and is re-created).
    drop(sub1);
    drop(sub2);
    let mut again = b.pubsub.subscribe("user:1").await?;
    a.pubsub
        .publish(&["user:1".into()], Bytes::from_static(b"again"))
        .await?;
    assert_eq!(recv(&mut again).await??, Bytes::from_static(b"again"));
    // One publish to several topics reaches each of them once, and nothing else.
    let mut three = b.pubsub.subscribe("user:3").await?;
    let topics = ["user:1", "user:404", "user:3", "user:2"].map(String::from);
    a.pubsub
        .publish(&topics, Bytes::from_static(b"group"))
        .await?;
    assert_eq!(recv(&mut again).await??, Bytes::from_static(b"group"));
    assert_eq!(recv(&mut three).await??, Bytes::from_static(b"group"));
    assert_eq!(recv(&mut other).await??, Bytes::from_static(b"group"));
    a.pubsub
        .publish(&["user:3".into()], Bytes::from_static(b"only 3"))
        .await?;
    assert_eq!(recv(&mut three).await??, Bytes::from_static(b"only 3"));
    assert!(again.try_recv().is_err() && other.try_recv().is_err());
    // A node's own publish reaches its own subscribers once, not again when it comes back
    // over Redis. The fence orders the bus: `b` hears it after "own" went out, so "theirs"
    // comes back to `a` after "own" does, and must be the next thing `own` gets.
    let mut own = a.pubsub.subscribe("user:5").await?;
    let mut fence = b.pubsub.subscribe("fence").await?;
    a.pubsub
        .publish(&["user:5".into()], Bytes::from_static(b"own"))
        .await?;
    assert_eq!(recv(&mut own).await??, Bytes::from_static(b"own"));
    a.pubsub
        .publish(&["fence".into()], Bytes::from_static(b"after own"))
        .await?;
    assert_eq!(recv(&mut fence).await??, Bytes::from_static(b"after own"));
    b.pubsub
        .publish(&["user:5".into()], Bytes::from_static(b"theirs"))
        .await?;
    assert_eq!(recv(&mut own).await??, Bytes::from_static(b"theirs"));
    // A confirmed publish and a flush return once sent (on Redis, once Redis took them).
    b.pubsub
        .publish_confirmed(&["user:5".into()], Bytes::from_static(b"confirmed"))
        .await?;
    b.pubsub.flush().await?;
    assert_eq!(recv(&mut own).await??, Bytes::from_static(b"confirmed"));
    // A burst arrives whole, in order, each wake-up at its own topics only (8 per topic,
    // well within a subscription's inbox). On Redis the publishes queue while earlier
    // `PUBLISH`es are on their way, so they travel several to a message.
    let mut burst = Vec::new();
    for t in 0..40 {
        burst.push(b.pubsub.subscribe(&format!("burst:{t}")).await?);
    }
    for i in 0..320 {
        a.pubsub
            .publish(&[format!("burst:{}", i % 40)], Bytes::from(i.to_string()))
            .await?;
    }
    for (t, sub) in burst.iter_mut().enumerate() {
        for i in (t..320).step_by(40) {
            assert_eq!(recv(sub).await??, Bytes::from(i.to_string()), "burst:{t}");
        }
        assert!(sub.try_recv().is_err(), "burst:{t} heard too much");
    }
    Ok(())
}

async fn rate_limits_follow_gcra_and_are_shared(backend: Backend) -> Result<()> {
    let ns = unique_namespace();
    let a = backends(backend, &ns).await?;
    let b = match backend {
        Backend::Memory => a.clone(),
        Backend::Redis => backends(backend, &ns).await?,
    };
    let quota = Quota::per_minute(3);
    let t0 = 1_000_000_000;
    assert_eq!(
        a.limiter.peek("posts:1", quota, t0).await?,
        Decision::Allowed
    );
    // Two nodes draw from one budget.
    assert_eq!(
        a.limiter.acquire("posts:1", quota, t0).await?,
        Decision::Allowed
    );
    assert_eq!(
        b.limiter.acquire("posts:1", quota, t0).await?,
        Decision::Allowed
    );
    assert_eq!(
        a.limiter.acquire("posts:1", quota, t0).await?,
        Decision::Allowed
    );
    let denied = b.limiter.acquire("posts:1", quota, t0).await?;
    assert_eq!(
        denied,
        Decision::Denied {
            retry_after: Duration::from_secs(20)
        }
    );
    assert_eq!(a.limiter.peek("posts:1", quota, t0).await?, denied);
    // Other keys are unaffected; time restores the budget one interval at a time.
    assert_eq!(
        a.limiter.acquire("posts:2", quota, t0).await?,
        Decision::Allowed
    );
    assert_eq!(
        a.limiter.acquire("posts:1", quota, t0 + 20_000).await?,
        Decision::Allowed
    );
    assert!(matches!(
        a.limiter.acquire("posts:1", quota, t0 + 20_000).await?,
        Decision::Denied { .. }
    ));
    Ok(())
}

async fn recv(
    s: &mut kith::backend::Subscription,
) -> Result<Result<Bytes, tokio::sync::broadcast::error::RecvError>, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(5), s.recv()).await
}

both_backends!(
    cache_values_and_counters,
    sorted_id_sets_are_bounded_and_idempotent,
    queues_are_fifo_and_wake_waiting_consumers,
    pubsub_delivers_to_subscribers_across_instances,
    rate_limits_follow_gcra_and_are_shared,
);

/// A fanout looks only at the sets the index of id sets lists, so the index must be
/// complete whenever it says so: sets that predate it are found by its rebuild, a lost
/// index is noticed (pushes then look at every set, and the index is rebuilt), and a
/// listed set that is gone is not brought back.
#[tokio::test]
async fn redis_fanout_index_is_rebuilt_and_never_skips_a_feed() -> Result<()> {
    if !common::redis_available() {
        eprintln!("skipped: KITH_TEST_REDIS_URL is not set");
        return Ok(());
    }
    use ::redis::AsyncCommands as _;
    let ns = unique_namespace();
    let index = format!("{ns}:idsets");
    let mut raw = ::redis::Client::open(redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    // Whether the index carries its completeness mark.
    let complete = {
        let (probe, index) = (raw.clone(), index.clone());
        move || {
            let (mut probe, index) = (probe.clone(), index.clone());
            async move { probe.sismember::<_, _, bool>(index, "!complete").await }
        }
    };
    // A feed cache written before the index existed (by an older node, say).
    let _: i64 = raw.zadd(format!("{ns}:feed:old"), 1, 1).await?;

    let b = backends(Backend::Redis, &ns).await?;
    eventually(true, &complete).await?;
    let listed: bool = raw.sismember(&index, format!("{ns}:feed:old")).await?;
    assert!(listed, "the rebuild did not list the older feed");
    b.cache
        .ids_push(&["feed:old".into(), "feed:never".into()], 2, 10)
        .await?;
    assert_eq!(b.cache.ids_range("feed:old", None, 10).await?, vec![2, 1]);
    assert!(!b.cache.exists("feed:never").await?);

    // The index is lost (evicted, say): pushes still reach every feed, and it comes back.
    b.cache.ids_add(&[("feed:x".into(), 1)], 10).await?;
    let _: i64 = raw.del(&index).await?;
    b.cache.ids_push(&["feed:x".into()], 3, 10).await?;
    assert_eq!(b.cache.ids_range("feed:x", None, 10).await?, vec![3, 1]);
    eventually(true, &complete).await?;
    for feed in ["feed:old", "feed:x"] {
        let listed: bool = raw.sismember(&index, format!("{ns}:{feed}")).await?;
        assert!(listed, "{feed} is missing from the rebuilt index");
    }
    b.cache.ids_push(&["feed:x".into()], 4, 10).await?;
    assert_eq!(b.cache.ids_range("feed:x", None, 10).await?, vec![4, 3, 1]);

    // A listed feed that is gone (evicted) is not brought back, and leaves the index.
    b.cache.ids_add(&[("feed:y".into(), 1)], 10).await?;
    let _: i64 = raw.del(format!("{ns}:feed:y")).await?;
    b.cache.ids_push(&["feed:y".into()], 5, 10).await?;
    assert!(!b.cache.exists("feed:y").await?);
    let listed: bool = raw.sismember(&index, format!("{ns}:feed:y")).await?;
    assert!(!listed, "a gone feed stayed listed");

    // One push over more feeds than a script takes (several scripts), most never built.
    let built: Vec<(String, i64)> = (0..600).map(|i| (format!("feed:many{i}"), 1)).collect();
    b.cache.ids_add(&built, 10).await?;
    let keys: Vec<String> = (0..1_500).map(|i| format!("feed:many{i}")).collect();
    b.cache.ids_push(&keys, 6, 10).await?;
    for (key, _) in &built {
        assert_eq!(b.cache.ids_range(key, None, 10).await?, vec![6, 1], "{key}");
    }
    for key in &keys[600..] {
        assert!(!b.cache.exists(key).await?, "{key} was created by a push");
    }
    Ok(())
}

/// Polls `read` until it returns `want` (an invalidation from Redis is on its way, not
/// instant); fails after [`common::live::WAIT`].
async fn eventually<T, E, F, Fut>(want: T, mut read: F) -> Result<()>
where
    T: PartialEq + std::fmt::Debug,
    E: std::error::Error + Send + Sync + 'static,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    let want = &want;
    common::live::eventually(&format!("reading {want:?}"), || {
        let read = read();
        async move { Ok((read.await? == *want).then_some(())) }
    })
    .await
}

/// A node whose near cache (of `budget` bytes) is serving.
async fn node_with_near_cache(namespace: &str, budget: usize) -> Result<Backends> {
    let b = Backends::redis(&redis_url(), namespace, budget).await?;
    let live = || {
        let near = common::near_cache(&b);
        Ok::<_, std::convert::Infallible>(near.is_some_and(|n| n.is_live()))
    };
    eventually(true, || async { live() }).await?;
    Ok(b)
}

/// The near cache answers repeated reads from memory, sees its own node's writes at once
/// and another node's as soon as Redis invalidates them, for values and id sets alike.
#[tokio::test]
async fn redis_near_cache_serves_reads_and_follows_other_nodes_writes() -> Result<()> {
    if !common::redis_available() {
        eprintln!("skipped: KITH_TEST_REDIS_URL is not set");
        return Ok(());
    }
    let ns = unique_namespace();
    let a = node_with_near_cache(&ns, 1 << 20).await?;
    let b = node_with_near_cache(&ns, 1 << 20).await?;

    // Values: the second read is a hit.
    a.cache.set("k", Bytes::from_static(b"1"), None).await?;
    assert_eq!(a.cache.get("k").await?, Some(Bytes::from_static(b"1")));
    let hits = common::near_hits(&a);
    assert_eq!(a.cache.get("k").await?, Some(Bytes::from_static(b"1")));
    assert!(a.cache.exists("k").await?);
    assert!(
        common::near_hits(&a) > hits,
        "the repeated read went to Redis"
    );
    // Another node's write reaches it through an invalidation.
    b.cache.set("k", Bytes::from_static(b"2"), None).await?;
    eventually(Some(Bytes::from_static(b"2")), || a.cache.get("k")).await?;
    // Its own write is visible at once.
    a.cache.set("k", Bytes::from_static(b"3"), None).await?;
    assert_eq!(a.cache.get("k").await?, Some(Bytes::from_static(b"3")));
    // A key missing when read is cached as missing, and its creation elsewhere seen.
    assert_eq!(a.cache.get("absent").await?, None);
    b.cache
        .set("absent", Bytes::from_static(b"here"), None)
        .await?;
    eventually(Some(Bytes::from_static(b"here")), || a.cache.get("absent")).await?;
    b.cache.delete("absent").await?;
    eventually(false, || a.cache.exists("absent")).await?;
    // Counters.
    assert_eq!(a.cache.incr("n", 1).await?, 1);
    assert_eq!(a.cache.get("n").await?, Some(Bytes::from_static(b"1")));
    b.cache.incr("n", 5).await?;
    eventually(Some(Bytes::from_static(b"6")), || a.cache.get("n")).await?;
    // Reading a value as an id set is an error, and the near cache stays up.
    assert!(a.cache.ids_range("n", None, 10).await.is_err());
    assert!(common::near_cache(&a).is_some_and(|n| n.is_live()));

    // Id sets: pages and membership come from the held set.
    a.cache
        .ids_add(&[("f".into(), 5), ("f".into(), 7), ("f".into(), 3)], 10)
        .await?;
    assert_eq!(a.cache.ids_range("f", None, 10).await?, vec![7, 5, 3]);
    let hits = common::near_hits(&a);
    assert_eq!(a.cache.ids_range("f", Some(7), 1).await?, vec![5]);
    assert_eq!(a.cache.ids_range("f", Some(8), 2).await?, vec![7, 5]);
    assert_eq!(
        a.cache.ids_contain("f", &[3, 4, 7]).await?,
        vec![true, false, true]
    );
    assert!(a.cache.exists("f").await?);
    assert!(
        common::near_hits(&a) >= hits + 3,
        "the id set was read again"
    );
    b.cache.ids_push(&["f".into()], 9, 10).await?;
    eventually(vec![9, 7, 5, 3], || a.cache.ids_range("f", None, 10)).await?;
    b.cache.ids_remove(&[("f".into(), 7)]).await?;
    eventually(vec![true, false], || a.cache.ids_contain("f", &[9, 7])).await?;
    b.cache.delete("f").await?;
    eventually(false, || a.cache.exists("f")).await?;
    assert!(a.cache.ids_range("f", None, 10).await?.is_empty());

    // A small budget holds what fits and still answers every read rightly.
    let small = node_with_near_cache(&ns, 4096).await?;
    let near = common::near_cache(&small).context("near")?;
    for i in 0..100 {
        let key = format!("v:{i}");
        a.cache
            .set(&key, Bytes::from(vec![b'x'; 100]), None)
            .await?;
        assert_eq!(small.cache.get(&key).await?.map(|v| v.len()), Some(100));
        assert!(near.bytes() <= 4096, "{} bytes held", near.bytes());
    }
    assert!(near.bytes() > 0);
    // An entry larger than the whole budget is read but not held.
    a.cache
        .set("big", Bytes::from(vec![b'y'; 8192]), None)
        .await?;
    assert_eq!(small.cache.get("big").await?.map(|v| v.len()), Some(8192));
    assert!(near.bytes() <= 4096);
    Ok(())
}

/// Killing either of the near cache's connections takes it down (reads go to Redis, what
/// was held is dropped) until it has reconnected; nothing stale is served meanwhile.
#[tokio::test]
async fn redis_near_cache_recovers_when_its_connections_are_killed() -> Result<()> {
    if !common::redis_available() {
        eprintln!("skipped: KITH_TEST_REDIS_URL is not set");
        return Ok(());
    }
    let ns = unique_namespace();
    let a = node_with_near_cache(&ns, 1 << 20).await?;
    let b = node_with_near_cache(&ns, 1 << 20).await?;
    let near = common::near_cache(&a).context("near")?;
    let admin = ::redis::Client::open(redis_url())?;
    let mut admin = admin.get_multiplexed_async_connection().await?;

    for (round, victim) in ["subscriber", "tracked"].into_iter().enumerate() {
        let value = |n: usize| Bytes::from(format!("{round}-{n}"));
        b.cache.set("k", value(1), None).await?;
        // Another node's write reaches this near cache by an invalidation, which may still
        // be on its way when the write returns.
        eventually(Some(value(1)), || a.cache.get("k")).await?;
        let subscriber = near.subscriber_id().context("live")?;
        let id = match victim {
            "subscriber" => subscriber,
            _ => {
                let list: String = ::redis::cmd("CLIENT")
                    .arg("LIST")
                    .query_async(&mut admin)
                    .await?;
                let line = list
                    .lines()
                    .find(|l| l.contains(&format!(" redir={subscriber} ")))
                    .context("the tracked connection in CLIENT LIST")?;
                line.split(' ')
                    .find_map(|f| f.strip_prefix("id="))
                    .context("id=")?
                    .parse()?
            }
        };
        common::kill_redis_client(id).await?;
        // Written while the near cache is down or reconnecting: read right regardless.
        b.cache.set("k", value(2), None).await?;
        eventually(Some(value(2)), || a.cache.get("k")).await?;
        eventually(true, || async {
            Ok::<_, std::convert::Infallible>(
                near.subscriber_id().is_some_and(|now| now != subscriber),
            )
        })
        .await?;
        // Live again, on new connections, and following writes again.
        b.cache.set("k", value(3), None).await?;
        eventually(Some(value(3)), || a.cache.get("k")).await?;
    }
    Ok(())
}

/// A node whose link to the wake bus breaks hears nothing published meanwhile, so once it
/// is subscribed again every local subscription gets a GAP (and recovers from the database);
/// then deliveries resume.
#[tokio::test]
async fn redis_pubsub_reports_a_gap_after_its_link_is_killed() -> Result<()> {
    if !common::redis_available() {
        eprintln!("skipped: KITH_TEST_REDIS_URL is not set");
        return Ok(());
    }
    let ns = unique_namespace();
    let a = backends(Backend::Redis, &ns).await?;
    let b = backends(Backend::Redis, &ns).await?;
    let pubsub = b.redis.as_ref().context("redis")?.pubsub();
    let mut sub = b.pubsub.subscribe("user:1").await?;
    let victim = pubsub.subscriber_id().context("live after subscribe")?;
    common::kill_redis_client(victim).await?;
    // Published while the link may be down, or after it is back: it arrives (before or
    // after the GAP), or the GAP stands for it.
    let meanwhile = Bytes::from_static(b"meanwhile");
    a.pubsub
        .publish(&["user:1".into()], meanwhile.clone())
        .await?;
    let mut first = recv(&mut sub).await??;
    if first == meanwhile {
        first = recv(&mut sub).await??;
    }
    assert_eq!(first, kith::backend::GAP);
    let now = pubsub.subscriber_id().context("live again")?;
    assert_ne!(now, victim);
    a.pubsub
        .publish(&["user:1".into()], Bytes::from_static(b"after"))
        .await?;
    let mut next = recv(&mut sub).await??;
    if next == meanwhile {
        next = recv(&mut sub).await??;
    }
    assert_eq!(next, Bytes::from_static(b"after"));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn memory_cache_entries_expire_with_the_clock() -> Result<()> {
    let b = Backends::memory();
    b.cache
        .set("k", Bytes::from_static(b"v"), Some(Duration::from_secs(30)))
        .await?;
    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(b.cache.get("k").await?.is_some());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(b.cache.get("k").await?.is_none());
    Ok(())
}
