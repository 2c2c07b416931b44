//! The reconcile loop: a kube-runtime Controller over the primary resource, wrapped so every
//! operator gets the same behaviour —
//!
//! - a spec that does not deserialize is reported on that object (Ready=False and
//!   Stalled=True with the error, and a Warning event) and never breaks the watch of the others
//!   (kube's `DeserializeGuard`);
//! - bounded concurrency; per-object exponential backoff on errors, reset on success; a
//!   periodic requeue after success;
//! - a tracing span and metrics per reconcile; `/readyz` once the primary's first list is done;
//! - with leader election, reconciling only while leading; graceful shutdown on the token.

use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::admin::Readiness;
use crate::backoff::{Backoffs, Policy};
use crate::conditions::{self, Desired};
use crate::events::Events;
use crate::metrics::Metrics;

/// A reconcile error that can name its cause for metrics (`reconcile_errors_total{reason}`).
pub trait ErrorReason {
    /// A short CamelCase reason, e.g. `KafkaUnavailable`, `Kube`.
    fn reason(&self) -> String;
}

/// The services of one operator process, shared by its reconcilers.
pub struct Runtime {
    /// Client of the cluster.
    pub client: kube::Client,
    /// Operator name: field manager, event reporter, metrics label, lease name.
    pub name: String,
    /// Standard metrics and the operator's registry.
    pub metrics: Metrics,
    /// Readiness reported on `/readyz`.
    pub readiness: Readiness,
    /// Event publisher.
    pub events: Events,
    /// Cancelled on SIGTERM/SIGINT (or by tests).
    pub shutdown: CancellationToken,
    /// Leadership, when leader election runs; `None` means always leading.
    pub leader: Option<watch::Receiver<bool>>,
}

impl Runtime {
    /// Services for operator `name` talking to `client`.
    pub fn new(client: kube::Client, name: &str) -> Self {
        Runtime {
            events: Events::new(client.clone(), name),
            client,
            name: name.to_owned(),
            metrics: Metrics::new(name),
            readiness: Readiness::default(),
            shutdown: CancellationToken::new(),
            leader: None,
        }
    }

    /// Gates reconciling on leadership.
    pub fn with_leader(mut self, leader: watch::Receiver<bool>) -> Self {
        self.leader = Some(leader);
        self
    }
}

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Reconciles at once.
    pub concurrency: u16,
    /// Requeue after a successful reconcile that asked for nothing else.
    pub requeue_after: Duration,
    /// Backoff of failing objects.
    pub backoff: Policy,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            concurrency: 4,
            requeue_after: Duration::from_secs(300),
            backoff: Policy::default(),
        }
    }
}

/// Resolves when this instance leads (at once without leader election); `false` on shutdown.
async fn wait_for_leadership(runtime: &Runtime) -> bool {
    let Some(leader) = &runtime.leader else {
        // A lone instance leads: a "no leader" alert must not fire for it.
        let running = !runtime.shutdown.is_cancelled();
        runtime.metrics.set_leader(running);
        return running;
    };
    let mut leader = leader.clone();
    runtime.readiness.set_standby(true);
    runtime.metrics.set_leader(false);
    let leading = tokio::select! {
        r = leader.wait_for(|l| *l) => r.is_ok(),
        _ = runtime.shutdown.cancelled() => false,
    };
    runtime.readiness.set_standby(false);
    runtime.metrics.set_leader(leading);
    leading
}

/// Cancelled when leadership is lost (never without leader election) or on shutdown.
fn stop_token(runtime: &Runtime) -> CancellationToken {
    let stop = runtime.shutdown.child_token();
    if let Some(leader) = &runtime.leader {
        let mut leader = leader.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = leader.wait_for(|l| !*l) => {
                    tracing::warn!("lost leadership: stopping reconciles");
                    stop.cancel();
                }
                _ = stop.cancelled() => {}
            }
        });
    }
    stop
}

struct Inner<C, R> {
    runtime: Arc<Runtime>,
    user: Arc<C>,
    reconcile: R,
    backoffs: Backoffs,
    settings: Settings,
}

fn key_of<K: Resource>(obj: &K) -> String {
    match obj.meta().namespace.as_deref() {
        Some(ns) => format!("{ns}/{}", obj.meta().name.as_deref().unwrap_or_default()),
        None => obj.meta().name.clone().unwrap_or_default(),
    }
}

/// Reports an object whose spec does not deserialize: conditions and a Warning event.
async fn report_invalid<K>(runtime: &Runtime, invalid: &kube::core::error_boundary::InvalidObject)
where
    K: Resource<DynamicType = ()>,
{
    let ar = ApiResource::erase::<K>(&());
    let name = invalid.metadata.name.clone().unwrap_or_default();
    let ns = invalid.metadata.namespace.clone();
    let message = format!("the resource does not match its schema: {}", invalid.error);
    tracing::warn!(object = %name, error = %invalid.error, "invalid spec");
    let api: Api<DynamicObject> = match &ns {
        Some(ns) => Api::namespaced_with(runtime.client.clone(), ns, &ar),
        None => Api::all_with(runtime.client.clone(), &ar),
    };
    let mut current: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> = api
        .get_status(&name)
        .await
        .ok()
        .and_then(|o| o.data.pointer("/status/conditions").cloned())
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default();
    conditions::set_all(
        &mut current,
        [
            Desired::not_ready("InvalidSpec", message.clone()),
            Desired::stalled("InvalidSpec", message.clone()),
        ],
        invalid.metadata.generation,
        jiff::Timestamp::now(),
    );
    let status = json!({"conditions": current, "observedGeneration": invalid.metadata.generation});
    if let Err(e) = crate::status::apply(
        &runtime.client,
        &ar,
        ns.as_deref(),
        &name,
        &runtime.name,
        status,
    )
    .await
    {
        tracing::warn!(object = %name, error = %e, "could not write the InvalidSpec condition");
    }
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(ar.api_version.clone()),
        kind: Some(ar.kind.clone()),
        name: Some(name),
        namespace: ns,
        uid: invalid.metadata.uid.clone(),
        ..Default::default()
    };
    runtime
        .events
        .warning(&reference, "InvalidSpec", "Reconcile", message)
        .await;
}

