//! API conformance through kube-rs's own client over HTTP: the semantics operators rely on.

mod common;

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

use common::{cluster, eventually, install_widgets};

fn cm(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name,
                     "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
        "data": data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
    }))
    .unwrap()
}

fn widgets(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn widget(name: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn crud_on_builtins_sets_server_fields() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    let created = api
        .create(&PostParams::default(), &cm("a", &[], &[("k", "v")]))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert!(meta.generation.is_none(), "configmaps carry no generation");
    let rv1: u64 = meta.resource_version.as_ref().unwrap().parse().unwrap();

    let got = api.get("a").await.unwrap();
    assert_eq!(got.data.as_ref().unwrap()["k"], "v");
    assert!(
        got.metadata.managed_fields.is_some(),
        "managedFields recorded"
    );

    let mut changed = got.clone();
    changed.data = Some([("k".to_string(), "w".to_string())].into());
    let updated = api
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    let rv2: u64 = updated
        .metadata
        .resource_version
        .as_ref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1, "resourceVersion increases");

    let e = api_error(
        api.create(&PostParams::default(), &cm("a", &[], &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));

    api.delete("a", &DeleteParams::default()).await.unwrap();
    let e = api_error(api.get("a").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));
    assert_eq!(e.message, "configmaps \"a\" not found");
    c.shutdown().await;
}

#[tokio::test]
async fn stale_update_conflicts() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    let first = api
        .create(&PostParams::default(), &cm("x", &[], &[("a", "1")]))
        .await
        .unwrap();
    let mut second = first.clone();
    second.data = Some([("a".to_string(), "2".to_string())].into());
    api.replace("x", &PostParams::default(), &second)
        .await
        .unwrap();
    // `first` still carries the old resourceVersion.
    let mut stale = first.clone();
    stale.data = Some([("a".to_string(), "3".to_string())].into());
    let e = api_error(
        api.replace("x", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(e.message.contains("the object has been modified"));
    c.shutdown().await;
}

#[tokio::test]
async fn list_with_selectors_and_paging() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    for i in 0..7 {
        let tier = if i % 2 == 0 { "front" } else { "back" };
        api.create(
            &PostParams::default(),
            &cm(&format!("cm-{i}"), &[("tier", tier), ("app", "shop")], &[]),
        )
        .await
        .unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .collect()
    };
    let front = api
        .list(&ListParams::default().labels("tier=front"))
        .await
        .unwrap();
    assert_eq!(names(front), ["cm-0", "cm-2", "cm-4", "cm-6"]);
    let set = api
        .list(&ListParams::default().labels("tier in (back),app"))
        .await
        .unwrap();
    assert_eq!(set.items.len(), 3);
    let not = api
        .list(&ListParams::default().labels("tier!=front,!missing"))
        .await
        .unwrap();
    assert_eq!(not.items.len(), 3);
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=cm-3"))
        .await
        .unwrap();
    assert_eq!(names(by_name), ["cm-3"]);
    let e = api_error(
        api.list(&ListParams::default().fields("data.x=y"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);

    // Paging: a consistent snapshot even when objects change between pages.
    let page1 = api.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(page1.items.len(), 3);
    let token = page1.metadata.continue_.clone().expect("continue token");
    assert_eq!(page1.metadata.remaining_item_count, Some(4));
    api.create(&PostParams::default(), &cm("cm-zz", &[], &[]))
        .await
        .unwrap();
    let mut all = names(page1);
    let mut token = Some(token);
    while let Some(t) = token {
        let page = api
            .list(&ListParams::default().limit(3).continue_token(&t))
            .await
            .unwrap();
        token = page.metadata.continue_.clone().filter(|t| !t.is_empty());
        all.extend(names(page));
    }
    assert_eq!(
        all.len(),
        7,
        "the snapshot excludes the later create: {all:?}"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn watch_from_resource_version_sees_every_change_in_order() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    let list = api.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .unwrap()
        .boxed();
    let a = api
        .create(&PostParams::default(), &cm("w", &[], &[("n", "0")]))
        .await
        .unwrap();
    for i in 1..=5 {
        let p = json!({"data": {"n": i.to_string()}});
        api.patch("w", &PatchParams::default(), &Patch::Merge(&p))
            .await
            .unwrap();
    }
    api.delete("w", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    let mut last_rv = 0u64;
    while seen.len() < 7 {
        let ev = stream.try_next().await.unwrap().expect("stream open");
        let (kind, obj) = match ev {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        };
        let rv: u64 = obj.metadata.resource_version.unwrap().parse().unwrap();
        assert!(rv > last_rv, "events in resourceVersion order");
        last_rv = rv;
        let n = obj
            .data
            .and_then(|d| d.get("n").cloned())
            .unwrap_or_default();
        seen.push(format!("{kind}:{n}"));
    }
    assert_eq!(
        seen,
        [
            "ADDED:0",
            "MODIFIED:1",
            "MODIFIED:2",
            "MODIFIED:3",
            "MODIFIED:4",
            "MODIFIED:5",
            "DELETED:5"
        ]
    );
    assert!(a.metadata.uid.is_some());
    c.shutdown().await;
}

#[tokio::test]
async fn selector_watch_reports_objects_entering_and_leaving() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(
            &WatchParams::default().labels("tier=front").timeout(30),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &cm("s", &[("tier", "back")], &[]))
        .await
        .unwrap();
    let to = |tier: &str| json!({"metadata": {"labels": {"tier": tier}}});
    api.patch("s", &PatchParams::default(), &Patch::Merge(&to("front")))
        .await
        .unwrap();
    api.patch("s", &PatchParams::default(), &Patch::Merge(&to("back")))
        .await
        .unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(_) => kinds.push("ADDED"),
            WatchEvent::Modified(_) => kinds.push("MODIFIED"),
            WatchEvent::Deleted(_) => kinds.push("DELETED"),
            _ => {}
        }
    }
    assert_eq!(kinds, ["ADDED", "DELETED"]);
    c.shutdown().await;
}

#[tokio::test]
async fn compacted_watch_gets_410_and_watcher_recovers_by_relisting() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    api.create(&PostParams::default(), &cm("old", &[], &[]))
        .await
        .unwrap();
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    api.create(&PostParams::default(), &cm("newer", &[], &[]))
        .await
        .unwrap();
    c.compact();
    let mut stream = api
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }

    // kube-runtime's watcher, started from the compacted version via a reflector, relists.
    let (reader, writer) = kube::runtime::reflector::store::<ConfigMap>();
    let watcher = kube::runtime::watcher(api.clone(), Default::default());
    let handle = tokio::spawn(kube::runtime::reflector(writer, watcher).for_each(|_| async {}));
    eventually("reflector sees both objects", || {
        let reader = reader.clone();
        async move { reader.state().len() == 2 }
    })
    .await;
    c.compact();
    api.create(&PostParams::default(), &cm("after", &[], &[]))
        .await
        .unwrap();
    eventually("reflector converges after compaction", || {
        let reader = reader.clone();
        async move { reader.state().len() == 3 }
    })
    .await;
    handle.abort();
    c.shutdown().await;
}

