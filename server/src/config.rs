//! Configuration from environment variables, validated once at start-up.
//!
//! Every variable of API.md's table is read here and nowhere else; a bad value stops the
//! process with a message naming the variable, instead of surfacing later as odd behaviour.

use std::{net::SocketAddr, time::Duration};

/// Which tokio runtime drives the server (`KITH_RUNTIME`).
///
/// On one core the multi-thread scheduler adds a latency tail the current-thread one does
/// not, so the choice is left to the operator and measured in `docs/benchmarks.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeFlavor {
    CurrentThread,
    MultiThread,
}

/// Everything the server needs to know about its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address; port 0 picks a free port (tests).
    pub addr: SocketAddr,
    /// The durable store: `sqlite:` (one machine) or `postgres:` (a cluster).
    pub database_url: SecretUrl,
    /// Redis for caches, queues, rate limits and cross-node pub/sub; `None` = in-process.
    pub redis_url: Option<SecretUrl>,
    /// Prefix of every Redis key, so several deployments (or test runs) can share a server.
    pub redis_namespace: String,
    /// Bytes the node's near cache of Redis entries may hold (0 turns it off).
    pub near_cache_bytes: usize,
    /// The Snowflake node id (`KITH_NODE_ID`); `None`: leased from Redis, or 0 without
    /// Redis (a node on its own).
    pub node_id: Option<u16>,
    /// How long a node-id lease and a discovery registration last (`KITH_NODE_LEASE_MS`).
    pub node_lease_ms: u64,
    /// Where clients reach this node directly (`KITH_ADVERTISE_URL`; `None`: its own
    /// listening address).
    pub advertise_url: Option<String>,
    /// Followers at which an author's posts switch from push to pull.
    pub celebrity_threshold: u64,
    /// Posts a user may publish per minute (also the burst size).
    pub post_rate_per_min: u32,
    /// Chat messages a user may send a second over HTTP (bursts of 2.5 times as many); a
    /// WebSocket has its own per-connection frame limit.
    pub chat_send_rate_per_sec: u32,
    /// WebSockets a user may open a minute (also the burst size).
    pub ws_connect_rate_per_min: u32,
    /// Abuse limits: sign-ups per client address, group creations per user, open
    /// WebSockets and waiting long polls, request read timeouts.
    pub limits: Limits,
    /// Silence after which a user is shown offline.
    pub presence_timeout: Duration,
    /// Origins allowed to make cookie-authenticated requests and WebSocket upgrades.
    pub allowed_origins: Vec<String>,
    /// How long a session token lives after it is issued.
    pub session_ttl: Duration,
    /// Trust `X-Forwarded-For` for the client address (only behind a proxy you run).
    pub trust_proxy: bool,
    /// Runtime flavour, see [`RuntimeFlavor`].
    pub runtime: RuntimeFlavor,
    /// Fanout worker tasks per node (`KITH_FANOUT_WORKERS`); 0 leaves fanout to other nodes.
    pub fanout_workers: usize,
    /// Engine settings: SQLite's `synchronous`, PostgreSQL's pool size, where media files
    /// go (`KITH_SQLITE_SYNCHRONOUS`, `KITH_POSTGRES_POOL_SIZE`, `KITH_MEDIA_STORE`,
    /// `KITH_MEDIA_DIR`).
    pub storage: crate::storage::Options,
    /// Image uploads a user may make a day (`KITH_MEDIA_UPLOADS_PER_DAY`, also the burst).
    pub media_uploads_per_day: u32,
    /// Images decoded and encoded at once (`KITH_MEDIA_WORKERS`; default: one per core).
    /// Each holds up to ~300 MiB while it works on a 40-megapixel image.
    pub media_workers: usize,
}

/// A URL that may carry a password: [`Debug`] shows it with the password replaced, so
/// printing a [`Config`] (or logging it) never reveals one.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL itself, password included: for connecting, never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        let url = &self.0;
        let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
            return url.clone();
        };
        let rest = &url[scheme_end..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let Some(at) = rest[..authority_end].rfind('@') else {
            return url.clone();
        };
        match rest[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end],
                &rest[..colon],
                &rest[at..]
            ),
            None => url.clone(),
        }
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

