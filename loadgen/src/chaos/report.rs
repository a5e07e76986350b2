//! The chaos run's figures as markdown: the checker's table per device kind, the feed,
//! the faults injected and what the clients went through, then every anomaly with its
//! timing next to the kills, so a finding can be traced to the node death that caused it.

use super::{
    checker::{Context, Counts, Finding, Verdict},
    devices::DeviceOutcome,
    population::Population,
    traffic::{Reads, Writes},
    Event, What,
};
use crate::{
    chat_report::counts,
    markdown::{server_log, thousands},
    server::LogSummary,
};
use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
};

/// Anomalies listed per category; the counts cover all of them.
const FINDINGS_SHOWN: usize = 20;

/// How the traffic was laid out, for the report's prose.
#[derive(Debug)]
pub struct Shape {
    dms: usize,
    groups: usize,
    senders: usize,
    chat_users: usize,
    authors: usize,
    followers: usize,
    /// Channel id → "dm" or "group", to name a finding's channel.
    kinds: HashMap<i64, &'static str>,
}

impl Shape {
    pub fn of(pop: &Population) -> Self {
        let dms = pop.channels.iter().filter(|c| c.kind == "dm").count();
        Self {
            dms,
            groups: pop.channels.len() - dms,
            senders: pop.channels.iter().map(|c| c.senders.len()).sum(),
            chat_users: pop.chat_users.len(),
            authors: pop.authors.len(),
            followers: pop.followers.len(),
            kinds: pop.channels.iter().map(|c| (c.id, c.kind)).collect(),
        }
    }
}

/// Everything the run saw.
#[derive(Debug)]
pub struct ChaosReport {
    pub population: Shape,
    pub verdict: Verdict,
    pub senders: Vec<Writes>,
    pub authors: Vec<Writes>,
    pub readers: Vec<Reads>,
    pub devices: Vec<DeviceOutcome>,
    /// Per follower, the acknowledged posts their feed still lacked at the end.
    pub feed_missing: Vec<(String, Vec<i64>)>,
    /// Posts acknowledged.
    pub posts: usize,
    pub events: Vec<Event>,
    pub log: LogSummary,
}

impl ChaosReport {
    /// Whether every acknowledged message and post arrived exactly once, in order.
    pub fn valid(&self) -> bool {
        self.verdict.total.valid() && self.missing_posts() == 0
    }

    fn missing_posts(&self) -> usize {
        self.feed_missing.iter().map(|(_, m)| m.len()).sum()
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) -> std::fmt::Result {
        let s = &self.population;
        writeln!(
            out,
            "Traffic through the balancer: {} senders in {} 1:1 and {} group channels ({} chat \
             users), one message at a time, each retried with its `client_msg_id` until \
             acknowledged; every chat user has a WebSocket device and a long-poll device. \
             {} feed authors post one at a time (retried with an `Idempotency-Key`); {} \
             followers read their feeds.\n",
            s.senders, s.dms, s.groups, s.chat_users, s.authors, s.followers
        )?;
        self.write_checker(out)?;
        self.write_feed(out)?;
        self.write_faults(out)?;
        self.write_clients(out)?;
        self.write_findings(out)?;
        writeln!(
            out,
            "\n**Verdict: {}.**",
            if self.valid() {
                "valid (nothing lost, duplicated, reordered or made up; every post in every feed)"
            } else {
                "INVALID"
            }
        )?;
        server_log(out, &self.log)
    }

    fn write_checker(&self, out: &mut String) -> std::fmt::Result {
        writeln!(
            out,
            "Deliveries (an acknowledged message is one expected delivery per member device):\n"
        )?;
        writeln!(out, "| devices | count | acknowledged | delivered | lost | duplicated | reordered | recovered | unexpected |")?;
        writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|")?;
        for (kind, c) in &self.verdict.by_kind {
            counts_row(out, kind.name(), c)?;
        }
        counts_row(out, "**total**", &self.verdict.total)?;
        let acked: usize = self.senders.iter().map(|w| w.acknowledged.len()).sum();
        let attempted: usize = self.senders.iter().map(|w| w.attempted.len()).sum();
        writeln!(
            out,
            "\nMessages: {} attempted, {} acknowledged. \"recovered\": delivered though its \
             send was never acknowledged (the client gave up, or the node died before \
             answering); not an error.\n",
            thousands(attempted),
            thousands(acked)
        )
    }

    fn write_feed(&self, out: &mut String) -> std::fmt::Result {
        let reads: u64 = self.readers.iter().map(|r| r.ok).sum();
        let mut read_errors = BTreeMap::new();
        for r in &self.readers {
            merge(&mut read_errors, &r.errors);
        }
        writeln!(
            out,
            "Feed: {} posts acknowledged; {} missing from a follower's feed (of {} expected: \
             each post in each follower's feed, checked after the traffic). {} feed reads \
             answered during the run; failed reads: {}.\n",
            thousands(self.posts),
            self.missing_posts(),
            thousands(self.posts * self.feed_missing.len()),
            thousands(reads),
            counts(&read_errors)
        )
    }

