//! The garbage collector against devcluster over HTTP: background cascades (chains included),
//! dependents with another live owner, foreground deletion waiting for blocking dependents,
//! orphaning, custom resource owners, and references to owners that never existed.

mod common;

use std::time::Duration;

use devcluster::DevCluster;
use devcluster::controllers::{self, ControllerOptions};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams};
use kube::api::{GroupVersionKind, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use testkit::eventually;
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(20);
const NS: &str = "default";

/// A cluster (which runs its own collector) with a second collector started by hand: two
/// collectors must not get in each other's way. Only the collector is doubled; the other
/// controllers are not built to run twice.
async fn cluster() -> (DevCluster, CancellationToken) {
    let cluster = common::cluster().await;
    let token = CancellationToken::new();
    controllers::start(
        cluster.client(),
        &ControllerOptions {
            garbage_collector: true,
            ..ControllerOptions::none()
        },
        token.clone(),
    );
    (cluster, token)
}

async fn stop(cluster: DevCluster, token: CancellationToken) {
    token.cancel();
    cluster.shutdown().await;
}

fn reference(owner: &impl Resource<DynamicType = ()>, block: bool) -> OwnerReference {
    let mut r = owner.controller_owner_ref(&()).expect("owner has a uid");
    r.controller = None;
    r.block_owner_deletion = Some(block);
    r
}

fn meta(name: &str, owners: Vec<OwnerReference>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        owner_references: Some(owners),
        ..ObjectMeta::default()
    }
}

async fn config_map(api: &Api<ConfigMap>, name: &str, owners: Vec<OwnerReference>) -> ConfigMap {
    let cm = ConfigMap {
        metadata: meta(name, owners),
        ..ConfigMap::default()
    };
    api.create(&PostParams::default(), &cm)
        .await
        .expect("config map created")
}

async fn secret(api: &Api<Secret>, name: &str, owners: Vec<OwnerReference>) -> Secret {
    let s = Secret {
        metadata: meta(name, owners),
        ..Secret::default()
    };
    api.create(&PostParams::default(), &s)
        .await
        .expect("secret created")
}

/// Waits until `name` no longer exists in `api`.
async fn gone<K>(api: &Api<K>, name: &str)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(&format!("{name} deleted"), TIMEOUT, || async {
        match api.get_opt(name).await {
            Ok(None) => Some(()),
            _ => None,
        }
    })
    .await;
}

#[tokio::test]
async fn deleting_an_owner_deletes_its_dependents_and_their_dependents() {
    let (cluster, token) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client(), NS);
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), NS);
    let owner = config_map(&cms, "owner", vec![]).await;
    secret(&secrets, "dep-1", vec![reference(&owner, false)]).await;
    secret(&secrets, "dep-2", vec![reference(&owner, true)]).await;
    let middle = config_map(&cms, "middle", vec![reference(&owner, true)]).await;
    secret(&secrets, "leaf", vec![reference(&middle, true)]).await;
    let bystander = secret(&secrets, "bystander", vec![]).await;

    cms.delete("owner", &DeleteParams::default()).await.unwrap();

    gone(&secrets, "dep-1").await;
    gone(&secrets, "dep-2").await;
    gone(&cms, "middle").await;
    gone(&secrets, "leaf").await;
    let still = secrets
        .get("bystander")
        .await
        .expect("unowned secret stays");
    assert_eq!(still.uid(), bystander.uid());
    stop(cluster, token).await;
}

#[tokio::test]
async fn a_dependent_with_another_live_owner_survives() {
    let (cluster, token) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client(), NS);
    let first = config_map(&cms, "first", vec![]).await;
    let second = config_map(&cms, "second", vec![]).await;
    let shared = vec![reference(&first, true), reference(&second, true)];
    let dep = config_map(&cms, "shared", shared).await;

    cms.delete("first", &DeleteParams::default()).await.unwrap();
    gone(&cms, "first").await;

    // Upstream keeps the dependent and drops only the reference to the missing owner.
    let second_uid = second.uid();
    let kept = eventually("dangling reference removed", TIMEOUT, || async {
        let cm = cms.get("shared").await.ok()?;
        let uids: Vec<_> = cm
            .owner_references()
            .iter()
            .map(|r| r.uid.clone())
            .collect();
        (uids.len() == 1).then_some((cm, uids))
    })
    .await;
    assert_eq!(kept.0.uid(), dep.uid(), "the same object, not a recreation");
    assert_eq!(Some(kept.1[0].clone()), second_uid);

    cms.delete("second", &DeleteParams::default())
        .await
        .unwrap();
    gone(&cms, "shared").await;
    stop(cluster, token).await;
}

