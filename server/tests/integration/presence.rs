//! Presence, typing and read receipts over real connections, on both backends.
//!
//! Time-based rules run on the node's manual clock: a test moves it with
//! [`pass_time`](common::live::pass_time), which also runs the presence rounds the node's
//! timer would run, so nothing here sleeps for the timeout.

use crate::common;

use anyhow::{Context as _, Result};
use common::{
    assert_error,
    live::{millis, pass_time, presence_env, presence_frame, text, Socket, TIMEOUT_MS, WAIT},
    spawn_app, spawn_with, Backend, Options, TestUser,
};
use serde_json::{json, Value};

fn manual_clock() -> Options {
    Options {
        manual_clock: true,
        env: presence_env(),
        ..Default::default()
    }
}

fn about<'a>(kind: &'a str, channel: &'a str, user: &'a TestUser) -> impl Fn(&Value) -> bool + 'a {
    move |f| f["type"] == kind && f["channel_id"] == channel && f["user_id"] == user.id.as_str()
}

/// Frames in `heard` that are `presence` frames about `user`.
fn presence_about<'a>(heard: &'a [Value], user: &TestUser) -> Vec<&'a Value> {
    heard
        .iter()
        .filter(|f| f["type"] == "presence" && f["user_id"] == user.id.as_str())
        .collect()
}

async fn a_socket_keeps_its_user_online_through_short_drops(backend: Backend) -> Result<()> {
    let app = spawn_with(backend, manual_clock()).await?;
    let (ann, fred) = (
        app.register("drop_ann").await?,
        app.register("drop_fred").await?,
    );
    app.befriend(&ann, &fred).await?;
    let mut fred_ws = Socket::open(&app, &fred).await?;

    // Connecting makes ann online: her friend hears it and a lookup says so.
    let ann_ws = Socket::open(&app, &ann).await?;
    let connected_at = app.now_ms()?;
    let online = fred_ws
        .next_where("ann online", presence_frame(&ann, "online"))
        .await?;
    assert_eq!(millis(&online["last_active_at"])?, connected_at);
    let seen = app.presence_of(&fred, &ann).await?;
    assert_eq!(
        (seen["status"].as_str(), seen["username"].as_str()),
        (Some("online"), Some("drop_ann"))
    );
    assert_eq!(millis(&seen["last_active_at"])?, connected_at);

    // A drop shorter than the timeout changes nothing anyone sees.
    ann_ws.close().await?;
    pass_time(&[&app], TIMEOUT_MS - 5_000, &mut [&mut fred_ws]).await?;
    assert_eq!(app.presence_of(&fred, &ann).await?["status"], "online");
    let heard = fred_ws.fence(&app).await?;
    assert!(
        presence_about(&heard, &ann).is_empty(),
        "flapped: {heard:?}"
    );

    // Past the timeout she is offline, announced with the time she was last active.
    pass_time(&[&app], 10_000, &mut [&mut fred_ws]).await?;
    let gone = app.presence_of(&fred, &ann).await?;
    assert_eq!(gone["status"], "offline");
    assert_eq!(millis(&gone["last_active_at"])?, connected_at);
    let offline = fred_ws
        .next_where("ann offline", presence_frame(&ann, "offline"))
        .await?;
    assert_eq!(millis(&offline["last_active_at"])?, connected_at);
    Ok(())
}

