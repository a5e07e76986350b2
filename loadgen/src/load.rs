//! A closed-loop load runner: N tasks, each sending its next request as soon as the last
//! one answered, for a fixed time or a fixed number of requests. Latencies are kept in
//! full and sorted once (a 10 s run is at most a few hundred thousand samples, so a
//! histogram would only save memory nobody is short of).

use rand::{rngs::StdRng, SeedableRng as _};
use reqwest::{Client, RequestBuilder};
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::task::JoinSet;

/// When a run ends.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// Tasks start no new request after this long.
    After(Duration),
    /// Exactly this many requests in all (sequence numbers `0..n`).
    Count(u64),
}

/// Result of one run.
#[derive(Debug, Default)]
pub struct Summary {
    /// Latencies of the successful (2xx) requests, sorted.
    pub latencies: Vec<Duration>,
    /// Everything else, by kind ("HTTP 503", "timeout", …).
    pub failures: BTreeMap<String, u64>,
    /// From the first request to the last answer.
    pub elapsed: Duration,
}

impl Summary {
    pub fn ok(&self) -> usize {
        self.latencies.len()
    }

    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Successful requests per second.
    pub fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok() as f64 / secs
        } else {
            0.0
        }
    }

    pub fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    pub fn failures_text(&self) -> String {
        if self.failures.is_empty() {
            return "0".into();
        }
        let parts: Vec<String> = self
            .failures
            .iter()
            .map(|(k, n)| format!("{n} × {k}"))
            .collect();
        parts.join(", ")
    }
}

/// Nearest-rank percentile of sorted samples (zero for none).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn mean(samples: &[Duration]) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.iter().sum::<Duration>() / samples.len() as u32
}

/// Runs `concurrency` tasks until `stop`; `make` builds request number `seq` (a task's own
/// random generator lets it pick users without sharing a lock).
pub async fn run<F>(client: &Client, concurrency: usize, stop: Stop, make: F) -> Summary
where
    F: Fn(&Client, &mut StdRng, u64) -> RequestBuilder + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency {
        let (client, make, next) = (client.clone(), make.clone(), next.clone());
        tasks.spawn(async move {
            let mut rng = StdRng::from_entropy();
            let mut part = Summary::default();
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                let more = match stop {
                    Stop::After(d) => start.elapsed() < d,
                    Stop::Count(n) => seq < n,
                };
                if !more {
                    break;
                }
                let request = make(&client, &mut rng, seq);
                let sent = Instant::now();
                match send(request).await {
                    Ok(()) => part.latencies.push(sent.elapsed()),
                    Err(kind) => *part.failures.entry(kind).or_default() += 1,
                }
            }
            part
        });
    }
    let mut all = Summary::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(part) => {
                all.latencies.extend(part.latencies);
                for (k, n) in part.failures {
                    *all.failures.entry(k).or_default() += n;
                }
            }
            Err(e) => *all.failures.entry(format!("task: {e}")).or_default() += 1,
        }
    }
    all.elapsed = start.elapsed();
    all.latencies.sort_unstable();
    all
}

/// Sends a request and reads the whole body (a latency that stops at the headers would
/// flatter large responses, and an unread body would cost the connection).
async fn send(request: RequestBuilder) -> Result<(), String> {
    let response = request.send().await.map_err(|e| kind(&e))?;
    let status = response.status();
    response.bytes().await.map_err(|e| kind(&e))?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", status.as_u16()))
    }
}

fn kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect error".into()
    } else if e.is_body() || e.is_decode() {
        "body error".into()
    } else {
        "request error".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&ms, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&ms, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&ms, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&ms[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
        assert_eq!(mean(&ms[..3]), Duration::from_millis(2));
    }
}
