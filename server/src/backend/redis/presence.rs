//! Presence on Redis: who is online (a sorted set by last activity) and when each user was
//! last seen, shared by every node.

use super::RedisBackend;
use crate::backend::{PresenceStore, Result};
use async_trait::async_trait;
use redis::AsyncCommands;

const PRESENCE_ONLINE: &str = "presence:online";
const PRESENCE_SEEN: &str = "presence:seen";

#[async_trait]
impl PresenceStore for RedisBackend {
    async fn touch(&self, activity: &[(i64, i64)]) -> Result<Vec<i64>> {
        if activity.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut call = self.presence_touch.prepare_invoke();
        call.key(self.key(PRESENCE_ONLINE))
            .key(self.key(PRESENCE_SEEN));
        for (user, at) in activity {
            call.arg(*user).arg(*at);
        }
        let came: Vec<i64> = call.invoke_async(&mut conn).await?;
        Ok(came)
    }

    async fn expire(&self, cutoff_ms: i64) -> Result<Vec<(i64, i64)>> {
        let mut conn = self.conn.clone();
        let mut gone = Vec::new();
        loop {
            let batch: Vec<(i64, f64)> = self
                .presence_expire
                .key(self.key(PRESENCE_ONLINE))
                .arg(cutoff_ms)
                .invoke_async(&mut conn)
                .await?;
            let n = batch.len();
            gone.extend(batch.into_iter().map(|(user, last)| (user, last as i64)));
            if n < 1000 {
                return Ok(gone);
            }
        }
    }

    async fn status(&self, users: &[i64]) -> Result<Vec<(bool, Option<i64>)>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let (online, seen): (Vec<Option<f64>>, Vec<Option<i64>>) = redis::pipe()
            .cmd("ZMSCORE")
            .arg(self.key(PRESENCE_ONLINE))
            .arg(users)
            .cmd("HMGET")
            .arg(self.key(PRESENCE_SEEN))
            .arg(users)
            .query_async(&mut conn)
            .await?;
        Ok(online
            .into_iter()
            .zip(seen)
            .map(|(score, seen)| (score.is_some(), seen))
            .collect())
    }

    async fn online_count(&self) -> Result<u64> {
        let mut conn = self.conn.clone();
        let n: u64 = conn.zcard(self.key(PRESENCE_ONLINE)).await?;
        Ok(n)
    }
}
