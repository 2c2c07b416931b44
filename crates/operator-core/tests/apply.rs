//! Server-side apply, ownership labels and pruning, against a devcluster.

use std::collections::BTreeMap;
use std::time::Duration;

use devcluster::DevCluster;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use operator_core::apply::{
    Applier, ApplyError, Inventory, OWNER_UID_LABEL, ObjectRef, Ownership, PruneScope,
};
use serde_json::json;

const MANAGER: &str = "kubecrew-test";
const OWNER: &str = "6f1c0d9a-0000-4000-8000-00000000000a";
const OTHER_OWNER: &str = "6f1c0d9a-0000-4000-8000-00000000000b";

fn ownership(uid: &str) -> Ownership {
    Ownership {
        manager: MANAGER.into(),
        instance: "demo".into(),
        owner_uid: uid.into(),
    }
}

async fn cluster_with_namespaces(namespaces: &[&str]) -> (DevCluster, Client) {
    let cluster = DevCluster::start(Default::default())
        .await
        .expect("devcluster starts");
    let client = cluster.client();
    let api: Api<Namespace> = Api::all(client.clone());
    for ns in namespaces {
        let namespace = Namespace {
            metadata: meta(None, ns),
            ..Namespace::default()
        };
        api.create(&PostParams::default(), &namespace)
            .await
            .expect("namespace created");
    }
    (cluster, client)
}

fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(str::to_owned),
        ..ObjectMeta::default()
    }
}

fn config_map(ns: &str, name: &str) -> ConfigMap {
    ConfigMap {
        metadata: meta(Some(ns), name),
        data: Some(BTreeMap::from([("key".into(), "value".into())])),
        ..ConfigMap::default()
    }
}

fn secret(ns: &str, name: &str) -> Secret {
    Secret {
        metadata: meta(Some(ns), name),
        string_data: Some(BTreeMap::from([("password".into(), "hunter2".into())])),
        ..Secret::default()
    }
}

fn service(ns: &str, name: &str) -> Service {
    Service {
        metadata: meta(Some(ns), name),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The kinds the tests prune by label.
fn kinds() -> Vec<ApiResource> {
    vec![
        ApiResource::erase::<ConfigMap>(&()),
        ApiResource::erase::<Secret>(&()),
        ApiResource::erase::<Service>(&()),
    ]
}

fn service_monitor_kind() -> ApiResource {
    ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: "monitoring.coreos.com/v1".into(),
        kind: "ServiceMonitor".into(),
        plural: "servicemonitors".into(),
    }
}

fn service_monitor(ns: &str, name: &str) -> DynamicObject {
    DynamicObject::new(name, &service_monitor_kind())
        .within(ns)
        .data(json!({"spec": {
            "selector": {"matchLabels": {"app": "demo"}},
            "endpoints": [{"port": "http"}]
        }}))
}

async fn install_service_monitor_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"plural": "servicemonitors", "singular": "servicemonitor",
                      "kind": "ServiceMonitor", "listKind": "ServiceMonitorList"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                }}}
            }]
        }
    }))
    .expect("a valid CRD");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("CRD created");
    testkit::eventually("the ServiceMonitor CRD is served", TIMEOUT, || async {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), "default", &service_monitor_kind());
        api.list(&Default::default()).await.ok()
    })
    .await;
}

const TIMEOUT: Duration = Duration::from_secs(20);

async fn exists<K>(api: &Api<K>, name: &str) -> bool
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.expect("get works").is_some()
}

fn shown(refs: &[ObjectRef]) -> Vec<String> {
    refs.iter().map(ToString::to_string).collect()
}