    fn write_faults(&self, out: &mut String) -> std::fmt::Result {
        let kills = self.count(|w| matches!(w, What::Killed));
        let restarts = self.count(|w| matches!(w, What::Restarted(_)));
        let died = self.count(|w| matches!(w, What::Died(_)));
        let mut ready: Vec<u64> = self
            .events
            .iter()
            .filter_map(|e| match e.what {
                What::Restarted(ms) => Some(ms),
                _ => None,
            })
            .collect();
        ready.sort_unstable();
        writeln!(
            out,
            "Faults: {kills} kills (SIGKILL), {restarts} restarts, {died} nodes that died by \
             themselves; a restarted node was ready in {} ms (median; max {} ms). Timeline \
             (s into the traffic): {}.\n",
            ready.get(ready.len() / 2).copied().unwrap_or_default(),
            ready.last().copied().unwrap_or_default(),
            self.timeline()
        )
    }

    fn count(&self, which: impl Fn(&What) -> bool) -> usize {
        self.events.iter().filter(|e| which(&e.what)).count()
    }

    fn timeline(&self) -> String {
        let items: Vec<String> = self
            .events
            .iter()
            .map(|e| {
                let what = match &e.what {
                    What::Killed => "killed".to_string(),
                    What::Restarted(_) => "up".to_string(),
                    What::Died(why) => format!("died ({why})"),
                };
                format!("{:.1} node {} {what}", e.at_ms as f64 / 1e3, e.node)
            })
            .collect();
        if items.is_empty() {
            "none".into()
        } else {
            items.join(", ")
        }
    }

    fn write_clients(&self, out: &mut String) -> std::fmt::Result {
        let sum = |ws: &[Writes], f: fn(&Writes) -> u64| ws.iter().map(f).sum::<u64>();
        let mut errors = BTreeMap::new();
        for w in self.senders.iter().chain(&self.authors) {
            merge(&mut errors, &w.errors);
        }
        let mut device_failures = BTreeMap::new();
        for d in &self.devices {
            merge(&mut device_failures, &d.failures);
        }
        let sockets: u64 = self
            .devices
            .iter()
            .filter(|d| d.log.kind == super::checker::Kind::WebSocket)
            .map(|d| d.connections)
            .sum();
        writeln!(
            out,
            "Clients: {} send retries and {} post retries (failed attempts: {}); failed beyond \
             retries: {} messages, {} posts. WebSocket devices opened {} sockets; device \
             failures (failed connects, drops, failed polls): {}.",
            thousands(sum(&self.senders, |w| w.retries)),
            thousands(sum(&self.authors, |w| w.retries)),
            counts(&errors),
            sum(&self.senders, |w| w.failed),
            sum(&self.authors, |w| w.failed),
            thousands(sockets),
            counts(&device_failures),
        )
    }

    fn write_findings(&self, out: &mut String) -> std::fmt::Result {
        let v = &self.verdict;
        for (name, findings) in [
            ("Lost", &v.lost),
            ("Duplicated", &v.duplicated),
            ("Reordered", &v.reordered),
            ("Unexpected", &v.unexpected),
        ] {
            if findings.is_empty() {
                continue;
            }
            writeln!(out, "\n{name} ({} in all):\n", findings.len())?;
            for f in findings.iter().take(FINDINGS_SHOWN) {
                writeln!(out, "* {}", self.describe(f))?;
            }
        }
        for (follower, missing) in self.feed_missing.iter().filter(|(_, m)| !m.is_empty()) {
            writeln!(
                out,
                "\n{follower}'s feed lacks {} posts: {:?}",
                missing.len(),
                &missing[..missing.len().min(FINDINGS_SHOWN)]
            )?;
        }
        Ok(())
    }

    /// "recv0 WebSocket: channel 12 seq 40 (id 7…), acknowledged at 17.2 s; last kill
    /// before: node 1 at 16.9 s; on connection 2, after seq 41".
    fn describe(&self, f: &Finding) -> String {
        let acked = f.acked_at_ms.map_or_else(
            || "never acknowledged".into(),
            |ms| format!("acknowledged at {:.1} s", ms as f64 / 1e3),
        );
        let last_kill = f.acked_at_ms.and_then(|ms| {
            self.events
                .iter()
                .rfind(|e| matches!(e.what, What::Killed) && e.at_ms <= ms)
        });
        let kill = last_kill.map_or_else(
            || "no kill before".into(),
            |e| {
                format!(
                    "last kill before: node {} at {:.1} s",
                    e.node,
                    e.at_ms as f64 / 1e3
                )
            },
        );
        let context = match f.context {
            Context::Delivered {
                connection,
                highest_before,
            } => format!("on connection {connection}, after seq {highest_before}"),
            Context::Lost { highest_seen } => format!("highest seq received there {highest_seen}"),
        };
        format!(
            "{}: {} channel {} seq {} (id {}), {acked}; {kill}; {context}",
            f.device,
            self.population.kinds.get(&f.channel).unwrap_or(&"unknown"),
            f.channel,
            f.seq,
            f.id
        )
    }
}

fn counts_row(out: &mut String, label: &str, c: &Counts) -> std::fmt::Result {
    writeln!(
        out,
        "| {label} | {} | {} | {} | {} | {} | {} | {} | {} |",
        c.devices,
        thousands(c.acknowledged),
        thousands(c.delivered),
        c.lost,
        c.duplicated,
        c.reordered,
        c.recovered,
        c.unexpected
    )
}

fn merge(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, n) in from {
        *into.entry(k.clone()).or_default() += n;
    }
}
