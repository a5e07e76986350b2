//! Property: whatever sequence of sends, disconnects, reconnects with `sync`, new devices
//! and retries happens, afterwards every device of every member holds exactly its
//! channels' messages, in id order, with seqs 1..=n: no loss, no gap, no duplicate.

use crate::common;

use anyhow::{anyhow, Result};
use common::{spawn_app, Backend, TestApp, TestUser};
use futures::{SinkExt, StreamExt};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::{collections::BTreeMap, time::Duration};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{client::IntoClientRequest, http::HeaderValue, Message},
    MaybeTlsStream, WebSocketStream,
};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Debug, Clone)]
enum Op {
    /// Device `d` sends into channel `c` (over its socket if connected, else over HTTP).
    Send {
        d: usize,
        c: usize,
    },
    Disconnect {
        d: usize,
    },
    Reconnect {
        d: usize,
    },
    /// User `u` signs in on a new device.
    AddDevice {
        u: usize,
    },
    /// Device `d` repeats its last send with the same `client_msg_id`.
    Retry {
        d: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..8, 0usize..2).prop_map(|(d, c)| Op::Send { d, c }),
        1 => (0usize..8).prop_map(|d| Op::Disconnect { d }),
        1 => (0usize..8).prop_map(|d| Op::Reconnect { d }),
        1 => (0usize..3).prop_map(|u| Op::AddDevice { u }),
        1 => (0usize..8).prop_map(|d| Op::Retry { d }),
    ]
}

struct Device {
    user: usize,
    ws: Option<Ws>,
    /// What this device holds, per channel: message id → seq.
    held: BTreeMap<String, BTreeMap<i64, i64>>,
    cursor: i64,
    last_send: Option<(usize, String)>,
}

async fn connect(app: &TestApp, user: &TestUser) -> Result<Ws> {
    let mut req = format!("ws://127.0.0.1:{}/v1/chat/ws", app.port).into_client_request()?;
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", user.token))?,
    );
    Ok(connect_async(req).await?.0)
}

/// Connects a device and asks for everything after `since`, as every client must on
/// (re)connecting: the subscription is in place before the server reads the database, so
/// nothing falls between the two.
async fn connect_and_sync(app: &TestApp, user: &TestUser, since: i64) -> Result<Ws> {
    let mut ws = connect(app, user).await?;
    let frame = json!({"type": "sync", "since": since.to_string()});
    ws.send(Message::Text(frame.to_string().into())).await?;
    Ok(ws)
}