async fn a_second_device_keeps_its_user_online(backend: Backend) -> Result<()> {
    let app = spawn_with(backend, manual_clock()).await?;
    let (ann, fred) = (
        app.register("two_ann").await?,
        app.register("two_fred").await?,
    );
    app.befriend(&ann, &fred).await?;
    let mut fred_ws = Socket::open(&app, &fred).await?;
    let phone = Socket::open(&app, &ann).await?;
    let mut laptop = Socket::open(&app, &app.login(&ann).await?).await?;
    fred_ws
        .next_where("ann online", presence_frame(&ann, "online"))
        .await?;

    // The phone leaves; the laptop heartbeats on, well past the phone's timeout.
    phone.close().await?;
    pass_time(
        &[&app],
        TIMEOUT_MS - 10_000,
        &mut [&mut fred_ws, &mut laptop],
    )
    .await?;
    assert_eq!(app.presence_of(&fred, &ann).await?["status"], "online");
    pass_time(
        &[&app],
        TIMEOUT_MS - 10_000,
        &mut [&mut fred_ws, &mut laptop],
    )
    .await?;
    assert_eq!(app.presence_of(&fred, &ann).await?["status"], "online");
    let heard = fred_ws.fence(&app).await?;
    assert!(
        presence_about(&heard, &ann).is_empty(),
        "one online frame and no other: {heard:?}"
    );

    // The laptop leaves too: offline a timeout after its last heartbeat.
    let last_heartbeat = app.now_ms()?;
    laptop.close().await?;
    pass_time(&[&app], TIMEOUT_MS + 1_000, &mut [&mut fred_ws]).await?;
    let gone = app.presence_of(&fred, &ann).await?;
    assert_eq!(gone["status"], "offline");
    assert_eq!(millis(&gone["last_active_at"])?, last_heartbeat);
    let offline = fred_ws
        .next_where("ann offline", presence_frame(&ann, "offline"))
        .await?;
    assert_eq!(millis(&offline["last_active_at"])?, last_heartbeat);
    Ok(())
}

async fn a_long_poll_keeps_its_user_online_while_it_polls_in_time(backend: Backend) -> Result<()> {
    let app = spawn_with(backend, manual_clock()).await?;
    let (lena, fred) = (
        app.register("poll_lena").await?,
        app.register("poll_fred").await?,
    );
    app.befriend(&lena, &fred).await?;
    let dm = app.dm(&fred, &lena).await?;
    let mut fred_ws = Socket::open(&app, &fred).await?;

    // Lena has no socket; a poll (answered at once: timeout 0) makes her present.
    let cursor = text(&app.sync(&lena, "0", 0).await?, "cursor").to_string();
    fred_ws
        .next_where("lena online", presence_frame(&lena, "online"))
        .await?;
    assert_eq!(app.presence_of(&fred, &lena).await?["status"], "online");

    // Polling again within the timeout keeps her online: 40 s after her first poll and
    // 20 s after her second.
    pass_time(&[&app], 20_000, &mut [&mut fred_ws]).await?;
    app.sync(&lena, &cursor, 0).await?;
    pass_time(&[&app], 20_000, &mut [&mut fred_ws]).await?;
    assert_eq!(app.presence_of(&fred, &lena).await?["status"], "online");

    // So does a poll that is still waiting, however long it has waited.
    let waiting = app.waiting_sync(&lena, &cursor, 30).await?;
    pass_time(&[&app], TIMEOUT_MS + 10_000, &mut [&mut fred_ws]).await?;
    assert_eq!(app.presence_of(&fred, &lena).await?["status"], "online");
    let heard = fred_ws.fence(&app).await?;
    assert!(
        presence_about(&heard, &lena).is_empty(),
        "flapped: {heard:?}"
    );
    // Fred typing ends her poll; after that she is silent.
    let typed = app
        .post_json(
            &format!("/v1/chat/channels/{dm}/typing"),
            &json!(null),
            Some(&fred.token),
        )
        .await?;
    assert_eq!(typed.status(), 204);
    let answer = tokio::time::timeout(WAIT, waiting).await???;
    assert_eq!(answer["events"][0]["type"], "typing");
    let last_poll = app.now_ms()?;
    pass_time(&[&app], TIMEOUT_MS + 1_000, &mut [&mut fred_ws]).await?;
    let gone = app.presence_of(&fred, &lena).await?;
    assert_eq!(gone["status"], "offline");
    assert_eq!(millis(&gone["last_active_at"])?, last_poll);
    let offline = fred_ws
        .next_where("lena offline", presence_frame(&lena, "offline"))
        .await?;
    assert_eq!(millis(&offline["last_active_at"])?, last_poll);
    Ok(())
}

