//! `http-peer`: the peer server the http-peering operator runs in each pod.
//!
//! It answers `GET /ping` and, every interval (randomised by a jitter), pings every peer
//! listed in a file, the `hostports` key of a mounted ConfigMap, reloading that file when the
//! kubelet updates it. Results are served on `/peers` (JSON) and `/metrics` (Prometheus).
//!
//! Modules: [`peers`] (the file format, reused by the operator to validate it), [`config`] and
//! [`cli`], [`reload`] (watching the file), [`pinger`], [`status`] (per-target state),
//! [`metrics`], [`http`] (routes) and [`server`] (wiring them together).
//!
//! ```no_run
//! # async fn example() -> Result<(), http_peer::server::Error> {
//! let config = http_peer::Config {
//!     listen: "127.0.0.1:0".parse().expect("an address"),
//!     peers_file: Some("/etc/http-peer/hostports".into()),
//!     ..http_peer::Config::default()
//! };
//! let server = http_peer::Server::bind(config).await?;
//! let addr = server.local_addr();
//! server.run(http_peer::server::shutdown_signal()).await
//! # }
//! ```

pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod peers;
pub mod pinger;
pub mod reload;
pub mod server;
pub mod status;

pub use config::Config;
pub use server::Server;
