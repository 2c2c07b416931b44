//! `cargo xtask protobuf-descriptors`: writes the protobuf descriptor table devcluster decodes
//! `application/vnd.kubernetes.protobuf` request bodies with.
//!
//! Typed Go clients (kubectl among them) send built-in kinds as protobuf. The wire format of each
//! kind is its message in the upstream `generated.proto` files; this generator reads those files
//! (simple proto2: `package`, `import`, `option`, flat `message` blocks of `optional`/`repeated`
//! fields and `map<K, V>` fields), keeps the messages reachable from the kinds devcluster accepts,
//! and writes them as compact, deterministic JSON to `crates/devcluster/src/protobuf/descriptors.json`.
//!
//! The `.proto` files do not carry everything the JSON form needs, so three small tables below
//! carry what comes from the Go types instead: fields embedded inline (`json:",inline"`), fields
//! whose JSON name differs from the proto name, and scalar fields that are Go pointers (where a
//! zero value is a value, not an absent field). Each entry is checked against the parsed files, so
//! a stale entry fails the generator instead of being silently ignored; devcluster's unit tests
//! check the result against the OpenAPI schemas of the built-in kinds.
//!
//! The files for Kubernetes v1.33 ship inside the `k8s-rs-pb` crate (0.5.0, under
//! `src/v1_33`); a `cargo fetch` of any manifest depending on it puts them in the cargo registry,
//! where `--proto-root` defaults to looking. Upstream's own layout (`k8s.io/api/...`, packages
//! named `k8s.io.api.core.v1`) works too: package names are normalized by dropping `k8s.io.`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

/// Where the table is written, relative to the workspace root.
pub const OUTPUT: &str = "crates/devcluster/src/protobuf/descriptors.json";

/// The kinds a protobuf body may carry: (apiVersion, proto package, kinds). Mirrors devcluster's
/// `builtin::table()` plus the option and review kinds clients post; devcluster's tests check that
/// every built-in resource has an entry here.
const ROOTS: &[(&str, &str, &[&str])] = &[
    (
        "v1",
        "api.core.v1",
        &[
            "Namespace",
            "Pod",
            "Service",
            "ConfigMap",
            "Secret",
            "ServiceAccount",
            "Event",
            "Endpoints",
            "Node",
            "PersistentVolumeClaim",
            "PersistentVolume",
            "LimitRange",
            "ResourceQuota",
            "ReplicationController",
            "PodTemplate",
        ],
    ),
    (
        "apps/v1",
        "api.apps.v1",
        &[
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "ControllerRevision",
        ],
    ),
    ("batch/v1", "api.batch.v1", &["Job", "CronJob"]),
    ("coordination.k8s.io/v1", "api.coordination.v1", &["Lease"]),
    ("events.k8s.io/v1", "api.events.v1", &["Event"]),
    (
        "rbac.authorization.k8s.io/v1",
        "api.rbac.v1",
        &["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"],
    ),
    (
        "admissionregistration.k8s.io/v1",
        "api.admissionregistration.v1",
        &[
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ],
    ),
    (
        "apiextensions.k8s.io/v1",
        "apiextensions_apiserver.pkg.apis.apiextensions.v1",
        &["CustomResourceDefinition"],
    ),
    (
        "discovery.k8s.io/v1",
        "api.discovery.v1",
        &["EndpointSlice"],
    ),
    (
        "networking.k8s.io/v1",
        "api.networking.v1",
        &["Ingress", "NetworkPolicy", "IngressClass"],
    ),
    (
        "policy/v1",
        "api.policy.v1",
        &["PodDisruptionBudget", "Eviction"],
    ),
    ("storage.k8s.io/v1", "api.storage.v1", &["StorageClass"]),
    (
        "autoscaling/v2",
        "api.autoscaling.v2",
        &["HorizontalPodAutoscaler"],
    ),
    ("autoscaling/v1", "api.autoscaling.v1", &["Scale"]),
    (
        "authorization.k8s.io/v1",
        "api.authorization.v1",
        &[
            "SelfSubjectAccessReview",
            "SelfSubjectRulesReview",
            "SubjectAccessReview",
            "LocalSubjectAccessReview",
        ],
    ),
    (
        "authentication.k8s.io/v1",
        "api.authentication.v1",
        &["TokenReview", "TokenRequest", "SelfSubjectReview"],
    ),
    // Registered in every group version upstream; devcluster accepts them under any apiVersion.
    (
        "meta.k8s.io/v1",
        "apimachinery.pkg.apis.meta.v1",
        &[
            "DeleteOptions",
            "CreateOptions",
            "UpdateOptions",
            "PatchOptions",
        ],
    ),
];