/// Limits that keep one client or one account from taking more than its share, each from
/// its own variable (defaults in parentheses).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Accounts one client address may create an hour, also the burst
    /// (`KITH_SIGNUP_RATE_PER_HOUR`, 20).
    pub signup_rate_per_hour: u32,
    /// Whether the sign-up limit applies to loopback clients too: only when
    /// `KITH_SIGNUP_RATE_PER_HOUR` is set. By default a client on the server's own machine
    /// (a developer, a local test suite) signs up without limit; behind a reverse proxy on
    /// the same machine, `KITH_TRUST_PROXY` gives every client its own address.
    pub signup_limit_loopback: bool,
    /// Groups one user may create an hour, also the burst
    /// (`KITH_GROUP_CREATE_RATE_PER_HOUR`, 30).
    pub group_create_rate_per_hour: u32,
    /// WebSockets one user may hold open on a node at once (`KITH_WS_PER_USER`, 20).
    pub ws_per_user: usize,
    /// WebSockets one client address may hold open on a node at once
    /// (`KITH_WS_PER_ADDRESS`, 1000).
    pub ws_per_address: usize,
    /// Long polls one user may have waiting on a node at once (`KITH_LONGPOLLS_PER_USER`,
    /// 10).
    pub longpolls_per_user: usize,
    /// Time a client has to send a request's headers, from the connection's start or the
    /// end of its previous request, so also how long an idle keep-alive connection is kept
    /// (`KITH_HEADER_TIMEOUT_SECS`, 10).
    pub header_timeout: Duration,
    /// Time a client has to send a request's body once its headers are in
    /// (`KITH_BODY_TIMEOUT_SECS`, 30).
    pub body_timeout: Duration,
}

