//! The authorization matrix: every route of the API, as the served OpenAPI document lists
//! them, called by each kind of caller, with the status each must get. A route added
//! without a row here fails the test, so none can skip it.

use crate::common::{spawn_app, Backend, TestApp, TestUser};

use anyhow::{anyhow, ensure, Context as _, Result};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    /// No token.
    Anonymous,
    /// The token of a session that was ended.
    Revoked,
    /// Signed in, with no part in the resource (not a member of the group, not the author).
    Stranger,
    /// A member of the group (someone else's post: a reader).
    Member,
    /// The group's creator, the post's author.
    Owner,
}

const CALLERS: [Who; 5] = [
    Who::Anonymous,
    Who::Revoked,
    Who::Stranger,
    Who::Member,
    Who::Owner,
];

/// A route and the status each caller gets, in the order of [`CALLERS`].
struct Row {
    method: &'static str,
    path: &'static str,
    expect: [u16; 5],
}

const fn row(method: &'static str, path: &'static str, expect: [u16; 5]) -> Row {
    Row {
        method,
        path,
        expect,
    }
}

/// Open to everyone, a token or not.
const PUBLIC: [u16; 5] = [200, 200, 200, 200, 200];
/// Open to everyone; a token that is presented must be valid.
const PUBLIC_READ: [u16; 5] = [200, 401, 200, 200, 200];
/// Any signed-in user.
const SIGNED_IN: [u16; 5] = [401, 401, 200, 200, 200];
const SIGNED_IN_204: [u16; 5] = [401, 401, 204, 204, 204];
const SIGNED_IN_201: [u16; 5] = [401, 401, 201, 201, 201];
/// Members of the group (those who share a channel with its owner) only.
const MEMBERS: [u16; 5] = [401, 401, 403, 200, 200];
const MEMBERS_204: [u16; 5] = [401, 401, 403, 204, 204];
const MEMBERS_201: [u16; 5] = [401, 401, 403, 201, 201];
/// The owner only.
const OWNER_204: [u16; 5] = [401, 401, 403, 403, 204];

const MATRIX: &[Row] = &[
    row("GET", "/healthz", PUBLIC),
    row("GET", "/readyz", PUBLIC),
    row("GET", "/metrics", PUBLIC),
    row("POST", "/v1/auth/register", [201, 201, 201, 201, 201]),
    row("POST", "/v1/auth/login", PUBLIC),
    row("POST", "/v1/auth/logout", SIGNED_IN_204),
    row("GET", "/v1/me", SIGNED_IN),
    row("PATCH", "/v1/me", SIGNED_IN),
    row("GET", "/v1/me/sessions", SIGNED_IN),
    // A second session of the owner's: only the owner may end it.
    row("DELETE", "/v1/me/sessions/{id}", [401, 401, 404, 404, 204]),
    // After the row above: it ends the callers' other sessions. The new password is the
    // old one, so the callers' later logins still work.
    row("POST", "/v1/me/password", SIGNED_IN_204),
    row("GET", "/v1/users", PUBLIC_READ),
    row("GET", "/v1/users/{username}", PUBLIC_READ),
    row("GET", "/v1/users/{username}/posts", PUBLIC_READ),
    row("PUT", "/v1/me/following/{username}", SIGNED_IN_204),
    row("DELETE", "/v1/me/following/{username}", SIGNED_IN_204),
    row("GET", "/v1/me/following", SIGNED_IN),
    row("GET", "/v1/me/followers", SIGNED_IN),
    row("GET", "/v1/me/friends", SIGNED_IN),
    // Blocked and unblocked at once: the rows below still reach `az_kept`.
    row("PUT", "/v1/me/blocks/{username}", SIGNED_IN_204),
    row("GET", "/v1/me/blocks", SIGNED_IN),
    row("DELETE", "/v1/me/blocks/{username}", SIGNED_IN_204),
    row("GET", "/v1/me/feed", SIGNED_IN),
    row("POST", "/v1/me/feed", SIGNED_IN_201),
    row("GET", "/v1/posts/{id}", PUBLIC_READ),
    row("DELETE", "/v1/posts/{id}", OWNER_204),
    row("PUT", "/v1/posts/{id}/like", SIGNED_IN_204),
    row("DELETE", "/v1/posts/{id}/like", SIGNED_IN_204),
    row("GET", "/v1/me/notifications", SIGNED_IN),
    row("GET", "/v1/me/notifications/unread", SIGNED_IN),
    row("POST", "/v1/me/notifications/read", SIGNED_IN_204),
    // The owner's presence: seen by those who share a channel with them, or are friends.
    row("GET", "/v1/presence", MEMBERS),
    row("POST", "/v1/chat/dm/{username}", SIGNED_IN),
    row("POST", "/v1/chat/groups", SIGNED_IN_201),
    row("GET", "/v1/chat/channels", SIGNED_IN),
    row("GET", "/v1/chat/servers", SIGNED_IN),
    row("GET", "/v1/chat/sync", SIGNED_IN),
    row("GET", "/v1/chat/channels/{id}/messages", MEMBERS),
    row("POST", "/v1/chat/channels/{id}/messages", MEMBERS_201),
    row("POST", "/v1/chat/channels/{id}/read", MEMBERS_204),
    row("POST", "/v1/chat/channels/{id}/typing", MEMBERS_204),
    row("POST", "/v1/chat/channels/{id}/members", MEMBERS_204),
    row("PATCH", "/v1/chat/channels/{id}", MEMBERS),
    row(
        "DELETE",
        "/v1/chat/channels/{id}/members/{username}",
        OWNER_204,
    ),
    // The owner's message: only its sender edits or deletes it (deleted last).
    row(
        "PATCH",
        "/v1/chat/channels/{id}/messages/{message_id}",
        [401, 401, 403, 403, 200],
    ),
    row(
        "DELETE",
        "/v1/chat/channels/{id}/messages/{message_id}",
        OWNER_204,
    ),
    row("POST", "/v1/media", SIGNED_IN_201),
    row("GET", "/media/{file}", PUBLIC),
    // Only the uploader may describe an upload; to anyone else it does not exist.
    row("PATCH", "/v1/media/{id}", [401, 401, 404, 404, 200]),
    // Last: each caller deletes their own account.
    row("DELETE", "/v1/me", SIGNED_IN_204),
];

