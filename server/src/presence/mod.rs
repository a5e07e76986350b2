//! The presence servers: who is online, told to the people who care.
//!
//! A user is online while any of their connections shows activity: a WebSocket frame
//! (heartbeats included) or a long-poll that is waiting or polls again. Activity goes to
//! the shared [`PresenceStore`](crate::backend::PresenceStore) (Redis or in-process), and a
//! user silent for `KITH_PRESENCE_TIMEOUT_SECS` is taken offline by the periodic sweep, so a
//! brief drop and reconnect inside that window changes nothing anyone sees.
//!
//! Writes are coalesced: the first activity of a user this node does not know to be online
//! is written at once (so coming online is announced without delay); later heartbeats only
//! mark the user, and every [`TICK`] one batched write records all of them. 10k users
//! heartbeating every 5 s cost one store call a second, not 2,000.
//!
//! Changes are pushed (`presence` frames) to the user's friends and to the members of the
//! small channels they are in; members of large groups ask with `GET /v1/presence` when
//! they open the group instead (pushing every change to 100 people is the cost the seed
//! warns about).

pub mod routes;

use crate::{error::AppError, state::AppState};
use app::model::{Id, PresenceStatus, UserPresence};
use std::{
    sync::{atomic::Ordering, Arc, Mutex, MutexGuard},
    time::Duration,
};

/// How often activity is flushed and silent users are expired.
pub const TICK: Duration = Duration::from_secs(1);
/// Channels with at most this many members get presence pushed to them.
pub const SMALL_CHANNEL: i64 = 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Maps touched on every heartbeat.
type HashMap<K, V> = crate::backend::FastMap<K, V>;

/// This node's view of its own users' activity, between two flushes.
#[derive(Default)]
pub struct Tracker {
    /// Users with activity since the last flush, and the time of their latest (the flush
    /// records that time, not its own, so going offline is not delayed by the batching).
    pending: Mutex<HashMap<i64, i64>>,
    /// Users with a long-poll waiting on this node, and how many.
    held: Mutex<HashMap<i64, usize>>,
    /// When this node last wrote each user's activity to the store.
    written: Mutex<HashMap<i64, i64>>,
}

/// Records activity of `user`: written through at once unless this node wrote it recently
/// (then batched into the next tick).
pub async fn activity(state: &AppState, user: i64) {
    let now = state.clock.now_ms();
    if batched(state, user, now) {
        return;
    }
    if let Err(e) = write(state, &[(user, now)]).await {
        tracing::warn!(error = %e, "presence write failed; retrying at the next tick");
        note(state, user, now);
    }
}

/// Batches activity of `user` at `now` for the next flush if this node wrote the user's
/// activity recently; `false` means it has to be written through ([`activity`]).
pub fn batched(state: &AppState, user: i64, now: i64) -> bool {
    let recently_written = written_within(state, now).contains(&user);
    if recently_written {
        note(state, user, now);
    }
    recently_written
}

/// The users whose activity this node wrote to the store less than half the presence
/// timeout before `now`: the store holds them online (only a sweep takes a user offline,
/// after a full timeout of silence), with half the timeout to spare for nodes' clocks.
struct WrittenWithin<'a> {
    /// [`Tracker::written`], locked.
    written: MutexGuard<'a, HashMap<i64, i64>>,
    /// Unix milliseconds.
    now: i64,
    /// Half the presence timeout, in milliseconds.
    fresh_within: i64,
}

impl WrittenWithin<'_> {
    fn contains(&self, user: &i64) -> bool {
        self.written
            .get(user)
            .is_some_and(|at| self.now - at < self.fresh_within)
    }
}

fn written_within(state: &AppState, now: i64) -> WrittenWithin<'_> {
    WrittenWithin {
        written: lock(&state.presence.written),
        now,
        fresh_within: state.config.presence_timeout.as_millis() as i64 / 2,
    }
}

/// Batches activity of `user` at `at` for the next flush.
fn note(state: &AppState, user: i64, at: i64) {
    let mut pending = lock(&state.presence.pending);
    let last = pending.entry(user).or_insert(at);
    *last = (*last).max(at);
}

/// Marks `user` present while the returned guard lives (a waiting long-poll).
pub fn hold(state: &AppState, user: i64) -> Hold {
    *lock(&state.presence.held).entry(user).or_default() += 1;
    Hold {
        state: state.clone(),
        user,
    }
}

/// See [`hold`]. Dropping it counts as activity too (the poll answered).
pub struct Hold {
    state: AppState,
    user: i64,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut held = lock(&self.state.presence.held);
        if let Some(n) = held.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.user);
            }
        }
        drop(held);
        note(&self.state, self.user, self.state.clock.now_ms());
    }
}

