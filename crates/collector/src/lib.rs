//! collector: a cluster-scoped `Collector` becomes a collector release (ServiceAccount, config
//! Secret, Deployment, Service, ServiceMonitor) in the tenant's namespace, rendered by a typed
//! "chart" from documented values, kept in shape, and removed on deletion.
//!
//! - [`resource`]: the custom resource (the original operator's field names).
//! - [`values`]: decoding, merging (defaults <- cluster overlay <- configuration), the schema.
//! - [`render`]: the objects, as pure functions.
//! - [`reconcile`]: apply, prune by inventory, conditions, revisions, cleanup.
//! - [`operator`]: wiring into operator-core, the overlay file.

pub mod operator;
pub mod reconcile;
pub mod render;
pub mod resource;
pub mod values;
