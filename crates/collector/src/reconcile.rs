//! The reconciler: a Collector becomes a Helm release of the chart it names, installed and
//! upgraded only when the chart, version or values change or the release drifted; a failed
//! upgrade is rolled back; the status reports the release, the last attempts and
//! Ready/Reconciling/Stalled; on deletion the release is uninstalled before the finalizer goes.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use operator_core::conditions::{self, Desired as Condition};
use operator_core::finalizer::{self, Event};
use operator_core::{ErrorReason, Runtime};
use serde_json::{Value, json};

use crate::desired::{
    self, Desired, Live, OUTCOME_FAILED, OUTCOME_RETRYING, OUTCOME_SUCCEEDED, Plan, Repository,
};
use crate::helm::{Credentials, Failure, Helm, HelmError, Upgrade};
use crate::live::{Inspector, LiveError, Observed};
use crate::resource::{Attempt, Collector, CollectorStatus};
use crate::values;

/// The operator's name: field manager, finalizer prefix, event reporter.
pub const OPERATOR: &str = "collector";
/// How often a release that looks fine is checked again for drift the watches cannot see
/// (kinds the operator does not watch).
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(600);
/// How soon a release that is rolling out is looked at again (its workloads' events also
/// trigger a reconcile; this is the fallback).
const ROLLOUT_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// The Secret holding the operator's chart repository credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl std::str::FromStr for SecretRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => Ok(Self {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            }),
            _ => Err(format!("{s:?} is not NAMESPACE/NAME")),
        }
    }
}

/// What the reconciler needs.
pub struct Context {
    /// operator-core services.
    pub runtime: Arc<Runtime>,
    /// Values overlays by `spec.cluster`.
    pub overlays: BTreeMap<String, Value>,
    /// The operator's chart repository (`--chart-repository`).
    pub repository: Option<Repository>,
    /// Its credentials (`--chart-repository-secret`).
    pub credentials: Option<SecretRef>,
    /// helm.
    pub helm: Helm,
    /// Reads the releases' objects.
    pub inspector: Inspector,
    /// `--tenant-service-account`: helm acts as this ServiceAccount of the tenant namespace.
    pub tenant_service_account: Option<String>,
}

