//! API.md "Chat" over HTTP (REST and long-poll), on both backends.

use crate::common;

use anyhow::{Context as _, Result};
use common::{assert_error, spawn_app, Backend, TestApp, TestUser};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn dm(app: &TestApp, me: &TestUser, other: &str) -> Result<reqwest::Response> {
    Ok(app
        .client
        .post(app.url(&format!("/v1/chat/dm/{other}")))
        .bearer_auth(&me.token)
        .send()
        .await?)
}

async fn send(
    app: &TestApp,
    me: &TestUser,
    channel: &str,
    content: &str,
    cmid: &str,
) -> Result<reqwest::Response> {
    app.post_json(
        &format!("/v1/chat/channels/{channel}/messages"),
        &json!({"content": content, "client_msg_id": cmid}),
        Some(&me.token),
    )
    .await
}

async fn sent(
    app: &TestApp,
    me: &TestUser,
    channel: &str,
    content: &str,
    cmid: &str,
) -> Result<Value> {
    let resp = send(app, me, channel, content, cmid).await?;
    assert_eq!(resp.status(), StatusCode::CREATED);
    Ok(resp.json().await?)
}

async fn add_member(
    app: &TestApp,
    who: &TestUser,
    channel: &str,
    name: &str,
) -> Result<reqwest::Response> {
    app.post_json(
        &format!("/v1/chat/channels/{channel}/members"),
        &json!({"username": name}),
        Some(&who.token),
    )
    .await
}

async fn remove_member(
    app: &TestApp,
    who: &TestUser,
    channel: &str,
    name: &str,
) -> Result<reqwest::Response> {
    let url = app.url(&format!("/v1/chat/channels/{channel}/members/{name}"));
    Ok(app
        .client
        .delete(url)
        .bearer_auth(&who.token)
        .send()
        .await?)
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_default()
}

async fn direct_channels_are_one_per_pair(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let (a, b) = (app.register("alice").await?, app.register("bobby").await?);
    let first: Value = dm(&app, &a, "bobby").await?.json().await?;
    let again: Value = dm(&app, &a, "bobby").await?.json().await?;
    let other_side: Value = dm(&app, &b, "alice").await?.json().await?;
    assert_eq!(first["id"], again["id"]);
    assert_eq!(first["id"], other_side["id"]);
    assert_eq!(first["kind"], "dm");
    assert_eq!(first["members"].as_array().map(Vec::len), Some(2));
    assert_error(dm(&app, &a, "alice").await?, 422, "validation_failed").await?;
    assert_error(dm(&app, &a, "nobody").await?, 404, "not_found").await?;
    Ok(())
}

