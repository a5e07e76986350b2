//! The cache on Redis: values, id sets (feeds, follower lists) and counters, read through
//! the node's near cache when it has one.

use super::{RedisBackend, IDS_INDEX, IDS_INDEX_COMPLETE, PUSH_SCRIPT_SETS};
use crate::backend::{Cache, Result, PUSH_TRIM_SLACK};
use async_trait::async_trait;
use bytes::Bytes;
use redis::AsyncCommands;
use std::time::Duration;

#[async_trait]
impl Cache for RedisBackend {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        if let Some(near) = &self.near {
            if let Some(mut v) = near.values(&[key.to_string()]).await {
                return Ok(v.pop().flatten());
            }
        }
        let mut conn = self.conn.clone();
        let v: Option<Vec<u8>> = conn.get(self.key(key)).await?;
        Ok(v.map(Bytes::from))
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(near) = &self.near {
            if let Some(values) = near.values(keys).await {
                return Ok(values);
            }
        }
        let full: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        let mut conn = self.conn.clone();
        let values: Vec<Option<Vec<u8>>> =
            redis::cmd("MGET").arg(&full).query_async(&mut conn).await?;
        Ok(values.into_iter().map(|v| v.map(Bytes::from)).collect())
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        let mut conn = self.conn.clone();
        let key = self.key(key);
        let result = match ttl {
            Some(ttl) => {
                conn.pset_ex(&key, value.as_ref(), ttl.as_millis().max(1) as u64)
                    .await
            }
            None => conn.set(&key, value.as_ref()).await,
        };
        self.written([key.as_str()]);
        let () = result?;
        Ok(())
    }

    async fn set_many(&self, entries: &[(String, Bytes)], ttl: Option<Duration>) -> Result<()> {
        self.set_each(entries, ttl, false).await
    }

    async fn add_many(&self, entries: &[(String, Bytes)], ttl: Option<Duration>) -> Result<()> {
        self.set_each(entries, ttl, true).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        let key = self.key(key);
        let result: redis::RedisResult<()> = conn.del(&key).await;
        self.written([key.as_str()]);
        result?;
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        if let Some(held) = self.near.as_ref().and_then(|near| near.exists(key)) {
            return Ok(held);
        }
        let mut conn = self.conn.clone();
        Ok(conn.exists(self.key(key)).await?)
    }

    async fn incr(&self, key: &str, delta: i64) -> Result<i64> {
        let mut conn = self.conn.clone();
        let key = self.key(key);
        let result = conn.incr(&key, delta).await;
        self.written([key.as_str()]);
        Ok(result?)
    }

    async fn ids_add(&self, entries: &[(String, i64)], cap: usize) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let full: Vec<String> = entries.iter().map(|(k, _)| self.key(k)).collect();
        let mut invocation = self.ids_add.prepare_invoke();
        invocation.key(self.key(IDS_INDEX)).arg(cap);
        for (key, (_, id)) in full.iter().zip(entries) {
            invocation.key(key).arg(*id);
        }
        let mut conn = self.conn.clone();
        let result: redis::RedisResult<i64> = invocation.invoke_async(&mut conn).await;
        self.written(full.iter().map(String::as_str));
        result?;
        Ok(())
    }

    async fn ids_push(&self, keys: &[String], id: i64, cap: usize) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let index = self.key(IDS_INDEX);
        let full: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        let mut conn = self.conn.clone();
        // Most followers have no feed cache (they have not read their feed lately): one
        // `SMISMEMBER`, the completeness mark first, picks the sets worth a script. A set
        // created after this answer was built from SQLite, which already holds the post.
        let listed: Vec<bool> = redis::cmd("SMISMEMBER")
            .arg(&index)
            .arg(IDS_INDEX_COMPLETE)
            .arg(&full)
            .query_async(&mut conn)
            .await?;
        let complete = listed.first().copied().unwrap_or(false);
        let targets: Vec<&String> = if complete {
            full.iter()
                .zip(listed.iter().skip(1))
                .filter_map(|(key, listed)| listed.then_some(key))
                .collect()
        } else {
            full.iter().collect()
        };
        let mut index_complete = true;
        let mut result = Ok(());
        for sets in targets.chunks(PUSH_SCRIPT_SETS) {
            let mut invocation = self.ids_push.prepare_invoke();
            invocation.key(&index);
            for key in sets {
                invocation.key(*key);
            }
            invocation
                .arg(cap)
                .arg(id)
                .arg(PUSH_TRIM_SLACK)
                .arg(IDS_INDEX_COMPLETE);
            match invocation.invoke_async::<i64>(&mut conn).await {
                Ok(was_complete) => index_complete &= was_complete == 1,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.written(targets.iter().map(|key| key.as_str()));
        result?;
        if !index_complete || !complete {
            self.check_ids_index();
        }
        Ok(())
    }

    async fn ids_fill(&self, key: &str, marker: i64, ids: &[i64], cap: usize) -> Result<bool> {
        let key = self.key(key);
        let mut invocation = self.ids_fill.prepare_invoke();
        invocation.key(&key).arg(cap).arg(marker);
        for id in ids {
            invocation.arg(*id);
        }
        let mut conn = self.conn.clone();
        let result: redis::RedisResult<i64> = invocation.invoke_async(&mut conn).await;
        self.written([key.as_str()]);
        Ok(result? == 1)
    }

    async fn ids_remove(&self, entries: &[(String, i64)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let full: Vec<String> = entries.iter().map(|(k, _)| self.key(k)).collect();
        let mut pipe = redis::pipe();
        for (key, (_, id)) in full.iter().zip(entries) {
            pipe.zrem(key, id).ignore();
        }
        let mut conn = self.conn.clone();
        let result: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        self.written(full.iter().map(String::as_str));
        result?;
        Ok(())
    }

    async fn ids_range(&self, key: &str, below: Option<i64>, limit: usize) -> Result<Vec<i64>> {
        if let Some(ids) = self.near_ids(key).await {
            // Largest first: skip down to `below`, then take `limit`.
            let start = below.map_or(0, |b| ids.partition_point(|id| *id >= b));
            return Ok(ids[start..].iter().take(limit).copied().collect());
        }
        let key = self.key(key);
        let mut conn = self.conn.clone();
        let max = match below {
            Some(b) => format!("({b}"),
            None => "+inf".to_string(),
        };
        let ids: Vec<i64> = conn
            .zrevrangebyscore_limit(key, max, "-inf", 0, limit as isize)
            .await?;
        Ok(ids)
    }

    async fn ids_contain(&self, key: &str, ids: &[i64]) -> Result<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(held) = self.near_ids(key).await {
            // Largest first, so the comparison is reversed.
            return Ok(ids
                .iter()
                .map(|id| held.binary_search_by(|probe| id.cmp(probe)).is_ok())
                .collect());
        }
        let mut conn = self.conn.clone();
        let scores: Vec<Option<f64>> = redis::cmd("ZMSCORE")
            .arg(self.key(key))
            .arg(ids)
            .query_async(&mut conn)
            .await?;
        Ok(scores.into_iter().map(|s| s.is_some()).collect())
    }
}