/// Why a reconcile failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// helm failed in a way a retry may fix (message redacted).
    #[error("{0}")]
    Helm(String),
    /// The release's objects could not be checked.
    #[error(transparent)]
    Live(#[from] LiveError),
    /// The finalizer could not be added or removed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl ErrorReason for Error {
    fn reason(&self) -> String {
        match self {
            Error::Kube(_) => "Kube".into(),
            Error::Helm(_) => "Helm".into(),
            Error::Live(_) => "Inspect".into(),
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

/// One reconcile of a live Collector, with what it needs along the way.
struct Round<'a> {
    c: &'a Collector,
    ctx: &'a Context,
    status: CollectorStatus,
    /// Values and credentials: kept out of every message.
    secrets: Value,
}

impl Round<'_> {
    fn redact(&self, text: &str) -> String {
        values::redact(text, &self.secrets)
    }

    fn attempt(&self, d: &Desired, action: &str, outcome: &str, message: String) -> Attempt {
        Attempt {
            time: jiff::Timestamp::now().to_string(),
            action: action.to_owned(),
            chart: d.chart.name.clone(),
            version: d.chart.version.clone(),
            values_hash: d.values_hash.clone(),
            outcome: outcome.to_owned(),
            message: self.redact(&message),
        }
    }

    async fn write(
        &mut self,
        conditions: impl IntoIterator<Item = Condition>,
    ) -> Result<(), Error> {
        let current = self.c.status.clone().unwrap_or_default();
        operator_core::status::update(
            &self.ctx.runtime.client,
            self.c,
            OPERATOR,
            &current,
            self.status.clone(),
            conditions,
        )
        .await?;
        Ok(())
    }

    async fn event(&self, warning: bool, reason: &str, action: &str, note: String) {
        let about = self.c.object_ref(&());
        let note = self.redact(&note);
        if warning {
            self.ctx
                .runtime
                .events
                .warning(&about, reason, action, note)
                .await;
        } else {
            self.ctx
                .runtime
                .events
                .normal(&about, reason, action, note)
                .await;
        }
    }

    /// Ready=False and Stalled=True: only a change of the Collector helps.
    async fn stalled(&mut self, reason: &str, message: String) -> Result<Action, Error> {
        let message = self.redact(&message);
        let first_sight = !conditions::find(&self.status.conditions, conditions::STALLED)
            .is_some_and(|s| s.status == "True" && s.message == message);
        if first_sight {
            self.status.failures += 1;
            self.event(true, reason, "Reconcile", message.clone()).await;
        }
        self.write([
            Condition::not_ready(reason, message.clone()),
            Condition::stalled(reason, message),
            Condition::cleared(conditions::RECONCILING, reason),
        ])
        .await?;
        Ok(Action::await_change())
    }

    /// Ready=False and Reconciling=True, then an error so the controller retries with backoff.
    async fn retrying(&mut self, reason: &str, message: String) -> Result<Action, Error> {
        let message = self.redact(&message);
        self.status.failures += 1;
        self.write([
            Condition::not_ready(reason, message.clone()),
            Condition::new(
                conditions::RECONCILING,
                conditions::Status::True,
                reason,
                message.clone(),
            ),
            Condition::cleared(conditions::STALLED, reason),
        ])
        .await?;
        Err(Error::Helm(message))
    }
}

async fn install(c: &Collector, ctx: &Context) -> Result<Action, Error> {
    // The history and failure count build on the previous status: read it fresh, as the watch
    // cache may not have this operator's last write yet.
    let status = Api::<Collector>::all(ctx.runtime.client.clone())
        .get_status(&c.name_any())
        .await?
        .status
        .unwrap_or_default();
    let mut round = Round {
        c,
        ctx,
        status,
        secrets: Value::Null,
    };
    let d = match desired::desired(c, ctx.repository.as_ref(), &ctx.overlays) {
        Ok(d) => d,
        Err(e) => return round.stalled("InvalidSpec", e.to_string()).await,
    };
    round.secrets = d.values.clone();
    round.status.release_name = Some(d.release.clone());
    round.status.target_namespace = Some(d.namespace.clone());
    ensure_namespace(ctx, &d.namespace).await?;
    let as_user = tenant_user(ctx, &d.namespace);
    let helm = &ctx.helm.acting_as(as_user.clone());
    let live = helm
        .release(&d.release, &d.namespace)
        .await
        .map_err(|e| Error::Helm(round.redact(&e.to_string())))?;
    let mut plan = desired::plan(&d, live.as_ref(), &[], round.status.history.last());
    let mut observed = Observed::default();
    if plan == Plan::UpToDate {
        let manifest = helm
            .manifest(&d.release, &d.namespace)
            .await
            .map_err(|e| Error::Helm(round.redact(&e.to_string())))?;
        observed = ctx
            .inspector
            .observe(&manifest, &d.release, &d.namespace, as_user.as_deref())
            .await?;
        plan = desired::plan(
            &d,
            live.as_ref(),
            &observed.drift,
            round.status.history.last(),
        );
    }
    match plan {
        Plan::UpToDate => report(&mut round, &d, live.as_ref(), &observed).await,
        Plan::Hold(message) => {
            round
                .stalled(
                    "UpgradeFailed",
                    format!(
                        "{message}; not retried until spec.collector changes (version, chart or configuration)"
                    ),
                )
                .await
        }
        Plan::Recover(last_good) => {
            let (action, result) = match last_good {
                Some(revision) => (
                    "Rollback",
                    helm.rollback(&d.release, &d.namespace, revision).await,
                ),
                None => (
                    "Uninstall",
                    helm.uninstall(&d.release, &d.namespace).await,
                ),
            };
            let outcome = if result.is_ok() { OUTCOME_SUCCEEDED } else { OUTCOME_RETRYING };
            let message = match &result {
                Ok(()) => "an interrupted helm operation left the release pending".to_owned(),
                Err(e) => e.to_string(),
            };
            let attempt = round.attempt(&d, action, outcome, message);
            round.status.history = desired::record(&round.status.history, attempt);
            match result {
                Ok(()) => Ok(Action::requeue(std::time::Duration::from_secs(1))),
                Err(e) => round.retrying("RecoverFailed", e.to_string()).await,
            }
        }
        Plan::Install | Plan::Upgrade(_) => {
            let (action, why) = match &plan {
                Plan::Upgrade(why) => ("Upgrade", why.clone()),
                _ => ("Install", "new release".to_owned()),
            };
            deploy(&mut round, helm, &d, live.as_ref(), action, &why).await
        }
    }
}

/// Installs or upgrades, and handles the outcome.
async fn deploy(
    round: &mut Round<'_>,
    helm: &Helm,
    d: &Desired,
    live: Option<&Live>,
    action: &str,
    why: &str,
) -> Result<Action, Error> {
    let ctx = round.ctx;
    let credentials = if d.chart.with_credentials {
        read_credentials(ctx).await?
    } else {
        None
    };
    if let Some(creds) = &credentials {
        // Credentials join the values among what no message may show.
        round.secrets = json!([d.values, creds.username, creds.password,]);
    }
    let chart = match ctx.helm.fetch(&d.chart, credentials.as_ref()).await {
        Ok(path) => path,
        Err(e) => {
            let (reason, text) = match e.failure() {
                Failure::ChartNotFound => {
                    ("ChartNotFound", format!("chart {} not found: {e}", d.chart))
                }
                Failure::Unreachable => (
                    "RepositoryUnreachable",
                    format!("chart repository {} unreachable: {e}", d.chart.repository),
                ),
                _ => (
                    "ChartFetchFailed",
                    format!("fetching chart {}: {e}", d.chart),
                ),
            };
            let attempt = round.attempt(d, action, OUTCOME_RETRYING, text.clone());
            round.status.history = desired::record(&round.status.history, attempt);
            return round.retrying(reason, text).await;
        }
    };
    tracing::info!(collector = %round.c.name_any(), release = %d.release,
        namespace = %d.namespace, chart = %d.chart.name, version = %d.chart.version,
        values_hash = %d.values_hash, action, why, "deploying");
    let description = format!("{action} by collector operator: {}", round.redact(why));
    let upgrade = Upgrade {
        release: &d.release,
        namespace: &d.namespace,
        chart: &chart,
        values: &d.values,
        description: &description,
    };
    match helm.upgrade(&upgrade).await {
        Ok(revision) => {
            let message = format!("{} revision {revision} ({why})", verb_past(action));
            let attempt = round.attempt(d, action, OUTCOME_SUCCEEDED, message.clone());
            round.status.history = desired::record(&round.status.history, attempt);
            round.status.failures = 0;
            round
                .event(
                    false,
                    action,
                    "Deploy",
                    format!("{} {}: {message}", d.release, d.chart),
                )
                .await;
            let manifest = helm
                .manifest(&d.release, &d.namespace)
                .await
                .map_err(|e| Error::Helm(round.redact(&e.to_string())))?;
            let as_user = tenant_user(ctx, &d.namespace);
            let observed = ctx
                .inspector
                .observe(&manifest, &d.release, &d.namespace, as_user.as_deref())
                .await?;
            let live = helm
                .release(&d.release, &d.namespace)
                .await
                .map_err(|e| Error::Helm(round.redact(&e.to_string())))?;
            report(round, d, live.as_ref(), &observed).await
        }
        Err(e) => failed(round, helm, d, live, action, e).await,
    }
}

/// A failed install or upgrade: held, retried, or rolled back, by what failed.
async fn failed(
    round: &mut Round<'_>,
    helm: &Helm,
    d: &Desired,
    live: Option<&Live>,
    action: &str,
    e: HelmError,
) -> Result<Action, Error> {
    match e.failure() {
        Failure::SchemaInvalid => {
            let text = format!(
                "the values for {} are refused by its values.schema.json: {e}",
                d.chart
            );
            let attempt = round.attempt(d, action, OUTCOME_FAILED, text.clone());
            round.status.history = desired::record(&round.status.history, attempt);
            round.stalled("ValuesInvalid", text).await
        }
        Failure::Conflict | Failure::Locked | Failure::Unreachable => {
            let reason = if e.failure() == Failure::Conflict {
                "Conflict"
            } else {
                "Retrying"
            };
            let text = format!("{action} of {} failed: {e}", d.release);
            let attempt = round.attempt(d, action, OUTCOME_RETRYING, text.clone());
            round.status.history = desired::record(&round.status.history, attempt);
            round.retrying(reason, text).await
        }
        Failure::ReleaseNotFound | Failure::ChartNotFound | Failure::Other => {
            // The release is now `failed`: put the last good revision back (Flux's upgrade
            // remediation), or remove a release that never worked (its install remediation).
            let last_good = live.and_then(|l| l.last_good);
            let remedy = match last_good {
                Some(revision) => helm
                    .rollback(&d.release, &d.namespace, revision)
                    .await
                    .map(|()| format!("rolled back to revision {revision}")),
                None => helm
                    .uninstall(&d.release, &d.namespace)
                    .await
                    .map(|()| "the failed release was uninstalled".to_owned()),
            };
            let remedy = remedy.unwrap_or_else(|r| format!("and remediation failed too: {r}"));
            let text = format!("{action} to {} failed: {e}; {remedy}", d.chart);
            let attempt = round.attempt(d, action, OUTCOME_FAILED, text.clone());
            round.status.history = desired::record(&round.status.history, attempt);
            if let Some(live) = helm.release(&d.release, &d.namespace).await.ok().flatten() {
                round.status.helm_revision = Some(live.revision);
            }
            round.stalled("UpgradeFailed", text).await
        }
    }
}

fn verb_past(action: &str) -> &'static str {
    match action {
        "Install" => "installed",
        _ => "upgraded",
    }
}

