//! SQLite's upkeep under a steady stream of writes (storage does not depend on the cache
//! backend, so this runs once, on the in-process one, and always on SQLite).

use crate::common::{spawn_with, Backend, Options, TestApp};
use anyhow::{Context as _, Result};
use kith::{error::AppError, storage::chat::NewMessage, storage::Raw};

/// The sender as a stored message's wake-up names them (only the id matters here).
fn author(id: i64) -> app::model::User {
    app::model::User {
        id: app::model::Id(id),
        username: format!("user{id}"),
        display_name: format!("User {id}"),
        bio: String::new(),
        created_at: chrono::DateTime::from_timestamp(0, 0).unwrap_or_default(),
    }
}
use std::{
    io::Read as _,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

/// The node's SQLite read pool.
fn reads(app: &TestApp) -> Result<&sqlx::SqlitePool> {
    match &app.state.store.raw {
        Raw::Sqlite(store) => Ok(store.reads()),
        Raw::Postgres(_) => anyhow::bail!("not on SQLite"),
    }
}

/// The node's SQLite write pool (one connection).
fn writes(app: &TestApp) -> Result<&sqlx::SqlitePool> {
    match &app.state.store.raw {
        Raw::Sqlite(store) => Ok(store.writes()),
        Raw::Postgres(_) => anyhow::bail!("not on SQLite"),
    }
}

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

/// A node with two users and their 1:1 channel: (node, channel, sender, database path).
async fn node_with_a_channel(sender: &str, peer: &str) -> Result<(TestApp, i64, i64, String)> {
    let app = spawn_with(
        Backend::Memory,
        Options {
            sqlite: true,
            ..Default::default()
        },
    )
    .await?;
    let a = app.register(sender).await?;
    app.register(peer).await?;
    let channel: serde_json::Value = app
        .client
        .post(app.url(&format!("/v1/chat/dm/{peer}")))
        .bearer_auth(&a.token)
        .send()
        .await?
        .json()
        .await?;
    let channel: i64 = channel["id"].as_str().context("channel id")?.parse()?;
    let database = app
        .state
        .config
        .database_url
        .expose()
        .trim_start_matches("sqlite://")
        .to_string();
    Ok((app, channel, a.id.parse()?, database))
}

#[tokio::test]
async fn the_write_ahead_log_starts_over_while_writes_keep_coming() -> Result<()> {
    let (app, channel, sender, database) = node_with_a_channel("walwriter", "walpeer").await?;
    let wal = format!("{database}-wal");

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
                        .write(
                            NewMessage {
                                channel,
                                sender,
                                content: format!("message {t}-{i}"),
                                client_msg_id: format!("wal-{t}-{i}"),
                                now: kith::storage::now_ms(),
                                media: None,
                            },
                            author(sender),
                            0,
                        )
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

/// The messages' foreign keys are checked at `COMMIT` (so the writer's batch insert needs
/// no statement journal and no per-transaction pragma), and deleting a channel still
/// removes its messages at once.
#[tokio::test]
async fn message_foreign_keys_are_checked_at_commit_and_still_cascade() -> Result<()> {
    let (app, channel, sender, _) = node_with_a_channel("fkwriter", "fkpeer").await?;
    app.state
        .messages
        .write(
            NewMessage {
                channel,
                sender,
                content: "kept until the channel goes".into(),
                client_msg_id: "fk-1".into(),
                now: kith::storage::now_ms(),
                media: None,
            },
            author(sender),
            0,
        )
        .await?;

    // A message in a channel that does not exist: the statement takes it, the commit
    // refuses it, and nothing of the transaction stays.
    let mut tx = writes(&app)?.begin().await?;
    sqlx::query(
        "INSERT INTO messages (channel_id, id, seq, sender_id, content, client_msg_id, created_at)
         VALUES (?1, 1, 1, ?2, 'orphan', 'fk-orphan', 0)",
    )
    .bind(channel + 1_000_000)
    .bind(sender)
    .execute(&mut *tx)
    .await?;
    match tx.commit().await {
        Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {}
        other => anyhow::bail!("expected a foreign key violation at commit, got {other:?}"),
    }
    let orphans: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE client_msg_id = 'fk-orphan'")
            .fetch_one(reads(&app)?)
            .await?;
    assert_eq!(
        orphans, 0,
        "the refused transaction left its message behind"
    );

    let count = |db| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM messages WHERE channel_id = ?1")
            .bind(channel)
            .fetch_one(db)
    };
    assert_eq!(count(reads(&app)?).await?, 1);
    // The cascade happens with the delete, not at commit: inside the transaction the
    // messages are already gone.
    let mut tx = writes(&app)?.begin().await?;
    sqlx::query("DELETE FROM channels WHERE id = ?1")
        .bind(channel)
        .execute(&mut *tx)
        .await?;
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE channel_id = ?1")
        .bind(channel)
        .fetch_one(&mut *tx)
        .await?;
    assert_eq!(
        left, 0,
        "deleting the channel left its messages until commit"
    );
    tx.commit().await?;
    assert_eq!(
        count(reads(&app)?).await?,
        0,
        "deleting the channel left its messages"
    );
    Ok(())
}

/// Set for a child run of [`child_opens_and_closes_the_database`]: the database it opens.
const CHILD_DATABASE: &str = "KITH_TEST_CHILD_DATABASE";

/// What the child prints once it has closed the database, so the parent knows it ran.
const CHILD_DONE: &str = "child closed the database";

/// Not a test of its own (so ignored): the body of the other process in the test below,
/// which runs this test binary again with `--ignored --exact` and [`CHILD_DATABASE`] set.
#[tokio::test]
#[ignore = "run by another_process_closing_the_database_leaves_the_nodes_log_in_place"]
async fn child_opens_and_closes_the_database() -> Result<()> {
    use sqlx::Connection as _;
    let path = std::env::var(CHILD_DATABASE).context("run by the parent test only")?;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}")).await?;
    let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    println!("{CHILD_DONE}");
    Ok(())
}

