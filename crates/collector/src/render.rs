//! The collector "chart": typed objects rendered from a Collector and its values, as pure
//! functions (the release's ServiceAccount, config Secret, Deployment, Service and
//! ServiceMonitor).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodSpec, PodTemplateSpec, Secret, SecretVolumeSource, Service,
    ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::resource::Collector;
use crate::values::Values;

/// Where the config Secret is mounted.
pub const CONFIG_DIR: &str = "/etc/collector";
/// Label naming the release (and selecting its pods).
pub const RELEASE_LABEL: &str = "collector.kubecrew.io/release";
/// Pod annotation carrying the config hash, so a config change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "collector.kubecrew.io/config-hash";

/// Why a Collector cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// `tenant.reference` does not make a namespace name.
    #[error(
        "spec.tenant.reference {0:?} is not a valid namespace name once lower-cased (at most 63 characters: a-z, 0-9 and '-', starting and ending with a letter or digit)"
    )]
    Namespace(String),
    /// The release name is not a valid object name.
    #[error(
        "the release name {0:?} (spec.collector.name-spec.tenant.instance) is not a valid object name (at most 63 lower-case letters, digits and '-')"
    )]
    Release(String),
}

/// Everything a Collector installs.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The target namespace.
    pub namespace: String,
    /// `<collector.name>-<tenant.instance>`.
    pub release: String,
    /// SHA-256 of the config file content.
    pub config_hash: String,
    /// The release's ServiceAccount.
    pub service_account: ServiceAccount,
    /// The Secret holding the config file.
    pub secret: Secret,
    /// The collector Deployment.
    pub deployment: Deployment,
    /// Its Service.
    pub service: Service,
    /// The ServiceMonitor, when enabled (applied only if the CRD is served).
    pub service_monitor: Option<Value>,
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The target namespace: the lower-cased tenant reference.
pub fn namespace(c: &Collector) -> Result<String, RenderError> {
    let ns = c.spec.tenant.reference.to_lowercase();
    if is_dns_label(&ns) {
        Ok(ns)
    } else {
        Err(RenderError::Namespace(c.spec.tenant.reference.clone()))
    }
}

/// The release name.
pub fn release(c: &Collector) -> Result<String, RenderError> {
    let name = format!("{}-{}", c.spec.collector.name, c.spec.tenant.instance);
    if is_dns_label(&name) {
        Ok(name)
    } else {
        Err(RenderError::Release(name))
    }
}

/// SHA-256 (hex) of the config file content.
pub fn config_hash(values: &Values) -> String {
    hex::encode(Sha256::digest(values.config.as_bytes()))
}

