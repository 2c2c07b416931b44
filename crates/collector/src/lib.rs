//! collector: a cluster-scoped `Collector` becomes a Helm release of the chart it names, in the
//! tenant's namespace, driven through the `helm` binary the way Flux's helm-controller drives
//! the Helm SDK: installed and upgraded only on change, repaired on drift, rolled back when an
//! upgrade fails, uninstalled on deletion.
//!
//! - [`resource`]: the custom resource (the original operator's field names).
//! - [`values`]: decoding and layering the values; keeping them out of messages.
//! - [`desired`]: the release a Collector asks for, and what to do about the live one (pure).
//! - [`helm`]: the helm subprocess: fetch, read, upgrade, roll back, uninstall.
//! - [`live`]: the release's objects in the cluster: drift and readiness.
//! - [`reconcile`]: one reconcile: plan, act, report.
//! - [`operator`]: wiring into operator-core, the watches that catch drift, the overlay file.

pub mod desired;
pub mod helm;
pub mod live;
pub mod operator;
pub mod reconcile;
pub mod resource;
pub mod values;
