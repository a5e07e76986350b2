//! The Redis wake bus: pub/sub between the nodes of a namespace, on one Redis channel.
//!
//! Every node subscribes to the namespace's channel. A publish names its topics: a message
//! to a group of 100 is one entry on the bus and one delivery per node, not 100 of each.
//! Each node hands each payload to its local subscribers of the named topics and drops the
//! rest, so subscribing is local and costs Redis nothing. The price is that every node
//! reads every wake-up of the namespace (a hash lookup per topic); past a few dozen nodes,
//! per-node channels with a route table would be the next step.
//!
//! A node hands its own publishes to its local subscribers at once, and skips them when
//! they come back over the bus: a wake-up for someone connected to the same node does not
//! wait for the round trip through Redis.
//!
//! Publishes leave through one task per node, which sends everything queued while its
//! previous `PUBLISH` was on its way as the next one (up to [`PUBLISH_BATCH`]): under 1:1
//! chat every message is a publish, and batching them saves Redis a command, and every node
//! a message to read, per publish. [`PubSub::publish`] returns once its wake-up is queued,
//! so a chat message's `ack` does not wait for Redis; [`PubSub::publish_confirmed`] waits
//! for Redis (a session's revocation), and [`PubSub::flush`] for everything queued (at
//! shutdown).
//!
//! Wake-ups that cannot have arrived are announced rather than silently lost: a node whose
//! `PUBLISH` failed starts its next one with a gap entry (or, if no wake-up comes soon,
//! sends the gap entry alone, retrying until Redis takes it), and a node that receives a
//! message it cannot read (another format, during an upgrade) treats it the same way; both
//! send every local subscriber a [`GAP`], so clients recover from the database.

