//! The built-in kinds devcluster serves, with their scope, subresources and schemas.
//!
//! Schemas come from k8s-openapi's `schemars` implementations. Those carry structure but not the
//! merge semantics the real OpenAPI document has (`x-kubernetes-patch-merge-key`,
//! `x-kubernetes-list-type`, ...), so [`MERGE_ANNOTATIONS`] adds them back for the types where
//! strategic merge patch and server-side apply need them, copied from upstream's `api/openapi-spec`.

use std::sync::{Arc, OnceLock};

use k8s_openapi::api::{
    admissionregistration::v1 as admreg, apps::v1 as apps, authentication::v1 as authn,
    authorization::v1 as authz, autoscaling::v2 as autoscaling, batch::v1 as batch,
    coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
    events::v1 as events, networking::v1 as net, policy::v1 as policy, rbac::v1 as rbac,
    storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
use schemars::JsonSchema;
use serde_json::{Map, Value, json};

use crate::conversion::Conversion;
use crate::resources::{Origin, PrinterColumn, ResourceInfo, ScaleSpec, SchemaInfo, StorageKey};
use crate::validation::NameRule;

/// OpenAPI extension keys and values attached to one property.
type Extensions = &'static [(&'static str, &'static str)];

/// Merge semantics per (definition, property): the upstream OpenAPI extensions.
const MERGE_ANNOTATIONS: &[(&str, &str, Extensions)] = &[
    ("io.k8s.api.core.v1.PodSpec", "containers", MERGE_BY_NAME),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        MERGE_BY_NAME,
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        MERGE_BY_NAME,
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        &[
            ("x-kubernetes-patch-strategy", "merge,retainKeys"),
            ("x-kubernetes-patch-merge-key", "name"),
        ],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        MERGE_BY_NAME,
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "hostAliases",
        &[
            ("x-kubernetes-patch-strategy", "merge"),
            ("x-kubernetes-patch-merge-key", "ip"),
        ],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        MERGE_BY_NAME,
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        MERGE_BY_NAME,
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        &[
            ("x-kubernetes-patch-strategy", "merge"),
            ("x-kubernetes-patch-merge-key", "topologyKey"),
            ("x-kubernetes-list-type", "map"),
            (
                "x-kubernetes-list-map-keys",
                "topologyKey,whenUnsatisfiable",
            ),
        ],
    ),
    ("io.k8s.api.core.v1.Container", "env", MERGE_BY_NAME),
    ("io.k8s.api.core.v1.Container", "ports", CONTAINER_PORTS),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        &[
            ("x-kubernetes-patch-strategy", "merge"),
            ("x-kubernetes-patch-merge-key", "mountPath"),
        ],
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        &[
            ("x-kubernetes-patch-strategy", "merge"),
            ("x-kubernetes-patch-merge-key", "devicePath"),
        ],
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        MERGE_BY_NAME,
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        CONTAINER_PORTS,
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        &[
            ("x-kubernetes-patch-strategy", "merge"),
            ("x-kubernetes-patch-merge-key", "mountPath"),
        ],
    ),
    ("io.k8s.api.core.v1.PodStatus", "conditions", MERGE_BY_TYPE),
    (
        "io.k8s.api.core.v1.PodStatus",
        "podIPs",
        &[
            ("x-kubernetes-patch-strategy", "merge"),
            ("x-kubernetes-patch-merge-key", "ip"),
        ],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        &[
            ("x-kubernetes-patch-strategy", "merge"),
            ("x-kubernetes-patch-merge-key", "port"),
            ("x-kubernetes-list-type", "map"),
            ("x-kubernetes-list-map-keys", "port,protocol"),
        ],
    ),
    (
        "io.k8s.api.core.v1.ServiceStatus",
        "conditions",
        MERGE_BY_TYPE,
    ),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", MERGE_BY_TYPE),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        &[
            ("x-kubernetes-patch-strategy", "merge"),
            ("x-kubernetes-patch-merge-key", "type"),
        ],
    ),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        MERGE_BY_TYPE,
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        MERGE_BY_TYPE,
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "conditions",
        MERGE_BY_TYPE,
    ),
    (
        "io.k8s.api.core.v1.ServiceAccount",
        "secrets",
        MERGE_BY_NAME,
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        &[
            ("x-kubernetes-patch-strategy", "merge"),
            ("x-kubernetes-list-type", "set"),
        ],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        &[
            ("x-kubernetes-patch-strategy", "merge"),
            ("x-kubernetes-patch-merge-key", "uid"),
            ("x-kubernetes-list-type", "map"),
            ("x-kubernetes-list-map-keys", "uid"),
        ],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "managedFields",
        &[("x-kubernetes-list-type", "atomic")],
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        MERGE_BY_TYPE,
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        MERGE_BY_TYPE,
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        MERGE_BY_TYPE,
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        MERGE_BY_TYPE,
    ),
    (
        "io.k8s.api.batch.v1.JobStatus",
        "conditions",
        &[
            ("x-kubernetes-patch-strategy", "merge"),
            ("x-kubernetes-patch-merge-key", "type"),
            ("x-kubernetes-list-type", "atomic"),
        ],
    ),
    (
        "io.k8s.api.policy.v1.PodDisruptionBudgetStatus",
        "conditions",
        MERGE_BY_TYPE,
    ),
    (
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus",
        "conditions",
        MERGE_BY_TYPE,
    ),
    (
        "io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration",
        "webhooks",
        MERGE_BY_NAME,
    ),
    (
        "io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration",
        "webhooks",
        MERGE_BY_NAME,
    ),
];

