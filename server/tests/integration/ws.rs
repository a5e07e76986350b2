//! The chat hub over real WebSockets, on both backends.

use crate::common;

use anyhow::{anyhow, Context as _, Result};
use common::{spawn_app, Backend, TestApp, TestUser, ORIGIN};
use futures::{SinkExt, StreamExt};
use kith::storage::Raw;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::{
    connect_async,
    tungstenite::{client::IntoClientRequest, http::HeaderValue, Message},
    MaybeTlsStream, WebSocketStream,
};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(app: &TestApp, user: Option<&TestUser>) -> Result<Ws> {
    let mut req = format!("ws://127.0.0.1:{}/v1/chat/ws", app.port).into_client_request()?;
    if let Some(u) = user {
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {}", u.token))?,
        );
    }
    Ok(connect_async(req).await?.0)
}

async fn send_json(ws: &mut Ws, v: Value) -> Result<()> {
    ws.send(Message::Text(v.to_string().into())).await?;
    Ok(())
}

/// The next JSON frame (pings skipped); fails after 5 s.
/// The next frame, skipping presence changes (users connecting in a test announce
/// themselves to each other).
async fn next_json(ws: &mut Ws) -> Result<Value> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .map_err(|_| anyhow!("no frame within 5 s"))?
            .context("socket closed")??;
        match frame {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str())?;
                if v["type"] != "presence" {
                    return Ok(v);
                }
            }
            Message::Close(c) => return Err(anyhow!("closed: {c:?}")),
            _ => {}
        }
    }
}

/// The close code the server ends with.
async fn close_code(ws: &mut Ws) -> Result<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .map_err(|_| anyhow!("not closed"))?
        {
            Some(Ok(Message::Close(Some(frame)))) => return Ok(frame.code.into()),
            Some(Ok(_)) => {}
            other => return Err(anyhow!("ended without a close frame: {other:?}")),
        }
    }
}

async fn dm_channel(app: &TestApp, a: &TestUser, b: &str) -> Result<String> {
    let resp = app
        .client
        .post(app.url(&format!("/v1/chat/dm/{b}")))
        .bearer_auth(&a.token)
        .send()
        .await?;
    let v: Value = resp.json().await?;
    Ok(v["id"].as_str().unwrap_or_default().to_string())
}

async fn messages_reach_every_device_and_ack_the_sender(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let (a, b) = (app.register("wsa").await?, app.register("wsb").await?);
    let ch = dm_channel(&app, &a, "wsb").await?;
    let mut a1 = connect(&app, Some(&a)).await?;
    let mut a2 = connect(&app, Some(&a)).await?;
    // The second device of B authenticates with a frame instead of a header.
    let mut b1 = connect(&app, None).await?;
    send_json(&mut b1, json!({"type": "auth", "token": b.token})).await?;
    send_json(&mut b1, json!({"type": "heartbeat"})).await?;
    tokio::time::sleep(Duration::from_millis(100)).await; // subscriptions settle

    send_json(
        &mut a1,
        json!({"type": "send", "channel_id": ch, "client_msg_id": "m-1", "content": "hello <b>"}),
    )
    .await?;
    let ack = next_json(&mut a1).await?;
    assert_eq!(ack["type"], "ack");
    assert_eq!(ack["client_msg_id"], "m-1");
    assert_eq!(ack["message"]["seq"], 1);
    for ws in [&mut a2, &mut b1] {
        let m = next_json(ws).await?;
        assert_eq!(m["type"], "message");
        assert_eq!(m["message"]["id"], ack["message"]["id"]);
        assert_eq!(m["message"]["content"], "hello <b>");
    }
    // A retry over the socket acks the same message and delivers nothing new.
    send_json(
        &mut a1,
        json!({"type": "send", "channel_id": ch, "client_msg_id": "m-1", "content": "hello <b>"}),
    )
    .await?;
    let again = next_json(&mut a1).await?;
    assert_eq!(again["message"]["id"], ack["message"]["id"]);
    // Typing goes to the others; read receipts to everyone (the reader's devices too).
    send_json(&mut b1, json!({"type": "typing", "channel_id": ch})).await?;
    let t = next_json(&mut a1).await?;
    assert_eq!(
        (t["type"].as_str(), t["user_id"].as_str()),
        (Some("typing"), Some(b.id.as_str()))
    );
    let t2 = next_json(&mut a2).await?;
    assert_eq!(t2["type"], "typing");
    send_json(
        &mut a2,
        json!({"type": "read", "channel_id": ch, "message_id": ack["message"]["id"]}),
    )
    .await?;
    let r = next_json(&mut a1).await?;
    assert_eq!(
        (r["type"].as_str(), r["user_id"].as_str()),
        (Some("read"), Some(a.id.as_str()))
    );
    let r = next_json(&mut b1).await?;
    assert_eq!(r["type"], "read");
    Ok(())
}