async fn messages_are_ordered_gap_free_and_idempotent(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let (a, b, c) = (
        app.register("carla").await?,
        app.register("dario").await?,
        app.register("eve_x").await?,
    );
    let channel: Value = dm(&app, &a, "dario").await?.json().await?;
    let ch = str_of(&channel, "id").to_string();
    let mut ids = Vec::new();
    for i in 0..12 {
        let who = if i % 3 == 0 { &b } else { &a };
        let m = sent(&app, who, &ch, &format!("m{i}"), &format!("c{i}")).await?;
        assert_eq!(m["seq"], i + 1);
        ids.push(str_of(&m, "id").to_string());
    }
    // A retry returns the first message and stores nothing.
    let retry = sent(&app, &a, &ch, "different text", "c1").await?;
    assert_eq!(str_of(&retry, "id"), ids[1]);
    assert_eq!(retry["content"], "m1");
    let next = sent(&app, &a, &ch, "after retry", "c-next").await?;
    assert_eq!(next["seq"], 13, "a retry uses no seq");

    let page: Value = app
        .get(
            &format!("/v1/chat/channels/{ch}/messages?limit=5"),
            Some(&a.token),
        )
        .await?
        .json()
        .await?;
    let seqs: Vec<i64> = page["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|m| m["seq"].as_i64())
        .collect();
    assert_eq!(seqs, vec![9, 10, 11, 12, 13]);
    let before = str_of(&page, "next_cursor").to_string();
    let older: Value = app
        .get(
            &format!("/v1/chat/channels/{ch}/messages?limit=5&before={before}"),
            Some(&a.token),
        )
        .await?
        .json()
        .await?;
    let seqs: Vec<i64> = older["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|m| m["seq"].as_i64())
        .collect();
    assert_eq!(seqs, vec![4, 5, 6, 7, 8]);
    let after: Value = app
        .get(
            &format!("/v1/chat/channels/{ch}/messages?limit=3&after={}", ids[0]),
            Some(&b.token),
        )
        .await?
        .json()
        .await?;
    let seqs: Vec<i64> = after["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|m| m["seq"].as_i64())
        .collect();
    assert_eq!(seqs, vec![2, 3, 4]);
    // Forward pages continue with `after`; `cursor` continues backward like `before`, so a
    // client that pages every list by `cursor` walks the history to its start.
    let forward: Value = app
        .get(
            &format!(
                "/v1/chat/channels/{ch}/messages?limit=3&after={}",
                str_of(&after, "next_cursor")
            ),
            Some(&b.token),
        )
        .await?
        .json()
        .await?;
    assert_eq!(forward["items"][0]["seq"], 5);
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => format!("/v1/chat/channels/{ch}/messages?limit=5"),
            Some(c) => format!("/v1/chat/channels/{ch}/messages?limit=5&cursor={c}"),
        };
        let page: Value = app.get(&path, Some(&a.token)).await?.json().await?;
        let mut seqs: Vec<i64> = page["items"]
            .as_array()
            .context("items")?
            .iter()
            .filter_map(|m| m["seq"].as_i64())
            .collect();
        seqs.extend(walked);
        walked = seqs;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        anyhow::ensure!(
            walked.len() <= 13,
            "paging by cursor does not end: {walked:?}"
        );
    }
    assert_eq!(walked, (1..=13).collect::<Vec<i64>>());
    assert_error(
        app.get(
            &format!("/v1/chat/channels/{ch}/messages?cursor={before}&after={before}"),
            Some(&a.token),
        )
        .await?,
        400,
        "invalid_request",
    )
    .await?;

    // Outsiders get nothing.
    let mut refused = 0;
    assert_error(
        send(&app, &c, &ch, "let me in", "x1").await?,
        403,
        "forbidden",
    )
    .await?;
    refused += 1;
    assert_error(
        app.get(&format!("/v1/chat/channels/{ch}/messages"), Some(&c.token))
            .await?,
        403,
        "forbidden",
    )
    .await?;
    refused += 1;
    assert_error(
        send(&app, &a, "123456", "nowhere", "x2").await?,
        404,
        "not_found",
    )
    .await?;
    for bad in [
        json!({"content": "", "client_msg_id": "v1"}),
        json!({"content": "x".repeat(4001), "client_msg_id": "v2"}),
        json!({"content": "ok", "client_msg_id": ""}),
    ] {
        let resp = app
            .post_json(
                &format!("/v1/chat/channels/{ch}/messages"),
                &bad,
                Some(&a.token),
            )
            .await?;
        assert_error(resp, 422, "validation_failed").await?;
    }
    println!("chat-authz: {refused} outsider reads/writes tried, 0 succeeded");
    Ok(())
}

async fn groups_enforce_size_and_membership_rules(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let owner = app.register("owner").await?;
    let (m1, m2, outsider) = (
        app.register("member_one").await?,
        app.register("member_two").await?,
        app.register("outsider").await?,
    );
    // 100 more users, straight into the database (registering through the API would
    // spend an Argon2 hash on each).
    for i in 0..100 {
        app.state
            .store
            .accounts
            .insert_user(
                1_000_000 + i,
                &format!("bulk_{i:03}"),
                &format!("Bulk {i}"),
                "x",
                0,
            )
            .await?;
    }
    let too_many: Vec<String> = (0..100).map(|i| format!("bulk_{i:03}")).collect();
    let resp = app
        .post_json(
            "/v1/chat/groups",
            &json!({"name": "huge", "members": too_many}),
            Some(&owner.token),
        )
        .await?;
    assert_error(resp, 422, "group_too_large").await?;
    // Too many names is too many, whether or not they all exist (none is looked up).
    let with_unknown: Vec<String> = (0..150).map(|i| format!("nobody_{i:03}")).collect();
    let resp = app
        .post_json(
            "/v1/chat/groups",
            &json!({"name": "huge", "members": with_unknown}),
            Some(&owner.token),
        )
        .await?;
    assert_error(resp, 422, "group_too_large").await?;
    let exactly: Vec<String> = (0..99).map(|i| format!("bulk_{i:03}")).collect();
    let resp = app
        .post_json(
            "/v1/chat/groups",
            &json!({"name": "full", "members": exactly}),
            Some(&owner.token),
        )
        .await?;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let full: Value = resp.json().await?;
    assert_eq!(full["members"].as_array().map(Vec::len), Some(100));
    let add = app
        .post_json(
            &format!("/v1/chat/channels/{}/members", str_of(&full, "id")),
            &json!({"username": "member_one"}),
            Some(&owner.token),
        )
        .await?;
    assert_error(add, 422, "group_too_large").await?;

    let resp = app
        .post_json(
            "/v1/chat/groups",
            &json!({"name": "  Friends  ", "members": ["member_one"]}),
            Some(&owner.token),
        )
        .await?;
    let group: Value = resp.json().await?;
    assert_eq!(group["name"], "Friends");
    let g = str_of(&group, "id").to_string();
    assert_error(
        app.post_json(
            "/v1/chat/groups",
            &json!({"name": " ", "members": []}),
            Some(&owner.token),
        )
        .await?,
        422,
        "validation_failed",
    )
    .await?;
    assert_error(
        app.post_json(
            "/v1/chat/groups",
            &json!({"name": "x", "members": ["ghost"]}),
            Some(&owner.token),
        )
        .await?,
        404,
        "not_found",
    )
    .await?;

    assert_error(
        add_member(&app, &outsider, &g, "outsider").await?,
        403,
        "forbidden",
    )
    .await?;
    assert_eq!(
        add_member(&app, &m1, &g, "member_two").await?.status(),
        StatusCode::NO_CONTENT
    );
    assert_error(
        remove_member(&app, &m1, &g, "member_two").await?,
        403,
        "forbidden",
    )
    .await?;
    assert_eq!(
        remove_member(&app, &m2, &g, "member_two").await?.status(),
        StatusCode::NO_CONTENT
    );
    assert_error(
        send(&app, &m2, &g, "still here?", "z1").await?,
        403,
        "forbidden",
    )
    .await?;
    assert_eq!(
        remove_member(&app, &owner, &g, "member_one")
            .await?
            .status(),
        StatusCode::NO_CONTENT
    );
    Ok(())
}

async fn sync_returns_everything_newer_and_long_polls(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let (a, b, c) = (
        app.register("fay").await?,
        app.register("gus").await?,
        app.register("hal").await?,
    );
    let ab = str_of(&dm(&app, &a, "gus").await?.json::<Value>().await?, "id").to_string();
    let ac = str_of(&dm(&app, &a, "hal").await?.json::<Value>().await?, "id").to_string();
    let m1 = sent(&app, &b, &ab, "from gus", "s1").await?;
    let m2 = sent(&app, &c, &ac, "from hal", "s2").await?;
    let m3 = sent(&app, &a, &ab, "to gus", "s3").await?;
    let all: Value = app
        .get("/v1/chat/sync?since=0&timeout=0", Some(&a.token))
        .await?
        .json()
        .await?;
    let got: Vec<&str> = all["messages"]
        .as_array()
        .context("messages")?
        .iter()
        .map(|m| str_of(m, "id"))
        .collect();
    assert_eq!(
        got,
        vec![str_of(&m1, "id"), str_of(&m2, "id"), str_of(&m3, "id")]
    );
    assert_eq!(all["cursor"], m3["id"]);
    // Only the user's own channels: hal sees one message.
    let hal: Value = app
        .get("/v1/chat/sync?since=0&timeout=0", Some(&c.token))
        .await?
        .json()
        .await?;
    assert_eq!(hal["messages"].as_array().map(Vec::len), Some(1));

    // Nothing new: waits, then answers empty with the same cursor.
    let cursor = str_of(&all, "cursor").to_string();
    let empty: Value = app
        .get(
            &format!("/v1/chat/sync?since={cursor}&timeout=1"),
            Some(&a.token),
        )
        .await?
        .json()
        .await?;
    assert_eq!(empty["messages"].as_array().map(Vec::len), Some(0));
    assert_eq!(empty["cursor"].as_str(), Some(cursor.as_str()));

    // A waiting poll answers as soon as a message arrives.
    let waiting = {
        let (client, url, token) = (
            app.client.clone(),
            app.url(&format!("/v1/chat/sync?since={cursor}&timeout=20")),
            a.token.clone(),
        );
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await?
                .json::<Value>()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await; // let the poll start waiting
    let started = Instant::now();
    let m4 = sent(&app, &b, &ab, "wake up", "s4").await?;
    let woke = waiting.await??;
    let latency = started.elapsed();
    assert_eq!(woke["messages"][0]["id"], m4["id"]);
    assert!(
        latency < Duration::from_secs(5),
        "long poll took {latency:?}"
    );
    println!(
        "longpoll-wakeup: answered {} ms after the send",
        latency.as_millis()
    );

    for q in ["since=abc", "since=-1", "timeout=x"] {
        assert_error(
            app.get(&format!("/v1/chat/sync?{q}"), Some(&a.token))
                .await?,
            400,
            "invalid_request",
        )
        .await?;
    }
    assert_error(app.get("/v1/chat/sync", None).await?, 401, "unauthorized").await?;
    Ok(())
}

/// One device's long-poll loop: from `since` until it holds `want` messages (or a minute
/// passed); returns the messages' ids in the order the answers carried them.
async fn poll_until(app: &TestApp, who: &TestUser, want: usize) -> Result<Vec<i64>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut cursor, mut ids) = ("0".to_string(), Vec::new());
    while ids.len() < want && Instant::now() < deadline {
        let answer: Value = app
            .get(
                &format!("/v1/chat/sync?since={cursor}&timeout=5"),
                Some(&who.token),
            )
            .await?
            .json()
            .await?;
        for m in answer["messages"].as_array().context("messages")? {
            ids.push(str_of(m, "id").parse()?);
        }
        cursor = str_of(&answer, "cursor").to_string();
    }
    Ok(ids)
}

