//! The chat population, written straight into the server's database: users with sessions,
//! 1:1 channels for the pairs and 100-member groups. Thousands of channels through the API
//! would take longer than the measurements and measure nothing of interest.
//!
//! Rows look like the server's own: a 1:1 channel has kind `dm`, an empty name and the
//! `dm_key` "smaller_id:larger_id" (so `POST /v1/chat/dm/{username}` would find it); every
//! channel starts with `last_seq` and `last_message_id` at 0, as a new one does.
//!
//! [`write_users`] (users and sessions only) is the presence scenario's population too.

use crate::{
    db::{Db, Rows, Value},
    error::Error,
    seed::{new_token, session_rows, user_rows},
};

/// Users who only hold an idle WebSocket (the memory measurement opens all of them).
pub const IDLE_USERS: usize = 10_000;
/// 1:1 channels, two users each.
pub const PAIRS: usize = 1_000;
/// Groups by default (`--groups`), and members per group (the API's maximum, creator
/// included).
pub const GROUPS: usize = 20;
pub const GROUP_SIZE: usize = 100;

/// A seeded user the tool connects as.
#[derive(Debug, Clone)]
pub struct ChatUser {
    pub id: i64,
    /// Bearer token of the session written for this user.
    pub token: String,
}

/// Two users and their 1:1 channel.
#[derive(Debug, Clone)]
pub struct Pair {
    pub channel: i64,
    pub a: ChatUser,
    pub b: ChatUser,
}

/// A group channel and its members (the first is the creator).
#[derive(Debug, Clone)]
pub struct Group {
    pub channel: i64,
    pub members: Vec<ChatUser>,
}

/// Everyone the chat measurements act as, and how much was written.
#[derive(Debug)]
pub struct ChatPopulation {
    pub idle: Vec<ChatUser>,
    pub pairs: Vec<Pair>,
    pub groups: Vec<Group>,
    pub users: usize,
    pub channels: usize,
    pub memberships: usize,
}

/// How many of each the population holds.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Users with no channel.
    pub idle: usize,
    /// 1:1 channels.
    pub pairs: usize,
    /// Groups of [`GROUP_SIZE`].
    pub groups: usize,
}

impl Sizes {
    pub fn users(&self) -> usize {
        self.idle + 2 * self.pairs + self.groups * GROUP_SIZE
    }
}

/// Writes users, sessions, channels and members ([`IDLE_USERS`] idle users, [`PAIRS`]
/// pairs and `groups` groups of [`GROUP_SIZE`]).
pub async fn write(db: &Db, now_ms: i64, groups: usize) -> Result<ChatPopulation, Error> {
    let sizes = Sizes {
        idle: IDLE_USERS,
        pairs: PAIRS,
        groups,
    };
    write_sized(db, now_ms, sizes).await
}

/// Writes the population of `sizes`: users and sessions in one batch, channels and
/// members in another (on SQLite, a transaction each). No messages: the channels start
/// empty, so `message_stream` needs no update.
pub async fn write_sized(db: &Db, now_ms: i64, sizes: Sizes) -> Result<ChatPopulation, Error> {
    let users = write_users(db, 1, sizes.users(), "Chat user", now_ms).await?;
    let population = assemble(users, sizes);
    let (pairs, groups) = (&population.pairs, &population.groups);

    // (id, kind, name, creator, dm_key)
    let mut channels: Vec<(i64, &str, String, i64, Option<String>)> = Vec::new();
    let mut members: Vec<(i64, i64)> = Vec::new();
    for p in pairs {
        let key = format!("{}:{}", p.a.id.min(p.b.id), p.a.id.max(p.b.id));
        channels.push((p.channel, "dm", String::new(), p.a.id, Some(key)));
        members.push((p.channel, p.a.id));
        members.push((p.channel, p.b.id));
    }
    for (i, g) in groups.iter().enumerate() {
        let creator = g.members.first().map_or(0, |m| m.id);
        channels.push((g.channel, "group", format!("Load group {i}"), creator, None));
        members.extend(g.members.iter().map(|m| (g.channel, m.id)));
    }
    let mut batch = db.batch().await?;
    batch
        .insert(&Rows::new(
            "INSERT INTO channels (id, kind, name, creator_id, dm_key, created_at) ",
            channels.iter().map(|(id, kind, name, creator, key)| {
                [
                    Value::Int(*id),
                    Value::Text(kind.to_string()),
                    Value::Text(name.clone()),
                    Value::Int(*creator),
                    Value::NullableText(key.clone()),
                    Value::Int(now_ms),
                ]
            }),
        ))
        .await?;
    batch
        .insert(&Rows::new(
            "INSERT INTO channel_members (channel_id, user_id, joined_at) ",
            members.iter().map(|(channel, user)| {
                [Value::Int(*channel), Value::Int(*user), Value::Int(now_ms)]
            }),
        ))
        .await?;
    batch.commit().await?;
    Ok(population)
}

/// Lays `users` (in id order, [`Sizes::users`] of them) out as `sizes` asks: the idle
/// ones first, then the pairs, then the groups; channel ids count up from 1 (the server's
/// own are Snowflakes, far above them).
pub fn assemble(users: Vec<ChatUser>, sizes: Sizes) -> ChatPopulation {
    let total = users.len();
    let mut idle = users;
    let mut after_idle = idle.split_off(sizes.idle.min(idle.len()));
    let group_users = after_idle.split_off((2 * sizes.pairs).min(after_idle.len()));

    let mut next_channel = 1_i64;
    let mut pairs = Vec::with_capacity(sizes.pairs);
    let mut pair_users = after_idle.into_iter();
    while let (Some(a), Some(b)) = (pair_users.next(), pair_users.next()) {
        pairs.push(Pair {
            channel: next_channel,
            a,
            b,
        });
        next_channel += 1;
    }
    let mut groups = Vec::with_capacity(sizes.groups);
    for members in group_users.chunks(GROUP_SIZE) {
        groups.push(Group {
            channel: next_channel,
            members: members.to_vec(),
        });
        next_channel += 1;
    }
    ChatPopulation {
        users: total,
        channels: pairs.len() + groups.len(),
        memberships: 2 * pairs.len() + groups.iter().map(|g| g.members.len()).sum::<usize>(),
        idle,
        pairs,
        groups,
    }
}

/// Writes `count` users with ids from `first_id` (usernames `seed::username`, display names
/// "`label` <id>") and a session for each, in one batch (on SQLite, one transaction);
/// returns them in id order. Registering through the API would hash a password with Argon2
/// for every one of them.
pub async fn write_users(
    db: &Db,
    first_id: i64,
    count: usize,
    label: &str,
    now_ms: i64,
) -> Result<Vec<ChatUser>, Error> {
    let users: Vec<(ChatUser, Vec<u8>)> = (first_id..first_id + count as i64)
        .map(|id| {
            let (token, hash) = new_token();
            (ChatUser { id, token }, hash)
        })
        .collect();
    let mut batch = db.batch().await?;
    batch
        .insert(&user_rows(
            users
                .iter()
                .map(|(u, _)| (u.id, format!("{label} {}", u.id))),
            now_ms,
        ))
        .await?;
    batch
        .insert(&session_rows(
            users.iter().map(|(u, hash)| (hash.clone(), u.id)),
            now_ms,
        ))
        .await?;
    batch.commit().await?;
    Ok(users.into_iter().map(|(u, _)| u).collect())
}
