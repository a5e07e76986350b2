//! The figures of one backend's run, and their rendering as markdown (the same text goes to
//! the terminal and, by hand, into `docs/benchmarks.md`).

use crate::{
    load::{mean, percentile, Summary},
    markdown::{server_log, thousands, yes},
    options::{Backend, Engine},
    seed,
    server::LogSummary,
};
use std::{fmt::Write as _, time::Duration};

/// Feed reads must reach this share of the healthz throughput.
pub const FEED_SHARE_TARGET: f64 = 0.40;
/// Fanout of one post to 10,000 followers must be done within this (on Redis).
pub const BIG_FANOUT_TARGET: Duration = Duration::from_millis(40);
/// A celebrity's post may cost at most this multiple of a normal author's.
pub const CELEBRITY_RATIO_TARGET: f64 = 1.2;

/// One load run and the CPU spent on it.
#[derive(Debug)]
pub struct Phase {
    pub concurrency: usize,
    pub summary: Summary,
    /// CPU seconds of the server process (all threads) during the run.
    pub server_cpu: Option<f64>,
    pub client_cpu: Option<f64>,
    /// Context switches of the server's threads during the run.
    pub server_switches: Option<u64>,
}

impl Phase {
    /// Share of one core the server used.
    fn server_busy(&self) -> Option<f64> {
        Some(self.server_cpu? / self.summary.elapsed.as_secs_f64())
    }

    fn client_busy(&self) -> Option<f64> {
        Some(self.client_cpu? / self.summary.elapsed.as_secs_f64())
    }

    /// Server CPU per successful request: the cost that does not depend on how fast the
    /// client could send.
    fn server_us_per_request(&self) -> Option<f64> {
        let ok = self.summary.ok();
        (ok > 0).then_some(())?;
        Some(self.server_cpu? * 1e6 / ok as f64)
    }

    fn server_switches_per_request(&self) -> Option<f64> {
        let ok = self.summary.ok();
        (ok > 0).then_some(())?;
        Some(self.server_switches? as f64 / ok as f64)
    }
}

/// Posts timed from the request to the 201 (`ack`) and to an empty outbox (`done`).
#[derive(Debug, Default)]
pub struct PostCosts {
    pub ack: Vec<Duration>,
    pub done: Vec<Duration>,
}

impl PostCosts {
    pub fn push(&mut self, (ack, done): (Duration, Duration)) {
        self.ack.push(ack);
        self.done.push(done);
    }

    /// Sorts the samples for the percentiles.
    pub fn finish(mut self) -> Self {
        self.ack.sort_unstable();
        self.done.sort_unstable();
        self
    }
}

/// Feed pages parsed after warming, to show what the reads returned.
#[derive(Debug, Default)]
pub struct FeedSample {
    pub pages: usize,
    pub items: usize,
    /// Pages holding at least one celebrity post (pulled at read time).
    pub with_celebrity: usize,
}

/// Everything measured for one backend.
/// Whether the big author's last post reached the feed caches that exist.
#[derive(Debug)]
pub struct PushCheck {
    pub sampled: usize,
    /// Sampled followers who have a feed cache.
    pub built: usize,
    /// Of those, the caches holding the post.
    pub holding: usize,
}

#[derive(Debug)]
pub struct BackendReport {
    pub backend: Backend,
    /// The database engine the server stored in.
    pub database: Engine,
    pub users: usize,
    pub follows: usize,
    pub sessions: usize,
    pub seed_time: Duration,
    pub seed_posts: Phase,
    /// From the first seed post to an empty outbox.
    pub seed_drain: Duration,
    pub healthz: Phase,
    /// `GET /v1/me`: authentication alone, to split the feed's cost.
    pub me: Phase,
    pub feed: Phase,
    pub feed_sample: FeedSample,
    pub post: Phase,
    pub big: PostCosts,
    /// Redis only: (sampled followers whose feed cache holds the big author's last post,
    /// followers sampled). Proves the fanout pushed rather than silently pulled.
    pub push_check: Option<PushCheck>,
    pub celebrity: PostCosts,
    pub normal: PostCosts,
    pub normal_followers: usize,
    pub log: LogSummary,
}

impl BackendReport {
    pub fn feed_share(&self) -> f64 {
        ratio(self.feed.summary.rps(), self.healthz.summary.rps())
    }

    pub fn celebrity_ratio(&self) -> f64 {
        ratio(
            mean(&self.celebrity.done).as_secs_f64(),
            mean(&self.normal.done).as_secs_f64(),
        )
    }

    pub fn big_fanout_p50(&self) -> Duration {
        percentile(&self.big.done, 50.0)
    }