/// Long polls in a loop while several people send at once, as a client runs them: every
/// message reaches each member's device exactly once and in id order, whether the poll
/// read it from the database or (on one node with the in-process bus) took it from its
/// wake-ups, in the subscription the previous answer parked.
async fn looping_long_polls_receive_every_message_once_in_order(backend: Backend) -> Result<()> {
    const EACH: usize = 15;
    let app = std::sync::Arc::new(spawn_app(backend).await?);
    let hub = app.register("lp_hub").await?;
    let mut senders = Vec::new();
    for name in ["lp_one", "lp_two", "lp_three"] {
        let user = app.register(name).await?;
        let channel = str_of(&dm(&app, &hub, name).await?.json::<Value>().await?, "id").to_string();
        senders.push((user, channel));
    }
    // The hub's device and the first sender's, polling from the start.
    let polls = {
        let (app2, hub2) = (app.clone(), hub.clone());
        let first = senders[0].0.clone();
        let (app3, total) = (app.clone(), senders.len() * EACH * 2);
        (
            tokio::spawn(async move { poll_until(&app2, &hub2, total).await }),
            tokio::spawn(async move { poll_until(&app3, &first, 2 * EACH).await }),
        )
    };
    // Everyone sends at once: each sender into their channel, the hub into each channel.
    let mut sends = tokio::task::JoinSet::new();
    for (i, (user, channel)) in senders.iter().enumerate() {
        for (who, tag) in [(user.clone(), "s"), (hub.clone(), "h")] {
            let (app, channel) = (app.clone(), channel.clone());
            sends.spawn(async move {
                let mut ids = Vec::new();
                for n in 0..EACH {
                    let m = sent(
                        &app,
                        &who,
                        &channel,
                        &format!("{tag}{i} {n}"),
                        &format!("{tag}{i}-{n}"),
                    )
                    .await?;
                    ids.push(str_of(&m, "id").parse::<i64>()?);
                }
                Ok::<_, anyhow::Error>((i, ids))
            });
        }
    }
    let mut all: Vec<i64> = Vec::new();
    let mut first_channel: Vec<i64> = Vec::new();
    while let Some(done) = sends.join_next().await {
        let (i, ids) = done??;
        if i == 0 {
            first_channel.extend(&ids);
        }
        all.extend(ids);
    }
    all.sort_unstable();
    first_channel.sort_unstable();
    for (got, want, who) in [
        (polls.0.await??, all, "the hub"),
        (polls.1.await??, first_channel, "lp_one"),
    ] {
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "{who}'s polls answered out of order or twice: {got:?}"
        );
        assert_eq!(got, want, "{who}'s polls");
    }
    Ok(())
}

