//! The `client_frames` target: a WebSocket client's frames through the chat hub's
//! connection loop (`chat::ws::serve`) on an in-memory connection.
//!
//! The input is the frames, one per line (a line that is not UTF-8 goes as a binary
//! frame); its first byte picks who is connected; `$G`, `$M`, `$P` stand for the
//! harness's ids ([`Harness::expand`](crate::Harness::expand)). What must hold: the loop neither
//! panics nor hangs, it ends once the client is gone, and every text frame it writes is
//! a well-formed server frame.

use crate::harness;
use app::protocol::ServerFrame;
use axum::extract::ws::Message as WsMessage;
use kith::chat::ws::PipeClient;

/// More frames than the hub lets a connection send in a burst.
const MAX_FRAMES: usize = 64;

pub fn run(data: &[u8]) {
    let Some((&who, frames)) = data.split_first() else {
        return;
    };
    let h = harness();
    let frames = h.expand(frames);
    let account = if who & 1 == 0 { &h.alice } else { &h.bob };
    h.runtime.block_on(async {
        let (
            pipe,
            PipeClient {
                to_server,
                mut from_server,
            },
        ) = kith::chat::ws::pipe();
        let served = tokio::spawn(kith::chat::ws::serve(
            h.state.clone(),
            pipe,
            account.user.clone(),
            account.token.clone(),
            (),
        ));
        for line in frames.split(|b| *b == b'\n').take(MAX_FRAMES) {
            let frame = match std::str::from_utf8(line) {
                Ok(text) => WsMessage::Text(text.into()),
                Err(_) => WsMessage::Binary(line.to_vec().into()),
            };
            if to_server.unbounded_send(Ok(frame)).is_err() {
                break;
            }
        }
        drop(to_server);
        if let Err(e) = served.await {
            match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("the connection's task failed: {e}"),
            }
        }
        while let Ok(frame) = from_server.try_recv() {
            if crate::tracing() {
                eprintln!("<- {frame:?}");
            }
            if let WsMessage::Text(text) = frame {
                if let Err(e) = serde_json::from_str::<ServerFrame>(text.as_str()) {
                    panic!("the hub wrote a frame that is not a server frame ({e}): {text}");
                }
            }
        }
    });
}
