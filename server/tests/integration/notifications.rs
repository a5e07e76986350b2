//! Notifications through the real paths that create them (a chat message to a member with
//! no live connection, a post reaching followers), on both backends.
//!
//! Message notifications are written by a task spawned after the send and post ones by
//! the notification workers once the fanout is done, so tests wait for them with a bounded poll (`eventually`, `settle`).

use crate::common;

use anyhow::{Context as _, Result};
use common::{
    assert_error,
    live::{eventually, pass_time, presence_env, text, Socket, TIMEOUT_MS},
    spawn_app, spawn_with, Backend, Options, TestApp, TestUser,
};
use kith::outbox::Outbox;
use reqwest::header;
use serde_json::{json, Value};

/// A page of `user`'s notifications (`query`: `?limit&cursor`).
async fn notifications(app: &TestApp, user: &TestUser, query: &str) -> Result<Value> {
    let resp = app
        .get(&format!("/v1/me/notifications{query}"), Some(&user.token))
        .await?;
    assert_eq!(resp.status(), 200);
    Ok(resp.json().await?)
}

/// All of `user`'s notifications, newest first.
async fn items(app: &TestApp, user: &TestUser) -> Result<Vec<Value>> {
    let page = notifications(app, user, "?limit=100").await?;
    Ok(page["items"].as_array().context("items")?.clone())
}

async fn unread(app: &TestApp, user: &TestUser) -> Result<i64> {
    let body: Value = app
        .get("/v1/me/notifications/unread", Some(&user.token))
        .await?
        .json()
        .await?;
    body["count"].as_i64().context("count")
}

/// Waits until `user` has `n` notifications; returns them, newest first.
async fn wait_for(app: &TestApp, user: &TestUser, n: usize) -> Result<Vec<Value>> {
    eventually(
        &format!("{} notifications of {}", n, user.username),
        || async {
            let got = items(app, user).await?;
            Ok((got.len() >= n).then_some(got))
        },
    )
    .await
}

/// Deletes `post` as its `author` and waits for the deletion's fanout job.
async fn delete_post(app: &TestApp, author: &TestUser, post: &Value) -> Result<()> {
    let deleted = app
        .delete_as(author, &format!("/v1/posts/{}", text(post, "id")))
        .await?;
    assert_eq!(deleted.status(), 204);
    app.settle().await
}

/// `user` has no notification, read or unread.
async fn assert_none(app: &TestApp, user: &TestUser) -> Result<()> {
    assert!(items(app, user).await?.is_empty());
    assert_eq!(unread(app, user).await?, 0);
    Ok(())
}

async fn messages_notify_members_without_a_live_connection(backend: Backend) -> Result<()> {
    let app = spawn_with(
        backend,
        Options {
            manual_clock: true,
            env: presence_env(),
            ..Default::default()
        },
    )
    .await?;
    let ann = app.register("nm_ann").await?;
    let bob = app.register("nm_bob").await?; // connected
    let cat = app.register("nm_cat").await?; // never connected
    let club = app.group(&ann, "club", &["nm_bob", "nm_cat"]).await?;
    let bob_ws = Socket::open(&app, &bob).await?;

    let first = app.say(&ann, &club, "first").await?;
    let got = wait_for(&app, &cat, 1).await?;
    assert_eq!(got.len(), 1, "{got:?}");
    let n = &got[0];
    assert_eq!(
        (n["kind"].as_str(), n["actor"]["username"].as_str()),
        (Some("message"), Some("nm_ann"))
    );
    assert_eq!(
        (&n["channel_id"], &n["message_id"]),
        (&json!(club), &first["id"])
    );
    assert_eq!(
        (n["excerpt"].as_str(), n["read"].as_bool()),
        (Some("first"), Some(false))
    );
    assert!(n["post_id"].is_null());
    assert_eq!(unread(&app, &cat).await?, 1);
    // One write notifies every offline member, so these are final: the connected member
    // and the sender have none.
    assert!(items(&app, &bob).await?.is_empty());
    assert!(items(&app, &ann).await?.is_empty());

    // Bob's socket closes; once the presence timeout has passed he is offline, and the
    // next message notifies him (a long one, shortened).
    bob_ws.close().await?;
    pass_time(&[&app], TIMEOUT_MS + 1_000, &mut []).await?;
    let long = "x".repeat(200);
    let second = app.say(&ann, &club, &long).await?;
    let got = wait_for(&app, &bob, 1).await?;
    assert_eq!(got[0]["message_id"], second["id"]);
    let excerpt = text(&got[0], "excerpt");
    assert_eq!(
        excerpt.chars().count(),
        141,
        "140 characters and an ellipsis"
    );
    assert!(excerpt.ends_with('…'));
    let cats: Vec<Value> = wait_for(&app, &cat, 2)
        .await?
        .iter()
        .map(|n| n["message_id"].clone())
        .collect();
    assert_eq!(cats, vec![second["id"].clone(), first["id"].clone()]);
    Ok(())
}

