//! The operator against the test binary's cluster (the real control plane in CI, with its
//! Deployment, ReplicaSet, scheduler, kwok and garbage-collector controllers): children with the right specs, every kind of drift corrected, port changes
//! propagated, bad specs refused with the line named, children gone with their owner.

use std::sync::Arc;
use std::time::Duration;

use http_peering::reconcile::OPERATOR;
use http_peering::resource::KindCustomHttp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt, ResourceExt};
use localcluster::TestEnv;
use operator_core::Runtime;
use serde_json::json;
use testkit::eventually;

const TIMEOUT: Duration = Duration::from_secs(60);
/// A namespace of this test's on the binary's cluster, and the operator watching only it.
async fn setup() -> (TestEnv, Arc<Runtime>) {
    let env = TestEnv::new("peering").await;
    env.install_crd(&KindCustomHttp::crd()).await;
    let runtime = Arc::new(Runtime::new(env.client(), OPERATOR));
    let rt = runtime.clone();
    let namespace = env.namespace().to_owned();
    tokio::spawn(async move {
        http_peering::operator::run(rt, Some(&namespace), operator_core::Settings::default()).await;
    });
    (env, runtime)
}

/// `Api<K>` in the client's default namespace (the test's).
fn api<K>(client: &Client) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    Api::default_namespaced(client.clone())
}

async fn create_mesh(client: &Client, hostports: &str) {
    let kch: KindCustomHttp = serde_json::from_value(json!({
        "apiVersion": "peering.kubecrew.io/v1alpha1",
        "kind": "KindCustomHttp",
        "metadata": {"name": "mesh"},
        "spec": {"replicaCount": 2, "port": 8080,
                 "configMapData": {"hostports": hostports},
                 "pingInterval": "10s"}
    }))
    .expect("valid resource");
    api::<KindCustomHttp>(client)
        .create(&PostParams::default(), &kch)
        .await
        .expect("created");
}

async fn replicas(client: &Client) -> Option<i32> {
    api::<Deployment>(client)
        .get("mesh")
        .await
        .ok()?
        .spec?
        .replicas
}

async fn service_port(client: &Client) -> Option<(usize, i32)> {
    let ports = api::<Service>(client).get("mesh").await.ok()?.spec?.ports?;
    Some((ports.len(), ports.first()?.port))
}

async fn hostports(client: &Client) -> Option<std::collections::BTreeMap<String, String>> {
    api::<ConfigMap>(client).get("mesh-peers").await.ok()?.data
}