use super::{
    near::subscriber_connection,
    topics::{LocalTopics, INBOX_CAPACITY},
    BackendError, PubSub, Result, Subscription, GAP,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use redis::{aio::ConnectionManager, AsyncCommands, Client};
use std::{sync::Arc, time::Duration};
use tokio::sync::{mpsc, oneshot, watch};

/// How often the bus connection is pinged (and how long a pong may take): Redis says
/// nothing when a connection dies silently, and a deaf node would deliver nothing live.
const BUS_PING_EVERY: Duration = Duration::from_secs(5);

/// Wake-ups (and confirmations asked for) one `PUBLISH` carries at most.
const PUBLISH_BATCH: usize = 256;
/// Wake-ups waiting for the publisher; a full queue makes publishers wait (backpressure).
const PUBLISH_QUEUE: usize = 4096;
/// After a failed `PUBLISH`, how long the gap waits for a wake-up to carry it before it is
/// announced on its own; each failed announcement doubles the wait, up to
/// [`GAP_RETRY_MAX`].
const GAP_RETRY_FIRST: Duration = Duration::from_millis(50);
const GAP_RETRY_MAX: Duration = Duration::from_secs(2);

/// The first byte of every message of the bus: its format. A node skips (and announces as
/// a gap) messages of any other.
const FORMAT: u8 = 1;

/// Redis pub/sub for one node; see the module's documentation.
pub struct RedisPubSub {
    /// Wake-ups for the publisher task.
    outbox: mpsc::Sender<Outgoing>,
    topics: LocalTopics,
    /// The client id of the connection subscribed to the bus while the subscription is
    /// live: a `subscribe` waits for it, so that a publish after it returns is heard.
    live: watch::Receiver<Option<i64>>,
}

/// What the publisher task is handed.
struct Outgoing {
    /// An encoded entry ([`encode_entry`]); `None` for a [`PubSub::flush`].
    entry: Option<Vec<u8>>,
    /// Told whether the `PUBLISH` that carried the entry (or, for a flush, the last one
    /// before it) reached Redis.
    confirm: Option<oneshot::Sender<bool>>,
}

impl RedisPubSub {
    pub fn start(client: Client, conn: ConnectionManager, namespace: &str) -> Self {
        let topics = LocalTopics::new(INBOX_CAPACITY);
        let channel: Arc<str> = format!("{namespace}:wake").into();
        let (live_tx, live) = watch::channel(None);
        // This node on the bus (random): messages carry it, so the node skips its own.
        let origin = rand::random();
        tokio::spawn(subscriber_task(
            client,
            channel.clone(),
            origin,
            topics.clone(),
            live_tx,
        ));
        let (outbox, queued) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publisher_task(conn, channel, origin, queued));
        Self {
            outbox,
            topics,
            live,
        }
    }

    /// Redis's client id of the connection subscribed to the bus, while live (for
    /// diagnostics: it is the connection `CLIENT LIST` shows with `sub=1` and this id).
    pub fn subscriber_id(&self) -> Option<i64> {
        *self.live.borrow()
    }

    /// Delivers `payload` to this node's subscribers and queues it for the others; the
    /// receiver answers once the `PUBLISH` that carries it was sent, if `confirm`.
    async fn queue(
        &self,
        topics: &[String],
        payload: Bytes,
        confirm: bool,
    ) -> Result<Option<oneshot::Receiver<bool>>> {
        debug_assert!(!payload.is_empty(), "the empty payload is GAP");
        if topics.is_empty() {
            return Ok(None);
        }
        let entry = encode_entry(topics, &payload).ok_or(BackendError::TooLarge)?;
        self.topics
            .send(topics.iter().map(String::as_str), &payload);
        let (tx, rx) = if confirm {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.send(Outgoing {
            entry: Some(entry),
            confirm: tx,
        })
        .await?;
        Ok(rx)
    }

    async fn send(&self, outgoing: Outgoing) -> Result<()> {
        self.outbox
            .send(outgoing)
            .await
            .map_err(|_| BackendError::PublisherStopped)
    }
}

/// Owns the node's subscription to the bus: hands each message to the local subscribers
/// of its topics, and whenever it (re)subscribes sends every local topic a [`GAP`]. Ends
/// when the [`RedisPubSub`] is dropped.
async fn subscriber_task(
    client: Client,
    channel: Arc<str>,
    origin: u64,
    topics: LocalTopics,
    live: watch::Sender<Option<i64>>,
) {
    let mut backoff = Duration::from_millis(100);
    // Whether an unreadable message was logged: one warning, not one per message.
    let mut warned = false;
    while !live.is_closed() {
        let subscribed = async {
            let (mut pubsub, id) = subscriber_connection(&client).await?;
            pubsub.subscribe(&*channel).await?;
            Ok::<_, BackendError>((pubsub, id))
        };
        let (pubsub, id) = match subscribed.await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "redis pub/sub subscribe failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        // What was published while the link was down (or before it first came up, for a
        // subscription that stopped waiting for it) is lost: tell every subscriber.
        topics.send_to_all(&GAP);
        live.send_replace(Some(id));
        let (mut sink, mut messages) = pubsub.split();
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + BUS_PING_EVERY, BUS_PING_EVERY);
        loop {
            tokio::select! {
                () = live.closed() => return,
                message = messages.next() => match message {
                    Some(msg) => {
                        let message = msg.get_payload_bytes();
                        if !deliver(&topics, origin, message) {
                            topics.send_to_all(&GAP);
                            if !warned {
                                warned = true;
                                tracing::warn!(len = message.len(), "unreadable message on the wake bus (another format?); its wake-ups are treated as lost");
                            }
                        }
                    }
                    None => break,
                },
                _ = ping.tick() => {
                    let pong = tokio::time::timeout(BUS_PING_EVERY, sink.ping::<redis::Value>());
                    if !matches!(pong.await, Ok(Ok(_))) {
                        break;
                    }
                }
            }
        }
        live.send_replace(None);
        tracing::warn!("redis pub/sub connection lost; subscribing again");
    }
}