async fn offline_devices_catch_up_with_sync(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let (a, b) = (app.register("off_a").await?, app.register("off_b").await?);
    let ch = dm_channel(&app, &a, "off_b").await?;
    let mut sent = Vec::new();
    for i in 0..5 {
        let resp = app
            .post_json(
                &format!("/v1/chat/channels/{ch}/messages"),
                &json!({"content": format!("m{i}"), "client_msg_id": format!("c{i}")}),
                Some(&a.token),
            )
            .await?;
        sent.push(resp.json::<Value>().await?["id"].clone());
    }
    let mut b1 = connect(&app, Some(&b)).await?;
    send_json(&mut b1, json!({"type": "sync", "since": "0"})).await?;
    for id in &sent[..] {
        let m = next_json(&mut b1).await?;
        assert_eq!(&m["message"]["id"], id);
    }
    send_json(&mut b1, json!({"type": "sync", "since": sent[2]})).await?;
    assert_eq!(next_json(&mut b1).await?["message"]["id"], sent[3]);
    assert_eq!(next_json(&mut b1).await?["message"]["id"], sent[4]);
    Ok(())
}

async fn bad_frames_get_errors_and_the_connection_survives(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let (a, _b, c) = (
        app.register("bad_a").await?,
        app.register("bad_b").await?,
        app.register("bad_c").await?,
    );
    let ch = dm_channel(&app, &a, "bad_b").await?;
    let mut ws = connect(&app, Some(&a)).await?;
    let bad = [
        Message::Text("{not json".into()),
        Message::Text(json!({"type": "teleport"}).to_string().into()),
        Message::Text(json!({"type": "send", "channel_id": 5}).to_string().into()),
        Message::Binary(vec![1u8, 2, 3].into()),
        Message::Text(
            json!({"type": "send", "channel_id": "999", "client_msg_id": "x", "content": "hi"})
                .to_string()
                .into(),
        ),
        Message::Text(
            json!({"type": "send", "channel_id": ch, "client_msg_id": "y", "content": ""})
                .to_string()
                .into(),
        ),
    ];
    let expected = [
        "invalid_request",
        "invalid_request",
        "invalid_request",
        "invalid_request",
        "not_found",
        "validation_failed",
    ];
    for (frame, code) in bad.into_iter().zip(expected) {
        ws.send(frame).await?;
        let e = next_json(&mut ws).await?;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some(code)),
            "{e}"
        );
    }
    // An error about a send that did not parse names the message it was about.
    send_json(
        &mut ws,
        json!({"type": "send", "channel_id": 5, "client_msg_id": "bad-id-type", "content": "x"}),
    )
    .await?;
    let e = next_json(&mut ws).await?;
    assert_eq!(
        (e["code"].as_str(), e["client_msg_id"].as_str()),
        (Some("invalid_request"), Some("bad-id-type")),
        "{e}"
    );
    // A non-member is refused per frame, not just at the upgrade.
    let mut outsider = connect(&app, Some(&c)).await?;
    send_json(
        &mut outsider,
        json!({"type": "send", "channel_id": ch, "client_msg_id": "z", "content": "let me in"}),
    )
    .await?;
    assert_eq!(next_json(&mut outsider).await?["code"], "forbidden");
    send_json(&mut outsider, json!({"type": "typing", "channel_id": ch})).await?;
    assert_eq!(next_json(&mut outsider).await?["code"], "forbidden");
    // Still open and working.
    send_json(
        &mut ws,
        json!({"type": "send", "channel_id": ch, "client_msg_id": "ok", "content": "fine"}),
    )
    .await?;
    assert_eq!(next_json(&mut ws).await?["type"], "ack");
    // Oversized: closed with 1009.
    ws.send(Message::Text("x".repeat(70 * 1024).into())).await?;
    assert_eq!(close_code(&mut ws).await?, 1009);
    assert_eq!(app.get("/healthz", None).await?.status(), 200);
    println!(
        "ws-bad-frames: {} bad frames answered with errors, oversize closed 1009, server up",
        expected.len() + 2
    );
    Ok(())
}

async fn upgrades_are_authenticated_and_origin_checked(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let a = app.register("orig_a").await?;
    let url = format!("ws://127.0.0.1:{}/v1/chat/ws", app.port);
    let with_cookie = |origin: Option<&'static str>| -> Result<_> {
        let mut req = url.clone().into_client_request()?;
        req.headers_mut().insert(
            "cookie",
            HeaderValue::from_str(&format!("kith_session={}", a.token))?,
        );
        if let Some(o) = origin {
            req.headers_mut()
                .insert("origin", HeaderValue::from_static(o));
        }
        Ok(req)
    };
    assert!(
        connect_async(with_cookie(Some("http://evil.test"))?)
            .await
            .is_err(),
        "foreign origin refused"
    );
    assert!(
        connect_async(with_cookie(None)?).await.is_err(),
        "missing origin refused"
    );
    let (mut ok, _) = connect_async(with_cookie(Some(ORIGIN))?).await?;
    send_json(&mut ok, json!({"type": "heartbeat"})).await?;
    // A bad bearer token is refused at the upgrade; a bad auth frame closes with 1008.
    let mut req = url.clone().into_client_request()?;
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_static("Bearer kith_nope"),
    );
    assert!(connect_async(req).await.is_err());
    let mut anon = connect(&app, None).await?;
    send_json(&mut anon, json!({"type": "auth", "token": "kith_forged"})).await?;
    assert_eq!(close_code(&mut anon).await?, 1008);
    // Logout closes the token's sockets.
    let out = app
        .post_json("/v1/auth/logout", &json!(null), Some(&a.token))
        .await?;
    assert_eq!(out.status(), 204);
    assert_eq!(close_code(&mut ok).await?, 4001);
    Ok(())
}

