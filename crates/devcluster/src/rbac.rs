//! Authorization as upstream's RBAC authorizer (`plugin/pkg/auth/authorizer/rbac`), as a pure
//! function of the request's user and attributes and the RBAC objects: a [`Policy`] snapshot in,
//! a [`Decision`] out. Loading the policy from the store is `api::authz`'s part.
//!
//! Not implemented: ClusterRole `aggregationRule` (upstream's aggregation controller fills in
//! the rules; here an aggregated ClusterRole grants only the rules stored in it), and the other
//! authorizers of a real cluster (Node, webhook, ABAC).

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, PolicyRule, RoleBinding, RoleRef, Subject};
use serde_json::Value;

use crate::request_info::RequestInfo;

/// Which authorizer the server runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Authorization {
    /// Every authenticated request is allowed (devcluster's historical behaviour).
    #[default]
    AlwaysAllow,
    /// RBAC, as upstream's `--authorization-mode=RBAC`.
    Rbac,
}

/// The group whose members every authorizer lets through (upstream's privileged group).
pub const MASTERS: &str = "system:masters";
/// The group of every authenticated user.
pub const AUTHENTICATED: &str = "system:authenticated";

/// An authenticated (or impersonated) user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    /// `system:admin`, `system:serviceaccount:NS:NAME`, ...
    pub name: String,
    /// The service account's uid, or "".
    pub uid: String,
    /// Group memberships.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The administrator: requests without credentials and with the kubeconfig's token.
    pub fn admin() -> Self {
        UserInfo {
            name: "system:admin".into(),
            uid: String::new(),
            groups: vec![MASTERS.into(), AUTHENTICATED.into()],
        }
    }

    /// A service account's user, with the groups upstream's authenticator gives it.
    pub fn service_account(namespace: &str, name: &str, uid: &str) -> Self {
        UserInfo {
            name: service_account_user(namespace, name),
            uid: uid.to_owned(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                AUTHENTICATED.into(),
            ],
        }
    }
}

/// `system:serviceaccount:NS:NAME`.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The namespace and name of a service account user name.
pub fn parse_service_account_user(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

/// The answer of the authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Why: the binding that allowed it (`RBAC: allowed by ...`), or for a denial the errors
    /// met on the way (bindings to missing roles), or "".
    pub reason: String,
}

/// The RBAC objects a decision reads. Roles and ClusterRoles are kept as their rules; bindings
/// whole (their subjects and role reference matter).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// ClusterRole name -> rules.
    pub cluster_roles: BTreeMap<String, Vec<PolicyRule>>,
    /// (namespace, Role name) -> rules.
    pub roles: BTreeMap<(String, String), Vec<PolicyRule>>,
    /// Every ClusterRoleBinding, in name order.
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    /// RoleBindings (of any namespace; only the request's apply), in (namespace, name) order.
    pub role_bindings: Vec<RoleBinding>,
}