/// Writes the status of a release that is as the Collector asks.
async fn report(
    round: &mut Round<'_>,
    d: &Desired,
    live: Option<&Live>,
    observed: &Observed,
) -> Result<Action, Error> {
    if let Some(live) = live {
        round.status.chart = Some(live.chart.clone());
        round.status.deployed_version = Some(live.version.clone());
        round.status.helm_revision = Some(live.revision);
        round.status.values_hash = Some(values::hash(&live.values));
    }
    round.status.failures = 0;
    let release = format!(
        "release {} (chart {}-{}, revision {}) in {}",
        d.release,
        d.chart.name,
        d.chart.version,
        round.status.helm_revision.unwrap_or_default(),
        d.namespace
    );
    if observed.not_ready.is_empty() {
        round
            .write([
                Condition::ready("Deployed", format!("{release} is deployed and ready")),
                Condition::cleared(conditions::RECONCILING, "Deployed"),
                Condition::cleared(conditions::STALLED, "Deployed"),
            ])
            .await?;
        Ok(Action::requeue(RECHECK))
    } else {
        let waiting = format!("waiting for {}", observed.not_ready.join(", "));
        round
            .write([
                Condition::not_ready(
                    "Progressing",
                    format!("{release} is rolling out: {waiting}"),
                ),
                Condition::new(
                    conditions::RECONCILING,
                    conditions::Status::True,
                    "Progressing",
                    waiting,
                ),
                Condition::cleared(conditions::STALLED, "Deployed"),
            ])
            .await?;
        Ok(Action::requeue(ROLLOUT_RECHECK))
    }
}

