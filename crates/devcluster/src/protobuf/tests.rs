//! Decoding real protobuf bodies (encoded with prost from the upstream messages) and checking
//! the descriptor table against the OpenAPI schemas of the built-in kinds.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message as _;
use serde_json::{Value, json};

use super::*;
use crate::schema::Node;

/// A body as Go clients send it: magic, then the envelope. Go writes the empty
/// contentEncoding and contentType strings too, so these do.
fn body(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = MAGIC.to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Compares values and their serialization, so the field order must match too.
fn assert_json(actual: &Value, expected: &Value) {
    assert_eq!(actual, expected);
    assert_eq!(actual.to_string(), expected.to_string());
}

fn decode_message(name: &str, data: &[u8]) -> Result<Value, ProtoError> {
    let table = table()?;
    Decoder { table }.value(name, data, 0)
}

#[test]
fn configmap_with_data_binary_data_labels_and_creation_timestamp() {
    let cm = core::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            name: s("cfg"),
            // Go writes non-pointer fields even when zero; omitempty drops them from JSON.
            generate_name: s(""),
            namespace: s("default"),
            uid: s(""),
            generation: Some(0),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_700_000_000),
                nanos: Some(0),
            }),
            labels: labels(&[("app", "web"), ("tier", "")]),
            ..Default::default()
        }),
        data: labels(&[("a", "b"), ("empty", "")]),
        binary_data: [("bin".to_owned(), vec![0u8, 1, 2, 255])].into(),
        immutable: None,
    };
    let decoded = decode(&body("v1", "ConfigMap", cm.encode_to_vec())).unwrap();
    assert_json(
        &decoded,
        &json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "cfg",
                "namespace": "default",
                "creationTimestamp": "2023-11-14T22:13:20Z",
                "labels": {"app": "web", "tier": ""}
            },
            "data": {"a": "b", "empty": ""},
            "binaryData": {"bin": "AAEC/w=="}
        }),
    );
}

#[test]
fn secret_with_pointer_bool_bytes_and_type() {
    let secret = core::Secret {
        metadata: Some(meta::ObjectMeta {
            name: s("s"),
            ..Default::default()
        }),
        immutable: Some(false),
        data: [("p".to_owned(), b"q".to_vec())].into(),
        string_data: labels(&[("plain", "text")]),
        r#type: s("Opaque"),
    };
    let decoded = decode(&body("v1", "Secret", secret.encode_to_vec())).unwrap();
    // `immutable` is a *bool: false was set on purpose and stays.
    assert_json(
        &decoded,
        &json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s"},
            "immutable": false,
            "data": {"p": "cQ=="},
            "stringData": {"plain": "text"},
            "type": "Opaque"
        }),
    );
}

fn int_or_string_int(v: i32) -> IntOrString {
    IntOrString {
        r#type: Some(0),
        int_val: Some(v),
        str_val: s(""),
    }
}

fn int_or_string_str(v: &str) -> IntOrString {
    IntOrString {
        r#type: Some(1),
        int_val: Some(0),
        str_val: s(v),
    }
}

fn deployment(replicas: i32) -> apps::Deployment {
    let container = core::Container {
        name: s("nginx"),
        image: s("nginx:1.27"),
        working_dir: s(""),
        ports: vec![core::ContainerPort {
            name: s(""),
            host_port: Some(0),
            container_port: Some(80),
            protocol: s("TCP"),
            host_ip: s(""),
        }],
        env: vec![core::EnvVar {
            name: s("MODE"),
            value: s("prod"),
            value_from: None,
        }],
        resources: Some(core::ResourceRequirements {
            limits: [("cpu".to_owned(), Quantity { string: s("500m") })].into(),
            ..Default::default()
        }),
        termination_message_path: s(""),
        stdin: Some(false),
        tty: Some(false),
        ..Default::default()
    };
    apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: s("web"),
            labels: labels(&[("app", "web")]),
            creation_timestamp: Some(meta::Time::default()),
            ..Default::default()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(replicas),
            selector: Some(meta::LabelSelector {
                match_labels: labels(&[("app", "web")]),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: labels(&[("app", "web")]),
                    creation_timestamp: Some(meta::Time::default()),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    restart_policy: s(""),
                    termination_grace_period_seconds: Some(0),
                    host_network: Some(false),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: Some(int_or_string_int(1)),
                    max_surge: Some(int_or_string_str("25%")),
                }),
            }),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus::default()),
    }
}