const MERGE_BY_NAME: &[(&str, &str)] = &[
    ("x-kubernetes-patch-strategy", "merge"),
    ("x-kubernetes-patch-merge-key", "name"),
];
const MERGE_BY_TYPE: &[(&str, &str)] = &[
    ("x-kubernetes-patch-strategy", "merge"),
    ("x-kubernetes-patch-merge-key", "type"),
    ("x-kubernetes-list-type", "map"),
    ("x-kubernetes-list-map-keys", "type"),
];
const CONTAINER_PORTS: &[(&str, &str)] = &[
    ("x-kubernetes-patch-strategy", "merge"),
    ("x-kubernetes-patch-merge-key", "containerPort"),
    ("x-kubernetes-list-type", "map"),
    ("x-kubernetes-list-map-keys", "containerPort,protocol"),
];

/// Types whose objects are owned and replaced whole by server-side apply.
const ATOMIC_MAPS: &[&str] = &[
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.ConfigMapKeySelector",
    "io.k8s.api.core.v1.SecretKeySelector",
    "io.k8s.api.core.v1.ObjectFieldSelector",
    "io.k8s.api.core.v1.ResourceFieldSelector",
    "io.k8s.api.core.v1.NodeSelector",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
];

/// Defaults the upstream OpenAPI declares that server-side apply needs for list-map keys.
const DEFAULTS: &[(&str, &str, &str)] = &[
    ("io.k8s.api.core.v1.ContainerPort", "protocol", "TCP"),
    ("io.k8s.api.core.v1.ServicePort", "protocol", "TCP"),
];

fn annotate(name: &str, schema: &mut Value) {
    for (def, prop, default) in DEFAULTS {
        if *def == name
            && let Some(p) = schema
                .get_mut("properties")
                .and_then(|p| p.get_mut(*prop))
                .and_then(Value::as_object_mut)
        {
            p.insert("default".into(), json!(default));
        }
    }
    if ATOMIC_MAPS.contains(&name)
        && let Some(obj) = schema.as_object_mut()
    {
        obj.insert("x-kubernetes-map-type".into(), json!("atomic"));
    }
    for (def, prop, exts) in MERGE_ANNOTATIONS {
        if *def != name {
            continue;
        }
        let Some(p) = schema
            .get_mut("properties")
            .and_then(|p| p.get_mut(*prop))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for (k, v) in *exts {
            let value = if *k == "x-kubernetes-list-map-keys" {
                json!(v.split(',').collect::<Vec<_>>())
            } else {
                json!(v)
            };
            p.insert((*k).to_owned(), value);
        }
    }
}