/// Sends the queued wake-ups to the bus, each `PUBLISH` carrying everything queued while
/// the previous one was on its way, and answers the confirmations asked for. After a failed
/// `PUBLISH`, the next one starts with a gap entry; if no wake-up comes to carry it within
/// [`GAP_RETRY_FIRST`] (doubling up to [`GAP_RETRY_MAX`]), the gap is announced on its own,
/// so the other nodes' clients recover the lost messages without waiting for another one.
/// Ends when the [`RedisPubSub`] is dropped.
async fn publisher_task(
    mut conn: ConnectionManager,
    channel: Arc<str>,
    origin: u64,
    mut queued: mpsc::Receiver<Outgoing>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    // Whether wake-ups were lost (a `PUBLISH` failed) and the other nodes not told yet.
    let mut lost = false;
    let mut retry = GAP_RETRY_FIRST;
    // Whether the last `PUBLISH` reached Redis (what a flush with nothing before it in its
    // batch reports).
    let mut last_sent = true;
    loop {
        let received = if lost {
            // `recv_many` is cancel safe: a timeout takes nothing from the queue.
            match tokio::time::timeout(retry, queued.recv_many(&mut batch, PUBLISH_BATCH)).await {
                Ok(received) => received,
                Err(_) => {
                    if announce_gap(&mut conn, &channel, origin).await {
                        (lost, last_sent, retry) = (false, true, GAP_RETRY_FIRST);
                    } else {
                        retry = (retry * 2).min(GAP_RETRY_MAX);
                    }
                    continue;
                }
            }
        } else {
            queued.recv_many(&mut batch, PUBLISH_BATCH).await
        };
        if received == 0 {
            // Closing (the node stops): one last try to tell the others of a loss.
            if lost {
                announce_gap(&mut conn, &channel, origin).await;
            }
            return;
        }
        let entries = || batch.iter().filter_map(|o| o.entry.as_deref());
        // Entries are never empty (each holds at least its two counts): no bytes, no entry.
        let bytes: usize = entries().map(<[u8]>::len).sum();
        // A batch of flushes alone still carries a pending gap: a flush answers whether
        // everything before it reached Redis, the loss included.
        if bytes > 0 || lost {
            let mut message = header(origin, GAP_ENTRY.len() + bytes);
            if lost {
                message.extend_from_slice(&GAP_ENTRY);
            }
            for entry in entries() {
                message.extend_from_slice(entry);
            }
            last_sent = publish(&mut conn, &channel, message, lost).await;
            if last_sent {
                lost = false;
                retry = GAP_RETRY_FIRST;
            } else {
                lost = true;
            }
        }
        for outgoing in batch.drain(..) {
            if let Some(confirm) = outgoing.confirm {
                let _ = confirm.send(last_sent);
            }
        }
    }
}

/// A `PUBLISH` of a gap entry alone; whether it reached Redis.
async fn announce_gap(conn: &mut ConnectionManager, channel: &str, origin: u64) -> bool {
    let mut message = header(origin, GAP_ENTRY.len());
    message.extend_from_slice(&GAP_ENTRY);
    publish(conn, channel, message, true).await
}

/// A message's format byte and origin, with room for `entries` bytes of entries.
fn header(origin: u64, entries: usize) -> Vec<u8> {
    let mut message = Vec::with_capacity(9 + entries);
    message.push(FORMAT);
    message.extend_from_slice(&origin.to_be_bytes());
    message
}

/// One `PUBLISH` of `message`; whether it reached Redis. The first failure after a success
/// (`already_lost` false) is logged; the retries that follow are not.
async fn publish(
    conn: &mut ConnectionManager,
    channel: &str,
    message: Vec<u8>,
    already_lost: bool,
) -> bool {
    match conn.publish::<_, _, ()>(channel, message).await {
        Ok(()) => true,
        Err(e) => {
            if !already_lost {
                tracing::warn!(error = %e, "wake bus publish failed; the other nodes will be told to catch up from the database");
            }
            false
        }
    }
}

/// The entry that tells every node its subscribers may have missed wake-ups: no topics,
/// an empty payload.
const GAP_ENTRY: [u8; 8] = [0; 8];

/// Hands each wake-up of a message of the bus to the local subscribers of the topics it
/// names (a gap entry: a [`GAP`] to all of them), unless this node (`me`) sent the
/// message: it did so when it published. `false` if the message cannot be read.
fn deliver(topics: &LocalTopics, me: u64, message: &[u8]) -> bool {
    let Some((&FORMAT, rest)) = message.split_first() else {
        return false;
    };
    let Some((origin, entries)) = rest.split_first_chunk::<8>() else {
        return false;
    };
    if u64::from_be_bytes(*origin) == me {
        return true;
    }
    // One copy of the entries; each wake-up's payload is a slice of it.
    let whole = Bytes::copy_from_slice(entries);
    let Some(entries) = decode(&whole) else {
        return false;
    };
    for Entry {
        topics: named,
        payload,
    } in entries
    {
        if named.is_empty() {
            topics.send_to_all(&GAP);
            continue;
        }
        // Topics are written by `encode_entry` from `&str`s; a non-UTF-8 one matches
        // nothing.
        let named = named
            .into_iter()
            .filter_map(|t| std::str::from_utf8(t).ok());
        topics.send(named, &whole.slice_ref(payload));
    }
    true
}