#[test]
fn deployment_with_int_or_string_quantities_and_nested_lists() {
    let decoded = decode(&body(
        "apps/v1",
        "Deployment",
        deployment(2).encode_to_vec(),
    ))
    .unwrap();
    assert_json(
        &decoded,
        &json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "nginx",
                            "image": "nginx:1.27",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "MODE", "value": "prod"}],
                            "resources": {"limits": {"cpu": "500m"}}
                        }],
                        "terminationGracePeriodSeconds": 0
                    }
                },
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}
                }
            },
            "status": {}
        }),
    );
}

#[test]
fn pointer_zero_is_kept_and_plain_zero_dropped() {
    let decoded = decode(&body(
        "apps/v1",
        "Deployment",
        deployment(0).encode_to_vec(),
    ))
    .unwrap();
    assert_eq!(decoded.pointer("/spec/replicas"), Some(&json!(0)));
    assert_eq!(decoded.pointer("/spec/minReadySeconds"), None);
    assert_eq!(decoded.pointer("/spec/paused"), None);
}

#[test]
fn delete_options_under_any_group_version() {
    let opts = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        preconditions: Some(meta::Preconditions {
            uid: s("1234"),
            resource_version: None,
        }),
        orphan_dependents: None,
        propagation_policy: s("Background"),
        dry_run: vec!["All".into()],
        ignore_store_read_error_with_cluster_breaking_potential: None,
    };
    let raw = opts.encode_to_vec();
    let expected = |api_version: &str| {
        json!({
            "apiVersion": api_version,
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": "1234"},
            "propagationPolicy": "Background",
            "dryRun": ["All"]
        })
    };
    for api_version in ["v1", "apps/v1", "meta.k8s.io/v1"] {
        let decoded = decode(&body(api_version, "DeleteOptions", raw.clone())).unwrap();
        assert_json(&decoded, &expected(api_version));
    }
}

