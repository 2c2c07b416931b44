//! Kind-specific rules the real server applies around writes: namespaces (phase, the
//! `kubernetes` finalizer and content cleanup), CRDs (validation, serving, status, instance
//! cleanup), services (cluster IP allocation), pods (initial phase).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::ApiServer;
use super::delete::DeleteOptions;
use crate::crd;
use crate::objects;
use crate::resources::{ResourceInfo, StorageKey};
use crate::store::{StoreError, resource_version};
use crate::validation::FieldError;

const NAMESPACE_FINALIZER: &str = "kubernetes";

fn is(info: &ResourceInfo, group: &str, kind: &str) -> bool {
    info.origin == crate::resources::Origin::Builtin && info.group == group && info.kind == kind
}

/// The propagation policy when the client names none (Background for every kind served here).
pub(super) fn default_propagation(_info: &ResourceInfo) -> Option<&'static str> {
    None
}

/// Whether nothing holds the object any more once deletion has started.
pub(super) fn can_remove(info: &ResourceInfo, obj: &Value) -> bool {
    if !objects::finalizers(obj).is_empty() {
        return false;
    }
    if is(info, "", "Namespace") {
        return obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
    }
    true
}

/// Whether deletion must wait for someone to confirm it even without finalizers (a kubelet
/// for scheduled pods). Without a node agent, nothing waits.
pub(super) fn graceful(_info: &ResourceInfo, _obj: &Value) -> bool {
    false
}

/// Server-set fields of a new object of a particular kind.
pub(super) fn on_create(server: &ApiServer, info: &ResourceInfo, obj: &mut Value) {
    if is(info, "", "Namespace") {
        obj["spec"] = json!({"finalizers": [NAMESPACE_FINALIZER]});
        obj["status"] = json!({"phase": "Active"});
    } else if is(info, "apiextensions.k8s.io", "CustomResourceDefinition") {
        objects::add_finalizer(obj, crd::CLEANUP_FINALIZER);
    } else if is(info, "", "Service") {
        let spec = &mut obj["spec"];
        if !spec.is_object() {
            *spec = json!({});
        }
        if spec.get("type").is_none() {
            spec["type"] = json!("ClusterIP");
        }
        let wants_ip = spec.get("type").and_then(Value::as_str) != Some("ExternalName")
            && spec.get("clusterIP").and_then(Value::as_str) != Some("None");
        if wants_ip && spec.get("clusterIP").is_none_or(Value::is_null) {
            let ip = server.allocate_cluster_ip();
            spec["clusterIP"] = json!(ip);
            spec["clusterIPs"] = json!([ip]);
        }
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports {
                if p.get("protocol").is_none() {
                    p["protocol"] = json!("TCP");
                }
                if p.get("targetPort").is_none()
                    && let Some(port) = p.get("port").cloned()
                {
                    p["targetPort"] = port;
                }
            }
        }
        if spec.get("sessionAffinity").is_none() {
            spec["sessionAffinity"] = json!("None");
        }
    } else if is(info, "", "Pod") {
        obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
    }
}

/// Fields of a kind an ordinary update keeps from the stored object.
pub(super) fn on_update(info: &ResourceInfo, old: &Value, new: &mut Value) {
    if is(info, "", "Namespace") {
        // spec.finalizers changes only through /finalize (the namespace controller).
        if let Some(f) = old.pointer("/spec/finalizers") {
            new["spec"]["finalizers"] = f.clone();
        }
    } else if is(info, "", "Service") {
        for field in ["clusterIP", "clusterIPs"] {
            if new.pointer(&format!("/spec/{field}")).is_none()
                && let Some(v) = old.pointer(&format!("/spec/{field}"))
                && new.get("spec").is_some_and(Value::is_object)
            {
                new["spec"][field] = v.clone();
            }
        }
    }
}

/// Kind-specific validation.
pub(super) fn validate(info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    if is(info, "apiextensions.k8s.io", "CustomResourceDefinition") {
        return crd::validate(obj);
    }
    Vec::new()
}

/// Kind-specific changes when deletion starts.
pub(super) fn on_delete_start(info: &ResourceInfo, obj: &mut Value) {
    if is(info, "", "Namespace") {
        obj["status"] = json!({"phase": "Terminating"});
    }
}

