//! The chat figures as markdown: one section per server (backend × runtime flavour), then a
//! side-by-side table of the flavours.

use crate::{
    chat::{ChatReport, SendRun, COMPLETE, GROUP_P99_TARGET, LONGPOLL_PAIRS, MEMORY_POINTS},
    chat_seed::{GROUP_SIZE, PAIRS},
    markdown::{server_log, thousands, yes},
};
use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

/// Memory per idle connection must stay within this.
pub const KIB_PER_CONNECTION_TARGET: f64 = 8.0;
/// 1:1 latency target, at the first (5,000 msg/s) rate.
pub const PAIR_P99_TARGET: Duration = Duration::from_millis(2);
/// Group deliveries per second wanted within `GROUP_P99_TARGET`.
pub const GROUP_DELIVERIES_TARGET: f64 = 100_000.0;

/// Nearest-rank percentile of sorted nanosecond samples (zero for none).
pub fn percentile_ns(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A run's latency percentiles (ms): deliveries and acks.
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
    ack_p50: f64,
    ack_p99: f64,
}

fn latency(run: &SendRun) -> Latency {
    let mut l = run.tally.latencies.clone();
    l.sort_unstable();
    let mut a = run.tally.acks.clone();
    a.sort_unstable();
    let ms = |ns: u64| ns as f64 / 1e6;
    Latency {
        p50: ms(percentile_ns(&l, 50.0)),
        p99: ms(percentile_ns(&l, 99.0)),
        max: ms(percentile_ns(&l, 100.0)),
        ack_p50: ms(percentile_ns(&a, 50.0)),
        ack_p99: ms(percentile_ns(&a, 99.0)),
    }
}