#[tokio::test]
async fn foreground_deletion_waits_for_blocking_dependents() {
    let (cluster, token) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client(), NS);
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), NS);
    let owner = config_map(&cms, "owner", vec![]).await;
    let mut blocker = Secret {
        metadata: meta("blocker", vec![reference(&owner, true)]),
        ..Secret::default()
    };
    blocker.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    secrets
        .create(&PostParams::default(), &blocker)
        .await
        .unwrap();
    secret(&secrets, "free", vec![reference(&owner, false)]).await;

    cms.delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();

    eventually("blocking dependent being deleted", TIMEOUT, || async {
        let s = secrets.get("blocker").await.ok()?;
        s.metadata.deletion_timestamp.map(|_| ())
    })
    .await;
    gone(&secrets, "free").await;
    let waiting = cms.get("owner").await.expect("owner waits for the blocker");
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert!(
        waiting
            .finalizers()
            .iter()
            .any(|f| f == "foregroundDeletion")
    );

    let release = json!({"metadata": {"finalizers": null}});
    secrets
        .patch("blocker", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
    eventually("owner deleted after its dependent", TIMEOUT, || async {
        let owner = cms.get_opt("owner").await.ok()?;
        let blocker = secrets.get_opt("blocker").await.ok()?;
        match (owner, blocker) {
            (None, None) => Some(()),
            (None, Some(_)) => panic!("owner went before its blocking dependent"),
            _ => None,
        }
    })
    .await;
    stop(cluster, token).await;
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_without_the_reference() {
    let (cluster, token) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client(), NS);
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), NS);
    let owner = config_map(&cms, "owner", vec![]).await;
    let other = config_map(&cms, "other", vec![]).await;
    secret(&secrets, "orphan-1", vec![reference(&owner, true)]).await;
    let both = vec![reference(&owner, true), reference(&other, false)];
    secret(&secrets, "orphan-2", both).await;

    cms.delete("owner", &DeleteParams::orphan()).await.unwrap();
    gone(&cms, "owner").await;

    // The finalizer goes only after every dependent was released.
    let first = secrets.get("orphan-1").await.expect("dependent kept");
    assert!(first.owner_references().is_empty());
    let second = secrets.get("orphan-2").await.expect("dependent kept");
    let uids: Vec<_> = second
        .owner_references()
        .iter()
        .map(|r| r.uid.clone())
        .collect();
    assert_eq!(uids, vec![other.uid().unwrap()]);
    stop(cluster, token).await;
}

#[tokio::test]
async fn custom_resource_owners_are_collected() {
    let (cluster, token) = cluster().await;
    let client = cluster.client();
    common::install_widgets(&client).await;
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), NS, &ApiResource::from_gvk(&gvk));
    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"color": "red"},
    }))
    .unwrap();
    let widget = widgets
        .create(&PostParams::default(), &widget)
        .await
        .unwrap();
    let owner = OwnerReference {
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        name: "w".into(),
        uid: widget.uid().expect("created widget has a uid"),
        block_owner_deletion: Some(true),
        controller: Some(true),
    };
    let cms: Api<ConfigMap> = Api::namespaced(client, NS);
    config_map(&cms, "w-1", vec![owner.clone()]).await;
    config_map(&cms, "w-2", vec![owner]).await;

    widgets.delete("w", &DeleteParams::default()).await.unwrap();

    gone(&cms, "w-1").await;
    gone(&cms, "w-2").await;
    stop(cluster, token).await;
}

#[tokio::test]
async fn references_to_owners_that_never_existed_are_dangling() {
    let (cluster, token) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client(), NS);
    let owner = config_map(&cms, "owner", vec![]).await;
    // Same name as a live object, but another uid: that owner is gone.
    let mut stale = reference(&owner, true);
    stale.uid = "00000000-0000-0000-0000-000000000000".into();
    config_map(&cms, "stale", vec![stale]).await;

    gone(&cms, "stale").await;
    assert!(cms.get_opt("owner").await.unwrap().is_some());
    stop(cluster, token).await;
}