/// A poll that takes its messages from wake-ups (one node on the in-process bus) answers
/// with the same JSON as a poll that reads them from the database, and as history shows
/// them: a message from someone the reader blocked comes hidden either way.
async fn polls_answer_alike_from_wake_ups_and_from_the_database(backend: Backend) -> Result<()> {
    let app = std::sync::Arc::new(spawn_app(backend).await?);
    let (ona, pia, quin) = (
        app.register("alike_ona").await?,
        app.register("alike_pia").await?,
        app.register("alike_quin").await?,
    );
    let group: Value = app
        .post_json(
            "/v1/chat/groups",
            &json!({"name": "Alike", "members": ["alike_pia", "alike_quin"]}),
            Some(&ona.token),
        )
        .await?
        .json()
        .await?;
    let ch = str_of(&group, "id").to_string();
    let blocked = app
        .json_request(
            reqwest::Method::PUT,
            "/v1/me/blocks/alike_pia",
            &json!({}),
            Some(&ona.token),
        )
        .await?;
    assert!(blocked.status().is_success(), "{}", blocked.status());

    // Ona's device waits from the start, so the message arrives as a wake-up.
    let waiting = {
        let (app, ona) = (app.clone(), ona.clone());
        tokio::spawn(async move {
            let answer: Value = app
                .get("/v1/chat/sync?since=0&timeout=20", Some(&ona.token))
                .await?
                .json()
                .await?;
            Ok::<_, anyhow::Error>(answer)
        })
    };
    common::live::eventually("ona's poll to wait", || async {
        let waiters = app
            .state
            .metrics
            .longpoll_waiters
            .load(std::sync::atomic::Ordering::Relaxed);
        Ok((waiters == 1).then_some(()))
    })
    .await?;
    sent(&app, &pia, &ch, "from someone ona blocked", "alike-1").await?;
    let first = waiting.await??;
    // The next poll continues from the answer's cursor (the parked subscription, where
    // there is one) after Quin's message was stored.
    sent(&app, &quin, &ch, "from quin", "alike-2").await?;
    let second: Value = app
        .get(
            &format!("/v1/chat/sync?since={}&timeout=0", str_of(&first, "cursor")),
            Some(&ona.token),
        )
        .await?
        .json()
        .await?;
    let mut live: Vec<Value> = first["messages"].as_array().context("messages")?.clone();
    live.extend(
        second["messages"]
            .as_array()
            .context("messages")?
            .iter()
            .cloned(),
    );

    let read: Value = app
        .get("/v1/chat/sync?since=0&timeout=0", Some(&ona.token))
        .await?
        .json()
        .await?;
    let history: Value = app
        .get(
            &format!("/v1/chat/channels/{ch}/messages?after=0"),
            Some(&ona.token),
        )
        .await?
        .json()
        .await?;
    assert_eq!(live.len(), 2, "{live:?}");
    assert_eq!(live[0]["hidden"], true, "{:?}", live[0]);
    assert_eq!(live[0]["content"], "");
    assert_eq!(live[1]["content"], "from quin");
    assert_eq!(
        &Value::from(live.clone()),
        &read["messages"],
        "live against read"
    );
    assert_eq!(
        &Value::from(live),
        &history["items"],
        "live against history"
    );
    assert_eq!(second["cursor"], read["cursor"]);
    Ok(())
}