impl ChatReport {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = self.write_markdown(&mut out);
        out
    }

    fn write_markdown(&self, out: &mut String) -> std::fmt::Result {
        writeln!(
            out,
            "### Backend: {}, runtime: {}, database: {}\n",
            self.backend.name(),
            self.flavour.name(),
            self.database.name()
        )?;
        writeln!(
            out,
            "Seeded {} users with sessions, {} channels ({} 1:1, {} groups of {}) and {} \
             memberships in {:.1} s. Server open-file limit: {}.\n",
            thousands(self.users as u64),
            thousands(self.channels as u64),
            thousands(PAIRS as u64),
            self.group_count,
            GROUP_SIZE,
            thousands(self.memberships as u64),
            self.seed_time.as_secs_f64(),
            self.server_fd_limit.map_or_else(|| "n/a".into(), thousands),
        )?;

        // Memory.
        let m = &self.memory;
        writeln!(
            out,
            "| idle authenticated WebSockets | server RSS MiB | opened in s |"
        )?;
        writeln!(out, "|--:|--:|--:|")?;
        writeln!(out, "| 0 | {} | |", mib(m.rss_idle))?;
        for (i, point) in MEMORY_POINTS.iter().enumerate() {
            writeln!(
                out,
                "| {} | {} | {} |",
                thousands(*point as u64),
                mib(m.rss.get(i).copied().flatten()),
                m.open_secs
                    .get(i)
                    .map_or_else(|| "n/a".into(), |s| format!("{s:.1}")),
            )?;
        }
        let per = m.per_connection_kib();
        writeln!(
            out,
            "\nPer connection: (RSS@10k − RSS@5k) / 5,000 = **{} KiB** (target ≤ {} KiB: {}).\n",
            per.map_or_else(|| "n/a".into(), |k| format!("{k:.1}")),
            KIB_PER_CONNECTION_TARGET,
            yes(per.is_some_and(|k| k <= KIB_PER_CONNECTION_TARGET)),
        )?;

        writeln!(
            out,
            "1:1, {} pairs connected beside {} idle connections, sender alternating:\n",
            thousands(PAIRS as u64),
            thousands(MEMORY_POINTS[0] as u64)
        )?;
        run_table(out, &self.pairs, false)?;
        writeln!(
            out,
            "\nGroups: {} groups of {GROUP_SIZE}, every member connected, senders round-robin \
             over groups and members; a message is {} deliveries. \"within target\": p99 ≤ {} ms, \
             ≥ 99.9% delivered, no disconnect. Steps stop once the server is saturated \
             (deliveries while sending < 90% of the offered fanout, or p99 > 1 s):\n",
            self.group_count,
            GROUP_SIZE - 1,
            GROUP_P99_TARGET.as_millis()
        )?;
        run_table(out, &self.groups, true)?;

        if let Some((lp, ws)) = &self.longpoll {
            writeln!(
                out,
                "\nLong-poll vs WebSocket: {LONGPOLL_PAIRS} receivers; their peers `POST \
                 /v1/chat/channels/{{id}}/messages` at a fixed rate; receivers long-poll `GET \
                 /v1/chat/sync?since&timeout=25` in a loop, then (same POSTs) listen on a WebSocket. \
                 \"ack\" is the POST's 201.\n"
            )?;
            writeln!(out, "| receivers via | POSTs/s offered | POST p50 ms | POST p99 ms | server store p99 ms | delivered/s | delivered of sent | p50 ms | p99 ms | max ms | server CPU | server CPU µs/msg | loadgen CPU | errors |")?;
            writeln!(
                out,
                "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
            )?;
            for (label, run) in [("long-poll", lp), ("WebSocket", ws)] {
                let l = latency(run);
                writeln!(
                    out,
                    "| {label} | {} | {:.2} | {:.2} | {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} |",
                    run.rate,
                    l.ack_p50,
                    l.ack_p99,
                    store_p99(run),
                    run.delivered_per_sec(),
                    share(run.completeness()),
                    l.p50,
                    l.p99,
                    l.max,
                    busy(run.server_cpu, run.duration),
                    per_msg(run),
                    busy(run.client_cpu, run.duration),
                    counts(&run.tally.errors),
                )?;
            }
        }

        // Targets.
        writeln!(out, "\n| target | measured | met |")?;
        writeln!(out, "|---|---|---|")?;
        writeln!(
            out,
            "| ≤ {KIB_PER_CONNECTION_TARGET} KiB per idle WebSocket | {} KiB | {} |",
            per.map_or_else(|| "n/a".into(), |k| format!("{k:.1}")),
            yes(per.is_some_and(|k| k <= KIB_PER_CONNECTION_TARGET))
        )?;
        if let Some(first) = self.pairs.first() {
            let l = latency(first);
            let met =
                l.p99 <= PAIR_P99_TARGET.as_secs_f64() * 1e3 && first.completeness() >= COMPLETE;
            writeln!(
                out,
                "| 1:1 p99 ≤ {} ms at {} msg/s | p99 {:.2} ms, {:.0} delivered/s, {} delivered | {} |",
                PAIR_P99_TARGET.as_millis(),
                first.rate,
                l.p99,
                first.delivered_per_sec(),
                share(first.completeness()),
                yes(met),
            )?;
        }
        let best = self.best_group_step();
        writeln!(
            out,
            "| group deliveries ≥ {} /s with p99 ≤ {} ms ({} groups of {GROUP_SIZE}) | {} | {} |",
            thousands(GROUP_DELIVERIES_TARGET as u64),
            GROUP_P99_TARGET.as_millis(),
            self.group_count,
            best.map_or_else(
                || "no step within p99".to_string(),
                |r| format!(
                    "{:.0} deliveries/s at {} msg/s, p99 {:.2} ms",
                    r.delivered_per_sec(),
                    r.rate,
                    latency(r).p99
                )
            ),
            yes(best.is_some_and(|r| r.delivered_per_sec() >= GROUP_DELIVERIES_TARGET)),
        )?;

        if !self.idle_disconnects.disconnects.is_empty() {
            writeln!(
                out,
                "\nConnections closed by the server outside the send runs: {}.",
                counts(&self.idle_disconnects.disconnects)
            )?;
        }
        server_log(out, &self.log)
    }

    /// The highest-rate group step that met the criteria.
    pub fn best_group_step(&self) -> Option<&SendRun> {
        self.groups
            .iter()
            .filter(|r| r.within_target(GROUP_P99_TARGET))
            .max_by_key(|r| r.rate)
    }
}

