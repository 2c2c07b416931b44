//! The operator against a cluster with its workload and garbage-collector controllers (the
//! real control plane in CI): a release installed, upgraded, kept in shape, refused when the
//! input is bad, and removed.
//!
//! Collectors are cluster-scoped and the operator watches the whole cluster, and one test
//! needs the ServiceMonitor CRD where another needs it absent: so each test starts a cluster
//! of its own (of the flavour KUBECREW_CLUSTER names) instead of sharing the binary's.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use collector::reconcile::OPERATOR;
use collector::resource::Collector;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::{Client, CustomResourceExt};
use localcluster::{Cluster, Flavor, Options};
use operator_core::Runtime;
use serde_json::{Value, json};
use testkit::eventually;

const TIMEOUT: Duration = Duration::from_secs(60);

async fn setup(with_service_monitors: bool) -> (Cluster, Arc<Runtime>) {
    let flavor = Flavor::from_env().expect("KUBECREW_CLUSTER");
    let cluster = Cluster::start(flavor, Options::default())
        .await
        .expect("the cluster starts");
    let mut install = vec![serde_json::to_value(Collector::crd()).expect("CRD")];
    if with_service_monitors {
        install.push(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
            "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                     "names": {"plural": "servicemonitors", "singular": "servicemonitor",
                               "kind": "ServiceMonitor", "listKind": "ServiceMonitorList"},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                         "schema": {"openAPIV3Schema": {"type": "object",
                             "x-kubernetes-preserve-unknown-fields": true}}}]}
        }));
    }
    for crd in install {
        let crd: CustomResourceDefinition = serde_json::from_value(crd).expect("valid CRD");
        cluster.install_crd(&crd).await.expect("CRD installed");
    }
    let runtime = Arc::new(Runtime::new(cluster.client(), OPERATOR));
    let rt = runtime.clone();
    tokio::spawn(async move {
        collector::operator::run(rt, Default::default(), operator_core::Settings::default()).await;
    });
    (cluster, runtime)
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn collector(name: &str, tenant: &str, version: &str, configuration: &str) -> Collector {
    serde_json::from_value(json!({
        "apiVersion": "collector.kubecrew.io/v1alpha1",
        "kind": "Collector",
        "metadata": {"name": name},
        "spec": {
            "collector": {"name": "otel", "version": version, "configuration": configuration},
            "tenant": {"id": format!("id-{tenant}"), "reference": tenant, "instance": "main"},
            "cluster": "dev"
        }
    }))
    .expect("valid Collector")
}

async fn condition(client: &Client, name: &str, type_: &str) -> Option<(String, String, String)> {
    let c = Api::<Collector>::all(client.clone()).get(name).await.ok()?;
    let cond = c
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)?;
    Some((cond.status, cond.reason, cond.message))
}

async fn ready(client: &Client, name: &str) -> String {
    eventually(&format!("{name} is Ready"), TIMEOUT, || async {
        condition(client, name, "Ready")
            .await
            .filter(|c| c.0 == "True")
            .map(|c| c.2)
    })
    .await
}

async fn deployment(client: &Client, ns: &str) -> Option<Deployment> {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get("otel-main")
        .await
        .ok()
}

fn image(d: &Deployment) -> Option<String> {
    d.spec.as_ref()?.template.spec.as_ref()?.containers[0]
        .image
        .clone()
}

fn hash_annotation(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get("collector.kubecrew.io/config-hash")
        .cloned()
}

async fn patch_spec(client: &Client, name: &str, collector_spec: Value) {
    Api::<Collector>::all(client.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"collector": collector_spec}})),
        )
        .await
        .expect("patched");
}

