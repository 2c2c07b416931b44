//! The release's values: `spec.collector.configuration` (base64 of YAML) decoded and merged
//! over the operator's per-cluster overlay. What is valid is the chart's business (its
//! `values.schema.json`, checked by helm); here only the encoding is. Errors say where the input
//! is wrong without ever quoting it (values may hold credentials), and [`redact`] keeps values
//! out of any text that leaves the process.

use base64::Engine;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Why the values cannot be used; the message names the place, never the content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValuesError {
    /// `configuration` is not base64.
    #[error("spec.collector.configuration is not valid base64: {0}")]
    Base64(String),
    /// The decoded bytes are not UTF-8.
    #[error("spec.collector.configuration does not decode to UTF-8 text")]
    Utf8,
    /// The decoded text is not YAML.
    #[error("spec.collector.configuration is not valid YAML{0}")]
    Yaml(String),
    /// The YAML is not a mapping.
    #[error("spec.collector.configuration must be a YAML mapping of values")]
    NotAMapping,
}

/// The decoded `configuration` as JSON (an empty string is no values).
pub fn decode(configuration: &str) -> Result<Value, ValuesError> {
    let trimmed: String = configuration.split_whitespace().collect();
    if trimmed.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(trimmed.as_bytes())
        .map_err(|e| ValuesError::Base64(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| ValuesError::Utf8)?;
    let value: Value = serde_saphyr::from_str(&text).map_err(|e| {
        // The parser's message can quote the input: report the position only.
        let at = e
            .location()
            .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
            .unwrap_or_default();
        ValuesError::Yaml(at)
    })?;
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Ok(Value::Object(Map::new())),
        _ => Err(ValuesError::NotAMapping),
    }
}

/// Merges `over` into `base`: mappings merge key by key, anything else replaces.
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// The values for a release: the cluster's overlay, with the decoded configuration on top.
pub fn resolve(overlay: Option<&Value>, configuration: &str) -> Result<Value, ValuesError> {
    let mut merged = overlay
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    merge(&mut merged, &decode(configuration)?);
    Ok(merged)
}

/// SHA-256 (hex) of the values in canonical form (keys sorted, no whitespace): equal values
/// hash equal, whatever order or layout the YAML had. Shown in the status instead of values.
pub fn hash(values: &Value) -> String {
    hex::encode(Sha256::digest(canonical(values).to_string().as_bytes()))
}

/// `value` with every mapping's keys in sorted order (the workspace's serde_json keeps
/// insertion order, so equal mappings could otherwise print differently).
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// The shortest value string that is hidden from messages: shorter ones (`true`, `TCP`) are
/// words of any message and not secrets.
const REDACT_MIN: usize = 4;

/// `text` with every string of `values` (and the text form of each leaf) at least
/// [`REDACT_MIN`] long replaced by `[redacted]`, longest first: helm's and the API server's
/// errors can quote rendered values, and those may be credentials.
pub fn redact(text: &str, values: &Value) -> String {
    let mut secrets = Vec::new();
    collect_leaves(values, &mut secrets);
    secrets.retain(|s| s.chars().count() >= REDACT_MIN);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    let mut out = text.to_owned();
    for secret in &secrets {
        out = out.replace(secret.as_str(), "[redacted]");
    }
    out
}

fn collect_leaves(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            out.push(s.clone());
            // A multi-line value (a config file) is quoted line by line as often as whole.
            out.extend(s.lines().map(str::trim).map(str::to_owned));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_leaves(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_leaves(v, out)),
        Value::Number(_) | Value::Bool(_) | Value::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn no_configuration_is_the_overlay() {
        assert_eq!(resolve(None, "").unwrap(), json!({}));
        let overlay = json!({"image": {"repository": "r"}});
        assert_eq!(resolve(Some(&overlay), " \n").unwrap(), overlay);
    }

    #[test]
    fn configuration_overrides_the_overlay_key_by_key() {
        let overlay = json!({"image": {"repository": "registry.dev.local/collectors",
                                       "pullPolicy": "Always"},
                             "replicas": 2, "tolerations": [{"operator": "Exists"}]});
        let config = b64("replicas: 3\nimage:\n  pullPolicy: IfNotPresent\ntolerations: []\n");
        let values = resolve(Some(&overlay), &config).unwrap();
        assert_eq!(
            values,
            json!({"image": {"repository": "registry.dev.local/collectors",
                             "pullPolicy": "IfNotPresent"},
                   "replicas": 3, "tolerations": []})
        );
    }

    #[test]
    fn unknown_keys_are_the_charts_business() {
        let values = resolve(None, &b64("replica: 3\nservice:\n  typo: 1\n")).unwrap();
        assert_eq!(values, json!({"replica": 3, "service": {"typo": 1}}));
    }

    #[test]
    fn bad_input_is_located_without_quoting_it() {
        assert!(matches!(resolve(None, "%%%"), Err(ValuesError::Base64(_))));
        let err = resolve(None, &b64("a: [s3cret-unclosed\n")).unwrap_err();
        assert!(matches!(err, ValuesError::Yaml(_)), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert_eq!(
            resolve(None, &b64("- a\n- b\n")).unwrap_err(),
            ValuesError::NotAMapping
        );
        assert_eq!(
            resolve(
                None,
                &base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe])
            )
            .unwrap_err(),
            ValuesError::Utf8
        );
    }

    #[test]
    fn the_hash_ignores_layout_and_follows_content() {
        let a = resolve(None, &b64("a: 1\nb: {c: x}\n")).unwrap();
        let b = resolve(None, &b64("b:\n  c: x\na: 1\n")).unwrap();
        assert_eq!(hash(&a), hash(&b));
        let c = resolve(None, &b64("a: 2\nb: {c: x}\n")).unwrap();
        assert_ne!(hash(&a), hash(&c));
        assert_eq!(hash(&a).len(), 64);
    }

    #[test]
    fn redaction_hides_every_value_string() {
        let values = json!({"token": "s3cret-token", "config": "user: alice\npass: hunter22\n",
                            "tls": true, "proto": "TCP", "port": 8080});
        let message = "error: Secret x: invalid value \"s3cret-token\" near pass: hunter22 (TCP)";
        let redacted = redact(message, &values);
        assert!(!redacted.contains("s3cret"), "{redacted}");
        assert!(!redacted.contains("hunter22"), "{redacted}");
        assert!(redacted.contains("(TCP)"), "short words stay: {redacted}");
        assert_eq!(redact("nothing to hide", &json!({})), "nothing to hide");
    }
}
