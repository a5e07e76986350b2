//! The run's Redis namespace: checked before the server starts (a missing Redis should
//! say so, not look like a server that never gets ready) and deleted afterwards, since
//! every run uses a fresh random prefix and would otherwise leave ~100k keys behind.
//! It also looks into feed caches to prove a fanout really pushed, and reads Redis's own
//! CPU time (the presence scenario moves part of the work there).

use crate::error::Error;

/// Keys per SCAN step: large enough to finish quickly, small enough not to stall Redis.
const SCAN_COUNT: usize = 1_000;

/// Fails unless Redis at `url` answers PING.
pub async fn ping(url: &str) -> Result<(), Error> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let _: String = redis::cmd("PING").query_async(&mut conn).await?;
    Ok(())
}

/// CPU seconds (user + system) the Redis server has used so far, from `INFO cpu`: all
/// its clients count, not only this run's server.
pub async fn cpu_seconds(url: &str) -> Result<f64, Error> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut conn).await?;
    info_cpu(&info).ok_or_else(|| Error::Run("INFO cpu without used_cpu_sys/used_cpu_user".into()))
}

/// Bytes the Redis server holds (`used_memory` of `INFO memory`): all its clients count.
pub async fn used_memory(url: &str) -> Result<u64, Error> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::Run("INFO memory without used_memory".into()))
}

fn info_cpu(info: &str) -> Option<f64> {
    let field = |name: &str| -> Option<f64> {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?
            .trim()
            .parse()
            .ok()
    };
    Some(field("used_cpu_sys")? + field("used_cpu_user")?)
}

/// Deletes every key under `<namespace>:`; returns how many there were.
pub async fn delete_namespace(url: &str, namespace: &str) -> Result<u64, Error> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{namespace}:*");
    let mut cursor: u64 = 0;
    let mut deleted: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let n: u64 = redis::cmd("DEL").arg(keys).query_async(&mut conn).await?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// Of `users`' feed caches, how many exist, and how many of those hold `post_id` (fanout
/// pushes only into feeds that exist: a user who never read has none). Relies on the
/// server's key layout (`<namespace>:feed:<user id>`, a sorted set of post ids), which is
/// fine for a check whose only job is to catch a fanout that silently did not push.
pub async fn feeds_holding(
    url: &str,
    namespace: &str,
    users: &[i64],
    post_id: i64,
) -> Result<(usize, usize), Error> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut pipe = redis::pipe();
    for user in users {
        let key = format!("{namespace}:feed:{user}");
        pipe.cmd("EXISTS")
            .arg(&key)
            .cmd("ZSCORE")
            .arg(&key)
            .arg(post_id);
    }
    let replies: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
    let (mut built, mut holding) = (0, 0);
    for pair in replies.chunks(2) {
        if pair[0] == redis::Value::Int(1) {
            built += 1;
            if pair[1] != redis::Value::Nil {
                holding += 1;
            }
        }
    }
    Ok((built, holding))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_system_plus_user() {
        let info = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\nused_cpu_sys_children:9.0\r\n";
        assert_eq!(info_cpu(info), Some(3.75));
        assert_eq!(info_cpu("# CPU\r\n"), None);
    }
}
