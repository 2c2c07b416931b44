//! The operator process: workload caches, the triggers that map changes to AppConfigs, and
//! the reconcile loop on operator-core.
//!
//! Workload caches are reflectors whose events also trigger reconciles, in that order, so a
//! reconcile triggered by a workload change always sees that change in the cache.
//! ConfigMaps and Secrets are watched for metadata only (their data is read fresh, and only for
//! listed objects, so Secret contents are never held in memory).

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use operator_core::{Runtime, Settings};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::metrics::RestartMetrics;
use crate::reconcile::{self, Context};
use crate::resource::{AppConfig, ConfigKind, ConfigRef, WorkloadKind};
use crate::usage;
use crate::workloads::Caches;

/// What changed, as far as AppConfigs are concerned.
#[derive(Debug, Clone)]
enum Trigger {
    /// A workload: the AppConfigs listing an object it uses, or recording it, are concerned.
    Workload {
        namespace: String,
        kind: WorkloadKind,
        name: String,
        uses: BTreeSet<ConfigRef>,
    },
    /// A ConfigMap or Secret.
    Config(ConfigKind, String, String),
}

type Guarded = DeserializeGuard<AppConfig>;

/// Runs the operator until the runtime shuts down; `namespace` limits every watch.
pub async fn run(
    runtime: Arc<Runtime>,
    namespace: Option<&str>,
    settings: Settings,
) -> Result<(), prometheus::Error> {
    let client = runtime.client.clone();
    let (tx, _) = broadcast::channel::<Trigger>(4096);
    let caches = Caches {
        deployments: cache(
            scoped::<Deployment>(&client, namespace),
            WorkloadKind::Deployment,
            |d| d.spec.as_ref().map(|s| &s.template),
            tx.clone(),
            &runtime,
        ),
        statefulsets: cache(
            scoped::<StatefulSet>(&client, namespace),
            WorkloadKind::StatefulSet,
            |s| s.spec.as_ref().map(|s| &s.template),
            tx.clone(),
            &runtime,
        ),
        daemonsets: cache(
            scoped::<DaemonSet>(&client, namespace),
            WorkloadKind::DaemonSet,
            |d| d.spec.as_ref().map(|s| &s.template),
            tx.clone(),
            &runtime,
        ),
        listed: Arc::default(),
    };
    config_triggers::<ConfigMap>(
        scoped(&client, namespace),
        ConfigKind::ConfigMap,
        tx.clone(),
        &runtime,
    );
    config_triggers::<Secret>(
        scoped(&client, namespace),
        ConfigKind::Secret,
        tx.clone(),
        &runtime,
    );
    let ctx = Arc::new(Context {
        runtime: runtime.clone(),
        caches,
        metrics: RestartMetrics::register(runtime.metrics.registry())?,
    });
    let primary: Api<Guarded> = scoped(&client, namespace);
    operator_core::run(
        runtime.clone(),
        primary,
        watcher::Config::default(),
        move |controller| {
            let store = controller.store();
            let triggers = targets(BroadcastStream::new(tx.subscribe()), store);
            controller.reconcile_on(triggers)
        },
        reconcile::reconcile,
        ctx,
        settings,
    )
    .await;
    Ok(())
}

fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A reflector of `api` whose every event, once applied to the cache, triggers the AppConfigs
/// concerned by the workload.
fn cache<K>(
    api: Api<K>,
    kind: WorkloadKind,
    template: fn(&K) -> Option<&k8s_openapi::api::core::v1::PodTemplateSpec>,
    tx: broadcast::Sender<Trigger>,
    runtime: &Runtime,
) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    let shutdown = runtime.shutdown.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                next = stream.next() => match next {
                    Some(Ok(obj)) => {
                        if let Some(namespace) = obj.namespace() {
                            let uses = template(&obj)
                                .and_then(|t| t.spec.as_ref())
                                .map(usage::used_by)
                                .unwrap_or_default();
                            let _ = tx.send(Trigger::Workload {
                                namespace,
                                kind,
                                name: obj.name_any(),
                                uses,
                            });
                        }
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, "workload watch failed; retrying"),
                    None => return,
                },
            }
        }
    });
    store
}

/// Metadata watch of ConfigMaps or Secrets: every change triggers the AppConfigs listing it.
fn config_triggers<K>(
    api: Api<PartialObjectMeta<K>>,
    kind: ConfigKind,
    tx: broadcast::Sender<Trigger>,
    runtime: &Runtime,
) where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .touched_objects();
    let shutdown = runtime.shutdown.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                next = stream.next() => match next {
                    Some(Ok(meta)) => {
                        if let (Some(ns), Some(name)) = (meta.metadata.namespace, meta.metadata.name) {
                            let _ = tx.send(Trigger::Config(kind, ns, name));
                        }
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, "config watch failed; retrying"),
                    None => return,
                },
            }
        }
    });
}

/// The AppConfigs each trigger concerns; after missed triggers (a lagging receiver), all.
fn targets(
    triggers: BroadcastStream<Trigger>,
    store: Store<Guarded>,
) -> impl Stream<Item = ObjectRef<Guarded>> + Send + 'static {
    triggers.flat_map(move |t| {
        let refs: Vec<ObjectRef<Guarded>> = store
            .state()
            .iter()
            .filter(|guard| concerns(guard, &t))
            .map(|guard| ObjectRef::from_obj(guard.as_ref()))
            .collect();
        futures::stream::iter(refs)
    })
}

fn concerns(guard: &Guarded, trigger: &Result<Trigger, BroadcastStreamRecvError>) -> bool {
    let Ok(app) = &guard.0 else {
        return false;
    };
    match trigger {
        Err(BroadcastStreamRecvError::Lagged(_)) => true,
        Ok(Trigger::Workload {
            namespace,
            kind,
            name,
            uses,
        }) => {
            app.namespace().as_deref() == Some(namespace.as_str())
                && (uses.iter().any(|u| app.lists(u.kind, &u.name))
                    || app.status.as_ref().is_some_and(|s| {
                        s.workloads
                            .iter()
                            .any(|w| w.kind == *kind && w.name == *name)
                    }))
        }
        Ok(Trigger::Config(kind, ns, name)) => {
            app.namespace().as_deref() == Some(ns.as_str()) && app.lists(*kind, name)
        }
    }
}
