//! Least privilege, in the terms of RBAC rules: the permissions a ServiceAccount holds through
//! its bindings ([`granted_to`], over the JSON of Roles, ClusterRoles and their bindings), the
//! ones it used ([`used_by`], over devcluster's audit log as JSON lines), and their comparison
//! ([`compare`]): used but not granted, granted but not used (unless expected, with a reason),
//! denied requests. `cargo xtask demo` and nes's end-to-end test check the operators' RBAC with
//! it.
//!
//! Permissions are compared as `(apiGroup, resource[/subresource], verb)`. Where a rule applies
//! (its namespace) is left to the authorizer: a request outside it is denied, and a denied
//! request fails the comparison as well.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

/// Why RBAC objects or an audit log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RbacError {
    /// A line of the audit log is not JSON.
    #[error("audit log line {line}: {source}")]
    Audit {
        /// 1-based line number.
        line: usize,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A bound rule uses `*`.
    #[error("{0}: name what is used instead of a wildcard")]
    Wildcard(String),
    /// A binding names a role that does not exist.
    #[error("{0}")]
    DanglingRoleRef(String),
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

/// The user name of a ServiceAccount, as the API server authenticates its tokens.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// What `user` requested, from an audit log (JSON lines of devcluster or kube-apiserver, see
/// [`AuditedRequest`]): every resource request's
/// permission, and the requests that were denied (`403`), as `verb path` lines.
pub fn used_by(
    audit_log: &str,
    user: &str,
) -> Result<(BTreeSet<Permission>, Vec<String>), RbacError> {
    let mut used = BTreeSet::new();
    let mut denied = Vec::new();
    for (number, line) in audit_log.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let entry: Value = serde_json::from_str(line).map_err(|source| RbacError::Audit {
            line: number + 1,
            source,
        })?;
        let Some(request) = AuditedRequest::of(&entry) else {
            continue;
        };
        if request.user != user || !request.resource_request {
            continue;
        }
        let resource = match request.subresource {
            "" => request.resource.to_owned(),
            sub => format!("{}/{sub}", request.resource),
        };
        used.insert(Permission::new(request.group, &resource, request.verb));
        if request.verb == "patch" && request.code == Some(201) {
            // A server-side apply that created its object: kube-apiserver authorizes `create`
            // as well and audits only `patch` (201 tells it apart).
            used.insert(Permission::new(request.group, &resource, "create"));
        }
        if request.code == Some(403) {
            denied.push(format!("{} {}", request.verb, request.path));
        }
    }
    Ok((used, denied))
}

/// One request of an audit log, in either format: devcluster's flat lines, or kube-apiserver's
/// `audit.k8s.io/v1` Events (`--audit-log-format=json`).
#[derive(Debug, PartialEq, Eq)]
pub struct AuditedRequest<'a> {
    /// Who asked.
    pub user: &'a str,
    /// The verb, as RBAC knows it.
    pub verb: &'a str,
    /// Whether it addressed a resource (not a URL like `/readyz`).
    pub resource_request: bool,
    /// The API group ("" for core).
    pub group: &'a str,
    /// The resource.
    pub resource: &'a str,
    /// The subresource, or "".
    pub subresource: &'a str,
    /// The object's namespace, or "".
    pub namespace: &'a str,
    /// The object's name, or "".
    pub name: &'a str,
    /// The path asked for.
    pub path: &'a str,
    /// The response's status code, when it was answered.
    pub code: Option<u64>,
}

impl<'a> AuditedRequest<'a> {
    /// Reads one entry; `None` for an entry of neither shape (or a stage without a response).
    pub fn of(entry: &'a Value) -> Option<Self> {
        let text = |pointer: &str| entry.pointer(pointer).and_then(Value::as_str).unwrap_or("");
        if entry.get("kind").and_then(Value::as_str) == Some("Event") {
            // kube-apiserver: the final stage carries the response, except that a watch is
            // complete only when it ends, so its start (ResponseStarted) counts as its use.
            let counted = match text("/stage") {
                "ResponseComplete" | "Panic" => true,
                "ResponseStarted" => text("/verb") == "watch",
                _ => false,
            };
            if !counted {
                return None;
            }
            return Some(AuditedRequest {
                user: text("/user/username"),
                verb: text("/verb"),
                resource_request: entry.get("objectRef").is_some(),
                group: text("/objectRef/apiGroup"),
                resource: text("/objectRef/resource"),
                subresource: text("/objectRef/subresource"),
                namespace: text("/objectRef/namespace"),
                name: text("/objectRef/name"),
                path: text("/requestURI"),
                code: entry
                    .pointer("/responseStatus/code")
                    .and_then(Value::as_u64),
            });
        }
        Some(AuditedRequest {
            user: text("/user"),
            verb: text("/verb"),
            resource_request: entry.get("resourceRequest") == Some(&Value::Bool(true)),
            group: text("/apiGroup"),
            resource: text("/resource"),
            subresource: text("/subresource"),
            namespace: text("/namespace"),
            name: text("/name"),
            path: text("/path"),
            code: entry.get("code").and_then(Value::as_u64),
        })
    }