impl Policy {
    /// Adds a stored object (Role, ClusterRole, RoleBinding, ClusterRoleBinding as JSON).
    /// Objects that do not decode are skipped: the store validated them on write, so this only
    /// drops what no decision could use anyway.
    pub fn add(&mut self, obj: &Value) {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = || {
            obj.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let rules = || -> Vec<PolicyRule> {
            obj.get("rules")
                .cloned()
                .and_then(|r| serde_json::from_value(r).ok())
                .unwrap_or_default()
        };
        match kind {
            "ClusterRole" => {
                self.cluster_roles.insert(name(), rules());
            }
            "Role" => {
                let ns = obj
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                self.roles.insert((ns, name()), rules());
            }
            "ClusterRoleBinding" => {
                if let Ok(b) = serde_json::from_value(obj.clone()) {
                    self.cluster_role_bindings.push(b);
                }
            }
            "RoleBinding" => {
                if let Ok(b) = serde_json::from_value(obj.clone()) {
                    self.role_bindings.push(b);
                }
            }
            _ => {}
        }
    }

    /// Adds upstream's bootstrap policy for authenticated users, unless the store has objects
    /// of those names: `system:discovery` and `system:public-info-viewer` (discovery, OpenAPI,
    /// version and health URLs) and `system:basic-user` (SelfSubjectAccessReview and
    /// SelfSubjectRulesReview), each bound to the group `system:authenticated`.
    pub fn add_bootstrap(&mut self) {
        let urls = |urls: &[&str]| PolicyRule {
            non_resource_urls: Some(urls.iter().map(|u| (*u).to_owned()).collect()),
            verbs: vec!["get".into()],
            ..Default::default()
        };
        let discovery = urls(&[
            "/api",
            "/api/*",
            "/apis",
            "/apis/*",
            "/healthz",
            "/livez",
            "/openapi",
            "/openapi/*",
            "/readyz",
            "/version",
            "/version/",
        ]);
        let public = urls(&["/healthz", "/livez", "/readyz", "/version", "/version/"]);
        let basic = PolicyRule {
            api_groups: Some(vec!["authorization.k8s.io".into()]),
            resources: Some(vec![
                "selfsubjectaccessreviews".into(),
                "selfsubjectrulesreviews".into(),
            ]),
            verbs: vec!["create".into()],
            ..Default::default()
        };
        for (name, rule) in [
            ("system:discovery", discovery),
            ("system:public-info-viewer", public),
            ("system:basic-user", basic),
        ] {
            if self.cluster_roles.contains_key(name)
                || self
                    .cluster_role_bindings
                    .iter()
                    .any(|b| b.metadata.name.as_deref() == Some(name))
            {
                continue;
            }
            self.cluster_roles.insert(name.to_owned(), vec![rule]);
            self.cluster_role_bindings.push(ClusterRoleBinding {
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some(name.to_owned()),
                    ..Default::default()
                },
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "ClusterRole".into(),
                    name: name.to_owned(),
                },
                subjects: Some(vec![Subject {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Group".into(),
                    name: AUTHENTICATED.into(),
                    namespace: None,
                }]),
            });
        }
    }

    /// The rules a binding's role reference grants (in `namespace` for a Role), or upstream's
    /// error when the role is missing.
    fn role_rules(&self, role_ref: &RoleRef, namespace: &str) -> Result<&[PolicyRule], String> {
        match role_ref.kind.as_str() {
            "ClusterRole" => self
                .cluster_roles
                .get(&role_ref.name)
                .map(Vec::as_slice)
                .ok_or_else(|| {
                    format!(
                        "clusterrole.rbac.authorization.k8s.io {:?} not found",
                        role_ref.name
                    )
                }),
            "Role" => self
                .roles
                .get(&(namespace.to_owned(), role_ref.name.clone()))
                .map(Vec::as_slice)
                .ok_or_else(|| {
                    format!(
                        "role.rbac.authorization.k8s.io {:?} not found",
                        role_ref.name
                    )
                }),
            other => Err(format!("unsupported role reference kind: {other:?}")),
        }
    }
}