fn shown_inventory(inventory: &Inventory) -> Vec<String> {
    inventory.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn apply_labels_objects_and_records_the_field_manager() {
    let (cluster, client) = cluster_with_namespaces(&["app"]).await;
    let owner = ownership(OWNER);
    let applier = Applier::new(client.clone(), owner.clone());

    let mut cm = config_map("app", "settings");
    cm.labels_mut().insert("app".into(), "demo".into());
    // The object cannot claim to be someone else's: ownership labels win.
    cm.labels_mut()
        .insert("app.kubernetes.io/managed-by".into(), "helm".into());
    let (cm, secret, svc) = tokio::try_join!(
        applier.apply(cm),
        applier.apply(secret("app", "credentials")),
        applier.apply(service("app", "web")),
    )
    .expect("all three apply");

    assert_eq!(cm.labels()["app"], "demo");
    assert!(owner.owns(cm.labels()), "{:?}", cm.labels());
    assert_eq!(cm.labels()["app.kubernetes.io/managed-by"], MANAGER);
    assert_eq!(cm.labels()["app.kubernetes.io/part-of"], "kubecrew");
    assert_eq!(cm.labels()["app.kubernetes.io/instance"], "demo");
    assert_eq!(cm.labels()[OWNER_UID_LABEL], OWNER);
    assert!(owner.owns(secret.labels()));
    assert_eq!(svc.spec.and_then(|s| s.ports).map(|p| p.len()), Some(1));

    let live = Api::<Service>::namespaced(client.clone(), "app")
        .get("web")
        .await
        .expect("service stored");
    assert!(owner.owns(live.labels()));
    let managers: Vec<(&str, &str)> = live
        .managed_fields()
        .iter()
        .map(|m| {
            (
                m.manager.as_deref().unwrap_or_default(),
                m.operation.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(managers, [(MANAGER, "Apply")]);

    assert_eq!(
        shown_inventory(&applier.inventory()),
        [
            "ConfigMap/app/settings",
            "Secret/app/credentials",
            "Service/app/web"
        ]
    );

    // Applying the same desired object again changes nothing.
    let again = applier
        .apply(config_map("app", "settings"))
        .await
        .expect("re-apply");
    assert_eq!(
        again.labels().get("app"),
        None,
        "a label no longer desired is removed"
    );
    let unchanged = applier
        .apply(config_map("app", "settings"))
        .await
        .expect("re-apply");
    assert_eq!(unchanged.resource_version(), again.resource_version());
    assert_eq!(applier.inventory().len(), 3);
    cluster.shutdown().await;
}

#[tokio::test]
async fn apply_takes_over_fields_another_manager_set() {
    let (cluster, client) = cluster_with_namespaces(&["app"]).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "app");
    let mut theirs = config_map("app", "settings");
    theirs.data = Some(BTreeMap::from([("key".into(), "theirs".into())]));
    api.patch(
        "settings",
        &PatchParams::apply("someone-else"),
        &Patch::Apply(&theirs),
    )
    .await
    .expect("the other manager applies");

    let applier = Applier::new(client.clone(), ownership(OWNER));
    let ours = applier
        .apply(config_map("app", "settings"))
        .await
        .expect("a forced apply wins the conflict");
    assert_eq!(ours.data.as_ref().map(|d| d["key"].as_str()), Some("value"));
    cluster.shutdown().await;
}

#[tokio::test]
async fn apply_errors_name_the_object() {
    let (cluster, client) = cluster_with_namespaces(&[]).await;
    let applier = Applier::new(client, ownership(OWNER));

    let nameless = ConfigMap {
        metadata: ObjectMeta {
            generate_name: Some("x-".into()),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    let err = applier.apply(nameless).await.unwrap_err();
    assert!(matches!(err, ApplyError::MissingName { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "cannot apply a ConfigMap without metadata.name"
    );

    let err = applier
        .apply(config_map("no-such-namespace", "settings"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ApplyError::Apply { object, source: kube::Error::Api(status) }
            if object.name == "settings" && status.is_not_found()),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("cannot apply ConfigMap/no-such-namespace/settings: "),
        "{err}"
    );
    assert!(
        applier.inventory().is_empty(),
        "failed applies are not recorded"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn prune_deletes_what_is_no_longer_desired() {
    let (cluster, client) = cluster_with_namespaces(&["app"]).await;
    let round1 = Applier::new(client.clone(), ownership(OWNER));
    round1.apply(config_map("app", "settings")).await.unwrap();
    round1.apply(secret("app", "credentials")).await.unwrap();
    round1.apply(service("app", "web")).await.unwrap();
    assert_eq!(round1.prune(&Inventory::new(), &kinds()).await.unwrap(), []);
    let stored = round1.inventory();

    // The status round trip a restarted operator goes through.
    let stored: Inventory = serde_json::from_value(serde_json::to_value(&stored).unwrap()).unwrap();

    let round2 = Applier::new(client.clone(), ownership(OWNER));
    round2.apply(config_map("app", "settings")).await.unwrap();
    round2.apply(service("app", "web")).await.unwrap();
    let deleted = round2.prune(&stored, &kinds()).await.expect("prune");
    assert_eq!(shown(&deleted), ["Secret/app/credentials"]);

    assert!(
        !exists(
            &Api::<Secret>::namespaced(client.clone(), "app"),
            "credentials"
        )
        .await
    );
    assert!(
        exists(
            &Api::<ConfigMap>::namespaced(client.clone(), "app"),
            "settings"
        )
        .await
    );
    assert!(exists(&Api::<Service>::namespaced(client.clone(), "app"), "web").await);
    assert_eq!(
        shown_inventory(&round2.inventory()),
        ["ConfigMap/app/settings", "Service/app/web"]
    );

    // A second prune, or one from an inventory naming objects already gone, finds nothing.
    assert_eq!(round2.prune(&stored, &kinds()).await.unwrap(), []);
    cluster.shutdown().await;
}

#[tokio::test]
async fn prune_deletes_cluster_scoped_objects_from_the_inventory() {
    let (cluster, client) = cluster_with_namespaces(&[]).await;
    let role = ClusterRole {
        metadata: meta(None, "demo-reader"),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into()],
            ..PolicyRule::default()
        }]),
        ..ClusterRole::default()
    };
    let round1 = Applier::new(client.clone(), ownership(OWNER));
    round1.apply(role).await.expect("cluster-scoped apply");
    assert_eq!(
        shown_inventory(&round1.inventory()),
        ["ClusterRole/demo-reader"]
    );

    let round2 = Applier::new(client.clone(), ownership(OWNER));
    // ClusterRole is not among the listed kinds: discovery finds its API.
    let deleted = round2.prune(&round1.inventory(), &kinds()).await.unwrap();
    assert_eq!(shown(&deleted), ["ClusterRole/demo-reader"]);
    assert!(!exists(&Api::<ClusterRole>::all(client.clone()), "demo-reader").await);
    cluster.shutdown().await;
}

#[tokio::test]
async fn prune_leaves_objects_that_are_not_this_owners() {
    let (cluster, client) = cluster_with_namespaces(&["app"]).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "app");
    let round1 = Applier::new(client.clone(), ownership(OWNER));
    round1.apply(config_map("app", "recreated")).await.unwrap();
    round1.apply(config_map("app", "adopted")).await.unwrap();
    round1.apply(config_map("app", "dropped")).await.unwrap();
    let stored = round1.inventory();

    // Someone deleted "recreated" and made their own, unlabelled, under the same name.
    configmaps
        .delete("recreated", &Default::default())
        .await
        .unwrap();
    configmaps
        .create(&PostParams::default(), &config_map("app", "recreated"))
        .await
        .unwrap();
    // Someone adopted "adopted" by taking the owner label off.
    configmaps
        .patch(
            "adopted",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {OWNER_UID_LABEL: null}}})),
        )
        .await
        .unwrap();
    // Another owner's object, and one whose owner-uid label was copied by hand onto an object
    // managed by someone else: the selector finds the latter, the other labels clear it.
    Applier::new(client.clone(), ownership(OTHER_OWNER))
        .apply(config_map("app", "theirs"))
        .await
        .unwrap();
    let mut copied = config_map("app", "copied");
    copied
        .labels_mut()
        .insert(OWNER_UID_LABEL.into(), OWNER.into());
    configmaps
        .create(&PostParams::default(), &copied)
        .await
        .unwrap();

    let mut previous = stored.clone();
    previous.insert(ObjectRef::new(
        &ApiResource::erase::<ConfigMap>(&()),
        Some("app"),
        "theirs",
    ));
    let round2 = Applier::new(client.clone(), ownership(OWNER));
    let deleted = round2.prune(&previous, &kinds()).await.expect("prune");
    assert_eq!(shown(&deleted), ["ConfigMap/app/dropped"]);
    for name in ["recreated", "adopted", "theirs", "copied"] {
        assert!(exists(&configmaps, name).await, "{name} survives");
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn prune_reaches_every_namespace_of_the_inventory() {
    let (cluster, client) = cluster_with_namespaces(&["ns-a", "ns-b"]).await;
    let round1 = Applier::new(client.clone(), ownership(OWNER));
    round1.apply(config_map("ns-a", "settings")).await.unwrap();
    round1.apply(config_map("ns-b", "settings")).await.unwrap();
    round1.apply(secret("ns-b", "credentials")).await.unwrap();

    let round2 = Applier::new(client.clone(), ownership(OWNER));
    round2.apply(config_map("ns-a", "settings")).await.unwrap();
    // Listing by label only in known namespaces still reaches ns-b through the inventory.
    let round2 = round2.with_prune_scope(PruneScope::KnownNamespaces);
    let deleted = round2.prune(&round1.inventory(), &kinds()).await.unwrap();
    assert_eq!(
        shown(&deleted),
        ["ConfigMap/ns-b/settings", "Secret/ns-b/credentials"]
    );
    assert!(
        exists(
            &Api::<ConfigMap>::namespaced(client.clone(), "ns-a"),
            "settings"
        )
        .await
    );
    assert!(
        !exists(
            &Api::<ConfigMap>::namespaced(client.clone(), "ns-b"),
            "settings"
        )
        .await
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn prune_finds_labelled_objects_missing_from_the_inventory() {
    let (cluster, client) = cluster_with_namespaces(&["ns-a", "ns-b"]).await;
    // A round that applied but crashed before storing its inventory.
    let lost = Applier::new(client.clone(), ownership(OWNER));
    lost.apply(config_map("ns-a", "orphan")).await.unwrap();
    lost.apply(service("ns-b", "orphan")).await.unwrap();

    // Limited to known namespaces (here only ns-a), the ns-b orphan stays out of sight.
    let limited = Applier::new(client.clone(), ownership(OWNER))
        .with_prune_scope(PruneScope::KnownNamespaces);
    limited.apply(config_map("ns-a", "kept")).await.unwrap();
    let deleted = limited.prune(&Inventory::new(), &kinds()).await.unwrap();
    assert_eq!(shown(&deleted), ["ConfigMap/ns-a/orphan"]);
    assert!(
        exists(
            &Api::<Service>::namespaced(client.clone(), "ns-b"),
            "orphan"
        )
        .await
    );

    let everywhere = Applier::new(client.clone(), ownership(OWNER));
    everywhere.apply(config_map("ns-a", "kept")).await.unwrap();
    let deleted = everywhere.prune(&Inventory::new(), &kinds()).await.unwrap();
    assert_eq!(shown(&deleted), ["Service/ns-b/orphan"]);
    assert!(
        exists(
            &Api::<ConfigMap>::namespaced(client.clone(), "ns-a"),
            "kept"
        )
        .await
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn prune_skips_kinds_the_server_does_not_serve() {
    let (cluster, client) = cluster_with_namespaces(&["app"]).await;
    let round1 = Applier::new(client.clone(), ownership(OWNER));
    round1.apply(config_map("app", "dropped")).await.unwrap();
    let mut previous = round1.inventory();
    // Entries of kinds whose CRDs are absent: one listed among the kinds, one only remembered.
    previous.insert(ObjectRef::new(
        &service_monitor_kind(),
        Some("app"),
        "metrics",
    ));
    previous.insert(ObjectRef {
        group: "widgets.example.com".into(),
        version: "v1alpha1".into(),
        kind: "Widget".into(),
        namespace: Some("app".into()),
        name: "w".into(),
    });

    let round2 = Applier::new(client.clone(), ownership(OWNER));
    let mut kinds = kinds();
    kinds.push(service_monitor_kind());
    let deleted = round2.prune(&previous, &kinds).await.expect("not an error");
    assert_eq!(shown(&deleted), ["ConfigMap/app/dropped"]);
    cluster.shutdown().await;
}

#[tokio::test]
async fn apply_dynamic_and_prune_a_custom_kind() {
    let (cluster, client) = cluster_with_namespaces(&["app"]).await;
    install_service_monitor_crd(&client).await;
    let owner = ownership(OWNER);
    let sm = service_monitor_kind();

    let round1 = Applier::new(client.clone(), owner.clone());
    let live = round1
        .apply_dynamic(service_monitor("app", "metrics"), &sm)
        .await
        .expect("dynamic apply");
    assert!(owner.owns(live.labels()));
    assert_eq!(live.data["spec"]["endpoints"][0]["port"], "http");
    let recorded: Vec<_> = round1.inventory().iter().cloned().collect();
    assert_eq!(
        recorded,
        [ObjectRef {
            group: "monitoring.coreos.com".into(),
            version: "v1".into(),
            kind: "ServiceMonitor".into(),
            namespace: Some("app".into()),
            name: "metrics".into(),
        }]
    );

    // Pruned from the inventory alone: discovery finds the API of a kind not listed.
    let round2 = Applier::new(client.clone(), owner.clone());
    let deleted = round2.prune(&round1.inventory(), &[]).await.unwrap();
    assert_eq!(shown(&deleted), ["ServiceMonitor/app/metrics"]);

    // Pruned by label when the inventory was lost.
    let lost = Applier::new(client.clone(), owner.clone());
    lost.apply_dynamic(service_monitor("app", "orphan"), &sm)
        .await
        .unwrap();
    let round3 = Applier::new(client.clone(), owner.clone());
    let deleted = round3
        .prune(&Inventory::new(), std::slice::from_ref(&sm))
        .await
        .unwrap();
    assert_eq!(shown(&deleted), ["ServiceMonitor/app/orphan"]);

    // Recorded under a version the CRD no longer serves: found at the version it does serve.
    let old = Applier::new(client.clone(), owner.clone());
    old.apply_dynamic(service_monitor("app", "old"), &sm)
        .await
        .unwrap();
    let previous: Inventory = old
        .inventory()
        .iter()
        .map(|r| ObjectRef {
            version: "v1alpha1".into(),
            ..r.clone()
        })
        .collect();
    let round4 = Applier::new(client.clone(), owner.clone());
    let deleted = round4.prune(&previous, &[]).await.unwrap();
    assert_eq!(shown(&deleted), ["ServiceMonitor/app/old"]);

    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "app", &sm);
    assert!(
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    cluster.shutdown().await;
}
