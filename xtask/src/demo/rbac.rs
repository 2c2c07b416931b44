//! Least privilege, checked: the operators run with their ServiceAccounts' tokens against
//! devcluster with RBAC enforced, and after the story the permissions each one used (from
//! devcluster's audit log) are compared with what its Roles and ClusterRoles grant. A
//! permission used but not granted is a missing rule; one granted but never used is a rule too
//! many, unless it is listed in [`EXPECTED_UNUSED`] with the reason the story may not reach it.
//!
//! Permissions are compared as `(apiGroup, resource[/subresource], verb)`, the terms of an
//! RBAC rule. Where a rule applies (its namespace) is left to the authorizer: a request outside
//! it is denied, and a denied request fails the check as well.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use anyhow::{Context, bail};
use serde_json::Value;

use super::Ctx;
use super::output::Mark;
use super::setup::{NAMESPACE, OPERATOR_NAMES, read};
use super::steps::poll;

/// Step name.
pub const RBAC: &str = "rbac";

/// How long an operator may take to renew its Lease once (client-go's retry period is 2 s).
const RENEW_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Compares each operator's grants with what it used during the story; fails on a missing or
/// an unexplained unused permission, and on any denied request.
pub async fn check(ctx: &mut Ctx) -> anyhow::Result<Option<String>> {
    if ctx.keep_running {
        return Ok(Some(
            "it needs the teardown's deletes; run the demo without --keep-running".to_owned(),
        ));
    }
    let kubectl = ctx.kubectl.clone();
    // Leader election renews with `update` after its first `create`: wait for one renewal, so
    // that verb is in the log rather than racing the story's length.
    for name in OPERATOR_NAMES {
        let kubectl = kubectl.clone();
        poll(
            &mut ctx.procs,
            ctx.out,
            &format!("{name} to renew its Lease {NAMESPACE}/{name}"),
            RENEW_TIMEOUT,
            || {
                let kubectl = kubectl.clone();
                async move {
                    let lease = kubectl.get(&["lease", name, "-n", NAMESPACE]).await?;
                    Ok(lease.filter(renewed).map(|_| ()))
                }
            },
        )
        .await?;
    }
    let rbac = kubectl
        .get(&["clusterroles,clusterrolebindings,roles,rolebindings", "-A"])
        .await?
        .context("kubectl listed no RBAC objects")?;
    let objects = rbac
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let audit = read(&ctx.audit_log());
    let mut failures = Vec::new();
    for name in OPERATOR_NAMES {
        let granted = granted_to(&objects, NAMESPACE, name)?;
        let (used, denied) = used_by(&audit, &service_account_user(NAMESPACE, name))?;
        let verdict = compare(&granted, &used, denied, &expected_unused_for(name));
        report(ctx, name, &granted, &verdict);
        if !verdict.is_exact() {
            failures.push(name);
        }
    }
    if !failures.is_empty() {
        bail!(
            "the RBAC of {} does not match what they do (see above; deploy/base/<operator>/rbac.yaml)",
            failures.join(", ")
        );
    }
    Ok(None)
}

/// Whether a Lease has been renewed since it was acquired.
fn renewed(lease: &Value) -> bool {
    let time = |f: &str| lease.pointer(&format!("/spec/{f}")).and_then(Value::as_str);
    matches!((time("acquireTime"), time("renewTime")), (Some(a), Some(r)) if a != r)
}

/// Prints one operator's verdict.
fn report(ctx: &Ctx, name: &str, granted: &BTreeSet<Permission>, verdict: &Verdict) {
    let out = ctx.out;
    if verdict.is_exact() {
        out.ok(&format!(
            "{name}: {} permissions granted, each one used{}",
            granted.len(),
            if verdict.explained.is_empty() {
                String::new()
            } else {
                format!(" or explained ({})", verdict.explained.len())
            }
        ));
    } else {
        out.line(
            Mark::Fail,
            &format!("{name}: the grants do not match the use"),
        );
    }
    // One line per reason: the permissions it covers, then why the story cannot reach them.
    let mut reasons: Vec<(&str, BTreeSet<Permission>)> = Vec::new();
    for (permission, why) in &verdict.explained {
        match reasons.iter_mut().find(|(w, _)| w == why) {
            Some((_, set)) => {
                set.insert(permission.clone());
            }
            None => reasons.push((why, [permission.clone()].into())),
        }
    }
    for (why, permissions) in &reasons {
        out.info(&format!(
            "not reached by the story: {}: {why}",
            list(permissions)
        ));
    }
    if !verdict.missing.is_empty() {
        out.info(&format!(
            "{name} used but is not granted: {}",
            list(&verdict.missing)
        ));
    }
    if !verdict.unused.is_empty() {
        out.info(&format!(
            "{name} is granted but never used: {}",
            list(&verdict.unused)
        ));
    }
    if !verdict.stale.is_empty() {
        out.info(&format!(
            "{name}: listed as unused in xtask/src/demo/rbac.rs but not granted: {}",
            list(&verdict.stale)
        ));
    }
    for request in verdict.denied.iter().take(10) {
        out.info(&format!("{name} was denied: {request}"));
    }
}

