//! End-to-end behaviour of server-side apply and update tracking.

use serde_json::{Value, json};

use super::*;
use crate::schema::Node;

const T1: &str = "2024-01-01T00:00:01Z";
const T2: &str = "2024-01-01T00:00:02Z";
const T3: &str = "2024-01-01T00:00:03Z";

fn schema() -> Value {
    let strings = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let ports = json!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
        "items": {"type": "object", "properties": {
            "containerPort": {"type": "integer"},
            "protocol": {"type": "string", "default": "TCP"}}}
    });
    let containers = json!({
        "type": "array",
        "x-kubernetes-patch-strategy": "merge",
        "x-kubernetes-patch-merge-key": "name",
        "items": {"type": "object", "properties": {
            "name": {"type": "string"},
            "image": {"type": "string"},
            "args": {"type": "array", "items": {"type": "string"}},
            "ports": ports}}
    });
    let metadata = json!({"type": "object", "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "uid": {"type": "string"},
        "resourceVersion": {"type": "string"},
        "labels": strings,
        "annotations": strings,
        "finalizers": {"type": "array", "items": {"type": "string"},
                       "x-kubernetes-patch-strategy": "merge"},
        "managedFields": {"type": "array", "items": {"type": "object"}}
    }});
    let spec = json!({"type": "object", "properties": {
        "replicas": {"type": "integer"},
        "paused": {"type": "boolean"},
        "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                     "properties": {"matchLabels": strings}},
        "template": {"type": "object", "properties": {
            "spec": {"type": "object", "properties": {"containers": containers}}}}
    }});
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": metadata,
            "spec": spec,
            "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
        }
    })
}

fn ctx<'a>(schema: &'a Value, manager: &'a str, time: &'a str) -> ApplyContext<'a> {
    ApplyContext {
        manager,
        api_version: "apps/v1",
        kind: "Deployment",
        subresource: None,
        time,
        ignored: &[],
        schema: Node::new(schema, None),
    }
}

fn deployment(spec: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": spec})
}

fn entries(obj: &Value) -> Vec<Value> {
    obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn entry_for<'v>(obj: &'v Value, manager: &str, operation: &str) -> Option<&'v Value> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
}

fn fields_of(obj: &Value, manager: &str, operation: &str) -> Value {
    entry_for(obj, manager, operation)
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or(Value::Null)
}

fn without_mf(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(m) = copy["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
    copy
}

fn conflicts(err: ApplyError) -> Vec<(String, String)> {
    match err {
        ApplyError::Conflicts(c) => c.into_iter().map(|c| (c.manager, c.field)).collect(),
        other => panic!("expected conflicts, got {other:?}"),
    }
}

/// A create through `record_update`, as a POST would do.
fn created_by(manager: &str, object: Value, s: &Value) -> Value {
    let mut object = object;
    record_update(None, &mut object, &ctx(s, manager, T1)).unwrap();
    object["metadata"]["uid"] = json!("u-1");
    object
}

#[test]
fn apply_create_records_one_apply_entry() {
    let s = schema();
    let config = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "d", "labels": {"app": "x"}},
                        "spec": {"replicas": 1}});
    let out = server_side_apply(None, &config, false, &ctx(&s, "mgr", T1)).unwrap();
    assert_eq!(without_mf(&out), config);
    assert_eq!(
        entries(&out),
        vec![json!({
            "manager": "mgr", "operation": "Apply", "apiVersion": "apps/v1", "time": T1,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {}}}
        })]
    );
}

#[test]
fn apply_to_a_subresource_records_it() {
    let s = schema();
    let ignored = vec![vec!["spec".to_string()], vec!["metadata".to_string()]];
    let mut c = ctx(&s, "ctl", T1);
    c.subresource = Some("status");
    c.ignored = &ignored;
    let live = server_side_apply(
        None,
        &deployment(json!({"replicas": 1})),
        false,
        &ctx(&s, "a", T1),
    )
    .unwrap();
    let status = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "d"}, "status": {"replicas": 1}});
    let out = server_side_apply(Some(&live), &status, false, &c).unwrap();
    let entry = entry_for(&out, "ctl", "Apply").unwrap();
    assert_eq!(entry["subresource"], "status");
    assert_eq!(entry["fieldsV1"], json!({"f:status": {"f:replicas": {}}}));
    // The main-resource applier is untouched.
    assert_eq!(
        fields_of(&out, "a", "Apply"),
        json!({"f:spec": {"f:replicas": {}}})
    );
}

