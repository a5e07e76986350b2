//! The durable store under a steady stream of writes (storage does not depend on the
//! cache backend, so this runs once, on the in-process one).

use crate::common::{spawn_app, Backend};
use anyhow::{Context as _, Result};
use kith::{chat::writer::NewMessage, error::AppError};
use std::io::Read as _;

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
    // log copied to its end when a transaction starts).
    const SENDERS: usize = 16;
    const EACH: usize = 400;
    let (progress, mut done) = tokio::sync::mpsc::unbounded_channel();
    let senders: Vec<_> = (0..SENDERS)
        .map(|t| {
            let (writer, progress) = (app.state.messages.clone(), progress.clone());
            tokio::spawn(async move {
                for i in 0..EACH {
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

    // The log's generation half-way through, and at the end of the stream.
    let total = SENDERS * EACH;
    for _ in 0..total / 2 {
        done.recv().await.context("a sender stopped early")?;
    }
    let half_way = log_generation(&wal)?;
    while done.recv().await.is_some() {}
    let at_end = log_generation(&wal)?;
    for sender in senders {
        sender.await??;
    }
    assert!(
        at_end > half_way,
        "the log was not started over during the last {} of {total} back-to-back sends \
         (generation {half_way} at both ends)",
        total / 2
    );
    Ok(())
}
