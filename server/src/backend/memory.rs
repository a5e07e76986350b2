//! In-process implementations of the backend traits: the default, for one node.
//!
//! Every lock here is a `std::sync::Mutex` held for a few map operations and never across
//! an `.await`, which is cheaper than an async mutex and cannot deadlock the runtime.

use super::{
    gcra, lock,
    topics::{LocalTopics, INBOX_CAPACITY},
    BackendError, Cache, Decision, PresenceStore, PubSub, Queue, Quota, RateLimiter, Result,
    Subscription,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::{
    collections::{BTreeSet, VecDeque},
    sync::Mutex,
    time::Duration,
};
use tokio::{sync::Notify, time::Instant};

type HashMap<K, V> = super::FastMap<K, V>;

#[derive(Default)]
struct CacheData {
    values: HashMap<String, (Bytes, Option<Instant>)>,
    sets: HashMap<String, BTreeSet<i64>>,
    /// `values` is swept of expired entries when it grows past this (then it doubles from
    /// what is left, so sweeps stay rare however many entries are live).
    sweep_at: usize,
}

/// The size of `values` that triggers the first sweep.
const FIRST_SWEEP: usize = 100_000;

impl CacheData {
    /// Adds `id` to the set at `key`, keeping its `cap` largest ids.
    fn insert_capped(&mut self, key: &str, id: i64, cap: usize) {
        let set = self.sets.entry(key.to_string()).or_default();
        set.insert(id);
        while set.len() > cap {
            set.pop_first();
        }
    }

    /// Drops expired entries once `values` has grown past the sweep mark, so the map
    /// cannot grow without bound (reads skip expired entries but leave them).
    fn sweep(&mut self, now: Instant) {
        if self.values.len() < self.sweep_at.max(FIRST_SWEEP) {
            return;
        }
        self.values.retain(|_, e| MemoryCache::live(e, now));
        self.sweep_at = (self.values.len() * 2).max(FIRST_SWEEP);
    }
}

/// In-process cache.
#[derive(Default)]
pub struct MemoryCache {
    data: Mutex<CacheData>,
}

impl MemoryCache {
    fn live(entry: &(Bytes, Option<Instant>), now: Instant) -> bool {
        entry.1.is_none_or(|deadline| now < deadline)
    }

    /// Sets each entry; with `only_if_absent`, only keys holding no live value.
    fn set_each(&self, entries: &[(String, Bytes)], ttl: Option<Duration>, only_if_absent: bool) {
        let now = Instant::now();
        let deadline = ttl.map(|t| now + t);
        let mut data = lock(&self.data);
        data.sweep(now);
        for (key, value) in entries {
            if only_if_absent && data.values.get(key).is_some_and(|e| Self::live(e, now)) {
                continue;
            }
            data.values.insert(key.clone(), (value.clone(), deadline));
        }
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let now = Instant::now();
        let data = lock(&self.data);
        Ok(data
            .values
            .get(key)
            .filter(|e| Self::live(e, now))
            .map(|e| e.0.clone()))
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        let now = Instant::now();
        let data = lock(&self.data);
        Ok(keys
            .iter()
            .map(|k| {
                data.values
                    .get(k)
                    .filter(|e| Self::live(e, now))
                    .map(|e| e.0.clone())
            })
            .collect())
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        let now = Instant::now();
        let mut data = lock(&self.data);
        data.sweep(now);
        data.values
            .insert(key.to_string(), (value, ttl.map(|t| now + t)));
        Ok(())
    }

    async fn set_many(&self, entries: &[(String, Bytes)], ttl: Option<Duration>) -> Result<()> {
        self.set_each(entries, ttl, false);
        Ok(())
    }

    async fn add_many(&self, entries: &[(String, Bytes)], ttl: Option<Duration>) -> Result<()> {
        self.set_each(entries, ttl, true);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let mut data = lock(&self.data);
        data.values.remove(key);
        data.sets.remove(key);
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let now = Instant::now();
        let data = lock(&self.data);
        Ok(data.values.get(key).is_some_and(|e| Self::live(e, now)) || data.sets.contains_key(key))
    }

    /// A counter is a value holding a decimal number, as in Redis: `get` reads it, and it
    /// keeps the expiry it had.
    async fn incr(&self, key: &str, delta: i64) -> Result<i64> {
        let now = Instant::now();
        let mut data = lock(&self.data);
        let (current, deadline) = match data.values.get(key).filter(|e| Self::live(e, now)) {
            Some((value, deadline)) => {
                let n = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<i64>().ok())
                    .ok_or_else(|| BackendError::NotAnInteger(key.to_string()))?;
                (n, *deadline)
            }
            None => (0, None),
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| BackendError::NotAnInteger(key.to_string()))?;
        data.values.insert(
            key.to_string(),
            (
                Bytes::copy_from_slice(itoa::Buffer::new().format(next).as_bytes()),
                deadline,
            ),
        );
        Ok(next)
    }

    async fn ids_add(&self, entries: &[(String, i64)], cap: usize) -> Result<()> {
        let mut data = lock(&self.data);
        for (key, id) in entries {
            data.insert_capped(key, *id, cap);
        }
        Ok(())
    }

    async fn ids_push(&self, keys: &[String], id: i64, cap: usize) -> Result<()> {
        let mut data = lock(&self.data);
        for key in keys {
            if data.sets.contains_key(key.as_str()) {
                data.insert_capped(key, id, cap);
            }
        }
        Ok(())
    }

    async fn ids_fill(&self, key: &str, marker: i64, ids: &[i64], cap: usize) -> Result<bool> {
        let mut data = lock(&self.data);
        let Some(set) = data.sets.get_mut(key) else {
            return Ok(false);
        };
        if !set.remove(&marker) {
            return Ok(false);
        }
        set.extend(ids.iter().copied());
        while set.len() > cap {
            set.pop_first();
        }
        Ok(true)
    }

    async fn ids_remove(&self, entries: &[(String, i64)]) -> Result<()> {
        let mut data = lock(&self.data);
        for (key, id) in entries {
            if let Some(set) = data.sets.get_mut(key) {
                set.remove(id);
            }
        }
        Ok(())
    }

    async fn ids_range(&self, key: &str, below: Option<i64>, limit: usize) -> Result<Vec<i64>> {
        let data = lock(&self.data);
        Ok(match data.sets.get(key) {
            Some(set) => match below {
                Some(b) => set.range(..b).rev().take(limit).copied().collect(),
                None => set.iter().rev().take(limit).copied().collect(),
            },
            None => Vec::new(),
        })
    }

    async fn ids_contain(&self, key: &str, ids: &[i64]) -> Result<Vec<bool>> {
        let data = lock(&self.data);
        let set = data.sets.get(key);
        Ok(ids
            .iter()
            .map(|id| set.is_some_and(|s| s.contains(id)))
            .collect())
    }
}

