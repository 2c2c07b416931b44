//! kube-runtime works unchanged against devcluster: a Controller with `owns()` reconciles on
//! create, update and child changes, and the finalizer helper adds and removes its finalizer.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::{Controller, watcher};
use kube::{CustomResource, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use common::{cluster, install_widgets};

#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[kube(group = "example.com", version = "v1", kind = "Widget", namespaced)]
struct WidgetSpec {
    color: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replicas: Option<i64>,
}

struct Ctx {
    client: kube::Client,
    cleanups: AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Finalizer(#[from] Box<kube::runtime::finalizer::Error<kube::Error>>),
}

const FINALIZER: &str = "example.com/cleanup";

async fn reconcile(w: Arc<Widget>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = w.namespace().unwrap_or_default();
    let widgets: Api<Widget> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&widgets, FINALIZER, w, |event| async {
        match event {
            Finalizer::Apply(w) => {
                let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
                let owner = w.controller_owner_ref(&()).expect("has uid");
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(format!("{}-config", w.name_any())),
                        owner_references: Some(vec![owner]),
                        ..Default::default()
                    },
                    data: Some([("color".to_string(), w.spec.color.clone())].into()),
                    ..Default::default()
                };
                cms.patch(
                    &format!("{}-config", w.name_any()),
                    &PatchParams::apply("widget-controller").force(),
                    &Patch::Apply(&cm),
                )
                .await?;
                Ok(Action::await_change())
            }
            Finalizer::Cleanup(_) => {
                ctx.cleanups.fetch_add(1, Ordering::SeqCst);
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

fn error_policy(_: Arc<Widget>, _: &Error, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

async fn wait_color(cms: &Api<ConfigMap>, name: &str, color: &str) {
    testkit::eventually(
        &format!("{name} has color {color}"),
        Duration::from_secs(20),
        || async {
            cms.get_opt(name)
                .await
                .ok()
                .flatten()
                .and_then(|cm| cm.data)
                .filter(|d| d.get("color").map(String::as_str) == Some(color))
                .map(|_| ())
        },
    )
    .await;
}

#[tokio::test]
async fn controller_with_owns_and_finalizer() {
    let c = cluster().await;
    let client = c.client();
    install_widgets(&client).await;
    let widgets: Api<Widget> = Api::default_namespaced(client.clone());
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        cleanups: AtomicUsize::new(0),
    });
    let controller = Controller::new(widgets.clone(), watcher::Config::default())
        .owns(cms.clone(), watcher::Config::default())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let handle = tokio::spawn(controller);

    let w: Widget = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"color": "red"}
    }))
    .unwrap();
    widgets.create(&PostParams::default(), &w).await.unwrap();
    wait_color(&cms, "w-config", "red").await;
    let w = widgets.get("w").await.unwrap();
    assert_eq!(w.finalizers(), [FINALIZER.to_string()]);

    // Update of the primary.
    let p = json!({"spec": {"color": "blue"}});
    widgets
        .patch("w", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    wait_color(&cms, "w-config", "blue").await;

    // A change to the child (deleted) is seen through owns() and repaired.
    cms.delete("w-config", &DeleteParams::default())
        .await
        .unwrap();
    wait_color(&cms, "w-config", "blue").await;

    // Deletion: cleanup runs once, the finalizer goes, then the object.
    widgets.delete("w", &DeleteParams::default()).await.unwrap();
    testkit::eventually("widget gone", Duration::from_secs(20), || async {
        widgets.get_opt("w").await.unwrap().is_none().then_some(())
    })
    .await;
    assert_eq!(ctx.cleanups.load(Ordering::SeqCst), 1);
    handle.abort();
    c.shutdown().await;
}
