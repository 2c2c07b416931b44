//! The metadata rules every write follows, as pure functions: what the server sets on create,
//! what an update may and may not change, when `generation` moves, how the status subresource
//! splits an object, and what finalizers allow.

use serde_json::{Map, Value, json};

use crate::resources::ResourceInfo;
use crate::validation::FieldError;

/// Which endpoint a write came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The object itself.
    Main,
    /// The `/status` subresource.
    Status,
}

/// The current time as a metav1.Time string (second precision, UTC).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// `metadata` of an object as a mutable map, created if missing or not an object.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let map = obj.as_object_mut().expect("made an object above");
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut().expect("made an object above")
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
}

/// The finalizers of an object.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether deletion of the object has started.
pub fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

/// Characters `generateName` suffixes are drawn from (no vowels, no confusable digits).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The server-set metadata of a new object: name from generateName, uid, creationTimestamp,
/// generation; fields clients may not set are cleared. `status` is dropped when the kind has a
/// status subresource (create never sets status there, as upstream strategies do).
pub fn prepare_create(info: &ResourceInfo, obj: &mut Value, namespace: Option<&str>) {
    if info.status_subresource
        && let Some(map) = obj.as_object_mut()
    {
        map.remove("status");
    }
    let meta = meta_mut(obj);
    if meta
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
        && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
        && !prefix.is_empty()
    {
        let suffix: String = (0..5)
            .map(|_| NAME_ALPHABET[rand_index(NAME_ALPHABET.len())] as char)
            .collect();
        // Upstream truncates the prefix so the result fits 63 characters.
        let prefix: String = prefix.chars().take(58).collect();
        meta.insert("name".into(), json!(format!("{prefix}{suffix}")));
    }
    match namespace {
        Some(ns) => {
            meta.insert("namespace".into(), json!(ns));
        }
        None => {
            meta.remove("namespace");
        }
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    for cleared in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "resourceVersion",
    ] {
        meta.remove(cleared);
    }
    if info.has_generation || info.is_custom() {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
}

fn rand_index(n: usize) -> usize {
    (uuid::Uuid::new_v4().as_u128() % n as u128) as usize
}

/// Errors for an update that tries to change what cannot change.
pub fn check_immutable_meta(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for field in ["name", "namespace"] {
        let (o, n) = (meta_str(old, field), meta_str(new, field));
        if n.is_some() && n != o {
            errors.push(FieldError::invalid(
                &format!("metadata.{field}"),
                &json!(n),
                "field is immutable",
            ));
        }
    }
    errors
}

/// Builds the object to store for an update: keeps the server-owned metadata of `old`, splits
/// spec and status between endpoints, bumps generation when the spec changed, and enforces the
/// finalizer rule during deletion. `new` is what the client sent (or the patch result).
pub fn prepare_update(
    info: &ResourceInfo,
    old: &Value,
    mut new: Value,
    endpoint: Endpoint,
) -> Result<Value, Vec<FieldError>> {
    let errors = check_immutable_meta(old, &new);
    if !errors.is_empty() {
        return Err(errors);
    }
    if endpoint == Endpoint::Status {
        // The status endpoint changes status only (and managedFields, which tracks it).
        let mut result = old.clone();
        let managed = new.pointer("/metadata/managedFields").cloned();
        if let Some(map) = result.as_object_mut() {
            match new.as_object_mut().and_then(|m| m.remove("status")) {
                Some(status) => map.insert("status".into(), status),
                None => map.remove("status"),
            };
        }
        if let Some(managed) = managed {
            meta_mut(&mut result).insert("managedFields".into(), managed);
        }
        return Ok(result);
    }
    if info.status_subresource
        && let Some(map) = new.as_object_mut()
    {
        match old.get("status") {
            Some(status) => map.insert("status".into(), status.clone()),
            None => map.remove("status"),
        };
    }
    {
        let old_meta = old.get("metadata").and_then(Value::as_object);
        let meta = meta_mut(&mut new);
        for kept in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "name",
            "namespace",
        ] {
            match old_meta.and_then(|m| m.get(kept)) {
                Some(v) => meta.insert(kept.into(), v.clone()),
                None => meta.remove(kept),
            };
        }
        meta.remove("selfLink");
    }
    if is_deleting(old) {
        let before = finalizers(old);
        let added: Vec<_> = finalizers(&new)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            return Err(vec![FieldError::forbidden(
                "metadata.finalizers",
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                ),
            )]);
        }
    }
    if (info.has_generation || info.is_custom()) && spec_changed(info, old, &new) {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(&mut new).insert("generation".into(), json!(generation + 1));
    }
    Ok(new)
}