/// What one request used, in the terms of an RBAC rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    /// API group ("" for core).
    pub group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    /// The verb.
    pub verb: String,
}

impl Permission {
    /// A permission from its three parts.
    pub fn new(group: &str, resource: &str, verb: &str) -> Self {
        Permission {
            group: group.to_owned(),
            resource: resource.to_owned(),
            verb: verb.to_owned(),
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            write!(f, "{} {}", self.verb, self.resource)
        } else {
            write!(f, "{} {}.{}", self.verb, self.resource, self.group)
        }
    }
}

/// Permissions granted for paths the story does not reach (or reaches only on a race, as a
/// prune's re-read after a conflicting change), per ServiceAccount, with the reason. An entry
/// naming a permission that is not granted fails the check, so the list follows the RBAC.
pub const EXPECTED_UNUSED: &[(&str, Permission3, &str)] = &[
    (
        "kafkanotify",
        ("kafkanotify.kubecrew.io", "edgeapplications/status", "get"),
        INVALID_SPEC,
    ),
    (
        "appconfig-restarter",
        ("appconfig.kubecrew.io", "appconfigs/status", "get"),
        INVALID_SPEC,
    ),
    (
        "appconfig-restarter",
        ("events.k8s.io", "events", "patch"),
        EVENT_SERIES,
    ),
    (
        "appconfig-restarter",
        ("", "secrets", "get"),
        "an AppConfig naming a Secret reads it (reconcile.rs); the sample names a ConfigMap",
    ),
    (
        "appconfig-restarter",
        ("apps", "statefulsets", "patch"),
        "StatefulSets are restarted as Deployments are; the sample's workload is a Deployment",
    ),
    (
        "appconfig-restarter",
        ("apps", "daemonsets", "patch"),
        "DaemonSets are restarted as Deployments are; the sample's workload is a Deployment",
    ),
    (
        "http-peering",
        ("peering.kubecrew.io", "kindcustomhttps/status", "get"),
        INVALID_SPEC,
    ),
    (
        "http-peering",
        ("events.k8s.io", "events", "create"),
        WARNING_ONLY,
    ),
    (
        "http-peering",
        ("events.k8s.io", "events", "patch"),
        EVENT_SERIES,
    ),
    ("http-peering", ("", "configmaps", "get"), PRUNE),
    ("http-peering", ("", "configmaps", "delete"), PRUNE),
    ("http-peering", ("", "services", "get"), PRUNE),
    ("http-peering", ("", "services", "delete"), PRUNE),
    ("http-peering", ("apps", "deployments", "get"), PRUNE),
    ("http-peering", ("apps", "deployments", "delete"), PRUNE),
    (
        "collector",
        ("events.k8s.io", "events", "create"),
        WARNING_ONLY,
    ),
    (
        "collector",
        ("events.k8s.io", "events", "patch"),
        EVENT_SERIES,
    ),
    ("collector", ("", "secrets", "get"), PRUNE),
    ("collector", ("", "serviceaccounts", "get"), PRUNE),
    ("collector", ("", "services", "get"), PRUNE),
    (
        "collector",
        ("monitoring.coreos.com", "servicemonitors", "get"),
        MONITORING,
    ),
    (
        "collector",
        ("monitoring.coreos.com", "servicemonitors", "list"),
        MONITORING,
    ),
    (
        "collector",
        ("monitoring.coreos.com", "servicemonitors", "watch"),
        MONITORING,
    ),
    (
        "collector",
        ("monitoring.coreos.com", "servicemonitors", "create"),
        MONITORING,
    ),
    (
        "collector",
        ("monitoring.coreos.com", "servicemonitors", "patch"),
        MONITORING,
    ),
    (
        "collector",
        ("monitoring.coreos.com", "servicemonitors", "delete"),
        MONITORING,
    ),
];

