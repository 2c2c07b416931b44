//! The `scale` subresource: an `autoscaling/v1` Scale view of an object's replicas.

use http::StatusCode;
use serde_json::{Value, json};

use super::write::{Computed, WriteOptions, decode_body};
use super::{ApiRequest, ApiServer, Query, Reply, ns_key, subject};
use crate::error::ApiError;
use crate::objects::{self, Endpoint};
use crate::resources::{ResourceInfo, ScaleSpec};

fn pointer(path: &str) -> String {
    path.trim_start_matches('.').replace('.', "/").to_string()
}

fn get_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    obj.pointer(&format!("/{}", pointer(path)))
}

fn selector_string(obj: &Value, spec: &ScaleSpec) -> Option<String> {
    if let Some(path) = &spec.label_selector_path
        && let Some(s) = get_path(obj, path).and_then(Value::as_str)
    {
        return Some(s.to_owned());
    }
    // Built-in workloads: the string form of spec.selector.matchLabels.
    let labels = obj.pointer("/spec/selector/matchLabels")?.as_object()?;
    Some(
        labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn scale_of(obj: &Value, spec: &ScaleSpec) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_default();
    let mut status = json!({
        "replicas": get_path(obj, &spec.status_replicas_path).and_then(Value::as_i64).unwrap_or(0),
    });
    if let Some(sel) = selector_string(obj, spec) {
        status["selector"] = json!(sel);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": get_path(obj, &spec.spec_replicas_path).and_then(Value::as_i64).unwrap_or(0)},
        "status": status,
    })
}

fn spec(info: &ResourceInfo) -> Result<&ScaleSpec, ApiError> {
    info.scale.as_ref().ok_or_else(ApiError::no_route)
}

/// GET .../scale
pub(super) fn get(
    server: &ApiServer,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<Reply, ApiError> {
    let spec = spec(info)?;
    let obj = server
        .store
        .collection(&info.storage_key())
        .get(&(ns_key(info, ns), name.to_owned()))
        .ok_or_else(|| ApiError::not_found(subject(info, name)))?;
    Ok(Reply::Json(StatusCode::OK, scale_of(&obj, spec)))
}

async fn write_replicas(
    server: &ApiServer,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    req: &ApiRequest,
    q: &Query,
    new_scale: impl Fn(&Value) -> Result<Value, ApiError>,
) -> Result<Reply, ApiError> {
    let spec = spec(info)?.clone();
    let opts = WriteOptions {
        dry_run: q.dry_run,
        field_manager: q.field_manager.clone().unwrap_or_else(|| {
            req.user_agent
                .split('/')
                .next()
                .unwrap_or("unknown")
                .to_owned()
        }),
        field_validation: "Ignore".into(),
    };
    let (obj, _) = server
        .update_object(info, ns, name, Endpoint::Main, &opts, |current| {
            let scale = new_scale(&scale_of(current, &spec))?;
            let replicas = scale
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "autoscaling",
                        "Scale",
                        name,
                        &[crate::validation::FieldError::required("spec.replicas", "")],
                    )
                })?;
            if replicas < 0 {
                return Err(ApiError::invalid(
                    "autoscaling",
                    "Scale",
                    name,
                    &[crate::validation::FieldError::invalid(
                        "spec.replicas",
                        &json!(replicas),
                        "must be greater than or equal to 0",
                    )],
                ));
            }
            let mut next = current.clone();
            let target = pointer(&spec.spec_replicas_path);
            let mut cursor = &mut next;
            let parts: Vec<&str> = target.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                if !cursor.is_object() {
                    *cursor = json!({});
                }
                if i + 1 == parts.len() {
                    cursor[*part] = json!(replicas);
                    break;
                }
                cursor = &mut cursor[*part];
            }
            let precondition = objects::meta_str(&scale, "resourceVersion")
                .filter(|rv| {
                    !rv.is_empty() && Some(*rv) != objects::meta_str(current, "resourceVersion")
                })
                .and_then(|rv| rv.parse().ok());
            Ok(Computed {
                object: next,
                precondition_rv: precondition,
                managed: false,
            })
        })
        .await?;
    Ok(Reply::Json(StatusCode::OK, scale_of(&obj, &spec)))
}

/// PUT .../scale
pub(super) async fn put(
    server: &ApiServer,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    req: &ApiRequest,
    q: &Query,
) -> Result<Reply, ApiError> {
    let body = decode_body(req)?;
    write_replicas(server, info, ns, name, req, q, |_| Ok(body.clone())).await
}

/// PATCH .../scale (merge or JSON patch of the Scale object).
pub(super) async fn patch(
    server: &ApiServer,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    req: &ApiRequest,
    q: &Query,
) -> Result<Reply, ApiError> {
    let ct = req.content_type.to_ascii_lowercase();
    write_replicas(server, info, ns, name, req, q, |scale| {
        let mut doc = scale.clone();
        if ct.contains("json-patch") {
            let p: json_patch::Patch = serde_json::from_slice(&req.body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            super::write::apply_json_patch(&mut doc, &p)?;
        } else {
            let p: Value = serde_json::from_slice(&req.body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::merge(&mut doc, &p);
        }
        Ok(doc)
    })
    .await
}
