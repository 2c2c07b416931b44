//! operator-core: what every kubecrew operator stands on, so an operator crate holds only its
//! domain logic.
//!
//! - [`run`]: the reconcile loop (kube-runtime Controller with per-object backoff, bounded
//!   concurrency, invalid-spec reporting, metrics and spans, leader gating, graceful shutdown).
//! - [`conditions`] and [`status`]: `metav1.Condition` lists with stable transition times,
//!   written with server-side apply on the status subresource.
//! - [`finalizer`]: cleanup before deletion.
//! - [`apply`]: server-side apply with ownership labels, an inventory, and pruning.
//! - [`events`]: events.k8s.io/v1 Events.
//! - [`admin`] and [`metrics`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`leader`]: leader election on a coordination.k8s.io/v1 Lease.
//! - [`cli`] and [`crd`]: the common command line and CRD printing; [`duration`]: `10s`-style
//!   durations.

pub mod admin;
pub mod apply;
pub mod backoff;
pub mod cli;
pub mod conditions;
pub mod crd;
pub mod duration;
pub mod events;
pub mod finalizer;
pub mod launch;
pub mod leader;
pub mod metrics;
pub mod run;
pub mod status;

pub use launch::{Launched, launch, start};
pub use run::{ErrorReason, Runtime, Settings, run};

/// Errors of the shared runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Encoding an object (CRD YAML, status) failed.
    #[error("serialization: {0}")]
    Serialize(String),
    /// The operator's configuration cannot work.
    #[error("configuration: {0}")]
    Config(String),
    /// Binding or serving the admin endpoint failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}
