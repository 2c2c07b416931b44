//! The reconciler: resolve values, render, apply with server-side apply and ownership labels,
//! prune what is no longer wanted (by inventory), report Ready/Reconciling/Stalled and the
//! revision history; on deletion remove everything in the inventory before the finalizer.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServiceAccount};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use operator_core::apply::{Applier, ApplyError, Ownership};
use operator_core::conditions::{self, Desired};
use operator_core::finalizer::{self, Event};
use operator_core::{ErrorReason, Runtime};
use serde_json::{Value, json};

use crate::render::{self, Rendered};
use crate::resource::{Collector, CollectorStatus, Revision};
use crate::values;

/// The operator's name: field manager, finalizer prefix, event reporter.
pub const OPERATOR: &str = "collector";
/// How many revisions the status keeps.
const REVISIONS: usize = 5;

/// What the reconciler needs.
pub struct Context {
    /// operator-core services.
    pub runtime: Arc<Runtime>,
    /// Values overlays by `spec.cluster`.
    pub overlays: BTreeMap<String, Value>,
}

/// Why a reconcile failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Applying or pruning failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The finalizer could not be added or removed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl ErrorReason for Error {
    fn reason(&self) -> String {
        match self {
            Error::Kube(_) => "Kube".into(),
            Error::Apply(_) => "ApplyFailed".into(),
            Error::Finalizer(_) => "Finalizer".into(),
        }
    }
}