fn run_table(out: &mut String, runs: &[SendRun], group: bool) -> std::fmt::Result {
    writeln!(out, "| msg/s offered | messages sent | delivered/s | delivered of expected | p50 ms | p99 ms | max ms | ack p50 ms | ack p99 ms | server store p99 ms | server CPU | server CPU µs/msg | loadgen CPU | drain s | errors, disconnects |{}", if group { " within target |" } else { "" })?;
    writeln!(
        out,
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|{}",
        if group { "---|" } else { "" }
    )?;
    for run in runs {
        let l = latency(run);
        let mut problems = run.tally.errors.clone();
        for (k, n) in &run.tally.disconnects {
            *problems.entry(format!("disconnect: {k}")).or_default() += n;
        }
        if run.not_queued > 0 {
            problems.insert("not queued by the client".into(), run.not_queued);
        }
        writeln!(
            out,
            "| {} | {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {:.1} | {} |{}",
            thousands(u64::from(run.rate)),
            thousands(run.dispatched),
            run.delivered_per_sec(),
            share(run.completeness()),
            l.p50,
            l.p99,
            l.max,
            l.ack_p50,
            l.ack_p99,
            store_p99(run),
            busy(run.server_cpu, run.duration),
            per_msg(run),
            busy(run.client_cpu, run.duration),
            run.drain.as_secs_f64(),
            counts(&problems),
            if group {
                format!(" {} |", yes(run.within_target(GROUP_P99_TARGET)))
            } else {
                String::new()
            },
        )?;
    }
    Ok(())
}

/// The side-by-side table of runtime flavours, per backend.
pub fn flavours_markdown(reports: &[ChatReport]) -> String {
    let mut out = String::new();
    let _ = write_flavours(&mut out, reports);
    out
}

fn write_flavours(out: &mut String, reports: &[ChatReport]) -> std::fmt::Result {
    writeln!(out, "### Runtime flavours side by side\n")?;
    writeln!(out, "| database | backend | runtime | KiB per idle WebSocket | 1:1 msg/s | 1:1 delivered/s | 1:1 p50 ms | 1:1 p99 ms | 1:1 max ms | best group step within p99 ≤ 50 ms | its deliveries/s | its p99 ms | server CPU there |")?;
    writeln!(out, "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")?;
    for r in reports {
        for pair in &r.pairs {
            let l = latency(pair);
            let best = r.best_group_step();
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} |",
                r.database.name(),
                r.backend.name(),
                r.flavour.name(),
                r.memory
                    .per_connection_kib()
                    .map_or_else(|| "n/a".into(), |k| format!("{k:.1}")),
                thousands(u64::from(pair.rate)),
                pair.delivered_per_sec(),
                l.p50,
                l.p99,
                l.max,
                best.map_or_else(|| "none".into(), |b| format!("{} msg/s", b.rate)),
                best.map_or_else(|| "–".into(), |b| format!("{:.0}", b.delivered_per_sec())),
                best.map_or_else(|| "–".into(), |b| format!("{:.2}", latency(b).p99)),
                best.map_or_else(|| "–".into(), |b| busy(b.server_cpu, b.duration)),
            )?;
        }
    }
    Ok(())
}

/// The server's p99 from the writer's queue to the commit, to its histogram's resolution:
/// "≤ 2.5" means within the bucket up to 2.5 ms.
fn store_p99(run: &SendRun) -> String {
    let ms = |seconds: f64| (seconds * 1e6).round() / 1e3;
    let Some(store) = &run.store else {
        return "n/a".into();
    };
    match store.bound_of(99.0) {
        Some(bound) if bound.is_finite() => format!("≤ {}", ms(bound)),
        Some(_) => store
            .largest_bound()
            .map_or_else(|| "n/a".into(), |b| format!("> {}", ms(b))),
        None => "n/a".into(),
    }
}

fn per_msg(run: &SendRun) -> String {
    match run.server_cpu {
        Some(cpu) if run.dispatched > 0 => format!("{:.0}", cpu * 1e6 / run.dispatched as f64),
        _ => "n/a".into(),
    }
}

fn busy(cpu: Option<f64>, over: Duration) -> String {
    cpu.map_or_else(
        || "n/a".into(),
        |c| format!("{:.0}%", c / over.as_secs_f64() * 100.0),
    )
}

fn share(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

pub fn counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "0".into();
    }
    map.iter()
        .map(|(k, n)| format!("{n} × {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanosecond_percentiles() {
        let ns: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile_ns(&ns, 50.0), 50);
        assert_eq!(percentile_ns(&ns, 99.0), 99);
        assert_eq!(percentile_ns(&[], 99.0), 0);
    }
}
