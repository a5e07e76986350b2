//! A node's local pub/sub topics: one broadcast channel per topic that has subscribers on
//! this node, removed with its last subscriber, so idle topics cost nothing. Both
//! backends deliver through it: in-process it is the whole of pub/sub, and on Redis the
//! node's own publishes and the wake bus feed it.

use super::{FastMap, Subscription};
use bytes::Bytes;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

type Map = Arc<Mutex<FastMap<String, broadcast::Sender<Bytes>>>>;

/// The topics with subscribers on this node.
#[derive(Clone)]
pub struct LocalTopics {
    /// A std mutex: held only to look up or change the map, never across an `.await`.
    map: Map,
    /// Slots of each topic's buffer; a subscriber further behind gets `Lagged`.
    capacity: usize,
}

fn lock(map: &Map) -> MutexGuard<'_, FastMap<String, broadcast::Sender<Bytes>>> {
    map.lock().unwrap_or_else(|e| e.into_inner())
}

impl LocalTopics {
    pub fn new(capacity: usize) -> Self {
        Self {
            map: Arc::default(),
            capacity,
        }
    }

    /// A subscription to `topic`, registered when this returns.
    pub fn subscribe(&self, topic: &str) -> Subscription {
        let rx = lock(&self.map)
            .entry(topic.to_string())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe();
        let guard = TopicGuard {
            map: self.map.clone(),
            topic: topic.to_string(),
        };
        Subscription::new(rx, Box::new(guard))
    }

    /// Sends `payload` to this node's subscribers of each of `topics`. A topic nobody
    /// here listens to is skipped: that is not an error.
    pub fn send<'a>(&self, topics: impl IntoIterator<Item = &'a str>, payload: &Bytes) {
        let map = lock(&self.map);
        for topic in topics {
            if let Some(tx) = map.get(topic) {
                let _ = tx.send(payload.clone());
            }
        }
    }

    /// Sends `payload` to every subscriber on this node.
    pub fn send_to_all(&self, payload: &Bytes) {
        for tx in lock(&self.map).values() {
            let _ = tx.send(payload.clone());
        }
    }
}

/// Removes its topic once the last subscriber is gone.
struct TopicGuard {
    map: Map,
    topic: String,
}

impl Drop for TopicGuard {
    fn drop(&mut self) {
        let mut map = lock(&self.map);
        if map
            .get(&self.topic)
            // `Subscription` drops its receiver before its guard (field order), so a count
            // of 0 means nobody on this node listens any more.
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            map.remove(&self.topic);
        }
    }
}
