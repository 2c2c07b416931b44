//! Built-in defaults, as kube-apiserver applies them when it decodes an object of a built-in
//! kind (`SetObjectDefaults_*` of `pkg/apis/{core,apps,batch,...}/v1`): pure functions over
//! the JSON object, run on every create and update before validation (see `api::write`).
//!
//! Every function fills only what is unset, in Go's sense: a missing or `null` pointer field,
//! and for plain (non-pointer) strings and numbers also `""` and `0`. So defaulting is
//! idempotent and never overwrites a value the client chose. Malformed input (a string where an
//! object belongs, ...) is left alone for validation or the client to trip over; nothing here
//! panics.
//!
//! Defaults of a kind's status that upstream applies (PersistentVolume phases, pod IPs, ...) are
//! here too; allocations (a Service's cluster IPs and IP families) are not: they belong to the
//! registry, see `api::lifecycle`.

use serde_json::{Map, Value, json};

/// Applies the defaults of the built-in kind `group`/`kind` to `obj`. Kinds without defaults
/// (and custom resources, whose defaults come from their schema) are left alone.
pub fn apply(group: &str, kind: &str, obj: &mut Value) {
    let Some(obj) = obj.as_object_mut() else {
        return;
    };
    match (group, kind) {
        ("", "Pod") => pod(obj),
        ("", "PodTemplate") => {
            if let Some(template) = child(obj, "template") {
                pod_template(template);
            }
        }
        ("", "ReplicationController") => replication_controller(obj),
        ("", "Service") => service(obj),
        ("", "Secret") => secret(obj),
        ("", "Namespace") => namespace(obj),
        ("", "Endpoints") => endpoints(obj),
        ("", "PersistentVolume") => persistent_volume(obj),
        ("", "PersistentVolumeClaim") => persistent_volume_claim(obj),
        ("", "LimitRange") => limit_range(obj),
        ("", "Node") => node(obj),
        ("apps", "Deployment") => deployment(obj),
        ("apps", "ReplicaSet") => replica_set(obj),
        ("apps", "StatefulSet") => stateful_set(obj),
        ("apps", "DaemonSet") => daemon_set(obj),
        ("batch", "Job") => job(obj),
        ("batch", "CronJob") => cron_job(obj),
        ("discovery.k8s.io", "EndpointSlice") => endpoint_slice(obj),
        ("networking.k8s.io", "NetworkPolicy") => network_policy(obj),
        ("networking.k8s.io", "IngressClass") => ingress_class(obj),
        ("storage.k8s.io", "StorageClass") => storage_class(obj),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => role_binding(obj),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers: Go's notion of "unset" over JSON.

/// The object at `key`, if it is one.
fn child<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    map.get_mut(key).and_then(Value::as_object_mut)
}

/// The object at `key`, made `{}` when missing or `null`; `None` when it is something else.
fn child_or_empty<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    let slot = map.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = json!({});
    }
    slot.as_object_mut()
}

/// The objects of the list at `key` (non-objects skipped).
fn items<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    map.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// Whether `key` is unset as a pointer is: missing or `null`.
fn unset(map: &Map<String, Value>, key: &str) -> bool {
    map.get(key).is_none_or(Value::is_null)
}

/// Whether `key` is unset as a plain Go string is: missing, `null` or `""`.
fn unset_str(map: &Map<String, Value>, key: &str) -> bool {
    match map.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    }
}

/// Whether `key` is unset as a plain Go number is: missing, `null` or `0`.
fn unset_num(map: &Map<String, Value>, key: &str) -> bool {
    match map.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(_) => false,
    }
}

/// Sets a pointer field when it is unset.
fn default_ptr(map: &mut Map<String, Value>, key: &str, value: Value) {
    if unset(map, key) {
        map.insert(key.to_owned(), value);
    }
}

/// Sets a plain string field when it is unset.
fn default_str(map: &mut Map<String, Value>, key: &str, value: &str) {
    if unset_str(map, key) {
        map.insert(key.to_owned(), json!(value));
    }
}

/// Sets a plain number field when it is unset.
fn default_num(map: &mut Map<String, Value>, key: &str, value: i64) {
    if unset_num(map, key) {
        map.insert(key.to_owned(), json!(value));
    }
}

/// Whether a map-valued field is empty (missing, `null` or `{}`), as Go's `len(m) == 0`.
fn empty_map(map: &Map<String, Value>, key: &str) -> bool {
    match map.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(_) => false,
    }
}

/// Whether a list-valued field is empty (missing, `null` or `[]`).
fn empty_list(map: &Map<String, Value>, key: &str) -> bool {
    match map.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    }
}

// ---------------------------------------------------------------------------------------------
// core/v1: pods and pod templates.

/// The pull policy upstream gives a container without one: `Always` for the `latest` tag or
/// no tag at all (which means `latest`), `IfNotPresent` for any other tag, a digest, or an
/// image reference it cannot parse.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image_tag(image).as_deref() == Some("latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// The tag `parsers.ParseImageName` finds: the explicit tag, `latest` when there is neither a
/// tag nor a digest, `None` when there is only a digest or the reference does not parse.
fn image_tag(image: &str) -> Option<String> {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    // A tag follows the last ':' after the last '/' (an earlier ':' is a registry port).
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    let repo_ok = !repo.is_empty()
        && !repo.starts_with('/')
        && !repo.ends_with('/')
        && repo.split('/').enumerate().all(|(i, part)| {
            !part.is_empty()
                && part.chars().all(|c| {
                    c.is_ascii_lowercase()
                        || c.is_ascii_digit()
                        || matches!(c, '.' | '_' | '-')
                        // The registry (first component) may carry a port and capitals.
                        || (i == 0 && (c == ':' || c.is_ascii_uppercase()))
                })
        });
    let tag_ok = tag.is_none_or(|t| {
        !t.is_empty()
            && t.len() <= 128
            && !t.starts_with(['.', '-'])
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    });
    let digest_ok = digest.is_none_or(|d| {
        d.split_once(':')
            .is_some_and(|(a, h)| !a.is_empty() && !h.is_empty())
    });
    if !(repo_ok && tag_ok && digest_ok) {
        return None;
    }
    match (tag, digest) {
        (Some(t), _) => Some(t.to_owned()),
        (None, Some(_)) => None,
        (None, None) => Some("latest".to_owned()),
    }
}

