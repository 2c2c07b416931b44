//! Pure decisions about pods: whether a pod's agent can be talked to, and which pods a
//! `NetworkCare` selects.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{Selector, SelectorExt};
use nes_api::crd::NetworkCare;

/// The container name of the nes-agent sidecar (as nes-controller injects it).
pub const AGENT_CONTAINER: &str = "nes-agent";

/// A pod instance whose agent can be reached: its uid and address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// The pod's uid (one pod instance; a re-created pod has another).
    pub uid: String,
    /// The pod's IP, where its agent listens.
    pub ip: IpAddr,
}

/// Why a pod's agent cannot be talked to yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    /// CamelCase reason for conditions.
    pub reason: &'static str,
    /// Readable message.
    pub message: String,
}

/// Where `pod`'s agent is, or why it cannot be reached yet.
///
/// The pod's `Ready` condition is deliberately not required: an application may hold its
/// readiness until its network is configured, and requiring Ready would deadlock it. What
/// matters is that the pod runs, has an IP, and its nes-agent container (when the pod reports
/// one) has started; the agent's own `/healthz` is then asked by the caller.
pub fn target(pod: &Pod) -> Result<Target, NotReady> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        return Err(NotReady {
            reason: "PodTerminating",
            message: format!("pod {name} is being deleted"),
        });
    }
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    if phase != "Running" {
        return Err(NotReady {
            reason: "PodNotRunning",
            message: format!("pod {name} is {phase}"),
        });
    }
    let agent = status.and_then(|s| {
        s.init_container_statuses
            .iter()
            .flatten()
            .chain(s.container_statuses.iter().flatten())
            .find(|c| c.name == AGENT_CONTAINER)
    });
    if let Some(agent) = agent {
        let running = agent.state.as_ref().is_some_and(|s| s.running.is_some());
        if !running || agent.started == Some(false) {
            return Err(NotReady {
                reason: "AgentNotStarted",
                message: format!("the {AGENT_CONTAINER} container of pod {name} is not running"),
            });
        }
    }
    let ip = status.and_then(|s| s.pod_ip.as_deref()).unwrap_or_default();
    if ip.is_empty() {
        return Err(NotReady {
            reason: "PodNoIP",
            message: format!("pod {name} has no IP yet"),
        });
    }
    let ip = ip.parse().map_err(|_| NotReady {
        reason: "PodNoIP",
        message: format!("pod {name} has an invalid IP {ip:?}"),
    })?;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    Ok(Target { uid, ip })
}

/// Drops from `pod` everything the manager does not read, before it enters the hub's cache:
/// the manager caches every pod of its namespaces (a NetworkCare may select any of them), and
/// whole pods, managedFields above all, cost many times what it uses.
///
/// Kept: what [`target`] and [`Selection::selects`] read (name, namespace, uid, labels,
/// deletionTimestamp, resourceVersion; phase, podIP and the nes-agent's container status).
/// A unit test checks that both decide the same on the slim pod; whoever reads more from a
/// cached pod keeps it here.
pub fn slim(pod: &mut Pod) {
    let metadata = std::mem::take(&mut pod.metadata);
    pod.metadata = ObjectMeta {
        name: metadata.name,
        namespace: metadata.namespace,
        uid: metadata.uid,
        labels: metadata.labels,
        deletion_timestamp: metadata.deletion_timestamp,
        resource_version: metadata.resource_version,
        ..ObjectMeta::default()
    };
    pod.spec = None;
    pod.status = pod.status.take().map(|status| {
        let agent_only = |statuses: Option<Vec<ContainerStatus>>| {
            let agent: Vec<ContainerStatus> = statuses
                .into_iter()
                .flatten()
                .filter(|c| c.name == AGENT_CONTAINER)
                .collect();
            (!agent.is_empty()).then_some(agent)
        };
        PodStatus {
            phase: status.phase,
            pod_ip: status.pod_ip,
            init_container_statuses: agent_only(status.init_container_statuses),
            container_statuses: agent_only(status.container_statuses),
            ..PodStatus::default()
        }
    });
}

/// The base URL of the agent at `ip` on `port` (IPv6 in brackets).
pub fn agent_url(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(ip) => format!("http://{ip}:{port}"),
        IpAddr::V6(ip) => format!("http://[{ip}]:{port}"),
    }
}

/// The checked pod selection of a `NetworkCare`.
#[derive(Debug, Clone)]
pub struct Selection {
    names: Vec<String>,
    selector: Option<Selector>,
}