impl Device {
    /// Records a message. Only messages that arrive on the socket move the sync cursor: a
    /// message this device sent over HTTP while offline is newer than what it missed, and
    /// syncing from it would skip those (real clients keep the same rule).
    fn take(&mut self, message: &Value) {
        self.hold(message);
        let id: i64 = message["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        self.cursor = self.cursor.max(id);
    }

    fn hold(&mut self, message: &Value) {
        let id: i64 = message["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        let channel = message["channel_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let seq = message["seq"].as_i64().unwrap_or_default();
        self.held.entry(channel).or_default().insert(id, seq);
    }

    /// Reads frames until the socket has been quiet for a moment.
    async fn drain(&mut self) -> Result<()> {
        let Some(ws) = self.ws.as_mut() else {
            return Ok(());
        };
        let mut got = Vec::new();
        while let Ok(Some(frame)) =
            tokio::time::timeout(Duration::from_millis(300), ws.next()).await
        {
            if let Message::Text(t) = frame? {
                let v: Value = serde_json::from_str(t.as_str())?;
                if v["type"] == "message" || v["type"] == "ack" {
                    got.push(v["message"].clone());
                } else if v["type"] == "error" {
                    return Err(anyhow!("server said {v}"));
                }
            }
        }
        for m in got {
            self.take(&m);
        }
        Ok(())
    }
}

async fn run(app: &TestApp, case: usize, ops: Vec<Op>) -> Result<()> {
    let names = [
        format!("p{case}_a"),
        format!("p{case}_b"),
        format!("p{case}_c"),
    ];
    let users = [
        app.register(&names[0]).await?,
        app.register(&names[1]).await?,
        app.register(&names[2]).await?,
    ];
    let dm: Value = app
        .client
        .post(app.url(&format!("/v1/chat/dm/{}", names[1])))
        .bearer_auth(&users[0].token)
        .send()
        .await?
        .json()
        .await?;
    let group: Value = app
        .post_json(
            "/v1/chat/groups",
            &json!({"name": "g", "members": [names[1], names[2]]}),
            Some(&users[0].token),
        )
        .await?
        .json()
        .await?;
    let channels = [
        dm["id"].as_str().unwrap_or_default().to_string(),
        group["id"].as_str().unwrap_or_default().to_string(),
    ];
    let members: [Vec<usize>; 2] = [vec![0, 1], vec![0, 1, 2]];
    let mut devices: Vec<Device> = Vec::new();
    for (u, user) in users.iter().enumerate() {
        devices.push(Device {
            user: u,
            ws: Some(connect_and_sync(app, user, 0).await?),
            held: BTreeMap::new(),
            cursor: 0,
            last_send: None,
        });
    }
    let mut counter = 0;
    for op in ops {
        match op {
            Op::Send { d, .. } | Op::Retry { d } if d >= devices.len() => {}
            Op::Send { d, c } => {
                let dev = &mut devices[d];
                let c = if members[c].contains(&dev.user) {
                    c
                } else {
                    1 - c
                };
                if !members[c].contains(&dev.user) {
                    continue;
                }
                counter += 1;
                let cmid = format!("op-{counter}");
                dev.last_send = Some((c, cmid.clone()));
                send(app, &users[dev.user], dev, &channels[c], &cmid).await?;
            }
            Op::Retry { d } => {
                let dev = &mut devices[d];
                if let Some((c, cmid)) = dev.last_send.clone() {
                    send(app, &users[dev.user], dev, &channels[c], &cmid).await?;
                }
            }
            Op::Disconnect { d } => {
                if let Some(dev) = devices.get_mut(d) {
                    dev.drain().await?;
                    if let Some(mut ws) = dev.ws.take() {
                        let _ = ws.close(None).await;
                    }
                }
            }
            Op::Reconnect { d } => {
                if let Some(dev) = devices.get_mut(d) {
                    if dev.ws.is_none() {
                        let mut ws = connect(app, &users[dev.user]).await?;
                        ws.send(Message::Text(
                            json!({"type": "sync", "since": dev.cursor.to_string()})
                                .to_string()
                                .into(),
                        ))
                        .await?;
                        dev.ws = Some(ws);
                    }
                }
            }
            Op::AddDevice { u } => {
                if devices.len() < 8 {
                    let mut ws = connect(app, &users[u]).await?;
                    ws.send(Message::Text(
                        json!({"type": "sync", "since": "0"}).to_string().into(),
                    ))
                    .await?;
                    devices.push(Device {
                        user: u,
                        ws: Some(ws),
                        held: BTreeMap::new(),
                        cursor: 0,
                        last_send: None,
                    });
                }
            }
        }
    }
    // Everyone comes back and catches up.
    for dev in devices.iter_mut() {
        if dev.ws.is_none() {
            let mut ws = connect(app, &users[dev.user]).await?;
            ws.send(Message::Text(
                json!({"type": "sync", "since": dev.cursor.to_string()})
                    .to_string()
                    .into(),
            ))
            .await?;
            dev.ws = Some(ws);
        }
        dev.drain().await?;
    }
    // The truth, from the server.
    for (c, channel) in channels.iter().enumerate() {
        let page: Value = app
            .get(
                &format!("/v1/chat/channels/{channel}/messages?limit=100"),
                Some(&users[0].token),
            )
            .await?
            .json()
            .await?;
        let truth: BTreeMap<i64, i64> = page["items"]
            .as_array()
            .ok_or_else(|| anyhow!("no items"))?
            .iter()
            .map(|m| {
                (
                    m["id"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or_default(),
                    m["seq"].as_i64().unwrap_or_default(),
                )
            })
            .collect();
        let seqs: Vec<i64> = truth.values().copied().collect();
        let expected: Vec<i64> = (1..=truth.len() as i64).collect();
        assert_eq!(seqs, expected, "seqs are gap-free in id order");
        for dev in &devices {
            if members[c].contains(&dev.user) {
                let held = dev.held.get(channel).cloned().unwrap_or_default();
                assert_eq!(held, truth, "device of user {} in channel {c}", dev.user);
            } else {
                assert!(!dev.held.contains_key(channel), "non-member got messages");
            }
        }
    }
    Ok(())
}

async fn send(
    app: &TestApp,
    user: &TestUser,
    dev: &mut Device,
    channel: &str,
    cmid: &str,
) -> Result<()> {
    match dev.ws.as_mut() {
        Some(ws) => {
            ws.send(Message::Text(json!({"type": "send", "channel_id": channel, "client_msg_id": cmid, "content": cmid}).to_string().into())).await?;
        }
        None => {
            let resp = app
                .post_json(
                    &format!("/v1/chat/channels/{channel}/messages"),
                    &json!({"content": cmid, "client_msg_id": cmid}),
                    Some(&user.token),
                )
                .await?;
            let m: Value = resp.json().await?;
            dev.hold(&m);
        }
    }
    Ok(())
}

/// One node for all cases (each case has its own users and channels), on a multi-thread
/// runtime so the node keeps running between cases.
#[test]
fn every_device_converges_on_the_channel_history() -> Result<()> {
    use proptest::test_runner::{Config, TestRunner};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let app = runtime.block_on(spawn_app(Backend::Memory))?;
    let mut runner = TestRunner::new(Config {
        cases: 16,
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::cell::Cell::new(0usize);
    let strategy = proptest::collection::vec(op(), 1..40);
    runner
        .run(&strategy, |ops| {
            case.set(case.get() + 1);
            let n = ops.len();
            runtime
                .block_on(run(&app, case.get(), ops))
                .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            println!("chat-property: case {} with {n} operations: every device converged (no loss, gap or duplicate)", case.get());
            Ok(())
        })
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
