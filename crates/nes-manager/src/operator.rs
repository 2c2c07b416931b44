//! The manager process: two reconcile loops on operator-core (NetworkConfiguration and
//! NetworkCare) and the [`hub`] of agent status streams, all gated on leadership.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use nes_api::crd::{NetworkCare, NetworkConfiguration};
use operator_core::Runtime;
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::CancellationToken;

use crate::delivery::Stats;
use crate::hub::object_ref;
use crate::{ManagerSettings, care, hub, netconf};

type ConfigRef = ObjectRef<DeserializeGuard<NetworkConfiguration>>;
type CareRef = ObjectRef<DeserializeGuard<NetworkCare>>;

/// What the reconcilers and the hub share.
pub struct Context {
    /// operator-core services.
    pub runtime: Arc<Runtime>,
    /// The manager's settings.
    pub settings: ManagerSettings,
    /// One connection pool for agents and callbacks (connect timeout, TCP keep-alive; no
    /// overall timeout, which would cut the status streams).
    pub http: reqwest::Client,
    /// Delivery counters per NetworkCare.
    pub stats: Stats,
    config_triggers: broadcast::Sender<ConfigRef>,
    care_triggers: broadcast::Sender<CareRef>,
}

impl Context {
    /// The shared state for `runtime` and `settings`.
    pub fn new(runtime: Arc<Runtime>, settings: ManagerSettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.agent_timeout)
            .tcp_keepalive(std::time::Duration::from_secs(15))
            .build()?;
        Ok(Context {
            runtime,
            settings,
            http,
            stats: Stats::default(),
            config_triggers: broadcast::channel(1024).0,
            care_triggers: broadcast::channel(1024).0,
        })
    }

    /// Asks for a reconcile of NetworkConfiguration `namespace/name`.
    pub fn trigger_config(&self, namespace: &str, name: &str) {
        // No receiver only while not leading: the next leader lists everything anyway.
        let _ = self.config_triggers.send(object_ref(namespace, name));
    }

    /// Asks for a reconcile of NetworkCare `namespace/name`.
    pub fn trigger_care(&self, namespace: &str, name: &str) {
        let _ = self.care_triggers.send(object_ref(namespace, name));
    }
}

/// A stream of the triggers sent from now on (lagging drops triggers; the periodic requeue
/// covers them).
fn triggers<T: Clone + Send + 'static>(
    sender: &broadcast::Sender<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    BroadcastStream::new(sender.subscribe()).filter_map(|t| std::future::ready(t.ok()))
}

fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the manager until `runtime.shutdown` is cancelled: usable in-process by tests, and by
/// `main` after `operator_core::start`.
pub async fn run(runtime: Arc<Runtime>, settings: ManagerSettings) -> Result<(), crate::Error> {
    let ctx =
        Arc::new(
            Context::new(runtime.clone(), settings).map_err(|e| crate::Error::Agent {
                pod: String::new(),
                message: format!("building the HTTP client: {e}"),
            })?,
        );
    let ns = ctx.settings.namespace.clone();
    let client = runtime.client.clone();
    let reconcile_settings = ctx.settings.reconcile.clone();

    let configs = {
        let ctx = ctx.clone();
        let pods: Api<PartialObjectMeta<Pod>> = scoped(&client, ns.as_deref());
        let trigger = ctx.config_triggers.clone();
        operator_core::run(
            runtime.clone(),
            scoped::<DeserializeGuard<NetworkConfiguration>>(&client, ns.as_deref()),
            watcher::Config::default(),
            move |controller| {
                // A NetworkConfiguration is named after its pod, so a pod's name is all this
                // trigger needs: a metadata-only watch (still an event for every change of the
                // pod, status included; the reconciler reads the pod itself).
                let pod_changes = watcher::watcher(pods.clone(), watcher::Config::default())
                    .default_backoff()
                    .touched_objects();
                controller
                    .watches_stream(pod_changes, |pod: PartialObjectMeta<Pod>| {
                        Some(object_ref(
                            &pod.namespace().unwrap_or_default(),
                            &pod.name_any(),
                        ))
                    })
                    .reconcile_on(triggers(&trigger))
            },
            netconf::reconcile,
            ctx.clone(),
            reconcile_settings.clone(),
        )
    };
    let cares = {
        let trigger = ctx.care_triggers.clone();
        operator_core::run(
            runtime.clone(),
            scoped::<DeserializeGuard<NetworkCare>>(&client, ns.as_deref()),
            watcher::Config::default(),
            move |controller| controller.reconcile_on(triggers(&trigger)),
            care::reconcile,
            ctx.clone(),
            reconcile_settings,
        )
    };
    let streams = while_leading(runtime.clone(), {
        let ctx = ctx.clone();
        move |stop| {
            let ctx = ctx.clone();
            async move {
                hub::run(ctx.clone(), stop).await;
                // Leadership lost (or shutdown): the next leader counts from the status, so
                // this replica's counts must not outlive its term.
                ctx.stats.new_term();
            }
        }
    });
    tokio::join!(configs, cares, streams);
    Ok(())
}

/// Runs `task` while this replica leads (always without leader election), restarting it when
/// leadership comes back, until shutdown.
async fn while_leading<F, Fut>(runtime: Arc<Runtime>, task: F)
where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let stop = runtime.shutdown.child_token();
        let Some(leader) = runtime.leader.clone() else {
            task(stop).await;
            return;
        };
        let mut waiting: watch::Receiver<bool> = leader.clone();
        let leading = tokio::select! {
            r = waiting.wait_for(|l| *l) => r.is_ok(),
            _ = runtime.shutdown.cancelled() => false,
        };
        if !leading {
            return;
        }
        let mut losing = leader;
        let lost = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = losing.wait_for(|l| !*l) => lost.cancel(),
                _ = lost.cancelled() => {}
            }
        });
        task(stop.clone()).await;
        stop.cancel();
        if runtime.shutdown.is_cancelled() {
            return;
        }
    }
}

/// Applies `next` as the status of `obj` unless it equals `current` (nothing changed, nothing
/// written), with the operator's field manager.
pub(crate) async fn write_status<K, S>(
    client: &kube::Client,
    obj: &K,
    current: &S,
    next: &S,
) -> Result<(), kube::Error>
where
    K: kube::Resource<DynamicType = ()>,
    S: serde::Serialize + PartialEq,
{
    if next == current {
        return Ok(());
    }
    let value = serde_json::to_value(next).map_err(kube::Error::SerdeError)?;
    operator_core::status::apply(
        client,
        &kube::api::ApiResource::erase::<K>(&()),
        obj.meta().namespace.as_deref(),
        &obj.name_any(),
        crate::OPERATOR,
        value,
    )
    .await
}
