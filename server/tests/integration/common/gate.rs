//! A TCP forwarder between a node and its database that a test can shut and open again: a
//! network fault (or a database restart, as the node sees it) without stopping the
//! machine's database, which other tests share.

use anyhow::Result;
use std::sync::{Arc, Mutex};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// Forwards connections from a local port to `upstream` while open.
pub struct Gate {
    port: u16,
    /// `true` while open; shutting it drops every forwarded connection and refuses new ones.
    open: watch::Sender<bool>,
    /// The accept loop (aborted with the gate).
    task: tokio::task::JoinHandle<()>,
    /// Connections forwarded so far, shut or not.
    accepted: Arc<Mutex<u64>>,
}

impl Gate {
    /// An open gate to `upstream` (`host:port`).
    pub async fn to(upstream: &str) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (open, is_open) = watch::channel(true);
        let accepted = Arc::new(Mutex::new(0));
        let (upstream, count) = (upstream.to_string(), accepted.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !*is_open.borrow() {
                    // Shut: the connection is refused (closed at once).
                    drop(client);
                    continue;
                }
                *count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                let (upstream, mut is_open) = (upstream.clone(), is_open.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = is_open.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Ok(Self {
            port,
            open,
            task,
            accepted,
        })
    }

    /// The local port to connect to instead of the upstream's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Drops every forwarded connection and refuses new ones until [`Gate::open`].
    pub fn shut(&self) {
        self.open.send_replace(false);
    }

    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Connections forwarded so far.
    pub fn accepted(&self) -> u64 {
        *self.accepted.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.shut();
        self.task.abort();
    }
}
