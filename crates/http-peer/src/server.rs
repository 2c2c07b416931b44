//! The server: binds, then serves HTTP, reloads the peers file and pings until told to stop.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::peers::Target;
use crate::pinger::{self, Pinger};
use crate::reload;
use crate::status::PeerTable;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
        source: io::Error,
    },
    /// The HTTP client cannot be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// Serving HTTP failed.
    #[error("serving HTTP: {0}")]
    Serve(#[source] io::Error),
}

/// A bound server, not yet running. Bind first to learn the address (port 0 picks a free
/// one), then [`run`](Server::run).
///
/// ```no_run
/// # async fn example() -> Result<(), http_peer::server::Error> {
/// let server = http_peer::Server::bind(http_peer::Config::default()).await?;
/// println!("listening on {}", server.local_addr());
/// server.run(http_peer::server::shutdown_signal()).await
/// # }
/// ```
pub struct Server {
    config: Config,
    listener: TcpListener,
    addr: SocketAddr,
}

impl Server {
    /// Validates the configuration and binds the listen address.
    pub async fn bind(config: Config) -> Result<Self, Error> {
        config.validate()?;
        let bind_error = |source| Error::Bind {
            addr: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        Ok(Server {
            config,
            listener,
            addr,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves HTTP, watches the peers file and pings the targets until `shutdown`
    /// completes; then stops accepting, lets in-flight requests finish and stops pinging.
    pub async fn run<F>(self, shutdown: F) -> Result<(), Error>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Server {
            config,
            listener,
            addr,
        } = self;
        let client = pinger::client(config.timeout).map_err(Error::Client)?;
        let cancel = CancellationToken::new();
        let table = Arc::new(PeerTable::default());
        let metrics = Metrics::new();
        let (targets_tx, targets_rx) = watch::channel(Arc::<[Target]>::from(Vec::new()));

        let mut tasks = tokio::task::JoinSet::new();
        match config.peers_file.clone() {
            Some(path) => {
                tasks.spawn(reload::watch_file(
                    path,
                    config.reload_interval,
                    targets_tx,
                    cancel.clone(),
                ));
            }
            None => {
                tracing::info!("no peers file: answering pings only");
                // Kept open until the end so the pinger waits on its timer, not a closed
                // channel.
                tasks.spawn({
                    let cancel = cancel.clone();
                    async move {
                        cancel.cancelled().await;
                        drop(targets_tx);
                    }
                });
            }
        }
        tasks.spawn(
            Pinger {
                client,
                interval: config.interval,
                jitter: config.jitter,
                table: table.clone(),
                metrics: metrics.clone(),
            }
            .run(targets_rx, cancel.clone()),
        );

        let app = http::router(AppState {
            instance: config.instance.as_str().into(),
            started: Instant::now(),
            table,
            metrics,
        });
        // Small request/response exchanges: send each response at once, not after Nagle's
        // delay.
        let listener = listener.tap_io(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY");
            }
        });
        tracing::info!(
            %addr,
            instance = %config.instance,
            interval_ms = config.interval.as_millis() as u64,
            timeout_ms = config.timeout.as_millis() as u64,
            jitter = config.jitter,
            "listening"
        );
        // Graceful: stop accepting, let requests in flight finish; hyper closes idle
        // keep-alive connections and ones still waiting for a request head at once.
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down");
            })
            .await;

        cancel.cancel();
        while let Some(joined) = tasks.join_next().await {
            if let Err(error) = joined {
                tracing::error!(%error, "a background task failed");
            }
        }
        tracing::info!("stopped");
        result.map_err(Error::Serve)
    }
}

/// Completes on SIGTERM (the kubelet stopping the pod) or SIGINT (Ctrl-C).
///
/// If a handler cannot be installed the error is logged and that signal is not awaited
/// (the process then stops the default way on it).
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!(signal = "SIGINT", "signal received"),
        _ = terminate => tracing::info!(signal = "SIGTERM", "signal received"),
    }
}