fn service_monitors(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "servicemonitors");
    Api::namespaced_with(client.clone(), ns, &ar)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_is_installed_upgraded_kept_and_removed() {
    let (cluster, runtime) = setup(true).await;
    let client = cluster.client();
    let api: Api<Collector> = Api::all(client.clone());
    let config = b64("config: |\n  receivers: {otlp: {}}\nreplicas: 1\n");
    api.create(
        &PostParams::default(),
        &collector("acme-otel", "Acme", "0.98.0", &config),
    )
    .await
    .expect("created");
    api.create(
        &PostParams::default(),
        &collector("other-otel", "Other", "0.98.0", ""),
    )
    .await
    .expect("created");
    let message = ready(&client, "acme-otel").await;
    assert!(message.contains("release otel-main in acme"), "{message}");
    ready(&client, "other-otel").await;

    Api::<Namespace>::all(client.clone())
        .get("acme")
        .await
        .expect("namespace");
    Api::<ServiceAccount>::namespaced(client.clone(), "acme")
        .get("otel-main")
        .await
        .expect("sa");
    let secret = Api::<Secret>::namespaced(client.clone(), "acme")
        .get("otel-main-config")
        .await
        .expect("secret");
    assert_eq!(
        secret.data.expect("data")["config.yaml"].0,
        b"receivers: {otlp: {}}\n".to_vec()
    );
    let d = deployment(&client, "acme").await.expect("deployment");
    assert_eq!(image(&d).as_deref(), Some("ghcr.io/kubecrew/otel:0.98.0"));
    Api::<Service>::namespaced(client.clone(), "acme")
        .get("otel-main")
        .await
        .expect("service");
    service_monitors(&client, "acme")
        .get("otel-main")
        .await
        .expect("service monitor");
    let status = api
        .get("acme-otel")
        .await
        .expect("get")
        .status
        .expect("status");
    assert_eq!(status.inventory.len(), 5);
    assert_eq!(status.release_name.as_deref(), Some("otel-main"));
    assert_eq!(status.target_namespace.as_deref(), Some("acme"));
    assert!(
        !serde_json::to_string(&status)
            .expect("json")
            .contains("otlp"),
        "no config in status"
    );
    let table = cluster
        .kubectl_runner()
        .expect("kubectl")
        .run(&["get", "collectors"])
        .await;
    assert!(
        table.contains("TENANT") && table.contains("Acme") && table.contains("0.98.0"),
        "{table}"
    );

    // Upgrades.
    let first_hash = hash_annotation(&d);
    patch_spec(&client, "acme-otel", json!({"version": "0.99.0"})).await;
    eventually("the image follows the version", TIMEOUT, || async {
        let d = deployment(&client, "acme").await?;
        (image(&d).as_deref() == Some("ghcr.io/kubecrew/otel:0.99.0")).then_some(())
    })
    .await;
    let new_config =
        b64("config: |\n  receivers: {jaeger: {}}\nserviceMonitor:\n  enabled: false\n");
    patch_spec(&client, "acme-otel", json!({"configuration": new_config})).await;
    eventually(
        "config hash changes and the ServiceMonitor is pruned",
        TIMEOUT,
        || async {
            let d = deployment(&client, "acme").await?;
            let pruned = service_monitors(&client, "acme")
                .get_opt("otel-main")
                .await
                .ok()?
                .is_none();
            (hash_annotation(&d) != first_hash && pruned).then_some(())
        },
    )
    .await;
    eventually("both revisions recorded", TIMEOUT, || async {
        let status = api.get("acme-otel").await.ok()?.status?;
        let versions: Vec<&str> = status
            .revisions
            .iter()
            .map(|r| r.version.as_str())
            .collect();
        (versions == ["0.98.0", "0.99.0", "0.99.0"]).then_some(())
    })
    .await;

    // Drift.
    let services = Api::<Service>::namespaced(client.clone(), "acme");
    services
        .delete("otel-main", &DeleteParams::default())
        .await
        .expect("deleted");
    Api::<Deployment>::namespaced(client.clone(), "acme")
        .patch(
            "otel-main",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 4}})),
        )
        .await
        .expect("scaled by hand");
    eventually("drift corrected", TIMEOUT, || async {
        services.get("otel-main").await.ok()?;
        let replicas = deployment(&client, "acme").await?.spec?.replicas;
        (replicas == Some(1)).then_some(())
    })
    .await;

    // Removal: everything of the release goes, the finalizer last; the other tenant stays.
    api.delete("acme-otel", &DeleteParams::default())
        .await
        .expect("deleted");
    eventually("release removed, then the Collector", TIMEOUT, || async {
        let gone = deployment(&client, "acme").await.is_none()
            && services.get_opt("otel-main").await.ok()?.is_none()
            && Api::<Secret>::namespaced(client.clone(), "acme")
                .get_opt("otel-main-config")
                .await
                .ok()?
                .is_none()
            && api.get_opt("acme-otel").await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
    assert!(
        deployment(&client, "other").await.is_some(),
        "the other tenant is untouched"
    );
    runtime.shutdown.cancel();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_stalls_with_the_exact_problem_and_recovers() {
    let (cluster, runtime) = setup(false).await;
    let client = cluster.client();
    let api: Api<Collector> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &collector("acme-otel", "Acme", "1.0.0", ""),
    )
    .await
    .expect("created");
    let message = ready(&client, "acme-otel").await;
    assert!(message.contains("ServiceMonitor skipped"), "{message}");

    let cases = [
        (
            "not base64 !!",
            "spec.collector.configuration is not valid base64",
        ),
        (
            &b64("replicas: [1\n") as &str,
            "spec.collector.configuration is not valid YAML",
        ),
        (
            &b64("replicas: secret-value\n"),
            "values.replicas: wrong type or value, expected",
        ),
    ];
    for (configuration, expected) in cases {
        patch_spec(
            &client,
            "acme-otel",
            json!({"configuration": configuration}),
        )
        .await;
        let (_, reason, message) = eventually(expected, TIMEOUT, || async {
            condition(&client, "acme-otel", "Stalled")
                .await
                .filter(|c| c.0 == "True" && c.2.starts_with(expected))
        })
        .await;
        assert_eq!(reason, "InvalidSpec");
        assert!(!message.contains("secret-value"), "{message}");
    }
    // Nothing half-applied: the last good release is untouched.
    assert_eq!(
        deployment(&client, "acme")
            .await
            .and_then(|d| d.spec?.replicas),
        Some(1)
    );
    api.patch(
        "acme-otel",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"collector": {"configuration": ""},
                                       "tenant": {"reference": "Not A Namespace"}}})),
    )
    .await
    .expect("patched");
    eventually("bad tenant reference", TIMEOUT, || async {
        condition(&client, "acme-otel", "Stalled")
            .await
            .filter(|c| {
                c.0 == "True" && c.2.starts_with("spec.tenant.reference \"Not A Namespace\"")
            })
    })
    .await;
    api.patch(
        "acme-otel",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"tenant": {"reference": "Acme"}}})),
    )
    .await
    .expect("fixed");
    ready(&client, "acme-otel").await;
    let stalled = condition(&client, "acme-otel", "Stalled")
        .await
        .expect("Stalled");
    assert_eq!(stalled.0, "False");
    runtime.shutdown.cancel();
    cluster.shutdown().await;
}

/// Once a release is installed and rolled out, nothing is written while nothing changes: the
/// real API server defaults every object of the release, and an operator comparing what it
/// wants with what it reads could otherwise write forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciled_release_causes_no_writes() {
    let (cluster, runtime) = setup(true).await;
    let client = cluster.client();
    let api: Api<Collector> = Api::all(client.clone());
    let config = b64("config: |\n  receivers: {otlp: {}}\nreplicas: 2\n");
    api.create(
        &PostParams::default(),
        &collector("acme-otel", "Acme", "0.98.0", &config),
    )
    .await
    .expect("created");
    ready(&client, "acme-otel").await;
    cluster
        .kubectl_runner()
        .expect("kubectl")
        .run(&[
            "-n",
            "acme",
            "rollout",
            "status",
            "deployment/otel-main",
            "--timeout=60s",
        ])
        .await;
    cluster
        .assert_quiet_for(Duration::from_secs(30), |r| {
            r.namespace == "acme" || r.resource == "collectors"
        })
        .await;
    runtime.shutdown.cancel();
    cluster.shutdown().await;
}