#[test]
fn reapply_removes_omitted_fields_and_updates_values() {
    let s = schema();
    let first = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "d", "labels": {"a": "1", "b": "2"}},
                       "spec": {"replicas": 1, "paused": true}});
    let live = server_side_apply(None, &first, false, &ctx(&s, "mgr", T1)).unwrap();
    let second = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "d", "labels": {"b": "3"}},
                        "spec": {"replicas": 2}});
    let out = server_side_apply(Some(&live), &second, false, &ctx(&s, "mgr", T2)).unwrap();
    assert_eq!(without_mf(&out), second);
    let entries = entries(&out);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["time"], T2);
    assert_eq!(
        entries[0]["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:b": {}}}, "f:spec": {"f:replicas": {}}})
    );
}

#[test]
fn omitted_fields_stay_while_another_manager_owns_them() {
    let s = schema();
    let config = deployment(json!({"replicas": 3, "paused": true}));
    let live = server_side_apply(None, &config, false, &ctx(&s, "a", T1)).unwrap();
    let live = server_side_apply(
        Some(&live),
        &deployment(json!({"replicas": 3})),
        false,
        &ctx(&s, "b", T2),
    )
    .unwrap();
    let out = server_side_apply(
        Some(&live),
        &deployment(json!({})),
        false,
        &ctx(&s, "a", T3),
    )
    .unwrap();
    // paused was only a's: gone; replicas is also b's: stays, now owned by b alone.
    assert_eq!(out["spec"], json!({"replicas": 3}));
    assert_eq!(entry_for(&out, "a", "Apply"), None);
    assert_eq!(
        fields_of(&out, "b", "Apply"),
        json!({"f:spec": {"f:replicas": {}}})
    );
}

#[test]
fn omitted_fields_stay_while_an_updater_owns_them() {
    let s = schema();
    let live = created_by("c", deployment(json!({"replicas": 1})), &s);
    let live = server_side_apply(
        Some(&live),
        &deployment(json!({"replicas": 1})),
        false,
        &ctx(&s, "a", T2),
    )
    .unwrap();
    let out = server_side_apply(
        Some(&live),
        &deployment(json!({})),
        false,
        &ctx(&s, "a", T3),
    )
    .unwrap();
    assert_eq!(out["spec"], json!({"replicas": 1}));
    assert_eq!(entry_for(&out, "a", "Apply"), None);
    assert_eq!(
        fields_of(&out, "c", "Update"),
        json!({"f:spec": {".": {}, "f:replicas": {}}})
    );
}

#[test]
fn dropping_the_last_label_removes_the_map() {
    let s = schema();
    let labelled = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                          "metadata": {"name": "d", "labels": {"a": "1"}}, "spec": {"replicas": 1}});
    let live = server_side_apply(None, &labelled, false, &ctx(&s, "a", T1)).unwrap();
    let out = server_side_apply(
        Some(&live),
        &deployment(json!({"replicas": 1})),
        false,
        &ctx(&s, "a", T2),
    )
    .unwrap();
    assert_eq!(without_mf(&out), deployment(json!({"replicas": 1})));
}

#[test]
fn reapplying_the_same_config_changes_nothing() {
    let s = schema();
    let config = deployment(json!({"replicas": 1}));
    let live = server_side_apply(None, &config, false, &ctx(&s, "a", T1)).unwrap();
    let again = server_side_apply(Some(&live), &config, false, &ctx(&s, "a", T2)).unwrap();
    assert_eq!(again, live);
    assert_eq!(entry_for(&again, "a", "Apply").unwrap()["time"], T1);
}

