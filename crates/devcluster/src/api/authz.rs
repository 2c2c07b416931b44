//! Who a request is and whether it may do what it asks: bearer token authentication,
//! impersonation (`Impersonate-User`/`Impersonate-Group`/`Impersonate-Uid`), the authorizer the
//! server was configured with (decisions in [`crate::rbac`], the policy read from the store
//! here), and `authorization.k8s.io/v1` SelfSubjectAccessReview and SubjectAccessReview.

use http::StatusCode;
use serde_json::{Value, json};

use super::write::decode_body;
use super::{ApiRequest, ApiServer, Credentials, Reply};
use crate::error::ApiError;
use crate::kubeconfig::ADMIN_TOKEN;
use crate::rbac::{self, AUTHENTICATED, Authorization, Decision, Policy, UserInfo};
use crate::request_info::RequestInfo;
use crate::validation::FieldError;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const AUTHORIZATION_GROUP: &str = "authorization.k8s.io";

/// The user a request acts as, and who authenticated when that is another user.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user the request acts as.
    pub user: UserInfo,
    /// The authenticated user, when it impersonates `user`.
    pub impersonated_by: Option<String>,
}

/// The bearer token of an `Authorization` header: `Ok(None)` without one, an error for another
/// scheme. The scheme is case-insensitive, as upstream's bearer token authenticator reads it.
fn bearer(header: Option<&str>) -> Result<Option<&str>, ApiError> {
    let Some(value) = header.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized());
    }
    let token = token.trim();
    Ok((!token.is_empty()).then_some(token))
}

/// Authenticates a request: no token, or the token of the kubeconfig devcluster writes, is the
/// administrator (`system:admin` in `system:masters`); any other bearer token must be a service
/// account token of this server for its own audience, or the request gets 401.
pub(super) fn authenticate(server: &ApiServer, creds: &Credentials) -> Result<UserInfo, ApiError> {
    let token = match bearer(creds.authorization.as_deref())? {
        None => return Ok(UserInfo::admin()),
        Some(t) if t == ADMIN_TOKEN => return Ok(UserInfo::admin()),
        Some(t) => t,
    };
    match super::auth::authenticate_token(server, token, &[]) {
        Ok((claims, _)) => Ok(UserInfo::service_account(
            &claims.namespace,
            &claims.service_account.name,
            &claims.service_account.uid,
        )),
        Err(why) => {
            // The reason helps whoever debugs a test; the token itself is never logged.
            tracing::debug!(reason = %why, "bearer token rejected");
            Err(ApiError::unauthorized())
        }
    }
}

/// Applies impersonation headers, as upstream's impersonation filter: the authenticated user
/// must be allowed to `impersonate` the user (`users`, or `serviceaccounts` in its namespace for
/// a service account name), each group (`groups`) and the uid (`authentication.k8s.io`
/// `uids`). The impersonated user is in `system:authenticated`, and a service account with no
/// groups given gets its usual ones.
pub(super) fn impersonate(
    server: &ApiServer,
    user: UserInfo,
    creds: &Credentials,
) -> Result<Identity, ApiError> {
    let Some(name) = creds.impersonate_user.as_deref() else {
        if !creds.impersonate_groups.is_empty() || creds.impersonate_uid.is_some() {
            return Err(ApiError::bad_request(
                "requested impersonation of groups or uid without impersonating a user",
            ));
        }
        return Ok(Identity {
            user,
            impersonated_by: None,
        });
    };
    let mut checks = Vec::new();
    let sa = rbac::parse_service_account_user(name);
    checks.push(match sa {
        Some((ns, sa_name)) => impersonation_target("", "serviceaccounts", ns, sa_name),
        None => impersonation_target("", "users", "", name),
    });
    for group in &creds.impersonate_groups {
        checks.push(impersonation_target("", "groups", "", group));
    }
    if let Some(uid) = &creds.impersonate_uid {
        checks.push(impersonation_target(
            "authentication.k8s.io",
            "uids",
            "",
            uid,
        ));
    }
    for target in &checks {
        let decision = server.authorize(&user, target);
        if !decision.allowed {
            return Err(forbidden(&user.name, target, &decision.reason));
        }
    }
    let mut groups = creds.impersonate_groups.clone();
    if let (Some((ns, _)), true) = (sa, groups.is_empty()) {
        groups = vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
        ];
    }
    if name != "system:anonymous"
        && !groups
            .iter()
            .any(|g| g == AUTHENTICATED || g == "system:unauthenticated")
    {
        groups.push(AUTHENTICATED.into());
    }
    Ok(Identity {
        user: UserInfo {
            name: name.to_owned(),
            uid: creds.impersonate_uid.clone().unwrap_or_default(),
            groups,
        },
        impersonated_by: Some(user.name),
    })
}