#[tokio::test]
async fn generation_and_status_subresource_rules() {
    let c = cluster().await;
    let client = c.client();
    install_widgets(&client).await;
    let api = widgets(&client, "default");
    let w = api
        .create(
            &PostParams::default(),
            &widget("g", json!({"color": "red"})),
        )
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(1));
    assert_eq!(w.data["spec"]["replicas"], 1, "schema default applied");

    let label = json!({"metadata": {"labels": {"x": "y"}}});
    let w = api
        .patch("g", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(1), "metadata-only: no bump");

    let spec = json!({"spec": {"color": "blue"}});
    let w = api
        .patch("g", &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(2), "spec change bumps");

    // The main endpoint ignores status; /status ignores everything else.
    let status_via_main = json!({"status": {"phase": "Ready"}});
    let w = api
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(&status_via_main),
        )
        .await
        .unwrap();
    assert!(w.data.get("status").is_none());
    let both = json!({"spec": {"color": "green"}, "status": {"phase": "Ready"}});
    let w = api
        .patch_status("g", &PatchParams::default(), &Patch::Merge(&both))
        .await
        .unwrap();
    assert_eq!(w.data["status"]["phase"], "Ready");
    assert_eq!(w.data["spec"]["color"], "blue", "/status ignores spec");
    assert_eq!(w.metadata.generation, Some(2), "status writes do not bump");

    // Deletion with a finalizer: deletionTimestamp set once, generation bumped once.
    let fin = json!({"metadata": {"finalizers": ["example.com/hold"]}});
    api.patch("g", &PatchParams::default(), &Patch::Merge(&fin))
        .await
        .unwrap();
    api.delete("g", &DeleteParams::default()).await.unwrap();
    let w = api.get("g").await.unwrap();
    assert!(w.metadata.deletion_timestamp.is_some());
    assert_eq!(w.metadata.generation, Some(3));
    api.delete("g", &DeleteParams::default()).await.unwrap();
    assert_eq!(api.get("g").await.unwrap().metadata.generation, Some(3));
    c.shutdown().await;
}

