//! The HTTP service: one frozen backbone in memory, many task bundles, requests routed by task.
//!
//! What it is for: serving the tasks of a [`MultiTask`] over JSON/HTTP (axum on tokio) with
//! dynamic batching (requests arriving within a short window share one model pass, tasks
//! mixed: each row goes through its own task's adapters and head), hot loading and unloading
//! of task bundles without a restart, limits with clear errors, Prometheus metrics and an
//! OpenAPI document. What it is not for: training, evaluation or model internals (`train`,
//! `model`), or TLS and multi-tenant access control (put a reverse proxy in front for those;
//! the server listens on loopback by default).
//!
//! All model work runs on one dedicated batching thread (see [`batcher`]); the async runtime
//! only parses, queues and answers. [`compat`] holds the routes other clients speak (OpenAI
//! embeddings, text-embeddings-inference), [`lifecycle`] loads tasks from a bundle directory on
//! demand with least-recently-used eviction, [`names`] is the task name rule, and [`text`]
//! bounds each input before it is tokenized. The routes and their errors are described in
//! `crates/serve/README.md` and served at `/openapi.json`. A binary that serves calls
//! `adalbert_model::exec::configure_process(Workload::Serve)` before it starts any thread (the
//! `adalbert serve` command does).

#![forbid(unsafe_code)]

use std::future::Future;
use std::net::SocketAddr;

use adalbert_model::MultiTask;

pub mod api;
pub mod batcher;
pub mod compat;
pub mod config;
pub mod embed;
pub mod error;
pub mod lifecycle;
pub mod metrics;
pub mod names;
pub mod openapi;
pub mod text;

pub use api::{router, AppState, Shared};
pub use config::ServeConfig;
pub use error::{ApiError, ServeError};

/// Serves `state` on an already-bound listener until `shutdown` resolves, then lets requests
/// in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Shared,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Blocking entry point (the `adalbert serve` command): starts a small runtime for the
/// network side, binds `addr`, calls `on_ready` with the bound address, and serves until
/// Ctrl-C or SIGTERM. `sources` names the file each preloaded task came from.
pub fn run(
    addr: &str,
    mt: MultiTask,
    cfg: ServeConfig,
    sources: &[(String, String)],
    on_ready: impl FnOnce(SocketAddr, &Shared),
) -> Result<(), ServeError> {
    let state = AppState::new(mt, cfg)?;
    for (task, source) in sources {
        state.set_source(task, source.clone());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("adalbert-http")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let bound = listener.local_addr()?;
        on_ready(bound, &state);
        serve(listener, state, shutdown_signal()).await
    })
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
