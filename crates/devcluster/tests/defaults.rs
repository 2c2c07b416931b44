//! What kube-apiserver does to built-in objects beyond storing them, through the HTTP API:
//! Secret `stringData` merged into `data` and never stored, `data` that is not base64 refused,
//! immutable ConfigMaps and Secrets, and the built-in defaults, on every write path (create,
//! update, merge/strategic/JSON patch, server-side apply), plus kubectl.

mod common;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::Status;
use serde_json::{Value, json};

use common::cluster;

/// An API for raw JSON objects of the kind of `K`, so tests can send what typed clients cannot
/// (bad base64, stringData next to data).
fn raw<K>(client: &kube::Client) -> Api<DynamicObject>
where
    K: kube::Resource<DynamicType = ()>,
{
    Api::namespaced_with(client.clone(), "default", &ApiResource::erase::<K>(&()))
}

fn obj(v: Value) -> DynamicObject {
    serde_json::from_value(v).expect("a Kubernetes object")
}

fn json_of(o: &DynamicObject) -> Value {
    serde_json::to_value(o).expect("serializable")
}

fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn json_patch(ops: Value) -> Patch<Value> {
    Patch::Json(serde_json::from_value(ops).expect("a JSON patch"))
}

fn apply_params(manager: &str) -> PatchParams {
    PatchParams::apply(manager)
}

/// Checks a Secret as returned and as stored: `data` as expected, no `stringData`.
async fn assert_secret(api: &Api<DynamicObject>, returned: &DynamicObject, data: Value) {
    let name = returned.metadata.name.clone().unwrap_or_default();
    let got = api.get(&name).await.expect("secret");
    for v in [json_of(returned), json_of(&got)] {
        assert_eq!(v["data"], data, "{v}");
        assert!(
            v.get("stringData").is_none(),
            "stringData is never returned: {v}"
        );
        assert_eq!(v["type"], "Opaque", "{v}");
    }
}

#[tokio::test]
async fn secret_string_data_is_merged_into_data_on_every_write() {
    let c = cluster().await;
    let api = raw::<Secret>(&c.client());
    let pp = PostParams::default();

    // Create: stringData wins over data for the same key; other keys of both are kept.
    let created = api
        .create(
            &pp,
            &obj(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                        "data": {"user": "eA==", "keep": "aw=="},
                        "stringData": {"user": "alice", "pw": "p@ss"}}),
            ),
        )
        .await
        .expect("created");
    assert_secret(
        &api,
        &created,
        json!({"user": "YWxpY2U=", "keep": "aw==", "pw": "cEBzcw=="}),
    )
    .await;

    // Update (PUT).
    let mut body = json_of(&created);
    body["stringData"] = json!({"user": "bob"});
    let updated = api.replace("s", &pp, &obj(body)).await.expect("replaced");
    assert_secret(
        &api,
        &updated,
        json!({"user": "Ym9i", "keep": "aw==", "pw": "cEBzcw=="}),
    )
    .await;

    // Merge, strategic merge and JSON patches.
    let merged = api
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"user": "carol"}})),
        )
        .await
        .expect("merge patch");
    assert_secret(
        &api,
        &merged,
        json!({"user": "Y2Fyb2w=", "keep": "aw==", "pw": "cEBzcw=="}),
    )
    .await;
    let strategic = api
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Strategic(json!({"stringData": {"pw": "x"}})),
        )
        .await
        .expect("strategic patch");
    assert_secret(
        &api,
        &strategic,
        json!({"user": "Y2Fyb2w=", "keep": "aw==", "pw": "eA=="}),
    )
    .await;
    let patched = api
        .patch(
            "s",
            &PatchParams::default(),
            &json_patch(json!([{"op": "add", "path": "/stringData", "value": {"keep": "y"}}])),
        )
        .await
        .expect("JSON patch");
    assert_secret(
        &api,
        &patched,
        json!({"user": "Y2Fyb2w=", "keep": "eQ==", "pw": "eA=="}),
    )
    .await;

    // Server-side apply, creating and updating.
    let config = |value: &str| {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "applied"},
               "stringData": {"token": value}})
    };
    let applied = api
        .patch(
            "applied",
            &apply_params("applier"),
            &Patch::Apply(config("one")),
        )
        .await
        .expect("apply creates");
    assert_secret(&api, &applied, json!({"token": "b25l"})).await;
    let reapplied = api
        .patch(
            "applied",
            &apply_params("applier"),
            &Patch::Apply(config("two")),
        )
        .await
        .expect("apply updates");
    assert_secret(&api, &reapplied, json!({"token": "dHdv"})).await;
    let again = api
        .patch(
            "applied",
            &apply_params("applier"),
            &Patch::Apply(config("two")),
        )
        .await
        .expect("apply again");
    assert_eq!(
        again.metadata.resource_version, reapplied.metadata.resource_version,
        "the same apply is a no-op"
    );

    // The typed client reads them back as usual.
    let typed: Api<Secret> = Api::default_namespaced(c.client());
    let s = typed.get("applied").await.expect("typed get");
    assert_eq!(s.data.unwrap()["token"].0, b"two");
    assert!(s.string_data.is_none());
    c.shutdown().await;
}