async fn slow_consumers_are_closed_and_recover_by_sync(backend: Backend) -> Result<()> {
    // One sender floods the channel over HTTP, past the per-user send quota.
    let app = common::spawn_with(
        backend,
        common::Options {
            env: vec![("KITH_CHAT_SEND_RATE_PER_SEC", "1000000".into())],
            ..Default::default()
        },
    )
    .await?;
    let (a, b) = (app.register("slow_a").await?, app.register("slow_b").await?);
    let ch = dm_channel(&app, &a, "slow_b").await?;
    // B connects, with a small receive buffer, and then stops reading.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let tcp = socket
        .connect(format!("127.0.0.1:{}", app.port).parse()?)
        .await?;
    let mut req = format!("ws://127.0.0.1:{}/v1/chat/ws", app.port).into_client_request()?;
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", b.token))?,
    );
    let (mut lazy, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp)).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let body = "x".repeat(4000);
    // Send until the hub gives up on B (its queue is full), then let B read at once: a
    // client that stays silent past the write timeout is dropped without a close frame.
    let slow = || {
        app.state
            .metrics
            .slow_consumers
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    // Sends in flight at once: a few, as one commit can store them all and wake B for
    // each at once. A burst past the subscription's inbox (256) would make the connection
    // catch up from the database, where a socket that takes nothing ends by the 10 s write
    // timeout instead of the full queue tested here.
    const AT_ONCE: usize = 4;
    let mut sent = 0;
    let mut last_id = String::new();
    while slow() == 0 {
        if sent >= 20_000 {
            return Err(anyhow!("{sent} messages never filled the queue"));
        }
        let path = format!("/v1/chat/channels/{ch}/messages");
        let bodies: Vec<Value> = (0..AT_ONCE)
            .map(|i| json!({"content": body, "client_msg_id": format!("s{}", sent + i)}))
            .collect();
        let batch = bodies
            .iter()
            .map(|b| app.post_json(&path, b, Some(&a.token)));
        for r in futures::future::join_all(batch).await {
            let v: Value = r?.json().await?;
            let id = v["id"].as_str().unwrap_or_default().to_string();
            // Concurrent sends finish in any order: keep the largest id.
            if (id.len(), &id) > (last_id.len(), &last_id) {
                last_id = id;
            }
        }
        sent += AT_ONCE;
    }
    let total = sent;
    // B finally reads: some messages, then a close with 1013 (not an unbounded buffer).
    let mut received = 0;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), lazy.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => received += 1,
            Ok(Some(Ok(Message::Close(Some(frame))))) => break u16::from(frame.code),
            Ok(Some(Ok(_))) => {}
            other => {
                return Err(anyhow!(
                    "socket ended without a close frame after {received}: {other:?}"
                ))
            }
        }
    };
    assert_eq!(code, 1013, "slow consumer closed with 1013");
    assert!(received < total, "the server did not buffer everything");
    // Reconnecting and syncing recovers everything.
    let mut fresh = connect(&app, Some(&b)).await?;
    send_json(&mut fresh, json!({"type": "sync", "since": "0"})).await?;
    let mut last = String::new();
    for _ in 0..total {
        last = next_json(&mut fresh).await?["message"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    }
    assert_eq!(last, last_id);
    println!("ws-slow-consumer: {total} sent, {received} delivered before close 1013, {total} recovered by sync");
    Ok(())
}

async fn shutdown_closes_sockets_with_1012(backend: Backend) -> Result<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let app = common::spawn_with(
        backend,
        common::Options {
            stop: Some(stopped),
            ..Default::default()
        },
    )
    .await?;
    let a = app.register("bye_a").await?;
    let mut ws = connect(&app, Some(&a)).await?;
    send_json(&mut ws, json!({"type": "heartbeat"})).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = stop.send(());
    assert_eq!(close_code(&mut ws).await?, 1012);
    Ok(())
}

/// Two nodes sharing a database and Redis: members connected to either node, and a
/// member's devices spread over both, get every message live, whichever node took it.
#[tokio::test]
async fn redis_nodes_route_chat_between_them() -> Result<()> {
    use common::live::Socket;
    if !common::redis_available() {
        eprintln!("skipped: KITH_TEST_REDIS_URL is not set");
        return Ok(());
    }
    let cluster = common::Cluster::new().await?;
    let a = common::spawn_with(Backend::Redis, cluster.node(1)).await?;
    let b = common::spawn_with(Backend::Redis, cluster.node(1)).await?;
    let (x, y, z) = (
        a.register("route_x").await?,
        a.register("route_y").await?,
        a.register("route_z").await?,
    );
    let y_on_b = b.login(&y).await?;
    let group = a.group(&x, "route", &["route_y", "route_z"]).await?;
    let mut x_a = Socket::open(&a, &x).await?;
    let mut y_a = Socket::open(&a, &y).await?;
    let mut y_b = Socket::open(&b, &y_on_b).await?;
    let mut z_b = Socket::open(&b, &z).await?;
    let is_message = |content: &'static str| {
        move |f: &Value| f["type"] == "message" && f["message"]["content"] == content
    };
    // Sent over WebSocket on node a: heard by every other device of every member, on
    // both nodes.
    x_a.send(
        json!({"type": "send", "channel_id": group, "client_msg_id": "r1", "content": "from a"}),
    )
    .await?;
    x_a.next_where("the ack", |f| f["type"] == "ack").await?;
    for socket in [&mut y_a, &mut y_b, &mut z_b] {
        socket
            .next_where("the message from node a", is_message("from a"))
            .await?;
    }
    // Sent over HTTP on node b: heard on node a.
    b.say(&z, &group, "from b").await?;
    for socket in [&mut x_a, &mut y_a, &mut y_b] {
        socket
            .next_where("the message from node b", is_message("from b"))
            .await?;
    }
    // A 1:1 between devices on different nodes.
    let dm = b.dm(&y_on_b, &x).await?;
    y_b.send(json!({"type": "send", "channel_id": dm, "client_msg_id": "r2", "content": "dm"}))
        .await?;
    x_a.next_where("the direct message", is_message("dm"))
        .await?;
    y_a.next_where(
        "the direct message on the sender's other device",
        is_message("dm"),
    )
    .await?;
    Ok(())
}

