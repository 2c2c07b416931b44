//! nes-manager: the nes control plane between the cluster and the agents in the pods.
//!
//! - `NetworkConfiguration` → agent: [`netconf`] pushes each resource's spec to the nes-agent of
//!   the pod it names and reports the agent's per-item results in the status.
//! - [`hub`]: follows the status stream of every agent that matters (a pod with a
//!   NetworkConfiguration or selected by a NetworkCare) and fans each snapshot out: to the
//!   NetworkConfiguration reconciler (new agent run, new results) and, as [`changes`], to the
//!   NetworkCare subscriptions.
//! - [`delivery`]: POSTs `nes_api::report::Report`s to the NetworkCare callbacks, in order,
//!   with retries; [`care`] writes the NetworkCare status.
//! - [`decide`], [`pods`], [`changes`]: the pure decisions, unit tested.
//! - [`operator`]: wiring onto operator-core; [`run`] is the entry point for `main` and tests.
//!
//! See `docs/nes-manager.md`.

pub mod care;
pub mod changes;
pub mod decide;
pub mod delivery;
pub mod hub;
pub mod netconf;
pub mod operator;
pub mod pods;

use std::time::Duration;

use operator_core::ErrorReason;
use operator_core::backoff::Policy;

pub use operator::run;

/// The operator's name: field manager, event reporter, metrics label, lease name.
pub const OPERATOR: &str = "nes-manager";

/// How the manager talks to agents and callbacks.
#[derive(Debug, Clone)]
pub struct ManagerSettings {
    /// Watch one namespace only; all when `None`.
    pub namespace: Option<String>,
    /// The agents' API port.
    pub agent_port: u16,
    /// The Secret (in each pod's namespace) whose key `token` authorizes writes to the agents.
    pub agent_token_secret: String,
    /// Timeout of each agent call (and of connecting to an agent's status stream).
    pub agent_timeout: Duration,
    /// Reconnect backoff of the agents' status streams.
    pub stream_backoff: Policy,
    /// NetworkCare deliveries.
    pub delivery: DeliverySettings,
    /// The reconcile loops.
    pub reconcile: operator_core::Settings,
}

impl Default for ManagerSettings {
    fn default() -> Self {
        ManagerSettings {
            namespace: None,
            agent_port: 7470,
            agent_token_secret: "nes-agent-token".into(),
            agent_timeout: Duration::from_secs(10),
            stream_backoff: Policy {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(10),
                factor: 2.0,
                jitter: 0.2,
            },
            delivery: DeliverySettings::default(),
            reconcile: operator_core::Settings::default(),
        }
    }
}

/// How reports are delivered.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Attempts per report (at least 1); after the last one the report is dropped and counted
    /// as a failure.
    pub attempts: u32,
    /// Backoff between attempts.
    pub backoff: Policy,
    /// Timeout of one POST.
    pub timeout: Duration,
    /// Reports waiting per callback; when full, new reports are dropped and counted as failures.
    pub queue: usize,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            attempts: 5,
            backoff: Policy {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(5),
                factor: 2.0,
                jitter: 0.1,
            },
            timeout: Duration::from_secs(5),
            queue: 1024,
        }
    }
}

/// Why a reconcile failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The pod's agent could not be reached or refused the request.
    #[error("agent of pod {pod}: {message}")]
    Agent {
        /// The pod.
        pod: String,
        /// What went wrong (never the token).
        message: String,
    },
    /// The agent token Secret is missing or has no `token` key.
    #[error("{0}")]
    Token(String),
    /// The manager cannot start as configured.
    #[error("configuration: {0}")]
    Config(String),
}

impl ErrorReason for Error {
    fn reason(&self) -> String {
        match self {
            Error::Kube(_) => "Kube".into(),
            Error::Agent { .. } => "AgentUnreachable".into(),
            Error::Token(_) => "TokenMissing".into(),
            Error::Config(_) => "Config".into(),
        }
    }
}
