//! A tiny operator built on operator-core (a `Note` owning a ConfigMap), run against devcluster
//! over HTTP: reconcile on create / update / child deletion / deletion with cleanup once;
//! conditions and observedGeneration; per-object backoff; an invalid spec not stopping the
//! others; the admin endpoints.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{CustomResource, CustomResourceExt, Resource, ResourceExt};
use operator_core::conditions::{self, Desired};
use operator_core::finalizer::{self, Event};
use operator_core::{ErrorReason, Runtime, Settings, backoff};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

const OPERATOR: &str = "notes";

#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "example.kubecrew.io",
    version = "v1alpha1",
    kind = "Note",
    namespaced,
    status = "NoteStatus"
)]
#[serde(rename_all = "camelCase")]
struct NoteSpec {
    text: String,
    /// Fail this many reconciles before succeeding (to observe the backoff).
    #[serde(default)]
    fail_times: u32,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct NoteStatus {
    #[serde(default)]
    conditions: Vec<Condition>,
    observed_generation: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("injected failure {0}")]
    Injected(u32),
}

impl ErrorReason for Error {
    fn reason(&self) -> String {
        match self {
            Error::Kube(_) => "Kube".into(),
            Error::Finalizer(_) => "Finalizer".into(),
            Error::Injected(_) => "Injected".into(),
        }
    }
}

struct Ctx {
    runtime: Arc<Runtime>,
    cleanups: AtomicUsize,
    attempts: Mutex<Vec<(String, Instant)>>,
}

async fn reconcile(note: Arc<Note>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = note.namespace().unwrap_or_default();
    let name = note.name_any();
    ctx.attempts
        .lock()
        .unwrap()
        .push((name.clone(), Instant::now()));
    let failures = ctx
        .attempts
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| *n == name)
        .count() as u32;
    if failures <= note.spec.fail_times {
        return Err(Error::Injected(failures));
    }
    let notes: Api<Note> = Api::namespaced(ctx.runtime.client.clone(), &ns);
    finalizer::with_finalizer(&notes, OPERATOR, note, |event| async {
        match event {
            Event::Apply(note) => {
                let cms: Api<ConfigMap> = Api::namespaced(ctx.runtime.client.clone(), &ns);
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(format!("{}-note", note.name_any())),
                        owner_references: Some(vec![note.controller_owner_ref(&()).unwrap()]),
                        ..Default::default()
                    },
                    data: Some([("text".to_string(), note.spec.text.clone())].into()),
                    ..Default::default()
                };
                cms.patch(
                    &format!("{}-note", note.name_any()),
                    &PatchParams::apply(OPERATOR).force(),
                    &Patch::Apply(&cm),
                )
                .await?;
                let mut conds = note.status.clone().unwrap_or_default().conditions;
                conditions::set(
                    &mut conds,
                    Desired::ready("Applied", "the ConfigMap holds the text"),
                    note.meta().generation,
                    jiff::Timestamp::now(),
                );
                operator_core::status::apply(
                    &ctx.runtime.client,
                    &kube::api::ApiResource::erase::<Note>(&()),
                    Some(&ns),
                    &note.name_any(),
                    OPERATOR,
                    json!({"conditions": conds, "observedGeneration": note.meta().generation}),
                )
                .await?;
                Ok(Action::await_change())
            }
            Event::Cleanup(_) => {
                ctx.cleanups.fetch_add(1, Ordering::SeqCst);
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e: kube::runtime::finalizer::Error<kube::Error>| Error::Finalizer(e.to_string()))
}

/// The CRD as generated, but with a spec that accepts anything, so an object that the Rust
/// type cannot read can still be stored (as after a schema change).
fn lenient_crd() -> CustomResourceDefinition {
    let mut crd = serde_json::to_value(Note::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] =
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    serde_json::from_value(crd).unwrap()
}