/// A message of the bus is its format ([`FORMAT`], one byte), the sending node (u64,
/// big-endian), then one or more entries. This encodes one entry: the number of topics
/// (u32), each topic as its length (u32) and bytes, then the payload's length (u32) and
/// bytes. `None` past 4 GiB.
fn encode_entry(topics: &[String], payload: &[u8]) -> Option<Vec<u8>> {
    let len = 8 + topics.iter().map(|t| 4 + t.len()).sum::<usize>() + payload.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&u32::try_from(topics.len()).ok()?.to_be_bytes());
    for topic in topics {
        out.extend_from_slice(&u32::try_from(topic.len()).ok()?.to_be_bytes());
        out.extend_from_slice(topic.as_bytes());
    }
    out.extend_from_slice(&u32::try_from(payload.len()).ok()?.to_be_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

/// A decoded entry of a message of the bus.
#[derive(Debug, PartialEq)]
struct Entry<'a> {
    /// The topics whose local subscribers get the payload; none in a gap entry.
    topics: Vec<&'a [u8]>,
    payload: &'a [u8],
}

/// The entries of a message of the bus (what follows its origin), or `None` if any is
/// malformed or there are none.
fn decode(mut rest: &[u8]) -> Option<Vec<Entry<'_>>> {
    fn take_u32(rest: &mut &[u8]) -> Option<usize> {
        let (head, tail) = rest.split_first_chunk::<4>()?;
        *rest = tail;
        usize::try_from(u32::from_be_bytes(*head)).ok()
    }
    fn take<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = take_u32(rest)?;
        if len > rest.len() {
            return None;
        }
        let (bytes, tail) = rest.split_at(len);
        *rest = tail;
        Some(bytes)
    }
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let count = take_u32(&mut rest)?;
        // Each topic takes at least its 4-byte length: a count beyond that is malformed,
        // and must not size an allocation.
        if count > rest.len() / 4 {
            return None;
        }
        let mut topics = Vec::with_capacity(count);
        for _ in 0..count {
            topics.push(take(&mut rest)?);
        }
        let payload = take(&mut rest)?;
        entries.push(Entry { topics, payload });
    }
    (!entries.is_empty()).then_some(entries)
}

#[async_trait]
impl PubSub for RedisPubSub {
    async fn publish(&self, topics: &[String], payload: Bytes) -> Result<()> {
        self.queue(topics, payload, false).await.map(drop)
    }

    async fn publish_confirmed(&self, topics: &[String], payload: Bytes) -> Result<()> {
        match self.queue(topics, payload, true).await? {
            None => Ok(()),
            Some(sent) => match sent.await {
                Ok(true) => Ok(()),
                Ok(false) => Err(BackendError::NotPublished),
                Err(_) => Err(BackendError::PublisherStopped),
            },
        }
    }

    async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Outgoing {
            entry: None,
            confirm: Some(tx),
        })
        .await?;
        match rx.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(BackendError::NotPublished),
            Err(_) => Err(BackendError::PublisherStopped),
        }
    }

    fn announce_gap(&self) {
        self.topics.send_to_all(&GAP);
    }

    async fn subscribe(&self, topic: &str) -> Result<Subscription> {
        // Not live yet (start-up) or any more (a broken link): wait a little first, so that
        // once registered the subscription hears what is published. If the wait runs out,
        // it is registered all the same, and gets a GAP when the bus is back.
        let mut live = self.live.clone();
        let _ = tokio::time::timeout(Duration::from_secs(2), live.wait_for(Option::is_some)).await;
        Ok(self.topics.subscribe(topic))
    }
}

#[cfg(test)]
mod tests {
    use super::{decode, deliver, encode_entry, Entry, FORMAT, GAP_ENTRY};
    use crate::backend::{topics::LocalTopics, Subscription, GAP};
    use bytes::Bytes;
    use futures::FutureExt as _;

