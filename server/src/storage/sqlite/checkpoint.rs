//! The checkpointer: folds the write-ahead log back into the database file beside the
//! node's writers, so that the log starts over instead of growing (SQLite's own checkpoint
//! inside a commit is off: `wal_autocheckpoint = 0`, see [`super::SqliteStore::connect`]).

use sqlx::SqlitePool;
use std::{
    collections::HashMap,
    fs::File,
    path::{Path, PathBuf},
    sync::{Arc, LazyLock, Mutex},
    time::Duration,
};

/// How often the checkpointer folds the write-ahead log back into the database file. Often,
/// so that each checkpoint is short: a checkpoint's copying competes for the CPU with the
/// node's other work, and the second step below holds the node's writes. At 5,000 chat
/// messages a second on one core, checkpoints every 250 ms put the 1:1 p99 at 6–14 ms,
/// every 25 ms at 3–5 ms, and none at all at 2–3 ms (see docs/benchmarks.md).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(25);
/// Step 2 of a checkpoint runs only after a step 1 that copied at most this many frames
/// (pages): 1,000 are ~4 MB, about 80 ms of 1:1 chat at 5,000 messages a second.
const STEP_TWO_AFTER_FRAMES: i64 = 1_000;
/// Step 2 runs at most this often. It holds the node's writes however little it copies (it
/// syncs the log and the database file: 0.75–1.1 ms of syncs after [`flush`], 2.2–5.8 ms
/// before), so every fourth tick: the log starts over every ~100 ms (~1,000 pages at 5,000
/// chat messages a second) instead of every ~27 ms, and writes are held a quarter as often.
const STEP_TWO_EVERY: Duration = Duration::from_millis(100);
/// The longest pause between checkpoints of a node that writes nothing.
const CHECKPOINT_IDLE_MAX: Duration = Duration::from_millis(400);

/// Checkpoints the write-ahead log every [`CHECKPOINT_EVERY`] while the node writes, in two
/// steps, so that the log is started over from its beginning instead of growing for as long
/// as writes come:
///
/// 1. a `PASSIVE` checkpoint on a read connection copies (each page's newest version of)
///    the log into the database file beside the writers, waiting for none of them;
/// 2. the same on the node's write connection copies what was committed meanwhile, a few
///    milliseconds' worth. No commit of this node can land while it runs, so it reaches the
///    end of the log, and the next write transaction restarts the log from its start.
///    It runs at most every [`STEP_TWO_EVERY`]. After a step 1 that copied more than
///    [`STEP_TWO_AFTER_FRAMES`] (a burst), step 2 waits for a later tick: it would hold
///    the node's writes for as long as the burst's tail takes to copy.
///
/// Step 1 alone never catches up under a steady stream of commits: each checkpoint ends a
/// little behind the log's end, SQLite restarts a log only once all of it is copied, and
/// the log grew by ~50 MB a second under 5,000 chat messages a second. A long log costs
/// every page read a search through more of its index, and every commit new file blocks.
/// Running the whole checkpoint on the write connection instead would hold every write of
/// the node for the full copy.
///
/// After each step 1 that found new writes, the checkpointer flushes the log and the
/// database file to disk itself ([`flush`]), beside the writers. SQLite syncs the database
/// file only in a checkpoint that reaches the log's end, which step 1 never does, so every
/// page the step 1s copied waited for step 2's sync, and step 2 held the node's writes
/// while the disk took them all (its syncs traced at 2.2–5.8 ms late in a long 1:1 run;
/// docs/benchmarks.md). After [`flush`] they took 0.75–1.1 ms. Under
/// `synchronous = NORMAL` this adds log syncs that commits skip: up to 40 a second, off
/// the writers' path.
pub fn spawn_checkpointer(reads: SqlitePool, writes: SqlitePool) {
    tokio::spawn(async move {
        // The log's and the database file's paths, once looked up (`Some(None)`: in memory).
        let mut files: Option<Option<(PathBuf, PathBuf)>> = None;
        // Whether the last flush failed: a lasting failure is logged once, not every tick.
        let mut flush_failing = false;
        let mut wait = CHECKPOINT_EVERY;
        // The log's length at the last look (unchanged: nothing was written since), and how
        // much of it was copied then.
        let (mut last_log, mut last_copied) = (0, 0);
        let mut last_step_two = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(wait).await;
            if reads.is_closed() || writes.is_closed() {
                return;
            }
            let result = async {
                let (log, copied) = checkpoint(&reads).await?;
                let written = log != last_log;
                // What step 1 copied (a shorter log than last time was started over).
                let step_one = if log >= last_log {
                    copied - last_copied
                } else {
                    copied
                };
                if written {
                    if files.is_none() {
                        files = Some(database_files(&reads).await?);
                    }
                    if let Some(Some((log, database))) = &files {
                        match flush(log, database).await {
                            Ok(()) => flush_failing = false,
                            Err(e) if !flush_failing => {
                                flush_failing = true;
                                tracing::warn!(error = %e, "flushing the database files ahead of the checkpoint failed");
                            }
                            Err(_) => {}
                        }
                    }
                }
                // Step 2 copies about what was committed while step 1 ran, holding the
                // node's writes meanwhile: after a long step 1 (a burst of writes) it is
                // left to a later tick, whose step 1 finds little left and is quick.
                if written
                    && step_one <= STEP_TWO_AFTER_FRAMES
                    && last_step_two.elapsed() >= STEP_TWO_EVERY
                {
                    last_step_two = tokio::time::Instant::now();
                    let (_, after) = checkpoint(&writes).await?;
                    last_copied = after;
                } else {
                    last_copied = copied;
                }
                Ok::<_, sqlx::Error>((log, copied, written))
            }
            .await;
            match result {
                Ok((log, copied, written)) => {
                    last_log = log;
                    // A quiet node looks less and less often.
                    wait = if written {
                        tracing::debug!(log, copied, "write-ahead log checkpointed");
                        CHECKPOINT_EVERY
                    } else {
                        (wait * 2).min(CHECKPOINT_IDLE_MAX)
                    };
                }
                Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
            }
        }
    });
}