/// Reactions to a stored write: serving CRDs, and the cleanup controllers of namespaces and
/// CRDs once their deletion starts.
pub(super) fn after_write(server: &ApiServer, info: &ResourceInfo, stored: &Value, removed: bool) {
    if is(info, "apiextensions.k8s.io", "CustomResourceDefinition") {
        crd_written(server, stored, removed);
    } else if is(info, "", "Namespace") && objects::is_deleting(stored) && !removed {
        let name = objects::meta_str(stored, "name")
            .unwrap_or_default()
            .to_owned();
        server.spawn_cleanup(format!("namespace/{name}"), move |server| {
            finalize_namespace(server, name)
        });
    }
}

fn crd_written(server: &ApiServer, stored: &Value, removed: bool) {
    let name = objects::meta_str(stored, "name")
        .unwrap_or_default()
        .to_owned();
    let key = StorageKey {
        group: stored
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        resource: stored
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    };
    if removed {
        server.registry.set_crd(&name, Vec::new());
        server.store.drop_collection(&key);
        return;
    }
    let status = crd::status(stored, &server.registry, &objects::now_rfc3339());
    if crd::accepted(&status) {
        server.registry.set_crd(&name, crd::resources(stored));
    }
    if stored.get("status") != Some(&status)
        && let Some(crd_info) =
            server
                .registry
                .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    {
        let mut next = stored.clone();
        next["status"] = status;
        // The apiextensions controllers write status separately; a lost race is redone by
        // the write that won it.
        let _ = server.store.collection(&crd_info.storage_key()).replace(
            &(String::new(), name.clone()),
            resource_version(stored),
            next,
        );
    }
    if objects::is_deleting(stored) {
        server.spawn_cleanup(format!("crd/{name}"), move |server| {
            finalize_crd(server, name, key)
        });
    }
}

/// Deletes everything in a namespace, waits until it is gone, then releases the namespace.
async fn finalize_namespace(server: Arc<ApiServer>, ns: String) {
    loop {
        let mut remaining = 0usize;
        let mut seen = std::collections::HashSet::new();
        for info in server.registry.all() {
            if !info.namespaced || !seen.insert(info.storage_key()) {
                continue;
            }
            let snapshot = server.store.collection(&info.storage_key()).snapshot();
            let start = (ns.clone(), String::new());
            for (key, obj) in snapshot.objects.range(start..) {
                if key.0 != ns {
                    break;
                }
                remaining += 1;
                if !objects::is_deleting(obj) {
                    let _ = server
                        .delete_object(&info, Some(&ns), &key.1, &DeleteOptions::default())
                        .await;
                }
            }
        }
        if remaining == 0 {
            break;
        }
        server.store.changed(Duration::from_millis(500)).await;
    }
    release(&server, "", "namespaces", &ns, |obj| {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("finalizers".into(), json!([]));
        }
    });
}

/// Deletes every instance of a CRD, waits until they are gone, then releases the CRD.
async fn finalize_crd(server: Arc<ApiServer>, name: String, key: StorageKey) {
    loop {
        let Some(info) = server
            .registry
            .all()
            .into_iter()
            .find(|r| r.storage_key() == key)
        else {
            break;
        };
        let snapshot = server.store.collection(&key).snapshot();
        if snapshot.objects.is_empty() {
            break;
        }
        for ((ns, obj_name), obj) in snapshot.objects.iter() {
            if !objects::is_deleting(obj) {
                let ns = (!ns.is_empty()).then_some(ns.as_str());
                let _ = server
                    .delete_object(&info, ns, obj_name, &DeleteOptions::default())
                    .await;
            }
        }
        server.store.changed(Duration::from_millis(500)).await;
    }
    release(
        &server,
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        &name,
        |obj| {
            if let Some(list) = obj
                .pointer_mut("/metadata/finalizers")
                .and_then(Value::as_array_mut)
            {
                list.retain(|f| f != crd::CLEANUP_FINALIZER);
            }
        },
    );
}

/// Removes a server-owned finalizer with a compare-and-swap loop, deleting the object when
/// nothing holds it any more.
fn release(server: &ApiServer, group: &str, plural: &str, name: &str, edit: impl Fn(&mut Value)) {
    let Some(info) = server.registry.get(group, "v1", plural) else {
        return;
    };
    let collection = server.store.collection(&info.storage_key());
    let key = (String::new(), name.to_owned());
    loop {
        let Some(current) = collection.get(&key) else {
            return;
        };
        let mut next = (*current).clone();
        edit(&mut next);
        let result = if can_remove(&info, &next) {
            collection
                .remove(&key, Some(resource_version(&current)), Some(next))
                .map(|last| after_write(server, &info, &last, true))
        } else {
            collection
                .replace(&key, resource_version(&current), next)
                .map(|stored| after_write(server, &info, &stored, false))
        };
        match result {
            Err(StoreError::Conflict) => continue,
            _ => return,
        }
    }
}