/// Go structs embedded with `json:",inline"`: their fields appear in the parent's JSON object.
const INLINE: &[(&str, &str)] = &[
    ("api.core.v1.ConfigMapEnvSource", "localObjectReference"),
    ("api.core.v1.ConfigMapKeySelector", "localObjectReference"),
    ("api.core.v1.ConfigMapProjection", "localObjectReference"),
    ("api.core.v1.ConfigMapVolumeSource", "localObjectReference"),
    ("api.core.v1.SecretEnvSource", "localObjectReference"),
    ("api.core.v1.SecretKeySelector", "localObjectReference"),
    ("api.core.v1.SecretProjection", "localObjectReference"),
    ("api.core.v1.EphemeralContainer", "ephemeralContainerCommon"),
    ("api.core.v1.PersistentVolumeSpec", "persistentVolumeSource"),
    ("api.core.v1.Volume", "volumeSource"),
    ("api.core.v1.Probe", "handler"),
    ("api.networking.v1.IngressRule", "ingressRuleValue"),
    ("api.admissionregistration.v1.RuleWithOperations", "rule"),
];

/// Fields whose JSON name (Go `json` tag) differs from their proto name.
const JSON_NAMES: &[(&str, &str, &str)] = &[
    (
        "api.admissionregistration.v1.MutatingWebhookConfiguration",
        "Webhooks",
        "webhooks",
    ),
    (
        "api.admissionregistration.v1.ValidatingWebhookConfiguration",
        "Webhooks",
        "webhooks",
    ),
    ("api.authentication.v1.BoundObjectReference", "uID", "uid"),
    (
        "api.networking.v1.IngressClassParametersReference",
        "aPIGroup",
        "apiGroup",
    ),
    (JSON_SCHEMA_PROPS, "schema", "$schema"),
    (JSON_SCHEMA_PROPS, "ref", "$ref"),
    (
        JSON_SCHEMA_PROPS,
        "xKubernetesPreserveUnknownFields",
        "x-kubernetes-preserve-unknown-fields",
    ),
    (
        JSON_SCHEMA_PROPS,
        "xKubernetesEmbeddedResource",
        "x-kubernetes-embedded-resource",
    ),
    (
        JSON_SCHEMA_PROPS,
        "xKubernetesIntOrString",
        "x-kubernetes-int-or-string",
    ),
    (
        JSON_SCHEMA_PROPS,
        "xKubernetesListMapKeys",
        "x-kubernetes-list-map-keys",
    ),
    (
        JSON_SCHEMA_PROPS,
        "xKubernetesListType",
        "x-kubernetes-list-type",
    ),
    (
        JSON_SCHEMA_PROPS,
        "xKubernetesMapType",
        "x-kubernetes-map-type",
    ),
    (
        JSON_SCHEMA_PROPS,
        "xKubernetesValidations",
        "x-kubernetes-validations",
    ),
];

const JSON_SCHEMA_PROPS: &str = "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";

