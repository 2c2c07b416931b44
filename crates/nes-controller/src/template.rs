//! Template mode: the sidecar goes into the pod template of every StatefulSet labelled
//! `network-config/runtime-ip: "true"` (the original system's approach), for clusters where an
//! admission webhook is not an option. The StatefulSet controller then rolls the pods. Removing
//! the label removes the sidecar the controller added (and only that).

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use operator_core::{ErrorReason, Runtime};
use serde_json::json;

use crate::inject::{self, SidecarSettings};

/// The operator's name: field manager and event reporter.
pub const OPERATOR: &str = "nes-controller";

/// What the reconciler needs.
pub struct Context {
    /// operator-core services.
    pub runtime: Arc<Runtime>,
    /// The sidecar to inject.
    pub sidecar: SidecarSettings,
    /// Namespaces never touched (the controller's own, kube-system), as mature injectors do.
    pub excluded_namespaces: BTreeSet<String>,
}

/// Why a reconcile failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed (a conflict with a concurrent writer included).
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl ErrorReason for Error {
    fn reason(&self) -> String {
        "Kube".into()
    }
}

/// Adds or removes the sidecar in one StatefulSet's template.
pub async fn reconcile(sts: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = sts.namespace().unwrap_or_default();
    if ctx.excluded_namespaces.contains(&namespace) || sts.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(spec) = sts.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let (next, reason, note) = if inject::wants_sidecar(sts.metadata.labels.as_ref()) {
        match inject::inject(&spec.template, &ctx.sidecar) {
            Ok(next) => (
                next,
                "SidecarInjected",
                "added the nes-agent sidecar to the pod template",
            ),
            Err(refused) => {
                // Not retried: only an edit of the StatefulSet can fix it, and that triggers us.
                ctx.runtime
                    .events
                    .warning(
                        &sts.object_ref(&()),
                        "InjectionRefused",
                        "Inject",
                        refused.to_string(),
                    )
                    .await;
                return Ok(Action::await_change());
            }
        }
    } else {
        (
            inject::remove(&spec.template),
            "SidecarRemoved",
            "removed the nes-agent sidecar from the pod template (label gone)",
        )
    };
    let Some(next) = next else {
        return Ok(Action::await_change());
    };
    // Guarded by the resourceVersion: a concurrent edit makes this fail with 409 and the
    // reconcile runs again on the new version instead of overwriting it.
    let patch = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": sts.resource_version()},
        {"op": "replace", "path": "/spec/template", "value": next},
    ]);
    // Cannot fail for this literal shape; a failure would surface as a retried error.
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
    let api: Api<StatefulSet> = Api::namespaced(ctx.runtime.client.clone(), &namespace);
    api.patch(
        &sts.name_any(),
        &PatchParams::default(),
        &Patch::<()>::Json(patch),
    )
    .await?;
    tracing::info!(statefulset = %sts.name_any(), %namespace, reason, "pod template updated");
    ctx.runtime
        .events
        .normal(&sts.object_ref(&()), reason, "Inject", note.to_owned())
        .await;
    Ok(Action::await_change())
}
