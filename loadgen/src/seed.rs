//! The population, written straight into the server's database (the server keeps running;
//! on SQLite its WAL lets our writer and its readers coexist, and `busy_timeout` queues the
//! two writers; see `db` for how each engine is written).
//!
//! Shape, chosen so each fanout path is exercised at a realistic size:
//! * one celebrity followed by 100,000 users: at or above `KITH_CELEBRITY_THRESHOLD`
//!   (10,000), so their posts are pulled at read time;
//! * one big author with 9,999 followers, the largest push fanout the server does: it
//!   switches to pull *at* the threshold (`followers >= threshold`), so an author with
//!   exactly 10,000 followers would be pulled and measure nothing;
//! * 200 normal authors with 200 … 20 followers, Zipf-like by rank (the ~100-follower
//!   one is the reference for the celebrity comparison);
//! * 2,000 readers, the users who read their feeds: all follow the celebrity and the big
//!   author, and the normal authors' followers are dealt out among them.
//!
//! Readers cannot also follow 50 normal authors each, as first planned: that is 100,000
//! follows onto 200 authors, 500 followers apiece. The authors' follower counts set the
//! cost of every post's fanout, so they win; each reader follows 3 or 4 normal authors.
//!
//! Users are inserted before follows and posts because triggers keep `user_stats` (which
//! the server reads to choose push or pull) and need the user's row to exist.

use crate::{
    db::{Db, Rows, Value},
    error::Error,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use rand::{rngs::OsRng, seq::SliceRandom as _, RngCore as _};
use sha2::{Digest as _, Sha256};

/// `KITH_CELEBRITY_THRESHOLD` of the server under test (its default).
pub const CELEBRITY_THRESHOLD: usize = 10_000;
pub const CELEBRITY_FOLLOWERS: usize = 100_000;
pub const BIG_FOLLOWERS: usize = CELEBRITY_THRESHOLD - 1;
pub const NORMAL_AUTHORS: usize = 200;
pub const READERS: usize = 2_000;
/// Follower counts of the normal authors run from the first to the second, by rank.
const MOST_FOLLOWED: f64 = 200.0;
const LEAST_FOLLOWED: f64 = 20.0;

const CELEBRITY_ID: i64 = 1;
const BIG_ID: i64 = 2;
const FIRST_AUTHOR_ID: i64 = 3;
/// Followers (readers first) get ids from here; the gap keeps the roles apart at a glance.
const FIRST_FOLLOWER_ID: i64 = 1_001;
/// Nobody logs in with a password (sessions are written directly); the column only has to
/// hold something.
pub const NO_PASSWORD: &str = "$seeded$no-login";
pub const SESSION_LIFETIME_MS: i64 = 365 * 24 * 3600 * 1000;

/// A seeded user the tool acts as.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: i64,
    /// Bearer token of the session written for this user.
    pub token: String,
    pub followers: usize,
}

/// Everyone the measurements act as, and how much was written.
#[derive(Debug)]
pub struct Population {
    pub celebrity: Account,
    pub big: Account,
    /// Normal authors, most followed first.
    pub authors: Vec<Account>,
    pub readers: Vec<Account>,
    /// Ids of the big author's followers.
    pub big_followers: std::ops::Range<i64>,
    pub users: usize,
    pub follows: usize,
    pub sessions: usize,
}

impl Population {
    /// The normal author whose follower count is closest to `n`.
    pub fn author_near(&self, n: usize) -> Option<&Account> {
        self.authors.iter().min_by_key(|a| a.followers.abs_diff(n))
    }
}

/// Follower counts of the normal authors by rank: `MOST · rank^-s`, with `s` chosen so the
/// last rank gets `LEAST_FOLLOWED` (a Zipf law fitted to both ends).
pub fn author_follower_counts(authors: usize) -> Vec<usize> {
    let s = (MOST_FOLLOWED / LEAST_FOLLOWED).ln() / (authors.max(2) as f64).ln();
    (1..=authors)
        .map(|rank| (MOST_FOLLOWED * (rank as f64).powf(-s)).round() as usize)
        .collect()
}

/// A session token as the server issues them (`kith_` + base64url of 32 random bytes) and
/// the SHA-256 the server stores instead.
pub fn new_token() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = format!("kith_{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = Sha256::digest(token.as_bytes()).to_vec();
    (token, hash)
}

pub fn username(id: i64) -> String {
    format!("u{id:06}")
}