/// Decides whether `user` may do what `request` asks, as upstream's RBAC authorizer behind the
/// privileged-group authorizer: members of `system:masters` may do anything; everyone else
/// needs a rule of a Role or ClusterRole bound to them by a ClusterRoleBinding, or by a
/// RoleBinding in the request's namespace.
pub fn authorize(user: &UserInfo, request: &RequestInfo, policy: &Policy) -> Decision {
    if user.groups.iter().any(|g| g == MASTERS) {
        return Decision {
            allowed: true,
            reason: String::new(),
        };
    }
    let mut errors = Vec::new();
    for binding in &policy.cluster_role_bindings {
        let Some(subject) = applies_to(user, binding.subjects.as_deref(), "") else {
            continue;
        };
        match policy.role_rules(&binding.role_ref, "") {
            Ok(rules) if rules.iter().any(|r| rule_allows(request, r)) => {
                return allowed(format!(
                    "ClusterRoleBinding {:?} of {} {:?} to {}",
                    binding.metadata.name.as_deref().unwrap_or_default(),
                    binding.role_ref.kind,
                    binding.role_ref.name,
                    describe_subject(subject, "")
                ));
            }
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    if !request.namespace.is_empty() {
        for binding in &policy.role_bindings {
            let ns = binding.metadata.namespace.as_deref().unwrap_or_default();
            if ns != request.namespace {
                continue;
            }
            let Some(subject) = applies_to(user, binding.subjects.as_deref(), ns) else {
                continue;
            };
            match policy.role_rules(&binding.role_ref, ns) {
                Ok(rules) if rules.iter().any(|r| rule_allows(request, r)) => {
                    return allowed(format!(
                        "RoleBinding \"{}/{ns}\" of {} {:?} to {}",
                        binding.metadata.name.as_deref().unwrap_or_default(),
                        binding.role_ref.kind,
                        binding.role_ref.name,
                        describe_subject(subject, ns)
                    ));
                }
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
        }
    }
    // Upstream's `utilerrors.NewAggregate` wording: one error as is, several in brackets.
    let reason = match errors.len() {
        0 => String::new(),
        1 => format!("RBAC: {}", errors[0]),
        _ => format!("RBAC: [{}]", errors.join(", ")),
    };
    Decision {
        allowed: false,
        reason,
    }
}

fn allowed(by: String) -> Decision {
    Decision {
        allowed: true,
        reason: format!("RBAC: allowed by {by}"),
    }
}

/// The first subject of a binding naming `user`. `namespace` is the binding's ("" for a
/// ClusterRoleBinding): a ServiceAccount subject without a namespace means that one.
fn applies_to<'a>(
    user: &UserInfo,
    subjects: Option<&'a [Subject]>,
    namespace: &str,
) -> Option<&'a Subject> {
    subjects?.iter().find(|s| match s.kind.as_str() {
        "User" => user.name == s.name,
        "Group" => user.groups.contains(&s.name),
        "ServiceAccount" => {
            let ns = s
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(namespace);
            !ns.is_empty() && user.name == service_account_user(ns, &s.name)
        }
        _ => false,
    })
}

/// A subject as upstream's allow reasons name it (`ServiceAccount "name/ns"`).
fn describe_subject(s: &Subject, binding_namespace: &str) -> String {
    if s.kind == "ServiceAccount" {
        let ns = s
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(binding_namespace);
        format!("{} \"{}/{ns}\"", s.kind, s.name)
    } else {
        format!("{} {:?}", s.kind, s.name)
    }
}

/// Whether one rule allows the request (upstream's `RuleAllows`).
pub fn rule_allows(request: &RequestInfo, rule: &PolicyRule) -> bool {
    let verb = rule.verbs.iter().any(|v| v == "*" || *v == request.verb);
    if !verb {
        return false;
    }
    if !request.resource_request {
        return rule
            .non_resource_urls
            .iter()
            .flatten()
            .any(|u| url_matches(u, &request.path));
    }
    let group = rule
        .api_groups
        .iter()
        .flatten()
        .any(|g| g == "*" || *g == request.api_group);
    let combined = request.combined_resource();
    let resource = rule.resources.iter().flatten().any(|r| {
        r == "*"
            || *r == combined
            || (!request.subresource.is_empty()
                && r.strip_prefix("*/") == Some(request.subresource.as_str()))
    });
    // A rule with resourceNames allows only requests naming one of them: never a list, watch
    // or create of the whole collection.
    let name = match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => names.contains(&request.name),
    };
    group && resource && name
}

