//! Property: with three nodes committing messages to one database at once, and commits
//! held open for random times, every device that follows its sync cursor gets every
//! message exactly once, in each channel's `seq` order with no gap, whichever nodes it
//! syncs from, over WebSocket or long poll, starting from any cursor it once held.
//!
//! This is the sync cursor's promise with several writers (shared/API.md, "Clusters";
//! docs/decisions/0001-sync-cursor.md): a message committed late with a smaller id than
//! one already delivered would be skipped by every cursor that passed it.

use crate::common::{self, live::Socket, Backend, TestApp, TestUser};
use anyhow::{anyhow, Context as _, Result};
use kith::storage::Raw;
use serde_json::{json, Value};
use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

/// Sends over the whole run, spread over the nodes.
const SENDS: usize = 90;

/// What one device received: per channel, seq → message id; a message twice fails.
#[derive(Default)]
struct Held {
    by_channel: BTreeMap<String, BTreeMap<i64, i64>>,
    /// Every message id received, to catch a second delivery.
    ids: HashSet<i64>,
    /// The newest id received: the cursor the device syncs from.
    cursor: i64,
}

impl Held {
    fn take(&mut self, who: &str, message: &Value) -> Result<()> {
        let id: i64 = message["id"].as_str().context("message id")?.parse()?;
        let seq = message["seq"].as_i64().context("seq")?;
        let channel = message["channel_id"]
            .as_str()
            .context("channel")?
            .to_string();
        if !self.ids.insert(id) {
            return Err(anyhow!("{who}: message {id} (seq {seq}) delivered twice"));
        }
        self.by_channel.entry(channel).or_default().insert(seq, id);
        self.cursor = self.cursor.max(id);
        Ok(())
    }
}

/// Holds every message commit of the database open for a random 0–15 ms (PostgreSQL only):
/// a statement trigger on `messages` sleeps inside the writer's transaction.
async fn delay_commits(app: &TestApp) -> Result<bool> {
    let Raw::Postgres(store) = &app.state.store.raw else {
        return Ok(false);
    };
    sqlx::query(
        "CREATE FUNCTION delay_commit() RETURNS trigger LANGUAGE plpgsql AS
         $$ BEGIN PERFORM pg_sleep(random() * 0.015); RETURN NULL; END $$",
    )
    .execute(store.pool())
    .await?;
    sqlx::query(
        "CREATE TRIGGER delay_commit AFTER INSERT ON messages
         FOR EACH STATEMENT EXECUTE FUNCTION delay_commit()",
    )
    .execute(store.pool())
    .await?;
    Ok(true)
}

/// A pseudo-random stream from a seed printed by the test (so a failure can be replayed).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

#[tokio::test]
async fn three_writers_deliver_every_message_once_in_order() -> Result<()> {
    if !common::redis_available() {
        eprintln!("skipped: KITH_TEST_REDIS_URL is not set");
        return Ok(());
    }
    let seed = common::rand_u64() | 1;
    eprintln!("seed {seed:#x}");
    let mut rng = Rng(seed);
    let cluster = common::Cluster::new().await?;
    let mut nodes = Vec::new();
    for node_id in 1..=3 {
        let mut options = cluster.node(1);
        options.env.push(("KITH_NODE_ID", node_id.to_string()));
        // A node's senders are not the test's subject: no per-user send limit.
        options
            .env
            .push(("KITH_CHAT_SEND_RATE_PER_SEC", "10000".into()));
        nodes.push(common::spawn_with(Backend::Redis, options).await?);
    }
    let delayed = delay_commits(&nodes[0]).await?;
    eprintln!("commits delayed at random: {delayed}");

    let names = ["mw_ann", "mw_bob", "mw_cat"];
    let mut users = Vec::new();
    for name in names {
        users.push(nodes[0].register(name).await?);
    }
    let group = nodes[0].group(&users[0], "writers", &names[1..]).await?;
    let dm = nodes[1].dm(&users[0], &users[1]).await?;
    let channels: [(&str, &[usize]); 2] = [(&group, &[0, 1, 2]), (&dm, &[0, 1])];

    // Senders: every member of a channel sends into it through a random node, all at once.
    let mut plan: Vec<(usize, usize, usize)> = Vec::new();
    for _ in 0..SENDS {
        let channel = rng.below(2);
        let members = channels[channel].1;
        let sender = members[rng.below(members.len())];
        plan.push((rng.below(3), channel, sender));
    }
    let nodes = Arc::new(nodes);
    let users = Arc::new(users);
    let senders = {
        let (nodes, users) = (nodes.clone(), users.clone());
        let channel_ids = [group.clone(), dm.clone()];
        tokio::spawn(async move {
            let mut sends = Vec::new();
            for (i, (node, channel, sender)) in plan.into_iter().enumerate() {
                let (nodes, users, channel) =
                    (nodes.clone(), users.clone(), channel_ids[channel].clone());
                sends.push(tokio::spawn(async move {
                    let body =
                        json!({"content": format!("m{i}"), "client_msg_id": format!("mw-{i}")});
                    let resp = nodes[node]
                        .post_json(
                            &format!("/v1/chat/channels/{channel}/messages"),
                            &body,
                            Some(&users[sender].token),
                        )
                        .await?;
                    anyhow::ensure!(resp.status() == 201, "send {i}: {}", resp.status());
                    Ok::<_, anyhow::Error>(())
                }));
                if i % 10 == 9 {
                    tokio::task::yield_now().await;
                }
            }
            for send in sends {
                send.await??;
            }
            Ok::<_, anyhow::Error>(())
        })
    };

    // Readers, while the sends go on: each user has a long-polling device that asks a
    // random node each time, and a WebSocket device that moves to a random node and syncs
    // from its cursor, or from an older cursor it once held (then it must get again
    // exactly what it had after that cursor, so it starts over from there).
    let sent = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for (u, user) in users.iter().enumerate() {
        let (nodes, user, seed) = (nodes.clone(), user.clone(), seed ^ ((u as u64 + 1) << 32));
        readers.push(tokio::spawn(long_poller(
            nodes.clone(),
            user.clone(),
            seed,
            sent.clone(),
        )));
        readers.push(tokio::spawn(socket_hopper(
            nodes,
            user,
            seed ^ 0xffff,
            sent.clone(),
        )));
    }
    senders.await??;
    sent.store(true, Ordering::SeqCst);

    // The whole history of each channel, as the database has it.
    let mut history: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for (channel, _) in channels {
        let page: Value = nodes[2]
            .get(
                &format!("/v1/chat/channels/{channel}/messages?limit=100"),
                Some(&users[0].token),
            )
            .await?
            .json()
            .await?;
        let items = page["items"].as_array().context("history")?;
        let pairs: Vec<(i64, i64)> = items
            .iter()
            .map(|m| {
                Ok((
                    m["seq"].as_i64().context("seq")?,
                    m["id"].as_str().context("id")?.parse()?,
                ))
            })
            .collect::<Result<_>>()?;
        let seqs: Vec<i64> = pairs.iter().map(|p| p.0).collect();
        assert_eq!(
            seqs,
            (1..=pairs.len() as i64).collect::<Vec<_>>(),
            "seq gap-free in {channel}"
        );
        let mut by_id = pairs.clone();
        by_id.sort_by_key(|p| p.1);
        assert_eq!(by_id, pairs, "ids follow seq in {channel}");
        history.insert(channel.to_string(), pairs);
    }
    let total: usize = history.values().map(Vec::len).sum();
    assert_eq!(total, SENDS, "every send stored once");

    // Each reader stops once it holds everything of its user's channels, and must hold
    // exactly that.
    for (i, reader) in readers.into_iter().enumerate() {
        let (who, held) = reader.await??;
        let user = i / 2;
        for (channel, members) in channels {
            let want: BTreeMap<i64, i64> = if members.contains(&user) {
                history[channel].iter().copied().collect()
            } else {
                BTreeMap::new()
            };
            let got = held.by_channel.get(channel).cloned().unwrap_or_default();
            assert_eq!(got, want, "{who}: channel {channel}");
        }
    }
    Ok(())
}