/// In-process FIFO queues.
#[derive(Default)]
pub struct MemoryQueue {
    queues: Mutex<HashMap<String, VecDeque<Bytes>>>,
    /// Wakes waiting consumers. A consumer creates its `Notified` future before checking the
    /// queue, and `notify_waiters` reaches every future created before it, so a push between
    /// the check and the wait is not missed.
    pushed: Notify,
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn push(&self, queue: &str, item: Bytes) -> Result<()> {
        lock(&self.queues)
            .entry(queue.to_string())
            .or_default()
            .push_back(item);
        self.pushed.notify_waiters();
        Ok(())
    }

    async fn pop(&self, queue: &str, wait: Duration) -> Result<Option<Bytes>> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.pushed.notified();
            if let Some(item) = lock(&self.queues)
                .get_mut(queue)
                .and_then(VecDeque::pop_front)
            {
                return Ok(Some(item));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    async fn len(&self, queue: &str) -> Result<u64> {
        Ok(lock(&self.queues).get(queue).map_or(0, |q| q.len() as u64))
    }
}

/// In-process pub/sub: the node's local topics are all there is.
pub struct MemoryPubSub {
    topics: LocalTopics,
}

impl Default for MemoryPubSub {
    fn default() -> Self {
        Self {
            topics: LocalTopics::new(INBOX_CAPACITY),
        }
    }
}

#[async_trait]
impl PubSub for MemoryPubSub {
    async fn publish(&self, topics: &[String], payload: Bytes) -> Result<()> {
        debug_assert!(!payload.is_empty(), "the empty payload is GAP");
        self.topics
            .send(topics.iter().map(String::as_str), &payload);
        Ok(())
    }

