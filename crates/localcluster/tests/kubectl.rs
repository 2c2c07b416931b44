//! What a person does first with a cluster, done with kubectl: a Deployment becomes Available
//! with 3 Running pods with IPs, rolls on `kubectl rollout restart`, and is collected with its
//! ReplicaSets and Pods on delete. Then the behaviours devcluster once lacked: `stringData`,
//! base64 `data`, immutable ConfigMaps and the built-in defaults.
//!
//! `on_the_test_cluster` runs on the cluster `KUBECREW_CLUSTER` names (the real control plane
//! in CI); `on_devcluster` always runs the same checks on devcluster, so the two agree.

use std::time::Duration;

use localcluster::{Cluster, Flavor, Options};
use serde_json::{Value, json};
use testkit::kubectl::Kubectl;

const TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_test_cluster() {
    let cluster = localcluster::shared(Options::default).await;
    checks(cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_devcluster() {
    let cluster = Cluster::start(Flavor::Dev, Options::default())
        .await
        .expect("devcluster starts");
    checks(&cluster).await;
    cluster.shutdown().await;
}

async fn checks(cluster: &Cluster) {
    let ns = cluster.namespace("kubectl").await.expect("namespace");
    let kubectl = cluster.kubectl_runner().expect("kubectl");
    deployment_lifecycle(&kubectl, &ns).await;
    secret_string_data_and_base64(&kubectl, &ns).await;
    immutable_config_map(&kubectl, &ns).await;
    built_in_defaults(&kubectl, &ns).await;
}

async fn apply(kubectl: &Kubectl, ns: &str, object: Value) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("object.json");
    std::fs::write(&file, object.to_string()).unwrap();
    let out = kubectl
        .run(&[
            "-n",
            ns,
            "create",
            "-o",
            "json",
            "-f",
            file.to_str().unwrap(),
        ])
        .await;
    serde_json::from_str(&out).expect("kubectl prints JSON")
}

async fn get(kubectl: &Kubectl, ns: &str, args: &[&str]) -> Value {
    let mut all = vec!["-n", ns, "get"];
    all.extend_from_slice(args);
    all.extend(["-o", "json"]);
    serde_json::from_str(&kubectl.run(&all).await).expect("kubectl prints JSON")
}

async fn items(kubectl: &Kubectl, ns: &str, kind: &str, selector: &str) -> Vec<Value> {
    get(kubectl, ns, &[kind, "-l", selector]).await["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn running_with_ip(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["podIP"]
            .as_str()
            .is_some_and(|ip| !ip.is_empty())
        && pod["metadata"]["deletionTimestamp"].is_null()
}

async fn deployment_lifecycle(kubectl: &Kubectl, ns: &str) {
    apply(
        kubectl,
        ns,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}
            }
        }),
    )
    .await;
    kubectl
        .run(&[
            "-n",
            ns,
            "wait",
            "deployment/web",
            "--for=condition=Available",
            "--timeout=90s",
        ])
        .await;
    testkit::eventually("3 Running pods with IPs", TIMEOUT, || async {
        let pods = items(kubectl, ns, "pods", "app=web").await;
        (pods.iter().filter(|p| running_with_ip(p)).count() == 3).then_some(())
    })
    .await;
    let before: Vec<String> = items(kubectl, ns, "replicasets", "app=web")
        .await
        .iter()
        .map(|rs| {
            rs["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        before.len(),
        1,
        "one ReplicaSet before the restart: {before:?}"
    );

    kubectl
        .run(&["-n", ns, "rollout", "restart", "deployment/web"])
        .await;
    kubectl
        .run(&[
            "-n",
            ns,
            "rollout",
            "status",
            "deployment/web",
            "--timeout=90s",
        ])
        .await;
    testkit::eventually(
        "a new ReplicaSet with 3 Running pods, the old one scaled to 0",
        TIMEOUT,
        || async {
            let sets = items(kubectl, ns, "replicasets", "app=web").await;
            let is_old = |rs: &Value| {
                before
                    .iter()
                    .any(|name| rs["metadata"]["name"] == name.as_str())
            };
            let new = sets.iter().find(|rs| !is_old(rs))?;
            let hash = new["metadata"]["labels"]["pod-template-hash"].as_str()?;
            let pods = items(kubectl, ns, "pods", &format!("pod-template-hash={hash}")).await;
            let old_scaled_down = sets
                .iter()
                .filter(|rs| is_old(rs))
                .all(|rs| rs["spec"]["replicas"] == 0);
            (pods.iter().filter(|p| running_with_ip(p)).count() == 3 && old_scaled_down)
                .then_some(())
        },
    )
    .await;

    kubectl.run(&["-n", ns, "delete", "deployment/web"]).await;
    testkit::eventually(
        "the garbage collector removes the ReplicaSets and Pods",
        TIMEOUT,
        || async {
            let sets = items(kubectl, ns, "replicasets", "app=web").await;
            let pods = items(kubectl, ns, "pods", "app=web").await;
            (sets.is_empty() && pods.is_empty()).then_some(())
        },
    )
    .await;
}

async fn secret_string_data_and_base64(kubectl: &Kubectl, ns: &str) {
    apply(
        kubectl,
        ns,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
               "stringData": {"user": "alice"}}),
    )
    .await;
    let secret = get(kubectl, ns, &["secret", "creds"]).await;
    assert_eq!(secret["data"]["user"], "YWxpY2U=", "{secret}");
    assert!(
        secret.get("stringData").is_none(),
        "stringData is write-only: {secret}"
    );

    kubectl
        .run(&[
            "-n",
            ns,
            "patch",
            "secret",
            "creds",
            "--type=merge",
            "-p",
            r#"{"stringData":{"user":"bob"}}"#,
        ])
        .await;
    let secret = get(kubectl, ns, &["secret", "creds"]).await;
    assert_eq!(
        secret["data"]["user"], "Ym9i",
        "stringData patched into data: {secret}"
    );
    assert!(secret.get("stringData").is_none(), "{secret}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.json");
    std::fs::write(
        &file,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bad"},
               "data": {"user": "not base64!"}})
        .to_string(),
    )
    .unwrap();
    let out = kubectl
        .output(&["-n", ns, "create", "-f", file.to_str().unwrap()])
        .await;
    assert!(!out.success, "non-base64 Secret data is refused");
    assert!(
        out.stderr.contains("illegal base64") || out.stderr.contains("base64"),
        "the error names base64: {}",
        out.stderr
    );
}

