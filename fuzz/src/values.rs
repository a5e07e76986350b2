//! The `cursors` and `content` targets: the parsers and checks every request's values go
//! through, with the properties their callers rely on.

use app::{
    model::{rules, Id},
    protocol::{echoed_client_msg_id, parse_client_frame},
};
use bytes::Bytes;
use kith::{
    chat::ws::wake::{self, Wake},
    feed::caches::render_members,
    pagination::{time_id_cursor, PageQuery, MAX_LIMIT},
};

/// `limit` and `cursor` query values, ids, and the wake-up payloads on pub/sub.
pub fn cursors(data: &[u8]) {
    wake_round_trip(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let query = PageQuery {
        limit: Some(text.to_string()),
        cursor: Some(text.to_string()),
    };
    if let Ok(limit) = query.limit() {
        assert!(
            (1..=MAX_LIMIT).contains(&limit),
            "limit {limit} from {text:?}"
        );
    }
    if let Ok(Some(id)) = query.id_cursor() {
        assert!(id > 0, "cursor {id} from {text:?}");
    }
    if let Ok(Some((time, id))) = query.time_id_cursor() {
        let again = PageQuery {
            limit: None,
            cursor: Some(time_id_cursor(time, id)),
        };
        assert_eq!(again.time_id_cursor().ok(), Some(Some((time, id))));
    }
    match text.parse::<Id>() {
        Ok(id) => {
            assert!(id.0 >= 0);
            assert_eq!(id.to_string().parse::<Id>(), Ok(id));
            let quoted = serde_json::to_string(&id).unwrap_or_default();
            assert_eq!(serde_json::from_str::<Id>(&quoted).ok(), Some(id));
            let earlier = id.millis_earlier(i64::from(data.len() as u32));
            assert!(earlier <= id, "{earlier:?} is later than {id:?}");
        }
        Err(_) => {
            let quoted = serde_json::Value::String(text.to_string()).to_string();
            assert!(serde_json::from_str::<Id>(&quoted).is_err());
        }
    }
}

/// A payload that parses encodes back to one that parses the same.
fn wake_round_trip(data: &[u8]) {
    let payload = Bytes::copy_from_slice(data);
    match wake::parse(&payload) {
        Some(Wake::Frame {
            origin,
            message,
            json,
        }) => {
            let again = wake::frame(origin, message, &json);
            match wake::parse(&again) {
                Some(Wake::Frame {
                    origin: o,
                    message: m,
                    json: j,
                }) => assert!(o == origin && m == message && j == json),
                _ => panic!("a re-encoded wake-up does not parse"),
            }
        }
        Some(Wake::Revoke(hash)) => {
            assert!(
                matches!(wake::parse(&wake::revoke(&hash)), Some(Wake::Revoke(h)) if h == hash)
            );
        }
        None => {}
    }
}

/// Content, names and passwords, and the client frames' parser.
pub fn content(data: &[u8]) {
    let (stamp, rest) = match data.split_first_chunk::<8>() {
        Some((stamp, rest)) => (i64::from_le_bytes(*stamp), rest),
        None => (0, data),
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let trimmed = text.trim().chars().count();
    if rules::check_post(text, 0).is_ok() {
        assert!((1..=rules::MAX_POST_CHARS).contains(&trimmed));
    }
    if rules::check_message(text, 0).is_ok() {
        assert!(trimmed > 0 && text.chars().count() <= rules::MAX_MESSAGE_CHARS);
    }
    if rules::check_display_name(text).is_ok() {
        assert!(trimmed <= 64 && !text.chars().any(char::is_control));
    }
    if rules::check_username(text).is_ok() {
        assert!((3..=32).contains(&text.len()));
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
    }
    if rules::check_password(text).is_ok() {
        assert!((8..=128).contains(&text.chars().count()));
    }
    // A cached post's members are JSON that gives the content back unchanged.
    let members = render_members(text, stamp, None);
    let mut object = b"{".to_vec();
    object.extend_from_slice(&members);
    object.push(b'}');
    match serde_json::from_slice::<serde_json::Value>(&object) {
        Ok(value) => assert_eq!(value["content"].as_str(), Some(text)),
        Err(e) => panic!("a post's cached members are not JSON ({e}) at {stamp}"),
    }
    // A frame that parses serialises to one that parses the same; one that does not
    // still gives back the client_msg_id it named.
    match parse_client_frame(text) {
        Ok(frame) => {
            let again = serde_json::to_string(&frame).unwrap_or_default();
            assert_eq!(parse_client_frame(&again).ok(), Some(frame));
        }
        Err(e) => assert_eq!(e.client_msg_id, echoed_client_msg_id(text)),
    }
}