/// Another program that opens the database and closes it again (a backup, the `sqlite3`
/// shell, the load tool's seeding) must not take the write-ahead log away from the running
/// node. Closing a connection deletes the log if it can take the database's exclusive
/// lock, which the node's connections hold off, unless something in the node dropped their
/// POSIX locks by closing a descriptor of the file (the checkpointer's flush keeps its own
/// open for that reason).
#[tokio::test]
async fn another_process_closing_the_database_leaves_the_nodes_log_in_place() -> Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let (app, channel, sender, database) = node_with_a_channel("logkeeper", "logpeer").await?;
    let wal = format!("{database}-wal");
    let send = |n: usize| {
        app.state.messages.write(
            NewMessage {
                channel,
                sender,
                content: format!("kept {n}"),
                client_msg_id: format!("keep-{n}"),
                now: kith::storage::now_ms(),
                media: None,
            },
            author(sender),
            0,
        )
    };

    // Writes until the log has started over once: the checkpointer has then run both
    // steps, and flushed the files between them.
    let first = log_generation(&wal)?;
    let mut sent = 0;
    let started = std::time::Instant::now();
    while log_generation(&wal)? == first {
        anyhow::ensure!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the log did not start over in 30 s ({sent} sends)"
        );
        send(sent).await?;
        sent += 1;
    }
    let log = std::fs::metadata(&wal)?.ino();

    let child = std::process::Command::new(std::env::current_exe()?)
        .args([
            "storage::child_opens_and_closes_the_database",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_DATABASE, &database)
        .output()?;
    anyhow::ensure!(
        child.status.success() && String::from_utf8_lossy(&child.stdout).contains(CHILD_DONE),
        "the other process did not open and close the database: {}{}",
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );

    let after = std::fs::metadata(&wal)
        .context("the other process deleted the node's write-ahead log")?
        .ino();
    assert_eq!(after, log, "the write-ahead log was deleted and made anew");
    // And what the node writes next is what everyone reads.
    send(sent).await?;
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE channel_id = ?1")
        .bind(channel)
        .fetch_one(reads(&app)?)
        .await?;
    assert_eq!(stored, sent as i64 + 1);
    Ok(())
}