async fn immutable_config_map(kubectl: &Kubectl, ns: &str) {
    apply(
        kubectl,
        ns,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "frozen"},
               "immutable": true, "data": {"k": "v"}}),
    )
    .await;
    let out = kubectl
        .output(&[
            "-n",
            ns,
            "patch",
            "configmap",
            "frozen",
            "--type=merge",
            "-p",
            r#"{"data":{"k":"changed"}}"#,
        ])
        .await;
    assert!(!out.success, "an immutable ConfigMap's data cannot change");
    assert!(
        out.stderr.contains("field is immutable"),
        "the error says so: {}",
        out.stderr
    );
    let out = kubectl
        .output(&[
            "-n",
            ns,
            "patch",
            "configmap",
            "frozen",
            "--type=merge",
            "-p",
            r#"{"immutable":false}"#,
        ])
        .await;
    assert!(!out.success, "immutable cannot be switched off");
    let cm = get(kubectl, ns, &["configmap", "frozen"]).await;
    assert_eq!(cm["data"]["k"], "v");
    // Labels may still change.
    kubectl
        .run(&["-n", ns, "label", "configmap", "frozen", "tier=x"])
        .await;
}

async fn built_in_defaults(kubectl: &Kubectl, ns: &str) {
    let pod = apply(
        kubectl,
        ns,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "defaults"},
               "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await;
    let spec = &pod["spec"];
    assert_eq!(spec["terminationGracePeriodSeconds"], 30, "{spec}");
    assert_eq!(spec["restartPolicy"], "Always", "{spec}");
    assert_eq!(spec["dnsPolicy"], "ClusterFirst", "{spec}");
    assert_eq!(spec["schedulerName"], "default-scheduler", "{spec}");
    let container = &spec["containers"][0];
    // `busybox` has no tag, so the default policy is Always (IfNotPresent for a tagged image).
    assert_eq!(container["imagePullPolicy"], "Always", "{container}");
    assert_eq!(container["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(container["terminationMessagePolicy"], "File");

    let deployment = apply(
        kubectl,
        ns,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "defaulted"},
               "spec": {"selector": {"matchLabels": {"app": "d"}},
                        "template": {"metadata": {"labels": {"app": "d"}},
                                     "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}}),
    )
    .await;
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 1, "{spec}");
    assert_eq!(spec["revisionHistoryLimit"], 10, "{spec}");
    assert_eq!(spec["progressDeadlineSeconds"], 600, "{spec}");
    assert_eq!(spec["strategy"]["type"], "RollingUpdate", "{spec}");
    assert_eq!(
        spec["strategy"]["rollingUpdate"]["maxSurge"], "25%",
        "{spec}"
    );
    assert_eq!(
        spec["strategy"]["rollingUpdate"]["maxUnavailable"], "25%",
        "{spec}"
    );
    let container = &spec["template"]["spec"]["containers"][0];
    assert_eq!(container["imagePullPolicy"], "IfNotPresent", "{container}");
    assert_eq!(
        spec["template"]["spec"]["terminationGracePeriodSeconds"],
        30
    );
}
