//! Webhook mode on the test binary's cluster (the real kube-apiserver in CI, devcluster by
//! default; see localcluster), whose API server calls the registered webhook over HTTPS for
//! every Pod its StatefulSet controller creates: a labelled StatefulSet's pods get the sidecar
//! while its template stays as written, other pods are untouched, removing the label stops
//! injection, the webhook configuration is restored after tampering or deletion, the namespace
//! gets the agent token Secret, and a malformed AdmissionReview is a 400 with a readable
//! message.
//!
//! Tests share the API server, so each one's controller watches only the test's namespace, and
//! its webhook configuration (cluster-wide) has a name of its own and sends only that
//! namespace's pods (`--namespace` and `--webhook-configuration` in the binary).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use localcluster::TestEnv;
use nes_controller::admission::FailurePolicy;
use nes_controller::inject::{INJECT_LABEL, SIDECAR, SidecarSettings};
use nes_controller::template::{Context, Mode, OPERATOR};
use nes_controller::webhook::{self, Started, TlsSource};
use operator_core::Runtime;
use serde_json::json;
use testkit::eventually;

const TIMEOUT: Duration = Duration::from_secs(60);

struct Setup {
    env: TestEnv,
    started: Started,
    runtime: Arc<Runtime>,
    /// This test's MutatingWebhookConfiguration.
    configuration: String,
}

impl Setup {
    /// Stops the controller, then removes its webhook configuration, so the API server no
    /// longer calls a webhook that is gone.
    async fn stop(self) {
        self.runtime.shutdown.cancel();
        let _ = tokio::time::timeout(TIMEOUT, self.started.config_sync).await;
        let _ = tokio::time::timeout(TIMEOUT, self.started.server).await;
        let configs: Api<MutatingWebhookConfiguration> = Api::all(self.env.client());
        configs
            .delete(&self.configuration, &DeleteParams::default())
            .await
            .expect("the webhook configuration deleted");
    }
}

async fn setup() -> Setup {
    let env = TestEnv::new("nes-webhook").await;
    let namespace = env.namespace().to_owned();
    let configuration = format!("nes-controller-{namespace}");
    let runtime = Arc::new(Runtime::new(env.client(), OPERATOR));
    let sidecar = SidecarSettings {
        image: "nes-agent:test".into(),
        ..SidecarSettings::default()
    };
    let excluded = BTreeSet::from(["kube-system".to_owned(), "nes-system".to_owned()]);
    let started = webhook::start(
        &runtime,
        webhook::Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: TlsSource::Generate(nes_controller::tls::subject_alt_names(
                "nes-controller",
                "nes-system",
                &["127.0.0.1".to_owned()],
            )),
            // https://127.0.0.1:<bound port>/mutate, as --webhook-url would say.
            endpoint: None,
            configuration_name: configuration.clone(),
            namespace: Some(namespace.clone()),
            failure_policy: FailurePolicy::Ignore,
            excluded_namespaces: excluded.clone(),
            sidecar: sidecar.clone(),
        },
    )
    .await
    .expect("the webhook starts");
    let ctx = Arc::new(Context {
        mode: Mode::Webhook,
        runtime: runtime.clone(),
        sidecar,
        excluded_namespaces: excluded,
    });
    tokio::spawn(async move {
        nes_controller::operator::run(ctx, Some(&namespace), operator_core::Settings::default())
            .await;
    });
    // Pods created before the configuration is registered would not be sent to the webhook.
    let configs: Api<MutatingWebhookConfiguration> = Api::all(env.client());
    eventually("the webhook configuration", TIMEOUT, || async {
        configs.get_opt(&configuration).await.ok().flatten()
    })
    .await;
    Setup {
        env,
        started,
        runtime,
        configuration,
    }
}

fn statefulset(name: &str, labelled: bool) -> StatefulSet {
    let labels = if labelled {
        json!({INJECT_LABEL: "true"})
    } else {
        json!({})
    };
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]}
            }
        }
    }))
    .expect("a StatefulSet")
}