#[test]
fn fields_of_other_managers_are_untouched() {
    let s = schema();
    let live = created_by("creator", deployment(json!({"paused": true})), &s);
    let out = server_side_apply(
        Some(&live),
        &deployment(json!({"replicas": 2})),
        false,
        &ctx(&s, "a", T2),
    )
    .unwrap();
    assert_eq!(out["spec"], json!({"paused": true, "replicas": 2}));
    let out =
        server_side_apply(Some(&out), &deployment(json!({})), false, &ctx(&s, "a", T3)).unwrap();
    assert_eq!(out["spec"], json!({"paused": true}));
    assert!(entry_for(&out, "creator", "Update").is_some());
}

#[test]
fn conflicting_apply_fails_unless_forced() {
    let s = schema();
    let live = server_side_apply(
        None,
        &deployment(json!({"replicas": 1, "paused": false})),
        false,
        &ctx(&s, "a", T1),
    )
    .unwrap();
    let err = server_side_apply(
        Some(&live),
        &deployment(json!({"replicas": 2, "paused": true})),
        false,
        &ctx(&s, "b", T2),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.paused\n- .spec.replicas"
    );
    assert_eq!(
        conflicts(err),
        vec![
            ("a".into(), ".spec.paused".into()),
            ("a".into(), ".spec.replicas".into())
        ]
    );
    let out = server_side_apply(
        Some(&live),
        &deployment(json!({"replicas": 2})),
        true,
        &ctx(&s, "b", T2),
    )
    .unwrap();
    assert_eq!(out["spec"], json!({"replicas": 2, "paused": false}));
    assert_eq!(
        fields_of(&out, "a", "Apply"),
        json!({"f:spec": {"f:paused": {}}})
    );
    assert_eq!(
        fields_of(&out, "b", "Apply"),
        json!({"f:spec": {"f:replicas": {}}})
    );
}

#[test]
fn conflicts_with_update_owners_name_the_version() {
    let s = schema();
    let live = created_by(
        "kubectl-client-side-apply",
        deployment(json!({"replicas": 1})),
        &s,
    );
    let err = server_side_apply(
        Some(&live),
        &deployment(json!({"replicas": 2})),
        false,
        &ctx(&s, "ssa", T2),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: \
         .spec.replicas"
    );
    let ApplyError::Conflicts(list) = err else {
        unreachable!()
    };
    assert_eq!(list[0].operation, Operation::Update);
    assert_eq!(
        list[0].cause_message(),
        "conflict with \"kubectl-client-side-apply\" using apps/v1"
    );
}

#[test]
fn applying_the_same_value_shares_ownership() {
    let s = schema();
    let live = created_by("creator", deployment(json!({"replicas": 1})), &s);
    let out = server_side_apply(
        Some(&live),
        &deployment(json!({"replicas": 1})),
        false,
        &ctx(&s, "a", T2),
    )
    .unwrap();
    assert_eq!(
        fields_of(&out, "creator", "Update"),
        json!({"f:spec": {".": {}, "f:replicas": {}}})
    );
    assert_eq!(
        fields_of(&out, "a", "Apply"),
        json!({"f:spec": {"f:replicas": {}}})
    );
    // The object did not change, so the new entry carries no time, as on the API server.
    assert_eq!(entry_for(&out, "a", "Apply").unwrap().get("time"), None);
}

#[test]
fn list_ownership_follows_list_types() {
    let s = schema();
    let config = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "finalizers": ["x"]},
        "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"spec": {"containers": [{
                "name": "app", "image": "img:1", "args": ["--v"],
                "ports": [{"containerPort": 80}]
            }]}}
        }
    });
    let out = server_side_apply(None, &config, false, &ctx(&s, "a", T1)).unwrap();
    assert_eq!(
        fields_of(&out, "a", "Apply"),
        json!({
            "f:metadata": {"f:finalizers": {"v:\"x\"": {}}},
            "f:spec": {
                "f:selector": {},
                "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {
                    ".": {}, "f:args": {}, "f:image": {}, "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                        ".": {}, "f:containerPort": {}}}
                }}}}
            }
        })
    );
}