/// The annotated schema of a built-in type, with all definitions it refers to.
pub fn schema_of<T: JsonSchema>() -> SchemaInfo {
    let mut root: Value = schemars::SchemaGenerator::default()
        .into_root_schema_for::<T>()
        .into();
    let mut defs = match root.as_object_mut().and_then(|r| r.remove("$defs")) {
        Some(Value::Object(defs)) => defs,
        _ => Map::new(),
    };
    for (name, def) in defs.iter_mut() {
        annotate(name, def);
    }
    annotate(&T::schema_name(), &mut root);
    SchemaInfo { root, defs }
}

/// Describes one built-in resource compactly; expanded by [`builtin_resources`].
struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    status: bool,
    scale: bool,
    generation: bool,
    name_rule: NameRule,
    categories: &'static [&'static str],
    selectable: &'static [&'static str],
    schema: fn() -> SchemaInfo,
    /// Another resource's collection (group, plural) holding these objects, and the conversion.
    stored_in: Option<(&'static str, &'static str, Conversion)>,
    /// Verbs served; every verb unless the resource is create-only (reviews).
    verbs: &'static [&'static str],
}

const fn b(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    schema: fn() -> SchemaInfo,
) -> Builtin {
    Builtin {
        group,
        version,
        plural,
        singular,
        kind,
        namespaced,
        short_names: &[],
        status: false,
        scale: false,
        generation: false,
        name_rule: NameRule::Dns1123Subdomain,
        categories: &[],
        selectable: &[],
        schema,
        stored_in: None,
        verbs: ALL_VERBS,
    }
}

impl Builtin {
    const fn short(mut self, s: &'static [&'static str]) -> Self {
        self.short_names = s;
        self
    }
    const fn status(mut self) -> Self {
        self.status = true;
        self
    }
    const fn scale(mut self) -> Self {
        self.scale = true;
        self
    }
    const fn generation(mut self) -> Self {
        self.generation = true;
        self
    }
    const fn names(mut self, rule: NameRule) -> Self {
        self.name_rule = rule;
        self
    }
    const fn all(mut self) -> Self {
        self.categories = &["all"];
        self
    }
    const fn fields(mut self, f: &'static [&'static str]) -> Self {
        self.selectable = f;
        self
    }
    /// Only `create`, never stored: reviews such as TokenReview, answered by `api::auth`.
    const fn create_only(mut self) -> Self {
        self.verbs = &["create"];
        self
    }
    /// Served from the storage of `group/plural`, converted by `conversion`.
    const fn stored_in(
        mut self,
        group: &'static str,
        plural: &'static str,
        conversion: Conversion,
    ) -> Self {
        self.stored_in = Some((group, plural, conversion));
        self
    }
}

const POD_FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];
const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];
/// Upstream's field label conversion for events.k8s.io/v1 (pkg/apis/events/v1/conversion.go);
/// the labels select on the stored core Event through [`Conversion::field_label`].
const EVENTS_V1_FIELDS: &[&str] = &[
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reason",
    "reportingController",
    "source",
    "type",
];

