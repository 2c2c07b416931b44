//! The reconciler: hash the listed objects, decide (see [`crate::plan`]), patch the workloads
//! due for a restart, record everything in status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::core::Selector;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use operator_core::conditions::{self, Desired};
use operator_core::{ErrorReason, Runtime};

use crate::hashing;
use crate::metrics::RestartMetrics;
use crate::plan::{self, Plan};
use crate::resource::{AppConfig, AppConfigStatus, ConfigKind, ConfigRef};
use crate::workloads::{self, Caches};

/// The operator's name: field manager and event reporter.
pub const OPERATOR: &str = "appconfig-restarter";

/// What the reconciler needs.
pub struct Context {
    /// operator-core services.
    pub runtime: Arc<Runtime>,
    /// Workload caches.
    pub caches: Caches,
    /// Metrics.
    pub metrics: RestartMetrics,
}

/// Why a reconcile failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Some restarts failed (the others went ahead and are recorded).
    #[error("{0} restarts failed")]
    Restarts(usize),
    /// The object has no namespace.
    #[error("the object has no namespace")]
    NoNamespace,
    /// A workload cache stopped.
    #[error("the workload caches are not available")]
    CacheGone,
}

impl ErrorReason for Error {
    fn reason(&self) -> String {
        match self {
            Error::Kube(_) => "Kube".into(),
            Error::Restarts(_) => "RestartFailed".into(),
            Error::NoNamespace => "NoNamespace".into(),
            Error::CacheGone => "CacheGone".into(),
        }
    }
}

/// A spec the operator cannot act on, reported in status.
#[derive(Debug)]
struct InvalidSpec {
    reason: &'static str,
    message: String,
}

/// Reconciles one AppConfig.
pub async fn reconcile(app: Arc<AppConfig>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = app.namespace().ok_or(Error::NoNamespace)?;
    // Deciding on a half-filled cache would forget workloads recorded in status.
    if !ctx.caches.ready().await {
        return Err(Error::CacheGone);
    }
    let (debounce, selector) = match settings(&app) {
        Ok(s) => s,
        Err(invalid) => {
            let status = app.status.clone().unwrap_or_default();
            let desired = [
                Desired::not_ready(invalid.reason, invalid.message.clone()),
                Desired::degraded(invalid.reason, invalid.message),
            ];
            write_status(&app, &ctx, status, desired).await?;
            return Ok(Action::await_change());
        }
    };
    let listed: BTreeSet<ConfigRef> = app.listed().into_iter().collect();
    let observed = observe(&ctx.runtime.client, &namespace, &app, &listed).await?;
    let views = ctx.caches.using(&namespace, selector.as_ref(), &listed);
    let previous = app.status.clone().unwrap_or_default();
    let started = Instant::now();
    let now = jiff::Timestamp::now();
    let mut plan = plan::decide(&previous, &observed, &views, now, debounce);
    ctx.metrics.config_changes(plan.changed.len());
    let failed = restart(&app, &ctx, &namespace, &mut plan, &previous, now, started).await;

    let desired = conditions_for(&plan, &listed);
    write_status(&app, &ctx, plan.status.clone(), desired).await?;
    if failed > 0 {
        return Err(Error::Restarts(failed));
    }
    Ok(match plan.requeue_after {
        // Timestamps in status have sub-second precision, but be sure to land after the
        // window.
        Some(after) => Action::requeue(after + Duration::from_millis(50)),
        None => Action::await_change(),
    })
}

/// The debounce window and the workload selector, or why they are unusable.
fn settings(app: &AppConfig) -> Result<(Duration, Option<Selector>), InvalidSpec> {
    let debounce = operator_core::duration::parse(&app.spec.debounce).map_err(|e| InvalidSpec {
        reason: "InvalidDebounce",
        message: e,
    })?;
    let selector = app
        .spec
        .workload_selector
        .clone()
        .map(Selector::try_from)
        .transpose()
        .map_err(|e| InvalidSpec {
            reason: "InvalidSelector",
            message: format!("spec.workloadSelector: {e}"),
        })?;
    Ok((debounce, selector))
}

/// Hashes each listed object's (selected) data; `None` for objects that do not exist.
async fn observe(
    client: &kube::Client,
    namespace: &str,
    app: &AppConfig,
    listed: &BTreeSet<ConfigRef>,
) -> Result<BTreeMap<ConfigRef, Option<String>>, kube::Error> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut observed = BTreeMap::new();
    for object in listed {
        let keys = app.keys_of(object);
        let hash = match object.kind {
            ConfigKind::ConfigMap => maps.get_opt(&object.name).await?.map(|cm| {
                let data = cm
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str(), v.as_bytes()));
                let binary = cm
                    .binary_data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str(), v.0.as_slice()));
                hashing::data_hash(data, binary, keys)
            }),
            ConfigKind::Secret => secrets.get_opt(&object.name).await?.map(|s| {
                let data = s
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str(), v.0.as_slice()));
                hashing::data_hash(data, [], keys)
            }),
        };
        observed.insert(object.clone(), hash);
    }
    Ok(observed)
}