#[test]
fn map_list_elements_are_owned_and_merged_per_key() {
    let s = schema();
    let containers = |list: Value| deployment(json!({"template": {"spec": {"containers": list}}}));
    let live = server_side_apply(
        None,
        &containers(json!([{"name": "a", "image": "1"}])),
        false,
        &ctx(&s, "one", T1),
    )
    .unwrap();
    let live = server_side_apply(
        Some(&live),
        &containers(json!([{"name": "b", "image": "2"}])),
        false,
        &ctx(&s, "two", T2),
    )
    .unwrap();
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "image": "1"}, {"name": "b", "image": "2"}])
    );
    // Another manager's element field conflicts; a new field in it does not.
    let err = server_side_apply(
        Some(&live),
        &containers(json!([{"name": "a", "image": "9"}])),
        false,
        &ctx(&s, "two", T3),
    )
    .unwrap_err();
    assert_eq!(
        conflicts(err),
        vec![(
            "one".into(),
            ".spec.template.spec.containers[name=\"a\"].image".into()
        )]
    );
    let out = server_side_apply(
        Some(&live),
        &containers(json!([{"name": "a", "args": ["x"]}, {"name": "b", "image": "2"}])),
        false,
        &ctx(&s, "two", T3),
    )
    .unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "image": "1", "args": ["x"]}, {"name": "b", "image": "2"}])
    );
    // Dropping an element removes it only when nobody else owns it.
    let out = server_side_apply(
        Some(&out),
        &containers(json!([{"name": "a", "args": ["x"]}])),
        false,
        &ctx(&s, "two", T3),
    )
    .unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "image": "1", "args": ["x"]}])
    );
}

#[test]
fn atomic_lists_and_maps_are_replaced_and_owned_whole() {
    let s = schema();
    let spec = |args: Value, labels: Value| {
        deployment(json!({"selector": {"matchLabels": labels},
                          "template": {"spec": {"containers": [{"name": "c", "args": args}]}}}))
    };
    let live = server_side_apply(
        None,
        &spec(json!(["a", "b"]), json!({"x": "1", "y": "2"})),
        false,
        &ctx(&s, "one", T1),
    )
    .unwrap();
    let err = server_side_apply(
        Some(&live),
        &spec(json!(["a"]), json!({"x": "1"})),
        false,
        &ctx(&s, "two", T2),
    )
    .unwrap_err();
    assert_eq!(
        conflicts(err),
        vec![
            ("one".into(), ".spec.selector".into()),
            (
                "one".into(),
                ".spec.template.spec.containers[name=\"c\"].args".into()
            ),
        ]
    );
    let out = server_side_apply(
        Some(&live),
        &spec(json!(["a"]), json!({"x": "1"})),
        true,
        &ctx(&s, "two", T2),
    )
    .unwrap();
    assert_eq!(out["spec"]["selector"], json!({"matchLabels": {"x": "1"}}));
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["a"])
    );
}

#[test]
fn set_lists_are_owned_per_value() {
    let s = schema();
    let fin = |f: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
                               "metadata": {"name": "d", "finalizers": f}})
    };
    let live = server_side_apply(None, &fin(json!(["a"])), false, &ctx(&s, "one", T1)).unwrap();
    let live =
        server_side_apply(Some(&live), &fin(json!(["b"])), false, &ctx(&s, "two", T2)).unwrap();
    assert_eq!(live["metadata"]["finalizers"], json!(["a", "b"]));
    let out = server_side_apply(Some(&live), &fin(json!([])), false, &ctx(&s, "one", T3)).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
}