/// Scalar fields that are Go pointers (`*int32`, `*bool`, `*string`, ...), one message per line
/// (`message: field field ...`, proto field names), from the Go types of k8s.io/api v1.33.
/// Go's protobuf code writes every non-pointer field, zero or not, so a decoder must drop zero
/// values (JSON `omitempty`) except on these fields, where zero was set on purpose
/// (`replicas: 0`, `gracePeriodSeconds: 0`, `automountServiceAccountToken: false`). A field
/// missing here only loses an explicit zero; one wrongly listed only keeps a zero Go would drop.
const POINTERS: &str = "\
api.admissionregistration.v1.MutatingWebhook: failurePolicy matchPolicy sideEffects timeoutSeconds reinvocationPolicy
api.admissionregistration.v1.Rule: scope
api.admissionregistration.v1.ServiceReference: path port
api.admissionregistration.v1.ValidatingWebhook: failurePolicy matchPolicy sideEffects timeoutSeconds
api.admissionregistration.v1.WebhookClientConfig: url
api.apps.v1.DaemonSetSpec: revisionHistoryLimit
api.apps.v1.DaemonSetStatus: collisionCount
api.apps.v1.DeploymentSpec: replicas revisionHistoryLimit progressDeadlineSeconds
api.apps.v1.DeploymentStatus: terminatingReplicas collisionCount
api.apps.v1.ReplicaSetSpec: replicas
api.apps.v1.ReplicaSetStatus: terminatingReplicas
api.apps.v1.RollingUpdateStatefulSetStrategy: partition
api.apps.v1.StatefulSetSpec: replicas revisionHistoryLimit
api.apps.v1.StatefulSetStatus: collisionCount
api.authentication.v1.TokenRequestSpec: expirationSeconds
api.autoscaling.v2.HPAScalingRules: stabilizationWindowSeconds selectPolicy
api.autoscaling.v2.HorizontalPodAutoscalerSpec: minReplicas
api.autoscaling.v2.HorizontalPodAutoscalerStatus: observedGeneration
api.autoscaling.v2.MetricTarget: averageUtilization
api.autoscaling.v2.MetricValueStatus: averageUtilization
api.batch.v1.CronJobSpec: timeZone startingDeadlineSeconds suspend successfulJobsHistoryLimit failedJobsHistoryLimit
api.batch.v1.JobSpec: parallelism completions activeDeadlineSeconds backoffLimit backoffLimitPerIndex maxFailedIndexes manualSelector ttlSecondsAfterFinished completionMode suspend podReplacementPolicy managedBy
api.batch.v1.JobStatus: terminating failedIndexes ready
api.batch.v1.PodFailurePolicyOnExitCodesRequirement: containerName
api.batch.v1.SuccessPolicyRule: succeededIndexes succeededCount
api.coordination.v1.LeaseSpec: holderIdentity leaseDurationSeconds leaseTransitions strategy preferredHolder
api.core.v1.AppArmorProfile: localhostProfile
api.core.v1.AzureDiskVolumeSource: cachingMode fsType readOnly kind
api.core.v1.AzureFilePersistentVolumeSource: secretNamespace
api.core.v1.CSIVolumeSource: readOnly fsType
api.core.v1.ClientIPConfig: timeoutSeconds
api.core.v1.ClusterTrustBundleProjection: name signerName optional
api.core.v1.ConfigMap: immutable
api.core.v1.ConfigMapEnvSource: optional
api.core.v1.ConfigMapKeySelector: optional
api.core.v1.ConfigMapProjection: optional
api.core.v1.ConfigMapVolumeSource: defaultMode optional
api.core.v1.Container: restartPolicy
api.core.v1.ContainerStatus: started stopSignal
api.core.v1.DownwardAPIVolumeFile: mode
api.core.v1.DownwardAPIVolumeSource: defaultMode
api.core.v1.EndpointAddress: nodeName
api.core.v1.EndpointPort: appProtocol
api.core.v1.EphemeralContainerCommon: restartPolicy
api.core.v1.FCVolumeSource: lun
api.core.v1.GRPCAction: service
api.core.v1.GlusterfsPersistentVolumeSource: endpointsNamespace
api.core.v1.HostPathVolumeSource: type
api.core.v1.ISCSIPersistentVolumeSource: initiatorName
api.core.v1.ISCSIVolumeSource: initiatorName
api.core.v1.KeyToPath: mode
api.core.v1.Lifecycle: stopSignal
api.core.v1.LoadBalancerIngress: ipMode
api.core.v1.LocalVolumeSource: fsType
api.core.v1.NodeFeatures: supplementalGroupsPolicy
api.core.v1.NodeRuntimeHandlerFeatures: recursiveReadOnlyMounts userNamespaces
api.core.v1.NodeSwapStatus: capacity
api.core.v1.PersistentVolumeClaimSpec: storageClassName volumeMode volumeAttributesClassName
api.core.v1.PersistentVolumeClaimStatus: currentVolumeAttributesClassName
api.core.v1.PersistentVolumeSpec: volumeMode volumeAttributesClassName
api.core.v1.PodResourceClaim: resourceClaimName resourceClaimTemplateName
api.core.v1.PodResourceClaimStatus: resourceClaimName
api.core.v1.PodSecurityContext: runAsUser runAsGroup runAsNonRoot supplementalGroupsPolicy fsGroup fsGroupChangePolicy seLinuxChangePolicy
api.core.v1.PodSpec: terminationGracePeriodSeconds activeDeadlineSeconds automountServiceAccountToken shareProcessNamespace priority runtimeClassName enableServiceLinks preemptionPolicy setHostnameAsFQDN hostUsers
api.core.v1.PortStatus: error
api.core.v1.Probe: terminationGracePeriodSeconds
api.core.v1.ProjectedVolumeSource: defaultMode
api.core.v1.ReplicationControllerSpec: replicas
api.core.v1.SeccompProfile: localhostProfile
api.core.v1.Secret: immutable
api.core.v1.SecretEnvSource: optional
api.core.v1.SecretKeySelector: optional
api.core.v1.SecretProjection: optional
api.core.v1.SecretVolumeSource: defaultMode optional
api.core.v1.SecurityContext: privileged runAsUser runAsGroup runAsNonRoot readOnlyRootFilesystem allowPrivilegeEscalation procMount
api.core.v1.ServiceAccount: automountServiceAccountToken
api.core.v1.ServiceAccountTokenProjection: expirationSeconds
api.core.v1.ServicePort: appProtocol
api.core.v1.ServiceSpec: ipFamilyPolicy allocateLoadBalancerNodePorts loadBalancerClass internalTrafficPolicy trafficDistribution
api.core.v1.Toleration: tolerationSeconds
api.core.v1.TopologySpreadConstraint: minDomains nodeAffinityPolicy nodeTaintsPolicy
api.core.v1.TypedLocalObjectReference: apiGroup
api.core.v1.TypedObjectReference: apiGroup namespace
api.core.v1.VolumeMount: recursiveReadOnly
api.core.v1.VolumeMountStatus: recursiveReadOnly
api.core.v1.WindowsSecurityContextOptions: gmsaCredentialSpecName gmsaCredentialSpec runAsUserName hostProcess
api.discovery.v1.Endpoint: hostname nodeName zone
api.discovery.v1.EndpointConditions: ready serving terminating
api.discovery.v1.EndpointPort: name protocol port appProtocol
api.networking.v1.HTTPIngressPath: pathType
api.networking.v1.IngressClassParametersReference: aPIGroup scope namespace
api.networking.v1.IngressPortStatus: error
api.networking.v1.IngressSpec: ingressClassName
api.networking.v1.NetworkPolicyPort: protocol endPort
api.policy.v1.PodDisruptionBudgetSpec: unhealthyPodEvictionPolicy
api.storage.v1.StorageClass: reclaimPolicy allowVolumeExpansion volumeBindingMode
apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionVersion: deprecationWarning
apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceSubresourceScale: labelSelectorPath
apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps: maximum minimum maxLength minLength maxItems minItems multipleOf maxProperties minProperties xKubernetesPreserveUnknownFields xKubernetesListType xKubernetesMapType
apiextensions_apiserver.pkg.apis.apiextensions.v1.ServiceReference: path port
apiextensions_apiserver.pkg.apis.apiextensions.v1.ValidationRule: reason optionalOldSelf
apiextensions_apiserver.pkg.apis.apiextensions.v1.WebhookClientConfig: url
apimachinery.pkg.apis.meta.v1.DeleteOptions: gracePeriodSeconds orphanDependents propagationPolicy ignoreStoreReadErrorWithClusterBreakingPotential
apimachinery.pkg.apis.meta.v1.ObjectMeta: deletionGracePeriodSeconds
apimachinery.pkg.apis.meta.v1.OwnerReference: controller blockOwnerDeletion
apimachinery.pkg.apis.meta.v1.PatchOptions: force
apimachinery.pkg.apis.meta.v1.Preconditions: uid resourceVersion
";

