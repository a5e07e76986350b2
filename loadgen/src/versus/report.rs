//! The `versus` figures as markdown: a table per round, then the medians over the rounds
//! and each of Kith's figures as a ratio to the peer's, against its target.

use super::{Target, VersusRun, GROUPS, LONGPOLL_PAIRS, PAIRS, WS_PEER};
use crate::{
    chat::SendRun,
    chat_report::{counts, percentile_ns},
    markdown::{thousands, yes},
};
use std::fmt::Write as _;

/// One target's headline figures in one round.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    pub bytes_per_connection: Option<f64>,
    pub pair_p99_ms: Option<f64>,
    pub group_deliveries_per_sec: Option<f64>,
    pub longpoll_per_sec: Option<f64>,
}

impl Figures {
    pub fn of(run: &VersusRun) -> Self {
        Self {
            bytes_per_connection: run.bytes_per_connection(),
            pair_p99_ms: Some(latency_ms(&run.pair.tally.latencies, 99.0))
                .filter(|_| run.pair.completeness() >= crate::chat::COMPLETE),
            group_deliveries_per_sec: run.best_group_step().map(SendRun::delivered_per_sec),
            longpoll_per_sec: Some(run.longpoll.messages_per_sec()),
        }
    }
}

fn latency_ms(samples: &[u64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    percentile_ns(&sorted, p) as f64 / 1e6
}

fn cpu_share(seconds: Option<f64>, over: std::time::Duration) -> String {
    seconds.map_or_else(
        || "n/a".into(),
        |s| format!("{:.0}%", 100.0 * s / over.as_secs_f64()),
    )
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.digits$}"))
}

/// One round: every target's figures side by side (and Node's `ws` server's memory per
/// idle connection, when it was measured).
pub fn round_markdown(round: usize, runs: &[VersusRun], ws_bytes: Option<f64>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### Round {round}\n");
    if let Some(bytes) = ws_bytes {
        let _ = writeln!(out, "{WS_PEER}: {bytes:.0} bytes per idle connection.\n");
    }
    let _ = writeln!(
        out,
        "| target | bytes per idle connection | 1:1 p50 / p99 / max (ms), server CPU | best \
         group step within p99 50 ms: deliveries/s (msg/s, p99 ms, server CPU) | group \
         steps run | long-poll msg/s (p50 / p99 ms, lost, server CPU) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for run in runs {
        let pair = &run.pair;
        let best = run.best_group_step().map_or_else(
            || "none".to_string(),
            |g| {
                format!(
                    "{} ({} msg/s, {:.1} ms, {})",
                    thousands(g.delivered_per_sec().round() as u64),
                    g.rate,
                    latency_ms(&g.tally.latencies, 99.0),
                    cpu_share(g.server_cpu, g.duration)
                )
            },
        );
        let steps: Vec<String> = run
            .groups
            .iter()
            .map(|g| format!("{}: {:.0} ms", g.rate, latency_ms(&g.tally.latencies, 99.0)))
            .collect();
        let lp = &run.longpoll;
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} / {:.2} / {:.1}, {} | {best} | {} | {} ({:.1} / {:.1}, {}, {}) |",
            run.target.name(),
            opt(run.bytes_per_connection(), 0),
            latency_ms(&pair.tally.latencies, 50.0),
            latency_ms(&pair.tally.latencies, 99.0),
            latency_ms(&pair.tally.latencies, 100.0),
            cpu_share(pair.server_cpu, pair.duration),
            steps.join(", "),
            thousands(lp.messages_per_sec().round() as u64),
            latency_ms(&lp.tally.latencies, 50.0),
            latency_ms(&lp.tally.latencies, 99.0),
            lp.lost,
            cpu_share(lp.server_cpu, lp.duration),
        );
    }
    let troubles: Vec<String> = runs
        .iter()
        .flat_map(|run| {
            let sends = std::iter::once(&run.pair).chain(&run.groups);
            let mut notes: Vec<String> = sends
                .filter(|r| {
                    !r.tally.errors.is_empty()
                        || !r.tally.disconnects.is_empty()
                        || r.not_queued > 0
                })
                .map(|r| {
                    format!(
                        "{} at {} msg/s: errors {}, disconnects {}, not queued {}",
                        run.target.name(),
                        r.rate,
                        counts(&r.tally.errors),
                        counts(&r.tally.disconnects),
                        r.not_queued
                    )
                })
                .collect();
            if !run.longpoll.tally.errors.is_empty() {
                notes.push(format!(
                    "{} long-poll: errors {}",
                    run.target.name(),
                    counts(&run.longpoll.tally.errors)
                ));
            }
            if run.pair.completeness() < crate::chat::COMPLETE {
                notes.push(format!(
                    "{} 1:1: {:.2}% delivered",
                    run.target.name(),
                    100.0 * run.pair.completeness()
                ));
            }
            notes
        })
        .collect();
    if !troubles.is_empty() {
        let _ = writeln!(out, "\nTrouble: {}.", troubles.join("; "));
    }
    out
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

