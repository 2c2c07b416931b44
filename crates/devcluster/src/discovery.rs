//! Discovery (`/version`, `/api`, `/apis`, resource lists) and the OpenAPI documents kubectl
//! reads: v3 per group-version (for `explain` and to learn that the server validates fields
//! itself), and v2 for older clients.

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use serde_json::{Map, Value, json};

use crate::resources::{Registry, ResourceInfo, version_priority};

/// The Kubernetes version devcluster reports (the API level of the k8s-openapi feature).
pub const KUBERNETES_MINOR: &str = "33";

/// `/version`
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0-devcluster"),
        "gitCommit": "devcluster",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    })
}

fn group_entry(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or_default()})
}

/// `/apis`
pub fn groups(registry: &Registry) -> Value {
    let groups: Vec<Value> = registry
        .groups()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_entry(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`
pub fn group(registry: &Registry, name: &str) -> Option<Value> {
    let groups = registry.groups();
    let versions = groups.get(name).filter(|_| !name.is_empty())?;
    let mut g = group_entry(name, versions);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

fn storage_version_hash(info: &ResourceInfo) -> String {
    let mut h = DefaultHasher::new();
    (&info.group, &info.plural, &info.kind).hash(&mut h);
    let bytes = h.finish().to_be_bytes();
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `/api/v1`, `/apis/<group>/<version>`
pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let infos: Vec<_> = registry
        .all()
        .into_iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if infos.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for r in &infos {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
            "storageVersionHash": storage_version_hash(r),
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        if r.status_subresource {
            resources.push(
                json!({"name": format!("{}/status", r.plural), "singularName": "",
                "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}),
            );
        }
        if r.group.is_empty() && r.plural == "serviceaccounts" {
            // TokenRequest, created through the service account (`kubectl create token`).
            resources.push(json!({"name": "serviceaccounts/token", "singularName": "",
                "namespaced": true, "group": "authentication.k8s.io", "version": "v1",
                "kind": "TokenRequest", "verbs": ["create"]}));
        }
        if r.scale.is_some() {
            resources.push(
                json!({"name": format!("{}/scale", r.plural), "singularName": "",
                "namespaced": r.namespaced, "group": "autoscaling", "version": "v1",
                "kind": "Scale", "verbs": ["get", "patch", "update"]}),
            );
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// The name a resource's schema is published under: the built-in type name, or the reversed
/// group for custom resources (`com.example.v1.Widget`), as upstream names them.
fn definition_name(info: &ResourceInfo) -> String {
    if info.is_custom() {
        let reversed: Vec<&str> = info.group.split('.').rev().collect();
        format!("{}.{}.{}", reversed.join("."), info.version, info.kind)
    } else {
        info.schema
            .as_ref()
            .and_then(|s| {
                s.root
                    .get("title")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| {
                let group = if info.group.is_empty() {
                    "core".to_owned()
                } else {
                    info.group.split('.').next().unwrap_or_default().to_owned()
                };
                format!("io.k8s.api.{group}.{}.{}", info.version, info.kind)
            })
    }
}

/// Rewrites `#/$defs/X` references to the document's own location of definitions.
fn rewrite_refs(v: &mut Value, prefix: &str) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref")
                && let Some(name) = r.strip_prefix("#/$defs/")
            {
                *r = format!("{prefix}{name}");
            }
            for child in map.values_mut() {
                rewrite_refs(child, prefix);
            }
        }
        Value::Array(items) => {
            for child in items {
                rewrite_refs(child, prefix);
            }
        }
        _ => {}
    }
}

fn gvk(info: &ResourceInfo) -> Value {
    json!({"group": info.group, "version": info.version, "kind": info.kind})
}

fn param(name: &str, location: &str, v3: bool) -> Value {
    if v3 {
        json!({"name": name, "in": location, "schema": {"type": "string"}, "required": location == "path"})
    } else {
        json!({"name": name, "in": location, "type": "string", "required": location == "path"})
    }
}

