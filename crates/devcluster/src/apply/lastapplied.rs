//! Interplay with kubectl's client-side apply, which records its configuration in the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation. When the field manager
//! `kubectl` switches an object to server-side apply, the API server lets it take the fields the
//! annotation shows it applied before, and keeps the annotation in step.

use serde_json::Value;

use super::fieldset::FieldSet;
use super::typed::{compare, to_field_set, validate};
use crate::schema::Node;

/// The annotation kubectl's client-side apply writes.
pub(super) const ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The field manager name that `kubectl apply --server-side` uses by default, the only one the
/// API server migrates.
pub(super) const KUBECTL_MANAGER: &str = "kubectl";

/// Limit on the total size of an object's annotations (keys plus values).
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

fn last_applied(object: &Value) -> Option<&str> {
    object
        .get("metadata")?
        .get("annotations")?
        .get(ANNOTATION)?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// The fields the live object's last-applied annotation claims and that still hold the
/// annotated values; conflicts on these do not stop `kubectl` (`lastAppliedManager`).
/// `None` when there is no usable annotation.
pub(super) fn allowed_conflicts(live: &Value, api_version: &str, schema: Node) -> Option<FieldSet> {
    let annotated: Value = serde_json::from_str(last_applied(live)?).ok()?;
    if annotated.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        return None;
    }
    validate(live, schema, false).ok()?;
    validate(&annotated, schema, false).ok()?;
    let claimed = to_field_set(&annotated, schema);
    let differences = compare(&annotated, live, schema);
    Some(
        claimed
            .difference(&differences.modified)
            .difference(&differences.added)
            .difference(&differences.removed),
    )
}

/// Rewrites the annotation on `object` to the configuration just applied, if the object carries
/// one (`lastAppliedUpdater`). The annotation is dropped if it would overflow the size limit.
pub(super) fn sync_annotation(object: &mut Value, config: &Value) {
    if last_applied(object).is_none() {
        return;
    }
    let text = annotation_text(config);
    let Some(annotations) = object
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    annotations.insert(ANNOTATION.to_owned(), Value::String(text));
    let size: usize = annotations
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if size > TOTAL_ANNOTATION_SIZE_LIMIT {
        annotations.remove(ANNOTATION);
    }
}

/// The configuration without its own copy of the annotation, as Go's JSON encoder writes it
/// (sorted keys, trailing newline), which is also what kubectl writes.
fn annotation_text(config: &Value) -> String {
    let mut config = config.clone();
    if let Some(annotations) = config
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        annotations.remove(ANNOTATION);
    }
    crate::gofmt::json(&config) + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_annotation(annotated: &Value, rest: Value) -> Value {
        let mut obj = rest;
        obj["metadata"]["annotations"] = json!({ANNOTATION: annotated.to_string()});
        obj
    }

    #[test]
    fn allows_fields_that_still_hold_the_annotated_value() {
        let annotated = json!({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": "c"}, "data": {"a": "1", "b": "2", "c": "3"}});
        let live = with_annotation(
            &annotated,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                   "data": {"a": "1", "b": "changed"}}),
        );
        let allowed = allowed_conflicts(&live, "v1", Node::unknown()).unwrap();
        let f = |n: &str| super::super::fieldset::PathElement::Field(n.into());
        assert!(allowed.has(&[f("data"), f("a")]));
        assert!(!allowed.has(&[f("data"), f("b")]));
        assert!(!allowed.has(&[f("data"), f("c")]));
        assert_eq!(allowed_conflicts(&live, "v2", Node::unknown()), None);
        assert_eq!(allowed_conflicts(&json!({}), "v1", Node::unknown()), None);
    }

    #[test]
    fn syncs_the_annotation_only_when_present() {
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "c", "annotations": {ANNOTATION: "old", "x": "<y>"}},
                            "data": {"a": "1"}});
        let mut object = json!({"metadata": {"annotations": {ANNOTATION: "old"}}});
        sync_annotation(&mut object, &config);
        assert_eq!(
            object["metadata"]["annotations"][ANNOTATION],
            json!(
                "{\"apiVersion\":\"v1\",\"data\":{\"a\":\"1\"},\"kind\":\"ConfigMap\",\"metadata\":\
                   {\"annotations\":{\"x\":\"\\u003cy\\u003e\"},\"name\":\"c\"}}\n"
            )
        );
        let mut untouched = json!({"metadata": {"annotations": {"x": "1"}}});
        sync_annotation(&mut untouched, &config);
        assert_eq!(untouched, json!({"metadata": {"annotations": {"x": "1"}}}));
    }

    #[test]
    fn drops_an_annotation_that_would_overflow() {
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let config = json!({"data": {"big": big}});
        let mut object = json!({"metadata": {"annotations": {ANNOTATION: "old", "keep": "1"}}});
        sync_annotation(&mut object, &config);
        assert_eq!(object, json!({"metadata": {"annotations": {"keep": "1"}}}));
    }
}
