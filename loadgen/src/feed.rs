//! The news-feed scenario, run once per backend: start a server, seed it, measure, stop it.
//!
//! Order matters: the healthz baseline and the feed reads run on a quiet server (fanout
//! drained), and every fanout timing starts from an empty outbox, so one measurement's
//! background work never lands in another's figures.

use crate::{
    cpu::{self, CpuClock},
    db::Db,
    error::Error,
    load::{self, Stop, Summary},
    options::{Backend, FeedOptions},
    posting::{drained, post_until_drained, publish, Stage},
    redis_ns,
    report::{BackendReport, FeedSample, Phase, PostCosts, PushCheck},
    seed::{self, Account, Population},
    server::{ServerProcess, UnderTest},
};
use rand::{rngs::StdRng, seq::SliceRandom as _, Rng as _};
use reqwest::{Client, RequestBuilder};
use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

/// Posts each normal author publishes through the API before the measurements.
const SEED_POSTS_PER_AUTHOR: usize = 20;
/// Posts the celebrity and the big author publish up front, so feeds hold both kinds.
const SEED_POSTS_PER_STAR: usize = 5;
/// Concurrency of everything that writes posts (seeding and the post-latency run).
const WRITERS: usize = 8;
/// Posts in the post-latency measurement.
const LATENCY_POSTS: u64 = 500;
/// Sequential posts by the big author, timed until their fanout is done.
const BIG_POSTS: usize = 10;
/// Posts each by the celebrity and the reference normal author. The ratio compares means,
/// and a post that meets a stall of the shared machine (~20 ms against ~1.5 ms) moved a
/// mean of 20 by a whole millisecond: 60 keep one such post within the noise.
const COMPARE_POSTS: usize = 60;
/// Followers of the normal author the celebrity is compared with.
const REFERENCE_FOLLOWERS: usize = 100;
/// Unmeasured load before each throughput run: opens the connections, warms the caches.
const WARMUP: Duration = Duration::from_secs(1);
/// Feed pages parsed to check that the feed has content (and celebrity posts merged in).
const SAMPLE_PAGES: usize = 50;
/// Every this-many-th follower of the big author is checked for the pushed post (Redis).
const PUSH_CHECK_STEP: usize = 50;

/// What every backend's run shares.
pub struct Setup {
    pub opts: FeedOptions,
    pub server_bin: PathBuf,
    /// Core for the server, or `None` (unpinned, or taskset missing).
    pub server_cpu: Option<usize>,
    pub clock: CpuClock,
}

/// One backend, start to finish. The server is killed and the Redis namespace deleted
/// whether or not the measurements succeeded.
pub async fn run(setup: &Setup, backend: Backend) -> Result<BackendReport, Error> {
    let threshold = seed::CELEBRITY_THRESHOLD.to_string();
    let env = [
        // Rate limiting would turn the post measurements into 429s.
        ("KITH_POST_RATE_PER_MIN", "1000000"),
        ("KITH_CELEBRITY_THRESHOLD", threshold.as_str()),
        ("KITH_RUNTIME", "current_thread"),
    ];
    let mut run = UnderTest::start(
        &setup.server_bin,
        setup.server_cpu,
        backend,
        &setup.opts.redis_url,
        &setup.opts.database,
        &env,
        None,
    )
    .await?;
    let namespace = run.namespace().map(str::to_string);
    let outcome = measure(
        setup,
        backend,
        &mut run.server,
        &run.db_url,
        namespace.as_deref(),
    )
    .await;
    let log = run.finish(backend.name()).await;
    outcome.map(|mut report| {
        report.log = log;
        report
    })
}

