//! appconfig-restarter: rolling restarts of the workloads that use a changed ConfigMap or
//! Secret.
//!
//! An [`AppConfig`](resource::AppConfig) lists ConfigMaps and Secrets. When their data changes
//! the operator patches the pod template annotation `kubecrew.io/config-hash` of every
//! Deployment, StatefulSet and DaemonSet that uses them, once per debounce window, with a
//! SHA-256 of the data it uses; the status remembers what each workload runs with, so restarts
//! are exactly-once across operator restarts.
//!
//! - [`resource`]: the custom resource.
//! - [`usage`]: which objects a pod template uses.
//! - [`hashing`]: data and workload hashes.
//! - [`plan`]: the decision (pure).
//! - [`workloads`]: workload caches and the restart patch.
//! - [`reconcile`], [`operator`]: the reconciler and its wiring.

pub mod hashing;
pub mod metrics;
pub mod operator;
pub mod plan;
pub mod reconcile;
pub mod resource;
pub mod usage;
pub mod workloads;