/// The world the calls act on.
struct World {
    app: TestApp,
    owner: TestUser,
    member: TestUser,
    stranger: TestUser,
    /// A token whose session was ended.
    revoked: String,
    /// The owner's group (the member and `az_kept` in it) and a message in it.
    group: String,
    message: String,
    /// The owner's post, and one for the delete row.
    post: String,
    doomed_post: String,
    /// A second session of the owner's, for the row that ends one.
    owner_session: String,
    /// The file of an image the owner uploaded (`{sha256}.png`), and its id.
    media_file: String,
    media_id: String,
}

/// A small PNG image.
fn png() -> Result<Vec<u8>> {
    let picture = image::DynamicImage::ImageRgb8(image::ImageBuffer::from_pixel(
        6,
        4,
        image::Rgb([10, 20, 30]),
    ));
    let mut out = std::io::Cursor::new(Vec::new());
    picture.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

impl World {
    async fn new() -> Result<Self> {
        let app = spawn_app(Backend::Memory).await?;
        let owner = app.register("az_owner").await?;
        let member = app.register("az_member").await?;
        let stranger = app.register("az_stranger").await?;
        let gone = app.register("az_revoked").await?;
        for name in ["az_kept", "az_added_1", "az_added_2"] {
            app.register(name).await?;
        }
        let logout = app
            .post_json("/v1/auth/logout", &json!({}), Some(&gone.token))
            .await?;
        ensure!(logout.status() == 204, "logout: {}", logout.status());
        let group: Value = app
            .post_json(
                "/v1/chat/groups",
                &json!({"name": "matrix", "members": ["az_member", "az_kept"]}),
                Some(&owner.token),
            )
            .await?
            .json()
            .await?;
        let group = group["id"].as_str().context("group id")?.to_string();
        let message: Value = app
            .post_json(
                &format!("/v1/chat/channels/{group}/messages"),
                &json!({"content": "first", "client_msg_id": "matrix-0"}),
                Some(&owner.token),
            )
            .await?
            .json()
            .await?;
        let message = message["id"].as_str().context("message id")?.to_string();
        let post = app.post_as(&owner, "a post").await?;
        let doomed = app.post_as(&owner, "a post to delete").await?;
        let second: Value = app
            .post_json(
                "/v1/auth/login",
                &json!({"username": "az_owner", "password": owner.password}),
                None,
            )
            .await?
            .json()
            .await?;
        let second = second["token"].as_str().context("token")?;
        let sessions: Value = app
            .get("/v1/me/sessions", Some(second))
            .await?
            .json()
            .await?;
        let owner_session = sessions["items"]
            .as_array()
            .context("sessions")?
            .iter()
            .find(|s| s["current"] == true)
            .and_then(|s| s["id"].as_str())
            .context("the second session's id")?
            .to_string();
        let media: Value = app
            .client
            .post(app.url("/v1/media"))
            .bearer_auth(&owner.token)
            .body(png()?)
            .send()
            .await?
            .json()
            .await?;
        let media_file = media["url"]
            .as_str()
            .and_then(|url| url.strip_prefix("/media/"))
            .context("the upload's url")?
            .to_string();
        let media_id = media["id"].as_str().context("the upload's id")?.to_string();
        Ok(Self {
            media_id,
            media_file,
            owner_session,
            post: post["id"].as_str().context("post id")?.to_string(),
            doomed_post: doomed["id"].as_str().context("post id")?.to_string(),
            app,
            owner,
            member,
            stranger,
            revoked: gone.token,
            group,
            message,
        })
    }

    fn user(&self, who: Who) -> Option<&TestUser> {
        match who {
            Who::Anonymous | Who::Revoked => None,
            Who::Stranger => Some(&self.stranger),
            Who::Member => Some(&self.member),
            Who::Owner => Some(&self.owner),
        }
    }

    /// The token `who` calls with; for logout, a session of its own, so the caller's
    /// token keeps working for the other rows.
    async fn token(&self, who: Who, row: &Row) -> Result<Option<String>> {
        Ok(match (who, self.user(who)) {
            (Who::Revoked, _) => Some(self.revoked.clone()),
            (_, None) => None,
            (_, Some(user)) if row.path == "/v1/auth/logout" => {
                let login: Value = self
                    .app
                    .post_json(
                        "/v1/auth/login",
                        &json!({"username": user.username, "password": user.password}),
                        None,
                    )
                    .await?
                    .json()
                    .await?;
                Some(login["token"].as_str().context("token")?.to_string())
            }
            (_, Some(user)) => Some(user.token.clone()),
        })
    }

    /// The concrete path and body of `row` for `who`'s call `n` (each call creates what
    /// it creates under names of its own).
    fn request(&self, row: &Row, who: Who, n: usize) -> (String, Option<Value>) {
        let g = &self.group;
        let case = format!("{who:?}").to_lowercase();
        let path = match row.path {
            "/v1/users" => "/v1/users?prefix=az_".to_string(),
            "/v1/presence" => "/v1/presence?user=az_owner".to_string(),
            "/v1/users/{username}" => "/v1/users/az_owner".to_string(),
            "/v1/users/{username}/posts" => "/v1/users/az_owner/posts".to_string(),
            "/v1/me/following/{username}" => "/v1/me/following/az_kept".to_string(),
            "/v1/me/blocks/{username}" => "/v1/me/blocks/az_kept".to_string(),
            "/v1/posts/{id}" if row.method == "DELETE" => format!("/v1/posts/{}", self.doomed_post),
            "/v1/posts/{id}" => format!("/v1/posts/{}", self.post),
            "/v1/posts/{id}/like" => format!("/v1/posts/{}/like", self.post),
            "/v1/chat/dm/{username}" => "/v1/chat/dm/az_kept".to_string(),
            "/v1/chat/sync" => "/v1/chat/sync?since=0&timeout=0".to_string(),
            "/media/{file}" => format!("/media/{}", self.media_file),
            "/v1/media/{id}" => format!("/v1/media/{}", self.media_id),
            "/v1/me/sessions/{id}" => format!("/v1/me/sessions/{}", self.owner_session),
            "/v1/chat/channels/{id}/messages" => format!("/v1/chat/channels/{g}/messages"),
            "/v1/chat/channels/{id}/read" => format!("/v1/chat/channels/{g}/read"),
            "/v1/chat/channels/{id}/typing" => format!("/v1/chat/channels/{g}/typing"),
            "/v1/chat/channels/{id}/members" => format!("/v1/chat/channels/{g}/members"),
            "/v1/chat/channels/{id}" => format!("/v1/chat/channels/{g}"),
            "/v1/chat/channels/{id}/messages/{message_id}" => {
                format!("/v1/chat/channels/{g}/messages/{}", self.message)
            }
            "/v1/chat/channels/{id}/members/{username}" => {
                format!("/v1/chat/channels/{g}/members/az_kept")
            }
            other => other.to_string(),
        };
        let body = match (row.method, row.path) {
            ("POST", "/v1/auth/register") => Some(json!({
                "username": format!("az_new_{n}"),
                "password": "a long enough password",
            })),
            ("POST", "/v1/auth/login") => Some(json!({
                "username": "az_stranger",
                "password": self.stranger.password,
            })),
            ("POST", "/v1/me/feed") => Some(json!({"content": format!("by {case}")})),
            ("PATCH", "/v1/chat/channels/{id}/messages/{message_id}") => {
                Some(json!({"content": format!("edited by {case}")}))
            }
            ("DELETE", "/v1/me") => {
                let password = self.user(who).map_or("", |u| u.password.as_str());
                Some(json!({"password": password}))
            }
            ("PATCH", "/v1/chat/channels/{id}") => Some(json!({"name": format!("{case}'s name")})),
            ("PATCH", "/v1/media/{id}") => Some(json!({"alt": format!("described by {case}")})),
            ("PATCH", "/v1/me") => Some(json!({"bio": format!("bio of {case}")})),
            ("POST", "/v1/me/password") => {
                let password = self.user(who).map_or("", |u| u.password.as_str());
                Some(json!({"current_password": password, "new_password": password}))
            }
            ("POST", "/v1/chat/groups") => {
                Some(json!({"name": format!("{case}'s"), "members": ["az_kept"]}))
            }
            ("POST", "/v1/chat/channels/{id}/messages") => Some(json!({
                "content": format!("from {case}"),
                "client_msg_id": format!("matrix-{n}"),
            })),
            ("POST", "/v1/chat/channels/{id}/read") => Some(json!({"message_id": self.message})),
            ("POST", "/v1/me/notifications/read") => Some(json!({"up_to": self.post})),
            ("POST", "/v1/chat/channels/{id}/members") => Some(json!({
                "username": if who == Who::Owner { "az_added_2" } else { "az_added_1" },
            })),
            ("POST", _) => Some(json!({})),
            _ => None,
        };
        (path, body)
    }
}

#[tokio::test]
async fn every_route_answers_each_caller_as_its_rules_say() -> Result<()> {
    let world = World::new().await?;
    let app = &world.app;

    // The matrix covers exactly the routes the API documents.
    let doc: Value = app.get("/v1/openapi.json", None).await?.json().await?;
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().context("paths")? {
        for method in item.as_object().context("path item")?.keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let covered: BTreeSet<(String, String)> = MATRIX
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    ensure!(
        documented == covered,
        "routes without a row: {:?}; rows without a route: {:?}",
        documented.difference(&covered).collect::<Vec<_>>(),
        covered.difference(&documented).collect::<Vec<_>>()
    );

    let mut wrong = Vec::new();
    let mut n = 0;
    for row in MATRIX {
        for (who, expected) in CALLERS.into_iter().zip(row.expect) {
            n += 1;
            let (path, body) = world.request(row, who, n);
            let method = Method::from_bytes(row.method.as_bytes())?;
            let mut request = app.client.request(method, app.url(&path));
            if let Some(token) = world.token(who, row).await? {
                request = request.bearer_auth(token);
            }
            if row.path == "/v1/media" {
                request = request.header("content-type", "image/png").body(png()?);
            } else if let Some(body) = &body {
                request = request.json(body);
            }
            let got = request.send().await?.status().as_u16();
            if got != expected {
                wrong.push(format!(
                    "{} {path} as {who:?}: {got}, want {expected}",
                    row.method
                ));
            }
        }
    }
    if !wrong.is_empty() {
        return Err(anyhow!(
            "{} of {n} calls:\n{}",
            wrong.len(),
            wrong.join("\n")
        ));
    }
    Ok(())
}
