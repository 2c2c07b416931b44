//! Kind-specific rules the real server applies around writes: built-in defaults and the
//! ConfigMap/Secret rules (see [`prepare`]), namespaces (phase, the `kubernetes` finalizer and
//! content cleanup), CRDs (validation, serving, status, instance cleanup), services (cluster IP
//! and IP family allocation), pods (initial phase).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::ApiServer;
use super::delete::DeleteOptions;
use crate::configdata;
use crate::crd;
use crate::defaults;
use crate::error::ApiError;
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

/// What the server's decoding does to a built-in object on every create and update (POST,
/// PUT, every PATCH type, server-side apply), before validation: refuses byte fields that are
/// not base64 (400, as a failed decode), merges a Secret's `stringData` into `data`, and applies
/// the kind's defaults ([`defaults::apply`]). Idempotent, so the pipeline runs it again after
/// mutating admission.
pub(crate) fn prepare(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    if info.origin != crate::resources::Origin::Builtin {
        return Ok(());
    }
    if info.group.is_empty() {
        configdata::check_base64(&info.kind, obj).map_err(|e| {
            ApiError::bad_request(format!(
                "{kind} in version {version:?} cannot be handled as a {kind}: {e}",
                kind = info.kind,
                version = info.version,
            ))
        })?;
        if info.kind == "Secret" {
            configdata::merge_string_data(obj);
        }
    }
    defaults::apply(&info.group, &info.kind, obj);
    Ok(())
}

/// A Service's IP families, as upstream's allocator sets them (`initIPFamilyFields`) on a
/// single-stack IPv4 cluster: `SingleStack` and the family of its cluster IP (IPv4 until one
/// is allocated), except a headless Service without a selector, which requires dual stack.
/// ExternalName Services have none. Fields the client set are kept.
fn service_ip_families(spec: &mut Value) {
    let Some(spec) = spec.as_object_mut() else {
        return;
    };
    if spec.get("type").and_then(Value::as_str) == Some("ExternalName") {
        return;
    }
    let headless_selectorless = spec.get("clusterIP").and_then(Value::as_str) == Some("None")
        && spec
            .get("selector")
            .and_then(Value::as_object)
            .is_none_or(serde_json::Map::is_empty);
    if spec.get("ipFamilyPolicy").is_none_or(Value::is_null) {
        let policy = if headless_selectorless {
            "RequireDualStack"
        } else {
            "SingleStack"
        };
        spec.insert("ipFamilyPolicy".into(), json!(policy));
    }
    let unset = spec
        .get("ipFamilies")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if !unset {
        return;
    }
    let mut families: Vec<Value> = spec
        .get("clusterIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .take_while(|ip| *ip != "None")
        .map(|ip| json!(if ip.contains(':') { "IPv6" } else { "IPv4" }))
        .collect();
    if families.is_empty() {
        families.push(json!("IPv4"));
    }
    if headless_selectorless
        && families.len() < 2
        && spec.get("ipFamilyPolicy").and_then(Value::as_str) != Some("SingleStack")
    {
        let other = if families[0] == "IPv4" {
            "IPv6"
        } else {
            "IPv4"
        };
        families.push(json!(other));
    }
    spec.insert("ipFamilies".into(), Value::Array(families));
}

/// Server-set fields of a new object of a particular kind.
pub(super) fn on_create(server: &ApiServer, info: &ResourceInfo, obj: &mut Value) {
    if is(info, "", "Namespace") {
        // The `kubernetes` finalizer is required; others the client gave are kept.
        let mut finalizers: Vec<Value> = obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !finalizers.iter().any(|f| f == NAMESPACE_FINALIZER) {
            finalizers.push(json!(NAMESPACE_FINALIZER));
        }
        obj["spec"] = json!({"finalizers": finalizers});
        obj["status"] = json!({"phase": "Active"});
    } else if is(info, "apiextensions.k8s.io", "CustomResourceDefinition") {
        objects::add_finalizer(obj, crd::CLEANUP_FINALIZER);
    } else if is(info, "", "Service") {
        // The type, ports and session affinity are defaulted already (`prepare`).
        let spec = &mut obj["spec"];
        if !spec.is_object() {
            *spec = json!({});
        }
        let wants_ip = spec.get("type").and_then(Value::as_str) != Some("ExternalName")
            && spec.get("clusterIP").and_then(Value::as_str) != Some("None");
        if wants_ip && spec.get("clusterIP").is_none_or(Value::is_null) {
            let ip = server.allocate_cluster_ip();
            spec["clusterIP"] = json!(ip);
            spec["clusterIPs"] = json!([ip]);
        }
        if spec.get("clusterIP").and_then(Value::as_str) == Some("None")
            && spec.get("clusterIPs").is_none_or(Value::is_null)
        {
            spec["clusterIPs"] = json!(["None"]);
        }
        service_ip_families(spec);
    } else if is(info, "", "Pod") {
        let qos = defaults::pod_qos_class(obj.get("spec").unwrap_or(&Value::Null));
        obj["status"] = json!({"phase": "Pending", "qosClass": qos});
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
        for field in ["clusterIP", "clusterIPs", "ipFamilyPolicy", "ipFamilies"] {
            if new.pointer(&format!("/spec/{field}")).is_none()
                && let Some(v) = old.pointer(&format!("/spec/{field}"))
                && new.get("spec").is_some_and(Value::is_object)
            {
                new["spec"][field] = v.clone();
            }
        }
        if let Some(spec) = new.get_mut("spec") {
            service_ip_families(spec);
        }
    }
}

/// Kind-specific validation.
pub(super) fn validate(info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    if is(info, "apiextensions.k8s.io", "CustomResourceDefinition") {
        return crd::validate(obj);
    }
    if is(info, "", "ConfigMap") || is(info, "", "Secret") {
        return configdata::validate(&info.kind, obj);
    }
    Vec::new()
}

/// Kind-specific validation of an update against the stored object (immutable ConfigMaps
/// and Secrets, a Secret's type).
pub(super) fn validate_update(info: &ResourceInfo, old: &Value, new: &Value) -> Vec<FieldError> {
    if is(info, "", "ConfigMap") || is(info, "", "Secret") {
        return configdata::validate_update(&info.kind, old, new);
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