/// The (message, field) pairs of [`POINTERS`].
fn pointers() -> impl Iterator<Item = (&'static str, &'static str)> {
    POINTERS
        .lines()
        .filter_map(|line| line.split_once(':'))
        .flat_map(|(message, fields)| fields.split_whitespace().map(move |f| (message.trim(), f)))
}

/// Proto scalar types, as the wire decoder knows them.
const SCALARS: &[&str] = &[
    "double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32",
    "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes",
];

/// One field of a parsed message.
#[derive(Debug, Clone, PartialEq)]
struct Field {
    name: String,
    number: u32,
    /// A scalar type name, or the fully qualified (normalized) message name once resolved.
    ty: String,
    /// For `map<K, V>` fields: the key type (`ty` is then the value type).
    map_key: Option<String>,
    repeated: bool,
}

/// One parsed message.
#[derive(Debug, Clone, PartialEq)]
struct Message {
    fields: Vec<Field>,
    /// Marked `+protobuf.nullable=true`: a Go named slice type whose JSON is its `items` list.
    slice: bool,
}

/// Entry point of the subcommand: parse, select, write (or compare with `check`).
pub fn run(workspace: &Path, proto_root: Option<&Path>, check: bool) -> anyhow::Result<()> {
    let proto_root = match proto_root {
        Some(dir) => dir.to_path_buf(),
        None => default_proto_root()?,
    };
    let files = find_protos(&proto_root)?;
    if files.is_empty() {
        bail!("no generated.proto files under {}", proto_root.display());
    }
    let mut messages = BTreeMap::new();
    for file in &files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        parse_file(&text, &mut messages).with_context(|| format!("parsing {}", file.display()))?;
    }
    let json = render(&messages, &proto_root)?;
    let out = workspace.join(OUTPUT);
    if check {
        let current = std::fs::read_to_string(&out).unwrap_or_default();
        if current != json {
            bail!(
                "{} is out of date: run `cargo xtask protobuf-descriptors`",
                out.display()
            );
        }
        eprintln!("xtask: {} is up to date", out.display());
        return Ok(());
    }
    std::fs::write(&out, json).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("xtask: wrote {}", out.display());
    Ok(())
}

