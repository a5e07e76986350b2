//! Wake-up payloads on a user's topic. Frames are forwarded to clients untouched.

use bytes::{BufMut, Bytes, BytesMut};

/// Where a message frame's message sits: for the connection's record of what it sent,
/// and of each channel's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub id: i64,
    pub channel: i64,
    pub seq: i64,
}

/// A frame for the user's connections except `origin` (0: none):
/// `F{origin}|{id}|{channel}|{seq}|{json}`, the message's place, or zeros for an event
/// that carries no message.
pub fn frame(origin: u64, message: Option<Placed>, json: &[u8]) -> Bytes {
    let Placed { id, channel, seq } = message.unwrap_or(Placed {
        id: 0,
        channel: 0,
        seq: 0,
    });
    let mut b = BytesMut::with_capacity(json.len() + 64);
    b.put_slice(format!("F{origin}|{id}|{channel}|{seq}|").as_bytes());
    b.put_slice(json);
    b.freeze()
}

/// The session with this token hash (base64url) was revoked: `R{hash}`.
pub fn revoke(token_hash: &str) -> Bytes {
    Bytes::from(format!("R{token_hash}"))
}

/// A decoded wake-up.
pub enum Wake {
    Frame {
        origin: u64,
        message: Option<Placed>,
        json: Bytes,
    },
    Revoke(String),
}

/// The number before the next `|` of `rest`, and what follows that `|`.
fn field<T: std::str::FromStr>(rest: &[u8]) -> Option<(T, &[u8])> {
    let end = rest.iter().position(|c| *c == b'|')?;
    let value = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    Some((value, &rest[end + 1..]))
}

pub fn parse(payload: &Bytes) -> Option<Wake> {
    match payload.first()? {
        b'F' => {
            let (origin, rest) = field(&payload[1..])?;
            let (id, rest) = field(rest)?;
            let (channel, rest) = field(rest)?;
            let (seq, rest) = field(rest)?;
            let message = (id > 0).then_some(Placed { id, channel, seq });
            Some(Wake::Frame {
                origin,
                message,
                json: payload.slice(payload.len() - rest.len()..),
            })
        }
        b'R' => Some(Wake::Revoke(
            std::str::from_utf8(&payload[1..]).ok()?.to_string(),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::chat::ws::wake;

    #[test]
    fn wake_payloads_round_trip() {
        let placed = wake::Placed {
            id: 7,
            channel: 9,
            seq: 3,
        };
        let p = wake::frame(42, Some(placed), br#"{"type":"message","x":"a|b"}"#);
        match wake::parse(&p) {
            Some(wake::Wake::Frame {
                origin,
                message,
                json,
            }) => {
                assert_eq!((origin, message), (42, Some(placed)));
                assert_eq!(&json[..], br#"{"type":"message","x":"a|b"}"#);
            }
            _ => panic!("not a frame"),
        }
        let event = wake::frame(0, None, b"{}");
        assert!(matches!(
            wake::parse(&event),
            Some(wake::Wake::Frame { message: None, .. })
        ));
        assert!(
            matches!(wake::parse(&wake::revoke("abc")), Some(wake::Wake::Revoke(h)) if h == "abc")
        );
        assert!(wake::parse(&bytes::Bytes::from_static(b"Fx|1|{}")).is_none());
    }
}
