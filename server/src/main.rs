//! `server`: runs one Kith node. Configuration comes from the environment (see
//! `kith::config` and API.md); `KITH_RUNTIME` picks the tokio scheduler.
//!
//! `server backup PATH` writes a copy of the SQLite database of `KITH_DATABASE_URL` to
//! `PATH` while nodes serve from it; `server restore PATH` puts such a copy in place where
//! that database is to be (README, "Backups").

use kith::{
    config::{Config, RuntimeFlavor},
    startup::Application,
    telemetry,
};
use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: a node's work is many short-lived allocations
/// (requests, frames, cache keys), which glibc served at ~15% of a feed read's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: server                  run a node (configured by KITH_* variables)
       server backup PATH      copy the SQLite database of KITH_DATABASE_URL to PATH
       server restore PATH     put the backup PATH in place as that database (which must not exist)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => serve(),
        ["backup", path] => copy(Copy::Backup, path),
        ["restore", path] => copy(Copy::Restore, path),
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

enum Copy {
    Backup,
    Restore,
}

/// `backup` and `restore`.
fn copy(what: Copy, path: &str) -> ExitCode {
    let url = std::env::var("KITH_DATABASE_URL").unwrap_or_else(|_| "sqlite://kith.db".into());
    if kith::storage::engine_of(&url) != Some(kith::storage::Engine::Sqlite) {
        eprintln!(
            "kith: KITH_DATABASE_URL is not a SQLite database; back PostgreSQL up with pg_dump \
             (README, \"Backups\")"
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kith: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let path = std::path::Path::new(path);
    let result = runtime.block_on(async {
        match what {
            Copy::Backup => kith::storage::sqlite::backup::backup(&url, path).await,
            Copy::Restore => kith::storage::sqlite::backup::restore(&url, path).await,
        }
    });
    match (result, what) {
        (Ok(()), Copy::Backup) => {
            println!("kith: backed up to {}", path.display());
            ExitCode::SUCCESS
        }
        (Ok(()), Copy::Restore) => {
            println!("kith: restored from {}", path.display());
            ExitCode::SUCCESS
        }
        (Err(e), _) => {
            eprintln!("kith: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve() -> ExitCode {
    telemetry::init_tracing();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kith: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match config.runtime {
        RuntimeFlavor::CurrentThread => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        RuntimeFlavor::MultiThread => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kith: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let flavor = config.runtime;
        let app = match Application::build(config).await {
            Ok(app) => app,
            Err(e) => {
                tracing::error!("kith: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(port = app.port(), ?flavor, "kith listening");
        match app.run_until_stopped().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("kith: server error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