/// `SetObjectDefaults_Pod`: the pod spec's defaults plus those only a Pod gets
/// (`enableServiceLinks`, requests from limits, host ports on the host network, a negative
/// grace period raised to 1) and its status's.
fn pod(obj: &mut Map<String, Value>) {
    if let Some(spec) = child_or_empty(obj, "spec") {
        if spec
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|s| s < 0)
        {
            spec.insert("terminationGracePeriodSeconds".into(), json!(1));
        }
        for key in ["containers", "initContainers"] {
            for container in items(spec, key) {
                requests_from_limits(container);
            }
        }
        default_ptr(spec, "enableServiceLinks", json!(true));
        if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
            for key in ["containers", "initContainers"] {
                for container in items(spec, key) {
                    for port in items(container, "ports") {
                        if unset_num(port, "hostPort")
                            && let Some(p) = port.get("containerPort").cloned()
                        {
                            port.insert("hostPort".into(), p);
                        }
                    }
                }
            }
        }
        pod_spec(spec);
    }
    if let Some(status) = child(obj, "status") {
        pod_status(status);
    }
}

/// A container's requests default to its limits, resource by resource.
fn requests_from_limits(container: &mut Map<String, Value>) {
    let Some(resources) = child(container, "resources") else {
        return;
    };
    let Some(limits) = resources
        .get("limits")
        .and_then(Value::as_object)
        .filter(|l| !l.is_empty())
        .cloned()
    else {
        return;
    };
    let Some(requests) = child_or_empty(resources, "requests") else {
        return;
    };
    for (name, quantity) in limits {
        requests.entry(name).or_insert(quantity);
    }
}

/// `SetDefaults_PodStatus`: `podIP` and `podIPs` agree, `podIP` winning.
fn pod_status(status: &mut Map<String, Value>) {
    let ip = status
        .get("podIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let first = status
        .get("podIPs")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .map(|f| f.get("ip").and_then(Value::as_str).unwrap_or("").to_owned());
    match (ip, first) {
        (Some(ip), None) => {
            status.insert("podIPs".into(), json!([{"ip": ip}]));
        }
        (None, Some(first)) => {
            status.insert("podIP".into(), json!(first));
        }
        (Some(ip), Some(first)) if ip != first => {
            status.insert("podIPs".into(), json!([{"ip": ip}]));
        }
        _ => {}
    }
}

/// A pod template (`{metadata, spec}`): its spec's defaults.
fn pod_template(template: &mut Map<String, Value>) {
    if let Some(spec) = child_or_empty(template, "spec") {
        pod_spec(spec);
    }
}

/// The pod template at `spec.template` of a workload, if there is one.
fn workload_template(spec: &mut Map<String, Value>) {
    if let Some(template) = child_or_empty(spec, "template") {
        pod_template(template);
    }
}

/// `SetDefaults_PodSpec` and the defaults of what a pod spec holds (containers, volumes).
pub fn pod_spec(spec: &mut Map<String, Value>) {
    // serviceAccount is the deprecated alias of serviceAccountName; the name wins.
    if unset_str(spec, "serviceAccountName")
        && let Some(old) = spec.get("serviceAccount").filter(|v| !v.is_null()).cloned()
    {
        spec.insert("serviceAccountName".into(), old);
    }
    match spec.get("serviceAccountName").cloned() {
        Some(Value::String(name)) if !name.is_empty() => {
            spec.insert("serviceAccount".into(), json!(name));
        }
        _ => {
            spec.remove("serviceAccount");
        }
    }
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "restartPolicy", "Always");
    default_ptr(spec, "securityContext", json!({}));
    default_ptr(spec, "terminationGracePeriodSeconds", json!(30));
    default_str(spec, "schedulerName", "default-scheduler");
    for volume in items(spec, "volumes") {
        volume_defaults(volume);
    }
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        for c in items(spec, key) {
            container(c);
        }
    }
}

