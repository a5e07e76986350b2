//! An in-memory connection: the server's end is a [`Socket`](super::Socket) that
//! [`serve`](super::serve) runs on, the client's end two channels. Tests and the fuzz
//! targets drive the connection loop through it and read exactly the frames it queued.

use axum::extract::ws::Message as WsMessage;
use futures::{channel::mpsc, Sink, Stream, StreamExt};
use std::{
    pin::Pin,
    task::{Context, Poll},
};

/// The server's end.
pub struct Pipe {
    from_client: mpsc::UnboundedReceiver<Result<WsMessage, axum::Error>>,
    to_client: mpsc::UnboundedSender<WsMessage>,
}

/// The client's end: what it sends (dropping `to_server` ends the client's stream) and
/// what the loop wrote.
pub struct PipeClient {
    pub to_server: mpsc::UnboundedSender<Result<WsMessage, axum::Error>>,
    pub from_server: mpsc::UnboundedReceiver<WsMessage>,
}

/// A connected pair.
pub fn pipe() -> (Pipe, PipeClient) {
    let (to_server, from_client) = mpsc::unbounded();
    let (to_client, from_server) = mpsc::unbounded();
    (
        Pipe {
            from_client,
            to_client,
        },
        PipeClient {
            to_server,
            from_server,
        },
    )
}

impl Stream for Pipe {
    type Item = Result<WsMessage, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.from_client.poll_next_unpin(cx)
    }
}

impl Sink<WsMessage> for Pipe {
    type Error = axum::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.to_client.poll_ready(cx).map_err(axum::Error::new)
    }

    fn start_send(mut self: Pin<&mut Self>, item: WsMessage) -> Result<(), Self::Error> {
        self.to_client.start_send(item).map_err(axum::Error::new)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.to_client)
            .poll_flush(cx)
            .map_err(axum::Error::new)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.to_client)
            .poll_close(cx)
            .map_err(axum::Error::new)
    }
}