/// The v1.33 files of the `k8s-rs-pb` crate in the cargo registry.
fn default_proto_root() -> anyhow::Result<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let registry = cargo_home.join("registry").join("src");
    let mut found = Vec::new();
    for index in std::fs::read_dir(&registry).into_iter().flatten().flatten() {
        let candidate = index.path().join("k8s-rs-pb-0.5.0/src/v1_33");
        if candidate.is_dir() {
            found.push(candidate);
        }
    }
    found.sort();
    found.pop().with_context(|| {
        format!(
            "k8s-rs-pb 0.5.0 is not in {}: `cargo fetch` a manifest depending on \
             k8s-rs-pb = {{ version = \"0.5.0\", features = [\"v1_33\"] }}, or pass --proto-root",
            registry.display()
        )
    })
}

/// Every `generated.proto` below `root`, sorted for a deterministic parse order.
fn find_protos(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|n| n == "generated.proto") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A token of a `.proto` file, with the comment text directly before it.
#[derive(Debug, Clone, PartialEq)]
struct Token {
    text: String,
    comment: String,
}

/// Splits a file into identifiers (dots included), numbers, string literals and punctuation,
/// keeping comments attached to the token that follows them.
fn tokenize(text: &str) -> anyhow::Result<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut comment = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c.is_whitespace() {
            rest = &rest[c.len_utf8()..];
        } else if let Some(after) = rest.strip_prefix("//") {
            let end = after.find('\n').unwrap_or(after.len());
            comment.push_str(&after[..end]);
            comment.push('\n');
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix("/*") {
            let end = after.find("*/").context("unterminated /* comment")?;
            rest = &after[end + 2..];
        } else if c == '"' {
            let end = rest[1..].find('"').context("unterminated string")? + 2;
            tokens.push(Token {
                text: rest[..end].to_owned(),
                comment: std::mem::take(&mut comment),
            });
            rest = &rest[end..];
        } else if c.is_alphanumeric() || c == '_' || c == '.' {
            let end = rest
                .find(|ch: char| !(ch.is_alphanumeric() || ch == '_' || ch == '.'))
                .unwrap_or(rest.len());
            tokens.push(Token {
                text: rest[..end].to_owned(),
                comment: std::mem::take(&mut comment),
            });
            rest = &rest[end..];
        } else {
            tokens.push(Token {
                text: c.to_string(),
                comment: std::mem::take(&mut comment),
            });
            rest = &rest[c.len_utf8()..];
        }
    }
    Ok(tokens)
}

/// A cursor over tokens with the few expectations the grammar needs.
struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> anyhow::Result<Token> {
        let token = self
            .tokens
            .get(self.pos)
            .cloned()
            .context("unexpected end of file")?;
        self.pos += 1;
        Ok(token)
    }

    fn expect(&mut self, text: &str) -> anyhow::Result<()> {
        let token = self.next()?;
        if token.text != text {
            bail!("expected {text:?}, found {:?}", token.text);
        }
        Ok(())
    }

    /// Skips to just after the next `;` (statements whose content does not matter).
    fn skip_statement(&mut self) -> anyhow::Result<()> {
        while self.next()?.text != ";" {}
        Ok(())
    }
}

