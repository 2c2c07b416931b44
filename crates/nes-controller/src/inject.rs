//! The nes-agent sidecar and the pure decision of adding it to (or removing it from) a pod
//! template. Both injection modes (the StatefulSet template here, a Pod admission webhook later)
//! share these functions, so a pod gets the same sidecar either way.
//!
//! The sidecar is a native sidecar (an init container with `restartPolicy: Always`, Kubernetes
//! 1.29+): it starts before the application, so the network is configurable as soon as the
//! application runs, and it restarts on its own without restarting the application.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SecretVolumeSource, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

/// The label that asks for the sidecar (value `"true"`), as in the original system.
pub const INJECT_LABEL: &str = "network-config/runtime-ip";
/// Set on a pod template the controller injected, so it removes only what it added.
pub const INJECTED_ANNOTATION: &str = "nes.kubecrew.io/injected";
/// The sidecar's container name.
pub const SIDECAR: &str = "nes-agent";
/// The volume holding the agent's bearer token (a Secret).
pub const TOKEN_VOLUME: &str = "nes-agent-token";
/// The volume holding the agent's state (an emptyDir: it lives as long as the pod's network
/// namespace, so a restarted agent resumes).
pub const STATE_VOLUME: &str = "nes-agent-state";
/// Where the token is mounted.
pub const TOKEN_DIR: &str = "/var/run/secrets/nes";
/// Where the state is kept.
pub const STATE_DIR: &str = "/var/run/nes-agent";

/// What the operator configures about the sidecar.
#[derive(Debug, Clone, PartialEq)]
pub struct SidecarSettings {
    /// The nes-agent image.
    pub image: String,
    /// The agent's API port.
    pub port: u16,
    /// The Secret (in the workload's namespace) whose key `token` the agent requires on writes.
    pub token_secret: String,
    /// CPU request.
    pub cpu_request: String,
    /// Memory request.
    pub memory_request: String,
    /// Memory limit.
    pub memory_limit: String,
}

impl Default for SidecarSettings {
    fn default() -> Self {
        SidecarSettings {
            image: concat!("ghcr.io/kubecrew/nes-agent:", env!("CARGO_PKG_VERSION")).to_owned(),
            port: 7470,
            token_secret: "nes-agent-token".to_owned(),
            cpu_request: "10m".to_owned(),
            memory_request: "16Mi".to_owned(),
            memory_limit: "64Mi".to_owned(),
        }
    }
}

/// True when `labels` ask for the sidecar.
pub fn wants_sidecar(labels: Option<&BTreeMap<String, String>>) -> bool {
    labels
        .and_then(|l| l.get(INJECT_LABEL))
        .is_some_and(|v| v == "true")
}

/// The sidecar container.
pub fn sidecar(settings: &SidecarSettings) -> Container {
    let env = |name: &str, value: String| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    };
    let quantities = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                .collect(),
        )
    };
    Container {
        name: SIDECAR.to_owned(),
        image: Some(settings.image.clone()),
        // A native sidecar: started before the app containers, restarted on its own.
        restart_policy: Some("Always".to_owned()),
        env: Some(vec![
            env("NES_AGENT_LISTEN", format!("0.0.0.0:{}", settings.port)),
            env("NES_AGENT_TOKEN_FILE", format!("{TOKEN_DIR}/token")),
            env("NES_AGENT_STATE_DIR", STATE_DIR.to_owned()),
            env("NES_AGENT_LOG_FORMAT", "json".to_owned()),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("nes-agent".to_owned()),
            container_port: i32::from(settings.port),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".to_owned()),
                port: IntOrString::Int(i32::from(settings.port)),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(5),
            ..Probe::default()
        }),
        resources: Some(ResourceRequirements {
            requests: quantities(&[
                ("cpu", &settings.cpu_request),
                ("memory", &settings.memory_request),
            ]),
            limits: quantities(&[("memory", &settings.memory_limit)]),
            ..ResourceRequirements::default()
        }),
        // NET_ADMIN is all netlink configuration needs; nothing else, no privilege escalation.
        // User 0 because a capability added to a non-root container is not effective (runtimes
        // set no ambient capabilities), and the image's default user is non-root; with every
        // other capability dropped, uid 0 grants nothing beyond NET_ADMIN in the pod's netns.
        security_context: Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".to_owned()]),
                drop: Some(vec!["ALL".to_owned()]),
            }),
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: TOKEN_VOLUME.to_owned(),
                mount_path: TOKEN_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: STATE_VOLUME.to_owned(),
                mount_path: STATE_DIR.to_owned(),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    }
}