#[test]
fn entries_are_per_identity_sorted_and_dropped_when_empty() {
    let s = schema();
    let live = created_by("m", deployment(json!({"replicas": 1})), &s);
    let mut updated = live.clone();
    updated["spec"]["paused"] = json!(true);
    record_update(Some(&live), &mut updated, &ctx(&s, "m", T2)).unwrap();
    updated["metadata"]["uid"] = json!("u-1");
    let out = server_side_apply(
        Some(&updated),
        &deployment(json!({"replicas": 1})),
        false,
        &ctx(&s, "m", T3),
    )
    .unwrap();
    let order: Vec<(Value, Value)> = entries(&out)
        .iter()
        .map(|e| (e["manager"].clone(), e["operation"].clone()))
        .collect();
    // Apply sorts before Update; one Update entry per manager and version, merged.
    assert_eq!(
        order,
        vec![(json!("m"), json!("Apply")), (json!("m"), json!("Update"))]
    );
    assert_eq!(
        fields_of(&out, "m", "Update"),
        json!({"f:spec": {".": {}, "f:paused": {}, "f:replicas": {}}})
    );
    assert_eq!(entry_for(&out, "m", "Update").unwrap()["time"], T2);
    // Taking its fields leaves the Update entry only `.spec` itself, a plain member now.
    let out = server_side_apply(
        Some(&out),
        &deployment(json!({"replicas": 5, "paused": false})),
        true,
        &ctx(&s, "m", T3),
    )
    .unwrap();
    let ops: Vec<Value> = entries(&out)
        .iter()
        .map(|e| e["operation"].clone())
        .collect();
    assert_eq!(ops, vec![json!("Apply"), json!("Update")]);
    assert_eq!(fields_of(&out, "m", "Update"), json!({"f:spec": {}}));
}

#[test]
fn update_entries_are_per_version() {
    let s = schema();
    let live = created_by("m", deployment(json!({"replicas": 1})), &s);
    let mut new = live.clone();
    new["spec"]["paused"] = json!(true);
    let mut c = ctx(&s, "m", T2);
    c.api_version = "apps/v2";
    record_update(Some(&live), &mut new, &c).unwrap();
    let versions: Vec<Value> = entries(&new)
        .iter()
        .map(|e| e["apiVersion"].clone())
        .collect();
    assert_eq!(versions, vec![json!("apps/v1"), json!("apps/v2")]);
}

#[test]
fn record_update_moves_and_removes_ownership() {
    let s = schema();
    let live = server_side_apply(
        None,
        &deployment(json!({"replicas": 1, "paused": true})),
        false,
        &ctx(&s, "a", T1),
    )
    .unwrap();
    let mut new = live.clone();
    new["spec"]["replicas"] = json!(4);
    new["spec"].as_object_mut().unwrap().remove("paused");
    new["metadata"]["labels"] = json!({"x": "y"});
    record_update(Some(&live), &mut new, &ctx(&s, "editor", T2)).unwrap();
    assert_eq!(entry_for(&new, "a", "Apply"), None);
    assert_eq!(
        entry_for(&new, "editor", "Update").unwrap(),
        &json!({"manager": "editor", "operation": "Update", "apiVersion": "apps/v1", "time": T2,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:x": {}}},
                             "f:spec": {"f:replicas": {}}}})
    );
}

#[test]
fn record_update_without_changes_keeps_entries_and_times() {
    let s = schema();
    let live = created_by("c", deployment(json!({"replicas": 1})), &s);
    let mut same = live.clone();
    record_update(Some(&live), &mut same, &ctx(&s, "other", T2)).unwrap();
    assert_eq!(same, live);
}