/// `SetDefaults_Container` and the defaults of its ports, env, probes and lifecycle hooks.
pub fn container(c: &mut Map<String, Value>) {
    if unset_str(c, "imagePullPolicy") {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = default_pull_policy(image);
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    default_str(c, "terminationMessagePath", "/dev/termination-log");
    default_str(c, "terminationMessagePolicy", "File");
    for port in items(c, "ports") {
        default_str(port, "protocol", "TCP");
    }
    for env in items(c, "env") {
        if let Some(from) = child(env, "valueFrom") {
            if let Some(field_ref) = child(from, "fieldRef") {
                default_str(field_ref, "apiVersion", "v1");
            }
            if let Some(file_ref) = child(from, "fileKeyRef") {
                default_ptr(file_ref, "optional", json!(false));
            }
        }
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = child(c, key) {
            probe(p);
        }
    }
    if let Some(lifecycle) = child(c, "lifecycle") {
        for key in ["postStart", "preStop"] {
            if let Some(http) = child(lifecycle, key).and_then(|h| child(h, "httpGet")) {
                http_get(http);
            }
        }
    }
}

/// `SetDefaults_Probe` and its handler's.
fn probe(p: &mut Map<String, Value>) {
    default_num(p, "timeoutSeconds", 1);
    default_num(p, "periodSeconds", 10);
    default_num(p, "successThreshold", 1);
    default_num(p, "failureThreshold", 3);
    if let Some(http) = child(p, "httpGet") {
        http_get(http);
    }
    if let Some(grpc) = child(p, "grpc") {
        default_ptr(grpc, "service", json!(""));
    }
}

/// `SetDefaults_HTTPGetAction`.
fn http_get(http: &mut Map<String, Value>) {
    default_str(http, "path", "/");
    default_str(http, "scheme", "HTTP");
}

/// The volume source keys of a `Volume` (everything but its name).
fn has_source(volume: &Map<String, Value>) -> bool {
    volume.iter().any(|(k, v)| k != "name" && !v.is_null())
}

/// `SetDefaults_Volume` and the defaults of each volume source.
fn volume_defaults(volume: &mut Map<String, Value>) {
    if !has_source(volume) {
        volume.insert("emptyDir".into(), json!({}));
    }
    if let Some(image) = child(volume, "image")
        && unset_str(image, "pullPolicy")
    {
        // Image volumes: Always only for an explicit or implied `latest` tag.
        let reference = image.get("reference").and_then(Value::as_str).unwrap_or("");
        let policy = default_pull_policy(reference);
        image.insert("pullPolicy".into(), json!(policy));
    }
    if let Some(host_path) = child(volume, "hostPath") {
        default_ptr(host_path, "type", json!(""));
    }
    for key in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(source) = child(volume, key) {
            default_ptr(source, "defaultMode", json!(420));
        }
    }
    if let Some(downward) = child(volume, "downwardAPI") {
        downward_items(downward);
    }
    if let Some(projected) = child(volume, "projected") {
        for source in items(projected, "sources") {
            if let Some(downward) = child(source, "downwardAPI") {
                downward_items(downward);
            }
            if let Some(token) = child(source, "serviceAccountToken") {
                default_ptr(token, "expirationSeconds", json!(3600));
            }
        }
    }
    if let Some(iscsi) = child(volume, "iscsi") {
        default_str(iscsi, "iscsiInterface", "default");
    }
    if let Some(rbd) = child(volume, "rbd") {
        default_str(rbd, "pool", "rbd");
        default_str(rbd, "user", "admin");
        default_str(rbd, "keyring", "/etc/ceph/keyring");
    }
    if let Some(azure) = child(volume, "azureDisk") {
        default_ptr(azure, "cachingMode", json!("ReadWrite"));
        default_ptr(azure, "fsType", json!("ext4"));
        default_ptr(azure, "readOnly", json!(false));
        default_ptr(azure, "kind", json!("Shared"));
    }
    if let Some(scale_io) = child(volume, "scaleIO") {
        default_str(scale_io, "storageMode", "ThinProvisioned");
        default_str(scale_io, "fsType", "xfs");
    }
    if let Some(claim_spec) = child(volume, "ephemeral")
        .and_then(|e| child(e, "volumeClaimTemplate"))
        .and_then(|t| child(t, "spec"))
    {
        default_ptr(claim_spec, "volumeMode", json!("Filesystem"));
    }
}

