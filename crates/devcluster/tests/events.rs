//! Events served by both APIs over one storage, as on a real cluster: an Event written through
//! `core/v1` is read, watched, patched and deleted through `events.k8s.io/v1` and the other way
//! round, with the fields converted, shared resourceVersions, each API's field selectors, and
//! managedFields recorded at the version of each request. Clients nobody here wrote judge it:
//! kube-rs (typed APIs and its event `Recorder`) and kubectl (`events`, `get`, `describe`).

mod common;

use std::path::Path;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{self as core, ConfigMap, EventSource, ObjectReference, Pod};
use k8s_openapi::api::events::v1::{self as events, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{
    Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::runtime::events::{Event as Publish, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

const NS: &str = "default";
const TIMEOUT: Duration = Duration::from_secs(20);

fn pod_ref(name: &str, ns: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(name.into()),
        namespace: Some(ns.into()),
        uid: Some(format!("uid-of-{name}")),
        ..ObjectReference::default()
    }
}

fn meta(name: &str, ns: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..ObjectMeta::default()
    }
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// The kind of event kubelets and old-style recorders write: core/v1 with source and counts.
fn core_event(name: &str, regarding: ObjectReference, source: &str) -> core::Event {
    let ns = regarding.namespace.clone().unwrap_or_else(|| NS.into());
    core::Event {
        metadata: meta(name, &ns),
        involved_object: regarding,
        reason: Some("Pulled".into()),
        message: Some("Successfully pulled image".into()),
        source: Some(EventSource {
            component: Some(source.into()),
            host: Some("node-1".into()),
        }),
        count: Some(2),
        first_timestamp: Some(Time(now())),
        last_timestamp: Some(Time(now())),
        type_: Some("Normal".into()),
        ..core::Event::default()
    }
}

/// The kind of event new-style recorders write: events.k8s.io/v1 with a reporting controller.
fn new_event(name: &str, regarding: ObjectReference, controller: &str) -> events::Event {
    let ns = regarding.namespace.clone().unwrap_or_else(|| NS.into());
    events::Event {
        metadata: meta(name, &ns),
        regarding: Some(regarding),
        reason: Some("Scheduled".into()),
        note: Some("Successfully assigned the pod to node-1".into()),
        action: Some("Binding".into()),
        event_time: Some(MicroTime(now())),
        reporting_controller: Some(controller.into()),
        reporting_instance: Some(format!("{controller}-1")),
        type_: Some("Normal".into()),
        ..events::Event::default()
    }
}

fn writer(manager: &str) -> PostParams {
    PostParams {
        field_manager: Some(manager.into()),
        ..PostParams::default()
    }
}

fn patcher(manager: &str) -> PatchParams {
    PatchParams {
        field_manager: Some(manager.into()),
        ..PatchParams::default()
    }
}

fn apis(cluster: &devcluster::DevCluster) -> (Api<core::Event>, Api<events::Event>) {
    let client = cluster.client();
    (
        Api::namespaced(client.clone(), NS),
        Api::namespaced(client, NS),
    )
}

/// The next watch event, or a panic after [`TIMEOUT`].
async fn next<K, S>(stream: &mut S) -> WatchEvent<K>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<K>>> + Unpin,
{
    tokio::time::timeout(TIMEOUT, stream.try_next())
        .await
        .expect("a watch event in time")
        .expect("the watch stream works")
        .expect("the watch stream stays open")
}

/// The next event that is not a bookmark.
async fn next_change<K, S>(stream: &mut S) -> WatchEvent<K>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<K>>> + Unpin,
{
    loop {
        match next(stream).await {
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
            other => return other,
        }
    }
}

#[tokio::test]
async fn an_event_written_through_one_api_is_read_through_the_other() {
    let cluster = common::cluster().await;
    let (core_api, events_api) = apis(&cluster);

    let written = core_api
        .create(
            &writer("core-writer"),
            &core_event("pulled", pod_ref("web", NS), "kubelet"),
        )
        .await
        .unwrap();
    let read = events_api.get("pulled").await.unwrap();
    assert_eq!(read.uid(), written.uid());
    assert_eq!(read.resource_version(), written.resource_version());
    assert_eq!(read.regarding, Some(written.involved_object.clone()));
    assert_eq!(read.note, written.message);
    assert_eq!(read.reason, written.reason);
    assert_eq!(read.type_, written.type_);
    assert_eq!(read.deprecated_source, written.source);
    assert_eq!(read.deprecated_count, Some(2));
    assert_eq!(read.deprecated_first_timestamp, written.first_timestamp);
    assert_eq!(read.deprecated_last_timestamp, written.last_timestamp);
    assert_eq!(read.reporting_controller, None, "no defaulting from source");

    let written = events_api
        .create(
            &writer("events-writer"),
            &new_event("scheduled", pod_ref("web", NS), "default-scheduler"),
        )
        .await
        .unwrap();
    let read = core_api.get("scheduled").await.unwrap();
    assert_eq!(read.resource_version(), written.resource_version());
    assert_eq!(Some(read.involved_object.clone()), written.regarding);
    assert_eq!(read.message, written.note);
    assert_eq!(read.action, written.action);
    assert_eq!(read.event_time, written.event_time);
    assert_eq!(
        read.reporting_component.as_deref(),
        Some("default-scheduler")
    );
    assert_eq!(
        read.reporting_instance.as_deref(),
        Some("default-scheduler-1")
    );
    assert_eq!(
        read.source, None,
        "no defaulting from the reporting controller"
    );
    assert_eq!(read.count, None);

    // One collection: both lists hold both events, at the same resourceVersion.
    let core_list = core_api.list(&ListParams::default()).await.unwrap();
    let events_list = events_api.list(&ListParams::default()).await.unwrap();
    let names = |items: Vec<String>| {
        let mut items = items;
        items.sort();
        items
    };
    assert_eq!(
        names(core_list.items.iter().map(|e| e.name_any()).collect()),
        ["pulled", "scheduled"]
    );
    assert_eq!(
        names(events_list.items.iter().map(|e| e.name_any()).collect()),
        ["pulled", "scheduled"]
    );
    assert_eq!(
        core_list.metadata.resource_version,
        events_list.metadata.resource_version
    );
    // The raw answer carries the version it was asked for.
    let raw: Value = cluster
        .client()
        .request(
            http::Request::get("/apis/events.k8s.io/v1/namespaces/default/events/pulled")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(raw["apiVersion"], "events.k8s.io/v1");
    assert!(raw.get("involvedObject").is_none() && raw.get("message").is_none());
    cluster.shutdown().await;
}

#[tokio::test]
async fn writes_and_deletes_through_either_api_convert() {
    let cluster = common::cluster().await;
    let (core_api, events_api) = apis(&cluster);
    core_api
        .create(
            &writer("t"),
            &core_event("old", pod_ref("web", NS), "kubelet"),
        )
        .await
        .unwrap();
    events_api
        .create(&writer("t"), &new_event("new", pod_ref("web", NS), "ctl"))
        .await
        .unwrap();

    // PUT through core of an events.k8s.io event.
    let mut ev = core_api.get("new").await.unwrap();
    ev.message = Some("rewritten through core".into());
    core_api
        .replace("new", &PostParams::default(), &ev)
        .await
        .unwrap();
    let read = events_api.get("new").await.unwrap();
    assert_eq!(read.note.as_deref(), Some("rewritten through core"));
    assert_eq!(read.reporting_controller.as_deref(), Some("ctl"));

    // Merge patch through events.k8s.io of a core event.
    let merge = json!({"deprecatedCount": 5, "note": "merged"});
    events_api
        .patch("old", &PatchParams::default(), &Patch::Merge(&merge))
        .await
        .unwrap();
    let read = core_api.get("old").await.unwrap();
    assert_eq!(read.count, Some(5));
    assert_eq!(read.message.as_deref(), Some("merged"));

    // JSON patch through core, strategic merge patch through events.k8s.io.
    let json_patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/metadata/labels", "value": {"tier": "web"}}
    ]))
    .unwrap();
    core_api
        .patch(
            "new",
            &PatchParams::default(),
            &Patch::Json::<()>(json_patch),
        )
        .await
        .unwrap();
    let series = json!({"series": {"count": 2, "lastObservedTime": MicroTime(now())}});
    events_api
        .patch("new", &PatchParams::default(), &Patch::Strategic(&series))
        .await
        .unwrap();
    let read = core_api.get("new").await.unwrap();
    assert_eq!(read.labels().get("tier").map(String::as_str), Some("web"));
    assert_eq!(read.series.and_then(|s| s.count), Some(2));
    let read = events_api.get("new").await.unwrap();
    assert_eq!(read.labels().get("tier").map(String::as_str), Some("web"));

    // Deletes: one through each API, one collection delete with events.k8s.io labels.
    events_api
        .delete("old", &DeleteParams::default())
        .await
        .unwrap();
    assert!(core_api.get_opt("old").await.unwrap().is_none());
    core_api
        .create(
            &writer("t"),
            &core_event("third", pod_ref("db", NS), "kubelet"),
        )
        .await
        .unwrap();
    events_api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().fields("regarding.name=db"),
        )
        .await
        .unwrap();
    assert!(core_api.get_opt("third").await.unwrap().is_none());
    core_api
        .delete("new", &DeleteParams::default())
        .await
        .unwrap();
    assert!(events_api.get_opt("new").await.unwrap().is_none());
    cluster.shutdown().await;
}

