//! The children a `KindCustomHttp` should have, as pure functions of its spec: a ConfigMap with
//! `configMapData`, a Deployment running the peer server with that ConfigMap mounted, and a
//! Service in front of it. Also the validation that keeps a bad spec from being applied.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecurityContext, Service, ServicePort, ServiceSpec,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::resource::{DEFAULT_IMAGE, KindCustomHttp};

/// The ConfigMap key listing the destinations.
pub const HOSTPORTS_KEY: &str = "hostports";
/// Where the ConfigMap is mounted in the pods.
pub const CONFIG_DIR: &str = "/etc/http-peer";
/// The label selecting a KindCustomHttp's pods.
pub const POD_LABEL: &str = "peering.kubecrew.io/name";

/// Why a spec cannot be applied; the message names the field and, for `hostports`, the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidSpec {
    /// The offending field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Checks what the CRD schema cannot: the `hostports` lines and the durations.
pub fn validate(kch: &KindCustomHttp) -> Result<(), InvalidSpec> {
    if let Some(text) = kch.spec.config_map_data.get(HOSTPORTS_KEY) {
        // A duplicate line is harmless (the server pings the target once); the rest means the
        // list is not what the user meant.
        let errors: Vec<_> = http_peer::peers::parse(text)
            .errors
            .into_iter()
            .filter(|e| !matches!(e.kind, http_peer::peers::LineErrorKind::Duplicate(_)))
            .collect();
        if let Some(first) = errors.first() {
            let more = match errors.len() {
                1 => String::new(),
                n => format!(" (and {} more bad lines)", n - 1),
            };
            return Err(InvalidSpec {
                field: format!("spec.configMapData.{HOSTPORTS_KEY}"),
                message: format!("{first}{more}"),
            });
        }
    }
    for (field, value) in [
        ("spec.pingInterval", &kch.spec.ping_interval),
        ("spec.pingTimeout", &kch.spec.ping_timeout),
    ] {
        let duration = operator_core::duration::parse(value).map_err(|message| InvalidSpec {
            field: field.into(),
            message,
        })?;
        if duration.is_zero() {
            return Err(InvalidSpec {
                field: field.into(),
                message: "must be more than 0".into(),
            });
        }
    }
    Ok(())
}