/// Whether anything but metadata (and status, where status is a subresource) changed: the
/// condition for a generation bump.
pub fn spec_changed(info: &ResourceInfo, old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if info.status_subresource {
            m.remove("status");
        }
        m
    };
    strip(old) != strip(new)
}

/// Marks an object as being deleted: deletionTimestamp, grace period 0, generation + 1.
pub fn mark_deleting(obj: &mut Value, info: &ResourceInfo) {
    let has_generation = info.has_generation || info.is_custom();
    let meta = meta_mut(obj);
    meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
    meta.insert("deletionGracePeriodSeconds".into(), json!(0));
    if has_generation {
        let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
        meta.insert("generation".into(), json!(generation + 1));
    }
}

/// Adds a finalizer if absent.
pub fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let meta = meta_mut(obj);
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(list) = list.as_array_mut()
        && !list.iter().any(|f| f == finalizer)
    {
        list.push(json!(finalizer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::builtin_resources;

    fn info(kind: &str) -> ResourceInfo {
        builtin_resources()
            .into_iter()
            .find(|r| r.kind == kind)
            .unwrap()
    }

    #[test]
    fn create_sets_server_fields() {
        let deploy = info("Deployment");
        let mut obj = json!({"metadata": {"generateName": "web-", "resourceVersion": "9"},
                             "spec": {}, "status": {"replicas": 3}});
        prepare_create(&deploy, &mut obj, Some("default"));
        let name = meta_str(&obj, "name").unwrap();
        assert!(name.starts_with("web-") && name.len() == 9);
        assert_eq!(obj["metadata"]["generation"], 1);
        assert_eq!(obj["metadata"]["namespace"], "default");
        assert!(obj.get("status").is_none());
        assert!(obj["metadata"].get("resourceVersion").is_none());
        let cm = info("ConfigMap");
        let mut obj = json!({"metadata": {"name": "c"}});
        prepare_create(&cm, &mut obj, Some("default"));
        assert!(obj["metadata"].get("generation").is_none());
    }

    #[test]
    fn generation_rules() {
        let deploy = info("Deployment");
        let old = json!({"metadata": {"name": "a", "namespace": "n", "generation": 1, "uid": "u"},
                         "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let labels_only = json!({"metadata": {"name": "a", "labels": {"x": "y"}},
                                 "spec": {"replicas": 1}});
        let r = prepare_update(&deploy, &old, labels_only, Endpoint::Main).unwrap();
        assert_eq!(r["metadata"]["generation"], 1);
        assert_eq!(r["status"]["replicas"], 1, "main endpoint keeps status");
        assert_eq!(r["metadata"]["uid"], "u");
        let spec = json!({"metadata": {"name": "a"}, "spec": {"replicas": 2}});
        let r = prepare_update(&deploy, &old, spec, Endpoint::Main).unwrap();
        assert_eq!(r["metadata"]["generation"], 2);
        let status = json!({"metadata": {"name": "a", "labels": {"x": "y"}},
                            "spec": {"replicas": 9}, "status": {"replicas": 5}});
        let r = prepare_update(&deploy, &old, status, Endpoint::Status).unwrap();
        assert_eq!(r["metadata"]["generation"], 1);
        assert_eq!(r["spec"]["replicas"], 1, "status endpoint ignores spec");
        assert_eq!(r["status"]["replicas"], 5);
        assert!(r["metadata"].get("labels").is_none());
    }

    #[test]
    fn no_new_finalizers_while_deleting() {
        let cm = info("ConfigMap");
        let mut old = json!({"metadata": {"name": "a", "finalizers": ["x/a"]}});
        mark_deleting(&mut old, &cm);
        let new = json!({"metadata": {"name": "a", "finalizers": ["x/a", "x/b"]}});
        assert!(prepare_update(&cm, &old, new, Endpoint::Main).is_err());
        let new = json!({"metadata": {"name": "a", "finalizers": []}});
        let r = prepare_update(&cm, &old, new, Endpoint::Main).unwrap();
        assert!(is_deleting(&r));
        let renamed = json!({"metadata": {"name": "b"}});
        assert!(prepare_update(&cm, &old, renamed, Endpoint::Main).is_err());
    }
}