/// The managedFields entry of `manager`.
fn entry<'a>(obj: &'a Value, manager: &str) -> Option<&'a Value> {
    obj.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager)
}

async fn raw_core_event(cluster: &devcluster::DevCluster, name: &str) -> Value {
    let path = format!("/api/v1/namespaces/{NS}/events/{name}");
    cluster
        .client()
        .request(http::Request::get(path).body(Vec::new()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn managed_fields_stay_at_the_version_of_each_request() {
    let cluster = common::cluster().await;
    let (core_api, events_api) = apis(&cluster);
    core_api
        .create(
            &writer("core-writer"),
            &core_event("ev", pod_ref("web", NS), "kubelet"),
        )
        .await
        .unwrap();

    // Applying a new note through events.k8s.io conflicts with the core writer's message,
    // named as that writer recorded it.
    let config = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                        "metadata": {"name": "ev", "namespace": NS}, "note": "applied"});
    let err = events_api
        .patch("ev", &PatchParams::apply("applier"), &Patch::Apply(&config))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected an API error, got {err:?}")
    };
    assert_eq!(status.code, 409);
    assert!(
        status
            .message
            .contains(r#"conflict with "core-writer" using v1: .message"#),
        "{}",
        status.message
    );

    events_api
        .patch(
            "ev",
            &PatchParams::apply("applier").force(),
            &Patch::Apply(&config),
        )
        .await
        .unwrap();
    let stored = raw_core_event(&cluster, "ev").await;
    assert_eq!(stored["message"], "applied");
    let core_writer = entry(&stored, "core-writer").expect("core writer keeps its other fields");
    assert_eq!(core_writer["apiVersion"], "v1");
    assert!(core_writer["fieldsV1"].get("f:message").is_none());
    assert!(core_writer["fieldsV1"].get("f:involvedObject").is_some());
    let applier = entry(&stored, "applier").expect("the applier's entry");
    assert_eq!(applier["apiVersion"], "events.k8s.io/v1");
    assert_eq!(applier["operation"], "Apply");
    assert_eq!(applier["fieldsV1"], json!({"f:note": {}}));

    // A core write of the message takes the note from the applier: its entry goes.
    let merge = json!({"message": "from core"});
    core_api
        .patch("ev", &patcher("core-writer"), &Patch::Merge(&merge))
        .await
        .unwrap();
    let stored = raw_core_event(&cluster, "ev").await;
    assert!(entry(&stored, "applier").is_none(), "{stored}");
    let core_writer = entry(&stored, "core-writer").unwrap();
    assert!(core_writer["fieldsV1"].get("f:message").is_some());

    // An events.k8s.io update records its fields in its own version.
    let merge = json!({"reportingController": "ctl"});
    events_api
        .patch("ev", &patcher("events-writer"), &Patch::Merge(&merge))
        .await
        .unwrap();
    let stored = raw_core_event(&cluster, "ev").await;
    let events_writer = entry(&stored, "events-writer").unwrap();
    assert_eq!(events_writer["apiVersion"], "events.k8s.io/v1");
    assert_eq!(
        events_writer["fieldsV1"],
        json!({"f:reportingController": {}})
    );
    assert_eq!(stored["reportingComponent"], "ctl");
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_watch_on_one_api_sees_writes_through_the_other() {
    let cluster = common::cluster().await;
    let (core_api, events_api) = apis(&cluster);
    let rv = events_api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut new_watch = events_api
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .unwrap()
        .boxed();
    let mut core_watch = core_api
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .unwrap()
        .boxed();

    let created = core_api
        .create(
            &writer("t"),
            &core_event("ev", pod_ref("web", NS), "kubelet"),
        )
        .await
        .unwrap();
    let WatchEvent::Added(seen) = next_change(&mut new_watch).await else {
        panic!("expected ADDED")
    };
    assert_eq!(seen.note, created.message);
    assert_eq!(seen.resource_version(), created.resource_version());

    let labels = json!({"metadata": {"labels": {"seen": "yes"}}});
    let patched = events_api
        .patch("ev", &PatchParams::default(), &Patch::Merge(&labels))
        .await
        .unwrap();
    assert!(matches!(
        next_change(&mut core_watch).await,
        WatchEvent::Added(_)
    ));
    let WatchEvent::Modified(seen) = next_change(&mut core_watch).await else {
        panic!("expected MODIFIED")
    };
    assert_eq!(seen.labels().get("seen").map(String::as_str), Some("yes"));
    assert_eq!(seen.resource_version(), patched.resource_version());
    assert!(matches!(
        next_change(&mut new_watch).await,
        WatchEvent::Modified(_)
    ));

    core_api
        .delete("ev", &DeleteParams::default())
        .await
        .unwrap();
    let WatchEvent::Deleted(seen) = next_change(&mut new_watch).await else {
        panic!("expected DELETED")
    };
    assert_eq!(seen.regarding.and_then(|r| r.name).as_deref(), Some("web"));
    cluster.shutdown().await;
}

#[tokio::test]
async fn streaming_list_of_one_api_shows_the_others_events_then_the_bookmark() {
    let cluster = common::cluster().await;
    let (core_api, events_api) = apis(&cluster);
    core_api
        .create(
            &writer("t"),
            &core_event("ev", pod_ref("web", NS), "kubelet"),
        )
        .await
        .unwrap();
    let mut stream = events_api
        .watch(&WatchParams::streaming_lists().timeout(30), "")
        .await
        .unwrap()
        .boxed();
    let WatchEvent::Added(seen) = next(&mut stream).await else {
        panic!("expected the initial ADDED")
    };
    assert_eq!(seen.name_any(), "ev");
    assert_eq!(seen.deprecated_count, Some(2));
    let WatchEvent::Bookmark(bookmark) = next(&mut stream).await else {
        panic!("expected the initial-events-end bookmark")
    };
    assert_eq!(bookmark.types.api_version, "events.k8s.io/v1");
    assert_eq!(
        bookmark
            .metadata
            .annotations
            .get("k8s.io/initial-events-end")
            .map(String::as_str),
        Some("true")
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn each_api_selects_with_its_own_field_labels() {
    let cluster = common::cluster().await;
    let (core_api, events_api) = apis(&cluster);
    events_api
        .create(
            &writer("t"),
            &new_event("by-ctl", pod_ref("web", NS), "ctl"),
        )
        .await
        .unwrap();
    core_api
        .create(
            &writer("t"),
            &core_event("by-scheduler", pod_ref("db", NS), "scheduler"),
        )
        .await
        .unwrap();
    let core_names = |fields: &'static str| {
        let api = core_api.clone();
        async move {
            let list = api.list(&ListParams::default().fields(fields)).await;
            let list = list.unwrap_or_else(|e| panic!("{fields}: {e}"));
            list.items.iter().map(|e| e.name_any()).collect::<Vec<_>>()
        }
    };
    let events_names = |fields: &'static str| {
        let api = events_api.clone();
        async move {
            let list = api.list(&ListParams::default().fields(fields)).await;
            let list = list.unwrap_or_else(|e| panic!("{fields}: {e}"));
            list.items.iter().map(|e| e.name_any()).collect::<Vec<_>>()
        }
    };
    // What `kubectl describe pod web` asks for.
    let describe = "involvedObject.name=web,involvedObject.namespace=default,\
                    involvedObject.kind=Pod,involvedObject.uid=uid-of-web";
    assert_eq!(core_names(describe).await, ["by-ctl"]);
    assert_eq!(core_names("reportingComponent=ctl").await, ["by-ctl"]);
    assert_eq!(core_names("source=ctl").await, ["by-ctl"], "falls back");
    assert_eq!(core_names("source=scheduler").await, ["by-scheduler"]);
    assert_eq!(
        core_names("reason=Pulled,type=Normal").await,
        ["by-scheduler"]
    );
    assert_eq!(events_names("regarding.name=db").await, ["by-scheduler"]);
    assert_eq!(events_names("reportingController=ctl").await, ["by-ctl"]);
    assert_eq!(events_names("source=scheduler").await, ["by-scheduler"]);
    assert!(events_names("type=Warning").await.is_empty());

    let err = events_api
        .list(&ListParams::default().fields("involvedObject.name=web"))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected an API error, got {err:?}")
    };
    assert_eq!(status.code, 400);
    assert!(status.message.contains("field label not supported"));
    cluster.shutdown().await;
}

#[tokio::test]
async fn recorder_events_are_listed_as_core_events() {
    let cluster = common::cluster().await;
    let client = cluster.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let cm = ConfigMap {
        metadata: meta("settings", NS),
        ..ConfigMap::default()
    };
    let cm = cms.create(&PostParams::default(), &cm).await.unwrap();
    let reference = cm.object_ref(&());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "settings-controller".into(),
            instance: Some("settings-controller-0".into()),
        },
    );
    let event = Publish {
        type_: EventType::Warning,
        reason: "Invalid".into(),
        note: Some("key missing".into()),
        action: "Validate".into(),
        secondary: None,
    };
    recorder.publish(&event, &reference).await.unwrap();
    // The same event again: the recorder patches a series onto it.
    recorder.publish(&event, &reference).await.unwrap();

    let core_api: Api<core::Event> = Api::namespaced(client, NS);
    let listed = core_api
        .list(
            &ListParams::default()
                .fields("involvedObject.kind=ConfigMap,involvedObject.name=settings,type=Warning"),
        )
        .await
        .unwrap();
    let [ev] = listed.items.as_slice() else {
        panic!("one event, got {:?}", listed.items)
    };
    assert_eq!(ev.involved_object.uid, cm.uid());
    assert_eq!(ev.reason.as_deref(), Some("Invalid"));
    assert_eq!(ev.message.as_deref(), Some("key missing"));
    assert_eq!(ev.action.as_deref(), Some("Validate"));
    assert_eq!(
        ev.reporting_component.as_deref(),
        Some("settings-controller")
    );
    assert_eq!(
        ev.reporting_instance.as_deref(),
        Some("settings-controller-0")
    );
    assert!(ev.event_time.is_some());
    assert_eq!(ev.series.as_ref().and_then(|s| s.count), Some(2));
    cluster.shutdown().await;
}

