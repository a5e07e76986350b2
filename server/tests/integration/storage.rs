//! The durable store under a steady stream of writes (storage does not depend on the
//! cache backend, so this runs once, on the in-process one).

use crate::common::{spawn_app, Backend};
use anyhow::{Context as _, Result};
use kith::{chat::writer::NewMessage, error::AppError};
use std::{
    io::Read as _,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

/// The write-ahead log header's checkpoint sequence number: SQLite bumps it each time it
/// starts the log over from its beginning.
fn log_generation(wal: &str) -> Result<u32> {
    let mut header = [0u8; 16];
    std::fs::File::open(wal)
        .with_context(|| format!("opening {wal}"))?
        .read_exact(&mut header)?;
    Ok(u32::from_be_bytes([
        header[12], header[13], header[14], header[15],
    ]))
}

#[tokio::test]
async fn the_write_ahead_log_starts_over_while_writes_keep_coming() -> Result<()> {
    let app = spawn_app(Backend::Memory).await?;
    let (a, _b) = (
        app.register("walwriter").await?,
        app.register("walpeer").await?,
    );
    let channel: serde_json::Value = app
        .client
        .post(app.url("/v1/chat/dm/walpeer"))
        .bearer_auth(&a.token)
        .send()
        .await?
        .json()
        .await?;
    let channel: i64 = channel["id"].as_str().context("channel id")?.parse()?;
    let sender: i64 = a.id.parse()?;
    let wal = format!(
        "{}-wal",
        app.state
            .config
            .database_url
            .trim_start_matches("sqlite://")
    );

    // Senders that never pause: the writer always has the next group waiting, so a commit
    // is in flight nearly all the time (a checkpoint beside the writer then never finds the
    // log copied to its end when a transaction starts). They stop once the log has started
    // over twice, or after `MAX_EACH` sends each (the failure).
    const SENDERS: usize = 16;
    const MAX_EACH: usize = 4_000;
    let stop = Arc::new(AtomicBool::new(false));
    let (progress, mut done) = tokio::sync::mpsc::unbounded_channel();
    let senders: Vec<_> = (0..SENDERS)
        .map(|t| {
            let (writer, progress) = (app.state.messages.clone(), progress.clone());
            let stop = stop.clone();
            tokio::spawn(async move {
                for i in 0..MAX_EACH {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    writer
                        .write(NewMessage {
                            channel,
                            sender,
                            content: format!("message {t}-{i}"),
                            client_msg_id: format!("wal-{t}-{i}"),
                            now: kith::db::now_ms(),
                        })
                        .await?;
                    let _ = progress.send(());
                }
                Ok::<_, AppError>(())
            })
        })
        .collect();
    drop(progress);

    // Twice, so that one start-over that happened to be due when the stream began does not
    // pass for the log starting over while writes keep coming.
    let first = log_generation(&wal)?;
    let (mut sent, mut last) = (0usize, first);
    while done.recv().await.is_some() {
        sent += 1;
        if sent % 64 == 0 {
            last = log_generation(&wal)?;
            if last >= first + 2 {
                stop.store(true, Ordering::Relaxed);
            }
        }
    }
    for sender in senders {
        sender.await??;
    }
    assert!(
        last >= first + 2,
        "the log started over {} times in {sent} back-to-back sends (twice expected)",
        last.wrapping_sub(first)
    );
    Ok(())
}