async fn friends_and_small_groups_hear_presence_and_strangers_do_not(
    backend: Backend,
) -> Result<()> {
    let app = spawn_with(backend, manual_clock()).await?;
    let ann = app.register("aud_ann").await?;
    let fred = app.register("aud_fred").await?; // a friend
    let gus = app.register("aud_gus").await?; // in a small group with ann
    let sam = app.register("aud_sam").await?; // a stranger
    let olga = app.register("aud_olga").await?; // follows ann, not followed back
    app.befriend(&ann, &fred).await?;
    app.follow(&olga, "aud_ann").await?;
    app.group(&ann, "trip", &["aud_gus"]).await?;
    let mut fred_ws = Socket::open(&app, &fred).await?;
    let mut gus_ws = Socket::open(&app, &gus).await?;
    let mut sam_ws = Socket::open(&app, &sam).await?;
    let mut olga_ws = Socket::open(&app, &olga).await?;

    let ann_ws = Socket::open(&app, &ann).await?;
    for ws in [&mut fred_ws, &mut gus_ws] {
        ws.next_where("ann online", presence_frame(&ann, "online"))
            .await?;
    }
    for ws in [&mut sam_ws, &mut olga_ws] {
        let heard = ws.fence(&app).await?;
        assert!(presence_about(&heard, &ann).is_empty(), "told: {heard:?}");
    }

    // Going offline is told to the same people.
    ann_ws.close().await?;
    pass_time(
        &[&app],
        TIMEOUT_MS + 1_000,
        &mut [&mut fred_ws, &mut gus_ws, &mut sam_ws, &mut olga_ws],
    )
    .await?;
    for ws in [&mut fred_ws, &mut gus_ws] {
        ws.next_where("ann offline", presence_frame(&ann, "offline"))
            .await?;
    }
    for ws in [&mut sam_ws, &mut olga_ws] {
        let heard = ws.fence(&app).await?;
        assert!(presence_about(&heard, &ann).is_empty(), "told: {heard:?}");
    }
    Ok(())
}

/// Two nodes of one cluster (one Redis namespace, one database) agree on who is online,
/// whichever node the user is connected to and whichever node's round expires them.
#[tokio::test]
async fn two_nodes_agree_on_presence() -> Result<()> {
    if !common::redis_available() {
        eprintln!("skipped: KITH_TEST_REDIS_URL is not set (presence is per node in memory)");
        return Ok(());
    }
    let namespace = common::unique_namespace();
    let dir = tempfile::tempdir()?;
    let db = format!("sqlite://{}/shared.db", dir.path().display());
    let node = |id: &str| {
        let mut env = presence_env();
        env.push(("KITH_NODE_ID", id.to_string()));
        Options {
            manual_clock: true,
            env,
            namespace: Some(namespace.clone()),
            database_url: Some(db.clone()),
            ..Default::default()
        }
    };
    let a = spawn_with(Backend::Redis, node("1")).await?;
    let b = spawn_with(Backend::Redis, node("2")).await?;
    common::live::clocks_in_step(&a, &b)?;
    let (ann, fred) = (a.register("duo_ann").await?, a.register("duo_fred").await?);
    a.befriend(&ann, &fred).await?;
    let mut fred_ws = Socket::open(&b, &fred).await?;

    // Ann on node A: fred, on node B, hears it; both nodes say online.
    let ann_ws = Socket::open(&a, &ann).await?;
    let connected_at = a.now_ms()?;
    fred_ws
        .next_where("ann online", presence_frame(&ann, "online"))
        .await?;
    for n in [&a, &b] {
        assert_eq!(n.presence_of(&fred, &ann).await?["status"], "online");
    }
    // She leaves; node B's round expires her; both nodes say offline.
    ann_ws.close().await?;
    pass_time(&[&b, &a], TIMEOUT_MS + 1_000, &mut [&mut fred_ws]).await?;
    for n in [&a, &b] {
        let gone = n.presence_of(&fred, &ann).await?;
        assert_eq!(gone["status"], "offline", "{gone}");
        assert_eq!(millis(&gone["last_active_at"])?, connected_at);
    }
    fred_ws
        .next_where("ann offline", presence_frame(&ann, "offline"))
        .await?;

    // Back on node B this time; node A's round expires her.
    let ann_ws = Socket::open(&b, &ann).await?;
    let connected_at = b.now_ms()?;
    fred_ws
        .next_where("ann online again", presence_frame(&ann, "online"))
        .await?;
    for n in [&a, &b] {
        assert_eq!(n.presence_of(&fred, &ann).await?["status"], "online");
    }
    ann_ws.close().await?;
    pass_time(&[&a, &b], TIMEOUT_MS + 1_000, &mut [&mut fred_ws]).await?;
    for n in [&a, &b] {
        let gone = n.presence_of(&fred, &ann).await?;
        assert_eq!(gone["status"], "offline", "{gone}");
        assert_eq!(millis(&gone["last_active_at"])?, connected_at);
    }
    fred_ws
        .next_where("ann offline again", presence_frame(&ann, "offline"))
        .await?;
    Ok(())
}