fn meta(kch: &KindCustomHttp, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: kch.namespace(),
        labels: Some(pod_labels(kch)),
        owner_references: kch.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

fn pod_labels(kch: &KindCustomHttp) -> BTreeMap<String, String> {
    BTreeMap::from([
        (POD_LABEL.to_owned(), kch.name_any()),
        ("app.kubernetes.io/name".to_owned(), "http-peer".to_owned()),
    ])
}

/// The ConfigMap: exactly `configMapData`.
pub fn config_map(kch: &KindCustomHttp) -> ConfigMap {
    ConfigMap {
        metadata: meta(kch, config_map_name(kch)),
        data: Some(kch.spec.config_map_data.clone()),
        ..ConfigMap::default()
    }
}

/// The ConfigMap's name.
pub fn config_map_name(kch: &KindCustomHttp) -> String {
    format!("{}-peers", kch.name_any())
}

/// The Service: `port` to the container's port.
pub fn service(kch: &KindCustomHttp) -> Service {
    Service {
        metadata: meta(kch, kch.name_any()),
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([(POD_LABEL.to_owned(), kch.name_any())])),
            ports: Some(vec![service_port(kch)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The one port of the Service.
pub fn service_port(kch: &KindCustomHttp) -> ServicePort {
    ServicePort {
        name: Some("http".into()),
        port: kch.spec.port,
        target_port: Some(IntOrString::String("http".into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// The Deployment running the peer server.
pub fn deployment(kch: &KindCustomHttp) -> Deployment {
    let labels = pod_labels(kch);
    let port = kch.spec.port;
    let probe = |initial: i32, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        ..Probe::default()
    };
    let quantities = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.into())),
            ("memory".to_owned(), Quantity(memory.into())),
        ])
    };
    let container = Container {
        name: "http-peer".into(),
        image: Some(
            kch.spec
                .image
                .clone()
                .unwrap_or_else(|| DEFAULT_IMAGE.to_owned()),
        ),
        args: Some(vec![
            format!("--listen=0.0.0.0:{port}"),
            format!("--peers-file={CONFIG_DIR}/{HOSTPORTS_KEY}"),
            format!("--interval={}", kch.spec.ping_interval),
            format!("--timeout={}", kch.spec.ping_timeout),
            "--log-format=json".into(),
        ]),
        env: Some(vec![EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }]),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(probe(1, 5)),
        liveness_probe: Some(probe(5, 10)),
        resources: Some(ResourceRequirements {
            requests: Some(quantities("10m", "16Mi")),
            limits: Some(quantities("200m", "64Mi")),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "peers".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    Deployment {
        metadata: meta(kch, kch.name_any()),
        spec: Some(DeploymentSpec {
            replicas: Some(kch.spec.replica_count),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([(POD_LABEL.to_owned(), kch.name_any())])),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "peers".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: config_map_name(kch),
                            ..ConfigMapVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    automount_service_account_token: Some(false),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kch(spec: serde_json::Value) -> KindCustomHttp {
        serde_json::from_value(json!({
            "apiVersion": "peering.kubecrew.io/v1alpha1",
            "kind": "KindCustomHttp",
            "metadata": {"name": "mesh", "namespace": "net", "uid": "u-1"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn children_follow_the_spec() {
        let k = kch(json!({"replicaCount": 3, "port": 8081,
                           "configMapData": {"hostports": "a,1\nb,2\n"}}));
        let d = deployment(&k);
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(3));
        let pod = spec.template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 8081);
        assert!(
            c.args
                .as_ref()
                .unwrap()
                .contains(&"--listen=0.0.0.0:8081".to_owned())
        );
        assert!(
            c.args
                .as_ref()
                .unwrap()
                .contains(&"--interval=30s".to_owned())
        );
        assert_eq!(c.image.as_deref(), Some(DEFAULT_IMAGE));
        assert_eq!(
            c.security_context
                .as_ref()
                .unwrap()
                .read_only_root_filesystem,
            Some(true)
        );
        assert_eq!(
            pod.volumes.as_ref().unwrap()[0]
                .config_map
                .as_ref()
                .unwrap()
                .name,
            "mesh-peers"
        );
        let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("KindCustomHttp", Some(true))
        );

        let s = service(&k);
        let port = &s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
        assert_eq!(port.port, 8081);
        assert_eq!(port.target_port, Some(IntOrString::String("http".into())));
        let cm = config_map(&k);
        assert_eq!(cm.data.unwrap()["hostports"], "a,1\nb,2\n");
    }

    #[test]
    fn bad_hostports_name_the_line() {
        let k = kch(json!({"port": 80, "configMapData": {"hostports": "a,1\nnot-a-line\n"}}));
        let err = validate(&k).unwrap_err();
        assert_eq!(err.field, "spec.configMapData.hostports");
        assert!(err.message.contains("line 2"), "{}", err.message);
        assert!(
            validate(&kch(
                json!({"port": 80, "configMapData": {"hostports": "a,1"}})
            ))
            .is_ok()
        );
        assert!(validate(&kch(json!({"port": 80}))).is_ok());
    }

    #[test]
    fn durations_are_checked() {
        let err = validate(&kch(json!({"port": 80, "pingInterval": "0s"}))).unwrap_err();
        assert_eq!(err.field, "spec.pingInterval");
        let err = validate(&kch(json!({"port": 80, "pingTimeout": "soon"}))).unwrap_err();
        assert_eq!(err.field, "spec.pingTimeout");
    }
}
