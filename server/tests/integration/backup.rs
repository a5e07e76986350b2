//! `server backup` while a node serves and keeps writing, and `server restore`: a node on
//! the restored copy serves the same accounts, feed and chat history (SQLite only;
//! PostgreSQL is backed up with its own tools).

use crate::common::{spawn_with, Backend, Options, TestApp};

use anyhow::{ensure, Context as _, Result};
use serde_json::{json, Value};
use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

async fn sqlite_node(database_url: Option<String>) -> Result<TestApp> {
    spawn_with(
        Backend::Memory,
        Options {
            sqlite: true,
            database_url,
            ..Default::default()
        },
    )
    .await
}

/// Runs the server binary's `backup`/`restore` command on the database at `url`.
fn command(verb: &str, url: &str, path: &Path) -> Result<std::process::Output> {
    Ok(std::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .args([verb, &path.to_string_lossy()])
        .env("KITH_DATABASE_URL", url)
        .output()?)
}

async fn history(app: &TestApp, token: &str, channel: &str) -> Result<Vec<(i64, String)>> {
    let page: Value = app
        .get(
            &format!("/v1/chat/channels/{channel}/messages?after=0&limit=100"),
            Some(token),
        )
        .await?
        .json()
        .await?;
    Ok(page["items"]
        .as_array()
        .context("items")?
        .iter()
        .map(|m| {
            (
                m["seq"].as_i64().unwrap_or_default(),
                m["content"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

#[tokio::test]
async fn a_backup_taken_while_serving_restores_to_the_same_service() -> Result<()> {
    let app = sqlite_node(None).await?;
    let url = app.state.config.database_url.expose().to_string();
    let (ann, bob) = (app.register("ann_bk").await?, app.register("bob_bk").await?);
    app.follow(&bob, "ann_bk").await?;
    for i in 0..5 {
        app.post_as(&ann, &format!("post {i}")).await?;
    }
    app.settle().await?;
    let dm: Value = app
        .post_json("/v1/chat/dm/bob_bk", &json!({}), Some(&ann.token))
        .await?
        .json()
        .await?;
    let channel = dm["id"].as_str().context("channel id")?.to_string();
    let send = |n: usize| {
        let (app, token, channel) = (&app, ann.token.clone(), channel.clone());
        async move {
            let resp = app
                .post_json(
                    &format!("/v1/chat/channels/{channel}/messages"),
                    &json!({"content": format!("m{n}"), "client_msg_id": format!("bk{n}")}),
                    Some(&token),
                )
                .await?;
            ensure!(resp.status() == 201, "send {n}: {}", resp.status());
            Ok::<(), anyhow::Error>(())
        }
    };
    for n in 0..10 {
        send(n).await?;
    }

    // The backup runs while messages keep being stored.
    let dir = tempfile::tempdir()?;
    let copy = dir.path().join("kith-backup.db");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, url_base, token, channel, stop) = (
            app.client.clone(),
            app.address.clone(),
            ann.token.clone(),
            channel.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut n = 10;
            while !stop.load(Ordering::Relaxed) {
                let _ = client
                    .post(format!("{url_base}/v1/chat/channels/{channel}/messages"))
                    .bearer_auth(&token)
                    .json(&json!({"content": format!("m{n}"), "client_msg_id": format!("bk{n}")}))
                    .send()
                    .await;
                n += 1;
                tokio::task::yield_now().await;
            }
        })
    };
    let backup = {
        let (url, copy) = (url.clone(), copy.clone());
        tokio::task::spawn_blocking(move || command("backup", &url, &copy)).await??
    };
    stop.store(true, Ordering::Relaxed);
    writer.await?;
    ensure!(
        backup.status.success(),
        "backup: {}",
        String::from_utf8_lossy(&backup.stderr)
    );
    // It never overwrites a file.
    let again = command("backup", &url, &copy)?;
    ensure!(!again.status.success(), "a second backup to the same file");

    // Restored where no database is, and served by a new node.
    let restored_url = format!("sqlite://{}", dir.path().join("restored.db").display());
    let restore = command("restore", &restored_url, &copy)?;
    ensure!(
        restore.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&restore.stderr)
    );
    ensure!(
        !command("restore", &restored_url, &copy)?.status.success(),
        "a restore over an existing database"
    );
    let not_a_database = dir.path().join("notes.txt");
    std::fs::write(&not_a_database, "not a database")?;
    let elsewhere = format!("sqlite://{}", dir.path().join("other.db").display());
    let refused = command("restore", &elsewhere, &not_a_database)?;
    ensure!(
        !refused.status.success(),
        "a restore from a file that is no backup"
    );

    let copy_node = sqlite_node(Some(restored_url)).await?;
    let login: Value = copy_node
        .post_json(
            "/v1/auth/login",
            &json!({"username": "bob_bk", "password": bob.password}),
            None,
        )
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().context("bob can sign in")?;
    let reader = crate::common::TestUser {
        token: token.to_string(),
        ..bob.clone()
    };
    assert_eq!(
        copy_node.whole_feed(&reader, 10).await?,
        app.whole_feed(&bob, 10).await?,
        "the same feed"
    );
    let restored = history(&copy_node, token, &channel).await?;
    let original = history(&app, &bob.token, &channel).await?;
    ensure!(restored.len() >= 10, "{} messages", restored.len());
    assert_eq!(
        restored[..],
        original[..restored.len()],
        "a prefix of the history"
    );
    let seqs: Vec<i64> = restored.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=restored.len() as i64).collect::<Vec<_>>(),
        "no gap"
    );
    // The restored node takes new messages after the last it holds.
    let next: Value = copy_node
        .post_json(
            &format!("/v1/chat/channels/{channel}/messages"),
            &json!({"content": "after", "client_msg_id": "after-restore"}),
            Some(token),
        )
        .await?
        .json()
        .await?;
    assert_eq!(next["seq"], restored.len() as i64 + 1);
    Ok(())
}

#[test]
fn backups_of_postgresql_are_left_to_its_own_tools() -> Result<()> {
    let out = command(
        "backup",
        "postgres://postgres@127.0.0.1:5432/kith",
        Path::new("/nonexistent/kith.sql"),
    )?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));
    Ok(())
}