async fn presence_lookups_check_their_input(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let (ann, bob) = (
        app.register("look_ann").await?,
        app.register("look_bob").await?,
    );
    let _ann_ws = Socket::open(&app, &ann).await?;

    // Presence is for friends and conversation partners: not for a stranger, nor for
    // someone ann only follows.
    let path = "/v1/presence?user=look_bob";
    assert_error(app.get(path, Some(&ann.token)).await?, 403, "forbidden").await?;
    app.follow(&ann, "look_bob").await?;
    assert_error(app.get(path, Some(&ann.token)).await?, 403, "forbidden").await?;
    let carl = app.register("look_carl").await?;
    let both = "/v1/presence?user=look_bob&user=look_carl";
    let refused = assert_error(app.get(both, Some(&ann.token)).await?, 403, "forbidden").await?;
    assert!(
        refused.contains("look_bob") && refused.contains("look_carl"),
        "{refused}"
    );
    app.follow(&bob, "look_ann").await?;
    // A fellow member of a group (of any size) may look too.
    app.group(&carl, "lookers", &["look_ann"]).await?;
    let carl_seen: Value = app
        .get("/v1/presence?user=look_carl", Some(&ann.token))
        .await?
        .json()
        .await?;
    assert_eq!(
        carl_seen["items"][0]["username"], "look_carl",
        "{carl_seen}"
    );

    // Several users at once, in the order asked; someone never seen has no time.
    let both: Value = app
        .get("/v1/presence?user=look_bob&user=look_ann", Some(&ann.token))
        .await?
        .json()
        .await?;
    let items = both["items"].as_array().context("items")?;
    assert_eq!(items.len(), 2, "{both}");
    assert_eq!(
        (items[0]["user_id"].as_str(), items[0]["status"].as_str()),
        (Some(bob.id.as_str()), Some("offline"))
    );
    assert!(items[0]["last_active_at"].is_null(), "{both}");
    assert_eq!(
        (items[1]["username"].as_str(), items[1]["status"].as_str()),
        (Some("look_ann"), Some("online"))
    );

    // Usernames are matched without regard to case, and answered as they are spelled.
    let shouted: Value = app
        .get("/v1/presence?user=LOOK_Bob", Some(&ann.token))
        .await?
        .json()
        .await?;
    assert_eq!(shouted["items"][0]["username"], "look_bob", "{shouted}");

    for bad in [
        "/v1/presence",
        "/v1/presence?user=",
        "/v1/presence?who=look_bob",
    ] {
        assert_error(
            app.get(bad, Some(&ann.token)).await?,
            400,
            "invalid_request",
        )
        .await?;
    }
    for unknown in [
        "/v1/presence?user=nobody_here",
        "/v1/presence?user=look_bob&user=nobody_here",
    ] {
        assert_error(app.get(unknown, Some(&ann.token)).await?, 404, "not_found").await?;
    }
    let path = "/v1/presence?user=look_bob";
    assert_error(app.get(path, None).await?, 401, "unauthorized").await?;
    assert_error(
        app.get(path, Some("kith_forged")).await?,
        401,
        "unauthorized",
    )
    .await?;
    Ok(())
}