async fn status_of(api: &Api<Note>, name: &str) -> Option<(NoteStatus, Option<i64>)> {
    let n = api.get_opt(name).await.ok()??;
    Some((n.status.clone()?, n.meta().generation))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_operator_end_to_end() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("operator_core=debug,warn")
        .try_init();
    let cluster = devcluster::DevCluster::start(Default::default())
        .await
        .unwrap();
    let client = cluster.client();
    cluster.install_crd(&lenient_crd()).await.unwrap();

    let runtime = Arc::new(Runtime::new(client.clone(), OPERATOR));
    let admin = operator_core::admin::serve(
        "127.0.0.1:0".parse().unwrap(),
        runtime.metrics.clone(),
        runtime.readiness.clone(),
        runtime.shutdown.clone(),
    )
    .await
    .unwrap();
    let ctx = Arc::new(Ctx {
        runtime: runtime.clone(),
        cleanups: AtomicUsize::new(0),
        attempts: Mutex::new(Vec::new()),
    });
    let settings = Settings {
        concurrency: 2,
        requeue_after: Duration::from_secs(300),
        backoff: backoff::Policy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            factor: 2.0,
            jitter: 0.0,
        },
    };
    let guarded: Api<DeserializeGuard<Note>> = Api::default_namespaced(client.clone());
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let owned = cms.clone();
    let loop_task = tokio::spawn(operator_core::run(
        runtime.clone(),
        guarded,
        watcher::Config::default(),
        move |c| c.owns(owned.clone(), watcher::Config::default()),
        reconcile,
        ctx.clone(),
        settings,
    ));

    let http = reqwest::Client::new();
    let base = format!("http://{admin}");
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    testkit::eventually(
        "readyz after the first list",
        Duration::from_secs(20),
        || async {
            let s = http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .ok()?
                .status();
            (s == 200).then_some(())
        },
    )
    .await;

    let notes: Api<Note> = Api::default_namespaced(client.clone());
    let note = |name: &str, text: &str, fail_times: u32| {
        Note::new(
            name,
            NoteSpec {
                text: text.into(),
                fail_times,
            },
        )
    };
    // Create -> child, finalizer, Ready with observedGeneration 1.
    notes
        .create(&PostParams::default(), &note("a", "hello", 0))
        .await
        .unwrap();
    let text_is = |want: &'static str| {
        let cms = cms.clone();
        move || {
            let cms = cms.clone();
            async move {
                let cm = cms.get_opt("a-note").await.ok()??;
                (cm.data?.get("text")? == want).then_some(())
            }
        }
    };
    testkit::eventually(
        "ConfigMap created",
        Duration::from_secs(20),
        text_is("hello"),
    )
    .await;
    let (status, generation) = testkit::eventually("Ready", Duration::from_secs(20), || async {
        let (s, g) = status_of(&notes, "a").await?;
        conditions::is_true(&s.conditions, "Ready").then_some((s, g))
    })
    .await;
    assert_eq!(status.observed_generation, generation);
    assert_eq!(
        notes.get("a").await.unwrap().finalizers(),
        ["notes.kubecrew.io/cleanup"]
    );
    let first_transition = conditions::find(&status.conditions, "Ready")
        .unwrap()
        .last_transition_time
        .clone();

    // Update -> child follows, observedGeneration 2, Ready's transition time unchanged.
    let p = json!({"spec": {"text": "world"}});
    notes
        .patch("a", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    testkit::eventually(
        "ConfigMap updated",
        Duration::from_secs(20),
        text_is("world"),
    )
    .await;
    let status = testkit::eventually("observedGeneration 2", Duration::from_secs(20), || async {
        let (s, _) = status_of(&notes, "a").await?;
        (s.observed_generation == Some(2)).then_some(s)
    })
    .await;
    assert_eq!(
        conditions::find(&status.conditions, "Ready")
            .unwrap()
            .last_transition_time,
        first_transition
    );

    // Child deleted -> restored.
    cms.delete("a-note", &DeleteParams::default())
        .await
        .unwrap();
    testkit::eventually(
        "ConfigMap restored",
        Duration::from_secs(20),
        text_is("world"),
    )
    .await;

    // Backoff: three failures with growing delays, then success; attempts reset afterwards.
    notes
        .create(&PostParams::default(), &note("flaky", "x", 3))
        .await
        .unwrap();
    testkit::eventually("flaky becomes Ready", Duration::from_secs(20), || async {
        let (s, _) = status_of(&notes, "flaky").await?;
        conditions::is_true(&s.conditions, "Ready").then_some(())
    })
    .await;
    let times: Vec<Instant> = ctx
        .attempts
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| n == "flaky")
        .map(|(_, t)| *t)
        .collect();
    assert!(
        times.len() >= 4,
        "3 failures then a success: {}",
        times.len()
    );
    let gaps: Vec<Duration> = times.windows(2).take(3).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[0] >= Duration::from_millis(100),
        "first retry waits the initial delay: {gaps:?}"
    );
    assert!(
        gaps[1] > gaps[0] && gaps[2] > gaps[1],
        "delays grow: {gaps:?}"
    );

    // A spec the Rust type cannot read: reported on that object, the others keep working.
    let bad = json!({"apiVersion": "example.kubecrew.io/v1alpha1", "kind": "Note",
                     "metadata": {"name": "bad"}, "spec": {"text": 42}});
    let dyn_api: Api<kube::api::DynamicObject> =
        Api::default_namespaced_with(client.clone(), &kube::api::ApiResource::erase::<Note>(&()));
    dyn_api
        .create(
            &PostParams::default(),
            &serde_json::from_value(bad).unwrap(),
        )
        .await
        .unwrap();
    testkit::eventually("InvalidSpec reported", Duration::from_secs(20), || async {
        let o = dyn_api.get("bad").await.ok()?;
        let conds: Vec<Condition> =
            serde_json::from_value(o.data.pointer("/status/conditions")?.clone()).ok()?;
        let stalled = conditions::find(&conds, "Stalled")?;
        (stalled.reason == "InvalidSpec" && stalled.message.contains("`42`")).then_some(())
    })
    .await;
    notes
        .create(&PostParams::default(), &note("b", "still works", 0))
        .await
        .unwrap();
    testkit::eventually(
        "b reconciled after the bad one",
        Duration::from_secs(20),
        || async {
            let cm = cms.get_opt("b-note").await.ok()??;
            (cm.data?.get("text")? == "still works").then_some(())
        },
    )
    .await;

    // Deletion: cleanup runs exactly once, then the object goes.
    notes.delete("a", &DeleteParams::default()).await.unwrap();
    testkit::eventually("a deleted", Duration::from_secs(20), || async {
        notes.get_opt("a").await.ok()?.is_none().then_some(())
    })
    .await;
    assert_eq!(ctx.cleanups.load(Ordering::SeqCst), 1);

    // Metrics over HTTP.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains(r#"kubecrew_reconcile_errors_total{reason="Injected",operator="notes"} 3"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"kubecrew_reconcile_total{result="invalid",operator="notes"}"#));
    assert!(metrics.contains("kubecrew_reconcile_duration_seconds_bucket"));
    // Without leader election the one instance is the leader.
    assert!(
        metrics.contains(r#"kubecrew_leader{operator="notes"} 1"#),
        "{metrics}"
    );

    runtime.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(20), loop_task)
        .await
        .expect("the loop stops on shutdown")
        .unwrap();
    cluster.shutdown().await;
}