/// `k8s.io.api.core.v1` (upstream) and `api.core.v1` (k8s-rs-pb) name the same package.
fn normalize(name: &str) -> &str {
    let name = name.strip_prefix('.').unwrap_or(name);
    name.strip_prefix("k8s.io.").unwrap_or(name)
}

/// Parses one file into `messages` (keyed by normalized full name). Type references stay as
/// written (qualified by the package for relative names) until [`resolve`].
fn parse_file(text: &str, messages: &mut BTreeMap<String, Message>) -> anyhow::Result<()> {
    let mut p = Parser {
        tokens: tokenize(text)?,
        pos: 0,
    };
    let mut package = String::new();
    let mut parsed = Vec::new();
    while let Some(token) = p.peek() {
        match token.text.as_str() {
            "syntax" | "import" | "option" => p.skip_statement()?,
            "package" => {
                p.next()?;
                package = normalize(&p.next()?.text).to_owned();
                p.expect(";")?;
            }
            "message" => {
                let head = p.next()?;
                let name = p.next()?.text;
                let message =
                    parse_message(&mut p, head.comment.contains("+protobuf.nullable=true"))
                        .with_context(|| format!("in message {name}"))?;
                parsed.push((name, message));
            }
            other => bail!("unexpected {other:?} at top level"),
        }
    }
    if package.is_empty() {
        bail!("no package statement");
    }
    for (name, mut message) in parsed {
        for field in &mut message.fields {
            // Remember the scope so `resolve` can apply proto's lookup rules later.
            if !SCALARS.contains(&field.ty.as_str()) && !field.ty.starts_with('.') {
                field.ty = format!("{package}:{}", field.ty);
            }
        }
        messages.insert(format!("{package}.{name}"), message);
    }
    Ok(())
}

/// Parses `{ field* }` after `message Name`.
fn parse_message(p: &mut Parser, slice: bool) -> anyhow::Result<Message> {
    p.expect("{")?;
    let mut fields = Vec::new();
    loop {
        let token = p.next()?;
        let (ty, map_key, repeated) = match token.text.as_str() {
            "}" => break,
            "optional" | "required" => (p.next()?.text, None, false),
            "repeated" => (p.next()?.text, None, true),
            "map" => {
                p.expect("<")?;
                let key = p.next()?.text;
                p.expect(",")?;
                let value = p.next()?.text;
                p.expect(">")?;
                (value, Some(key), false)
            }
            other => bail!("unsupported statement starting with {other:?}"),
        };
        let name = p.next()?.text;
        p.expect("=")?;
        let number_text = p.next()?.text;
        let number: u32 = number_text
            .parse()
            .with_context(|| format!("field {name}: bad number {number_text:?}"))?;
        if p.peek().is_some_and(|t| t.text == "[") {
            while p.next()?.text != "]" {}
        }
        p.expect(";")?;
        fields.push(Field {
            name,
            number,
            ty: if ty.starts_with('.') {
                format!(".{}", normalize(&ty))
            } else {
                ty
            },
            map_key,
            repeated,
        });
    }
    Ok(Message { fields, slice })
}

/// Resolves a message reference recorded by [`parse_file`] the way protoc does: a leading dot is
/// absolute; otherwise the innermost enclosing package that defines the name wins.
fn resolve(reference: &str, messages: &BTreeMap<String, Message>) -> anyhow::Result<String> {
    if let Some(absolute) = reference.strip_prefix('.') {
        if messages.contains_key(absolute) {
            return Ok(absolute.to_owned());
        }
        bail!("unknown message {reference}");
    }
    let (package, name) = reference
        .split_once(':')
        .context("internal: unscoped reference")?;
    let mut scope = package;
    loop {
        let candidate = if scope.is_empty() {
            name.to_owned()
        } else {
            format!("{scope}.{name}")
        };
        if messages.contains_key(&candidate) {
            return Ok(candidate);
        }
        if scope.is_empty() {
            bail!("unknown message {name} (referenced from package {package})");
        }
        scope = scope.rsplit_once('.').map_or("", |(outer, _)| outer);
    }
}