fn volumes(settings: &SidecarSettings) -> [Volume; 2] {
    [
        Volume {
            name: TOKEN_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(settings.token_secret.clone()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: STATE_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ]
}

/// Why a template cannot get the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// The workload already has a container or volume of the sidecar's names that the
    /// controller did not add: replacing it could break the application.
    #[error(
        "the pod template already has a {what} named {name:?} that nes-controller did not add; rename it or remove the {INJECT_LABEL} label"
    )]
    NameTaken {
        /// `container` or `volume`.
        what: &'static str,
        /// The name.
        name: String,
    },
}

/// The template with the sidecar, or `None` if it already has exactly this sidecar.
/// Idempotent: injecting into the result gives `None`.
pub fn inject(
    template: &PodTemplateSpec,
    settings: &SidecarSettings,
) -> Result<Option<PodTemplateSpec>, InjectError> {
    let injected_before = is_injected(template);
    let mut next = template.clone();
    let spec = next.spec.get_or_insert_with(PodSpec::default);
    if !injected_before {
        check_free(spec)?;
    }
    let desired = sidecar(settings);
    let init = spec.init_containers.get_or_insert_with(Vec::new);
    match init.iter_mut().find(|c| c.name == SIDECAR) {
        Some(existing) => *existing = desired,
        // First, so it is running before any other init container needs the network.
        None => init.insert(0, desired),
    }
    let volumes_list = spec.volumes.get_or_insert_with(Vec::new);
    for volume in volumes(settings) {
        match volumes_list.iter_mut().find(|v| v.name == volume.name) {
            Some(existing) => *existing = volume,
            None => volumes_list.push(volume),
        }
    }
    next.metadata
        .get_or_insert_with(Default::default)
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(INJECTED_ANNOTATION.to_owned(), "true".to_owned());
    Ok((next != *template).then_some(next))
}

/// The RFC 6902 operations that give a pod (its `metadata` and `spec`, as received) the
/// sidecar, its volumes and the injected annotation; `None` when the pod is already injected
/// (never twice: a pod is created once, and a sidecar from template mode is left as it is).
///
/// Only `add` operations, placed where [`inject`] puts things (the sidecar first among the init
/// containers, the volumes last): everything else in the pod stays byte for byte as the API
/// server sent it, including fields this build's types do not know.
pub fn pod_patch(
    metadata: &ObjectMeta,
    spec: &PodSpec,
    settings: &SidecarSettings,
) -> Result<Option<Vec<Value>>, InjectError> {
    if metadata_says_injected(Some(metadata)) {
        return Ok(None);
    }
    check_free(spec)?;
    let mut ops = Vec::new();
    // k8s-openapi types always serialize (string-keyed maps only).
    let container = json!(sidecar(settings));
    match spec.init_containers {
        Some(_) => {
            ops.push(json!({"op": "add", "path": "/spec/initContainers/0", "value": container}))
        }
        None => {
            ops.push(json!({"op": "add", "path": "/spec/initContainers", "value": [container]}))
        }
    }
    let new_volumes: Vec<Value> = volumes(settings).iter().map(|v| json!(v)).collect();
    match spec.volumes {
        Some(_) => ops.extend(
            new_volumes
                .into_iter()
                .map(|v| json!({"op": "add", "path": "/spec/volumes/-", "value": v})),
        ),
        None => ops.push(json!({"op": "add", "path": "/spec/volumes", "value": new_volumes})),
    }
    match metadata.annotations {
        // `/` in the key is `~1` in a JSON pointer.
        Some(_) => ops.push(json!({"op": "add",
            "path": format!("/metadata/annotations/{}", INJECTED_ANNOTATION.replace('/', "~1")),
            "value": "true"})),
        None => ops.push(json!({"op": "add", "path": "/metadata/annotations",
            "value": {INJECTED_ANNOTATION: "true"}})),
    }
    Ok(Some(ops))
}