impl<C, R> Inner<C, R> {
    async fn reconcile_one<K, Fut, E>(&self, obj: Arc<DeserializeGuard<K>>) -> Result<Action, E>
    where
        K: Resource<DynamicType = ()> + Clone,
        R: Fn(Arc<K>, Arc<C>) -> Fut,
        Fut: Future<Output = Result<Action, E>>,
        E: ErrorReason + std::fmt::Display,
    {
        let metrics = &self.runtime.metrics;
        let _in_flight = metrics.start();
        let started = Instant::now();
        let resource = match &obj.0 {
            Ok(resource) => resource.clone(),
            Err(invalid) => {
                report_invalid::<K>(&self.runtime, invalid).await;
                metrics.finished("invalid", started.elapsed(), Some("InvalidSpec"));
                return Ok(Action::await_change());
            }
        };
        let key = key_of(&resource);
        let result = (self.reconcile)(Arc::new(resource), self.user.clone()).await;
        match &result {
            Ok(_) => {
                self.backoffs.succeeded(&key);
                metrics.finished("success", started.elapsed(), None);
            }
            Err(e) => {
                tracing::warn!(object = %key, error = %e, "reconcile failed");
                metrics.finished("error", started.elapsed(), Some(&e.reason()));
            }
        }
        result.map(|action| {
            // `await_change` from a reconciler still gets the periodic resync.
            if action == Action::await_change() {
                Action::requeue(self.settings.requeue_after)
            } else {
                action
            }
        })
    }
}

/// Lists the primary resource until it works (the CRD may not be installed yet, RBAC may be
/// missing: say so and retry), then reports ready. `false` when stopped meanwhile.
async fn first_list<K>(runtime: &Runtime, api: &Api<K>, stop: &CancellationToken) -> bool
where
    K: Resource + DeserializeOwned + Clone + Debug,
{
    let policy = Policy {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(30),
        ..Policy::default()
    };
    let mut attempt = 0;
    loop {
        match api.list(&kube::api::ListParams::default().limit(1)).await {
            Ok(_) => {
                runtime.readiness.set_synced(true);
                return true;
            }
            Err(e) => {
                attempt += 1;
                let delay = policy.delay(attempt, rand::random::<f64>());
                tracing::warn!(error = %e, retry_in = ?delay, "cannot list the primary resource yet");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => return false,
                }
            }
        }
    }
}

/// Runs the reconcile loop for primary resource `K` until shutdown.
///
/// `api` chooses the scope (one namespace or all), `configure` adds `owns`/`watches`
/// relations to the Controller, `reconcile` is the operator's reconciler.
pub async fn run<K, C, R, Fut, E>(
    runtime: Arc<Runtime>,
    api: Api<DeserializeGuard<K>>,
    watcher_config: watcher::Config,
    configure: impl Fn(Controller<DeserializeGuard<K>>) -> Controller<DeserializeGuard<K>>,
    reconcile: R,
    user: Arc<C>,
    settings: Settings,
) where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug + Send + Sync + 'static,
    DeserializeGuard<K>:
        Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug + Send + Sync + 'static,
    C: Send + Sync + 'static,
    R: Fn(Arc<K>, Arc<C>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: ErrorReason + std::error::Error + Send + Sync + 'static,
    kube::runtime::reflector::ObjectRef<DeserializeGuard<K>>: Hash + Eq,
{
    let inner = Arc::new(Inner {
        runtime: runtime.clone(),
        user,
        reconcile,
        backoffs: Backoffs::new(settings.backoff),
        settings: settings.clone(),
    });
    loop {
        if !wait_for_leadership(&runtime).await {
            break;
        }
        tracing::info!(operator = %runtime.name, "starting reconciles");
        let stop = stop_token(&runtime);
        if !first_list(&runtime, &api, &stop).await {
            break;
        }
        let controller = Controller::new(api.clone(), watcher_config.clone())
            .with_config(ControllerConfig::default().concurrency(settings.concurrency));
        let stopped = stop.clone();
        configure(controller)
            .graceful_shutdown_on(async move { stopped.cancelled().await })
            .run(
                |obj, inner: Arc<Inner<C, R>>| async move {
                    let span = tracing::info_span!("reconcile", object = %obj.name_any());
                    inner.reconcile_one(obj).instrument(span).await
                },
                |obj, _error, inner: Arc<Inner<C, R>>| {
                    let delay = inner.backoffs.failed(&key_of(obj.as_ref()));
                    Action::requeue(delay)
                },
                inner.clone(),
            )
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "controller event");
                }
            })
            .await;
        if runtime.shutdown.is_cancelled() {
            break;
        }
    }
    tracing::info!(operator = %runtime.name, "reconcile loop stopped");
}