fn url_matches(rule: &str, path: &str) -> bool {
    rule == "*"
        || rule == path
        || rule
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

/// Upstream's 403 message: `User "U" cannot VERB resource "R[/SUB]" in API group "G" in the
/// namespace "NS"` (or `at the cluster scope`), or `User "U" cannot VERB path "P"`.
pub fn forbidden_message(user: &str, request: &RequestInfo) -> String {
    if !request.resource_request {
        return format!(
            "User {user:?} cannot {} path {:?}",
            request.verb, request.path
        );
    }
    let resource = request.combined_resource();
    if request.namespace.is_empty() {
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
            request.verb, request.api_group
        )
    } else {
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
            request.verb, request.api_group, request.namespace
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use serde_json::json;

    use crate::request_info;

    fn sa(ns: &str, name: &str) -> UserInfo {
        UserInfo::service_account(ns, name, "uid")
    }

    fn req(method: Method, path: &str) -> RequestInfo {
        request_info::parse(&method, path, None)
    }

    fn get(path: &str) -> RequestInfo {
        req(Method::GET, path)
    }

    fn policy(objects: &[Value]) -> Policy {
        let mut p = Policy::default();
        for o in objects {
            p.add(o);
        }
        p
    }

    fn cluster_role(name: &str, rules: Value) -> Value {
        json!({"kind": "ClusterRole", "metadata": {"name": name}, "rules": rules})
    }

    fn role(ns: &str, name: &str, rules: Value) -> Value {
        json!({"kind": "Role", "metadata": {"name": name, "namespace": ns}, "rules": rules})
    }

    fn crb(name: &str, role: &str, subjects: Value) -> Value {
        json!({"kind": "ClusterRoleBinding", "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
               "subjects": subjects})
    }

    fn rb(ns: &str, name: &str, kind: &str, role: &str, subjects: Value) -> Value {
        json!({"kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
               "subjects": subjects})
    }

    fn sa_subject(ns: &str, name: &str) -> Value {
        json!([{"kind": "ServiceAccount", "name": name, "namespace": ns}])
    }

    fn allows(p: &Policy, user: &UserInfo, r: &RequestInfo) -> bool {
        authorize(user, r, p).allowed
    }

    #[test]
    fn masters_may_do_anything_and_strangers_nothing() {
        let p = Policy::default();
        let r = req(Method::DELETE, "/api/v1/namespaces/x/secrets");
        assert!(allows(&p, &UserInfo::admin(), &r));
        let d = authorize(&sa("x", "y"), &r, &p);
        assert_eq!(
            d,
            Decision {
                allowed: false,
                reason: String::new()
            }
        );
    }

    #[test]
    fn role_bindings_apply_in_their_namespace_only() {
        let p = policy(&[
            role(
                "a",
                "reader",
                json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]),
            ),
            rb("a", "read", "Role", "reader", sa_subject("a", "op")),
        ]);
        let op = sa("a", "op");
        assert!(allows(&p, &op, &get("/api/v1/namespaces/a/pods/p")));
        assert!(allows(&p, &op, &get("/api/v1/namespaces/a/pods")));
        assert!(allows(
            &p,
            &op,
            &request_info::parse(&Method::GET, "/api/v1/namespaces/a/pods", Some("watch=1"))
        ));
        assert!(!allows(&p, &op, &get("/api/v1/namespaces/b/pods/p")));
        assert!(!allows(&p, &op, &get("/api/v1/pods")), "cluster-wide list");
        assert!(!allows(
            &p,
            &op,
            &req(Method::DELETE, "/api/v1/namespaces/a/pods/p")
        ));
        assert!(!allows(&p, &op, &get("/api/v1/namespaces/a/configmaps/p")));
        assert!(
            !allows(&p, &op, &get("/apis/apps/v1/namespaces/a/pods/p")),
            "other group"
        );
        assert!(!allows(
            &p,
            &sa("b", "op"),
            &get("/api/v1/namespaces/a/pods/p")
        ));
        let d = authorize(&op, &get("/api/v1/namespaces/a/pods/p"), &p);
        assert_eq!(
            d.reason,
            "RBAC: allowed by RoleBinding \"read/a\" of Role \"reader\" to ServiceAccount \"op/a\""
        );
    }

    #[test]
    fn a_role_binding_may_grant_a_cluster_role_within_its_namespace() {
        let p = policy(&[
            cluster_role(
                "edit",
                json!([{"apiGroups": ["apps"], "resources": ["*"], "verbs": ["*"]}]),
            ),
            // No namespace on the subject: the binding's namespace.
            rb(
                "a",
                "edit",
                "ClusterRole",
                "edit",
                json!([{"kind": "ServiceAccount", "name": "op"}]),
            ),
        ]);
        let op = sa("a", "op");
        assert!(allows(
            &p,
            &op,
            &req(Method::DELETE, "/apis/apps/v1/namespaces/a/deployments/d")
        ));
        assert!(allows(
            &p,
            &op,
            &req(
                Method::PUT,
                "/apis/apps/v1/namespaces/a/deployments/d/scale"
            )
        ));
        assert!(!allows(
            &p,
            &op,
            &get("/apis/apps/v1/namespaces/b/deployments/d")
        ));
        assert!(!allows(&p, &op, &get("/apis/apps/v1/deployments")));
    }

    #[test]
    fn cluster_role_bindings_apply_everywhere_and_to_cluster_scope() {
        let p = policy(&[
            cluster_role(
                "ns-reader",
                json!([{"apiGroups": [""], "resources": ["namespaces", "nodes"], "verbs": ["get", "list"]}]),
            ),
            crb(
                "ns-reader",
                "ns-reader",
                json!([{"kind": "Group", "name": "system:serviceaccounts:a"}]),
            ),
        ]);
        let op = sa("a", "op");
        assert!(allows(&p, &op, &get("/api/v1/namespaces")));
        assert!(allows(&p, &op, &get("/api/v1/namespaces/zzz")));
        assert!(allows(&p, &op, &get("/api/v1/nodes/n")));
        assert!(!allows(&p, &sa("b", "op"), &get("/api/v1/nodes/n")));
        let d = authorize(&op, &get("/api/v1/nodes/n"), &p);
        assert_eq!(
            d.reason,
            "RBAC: allowed by ClusterRoleBinding \"ns-reader\" of ClusterRole \"ns-reader\" to Group \"system:serviceaccounts:a\""
        );
        // A ServiceAccount subject of a ClusterRoleBinding needs its namespace.
        let p = policy(&[
            cluster_role(
                "r",
                json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]),
            ),
            crb("r", "r", json!([{"kind": "ServiceAccount", "name": "op"}])),
        ]);
        assert!(!allows(&p, &op, &get("/api/v1/nodes/n")));
        // User subjects match the user name.
        let p = policy(&[
            cluster_role(
                "r",
                json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]),
            ),
            crb(
                "r",
                "r",
                json!([{"kind": "User", "name": "system:serviceaccount:a:op"}]),
            ),
        ]);
        assert!(allows(&p, &op, &get("/api/v1/nodes/n")));
    }

    #[test]
    fn subresources_need_their_own_rule() {
        let p = policy(&[
            role(
                "a",
                "r",
                json!([
                    {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "update"]},
                    {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["get"]},
                    {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
                ]),
            ),
            rb("a", "r", "Role", "r", sa_subject("a", "op")),
        ]);
        let op = sa("a", "op");
        assert!(allows(
            &p,
            &op,
            &req(Method::PUT, "/apis/example.com/v1/namespaces/a/widgets/w")
        ));
        assert!(!allows(
            &p,
            &op,
            &req(
                Method::PUT,
                "/apis/example.com/v1/namespaces/a/widgets/w/status"
            )
        ));
        assert!(allows(
            &p,
            &op,
            &get("/apis/apps/v1/namespaces/a/deployments/d/scale")
        ));
        assert!(allows(
            &p,
            &op,
            &get("/apis/apps/v1/namespaces/a/statefulsets/s/scale")
        ));
        assert!(!allows(
            &p,
            &op,
            &get("/apis/apps/v1/namespaces/a/deployments/d")
        ));
        assert!(!allows(
            &p,
            &op,
            &get("/apis/apps/v1/namespaces/a/deployments/d/status")
        ));
        assert!(allows(
            &p,
            &op,
            &req(Method::POST, "/api/v1/namespaces/a/serviceaccounts/x/token")
        ));
        assert!(!allows(
            &p,
            &op,
            &req(Method::POST, "/api/v1/namespaces/a/serviceaccounts")
        ));
    }

    #[test]
    fn resource_names_restrict_to_named_requests() {
        let p = policy(&[
            role(
                "a",
                "r",
                json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["mine"], "verbs": ["*"]}]),
            ),
            rb("a", "r", "Role", "r", sa_subject("a", "op")),
        ]);
        let op = sa("a", "op");
        assert!(allows(
            &p,
            &op,
            &get("/api/v1/namespaces/a/configmaps/mine")
        ));
        assert!(allows(
            &p,
            &op,
            &req(Method::PATCH, "/api/v1/namespaces/a/configmaps/mine")
        ));
        assert!(!allows(
            &p,
            &op,
            &get("/api/v1/namespaces/a/configmaps/other")
        ));
        assert!(
            !allows(&p, &op, &get("/api/v1/namespaces/a/configmaps")),
            "list"
        );
        assert!(
            !allows(
                &p,
                &op,
                &req(Method::POST, "/api/v1/namespaces/a/configmaps")
            ),
            "create"
        );
        assert!(
            !allows(
                &p,
                &op,
                &req(Method::DELETE, "/api/v1/namespaces/a/configmaps")
            ),
            "deletecollection"
        );
        // Upstream lets a list or watch pinned to the name by field selector through.
        let pinned = request_info::parse(
            &Method::GET,
            "/api/v1/namespaces/a/configmaps",
            Some("watch=true&fieldSelector=metadata.name%3Dmine"),
        );
        assert!(allows(&p, &op, &pinned));
        // An empty list of names is no restriction.
        let p = policy(&[
            role(
                "a",
                "r",
                json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [], "verbs": ["list"]}]),
            ),
            rb("a", "r", "Role", "r", sa_subject("a", "op")),
        ]);
        assert!(allows(&p, &op, &get("/api/v1/namespaces/a/configmaps")));
    }

    #[test]
    fn wildcards() {
        let p = policy(&[
            cluster_role(
                "all",
                json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
            ),
            crb("all", "all", json!([{"kind": "User", "name": "root"}])),
        ]);
        let root = UserInfo {
            name: "root".into(),
            ..Default::default()
        };
        assert!(allows(
            &p,
            &root,
            &req(Method::DELETE, "/apis/x.io/v1/namespaces/n/things/t/status")
        ));
        assert!(allows(&p, &root, &get("/api/v1/nodes")));
        // Resource rules never grant non-resource URLs.
        assert!(!allows(&p, &root, &get("/version")));
        let rule = |v: Value| -> PolicyRule { serde_json::from_value(v).unwrap() };
        let r = rule(json!({"verbs": ["get"], "nonResourceURLs": ["/metrics", "/logs/*"]}));
        assert!(rule_allows(&get("/metrics"), &r));
        assert!(rule_allows(&get("/logs/a/b"), &r));
        assert!(!rule_allows(&get("/metrics/x"), &r));
        assert!(!rule_allows(&req(Method::POST, "/metrics"), &r));
        // Non-resource rules never grant resources.
        let r = rule(json!({"verbs": ["*"], "nonResourceURLs": ["*"]}));
        assert!(rule_allows(&get("/anything"), &r));
        assert!(!rule_allows(&get("/api/v1/pods"), &r));
        // A rule without apiGroups matches no group.
        let r = rule(json!({"verbs": ["*"], "resources": ["*"]}));
        assert!(!rule_allows(&get("/api/v1/pods"), &r));
    }

    #[test]
    fn bootstrap_policy_grants_discovery_to_authenticated_users() {
        let mut p = Policy::default();
        p.add_bootstrap();
        let op = sa("a", "op");
        for path in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps/v1",
            "/version",
            "/openapi/v3",
            "/healthz",
        ] {
            assert!(allows(&p, &op, &get(path)), "{path}");
        }
        assert!(!allows(&p, &op, &get("/metrics")));
        assert!(!allows(&p, &op, &req(Method::POST, "/api")));
        assert!(allows(
            &p,
            &op,
            &req(
                Method::POST,
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
            )
        ));
        assert!(!allows(
            &p,
            &op,
            &req(
                Method::POST,
                "/apis/authorization.k8s.io/v1/subjectaccessreviews"
            )
        ));
        // A user without the authenticated group (none here are) gets nothing.
        assert!(!allows(&p, &UserInfo::default(), &get("/api")));
        // Stored objects of the same name take precedence.
        let mut p = policy(&[cluster_role("system:discovery", json!([]))]);
        p.add_bootstrap();
        assert!(!allows(&p, &op, &get("/apis")));
        assert!(
            allows(&p, &op, &get("/version")),
            "public-info-viewer still there"
        );
    }

    #[test]
    fn missing_roles_are_reported_in_the_reason() {
        let p = policy(&[
            crb("gone", "nope", sa_subject("a", "op")),
            rb("a", "gone", "Role", "absent", sa_subject("a", "op")),
            rb("b", "elsewhere", "Role", "absent", sa_subject("a", "op")),
        ]);
        let d = authorize(&sa("a", "op"), &get("/api/v1/namespaces/a/pods"), &p);
        assert!(!d.allowed);
        assert_eq!(
            d.reason,
            "RBAC: [clusterrole.rbac.authorization.k8s.io \"nope\" not found, role.rbac.authorization.k8s.io \"absent\" not found]"
        );
        // Bindings that do not name the user are not looked at.
        let d = authorize(&sa("a", "other"), &get("/api/v1/namespaces/a/pods"), &p);
        assert_eq!(d.reason, "");
    }

    #[test]
    fn forbidden_messages_match_upstream() {
        let user = "system:serviceaccount:ns:sa";
        assert_eq!(
            forbidden_message(user, &get("/api/v1/namespaces/ns/pods/x")),
            "User \"system:serviceaccount:ns:sa\" cannot get resource \"pods\" in API group \"\" in the namespace \"ns\""
        );
        assert_eq!(
            forbidden_message(
                user,
                &req(
                    Method::PUT,
                    "/apis/apps/v1/namespaces/ns/deployments/d/status"
                )
            ),
            "User \"system:serviceaccount:ns:sa\" cannot update resource \"deployments/status\" in API group \"apps\" in the namespace \"ns\""
        );
        assert_eq!(
            forbidden_message(user, &get("/api/v1/nodes")),
            "User \"system:serviceaccount:ns:sa\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
        );
        assert_eq!(
            forbidden_message(user, &get("/metrics")),
            "User \"system:serviceaccount:ns:sa\" cannot get path \"/metrics\""
        );
    }

    #[test]
    fn service_account_user_names() {
        assert_eq!(
            parse_service_account_user("system:serviceaccount:a:b"),
            Some(("a", "b"))
        );
        assert_eq!(parse_service_account_user("system:serviceaccount:a"), None);
        assert_eq!(parse_service_account_user("system:serviceaccount::b"), None);
        assert_eq!(parse_service_account_user("alice"), None);
    }
}