/// Downward API items' `fieldRef.apiVersion`.
fn downward_items(source: &mut Map<String, Value>) {
    for item in items(source, "items") {
        if let Some(field_ref) = child(item, "fieldRef") {
            default_str(field_ref, "apiVersion", "v1");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// core/v1: other kinds.

/// `SetObjectDefaults_ReplicationController`: selector and labels from the template's labels,
/// one replica, the template's defaults.
fn replication_controller(obj: &mut Map<String, Value>) {
    let template_labels = obj
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.is_object())
        .cloned();
    if let Some(labels) = template_labels {
        if let Some(spec) = child(obj, "spec")
            && empty_map(spec, "selector")
        {
            spec.insert("selector".into(), labels.clone());
        }
        if let Some(meta) = child_or_empty(obj, "metadata")
            && empty_map(meta, "labels")
        {
            meta.insert("labels".into(), labels);
        }
    }
    if let Some(spec) = child_or_empty(obj, "spec") {
        default_ptr(spec, "replicas", json!(1));
        if let Some(template) = child(spec, "template") {
            pod_template(template);
        }
    }
}

/// `SetDefaults_Service` (the IP families are the allocator's, in `api::lifecycle`).
fn service(obj: &mut Map<String, Value>) {
    let Some(spec) = child_or_empty(obj, "spec") else {
        return;
    };
    default_str(spec, "sessionAffinity", "None");
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let has_timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.get("clientIP"))
                .and_then(|c| c.get("timeoutSeconds"))
                .is_some_and(|t| !t.is_null());
            if !has_timeout {
                spec.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": {"timeoutSeconds": 10800}}),
                );
            }
        }
        _ => {}
    }
    default_str(spec, "type", "ClusterIP");
    for port in items(spec, "ports") {
        default_str(port, "protocol", "TCP");
        let target_unset = match port.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if target_unset && let Some(p) = port.get("port").cloned() {
            port.insert("targetPort".into(), p);
        }
    }
    let service_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let externally_accessible = service_type == "LoadBalancer"
        || service_type == "NodePort"
        || (service_type == "ClusterIP" && !empty_list(spec, "externalIPs"));
    if externally_accessible {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(
        service_type.as_str(),
        "NodePort" | "LoadBalancer" | "ClusterIP"
    ) {
        default_ptr(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if service_type == "LoadBalancer" {
        default_ptr(spec, "allocateLoadBalancerNodePorts", json!(true));
        if let Some(lb) = child(obj, "status").and_then(|s| child(s, "loadBalancer")) {
            for ingress in items(lb, "ingress") {
                if !unset_str(ingress, "ip") {
                    default_ptr(ingress, "ipMode", json!("VIP"));
                }
            }
        }
    }
}

/// `SetDefaults_Secret`: type `Opaque`.
fn secret(obj: &mut Map<String, Value>) {
    default_str(obj, "type", "Opaque");
}

/// `SetObjectDefaults_Namespace`: the `kubernetes.io/metadata.name` label, phase `Active`.
fn namespace(obj: &mut Map<String, Value>) {
    let name = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    if let Some(name) = name
        && let Some(labels) =
            child_or_empty(obj, "metadata").and_then(|m| child_or_empty(m, "labels"))
    {
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    if let Some(status) = child(obj, "status") {
        default_str(status, "phase", "Active");
    }
}

/// `SetDefaults_Endpoints`: ports' protocol TCP.
fn endpoints(obj: &mut Map<String, Value>) {
    for subset in items(obj, "subsets") {
        for port in items(subset, "ports") {
            default_str(port, "protocol", "TCP");
        }
    }
}

/// `SetDefaults_PersistentVolume`.
fn persistent_volume(obj: &mut Map<String, Value>) {
    if let Some(spec) = child_or_empty(obj, "spec") {
        default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
        default_ptr(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(status) = child_or_empty(obj, "status") {
        default_str(status, "phase", "Pending");
    }
}

/// `SetDefaults_PersistentVolumeClaim` and its spec's.
fn persistent_volume_claim(obj: &mut Map<String, Value>) {
    if let Some(spec) = child_or_empty(obj, "spec") {
        default_ptr(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(status) = child_or_empty(obj, "status") {
        default_str(status, "phase", "Pending");
    }
}

/// `SetDefaults_LimitRangeItem`: container limits default to the max, requests to the default
/// limit, then to the min.
fn limit_range(obj: &mut Map<String, Value>) {
    let Some(spec) = child(obj, "spec") else {
        return;
    };
    for item in items(spec, "limits") {
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            continue;
        }
        let max = item.get("max").and_then(Value::as_object).cloned();
        let min = item.get("min").and_then(Value::as_object).cloned();
        if let Some(default) = child_or_empty(item, "default") {
            for (k, v) in max.into_iter().flatten() {
                default.entry(k).or_insert(v);
            }
        }
        let default = item.get("default").and_then(Value::as_object).cloned();
        if let Some(request) = child_or_empty(item, "defaultRequest") {
            for (k, v) in default.into_iter().flatten() {
                request.entry(k).or_insert(v);
            }
            for (k, v) in min.into_iter().flatten() {
                request.entry(k).or_insert(v);
            }
        }
        // Go's empty maps are omitted when the object is written out.
        for key in ["default", "defaultRequest"] {
            if item
                .get(key)
                .and_then(Value::as_object)
                .is_some_and(Map::is_empty)
            {
                item.remove(key);
            }
        }
    }
}

/// `SetDefaults_NodeStatus`: allocatable defaults to capacity.
fn node(obj: &mut Map<String, Value>) {
    if let Some(status) = child(obj, "status")
        && unset(status, "allocatable")
        && let Some(capacity) = status.get("capacity").filter(|c| !c.is_null()).cloned()
    {
        status.insert("allocatable".into(), capacity);
    }
}

// ---------------------------------------------------------------------------------------------
// apps/v1

/// `SetDefaults_Deployment`.
fn deployment(obj: &mut Map<String, Value>) {
    let Some(spec) = child_or_empty(obj, "spec") else {
        return;
    };
    default_ptr(spec, "replicas", json!(1));
    if let Some(strategy) = child_or_empty(spec, "strategy") {
        default_str(strategy, "type", "RollingUpdate");
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(rolling) = child_or_empty(strategy, "rollingUpdate")
        {
            default_ptr(rolling, "maxUnavailable", json!("25%"));
            default_ptr(rolling, "maxSurge", json!("25%"));
        }
    }
    default_ptr(spec, "revisionHistoryLimit", json!(10));
    default_ptr(spec, "progressDeadlineSeconds", json!(600));
    workload_template(spec);
}

/// `SetDefaults_ReplicaSet`.
fn replica_set(obj: &mut Map<String, Value>) {
    if let Some(spec) = child_or_empty(obj, "spec") {
        default_ptr(spec, "replicas", json!(1));
        workload_template(spec);
    }
}

/// `SetDefaults_StatefulSet` (with `MaxUnavailableStatefulSet`, on by default in 1.37).
fn stateful_set(obj: &mut Map<String, Value>) {
    let Some(spec) = child_or_empty(obj, "spec") else {
        return;
    };
    default_str(spec, "podManagementPolicy", "OrderedReady");
    if let Some(strategy) = child_or_empty(spec, "updateStrategy") {
        if unset_str(strategy, "type") {
            strategy.insert("type".into(), json!("RollingUpdate"));
            default_ptr(strategy, "rollingUpdate", json!({}));
        }
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(rolling) = child(strategy, "rollingUpdate")
        {
            default_ptr(rolling, "partition", json!(0));
            default_ptr(rolling, "maxUnavailable", json!(1));
        }
    }
    if let Some(policy) = child_or_empty(spec, "persistentVolumeClaimRetentionPolicy") {
        default_str(policy, "whenDeleted", "Retain");
        default_str(policy, "whenScaled", "Retain");
    }
    default_ptr(spec, "replicas", json!(1));
    default_ptr(spec, "revisionHistoryLimit", json!(10));
    workload_template(spec);
    for claim in items(spec, "volumeClaimTemplates") {
        // A claim template is defaulted as a PersistentVolumeClaim.
        persistent_volume_claim(claim);
    }
}

/// `SetDefaults_DaemonSet`.
fn daemon_set(obj: &mut Map<String, Value>) {
    let Some(spec) = child_or_empty(obj, "spec") else {
        return;
    };
    if let Some(strategy) = child_or_empty(spec, "updateStrategy") {
        default_str(strategy, "type", "RollingUpdate");
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(rolling) = child_or_empty(strategy, "rollingUpdate")
        {
            default_ptr(rolling, "maxUnavailable", json!(1));
            default_ptr(rolling, "maxSurge", json!(0));
        }
    }
    default_ptr(spec, "revisionHistoryLimit", json!(10));
    workload_template(spec);
}

// ---------------------------------------------------------------------------------------------
// batch/v1

/// `SetDefaults_Job`.
fn job(obj: &mut Map<String, Value>) {
    let template_labels = obj
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.is_object())
        .cloned();
    if let Some(labels) = template_labels
        && let Some(meta) = child_or_empty(obj, "metadata")
        && empty_map(meta, "labels")
    {
        meta.insert("labels".into(), labels);
    }
    if let Some(spec) = child_or_empty(obj, "spec") {
        job_spec(spec);
    }
}

fn job_spec(spec: &mut Map<String, Value>) {
    if unset(spec, "completions") && unset(spec, "parallelism") {
        spec.insert("completions".into(), json!(1));
    }
    default_ptr(spec, "parallelism", json!(1));
    if unset(spec, "backoffLimit") {
        let limit = if unset(spec, "backoffLimitPerIndex") {
            6
        } else {
            i64::from(i32::MAX)
        };
        spec.insert("backoffLimit".into(), json!(limit));
    }
    default_ptr(spec, "completionMode", json!("NonIndexed"));
    default_ptr(spec, "suspend", json!(false));
    if unset(spec, "podReplacementPolicy") {
        let policy = if unset(spec, "podFailurePolicy") {
            "TerminatingOrFailed"
        } else {
            "Failed"
        };
        spec.insert("podReplacementPolicy".into(), json!(policy));
    }
    default_ptr(spec, "manualSelector", json!(false));
    pod_failure_policy(spec);
    workload_template(spec);
}

/// `SetDefaults_PodFailurePolicyOnPodConditionsPattern`: status `True`.
fn pod_failure_policy(spec: &mut Map<String, Value>) {
    if let Some(policy) = child(spec, "podFailurePolicy") {
        for rule in items(policy, "rules") {
            for pattern in items(rule, "onPodConditions") {
                default_str(pattern, "status", "True");
            }
        }
    }
}

/// `SetObjectDefaults_CronJob`: its own defaults and its job template's pod template's (the
/// job template is not a Job: it gets no Job defaults).
fn cron_job(obj: &mut Map<String, Value>) {
    let Some(spec) = child_or_empty(obj, "spec") else {
        return;
    };
    default_str(spec, "concurrencyPolicy", "Allow");
    default_ptr(spec, "suspend", json!(false));
    default_ptr(spec, "successfulJobsHistoryLimit", json!(3));
    default_ptr(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(job_spec) =
        child_or_empty(spec, "jobTemplate").and_then(|t| child_or_empty(t, "spec"))
    {
        pod_failure_policy(job_spec);
        workload_template(job_spec);
    }
}

// ---------------------------------------------------------------------------------------------
// Other groups.

/// `SetDefaults_EndpointPort`: name `""`, protocol TCP.
fn endpoint_slice(obj: &mut Map<String, Value>) {
    for port in items(obj, "ports") {
        default_ptr(port, "name", json!(""));
        default_ptr(port, "protocol", json!("TCP"));
    }
}

/// `SetDefaults_NetworkPolicy` and its ports'.
fn network_policy(obj: &mut Map<String, Value>) {
    let Some(spec) = child_or_empty(obj, "spec") else {
        return;
    };
    for direction in ["ingress", "egress"] {
        for rule in items(spec, direction) {
            for port in items(rule, "ports") {
                default_ptr(port, "protocol", json!("TCP"));
            }
        }
    }
    if empty_list(spec, "policyTypes") {
        let mut types = vec![json!("Ingress")];
        if !empty_list(spec, "egress") {
            types.push(json!("Egress"));
        }
        spec.insert("policyTypes".into(), Value::Array(types));
    }
}

/// `SetDefaults_IngressClass`: parameters' scope `Cluster`.
fn ingress_class(obj: &mut Map<String, Value>) {
    if let Some(parameters) = child(obj, "spec").and_then(|s| child(s, "parameters")) {
        default_ptr(parameters, "scope", json!("Cluster"));
    }
}

/// `SetDefaults_StorageClass`.
fn storage_class(obj: &mut Map<String, Value>) {
    default_ptr(obj, "reclaimPolicy", json!("Delete"));
    default_ptr(obj, "volumeBindingMode", json!("Immediate"));
}

/// `SetDefaults_RoleBinding`/`ClusterRoleBinding` and `SetDefaults_Subject`.
fn role_binding(obj: &mut Map<String, Value>) {
    if let Some(role_ref) = child(obj, "roleRef") {
        default_str(role_ref, "apiGroup", "rbac.authorization.k8s.io");
    }
    for subject in items(obj, "subjects") {
        if unset_str(subject, "apiGroup") {
            match subject.get("kind").and_then(Value::as_str) {
                Some("User" | "Group") => {
                    subject.insert("apiGroup".into(), json!("rbac.authorization.k8s.io"));
                }
                Some("ServiceAccount") => {
                    subject.insert("apiGroup".into(), json!(""));
                }
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Derived on create: a Pod's QoS class (the Pod strategy's `PrepareForCreate`, after defaults).

/// A resource quantity's value (`500m`, `1.5Gi`, `1e3`), `None` when it does not parse.
pub fn quantity_value(q: &Value) -> Option<f64> {
    let text = match q {
        Value::String(s) => s.trim(),
        Value::Number(n) => return n.as_f64(),
        _ => return None,
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let base: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => 10f64.powi(exp[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some(base * factor)
}

/// `resourceQOS` of one compute resource in a set of requirements.
fn resource_qos(resources: &Value, name: &str) -> &'static str {
    let amount = |kind: &str| {
        resources
            .get(kind)
            .and_then(|m| m.get(name))
            .and_then(quantity_value)
            .unwrap_or(0.0)
    };
    let (request, limit) = (amount("requests"), amount("limits"));
    if (request - limit).abs() > f64::EPSILON * request.abs().max(limit.abs()).max(1.0) {
        "Burstable"
    } else if request == 0.0 {
        "BestEffort"
    } else {
        "Guaranteed"
    }
}

/// `requirementsQOS`: the QoS shape of one container's (or the pod's) resources.
fn requirements_qos(resources: &Value) -> &'static str {
    let empty = |kind: &str| {
        resources
            .get(kind)
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
    };
    if empty("requests") && empty("limits") {
        return "BestEffort";
    }
    let (cpu, memory) = (
        resource_qos(resources, "cpu"),
        resource_qos(resources, "memory"),
    );
    if cpu == "Burstable" || memory == "Burstable" || cpu != memory {
        "Burstable"
    } else {
        cpu
    }
}

/// `ComputePodQOS`: from pod-level resources when they name cpu or memory, else from every
/// init and regular container: all BestEffort, all Guaranteed, or Burstable.
pub fn pod_qos_class(spec: &Value) -> &'static str {
    if let Some(resources) = spec.get("resources").filter(|r| {
        ["requests", "limits"].iter().any(|kind| {
            r.get(*kind)
                .and_then(Value::as_object)
                .is_some_and(|m| m.contains_key("cpu") || m.contains_key("memory"))
        })
    }) {
        return requirements_qos(resources);
    }
    let mut pod_qos: Option<&'static str> = None;
    for key in ["initContainers", "containers"] {
        for container in spec
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let qos = requirements_qos(container.get("resources").unwrap_or(&Value::Null));
            match pod_qos {
                _ if qos == "Burstable" => return qos,
                None => pod_qos = Some(qos),
                Some(p) if p != qos => return "Burstable",
                Some(_) => {}
            }
        }
    }
    pod_qos.unwrap_or("BestEffort")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Defaults `obj` as `group`/`kind`, checks that a second pass changes nothing.
    fn defaulted(group: &str, kind: &str, mut obj: Value) -> Value {
        apply(group, kind, &mut obj);
        let mut again = obj.clone();
        apply(group, kind, &mut again);
        assert_eq!(again, obj, "defaulting is idempotent");
        obj
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        for (image, policy) in [
            ("busybox", "Always"),
            ("busybox:latest", "Always"),
            ("docker.io/library/busybox", "Always"),
            ("localhost:5000/app", "Always"),
            ("localhost:5000/app:latest", "Always"),
            ("nginx:1.27", "IfNotPresent"),
            ("localhost:5000/app:v1", "IfNotPresent"),
            ("nginx@sha256:abcdef", "IfNotPresent"),
            ("nginx:latest@sha256:abcdef", "Always"),
            ("nginx:1.2@sha256:abcdef", "IfNotPresent"),
            ("", "IfNotPresent"),
            ("Not/Valid", "IfNotPresent"),
            ("nginx:", "IfNotPresent"),
        ] {
            assert_eq!(default_pull_policy(image), policy, "{image}");
        }
    }

    #[test]
    fn pod_spec_and_containers() {
        let pod = defaulted(
            "",
            "Pod",
            json!({"spec": {
                "containers": [{
                    "name": "c", "image": "nginx:1.27",
                    "ports": [{"containerPort": 80}],
                    "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "livenessProbe": {"httpGet": {"port": 80}},
                    "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 5},
                    "resources": {"limits": {"cpu": "1"}, "requests": {"memory": "1Mi"}}
                }],
                "initContainers": [{"name": "i", "image": "busybox"}],
                "volumes": [
                    {"name": "cm", "configMap": {"name": "x"}},
                    {"name": "s", "secret": {"secretName": "x", "defaultMode": 256}},
                    {"name": "d", "downwardAPI": {"items": [{"path": "p", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                    {"name": "p", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}},
                    {"name": "h", "hostPath": {"path": "/x"}},
                    {"name": "e"}
                ]
            }}),
        );
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                   "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(c["readinessProbe"]["periodSeconds"], 5, "kept");
        assert_eq!(
            c["resources"]["requests"],
            json!({"memory": "1Mi", "cpu": "1"}),
            "a Pod's requests default to its limits"
        );
        assert_eq!(spec["initContainers"][0]["imagePullPolicy"], "Always");
        let v = &spec["volumes"];
        assert_eq!(v[0]["configMap"]["defaultMode"], 420);
        assert_eq!(v[1]["secret"]["defaultMode"], 256, "kept");
        assert_eq!(v[2]["downwardAPI"]["defaultMode"], 420);
        assert_eq!(
            v[2]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"],
            "v1"
        );
        assert_eq!(v[3]["projected"]["defaultMode"], 420);
        assert_eq!(
            v[3]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3600
        );
        assert_eq!(v[4]["hostPath"]["type"], "");
        assert_eq!(v[5]["emptyDir"], json!({}));
    }

    #[test]
    fn user_values_are_kept() {
        let pod = defaulted(
            "",
            "Pod",
            json!({"spec": {
                "restartPolicy": "OnFailure", "terminationGracePeriodSeconds": 0,
                "dnsPolicy": "Default", "schedulerName": "mine", "enableServiceLinks": false,
                "securityContext": {"runAsUser": 1},
                "containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "Never",
                                "terminationMessagePolicy": "FallbackToLogsOnError"}]
            }}),
        );
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], "OnFailure");
        assert_eq!(spec["terminationGracePeriodSeconds"], 0);
        assert_eq!(spec["dnsPolicy"], "Default");
        assert_eq!(spec["schedulerName"], "mine");
        assert_eq!(spec["enableServiceLinks"], false);
        assert_eq!(spec["securityContext"], json!({"runAsUser": 1}));
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Never");
        assert_eq!(
            spec["containers"][0]["terminationMessagePolicy"],
            "FallbackToLogsOnError"
        );
        let never = defaulted(
            "",
            "Pod",
            json!({"spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": -5}}),
        );
        assert_eq!(never["spec"]["restartPolicy"], "Never");
        assert_eq!(never["spec"]["terminationGracePeriodSeconds"], 1);
    }

    #[test]
    fn service_account_alias() {
        let pod = defaulted("", "Pod", json!({"spec": {"serviceAccount": "old"}}));
        assert_eq!(pod["spec"]["serviceAccountName"], "old");
        let pod = defaulted(
            "",
            "Pod",
            json!({"spec": {"serviceAccount": "old", "serviceAccountName": "new"}}),
        );
        assert_eq!(pod["spec"]["serviceAccount"], "new");
        let pod = defaulted("", "Pod", json!({"spec": {}}));
        assert!(pod["spec"].get("serviceAccount").is_none());
    }

    #[test]
    fn pod_status_ips_agree() {
        let pod = defaulted("", "Pod", json!({"status": {"podIP": "10.0.0.1"}}));
        assert_eq!(pod["status"]["podIPs"], json!([{"ip": "10.0.0.1"}]));
        let pod = defaulted(
            "",
            "Pod",
            json!({"status": {"podIPs": [{"ip": "10.0.0.2"}]}}),
        );
        assert_eq!(pod["status"]["podIP"], "10.0.0.2");
    }

    #[test]
    fn templates_get_pod_spec_defaults_but_not_pod_only_ones() {
        let deploy = defaulted(
            "apps",
            "Deployment",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}}}),
        );
        let spec = &deploy["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        let pod_spec = &spec["template"]["spec"];
        assert_eq!(pod_spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod_spec["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert!(
            pod_spec.get("enableServiceLinks").is_none(),
            "Pods only, as upstream"
        );
        let recreate = defaulted(
            "apps",
            "Deployment",
            json!({"spec": {"replicas": 0, "strategy": {"type": "Recreate"}}}),
        );
        assert_eq!(recreate["spec"]["replicas"], 0);
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn apps_workloads() {
        let rs = defaulted("apps", "ReplicaSet", json!({"spec": {}}));
        assert_eq!(rs["spec"]["replicas"], 1);
        let sts = defaulted("apps", "StatefulSet", json!({"spec": {}}));
        assert_eq!(sts["spec"]["replicas"], 1);
        assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            sts["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0, "maxUnavailable": 1}})
        );
        assert_eq!(sts["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(
            sts["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        let on_delete = defaulted(
            "apps",
            "StatefulSet",
            json!({"spec": {"updateStrategy": {"type": "OnDelete"}}}),
        );
        assert_eq!(
            on_delete["spec"]["updateStrategy"],
            json!({"type": "OnDelete"})
        );
        let ds = defaulted("apps", "DaemonSet", json!({"spec": {}}));
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
    }

    #[test]
    fn batch_workloads() {
        let job = defaulted(
            "batch",
            "Job",
            json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}},
                                         "spec": {"restartPolicy": "Never"}}}}),
        );
        let spec = &job["spec"];
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
        assert_eq!(job["metadata"]["labels"], json!({"a": "b"}));
        let parallel = defaulted("batch", "Job", json!({"spec": {"parallelism": 3}}));
        assert!(parallel["spec"].get("completions").is_none());
        let cron = defaulted(
            "batch",
            "CronJob",
            json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {}}}}}}),
        );
        let spec = &cron["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Allow");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["successfulJobsHistoryLimit"], 3);
        assert_eq!(spec["failedJobsHistoryLimit"], 1);
        let job_spec = &spec["jobTemplate"]["spec"];
        assert!(job_spec.get("backoffLimit").is_none(), "not a Job");
        assert_eq!(job_spec["template"]["spec"]["restartPolicy"], "Always");
    }

    #[test]
    fn services() {
        let svc = defaulted(
            "",
            "Service",
            json!({"spec": {"ports": [{"port": 80}, {"port": 81, "targetPort": "http", "protocol": "UDP"}]}}),
        );
        let spec = &svc["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(
            spec["ports"],
            json!([{"port": 80, "protocol": "TCP", "targetPort": 80},
                   {"port": 81, "targetPort": "http", "protocol": "UDP"}])
        );
        assert!(spec.get("externalTrafficPolicy").is_none());
        let lb = defaulted(
            "",
            "Service",
            json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP"}}),
        );
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
        assert_eq!(
            lb["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            10800
        );
        let external = defaulted(
            "",
            "Service",
            json!({"spec": {"type": "ExternalName", "externalName": "x.example"}}),
        );
        assert!(external["spec"].get("internalTrafficPolicy").is_none());
    }

    #[test]
    fn secrets_namespaces_and_others() {
        assert_eq!(defaulted("", "Secret", json!({}))["type"], "Opaque");
        assert_eq!(
            defaulted("", "Secret", json!({"type": "kubernetes.io/tls"}))["type"],
            "kubernetes.io/tls"
        );
        let ns = defaulted("", "Namespace", json!({"metadata": {"name": "x"}}));
        assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "x");
        let pv = defaulted("", "PersistentVolume", json!({"spec": {}}));
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pv["status"]["phase"], "Pending");
        let np = defaulted(
            "networking.k8s.io",
            "NetworkPolicy",
            json!({"spec": {"egress": [{"ports": [{"port": 53}]}]}}),
        );
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
        let sc = defaulted(
            "storage.k8s.io",
            "StorageClass",
            json!({"provisioner": "x"}),
        );
        assert_eq!(sc["reclaimPolicy"], "Delete");
        assert_eq!(sc["volumeBindingMode"], "Immediate");
        let rb = defaulted(
            "rbac.authorization.k8s.io",
            "RoleBinding",
            json!({"roleRef": {"kind": "Role", "name": "r"},
                   "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "s"}]}),
        );
        assert_eq!(rb["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(rb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
        let lr = defaulted(
            "",
            "LimitRange",
            json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}]}}),
        );
        assert_eq!(lr["spec"]["limits"][0]["default"], json!({"cpu": "2"}));
        assert_eq!(
            lr["spec"]["limits"][0]["defaultRequest"],
            json!({"cpu": "2", "memory": "1Mi"})
        );
        let rc = defaulted(
            "",
            "ReplicationController",
            json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {}}}}),
        );
        assert_eq!(rc["spec"]["selector"], json!({"a": "b"}));
        assert_eq!(rc["metadata"]["labels"], json!({"a": "b"}));
        assert_eq!(rc["spec"]["replicas"], 1);
    }

    #[test]
    fn quantities_and_qos_classes() {
        assert_eq!(quantity_value(&json!("500m")), Some(0.5));
        assert_eq!(quantity_value(&json!("1Gi")), Some(1024f64.powi(3)));
        assert_eq!(quantity_value(&json!("1e3")), Some(1000.0));
        assert_eq!(quantity_value(&json!(2)), Some(2.0));
        assert_eq!(quantity_value(&json!("x")), None);
        let spec =
            |resources: Value| json!({"containers": [{"name": "c", "resources": resources}]});
        assert_eq!(pod_qos_class(&spec(json!({}))), "BestEffort");
        assert_eq!(pod_qos_class(&json!({})), "BestEffort");
        assert_eq!(
            pod_qos_class(&spec(json!({"limits": {"cpu": "1", "memory": "1Gi"},
                                       "requests": {"cpu": "1000m", "memory": "1Gi"}}))),
            "Guaranteed"
        );
        assert_eq!(
            pod_qos_class(&spec(
                json!({"limits": {"cpu": "1"}, "requests": {"cpu": "1"}})
            )),
            "Burstable",
            "memory unset"
        );
        assert_eq!(
            pod_qos_class(&spec(json!({"requests": {"memory": "1Mi"}}))),
            "Burstable"
        );
        // After defaulting, limits alone make a Guaranteed pod.
        let pod = defaulted(
            "",
            "Pod",
            json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}),
        );
        assert_eq!(pod_qos_class(&pod["spec"]), "Guaranteed");
        let mixed = json!({"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"},
                                        "requests": {"cpu": "1", "memory": "1Gi"}}},
            {"name": "b"}]});
        assert_eq!(pod_qos_class(&mixed), "Burstable");
    }

    #[test]
    fn malformed_input_is_left_alone() {
        for (group, kind) in [
            ("", "Pod"),
            ("apps", "Deployment"),
            ("batch", "CronJob"),
            ("", "Service"),
            ("", "Secret"),
        ] {
            for bad in [
                json!("text"),
                json!({"spec": "text"}),
                json!({"spec": {"template": 3, "containers": [1, "x", null]}}),
                json!({"spec": {"containers": {"a": 1}, "volumes": [{"name": 1}]}}),
            ] {
                let mut obj = bad.clone();
                apply(group, kind, &mut obj);
            }
        }
        let mut obj = json!({"spec": "text"});
        apply("", "Pod", &mut obj);
        assert_eq!(obj, json!({"spec": "text"}));
        let mut other = json!({"spec": {}});
        apply("example.com", "Widget", &mut other);
        assert_eq!(other, json!({"spec": {}}));
    }
}
