//! `http-peer`: answers `/ping` and pings the peers listed in a mounted ConfigMap.

use anyhow::Context as _;
use clap::Parser as _;
use http_peer::Server;
use http_peer::cli::{self, Cli};

/// At most this many runtime worker threads: the work is a few small requests a second, and
/// every extra thread costs memory (its stack and allocator arena) in every pod.
const MAX_WORKER_THREADS: usize = 2;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli::init_tracing(cli.log_format, &cli.log_level).map_err(anyhow::Error::msg)?;
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_WORKER_THREADS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let server = Server::bind(cli.to_config()).await?;
        server.run(http_peer::server::shutdown_signal()).await?;
        anyhow::Ok(())
    })
}