/// A wake-up lost on its way to the other nodes (the `PUBLISH` carrying it failed) is
/// recovered with nothing else happening: once Redis takes the node's messages again, the
/// node announces a gap on its own, and the other node's sockets catch up from the
/// database, once each. The failure is made by taking the `PUBLISH` permission from the
/// Redis user that one node connects as (its own user: the other tests' nodes are not
/// touched).
#[tokio::test]
async fn redis_wake_ups_lost_to_a_failed_publish_are_recovered() -> Result<()> {
    if !common::redis_available() {
        eprintln!("skipped: KITH_TEST_REDIS_URL is not set");
        return Ok(());
    }
    let user = format!("kith-test-{:016x}", common::rand_u64());
    let mut admin = ::redis::Client::open(common::redis_url())?
        .get_multiplexed_async_connection()
        .await?;
    let () = acl_setuser(&user, &["on", ">secret", "~*", "&*", "+@all"])
        .query_async(&mut admin)
        .await?;
    // In a task of its own, so that a panic in it still lets the user be deleted.
    let result = {
        let (user, mut admin) = (user.clone(), admin.clone());
        tokio::spawn(async move { lost_wake_ups_are_recovered(&user, &mut admin).await })
            .await
            .unwrap_or_else(|panic| Err(anyhow!("the test panicked: {panic}")))
    };
    let deleted: Result<i64, _> = ::redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut admin)
        .await;
    result?;
    deleted?;
    Ok(())
}

async fn lost_wake_ups_are_recovered(
    user: &str,
    admin: &mut ::redis::aio::MultiplexedConnection,
) -> Result<()> {
    use common::live::Socket;
    let url = common::redis_url();
    let host = url
        .strip_prefix("redis://")
        .context("a redis:// URL")?
        .rsplit('@')
        .next()
        .unwrap_or_default();
    let cluster = common::Cluster::new().await?;
    let mut on_a = cluster.node(1);
    on_a.env
        .push(("KITH_REDIS_URL", format!("redis://{user}:secret@{host}")));
    let a = common::spawn_with(Backend::Redis, on_a).await?;
    let b = common::spawn_with(Backend::Redis, cluster.node(1)).await?;
    let (x, y) = (a.register("lost_x").await?, a.register("lost_y").await?);
    let y_on_b = b.login(&y).await?;
    let dm = a.dm(&x, &y).await?;
    let mut y_b = Socket::open(&b, &y_on_b).await?;
    let is_message = |content: &'static str| {
        move |f: &Value| f["type"] == "message" && f["message"]["content"] == content
    };
    let () = acl_setuser(user, &["-publish"])
        .query_async(&mut *admin)
        .await?;
    // Stored (201) though its wake-up cannot reach node b.
    a.say(&x, &dm, "lost on the way").await?;
    // Redis logs each refused PUBLISH. The node announces the gap on its own only once its
    // queue is empty, so a second refusal means the PUBLISH carrying the message's wake-up
    // was refused: the wake-up is lost for sure, not just late.
    common::live::eventually("a second refused PUBLISH in the ACL log", || {
        let mut admin = admin.clone();
        async move { Ok((refused_publishes(&mut admin, user).await? >= 2).then_some(())) }
    })
    .await?;
    let () = acl_setuser(user, &["+publish"])
        .query_async(&mut *admin)
        .await?;
    // Nothing else is sent: the gap alone brings the message.
    y_b.next_where(
        "the message whose wake-up was lost",
        is_message("lost on the way"),
    )
    .await?;
    // Live again, and the lost message came once.
    a.say(&x, &dm, "after").await?;
    y_b.next_where("the message after", is_message("after"))
        .await?;
    let rest = y_b.fence(&b).await?;
    anyhow::ensure!(
        !rest.iter().any(is_message("lost on the way")),
        "delivered twice: {rest:?}"
    );
    Ok(())
}

