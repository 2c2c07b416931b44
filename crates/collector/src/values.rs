//! The collector's values: decoded from `spec.collector.configuration` (base64 of YAML),
//! merged over the per-cluster overlay and the defaults, and read into a typed schema. Errors
//! say exactly where the input is wrong without ever quoting it (the values may hold
//! credentials).

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, SecurityContext, Toleration};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The values schema (documented in docs/collector.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Values {
    /// The image: `<repository>/<name>:<tag>`.
    pub image: Image,
    /// Pods.
    pub replicas: i32,
    /// Container resources.
    pub resources: ResourceRequirements,
    /// Extra environment variables.
    pub env: Vec<EnvVar>,
    /// Content of the collector's config file (stored in a Secret: it may hold credentials).
    pub config: String,
    /// File name of the config in the mounted directory.
    pub config_file_name: String,
    /// Container arguments; `{configFile}` is replaced by the config file's path.
    pub args: Vec<String>,
    /// Service ports (also the container ports).
    pub service: ServiceValues,
    /// The Prometheus-operator ServiceMonitor.
    pub service_monitor: ServiceMonitorValues,
    /// Extra pod annotations.
    pub pod_annotations: BTreeMap<String, String>,
    /// Pod node selector.
    pub node_selector: BTreeMap<String, String>,
    /// Pod tolerations.
    pub tolerations: Vec<Toleration>,
    /// Container security context.
    pub security_context: SecurityContext,
}

/// Image coordinates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// Registry and path, e.g. `ghcr.io/kubecrew`.
    pub repository: String,
    /// Image name; default the collector's name.
    pub name: Option<String>,
    /// Tag; default the collector's version.
    pub tag: Option<String>,
    /// Pull policy.
    pub pull_policy: String,
}

/// Service settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceValues {
    /// Ports.
    pub ports: Vec<PortValues>,
}

/// One port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortValues {
    /// Port name (a DNS label).
    pub name: String,
    /// Port number, on the Service and the container.
    pub port: i32,
    /// TCP or UDP.
    #[serde(default = "tcp")]
    pub protocol: String,
}

fn tcp() -> String {
    "TCP".into()
}

/// ServiceMonitor settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorValues {
    /// Whether to create it (when the CRD is served).
    pub enabled: bool,
    /// Scrape interval.
    pub interval: String,
    /// The port (name) scraped.
    pub port: String,
}

/// The defaults every Collector starts from.
pub fn defaults() -> Value {
    serde_json::json!({
        "image": {"repository": "ghcr.io/kubecrew", "pullPolicy": "IfNotPresent"},
        "replicas": 1,
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                      "limits": {"cpu": "500m", "memory": "256Mi"}},
        "env": [],
        "config": "",
        "configFileName": "config.yaml",
        "args": ["--config={configFile}"],
        "service": {"ports": [{"name": "metrics", "port": 8888, "protocol": "TCP"}]},
        "serviceMonitor": {"enabled": true, "interval": "30s", "port": "metrics"},
        "podAnnotations": {},
        "nodeSelector": {},
        "tolerations": [],
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]}
        }
    })
}

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
    /// A value has the wrong type.
    #[error("values.{path}: {problem}")]
    Type {
        /// Where.
        path: String,
        /// What is expected.
        problem: String,
    },
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

/// Typed values and the keys the schema does not know (reported, not dropped silently).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The values.
    pub values: Values,
    /// Unknown keys, as paths (`service.extra`).
    pub unknown: Vec<String>,
}

/// Reads merged values into the schema.
pub fn parse(merged: Value) -> Result<Parsed, ValuesError> {
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let deserializer = serde_ignored::Deserializer::new(merged, &mut record);
    let values: Values = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        ValuesError::Type {
            path,
            problem: expected_only(&e.inner().to_string()),
        }
    })?;
    unknown.sort();
    Ok(Parsed { values, unknown })
}

/// serde's messages quote the offending value ("invalid type: string \"s3cret\", expected
/// i32"): keep only what was expected.
fn expected_only(message: &str) -> String {
    match message.find("expected") {
        Some(i) => format!("wrong type or value, {}", &message[i..]),
        None if message.starts_with("missing field") => message.to_owned(),
        None => "wrong type or value".to_owned(),
    }
}

/// Values for a Collector: defaults <- the cluster's overlay <- its configuration.
pub fn resolve(overlay: Option<&Value>, configuration: &str) -> Result<Parsed, ValuesError> {
    let mut merged = defaults();
    if let Some(overlay) = overlay {
        merge(&mut merged, overlay);
    }
    merge(&mut merged, &decode(configuration)?);
    parse(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn defaults_alone_are_valid() {
        let parsed = resolve(None, "").unwrap();
        assert_eq!(parsed.values.replicas, 1);
        assert_eq!(parsed.values.image.repository, "ghcr.io/kubecrew");
        assert!(parsed.values.service_monitor.enabled);
        assert!(parsed.unknown.is_empty());
    }

    #[test]
    fn configuration_overrides_overlay_overrides_defaults() {
        let overlay = json!({"image": {"repository": "registry.dev.local/collectors"},
                             "replicas": 2});
        let config = b64("replicas: 3\nserviceMonitor:\n  enabled: false\n");
        let parsed = resolve(Some(&overlay), &config).unwrap();
        assert_eq!(parsed.values.replicas, 3);
        assert_eq!(
            parsed.values.image.repository,
            "registry.dev.local/collectors"
        );
        assert_eq!(
            parsed.values.image.pull_policy, "IfNotPresent",
            "deep merge"
        );
        assert!(!parsed.values.service_monitor.enabled);
        assert_eq!(parsed.values.service_monitor.interval, "30s");
    }

    #[test]
    fn unknown_keys_are_reported() {
        let parsed = resolve(None, &b64("replica: 3\nservice:\n  typo: 1\n")).unwrap();
        assert_eq!(parsed.unknown, ["replica", "service.typo"]);
    }

    #[test]
    fn bad_input_is_located_without_quoting_it() {
        assert!(matches!(resolve(None, "%%%"), Err(ValuesError::Base64(_))));
        let err = resolve(None, &b64("a: [unclosed\n")).unwrap_err();
        assert!(matches!(err, ValuesError::Yaml(_)), "{err}");
        assert_eq!(
            resolve(None, &b64("- a\n- b\n")).unwrap_err(),
            ValuesError::NotAMapping
        );
        let err = resolve(None, &b64("replicas: s3cret-token\n")).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("values.replicas: "), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        let err = resolve(
            None,
            &b64("service:\n  ports:\n  - name: m\n    port: nope\n"),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("values.service.ports[0].port"),
            "{err}"
        );
        assert!(!err.to_string().contains("nope"));
    }
}