/// A configuration value that cannot be used, with the variable it came from.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `get`, so tests can supply values without touching
    /// the (process-global) environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &'static str| get(name).filter(|v| !v.trim().is_empty());

        let addr_text = var("LEPTOS_SITE_ADDR").unwrap_or_else(|| "127.0.0.1:3000".into());
        let addr: SocketAddr = parse("LEPTOS_SITE_ADDR", &addr_text)?;
        let node_id: Option<u16> = var("KITH_NODE_ID")
            .map(|v| parse("KITH_NODE_ID", &v))
            .transpose()?;
        if let Some(node_id) = node_id.filter(|&n| n > crate::id::MAX_NODE_ID) {
            return Err(ConfigError {
                var: "KITH_NODE_ID",
                reason: format!("{node_id} is outside 0..={}", crate::id::MAX_NODE_ID),
            });
        }
        let node_lease_ms: u64 = var("KITH_NODE_LEASE_MS")
            .map(|v| parse("KITH_NODE_LEASE_MS", &v))
            .transpose()?
            .unwrap_or(10_000);
        if node_lease_ms < 1_000 {
            return Err(ConfigError {
                var: "KITH_NODE_LEASE_MS",
                reason: format!("{node_lease_ms} is below 1000"),
            });
        }
        let advertise_url = var("KITH_ADVERTISE_URL")
            .map(|url| {
                let url = url.trim_end_matches('/').to_string();
                if url.starts_with("http://") || url.starts_with("https://") {
                    Ok(url)
                } else {
                    Err(ConfigError {
                        var: "KITH_ADVERTISE_URL",
                        reason: format!("{url:?} is not an http(s) URL"),
                    })
                }
            })
            .transpose()?;
        let post_rate_per_min: u32 = var("KITH_POST_RATE_PER_MIN")
            .map(|v| parse("KITH_POST_RATE_PER_MIN", &v))
            .transpose()?
            .unwrap_or(30);
        positive("KITH_POST_RATE_PER_MIN", post_rate_per_min.into())?;
        let chat_send_rate_per_sec: u32 = var("KITH_CHAT_SEND_RATE_PER_SEC")
            .map(|v| parse("KITH_CHAT_SEND_RATE_PER_SEC", &v))
            .transpose()?
            .unwrap_or(20);
        positive("KITH_CHAT_SEND_RATE_PER_SEC", chat_send_rate_per_sec.into())?;
        let ws_connect_rate_per_min: u32 = var("KITH_WS_CONNECT_RATE_PER_MIN")
            .map(|v| parse("KITH_WS_CONNECT_RATE_PER_MIN", &v))
            .transpose()?
            .unwrap_or(60);
        positive(
            "KITH_WS_CONNECT_RATE_PER_MIN",
            ws_connect_rate_per_min.into(),
        )?;
        let count = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            let value = var(name)
                .map(|v| parse(name, &v))
                .transpose()?
                .unwrap_or(default);
            positive(name, value)?;
            Ok(value)
        };
        let limits = Limits {
            signup_rate_per_hour: count("KITH_SIGNUP_RATE_PER_HOUR", 20)?
                .try_into()
                .unwrap_or(u32::MAX),
            signup_limit_loopback: var("KITH_SIGNUP_RATE_PER_HOUR").is_some(),
            group_create_rate_per_hour: count("KITH_GROUP_CREATE_RATE_PER_HOUR", 30)?
                .try_into()
                .unwrap_or(u32::MAX),
            ws_per_user: count("KITH_WS_PER_USER", 20)?
                .try_into()
                .unwrap_or(usize::MAX),
            ws_per_address: count("KITH_WS_PER_ADDRESS", 1000)?
                .try_into()
                .unwrap_or(usize::MAX),
            longpolls_per_user: count("KITH_LONGPOLLS_PER_USER", 10)?
                .try_into()
                .unwrap_or(usize::MAX),
            header_timeout: Duration::from_secs(count("KITH_HEADER_TIMEOUT_SECS", 10)?),
            body_timeout: Duration::from_secs(count("KITH_BODY_TIMEOUT_SECS", 30)?),
        };
        let celebrity_threshold: u64 = var("KITH_CELEBRITY_THRESHOLD")
            .map(|v| parse("KITH_CELEBRITY_THRESHOLD", &v))
            .transpose()?
            .unwrap_or(10_000);
        positive("KITH_CELEBRITY_THRESHOLD", celebrity_threshold)?;
        let presence_secs: u64 = var("KITH_PRESENCE_TIMEOUT_SECS")
            .map(|v| parse("KITH_PRESENCE_TIMEOUT_SECS", &v))
            .transpose()?
            .unwrap_or(30);
        positive("KITH_PRESENCE_TIMEOUT_SECS", presence_secs)?;
        let session_days: u64 = var("KITH_SESSION_TTL_DAYS")
            .map(|v| parse("KITH_SESSION_TTL_DAYS", &v))
            .transpose()?
            .unwrap_or(30);
        positive("KITH_SESSION_TTL_DAYS", session_days)?;

        let redis_url = var("KITH_REDIS_URL");
        if let Some(url) = &redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError {
                    var: "KITH_REDIS_URL",
                    reason: "must start with redis:// or rediss://".into(),
                });
            }
        }
        let database_url = var("KITH_DATABASE_URL").unwrap_or_else(|| "sqlite://kith.db".into());
        if crate::storage::engine_of(&database_url).is_none() {
            return Err(ConfigError {
                var: "KITH_DATABASE_URL",
                reason: "must start with sqlite: or postgres:".into(),
            });
        }
        let postgres_pool_size: u32 = var("KITH_POSTGRES_POOL_SIZE")
            .map(|v| parse("KITH_POSTGRES_POOL_SIZE", &v))
            .transpose()?
            .unwrap_or(16);
        positive("KITH_POSTGRES_POOL_SIZE", postgres_pool_size as u64)?;

        let allowed_origins = match var("KITH_ALLOWED_ORIGINS") {
            Some(list) => list
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .map(|o| {
                    if o.starts_with("http://") || o.starts_with("https://") {
                        Ok(o)
                    } else {
                        Err(ConfigError {
                            var: "KITH_ALLOWED_ORIGINS",
                            reason: format!("{o:?} is not an http(s) origin"),
                        })
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => default_origins(addr),
        };

        let runtime = match var("KITH_RUNTIME").as_deref() {
            None | Some("current_thread") => RuntimeFlavor::CurrentThread,
            Some("multi_thread") => RuntimeFlavor::MultiThread,
            Some(other) => {
                return Err(ConfigError {
                    var: "KITH_RUNTIME",
                    reason: format!("{other:?} is neither current_thread nor multi_thread"),
                })
            }
        };
        let trust_proxy = match var("KITH_TRUST_PROXY").as_deref() {
            None | Some("0") | Some("false") => false,
            Some("1") | Some("true") => true,
            Some(other) => {
                return Err(ConfigError {
                    var: "KITH_TRUST_PROXY",
                    reason: format!("{other:?} is not true/false"),
                })
            }
        };

        let sqlite_synchronous = match var("KITH_SQLITE_SYNCHRONOUS").as_deref() {
            None | Some("FULL") | Some("full") => crate::storage::SqliteSync::Full,
            Some("NORMAL") | Some("normal") => crate::storage::SqliteSync::Normal,
            Some(other) => {
                return Err(ConfigError {
                    var: "KITH_SQLITE_SYNCHRONOUS",
                    reason: format!("{other:?} is neither FULL nor NORMAL"),
                })
            }
        };

        let media = match var("KITH_MEDIA_STORE").as_deref() {
            Some("database") => crate::storage::MediaFiles::Database,
            Some("dir") => crate::storage::MediaFiles::Directory(media_dir(&var)),
            None if database_url.starts_with("sqlite:") => {
                crate::storage::MediaFiles::Directory(media_dir(&var))
            }
            None => match var("KITH_MEDIA_DIR") {
                Some(dir) => crate::storage::MediaFiles::Directory(dir.into()),
                None => crate::storage::MediaFiles::Database,
            },
            Some(other) => {
                return Err(ConfigError {
                    var: "KITH_MEDIA_STORE",
                    reason: format!("{other:?} is neither dir nor database"),
                })
            }
        };
        let media_uploads_per_day: u32 = var("KITH_MEDIA_UPLOADS_PER_DAY")
            .map(|v| parse("KITH_MEDIA_UPLOADS_PER_DAY", &v))
            .transpose()?
            .unwrap_or(200);
        positive("KITH_MEDIA_UPLOADS_PER_DAY", media_uploads_per_day.into())?;
        let media_workers: usize = var("KITH_MEDIA_WORKERS")
            .map(|v| parse("KITH_MEDIA_WORKERS", &v))
            .transpose()?
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        positive("KITH_MEDIA_WORKERS", media_workers as u64)?;

        let fanout_workers: usize = var("KITH_FANOUT_WORKERS")
            .map(|v| parse("KITH_FANOUT_WORKERS", &v))
            .transpose()?
            .unwrap_or(4);

        let near_cache_mb: usize = var("KITH_NEAR_CACHE_MB")
            .map(|v| parse("KITH_NEAR_CACHE_MB", &v))
            .transpose()?
            .unwrap_or(64);

        Ok(Self {
            addr,
            fanout_workers,
            near_cache_bytes: near_cache_mb.saturating_mul(1 << 20),
            storage: crate::storage::Options {
                sqlite_synchronous,
                postgres_pool_size,
                media,
            },
            media_uploads_per_day,
            media_workers,
            database_url: SecretUrl::new(database_url),
            redis_url: redis_url.map(SecretUrl::new),
            redis_namespace: var("KITH_REDIS_NAMESPACE").unwrap_or_else(|| "kith".into()),
            node_id,
            node_lease_ms,
            advertise_url,
            celebrity_threshold,
            post_rate_per_min,
            chat_send_rate_per_sec,
            ws_connect_rate_per_min,
            limits,
            presence_timeout: Duration::from_secs(presence_secs),
            allowed_origins,
            session_ttl: Duration::from_secs(session_days * 24 * 3600),
            trust_proxy,
            runtime,
        })
    }
}

/// `KITH_MEDIA_DIR`, by default `media` in the working directory.
fn media_dir(var: &impl Fn(&'static str) -> Option<String>) -> std::path::PathBuf {
    var("KITH_MEDIA_DIR")
        .unwrap_or_else(|| "media".into())
        .into()
}

/// The site's own origin, spelled both ways a browser may spell a loopback address.
fn default_origins(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut origins = vec![format!("http://{addr}")];
    if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        origins.push(format!("http://localhost:{port}"));
        origins.push(format!("http://127.0.0.1:{port}"));
    }
    origins.dedup();
    origins
}

fn parse<T: std::str::FromStr>(var: &'static str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|e: T::Err| ConfigError {
        var,
        reason: format!("{value:?}: {e}"),
    })
}

