//! The StatefulSet reconciler, in both modes.
//!
//! Every labelled StatefulSet's namespace gets the agent token Secret ([`crate::token`]).
//!
//! Template mode: the sidecar goes into the pod template of every StatefulSet labelled
//! `network-config/runtime-ip: "true"` (the original system's approach), for clusters where an
//! admission webhook is not an option. The StatefulSet controller then rolls the pods. Removing
//! the label removes the sidecar the controller added (and only that).
//!
//! Webhook mode: templates are not patched (the webhook injects into each pod as it is
//! created). A sidecar that template mode put into a template earlier is removed, so the
//! webhook is the only source of the sidecar and removing the label works as in template mode.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use operator_core::{ErrorReason, Runtime};
use serde_json::json;

use crate::inject::{self, SidecarSettings};
use crate::{pod_security, token};

/// The operator's name: field manager and event reporter.
pub const OPERATOR: &str = "nes-controller";

/// How the sidecar gets into the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// A mutating admission webhook adds it to each pod of a labelled StatefulSet as the pod is
    /// created; StatefulSets are not changed.
    #[default]
    Webhook,
    /// The controller adds it to the StatefulSet's pod template.
    Template,
}

/// What the reconciler needs.
pub struct Context {
    /// How the sidecar gets into the pods.
    pub mode: Mode,
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

/// A Warning event on a labelled StatefulSet whose namespace enforces a Pod Security level the
/// sidecar cannot meet: its pods are refused, and the StatefulSet is where users look.
async fn warn_about_pod_security(
    sts: &StatefulSet,
    ctx: &Context,
    namespace: &str,
) -> Result<(), Error> {
    let ns = Api::<Namespace>::all(ctx.runtime.client.clone())
        .get_opt(namespace)
        .await?;
    let labels = ns.as_ref().and_then(|n| n.metadata.labels.as_ref());
    if let Some(level) = pod_security::forbidding_level(labels) {
        ctx.runtime
            .events
            .warning(
                &sts.object_ref(&()),
                "PodSecurityForbidsSidecar",
                "Inject",
                pod_security::warning(namespace, level),
            )
            .await;
    }
    Ok(())
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
    let labelled = inject::wants_sidecar(sts.metadata.labels.as_ref());
    if labelled {
        // Before the sidecar can start, its token must exist (the pod would not start
        // without the Secret it mounts).
        token::ensure(&ctx.runtime.client, &namespace, &ctx.sidecar.token_secret).await?;
        warn_about_pod_security(&sts, &ctx, &namespace).await?;
    }
    let (next, reason, note) = if labelled && ctx.mode == Mode::Template {
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
            if labelled {
                "removed the nes-agent sidecar from the pod template (webhook mode injects pods)"
            } else {
                "removed the nes-agent sidecar from the pod template (label gone)"
            },
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