#[tokio::test]
async fn secret_data_must_be_base64() {
    let c = cluster().await;
    let api = raw::<Secret>(&c.client());
    let pp = PostParams::default();
    let bad = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bad"},
                     "data": {"user": "not base64!"}});

    let e = api_error(api.create(&pp, &obj(bad.clone())).await);
    assert_eq!(e.code, 400, "{e:?}");
    assert_eq!(e.reason, "BadRequest");
    assert!(
        e.message.contains("illegal base64 data at input byte 3"),
        "{}",
        e.message
    );
    assert!(
        api.get_opt("bad").await.unwrap().is_none(),
        "nothing stored"
    );

    // Unpadded base64 is not standard base64 either.
    let mut unpadded = bad.clone();
    unpadded["data"]["user"] = json!("YQ");
    let e = api_error(api.create(&pp, &obj(unpadded)).await);
    assert!(e.message.contains("illegal base64 data"), "{}", e.message);

    let good = api
        .create(
            &pp,
            &obj(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "good"},
                        "data": {"user": "YWxpY2U="}}),
            ),
        )
        .await
        .expect("valid base64 is accepted");
    let mut body = json_of(&good);
    body["data"]["user"] = json!("%%%");
    let e = api_error(api.replace("good", &pp, &obj(body)).await);
    assert!(e.message.contains("illegal base64"), "PUT: {}", e.message);
    let e = api_error(
        api.patch(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"user": "%%%"}})),
        )
        .await,
    );
    assert!(e.message.contains("illegal base64"), "merge: {}", e.message);
    let e = api_error(
        api.patch(
            "good",
            &apply_params("applier").force(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Secret",
                                 "metadata": {"name": "good"}, "data": {"user": "%%%"}})),
        )
        .await,
    );
    assert!(e.message.contains("illegal base64"), "apply: {}", e.message);
    let stored = api.get("good").await.unwrap();
    assert_eq!(json_of(&stored)["data"]["user"], "YWxpY2U=", "unchanged");

    // ConfigMap binaryData is bytes too; its data is text.
    let cms = raw::<ConfigMap>(&c.client());
    let e = api_error(
        cms.create(
            &pp,
            &obj(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"},
                        "binaryData": {"k": "not base64!"}}),
            ),
        )
        .await,
    );
    assert!(e.message.contains("illegal base64"), "{}", e.message);
    cms.create(
        &pp,
        &obj(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "t"},
                    "data": {"k": "not base64!"}}),
        ),
    )
    .await
    .expect("ConfigMap data is plain text");

    // Type-specific keys (422 Invalid), and the type cannot change.
    let e = api_error(
        api.create(
            &pp,
            &obj(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls"},
                        "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}),
            ),
        )
        .await,
    );
    assert_eq!(e.code, 422, "{e:?}");
    assert!(
        e.message.contains("data[tls.key]: Required value"),
        "{}",
        e.message
    );
    let e = api_error(
        api.patch(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({"type": "kubernetes.io/basic-auth"})),
        )
        .await,
    );
    assert_eq!(e.code, 422, "{e:?}");
    assert!(e.message.contains("type: Invalid value"), "{}", e.message);
    c.shutdown().await;
}

