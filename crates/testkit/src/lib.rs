//! Test tooling shared by the kubecrew crates and `cargo xtask test`.
//!
//! - [`tools`]: installs the external programs tests drive (a Python virtualenv with the
//!   `kubernetes` client, ...) into `target/tools`, once, under a file lock, so parallel test
//!   binaries and CI share one installation.
//! - [`gotools`]: the real control plane, kwok, kubectl and helm, built once from the pinned Go
//!   modules under `tools/`.
//! - [`chartrepo`]: a Helm chart repository (charts packaged by helm, served over HTTP).
//! - [`kafka::Broker`]: a real Kafka-compatible broker (tansu) to start, stop and restart.
//! - [`kubectl::Kubectl`]: the real kubectl, run without blocking the test's runtime.
//! - [`netns::Netns`]: network namespaces (root + iproute2) that tests create and remove.
//! - [`rbac`]: what a ServiceAccount is granted, what it used (an audit log), and the difference.
//! - [`eventually`]: waits for a condition with a deadline (tests never sleep and hope).

pub mod chartrepo;
pub mod gotools;
pub mod kafka;
pub mod kubectl;
pub mod netns;
pub mod rbac;
pub mod tools;

use std::future::Future;
use std::time::Duration;

/// Polls `check` until it returns `Some`, or panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
