//! The reconciler: validate, server-side apply the three children (correcting drift that apply
//! alone would keep, such as an extra Service port or ConfigMap key someone added), prune what
//! a previous round left, and report the Deployment's readiness.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, ApiResource, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use operator_core::apply::{Applier, ApplyError, Ownership};
use operator_core::conditions::{self, Desired};
use operator_core::{ErrorReason, Runtime};
use serde_json::{Map, Value, json};

use crate::desired;
use crate::resource::{KindCustomHttp, KindCustomHttpStatus};

/// The operator's name: field manager and event reporter.
pub const OPERATOR: &str = "http-peering";

/// What the reconciler needs.
pub struct Context {
    /// operator-core services.
    pub runtime: Arc<Runtime>,
}

/// Why a reconcile failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Applying or pruning a child failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

impl ErrorReason for Error {
    fn reason(&self) -> String {
        match self {
            Error::Kube(_) => "Kube".into(),
            Error::Apply(_) => "Apply".into(),
        }
    }
}

/// Reconciles one KindCustomHttp.
pub async fn reconcile(kch: Arc<KindCustomHttp>, ctx: Arc<Context>) -> Result<Action, Error> {
    let status = kch.status.clone().unwrap_or_default();
    if let Err(invalid) = desired::validate(&kch) {
        // Nothing is applied from a bad spec; the children keep the last good one.
        let message = invalid.to_string();
        let conditions = [
            Desired::not_ready("InvalidSpec", message.clone()),
            Desired::stalled("InvalidSpec", message.clone()),
        ];
        write_status(&kch, &ctx, status, conditions).await?;
        ctx.runtime
            .events
            .warning(&kch.object_ref(&()), "InvalidSpec", "Validate", message)
            .await;
        return Ok(Action::await_change());
    }
    let applier = Applier::new(
        ctx.runtime.client.clone(),
        Ownership::of(OPERATOR, kch.as_ref())?,
    );
    let config_map = applier.apply(desired::config_map(&kch)).await?;
    remove_extra_keys(&ctx.runtime.client, &kch, &config_map).await?;
    let service = match applier.apply(desired::service(&kch)).await {
        // A port changed by hand keeps its name: applying ours beside it makes two ports named
        // `http`, which the API server refuses. Put our port back, then apply again.
        Err(ApplyError::Apply { source, .. }) if is_invalid(&source) => {
            tracing::info!(kch = %kch.name_any(), error = %source,
                "the Service does not take our port beside its own: replacing its ports");
            replace_ports(
                &ctx.runtime.client,
                &kch,
                &kch.namespace().unwrap_or_default(),
            )
            .await?;
            applier.apply(desired::service(&kch)).await?
        }
        applied => applied?,
    };
    restore_ports(&ctx.runtime.client, &kch, &service).await?;
    let deployment = applier.apply(desired::deployment(&kch)).await?;
    let kinds = [
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<ConfigMap>(&()),
    ];
    applier.prune(&status.inventory, &kinds).await?;

    let observed = deployment.status.clone().unwrap_or_default();
    let ready = observed.ready_replicas.unwrap_or(0);
    let wanted = kch.spec.replica_count;
    let current = observed.observed_generation >= deployment.metadata.generation;
    let readiness = if ready >= wanted && current {
        Desired::ready(
            "Available",
            format!("{ready} of {wanted} peer servers ready"),
        )
    } else {
        Desired::not_ready(
            "Progressing",
            format!("{ready} of {wanted} peer servers ready"),
        )
    };
    let next = KindCustomHttpStatus {
        replicas: observed.replicas.unwrap_or(0),
        ready_replicas: ready,
        inventory: applier.inventory(),
        ..status
    };
    write_status(
        &kch,
        &ctx,
        next,
        [readiness, Desired::cleared(conditions::STALLED, "Valid")],
    )
    .await?;
    Ok(Action::await_change())
}

/// Server-side apply leaves keys other managers added; the ConfigMap must hold exactly
/// `configMapData`, so extra keys are removed.
async fn remove_extra_keys(
    client: &kube::Client,
    kch: &KindCustomHttp,
    live: &ConfigMap,
) -> Result<(), kube::Error> {
    let extra: Map<String, Value> = live
        .data
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .chain(live.binary_data.iter().flatten().map(|(k, _)| k))
        .filter(|k| !kch.spec.config_map_data.contains_key(*k))
        .map(|k| (k.clone(), Value::Null))
        .collect();
    if extra.is_empty() {
        return Ok(());
    }
    tracing::info!(kch = %kch.name_any(), keys = ?extra.keys().collect::<Vec<_>>(),
        "removing ConfigMap keys not in configMapData");
    let patch = json!({"data": extra.clone(), "binaryData": extra});
    Api::<ConfigMap>::namespaced(client.clone(), &live.namespace().unwrap_or_default())
        .patch(&live.name_any(), &params(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Service ports are a list keyed by port and protocol: a port someone changed by hand comes
/// back from apply *beside* theirs. The Service must have exactly the one port.
async fn restore_ports(
    client: &kube::Client,
    kch: &KindCustomHttp,
    live: &Service,
) -> Result<(), kube::Error> {
    let wanted = desired::service_port(kch);
    let ports = live
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let matches = ports.len() == 1
        && ports[0].port == wanted.port
        && ports[0].target_port == wanted.target_port
        && ports[0].name == wanted.name;
    if matches {
        return Ok(());
    }
    tracing::info!(kch = %kch.name_any(), "restoring the Service's port");
    replace_ports(client, kch, &live.namespace().unwrap_or_default()).await
}

/// Replaces the Service's ports with exactly ours (a merge patch replaces a list whole).
async fn replace_ports(
    client: &kube::Client,
    kch: &KindCustomHttp,
    namespace: &str,
) -> Result<(), kube::Error> {
    let patch = json!({"spec": {"ports": [desired::service_port(kch)]}});
    Api::<Service>::namespaced(client.clone(), namespace)
        .patch(&kch.name_any(), &params(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn is_invalid(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_invalid())
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(OPERATOR.into()),
        ..PatchParams::default()
    }
}

/// Writes the status when it changed.
async fn write_status(
    kch: &KindCustomHttp,
    ctx: &Context,
    status: KindCustomHttpStatus,
    desired: impl IntoIterator<Item = Desired>,
) -> Result<(), kube::Error> {
    let current = kch.status.clone().unwrap_or_default();
    operator_core::status::update(
        &ctx.runtime.client,
        kch,
        OPERATOR,
        &current,
        status,
        desired,
    )
    .await
}