#[tokio::test]
async fn immutable_config_maps_and_secrets() {
    let c = cluster().await;
    let cms = raw::<ConfigMap>(&c.client());
    let pp = PostParams::default();
    let frozen = cms
        .create(
            &pp,
            &obj(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "frozen"},
                        "immutable": true, "data": {"k": "v"}, "binaryData": {"b": "YQ=="}}),
            ),
        )
        .await
        .expect("created");
    let refused = |r: Result<DynamicObject, kube::Error>, field: &str| {
        let e = api_error(r);
        assert_eq!(e.code, 422, "{e:?}");
        assert_eq!(e.reason, "Invalid");
        assert!(
            e.message.contains(&format!(
                "{field}: Forbidden: field is immutable when `immutable` is set"
            )),
            "{}",
            e.message
        );
    };
    let none = PatchParams::default();
    refused(
        cms.patch(
            "frozen",
            &none,
            &Patch::Merge(json!({"data": {"k": "changed"}})),
        )
        .await,
        "data",
    );
    refused(
        cms.patch(
            "frozen",
            &none,
            &Patch::Merge(json!({"data": {"new": "x"}})),
        )
        .await,
        "data",
    );
    refused(
        cms.patch(
            "frozen",
            &none,
            &Patch::Strategic(json!({"binaryData": {"b": "Yg=="}})),
        )
        .await,
        "binaryData",
    );
    refused(
        cms.patch("frozen", &none, &Patch::Merge(json!({"immutable": false})))
            .await,
        "immutable",
    );
    refused(
        cms.patch(
            "frozen",
            &none,
            &json_patch(json!([{"op": "remove", "path": "/immutable"}])),
        )
        .await,
        "immutable",
    );
    let mut body = json_of(&frozen);
    body["data"] = json!({});
    refused(cms.replace("frozen", &pp, &obj(body)).await, "data");
    refused(
        cms.patch(
            "frozen",
            &apply_params("applier").force(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "frozen"}, "data": {"k": "applied"}})),
        )
        .await,
        "data",
    );

    // Metadata may still change; the data did not.
    let labelled = cms
        .patch(
            "frozen",
            &none,
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "x"},
                                              "annotations": {"a": "b"}}})),
        )
        .await
        .expect("labels and annotations may change");
    let v = json_of(&labelled);
    assert_eq!(v["metadata"]["labels"]["tier"], "x");
    assert_eq!(v["data"], json!({"k": "v"}));
    assert_eq!(v["immutable"], true);

    // A mutable ConfigMap may be frozen, and then it is.
    cms.create(
        &pp,
        &obj(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "later"},
                    "data": {"k": "v"}}),
        ),
    )
    .await
    .unwrap();
    cms.patch(
        "later",
        &none,
        &Patch::Merge(json!({"immutable": true, "data": {"k": "last"}})),
    )
    .await
    .expect("freezing (with a last change) is allowed");
    refused(
        cms.patch(
            "later",
            &none,
            &Patch::Merge(json!({"data": {"k": "again"}})),
        )
        .await,
        "data",
    );

    // Secrets: data, including through stringData.
    let secrets = raw::<Secret>(&c.client());
    secrets
        .create(
            &pp,
            &obj(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sealed"},
                        "immutable": true, "stringData": {"k": "v"}}),
            ),
        )
        .await
        .unwrap();
    refused(
        secrets
            .patch(
                "sealed",
                &none,
                &Patch::Merge(json!({"stringData": {"k": "w"}})),
            )
            .await,
        "data",
    );
    refused(
        secrets
            .patch(
                "sealed",
                &none,
                &Patch::Merge(json!({"data": {"k": "dw=="}})),
            )
            .await,
        "data",
    );
    refused(
        secrets
            .patch("sealed", &none, &Patch::Merge(json!({"immutable": null})))
            .await,
        "immutable",
    );
    // The same stringData as stored is no change.
    secrets
        .patch(
            "sealed",
            &none,
            &Patch::Merge(json!({"stringData": {"k": "v"}, "metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .expect("no change to data");

    // Deletion still works.
    cms.delete("frozen", &DeleteParams::default())
        .await
        .unwrap();
    secrets
        .delete("sealed", &DeleteParams::default())
        .await
        .unwrap();
    common::eventually("both gone", || async {
        cms.get_opt("frozen").await.unwrap().is_none()
            && secrets.get_opt("sealed").await.unwrap().is_none()
    })
    .await;
    c.shutdown().await;
}

fn pod_manifest() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{
               "name": "c", "image": "busybox",
               "ports": [{"containerPort": 80}],
               "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
               "readinessProbe": {"httpGet": {"port": 80}}}],
                    "initContainers": [{"name": "i", "image": "busybox:1.36"}],
                    "volumes": [{"name": "cm", "configMap": {"name": "x"}},
                                {"name": "sec", "secret": {"secretName": "x"}}]}})
}

