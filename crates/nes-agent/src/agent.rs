//! The contract between the HTTP layer ([`crate::api`]) and whatever applies configurations (the
//! [`crate::reconciler`] in the binary, a fake in the API's unit tests).

use std::future::Future;
use std::sync::Arc;

use nes_api::{ApplyResponse, DesiredConfig, GenerationError, Status, ValidationError};
use tokio::sync::watch;

/// Why a desired configuration was not accepted. Nothing was changed in any of these cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The configuration breaks validation rules (HTTP 422, one `ApiError` per rule).
    #[error("the configuration is invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ValidationError>),
    /// The generation is neither the applied one (with the same content) nor the next one
    /// (HTTP 409): a late writer must not roll the pod's network back, and a jump nes-manager
    /// did not issue must not move the sequence (see `nes_api::generation`).
    #[error(transparent)]
    Conflict(#[from] GenerationError),
    /// The agent cannot take the configuration now (HTTP 503), e.g. it is shutting down or
    /// cannot persist the configuration.
    #[error("the agent cannot apply configurations now: {0}")]
    Unavailable(String),
}

/// What the HTTP API needs from the agent.
pub trait Agent: Send + Sync + 'static {
    /// Validates `config` and, if it is accepted, makes it the desired configuration and
    /// answers after one apply pass over it, with a result per item in apply order.
    /// Items that cannot be applied yet are `pending` and are retried without a new request.
    fn apply(
        &self,
        config: DesiredConfig,
    ) -> impl Future<Output = Result<ApplyResponse, ApplyError>> + Send;

    /// The desired configuration, `None` before the first accepted one.
    fn config(&self) -> Option<DesiredConfig>;

    /// The current status; the receiver sees every published change (intermediate values may
    /// be skipped by a slow reader, the latest is never lost).
    fn status(&self) -> watch::Receiver<Arc<Status>>;

    /// The Prometheus text exposition of the agent's metrics.
    fn metrics_text(&self) -> String;

    /// True once the agent has read the kernel state and can answer (for `/healthz`).
    fn healthy(&self) -> bool;
}