/// Patches the workloads the plan restarts; a failed one keeps its previous status entry (so
/// it is retried). Returns how many failed.
async fn restart(
    app: &AppConfig,
    ctx: &Context,
    namespace: &str,
    plan: &mut Plan,
    previous: &AppConfigStatus,
    now: jiff::Timestamp,
    started: Instant,
) -> usize {
    let since = previous
        .pending_since
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let mut failed = 0;
    let restarts = plan.restarts.clone();
    for r in &restarts {
        let result = workloads::restart(
            &ctx.runtime.client,
            namespace,
            r.kind,
            &r.name,
            &r.hash,
            OPERATOR,
        )
        .await;
        let changed: Vec<String> = r.changed.iter().map(ToString::to_string).collect();
        let reason = format!("{} changed", changed.join(", "));
        match result {
            Ok(()) => {
                let waited = since
                    .map(|s| Duration::try_from(now.duration_since(s)).unwrap_or_default())
                    .unwrap_or_default();
                ctx.metrics
                    .restarted(r.kind.as_str(), "success", waited + started.elapsed());
                tracing::info!(appconfig = %app.name_any(), namespace, kind = r.kind.as_str(),
                    workload = %r.name, changed = ?changed, "restarted");
                let note = format!("restarted {} {}: {reason}", r.kind.as_str(), r.name);
                ctx.runtime
                    .events
                    .normal(&app.object_ref(&()), "Restarted", "Restart", note)
                    .await;
                let about = workloads::object_ref(namespace, r.kind, &r.name);
                let note = format!("restarted by AppConfig {}: {reason}", app.name_any());
                ctx.runtime
                    .events
                    .normal(&about, "Restarted", "Restart", note)
                    .await;
            }
            Err(e) => {
                failed += 1;
                ctx.metrics
                    .restarted(r.kind.as_str(), "error", started.elapsed());
                tracing::warn!(appconfig = %app.name_any(), kind = r.kind.as_str(),
                    workload = %r.name, error = %e, "restart failed");
                keep_previous(plan, previous, r.kind, &r.name);
            }
        }
    }
    failed
}

/// Puts back a workload's previous status entry and keeps the change pending.
fn keep_previous(
    plan: &mut Plan,
    previous: &AppConfigStatus,
    kind: crate::resource::WorkloadKind,
    name: &str,
) {
    let before = previous
        .workloads
        .iter()
        .find(|w| w.kind == kind && w.name == name);
    plan.status
        .workloads
        .retain(|w| !(w.kind == kind && w.name == name));
    if let Some(before) = before {
        plan.status.workloads.push(before.clone());
    }
    if plan.status.pending_since.is_none() {
        plan.status.pending_since = previous
            .pending_since
            .clone()
            .or_else(|| Some(jiff::Timestamp::now().to_string()));
    }
}

/// Ready, and Degraded when listed objects are missing.
fn conditions_for(plan: &Plan, listed: &BTreeSet<ConfigRef>) -> Vec<Desired> {
    let workloads = plan.status.workloads.len();
    if plan.missing.is_empty() {
        vec![
            Desired::ready(
                "Watching",
                format!(
                    "{workloads} workloads use the {} listed objects",
                    listed.len()
                ),
            ),
            Desired::cleared(conditions::DEGRADED, "AllPresent"),
        ]
    } else {
        let missing: Vec<String> = plan
            .missing
            .iter()
            .map(|m| format!("{m} not found"))
            .collect();
        let message = format!(
            "{}; workloads using it are not restarted until it exists again",
            missing.join(", ")
        );
        vec![
            Desired::ready(
                "Watching",
                format!("{workloads} workloads use the listed objects"),
            ),
            Desired::degraded("ConfigMissing", message),
        ]
    }
}

/// Writes the status when it changed.
async fn write_status(
    app: &AppConfig,
    ctx: &Context,
    mut status: AppConfigStatus,
    desired: impl IntoIterator<Item = Desired>,
) -> Result<(), kube::Error> {
    let current = app.status.clone().unwrap_or_default();
    status.conditions = current.conditions.clone();
    operator_core::status::update(
        &ctx.runtime.client,
        app,
        OPERATOR,
        &current,
        status,
        desired,
    )
    .await
}