/// Why `get <resource>/status` is granted.
const INVALID_SPEC: &str = "an object that does not match the schema gets InvalidSpec \
    conditions merged into its current status (operator-core run.rs); the samples are valid";
/// Why `patch events` is granted.
const EVENT_SERIES: &str = "kube-runtime's Recorder patches an Event that recurs (a series) \
    instead of creating another; the story publishes each Event once";
/// Why `create events` is granted to operators that only publish warnings.
const WARNING_ONLY: &str = "its only Event is the InvalidSpec warning; the samples are valid";
/// Why `get` and `delete` of a child kind are granted.
const PRUNE: &str = "pruning an inventory entry that is no longer rendered reads it, then \
    deletes it only if unchanged, re-reading it after a conflict (operator-core apply.rs); \
    the story's children stay rendered, and a conflict is a race";
/// Why ServiceMonitors are granted.
const MONITORING: &str = "ServiceMonitors are managed only where the Prometheus Operator's CRD \
    is served; devcluster has none";

/// A permission as `(group, resource, verb)` literals, for [`EXPECTED_UNUSED`].
pub type Permission3 = (&'static str, &'static str, &'static str);

/// The user name of a ServiceAccount, as the API server authenticates its tokens.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// What `user` requested, from devcluster's audit log (JSON lines): every resource request's
/// permission, and the requests that were denied (`403`), as `verb path` lines.
pub fn used_by(audit_log: &str, user: &str) -> anyhow::Result<(BTreeSet<Permission>, Vec<String>)> {
    let mut used = BTreeSet::new();
    let mut denied = Vec::new();
    for (number, line) in audit_log.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let entry: Value =
            serde_json::from_str(line).with_context(|| format!("audit log line {}", number + 1))?;
        let field = |name: &str| entry.get(name).and_then(Value::as_str).unwrap_or("");
        if field("user") != user || entry.get("resourceRequest") != Some(&Value::Bool(true)) {
            continue;
        }
        let resource = match field("subresource") {
            "" => field("resource").to_owned(),
            sub => format!("{}/{sub}", field("resource")),
        };
        used.insert(Permission::new(field("apiGroup"), &resource, field("verb")));
        if entry.get("code").and_then(Value::as_u64) == Some(403) {
            denied.push(format!("{} {}", field("verb"), field("path")));
        }
    }
    Ok((used, denied))
}

/// The permissions the ServiceAccount `namespace/name` holds through the bindings among
/// `objects` (the items of ClusterRoles, ClusterRoleBindings, Roles and RoleBindings). A
/// wildcard (`*`) in a bound rule is an error: least privilege means naming what is used.
pub fn granted_to(
    objects: &[Value],
    namespace: &str,
    name: &str,
) -> anyhow::Result<BTreeSet<Permission>> {
    let kind = |o: &Value| {
        o.get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let meta = |o: &Value, field: &str| {
        o.pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    // (kind, namespace, name) -> rules; ClusterRoles have no namespace.
    let roles: BTreeMap<(String, String, String), &Value> = objects
        .iter()
        .filter(|o| matches!(kind(o).as_str(), "ClusterRole" | "Role"))
        .map(|o| ((kind(o), meta(o, "namespace"), meta(o, "name")), o))
        .collect();
    let mut granted = BTreeSet::new();
    for binding in objects
        .iter()
        .filter(|o| matches!(kind(o).as_str(), "ClusterRoleBinding" | "RoleBinding"))
    {
        let binding_ns = meta(binding, "namespace");
        let binds_it = binding
            .get("subjects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|s| {
                let field = |f: &str| s.get(f).and_then(Value::as_str).unwrap_or("");
                let subject_ns = match field("namespace") {
                    "" => binding_ns.as_str(),
                    ns => ns,
                };
                field("kind") == "ServiceAccount"
                    && field("name") == name
                    && subject_ns == namespace
            });
        if !binds_it {
            continue;
        }
        let role_kind = text(binding, "/roleRef/kind");
        let role_name = text(binding, "/roleRef/name");
        let role_ns = if role_kind == "Role" {
            binding_ns.clone()
        } else {
            String::new()
        };
        let role = roles
            .get(&(role_kind.clone(), role_ns, role_name.clone()))
            .with_context(|| {
                format!(
                    "{} {} binds {role_kind} {role_name}, which does not exist",
                    kind(binding),
                    meta(binding, "name")
                )
            })?;
        for rule in role
            .get("rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let list = |f: &str| -> Vec<String> {
                rule.get(f)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            };
            let (groups, resources, verbs) = (list("apiGroups"), list("resources"), list("verbs"));
            if [&groups, &resources, &verbs]
                .iter()
                .any(|l| l.iter().any(|x| x.contains('*')))
            {
                bail!(
                    "{role_kind} {role_name} has a wildcard rule (apiGroups {groups:?}, \
                     resources {resources:?}, verbs {verbs:?}): name what is used instead"
                );
            }
            for group in &groups {
                for resource in &resources {
                    for verb in &verbs {
                        granted.insert(Permission::new(group, resource, verb));
                    }
                }
            }
        }
    }
    Ok(granted)
}