async fn typing_and_read_receipts_reach_the_right_people(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let ann = app.register("rr_ann").await?;
    let bob = app.register("rr_bob").await?;
    let cat = app.register("rr_cat").await?;
    let dan = app.register("rr_dan").await?; // not a member
    let crew = app.group(&ann, "crew", &["rr_bob", "rr_cat"]).await?;
    let ann_laptop_session = app.login(&ann).await?;
    let mut phone = Socket::open(&app, &ann).await?;
    let mut laptop = Socket::open(&app, &ann_laptop_session).await?;
    let mut bob_ws = Socket::open(&app, &bob).await?;
    let mut cat_ws = Socket::open(&app, &cat).await?;
    let mut dan_ws = Socket::open(&app, &dan).await?;
    let crew = crew.as_str();

    // Typing reaches the other members: not the typer's devices, not outsiders.
    let typed = app
        .post_json(
            &format!("/v1/chat/channels/{crew}/typing"),
            &json!(null),
            Some(&ann.token),
        )
        .await?;
    assert_eq!(typed.status(), 204);
    for ws in [&mut bob_ws, &mut cat_ws] {
        ws.next_where("ann typing", about("typing", crew, &ann))
            .await?;
    }
    for ws in [&mut phone, &mut laptop, &mut dan_ws] {
        let heard = ws.fence(&app).await?;
        assert!(
            !heard.iter().any(|f| f["type"] == "typing"),
            "typing went too far: {heard:?}"
        );
    }

    // A read receipt on one device reaches the members and the reader's other device, and
    // the unread count follows on every device.
    let m1 = app.say(&bob, crew, "one").await?;
    let m2 = app.say(&bob, crew, "two").await?;
    assert_eq!(app.unread_in(&ann_laptop_session, crew).await?, 2);
    phone
        .send(json!({"type": "read", "channel_id": crew, "message_id": m1["id"]}))
        .await?;
    for ws in [&mut laptop, &mut bob_ws, &mut cat_ws] {
        let read = ws
            .next_where("ann's receipt", about("read", crew, &ann))
            .await?;
        assert_eq!(read["message_id"], m1["id"]);
    }
    let heard = dan_ws.fence(&app).await?;
    assert!(!heard.iter().any(|f| f["type"] == "read"), "{heard:?}");
    assert_eq!(app.unread_in(&ann_laptop_session, crew).await?, 1);
    assert_eq!(app.unread_in(&ann, crew).await?, 1);
    assert_eq!(
        app.unread_in(&bob, crew).await?,
        0,
        "own messages are not unread"
    );
    let read_all = app
        .post_json(
            &format!("/v1/chat/channels/{crew}/read"),
            &json!({"message_id": m2["id"]}),
            Some(&ann_laptop_session.token),
        )
        .await?;
    assert_eq!(read_all.status(), 204);
    assert_eq!(app.unread_in(&ann, crew).await?, 0);
    for ws in [&mut phone, &mut bob_ws] {
        let read = ws
            .next_where("the laptop's receipt", about("read", crew, &ann))
            .await?;
        assert_eq!(read["message_id"], m2["id"]);
    }

    // A receipt never moves back, and one past the newest message is held at the newest:
    // later messages still count as unread, and the members are told the position kept.
    for past in [m1["id"].clone(), json!("9223372036854775807")] {
        let resp = app
            .post_json(
                &format!("/v1/chat/channels/{crew}/read"),
                &json!({"message_id": past}),
                Some(&ann.token),
            )
            .await?;
        assert_eq!(resp.status(), 204);
        let told = bob_ws
            .next_where("ann's receipt", about("read", crew, &ann))
            .await?;
        assert_eq!(told["message_id"], m2["id"], "the position kept");
    }
    assert_eq!(app.unread_in(&ann, crew).await?, 0);
    app.say(&bob, crew, "three").await?;
    assert_eq!(app.unread_in(&ann, crew).await?, 1);

    // Outsiders are refused; an unknown channel is not found.
    for what in ["typing", "read"] {
        let body = json!({"message_id": m1["id"]});
        let body = if what == "read" { body } else { json!(null) };
        let path = format!("/v1/chat/channels/{crew}/{what}");
        assert_error(
            app.post_json(&path, &body, Some(&dan.token)).await?,
            403,
            "forbidden",
        )
        .await?;
        let path = format!("/v1/chat/channels/999/{what}");
        assert_error(
            app.post_json(&path, &body, Some(&ann.token)).await?,
            404,
            "not_found",
        )
        .await?;
    }
    Ok(())
}

