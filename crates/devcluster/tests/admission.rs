//! Admission webhooks registered through the API are called for matching writes: a mutating
//! webhook's JSONPatch lands in the stored object, a validating webhook's denial reaches the
//! client with its code and message, and non-matching requests are not sent.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::routing::post;
use base64::Engine;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

async fn mutate(Json(review): Json<Value>) -> Json<Value> {
    let uid = review["request"]["uid"].clone();
    let has_labels = review["request"]["object"]["metadata"]["labels"].is_object();
    let mut ops = Vec::new();
    if !has_labels {
        ops.push(json!({"op": "add", "path": "/metadata/labels", "value": {}}));
    }
    ops.push(json!({"op": "add", "path": "/metadata/labels/injected", "value": "yes"}));
    let patch = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&ops).unwrap());
    Json(json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": patch}
    }))
}

async fn validate(Json(review): Json<Value>) -> Json<Value> {
    let uid = review["request"]["uid"].clone();
    let name = review["request"]["name"].as_str().unwrap_or_default();
    let allowed = !name.starts_with("deny-");
    Json(json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": allowed,
                     "status": {"code": 403, "message": format!("names starting with deny- are refused ({name})")}}
    }))
}

fn webhook_config(kind: &str, url: &str, resources: &[&str]) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
        "metadata": {"name": format!("test-{}", kind.to_lowercase())},
        "webhooks": [{
            "name": "test.kubecrew.io",
            "clientConfig": {"url": url},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": resources}],
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail"
        }]
    }))
    .unwrap()
}

#[tokio::test]
async fn webhooks_are_called_through_the_api() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = axum::Router::new()
        .route(
            "/mutate",
            post(move |body| {
                counted.fetch_add(1, Ordering::SeqCst);
                mutate(body)
            }),
        )
        .route("/validate", post(validate));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let c = common::cluster().await;
    let client = c.client();
    let gvk = |kind: &str| GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    for (kind, path) in [
        ("MutatingWebhookConfiguration", "mutate"),
        ("ValidatingWebhookConfiguration", "validate"),
    ] {
        let ar = ApiResource::from_gvk(&gvk(kind));
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        api.create(
            &PostParams::default(),
            &webhook_config(kind, &format!("http://{addr}/{path}"), &["configmaps"]),
        )
        .await
        .unwrap();
    }

    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "ok"}})).unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert_eq!(created.metadata.labels.unwrap()["injected"], "yes");
    assert_eq!(
        cms.get("ok").await.unwrap().metadata.labels.unwrap()["injected"],
        "yes"
    );

    let denied: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "deny-me"}})).unwrap();
    match cms.create(&PostParams::default(), &denied).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            assert!(
                s.message.contains("denied the request") && s.message.contains("deny-me"),
                "{}",
                s.message
            );
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    assert!(cms.get_opt("deny-me").await.unwrap().is_none());

    // Secrets match no rule: no call.
    let before = calls.load(Ordering::SeqCst);
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::default_namespaced(client.clone());
    let s: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), before);
    c.shutdown().await;
}