    /// `verb resource[/subresource] namespace/name (code)`, for messages.
    pub fn describe(&self) -> String {
        let resource = match self.subresource {
            "" => self.resource.to_owned(),
            sub => format!("{}/{sub}", self.resource),
        };
        format!(
            "{} {resource} {}/{} by {} ({})",
            self.verb,
            self.namespace,
            self.name,
            self.user,
            self.code.map_or("-".to_owned(), |c| c.to_string())
        )
    }

    /// Whether the request could change something (a dry run cannot).
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb,
            "create" | "update" | "patch" | "delete" | "deletecollection"
        ) && !self.is_dry_run()
    }

    /// Whether the request asked for a dry run (`?dryRun=All`): checked, never persisted.
    pub fn is_dry_run(&self) -> bool {
        self.path
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|kv| kv.starts_with("dryRun=")))
    }
}

/// The permissions the ServiceAccount `namespace/name` holds through the bindings among
/// `objects` (the items of ClusterRoles, ClusterRoleBindings, Roles and RoleBindings). A
/// wildcard (`*`) in a bound rule is an error: least privilege means naming what is used.
pub fn granted_to(
    objects: &[Value],
    namespace: &str,
    name: &str,
) -> Result<BTreeSet<Permission>, RbacError> {
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
            .ok_or_else(|| {
                RbacError::DanglingRoleRef(format!(
                    "{} {} binds {role_kind} {role_name}, which does not exist",
                    kind(binding),
                    meta(binding, "name")
                ))
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
                return Err(RbacError::Wildcard(format!(
                    "{role_kind} {role_name} has a wildcard rule (apiGroups {groups:?}, \
                     resources {resources:?}, verbs {verbs:?})"
                )));
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

/// A permission as `(group, resource, verb)` literals, for tables of permissions a test expects
/// to stay unused: `(service account, permission, reason)`.
pub type Permission3 = (&'static str, &'static str, &'static str);

/// The entries of `table` for the ServiceAccount `name`, as permissions with their reasons.
pub fn expected_for(
    table: &[(&str, Permission3, &'static str)],
    name: &str,
) -> Vec<(Permission, &'static str)> {
    table
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

#[cfg(test)]
mod audit_format_tests {
    use super::*;

    #[test]
    fn kube_apiserver_events_are_read_at_their_last_stage_and_watches_at_their_start() {
        let log = [
            r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"ResponseStarted","requestURI":"/api/v1/pods?watch=true","verb":"watch","user":{"username":"system:serviceaccount:ns:op"},"objectRef":{"resource":"pods","apiVersion":"v1"},"responseStatus":{"code":200}}"#,
            r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"ResponseComplete","requestURI":"/apis/apps/v1/namespaces/ns/deployments/web","verb":"patch","user":{"username":"system:serviceaccount:ns:op"},"objectRef":{"resource":"deployments","namespace":"ns","name":"web","apiGroup":"apps","apiVersion":"v1"},"responseStatus":{"code":200}}"#,
            r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns/services/web?fieldManager=op","verb":"patch","user":{"username":"system:serviceaccount:ns:op"},"objectRef":{"resource":"services","namespace":"ns","name":"web","apiVersion":"v1"},"responseStatus":{"code":201}}"#,
            r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns/secrets/x","verb":"get","user":{"username":"system:serviceaccount:ns:op"},"objectRef":{"resource":"secrets","namespace":"ns","name":"x","apiVersion":"v1"},"responseStatus":{"code":403}}"#,
            r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"ResponseComplete","requestURI":"/readyz","verb":"get","user":{"username":"system:serviceaccount:ns:op"},"responseStatus":{"code":200}}"#,
            r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{"username":"someone-else"},"objectRef":{"resource":"pods","apiVersion":"v1"},"responseStatus":{"code":200}}"#,
        ]
        .join("\n");
        let (used, denied) = used_by(&log, "system:serviceaccount:ns:op").unwrap();
        assert_eq!(
            used,
            BTreeSet::from([
                Permission::new("", "pods", "watch"),
                Permission::new("apps", "deployments", "patch"),
                Permission::new("", "services", "patch"),
                Permission::new("", "services", "create"),
                Permission::new("", "secrets", "get"),
            ]),
            "a watch counts from its start, an apply that created (201) as create too; the \
             non-resource URL does not count"
        );
        assert_eq!(denied, ["get /api/v1/namespaces/ns/secrets/x"]);
    }

    #[test]
    fn writes_are_told_from_reads() {
        let entry: Value = serde_json::from_str(
            r#"{"kind":"Event","stage":"ResponseComplete","verb":"update","user":{"username":"u"},"objectRef":{"resource":"configmaps"},"responseStatus":{"code":200}}"#,
        )
        .unwrap();
        let request = AuditedRequest::of(&entry).unwrap();
        assert!(request.is_write());
        assert_eq!(request.resource, "configmaps");
        assert_eq!((request.namespace, request.name), ("", ""));
        let entry: Value =
            serde_json::from_str(r#"{"user":"u","verb":"list","resourceRequest":true}"#).unwrap();
        assert!(!AuditedRequest::of(&entry).unwrap().is_write());
    }
}