/// The user helm and the drift check act as in `namespace`: the tenant's ServiceAccount with
/// `--tenant-service-account`, else the operator itself.
fn tenant_user(ctx: &Context, namespace: &str) -> Option<String> {
    ctx.tenant_service_account
        .as_ref()
        .map(|sa| format!("system:serviceaccount:{namespace}:{sa}"))
}

/// Applies the tenant's namespace (not part of the release: it outlives it).
async fn ensure_namespace(ctx: &Context, namespace: &str) -> Result<(), Error> {
    let api = Api::<Namespace>::all(ctx.runtime.client.clone());
    if api.get_opt(namespace).await?.is_some() {
        return Ok(());
    }
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
    api.patch(namespace, &PatchParams::apply(OPERATOR), &Patch::Apply(&ns))
        .await?;
    Ok(())
}

/// The repository credentials, read from their Secret when needed (so a rotated password is
/// used at the next fetch without a restart).
async fn read_credentials(ctx: &Context) -> Result<Option<Credentials>, Error> {
    let Some(secret) = &ctx.credentials else {
        return Ok(None);
    };
    let found = Api::<Secret>::namespaced(ctx.runtime.client.clone(), &secret.namespace)
        .get(&secret.name)
        .await?;
    let data = found
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    Ok(Some(Credentials::from_secret_data(&data)))
}

/// Uninstalls the release (one that is already gone does not block deletion).
async fn uninstall(c: &Collector, ctx: &Context) -> Result<Action, Error> {
    let status = c.status.clone().unwrap_or_default();
    // The release as last recorded, or as the spec names it (a release installed before the
    // status was written).
    let named = desired::desired(c, ctx.repository.as_ref(), &ctx.overlays)
        .ok()
        .map(|d| (d.release, d.namespace));
    let target = match (status.release_name, status.target_namespace) {
        (Some(release), Some(namespace)) => Some((release, namespace)),
        _ => named,
    };
    if let Some((release, namespace)) = target {
        ctx.helm
            .acting_as(tenant_user(ctx, &namespace))
            .uninstall(&release, &namespace)
            .await
            .map_err(|e| Error::Helm(e.to_string()))?;
        tracing::info!(collector = %c.name_any(), %release, %namespace, "release uninstalled");
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_refs_are_namespace_slash_name() {
        let r: SecretRef = "kubecrew-system/charts".parse().unwrap();
        assert_eq!(r.namespace, "kubecrew-system");
        assert_eq!(r.name, "charts");
        for bad in ["charts", "/x", "x/", ""] {
            assert!(bad.parse::<SecretRef>().is_err(), "{bad}");
        }
    }
}