fn init_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .map(|c| c.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_namespace_whose_pod_security_refuses_the_sidecar_is_told_so() {
    let setup = setup().await;
    let env = &setup.env;
    let namespace = env.namespace().to_owned();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(env.client());
    namespaces
        .patch(
            &namespace,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": "baseline"}}})),
        )
        .await
        .unwrap();
    let sets: Api<StatefulSet> = env.api();
    let sts = sets
        .create(&PostParams::default(), &statefulset("net", true))
        .await
        .unwrap();

    // Where users look: a Warning event on the StatefulSet.
    let events: Api<k8s_openapi::api::events::v1::Event> = env.api();
    let note = eventually("the PodSecurityForbidsSidecar event", TIMEOUT, || async {
        events
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("PodSecurityForbidsSidecar")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("net")
            })
            .and_then(|e| e.note)
    })
    .await;
    assert!(
        note.contains("\"baseline\"") && note.contains("NET_ADMIN"),
        "{note}"
    );

    if env.cluster().real().is_none() {
        eprintln!(
            "devcluster has no Pod Security admission: the pod-creation half of this test runs \
             on the real control plane"
        );
        setup.stop().await;
        return;
    }
    // The webhook's answer carries the warning to whoever creates such a pod (here kubectl),
    // and Pod Security admission then refuses it: exactly what the warning foretold.
    let manifest = env.dir().join("pod.json");
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "net-7", "namespace": namespace, "labels": {"app": "net"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                         "name": "net", "uid": sts.metadata.uid.clone().unwrap(),
                         "controller": true}]},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]}
    });
    std::fs::write(&manifest, pod.to_string()).unwrap();
    let out = env
        .kubectl()
        .output(&["create", "-f", manifest.to_str().unwrap()])
        .await;
    assert!(!out.success, "Pod Security refuses the injected pod");
    assert!(
        out.stderr.contains("Warning: namespace") && out.stderr.contains("enforces Pod Security"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("NET_ADMIN"), "{}", out.stderr);
    setup.stop().await;
}

#[tokio::test]
async fn labelled_statefulsets_pods_get_the_sidecar_and_templates_stay() {
    let setup = setup().await;
    let env = &setup.env;
    let client = env.client();
    let sets: Api<StatefulSet> = env.api();
    let pods: Api<Pod> = env.api();
    let pp = PostParams::default();
    sets.create(&pp, &statefulset("net", true)).await.unwrap();
    sets.create(&pp, &statefulset("plain", false))
        .await
        .unwrap();

    let pod = eventually("pod net-0", TIMEOUT, || async {
        pods.get_opt("net-0").await.ok().flatten()
    })
    .await;
    assert_eq!(init_names(&pod), [SIDECAR], "the webhook injected the pod");
    let sidecar = &pod.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0];
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    assert_eq!(sidecar.image.as_deref(), Some("nes-agent:test"));
    let volumes: Vec<_> = pod
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.clone())
        .collect();
    assert!(
        volumes.contains(&"nes-agent-token".to_owned()),
        "{volumes:?}"
    );

    let plain = eventually("pod plain-0", TIMEOUT, || async {
        pods.get_opt("plain-0").await.ok().flatten()
    })
    .await;
    assert!(
        init_names(&plain).is_empty(),
        "an unlabelled StatefulSet's pod is untouched"
    );

    // The token Secret the sidecar mounts exists in the namespace.
    let secrets: Api<Secret> = env.api();
    let secret = eventually("the agent token Secret", TIMEOUT, || async {
        secrets.get_opt("nes-agent-token").await.ok().flatten()
    })
    .await;
    let token = &secret.data.as_ref().unwrap()["token"].0;
    assert_eq!(token.len(), 64);
    assert!(token.iter().all(u8::is_ascii_hexdigit));
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));

    // The StatefulSet itself was never changed.
    let net = sets.get("net").await.unwrap();
    assert_eq!(net.metadata.generation, Some(1));
    assert!(
        net.spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .init_containers
            .is_none()
    );

    // Label removed: the next pod is created without the sidecar.
    sets.patch(
        "net",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {INJECT_LABEL: null}}})),
    )
    .await
    .unwrap();
    let old_uid = pod.metadata.uid.clone();
    pods.delete("net-0", &DeleteParams::default())
        .await
        .unwrap();
    let recreated = eventually("net-0 recreated", TIMEOUT, || async {
        let pod = pods.get_opt("net-0").await.ok().flatten()?;
        (pod.metadata.uid != old_uid && pod.metadata.deletion_timestamp.is_none()).then_some(pod)
    })
    .await;
    assert!(
        init_names(&recreated).is_empty(),
        "{:?}",
        init_names(&recreated)
    );

    // Pods in a namespace the controller does not watch are never injected, labelled or not:
    // the configuration does not even send them.
    let other = env
        .cluster()
        .namespace("nes-other")
        .await
        .expect("another namespace");
    Api::<StatefulSet>::namespaced(client.clone(), &other)
        .create(&pp, &statefulset("own", true))
        .await
        .unwrap();
    let other_pods: Api<Pod> = Api::namespaced(client.clone(), &other);
    let own = eventually("pod own-0", TIMEOUT, || async {
        other_pods.get_opt("own-0").await.ok().flatten()
    })
    .await;
    assert!(init_names(&own).is_empty(), "{:?}", init_names(&own));

    // The Secret was created once and is not replaced.
    let again = secrets.get("nes-agent-token").await.unwrap();
    assert_eq!(again.metadata.uid, secret.metadata.uid);
    assert_eq!(again.data, secret.data);
    setup.stop().await;
}