/// The messages reachable from [`ROOTS`], with references resolved.
fn reachable(messages: &BTreeMap<String, Message>) -> anyhow::Result<BTreeMap<String, Message>> {
    let mut out = BTreeMap::new();
    let mut queue: VecDeque<String> = ROOTS
        .iter()
        .flat_map(|(_, package, kinds)| kinds.iter().map(move |k| format!("{package}.{k}")))
        .collect();
    while let Some(name) = queue.pop_front() {
        if out.contains_key(&name) {
            continue;
        }
        let mut message = messages
            .get(&name)
            .with_context(|| format!("message {name} is not in the proto files"))?
            .clone();
        for field in &mut message.fields {
            if !SCALARS.contains(&field.ty.as_str()) {
                field.ty = resolve(&field.ty, messages)
                    .with_context(|| format!("field {name}.{}", field.name))?;
                queue.push_back(field.ty.clone());
            }
        }
        out.insert(name, message);
    }
    Ok(out)
}

/// Looks up a field named in one of the tables, failing on stale entries.
fn table_field<'a>(
    messages: &'a BTreeMap<String, Message>,
    message: &str,
    field: &str,
    table: &str,
) -> anyhow::Result<&'a Field> {
    messages
        .get(message)
        .and_then(|m| m.fields.iter().find(|f| f.name == field))
        .with_context(|| format!("{table} names {message}.{field}, which is not a reachable field"))
}

/// Checks the hand-kept tables against the parsed messages.
fn check_tables(messages: &BTreeMap<String, Message>) -> anyhow::Result<()> {
    for (message, field) in INLINE {
        let f = table_field(messages, message, field, "INLINE")?;
        if SCALARS.contains(&f.ty.as_str()) || f.repeated || f.map_key.is_some() {
            bail!("INLINE names {message}.{field}, which is not a singular message field");
        }
    }
    for (message, field, _) in JSON_NAMES {
        table_field(messages, message, field, "JSON_NAMES")?;
    }
    for line in POINTERS.lines().filter(|l| !l.trim().is_empty()) {
        if !line.contains(':') {
            bail!("POINTERS line {line:?} lacks the `message:` prefix");
        }
    }
    for (message, field) in pointers() {
        let f = table_field(messages, message, field, "POINTERS")?;
        if !SCALARS.contains(&f.ty.as_str()) || f.repeated || f.map_key.is_some() {
            bail!("POINTERS names {message}.{field}, which is not a singular scalar field");
        }
    }
    Ok(())
}