fn operation(info: &ResourceInfo, verb: &str, action: &str, v3: bool) -> Value {
    let mut params = Vec::new();
    if ["post", "put", "patch"].contains(&verb) {
        for p in ["dryRun", "fieldManager", "fieldValidation"] {
            params.push(param(p, "query", v3));
        }
    }
    if verb == "patch" {
        params.push(param("force", "query", v3));
    }
    json!({
        "operationId": format!("{action}{}", info.kind),
        "parameters": params,
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(info),
    })
}

fn paths_for(info: &ResourceInfo, v3: bool) -> Vec<(String, Value)> {
    let prefix = if info.group.is_empty() {
        format!("/api/{}", info.version)
    } else {
        format!("/apis/{}/{}", info.group, info.version)
    };
    let base = if info.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", info.plural)
    } else {
        format!("{prefix}/{}", info.plural)
    };
    let collection = json!({
        "get": operation(info, "get", "list", v3),
        "post": operation(info, "post", "post", v3),
        "delete": operation(info, "delete", "deletecollection", v3),
    });
    let item = json!({
        "get": operation(info, "get", "get", v3),
        "put": operation(info, "put", "put", v3),
        "patch": operation(info, "patch", "patch", v3),
        "delete": operation(info, "delete", "delete", v3),
    });
    vec![
        (base.clone(), collection),
        (format!("{base}/{{name}}"), item),
    ]
}

/// Schemas of a set of resources: definition name -> schema, refs pointing at `prefix`.
fn definitions(infos: &[std::sync::Arc<ResourceInfo>], prefix: &str) -> Map<String, Value> {
    let mut defs = Map::new();
    for info in infos {
        let Some(schema) = &info.schema else { continue };
        for (name, def) in &schema.defs {
            if !defs.contains_key(name) {
                let mut def = def.clone();
                rewrite_refs(&mut def, prefix);
                defs.insert(name.clone(), def);
            }
        }
        let mut root = schema.root.clone();
        rewrite_refs(&mut root, prefix);
        if let Some(obj) = root.as_object_mut() {
            obj.remove("$schema");
            obj.insert("x-kubernetes-group-version-kind".into(), json!([gvk(info)]));
        }
        defs.insert(definition_name(info), root);
    }
    defs
}

/// `/openapi/v3/<gv>`: an OpenAPI 3 document for one group-version.
pub fn openapi_v3(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let infos: Vec<_> = registry
        .all()
        .into_iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if infos.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    for info in &infos {
        for (p, item) in paths_for(info, true) {
            paths.insert(p, item);
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{KUBERNETES_MINOR}.0")},
        "paths": paths,
        "components": {"schemas": definitions(&infos, "#/components/schemas/")},
    }))
}

/// `/openapi/v3`: where each group-version's document is, with a hash that changes with it.
pub fn openapi_v3_root(registry: &Registry) -> Value {
    let mut by_gv: BTreeMap<String, DefaultHasher> = BTreeMap::new();
    for info in registry.all() {
        let key = if info.group.is_empty() {
            format!("api/{}", info.version)
        } else {
            format!("apis/{}/{}", info.group, info.version)
        };
        let h = by_gv.entry(key).or_default();
        (&info.plural, &info.kind).hash(h);
        if let Some(s) = &info.schema {
            s.root.to_string().hash(h);
        }
    }
    let paths: Map<String, Value> = by_gv
        .into_iter()
        .map(|(k, h)| {
            let url = format!("/openapi/v3/{k}?hash={:016X}", h.finish());
            (k, json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({"paths": paths})
}

/// `/openapi/v2`: a Swagger 2.0 document of everything served.
pub fn openapi_v2(registry: &Registry) -> Value {
    let mut infos = registry.all();
    // One definition per kind: the preferred version of each group.
    infos.sort_by_key(|r| std::cmp::Reverse(version_priority(&r.version)));
    let mut paths = Map::new();
    for info in &infos {
        for (p, item) in paths_for(info, false) {
            paths.insert(p, item);
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{KUBERNETES_MINOR}.0")},
        "paths": paths,
        "definitions": definitions(&infos, "#/definitions/"),
    })
}