#[rustfmt::skip]
fn table() -> Vec<Builtin> {
    use NameRule::*;
    vec![
        b("", "v1", "namespaces", "namespace", "Namespace", false, schema_of::<core::Namespace>)
            .short(&["ns"]).status().names(Dns1123Label).fields(&["status.phase"]),
        b("", "v1", "pods", "pod", "Pod", true, schema_of::<core::Pod>)
            .short(&["po"]).status().all().fields(POD_FIELDS),
        b("", "v1", "services", "service", "Service", true, schema_of::<core::Service>)
            .short(&["svc"]).status().all().names(Dns1035Label)
            .fields(&["spec.clusterIP", "spec.type"]),
        b("", "v1", "configmaps", "configmap", "ConfigMap", true, schema_of::<core::ConfigMap>)
            .short(&["cm"]),
        b("", "v1", "secrets", "secret", "Secret", true, schema_of::<core::Secret>)
            .fields(&["type"]),
        b("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", true,
            schema_of::<core::ServiceAccount>).short(&["sa"]),
        b("", "v1", "events", "event", "Event", true, schema_of::<core::Event>)
            .short(&["ev"]).fields(EVENT_FIELDS).names(PathSegment),
        b("", "v1", "endpoints", "endpoints", "Endpoints", true, schema_of::<core::Endpoints>)
            .short(&["ep"]),
        b("", "v1", "nodes", "node", "Node", false, schema_of::<core::Node>)
            .short(&["no"]).status().fields(&["spec.unschedulable"]),
        b("", "v1", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim",
            true, schema_of::<core::PersistentVolumeClaim>).short(&["pvc"]).status(),
        b("", "v1", "persistentvolumes", "persistentvolume", "PersistentVolume", false,
            schema_of::<core::PersistentVolume>).short(&["pv"]).status(),
        b("", "v1", "limitranges", "limitrange", "LimitRange", true,
            schema_of::<core::LimitRange>).short(&["limits"]),
        b("", "v1", "resourcequotas", "resourcequota", "ResourceQuota", true,
            schema_of::<core::ResourceQuota>).short(&["quota"]).status(),
        b("", "v1", "replicationcontrollers", "replicationcontroller", "ReplicationController",
            true, schema_of::<core::ReplicationController>)
            .short(&["rc"]).status().scale().generation().all().fields(&["status.replicas"]),
        b("", "v1", "podtemplates", "podtemplate", "PodTemplate", true,
            schema_of::<core::PodTemplate>),
        b("apps", "v1", "deployments", "deployment", "Deployment", true,
            schema_of::<apps::Deployment>).short(&["deploy"]).status().scale().generation().all(),
        b("apps", "v1", "replicasets", "replicaset", "ReplicaSet", true,
            schema_of::<apps::ReplicaSet>).short(&["rs"]).status().scale().generation().all()
            .fields(&["status.replicas"]),
        b("apps", "v1", "statefulsets", "statefulset", "StatefulSet", true,
            schema_of::<apps::StatefulSet>).short(&["sts"]).status().scale().generation().all(),
        b("apps", "v1", "daemonsets", "daemonset", "DaemonSet", true,
            schema_of::<apps::DaemonSet>).short(&["ds"]).status().generation().all(),
        b("apps", "v1", "controllerrevisions", "controllerrevision", "ControllerRevision", true,
            schema_of::<apps::ControllerRevision>),
        b("batch", "v1", "jobs", "job", "Job", true, schema_of::<batch::Job>)
            .status().generation().all().fields(&["status.successful"]),
        b("batch", "v1", "cronjobs", "cronjob", "CronJob", true, schema_of::<batch::CronJob>)
            .short(&["cj"]).status().generation().all(),
        b("coordination.k8s.io", "v1", "leases", "lease", "Lease", true,
            schema_of::<coordination::Lease>),
        b("events.k8s.io", "v1", "events", "event", "Event", true, schema_of::<events::Event>)
            .short(&["ev"]).fields(EVENTS_V1_FIELDS).names(PathSegment)
            .stored_in("", "events", Conversion::EventsV1),
        b("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", true,
            schema_of::<rbac::Role>).names(PathSegment),
        b("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding", true,
            schema_of::<rbac::RoleBinding>).names(PathSegment),
        b("rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole", false,
            schema_of::<rbac::ClusterRole>).names(PathSegment),
        b("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding",
            "ClusterRoleBinding", false, schema_of::<rbac::ClusterRoleBinding>)
            .names(PathSegment),
        b("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
            "mutatingwebhookconfiguration", "MutatingWebhookConfiguration", false,
            schema_of::<admreg::MutatingWebhookConfiguration>).generation(),
        b("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
            "validatingwebhookconfiguration", "ValidatingWebhookConfiguration", false,
            schema_of::<admreg::ValidatingWebhookConfiguration>).generation(),
        b("apiextensions.k8s.io", "v1", "customresourcedefinitions", "customresourcedefinition",
            "CustomResourceDefinition", false, schema_of::<apiext::CustomResourceDefinition>)
            .short(&["crd", "crds"]).status().generation(),
        b("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", true,
            schema_of::<discovery::EndpointSlice>),
        b("networking.k8s.io", "v1", "ingresses", "ingress", "Ingress", true,
            schema_of::<net::Ingress>).short(&["ing"]).status().generation(),
        b("networking.k8s.io", "v1", "networkpolicies", "networkpolicy", "NetworkPolicy", true,
            schema_of::<net::NetworkPolicy>).short(&["netpol"]).generation(),
        b("networking.k8s.io", "v1", "ingressclasses", "ingressclass", "IngressClass", false,
            schema_of::<net::IngressClass>).generation(),
        b("policy", "v1", "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget",
            true, schema_of::<policy::PodDisruptionBudget>).short(&["pdb"]).status().generation(),
        b("storage.k8s.io", "v1", "storageclasses", "storageclass", "StorageClass", false,
            schema_of::<storage::StorageClass>).short(&["sc"]),
        b("authentication.k8s.io", "v1", "tokenreviews", "tokenreview", "TokenReview", false,
            schema_of::<authn::TokenReview>).create_only(),
        b("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "selfsubjectaccessreview",
            "SelfSubjectAccessReview", false, schema_of::<authz::SelfSubjectAccessReview>)
            .create_only(),
        b("authorization.k8s.io", "v1", "subjectaccessreviews", "subjectaccessreview",
            "SubjectAccessReview", false, schema_of::<authz::SubjectAccessReview>).create_only(),
        b("autoscaling", "v2", "horizontalpodautoscalers", "horizontalpodautoscaler",
            "HorizontalPodAutoscaler", true, schema_of::<autoscaling::HorizontalPodAutoscaler>)
            .short(&["hpa"]).status().generation().all(),
    ]
}

