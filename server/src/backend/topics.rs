//! A node's local pub/sub topics, through which both backends deliver: in-process it is the
//! whole of pub/sub, and on Redis the node's own publishes and the wake bus feed it.
//!
//! Each subscription has its own inbox, a queue that holds only what is waiting in it: an
//! idle subscription holds no buffer, and a burst takes room only while it lasts. Up to
//! [`LocalTopics::new`]'s `capacity` payloads wait; past that the oldest are dropped and
//! the subscriber is told it lagged (and recovers from the database). A fixed ring per topic
//! (tokio's broadcast channel, as before) holds every slot up front: at ~45 bytes a slot
//! and a topic per connected user it had to stay at 8, and a connection whose task was
//! kept from running for a few milliseconds under load lagged, and the catch-ups' database
//! reads fed the overload (one 100-member group at 1,000 messages a second, where each
//! member gets every message, collapsed to a p99 of seconds).
//!
//! A topic exists while it has subscribers on this node and is removed with its last, so
//! idle topics cost nothing.

use super::{lock, FastMap, Subscription};
use bytes::Bytes;
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

type Map = Arc<Mutex<FastMap<String, Vec<Arc<Inbox>>>>>;

/// Payloads a subscription's inbox holds before the oldest are dropped (`Lagged`): as
/// many as a connection's outbound queue. Room is taken only as payloads wait. (With
/// Redis the wake bus hands them over in bursts, as many as one read carries; a buffer
/// of 8 lagged under 1:1 load often enough for the catch-ups to feed the overload.)
pub const INBOX_CAPACITY: usize = 256;
/// Queue room an emptied inbox keeps; a burst that grew it past this gives the rest back.
const INBOX_KEPT: usize = 16;

/// The topics with subscribers on this node.
#[derive(Clone)]
pub struct LocalTopics {
    /// A std mutex: held only to look up or change the map, never across an `.await`.
    map: Map,
    /// Payloads an inbox holds; a subscriber further behind gets `Lagged`.
    capacity: usize,
}

impl LocalTopics {
    pub fn new(capacity: usize) -> Self {
        Self {
            map: Arc::default(),
            capacity: capacity.max(1),
        }
    }

    /// A subscription to `topic`, registered when this returns.
    pub fn subscribe(&self, topic: &str) -> Subscription {
        let inbox = Arc::new(Inbox {
            capacity: self.capacity,
            state: Mutex::default(),
        });
        lock(&self.map)
            .entry(topic.to_string())
            .or_default()
            .push(inbox.clone());
        Subscription::new(TopicGuard {
            map: self.map.clone(),
            topic: topic.to_string(),
            inbox,
        })
    }

    /// Sends `payload` to this node's subscribers of each of `topics`. A topic nobody
    /// here listens to is skipped: that is not an error.
    pub fn send<'a>(&self, topics: impl IntoIterator<Item = &'a str>, payload: &Bytes) {
        let map = lock(&self.map);
        for topic in topics {
            for inbox in map.get(topic).into_iter().flatten() {
                inbox.push(payload);
            }
        }
    }

    /// Sends `payload` to every subscriber on this node.
    pub fn send_to_all(&self, payload: &Bytes) {
        for inbox in lock(&self.map).values().flatten() {
            inbox.push(payload);
        }
    }
}

/// One subscription's waiting payloads.
pub struct Inbox {
    capacity: usize,
    state: Mutex<InboxState>,
}

#[derive(Default)]
struct InboxState {
    queue: VecDeque<Bytes>,
    /// Payloads dropped (the inbox was full) since the subscriber last heard of it.
    lagged: u64,
    /// The task waiting for the next payload.
    waker: Option<Waker>,
}