/// A node whose link to the Redis wake bus breaks tells each of its sockets that wake-ups
/// may have been lost once it is subscribed again; each catches up from where it was, not
/// from the beginning of its user's history (a socket that never sent `sync` included).
#[tokio::test]
async fn a_bus_reconnect_catches_sockets_up_without_replaying_history() -> Result<()> {
    use common::live::{eventually, Socket};
    if !common::redis_available() {
        eprintln!("skipped: KITH_TEST_REDIS_URL is not set");
        return Ok(());
    }
    let cluster = common::Cluster::new().await?;
    let a = common::spawn_with(Backend::Redis, cluster.node(1)).await?;
    let b = common::spawn_with(Backend::Redis, cluster.node(1)).await?;
    let (x, y) = (a.register("rc_x").await?, a.register("rc_y").await?);
    let y_on_b = b.login(&y).await?;
    let dm = a.dm(&x, &y).await?;
    store_an_hour_ago(&a, &x, &dm, "an hour ago").await?;
    let mut ys = Socket::open(&b, &y_on_b).await?;
    let bus = b.state.backends.redis.as_ref().context("redis")?.pubsub();
    let victim = bus.subscriber_id().context("subscribed")?;
    common::kill_redis_client(victim).await?;
    // Sent while node b may be deaf: it arrives live, or by the catch-up.
    a.say(&x, &dm, "meanwhile").await?;
    ys.next_where("the message sent meanwhile", message_with("meanwhile"))
        .await?;
    eventually("node b subscribed again", || async {
        Ok(bus.subscriber_id().filter(|now| *now != victim))
    })
    .await?;
    a.say(&x, &dm, "after").await?;
    ys.next_where("the message after", message_with("after"))
        .await?;
    no_message_since(&mut ys, &b, "sent again, or old history").await?;
    Ok(())
}

/// `ACL SETUSER user rules…`.
fn acl_setuser(user: &str, rules: &[&str]) -> ::redis::Cmd {
    let mut cmd = ::redis::cmd("ACL");
    cmd.arg("SETUSER").arg(user).arg(rules);
    cmd
}

/// How many `PUBLISH`es of `user` Redis refused, by its `ACL LOG`.
async fn refused_publishes(
    admin: &mut ::redis::aio::MultiplexedConnection,
    user: &str,
) -> Result<i64> {
    let log: Vec<std::collections::HashMap<String, ::redis::Value>> =
        ::redis::cmd("ACL").arg("LOG").query_async(admin).await?;
    let text = |entry: &std::collections::HashMap<String, ::redis::Value>, key: &str| {
        entry
            .get(key)
            .and_then(|v| ::redis::from_redis_value::<String>(v).ok())
            .unwrap_or_default()
    };
    let mut refused = 0;
    for entry in &log {
        if text(entry, "username") == user && text(entry, "object").eq_ignore_ascii_case("publish")
        {
            refused += entry
                .get("count")
                .and_then(|v| ::redis::from_redis_value::<i64>(v).ok())
                .unwrap_or(1);
        }
    }
    Ok(refused)
}

/// A text frame that is not UTF-8 closes the socket with 1007; the server stays up.
async fn invalid_utf8_closes_with_1007(backend: Backend) -> Result<()> {
    use tokio_tungstenite::tungstenite::protocol::frame::{
        coding::{Data, OpCode},
        Frame,
    };
    let app = spawn_app(backend).await?;
    let a = app.register("utf_a").await?;
    let mut ws = connect(&app, Some(&a)).await?;
    let not_utf8 = vec![b'{', 0xff, 0xfe, b'}'];
    ws.send(Message::Frame(Frame::message(
        not_utf8,
        OpCode::Data(Data::Text),
        true,
    )))
    .await?;
    assert_eq!(close_code(&mut ws).await?, 1007);
    let mut again = connect(&app, Some(&a)).await?;
    send_json(&mut again, json!({"type": "heartbeat"})).await?;
    send_json(&mut again, json!({"type": "bogus"})).await?;
    assert_eq!(next_json(&mut again).await?["type"], "error");
    Ok(())
}

/// Past the per-connection frame limit a `send` is refused with `rate_limited`, naming its
/// `client_msg_id`, and nothing is stored; the connection stays open.
async fn a_send_over_the_frame_limit_is_refused_by_name(backend: Backend) -> Result<()> {
    let app = common::spawn_with(
        backend,
        common::Options {
            manual_clock: true,
            ..Default::default()
        },
    )
    .await?;
    let (a, _b) = (
        app.register("limit_a").await?,
        app.register("limit_b").await?,
    );
    let ch = dm_channel(&app, &a, "limit_b").await?;
    let mut ws = connect(&app, Some(&a)).await?;
    // The clock stands still: 50 heartbeats take the whole burst.
    for _ in 0..50 {
        send_json(&mut ws, json!({"type": "heartbeat"})).await?;
    }
    send_json(
        &mut ws,
        json!({"type": "send", "channel_id": ch, "client_msg_id": "over", "content": "too soon"}),
    )
    .await?;
    let e = next_json(&mut ws).await?;
    assert_eq!(
        (e["code"].as_str(), e["client_msg_id"].as_str()),
        (Some("rate_limited"), Some("over")),
        "{e}"
    );
    let page: Value = app
        .get(&format!("/v1/chat/channels/{ch}/messages"), Some(&a.token))
        .await?
        .json()
        .await?;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(0), "{page}");
    app.clock.as_ref().context("manual clock")?.advance(1_000);
    send_json(
        &mut ws,
        json!({"type": "send", "channel_id": ch, "client_msg_id": "over", "content": "too soon"}),
    )
    .await?;
    assert_eq!(next_json(&mut ws).await?["type"], "ack");
    Ok(())
}

