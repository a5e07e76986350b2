//! The chaos run's people, made through the balancer with the public API before the first
//! kill (a handful of users: registering them costs a few Argon2 hashes, no seeding).
//!
//! Chat: three 1:1 channels, each with one sender, and two groups with two senders each
//! whose receivers `recv0`…`recv3` are in both groups and, for three of them, a 1:1 too: their
//! devices follow one cursor over channels that several nodes write into at once, the case
//! where a message committed late with a smaller id could slip past a cursor.
//! Feed: two authors, three followers who follow both.

use crate::error::Error;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;

/// 1:1 channels, `dmsend{i}` writing to `recv{i}`.
const DMS: usize = 3;
/// Receivers in both groups.
const GROUP_RECEIVERS: usize = 4;
/// Senders per group.
const GROUP_SENDERS: usize = 2;
const GROUPS: usize = 2;
const AUTHORS: usize = 2;
const FOLLOWERS: usize = 3;
const PASSWORD: &str = "chaos load password";

/// A registered user and their session.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub token: String,
}

/// A channel and who sends into it.
#[derive(Debug, Clone)]
pub struct Channel {
    pub id: i64,
    /// "dm" or "group".
    pub kind: &'static str,
    pub members: Vec<i64>,
    pub senders: Vec<User>,
}

/// Everyone the run uses.
#[derive(Debug)]
pub struct Population {
    /// Every chat user; each gets one WebSocket and one long-poll device.
    pub chat_users: Vec<User>,
    pub channels: Vec<Channel>,
    pub authors: Vec<User>,
    pub followers: Vec<User>,
}

impl Population {
    /// Channel id → member user ids, for the checker.
    pub fn members(&self) -> HashMap<i64, Vec<i64>> {
        self.channels
            .iter()
            .map(|c| (c.id, c.members.clone()))
            .collect()
    }
}

/// Registers everyone and makes the channels and follows, through `base`.
pub async fn create(http: &Client, base: &str) -> Result<Population, Error> {
    let api = Api { http, base };
    let receivers = api.register_all("recv", GROUP_RECEIVERS).await?;
    let mut chat_users = receivers.clone();
    let mut channels = Vec::new();
    for (i, receiver) in receivers.iter().take(DMS).enumerate() {
        let sender = api.register(&format!("dmsend{i}")).await?;
        let id = api.dm(&sender, &receiver.name).await?;
        channels.push(Channel {
            id,
            kind: "dm",
            members: vec![sender.id, receiver.id],
            senders: vec![sender.clone()],
        });
        chat_users.push(sender);
    }
    for g in 0..GROUPS {
        let senders = api
            .register_all(&format!("g{g}send"), GROUP_SENDERS)
            .await?;
        let id = api
            .group(
                &senders[0],
                &format!("chaos {g}"),
                &senders[1..],
                &receivers,
            )
            .await?;
        channels.push(Channel {
            id,
            kind: "group",
            members: senders.iter().chain(&receivers).map(|u| u.id).collect(),
            senders: senders.clone(),
        });
        chat_users.extend(senders);
    }
    let authors = api.register_all("author", AUTHORS).await?;
    let followers = api.register_all("follower", FOLLOWERS).await?;
    for follower in &followers {
        for author in &authors {
            api.follow(follower, &author.name).await?;
        }
    }
    Ok(Population {
        chat_users,
        channels,
        authors,
        followers,
    })
}

/// The few calls the set-up makes; any answer but the documented one stops the run.
struct Api<'a> {
    http: &'a Client,
    base: &'a str,
}

impl Api<'_> {
    async fn register_all(&self, prefix: &str, n: usize) -> Result<Vec<User>, Error> {
        let mut users = Vec::with_capacity(n);
        for i in 0..n {
            users.push(self.register(&format!("{prefix}{i}")).await?);
        }
        Ok(users)
    }

    async fn register(&self, name: &str) -> Result<User, Error> {
        let body = json!({"username": name, "password": PASSWORD});
        let answer = self
            .call(
                self.http
                    .post(format!("{}/v1/auth/register", self.base))
                    .json(&body),
                StatusCode::CREATED,
                "register",
            )
            .await?;
        Ok(User {
            id: id_of(&answer["user"]["id"], "user id")?,
            name: name.to_string(),
            token: answer["token"]
                .as_str()
                .ok_or_else(|| Error::Run("register: no token in the answer".into()))?
                .to_string(),
        })
    }

    async fn dm(&self, from: &User, to: &str) -> Result<i64, Error> {
        let answer = self
            .call(
                self.http
                    .post(format!("{}/v1/chat/dm/{to}", self.base))
                    .bearer_auth(&from.token),
                StatusCode::OK,
                "open a 1:1",
            )
            .await?;
        id_of(&answer["id"], "channel id")
    }

    async fn group(
        &self,
        creator: &User,
        name: &str,
        senders: &[User],
        receivers: &[User],
    ) -> Result<i64, Error> {
        let members: Vec<&str> = senders
            .iter()
            .chain(receivers)
            .map(|u| u.name.as_str())
            .collect();
        let answer = self
            .call(
                self.http
                    .post(format!("{}/v1/chat/groups", self.base))
                    .bearer_auth(&creator.token)
                    .json(&json!({"name": name, "members": members})),
                StatusCode::CREATED,
                "create a group",
            )
            .await?;
        id_of(&answer["id"], "channel id")
    }

    async fn follow(&self, follower: &User, author: &str) -> Result<(), Error> {
        let resp = self
            .http
            .put(format!("{}/v1/me/following/{author}", self.base))
            .bearer_auth(&follower.token)
            .send()
            .await?;
        expect(resp.status(), StatusCode::NO_CONTENT, "follow")
    }

    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        want: StatusCode,
        what: &str,
    ) -> Result<Value, Error> {
        let resp = request.send().await?;
        if resp.status() != want {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(Error::Run(format!(
                "{what}: HTTP {status}, expected {want}: {body}"
            )));
        }
        Ok(resp.json().await?)
    }
}

fn expect(got: StatusCode, want: StatusCode, what: &str) -> Result<(), Error> {
    if got == want {
        Ok(())
    } else {
        Err(Error::Run(format!("{what}: HTTP {got}, expected {want}")))
    }
}

/// An id of the API: a decimal string.
pub fn id_of(v: &Value, what: &str) -> Result<i64, Error> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Run(format!("no {what} in the answer: {v}")))
}