fn impersonation_target(group: &str, resource: &str, namespace: &str, name: &str) -> RequestInfo {
    RequestInfo {
        resource_request: true,
        verb: "impersonate".into(),
        api_group: group.into(),
        resource: resource.into(),
        namespace: namespace.into(),
        name: name.into(),
        ..Default::default()
    }
}

/// The 403 of a denied request, worded as upstream's (`responsewriters.Forbidden`).
pub(super) fn forbidden(user: &str, request: &RequestInfo, reason: &str) -> ApiError {
    let mut why = rbac::forbidden_message(user, request);
    if !reason.is_empty() {
        why = format!("{why}: {reason}");
    }
    if request.resource_request {
        ApiError::forbidden_request(&request.api_group, &request.resource, &request.name, &why)
    } else {
        ApiError::forbidden_request("", "", "", &why)
    }
}

impl ApiServer {
    /// An apply that would create its object needs `create` as well as `patch`: upstream's
    /// PATCH handler authorizes the create attributes before creating (so RBAC granting only
    /// `patch` cannot create objects). The check is audited as its own `create` entry, so the
    /// audit trail shows every verb a client needed.
    pub(super) fn authorize_create_by_apply(
        &self,
        user: &UserInfo,
        req: &ApiRequest,
    ) -> Result<(), ApiError> {
        let mut info = crate::request_info::parse(&req.method, &req.path, req.query.as_deref());
        info.verb = "create".into();
        let decision = self.authorize(user, &info);
        let result = if decision.allowed {
            Ok(())
        } else {
            Err(forbidden(&user.name, &info, &decision.reason))
        };
        let code = match &result {
            Ok(()) => StatusCode::CREATED.as_u16(),
            Err(e) => e.code,
        };
        self.audit
            .record(crate::audit::AuditEntry::new(&user.name, None, &info, code));
        result
    }

    /// Whether `user` may do `request`, by the authorizer this server runs.
    pub fn authorize(&self, user: &UserInfo, request: &RequestInfo) -> Decision {
        if self.authorization == Authorization::AlwaysAllow
            || user.groups.iter().any(|g| g == rbac::MASTERS)
        {
            // Upstream's AlwaysAllow and privileged-group authorizers give no reason.
            return Decision {
                allowed: true,
                reason: String::new(),
            };
        }
        rbac::authorize(user, request, &self.policy(&request.namespace))
    }

    /// The RBAC objects a decision in `namespace` ("" for cluster scope) reads: every
    /// ClusterRole and ClusterRoleBinding, the namespace's Roles and RoleBindings, and the
    /// bootstrap policy.
    pub fn policy(&self, namespace: &str) -> Policy {
        let mut policy = Policy::default();
        for (resource, namespaced) in [
            ("clusterroles", false),
            ("clusterrolebindings", false),
            ("roles", true),
            ("rolebindings", true),
        ] {
            if namespaced && namespace.is_empty() {
                continue;
            }
            let Some(info) = self.registry.get(RBAC_GROUP, "v1", resource) else {
                continue;
            };
            let snapshot = self.collection(&info).snapshot();
            for ((ns, _), obj) in &snapshot.objects {
                if !namespaced || ns == namespace {
                    policy.add(obj);
                }
            }
        }
        policy.add_bootstrap();
        policy
    }
}