/// The median of one figure of `target` over the rounds.
fn median_of(
    rounds: &[Vec<VersusRun>],
    target: Target,
    figure: impl Fn(&Figures) -> Option<f64>,
) -> Option<f64> {
    median(
        rounds
            .iter()
            .flatten()
            .filter(|r| r.target == target)
            .filter_map(|r| figure(&Figures::of(r)))
            .collect(),
    )
}

/// Medians over the rounds and Kith's ratios to the peer (and, when it was measured, Kith's
/// memory per idle connection against Node's `ws` server's, `ws_bytes` per round).
pub fn summary_markdown(
    rounds: &[Vec<VersusRun>],
    kith: &[Target],
    ws_bytes: &[Option<f64>],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Medians over {} round(s), and ratios to socketioxide\n",
        rounds.len()
    );
    let _ = writeln!(
        out,
        "Scenarios: memory at 5,000 → 10,000 idle connections; 1:1 with {} pairs ({} \
         connections heartbeating every 10 s); {GROUPS} rooms of 100, senders rotating over \
         all members; long-poll with {LONGPOLL_PAIRS} pairs in a closed loop.\n",
        thousands(PAIRS),
        thousands(2 * PAIRS),
    );
    type Pick = fn(&Figures) -> Option<f64>;
    // (figure, its unit, how Kith's ratio must compare to 1.0: true = at most)
    let figures: [(&str, Pick, bool, usize); 4] = [
        (
            "bytes per idle connection",
            |f| f.bytes_per_connection,
            true,
            0,
        ),
        ("1:1 p99 (ms)", |f| f.pair_p99_ms, true, 2),
        (
            "group deliveries/s within p99 50 ms",
            |f| f.group_deliveries_per_sec,
            false,
            0,
        ),
        ("long-poll msg/s", |f| f.longpoll_per_sec, false, 0),
    ];
    let _ = write!(out, "| figure | socketioxide |");
    for t in kith {
        let _ = write!(out, " {} | ratio | target | met |", t.name());
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "|---|---|{}", "---|---|---|---|".repeat(kith.len()));
    // Kith's figure and its ratio to `theirs`, against the target, for each Kith target.
    let cells = |pick: Pick, theirs: Option<f64>, at_most: bool, digits: usize| {
        let mut row = String::new();
        for t in kith {
            let ours = median_of(rounds, *t, pick);
            let ratio = ours.zip(theirs).map(|(a, b)| a / b);
            let met = ratio.map(|r| if at_most { r <= 1.0 } else { r >= 1.0 });
            let _ = write!(
                row,
                " {} | {} | {} 1.0× | {} |",
                opt(ours, digits),
                ratio.map_or_else(|| "n/a".into(), |r| format!("{r:.2}×")),
                if at_most { "≤" } else { "≥" },
                met.map_or("n/a", yes),
            );
        }
        row
    };
    for (name, pick, at_most, digits) in figures {
        let peer = median_of(rounds, Target::SocketIo, pick);
        let _ = writeln!(
            out,
            "| {name} | {} |{}",
            opt(peer, digits),
            cells(pick, peer, at_most, digits)
        );
    }
    if let Some(ws) = median(ws_bytes.iter().flatten().copied().collect()) {
        let _ = writeln!(
            out,
            "| bytes per idle connection, against {WS_PEER} (its figure in the peer's column) | \
             {ws:.0} |{}",
            cells(|f| f.bytes_per_connection, Some(ws), true, 0)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
    }
}
