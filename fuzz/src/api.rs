//! The `api_bodies` target: a request through the node's router (`startup::router`, all
//! its middleware) to one of the API's routes, with a body, a query and a caller the input
//! chooses.
//!
//! Input: a byte picking the route, a byte picking the caller (one of three users, or
//! none), then the query string, a NUL byte, and the body; `$G`, `$M`, `$P` in them stand
//! for the harness's ids. The last route takes its whole
//! path from the input. What must hold: no server error, and every client error in the
//! API's error shape (`check_api_answer`).

use crate::{check_api_answer, harness, request, Harness};
use axum::http::Method;

/// The API's routes that read a body or a query; `{user}`, `{post}` and `{group}` stand for
/// the harness's user, post and group; `{session}` is no one's session. Logging out, and
/// ending one of the harness's sessions, are left out: they would end the session the
/// other inputs use.
const ROUTES: &[(Method, &str)] = &[
    (Method::POST, "/v1/auth/register"),
    (Method::POST, "/v1/auth/login"),
    (Method::GET, "/v1/me"),
    (Method::GET, "/v1/users"),
    (Method::GET, "/v1/users/{user}"),
    (Method::GET, "/v1/users/{user}/posts"),
    (Method::PUT, "/v1/me/following/{user}"),
    (Method::DELETE, "/v1/me/following/{user}"),
    (Method::GET, "/v1/me/following"),
    (Method::GET, "/v1/me/followers"),
    (Method::GET, "/v1/me/friends"),
    (Method::GET, "/v1/me/feed"),
    (Method::POST, "/v1/me/feed"),
    (Method::GET, "/v1/posts/{post}"),
    (Method::DELETE, "/v1/posts/{post}"),
    (Method::PUT, "/v1/posts/{post}/like"),
    (Method::DELETE, "/v1/posts/{post}/like"),
    (Method::GET, "/v1/me/notifications"),
    (Method::GET, "/v1/me/notifications/unread"),
    (Method::POST, "/v1/me/notifications/read"),
    (Method::GET, "/v1/presence"),
    (Method::POST, "/v1/chat/dm/{user}"),
    (Method::POST, "/v1/chat/groups"),
    (Method::GET, "/v1/chat/channels"),
    (Method::GET, "/v1/chat/servers"),
    (Method::GET, "/v1/chat/sync"),
    (Method::GET, "/v1/chat/channels/{group}/messages"),
    (Method::POST, "/v1/chat/channels/{group}/messages"),
    (Method::POST, "/v1/chat/channels/{group}/read"),
    (Method::POST, "/v1/chat/channels/{group}/typing"),
    (Method::POST, "/v1/chat/channels/{group}/members"),
    (Method::DELETE, "/v1/chat/channels/{group}/members/{user}"),
    (Method::POST, "/v1/me/password"),
    (Method::GET, "/v1/me/sessions"),
    (Method::DELETE, "/v1/me/sessions/{session}"),
    (Method::PATCH, "/v1/me"),
    (
        Method::PATCH,
        "/v1/chat/channels/{group}/messages/{message}",
    ),
    (
        Method::DELETE,
        "/v1/chat/channels/{group}/messages/{message}",
    ),
    // The body is the image: random bytes, an image's header with any sizes, a form.
    (Method::POST, "/v1/media"),
    (Method::PATCH, "/v1/media/{message}"),
];

/// Methods for the route whose path the input gives.
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

pub fn run(data: &[u8]) {
    let [route, caller, rest @ ..] = data else {
        return;
    };
    let (query, body) = match rest.iter().position(|b| *b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&rest[..0], rest),
    };
    let h = harness();
    let (query, body) = (h.expand(query), h.expand(body));
    let (query, body) = (query.as_slice(), body.as_slice());
    let token = match caller % 4 {
        0 => Some(h.alice.token.as_str()),
        1 => Some(h.bob.token.as_str()),
        2 => Some(h.carol.token.as_str()),
        _ => None,
    };
    let route = usize::from(*route) % (ROUTES.len() + 1);
    let (method, uri) = match ROUTES.get(route) {
        Some((method, template)) => {
            let path = fill(h, template, caller);
            let query = if path == "/v1/chat/sync" {
                without_wait(query)
            } else {
                escape(query)
            };
            let uri = if query.is_empty() {
                path
            } else {
                format!("{path}?{query}")
            };
            (method.clone(), uri)
        }
        None => (
            METHODS[usize::from(*caller >> 2) % METHODS.len()].clone(),
            format!("/v1/{}", escape(query)),
        ),
    };
    let Ok(request) = request(method.clone(), &uri, token, body.to_vec()) else {
        return;
    };
    h.runtime.block_on(async {
        let answer = h.call(request).await;
        check_api_answer(&format!("{method} {uri}"), &answer);
    });
}

/// The route's path with the harness's ids; the caller byte's high bits pick the user it
/// names.
fn fill(h: &Harness, template: &str, caller: &u8) -> String {
    let user = match caller >> 2 & 3 {
        0 => &h.alice.username,
        1 => &h.bob.username,
        2 => &h.carol.username,
        _ => "fz_nobody",
    };
    template
        .replace("{user}", user)
        .replace("{post}", &h.post)
        .replace("{group}", &h.group)
        .replace("{message}", &h.message)
        .replace("{session}", "1")
}

/// The bytes as URI characters: what a URI may hold stays (`%` too, so broken escapes
/// reach the server), the rest is percent-encoded.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A sync query that answers at once: the input's `timeout` is replaced by 0, so a long
/// poll does not hold the fuzzer for its 30 s.
fn without_wait(query: &[u8]) -> String {
    let kept: Vec<String> = escape(query)
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("timeout"))
        .map(str::to_string)
        .chain(["timeout=0".to_string()])
        .collect();
    kept.join("&")
}
