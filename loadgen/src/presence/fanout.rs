//! Step 4 of the presence scenario: subjects come online and go offline one after another
//! while everyone else heartbeats, and their friends' `presence` frames are timed.
//!
//! Online is timed from the moment the subject starts to connect (TCP, upgrade, session
//! lookup, then the server writes the activity through and announces it). Offline is timed
//! twice: from the subject's last heartbeat + the timeout, what a friend experiences; and
//! from the frame's own `last_active_at` + the timeout, which leaves out how late the
//! server recorded that heartbeat (coalesced activity is stamped at the next flush).

use super::window::Window;
use crate::{
    chat_seed::ChatUser,
    options::PresenceOptions,
    ws_client::{self, Conn, PresenceSeen, Recorder, Tally},
};
use std::{collections::HashMap, sync::Arc, time::Duration};

/// A subject connects this often.
pub const SUBJECT_GAP: Duration = Duration::from_millis(50);
/// How long after connecting a subject sends its last heartbeat and closes.
pub const SUBJECT_HOLD: Duration = Duration::from_secs(2);
/// Wait for offline frames this long past the last subject's expected expiry: the sweep
/// runs every second, and a heartbeat is flushed up to a second after it arrives.
pub const EXPIRY_SLACK: Duration = Duration::from_secs(4);

/// Frames the subjects' friends received, as latencies (ns).
#[derive(Debug, Default)]
pub struct Fanout {
    /// `online` frames expected (subjects × friends) and the same for `offline`.
    pub expected: usize,
    /// Subjects whose connection failed (no online or offline frame expected from them).
    pub failed_subjects: usize,
    /// Subject starts connecting → friend receives `online`.
    pub online: Vec<u64>,
    /// Subject starts connecting → its upgrade is answered.
    pub handshake: Vec<u64>,
    /// Friend receives `offline` − (subject's last heartbeat + timeout), by this tool's clock.
    pub offline_client: Vec<u64>,
    /// Friend receives `offline` − (`last_active_at` in the frame + timeout): the sweep's
    /// delay and the delivery, without the batching of the last heartbeat.
    pub offline_server: Vec<u64>,
    /// `presence` frames about anyone else while the subjects ran, or repeated.
    pub stray: usize,
    /// Resources over the whole latency phase (heartbeats go on meanwhile).
    pub window: Window,
}

/// Step 4. Subject i connects at i·`SUBJECT_GAP`, heartbeats and closes `SUBJECT_HOLD`
/// later; then the friends' frames are waited for and matched to the subjects. Returns
/// the latencies and everything the recorder saw meanwhile.
pub async fn run(
    opts: &PresenceOptions,
    ws_url: &str,
    recorder: &Arc<Recorder>,
    subjects: &[ChatUser],
) -> (Fanout, Tally) {
    // (when, subject, connect?) in time order.
    let mut timeline: Vec<(Duration, usize, bool)> = Vec::with_capacity(2 * subjects.len());
    for i in 0..subjects.len() {
        let at = SUBJECT_GAP * i as u32;
        timeline.push((at, i, true));
        timeline.push((at + SUBJECT_HOLD, i, false));
    }
    timeline.sort_by_key(|(at, i, connect)| (*at, !*connect, *i));

    // Per subject: connect started, upgrade answered, last heartbeat (recorder ns).
    let mut times: Vec<(u64, Option<u64>, Option<u64>)> = vec![(0, None, None); subjects.len()];
    let mut conns: Vec<Option<Conn>> = (0..subjects.len()).map(|_| None).collect();
    let mut failed_subjects = 0;
    let start = tokio::time::Instant::now();
    for (at, i, connect) in timeline {
        tokio::time::sleep_until(start + at).await;
        if connect {
            times[i].0 = recorder.now_ns();
            let token = std::slice::from_ref(&subjects[i].token);
            match ws_client::open_all(ws_url, token, recorder).await {
                Ok(mut opened) => {
                    times[i].1 = Some(recorder.now_ns());
                    conns[i] = opened.pop();
                }
                Err(e) => {
                    failed_subjects += 1;
                    recorder.error(format!("subject could not connect: {e}"));
                }
            }
        } else if let Some(conn) = conns[i].take() {
            // The close goes out after the heartbeat (one queue), and a close is not
            // activity: the heartbeat is the subject's last.
            if conn.heartbeat() {
                times[i].2 = Some(recorder.now_ns());
            }
            conn.close().await;
        }
    }
    let last_expiry = SUBJECT_HOLD + opts.timeout + EXPIRY_SLACK;
    tokio::time::sleep_until(start + SUBJECT_GAP * subjects.len() as u32 + last_expiry).await;
    let tally = recorder.take();
    // This tool's monotonic clock against the wall clock of `last_active_at`.
    let wall_ms_at_epoch = wall_ms() - recorder.now_ns() as f64 / 1e6;

    let index: HashMap<i64, usize> = subjects
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id, i))
        .collect();
    let timeout_ns = opts.timeout.as_nanos() as u64;
    let mut out = Fanout {
        expected: (subjects.len() - failed_subjects) * opts.friends,
        failed_subjects,
        ..Fanout::default()
    };
    let mut seen: HashMap<(i64, bool), usize> = HashMap::new();
    for (started, upgraded, _) in &times {
        if let Some(upgraded) = upgraded {
            out.handshake.push(upgraded.saturating_sub(*started));
        }
    }
    for frame in &tally.presence {
        let Some(&i) = index.get(&frame.user_id) else {
            out.stray += 1;
            continue;
        };
        let count = seen.entry((frame.user_id, frame.online)).or_default();
        *count += 1;
        if *count > opts.friends {
            out.stray += 1;
            continue;
        }
        let (started, _, last) = times[i];
        if frame.online {
            out.online.push(frame.at_ns.saturating_sub(started));
        } else {
            if let Some(last) = last {
                out.offline_client
                    .push(frame.at_ns.saturating_sub(last + timeout_ns));
            }
            if let Some(ns) = server_view(frame, wall_ms_at_epoch, timeout_ns) {
                out.offline_server.push(ns);
            }
        }
    }
    (out, tally)
}

/// Arrival − (`last_active_at` + timeout), ns; the frame's time is whole milliseconds.
fn server_view(frame: &PresenceSeen, wall_ms_at_epoch: f64, timeout_ns: u64) -> Option<u64> {
    let arrived_ms = wall_ms_at_epoch + frame.at_ns as f64 / 1e6;
    let due_ms = frame.last_active_ms? as f64 + timeout_ns as f64 / 1e6;
    Some(((arrived_ms - due_ms) * 1e6).max(0.0) as u64)
}

fn wall_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}