/// Writes activity and announces the users who came online.
async fn write(state: &AppState, activity: &[(i64, i64)]) -> Result<(), AppError> {
    if activity.is_empty() {
        return Ok(());
    }
    let came_online = state.backends.presence.touch(activity).await?;
    let mut last_of = HashMap::with_capacity_and_hasher(came_online.len(), Default::default());
    {
        let mut written = lock(&state.presence.written);
        for &(user, at) in activity {
            written.insert(user, at);
            last_of.insert(user, at);
        }
    }
    for user in came_online {
        let at = last_of.get(&user).copied().unwrap_or_default();
        announce(state, user, PresenceStatus::Online, at).await;
    }
    Ok(())
}

/// One round of the presence server: flushes batched activity, expires silent users and
/// announces them offline, refreshes the online gauge.
pub async fn tick(state: &AppState) -> Result<(), AppError> {
    let now = state.clock.now_ms();
    let mut activity: HashMap<i64, i64> = std::mem::take(&mut *lock(&state.presence.pending));
    // A waiting long-poll is activity right now.
    for user in lock(&state.presence.held).keys() {
        activity.insert(*user, now);
    }
    let activity: Vec<(i64, i64)> = activity.into_iter().collect();
    if let Err(e) = write(state, &activity).await {
        // Keep them for the next round.
        for (user, at) in activity {
            note(state, user, at);
        }
        return Err(e);
    }
    let timeout = state.config.presence_timeout.as_millis() as i64;
    lock(&state.presence.written).retain(|_, at| now - *at < timeout);
    for (user, last) in state.backends.presence.expire(now - timeout).await? {
        announce(state, user, PresenceStatus::Offline, last).await;
    }
    let online = state.backends.presence.online_count().await?;
    state
        .metrics
        .presence_online
        .store(online as i64, Ordering::Relaxed);
    Ok(())
}

/// Runs [`tick`] every [`TICK`] for the life of the node.
pub fn spawn(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = tick(&state).await {
                tracing::warn!(error = %e, "presence tick failed");
            }
        }
    });
}

/// Pushes a `presence` frame to the online part of the user's audience.
async fn announce(state: &AppState, user: i64, status: PresenceStatus, last_active_ms: i64) {
    let result = async {
        let audience = state.store.presence.audience(user, SMALL_CHANNEL).await?;
        let online = online_among(state, &audience).await?;
        if online.is_empty() {
            return Ok::<(), AppError>(());
        }
        let frame = app::protocol::ServerFrame::Presence {
            user_id: Id(user),
            status,
            last_active_at: Some(crate::storage::to_datetime(last_active_ms)),
        };
        crate::live::send(state, &online, &crate::live::Event::new(&frame)).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(user, error = %e, "presence announcement failed");
    }
}

/// Whether every one of `users` is online by this node's own writes, so that
/// [`online_among`] would return them all without asking the store.
pub fn all_known_online(state: &AppState, users: impl IntoIterator<Item = i64>) -> bool {
    let written = written_within(state, state.clock.now_ms());
    users.into_iter().all(|u| written.contains(&u))
}

/// The users among `users` who are online, in order. Those whose activity this node wrote
/// to the store less than half the timeout ago are online without asking (the store holds
/// them online: only a sweep after a full timeout of silence takes them off). They are
/// mostly the users connected here, and without this every chat message to them cost a
/// store call, a Redis round trip. The store is asked about the rest, in one call, if any.
/// (Should the store lose its data, a Redis restart say, such users still count as online
/// here for up to half the timeout: they get no notification meanwhile.)
pub async fn online_among(state: &AppState, users: &[i64]) -> Result<Vec<i64>, AppError> {
    let known: Vec<bool> = {
        let written = written_within(state, state.clock.now_ms());
        users.iter().map(|u| written.contains(u)).collect()
    };
    let ask: Vec<i64> = users
        .iter()
        .zip(&known)
        .filter(|(_, known)| !**known)
        .map(|(u, _)| *u)
        .collect();
    let mut answers = if ask.is_empty() {
        Vec::new()
    } else {
        state.backends.presence.status(&ask).await?
    }
    .into_iter();
    let mut online = Vec::with_capacity(users.len());
    for (&user, known) in users.iter().zip(known) {
        // `answers` follows `ask`: one per user not known here, in order.
        if known || answers.next().is_some_and(|(is_online, _)| is_online) {
            online.push(user);
        }
    }
    Ok(online)
}

/// The presence of each of `users` (id, username), in order.
pub async fn lookup(
    state: &AppState,
    users: &[(i64, String)],
) -> Result<Vec<UserPresence>, AppError> {
    let ids: Vec<i64> = users.iter().map(|(id, _)| *id).collect();
    let statuses = state.backends.presence.status(&ids).await?;
    Ok(users
        .iter()
        .zip(statuses)
        .map(|((id, username), (online, last))| UserPresence {
            user_id: Id(*id),
            username: username.clone(),
            status: if online {
                PresenceStatus::Online
            } else {
                PresenceStatus::Offline
            },
            last_active_at: last.map(crate::storage::to_datetime),
        })
        .collect())
}

/// Shared handle stored in [`AppState`].
pub type Shared = Arc<Tracker>;
