//! `nes-agent`: the nes data plane sidecar. See the crate docs and docs/nes-agent.md.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use nes_agent::api;
use nes_agent::auth::TokenAuth;
use nes_agent::cli::{self, Cli};
use nes_agent::reconciler;
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli::init_tracing(cli.log_format, &cli.log_level).map_err(anyhow::Error::msg)?;
    // One thread is plenty for a sidecar that handles a handful of requests and netlink
    // bursts, and keeps its memory small.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (agent, reconciler) = reconciler::start(cli.settings())
        .await
        .context("starting the agent")?;
    if !cli.token_file.exists() {
        tracing::warn!(path = %cli.token_file.display(),
            "the token file does not exist; configuration writes are refused until it does");
    }
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("listening on {}", cli.listen))?;
    let local = listener.local_addr().context("reading the bound address")?;
    // The first stdout line tells scripts and tests which port was bound (with --listen :0).
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {local}").context("writing to stdout")?;
    stdout.flush().context("writing to stdout")?;
    tracing::info!(%local, boot_id = %agent.boot_id(), "serving the nes-agent API");

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let router = api::router(
        Arc::new(agent),
        TokenAuth::from_file(cli.token_file.clone()),
    );
    let server = tokio::spawn(api::serve(
        listener,
        router,
        shutdown.clone().cancelled_owned(),
    ));
    let outcome = reconciler.run(shutdown.clone()).await;
    shutdown.cancel();
    server
        .await
        .context("the HTTP server task failed")?
        .context("serving HTTP")?;
    outcome.context("watching the kernel")
}

/// Cancels `shutdown` on SIGTERM (the kubelet stopping the pod) or SIGINT.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the agent with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stop signal received");
    shutdown.cancel();
}