    async fn subscribe(&self, topic: &str) -> Result<Subscription> {
        Ok(self.topics.subscribe(topic))
    }

    /// Publishing hands the payload to every subscriber's inbox before it returns.
    fn ordered(&self) -> bool {
        true
    }
}

/// In-process GCRA limiter.
#[derive(Default)]
pub struct MemoryRateLimiter {
    /// Theoretical arrival time per key, in the caller's milliseconds.
    tats: Mutex<HashMap<String, i64>>,
}

impl MemoryRateLimiter {
    fn check(&self, key: &str, quota: Quota, now_ms: i64, consume: bool) -> Decision {
        let mut tats = lock(&self.tats);
        if tats.len() > 100_000 {
            // Keys whose TAT has passed carry no state: dropping them changes no decision.
            tats.retain(|_, tat| *tat > now_ms);
        }
        let (decision, new_tat) = gcra(tats.get(key).copied(), quota, now_ms, consume);
        if let Some(tat) = new_tat {
            tats.insert(key.to_string(), tat);
        }
        decision
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn acquire(&self, key: &str, quota: Quota, now_ms: i64) -> Result<Decision> {
        Ok(self.check(key, quota, now_ms, true))
    }

    async fn peek(&self, key: &str, quota: Quota, now_ms: i64) -> Result<Decision> {
        Ok(self.check(key, quota, now_ms, false))
    }
}

#[derive(Default)]
struct PresenceData {
    /// Online users and their last activity.
    online: HashMap<i64, i64>,
    /// Last activity of everyone seen.
    seen: HashMap<i64, i64>,
}

/// In-process presence.
#[derive(Default)]
pub struct MemoryPresence {
    data: Mutex<PresenceData>,
}

#[async_trait]
impl PresenceStore for MemoryPresence {
    async fn touch(&self, activity: &[(i64, i64)]) -> Result<Vec<i64>> {
        let mut data = lock(&self.data);
        let mut came_online = Vec::new();
        for &(user, now_ms) in activity {
            let last = data.online.entry(user).or_insert_with(|| {
                came_online.push(user);
                now_ms
            });
            *last = (*last).max(now_ms);
            let seen = data.seen.entry(user).or_insert(now_ms);
            *seen = (*seen).max(now_ms);
        }
        Ok(came_online)
    }

    async fn expire(&self, cutoff_ms: i64) -> Result<Vec<(i64, i64)>> {
        let mut data = lock(&self.data);
        let gone: Vec<(i64, i64)> = data
            .online
            .iter()
            .filter(|(_, last)| **last <= cutoff_ms)
            .map(|(user, last)| (*user, *last))
            .collect();
        for (user, _) in &gone {
            data.online.remove(user);
        }
        Ok(gone)
    }

    async fn status(&self, users: &[i64]) -> Result<Vec<(bool, Option<i64>)>> {
        let data = lock(&self.data);
        Ok(users
            .iter()
            .map(|u| (data.online.contains_key(u), data.seen.get(u).copied()))
            .collect())
    }

    async fn online_count(&self) -> Result<u64> {
        Ok(lock(&self.data).online.len() as u64)
    }
}