async fn posts_notify_followers_and_reach_online_ones_live(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let pat = app.register("np_pat").await?; // the author
    let fay = app.register("np_fay").await?; // a follower, online
    let flo = app.register("np_flo").await?; // a follower, offline
    let sid = app.register("np_sid").await?; // a stranger, online
    app.follow(&fay, "np_pat").await?;
    app.follow(&flo, "np_pat").await?;
    let mut fay_ws = Socket::open(&app, &fay).await?;
    let mut sid_ws = Socket::open(&app, &sid).await?;

    let post = app.post_as(&pat, "hello followers").await?;
    let live = fay_ws
        .next_where("the new post", |f| {
            f["type"] == "new_post" && f["post"]["id"] == post["id"]
        })
        .await?;
    assert_eq!(live["post"]["author"]["username"], "np_pat");
    assert_eq!(live["post"]["content"], "hello followers");
    app.settle().await?;
    for follower in [&fay, &flo] {
        let got = items(&app, follower).await?;
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (
                got[0]["kind"].as_str(),
                got[0]["actor"]["username"].as_str()
            ),
            (Some("post"), Some("np_pat"))
        );
        assert_eq!(got[0]["post_id"], post["id"]);
        assert_eq!(got[0]["excerpt"], "hello followers");
        assert_eq!(unread(&app, follower).await?, 1);
    }
    assert!(items(&app, &sid).await?.is_empty());
    assert!(items(&app, &pat).await?.is_empty());
    let heard = sid_ws.fence(&app).await?;
    assert!(!heard.iter().any(|f| f["type"] == "new_post"), "{heard:?}");

    // Unfollowing takes the author's post notifications away from that follower only.
    let unfollowed = app.delete_as(&flo, "/v1/me/following/np_pat").await?;
    assert_eq!(unfollowed.status(), 204);
    assert_none(&app, &flo).await?;
    assert_eq!(items(&app, &fay).await?.len(), 1);

    // Deleting the post takes its notifications with it.
    delete_post(&app, &pat, &post).await?;
    for follower in [&fay, &flo] {
        assert_none(&app, follower).await?;
    }
    Ok(())
}

/// A post's stored notifications go with it even when its author became a celebrity after
/// posting, when the deletion's fanout no longer walks the followers.
async fn a_deleted_post_takes_its_notifications_after_its_author_became_a_celebrity(
    backend: Backend,
) -> Result<()> {
    let mut options = Options::default();
    options.env.push(("KITH_CELEBRITY_THRESHOLD", "2".into()));
    let app = spawn_with(backend, options).await?;
    let pat = app.register("dc_pat").await?;
    let flo = app.register("dc_flo").await?;
    let lee = app.register("dc_lee").await?;
    app.follow(&flo, "dc_pat").await?;
    let post = app.post_as(&pat, "before the fame").await?;
    app.settle().await?;
    let got = items(&app, &flo).await?;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["post_id"], post["id"]);

    app.follow(&lee, "dc_pat").await?; // two followers: pat is a celebrity now
    delete_post(&app, &pat, &post).await?;
    assert_none(&app, &flo).await?;
    assert!(items(&app, &lee).await?.is_empty());
    Ok(())
}