#[tokio::test]
async fn the_configuration_is_restored_after_tampering_and_deletion() {
    let setup = setup().await;
    let (started, name) = (&setup.started, setup.configuration.as_str());
    let configs: Api<MutatingWebhookConfiguration> = Api::all(setup.env.client());
    let ca_bundle = |config: &MutatingWebhookConfiguration| {
        config
            .webhooks
            .as_ref()?
            .first()?
            .client_config
            .ca_bundle
            .as_ref()
            .map(|b| b.0.clone())
    };
    let config = configs.get(name).await.unwrap();
    assert_eq!(ca_bundle(&config), Some(started.ca_pem.as_bytes().to_vec()));
    let hook = &config.webhooks.as_ref().unwrap()[0];
    assert_eq!(
        hook.client_config.url.as_deref(),
        Some(format!("https://{}/mutate", started.local_addr).as_str())
    );
    assert_eq!(hook.failure_policy.as_deref(), Some("Ignore"));
    let selector = serde_json::to_value(&hook.namespace_selector).unwrap();
    assert_eq!(
        selector["matchExpressions"][0],
        json!({"key": "kubernetes.io/metadata.name", "operator": "In",
               "values": [setup.env.namespace()]}),
        "only the watched namespace's pods are sent"
    );

    let other = base64::engine::general_purpose::STANDARD.encode("someone else's CA");
    configs
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": other}
                ]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    eventually("the caBundle restored", TIMEOUT, || async {
        let config = configs.get(name).await.ok()?;
        (ca_bundle(&config)? == started.ca_pem.as_bytes()).then_some(())
    })
    .await;

    let before = configs.get(name).await.unwrap().metadata.uid;
    configs
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    eventually("the configuration re-created", TIMEOUT, || async {
        let config = configs.get_opt(name).await.ok().flatten()?;
        (config.metadata.uid != before && ca_bundle(&config)? == started.ca_pem.as_bytes())
            .then_some(())
    })
    .await;
    setup.stop().await;
}

#[tokio::test]
async fn a_malformed_review_is_a_readable_400() {
    let setup = setup().await;
    let (started, runtime) = (&setup.started, &setup.runtime);
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(started.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://{}/mutate", started.local_addr);
    for (body, want) in [
        ("not json".to_owned(), "malformed AdmissionReview: "),
        (
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).to_string(),
            "malformed AdmissionReview: it has no request",
        ),
        (
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                   "request": {"uid": 7}})
            .to_string(),
            "malformed AdmissionReview: ",
        ),
    ] {
        let response = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let text = response.text().await.unwrap();
        assert!(text.starts_with(want), "{body}: {text}");
    }
    // The server still serves after them.
    let health = http
        .get(format!("https://{}/healthz", started.local_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = runtime.metrics.render();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("kubecrew_nes_admissions_total{")
                && l.contains("result=\"bad-request\"")
                && l.ends_with(" 3")),
        "{metrics}"
    );
    setup.stop().await;
}