/// A long-polling device: `GET /v1/chat/sync` from its cursor on a random node, until it
/// has been told of nothing new three times in a row after the last send was answered.
async fn long_poller(
    nodes: Arc<Vec<TestApp>>,
    user: TestUser,
    seed: u64,
    sent: Arc<AtomicBool>,
) -> Result<(String, Held)> {
    let who = format!("{} (long poll)", user.username);
    let mut rng = Rng(seed | 1);
    let mut held = Held::default();
    let mut quiet = 0;
    while quiet < 3 {
        let node = &nodes[rng.below(nodes.len())];
        let answer = node.sync(&user, &held.cursor.to_string(), 1).await?;
        let messages = answer["messages"].as_array().context("messages")?;
        quiet = if !messages.is_empty() || !sent.load(Ordering::SeqCst) {
            0
        } else {
            quiet + 1
        };
        for message in messages {
            held.take(&who, message)?;
        }
        let cursor: i64 = answer["cursor"].as_str().context("cursor")?.parse()?;
        anyhow::ensure!(cursor >= held.cursor, "{who}: the cursor went back");
        held.cursor = cursor;
    }
    Ok((who, held))
}

/// A WebSocket device that hops between nodes: on each hop it syncs from its cursor, or,
/// one time in four, from an older cursor it held, dropping what it had after it.
async fn socket_hopper(
    nodes: Arc<Vec<TestApp>>,
    user: TestUser,
    seed: u64,
    sent: Arc<AtomicBool>,
) -> Result<(String, Held)> {
    let who = format!("{} (WebSocket)", user.username);
    let mut rng = Rng(seed | 1);
    let mut held = Held::default();
    let mut cursors = vec![0i64];
    let mut quiet_hops = 0;
    while quiet_hops < 3 {
        let node = &nodes[rng.below(nodes.len())];
        let since = if rng.below(4) == 0 {
            cursors[rng.below(cursors.len())]
        } else {
            held.cursor
        };
        if since < held.cursor {
            // Starting over from an older cursor: what came after it must come again.
            let mut kept = Held::default();
            for (channel, seqs) in &held.by_channel {
                for (seq, id) in seqs.iter().filter(|(_, id)| **id <= since) {
                    kept.by_channel
                        .entry(channel.clone())
                        .or_default()
                        .insert(*seq, *id);
                    kept.ids.insert(*id);
                }
            }
            kept.cursor = since;
            held = kept;
        }
        let mut socket = Socket::open(node, &user).await?;
        socket
            .send(json!({"type": "sync", "since": since.to_string()}))
            .await?;
        // Everything this socket receives until a fence: the sync's answer and live
        // messages. The hop lasts a few fences, so live delivery is exercised too.
        let mut got_any = false;
        for _ in 0..3 {
            for frame in socket.fence(node).await? {
                if frame["type"] == "message" {
                    held.take(&who, &frame["message"])?;
                    got_any = true;
                }
            }
        }
        socket.close().await?;
        cursors.push(held.cursor);
        quiet_hops = if got_any || !sent.load(Ordering::SeqCst) {
            0
        } else {
            quiet_hops + 1
        };
    }
    Ok((who, held))
}