async fn condition(client: &Client, type_: &str) -> Option<(String, String, String)> {
    let kch = api::<KindCustomHttp>(client).get("mesh").await.ok()?;
    let c = kch
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status, c.reason, c.message))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_are_kept_in_shape_and_go_with_their_owner() {
    let (env, runtime) = setup().await;
    let client = env.client();
    create_mesh(&client, "mesh.default.svc,8080\n").await;

    eventually("children exist", TIMEOUT, || async {
        let d = api::<Deployment>(&client).get("mesh").await.ok()?;
        api::<Service>(&client).get("mesh").await.ok()?;
        api::<ConfigMap>(&client).get("mesh-peers").await.ok()?;
        Some(d)
    })
    .await;
    let d = api::<Deployment>(&client)
        .get("mesh")
        .await
        .expect("deployment");
    let owner = &d.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("KindCustomHttp", Some(true))
    );
    let container = &d
        .spec
        .as_ref()
        .expect("spec")
        .template
        .spec
        .as_ref()
        .expect("pod")
        .containers[0];
    assert_eq!(
        container.ports.as_ref().expect("ports")[0].container_port,
        8080
    );
    assert!(container.readiness_probe.is_some() && container.liveness_probe.is_some());
    assert_eq!(replicas(&client).await, Some(2));

    // Status follows the Deployment: the cluster's controllers make the pods ready.
    let ready = eventually("Ready=True", TIMEOUT, || async {
        condition(&client, "Ready").await.filter(|c| c.0 == "True")
    })
    .await;
    assert_eq!(ready.1, "Available");
    let status = api::<KindCustomHttp>(&client)
        .get("mesh")
        .await
        .expect("get")
        .status
        .expect("status");
    assert_eq!((status.replicas, status.ready_replicas), (2, 2));

    // Drift: a hand scale.
    let kubectl = env.kubectl();
    kubectl
        .run(&["scale", "deployment/mesh", "--replicas=5"])
        .await;
    eventually("replicas restored", TIMEOUT, || async {
        (replicas(&client).await == Some(2)).then_some(())
    })
    .await;

    // Drift: ConfigMap edited and given an extra key.
    api::<ConfigMap>(&client)
        .patch(
            "mesh-peers",
            &PatchParams::default(),
            &Patch::Merge(&json!({"data": {"hostports": "evil,1\n", "extra": "x"}})),
        )
        .await
        .expect("ConfigMap edited");
    eventually("ConfigMap restored", TIMEOUT, || async {
        let data = hostports(&client).await?;
        (data.len() == 1 && data["hostports"] == "mesh.default.svc,8080\n").then_some(())
    })
    .await;

    // Drift: the Service port changed by hand.
    kubectl
        .run(&[
            "patch",
            "service",
            "mesh",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/ports/0/port","value":9999}]"#,
        ])
        .await;
    eventually("Service port restored", TIMEOUT, || async {
        (service_port(&client).await == Some((1, 8080))).then_some(())
    })
    .await;

    // Drift: each child deleted.
    api::<Service>(&client)
        .delete("mesh", &DeleteParams::default())
        .await
        .expect("deleted");
    api::<ConfigMap>(&client)
        .delete("mesh-peers", &DeleteParams::default())
        .await
        .expect("deleted");
    api::<Deployment>(&client)
        .delete("mesh", &DeleteParams::default())
        .await
        .expect("deleted");
    eventually("children recreated", TIMEOUT, || async {
        api::<Service>(&client).get("mesh").await.ok()?;
        api::<ConfigMap>(&client).get("mesh-peers").await.ok()?;
        let d = api::<Deployment>(&client).get("mesh").await.ok()?;
        d.metadata.deletion_timestamp.is_none().then_some(())
    })
    .await;

    // spec.port moves the Service and the container together.
    api::<KindCustomHttp>(&client)
        .patch(
            "mesh",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"port": 9090}})),
        )
        .await
        .expect("port changed");
    eventually("port propagated", TIMEOUT, || async {
        let d = api::<Deployment>(&client).get("mesh").await.ok()?;
        let port = d.spec?.template.spec?.containers[0].ports.clone()?[0].container_port;
        (port == 9090 && service_port(&client).await == Some((1, 9090))).then_some(())
    })
    .await;

    // Deleting the resource takes the children (garbage collection).
    api::<KindCustomHttp>(&client)
        .delete("mesh", &DeleteParams::default())
        .await
        .expect("deleted");
    eventually("children gone", TIMEOUT, || async {
        let gone = api::<Deployment>(&client)
            .get_opt("mesh")
            .await
            .ok()?
            .is_none()
            && api::<Service>(&client)
                .get_opt("mesh")
                .await
                .ok()?
                .is_none()
            && api::<ConfigMap>(&client)
                .get_opt("mesh-peers")
                .await
                .ok()?
                .is_none();
        gone.then_some(())
    })
    .await;
    runtime.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_hostports_line_is_named_and_nothing_is_applied() {
    let (env, runtime) = setup().await;
    let client = env.client();
    create_mesh(&client, "a.example,80\n").await;
    eventually("ConfigMap applied", TIMEOUT, || async {
        hostports(&client).await
    })
    .await;

    api::<KindCustomHttp>(&client)
        .patch(
            "mesh",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicaCount": 4,
                "configMapData": {"hostports": "a.example,80\nb.example\n"}}})),
        )
        .await
        .expect("patched");
    let (status, _, message) = eventually("the bad line is reported", TIMEOUT, || async {
        condition(&client, "Ready")
            .await
            .filter(|c| c.1 == "InvalidSpec")
    })
    .await;
    assert_eq!(status, "False");
    assert!(
        message.contains("hostports") && message.contains("line 2"),
        "{message}"
    );
    assert_eq!(
        hostports(&client).await.expect("data")["hostports"],
        "a.example,80\n",
        "the ConfigMap keeps the last good data"
    );
    assert_eq!(
        replicas(&client).await,
        Some(2),
        "nothing applied from the bad spec"
    );
    runtime.shutdown.cancel();
}

/// Once the children are applied and the Deployment is Available, nothing is written while
/// nothing changes: the real API server adds defaults to every child, and an apply that
/// compared what it sent with what it read back would write forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciled_objects_cause_no_writes() {
    let (env, runtime) = setup().await;
    let client = env.client();
    create_mesh(&client, "mesh.default.svc,8080\n").await;
    eventually("Ready=True", TIMEOUT, || async {
        condition(&client, "Ready").await.filter(|c| c.0 == "True")
    })
    .await;
    env.kubectl()
        .run(&["rollout", "status", "deployment/mesh", "--timeout=60s"])
        .await;
    env.assert_quiet_for(Duration::from_secs(30), |_| false)
        .await;
    runtime.shutdown.cancel();
}
