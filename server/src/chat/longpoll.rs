//! Long polls kept in step between requests.
//!
//! A long-poll client asks again as soon as it has an answer, from the answer's cursor. When
//! wake-ups arrive in commit order (the in-process bus: [`PubSub::ordered`]), the
//! subscription that served one answer already holds everything committed since, so the
//! next poll from that cursor can take it over instead of reading the database: it is
//! parked here under `(user, cursor)` for [`PARK_FOR`], and a poll that names the same user
//! and cursor resumes it. Anything else (another cursor, a parked subscription that
//! lagged, an old one) falls back to the database, as every poll does on Redis.
//!
//! [`PubSub::ordered`]: crate::backend::PubSub::ordered

use crate::backend::Subscription;
use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::Duration,
};
use tokio::time::Instant;

/// How long an answered poll's subscription waits for the client to ask again. Clients ask
/// again at once; one that does not comes back to a database read.
pub const PARK_FOR: Duration = Duration::from_secs(30);
/// Most subscriptions parked at once on a node (each holds an inbox of wake-ups); past it
/// answered polls simply drop theirs.
const MAX_PARKED: usize = 100_000;

/// Subscriptions of answered polls, by user and the cursor their answer handed out.
#[derive(Default)]
pub struct Parked {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    waiting: HashMap<(i64, i64), (Subscription, Instant)>,
    /// When stale entries were last dropped (`None`: never).
    swept: Option<Instant>,
}

impl Parked {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `subscription`, which has received every wake-up of `user` committed after
    /// the messages up to `cursor`, for the poll that continues from `cursor`. Once per
    /// [`PARK_FOR`], those whose clients never came back are dropped.
    pub fn park(&self, user: i64, cursor: i64, subscription: Subscription) {
        let now = Instant::now();
        let mut inner = self.lock();
        let due = inner
            .swept
            .is_none_or(|at| now.duration_since(at) >= PARK_FOR);
        if due || inner.waiting.len() >= MAX_PARKED {
            inner
                .waiting
                .retain(|_, (_, since)| now.duration_since(*since) < PARK_FOR);
            inner.swept = Some(now);
        }
        if inner.waiting.len() < MAX_PARKED {
            inner.waiting.insert((user, cursor), (subscription, now));
        }
    }

    /// The subscription parked for `user`'s poll from `cursor`, if it is still fresh.
    pub fn resume(&self, user: i64, cursor: i64) -> Option<Subscription> {
        let (subscription, since) = self.lock().waiting.remove(&(user, cursor))?;
        (since.elapsed() < PARK_FOR).then_some(subscription)
    }

    /// Subscriptions parked now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{memory::MemoryPubSub, PubSub as _};

    #[tokio::test(start_paused = true)]
    async fn a_parked_poll_resumes_once_from_its_own_cursor_while_fresh() {
        let bus = MemoryPubSub::default();
        let parked = Parked::default();
        parked.park(1, 100, bus.subscribe("a").await.unwrap());
        assert!(parked.resume(1, 99).is_none(), "another cursor");
        assert!(parked.resume(2, 100).is_none(), "another user");
        assert!(parked.resume(1, 100).is_some());
        assert!(parked.resume(1, 100).is_none(), "taken once");

        parked.park(1, 200, bus.subscribe("a").await.unwrap());
        tokio::time::advance(PARK_FOR).await;
        assert!(parked.resume(1, 200).is_none(), "too old");

        // Stale ones go when the next is parked.
        parked.park(3, 1, bus.subscribe("b").await.unwrap());
        tokio::time::advance(PARK_FOR).await;
        parked.park(4, 1, bus.subscribe("c").await.unwrap());
        assert_eq!(parked.len(), 1);
    }
}