impl Selection {
    /// Checks `care`'s selection: at least one of names and selector, a valid selector.
    pub fn of(care: &NetworkCare) -> Result<Self, String> {
        let pods = &care.spec.pods;
        if pods.names.is_empty() && pods.selector.is_none() {
            return Err("spec.pods: name pods or give a selector".into());
        }
        if let Some(bad) = pods.names.iter().find(|n| n.is_empty()) {
            return Err(format!("spec.pods.names: invalid pod name {bad:?}"));
        }
        let selector = match &pods.selector {
            Some(s) => Some(
                Selector::try_from(s.clone()).map_err(|e| format!("spec.pods.selector: {e}"))?,
            ),
            None => None,
        };
        Ok(Selection {
            names: pods.names.clone(),
            selector,
        })
    }

    /// Whether `pod` (of the care's namespace) is selected: named, or matching the selector.
    pub fn selects(&self, pod: &Pod) -> bool {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        if self.names.iter().any(|n| n == name) {
            return true;
        }
        let empty = Default::default();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        self.selector.as_ref().is_some_and(|s| s.matches(labels))
    }
}

/// Checks a callback URL: absolute `http` or `https` with a host.
pub fn check_callback(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("spec.callback.url {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(format!(
            "spec.callback.url {url:?}: must be an http:// or https:// URL with a host"
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn running(extra: serde_json::Value) -> Pod {
        let mut status = json!({"phase": "Running", "podIP": "10.0.0.7"});
        if let (Some(s), Some(e)) = (status.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        pod(json!({
            "metadata": {"name": "app-0", "uid": "u1", "labels": {"app": "web", "tier": "a"}},
            "status": status,
        }))
    }

    #[test]
    fn a_running_pod_with_an_ip_is_a_target_without_being_ready() {
        let t = target(&running(json!({}))).unwrap();
        assert_eq!(t.uid, "u1");
        assert_eq!(t.ip.to_string(), "10.0.0.7");
        assert_eq!(agent_url(t.ip, 7470), "http://10.0.0.7:7470");
        assert_eq!(
            agent_url("fd00::1".parse().unwrap(), 1),
            "http://[fd00::1]:1"
        );
    }

    #[test]
    fn pods_not_running_terminating_or_without_ip_are_not_targets() {
        let pending = pod(json!({"metadata": {"name": "p"}, "status": {"phase": "Pending"}}));
        assert_eq!(target(&pending).unwrap_err().reason, "PodNotRunning");
        let no_status = pod(json!({"metadata": {"name": "p"}}));
        assert_eq!(target(&no_status).unwrap_err().reason, "PodNotRunning");
        let no_ip = pod(json!({"metadata": {"name": "p"}, "status": {"phase": "Running"}}));
        assert_eq!(target(&no_ip).unwrap_err().reason, "PodNoIP");
        let mut deleting = running(json!({}));
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
        assert_eq!(target(&deleting).unwrap_err().reason, "PodTerminating");
    }

    #[test]
    fn the_agent_sidecar_must_have_started_when_reported() {
        let waiting = running(json!({"initContainerStatuses": [{
            "name": AGENT_CONTAINER, "image": "a", "imageID": "", "ready": false,
            "restartCount": 1, "started": false,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}
        }]}));
        assert_eq!(target(&waiting).unwrap_err().reason, "AgentNotStarted");
        let started = running(json!({"initContainerStatuses": [{
            "name": AGENT_CONTAINER, "image": "a", "imageID": "", "ready": false,
            "restartCount": 0, "started": true,
            "state": {"running": {}}
        }]}));
        assert!(target(&started).is_ok(), "started but not ready is enough");
    }

    /// A pod as the API server sends it: spec, annotations, owner references, conditions,
    /// managedFields and every container's status.
    fn full(phase: &str, agent_state: serde_json::Value, deleting: bool) -> Pod {
        let mut pod = pod(json!({
            "metadata": {
                "name": "app-0", "namespace": "ns", "uid": "u1", "resourceVersion": "42",
                "labels": {"app": "web", "tier": "a"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "name": "app", "uid": "s1", "controller": true}],
                "managedFields": [{"manager": "kubelet", "operation": "Update",
                    "apiVersion": "v1", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:status": {"f:phase": {}}}}],
            },
            "spec": {"containers": [{"name": "app", "image": "app:1"}],
                "initContainers": [{"name": AGENT_CONTAINER, "image": "agent:1",
                    "restartPolicy": "Always"}]},
            "status": {
                "phase": phase, "podIP": "10.0.0.7",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{"name": "app", "image": "app:1", "imageID": "",
                    "ready": false, "restartCount": 0, "state": {"running": {}}}],
                "initContainerStatuses": [{"name": AGENT_CONTAINER, "image": "agent:1",
                    "imageID": "", "ready": false, "restartCount": 0, "started": true,
                    "state": agent_state}],
            },
        }));
        if deleting {
            pod.metadata.deletion_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
            );
        }
        pod
    }

    #[test]
    fn a_slim_pod_decides_like_the_whole_pod_and_keeps_nothing_else() {
        let selections = [
            care(json!({"names": ["app-0"]})),
            care(json!({"names": ["app-1"]})),
            care(json!({"selector": {"matchLabels": {"app": "web"}}})),
            care(json!({"selector": {"matchExpressions": [
                {"key": "tier", "operator": "NotIn", "values": ["a"]}]}})),
        ]
        .map(|c| Selection::of(&c).unwrap());
        for whole in [
            full("Running", json!({"running": {}}), false),
            full(
                "Running",
                json!({"waiting": {"reason": "CrashLoopBackOff"}}),
                false,
            ),
            full("Running", json!({"running": {}}), true),
            full("Pending", json!({"running": {}}), false),
        ] {
            let mut slim_pod = whole.clone();
            slim(&mut slim_pod);
            assert_eq!(target(&slim_pod), target(&whole));
            for selection in &selections {
                assert_eq!(selection.selects(&slim_pod), selection.selects(&whole));
            }
            assert_eq!(slim_pod.metadata.managed_fields, None);
            assert_eq!(slim_pod.metadata.annotations, None);
            assert_eq!(slim_pod.metadata.owner_references, None);
            assert_eq!(slim_pod.metadata.resource_version.as_deref(), Some("42"));
            assert_eq!(slim_pod.spec, None);
            let status = slim_pod.status.as_ref().unwrap();
            assert_eq!(status.conditions, None);
            assert_eq!(
                status.container_statuses, None,
                "the app's status is not read"
            );
            assert_eq!(status.init_container_statuses.as_ref().unwrap().len(), 1);
        }
        // A pod without status stays without.
        let mut bare = pod(json!({"metadata": {"name": "p"}}));
        slim(&mut bare);
        assert_eq!(target(&bare).unwrap_err().reason, "PodNotRunning");
    }

    fn care(pods: serde_json::Value) -> NetworkCare {
        serde_json::from_value(json!({
            "apiVersion": "nes.kubecrew.io/v1alpha1", "kind": "NetworkCare",
            "metadata": {"name": "c", "namespace": "ns"},
            "spec": {"pods": pods, "callback": {"url": "http://x/"}}
        }))
        .unwrap()
    }

    #[test]
    fn selection_by_names_and_selector() {
        let p = running(json!({}));
        assert!(
            Selection::of(&care(json!({"names": ["app-0"]})))
                .unwrap()
                .selects(&p)
        );
        assert!(
            !Selection::of(&care(json!({"names": ["app-1"]})))
                .unwrap()
                .selects(&p)
        );
        let by_labels = care(json!({"selector": {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]
        }}));
        assert!(Selection::of(&by_labels).unwrap().selects(&p));
        let other = care(json!({"selector": {"matchLabels": {"app": "db"}}}));
        assert!(!Selection::of(&other).unwrap().selects(&p));
        let either = care(json!({"names": ["app-0"], "selector": {"matchLabels": {"app": "db"}}}));
        assert!(Selection::of(&either).unwrap().selects(&p));
    }

    #[test]
    fn bad_selections_and_callbacks_are_explained() {
        let none = Selection::of(&care(json!({}))).unwrap_err();
        assert!(none.contains("spec.pods"), "{none}");
        let bad = care(json!({"selector": {"matchExpressions": [
            {"key": "a", "operator": "Sideways", "values": ["x"]}
        ]}}));
        assert!(
            Selection::of(&bad)
                .unwrap_err()
                .contains("spec.pods.selector")
        );
        assert!(check_callback("http://hooks.local:8080/x").is_ok());
        assert!(check_callback("ftp://hooks.local/").is_err());
        assert!(check_callback("not a url").is_err());
    }
}
