//! The presence figures as markdown: one section per server (backend × runtime flavour),
//! then a summary table of all of them.

use crate::{
    chat_report::{counts, percentile_ns},
    markdown::{server_log, thousands},
    presence::{
        fanout::{SUBJECT_GAP, SUBJECT_HOLD},
        heartbeats::LATE,
        window::{Window, QUIET_CORE, TRIES},
        Run,
    },
    server::LogSummary,
};
use std::fmt::Write as _;

/// Server CPU allowed for presence with 10,000 users heartbeating every 5 s.
pub const CPU_TARGET: f64 = 0.05;

/// One server's figures and what it logged.
#[derive(Debug)]
pub struct PresenceReport {
    pub run: Run,
    pub log: LogSummary,
}

/// p50, p99 and max of nanosecond samples, in ms.
fn spread(samples: &[u64]) -> (f64, f64, f64) {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let ms = |p| percentile_ns(&sorted, p) as f64 / 1e6;
    (ms(50.0), ms(99.0), ms(100.0))
}

impl Run {
    /// Server CPU that heartbeats add to holding the sockets open, as a share of one core.
    pub fn heartbeat_share(&self) -> Option<f64> {
        Some(self.busy.server_share()? - self.idle.server_share()?)
    }

    /// Server CPU per heartbeat (µs), beyond the idle sockets' own.
    pub fn heartbeat_us(&self) -> Option<f64> {
        let share = self.heartbeat_share()?;
        let per_sec = self.busy.heartbeats as f64 / self.busy.wall.as_secs_f64();
        (per_sec > 0.0).then(|| share / per_sec * 1e6)
    }
}