/// A user may open only so many sockets a minute: past that an upgrade gets 429 with
/// `Retry-After`, and a socket that authenticates by frame is closed with 1013. Other users
/// are not affected, and the quota comes back with time.
async fn opening_sockets_too_fast_is_refused(backend: Backend) -> Result<()> {
    let app = common::spawn_with(
        backend,
        common::Options {
            manual_clock: true,
            env: vec![("KITH_WS_CONNECT_RATE_PER_MIN", "3".into())],
            ..Default::default()
        },
    )
    .await?;
    let (a, b) = (app.register("many_a").await?, app.register("many_b").await?);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(connect(&app, Some(&a)).await?);
    }
    let refused = connect(&app, Some(&a))
        .await
        .err()
        .context("a fourth socket within the minute")?;
    match refused.downcast_ref::<tokio_tungstenite::tungstenite::Error>() {
        Some(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429);
            assert!(resp.headers().contains_key("retry-after"));
        }
        other => return Err(anyhow!("not an HTTP refusal: {other:?}")),
    }
    let mut by_frame = connect(&app, None).await?;
    send_json(&mut by_frame, json!({"type": "auth", "token": a.token})).await?;
    assert_eq!(close_code(&mut by_frame).await?, 1013);
    connect(&app, Some(&b)).await?;
    app.clock.as_ref().context("manual clock")?.advance(60_000);
    connect(&app, Some(&a)).await?;
    Ok(())
}

/// Stores a message without its wake-up (as if the wake-up were lost on the way); returns
/// the message as the API shows it.
async fn store_quietly(
    app: &TestApp,
    from: &TestUser,
    channel: &str,
    content: &str,
) -> Result<Value> {
    use kith::storage::chat::{Committed, NewMessage};
    // Straight into the store: the node's writer would publish the wake-up.
    let message = NewMessage {
        channel: channel.parse()?,
        sender: from.id.parse()?,
        content: content.into(),
        client_msg_id: format!("q-{}", common::rand_u64()),
        now: kith::storage::now_ms(),
        media: None,
    };
    let written = app
        .state
        .store
        .chat
        .commit_messages(&app.state.ids, &[&message])
        .await?;
    anyhow::ensure!(
        matches!(written.as_slice(), [Committed::Stored { .. }]),
        "not stored anew"
    );
    let page: Value = app
        .get(
            &format!("/v1/chat/channels/{channel}/messages?limit=100"),
            Some(&from.token),
        )
        .await?
        .json()
        .await?;
    page["items"]
        .as_array()
        .and_then(|items| items.iter().find(|m| m["content"] == content))
        .cloned()
        .context("the stored message in the history")
}