fn assert_pod_spec_defaults(spec: &Value) {
    assert_eq!(spec["restartPolicy"], "Always", "{spec}");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30, "{spec}");
    assert_eq!(spec["dnsPolicy"], "ClusterFirst", "{spec}");
    assert_eq!(spec["schedulerName"], "default-scheduler", "{spec}");
    assert_eq!(spec["securityContext"], json!({}), "{spec}");
    let c = &spec["containers"][0];
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log", "{c}");
    assert_eq!(c["terminationMessagePolicy"], "File", "{c}");
    assert_eq!(c["imagePullPolicy"], "Always", "untagged: {c}");
    assert_eq!(c["ports"][0]["protocol"], "TCP", "{c}");
    assert_eq!(
        c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1",
        "{c}"
    );
    let probe = &c["readinessProbe"];
    assert_eq!(probe["timeoutSeconds"], 1, "{probe}");
    assert_eq!(probe["periodSeconds"], 10, "{probe}");
    assert_eq!(probe["successThreshold"], 1, "{probe}");
    assert_eq!(probe["failureThreshold"], 3, "{probe}");
    assert_eq!(probe["httpGet"]["path"], "/", "{probe}");
    assert_eq!(probe["httpGet"]["scheme"], "HTTP", "{probe}");
    let init = &spec["initContainers"][0];
    assert_eq!(init["imagePullPolicy"], "IfNotPresent", "tagged: {init}");
    assert_eq!(init["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(spec["volumes"][0]["configMap"]["defaultMode"], 420);
    assert_eq!(spec["volumes"][1]["secret"]["defaultMode"], 420);
}

#[tokio::test]
async fn pods_get_upstream_defaults_and_keep_user_values() {
    let c = cluster().await;
    let api = raw::<Pod>(&c.client());
    let pp = PostParams::default();
    let created = json_of(&api.create(&pp, &obj(pod_manifest())).await.unwrap());
    assert_pod_spec_defaults(&created["spec"]);
    assert_eq!(created["spec"]["enableServiceLinks"], true);
    let got = json_of(&api.get("p").await.unwrap());
    assert_eq!(got["spec"], created["spec"], "stored defaulted");

    // A PUT of the original manifest (no defaults) changes nothing: defaulting fills the same.
    let mut body = pod_manifest();
    body["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"].clone();
    let replaced = json_of(&api.replace("p", &pp, &obj(body)).await.unwrap());
    assert_eq!(
        replaced["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"],
        "no-op"
    );

    // Removing a defaulted field brings the default back; a JSON patch too.
    let patched = api
        .patch(
            "p",
            &PatchParams::default(),
            &json_patch(json!([{"op": "remove", "path": "/spec/dnsPolicy"}])),
        )
        .await
        .unwrap();
    assert_eq!(json_of(&patched)["spec"]["dnsPolicy"], "ClusterFirst");

    // What the user sets is kept.
    let mut own = pod_manifest();
    own["metadata"]["name"] = json!("own");
    own["spec"]["restartPolicy"] = json!("Never");
    own["spec"]["terminationGracePeriodSeconds"] = json!(5);
    own["spec"]["enableServiceLinks"] = json!(false);
    own["spec"]["containers"][0]["imagePullPolicy"] = json!("Never");
    own["spec"]["containers"][0]["image"] = json!("busybox@sha256:0123456789abcdef");
    own["spec"]["initContainers"][0]["imagePullPolicy"] = json!(null);
    own["spec"]["initContainers"][0]["image"] = json!("busybox:latest");
    let own = json_of(&api.create(&pp, &obj(own)).await.unwrap());
    let spec = &own["spec"];
    assert_eq!(spec["restartPolicy"], "Never");
    assert_eq!(spec["terminationGracePeriodSeconds"], 5);
    assert_eq!(spec["enableServiceLinks"], false);
    assert_eq!(spec["containers"][0]["imagePullPolicy"], "Never");
    assert_eq!(spec["initContainers"][0]["imagePullPolicy"], "Always");

    // Typed clients see them too.
    let typed: Api<Pod> = Api::default_namespaced(c.client());
    let pod = typed.get("p").await.unwrap();
    let spec = pod.spec.unwrap();
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    c.shutdown().await;
}

fn deployment_manifest(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
           "spec": {"selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}})
}

#[tokio::test]
async fn workloads_get_upstream_defaults() {
    let c = cluster().await;
    let client = c.client();
    let pp = PostParams::default();

    let deploys = raw::<Deployment>(&client);
    let d = json_of(
        &deploys
            .create(&pp, &obj(deployment_manifest("web")))
            .await
            .unwrap(),
    );
    let spec = &d["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["progressDeadlineSeconds"], 600);
    assert_eq!(
        spec["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    );
    let pod_spec = &spec["template"]["spec"];
    assert_eq!(pod_spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(pod_spec["restartPolicy"], "Always");
    assert_eq!(pod_spec["containers"][0]["imagePullPolicy"], "IfNotPresent");
    assert!(
        pod_spec.get("enableServiceLinks").is_none(),
        "templates do not get the Pod-only defaults: {pod_spec}"
    );
    // A PUT without the defaults is no spec change: generation stays.
    let mut body = deployment_manifest("web");
    body["metadata"]["labels"] = json!({"touched": "yes"});
    let replaced = json_of(&deploys.replace("web", &pp, &obj(body)).await.unwrap());
    assert_eq!(replaced["metadata"]["generation"], 1, "{replaced}");
    assert_eq!(replaced["spec"]["replicas"], 1);

    let apps = |kind: &str, name: &str, extra: Value| {
        let mut v = json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}});
        if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        obj(v)
    };
    let rs = json_of(
        &raw::<k8s_openapi::api::apps::v1::ReplicaSet>(&client)
            .create(&pp, &apps("ReplicaSet", "rs", json!({})))
            .await
            .unwrap(),
    );
    assert_eq!(rs["spec"]["replicas"], 1);
    assert_eq!(rs["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    let sts = json_of(
        &raw::<k8s_openapi::api::apps::v1::StatefulSet>(&client)
            .create(
                &pp,
                &apps("StatefulSet", "sts", json!({"serviceName": "sts"})),
            )
            .await
            .unwrap(),
    );
    let spec = &sts["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["podManagementPolicy"], "OrderedReady");
    assert_eq!(spec["updateStrategy"]["type"], "RollingUpdate");
    assert_eq!(spec["updateStrategy"]["rollingUpdate"]["partition"], 0);
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(
        spec["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    let ds = json_of(
        &raw::<k8s_openapi::api::apps::v1::DaemonSet>(&client)
            .create(&pp, &apps("DaemonSet", "ds", json!({})))
            .await
            .unwrap(),
    );
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);

    let job = json_of(
        &raw::<k8s_openapi::api::batch::v1::Job>(&client)
            .create(
                &pp,
                &obj(
                    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
                    "spec": {"template": {"spec": {"restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox"}]}}}}),
                ),
            )
            .await
            .unwrap(),
    );
    let spec = &job["spec"];
    assert_eq!(spec["completions"], 1);
    assert_eq!(spec["parallelism"], 1);
    assert_eq!(spec["backoffLimit"], 6);
    assert_eq!(spec["completionMode"], "NonIndexed");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never", "kept");
    let cron = json_of(
        &raw::<k8s_openapi::api::batch::v1::CronJob>(&client)
            .create(
                &pp,
                &obj(
                    json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj"},
                    "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {
                        "spec": {"restartPolicy": "OnFailure",
                                 "containers": [{"name": "c", "image": "busybox"}]}}}}}}),
                ),
            )
            .await
            .unwrap(),
    );
    let spec = &cron["spec"];
    assert_eq!(spec["concurrencyPolicy"], "Allow");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["successfulJobsHistoryLimit"], 3);
    assert_eq!(spec["failedJobsHistoryLimit"], 1);
    let template = &spec["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(template["restartPolicy"], "OnFailure");
    assert_eq!(template["terminationGracePeriodSeconds"], 30);
    c.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_defaults_without_owning_them() {
    let c = cluster().await;
    let api = raw::<Deployment>(&c.client());
    let config = |replicas: Option<i64>| {
        let mut v = deployment_manifest("applied");
        if let Some(r) = replicas {
            v["spec"]["replicas"] = json!(r);
        }
        v
    };
    let pp = apply_params("applier");
    let first = json_of(
        &api.patch("applied", &pp, &Patch::Apply(config(Some(3))))
            .await
            .unwrap(),
    );
    assert_eq!(first["spec"]["replicas"], 3);
    assert_eq!(first["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(
        first["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"],
        "/dev/termination-log"
    );
    let entry = &first["metadata"]["managedFields"][0];
    assert_eq!(entry["manager"], "applier");
    assert_eq!(entry["operation"], "Apply");
    let owned = entry["fieldsV1"]["f:spec"].clone();
    assert!(owned.get("f:replicas").is_some(), "{owned}");
    assert!(
        owned.get("f:revisionHistoryLimit").is_none() && owned.get("f:strategy").is_none(),
        "an applier owns what it applied, not the defaults: {owned}"
    );

    // The same configuration again is a no-op.
    let again = json_of(
        &api.patch("applied", &pp, &Patch::Apply(config(Some(3))))
            .await
            .unwrap(),
    );
    assert_eq!(
        again["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );
    assert_eq!(again["metadata"]["generation"], 1);

    // Dropping replicas from the configuration removes it; the default comes back.
    let dropped = json_of(
        &api.patch("applied", &pp, &Patch::Apply(config(None)))
            .await
            .unwrap(),
    );
    assert_eq!(dropped["spec"]["replicas"], 1, "{}", dropped["spec"]);

    // Another applier conflicts only on what the first one applied.
    let other = apply_params("other");
    api.patch(
        "applied",
        &other,
        &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                             "metadata": {"name": "applied"},
                             "spec": {"revisionHistoryLimit": 3}})),
    )
    .await
    .expect("a defaulted field has no owner to conflict with");

    // A create (an Update operation) owns the defaulted fields, as upstream's field manager
    // records the decoded, defaulted object.
    let created = json_of(
        &api.create(
            &PostParams {
                field_manager: Some("creator".into()),
                ..Default::default()
            },
            &obj(deployment_manifest("created")),
        )
        .await
        .unwrap(),
    );
    let entry = &created["metadata"]["managedFields"][0];
    assert_eq!(entry["manager"], "creator");
    assert!(
        entry["fieldsV1"]["f:spec"]
            .get("f:progressDeadlineSeconds")
            .is_some(),
        "{entry}"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn services_secrets_and_namespaces_get_upstream_defaults() {
    let c = cluster().await;
    let client = c.client();
    let pp = PostParams::default();
    let services = raw::<Service>(&client);
    let svc = json_of(
        &services
            .create(
                &pp,
                &obj(
                    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
                ),
            )
            .await
            .unwrap(),
    );
    let spec = &svc["spec"];
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(spec["sessionAffinity"], "None");
    assert_eq!(spec["internalTrafficPolicy"], "Cluster");
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
    assert_eq!(spec["ports"][0]["protocol"], "TCP");
    assert_eq!(spec["ports"][0]["targetPort"], 80);
    assert!(spec["clusterIP"].as_str().is_some_and(|ip| !ip.is_empty()));
    // A merge patch keeps them (no-op).
    let same = json_of(
        &services
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {}})),
            )
            .await
            .unwrap(),
    );
    assert_eq!(
        same["metadata"]["resourceVersion"],
        svc["metadata"]["resourceVersion"]
    );

    let headless = json_of(
        &services
            .create(
                &pp,
                &obj(
                    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "h"},
                    "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}),
                ),
            )
            .await
            .unwrap(),
    );
    assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    assert_eq!(headless["spec"]["ipFamilyPolicy"], "RequireDualStack");
    assert_eq!(headless["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));

    let secret = json_of(
        &raw::<Secret>(&client)
            .create(
                &pp,
                &obj(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})),
            )
            .await
            .unwrap(),
    );
    assert_eq!(secret["type"], "Opaque");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = namespaces
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        ns.metadata.labels.unwrap_or_default()["kubernetes.io/metadata.name"],
        "team"
    );
    assert_eq!(
        ns.spec.and_then(|s| s.finalizers).unwrap_or_default(),
        vec!["kubernetes".to_owned()]
    );
    let default_ns = namespaces.get("default").await.unwrap();
    assert_eq!(
        default_ns.metadata.labels.unwrap_or_default()["kubernetes.io/metadata.name"],
        "default"
    );
    namespaces
        .delete("team", &DeleteParams::default())
        .await
        .unwrap();
    common::eventually("the namespace is deleted", || async {
        namespaces.get_opt("team").await.unwrap().is_none()
    })
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_sees_the_same() {
    let c = cluster().await;
    let kubectl = testkit::kubectl::Kubectl::new(c.kubeconfig_path()).expect("kubectl on PATH");
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, v: Value| {
        let path = dir.path().join(name);
        std::fs::write(&path, v.to_string()).unwrap();
        path.display().to_string()
    };

    // stringData through client-side apply, then a merge patch.
    let secret = file(
        "secret.json",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
               "stringData": {"user": "alice"}}),
    );
    kubectl.run(&["apply", "-f", &secret]).await;
    kubectl
        .run(&[
            "patch",
            "secret",
            "creds",
            "--type=merge",
            "-p",
            r#"{"stringData":{"pw":"x"}}"#,
        ])
        .await;
    let got: Value =
        serde_json::from_str(&kubectl.run(&["get", "secret", "creds", "-o", "json"]).await)
            .unwrap();
    assert_eq!(
        got["data"],
        json!({"user": "YWxpY2U=", "pw": "eA=="}),
        "{got}"
    );
    assert!(got.get("stringData").is_none());
    assert_eq!(got["type"], "Opaque");

    // Bad base64.
    let bad = file(
        "bad.json",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bad"},
               "data": {"user": "not base64!"}}),
    );
    let out = kubectl.output(&["create", "-f", &bad]).await;
    assert!(!out.success);
    assert!(out.stderr.contains("illegal base64 data"), "{}", out.stderr);

    // Immutable ConfigMap: data refused, labels fine, deletion fine.
    let cm = file(
        "cm.json",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "frozen"},
               "immutable": true, "data": {"k": "v"}}),
    );
    kubectl.run(&["create", "-f", &cm]).await;
    let out = kubectl
        .output(&[
            "patch",
            "configmap",
            "frozen",
            "--type=merge",
            "-p",
            r#"{"data":{"k":"x"}}"#,
        ])
        .await;
    assert!(!out.success);
    assert!(
        out.stderr
            .contains("field is immutable when `immutable` is set"),
        "{}",
        out.stderr
    );
    kubectl
        .run(&["label", "configmap", "frozen", "tier=x"])
        .await;
    kubectl.run(&["delete", "configmap", "frozen"]).await;

    // Defaults on `kubectl run` and `kubectl create deployment` (protobuf bodies).
    kubectl
        .run(&["run", "p", "--image=busybox", "--restart=Never"])
        .await;
    let pod: Value =
        serde_json::from_str(&kubectl.run(&["get", "pod", "p", "-o", "json"]).await).unwrap();
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 30);
    assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
    kubectl
        .run(&["create", "deployment", "d", "--image=nginx:1.27"])
        .await;
    let d: Value =
        serde_json::from_str(&kubectl.run(&["get", "deployment", "d", "-o", "json"]).await)
            .unwrap();
    assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    c.shutdown().await;
}
