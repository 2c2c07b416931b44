//! Template mode on the test binary's cluster (the real control plane in CI, with its
//! StatefulSet controller, scheduler and kwok; devcluster and its controllers by default): a
//! labelled StatefulSet's template and pods get the sidecar, others are untouched, removing the
//! label removes it, and a name clash is refused with an event instead of breaking the
//! workload. Each test's controller watches only the test's namespace.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use localcluster::TestEnv;
use nes_controller::inject::{INJECT_LABEL, SIDECAR, SidecarSettings};
use nes_controller::template::{Context, Mode, OPERATOR};
use operator_core::Runtime;
use serde_json::json;
use testkit::eventually;

const TIMEOUT: Duration = Duration::from_secs(60);

async fn setup() -> (TestEnv, Api<StatefulSet>) {
    let env = TestEnv::new("nes-template").await;
    let runtime = Arc::new(Runtime::new(env.client(), OPERATOR));
    let ctx = Arc::new(Context {
        mode: Mode::Template,
        runtime,
        sidecar: SidecarSettings {
            image: "nes-agent:test".into(),
            ..SidecarSettings::default()
        },
        excluded_namespaces: BTreeSet::from(["kube-system".to_owned()]),
    });
    let namespace = env.namespace().to_owned();
    tokio::spawn(async move {
        nes_controller::operator::run(ctx, Some(&namespace), operator_core::Settings::default())
            .await;
    });
    let api = env.api();
    (env, api)
}

fn statefulset(name: &str, labelled: bool, container: &str) -> StatefulSet {
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
                "spec": {"containers": [{"name": container, "image": "app:1"}]}
            }
        }
    }))
    .expect("a StatefulSet")
}

fn sidecar_names(sts: &StatefulSet) -> Vec<String> {
    sts.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.init_containers.as_ref())
        .map(|c| c.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn labelled_statefulsets_get_the_sidecar_in_template_and_pods() {
    let (env, api) = setup().await;
    let pp = PostParams::default();
    api.create(&pp, &statefulset("net", true, "app"))
        .await
        .unwrap();
    api.create(&pp, &statefulset("plain", false, "app"))
        .await
        .unwrap();

    eventually("the sidecar in the template", TIMEOUT, || async {
        let sts = api.get("net").await.ok()?;
        (sidecar_names(&sts) == [SIDECAR]).then_some(())
    })
    .await;
    let pods: Api<Pod> = env.api();
    let pod = eventually("pod net-0 with the sidecar", TIMEOUT, || async {
        let pod = pods.get("net-0").await.ok()?;
        let init = pod.spec.as_ref()?.init_containers.as_ref()?;
        init.iter().any(|c| c.name == SIDECAR).then_some(pod)
    })
    .await;
    let sidecar = &pod.spec.unwrap().init_containers.unwrap()[0];
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    assert_eq!(sidecar.image.as_deref(), Some("nes-agent:test"));

    // Template mode also makes the agent token Secret the sidecar mounts.
    let secrets: Api<Secret> = env.api();
    let secret = eventually("the agent token Secret", TIMEOUT, || async {
        secrets.get_opt("nes-agent-token").await.ok().flatten()
    })
    .await;
    assert_eq!(secret.data.unwrap()["token"].0.len(), 64);

    // Removing the label removes the sidecar from the template.
    api.patch(
        "net",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {INJECT_LABEL: null}}})),
    )
    .await
    .unwrap();
    eventually("the sidecar gone from the template", TIMEOUT, || async {
        let sts = api.get("net").await.ok()?;
        sidecar_names(&sts).is_empty().then_some(())
    })
    .await;

    // The unlabelled StatefulSet was never touched.
    let plain = api.get("plain").await.unwrap();
    assert!(sidecar_names(&plain).is_empty());
    assert_eq!(plain.metadata.generation, Some(1));
}

#[tokio::test]
async fn a_name_clash_is_refused_with_an_event() {
    let (env, api) = setup().await;
    api.create(&PostParams::default(), &statefulset("clash", true, SIDECAR))
        .await
        .unwrap();
    let events: Api<Event> = env.api();
    let event = eventually("an InjectionRefused event", TIMEOUT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("InjectionRefused"))
    })
    .await;
    assert!(
        event.message.unwrap_or_default().contains("did not add"),
        "the event says why"
    );
    let sts = api.get("clash").await.unwrap();
    assert!(sidecar_names(&sts).is_empty(), "the template is unchanged");
    assert_eq!(sts.metadata.generation, Some(1));
}
