//! The operator process: the reconcile loop on operator-core, triggered by the resource and by
//! every change of the children it owns (so drift is corrected promptly).

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::watcher;
use operator_core::{Runtime, Settings};

use crate::reconcile::{self, Context};
use crate::resource::KindCustomHttp;

/// Runs the operator until the runtime shuts down; `namespace` limits every watch.
pub async fn run(runtime: Arc<Runtime>, namespace: Option<&str>, settings: Settings) {
    let client = runtime.client.clone();
    let ns = namespace.map(str::to_owned);
    let api = move |c: &kube::Client| -> Api<DeserializeGuard<KindCustomHttp>> {
        match &ns {
            Some(ns) => Api::namespaced(c.clone(), ns),
            None => Api::all(c.clone()),
        }
    };
    let children = namespace.map(str::to_owned);
    let owned = move |c: &kube::Client| {
        let cfg = watcher::Config::default().labels("app.kubernetes.io/managed-by=http-peering");
        match &children {
            Some(ns) => (
                Api::<Deployment>::namespaced(c.clone(), ns),
                Api::<Service>::namespaced(c.clone(), ns),
                Api::<ConfigMap>::namespaced(c.clone(), ns),
                cfg,
            ),
            None => (
                Api::all(c.clone()),
                Api::all(c.clone()),
                Api::all(c.clone()),
                cfg,
            ),
        }
    };
    let ctx = Arc::new(Context {
        runtime: runtime.clone(),
    });
    let watch_client = client.clone();
    operator_core::run(
        runtime,
        api(&client),
        watcher::Config::default(),
        move |controller| {
            let (deployments, services, config_maps, cfg) = owned(&watch_client);
            controller
                .owns(deployments, cfg.clone())
                .owns(services, cfg.clone())
                .owns(config_maps, cfg)
        },
        reconcile::reconcile,
        ctx,
        settings,
    )
    .await;
}