impl PresenceReport {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = self.write_markdown(&mut out);
        out
    }

    fn write_markdown(&self, out: &mut String) -> std::fmt::Result {
        let r = &self.run;
        writeln!(
            out,
            "### Backend: {}, runtime: {}, database: {}\n",
            r.backend.name(),
            r.flavour.name(),
            r.database.name()
        )?;
        writeln!(
            out,
            "Seeded {} users with sessions in {:.1} s; {} friendships ({} subjects × {} friends) \
             through the API, {} `PUT /v1/me/following` in {:.1} s. Server open-file limit: {}. \
             Opening {} WebSockets took {:.1} s and {} of server CPU{}.\n",
            thousands((r.users + r.subjects) as u64),
            r.seed_time.as_secs_f64(),
            thousands((r.subjects * r.friends) as u64),
            r.subjects,
            r.friends,
            thousands(r.follows as u64),
            r.follow_time.as_secs_f64(),
            r.server_fd_limit.map_or_else(|| "n/a".into(), thousands),
            thousands(r.users as u64),
            r.connect.wall.as_secs_f64(),
            secs(r.connect.server_cpu),
            r.connect.server_cpu.map_or_else(String::new, |c| format!(
                " ({:.0} µs per connection, each written through and announced)",
                c * 1e6 / r.users as f64
            )),
        )?;

        writeln!(
            out,
            "| window | wall s | server CPU (share of one core) | server CPU s | server context switches/s | heartbeats/s | heartbeats > {} ms late | online (min – max) | loadgen CPU | Redis CPU (whole instance) | other processes on the server's core |",
            LATE.as_secs_f64() * 1e3
        )?;
        writeln!(out, "|---|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|")?;
        let rows = [
            (
                format!(
                    "{} users heartbeating every {} s",
                    thousands(r.users as u64),
                    r.heartbeat.as_secs()
                ),
                &r.busy,
            ),
            (
                "latency phase (subjects come and go, heartbeats go on)".to_string(),
                &r.fanout.window,
            ),
            ("same sockets, no heartbeats (idle)".to_string(), &r.idle),
            (
                "heartbeats stopped → nobody online (mass expiry)".to_string(),
                &r.expiry,
            ),
        ];
        for (label, w) in rows {
            window_row(out, &label, w)?;
        }
        if r.busy.attempt > 1 || r.idle.attempt > 1 {
            writeln!(
                out,
                "\n\"attempt n\": the earlier attempts were disturbed (other processes took more \
                 than {:.0}% of the server's core, or as many heartbeats went out late), so the \
                 window was measured again (at most {} times); the least disturbed is shown.",
                QUIET_CORE * 100.0,
                TRIES
            )?;
        }

        let share = r.heartbeat_share();
        writeln!(
            out,
            "\nPresence's own cost (heartbeat window − idle window): **{}** of a core, {} µs of \
             server CPU per heartbeat.{}\n",
            pct(share),
            r.heartbeat_us()
                .map_or_else(|| "n/a".into(), |us| format!("{us:.1}")),
            match (r.busy.redis_cpu, r.idle.redis_cpu) {
                (Some(b), Some(i)) => format!(
                    " Redis: {} busy, {} idle.",
                    pct(Some(b / r.busy.wall.as_secs_f64())),
                    pct(Some(i / r.idle.wall.as_secs_f64()))
                ),
                _ => String::new(),
            }
        )?;

        if let (Some(cpu), Some(idle)) = (r.expiry.server_cpu, r.idle.server_share()) {
            let burst = cpu - idle * r.expiry.wall.as_secs_f64();
            writeln!(
                out,
                "Mass expiry: everyone went offline within {:.1} s of the last heartbeat; beyond \
                 the idle rate that took {burst:.2} s of server CPU, {:.0} µs per user (each is \
                 announced: an audience query, then a status lookup if anyone is listening).\n",
                r.expiry.wall.as_secs_f64(),
                burst * 1e6 / r.users as f64,
            )?;
        }

        let f = &r.fanout;
        writeln!(
            out,
            "Fanout: every {} ms a subject connects, heartbeats once {} s later and closes; each \
             has {} friends, all connected and heartbeating. Offline is due {} s (the timeout) \
             after the last heartbeat.\n",
            SUBJECT_GAP.as_millis(),
            SUBJECT_HOLD.as_secs(),
            r.friends,
            r.timeout.as_secs()
        )?;
        writeln!(
            out,
            "| presence frame at the friends | frames expected | received | p50 ms | p99 ms | max ms |"
        )?;
        writeln!(out, "|---|--:|--:|--:|--:|--:|")?;
        let latency_rows: [(&str, &[u64], bool); 4] = [
            (
                "`online`, from the subject starting to connect",
                &f.online,
                true,
            ),
            (
                "(the subject's connect and upgrade alone)",
                &f.handshake,
                false,
            ),
            (
                "`offline`, from last heartbeat + timeout",
                &f.offline_client,
                true,
            ),
            (
                "`offline`, from the frame's `last_active_at` + timeout",
                &f.offline_server,
                true,
            ),
        ];
        for (label, samples, frames) in latency_rows {
            let (p50, p99, max) = spread(samples);
            writeln!(
                out,
                "| {label} | {} | {} | {p50:.2} | {p99:.2} | {max:.2} |",
                if frames {
                    thousands(f.expected as u64)
                } else {
                    "".into()
                },
                thousands(samples.len() as u64),
            )?;
        }

        writeln!(out, "\n| target | measured | met |")?;
        writeln!(out, "|---|---|---|")?;
        let total = r.busy.server_share();
        writeln!(
            out,
            "| presence for {} users heartbeating every {} s ≤ {:.0}% of a core | {} in all with the sockets open; {} for the heartbeats alone | {} |",
            thousands(r.users as u64),
            r.heartbeat.as_secs(),
            CPU_TARGET * 100.0,
            pct(total),
            pct(share),
            verdict(total, share),
        )?;

        let mut notes = Vec::new();
        if f.failed_subjects > 0 {
            notes.push(format!("{} subjects could not connect", f.failed_subjects));
        }
        if f.stray > 0 || r.stray_frames > 0 {
            notes.push(format!(
                "{} unexpected `presence` frames (about non-subjects, repeated, or outside the \
                 latency phase)",
                f.stray + r.stray_frames
            ));
        }
        let refused = r.busy.not_queued;
        if refused > 0 {
            notes.push(format!("{refused} heartbeats not queued by the client"));
        }
        if !r.problems.is_empty() {
            notes.push(format!("errors and disconnects: {}", counts(&r.problems)));
        }
        if notes.is_empty() {
            writeln!(
                out,
                "\nNo error frame, no disconnect, no unexpected `presence` frame."
            )?;
        } else {
            writeln!(out, "\n{}.", notes.join("; "))?;
        }
        server_log(out, &self.log)
    }
}