async fn a_waiting_long_poll_returns_early_with_typing(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let (ann, bob) = (app.register("lp_ann").await?, app.register("lp_bob").await?);
    let dm = app.dm(&ann, &bob).await?;
    let hello = app.say(&bob, &dm, "hello").await?;
    let cursor = text(&hello, "id");
    let waiting = app.waiting_sync(&ann, cursor, 25).await?;

    let started = tokio::time::Instant::now();
    let typed = app
        .post_json(
            &format!("/v1/chat/channels/{dm}/typing"),
            &json!(null),
            Some(&bob.token),
        )
        .await?;
    assert_eq!(typed.status(), 204);
    let answer = tokio::time::timeout(WAIT, waiting)
        .await
        .context("the poll did not end early")???;
    assert!(started.elapsed() < WAIT);
    assert_eq!(answer["messages"], json!([]));
    assert_eq!(
        answer["events"],
        json!([{"type": "typing", "channel_id": dm, "user_id": bob.id}])
    );
    assert_eq!(answer["cursor"], cursor, "no message, same cursor");
    Ok(())
}

/// Heartbeats are batched into one store write per round, but each keeps its own time: a
/// flush late by a few seconds must not make the user look active later (and go offline
/// later) than they were.
async fn batched_heartbeats_keep_their_own_time(backend: Backend) -> Result<()> {
    let app = spawn_with(backend, manual_clock()).await?;
    let (ann, fred) = (
        app.register("beat_ann").await?,
        app.register("beat_fred").await?,
    );
    app.befriend(&ann, &fred).await?;
    let mut ann_ws = Socket::open(&app, &ann).await?;
    // Connecting is written through at once; this heartbeat, soon after, is batched.
    app.manual_clock()?.advance(1_000);
    let beat_at = app.now_ms()?;
    ann_ws.heartbeat().await?;
    app.manual_clock()?.advance(3_000);
    app.presence_round().await?;
    let seen = app.presence_of(&fred, &ann).await?;
    assert_eq!(seen["status"], "online");
    assert_eq!(millis(&seen["last_active_at"])?, beat_at, "{seen}");

    // Offline exactly one timeout after that heartbeat, not after the flush.
    ann_ws.close().await?;
    app.manual_clock()?.advance(TIMEOUT_MS - 3_000);
    app.presence_round().await?;
    assert_eq!(app.presence_of(&fred, &ann).await?["status"], "offline");
    Ok(())
}

both_backends!(
    a_socket_keeps_its_user_online_through_short_drops,
    a_second_device_keeps_its_user_online,
    a_long_poll_keeps_its_user_online_while_it_polls_in_time,
    friends_and_small_groups_hear_presence_and_strangers_do_not,
    presence_lookups_check_their_input,
    typing_and_read_receipts_reach_the_right_people,
    a_waiting_long_poll_returns_early_with_typing,
    batched_heartbeats_keep_their_own_time,
);