#[tokio::test]
async fn finalizers_block_deletion_until_removed() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    let mut obj = cm("held", &[], &[]);
    obj.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &obj).await.unwrap();
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .unwrap()
        .boxed();
    let resp = api.delete("held", &DeleteParams::default()).await.unwrap();
    assert!(resp.is_left(), "still there: the object is returned");
    assert!(
        api.get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );

    let add = json!({"metadata": {"finalizers": ["example.com/hold", "example.com/other"]}});
    let e = api_error(
        api.patch("held", &PatchParams::default(), &Patch::Merge(&add))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422, "no new finalizers during deletion");

    let clear = json!({"metadata": {"finalizers": null}});
    api.patch("held", &PatchParams::default(), &Patch::Merge(&clear))
        .await
        .unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Modified(_) => kinds.push("MODIFIED"),
            WatchEvent::Deleted(_) => kinds.push("DELETED"),
            _ => {}
        }
    }
    assert_eq!(kinds, ["MODIFIED", "DELETED"]);
    assert_eq!(api_error(api.get("held").await.unwrap_err()).code, 404);
    c.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_ownership_conflicts_and_removal() {
    let c = cluster().await;
    let api: Api<Deployment> = Api::default_namespaced(c.client());
    let deploy = |replicas: i32, with_env: bool| {
        let mut container = json!({"name": "app", "image": "nginx:1"});
        if with_env {
            container["env"] = json!([{"name": "A", "value": "1"}]);
        }
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"team": "a"}},
            "spec": {"replicas": replicas,
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [container]}}}
        })
    };
    let alice = PatchParams::apply("alice");
    let created = api
        .patch("web", &alice, &Patch::Apply(deploy(2, true)))
        .await
        .unwrap();
    let mf = created.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0].manager.as_deref(), Some("alice"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));

    // Same config again: a no-op, the resourceVersion does not move.
    let again = api
        .patch("web", &alice, &Patch::Apply(deploy(2, true)))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        created.metadata.resource_version
    );

    // Bob applies a different replicas value: conflict naming the field and the owner.
    let bob_cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                         "metadata": {"name": "web"}, "spec": {"replicas": 5}});
    let e = api_error(
        api.patch(
            "web",
            &PatchParams::apply("bob"),
            &Patch::Apply(bob_cfg.clone()),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(
        e.message.contains("alice") && e.message.contains(".spec.replicas"),
        "{}",
        e.message
    );

    // Forced: bob owns replicas now.
    let forced = api
        .patch(
            "web",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(bob_cfg),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.as_ref().unwrap().replicas, Some(5));

    // Alice stops applying env and replicas: env goes (only she owned it), replicas stays (bob's).
    let mut cfg = deploy(2, false);
    cfg["spec"].as_object_mut().unwrap().remove("replicas");
    let after = api.patch("web", &alice, &Patch::Apply(cfg)).await.unwrap();
    let spec = after.spec.unwrap();
    assert_eq!(spec.replicas, Some(5));
    let container = &spec.template.spec.unwrap().containers[0];
    assert!(container.env.is_none(), "env removed with its last owner");
    assert_eq!(container.image.as_deref(), Some("nginx:1"));
    c.shutdown().await;
}

#[tokio::test]
async fn json_patch_test_failure_is_rejected() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(c.client());
    let mut obj = cm("jp", &[], &[]);
    obj.metadata.finalizers = Some(vec!["a.example.com/f".into()]);
    api.create(&PostParams::default(), &obj).await.unwrap();
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers/0", "value": "other.example.com/f"},
        {"op": "remove", "path": "/metadata/finalizers/0"}
    ]))
    .unwrap();
    let e = api_error(
        api.patch("jp", &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    let ok: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers/0", "value": "a.example.com/f"},
        {"op": "remove", "path": "/metadata/finalizers/0"}
    ]))
    .unwrap();
    let after = api
        .patch("jp", &PatchParams::default(), &Patch::<()>::Json(ok))
        .await
        .unwrap();
    assert_eq!(after.metadata.finalizers, Some(vec![]));
    c.shutdown().await;
}

#[tokio::test]
async fn custom_resources_crud_scale_and_discovery() {
    let c = cluster().await;
    let client = c.client();
    install_widgets(&client).await;
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
        .expect("Widget discovered");
    assert_eq!(ar.plural, "widgets");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);

    let api = widgets(&client, "default");
    api.create(
        &PostParams::default(),
        &widget("w1", json!({"color": "green", "replicas": 2})),
    )
    .await
    .unwrap();
    let scale = api.get_scale("w1").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    let p = json!({"spec": {"replicas": 4}});
    api.patch_scale("w1", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(api.get("w1").await.unwrap().data["spec"]["replicas"], 4);

    let green = api
        .list(&ListParams::default().fields("spec.color=green"))
        .await
        .unwrap();
    assert_eq!(green.items.len(), 1, "CRD selectableFields");

    // A CR in a namespace that does not exist.
    let e = api_error(
        widgets(&client, "nowhere")
            .create(
                &PostParams::default(),
                &widget("w2", json!({"color": "red"})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 404);

    // Namespaces: create, then delete removes what is inside.
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap(),
    )
    .await
    .unwrap();
    widgets(&client, "team")
        .create(
            &PostParams::default(),
            &widget("w3", json!({"color": "red"})),
        )
        .await
        .unwrap();
    nss.delete("team", &DeleteParams::default()).await.unwrap();
    eventually("namespace and its contents are gone", || {
        let nss = nss.clone();
        async move { nss.get_opt("team").await.unwrap().is_none() }
    })
    .await;
    c.shutdown().await;
}