fn string(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The request attributes of a SubjectAccessReview spec (exactly one of resourceAttributes and
/// nonResourceAttributes, as upstream validates).
fn review_attributes(spec: &Value, kind: &str) -> Result<RequestInfo, ApiError> {
    let resource = spec.get("resourceAttributes").filter(|v| v.is_object());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| v.is_object());
    match (resource, non_resource) {
        (Some(r), None) => Ok(RequestInfo {
            resource_request: true,
            path: String::new(),
            verb: string(r, "verb"),
            api_group: string(r, "group"),
            api_version: string(r, "version"),
            resource: string(r, "resource"),
            subresource: string(r, "subresource"),
            namespace: string(r, "namespace"),
            name: string(r, "name"),
        }),
        (None, Some(n)) => Ok(RequestInfo {
            resource_request: false,
            path: string(n, "path"),
            verb: string(n, "verb"),
            ..Default::default()
        }),
        (r, _) => {
            // Upstream's validation wording of both mistakes.
            let (field, message) = if r.is_some() {
                (
                    "spec.nonResourceAttributes",
                    "cannot be specified in combination with resourceAttributes",
                )
            } else {
                (
                    "spec.resourceAttributes",
                    "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                )
            };
            Err(ApiError::invalid(
                AUTHORIZATION_GROUP,
                kind,
                "",
                &[FieldError::invalid(field, &json!(null), message)],
            ))
        }
    }
}

/// POST `selfsubjectaccessreviews` (`self_review`: about the requesting user) or
/// `subjectaccessreviews` (about `spec.user`/`spec.groups`): the decision of this server's
/// authorizer, answered (201) as the review with `status.allowed` and `status.reason`. Reviews
/// are not stored.
pub(super) fn access_review(
    server: &ApiServer,
    req: &ApiRequest,
    requester: &UserInfo,
    self_review: bool,
) -> Result<Reply, ApiError> {
    let kind = if self_review {
        "SelfSubjectAccessReview"
    } else {
        "SubjectAccessReview"
    };
    let mut body = decode_body(req)?;
    if let Some(k) = body.get("kind").and_then(Value::as_str)
        && !k.is_empty()
        && k != kind
    {
        return Err(ApiError::bad_request(format!("expected {kind}, got {k}")));
    }
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let attributes = review_attributes(&spec, kind)?;
    let subject = if self_review {
        requester.clone()
    } else {
        let groups: Vec<String> = spec
            .get("groups")
            .and_then(Value::as_array)
            .map(|g| {
                g.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let name = string(&spec, "user");
        if name.is_empty() && groups.is_empty() {
            return Err(ApiError::invalid(
                AUTHORIZATION_GROUP,
                kind,
                "",
                &[FieldError::invalid(
                    "spec.user",
                    &json!(""),
                    "at least one of user or group must be specified",
                )],
            ));
        }
        UserInfo {
            name,
            uid: string(&spec, "uid"),
            groups,
        }
    };
    let decision = server.authorize(&subject, &attributes);
    let mut status = json!({"allowed": decision.allowed});
    if !decision.reason.is_empty() {
        status["reason"] = json!(decision.reason);
    }
    if let Some(map) = body.as_object_mut() {
        map.insert("apiVersion".into(), json!("authorization.k8s.io/v1"));
        map.insert("kind".into(), json!(kind));
        map.entry("metadata").or_insert_with(|| json!({}));
        if self_review {
            // Upstream's answer to a self review echoes only the attributes asked about.
            map.insert("spec".into(), spec);
        }
        map.insert("status".into(), status);
    }
    Ok(Reply::Json(StatusCode::CREATED, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_headers() {
        assert_eq!(bearer(None).unwrap(), None);
        assert_eq!(bearer(Some("")).unwrap(), None);
        assert_eq!(bearer(Some("Bearer abc")).unwrap(), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")).unwrap(), Some("abc"));
        assert_eq!(bearer(Some("Bearer ")).unwrap(), None);
        assert_eq!(bearer(Some("Basic dXNlcjpwdw==")).unwrap_err().code, 401);
    }

    #[test]
    fn review_attributes_need_exactly_one_kind() {
        let r = review_attributes(
            &json!({"resourceAttributes": {"verb": "get", "group": "apps", "resource": "deployments",
                    "subresource": "scale", "namespace": "a", "name": "d"}}),
            "SubjectAccessReview",
        )
        .unwrap();
        assert_eq!(
            (
                r.verb.as_str(),
                r.combined_resource(),
                r.namespace.as_str(),
                r.name.as_str()
            ),
            ("get", "deployments/scale".to_owned(), "a", "d")
        );
        assert!(r.resource_request);
        let n = review_attributes(
            &json!({"nonResourceAttributes": {"verb": "get", "path": "/version"}}),
            "SubjectAccessReview",
        )
        .unwrap();
        assert!(!n.resource_request);
        assert_eq!(n.path, "/version");
        for spec in [
            json!({}),
            json!({"resourceAttributes": {}, "nonResourceAttributes": {}}),
        ] {
            let e = review_attributes(&spec, "SubjectAccessReview").unwrap_err();
            assert_eq!(e.code, 422, "{spec}");
        }
    }

    #[test]
    fn forbidden_statuses_look_like_upstream() {
        let req =
            crate::request_info::parse(&http::Method::GET, "/api/v1/namespaces/ns/pods/x", None);
        let st = forbidden("system:serviceaccount:ns:sa", &req, "").to_status();
        assert_eq!(
            st["message"],
            "pods \"x\" is forbidden: User \"system:serviceaccount:ns:sa\" cannot get resource \"pods\" in API group \"\" in the namespace \"ns\""
        );
        assert_eq!(st["reason"], "Forbidden");
        assert_eq!(st["code"], 403);
        assert_eq!(st["details"], json!({"name": "x", "kind": "pods"}));
        let list =
            crate::request_info::parse(&http::Method::GET, "/apis/apps/v1/deployments", None);
        let st = forbidden(
            "u",
            &list,
            "RBAC: role.rbac.authorization.k8s.io \"r\" not found",
        )
        .to_status();
        assert_eq!(
            st["message"],
            "deployments.apps is forbidden: User \"u\" cannot list resource \"deployments\" in API group \"apps\" at the cluster scope: RBAC: role.rbac.authorization.k8s.io \"r\" not found"
        );
        assert_eq!(
            st["details"],
            json!({"group": "apps", "kind": "deployments"})
        );
        let path = crate::request_info::parse(&http::Method::GET, "/metrics", None);
        let st = forbidden("u", &path, "").to_status();
        assert_eq!(
            st["message"],
            "forbidden: User \"u\" cannot get path \"/metrics\""
        );
    }
}
