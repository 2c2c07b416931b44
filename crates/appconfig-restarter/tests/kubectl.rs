//! The user's path with the real kubectl: create a ConfigMap, apply a Deployment and an
//! AppConfig, edit the ConfigMap, and watch the rollout finish on a new revision.

mod common;

use common::*;
use testkit::eventually;

const MANIFEST: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: nginx:1.27
        env:
        - name: MODE
          valueFrom:
            configMapKeyRef: {name: app-config, key: mode}
---
apiVersion: appconfig.kubecrew.io/v1alpha1
kind: AppConfig
metadata:
  name: web
spec:
  configMaps: [app-config]
  debounce: 0s
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_edit_of_a_config_map_rolls_the_deployment() {
    let env = env().await;
    let client = env.client();
    let operator = Operator::start(client.clone());
    let kubectl = env.kubectl();
    let manifest = env.dir().join("manifest.yaml");
    std::fs::write(&manifest, MANIFEST).expect("manifest written");

    kubectl
        .run(&["create", "configmap", "app-config", "--from-literal=mode=a"])
        .await;
    kubectl
        .run(&["apply", "-f", &manifest.display().to_string()])
        .await;
    kubectl
        .run(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    recorded(&client, "web", 1).await;
    let table = kubectl.run(&["get", "appconfig", "web"]).await;
    assert!(table.contains("True"), "Ready column: {table}");

    // What `kubectl edit` does: a patch of the data.
    kubectl
        .run(&[
            "patch",
            "configmap",
            "app-config",
            "--type=merge",
            "-p",
            r#"{"data":{"mode":"b"}}"#,
        ])
        .await;
    eventually("the operator patched the template", TIMEOUT, || async {
        deployment_hash(&client, "web").await
    })
    .await;
    kubectl
        .run(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    let revision = kubectl
        .run(&[
            "get",
            "deployment",
            "web",
            "-o",
            r"jsonpath={.metadata.annotations.deployment\.kubernetes\.io/revision}",
        ])
        .await;
    assert_eq!(revision, "2");
    let history = kubectl.run(&["rollout", "history", "deployment/web"]).await;
    assert!(history.contains('2'), "{history}");
    operator.stop().await;
}