/// Reconciles one Collector.
pub async fn reconcile(c: Arc<Collector>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<Collector> = Api::all(ctx.runtime.client.clone());
    finalizer::with_finalizer(&api, OPERATOR, c, |event| async {
        match event {
            Event::Apply(c) => install(&c, &ctx).await,
            Event::Cleanup(c) => uninstall(&c, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// The kinds a release consists of (the ServiceMonitor only when served).
fn kinds(monitor: Option<&ApiResource>) -> Vec<ApiResource> {
    let mut kinds = vec![
        ApiResource::erase::<ServiceAccount>(&()),
        ApiResource::erase::<Secret>(&()),
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<Service>(&()),
    ];
    kinds.extend(monitor.cloned());
    kinds
}

async fn install(c: &Collector, ctx: &Context) -> Result<Action, Error> {
    // The revision history and failure count build on the previous status: read it fresh, as
    // the watch cache may not have this operator's last write yet.
    let status = Api::<Collector>::all(ctx.runtime.client.clone())
        .get_status(&c.name_any())
        .await?
        .status
        .unwrap_or_default();
    let overlay = ctx.overlays.get(&c.spec.cluster);
    let resolved = values::resolve(overlay, &c.spec.collector.configuration)
        .map_err(|e| e.to_string())
        .and_then(|parsed| {
            render::render(c, &parsed.values)
                .map(|r| (r, parsed.unknown))
                .map_err(|e| e.to_string())
        });
    let (rendered, unknown) = match resolved {
        Ok(ok) => ok,
        Err(message) => return stalled(c, ctx, status, message).await,
    };
    let monitor = service_monitor_resource(&ctx.runtime.client).await?;
    let applier = Applier::new(ctx.runtime.client.clone(), Ownership::of(OPERATOR, c)?);
    let applied = apply_all(ctx, &applier, &rendered, monitor.as_ref()).await;
    if let Err(e) = applied {
        let mut failed = status.clone();
        failed.failures += 1;
        let message = format!("applying the release failed: {e}");
        let desired = [
            Desired::not_ready("ApplyFailed", message.clone()),
            Desired::new(
                conditions::RECONCILING,
                conditions::Status::True,
                "Retrying",
                message,
            ),
        ];
        write_status(c, ctx, failed, desired).await?;
        return Err(e);
    }
    applier
        .prune(&status.inventory, &kinds(monitor.as_ref()))
        .await?;

    let deployment = Api::<Deployment>::namespaced(ctx.runtime.client.clone(), &rendered.namespace)
        .get_opt(&rendered.release)
        .await?;
    let available = deployment.as_ref().is_some_and(is_available);
    let mut notes = Vec::new();
    if !unknown.is_empty() {
        notes.push(format!("unknown values ignored: {}", unknown.join(", ")));
    }
    if rendered.service_monitor.is_some() && monitor.is_none() {
        notes.push("ServiceMonitor skipped: monitoring.coreos.com/v1 is not served".to_owned());
    }
    let suffix = if notes.is_empty() {
        String::new()
    } else {
        format!("; {}", notes.join("; "))
    };
    let release = format!("release {} in {}", rendered.release, rendered.namespace);
    let desired = if available {
        [
            Desired::ready("Deployed", format!("{release} is available{suffix}")),
            Desired::cleared(conditions::RECONCILING, "Deployed"),
            Desired::cleared(conditions::STALLED, "Deployed"),
        ]
    } else {
        [
            Desired::not_ready("Progressing", format!("{release} is rolling out{suffix}")),
            Desired::new(
                conditions::RECONCILING,
                conditions::Status::True,
                "Progressing",
                "waiting for the collector pods to be available",
            ),
            Desired::cleared(conditions::STALLED, "Deployed"),
        ]
    };
    let next = CollectorStatus {
        release_name: Some(rendered.release.clone()),
        target_namespace: Some(rendered.namespace.clone()),
        deployed_version: Some(c.spec.collector.version.clone()),
        config_hash: Some(rendered.config_hash.clone()),
        inventory: applier.inventory(),
        revisions: record(
            &status.revisions,
            &c.spec.collector.version,
            &rendered.config_hash,
            "Deployed",
        ),
        failures: 0,
        ..status
    };
    write_status(c, ctx, next, desired).await?;
    Ok(Action::await_change())
}

/// Applies the namespace (not in the inventory: the tenant's namespace outlives a release) and
/// the release's objects.
async fn apply_all(
    ctx: &Context,
    applier: &Applier,
    r: &Rendered,
    monitor: Option<&ApiResource>,
) -> Result<(), Error> {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": r.namespace}});
    Api::<Namespace>::all(ctx.runtime.client.clone())
        .patch(
            &r.namespace,
            &PatchParams::apply(OPERATOR),
            &Patch::Apply(&ns),
        )
        .await?;
    applier.apply(r.service_account.clone()).await?;
    applier.apply(r.secret.clone()).await?;
    applier.apply(r.deployment.clone()).await?;
    applier.apply(r.service.clone()).await?;
    if let (Some(sm), Some(ar)) = (&r.service_monitor, monitor) {
        let obj: DynamicObject =
            serde_json::from_value(sm.clone()).map_err(|e| ApplyError::Convert {
                object: Box::new(operator_core::apply::ObjectRef::new(
                    ar,
                    Some(&r.namespace),
                    &r.release,
                )),
                source: e,
            })?;
        applier.apply_dynamic(obj, ar).await?;
    }
    Ok(())
}

/// The ServiceMonitor resource, if the cluster serves it.
async fn service_monitor_resource(
    client: &kube::Client,
) -> Result<Option<ApiResource>, kube::Error> {
    match client
        .list_api_group_resources("monitoring.coreos.com/v1")
        .await
    {
        Ok(list) if list.resources.iter().any(|r| r.name == "servicemonitors") => {
            let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor");
            Ok(Some(ApiResource::from_gvk_with_plural(
                &gvk,
                "servicemonitors",
            )))
        }
        Ok(_) => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

fn is_available(d: &Deployment) -> bool {
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    status.observed_generation >= d.metadata.generation
        && status.available_replicas.unwrap_or(0) >= wanted
        && status.updated_replicas.unwrap_or(0) >= wanted
}

/// The revision list with this one recorded (once per version and config), newest last.
fn record(revisions: &[Revision], version: &str, hash: &str, result: &str) -> Vec<Revision> {
    let mut list = revisions.to_vec();
    let same = list
        .last()
        .is_some_and(|r| r.version == version && r.config_hash == hash && r.result == result);
    if !same {
        list.push(Revision {
            version: version.to_owned(),
            config_hash: hash.to_owned(),
            time: jiff::Timestamp::now().to_string(),
            result: result.to_owned(),
        });
    }
    let excess = list.len().saturating_sub(REVISIONS);
    list.drain(..excess);
    list
}

/// A spec that cannot work: Stalled with the exact message, nothing applied.
async fn stalled(
    c: &Collector,
    ctx: &Context,
    mut status: CollectorStatus,
    message: String,
) -> Result<Action, Error> {
    let first_sight = !conditions::find(&status.conditions, conditions::STALLED)
        .is_some_and(|s| s.status == "True" && s.message == message);
    if first_sight {
        status.failures += 1;
        status.revisions = record(
            &status.revisions,
            &c.spec.collector.version,
            "",
            "InvalidSpec",
        );
        ctx.runtime
            .events
            .warning(&c.object_ref(&()), "InvalidSpec", "Render", message.clone())
            .await;
    }
    let desired = [
        Desired::not_ready("InvalidSpec", message.clone()),
        Desired::stalled("InvalidSpec", message),
        Desired::cleared(conditions::RECONCILING, "InvalidSpec"),
    ];
    write_status(c, ctx, status, desired).await?;
    Ok(Action::await_change())
}

/// Removes everything the inventory lists.
async fn uninstall(c: &Collector, ctx: &Context) -> Result<Action, Error> {
    let status = c.status.clone().unwrap_or_default();
    let monitor = service_monitor_resource(&ctx.runtime.client).await?;
    let applier = Applier::new(ctx.runtime.client.clone(), Ownership::of(OPERATOR, c)?);
    let removed = applier
        .prune(&status.inventory, &kinds(monitor.as_ref()))
        .await?;
    tracing::info!(collector = %c.name_any(), removed = removed.len(), "release removed");
    Ok(Action::await_change())
}

/// Writes the status when it changed from the (possibly older) watched copy.
async fn write_status(
    c: &Collector,
    ctx: &Context,
    status: CollectorStatus,
    desired: impl IntoIterator<Item = Desired>,
) -> Result<(), kube::Error> {
    let current = c.status.clone().unwrap_or_default();
    operator_core::status::update(&ctx.runtime.client, c, OPERATOR, &current, status, desired).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_are_recorded_once_and_bounded() {
        let mut list = Vec::new();
        list = record(&list, "1", "h", "Deployed");
        list = record(&list, "1", "h", "Deployed");
        assert_eq!(list.len(), 1);
        for v in 2..10 {
            list = record(&list, &v.to_string(), "h", "Deployed");
        }
        assert_eq!(list.len(), REVISIONS);
        assert_eq!(list.last().unwrap().version, "9");
    }
}