/// A message stored an hour ago (with the id it would have had then).
async fn store_an_hour_ago(
    app: &TestApp,
    from: &TestUser,
    channel: &str,
    content: &str,
) -> Result<()> {
    let at = kith::storage::now_ms() - 3_600_000;
    let id = kith::id::min_id_at(at);
    let channel: i64 = channel.parse()?;
    let (sender, client_msg_id) = (
        from.id.parse::<i64>()?,
        format!("old-{}", common::rand_u64()),
    );
    // Below the store's interface on purpose: no interface writes a message with an old id.
    match &app.state.store.raw {
        Raw::Sqlite(store) => {
            let mut tx = store.writes().begin().await?;
            let seq: i64 = sqlx::query_scalar(
                "UPDATE channels SET last_seq = last_seq + 1, last_message_id = max(last_message_id, ?2) \
                 WHERE id = ?1 RETURNING last_seq",
            )
            .bind(channel)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO messages (channel_id, id, seq, sender_id, content, client_msg_id, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .bind(channel)
            .bind(id)
            .bind(seq)
            .bind(sender)
            .bind(content)
            .bind(client_msg_id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Raw::Postgres(store) => {
            let mut tx = store.pool().begin().await?;
            let seq: i64 = sqlx::query_scalar(
                "UPDATE channels SET last_seq = last_seq + 1, \
                 last_message_id = GREATEST(last_message_id, $2) WHERE id = $1 RETURNING last_seq",
            )
            .bind(channel)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO messages (channel_id, id, seq, sender_id, content, client_msg_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(channel)
            .bind(id)
            .bind(seq)
            .bind(sender)
            .bind(content)
            .bind(client_msg_id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
    }
    Ok(())
}

/// Makes `user`'s connections lose wake-ups the way a busy node does: a burst larger than a
/// subscription holds (of wake-ups that mean nothing to them: the revocation of a session
/// that does not exist), published before they can run, so their subscriptions overflow
/// and report the loss.
async fn lose_wake_ups(app: &TestApp, user: &TestUser) -> Result<()> {
    let topic = [kith::live::topic(user.id.parse()?)];
    // Unconstrained: publishing must not give the connections a turn (tokio's cooperative
    // budget would, every 128 sends to the Redis publisher's queue).
    tokio::task::unconstrained(async {
        for _ in 0..2 * kith::backend::topics::INBOX_CAPACITY {
            app.state
                .backends
                .pubsub
                .publish(&topic, kith::chat::ws::wake::revoke("no-such-session"))
                .await?;
        }
        Ok(())
    })
    .await
}

/// Fails if `socket` received any message frame up to now (a fence: see `Socket::fence`).
async fn no_message_since(
    socket: &mut common::live::Socket,
    app: &TestApp,
    what: &str,
) -> Result<()> {
    let rest = socket.fence(app).await?;
    anyhow::ensure!(
        !rest.iter().any(|f| f["type"] == "message"),
        "{what}: {rest:?}"
    );
    Ok(())
}

/// Publishes the wake-up of `message` (as the API shows it) to `users`, as if it arrived
/// late.
async fn late_wake_up(app: &TestApp, message: &Value, users: &[&TestUser]) -> Result<()> {
    let placed = kith::chat::ws::wake::Placed {
        id: message["id"].as_str().context("id")?.parse()?,
        channel: message["channel_id"]
            .as_str()
            .context("channel_id")?
            .parse()?,
        seq: message["seq"].as_i64().context("seq")?,
    };
    let payload = kith::chat::ws::wake::frame(
        0,
        Some(placed),
        json!({"type": "message", "message": message})
            .to_string()
            .as_bytes(),
    );
    let topics = users
        .iter()
        .map(|u| Ok(kith::live::topic(u.id.parse()?)))
        .collect::<Result<Vec<_>>>()?;
    app.state.backends.pubsub.publish(&topics, payload).await?;
    Ok(())
}

fn message_with(content: &'static str) -> impl Fn(&Value) -> bool {
    move |f: &Value| f["type"] == "message" && f["message"]["content"] == content
}

/// After lost wake-ups a socket that never sent `sync` gets what it missed since it
/// opened, and not the conversation's older history.
async fn catch_up_sends_what_the_socket_missed_and_not_old_history(backend: Backend) -> Result<()> {
    use common::live::Socket;
    let app = spawn_app(backend).await?;
    let (x, y) = (app.register("cu_x").await?, app.register("cu_y").await?);
    let dm = app.dm(&x, &y).await?;
    store_an_hour_ago(&app, &x, &dm, "an hour ago").await?;
    let mut ys = Socket::open(&app, &y).await?;
    store_quietly(&app, &x, &dm, "missed").await?;
    lose_wake_ups(&app, &y).await?;
    ys.next_where("the message whose wake-up was lost", message_with("missed"))
        .await?;
    no_message_since(&mut ys, &app, "sent more than the missed message").await?;
    Ok(())
}

/// Wake-ups may arrive out of id order: a catch-up after lost wake-ups still sends a
/// message older than one the socket already delivered, and sends nothing twice (neither
/// the catch-up nor a wake-up arriving after it).
async fn catch_up_recovers_a_message_older_than_one_delivered(backend: Backend) -> Result<()> {
    use common::live::Socket;
    let app = spawn_app(backend).await?;
    let (x, y) = (app.register("oo_x").await?, app.register("oo_y").await?);
    let dm = app.dm(&x, &y).await?;
    let mut ys = Socket::open(&app, &y).await?;
    let mut xs = Socket::open(&app, &x).await?;
    let first = store_quietly(&app, &x, &dm, "first").await?;
    // The sender's own device sends the second message: its ack is the delivery there.
    xs.send(
        json!({"type": "send", "channel_id": dm, "client_msg_id": "second", "content": "second"}),
    )
    .await?;
    xs.next_where("the ack", |f| f["type"] == "ack").await?;
    ys.next_where("the second message, live", message_with("second"))
        .await?;
    lose_wake_ups(&app, &y).await?;
    lose_wake_ups(&app, &x).await?;
    ys.next_where("the first message, caught up", message_with("first"))
        .await?;
    xs.next_where("the first message, caught up", message_with("first"))
        .await?;
    // The first message's wake-up turns up after all.
    late_wake_up(&app, &first, &[&y, &x]).await?;
    for socket in [&mut ys, &mut xs] {
        no_message_since(socket, &app, "sent twice").await?;
    }
    Ok(())
}

/// A live message that would open a hole in its channel's `seq`s (the wake-up of the one
/// before it is late or lost) is not sent ahead of it: the socket catches up, and the two
/// arrive in order.
async fn a_message_after_a_hole_waits_for_the_missing_one(backend: Backend) -> Result<()> {
    use common::live::Socket;
    let app = spawn_app(backend).await?;
    let (x, y) = (app.register("hole_x").await?, app.register("hole_y").await?);
    let dm = app.dm(&x, &y).await?;
    let mut ys = Socket::open(&app, &y).await?;
    app.say(&x, &dm, "one").await?;
    ys.next_where("the first message, live", message_with("one"))
        .await?;
    store_quietly(&app, &x, &dm, "two").await?;
    app.say(&x, &dm, "three").await?;
    let next = ys
        .next_where("the next message", |f| f["type"] == "message")
        .await?;
    let after = ys
        .next_where("the one after", |f| f["type"] == "message")
        .await?;
    let seqs = (
        next["message"]["seq"].as_i64(),
        after["message"]["seq"].as_i64(),
    );
    assert_eq!(
        seqs,
        (Some(2), Some(3)),
        "in seq order: {next} then {after}"
    );
    no_message_since(&mut ys, &app, "sent twice").await?;
    Ok(())
}

/// A new connection's first `sync` is answered before the live messages that arrived while
/// the client was sending it: the client gets its channel's messages in `seq` order.
async fn the_first_sync_answers_before_live_messages(backend: Backend) -> Result<()> {
    use common::live::Socket;
    let app = spawn_app(backend).await?;
    let (x, y) = (app.register("fs_x").await?, app.register("fs_y").await?);
    let dm = app.dm(&x, &y).await?;
    store_quietly(&app, &x, &dm, "while away").await?;
    let mut ys = Socket::open(&app, &y).await?;
    app.say(&x, &dm, "just now").await?;
    ys.send(json!({"type": "sync", "since": "0"})).await?;
    let first = ys
        .next_where("a message", |f| f["type"] == "message")
        .await?;
    let second = ys.next_where("another", |f| f["type"] == "message").await?;
    let contents = (
        first["message"]["content"].as_str(),
        second["message"]["content"].as_str(),
    );
    assert_eq!(contents, (Some("while away"), Some("just now")));
    no_message_since(&mut ys, &app, "sent twice").await?;
    Ok(())
}

/// Wake-ups lost before a new connection's first `sync` are covered by that sync, which
/// reads from the client's cursor: nothing the client had from an earlier connection comes
/// again.
async fn wake_ups_lost_before_the_first_sync_resend_no_history(backend: Backend) -> Result<()> {
    use common::live::Socket;
    let app = spawn_app(backend).await?;
    let (x, y) = (app.register("ls_x").await?, app.register("ls_y").await?);
    let dm = app.dm(&x, &y).await?;
    let mut cursor = String::new();
    for text in ["had one", "had two"] {
        cursor = text_id(&app.say(&x, &dm, text).await?)?;
    }
    let mut ys = Socket::open(&app, &y).await?;
    lose_wake_ups(&app, &y).await?;
    let missed = store_quietly(&app, &x, &dm, "missed").await?;
    ys.send(json!({"type": "sync", "since": cursor})).await?;
    let got = ys
        .next_where("the missed message", |f| f["type"] == "message")
        .await?;
    assert_eq!(got["message"]["id"], missed["id"], "{got}");
    no_message_since(&mut ys, &app, "history sent again").await?;
    Ok(())
}

fn text_id(message: &Value) -> Result<String> {
    Ok(message["id"].as_str().context("id")?.to_string())
}

/// A long poll whose wait runs out reads once more before it answers: a message whose
/// wake-up was lost comes with this answer, not one poll later.
async fn a_long_poll_that_times_out_looks_once_more(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let (x, y) = (app.register("lp_x").await?, app.register("lp_y").await?);
    let dm = app.dm(&x, &y).await?;
    let poll = app.waiting_sync(&y, "0", 3).await?;
    store_quietly(&app, &x, &dm, "no wake-up").await?;
    let answer = poll.await??;
    let contents: Vec<&str> = answer["messages"]
        .as_array()
        .context("messages")?
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(contents, ["no wake-up"], "{answer}");
    Ok(())
}

/// A wake-up still on its way when a `sync` read its message from the database is not
/// sent a second time; a `sync` asked for again is answered in full.
async fn a_wake_up_behind_a_sync_is_not_sent_twice(backend: Backend) -> Result<()> {
    use common::live::Socket;
    let app = spawn_app(backend).await?;
    let (x, y) = (app.register("ws_x").await?, app.register("ws_y").await?);
    let dm = app.dm(&x, &y).await?;
    let mut ys = Socket::open(&app, &y).await?;
    let m = store_quietly(&app, &x, &dm, "synced").await?;
    ys.send(json!({"type": "sync", "since": "0"})).await?;
    ys.next_where("the message, by sync", message_with("synced"))
        .await?;
    late_wake_up(&app, &m, &[&y]).await?;
    no_message_since(&mut ys, &app, "sent twice").await?;
    // A sync asked for again is answered in full.
    ys.send(json!({"type": "sync", "since": "0"})).await?;
    ys.next_where("the message, synced again", message_with("synced"))
        .await?;
    Ok(())
}

async fn a_password_change_closes_the_other_sessions_sockets(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let ivy = app.register("ivy_pw").await?;
    let login: Value = app
        .post_json(
            "/v1/auth/login",
            &json!({"username": "ivy_pw", "password": ivy.password}),
            None,
        )
        .await?
        .json()
        .await?;
    let other = TestUser {
        token: login["token"].as_str().context("token")?.to_string(),
        ..ivy.clone()
    };
    let mut kept = connect(&app, Some(&ivy)).await?;
    let mut ended = connect(&app, Some(&other)).await?;
    let r = app
        .post_json(
            "/v1/me/password",
            &json!({"current_password": ivy.password, "new_password": "another passphrase"}),
            Some(&ivy.token),
        )
        .await?;
    assert_eq!(r.status(), 204);
    assert_eq!(close_code(&mut ended).await?, 4001);
    // The session that changed it keeps its socket: it still answers (here, that there is
    // no channel 1).
    send_json(&mut kept, json!({"type": "typing", "channel_id": "1"})).await?;
    let frame = next_json(&mut kept).await?;
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["code"], "not_found", "{frame}");
    Ok(())
}

both_backends!(
    a_password_change_closes_the_other_sessions_sockets,
    invalid_utf8_closes_with_1007,
    a_long_poll_that_times_out_looks_once_more,
    a_send_over_the_frame_limit_is_refused_by_name,
    opening_sockets_too_fast_is_refused,
    catch_up_sends_what_the_socket_missed_and_not_old_history,
    catch_up_recovers_a_message_older_than_one_delivered,
    a_message_after_a_hole_waits_for_the_missing_one,
    the_first_sync_answers_before_live_messages,
    wake_ups_lost_before_the_first_sync_resend_no_history,
    a_wake_up_behind_a_sync_is_not_sent_twice,
    slow_consumers_are_closed_and_recover_by_sync,
    shutdown_closes_sockets_with_1012,
    messages_reach_every_device_and_ack_the_sender,
    offline_devices_catch_up_with_sync,
    bad_frames_get_errors_and_the_connection_survives,
    upgrades_are_authenticated_and_origin_checked,
);
