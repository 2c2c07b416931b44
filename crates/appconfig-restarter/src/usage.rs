//! Which ConfigMaps and Secrets a pod template uses: volumes (plain and projected), `envFrom`
//! and `env[].valueFrom`, in containers and init containers.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, PodSpec};

use crate::resource::{ConfigKind, ConfigRef};

/// Every ConfigMap and Secret `spec` refers to.
pub fn used_by(spec: &PodSpec) -> BTreeSet<ConfigRef> {
    let mut used = BTreeSet::new();
    let mut add = |kind: ConfigKind, name: &str| {
        if !name.is_empty() {
            used.insert(ConfigRef {
                kind,
                name: name.to_owned(),
            });
        }
    };
    for volume in spec.volumes.iter().flatten() {
        if let Some(cm) = &volume.config_map {
            add(ConfigKind::ConfigMap, &cm.name);
        }
        if let Some(secret) = &volume.secret {
            add(
                ConfigKind::Secret,
                secret.secret_name.as_deref().unwrap_or_default(),
            );
        }
        for source in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
        {
            if let Some(cm) = &source.config_map {
                add(ConfigKind::ConfigMap, &cm.name);
            }
            if let Some(secret) = &source.secret {
                add(ConfigKind::Secret, &secret.name);
            }
        }
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for container in containers {
        container_refs(container, &mut add);
    }
    used
}

fn container_refs(container: &Container, add: &mut impl FnMut(ConfigKind, &str)) {
    for from in container.env_from.iter().flatten() {
        if let Some(cm) = &from.config_map_ref {
            add(ConfigKind::ConfigMap, &cm.name);
        }
        if let Some(secret) = &from.secret_ref {
            add(ConfigKind::Secret, &secret.name);
        }
    }
    for var in container.env.iter().flatten() {
        let Some(from) = &var.value_from else {
            continue;
        };
        if let Some(key) = &from.config_map_key_ref {
            add(ConfigKind::ConfigMap, &key.name);
        }
        if let Some(key) = &from.secret_key_ref {
            add(ConfigKind::Secret, &key.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(spec: serde_json::Value) -> Vec<String> {
        let spec: PodSpec = serde_json::from_value(spec).unwrap();
        used_by(&spec).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn every_kind_of_reference_counts() {
        let used = names(json!({
            "volumes": [
                {"name": "v1", "configMap": {"name": "vol-cm"}},
                {"name": "v2", "secret": {"secretName": "vol-secret"}},
                {"name": "v3", "projected": {"sources": [
                    {"configMap": {"name": "proj-cm"}},
                    {"secret": {"name": "proj-secret"}},
                    {"downwardAPI": {"items": []}}]}},
                {"name": "v4", "emptyDir": {}}
            ],
            "initContainers": [{"name": "init", "envFrom": [{"configMapRef": {"name": "init-cm"}}]}],
            "containers": [{"name": "app",
                "envFrom": [{"secretRef": {"name": "from-secret"}}],
                "env": [
                    {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "key-cm", "key": "a"}}},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "key-secret", "key": "b"}}},
                    {"name": "C", "value": "plain"},
                    {"name": "D", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                ]}]
        }));
        assert_eq!(
            used,
            [
                "ConfigMap init-cm",
                "ConfigMap key-cm",
                "ConfigMap proj-cm",
                "ConfigMap vol-cm",
                "Secret from-secret",
                "Secret key-secret",
                "Secret proj-secret",
                "Secret vol-secret"
            ]
        );
    }

    #[test]
    fn a_pod_without_references_uses_nothing() {
        assert!(names(json!({"containers": [{"name": "app", "image": "nginx"}]})).is_empty());
        assert!(
            names(json!({"containers": [{"name": "app"}],
                           "volumes": [{"name": "v", "secret": {}}]}))
            .is_empty(),
            "a secret volume without a name refers to nothing"
        );
    }
}