fn text(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// The comparison of one ServiceAccount's grants with its use.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Used but not granted (the operator needs a rule it does not have).
    pub missing: BTreeSet<Permission>,
    /// Granted, never used and not expected to be unused (a rule too many).
    pub unused: BTreeSet<Permission>,
    /// Expected unused, with the reason, and indeed unused.
    pub explained: Vec<(Permission, &'static str)>,
    /// Listed as expected unused, but not granted at all (the list is out of date).
    pub stale: BTreeSet<Permission>,
    /// Requests the API server denied.
    pub denied: Vec<String>,
}

impl Verdict {
    /// Whether the grants are exactly what is used (up to the explained exceptions).
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty()
            && self.unused.is_empty()
            && self.stale.is_empty()
            && self.denied.is_empty()
    }
}

/// Compares `granted` with `used`, given the permissions `expected_unused` (with reasons).
pub fn compare(
    granted: &BTreeSet<Permission>,
    used: &BTreeSet<Permission>,
    denied: Vec<String>,
    expected_unused: &[(Permission, &'static str)],
) -> Verdict {
    let expected: BTreeSet<&Permission> = expected_unused.iter().map(|(p, _)| p).collect();
    Verdict {
        missing: used.difference(granted).cloned().collect(),
        unused: granted
            .difference(used)
            .filter(|p| !expected.contains(p))
            .cloned()
            .collect(),
        explained: expected_unused
            .iter()
            .filter(|(p, _)| granted.contains(p) && !used.contains(p))
            .cloned()
            .collect(),
        stale: expected_unused
            .iter()
            .filter(|(p, _)| !granted.contains(p))
            .map(|(p, _)| p.clone())
            .collect(),
        denied,
    }
}

/// [`EXPECTED_UNUSED`] for the ServiceAccount `name`.
pub fn expected_unused_for(name: &str) -> Vec<(Permission, &'static str)> {
    EXPECTED_UNUSED
        .iter()
        .filter(|(sa, _, _)| *sa == name)
        .map(|(_, (g, r, v), why)| (Permission::new(g, r, v), *why))
        .collect()
}

/// A comma-separated list of permissions.
pub fn list(set: &BTreeSet<Permission>) -> String {
    set.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(g: &str, r: &str, v: &str) -> Permission {
        Permission::new(g, r, v)
    }

    fn rbac() -> Vec<Value> {
        vec![
            json!({"kind": "ClusterRole", "metadata": {"name": "op"}, "rules": [
                {"apiGroups": ["x.io"], "resources": ["things", "things/status"], "verbs": ["get", "patch"]},
                {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}
            ]}),
            json!({"kind": "ClusterRoleBinding", "metadata": {"name": "op"},
                   "roleRef": {"kind": "ClusterRole", "name": "op"},
                   "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "sys"}]}),
            json!({"kind": "Role", "metadata": {"name": "le", "namespace": "sys"}, "rules": [
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get"]}
            ]}),
            // The subject's namespace defaults to the RoleBinding's.
            json!({"kind": "RoleBinding", "metadata": {"name": "le", "namespace": "sys"},
                   "roleRef": {"kind": "Role", "name": "le"},
                   "subjects": [{"kind": "ServiceAccount", "name": "op"}]}),
            // Someone else's grant.
            json!({"kind": "ClusterRoleBinding", "metadata": {"name": "other"},
                   "roleRef": {"kind": "ClusterRole", "name": "op"},
                   "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "elsewhere"}]}),
        ]
    }

    #[test]
    fn grants_follow_the_bindings_of_the_service_account() {
        let granted = granted_to(&rbac(), "sys", "op").unwrap();
        let expected: BTreeSet<_> = [
            p("x.io", "things", "get"),
            p("x.io", "things", "patch"),
            p("x.io", "things/status", "get"),
            p("x.io", "things/status", "patch"),
            p("coordination.k8s.io", "leases", "get"),
        ]
        .into();
        assert_eq!(granted, expected);
        assert!(granted_to(&rbac(), "sys", "nobody").unwrap().is_empty());
    }

    #[test]
    fn wildcards_and_dangling_role_refs_are_errors() {
        let mut objects = rbac();
        objects[0]["rules"][0]["verbs"] = json!(["*"]);
        let err = granted_to(&objects, "sys", "op").unwrap_err().to_string();
        assert!(err.contains("wildcard"), "{err}");
        let mut objects = rbac();
        objects.remove(2);
        let err = granted_to(&objects, "sys", "op").unwrap_err().to_string();
        assert!(err.contains("Role le, which does not exist"), "{err}");
    }

    #[test]
    fn the_audit_log_gives_each_users_requests() {
        let log = concat!(
            r#"{"user":"system:serviceaccount:sys:op","resourceRequest":true,"verb":"patch","apiGroup":"x.io","resource":"things","subresource":"status","path":"/apis/x.io/v1/things/a/status","code":200}"#,
            "\n",
            r#"{"user":"system:serviceaccount:sys:op","resourceRequest":true,"verb":"list","apiGroup":"","resource":"pods","subresource":"","path":"/api/v1/pods","code":403}"#,
            "\n",
            r#"{"user":"system:serviceaccount:sys:op","resourceRequest":false,"verb":"get","apiGroup":"","resource":"","subresource":"","path":"/apis","code":200}"#,
            "\n",
            r#"{"user":"system:admin","resourceRequest":true,"verb":"delete","apiGroup":"","resource":"pods","subresource":"","path":"/api/v1/pods/x","code":200}"#,
            "\n"
        );
        let (used, denied) = used_by(log, &service_account_user("sys", "op")).unwrap();
        let expected: BTreeSet<_> =
            [p("x.io", "things/status", "patch"), p("", "pods", "list")].into();
        assert_eq!(used, expected);
        assert_eq!(denied, vec!["list /api/v1/pods".to_owned()]);
        assert!(used_by("not json\n", "u").is_err());
    }

    #[test]
    fn the_verdict_separates_missing_unused_explained_and_stale() {
        let granted: BTreeSet<_> = [
            p("x.io", "things", "get"),
            p("x.io", "things", "delete"),
            p("x.io", "things", "update"),
            p("", "events", "patch"),
        ]
        .into();
        let used: BTreeSet<_> = [p("x.io", "things", "get"), p("x.io", "things", "list")].into();
        let expected = vec![
            (p("", "events", "patch"), "a repeated event"),
            (p("x.io", "things", "get"), "used on a race only"),
            (p("x.io", "things", "watch"), "stale: not granted"),
        ];
        let verdict = compare(&granted, &used, vec![], &expected);
        assert_eq!(verdict.missing, [p("x.io", "things", "list")].into());
        assert_eq!(
            verdict.unused,
            [p("x.io", "things", "delete"), p("x.io", "things", "update")].into()
        );
        assert_eq!(
            verdict.explained,
            vec![(p("", "events", "patch"), "a repeated event")]
        );
        assert_eq!(verdict.stale, [p("x.io", "things", "watch")].into());
        assert!(!verdict.is_exact());

        let exact = compare(&granted, &granted, vec![], &[]);
        assert!(exact.is_exact());
        assert!(!compare(&granted, &granted, vec!["list /x".into()], &[]).is_exact());
    }
}
