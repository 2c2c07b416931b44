//! Shared fixtures of the devcluster tests.
#![allow(dead_code)]

use std::time::Duration;

use devcluster::{DevCluster, Options};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use serde_json::json;

/// Starts a fresh cluster.
pub async fn cluster() -> DevCluster {
    DevCluster::start(Options::default())
        .await
        .expect("devcluster starts")
}

/// The `Widget` CRD used across tests: namespaced, status subresource, scale, printer columns,
/// a schema with defaults, enums, bounds, and a preserved subtree.
pub fn widget_crd() -> serde_json::Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                      "shortNames": ["wd"], "categories": ["all"]},
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": {"status": {}, "scale": {
                    "specReplicasPath": ".spec.replicas",
                    "statusReplicasPath": ".status.replicas"}},
                "additionalPrinterColumns": [
                    {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
                "selectableFields": [{"jsonPath": ".spec.color"}],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["color"],
                            "properties": {
                                "color": {"type": "string", "enum": ["red", "green", "blue"]},
                                "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                                "size": {"x-kubernetes-int-or-string": true},
                                "tags": {"type": "array", "items": {"type": "string"},
                                         "x-kubernetes-list-type": "set"},
                                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                            }
                        },
                        "status": {
                            "type": "object",
                            "properties": {
                                "replicas": {"type": "integer"},
                                "phase": {"type": "string"},
                                "conditions": {"type": "array", "x-kubernetes-list-type": "map",
                                    "x-kubernetes-list-map-keys": ["type"],
                                    "items": {"type": "object", "required": ["type", "status"],
                                        "properties": {"type": {"type": "string"},
                                                       "status": {"type": "string"}}}}
                            }
                        }
                    }
                }}
            }]
        }
    })
}

/// Creates the Widget CRD and waits until it is served.
pub async fn install_widgets(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(widget_crd()).unwrap();
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("CRD created");
    kube::runtime::wait::await_condition(
        crds,
        "widgets.example.com",
        kube::runtime::wait::conditions::is_crd_established(),
    )
    .await
    .expect("CRD established");
}

/// Waits for a condition with a deadline; panics with `what` when it never holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