fn window_row(out: &mut String, label: &str, w: &Window) -> std::fmt::Result {
    let wall = w.wall.as_secs_f64();
    let attempt = if w.attempt > 1 {
        format!(" (attempt {})", w.attempt)
    } else {
        String::new()
    };
    writeln!(
        out,
        "| {label}{attempt} | {wall:.1} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
        pct(w.server_share()),
        secs(w.server_cpu),
        w.server_switches
            .map_or_else(|| "n/a".into(), |s| format!("{:.0}", s as f64 / wall)),
        w.heartbeats as f64 / wall,
        if w.heartbeats > 0 {
            format!("{:.1}%", w.late as f64 * 100.0 / w.heartbeats as f64)
        } else {
            "–".into()
        },
        w.online.map_or_else(
            || "–".into(),
            |(lo, hi)| format!("{} – {}", thousands(lo as u64), thousands(hi as u64))
        ),
        pct(w.client_cpu.map(|c| c / wall)),
        pct(w.redis_cpu.map(|c| c / wall)),
        pct(w.core_others.map(|c| c / wall)),
    )
}

/// The target is met outright when everything the server did while users heartbeated fits;
/// if only the heartbeats' own share fits, the table says so.
fn verdict(total: Option<f64>, own: Option<f64>) -> &'static str {
    match (total, own) {
        (Some(t), _) if t <= CPU_TARGET => "yes",
        (_, Some(o)) if o <= CPU_TARGET => "heartbeats alone: yes; with the idle sockets: no",
        (Some(_), _) => "no",
        _ => "n/a",
    }
}

fn pct(share: Option<f64>) -> String {
    share.map_or_else(|| "n/a".into(), |s| format!("{:.2}%", s * 100.0))
}

fn secs(cpu: Option<f64>) -> String {
    cpu.map_or_else(|| "n/a".into(), |c| format!("{c:.2} s"))
}

/// All servers side by side.
pub fn summary_markdown(reports: &[PresenceReport]) -> String {
    let mut out = String::new();
    let _ = write_summary(&mut out, reports);
    out
}

fn write_summary(out: &mut String, reports: &[PresenceReport]) -> std::fmt::Result {
    writeln!(out, "### Side by side\n")?;
    writeln!(
        out,
        "| database | backend | runtime | server CPU, heartbeating | idle | heartbeats alone | µs/heartbeat | online p50 / p99 ms | offline p50 / p99 ms (from last heartbeat + timeout) | offline p50 / p99 ms (from `last_active_at` + timeout) | ≤ {:.0}% of a core |",
        CPU_TARGET * 100.0
    )?;
    writeln!(out, "|---|---|---|--:|--:|--:|--:|--:|--:|--:|---|")?;
    for report in reports {
        let r = &report.run;
        let pair = |samples: &[u64]| {
            let (p50, p99, _) = spread(samples);
            format!("{p50:.1} / {p99:.1}")
        };
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.database.name(),
            r.backend.name(),
            r.flavour.name(),
            pct(r.busy.server_share()),
            pct(r.idle.server_share()),
            pct(r.heartbeat_share()),
            r.heartbeat_us()
                .map_or_else(|| "n/a".into(), |us| format!("{us:.1}")),
            pair(&r.fanout.online),
            pair(&r.fanout.offline_client),
            pair(&r.fanout.offline_server),
            verdict(r.busy.server_share(), r.heartbeat_share()),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_judged_on_the_total_first() {
        assert_eq!(verdict(Some(0.04), Some(0.03)), "yes");
        assert!(verdict(Some(0.07), Some(0.03)).starts_with("heartbeats alone: yes"));
        assert_eq!(verdict(Some(0.09), Some(0.06)), "no");
        assert_eq!(verdict(None, None), "n/a");
        assert_eq!(spread(&[1_000_000, 3_000_000]), (1.0, 3.0, 3.0));
    }
}
