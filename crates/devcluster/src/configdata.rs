//! The rules of ConfigMaps and Secrets that upstream enforces beyond their schema, as pure
//! functions over the JSON object:
//!
//! - Secret `data` (and ConfigMap `binaryData`) values are `[]byte`, which JSON carries as
//!   standard base64: anything else does not decode ([`check_base64`]);
//! - Secret `stringData` is write-only: merged into `data` (it wins for the same key) and never
//!   stored ([`merge_string_data`], upstream's v1 -> internal conversion);
//! - keys are config keys, a Secret's `type` cannot change and its type-specific keys must be
//!   there, sizes are bounded ([`validate`]);
//! - once `immutable: true`, `data`/`binaryData` and `immutable` itself are frozen
//!   ([`validate_update`], `ValidateConfigMapUpdate`/`ValidateSecretUpdate`).

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::validation::FieldError;

/// Upstream's `MaxSecretSize`: the total of a Secret's or ConfigMap's data (1 MiB).
pub const MAX_SIZE: usize = 1024 * 1024;

/// The message of an immutability violation, as upstream words it.
pub const IMMUTABLE: &str = "field is immutable when `immutable` is set";

/// Why a value is not what JSON carries a `[]byte` as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not standard, padded base64 (Go's `encoding/base64` message).
    #[error("illegal base64 data at input byte {0}")]
    IllegalBase64(usize),
    /// A byte field holding something other than a string.
    #[error("json: cannot unmarshal {found} into Go struct field {field} of type []uint8")]
    NotAString {
        /// The field, e.g. `Secret.data`.
        field: String,
        /// What was there instead, in Go's words (`number`, `bool`, ...).
        found: &'static str,
    },
}

/// Decodes standard padded base64 as Go's `base64.StdEncoding` does: `\r` and `\n` are
/// skipped, the error names the offending byte's offset.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, DecodeError> {
    const ENGINE: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical),
    );
    // Offsets in the cleaned text map back to the original through `positions`.
    let mut cleaned = Vec::with_capacity(text.len());
    let mut positions = Vec::with_capacity(text.len());
    for (i, b) in text.bytes().enumerate() {
        if b != b'\r' && b != b'\n' {
            cleaned.push(b);
            positions.push(i);
        }
    }
    let at = |i: usize| positions.get(i).copied().unwrap_or(text.len());
    ENGINE.decode(&cleaned).map_err(|e| {
        let offset = match e {
            base64::DecodeError::InvalidByte(i, _)
            | base64::DecodeError::InvalidLastSymbol(i, _) => at(i),
            // Go reports a truncated quantum at the end of the input.
            base64::DecodeError::InvalidLength(_) | base64::DecodeError::InvalidPadding => {
                at(cleaned.len() - cleaned.len() % 4)
            }
        };
        DecodeError::IllegalBase64(offset)
    })
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The byte-valued maps of a kind: `data` of a Secret, `binaryData` of a ConfigMap.
fn byte_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Secret" => &["data"],
        "ConfigMap" => &["binaryData"],
        _ => &[],
    }
}

