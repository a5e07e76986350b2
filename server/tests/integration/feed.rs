//! API.md "Social graph" and "News feed", on both backends.

use crate::common;

use anyhow::{Context as _, Result};
use common::{assert_error, spawn_app, spawn_with, Backend, Options, TestApp, TestUser};
use reqwest::{header, StatusCode};
use serde_json::{json, Value};

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| p["id"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn id_num(id: &str) -> i64 {
    id.parse().unwrap_or_default()
}

async fn feed(app: &TestApp, user: &TestUser, query: &str) -> Result<Value> {
    let resp = app
        .get(&format!("/v1/me/feed{query}"), Some(&user.token))
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    Ok(resp.json().await?)
}

fn generous(backend: Backend) -> Options {
    let _ = backend;
    Options {
        env: vec![("KITH_POST_RATE_PER_MIN", "100000".into())],
        ..Default::default()
    }
}

async fn posts_are_validated_and_shown_newest_first(backend: Backend) -> Result<()> {
    let app = spawn_with(backend, generous(backend)).await?;
    let ann = app.register("ann").await?;
    assert_error(
        app.post_json("/v1/me/feed", &json!({"content": "hi"}), None)
            .await?,
        401,
        "unauthorized",
    )
    .await?;
    for bad in [
        json!({"content": ""}),
        json!({"content": "   \n\t "}),
        json!({"content": "x".repeat(5001)}),
    ] {
        let msg = assert_error(
            app.post_json("/v1/me/feed", &bad, Some(&ann.token)).await?,
            422,
            "validation_failed",
        )
        .await?;
        assert!(msg.starts_with("content"), "{msg}");
    }
    assert_error(
        app.post_json("/v1/me/feed", &json!({"body": "x"}), Some(&ann.token))
            .await?,
        400,
        "invalid_request",
    )
    .await?;
    let max = app.post_as(&ann, &"é".repeat(5000)).await?;
    assert_eq!(
        max["content"].as_str().map(|c| c.chars().count()),
        Some(5000)
    );
    let first = app.post_as(&ann, "  first  ").await?;
    assert_eq!(first["content"], "first", "content is trimmed");
    assert_eq!(first["author"]["username"], "ann");
    assert_eq!(first["like_count"], 0);
    assert_eq!(first["liked_by_me"], false);
    let second = app
        .post_as(&ann, "second <script>alert(1)</script>")
        .await?;
    let page = feed(&app, &ann, "").await?;
    assert_eq!(
        ids(&page),
        vec![
            second["id"].as_str().context("id")?,
            first["id"].as_str().context("id")?,
            max["id"].as_str().context("id")?
        ]
    );
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(
        page["items"][0]["content"],
        "second <script>alert(1)</script>"
    );

    let one: Value = app
        .get(
            &format!("/v1/posts/{}", first["id"].as_str().context("id")?),
            None,
        )
        .await?
        .json()
        .await?;
    assert_eq!(one["content"], "first");
    assert_error(app.get("/v1/posts/123", None).await?, 404, "not_found").await?;
    assert_error(app.get("/v1/posts/abc", None).await?, 404, "not_found").await?;
    for q in [
        "?limit=0",
        "?limit=101",
        "?limit=x",
        "?cursor=abc",
        "?cursor=-5",
    ] {
        assert_error(
            app.get(&format!("/v1/me/feed{q}"), Some(&ann.token))
                .await?,
            400,
            "invalid_request",
        )
        .await?;
    }
    Ok(())
}

async fn followers_get_posts_pages_have_no_gaps_under_concurrent_inserts(
    backend: Backend,
) -> Result<()> {
    let app = spawn_with(backend, generous(backend)).await?;
    let (author, reader) = (app.register("author").await?, app.register("reader").await?);
    let mut posted = Vec::new();
    for i in 0..25 {
        posted.push(
            app.post_as(&author, &format!("early {i}")).await?["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    // Following backfills what was posted before.
    app.follow(&reader, "author").await?;
    for i in 0..20 {
        posted.push(
            app.post_as(&author, &format!("late {i}")).await?["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    app.settle().await?;
    posted.reverse();
    assert_eq!(app.whole_feed(&reader, 7).await?, posted);

    // Page through while new posts keep arriving: the pages after the first never repeat
    // or skip anything that existed when paging began.
    let first = feed(&app, &reader, "?limit=10").await?;
    let mut seen = ids(&first);
    let mut cursor = first["next_cursor"].as_str().context("cursor")?.to_string();
    loop {
        app.post_as(&author, "arrives meanwhile").await?;
        let page = feed(&app, &reader, &format!("?limit=10&cursor={cursor}")).await?;
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, posted);
    Ok(())
}

async fn feeds_page_past_the_cache_and_rebuild_when_cold(backend: Backend) -> Result<()> {
    let app = spawn_with(backend, generous(backend)).await?;
    let (a, b, r) = (
        app.register("aaa").await?,
        app.register("bbb").await?,
        app.register("rrr").await?,
    );
    app.follow(&r, "aaa").await?;
    app.follow(&r, "bbb").await?;
    // A follower who never read their feed has no cache: fanout skips them, and their
    // first read builds it from SQLite.
    let idle = app.register("idle").await?;
    app.follow(&idle, "aaa").await?;
    // `r` has read (an empty feed), so fanout has a cache to push into.
    assert!(app.whole_feed(&r, 5).await?.is_empty());
    let mut expected = Vec::new();
    for i in 0..30 {
        let who = if i % 3 == 0 { &b } else { &a };
        expected.push(
            app.post_as(who, &format!("post {i}")).await?["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    app.settle().await?;
    expected.reverse();
    let cache = &app.state.backends.cache;
    let idle_key = format!("feed:{}", idle.id);
    assert!(
        !cache.exists(&idle_key).await?,
        "fanout built an unread feed"
    );
    let from_a: Vec<String> = expected
        .iter()
        .enumerate()
        .filter(|(i, _)| (29 - i) % 3 != 0)
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(app.whole_feed(&idle, 7).await?, from_a);
    assert!(cache.exists(&idle_key).await?, "the first read built it");
    let key = format!("feed:{}", r.id);
    // As if the cache had been trimmed: only the newest 8 ids remain in it.
    let cached = cache.ids_range(&key, None, 1000).await?;
    assert!(cached.len() >= 30, "fanout filled the cache");
    let old: Vec<(String, i64)> = cached.iter().skip(8).map(|id| (key.clone(), *id)).collect();
    cache.ids_remove(&old).await?;
    assert_eq!(
        app.whole_feed(&r, 5).await?,
        expected,
        "older pages come from SQLite"
    );
    // Cold: the cache is gone (evicted, new node): rebuilt within the request.
    cache.delete(&key).await?;
    assert_eq!(app.whole_feed(&r, 100).await?, expected);
    assert!(cache.exists(&key).await?, "the read rebuilt the cache");
    // A user who follows nobody still gets their own posts, and an empty feed is fine.
    let lonely = app.register("lonely").await?;
    assert!(app.whole_feed(&lonely, 20).await?.is_empty());
    let own = app.post_as(&lonely, "just me").await?;
    app.settle().await?;
    assert_eq!(
        app.whole_feed(&lonely, 20).await?,
        vec![own["id"].as_str().unwrap_or_default().to_string()]
    );
    Ok(())
}

async fn celebrity_posts_are_pulled_and_merged(backend: Backend) -> Result<()> {
    let mut options = generous(backend);
    options.env.push(("KITH_CELEBRITY_THRESHOLD", "2".into()));
    let app = spawn_with(backend, options).await?;
    let star = app.register("star").await?;
    let friend = app.register("friend").await?;
    let fan = app.register("fan").await?;
    let other_fan = app.register("other_fan").await?;
    app.follow(&fan, "star").await?;
    app.follow(&fan, "friend").await?;
    // The fan's caches (feed, followed celebrities) are warm while the star is still an
    // ordinary author…
    assert!(app.whole_feed(&fan, 5).await?.is_empty());
    // …then someone else's follow makes the star cross the threshold (2 followers). Nothing
    // of the fan's changed, yet the fan must see every post of the star's at once: the
    // crossing outdates every cached list of followed celebrities.
    app.follow(&other_fan, "star").await?;
    let mut expected = Vec::new();
    let mut star_ids = Vec::new();
    for i in 0..12 {
        let (who, text) = if i % 2 == 0 {
            (&star, "star")
        } else {
            (&friend, "friend")
        };
        let id = app.post_as(who, &format!("{text} {i}")).await?["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if i % 2 == 0 {
            star_ids.push(id_num(&id));
        }
        expected.push(id);
    }
    app.settle().await?;
    expected.reverse();
    // Nothing of the celebrity's was pushed into the fan's cached feed…
    let cached = app
        .state
        .backends
        .cache
        .ids_range(&format!("feed:{}", fan.id), None, 100)
        .await?;
    assert!(!cached.is_empty(), "the friend's posts were pushed");
    assert!(
        star_ids.iter().all(|id| !cached.contains(id)),
        "celebrity posts are not pushed"
    );
    // …yet the feed interleaves both authors correctly, across pages.
    assert_eq!(app.whole_feed(&fan, 5).await?, expected);
    // The star sees their own posts too.
    let own = app.whole_feed(&star, 20).await?;
    assert_eq!(own.len(), 6);
    Ok(())
}

async fn unfollow_and_delete_remove_posts_everywhere(backend: Backend) -> Result<()> {
    let app = spawn_with(backend, generous(backend)).await?;
    let (w, x) = (
        app.register("writer").await?,
        app.register("xreader").await?,
    );
    app.follow(&x, "writer").await?;
    let keep = app.post_as(&w, "keep").await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let gone = app.post_as(&w, "gone").await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    app.settle().await?;
    assert_eq!(
        app.whole_feed(&x, 20).await?,
        vec![gone.clone(), keep.clone()]
    );

    assert_error(
        app.delete_as(&x, &format!("/v1/posts/{gone}")).await?,
        403,
        "forbidden",
    )
    .await?;
    let resp = app.delete_as(&w, &format!("/v1/posts/{gone}")).await?;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    // Gone at once from reads, and (after the fanout job) from the caches.
    assert_eq!(app.whole_feed(&x, 20).await?, vec![keep.clone()]);
    assert_eq!(app.whole_feed(&w, 20).await?, vec![keep.clone()]);
    app.settle().await?;
    let cached = app
        .state
        .backends
        .cache
        .ids_range(&format!("feed:{}", x.id), None, 100)
        .await?;
    assert!(!cached.contains(&id_num(&gone)));
    assert_error(
        app.get(&format!("/v1/posts/{gone}"), None).await?,
        404,
        "not_found",
    )
    .await?;
    assert_error(
        app.delete_as(&w, &format!("/v1/posts/{gone}")).await?,
        404,
        "not_found",
    )
    .await?;

    let resp = app.delete_as(&x, "/v1/me/following/writer").await?;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(
        app.whole_feed(&x, 20).await?.is_empty(),
        "unfollowed posts leave the feed"
    );
    // Idempotent.
    let resp = app.delete_as(&x, "/v1/me/following/writer").await?;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    Ok(())
}

async fn likes_are_idempotent_and_counted(backend: Backend) -> Result<()> {
    let app = spawn_with(backend, generous(backend)).await?;
    let (p, q) = (app.register("pat").await?, app.register("quinn").await?);
    let post = app.post_as(&p, "like me").await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let like = |user: &TestUser, put: bool| {
        let req = if put {
            app.client.put(app.url(&format!("/v1/posts/{post}/like")))
        } else {
            app.client
                .delete(app.url(&format!("/v1/posts/{post}/like")))
        };
        req.bearer_auth(user.token.clone()).send()
    };
    let view = |user: &TestUser| {
        let token = user.token.clone();
        let app = &app;
        let post = post.clone();
        async move {
            anyhow::Ok(
                app.get(&format!("/v1/posts/{post}"), Some(&token))
                    .await?
                    .json::<Value>()
                    .await?,
            )
        }
    };
    for _ in 0..2 {
        assert_eq!(like(&q, true).await?.status(), StatusCode::NO_CONTENT);
    }
    let seen = view(&q).await?;
    assert_eq!(
        (seen["like_count"].as_i64(), seen["liked_by_me"].as_bool()),
        (Some(1), Some(true))
    );
    assert_eq!(like(&p, true).await?.status(), StatusCode::NO_CONTENT);
    let seen = view(&p).await?;
    assert_eq!(
        (seen["like_count"].as_i64(), seen["liked_by_me"].as_bool()),
        (Some(2), Some(true))
    );
    for _ in 0..2 {
        assert_eq!(like(&q, false).await?.status(), StatusCode::NO_CONTENT);
    }
    let seen = view(&q).await?;
    assert_eq!(
        (seen["like_count"].as_i64(), seen["liked_by_me"].as_bool()),
        (Some(1), Some(false))
    );
    // Liking again with the liker's liked set already cached updates the set in place.
    assert_eq!(like(&q, true).await?.status(), StatusCode::NO_CONTENT);
    let seen = view(&q).await?;
    assert_eq!(
        (seen["like_count"].as_i64(), seen["liked_by_me"].as_bool()),
        (Some(2), Some(true))
    );
    assert_error(
        app.client
            .put(app.url("/v1/posts/999/like"))
            .bearer_auth(&q.token)
            .send()
            .await?,
        404,
        "not_found",
    )
    .await?;
    assert_error(
        app.client
            .put(app.url(&format!("/v1/posts/{post}/like")))
            .send()
            .await?,
        401,
        "unauthorized",
    )
    .await?;
    Ok(())
}

async fn idempotency_keys_return_the_first_post(backend: Backend) -> Result<()> {
    let app = spawn_with(backend, generous(backend)).await?;
    let u = app.register("idem").await?;
    let send = |key: &'static str, content: &'static str| {
        app.client
            .post(app.url("/v1/me/feed"))
            .bearer_auth(u.token.clone())
            .header("Idempotency-Key", key)
            .json(&json!({"content": content}))
            .send()
    };
    let a: Value = send("key-1", "hello").await?.json().await?;
    let b: Value = send("key-1", "hello again").await?.json().await?;
    assert_eq!(a["id"], b["id"]);
    assert_eq!(b["content"], "hello");
    let c: Value = send("key-2", "hello").await?.json().await?;
    assert_ne!(a["id"], c["id"]);
    // Concurrent retries create one post.
    let results = futures::future::join_all((0..6).map(|_| send("key-3", "burst"))).await;
    let mut ids = std::collections::HashSet::new();
    for r in results {
        let r = r?;
        assert_eq!(r.status(), StatusCode::CREATED);
        ids.insert(
            r.json::<Value>().await?["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(ids.len(), 1);
    let page: Value = app
        .get("/v1/users/idem/posts?limit=100", None)
        .await?
        .json()
        .await?;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(3));
    let bad = app
        .client
        .post(app.url("/v1/me/feed"))
        .bearer_auth(&u.token)
        .header("Idempotency-Key", "x".repeat(200))
        .json(&json!({"content": "x"}))
        .send()
        .await?;
    assert_error(bad, 400, "invalid_request").await?;
    Ok(())
}

async fn posting_is_rate_limited_per_user(backend: Backend) -> Result<()> {
    let app = spawn_with(
        backend,
        Options {
            manual_clock: true,
            env: vec![("KITH_POST_RATE_PER_MIN", "3".into())],
            ..Default::default()
        },
    )
    .await?;
    let (u, v) = (app.register("rate").await?, app.register("other").await?);
    let clock = app.clock.clone().context("manual clock")?;
    for i in 0..3 {
        app.post_as(&u, &format!("p{i}")).await?;
    }
    let resp = app
        .post_json(
            "/v1/me/feed",
            &json!({"content": "one too many"}),
            Some(&u.token),
        )
        .await?;
    assert_eq!(resp.headers()[header::RETRY_AFTER], "20");
    assert_error(resp, 429, "rate_limited").await?;
    // Someone else is unaffected.
    app.post_as(&v, "fine").await?;
    clock.advance(20_000);
    app.post_as(&u, "allowed again").await?;
    assert_error(
        app.post_json("/v1/me/feed", &json!({"content": "no"}), Some(&u.token))
            .await?,
        429,
        "rate_limited",
    )
    .await?;
    println!("post-rate-limit: 3/min enforced, 429 with Retry-After 20 s, restored after 20 s");
    Ok(())
}

async fn fanout_resumes_after_a_crash(backend: Backend) -> Result<()> {
    // Node 1 acknowledges a post but dies before any fanout runs (no workers).
    let cluster = common::Cluster::new().await?;
    let crashed = spawn_with(backend, cluster.node(0)).await?;
    let (author, reader) = (
        crashed.register("phoenix").await?,
        crashed.register("watcher").await?,
    );
    crashed.follow(&reader, "phoenix").await?;
    // The reader has read their feed, so it has a cache for fanout to push into (with
    // Redis it outlives the node; in process it dies with it).
    assert!(crashed.whole_feed(&reader, 10).await?.is_empty());
    let post = crashed.post_as(&author, "survives").await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(crashed.state.store.outbox.pending().await?, 1);
    drop(crashed);
    // Node 2 starts on the same database: the outbox is resumed.
    let restarted = spawn_with(backend, cluster.node(2)).await?;
    restarted.settle().await?;
    if backend == Backend::Redis {
        let cached = restarted
            .state
            .backends
            .cache
            .ids_range(&format!("feed:{}", reader.id), None, 10)
            .await?;
        assert!(
            cached.contains(&id_num(&post)),
            "resumed fanout wrote the follower's feed"
        );
    }
    // A finished fanout hands the post to the notification service: the reader was told.
    let notes: Value = restarted
        .get("/v1/me/notifications", Some(&reader.token))
        .await?
        .json()
        .await?;
    assert_eq!(notes["items"][0]["post_id"], json!(post), "{notes}");
    assert_eq!(restarted.whole_feed(&reader, 10).await?, vec![post]);
    println!("fanout-resume: acknowledged=1 delivered_after_restart=1 lost=0");
    Ok(())
}

async fn the_social_graph_lists_follows_and_friends(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let me = app.register("me_user").await?;
    let names = ["g_one", "g_two", "g_three", "g_four", "g_five"];
    let mut others = Vec::new();
    for n in names {
        others.push(app.register(n).await?);
    }
    assert_error(
        app.client
            .put(app.url("/v1/me/following/me_user"))
            .bearer_auth(&me.token)
            .send()
            .await?,
        422,
        "validation_failed",
    )
    .await?;
    assert_error(
        app.client
            .put(app.url("/v1/me/following/nobody"))
            .bearer_auth(&me.token)
            .send()
            .await?,
        404,
        "not_found",
    )
    .await?;
    for n in names {
        app.follow(&me, n).await?;
        app.follow(&me, n).await?; // idempotent
    }
    for o in &others[..2] {
        app.follow(o, "me_user").await?;
    }
    let list = |path: &'static str| {
        let app = &app;
        let token = me.token.clone();
        async move {
            let mut all = Vec::new();
            let mut cursor = String::new();
            loop {
                let page: Value = app
                    .get(&format!("{path}?limit=2{cursor}"), Some(&token))
                    .await?
                    .json()
                    .await?;
                all.extend(
                    page["items"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|u| u["username"].as_str().unwrap_or_default().to_string()),
                );
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = format!("&cursor={c}"),
                    None => return anyhow::Ok(all),
                }
            }
        }
    };
    let mut following = list("/v1/me/following").await?;
    following.sort();
    let mut expected: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(following, expected);
    let mut followers = list("/v1/me/followers").await?;
    followers.sort();
    assert_eq!(followers, vec!["g_one", "g_two"]);
    let mut friends = list("/v1/me/friends").await?;
    friends.sort();
    assert_eq!(friends, vec!["g_one", "g_two"]);
    let profile: Value = app
        .get("/v1/users/me_user", Some(&others[0].token))
        .await?
        .json()
        .await?;
    assert_eq!(
        (
            profile["followers"].as_i64(),
            profile["following"].as_i64(),
            profile["followed_by_me"].as_bool()
        ),
        (Some(2), Some(5), Some(true))
    );

    let found: Value = app.get("/v1/users?prefix=g_t", None).await?.json().await?;
    let found: Vec<&str> = found["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(found, vec!["g_three", "g_two"]);
    assert_error(
        app.get("/v1/users?prefix=%25", None).await?,
        400,
        "invalid_request",
    )
    .await?;
    assert_error(
        app.get("/v1/me/following?cursor=zzz", Some(&me.token))
            .await?,
        400,
        "invalid_request",
    )
    .await?;
    Ok(())
}

both_backends!(
    posts_are_validated_and_shown_newest_first,
    followers_get_posts_pages_have_no_gaps_under_concurrent_inserts,
    feeds_page_past_the_cache_and_rebuild_when_cold,
    celebrity_posts_are_pulled_and_merged,
    unfollow_and_delete_remove_posts_everywhere,
    likes_are_idempotent_and_counted,
    idempotency_keys_return_the_first_post,
    posting_is_rate_limited_per_user,
    fanout_resumes_after_a_crash,
    the_social_graph_lists_follows_and_friends,
);

/// Polls `read` until `done` holds for what it returns (a Redis invalidation is on its
/// way to the other node, not instant).
async fn eventually<T, Fut>(
    what: &str,
    mut read: impl FnMut() -> Fut,
    done: impl Fn(&T) -> bool,
) -> Result<()>
where
    Fut: std::future::Future<Output = Result<T>>,
{
    let done = &done;
    common::live::eventually(what, || {
        let read = read();
        async move { Ok(done(&read.await?).then_some(())) }
    })
    .await
}

/// Two nodes sharing Redis each keep a near cache of what they read; a write through one
/// node reaches reads on the other (posts, likes, deletes, logout).
#[tokio::test]
async fn redis_nodes_see_each_others_writes_through_their_near_caches() -> Result<()> {
    if !common::redis_available() {
        eprintln!("skipped: KITH_TEST_REDIS_URL is not set");
        return Ok(());
    }
    let cluster = common::Cluster::new().await?;
    let a = spawn_with(Backend::Redis, cluster.node(4)).await?;
    let b = spawn_with(Backend::Redis, cluster.node(4)).await?;
    for node in [&a, &b] {
        eventually(
            "near cache serving",
            || async { Ok(common::near_cache(&node.state.backends).is_some_and(|n| n.is_live())) },
            |live| *live,
        )
        .await?;
    }
    let author = a.register("nc_author").await?;
    let reader = a.register("nc_reader").await?;
    a.follow(&reader, "nc_author").await?;
    // Node b reads the reader's session and feed twice: the second time from memory.
    assert!(b.whole_feed(&reader, 10).await?.is_empty());
    let hits = common::near_hits(&b.state.backends);
    assert!(b.whole_feed(&reader, 10).await?.is_empty());
    assert!(
        common::near_hits(&b.state.backends) > hits,
        "node b asked Redis again"
    );

    // A post through node a.
    let post = a.post_as(&author, "across nodes").await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    a.settle().await?;
    eventually(
        "the post on node b",
        || b.whole_feed(&reader, 10),
        |ids| *ids == vec![post.clone()],
    )
    .await?;
    // A like through node a.
    let liked = a
        .client
        .put(a.url(&format!("/v1/posts/{post}/like")))
        .bearer_auth(&reader.token)
        .send()
        .await?;
    assert_eq!(liked.status(), StatusCode::NO_CONTENT);
    eventually(
        "the like on node b",
        || feed(&b, &reader, "?limit=10"),
        |page| page["items"][0]["like_count"] == 1 && page["items"][0]["liked_by_me"] == true,
    )
    .await?;
    // A delete through node a.
    let deleted = a.delete_as(&author, &format!("/v1/posts/{post}")).await?;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    a.settle().await?;
    eventually(
        "the delete on node b",
        || b.whole_feed(&reader, 10),
        Vec::is_empty,
    )
    .await?;
    // Logging out through node a revokes the token on node b.
    let out = a
        .post_json("/v1/auth/logout", &json!(null), Some(&reader.token))
        .await?;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    eventually(
        "the logout on node b",
        || async { Ok(b.get("/v1/me", Some(&reader.token)).await?.status()) },
        |status| *status == StatusCode::UNAUTHORIZED,
    )
    .await?;
    Ok(())
}