/// Renders every object of the release.
pub fn render(c: &Collector, values: &Values) -> Result<Rendered, RenderError> {
    let namespace = namespace(c)?;
    let release = release(c)?;
    let hash = config_hash(values);
    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            c.spec.collector.name.clone(),
        ),
        (RELEASE_LABEL.to_owned(), release.clone()),
        (
            "app.kubernetes.io/version".to_owned(),
            c.spec.collector.version.clone(),
        ),
        (
            "collector.kubecrew.io/tenant".to_owned(),
            c.spec.tenant.id.clone(),
        ),
    ]);
    let selector = BTreeMap::from([(RELEASE_LABEL.to_owned(), release.clone())]);
    let meta = |name: String| ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.clone()),
        labels: Some(labels.clone()),
        ..ObjectMeta::default()
    };
    let secret_name = format!("{release}-config");
    let secret = Secret {
        metadata: meta(secret_name.clone()),
        data: Some(BTreeMap::from([(
            values.config_file_name.clone(),
            ByteString(values.config.clone().into_bytes()),
        )])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    let service_account = ServiceAccount {
        metadata: meta(release.clone()),
        ..ServiceAccount::default()
    };
    let image = format!(
        "{}/{}:{}",
        values.image.repository.trim_end_matches('/'),
        values
            .image
            .name
            .clone()
            .unwrap_or_else(|| c.spec.collector.name.clone()),
        values
            .image
            .tag
            .clone()
            .unwrap_or_else(|| c.spec.collector.version.clone())
    );
    let config_file = format!("{CONFIG_DIR}/{}", values.config_file_name);
    let mut annotations = values.pod_annotations.clone();
    annotations.insert(CONFIG_HASH_ANNOTATION.into(), hash.clone());
    let mut pod_labels = labels.clone();
    pod_labels.extend(selector.clone());
    let container = Container {
        name: "collector".into(),
        image: Some(image),
        image_pull_policy: Some(values.image.pull_policy.clone()),
        args: Some(
            values
                .args
                .iter()
                .map(|a| a.replace("{configFile}", &config_file))
                .collect(),
        ),
        env: (!values.env.is_empty()).then(|| values.env.clone()),
        ports: Some(
            values
                .service
                .ports
                .iter()
                .map(|p| ContainerPort {
                    name: Some(p.name.clone()),
                    container_port: p.port,
                    protocol: Some(p.protocol.clone()),
                    ..ContainerPort::default()
                })
                .collect(),
        ),
        resources: Some(values.resources.clone()),
        security_context: Some(values.security_context.clone()),
        volume_mounts: Some(vec![VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let deployment = Deployment {
        metadata: meta(release.clone()),
        spec: Some(DeploymentSpec {
            replicas: Some(values.replicas),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(release.clone()),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "config".into(),
                        secret: Some(SecretVolumeSource {
                            secret_name: Some(secret_name),
                            ..SecretVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    node_selector: (!values.node_selector.is_empty())
                        .then(|| values.node_selector.clone()),
                    tolerations: (!values.tolerations.is_empty())
                        .then(|| values.tolerations.clone()),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    };
    let service = Service {
        metadata: meta(release.clone()),
        spec: Some(ServiceSpec {
            selector: Some(selector.clone()),
            ports: Some(
                values
                    .service
                    .ports
                    .iter()
                    .map(|p| ServicePort {
                        name: Some(p.name.clone()),
                        port: p.port,
                        target_port: Some(IntOrString::String(p.name.clone())),
                        protocol: Some(p.protocol.clone()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        status: None,
    };
    let service_monitor = values.service_monitor.enabled.then(|| {
        json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": release, "namespace": namespace, "labels": labels},
            "spec": {
                "selector": {"matchLabels": selector},
                "endpoints": [{"port": values.service_monitor.port,
                               "interval": values.service_monitor.interval}]
            }
        })
    });
    Ok(Rendered {
        namespace,
        release,
        config_hash: hash,
        service_account,
        secret,
        deployment,
        service,
        service_monitor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values;
    use base64::Engine;

    fn collector(reference: &str, configuration: &str) -> Collector {
        serde_json::from_value(json!({
            "apiVersion": "collector.kubecrew.io/v1alpha1",
            "kind": "Collector",
            "metadata": {"name": "acme-otel"},
            "spec": {
                "collector": {"name": "otel", "version": "0.98.0",
                              "configuration": base64::engine::general_purpose::STANDARD.encode(configuration)},
                "tenant": {"id": "t-42", "reference": reference, "instance": "main"},
                "cluster": "dev"
            }
        }))
        .unwrap()
    }

    /// Renders and compares with `tests/golden/<name>.yaml` (`UPDATE_GOLDEN=1` rewrites it).
    fn golden(name: &str, c: &Collector, overlay: Option<&Value>) {
        let parsed = values::resolve(overlay, &c.spec.collector.configuration).unwrap();
        let r = render(c, &parsed.values).unwrap();
        let docs = [
            serde_json::to_value(&r.service_account).unwrap(),
            serde_json::to_value(&r.secret).unwrap(),
            serde_json::to_value(&r.deployment).unwrap(),
            serde_json::to_value(&r.service).unwrap(),
            r.service_monitor.clone().unwrap_or(Value::Null),
        ];
        let yaml: String = docs
            .iter()
            .map(|d| format!("---\n{}", serde_saphyr::to_string(d).unwrap()))
            .collect();
        let path = format!("{}/tests/golden/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &yaml).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            yaml, expected,
            "golden {path} differs (UPDATE_GOLDEN=1 to accept)"
        );
    }

    #[test]
    fn golden_defaults() {
        golden("defaults", &collector("Acme", ""), None);
    }

    #[test]
    fn golden_with_overlay_and_values() {
        let config = "replicas: 2\nconfig: |\n  receivers: {}\nenv:\n- name: LOG\n  value: debug\n\
                      nodeSelector:\n  pool: telemetry\nserviceMonitor:\n  interval: 10s\n\
                      podAnnotations:\n  team: obs\n";
        let overlay = json!({"image": {"repository": "registry.dev.local/collectors"}});
        golden(
            "overlay-and-values",
            &collector("Acme", config),
            Some(&overlay),
        );
    }

    #[test]
    fn golden_without_service_monitor() {
        let config = "serviceMonitor:\n  enabled: false\nimage:\n  tag: latest-debug\n";
        golden("no-service-monitor", &collector("acme", config), None);
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(namespace(&collector("Acme", "")).unwrap(), "acme");
        assert!(matches!(
            namespace(&collector("acme_corp!", "")),
            Err(RenderError::Namespace(_))
        ));
        assert_eq!(release(&collector("a", "")).unwrap(), "otel-main");
    }

    #[test]
    fn the_config_hash_follows_the_config_only() {
        let a = values::resolve(None, "").unwrap().values;
        let mut b = a.clone();
        b.replicas = 5;
        assert_eq!(config_hash(&a), config_hash(&b));
        b.config = "x".into();
        assert_ne!(config_hash(&a), config_hash(&b));
    }
}
