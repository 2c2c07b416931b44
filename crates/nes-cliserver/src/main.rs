//! `nes-cliserver`: serves the application-facing REST API of nes.
#![recursion_limit = "256"]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use nes_cliserver::{AppState, Settings, auth, watches};
use operator_core::cli::{LogFormat, init_tracing};

/// Lets applications change their own pod's network configuration and subscribe to network
/// status, authenticated by pod-bound service account tokens.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "NES_CLISERVER_LISTEN", default_value = "0.0.0.0:7480")]
    listen: SocketAddr,
    /// The audience callers' tokens must carry (TokenReview spec.audiences); the API server's
    /// default audiences when not set.
    #[arg(long, env = "NES_CLISERVER_AUDIENCE")]
    audience: Option<String>,
    /// Seconds a successful TokenReview is reused (0 = review every request).
    #[arg(long, env = "NES_CLISERVER_REVIEW_CACHE_SECONDS", default_value_t = 10)]
    review_cache_seconds: u64,
    /// Seconds a refused token is answered 401 without a TokenReview (0 = review every time).
    #[arg(
        long,
        env = "NES_CLISERVER_NEGATIVE_REVIEW_CACHE_SECONDS",
        default_value_t = auth::DEFAULT_NEGATIVE_CACHE_TTL.as_secs()
    )]
    negative_review_cache_seconds: u64,
    /// Failed authentications a source address may cause per minute (and in a burst) before
    /// its requests that need a TokenReview are answered 429 (0 = no limit).
    #[arg(
        long,
        env = "NES_CLISERVER_AUTH_FAILURES_PER_MINUTE",
        default_value_t = auth::DEFAULT_FAILURES_PER_MINUTE
    )]
    auth_failures_per_minute: u32,
    /// Status watches a pod may hold open at once (at least 1).
    #[arg(
        long,
        env = "NES_CLISERVER_MAX_WATCHES_PER_POD",
        default_value_t = watches::DEFAULT_MAX_PER_POD
    )]
    max_watches_per_pod: usize,
    /// Seconds a status watch stays open at most; it also ends when the caller's token does.
    #[arg(
        long,
        env = "NES_CLISERVER_MAX_WATCH_SECONDS",
        default_value_t = watches::DEFAULT_MAX_LIFETIME.as_secs()
    )]
    max_watch_seconds: u64,
    /// Log format.
    #[arg(long, env = "KUBECREW_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter, tracing syntax (`info`, `nes_cliserver=debug,info`).
    #[arg(long, env = "KUBECREW_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format, &cli.log_level).map_err(anyhow::Error::msg)?;
    let client = kube::Client::try_default()
        .await
        .context("building the Kubernetes client")?;
    let state = AppState::new(
        client,
        Settings {
            audience: cli.audience,
            review_cache_ttl: Duration::from_secs(cli.review_cache_seconds),
            negative_review_cache_ttl: Duration::from_secs(cli.negative_review_cache_seconds),
            auth_failures_per_minute: cli.auth_failures_per_minute,
            max_watches_per_pod: cli.max_watches_per_pod,
            max_watch: Duration::from_secs(cli.max_watch_seconds),
        },
    );
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("listening on {}", cli.listen))?;
    tracing::info!(listen = %cli.listen, "nes-cliserver serving");
    nes_cliserver::serve(listener, state, shutdown_signal())
        .await
        .context("serving")?;
    tracing::info!("nes-cliserver stopped");
    Ok(())
}

/// Completes on SIGTERM (how Kubernetes stops a pod) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