/// One field as a JSON object with sorted keys.
fn field_json(message: &str, field: &Field) -> Value {
    let mut obj = BTreeMap::new();
    let json_name = JSON_NAMES
        .iter()
        .find(|(m, f, _)| *m == message && *f == field.name)
        .map_or(field.name.as_str(), |(_, _, json)| json);
    obj.insert("json", Value::from(json_name));
    obj.insert("num", Value::from(field.number));
    obj.insert("type", Value::from(field.ty.as_str()));
    if let Some(key) = &field.map_key {
        obj.insert("key", Value::from(key.as_str()));
    }
    if field.repeated {
        obj.insert("repeated", Value::Bool(true));
    }
    if INLINE.contains(&(message, field.name.as_str())) {
        obj.insert("inline", Value::Bool(true));
    }
    let pointer = pointers().any(|(m, f)| m == message && f == field.name);
    if pointer {
        obj.insert("pointer", Value::Bool(true));
    }
    Value::Object(obj.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// The whole table: `_generated`, `kinds`, `messages`, one entry per line.
fn render(messages: &BTreeMap<String, Message>, proto_root: &Path) -> anyhow::Result<String> {
    let selected = reachable(messages)?;
    check_tables(&selected)?;
    let version = proto_root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let note = format!(
        "generated by `cargo xtask protobuf-descriptors` from the Kubernetes generated.proto files \
         ({version}); do not edit. Fields: json name, num(ber), type (scalar or message), key (map \
         key type), repeated, inline (Go embedded struct), pointer (Go pointer: zero is a value)"
    );
    let kinds: BTreeMap<String, String> = ROOTS
        .iter()
        .flat_map(|(api_version, package, kinds)| {
            kinds
                .iter()
                .map(move |k| (format!("{api_version} {k}"), format!("{package}.{k}")))
        })
        .collect();
    let mut out = String::new();
    writeln!(out, "{{\"_generated\":{},", Value::from(note))?;
    out.push_str("\"kinds\":{\n");
    let kind_lines: Vec<String> = kinds
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), Value::from(v.as_str())))
        .collect();
    out.push_str(&kind_lines.join(",\n"));
    out.push_str("\n},\n\"messages\":{\n");
    let message_lines: Vec<String> = selected
        .iter()
        .map(|(name, message)| {
            let fields: Vec<Value> = message.fields.iter().map(|f| field_json(name, f)).collect();
            let mut obj = serde_json::Map::new();
            obj.insert("fields".into(), Value::Array(fields));
            if message.slice {
                obj.insert("slice".into(), Value::Bool(true));
            }
            format!("{}:{}", Value::from(name.as_str()), Value::Object(obj))
        })
        .collect();
    out.push_str(&message_lines.join(",\n"));
    out.push_str("\n}}\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
/* license */
syntax = "proto2";
package k8s.io.api.demo.v1;
import "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto";
option go_package = "k8s.io/api/demo/v1";

// Widget is a demo.
message Widget {
  // +optional
  optional .k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta metadata = 1;
  map<string, Part> parts = 3;
  repeated string tags = 2;
}

// +protobuf.nullable=true
message Part {
  repeated int32 items = 1 [packed = true];
}
"#;

    #[test]
    fn parses_fields_maps_options_and_nullable_marker() {
        let mut messages = BTreeMap::new();
        parse_file(SAMPLE, &mut messages).unwrap();
        let widget = &messages["api.demo.v1.Widget"];
        assert!(!widget.slice);
        assert_eq!(
            widget.fields,
            vec![
                Field {
                    name: "metadata".into(),
                    number: 1,
                    ty: ".apimachinery.pkg.apis.meta.v1.ObjectMeta".into(),
                    map_key: None,
                    repeated: false
                },
                Field {
                    name: "parts".into(),
                    number: 3,
                    ty: "api.demo.v1:Part".into(),
                    map_key: Some("string".into()),
                    repeated: false
                },
                Field {
                    name: "tags".into(),
                    number: 2,
                    ty: "string".into(),
                    map_key: None,
                    repeated: true
                },
            ]
        );
        let part = &messages["api.demo.v1.Part"];
        assert!(part.slice);
        assert_eq!(part.fields[0].ty, "int32");
        assert!(part.fields[0].repeated);
    }

    #[test]
    fn resolves_relative_names_in_enclosing_packages() {
        let mut messages = BTreeMap::new();
        parse_file(SAMPLE, &mut messages).unwrap();
        assert_eq!(
            resolve("api.demo.v1:Part", &messages).unwrap(),
            "api.demo.v1.Part"
        );
        assert_eq!(
            resolve("api.demo.v1.extra:Part", &messages).unwrap(),
            "api.demo.v1.Part"
        );
        assert!(resolve("api.demo.v1:Missing", &messages).is_err());
        assert!(resolve(".api.demo.v1.Missing", &messages).is_err());
    }

    #[test]
    fn rejects_what_the_grammar_does_not_cover() {
        let mut messages = BTreeMap::new();
        let nested = "package p; message A { message B { } }";
        assert!(parse_file(nested, &mut messages).is_err());
        let enumeration = "package p; enum E { X = 0; }";
        assert!(parse_file(enumeration, &mut messages).is_err());
        assert!(parse_file("message A { }", &mut messages).is_err());
        assert!(
            parse_file(
                "package p; message A { optional string a = x; }",
                &mut messages
            )
            .is_err()
        );
    }

    #[test]
    fn pointer_table_lines_split_into_pairs() {
        let pairs: Vec<_> = pointers().collect();
        assert!(pairs.contains(&("api.apps.v1.DeploymentSpec", "replicas")));
        assert!(pairs.contains(&(
            "apimachinery.pkg.apis.meta.v1.DeleteOptions",
            "gracePeriodSeconds"
        )));
        assert!(
            !pairs
                .iter()
                .any(|(m, f)| m.is_empty() || f.is_empty() || f.contains(':'))
        );
    }

    #[test]
    fn field_json_has_sorted_keys_and_table_flags() {
        let field = Field {
            name: "ref".into(),
            number: 3,
            ty: "string".into(),
            map_key: None,
            repeated: false,
        };
        assert_eq!(
            field_json(JSON_SCHEMA_PROPS, &field).to_string(),
            r#"{"json":"$ref","num":3,"type":"string"}"#
        );
        let inline = Field {
            name: "volumeSource".into(),
            number: 2,
            ty: "api.core.v1.VolumeSource".into(),
            map_key: None,
            repeated: false,
        };
        assert_eq!(
            field_json("api.core.v1.Volume", &inline).to_string(),
            r#"{"inline":true,"json":"volumeSource","num":2,"type":"api.core.v1.VolumeSource"}"#
        );
    }
}