/// The template without the sidecar, or `None` if the controller did not inject it.
pub fn remove(template: &PodTemplateSpec) -> Option<PodTemplateSpec> {
    if !is_injected(template) {
        return None;
    }
    let mut next = template.clone();
    if let Some(spec) = next.spec.as_mut() {
        if let Some(init) = spec.init_containers.as_mut() {
            init.retain(|c| c.name != SIDECAR);
            if init.is_empty() {
                spec.init_containers = None;
            }
        }
        if let Some(volumes) = spec.volumes.as_mut() {
            volumes.retain(|v| v.name != TOKEN_VOLUME && v.name != STATE_VOLUME);
            if volumes.is_empty() {
                spec.volumes = None;
            }
        }
    }
    if let Some(annotations) = next.metadata.as_mut().and_then(|m| m.annotations.as_mut()) {
        annotations.remove(INJECTED_ANNOTATION);
    }
    Some(next)
}

fn is_injected(template: &PodTemplateSpec) -> bool {
    metadata_says_injected(template.metadata.as_ref())
}

/// True when `metadata` carries the controller's injected annotation.
pub fn metadata_says_injected(metadata: Option<&ObjectMeta>) -> bool {
    metadata
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(INJECTED_ANNOTATION))
        .is_some_and(|v| v == "true")
}