async fn measure(
    setup: &Setup,
    backend: Backend,
    server: &mut ServerProcess,
    db_url: &str,
    redis_namespace: Option<&str>,
) -> Result<BackendReport, Error> {
    let tag = backend.name();
    let http = Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    server.wait_ready(&http, Duration::from_secs(60)).await?;
    let base = server.base_url.clone();
    let writer = Db::writer(db_url).await?;
    // Read-only, for outbox polling.
    let probe = Db::probe(db_url).await?;

    eprintln!("[{tag}] seeding users, sessions and follows");
    let started = Instant::now();
    let pop = seed::write(&writer, now_ms()).await?;
    writer.settle().await?;
    let seed_time = started.elapsed();
    writer.close().await;

    eprintln!("[{tag}] publishing seed posts through the API");
    let started = Instant::now();
    let seed_posts = publish_seed_posts(&http, &base, &pop).await?;
    drained(&probe, Stage::All).await?;
    let seed_drain = started.elapsed();
    server.check_alive()?;

    let d = setup.opts.duration;
    let n = setup.opts.concurrency;
    eprintln!("[{tag}] GET /healthz for {d:?}");
    let url = format!("{base}/healthz");
    let healthz_req = move |c: &Client, _: &mut StdRng, _: u64| c.get(&url);
    load::run(&http, n, Stop::After(WARMUP), healthz_req.clone()).await;
    let healthz = measured(setup, server, &http, n, Stop::After(d), healthz_req).await;
    server.check_alive()?;

    eprintln!("[{tag}] warming {} feeds", pop.readers.len());
    let reader_tokens: Arc<Vec<String>> =
        Arc::new(pop.readers.iter().map(|r| r.token.clone()).collect());
    let feed_url = format!("{base}/v1/me/feed?limit=20");
    let (tokens, url) = (reader_tokens.clone(), feed_url.clone());
    let warm = load::run(
        &http,
        WRITERS,
        Stop::Count(reader_tokens.len() as u64),
        move |c, _, seq| c.get(&url).bearer_auth(&tokens[seq as usize]),
    )
    .await;
    expect_no_failures("warming the feeds", &warm)?;
    let feed_sample = sample_feeds(&http, &feed_url, &pop).await?;

    // Diagnostic: the session lookup every authenticated request pays (one database query),
    // to split the feed's cost into authentication and the feed itself.
    eprintln!("[{tag}] GET /v1/me for {d:?}");
    let (tokens, url) = (reader_tokens.clone(), format!("{base}/v1/me"));
    let me_req = move |c: &Client, rng: &mut StdRng, _: u64| {
        c.get(&url)
            .bearer_auth(&tokens[rng.gen_range(0..tokens.len())])
    };
    load::run(&http, n, Stop::After(WARMUP), me_req.clone()).await;
    let me = measured(setup, server, &http, n, Stop::After(d), me_req).await;
    server.check_alive()?;

    eprintln!("[{tag}] GET /v1/me/feed for {d:?}");
    let (tokens, url) = (reader_tokens.clone(), feed_url.clone());
    let feed_req = move |c: &Client, rng: &mut StdRng, _: u64| {
        c.get(&url)
            .bearer_auth(&tokens[rng.gen_range(0..tokens.len())])
    };
    load::run(&http, n, Stop::After(WARMUP), feed_req.clone()).await;
    let feed = measured(setup, server, &http, n, Stop::After(d), feed_req).await;
    server.check_alive()?;

    eprintln!("[{tag}] {LATENCY_POSTS} posts by normal authors, {WRITERS} at a time");
    let author_tokens: Arc<Vec<String>> =
        Arc::new(pop.authors.iter().map(|a| a.token.clone()).collect());
    let url = format!("{base}/v1/me/feed");
    let post = measured(
        setup,
        server,
        &http,
        WRITERS,
        Stop::Count(LATENCY_POSTS),
        move |c, rng, seq| {
            let token = &author_tokens[rng.gen_range(0..author_tokens.len())];
            publish(c, &url, token, seq)
        },
    )
    .await;
    drained(&probe, Stage::All).await?;
    server.check_alive()?;

    eprintln!("[{tag}] {BIG_POSTS} posts by the big author, each until fanout is done");
    let mut big = PostCosts::default();
    let mut last_big_post = None;
    let mut big_notified = Vec::new();
    for i in 0..BIG_POSTS {
        let (ack, done, notified, id) =
            post_until_drained(&http, &base, &probe, &pop.big, i).await?;
        big.push((ack, done));
        big_notified.push(notified);
        last_big_post = id;
    }
    big_notified.sort();
    eprintln!(
        "[{tag}] big author: notifications done (after the feeds), p50 {:?}, max {:?}",
        big_notified[big_notified.len() / 2],
        big_notified[big_notified.len() - 1]
    );
    let push_check = match (redis_namespace, last_big_post) {
        (Some(namespace), Some(post)) => {
            let sample: Vec<i64> = pop.big_followers.clone().step_by(PUSH_CHECK_STEP).collect();
            let (built, holding) =
                redis_ns::feeds_holding(&setup.opts.redis_url, namespace, &sample, post).await?;
            Some(PushCheck {
                sampled: sample.len(),
                built,
                holding,
            })
        }
        _ => None,
    };

    let reference = pop
        .author_near(REFERENCE_FOLLOWERS)
        .ok_or_else(|| Error::Run("no normal authors were seeded".into()))?;
    eprintln!(
        "[{tag}] {COMPARE_POSTS} posts each by the celebrity and a {}-follower author",
        reference.followers
    );
    let (mut celebrity, mut normal) = (PostCosts::default(), PostCosts::default());
    // Alternating keeps slow drifts (cache growth, WAL size) out of the ratio.
    for i in 0..COMPARE_POSTS {
        let (ack, done, _, _) = post_until_drained(&http, &base, &probe, &pop.celebrity, i).await?;
        celebrity.push((ack, done));
        let (ack, done, _, _) = post_until_drained(&http, &base, &probe, reference, i).await?;
        normal.push((ack, done));
    }
    server.check_alive()?;
    probe.close().await;

    Ok(BackendReport {
        backend,
        database: setup.opts.database.engine,
        users: pop.users,
        follows: pop.follows,
        sessions: pop.sessions,
        seed_time,
        seed_posts,
        seed_drain,
        healthz,
        me,
        feed,
        feed_sample,
        post,
        big: big.finish(),
        push_check,
        celebrity: celebrity.finish(),
        normal: normal.finish(),
        normal_followers: reference.followers,
        log: Default::default(),
    })
}