fn positive(var: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        Err(ConfigError {
            var,
            reason: "must be at least 1".into(),
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_api_table() -> Result<(), ConfigError> {
        let c = config(&[])?;
        assert_eq!(c.addr.to_string(), "127.0.0.1:3000");
        assert_eq!(c.database_url.expose(), "sqlite://kith.db");
        assert!(c.redis_url.is_none());
        assert_eq!(c.node_id, None);
        assert_eq!(c.celebrity_threshold, 10_000);
        assert_eq!(c.post_rate_per_min, 30);
        assert_eq!(c.chat_send_rate_per_sec, 20);
        assert_eq!(c.ws_connect_rate_per_min, 60);
        assert_eq!(c.presence_timeout, Duration::from_secs(30));
        assert_eq!(c.limits.signup_rate_per_hour, 20);
        assert!(!c.limits.signup_limit_loopback);
        let set = config(&[("KITH_SIGNUP_RATE_PER_HOUR", "20")])?;
        assert!(
            set.limits.signup_limit_loopback,
            "an explicit limit applies everywhere"
        );
        assert_eq!(c.limits.group_create_rate_per_hour, 30);
        assert_eq!((c.limits.ws_per_user, c.limits.ws_per_address), (20, 1000));
        assert_eq!(c.limits.longpolls_per_user, 10);
        assert_eq!(c.limits.header_timeout, Duration::from_secs(10));
        assert_eq!(c.limits.body_timeout, Duration::from_secs(30));
        assert!(c
            .allowed_origins
            .contains(&"http://127.0.0.1:3000".to_string()));
        Ok(())
    }

    #[test]
    fn passwords_in_urls_stay_out_of_debug_output() -> Result<(), ConfigError> {
        let c = config(&[
            (
                "KITH_DATABASE_URL",
                "postgres://kith:hunter2@db.internal:5432/kith?sslmode=require",
            ),
            ("KITH_REDIS_URL", "redis://:s3cret@cache:6379/0"),
        ])?;
        let printed = format!("{c:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("s3cret"),
            "{printed}"
        );
        assert!(printed.contains("postgres://kith:***@db.internal:5432/kith?sslmode=require"));
        assert!(printed.contains("redis://:***@cache:6379/0"));
        assert_eq!(
            c.database_url.expose(),
            "postgres://kith:hunter2@db.internal:5432/kith?sslmode=require"
        );
        for plain in [
            "sqlite://kith.db",
            "postgres://postgres@127.0.0.1/kith",
            "redis://a/b@c",
        ] {
            assert_eq!(SecretUrl::new(plain).redacted(), plain);
        }
        Ok(())
    }

    #[test]
    fn media_files_go_in_a_directory_on_sqlite_and_the_database_on_postgres(
    ) -> Result<(), ConfigError> {
        use crate::storage::MediaFiles;
        let pg = ("KITH_DATABASE_URL", "postgres://kith@db:5432/kith");
        assert_eq!(
            config(&[])?.storage.media,
            MediaFiles::Directory("media".into())
        );
        assert_eq!(config(&[pg])?.storage.media, MediaFiles::Database);
        let shared = config(&[pg, ("KITH_MEDIA_DIR", "/mnt/media")])?;
        assert_eq!(
            shared.storage.media,
            MediaFiles::Directory("/mnt/media".into())
        );
        let chosen = config(&[pg, ("KITH_MEDIA_STORE", "dir")])?;
        assert_eq!(chosen.storage.media, MediaFiles::Directory("media".into()));
        let sqlite_db = config(&[("KITH_MEDIA_STORE", "database")])?;
        assert_eq!(
            sqlite_db.storage.media,
            MediaFiles::Database,
            "refused at connect"
        );
        assert_eq!(config(&[])?.media_uploads_per_day, 200);
        Ok(())
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("KITH_NODE_ID", "1024"),
            ("KITH_NODE_ID", "abc"),
            ("KITH_POST_RATE_PER_MIN", "0"),
            ("KITH_MEDIA_STORE", "s3"),
            ("KITH_MEDIA_UPLOADS_PER_DAY", "0"),
            ("KITH_MEDIA_WORKERS", "0"),
            ("KITH_CHAT_SEND_RATE_PER_SEC", "0"),
            ("KITH_WS_CONNECT_RATE_PER_MIN", "x"),
            ("KITH_SIGNUP_RATE_PER_HOUR", "0"),
            ("KITH_WS_PER_ADDRESS", "-1"),
            ("KITH_HEADER_TIMEOUT_SECS", "soon"),
            ("KITH_REDIS_URL", "localhost:6379"),
            ("KITH_ALLOWED_ORIGINS", "example.com"),
            ("KITH_RUNTIME", "fast"),
            ("LEPTOS_SITE_ADDR", "nowhere"),
        ] {
            match config(&[(var, value)]) {
                Err(e) => assert_eq!(e.var, var, "{var}={value}"),
                Ok(_) => panic!("{var}={value} was accepted"),
            }
        }
    }
}