#[test]
fn record_update_creates_with_self_markers_for_new_maps() {
    let s = schema();
    let mut obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                         "metadata": {"name": "d", "namespace": "ns", "resourceVersion": "1"},
                         "spec": {"replicas": 1}, "status": {"replicas": 0}});
    let ignored = vec![vec!["status".to_string()]];
    let mut c = ctx(&s, "", T1);
    c.ignored = &ignored;
    record_update(None, &mut obj, &c).unwrap();
    assert_eq!(
        entries(&obj),
        vec![
            json!({"manager": "unknown", "operation": "Update", "apiVersion": "apps/v1",
                    "time": T1, "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {".": {}, "f:replicas": {}}}})
        ]
    );
}

#[test]
fn request_managed_fields_can_replace_or_reset_ownership() {
    let s = schema();
    let live = created_by("c", deployment(json!({"replicas": 1})), &s);
    // `[]` and `[{}]` clear them, and an existing object without any stays untracked.
    for clear in [json!([]), json!([{}])] {
        let mut reset = live.clone();
        reset["metadata"]["managedFields"] = clear;
        reset["spec"]["paused"] = json!(true);
        record_update(Some(&live), &mut reset, &ctx(&s, "w", T2)).unwrap();
        assert_eq!(reset["metadata"].get("managedFields"), None);
    }
    // A valid list replaces the live one.
    let mut replaced = live.clone();
    replaced["metadata"]["managedFields"] = json!([{
        "manager": "other", "operation": "Apply", "apiVersion": "apps/v1",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]);
    record_update(Some(&live), &mut replaced, &ctx(&s, "w", T2)).unwrap();
    let managers: Vec<Value> = entries(&replaced)
        .iter()
        .map(|e| e["manager"].clone())
        .collect();
    assert_eq!(managers, vec![json!("other")]);
    // Subresource writes ignore managedFields in the request.
    let mut status = replaced.clone();
    status["status"] = json!({"replicas": 1});
    let mut c = ctx(&s, "w", T2);
    c.subresource = Some("status");
    record_update(Some(&live), &mut status, &c).unwrap();
    let managers: Vec<Value> = entries(&status)
        .iter()
        .map(|e| e["manager"].clone())
        .collect();
    assert_eq!(managers, vec![json!("c"), json!("w")]);
    assert_eq!(
        entry_for(&status, "w", "Update").unwrap()["subresource"],
        "status"
    );
}

#[test]
fn untracked_objects_stay_untracked_on_update() {
    let s = schema();
    let mut live = deployment(json!({"replicas": 1}));
    live["metadata"]["uid"] = json!("u-1");
    let mut new = live.clone();
    new["spec"]["replicas"] = json!(2);
    record_update(Some(&live), &mut new, &ctx(&s, "w", T2)).unwrap();
    assert_eq!(new["metadata"].get("managedFields"), None);
}

#[test]
fn first_apply_on_an_untracked_object_conflicts_with_before_first_apply() {
    let s = schema();
    let mut live = deployment(json!({"replicas": 1}));
    live["metadata"]["uid"] = json!("u-1");
    let err = server_side_apply(
        Some(&live),
        &deployment(json!({"replicas": 2})),
        false,
        &ctx(&s, "a", T2),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: \
         .spec.replicas"
    );
    let out = server_side_apply(
        Some(&live),
        &deployment(json!({"paused": true})),
        false,
        &ctx(&s, "a", T2),
    )
    .unwrap();
    assert_eq!(
        fields_of(&out, "before-first-apply", "Update"),
        json!({"f:spec": {".": {}, "f:replicas": {}}})
    );
}

#[test]
fn a_removed_field_leaves_every_managers_set() {
    let s = schema();
    let live = server_side_apply(
        None,
        &deployment(json!({"replicas": 1})),
        false,
        &ctx(&s, "a", T1),
    )
    .unwrap();
    let live = server_side_apply(
        Some(&live),
        &deployment(json!({"replicas": 1})),
        false,
        &ctx(&s, "b", T1),
    )
    .unwrap();
    let mut new = live.clone();
    new["spec"] = json!({});
    record_update(Some(&live), &mut new, &ctx(&s, "editor", T2)).unwrap();
    assert_eq!(new["metadata"].get("managedFields"), None);
}

#[test]
fn invalid_configurations_are_rejected() {
    let s = schema();
    let c = ctx(&s, "a", T1);
    let mut wrong_kind = deployment(json!({}));
    wrong_kind["kind"] = json!("StatefulSet");
    assert_eq!(
        server_side_apply(None, &wrong_kind, false, &c).unwrap_err(),
        ApplyError::Invalid("invalid object type: apps/v1, Kind=StatefulSet".into())
    );
    let mut wrong_version = deployment(json!({}));
    wrong_version["apiVersion"] = json!("v1");
    assert_eq!(
        server_side_apply(None, &wrong_version, false, &c)
            .unwrap_err()
            .to_string(),
        "invalid object type: /v1, Kind=Deployment"
    );
    let bare = json!({"metadata": {"name": "d"}});
    assert_eq!(
        server_side_apply(None, &bare, false, &c)
            .unwrap_err()
            .to_string(),
        "invalid object type: /, Kind="
    );
    let nameless = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {}});
    assert_eq!(
        server_side_apply(None, &nameless, false, &c).unwrap_err(),
        ApplyError::Invalid("name must be provided".into())
    );
    let live = server_side_apply(None, &deployment(json!({})), false, &c).unwrap();
    // On an existing object the live name is kept, as on the API server.
    assert!(server_side_apply(Some(&live), &nameless, false, &c).is_ok());
    let mut with_mf = deployment(json!({}));
    with_mf["metadata"]["managedFields"] = json!([]);
    assert_eq!(
        server_side_apply(None, &with_mf, false, &c)
            .unwrap_err()
            .to_string(),
        "metadata.managedFields must be nil"
    );
    assert!(matches!(
        server_side_apply(None, &json!([1]), false, &c),
        Err(ApplyError::Invalid(_))
    ));
}