/// Every normal author's seed posts (shuffled, so fanout of one author's posts overlaps
/// another's, as in life), then the celebrity's and the big author's. Those come last so
/// that they are on every reader's first page, which makes a missing celebrity post there
/// a sign of a broken pull merge rather than bad luck.
async fn publish_seed_posts(http: &Client, base: &str, pop: &Population) -> Result<Phase, Error> {
    let url = format!("{base}/v1/me/feed");
    let mut tokens: Vec<String> = Vec::new();
    for _ in 0..SEED_POSTS_PER_AUTHOR {
        tokens.extend(pop.authors.iter().map(|a| a.token.clone()));
    }
    tokens.shuffle(&mut rand::thread_rng());
    for _ in 0..SEED_POSTS_PER_STAR {
        tokens.push(pop.celebrity.token.clone());
        tokens.push(pop.big.token.clone());
    }
    let total = tokens.len() as u64;
    let tokens = Arc::new(tokens);
    let summary = load::run(http, WRITERS, Stop::Count(total), move |c, _, seq| {
        publish(c, &url, &tokens[seq as usize], seq)
    })
    .await;
    expect_no_failures("publishing the seed posts", &summary)?;
    Ok(Phase {
        concurrency: WRITERS,
        summary,
        server_cpu: None,
        client_cpu: None,
        server_switches: None,
    })
}

/// Runs a load and records the CPU the server and this tool spent on it.
pub(crate) async fn measured<F>(
    setup: &Setup,
    server: &ServerProcess,
    http: &Client,
    concurrency: usize,
    stop: Stop,
    make: F,
) -> Phase
where
    F: Fn(&Client, &mut StdRng, u64) -> RequestBuilder + Send + Sync + 'static,
{
    let me = std::process::id();
    let before = (setup.clock.seconds(server.pid()), setup.clock.seconds(me));
    let switches_before = cpu::context_switches(server.pid());
    let summary = load::run(http, concurrency, stop, make).await;
    let after = (setup.clock.seconds(server.pid()), setup.clock.seconds(me));
    let switches_after = cpu::context_switches(server.pid());
    let delta = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
    Phase {
        concurrency,
        server_cpu: delta(before.0, after.0),
        client_cpu: delta(before.1, after.1),
        server_switches: switches_after
            .zip(switches_before)
            .map(|(a, b)| a.saturating_sub(b)),
        summary,
    }
}

/// Parses a few feed pages: a page with few items or no celebrity posts would mean the
/// read measurement measured the wrong thing.
async fn sample_feeds(http: &Client, url: &str, pop: &Population) -> Result<FeedSample, Error> {
    let celebrity = pop.celebrity.id.to_string();
    let mut sample = FeedSample::default();
    let readers: Vec<&Account> = pop
        .readers
        .choose_multiple(&mut rand::thread_rng(), SAMPLE_PAGES)
        .collect();
    for reader in readers {
        let response = http.get(url).bearer_auth(&reader.token).send().await?;
        let status = response.status();
        if !status.is_success() {
            return Err(Error::Run(format!("GET {url} answered {status}")));
        }
        let page: serde_json::Value = response.json().await?;
        let items = page
            .get("items")
            .and_then(|i| i.as_array())
            .map(Vec::as_slice)
            .unwrap_or_default();
        sample.pages += 1;
        sample.items += items.len();
        let author_is = |item: &serde_json::Value, id: &str| {
            item.pointer("/author/id").and_then(|v| v.as_str()) == Some(id)
        };
        if items.iter().any(|item| author_is(item, &celebrity)) {
            sample.with_celebrity += 1;
        }
    }
    Ok(sample)
}

fn expect_no_failures(what: &str, summary: &Summary) -> Result<(), Error> {
    if summary.failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Run(format!(
            "{what}: {} failed ({})",
            summary.failed(),
            summary.failures_text()
        )))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