/// Writes the population, one batch per table (on SQLite one transaction each).
pub async fn write(db: &Db, now_ms: i64) -> Result<Population, Error> {
    let counts = author_follower_counts(NORMAL_AUTHORS);
    let account = |id: i64, followers: usize| Account {
        id,
        token: String::new(),
        followers,
    };
    let mut celebrity = account(CELEBRITY_ID, CELEBRITY_FOLLOWERS);
    let mut big = account(BIG_ID, BIG_FOLLOWERS);
    let mut authors: Vec<Account> = counts
        .iter()
        .enumerate()
        .map(|(i, n)| account(FIRST_AUTHOR_ID + i as i64, *n))
        .collect();
    let follower_ids: Vec<i64> =
        (FIRST_FOLLOWER_ID..FIRST_FOLLOWER_ID + CELEBRITY_FOLLOWERS as i64).collect();
    let mut readers: Vec<Account> = follower_ids[..READERS]
        .iter()
        .map(|id| account(*id, 0))
        .collect();

    // Users.
    let mut user_ids = vec![CELEBRITY_ID, BIG_ID];
    user_ids.extend(authors.iter().map(|a| a.id));
    user_ids.extend(&follower_ids);
    let mut batch = db.batch().await?;
    batch
        .insert(&user_rows(
            user_ids.iter().map(|id| (*id, format!("Load user {id}"))),
            now_ms,
        ))
        .await?;
    batch.commit().await?;

    // Sessions, for everyone who makes requests.
    let mut sessions = Vec::new();
    for a in std::iter::once(&mut celebrity)
        .chain(std::iter::once(&mut big))
        .chain(authors.iter_mut())
        .chain(readers.iter_mut())
    {
        let (token, hash) = new_token();
        a.token = token;
        sessions.push((hash, a.id));
    }
    let mut batch = db.batch().await?;
    batch
        .insert(&session_rows(
            sessions.iter().map(|(hash, id)| (hash.clone(), *id)),
            now_ms,
        ))
        .await?;
    batch.commit().await?;

    // Follows: (follower, followee).
    let mut follows: Vec<(i64, i64)> = Vec::new();
    follows.extend(follower_ids.iter().map(|f| (*f, celebrity.id)));
    follows.extend(follower_ids[..BIG_FOLLOWERS].iter().map(|f| (*f, big.id)));
    // Deal each author's followers from a shuffled cycle of readers: every reader ends up
    // with 3 or 4 authors, and an author never gets the same reader twice (counts ≤ 200 <
    // READERS consecutive slots).
    let mut deck: Vec<i64> = readers.iter().map(|r| r.id).collect();
    deck.shuffle(&mut rand::thread_rng());
    let mut next = 0;
    for author in &authors {
        for _ in 0..author.followers {
            follows.push((deck[next % deck.len()], author.id));
            next += 1;
        }
    }
    let mut batch = db.batch().await?;
    batch
        .insert(&Rows::new(
            "INSERT INTO follows (follower_id, followee_id, created_at) ",
            follows.iter().map(|(follower, followee)| {
                [
                    Value::Int(*follower),
                    Value::Int(*followee),
                    Value::Int(now_ms),
                ]
            }),
        ))
        .await?;
    batch.commit().await?;

    Ok(Population {
        big_followers: FIRST_FOLLOWER_ID..FIRST_FOLLOWER_ID + BIG_FOLLOWERS as i64,
        users: user_ids.len(),
        follows: follows.len(),
        sessions: sessions.len(),
        celebrity,
        big,
        authors,
        readers,
    })
}

/// `users` rows for `(id, display name)`: usernames from [`username`], no password.
pub fn user_rows(users: impl IntoIterator<Item = (i64, String)>, now_ms: i64) -> Rows<5> {
    Rows::new(
        "INSERT INTO users (id, username, display_name, password_hash, created_at) ",
        users.into_iter().map(|(id, display_name)| {
            [
                Value::Int(id),
                Value::Text(username(id)),
                Value::Text(display_name),
                Value::Text(NO_PASSWORD.to_string()),
                Value::Int(now_ms),
            ]
        }),
    )
}

/// `sessions` rows for `(token hash, user id)`, valid for [`SESSION_LIFETIME_MS`].
pub fn session_rows(sessions: impl IntoIterator<Item = (Vec<u8>, i64)>, now_ms: i64) -> Rows<4> {
    Rows::new(
        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) ",
        sessions.into_iter().map(|(hash, id)| {
            [
                Value::Bytes(hash),
                Value::Int(id),
                Value::Int(now_ms),
                Value::Int(now_ms + SESSION_LIFETIME_MS),
            ]
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follower_counts_span_200_to_20_and_fall() {
        let counts = author_follower_counts(NORMAL_AUTHORS);
        assert_eq!(counts.len(), NORMAL_AUTHORS);
        assert_eq!(counts.first(), Some(&200));
        assert_eq!(counts.last(), Some(&20));
        assert!(counts.windows(2).all(|w| w[0] >= w[1]));
        assert!(counts.iter().any(|c| c.abs_diff(100) <= 2));
    }

    #[test]
    fn tokens_have_the_servers_shape() {
        let (token, hash) = new_token();
        assert_eq!(token.len(), "kith_".len() + 43);
        assert!(token.starts_with("kith_"));
        assert_eq!(hash.len(), 32);
        assert_ne!(new_token().0, token);
    }
}
