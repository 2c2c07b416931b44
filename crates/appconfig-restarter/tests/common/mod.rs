//! Fixtures: the test binary's cluster (the real control plane in CI, devcluster by default;
//! see localcluster) with the AppConfig CRD, a namespace per test, the operator in-process
//! watching that namespace, and workloads that use configuration in different ways.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use appconfig_restarter::reconcile::OPERATOR;
use appconfig_restarter::resource::AppConfig;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt, ResourceExt};
use localcluster::TestEnv;
use operator_core::backoff::Policy;
use operator_core::{Runtime, Settings};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub const TIMEOUT: Duration = Duration::from_secs(60);

/// This test's namespace on the binary's cluster, with the AppConfig CRD installed. Clients
/// from `env.client()` default to the namespace, and every helper below works in it.
pub async fn env() -> TestEnv {
    let env = TestEnv::new("appconfig").await;
    env.install_crd(&AppConfig::crd()).await;
    env
}

/// The operator running in this process.
pub struct Operator {
    pub runtime: Arc<Runtime>,
    task: JoinHandle<()>,
}

impl Operator {
    /// Starts the operator on `client`, watching only the client's default namespace (the
    /// test's), so tests sharing a cluster never act on each other's objects.
    pub fn start(client: Client) -> Self {
        let namespace = client.default_namespace().to_owned();
        let runtime = Arc::new(Runtime::new(client, OPERATOR));
        let settings = Settings {
            concurrency: 4,
            requeue_after: Duration::from_secs(300),
            backoff: Policy {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(2),
                factor: 2.0,
                jitter: 0.0,
            },
        };
        let rt = runtime.clone();
        let task = tokio::spawn(async move {
            appconfig_restarter::operator::run(rt, Some(&namespace), settings)
                .await
                .expect("metrics register");
        });
        Operator { runtime, task }
    }

    pub async fn stop(self) {
        self.runtime.shutdown.cancel();
        let _ = tokio::time::timeout(TIMEOUT, self.task).await;
    }

    /// The value of a counter line starting with `prefix` (0 when absent).
    pub fn counter(&self, prefix: &str) -> f64 {
        self.runtime
            .metrics
            .render()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

pub async fn create<K>(client: &Client, value: Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(value).expect("valid object");
    Api::<K>::default_namespaced(client.clone())
        .create(&PostParams::default(), &obj)
        .await
        .expect("created")
}

pub async fn config_map(client: &Client, name: &str, data: Value) {
    create::<ConfigMap>(client, json!({"metadata": {"name": name}, "data": data})).await;
}

pub async fn edit_config_map(client: &Client, name: &str, patch: Value) {
    Api::<ConfigMap>::default_namespaced(client.clone())
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("ConfigMap patched");
}

/// A Deployment whose pods mount ConfigMap `cm` (or use nothing when `None`).
pub fn deployment(name: &str, cm: Option<&str>) -> Value {
    let volumes = match cm {
        Some(cm) => json!([{"name": "config", "configMap": {"name": cm}}]),
        None => json!([]),
    };
    json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}],
                         "volumes": volumes}
            }
        }
    })
}

/// A StatefulSet whose container takes its environment from ConfigMap `cm`.
pub fn stateful_set(name: &str, cm: &str) -> Value {
    json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "redis:7",
                                         "envFrom": [{"configMapRef": {"name": cm}}]}]}
            }
        }
    })
}

pub fn app_config(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "appconfig.kubecrew.io/v1alpha1",
        "kind": "AppConfig",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// The ReplicaSets of Deployment `name`.
pub async fn replica_sets(client: &Client, name: &str) -> usize {
    Api::<ReplicaSet>::default_namespaced(client.clone())
        .list(&ListParams::default().labels(&format!("app={name}")))
        .await
        .expect("listed")
        .items
        .len()
}

pub async fn deployment_hash(client: &Client, name: &str) -> Option<String> {
    let d = Api::<Deployment>::default_namespaced(client.clone())
        .get(name)
        .await
        .ok()?;
    d.spec?
        .template
        .metadata?
        .annotations?
        .get("kubecrew.io/config-hash")
        .cloned()
}

pub async fn stateful_set_revisions(client: &Client, name: &str) -> Option<(String, String)> {
    let s = Api::<StatefulSet>::default_namespaced(client.clone())
        .get(name)
        .await
        .ok()?;
    let status = s.status?;
    Some((status.current_revision?, status.update_revision?))
}

/// Waits until the AppConfig's status records `count` workloads.
pub async fn recorded(client: &Client, name: &str, count: usize) -> AppConfig {
    testkit::eventually(
        &format!("{name} records {count} workloads"),
        TIMEOUT,
        || async {
            let app = Api::<AppConfig>::default_namespaced(client.clone())
                .get(name)
                .await
                .ok()?;
            (app.status.as_ref()?.workloads.len() == count).then_some(app)
        },
    )
    .await
}

pub fn names(objs: &[impl ResourceExt]) -> Vec<String> {
    objs.iter().map(|o| o.name_any()).collect()
}