async fn the_conversation_list_orders_by_activity_with_unread_counts(
    backend: Backend,
) -> Result<()> {
    let app = spawn_app(backend).await?;
    let (a, b, c) = (
        app.register("ida").await?,
        app.register("jon").await?,
        app.register("kim").await?,
    );
    let ab = str_of(&dm(&app, &a, "jon").await?.json::<Value>().await?, "id").to_string();
    let ac = str_of(&dm(&app, &a, "kim").await?.json::<Value>().await?, "id").to_string();
    sent(&app, &b, &ab, "one", "u1").await?;
    sent(&app, &b, &ab, "two", "u2").await?;
    sent(&app, &c, &ac, "hey", "u3").await?;
    sent(&app, &a, &ac, "my own", "u4").await?;
    let list: Value = app
        .get("/v1/chat/channels", Some(&a.token))
        .await?
        .json()
        .await?;
    let items = list["items"].as_array().context("items")?;
    assert_eq!(items.len(), 2);
    assert_eq!(str_of(&items[0], "id"), ac, "most recent activity first");
    assert_eq!(items[0]["last_message"]["content"], "my own");
    assert_eq!(items[0]["unread_count"], 1);
    assert_eq!(items[1]["unread_count"], 2);
    Ok(())
}

/// Sends over HTTP have a per-user quota (a WebSocket has its own per-connection one):
/// past its burst a send gets 429 with `Retry-After`, and nothing is stored; once time
/// has passed sends go through again. Another user is not affected.
async fn http_sends_are_rate_limited_per_user(backend: Backend) -> Result<()> {
    let app = common::spawn_with(
        backend,
        common::Options {
            manual_clock: true,
            env: vec![("KITH_CHAT_SEND_RATE_PER_SEC", "2".into())],
            ..Default::default()
        },
    )
    .await?;
    let (a, b) = (
        app.register("quota_a").await?,
        app.register("quota_b").await?,
    );
    let channel: Value = dm(&app, &a, "quota_b").await?.json().await?;
    let ch = str_of(&channel, "id").to_string();
    // A burst of 2.5 seconds' worth.
    for i in 0..5 {
        sent(&app, &a, &ch, &format!("m{i}"), &format!("q{i}")).await?;
    }
    let refused = send(&app, &a, &ch, "one too many", "q5").await?;
    let retry_after = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .context("a Retry-After header")?;
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    assert_error(refused, 429, "rate_limited").await?;
    sent(&app, &b, &ch, "the other user is not limited", "b0").await?;
    let page: Value = app
        .get(
            &format!("/v1/chat/channels/{ch}/messages?limit=100"),
            Some(&a.token),
        )
        .await?
        .json()
        .await?;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(6), "{page}");
    app.clock.as_ref().context("manual clock")?.advance(1_000);
    sent(&app, &a, &ch, "after a second", "q5").await?;
    Ok(())
}