fn printer_columns(group: &str, kind: &str) -> Vec<PrinterColumn> {
    let col = |name: &str, type_: &str, path: &str, priority: i64| PrinterColumn {
        name: name.to_owned(),
        type_: type_.to_owned(),
        format: String::new(),
        description: String::new(),
        priority,
        json_path: path.to_owned(),
    };
    match kind {
        "Pod" => vec![
            col("Status", "string", ".status.phase", 0),
            col("IP", "string", ".status.podIP", 1),
            col("Node", "string", ".spec.nodeName", 1),
        ],
        "Deployment" | "StatefulSet" | "ReplicaSet" => vec![
            col("Desired", "integer", ".spec.replicas", 0),
            col("Ready", "integer", ".status.readyReplicas", 0),
            col("Up-to-date", "integer", ".status.updatedReplicas", 0),
            col("Available", "integer", ".status.availableReplicas", 0),
        ],
        "Service" => vec![
            col("Type", "string", ".spec.type", 0),
            col("Cluster-IP", "string", ".spec.clusterIP", 0),
        ],
        "Namespace" => vec![col("Status", "string", ".status.phase", 0)],
        "Secret" => vec![col("Type", "string", ".type", 0)],
        "Lease" => vec![col("Holder", "string", ".spec.holderIdentity", 0)],
        // Upstream prints both event APIs from the internal (core) type: Last Seen, Type,
        // Reason, Object, Message; the computed ones (Last Seen, Object) have no JSONPath.
        "Event" if group.is_empty() => vec![
            col("Type", "string", ".type", 0),
            col("Reason", "string", ".reason", 0),
            col("Message", "string", ".message", 0),
        ],
        "Event" => vec![
            col("Type", "string", ".type", 0),
            col("Reason", "string", ".reason", 0),
            col("Message", "string", ".note", 0),
        ],
        _ => Vec::new(),
    }
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Every built-in resource. Schemas are generated once per process (they are immutable).
pub fn builtin_resources() -> Vec<ResourceInfo> {
    static CACHE: OnceLock<Vec<ResourceInfo>> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            table()
                .into_iter()
                .map(|t| ResourceInfo {
                    group: t.group.to_owned(),
                    version: t.version.to_owned(),
                    plural: t.plural.to_owned(),
                    singular: t.singular.to_owned(),
                    kind: t.kind.to_owned(),
                    list_kind: format!("{}List", t.kind),
                    namespaced: t.namespaced,
                    short_names: t.short_names.iter().map(|s| (*s).to_owned()).collect(),
                    categories: t.categories.iter().map(|s| (*s).to_owned()).collect(),
                    status_subresource: t.status,
                    scale: t.scale.then(|| ScaleSpec {
                        spec_replicas_path: ".spec.replicas".into(),
                        status_replicas_path: ".status.replicas".into(),
                        label_selector_path: Some(".status.selector".into()),
                    }),
                    name_rule: t.name_rule,
                    has_generation: t.generation,
                    verbs: t.verbs.to_vec(),
                    schema: Some(Arc::new((t.schema)())),
                    printer_columns: printer_columns(t.group, t.kind),
                    selectable_fields: t.selectable.iter().map(|s| (*s).to_owned()).collect(),
                    origin: Origin::Builtin,
                    storage: t.stored_in.map(|(group, plural, _)| StorageKey {
                        group: group.to_owned(),
                        resource: plural.to_owned(),
                    }),
                    conversion: t.stored_in.map_or(Conversion::Identity, |(_, _, c)| c),
                })
                .collect()
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ListType;

    #[test]
    fn deployment_schema_carries_merge_keys() {
        let all = builtin_resources();
        let deploy = all.iter().find(|r| r.kind == "Deployment").unwrap();
        let root = deploy.schema_node();
        let pod_spec = root.property("spec").property("template").property("spec");
        assert_eq!(
            pod_spec.property("containers").list_type(),
            ListType::Map(vec!["name".into()])
        );
        let container = pod_spec.property("containers").items();
        assert_eq!(
            container.property("ports").list_type(),
            ListType::Map(vec!["containerPort".into(), "protocol".into()])
        );
        assert_eq!(
            root.property("metadata").property("finalizers").list_type(),
            ListType::Set
        );
        assert_eq!(
            root.property("spec").property("selector").map_type(),
            crate::schema::MapType::Atomic
        );
        assert_eq!(pod_spec.property("volumes").patch_merge_key(), Some("name"));
    }

    #[test]
    fn both_event_apis_share_the_core_event_storage() {
        let all = builtin_resources();
        let event = |group: &str| {
            all.iter()
                .find(|r| r.group == group && r.plural == "events")
                .unwrap()
        };
        let (core, events) = (event(""), event("events.k8s.io"));
        assert_eq!(core.storage_key(), events.storage_key());
        assert_eq!(core.storage_key().group, "");
        assert_eq!(core.conversion, Conversion::Identity);
        assert_eq!(events.conversion, Conversion::EventsV1);
        // Every other built-in has a collection of its own.
        let shared = all
            .iter()
            .filter(|r| r.storage_key() == core.storage_key())
            .count();
        let unique: std::collections::HashSet<_> = all.iter().map(|r| r.storage_key()).collect();
        assert_eq!(shared, 2);
        assert_eq!(unique.len(), all.len() - 1);
    }

    #[test]
    fn every_builtin_has_a_schema_and_unique_resource() {
        let all = builtin_resources();
        let mut seen = std::collections::HashSet::new();
        for r in &all {
            assert!(
                seen.insert((r.group.clone(), r.plural.clone())),
                "{}",
                r.plural
            );
            assert!(r.schema_node().has_property("metadata"), "{}", r.kind);
        }
    }
}