    /// The markdown section of this backend.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = self.write_markdown(&mut out);
        out
    }

    fn write_markdown(&self, out: &mut String) -> std::fmt::Result {
        writeln!(
            out,
            "### Backend: {}, database: {}\n",
            self.backend.name(),
            self.database.name()
        )?;
        writeln!(
            out,
            "Seeded {} users, {} follows and {} sessions in {:.1} s; then {} posts through \
             the API ({} at a time, {:.0} posts/s), fanout drained {:.1} s after the first.\n",
            thousands(self.users),
            thousands(self.follows),
            thousands(self.sessions),
            self.seed_time.as_secs_f64(),
            thousands(self.seed_posts.summary.ok()),
            self.seed_posts.concurrency,
            self.seed_posts.summary.rps(),
            self.seed_drain.as_secs_f64(),
        )?;

        writeln!(
            out,
            "| measurement | clients | requests | req/s | p50 ms | p99 ms | max ms | server CPU | server CPU µs/req | server context switches/req | loadgen CPU | failures |"
        )?;
        writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")?;
        for (label, phase) in [
            ("`GET /healthz`", &self.healthz),
            ("`GET /v1/me` (session lookup only; diagnostic)", &self.me),
            ("`GET /v1/me/feed?limit=20` (warm cache)", &self.feed),
            ("`POST /v1/me/feed` (normal authors)", &self.post),
        ] {
            let s = &phase.summary;
            writeln!(
                out,
                "| {label} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
                phase.concurrency,
                thousands(s.ok()),
                s.rps(),
                ms(s.percentile(50.0)),
                ms(s.percentile(99.0)),
                ms(s.percentile(100.0)),
                share(phase.server_busy()),
                phase
                    .server_us_per_request()
                    .map_or_else(|| "n/a".into(), |u| format!("{u:.0}")),
                phase
                    .server_switches_per_request()
                    .map_or_else(|| "n/a".into(), |n| format!("{n:.1}")),
                share(phase.client_busy()),
                s.failures_text(),
            )?;
        }
        let sample = &self.feed_sample;
        writeln!(
            out,
            "\nFeed pages checked after warming: {}, {:.1} posts per page on average, {} with a \
             celebrity post (pulled at read time) on that first page.\n",
            sample.pages,
            ratio(sample.items as f64, sample.pages as f64),
            sample.with_celebrity,
        )?;

        writeln!(
            out,
            "| post until fanout is done | posts | ack p50 ms | ack max ms | done p50 ms | done mean ms | done max ms |"
        )?;
        writeln!(out, "|---|--:|--:|--:|--:|--:|--:|")?;
        for (label, costs) in [
            (
                format!(
                    "big author, {} followers (push)",
                    thousands(seed::BIG_FOLLOWERS)
                ),
                &self.big,
            ),
            (
                format!(
                    "celebrity, {} followers (pull)",
                    thousands(seed::CELEBRITY_FOLLOWERS)
                ),
                &self.celebrity,
            ),
            (
                format!("normal author, {} followers (push)", self.normal_followers),
                &self.normal,
            ),
        ] {
            writeln!(
                out,
                "| {label} | {} | {} | {} | {} | {} | {} |",
                costs.done.len(),
                ms(percentile(&costs.ack, 50.0)),
                ms(percentile(&costs.ack, 100.0)),
                ms(percentile(&costs.done, 50.0)),
                ms(mean(&costs.done)),
                ms(percentile(&costs.done, 100.0)),
            )?;
        }

        if let Some(check) = &self.push_check {
            writeln!(
                out,
                "\nPush check: of {} sampled followers of the big author, {} have a feed cache \
                 in Redis (the others never read their feed: fanout skips them, their first \
                 read builds it from the database); the last post is in {} of those {}.",
                check.sampled, check.built, check.holding, check.built
            )?;
        }

        let share_met = self.feed_share() >= FEED_SHARE_TARGET;
        let big_p50 = self.big_fanout_p50();
        let big_max = percentile(&self.big.done, 100.0);
        let celeb = self.celebrity_ratio();
        writeln!(out, "\n| target | measured | met |")?;
        writeln!(out, "|---|---|---|")?;
        writeln!(
            out,
            "| feed req/s ≥ {:.0}% of healthz req/s | {:.1}% ({:.0} / {:.0}) | {} |",
            FEED_SHARE_TARGET * 100.0,
            self.feed_share() * 100.0,
            self.feed.summary.rps(),
            self.healthz.summary.rps(),
            yes(share_met),
        )?;
        let scope = if self.backend == Backend::Redis {
            ""
        } else {
            " (set for Redis; shown for comparison)"
        };
        writeln!(
            out,
            "| fanout to {} followers ≤ {} ms{scope} | p50 {} ms, max {} ms | {} |",
            thousands(seed::BIG_FOLLOWERS),
            BIG_FANOUT_TARGET.as_millis(),
            ms(big_p50),
            ms(big_max),
            match (big_p50 <= BIG_FANOUT_TARGET, big_max <= BIG_FANOUT_TARGET) {
                (true, true) => "yes",
                (true, false) => "p50 yes, max no",
                _ => "no",
            },
        )?;
        writeln!(
            out,
            "| celebrity post cost ≤ {CELEBRITY_RATIO_TARGET} × normal (mean ack + fanout) | {celeb:.2} ({} ms / {} ms; medians {} / {}) | {} |",
            ms(mean(&self.celebrity.done)),
            ms(mean(&self.normal.done)),
            ms(percentile(&self.celebrity.done, 50.0)),
            ms(percentile(&self.normal.done, 50.0)),
            yes(celeb <= CELEBRITY_RATIO_TARGET),
        )?;

        server_log(out, &self.log)
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn share(busy: Option<f64>) -> String {
    busy.map_or_else(|| "n/a".into(), |b| format!("{:.0}%", b * 100.0))
}
