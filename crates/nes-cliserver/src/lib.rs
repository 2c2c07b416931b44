//! nes-cliserver: the application-facing REST API of nes.
//!
//! An application changes its own pod's network configuration (the `NetworkConfiguration` named
//! after the pod) and subscribes to network status reports (its `NetworkCare`) over HTTP,
//! authenticated with a service account token bound to its pod. The server is stateless: the
//! custom resources are the state, so restarting it changes nothing.
//!
//! - [`api`]: routes, authentication of every request, the Kubernetes I/O; [`serve`].
//! - [`auth`]: the TokenReview decision (pure) and the reviewer: its caches ([`cache`]) and the
//!   per-source limit on failed authentication ([`throttle`]).
//! - [`claims`]: when a reviewed token ends.
//! - [`watches`]: the per-pod cap on status watches and how long one may stay open.
//! - [`configure`]: request + stored spec -> next spec, validated (pure).
//! - [`owner`]: which object owns the created resources (pure).
//! - [`subscription`], [`status`]: the `NetworkCare` and status answers.
//! - [`openapi`]: the OpenAPI document, generated from the types.
//! - [`metrics`]: Prometheus series.
//!
//! See `docs/nes-cliserver.md`.

pub mod api;
pub mod auth;
pub mod cache;
pub mod claims;
pub mod configure;
#[cfg(test)]
mod fake_api;
pub mod metrics;
pub mod openapi;
pub mod owner;
pub mod status;
pub mod subscription;
#[cfg(feature = "testing")]
pub mod testing;
pub mod throttle;
pub mod watches;

pub use api::{AppState, Settings, router, serve};
