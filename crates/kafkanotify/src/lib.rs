//! kafkanotify: tells edge clients where their application server went.
//!
//! An [`EdgeApplication`](resource::EdgeApplication) records which edge node hosts an
//! application and its endpoint. When the orchestrator migrates the server and updates the
//! resource, the operator publishes a CloudEvents notification to a Kafka topic and records the
//! broker's acknowledgement in the resource's status (the outbox); the client
//! ([`follow`]) reads the topic and reports each location change once.
//!
//! - [`resource`]: the custom resource.
//! - [`event`]: which notification a change calls for, and its wire format.
//! - [`partitioner`]: the Java client's murmur2 partitioner.
//! - [`kafka`]: connection settings (TLS, SASL) and the acknowledged publisher.
//! - [`outbox`]: the next event and the status around it (pure).
//! - [`reconcile`]: the reconciler.
//! - [`operator`]: wiring the reconciler into operator-core.
//! - [`topics`]: which topics resources may name.
//! - [`follow`]: the client library; [`client_state`]: its durable memory.

pub mod client_state;
pub mod event;
pub mod follow;
pub mod kafka;
pub mod metrics;
pub mod operator;
pub mod outbox;
pub mod partitioner;
pub mod reconcile;
pub mod resource;
pub mod topics;