fn check_free(spec: &PodSpec) -> Result<(), InjectError> {
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    if let Some(c) = containers.into_iter().find(|c| c.name == SIDECAR) {
        return Err(InjectError::NameTaken {
            what: "container",
            name: c.name.clone(),
        });
    }
    if let Some(v) = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == TOKEN_VOLUME || v.name == STATE_VOLUME)
    {
        return Err(InjectError::NameTaken {
            what: "volume",
            name: v.name.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_template() -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("app:1".into()),
                    ..Container::default()
                }],
                init_containers: Some(vec![Container {
                    name: "migrate".into(),
                    ..Container::default()
                }]),
                ..PodSpec::default()
            }),
        }
    }

    #[test]
    fn the_label_must_say_true() {
        let labels = |v: &str| Some(BTreeMap::from([(INJECT_LABEL.to_owned(), v.to_owned())]));
        assert!(wants_sidecar(labels("true").as_ref()));
        assert!(!wants_sidecar(labels("false").as_ref()));
        assert!(!wants_sidecar(None));
    }

    #[test]
    fn sidecar_is_native_net_admin_only_with_token_and_state() {
        let container = sidecar(&SidecarSettings::default());
        assert_eq!(container.restart_policy.as_deref(), Some("Always"));
        let security = container.security_context.unwrap();
        assert_eq!(
            security.run_as_user,
            Some(0),
            "capabilities only work for uid 0"
        );
        assert_eq!(security.allow_privilege_escalation, Some(false));
        let caps = security.capabilities.unwrap();
        assert_eq!(caps.add, Some(vec!["NET_ADMIN".to_owned()]));
        assert_eq!(caps.drop, Some(vec!["ALL".to_owned()]));
        let env: BTreeMap<_, _> = container
            .env
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.value.unwrap()))
            .collect();
        assert_eq!(env["NES_AGENT_TOKEN_FILE"], "/var/run/secrets/nes/token");
        assert_eq!(env["NES_AGENT_LISTEN"], "0.0.0.0:7470");
        assert_eq!(container.volume_mounts.unwrap().len(), 2);
    }

    #[test]
    fn inject_is_first_init_container_and_idempotent() {
        let settings = SidecarSettings::default();
        let injected = inject(&app_template(), &settings)
            .unwrap()
            .expect("a change");
        let spec = injected.spec.as_ref().unwrap();
        let init: Vec<_> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(init, [SIDECAR, "migrate"]);
        assert_eq!(spec.volumes.as_ref().unwrap().len(), 2);
        assert_eq!(inject(&injected, &settings).unwrap(), None);
    }

    #[test]
    fn new_settings_update_the_injected_sidecar() {
        let injected = inject(&app_template(), &SidecarSettings::default())
            .unwrap()
            .unwrap();
        let newer = SidecarSettings {
            image: "nes-agent:2".into(),
            ..SidecarSettings::default()
        };
        let updated = inject(&injected, &newer).unwrap().expect("image changes");
        let init = updated.spec.unwrap().init_containers.unwrap();
        assert_eq!(init.len(), 2);
        assert_eq!(init[0].image.as_deref(), Some("nes-agent:2"));
    }

    #[test]
    fn remove_undoes_inject_and_leaves_foreign_templates_alone() {
        let original = app_template();
        let injected = inject(&original, &SidecarSettings::default())
            .unwrap()
            .unwrap();
        let removed = remove(&injected).expect("removes");
        assert_eq!(removed.spec, original.spec);
        assert_eq!(remove(&original), None);
    }

    #[test]
    fn a_foreign_container_of_the_same_name_is_refused() {
        let mut template = app_template();
        template.spec.as_mut().unwrap().containers[0].name = SIDECAR.into();
        let error = inject(&template, &SidecarSettings::default()).unwrap_err();
        assert!(error.to_string().contains("did not add"), "{error}");
    }

    fn patched(pod: &Value, ops: Vec<Value>) -> Value {
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
        let mut pod = pod.clone();
        json_patch::patch(&mut pod, &patch).expect("the patch applies");
        pod
    }

    fn as_template(pod: &Value) -> PodTemplateSpec {
        serde_json::from_value(json!({"metadata": pod["metadata"], "spec": pod["spec"]})).unwrap()
    }

    #[test]
    fn the_pod_patch_gives_what_template_injection_gives() {
        let settings = SidecarSettings::default();
        // A pod with a field this build does not know: the patch must keep it.
        let pod = json!({
            "metadata": {"name": "p", "annotations": {"a": "b"}},
            "spec": {
                "containers": [{"name": "app", "image": "app:1"}],
                "initContainers": [{"name": "migrate"}],
                "volumes": [{"name": "data", "emptyDir": {}}],
                "futureField": {"x": 1}
            }
        });
        let typed = as_template(&pod);
        let ops = pod_patch(
            typed.metadata.as_ref().unwrap(),
            typed.spec.as_ref().unwrap(),
            &settings,
        )
        .unwrap()
        .expect("a patch");
        let after = patched(&pod, ops);
        assert_eq!(after["spec"]["futureField"], json!({"x": 1}));
        assert_eq!(after["metadata"]["annotations"]["a"], "b");
        assert_eq!(
            after["metadata"]["annotations"][INJECTED_ANNOTATION],
            "true"
        );
        let names = |key: &str| -> Vec<String> {
            after["spec"][key]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(names("initContainers"), [SIDECAR, "migrate"]);
        assert_eq!(names("volumes"), ["data", TOKEN_VOLUME, STATE_VOLUME]);
        // The same sidecar template injection would give: injecting again changes nothing.
        assert_eq!(inject(&as_template(&after), &settings).unwrap(), None);
        // And never twice.
        let again = as_template(&after);
        assert_eq!(
            pod_patch(
                again.metadata.as_ref().unwrap(),
                again.spec.as_ref().unwrap(),
                &settings
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn the_pod_patch_creates_missing_lists_and_annotations() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app"}]}});
        let typed = as_template(&pod);
        let ops = pod_patch(
            typed.metadata.as_ref().unwrap(),
            typed.spec.as_ref().unwrap(),
            &SidecarSettings::default(),
        )
        .unwrap()
        .unwrap();
        let after = patched(&pod, ops);
        assert_eq!(after["spec"]["initContainers"][0]["name"], SIDECAR);
        assert_eq!(
            after["spec"]["initContainers"][0]["restartPolicy"],
            "Always"
        );
        assert_eq!(after["spec"]["volumes"].as_array().unwrap().len(), 2);
        assert_eq!(
            after["metadata"]["annotations"],
            json!({INJECTED_ANNOTATION: "true"})
        );
    }

    #[test]
    fn the_pod_patch_refuses_a_name_clash() {
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta::default()),
            spec: Some(PodSpec {
                volumes: Some(vec![Volume {
                    name: STATE_VOLUME.into(),
                    ..Volume::default()
                }]),
                ..app_template().spec.unwrap()
            }),
        };
        let error = pod_patch(
            template.metadata.as_ref().unwrap(),
            template.spec.as_ref().unwrap(),
            &SidecarSettings::default(),
        )
        .unwrap_err();
        assert!(error.to_string().contains(STATE_VOLUME), "{error}");
    }
}