#[test]
fn inline_embedded_structs_merge_into_the_parent() {
    let pod = core::PodSpec {
        volumes: vec![core::Volume {
            name: s("cfg"),
            volume_source: Some(core::VolumeSource {
                config_map: Some(core::ConfigMapVolumeSource {
                    local_object_reference: Some(core::LocalObjectReference { name: s("cm") }),
                    default_mode: Some(0o644),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }],
        containers: vec![core::Container {
            name: s("app"),
            liveness_probe: Some(core::Probe {
                handler: Some(core::ProbeHandler {
                    http_get: Some(core::HttpGetAction {
                        path: s("/healthz"),
                        port: Some(int_or_string_int(8080)),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                period_seconds: Some(10),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let decoded = decode_message("api.core.v1.PodSpec", &pod.encode_to_vec()).unwrap();
    assert_json(
        &decoded,
        &json!({
            "volumes": [{"name": "cfg", "configMap": {"name": "cm", "defaultMode": 420}}],
            "containers": [{
                "name": "app",
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10}
            }]
        }),
    );
}

#[test]
fn repeated_scalars_packed_and_unpacked() {
    // PodSecurityContext.supplementalGroups = 4 (repeated int64): prost writes proto2 unpacked.
    let ctx = core::PodSecurityContext {
        supplemental_groups: vec![1, 2],
        ..Default::default()
    };
    let unpacked = ctx.encode_to_vec();
    assert_eq!(unpacked, [0x20, 1, 0x20, 2]);
    let packed = [0x22, 3, 3, 0x96, 0x01];
    let name = "api.core.v1.PodSecurityContext";
    assert_json(
        &decode_message(name, &unpacked).unwrap(),
        &json!({"supplementalGroups": [1, 2]}),
    );
    // Both forms may mix; values accumulate in order.
    let mixed: Vec<u8> = unpacked.iter().chain(&packed).copied().collect();
    assert_json(
        &decode_message(name, &mixed).unwrap(),
        &json!({"supplementalGroups": [1, 2, 3, 150]}),
    );
    let truncated_pack = [0x22, 1, 0x96];
    assert!(matches!(
        decode_message(name, &truncated_pack),
        Err(ProtoError::Malformed { at, .. }) if at == "api.core.v1.PodSecurityContext.supplementalGroups"
    ));
}

#[test]
fn negative_numbers_and_unknown_fields() {
    let mut data = core::ContainerPort {
        container_port: Some(-5),
        ..Default::default()
    }
    .encode_to_vec();
    // Field 999, a varint: from a newer server, skipped.
    data.extend([0xb8, 0x3e, 0x07]);
    assert_json(
        &decode_message("api.core.v1.ContainerPort", &data).unwrap(),
        &json!({"containerPort": -5}),
    );
}

#[test]
fn micro_time_duration_and_time_zero() {
    let lease = k8s_pb::api::coordination::v1::LeaseSpec {
        holder_identity: s(""),
        lease_transitions: Some(0),
        renew_time: Some(meta::MicroTime {
            seconds: Some(1_700_000_000),
            nanos: Some(123_456_789),
        }),
        acquire_time: Some(meta::MicroTime {
            seconds: Some(GO_ZERO_TIME_UNIX),
            nanos: Some(0),
        }),
        ..Default::default()
    };
    let decoded = decode_message("api.coordination.v1.LeaseSpec", &lease.encode_to_vec()).unwrap();
    assert_json(
        &decoded,
        &json!({
            "holderIdentity": "",
            "acquireTime": null,
            "renewTime": "2023-11-14T22:13:20.123456Z",
            "leaseTransitions": 0
        }),
    );
    // Time drops nanoseconds, as upstream's Time.Unmarshal does.
    let time = meta::Time {
        seconds: Some(0),
        nanos: Some(999),
    };
    assert_eq!(
        decode_message(TIME, &time.encode_to_vec()).unwrap(),
        json!("1970-01-01T00:00:00Z")
    );
    let duration = meta::Duration {
        duration: Some(3_723_000_000_000),
    };
    assert_eq!(
        decode_message(DURATION, &duration.encode_to_vec()).unwrap(),
        json!("1h2m3s")
    );
    assert_eq!(decode_message(DURATION, &[]).unwrap(), json!("0s"));
    let far = meta::Time {
        seconds: Some(i64::MAX),
        nanos: None,
    };
    assert!(decode_message(TIME, &far.encode_to_vec()).is_err());
}

#[test]
fn go_duration_strings() {
    let cases = [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (1_500_000, "1.5ms"),
        (999_999_999, "999.999999ms"),
        (1_000_000_000, "1s"),
        (1_500_000_000, "1.5s"),
        (60_000_000_000, "1m0s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_723_000_000_000, "1h2m3s"),
        (3_723_000_000_001, "1h2m3.000000001s"),
        (-1_500_000_000, "-1.5s"),
        (i64::MIN, "-2562047h47m16.854775808s"),
    ];
    for (nanos, expected) in cases {
        assert_eq!(go_duration(nanos), expected, "{nanos}ns");
    }
}

#[test]
fn int_or_string_forms() {
    let decode_ios = |v: &IntOrString| decode_message(INT_OR_STRING, &v.encode_to_vec());
    assert_eq!(decode_ios(&int_or_string_int(0)).unwrap(), json!(0));
    assert_eq!(decode_ios(&int_or_string_str("")).unwrap(), json!(""));
    assert_eq!(decode_ios(&IntOrString::default()).unwrap(), json!(0));
    let bad = IntOrString {
        r#type: Some(7),
        ..Default::default()
    };
    assert!(decode_ios(&bad).is_err());
    assert_eq!(decode_message(QUANTITY, &[]).unwrap(), json!("0"));
}

#[test]
fn embedded_json_and_nested_protobuf_objects() {
    let with_data = |raw: &[u8]| apps::ControllerRevision {
        metadata: Some(meta::ObjectMeta {
            name: s("rev"),
            managed_fields: vec![meta::ManagedFieldsEntry {
                manager: s("kubectl"),
                operation: s("Update"),
                api_version: s("apps/v1"),
                time: Some(meta::Time {
                    seconds: Some(1_700_000_000),
                    nanos: Some(0),
                }),
                fields_type: s("FieldsV1"),
                fields_v1: Some(meta::FieldsV1 {
                    raw: Some(br#"{"f:data":{}}"#.to_vec()),
                }),
                subresource: s(""),
            }],
            ..Default::default()
        }),
        data: Some(RawExtension {
            raw: Some(raw.to_vec()),
        }),
        revision: Some(3),
    };
    let decode_rev = |raw: &[u8]| {
        decode(&body(
            "apps/v1",
            "ControllerRevision",
            with_data(raw).encode_to_vec(),
        ))
    };
    let decoded = decode_rev(br#"{"spec":{"x":1}}"#).unwrap();
    assert_json(
        &decoded,
        &json!({
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": "rev",
                "managedFields": [{
                    "manager": "kubectl",
                    "operation": "Update",
                    "apiVersion": "apps/v1",
                    "time": "2023-11-14T22:13:20Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:data": {}}
                }]
            },
            "data": {"spec": {"x": 1}},
            "revision": 3
        }),
    );
    let nested_cm = core::ConfigMap {
        data: labels(&[("k", "v")]),
        ..Default::default()
    };
    let nested = body("v1", "ConfigMap", nested_cm.encode_to_vec());
    assert_eq!(
        decode_rev(&nested).unwrap()["data"],
        json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}})
    );
    assert_eq!(decode_rev(b"").unwrap()["data"], Value::Null);
    let err = decode_rev(b"{not json").unwrap_err();
    assert!(
        matches!(&err, ProtoError::Malformed { at, .. } if at == RAW_EXTENSION),
        "{err}"
    );
}

#[test]
fn crd_schemas_with_renamed_fields_and_unions() {
    let leaf = |ty: &str| apiext::JsonSchemaProps {
        r#type: s(ty),
        ..Default::default()
    };
    let schema = apiext::JsonSchemaProps {
        r#type: s("object"),
        minimum: Some(0.0),
        maximum: Some(2.5),
        exclusive_maximum: Some(false),
        x_kubernetes_preserve_unknown_fields: Some(false),
        x_kubernetes_int_or_string: Some(false),
        r#ref: s("#/definitions/x"),
        properties: [
            ("count".to_owned(), leaf("integer")),
            (
                "tags".to_owned(),
                apiext::JsonSchemaProps {
                    r#type: s("array"),
                    items: Some(Box::new(apiext::JsonSchemaPropsOrArray {
                        schema: Some(Box::new(leaf("string"))),
                        j_son_schemas: vec![],
                    })),
                    ..Default::default()
                },
            ),
        ]
        .into(),
        additional_properties: Some(Box::new(apiext::JsonSchemaPropsOrBool {
            allows: Some(false),
            schema: None,
        })),
        default: Some(apiext::Json {
            raw: Some(br#"{"count":1}"#.to_vec()),
        }),
        ..Default::default()
    };
    let decoded = decode_message(JSON_SCHEMA_PROPS, &schema.encode_to_vec()).unwrap();
    assert_json(
        &decoded,
        &json!({
            "$ref": "#/definitions/x",
            "type": "object",
            "default": {"count": 1},
            "maximum": 2.5,
            "minimum": 0,
            "properties": {
                "count": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string"}}
            },
            "additionalProperties": false,
            "x-kubernetes-preserve-unknown-fields": false
        }),
    );
    let allows = apiext::JsonSchemaPropsOrBool {
        allows: Some(true),
        schema: None,
    };
    let or_bool = format!("{APIEXT}.JSONSchemaPropsOrBool");
    assert_eq!(
        decode_message(&or_bool, &allows.encode_to_vec()).unwrap(),
        json!(true)
    );
    let list = apiext::JsonSchemaPropsOrArray {
        schema: None,
        j_son_schemas: vec![leaf("string"), leaf("integer")],
    };
    let or_array = format!("{APIEXT}.JSONSchemaPropsOrArray");
    assert_eq!(
        decode_message(&or_array, &list.encode_to_vec()).unwrap(),
        json!([{"type": "string"}, {"type": "integer"}])
    );
    let deps = apiext::JsonSchemaPropsOrStringArray {
        schema: None,
        property: vec!["a".into()],
    };
    let or_strings = format!("{APIEXT}.JSONSchemaPropsOrStringArray");
    assert_eq!(
        decode_message(&or_strings, &deps.encode_to_vec()).unwrap(),
        json!(["a"])
    );
}

const JSON_SCHEMA_PROPS: &str = "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";

#[test]
fn named_slices_are_lists() {
    use k8s_pb::api::authorization::v1 as authz;
    let review = authz::SubjectAccessReview {
        metadata: None,
        spec: Some(authz::SubjectAccessReviewSpec {
            user: s("jane"),
            extra: [(
                "scopes".to_owned(),
                authz::ExtraValue {
                    items: vec!["a".into(), "b".into()],
                },
            )]
            .into(),
            ..Default::default()
        }),
        status: None,
    };
    let decoded = decode(&body(
        "authorization.k8s.io/v1",
        "SubjectAccessReview",
        review.encode_to_vec(),
    ))
    .unwrap();
    assert_json(
        &decoded["spec"],
        &json!({"user": "jane", "extra": {"scopes": ["a", "b"]}}),
    );
}

#[test]
fn envelope_errors() {
    let raw = core::ConfigMap::default().encode_to_vec();
    assert_eq!(
        decode(b"{\"kind\":\"ConfigMap\"}"),
        Err(ProtoError::BadMagic)
    );
    assert_eq!(decode(b"k8s"), Err(ProtoError::BadMagic));
    let mut cut = body("v1", "ConfigMap", labels_cm());
    cut.pop();
    assert_eq!(
        decode(&cut),
        Err(ProtoError::Envelope(WireError::Truncated))
    );
    assert_eq!(
        decode(&body("example.com/v1", "Widget", raw.clone())),
        Err(ProtoError::UnknownKind {
            api_version: "example.com/v1".into(),
            kind: "Widget".into()
        })
    );
    assert_eq!(
        decode(&body("v1", "", raw.clone())),
        Err(ProtoError::MissingKind)
    );
    let gzip = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s("v1"),
            kind: s("ConfigMap"),
        }),
        raw: Some(raw),
        content_encoding: s("gzip"),
        content_type: None,
    };
    let mut gzip_body = MAGIC.to_vec();
    gzip_body.extend(gzip.encode_to_vec());
    let err = decode(&gzip_body).unwrap_err();
    assert!(matches!(err, ProtoError::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("gzip"));
}

fn labels_cm() -> Vec<u8> {
    core::ConfigMap {
        data: labels(&[("a", "b")]),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn object_errors_name_the_field() {
    // ConfigMap field 4 (immutable, a bool) sent length-delimited.
    let wrong_type = body("v1", "ConfigMap", vec![0x22, 0x01, b'x']);
    let err = decode(&wrong_type).unwrap_err();
    assert_eq!(
        err,
        ProtoError::Malformed {
            at: "api.core.v1.ConfigMap.immutable".into(),
            detail: "a length-delimited value cannot be a Bool".into()
        }
    );
    assert!(err.to_string().contains("api.core.v1.ConfigMap.immutable"));
    // The object is cut inside a map entry, while the envelope itself is whole.
    let mut object = labels_cm();
    object.pop();
    let err = decode(&body("v1", "ConfigMap", object)).unwrap_err();
    assert!(
        matches!(err, ProtoError::Malformed { ref at, .. } if at == "api.core.v1.ConfigMap"),
        "{err}"
    );
}

#[test]
fn nesting_is_bounded() {
    // JSONSchemaProps.not (field 28) nested far beyond any real schema.
    let mut data = Vec::new();
    for _ in 0..(MAX_DEPTH + 5) {
        let mut outer = vec![0xe2, 0x01];
        let mut len = data.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                outer.push(byte);
                break;
            }
            outer.push(byte | 0x80);
        }
        outer.extend(&data);
        data = outer;
    }
    let err = decode_message(JSON_SCHEMA_PROPS, &data).unwrap_err();
    assert!(err.to_string().contains("nest deeper"), "{err}");
}

#[test]
fn never_panics_on_cut_or_corrupted_bodies() {
    let good = body("apps/v1", "Deployment", deployment(3).encode_to_vec());
    for end in 0..good.len() {
        let _ = decode(&good[..end]);
    }
    for i in MAGIC.len()..good.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= flip;
            let _ = decode(&bad);
        }
    }
}

#[test]
fn every_builtin_resource_has_a_kind() {
    let table = table().unwrap();
    for info in crate::builtin::builtin_resources() {
        let api_version = if info.group.is_empty() {
            info.version.clone()
        } else {
            format!("{}/{}", info.group, info.version)
        };
        assert!(
            table.message_of(&api_version, &info.kind).is_some(),
            "no protobuf message for {api_version} {}",
            info.kind
        );
    }
}

/// Walks a message and its schema together: every JSON name must be a property there.
fn check_against_schema(
    table: &Table,
    name: &str,
    node: Node<'_>,
    path: &str,
    visited: &mut HashSet<String>,
    problems: &mut Vec<String>,
) {
    let special = [
        TIME,
        MICRO_TIME,
        DURATION,
        FIELDS_V1,
        INT_OR_STRING,
        QUANTITY,
        RAW_EXTENSION,
    ];
    if special.contains(&name) || name.starts_with(&format!("{APIEXT}.JSON")) {
        return;
    }
    if node.is_unknown() || !visited.insert(name.to_owned()) {
        return;
    }
    let Ok(message) = table.get(name) else {
        problems.push(format!("{path}: no message {name}"));
        return;
    };
    for field in &message.fields {
        let FieldType::Message(child_type) = &field.ty else {
            if !field.inline && !node.has_property(&field.json) {
                problems.push(format!("{path}.{} ({name})", field.json));
            }
            continue;
        };
        if field.inline {
            check_against_schema(table, child_type, node, path, visited, problems);
            continue;
        }
        if !node.has_property(&field.json) {
            problems.push(format!("{path}.{} ({name})", field.json));
            continue;
        }
        let child = node.property(&field.json);
        let child = match field.label {
            Label::Singular => child,
            Label::Repeated => child.items(),
            Label::Map(_) => child.additional_properties(),
        };
        let child_path = format!("{path}.{}", field.json);
        let is_slice = table.get(child_type).is_ok_and(|m| m.slice);
        if !is_slice {
            check_against_schema(table, child_type, child, &child_path, visited, problems);
        }
    }
}

#[test]
fn json_names_match_the_openapi_schemas() {
    use k8s_openapi::api::{authentication, authorization, autoscaling, policy};
    let table = table().unwrap();
    let mut schemas: Vec<(String, String, Arc<crate::resources::SchemaInfo>)> = Vec::new();
    for info in crate::builtin::builtin_resources() {
        let api_version = if info.group.is_empty() {
            info.version.clone()
        } else {
            format!("{}/{}", info.group, info.version)
        };
        if let Some(schema) = &info.schema {
            schemas.push((api_version, info.kind.clone(), schema.clone()));
        }
    }
    use crate::builtin::schema_of;
    let extra = [
        (
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            schema_of::<authorization::v1::SelfSubjectAccessReview>(),
        ),
        (
            "authorization.k8s.io/v1",
            "SelfSubjectRulesReview",
            schema_of::<authorization::v1::SelfSubjectRulesReview>(),
        ),
        (
            "authorization.k8s.io/v1",
            "SubjectAccessReview",
            schema_of::<authorization::v1::SubjectAccessReview>(),
        ),
        (
            "authorization.k8s.io/v1",
            "LocalSubjectAccessReview",
            schema_of::<authorization::v1::LocalSubjectAccessReview>(),
        ),
        (
            "authentication.k8s.io/v1",
            "TokenReview",
            schema_of::<authentication::v1::TokenReview>(),
        ),
        (
            "authentication.k8s.io/v1",
            "TokenRequest",
            schema_of::<authentication::v1::TokenRequest>(),
        ),
        (
            "authentication.k8s.io/v1",
            "SelfSubjectReview",
            schema_of::<authentication::v1::SelfSubjectReview>(),
        ),
        (
            "autoscaling/v1",
            "Scale",
            schema_of::<autoscaling::v1::Scale>(),
        ),
        ("policy/v1", "Eviction", schema_of::<policy::v1::Eviction>()),
        (
            "meta.k8s.io/v1",
            "DeleteOptions",
            schema_of::<k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions>(),
        ),
    ];
    for (api_version, kind, schema) in extra {
        schemas.push((api_version.into(), kind.into(), Arc::new(schema)));
    }
    let mut problems = Vec::new();
    for (api_version, kind, schema) in &schemas {
        let message = table.message_of(api_version, kind).unwrap();
        let node = Node::new(&schema.root, Some(&schema.defs));
        let mut visited = HashSet::new();
        check_against_schema(
            table,
            &message.name,
            node,
            kind,
            &mut visited,
            &mut problems,
        );
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "JSON names not in the OpenAPI schemas:\n{}",
        problems.join("\n")
    );
}
