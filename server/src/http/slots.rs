//! Caps on what one user or one client address holds open on this node at once: WebSockets
//! and waiting long polls (`crate::config::Limits`). A [`Slot`] is held for as long as the
//! connection or the poll lasts and frees itself when dropped, however that ends.
//!
//! The counts are per node: a cluster of N nodes lets a user hold up to N times the cap,
//! which still bounds what one account can take from any one machine.

use crate::{config::Limits, error::AppError};
use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

/// How long a refused client is told to wait before trying again: a slot frees when one of
/// its connections or polls ends, which the server cannot foresee.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The node's slot counters.
pub struct OpenSlots {
    pub ws_per_user: Arc<Slots<i64>>,
    pub ws_per_address: Arc<Slots<IpAddr>>,
    pub longpolls_per_user: Arc<Slots<i64>>,
}

impl OpenSlots {
    pub fn new(limits: &Limits) -> Self {
        Self {
            ws_per_user: Slots::new(limits.ws_per_user, "open WebSockets for this user"),
            ws_per_address: Slots::new(limits.ws_per_address, "open WebSockets from this address"),
            longpolls_per_user: Slots::new(
                limits.longpolls_per_user,
                "waiting long polls for this user",
            ),
        }
    }
}

/// Counts of what each key holds, each at most `max`.
pub struct Slots<K> {
    max: usize,
    /// What the refusal names ("open WebSockets for this user").
    what: &'static str,
    /// Keys holding at least one slot (a key's entry goes with its last slot).
    held: Mutex<HashMap<K, usize>>,
}

impl<K: Hash + Eq + Copy> Slots<K> {
    pub fn new(max: usize, what: &'static str) -> Arc<Self> {
        Arc::new(Self {
            max,
            what,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one of `key`'s slots; 429 `rate_limited` when it holds `max` already.
    pub fn take(self: &Arc<Self>, key: K) -> Result<Slot<K>, AppError> {
        let mut held = self.lock();
        let count = held.entry(key).or_insert(0);
        if *count >= self.max {
            return Err(AppError::too_many(self.what, self.max, RETRY_AFTER));
        }
        *count += 1;
        Ok(Slot {
            slots: self.clone(),
            key,
        })
    }

    /// Slots `key` holds now.
    pub fn held(&self, key: K) -> usize {
        self.lock().get(&key).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, usize>> {
        // The map holds plain counts, consistent whatever panicked while it was held.
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One slot of one key, given back when dropped.
pub struct Slot<K: Hash + Eq + Copy> {
    slots: Arc<Slots<K>>,
    key: K,
}

impl<K: Hash + Eq + Copy> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut held = self.slots.lock();
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_max_slots_and_dropping_one_frees_it() {
        let slots = Slots::new(2, "things");
        let a = slots.take(1).expect("first");
        let _b = slots.take(1).expect("second");
        assert!(slots.take(1).is_err(), "a third is refused");
        assert!(slots.take(2).is_ok(), "another key has its own slots");
        drop(a);
        assert_eq!(slots.held(1), 1);
        let _c = slots.take(1).expect("freed by the drop");
        assert!(slots.take(1).is_err());
    }

    #[test]
    fn a_key_without_slots_leaves_no_entry() {
        let slots = Slots::new(1, "things");
        drop(slots.take(7).expect("slot"));
        assert!(slots.lock().is_empty());
        let refused = Slots::new(1, "things");
        let _held = refused.take(7).expect("slot");
        assert!(refused.take(7).is_err());
        assert_eq!(refused.lock().len(), 1);
    }
}
