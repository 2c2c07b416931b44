//! http-peering: a `KindCustomHttp` becomes a Deployment, a Service and a ConfigMap running the
//! project's peer server (`http-peer`), which answers `/ping` and pings the peers listed in the
//! ConfigMap.
//!
//! - [`resource`]: the custom resource (the original operator's field names).
//! - [`desired`]: the children as pure functions of the spec, and validation.
//! - [`reconcile`]: apply, correct drift, prune, report readiness.
//! - [`operator`]: wiring into operator-core.

pub mod desired;
pub mod operator;
pub mod reconcile;
pub mod resource;
