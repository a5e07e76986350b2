//! The database out of reach (PostgreSQL only: SQLite is a file of the node's own): sends
//! answer a clear 503 or an `unavailable` error frame naming the message, `/readyz` says
//! so, and once the database is back the pool reconnects by itself, retries succeed and
//! nothing acknowledged is lost.

use crate::common::{self, assert_error, gate::Gate, live::Socket, spawn_with, Backend, Options};
use anyhow::{Context as _, Result};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// `url` with its `host:port` replaced by `authority`.
fn through(url: &str, authority: &str) -> Result<String> {
    let start = url.find('@').context("the test URL names a user")? + 1;
    let end = start
        + url[start..]
            .find('/')
            .context("the test URL names a database")?;
    Ok(format!("{}{authority}{}", &url[..start], &url[end..]))
}

#[tokio::test]
async fn an_unreachable_database_answers_unavailable_and_recovers() -> Result<()> {
    let Some(base) = common::postgres_url() else {
        eprintln!("skipped: KITH_TEST_DATABASE_URL names no PostgreSQL database");
        return Ok(());
    };
    let start = base.find('@').context("user")? + 1;
    let upstream = base[start..start + base[start..].find('/').context("db")?].to_string();
    let gate = Gate::to(&upstream).await?;
    let dir = tempfile::tempdir()?;
    let url = through(
        &common::fresh_database(dir.path(), "outage").await?,
        &format!("127.0.0.1:{}", gate.port()),
    )?;
    let app = spawn_with(
        Backend::Memory,
        Options {
            database_url: Some(url),
            ..Default::default()
        },
    )
    .await?;
    let (x, y) = (app.register("out_x").await?, app.register("out_y").await?);
    let dm = app.dm(&x, &y).await?;
    app.say(&x, &dm, "before").await?;
    let mut socket = Socket::open(&app, &x).await?;
    let send = |id: &str| json!({"content": id, "client_msg_id": id});
    let path = format!("/v1/chat/channels/{dm}/messages");

    // Traffic throughout: y sends without pause; every answer is a 201 (acknowledged) or a
    // 503, which a client retries later with the same client_msg_id (a 503 at COMMIT may
    // still have stored it: the retry then returns the stored message).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refusals = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let traffic = {
        let (client, url, token, stop, refusals) = (
            app.client.clone(),
            app.url(&path),
            y.token.clone(),
            stop.clone(),
            refusals.clone(),
        );
        tokio::spawn(async move {
            let (mut acknowledged, mut refused) = (Vec::new(), Vec::new());
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let id = format!("traffic-{n}");
                let resp = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"content": id, "client_msg_id": id}))
                    .send()
                    .await?;
                match resp.status() {
                    StatusCode::CREATED => acknowledged.push(id),
                    StatusCode::SERVICE_UNAVAILABLE => {
                        refused.push(id);
                        refusals.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    other => anyhow::bail!("send {id}: {other} {}", resp.text().await?),
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Ok::<_, anyhow::Error>((acknowledged, refused))
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    gate.shut();
    let resp = app
        .post_json(&path, &send("http-1"), Some(&x.token))
        .await?;
    assert!(
        resp.headers().contains_key("retry-after"),
        "503 carries Retry-After"
    );
    assert_error(resp, 503, "unavailable").await?;
    socket
        .send(json!({"type": "send", "channel_id": dm, "client_msg_id": "ws-1", "content": "ws-1"}))
        .await?;
    let error = socket
        .next_where("the error frame", |f| f["type"] == "error")
        .await?;
    assert_eq!(error["code"], "unavailable", "{error}");
    assert_eq!(error["client_msg_id"], "ws-1", "{error}");
    let ready = app.get("/readyz", None).await?;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json::<Value>().await?["database"], "unreachable");

    // The traffic meets the outage too: its sends answer 503 rather than hang.
    common::live::eventually("the traffic to meet the outage", || async {
        Ok((refusals.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(()))
    })
    .await?;

    // Back: the pool opens new connections by itself; the retries go through once.
    let before = gate.accepted();
    gate.open();
    common::live::eventually("the node to be ready again", || async {
        Ok((app.get("/readyz", None).await?.status() == StatusCode::OK).then_some(()))
    })
    .await?;
    assert!(gate.accepted() > before, "the pool reconnected");
    let resp = app
        .post_json(&path, &send("http-1"), Some(&x.token))
        .await?;
    assert_eq!(resp.status(), StatusCode::CREATED);
    socket
        .send(json!({"type": "send", "channel_id": dm, "client_msg_id": "ws-1", "content": "ws-1"}))
        .await?;
    socket.next_where("the ack", |f| f["type"] == "ack").await?;

    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut acknowledged, refused) = traffic.await??;
    assert!(!refused.is_empty(), "the traffic met the outage");
    for id in refused {
        let resp = app.post_json(&path, &send(&id), Some(&y.token)).await?;
        assert!(
            resp.status() == StatusCode::CREATED,
            "retry of {id}: {}",
            resp.status()
        );
        acknowledged.push(id);
    }

    // The whole history: seqs 1..n, and every acknowledged message in it exactly once.
    let mut contents = Vec::new();
    let mut after = "0".to_string();
    loop {
        let page: Value = app
            .get(&format!("{path}?limit=100&after={after}"), Some(&y.token))
            .await?
            .json()
            .await?;
        let items = page["items"].as_array().context("items")?;
        let Some(last) = items.last() else { break };
        after = last["id"].as_str().context("id")?.to_string();
        for m in items {
            let seq = m["seq"].as_i64().context("seq")?;
            assert_eq!(seq, contents.len() as i64 + 1, "seq gap-free");
            contents.push(m["content"].as_str().context("content")?.to_string());
        }
    }
    for id in acknowledged
        .iter()
        .map(String::as_str)
        .chain(["before", "http-1", "ws-1"])
    {
        let times = contents.iter().filter(|c| *c == id).count();
        assert_eq!(times, 1, "acknowledged {id} stored {times} times");
    }
    assert_eq!(
        contents.len(),
        acknowledged.len() + 3,
        "nothing stored but the acknowledged messages"
    );
    Ok(())
}