/// Runs kubectl against the cluster and returns its stdout; panics with stderr on failure.
async fn kubectl(kubeconfig: &Path, cache: &Path, args: &[&str]) -> String {
    let binary = testkit::tools::kubectl().expect("kubectl on PATH");
    let out = tokio::process::Command::new(binary)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .output()
        .await
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_events_written_through_either_api() {
    let cluster = common::cluster().await;
    let client = cluster.client();
    let ns = "demo";
    let namespaces: Api<core::Namespace> = Api::all(client.clone());
    let namespace = core::Namespace {
        metadata: ObjectMeta {
            name: Some(ns.into()),
            ..ObjectMeta::default()
        },
        ..core::Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
    }))
    .unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    let mut regarding = pod.object_ref(&());
    regarding.api_version = Some("v1".into());

    let events_api: Api<events::Event> = Api::namespaced(client.clone(), ns);
    let mut scheduled = new_event("web.scheduled", regarding.clone(), "default-scheduler");
    scheduled.series = Some(EventSeries {
        count: 3,
        last_observed_time: MicroTime(now()),
    });
    events_api
        .create(&PostParams::default(), &scheduled)
        .await
        .unwrap();
    let core_api: Api<core::Event> = Api::namespaced(client, ns);
    core_api
        .create(
            &PostParams::default(),
            &core_event("web.pulled", regarding, "kubelet"),
        )
        .await
        .unwrap();

    let dir = std::env::temp_dir().join(format!(
        "devcluster-events-{}-{}",
        std::process::id(),
        now().as_nanosecond()
    ));
    let (config, cache) = (cluster.kubeconfig_path(), dir.join("cache"));

    // kubectl events lists core/v1 Events; `get events` resolves to core/v1 as well.
    let out = kubectl(config, &cache, &["events", "-n", ns]).await;
    for expected in [
        "Scheduled",
        "Successfully assigned",
        "Pulled",
        "Pod/web",
        "x3",
    ] {
        assert!(out.contains(expected), "kubectl events: {expected}\n{out}");
    }
    let out = kubectl(config, &cache, &["get", "events", "-n", ns]).await;
    for expected in ["web.scheduled", "Scheduled", "web.pulled", "Pulled"] {
        assert!(
            out.contains(expected),
            "kubectl get events: {expected}\n{out}"
        );
    }
    let out = kubectl(config, &cache, &["get", "events.events.k8s.io", "-n", ns]).await;
    for expected in ["web.scheduled", "web.pulled", "Successfully pulled image"] {
        assert!(
            out.contains(expected),
            "kubectl get events.events.k8s.io: {expected}\n{out}"
        );
    }
    let listed: Value = serde_json::from_str(
        &kubectl(
            config,
            &cache,
            &["get", "events.events.k8s.io", "-n", ns, "-o", "json"],
        )
        .await,
    )
    .unwrap();
    let notes: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["note"].as_str())
        .collect();
    assert_eq!(notes.len(), 2, "{listed}");

    // describe finds a pod's events with the core field selectors.
    let out = kubectl(config, &cache, &["describe", "pod", "web", "-n", ns]).await;
    let events = out.split("Events:").nth(1).unwrap_or_default();
    for expected in ["Scheduled", "Successfully assigned", "Pulled", "kubelet"] {
        assert!(events.contains(expected), "describe: {expected}\n{out}");
    }
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