#[test]
fn configurations_that_do_not_fit_list_types_are_schema_errors() {
    let s = schema();
    let config = deployment(json!({"template": {"spec": {"containers": [{"image": "x"}]}}}));
    let err = server_side_apply(None, &config, false, &ctx(&s, "a", T1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to create typed patch object (/d; apps/v1, Kind=Deployment): \
         .spec.template.spec.containers: element 0: associative list with keys has an element \
         that omits key field \"name\" (and doesn't have default value)"
    );
    let dup =
        deployment(json!({"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}}));
    assert!(matches!(
        server_side_apply(None, &dup, false, &ctx(&s, "a", T1)),
        Err(ApplyError::Schema(_))
    ));
}

#[test]
fn broken_live_managed_fields_fail_apply() {
    let s = schema();
    let mut live = deployment(json!({}));
    live["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Bogus",
                                                 "apiVersion": "v1", "fieldsType": "FieldsV1"}]);
    assert_eq!(
        server_side_apply(
            Some(&live),
            &deployment(json!({})),
            false,
            &ctx(&s, "a", T1)
        )
        .unwrap_err()
        .to_string(),
        "failed to decode managed fields: operation must be `Apply` or `Update`"
    );
}

#[test]
fn null_in_config_owns_and_clears_the_field() {
    let s = schema();
    let live = created_by("c", deployment(json!({"replicas": 1, "paused": true})), &s);
    // Clearing another manager's field is a change like any other.
    let err = server_side_apply(
        Some(&live),
        &deployment(json!({"replicas": null})),
        false,
        &ctx(&s, "a", T2),
    )
    .unwrap_err();
    assert_eq!(conflicts(err), vec![("c".into(), ".spec.replicas".into())]);
    let out = server_side_apply(
        Some(&live),
        &deployment(json!({"replicas": null})),
        true,
        &ctx(&s, "a", T2),
    )
    .unwrap();
    assert_eq!(out["spec"], json!({"paused": true}));
    assert_eq!(
        fields_of(&out, "a", "Apply"),
        json!({"f:spec": {"f:replicas": {}}})
    );
}

#[test]
fn empty_and_null_maps_for_struct_fields_are_not_owned() {
    let s = schema();
    let out = server_side_apply(
        None,
        &deployment(json!({"template": {}})),
        false,
        &ctx(&s, "a", T1),
    )
    .unwrap();
    assert_eq!(out["spec"], json!({"template": {}}));
    assert_eq!(entry_for(&out, "a", "Apply"), None);
    assert_eq!(out["metadata"].get("managedFields"), None);
}

#[test]
fn kubectl_takes_over_fields_from_client_side_apply() {
    let s = schema();
    let annotated = deployment(json!({"replicas": 1}));
    let mut object = deployment(json!({"replicas": 1}));
    object["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": annotated.to_string()});
    let live = created_by("kubectl-client-side-apply", object, &s);
    let config = deployment(json!({"replicas": 2}));
    // Another manager still conflicts...
    assert!(server_side_apply(Some(&live), &config, false, &ctx(&s, "someone", T2)).is_err());
    // ...but kubectl may take what its annotation shows it applied.
    let out = server_side_apply(Some(&live), &config, false, &ctx(&s, "kubectl", T2)).unwrap();
    assert_eq!(out["spec"]["replicas"], json!(2));
    assert_eq!(
        fields_of(&out, "kubectl", "Apply"),
        json!({"f:spec": {"f:replicas": {}}})
    );
    let annotation =
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .unwrap();
    assert_eq!(serde_json::from_str::<Value>(annotation).unwrap(), config);
    assert!(annotation.ends_with('\n'));
}

#[test]
fn kubectl_still_conflicts_on_fields_changed_since_client_side_apply() {
    let s = schema();
    let annotated = deployment(json!({"replicas": 1}));
    let mut object = deployment(json!({"replicas": 5}));
    object["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": annotated.to_string()});
    let live = created_by("kubectl-client-side-apply", object, &s);
    let err = server_side_apply(
        Some(&live),
        &deployment(json!({"replicas": 2})),
        false,
        &ctx(&s, "kubectl", T2),
    )
    .unwrap_err();
    assert_eq!(
        conflicts(err),
        vec![("kubectl-client-side-apply".into(), ".spec.replicas".into())]
    );
}