/// One group commit decides each send as a series of single sends would: a channel that
/// does not exist, a sender who is not a member, a retry of a stored message, a repeat
/// within the batch (even one aimed at another channel), and new messages numbered with
/// ids above every stored one and each channel's next seqs.
#[tokio::test]
async fn a_batch_decides_each_send_as_single_sends_would() -> Result<()> {
    use kith::storage::chat::{Committed, NewMessage};
    let app = spawn_app(Backend::Memory).await?;
    let (a, b, c) = (
        app.register("bea").await?,
        app.register("cato").await?,
        app.register("dina").await?,
    );
    let dm_channel: Value = dm(&app, &a, "cato").await?.json().await?;
    let dm_id: i64 = str_of(&dm_channel, "id").parse()?;
    let group: Value = app
        .post_json(
            "/v1/chat/groups",
            &json!({"name": "trio", "members": ["cato", "dina"]}),
            Some(&a.token),
        )
        .await?
        .json()
        .await?;
    let group_id: i64 = str_of(&group, "id").parse()?;
    let stored = sent(&app, &a, str_of(&dm_channel, "id"), "first", "k0").await?;
    let stored_id: i64 = str_of(&stored, "id").parse()?;
    let user = |u: &common::TestUser| -> Result<i64> { Ok(u.id.parse()?) };
    let (a_id, b_id, c_id) = (user(&a)?, user(&b)?, user(&c)?);
    let send = |channel: i64, sender: i64, content: &str, key: &str| NewMessage {
        channel,
        sender,
        content: content.into(),
        client_msg_id: key.into(),
        now: 1,
        media: None,
    };
    let batch = [
        send(dm_id, a_id, "one", "k1"),
        send(group_id, c_id, "two", "k2"),
        send(dm_id, c_id, "not hers", "k3"),
        send(group_id + 1, a_id, "nowhere", "k4"),
        send(dm_id, a_id, "retry", "k0"),
        send(group_id, a_id, "repeat elsewhere", "k1"),
        send(dm_id, b_id, "three", "k5"),
        send(group_id, b_id, "four", "k6"),
    ];
    let refs: Vec<&NewMessage> = batch.iter().collect();
    let answers = app
        .state
        .store
        .chat
        .commit_messages(&app.state.ids, &refs)
        .await?;
    let stored_row = |answer: &Committed| match answer {
        Committed::Stored { row, members, .. } => Some((row.clone(), members.len())),
        _ => None,
    };
    let existing = |answer: &Committed| match answer {
        Committed::Existing(row) => Some(row.clone()),
        _ => None,
    };
    assert_eq!(answers.len(), batch.len());
    let (one, dm_members) = stored_row(&answers[0]).context("one stored")?;
    let (two, group_members) = stored_row(&answers[1]).context("two stored")?;
    let (three, _) = stored_row(&answers[6]).context("three stored")?;
    let (four, _) = stored_row(&answers[7]).context("four stored")?;
    assert_eq!((dm_members, group_members), (2, 3));
    assert_eq!(
        (one.channel_id, one.seq, one.content.as_str()),
        (dm_id, 2, "one")
    );
    assert_eq!((three.channel_id, three.seq), (dm_id, 3));
    assert_eq!((two.channel_id, two.seq), (group_id, 1));
    assert_eq!((four.channel_id, four.seq), (group_id, 2));
    let ids = [one.id, two.id, three.id, four.id];
    assert!(
        stored_id < ids[0] && ids.windows(2).all(|w| w[0] < w[1]),
        "{ids:?}"
    );
    assert!(
        matches!(answers[2], Committed::NotMember),
        "{:?}",
        answers[2]
    );
    assert!(
        matches!(answers[3], Committed::NoChannel),
        "{:?}",
        answers[3]
    );
    let retry = existing(&answers[4]).context("retry")?;
    assert_eq!((retry.id, retry.content.as_str()), (stored_id, "first"));
    let repeat = existing(&answers[5]).context("repeat")?;
    assert_eq!(
        (repeat.id, repeat.channel_id, repeat.content.as_str()),
        (one.id, dm_id, "one")
    );

    // What the batch stored is what the channels hold, seqs gap-free.
    let history: Value = app
        .get(
            &format!("/v1/chat/channels/{dm_id}/messages"),
            Some(&a.token),
        )
        .await?
        .json()
        .await?;
    let contents: Vec<&str> = history["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(contents, ["first", "one", "three"]);
    let again = app
        .state
        .store
        .chat
        .commit_messages(&app.state.ids, &refs)
        .await?;
    assert!(
        again.iter().enumerate().all(|(i, answer)| match i {
            2 => matches!(answer, Committed::NotMember),
            3 => matches!(answer, Committed::NoChannel),
            _ => matches!(answer, Committed::Existing(_)),
        }),
        "the same batch again stores nothing: {again:?}"
    );
    Ok(())
}

async fn any_member_renames_a_group(backend: Backend) -> Result<()> {
    let app = spawn_app(backend).await?;
    let (ann, bo, cy) = (
        app.register("ann_r").await?,
        app.register("bo_r").await?,
        app.register("cy_r").await?,
    );
    let created = app
        .post_json(
            "/v1/chat/groups",
            &json!({"name": "Before", "members": ["bo_r"]}),
            Some(&ann.token),
        )
        .await?;
    assert_eq!(created.status(), StatusCode::CREATED);
    let group: Value = created.json().await?;
    assert_eq!(group["creator_id"], ann.id.as_str());
    let path = format!("/v1/chat/channels/{}", group["id"].as_str().context("id")?);
    let rename = |who: &TestUser, body: Value| {
        app.client
            .patch(app.url(&path))
            .bearer_auth(&who.token)
            .json(&body)
            .send()
    };

    let r = rename(&bo, json!({"name": "  After  "})).await?;
    assert_eq!(r.status(), StatusCode::OK);
    let renamed: Value = r.json().await?;
    assert_eq!(
        (&renamed["name"], &renamed["id"]),
        (&json!("After"), &group["id"])
    );
    assert_eq!(renamed["members"], group["members"]);
    let list: Value = app
        .get("/v1/chat/channels", Some(&ann.token))
        .await?
        .json()
        .await?;
    assert_eq!(list["items"][0]["name"], "After");

    assert_error(
        rename(&cy, json!({"name": "Mine"})).await?,
        403,
        "forbidden",
    )
    .await?;
    for name in ["   ", &"x".repeat(101), "tab\tname"] {
        assert_error(
            rename(&bo, json!({"name": name})).await?,
            422,
            "validation_failed",
        )
        .await?;
    }
    assert_error(
        rename(&bo, json!({"title": "x"})).await?,
        400,
        "invalid_request",
    )
    .await?;
    let dm = dm(&app, &ann, "cy_r").await?.json::<Value>().await?;
    let dm_path = format!("/v1/chat/channels/{}", dm["id"].as_str().context("dm id")?);
    let r = app
        .client
        .patch(app.url(&dm_path))
        .bearer_auth(&ann.token)
        .json(&json!({"name": "Us"}))
        .send()
        .await?;
    assert_error(r, 422, "validation_failed").await?;
    let r = app
        .client
        .patch(app.url("/v1/chat/channels/999999999"))
        .bearer_auth(&ann.token)
        .json(&json!({"name": "Ghost"}))
        .send()
        .await?;
    assert_error(r, 404, "not_found").await?;
    Ok(())
}

both_backends!(
    any_member_renames_a_group,
    http_sends_are_rate_limited_per_user,
    direct_channels_are_one_per_pair,
    messages_are_ordered_gap_free_and_idempotent,
    groups_enforce_size_and_membership_rules,
    sync_returns_everything_newer_and_long_polls,
    looping_long_polls_receive_every_message_once_in_order,
    polls_answer_alike_from_wake_ups_and_from_the_database,
    the_conversation_list_orders_by_activity_with_unread_counts,
);