/// Checks that every byte value decodes (base64 strings, `null` counts as empty), as the
/// server's JSON decoding of the object would.
pub fn check_base64(kind: &str, obj: &Value) -> Result<(), DecodeError> {
    for field in byte_fields(kind) {
        let Some(map) = obj.get(*field).and_then(Value::as_object) else {
            continue;
        };
        for value in map.values() {
            match value {
                Value::String(s) => {
                    decode_base64(s)?;
                }
                Value::Null => {}
                other => {
                    return Err(DecodeError::NotAString {
                        field: format!("{kind}.{field}"),
                        found: json_type(other),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Merges a Secret's `stringData` into `data` (base64 of the UTF-8 text, replacing a `data`
/// value of the same key) and drops it. Non-string values are left for validation.
pub fn merge_string_data(obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let Some(string_data) = map.remove("stringData") else {
        return;
    };
    let Value::Object(string_data) = string_data else {
        return;
    };
    if string_data.is_empty() {
        return;
    }
    let slot = map.entry("data").or_insert(Value::Null);
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    if let Some(data) = slot.as_object_mut() {
        for (key, value) in string_data {
            let text = match value {
                Value::String(s) => s,
                Value::Null => String::new(),
                other => other.to_string(),
            };
            data.insert(
                key,
                json!(base64::engine::general_purpose::STANDARD.encode(text.as_bytes())),
            );
        }
    }
}

/// Upstream's `IsConfigMapKey`.
fn config_key_errors(key: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if key.len() > 253 {
        errors.push("must be no more than 253 characters".to_owned());
    }
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        errors.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_owned());
    }
    if key == "." {
        errors.push("must not be '.'".to_owned());
    } else if key == ".." {
        errors.push("must not be '..'".to_owned());
    } else if key.starts_with("..") {
        errors.push("must not start with '..'".to_owned());
    }
    errors
}

fn map_of<'a>(obj: &'a Value, field: &str) -> Option<&'a Map<String, Value>> {
    obj.get(field).and_then(Value::as_object)
}

/// The decoded length of a byte value (0 for what does not decode; [`check_base64`] says so).
fn byte_len(value: &Value) -> usize {
    value
        .as_str()
        .and_then(|s| decode_base64(s).ok())
        .map_or(0, |b| b.len())
}

fn has_key(obj: &Value, key: &str) -> bool {
    map_of(obj, "data").is_some_and(|d| d.contains_key(key))
}

fn data_bytes(obj: &Value, key: &str) -> Vec<u8> {
    map_of(obj, "data")
        .and_then(|d| d.get(key))
        .and_then(Value::as_str)
        .and_then(|s| decode_base64(s).ok())
        .unwrap_or_default()
}

/// `ValidateConfigMap` / `ValidateSecret` (metadata is validated elsewhere).
pub fn validate(kind: &str, obj: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let fields: &[&str] = match kind {
        "ConfigMap" => &["data", "binaryData"],
        "Secret" => &["data"],
        _ => return errors,
    };
    let mut total = 0usize;
    for field in fields {
        let Some(map) = map_of(obj, field) else {
            continue;
        };
        for (key, value) in map {
            for msg in config_key_errors(key) {
                errors.push(FieldError::invalid(
                    &format!("{field}[{key}]"),
                    &json!(key),
                    &msg,
                ));
            }
            if *field == "data"
                && kind == "ConfigMap"
                && map_of(obj, "binaryData").is_some_and(|b| b.contains_key(key))
            {
                errors.push(FieldError::invalid(
                    &format!("data[{key}]"),
                    &json!(key),
                    "duplicate of key present in binaryData",
                ));
            }
            total += if *field == "data" && kind == "ConfigMap" {
                value.as_str().map_or(0, str::len)
            } else {
                byte_len(value)
            };
        }
    }
    if total > MAX_SIZE {
        let field = if kind == "Secret" { "data" } else { "" };
        errors.push(FieldError {
            reason: "FieldValueTooLong",
            field: field.to_owned(),
            message: format!("{field}: Too long: may not be more than {MAX_SIZE} bytes"),
        });
    }
    if kind == "Secret" {
        errors.extend(validate_secret_type(obj));
    }
    errors
}

/// The keys a Secret's `type` requires.
fn validate_secret_type(obj: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let required = |key: &str| FieldError::required(&format!("data[{key}]"), "");
    match obj.get("type").and_then(Value::as_str).unwrap_or("") {
        "kubernetes.io/service-account-token" => {
            let named = obj
                .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            if !named {
                errors.push(FieldError::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        t @ ("kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson") => {
            let key = if t == "kubernetes.io/dockercfg" {
                ".dockercfg"
            } else {
                ".dockerconfigjson"
            };
            if !has_key(obj, key) {
                errors.push(required(key));
            } else if let Err(e) =
                serde_json::from_slice::<Map<String, Value>>(&data_bytes(obj, key))
            {
                errors.push(FieldError::invalid(
                    &format!("data[{key}]"),
                    &json!("<secret contents redacted>"),
                    &e.to_string(),
                ));
            }
        }
        "kubernetes.io/basic-auth" if !has_key(obj, "username") && !has_key(obj, "password") => {
            errors.push(required("username"));
            errors.push(required("password"));
        }
        "kubernetes.io/ssh-auth" if data_bytes(obj, "ssh-privatekey").is_empty() => {
            errors.push(required("ssh-privatekey"));
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has_key(obj, key) {
                    errors.push(required(key));
                }
            }
        }
        _ => {}
    }
    errors
}

/// A map-valued field as Go's `reflect.DeepEqual` of two decoded objects sees it, after
/// defaulting: missing, `null` and `{}` are all the empty map.
fn same_map(old: &Value, new: &Value, field: &str) -> bool {
    let empty = Map::new();
    map_of(old, field).unwrap_or(&empty) == map_of(new, field).unwrap_or(&empty)
}

fn is_immutable(obj: &Value) -> bool {
    obj.get("immutable").and_then(Value::as_bool) == Some(true)
}

/// `ValidateConfigMapUpdate` / `ValidateSecretUpdate`: the immutability rules and a Secret's
/// fixed `type`.
pub fn validate_update(kind: &str, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let frozen: &[&str] = match kind {
        "ConfigMap" => &["data", "binaryData"],
        "Secret" => &["data"],
        _ => return errors,
    };
    if kind == "Secret" {
        let old_type = old.get("type").and_then(Value::as_str).unwrap_or("");
        let new_type = new.get("type").and_then(Value::as_str).unwrap_or("");
        if old_type != new_type {
            errors.push(FieldError::invalid(
                "type",
                &json!(new_type),
                "field is immutable",
            ));
        }
    }
    if is_immutable(old) {
        if !is_immutable(new) {
            errors.push(FieldError::forbidden("immutable", IMMUTABLE));
        }
        for field in frozen {
            if !same_map(old, new, field) {
                errors.push(FieldError::forbidden(field, IMMUTABLE));
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_go_decodes_it() {
        assert_eq!(decode_base64("YWxpY2U=").unwrap(), b"alice");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("YWxp\nY2U=\r\n").unwrap(), b"alice");
        assert_eq!(
            decode_base64("not base64!"),
            Err(DecodeError::IllegalBase64(3))
        );
        assert_eq!(
            decode_base64("YWxpY2U"),
            Err(DecodeError::IllegalBase64(4)),
            "padding is required"
        );
        assert_eq!(
            decode_base64("YWxpY2U_").unwrap_err().to_string(),
            "illegal base64 data at input byte 7"
        );
        assert!(decode_base64("YQ==").is_ok());
        assert!(
            decode_base64("YR==").is_ok(),
            "trailing bits allowed, as Go's StdEncoding"
        );
    }

    #[test]
    fn byte_fields_must_decode() {
        assert!(check_base64("Secret", &json!({"data": {"a": "YQ==", "b": null}})).is_ok());
        let e = check_base64("Secret", &json!({"data": {"a": "not base64!"}})).unwrap_err();
        assert!(e.to_string().contains("illegal base64 data"), "{e}");
        assert!(check_base64("ConfigMap", &json!({"data": {"a": "not base64!"}})).is_ok());
        assert!(check_base64("ConfigMap", &json!({"binaryData": {"a": "%%"}})).is_err());
        assert!(matches!(
            check_base64("Secret", &json!({"data": {"a": 1}})),
            Err(DecodeError::NotAString { .. })
        ));
    }

    #[test]
    fn string_data_wins_and_disappears() {
        let mut secret = json!({"data": {"user": "eA==", "other": "eQ=="},
                                "stringData": {"user": "alice", "pw": "p@ss"}});
        merge_string_data(&mut secret);
        assert_eq!(
            secret,
            json!({"data": {"user": "YWxpY2U=", "other": "eQ==", "pw": "cEBzcw=="}})
        );
        let mut only = json!({"stringData": {"k": "é"}});
        merge_string_data(&mut only);
        assert_eq!(only, json!({"data": {"k": "w6k="}}));
        let mut empty = json!({"stringData": {}});
        merge_string_data(&mut empty);
        assert_eq!(empty, json!({}));
    }

    #[test]
    fn keys_types_and_sizes() {
        assert!(validate("ConfigMap", &json!({"data": {"ok.key_-1": "v"}})).is_empty());
        let errs = validate("ConfigMap", &json!({"data": {"bad/key": "v", "..": "v"}}));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].field, "data[bad/key]");
        let dup = validate(
            "ConfigMap",
            &json!({"data": {"k": "v"}, "binaryData": {"k": "dg=="}}),
        );
        assert!(
            dup[0]
                .message
                .contains("duplicate of key present in binaryData")
        );
        let tls = validate(
            "Secret",
            &json!({"type": "kubernetes.io/tls", "data": {"tls.crt": ""}}),
        );
        assert_eq!(tls.len(), 1);
        assert_eq!(tls[0].field, "data[tls.key]");
        let docker = validate(
            "Secret",
            &json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "bm9wZQ=="}}),
        );
        assert_eq!(docker.len(), 1, "not JSON: {docker:?}");
        let big = "a".repeat(MAX_SIZE + 1);
        let errs = validate("ConfigMap", &json!({"data": {"k": big}}));
        assert_eq!(errs[0].reason, "FieldValueTooLong");
    }

    #[test]
    fn immutable_freezes_data_not_metadata() {
        let old = json!({"metadata": {"labels": {}}, "immutable": true, "data": {"k": "v"}});
        let labels =
            json!({"metadata": {"labels": {"a": "b"}}, "immutable": true, "data": {"k": "v"}});
        assert!(validate_update("ConfigMap", &old, &labels).is_empty());
        let changed = json!({"immutable": true, "data": {"k": "w"}});
        let errs = validate_update("ConfigMap", &old, &changed);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "data");
        assert_eq!(errs[0].message, format!("data: Forbidden: {IMMUTABLE}"));
        let unfrozen = json!({"immutable": false, "data": {"k": "v"}});
        assert_eq!(
            validate_update("ConfigMap", &old, &unfrozen)[0].field,
            "immutable"
        );
        let dropped = json!({"data": {"k": "v"}});
        assert_eq!(
            validate_update("ConfigMap", &old, &dropped)[0].field,
            "immutable"
        );
        let binary = json!({"immutable": true, "data": {"k": "v"}, "binaryData": {"b": "YQ=="}});
        assert_eq!(
            validate_update("ConfigMap", &old, &binary)[0].field,
            "binaryData"
        );
        // Mutable objects change freely; freezing is a change too.
        let mutable = json!({"data": {"k": "v"}});
        assert!(validate_update("ConfigMap", &mutable, &changed).is_empty());
        let secret = json!({"type": "Opaque", "immutable": true, "data": {"k": "dg=="}});
        let edited = json!({"type": "Opaque", "immutable": true, "data": {"k": "dw=="}});
        assert_eq!(validate_update("Secret", &secret, &edited)[0].field, "data");
        let retyped =
            json!({"type": "kubernetes.io/tls", "immutable": true, "data": {"k": "dg=="}});
        assert_eq!(
            validate_update("Secret", &secret, &retyped)[0].field,
            "type"
        );
    }
}