impl Inbox {
    fn push(&self, payload: &Bytes) {
        let waker = {
            let mut s = lock(&self.state);
            if s.queue.len() >= self.capacity {
                s.queue.pop_front();
                s.lagged += 1;
            }
            s.queue.push_back(payload.clone());
            s.waker.take()
        };
        // Woken outside the inbox's lock (the woken task may run on another thread at once
        // and take it); the topics' map may still be locked by the caller.
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The next payload, `Lagged(n)` first if `n` were dropped; otherwise the caller's
    /// task is woken by the next push. Each payload spends the task's scheduling budget,
    /// as tokio's own channels do, so a task whose inbox keeps filling still yields.
    pub(super) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<Bytes, RecvError>> {
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let mut s = lock(&self.state);
        match Self::take(&mut s) {
            Ok(payload) => {
                coop.made_progress();
                Poll::Ready(Ok(payload))
            }
            Err(TryRecvError::Lagged(n)) => {
                coop.made_progress();
                Poll::Ready(Err(RecvError::Lagged(n)))
            }
            Err(_) => {
                match &s.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => s.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    pub(super) fn try_recv(&self) -> Result<Bytes, TryRecvError> {
        Self::take(&mut lock(&self.state))
    }

    fn take(s: &mut InboxState) -> Result<Bytes, TryRecvError> {
        if s.lagged > 0 {
            return Err(TryRecvError::Lagged(std::mem::take(&mut s.lagged)));
        }
        let payload = s.queue.pop_front().ok_or(TryRecvError::Empty)?;
        if s.queue.is_empty() && s.queue.capacity() > INBOX_KEPT {
            s.queue.shrink_to(INBOX_KEPT);
        }
        Ok(payload)
    }
}

/// A subscription's inbox, registered with its topic: dropping it removes the inbox, and
/// the topic once it has no inbox left.
pub struct TopicGuard {
    map: Map,
    topic: String,
    pub(super) inbox: Arc<Inbox>,
}

impl Drop for TopicGuard {
    fn drop(&mut self) {
        let mut map = lock(&self.map);
        if let Some(inboxes) = map.get_mut(&self.topic) {
            inboxes.retain(|i| !Arc::ptr_eq(i, &self.inbox));
            if inboxes.is_empty() {
                map.remove(&self.topic);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LocalTopics;
    use bytes::Bytes;
    use futures::FutureExt;
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};

    #[tokio::test]
    async fn every_subscriber_of_a_topic_gets_each_payload_in_order() {
        let topics = LocalTopics::new(4);
        let (mut a, mut b) = (topics.subscribe("t"), topics.subscribe("t"));
        let mut other = topics.subscribe("u");
        assert!(a.recv().now_or_never().is_none(), "nothing published yet");
        topics.send(["t"], &Bytes::from_static(b"1"));
        topics.send(["t", "nobody"], &Bytes::from_static(b"2"));
        for sub in [&mut a, &mut b] {
            assert_eq!(sub.recv().await.ok(), Some(Bytes::from_static(b"1")));
            assert_eq!(sub.try_recv().ok(), Some(Bytes::from_static(b"2")));
            assert!(matches!(sub.try_recv(), Err(TryRecvError::Empty)));
        }
        assert!(matches!(other.try_recv(), Err(TryRecvError::Empty)));
        topics.send_to_all(&Bytes::from_static(b"all"));
        assert_eq!(other.recv().await.ok(), Some(Bytes::from_static(b"all")));
    }

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Woken(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Woken {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_waiting_subscriber_is_woken_by_a_send_and_a_dropped_wait_loses_nothing() {
        use std::{future::Future, sync::atomic::Ordering, task::Poll};
        let topics = LocalTopics::new(4);
        let mut sub = topics.subscribe("t");
        let woken = std::sync::Arc::new(Woken::default());
        let waker = std::task::Waker::from(woken.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        {
            let mut wait = std::pin::pin!(sub.recv());
            assert!(wait.as_mut().poll(&mut cx).is_pending());
            topics.send(["t"], &Bytes::from_static(b"x"));
            assert_eq!(woken.0.load(Ordering::SeqCst), 1);
            assert!(matches!(wait.as_mut().poll(&mut cx), Poll::Ready(Ok(p)) if p == "x"));
        }
        // A wait dropped unfinished (a `select!` branch that lost) takes nothing with it.
        {
            let mut wait = std::pin::pin!(sub.recv());
            assert!(wait.as_mut().poll(&mut cx).is_pending());
        }
        topics.send(["t"], &Bytes::from_static(b"y"));
        assert_eq!(sub.try_recv().ok(), Some(Bytes::from_static(b"y")));
    }

    #[tokio::test]
    async fn a_full_inbox_drops_the_oldest_and_reports_the_lag_first() {
        let topics = LocalTopics::new(3);
        let mut sub = topics.subscribe("t");
        for i in 0..5u8 {
            topics.send(["t"], &Bytes::from(vec![i]));
        }
        assert!(matches!(sub.recv().await, Err(RecvError::Lagged(2))));
        for i in 2..5u8 {
            assert_eq!(sub.try_recv().ok(), Some(Bytes::from(vec![i])));
        }
        assert!(matches!(sub.try_recv(), Err(TryRecvError::Empty)));
    }

    #[test]
    fn topics_go_with_their_last_subscriber() {
        let topics = LocalTopics::new(2);
        let a = topics.subscribe("t");
        let b = topics.subscribe("t");
        drop(a);
        assert_eq!(super::lock(&topics.map).get("t").map(Vec::len), Some(1));
        drop(b);
        assert!(super::lock(&topics.map).is_empty());
    }
}