/// The database's write-ahead log and its file, by path, in that order; `None` for an
/// in-memory database.
async fn database_files(db: &SqlitePool) -> Result<Option<(PathBuf, PathBuf)>, sqlx::Error> {
    let file: Option<String> =
        sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_optional(db)
            .await?;
    Ok(file
        .filter(|file| !file.is_empty())
        .map(|file| (PathBuf::from(format!("{file}-wal")), PathBuf::from(file))))
}

/// A descriptor of the database file for [`flush`], opened on first use and **never
/// closed**: closing any descriptor of a file drops every POSIX lock the process holds on
/// it, SQLite's included. Another process could then take the database's exclusive lock
/// and, closing its connection, delete the log and the shared-memory index from under this
/// node's open connections (seen: a flush that opened and closed the file let the load
/// tool's seeding process do exactly that). The log needs no such care: SQLite locks only
/// the database file and the shared-memory index.
///
/// A global on purpose: POSIX locks belong to the whole process, so the descriptors that
/// must outlive every connection are the process's too. One per database path (a test
/// binary holds one per test database); the database file is never deleted or replaced
/// while open, so the descriptor stays valid. Opening never drops a lock.
fn database_descriptor(path: &Path) -> std::io::Result<Arc<File>> {
    static KEPT: LazyLock<Mutex<HashMap<PathBuf, Arc<File>>>> = LazyLock::new(Default::default);
    let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(file) = kept.get(path) {
        return Ok(file.clone());
    }
    let file = Arc::new(File::open(path)?);
    kept.insert(path.to_path_buf(), file.clone());
    Ok(file)
}

/// Writes the database file's and the log's data to disk (`fdatasync`) on the blocking
/// pool, beside the node's writes. It only does the disk's work ahead of SQLite's own
/// syncs, which still run and which durability rests on. Returns what failed, per file.
async fn flush(log: &Path, database: &Path) -> Result<(), String> {
    let (log, database) = (log.to_path_buf(), database.to_path_buf());
    let flushed = tokio::task::spawn_blocking(move || {
        let mut failed = Vec::new();
        if let Err(e) = database_descriptor(&database).and_then(|file| file.sync_data()) {
            failed.push(format!("{}: {e}", database.display()));
        }
        // Between two connections' lives the log may not exist: nothing to flush then.
        match File::open(&log) {
            Ok(file) => {
                if let Err(e) = file.sync_data() {
                    failed.push(format!("{}: {e}", log.display()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => failed.push(format!("{}: {e}", log.display())),
        }
        failed
    })
    .await;
    match flushed {
        Ok(failed) if failed.is_empty() => Ok(()),
        Ok(failed) => Err(failed.join("; ")),
        Err(e) => Err(format!("the flush did not finish: {e}")),
    }
}

/// One `PASSIVE` checkpoint on a connection of `db`: (frames in the log, frames copied).
async fn checkpoint(db: &SqlitePool) -> Result<(i64, i64), sqlx::Error> {
    // (busy, frames in the log, frames copied)
    let (_, log, copied): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(db)
        .await?;
    Ok((log, copied))
}