    #[test]
    fn wake_bus_entries_round_trip() {
        let topics = vec!["user:1".to_string(), String::new(), "user:é".to_string()];
        let mut message = encode_entry(&topics, b"F0|1|{}").expect("encodes");
        message.extend(encode_entry(&[], b"x").expect("encodes"));
        message.extend(encode_entry(&["user:2".to_string()], b"").expect("encodes"));
        message.extend(GAP_ENTRY);
        let decoded = decode(&message).expect("decodes");
        assert_eq!(
            decoded,
            vec![
                Entry {
                    topics: vec![&b"user:1"[..], b"", "user:\u{e9}".as_bytes()],
                    payload: b"F0|1|{}",
                },
                Entry {
                    topics: vec![],
                    payload: b"x",
                },
                Entry {
                    topics: vec![&b"user:2"[..]],
                    payload: b"",
                },
                Entry {
                    topics: vec![],
                    payload: b"",
                },
            ]
        );
    }

    #[test]
    fn malformed_wake_bus_messages_are_rejected() {
        let entry = encode_entry(&["user:1".to_string()], b"payload").expect("encodes");
        // No entry at all; or cut inside the count, a length, a topic, or the payload.
        for cut in [0, 2, 6, 9, 14, 17, 20] {
            assert!(decode(&entry[..cut]).is_none(), "cut at {cut}");
        }
        // A whole entry followed by a cut one.
        let mut two = entry.clone();
        two.extend_from_slice(&entry[..9]);
        assert!(decode(&two).is_none());
        // A count far beyond what the bytes could hold allocates nothing.
        assert!(decode(&u32::MAX.to_be_bytes()).is_none());
        // A topic longer than the message.
        let mut long = 1u32.to_be_bytes().to_vec();
        long.extend_from_slice(&100u32.to_be_bytes());
        long.extend_from_slice(b"short");
        assert!(decode(&long).is_none());
    }

    /// A message of `origin` with `entries`, as the publisher builds it.
    fn message(format: u8, origin: u64, entries: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![format];
        out.extend_from_slice(&origin.to_be_bytes());
        for entry in entries {
            out.extend_from_slice(entry);
        }
        out
    }

    /// What `sub` has waiting now (`None`: nothing).
    fn waiting(sub: &mut Subscription) -> Option<Bytes> {
        sub.recv().now_or_never().map(|r| r.expect("not lagged"))
    }

    #[tokio::test]
    async fn delivery_skips_its_own_messages_and_spreads_gaps() {
        let topics = LocalTopics::new(8);
        let mut one = topics.subscribe("user:1");
        let mut two = topics.subscribe("user:2");
        let to_one = encode_entry(&["user:1".to_string()], b"hi").expect("encodes");
        let hi = Bytes::from_static(b"hi");
        // Another node's message reaches the topics it names.
        assert!(deliver(&topics, 7, &message(FORMAT, 9, &[&to_one])));
        assert_eq!(waiting(&mut one), Some(hi.clone()));
        assert_eq!(waiting(&mut two), None);
        // This node's own is skipped: it delivered it when it published.
        assert!(deliver(&topics, 7, &message(FORMAT, 7, &[&to_one])));
        assert_eq!(waiting(&mut one), None);
        // A gap entry reaches every subscriber, before the entries after it.
        let gap = message(FORMAT, 9, &[&GAP_ENTRY, &to_one]);
        assert!(deliver(&topics, 7, &gap));
        assert_eq!(waiting(&mut one), Some(GAP));
        assert_eq!(waiting(&mut one), Some(hi));
        assert_eq!(waiting(&mut two), Some(GAP));
        // Another format, or a broken message, is unreadable and delivers nothing (the
        // caller sends the gap).
        assert!(!deliver(&topics, 7, &message(FORMAT + 1, 9, &[&to_one])));
        assert!(!deliver(&topics, 7, &message(FORMAT, 9, &[&to_one[..5]])));
        assert!(!deliver(&topics, 7, &[FORMAT, 0, 0]));
        assert!(!deliver(&topics, 7, &[]));
        assert_eq!(waiting(&mut one), None);
        assert_eq!(waiting(&mut two), None);
    }
}
