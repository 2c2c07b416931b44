//! CustomResourceDefinitions: validation of the definition, the resources it serves, and the
//! status the apiextensions controllers write (accepted names, Established, NamesAccepted).

pub mod structural;

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::builtin::schema_of;
use crate::resources::{Origin, PrinterColumn, Registry, ResourceInfo, ScaleSpec, SchemaInfo};
use crate::validation::{FieldError, NameRule, is_dns1123_label, is_dns1123_subdomain};

/// The finalizer the server puts on every CRD so its instances are deleted before it goes.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Validates a CRD as the apiextensions API does on create and update.
pub fn validate(crd: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let group = s(crd, "/spec/group");
    let plural = s(crd, "/spec/names/plural");
    let kind = s(crd, "/spec/names/kind");
    let name = s(crd, "/metadata/name");
    if group.is_empty() {
        errors.push(FieldError::required("spec.group", ""));
    } else if !is_dns1123_subdomain(group) || !group.contains('.') {
        errors.push(FieldError::invalid(
            "spec.group",
            &json!(group),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        errors.push(FieldError::required("spec.names.plural", ""));
    } else if !is_dns1123_label(plural) {
        errors.push(FieldError::invalid(
            "spec.names.plural",
            &json!(plural),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
        ));
    }
    if kind.is_empty() {
        errors.push(FieldError::required("spec.names.kind", ""));
    }
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        errors.push(FieldError::invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match s(crd, "/spec/scope") {
        "Namespaced" | "Cluster" => {}
        other => errors.push(FieldError {
            reason: "FieldValueNotSupported",
            field: "spec.scope".into(),
            message: format!(
                "spec.scope: Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""
            ),
        }),
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        errors.push(FieldError::invalid(
            "spec.versions",
            &json!(null),
            "must have exactly one version marked as storage version",
        ));
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        errors.push(FieldError::invalid(
            "spec.versions",
            &Value::Array(versions.clone()),
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        let vname = v.get("name").and_then(Value::as_str).unwrap_or("");
        if !is_dns1123_label(vname) {
            errors.push(FieldError::invalid(
                &format!("spec.versions[{i}].name"),
                &json!(vname),
                "must be a valid DNS-1123 label",
            ));
        }
        match v.pointer("/schema/openAPIV3Schema") {
            Some(schema) => {
                let path = format!("spec.versions[{i}].schema.openAPIV3Schema");
                for e in structural::check_structural(schema, &path) {
                    errors.push(FieldError {
                        reason: e.reason(),
                        field: e.field.clone(),
                        message: e.message(),
                    });
                }
            }
            None => errors.push(FieldError::required(
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "schemas are required",
            )),
        }
    }
    errors
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The schema a version is served with: the CRD's schema, with `metadata`, `apiVersion` and
/// `kind` described as for every object, so apply and strategic merge know ObjectMeta's
/// list semantics (finalizers, ownerReferences).
fn served_schema(openapi: &Value) -> SchemaInfo {
    let meta = schema_of::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>();
    let mut root = openapi.clone();
    if let Some(obj) = root.as_object_mut() {
        let props = obj
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        let mut props: Map<String, Value> = props;
        props.insert(
            "metadata".into(),
            json!({"$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}),
        );
        props
            .entry("apiVersion")
            .or_insert_with(|| json!({"type": "string"}));
        props
            .entry("kind")
            .or_insert_with(|| json!({"type": "string"}));
        obj.insert("properties".into(), Value::Object(props));
    }
    let mut defs = meta.defs;
    defs.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".into(),
        meta.root,
    );
    SchemaInfo { root, defs }
}

/// The resources a CRD serves: one per served version.
pub fn resources(crd: &Value) -> Vec<ResourceInfo> {
    let names = crd.pointer("/spec/names").cloned().unwrap_or_default();
    let kind = s(&names, "/kind").to_owned();
    let plural = s(&names, "/plural").to_owned();
    let singular = match s(&names, "/singular") {
        "" => kind.to_lowercase(),
        other => other.to_owned(),
    };
    let list_kind = match s(&names, "/listKind") {
        "" => format!("{kind}List"),
        other => other.to_owned(),
    };
    let storage_version = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        })
        .and_then(|v| v.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let crd_name = s(crd, "/metadata/name").to_owned();
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) != Some(false))
        .map(|v| {
            let scale = v.pointer("/subresources/scale").map(|sc| ScaleSpec {
                spec_replicas_path: s(sc, "/specReplicasPath").to_owned(),
                status_replicas_path: s(sc, "/statusReplicasPath").to_owned(),
                label_selector_path: sc
                    .get("labelSelectorPath")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            });
            let printer_columns = v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .map(|cols| {
                    cols.iter()
                        .map(|c| PrinterColumn {
                            name: s(c, "/name").to_owned(),
                            type_: s(c, "/type").to_owned(),
                            format: s(c, "/format").to_owned(),
                            description: s(c, "/description").to_owned(),
                            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                            json_path: s(c, "/jsonPath").to_owned(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let selectable_fields = v
                .get("selectableFields")
                .and_then(Value::as_array)
                .map(|f| {
                    f.iter()
                        .map(|f| s(f, "/jsonPath").trim_start_matches('.').to_owned())
                        .collect()
                })
                .unwrap_or_default();
            ResourceInfo {
                group: s(crd, "/spec/group").to_owned(),
                version: s(v, "/name").to_owned(),
                plural: plural.clone(),
                singular: singular.clone(),
                kind: kind.clone(),
                list_kind: list_kind.clone(),
                namespaced: s(crd, "/spec/scope") == "Namespaced",
                short_names: strings(names.get("shortNames")),
                categories: strings(names.get("categories")),
                status_subresource: v.pointer("/subresources/status").is_some(),
                scale,
                name_rule: NameRule::Dns1123Subdomain,
                has_generation: true,
                verbs: vec![
                    "delete",
                    "deletecollection",
                    "get",
                    "list",
                    "patch",
                    "create",
                    "update",
                    "watch",
                ],
                schema: v
                    .pointer("/schema/openAPIV3Schema")
                    .map(|sc| Arc::new(served_schema(sc))),
                printer_columns,
                selectable_fields,
                origin: Origin::Crd {
                    crd_name: crd_name.clone(),
                    storage_version: storage_version.clone(),
                },
                storage: None,
                conversion: crate::conversion::Conversion::Identity,
            }
        })
        .collect()
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, since: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": since})
}

/// The status the apiextensions controllers keep on a CRD: accepted names, conditions and
/// stored versions. Condition transition times are kept when the status does not change.
pub fn status(crd: &Value, registry: &Registry, now: &str) -> Value {
    let old = crd.get("status").cloned().unwrap_or_else(|| json!({}));
    let since = |type_: &str, status: &str| -> String {
        old.get("conditions")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter().find(|c| {
                    c.get("type").and_then(Value::as_str) == Some(type_)
                        && c.get("status").and_then(Value::as_str) == Some(status)
                })
            })
            .and_then(|c| c.get("lastTransitionTime"))
            .and_then(Value::as_str)
            .unwrap_or(now)
            .to_owned()
    };
    let group = s(crd, "/spec/group");
    let plural = s(crd, "/spec/names/plural");
    let name = s(crd, "/metadata/name");
    let conflict = registry.name_taken(group, plural, name);
    let mut conditions = Vec::new();
    if conflict {
        conditions.push(condition(
            "NamesAccepted",
            "False",
            "PluralConflict",
            &format!("\"{plural}\" is already in use"),
            &since("NamesAccepted", "False"),
        ));
        conditions.push(condition(
            "Established",
            "False",
            "NotAccepted",
            "not all names are accepted",
            &since("Established", "False"),
        ));
    } else {
        conditions.push(condition(
            "NamesAccepted",
            "True",
            "NoConflicts",
            "no conflicts found",
            &since("NamesAccepted", "True"),
        ));
        conditions.push(condition(
            "Established",
            "True",
            "InitialNamesAccepted",
            "the initial names have been accepted",
            &since("Established", "True"),
        ));
    }
    if crate::objects::is_deleting(crd) {
        conditions.push(condition(
            "Terminating",
            "True",
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
            &since("Terminating", "True"),
        ));
    }
    let mut accepted = crd.pointer("/spec/names").cloned().unwrap_or_default();
    if let Some(a) = accepted.as_object_mut() {
        let kind = s(crd, "/spec/names/kind").to_owned();
        a.entry("singular")
            .or_insert_with(|| json!(kind.to_lowercase()));
        a.entry("listKind")
            .or_insert_with(|| json!(format!("{kind}List")));
    }
    let mut stored = strings(old.get("storedVersions"));
    if let Some(v) = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        })
        .and_then(|v| v.get("name"))
        .and_then(Value::as_str)
        && !stored.iter().any(|s| s == v)
    {
        stored.push(v.to_owned());
    }
    json!({
        "acceptedNames": if conflict { json!({"plural": "", "kind": ""}) } else { accepted },
        "conditions": conditions,
        "storedVersions": stored,
    })
}

/// Whether the CRD's names were accepted (so its resources may be served).
pub fn accepted(status: &Value) -> bool {
    status
        .get("conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Established")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}