/// A celebrity's post is one row that followers pull, not a row each: it is listed and
/// counted like any other, merged in id order with stored ones, paged across, and seen
/// only by those who followed before it; online followers still get it live.
async fn celebrity_posts_are_pulled_into_notifications(backend: Backend) -> Result<()> {
    let mut options = Options::default();
    options.env.push(("KITH_CELEBRITY_THRESHOLD", "2".into()));
    let app = spawn_with(backend, options).await?;
    let pat = app.register("cp_pat").await?; // a celebrity: two followers
    let nia = app.register("cp_nia").await?; // a normal author: one follower
    let fay = app.register("cp_fay").await?; // follows both, online
    let flo = app.register("cp_flo").await?; // follows pat, offline
    let lee = app.register("cp_lee").await?; // follows pat after the post
    app.follow(&fay, "cp_pat").await?;
    app.follow(&flo, "cp_pat").await?;
    app.follow(&fay, "cp_nia").await?;
    let mut fay_ws = Socket::open(&app, &fay).await?;

    let older = app.post_as(&nia, "first from nia").await?;
    let long = "★".repeat(150);
    let star = app.post_as(&pat, &long).await?;
    let newer = app.post_as(&nia, "second from nia").await?;
    fay_ws
        .next_where("the celebrity's post, live", |f| {
            f["type"] == "new_post" && f["post"]["id"] == star["id"]
        })
        .await?;
    app.settle().await?;
    app.follow(&lee, "cp_pat").await?;

    let got = items(&app, &fay).await?;
    let ids: Vec<&Value> = got.iter().map(|n| &n["post_id"]).collect();
    assert_eq!(
        ids,
        vec![&newer["id"], &star["id"], &older["id"]],
        "{got:?}"
    );
    assert_eq!(got[1]["actor"]["username"], "cp_pat");
    assert_eq!(got[1]["kind"], "post");
    assert_eq!(got[1]["excerpt"], format!("{}…", "★".repeat(140)));
    assert_eq!(got[1]["read"], false);
    assert_eq!(unread(&app, &fay).await?, 3);
    // Pages run across stored and pulled notifications without a gap or a repeat.
    let first = notifications(&app, &fay, "?limit=2").await?;
    assert_eq!(first["items"][1]["post_id"], star["id"]);
    let cursor = first["next_cursor"].as_str().context("a next page")?;
    let second = notifications(&app, &fay, &format!("?limit=2&cursor={cursor}")).await?;
    assert_eq!(second["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(second["items"][0]["post_id"], older["id"]);

    let flo_got = items(&app, &flo).await?;
    assert_eq!(flo_got.len(), 1, "{flo_got:?}");
    assert_eq!(flo_got[0]["post_id"], star["id"]);
    assert_eq!(unread(&app, &flo).await?, 1);
    // Followed after the post: not notified of it; nor is the author.
    assert_none(&app, &lee).await?;
    assert!(items(&app, &pat).await?.is_empty());

    // The read watermark covers pulled notifications too.
    let read = app
        .post_json(
            "/v1/me/notifications/read",
            &json!({"up_to": star["id"]}),
            Some(&fay.token),
        )
        .await?;
    assert_eq!(read.status(), 204);
    assert_eq!(unread(&app, &fay).await?, 1);
    let flags: Vec<Value> = items(&app, &fay)
        .await?
        .iter()
        .map(|n| n["read"].clone())
        .collect();
    assert_eq!(flags, vec![json!(false), json!(true), json!(true)]);

    // Deleting the post takes it out of every list.
    delete_post(&app, &pat, &star).await?;
    assert_none(&app, &flo).await?;
    assert_eq!(items(&app, &fay).await?.len(), 2);
    Ok(())
}

async fn notifications_page_newest_first_and_are_marked_read(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let pat = app.register("pg_pat").await?;
    let fay = app.register("pg_fay").await?;
    let flo = app.register("pg_flo").await?;
    app.follow(&fay, "pg_pat").await?;
    app.follow(&flo, "pg_pat").await?;
    let mut posts = Vec::new();
    for i in 1..=3 {
        posts.push(app.post_as(&pat, &format!("post {i}")).await?["id"].clone());
        app.settle().await?; // one at a time, so their notifications are in post order
    }

    let first = notifications(&app, &fay, "?limit=2").await?;
    let page1 = first["items"].as_array().context("items")?;
    let post_ids: Vec<&Value> = page1.iter().map(|n| &n["post_id"]).collect();
    assert_eq!(post_ids, vec![&posts[2], &posts[1]]);
    let cursor = first["next_cursor"].as_str().context("a next page")?;
    let second = notifications(&app, &fay, &format!("?limit=2&cursor={cursor}")).await?;
    assert_eq!(second["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(second["items"][0]["post_id"], posts[0]);
    assert!(second["next_cursor"].is_null());
    assert_eq!(unread(&app, &fay).await?, 3);

    // Reading up to the second newest leaves the newest unread; it is fay's alone.
    let up_to = page1[1]["id"].clone();
    let read = app
        .post_json(
            "/v1/me/notifications/read",
            &json!({"up_to": up_to}),
            Some(&fay.token),
        )
        .await?;
    assert_eq!(read.status(), 204);
    assert_eq!(unread(&app, &fay).await?, 1);
    let flags: Vec<Value> = items(&app, &fay)
        .await?
        .iter()
        .map(|n| n["read"].clone())
        .collect();
    assert_eq!(flags, vec![json!(false), json!(true), json!(true)]);
    assert_eq!(unread(&app, &flo).await?, 3);
    for _ in 0..2 {
        let read = app
            .post_json(
                "/v1/me/notifications/read",
                &json!({"up_to": page1[0]["id"]}),
                Some(&fay.token),
            )
            .await?;
        assert_eq!(read.status(), 204);
        assert_eq!(unread(&app, &fay).await?, 0);
    }
    Ok(())
}

async fn notification_input_is_checked(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let ann = app.register("ni_ann").await?;
    for query in [
        "?limit=0",
        "?limit=101",
        "?limit=ten",
        "?cursor=abc",
        "?cursor=-5",
    ] {
        let resp = app
            .get(&format!("/v1/me/notifications{query}"), Some(&ann.token))
            .await?;
        assert_error(resp, 400, "invalid_request").await?;
    }
    for body in [
        json!({}),
        json!({"up_to": "abc"}),
        json!({"up_to": "1", "also": true}),
        json!(null),
    ] {
        let resp = app
            .post_json("/v1/me/notifications/read", &body, Some(&ann.token))
            .await?;
        assert_error(resp, 400, "invalid_request").await?;
    }
    let malformed = app
        .client
        .post(app.url("/v1/me/notifications/read"))
        .bearer_auth(&ann.token)
        .header(header::CONTENT_TYPE, "application/json")
        .body("{\"up_to\":")
        .send()
        .await?;
    assert_error(malformed, 400, "invalid_request").await?;

    for token in [None, Some("kith_forged")] {
        for path in ["/v1/me/notifications", "/v1/me/notifications/unread"] {
            assert_error(app.get(path, token).await?, 401, "unauthorized").await?;
        }
        let resp = app
            .post_json("/v1/me/notifications/read", &json!({"up_to": "1"}), token)
            .await?;
        assert_error(resp, 401, "unauthorized").await?;
    }
    Ok(())
}

/// A node answers "is this member online?" itself for the users whose activity it wrote
/// recently, and asks the shared store about everyone else: a member connected to another
/// node of the cluster is online and gets no notification; one who left gets one once the
/// timeout has passed, whichever node saw them last.
#[tokio::test]
async fn members_online_on_another_node_are_not_notified() -> Result<()> {
    if !common::redis_available() {
        eprintln!("skipped: KITH_TEST_REDIS_URL is not set (one node per process in memory)");
        return Ok(());
    }
    let cluster = common::Cluster::new().await?;
    let node = || {
        let mut options = cluster.node(1);
        options.manual_clock = true;
        options.env.extend(presence_env());
        options
    };
    let a = spawn_with(Backend::Redis, node()).await?;
    let b = spawn_with(Backend::Redis, node()).await?;
    common::live::clocks_in_step(&a, &b)?;
    let ann = a.register("xn_ann").await?; // sends, on node A
    let bob = a.register("xn_bob").await?; // connected to node B
    let cat = a.register("xn_cat").await?; // connected to node A, then gone
    let club = a.group(&ann, "club", &["xn_bob", "xn_cat"]).await?;
    let mut ann_ws = Socket::open(&a, &ann).await?;
    let mut bob_ws = Socket::open(&b, &bob).await?;
    let cat_ws = Socket::open(&a, &cat).await?;

    a.say(&ann, &club, "everyone is here").await?;
    // Cat leaves; once the timeout has passed (node B's round expires her), node A, which
    // saw her last, must ask the store instead of remembering her as online.
    cat_ws.close().await?;
    pass_time(
        &[&b, &a],
        TIMEOUT_MS + 1_000,
        &mut [&mut bob_ws, &mut ann_ws],
    )
    .await?;
    let second = a.say(&ann, &club, "cat has gone").await?;
    let got = wait_for(&a, &cat, 1).await?;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["message_id"], second["id"]);
    // One write notifies every offline member of a message, so bob's list is final.
    assert!(items(&a, &bob).await?.is_empty(), "bob is online on node B");
    assert!(items(&a, &ann).await?.is_empty());

    // Node A's answers, in the order asked: cat offline; ann online (A wrote her activity);
    // bob online (B wrote his: A asks the store).
    let id = |u: &TestUser| u.id.parse::<i64>();
    let (ann_id, bob_id, cat_id) = (id(&ann)?, id(&bob)?, id(&cat)?);
    let online = |node: &TestApp, users: Vec<i64>| {
        let state = node.state.clone();
        async move { kith::presence::online_among(&state, &users).await }
    };
    assert_eq!(
        online(&a, vec![cat_id, ann_id, bob_id]).await?,
        vec![ann_id, bob_id]
    );
    // A answers for ann without asking the store: with her taken out of the store behind
    // the nodes' backs, A, which wrote her activity moments ago, still has her online; B,
    // which has to ask, does not.
    use ::redis::AsyncCommands as _;
    let mut redis = ::redis::Client::open(common::redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    let removed: i64 = redis
        .zrem(format!("{}:presence:online", cluster.namespace()), ann_id)
        .await?;
    assert_eq!(removed, 1, "ann was online in the store");
    assert_eq!(online(&a, vec![ann_id]).await?, vec![ann_id]);
    assert!(online(&b, vec![ann_id]).await?.is_empty());
    Ok(())
}

/// A post's notifications are a durable stage of their own: a node that finished the feed
/// fanout and died before notifying anyone leaves the work in `notification_outbox`, and
/// the next node on the same database does it.
async fn post_notifications_survive_a_crash_after_the_fanout(backend: Backend) -> Result<()> {
    let cluster = common::Cluster::new().await?;
    // No workers: the test runs the fanout job itself, and nothing runs the next stage.
    let crashed = spawn_with(backend, cluster.node(0)).await?;
    let (author, reader) = (
        crashed.register("nc_author").await?,
        crashed.register("nc_reader").await?,
    );
    crashed.follow(&reader, "nc_author").await?;
    let post = crashed.post_as(&author, "after the crash").await?;
    let outbox = &crashed.state.store.outbox;
    let now = kith::storage::now_ms();
    let jobs = outbox.claim_stale(Outbox::Fanout, i64::MAX, now).await?;
    assert_eq!(jobs.len(), 1, "one fanout job");
    kith::feed::fanout::process(&crashed.state, jobs[0]).await?;
    assert_eq!(
        (
            outbox
                .claim_stale(Outbox::Fanout, i64::MAX, now)
                .await?
                .len(),
            outbox
                .claim_stale(Outbox::Notify, i64::MAX, now)
                .await?
                .len()
        ),
        (0, 1),
        "the finished fanout handed over to the notification outbox"
    );
    assert_eq!(crashed.whole_feed(&reader, 10).await?.len(), 1);
    assert!(
        items(&crashed, &reader).await?.is_empty(),
        "nobody notified yet"
    );
    drop(crashed);

    let restarted = spawn_with(backend, cluster.node(2)).await?;
    restarted.settle().await?;
    let got = items(&restarted, &reader).await?;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["post_id"], post["id"]);
    println!("notify-resume: handed_over=1 notified_after_restart=1 lost=0");
    Ok(())
}

/// A notification job run twice at once (a node re-enqueued it while another ran it)
/// tells each follower once: one notification, one live `new_post`.
async fn a_notification_job_run_twice_tells_each_follower_once(backend: Backend) -> Result<()> {
    let cluster = common::Cluster::new().await?;
    // No workers: the test runs the jobs itself.
    let app = spawn_with(backend, cluster.node(0)).await?;
    let (author, reader) = (
        app.register("twice_author").await?,
        app.register("twice_reader").await?,
    );
    app.follow(&reader, "twice_author").await?;
    let mut socket = common::live::Socket::open(&app, &reader).await?;
    app.post_as(&author, "told once").await?;
    let outbox = &app.state.store.outbox;
    let now = kith::storage::now_ms();
    let fanout = outbox.claim_stale(Outbox::Fanout, i64::MAX, now).await?;
    kith::feed::fanout::process(&app.state, fanout[0]).await?;
    let notify = outbox.claim_stale(Outbox::Notify, i64::MAX, now).await?;
    assert_eq!(notify.len(), 1, "one notification job");
    let (first, second) = tokio::join!(
        kith::notifications::posts::process(&app.state, notify[0]),
        kith::notifications::posts::process(&app.state, notify[0]),
    );
    first?;
    second?;
    let frames = socket.fence(&app).await?;
    let told = frames.iter().filter(|f| f["type"] == "new_post").count();
    assert_eq!(told, 1, "{frames:?}");
    assert_eq!(items(&app, &reader).await?.len(), 1);
    Ok(())
}

both_backends!(
    a_notification_job_run_twice_tells_each_follower_once,
    messages_notify_members_without_a_live_connection,
    posts_notify_followers_and_reach_online_ones_live,
    celebrity_posts_are_pulled_into_notifications,
    a_deleted_post_takes_its_notifications_after_its_author_became_a_celebrity,
    notifications_page_newest_first_and_are_marked_read,
    notification_input_is_checked,
    post_notifications_survive_a_crash_after_the_fanout,
);