#[test]
fn conflict_message_groups_by_manager() {
    let c = |manager: &str, operation: Operation, field: &str| Conflict {
        manager: manager.into(),
        operation,
        api_version: if operation == Operation::Update {
            "v1".into()
        } else {
            String::new()
        },
        subresource: String::new(),
        field: field.into(),
    };
    let list = vec![
        c("z", Operation::Apply, ".a"),
        c("b", Operation::Update, ".b"),
        c("z", Operation::Apply, ".c"),
    ];
    assert_eq!(
        conflict_message(&list),
        "Apply failed with 3 conflicts: conflicts with \"b\" using v1:\n- .b\n\
         conflicts with \"z\":\n- .a\n- .c"
    );
    let mut status = c("ctl", Operation::Update, ".status.x");
    status.subresource = "status".into();
    assert_eq!(
        conflict_message(&[status]),
        "Apply failed with 1 conflict: conflict with \"ctl\" with subresource \"status\" using v1: \
         .status.x"
    );
}

#[test]
fn update_managers_are_capped() {
    let s = schema();
    let mut live = created_by("m0", deployment(json!({"replicas": 0})), &s);
    live["metadata"]["labels"] = json!({});
    for i in 1..=11 {
        let mut new = live.clone();
        new["metadata"]["labels"][format!("l{i}")] = json!("x");
        let time = format!("2024-01-01T00:00:{i:02}Z");
        record_update(Some(&live), &mut new, &ctx(&s, &format!("m{i}"), &time)).unwrap();
        live = new;
    }
    let updaters: Vec<String> = entries(&live)
        .iter()
        .filter(|e| e["operation"] == "Update")
        .map(|e| e["manager"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(updaters.len(), 10, "{updaters:?}");
    // m0 and m1 (both at second 1) and m2 are the oldest and were folded together.
    assert!(updaters.contains(&"ancient-changes".to_owned()));
    for gone in ["m0", "m1", "m2"] {
        assert!(
            !updaters.contains(&gone.to_owned()),
            "{gone} in {updaters:?}"
        );
    }
    let bucket = fields_of(&live, "ancient-changes", "Update");
    assert_eq!(bucket["f:spec"], json!({".": {}, "f:replicas": {}}));
    assert_eq!(bucket["f:metadata"]["f:labels"]["f:l2"], json!({}));
}
