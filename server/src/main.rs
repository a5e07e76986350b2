//! `server`: runs one Kith node. Configuration comes from the environment (see
//! `kith::config` and API.md); `KITH_RUNTIME` picks the tokio scheduler.

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

fn main() -> ExitCode {
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
