//! `authentication.k8s.io/v1`: TokenRequest (`serviceaccounts/token`) issues bound service
//! account tokens, TokenReview checks them, as upstream's `pkg/registry/core/serviceaccount/
//! storage/token.go` and the service account authenticator do. Tokens are signed and verified
//! by [`crate::token`]; here are the parts that need the store: the service account and the
//! bound object must exist, and still be the same objects (uid), for a token to authenticate.

use http::StatusCode;
use serde_json::{Value, json};

use super::write::decode_body;
use super::{ApiRequest, ApiServer, Reply};
use crate::error::{ApiError, Subject};
use crate::objects;
use crate::token::{self, Bound, Claims, ISSUER, Ref};
use crate::validation::FieldError;

/// Upstream's default `expirationSeconds` (defaulted in `SetDefaults_TokenRequestSpec`).
const DEFAULT_EXPIRATION: i64 = 3600;
/// Upstream rejects shorter tokens ("may not specify a duration less than 10 minutes").
const MIN_EXPIRATION: i64 = 600;
/// Upstream rejects longer tokens ("may not specify a duration larger than 2^32 seconds").
const MAX_EXPIRATION: i64 = 1 << 32;

fn now_seconds() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The stored object `resource/name` of namespace `ns`, if it exists.
fn lookup(server: &ApiServer, resource: &str, ns: &str, name: &str) -> Option<Value> {
    let info = server.registry.get("", "v1", resource)?;
    server
        .collection(&info)
        .get(&(ns.to_owned(), name.to_owned()))
        .map(|obj| (*obj).clone())
}

fn core_subject<'a>(resource: &'a str, name: &'a str) -> Subject<'a> {
    Subject {
        group: "",
        resource,
        name,
    }
}

fn uid_of(obj: &Value) -> String {
    objects::meta_str(obj, "uid").unwrap_or_default().to_owned()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn invalid_request(errors: &[FieldError]) -> ApiError {
    ApiError::invalid("authentication.k8s.io", "TokenRequest", "", errors)
}

/// Checks `spec.boundObjectRef` against the store: the object must exist in the namespace and
/// match the reference's uid, as upstream's token storage checks before signing.
fn resolve_bound(
    server: &ApiServer,
    ns: &str,
    service_account: &str,
    reference: &Value,
) -> Result<Option<Bound>, ApiError> {
    let kind = reference.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = reference
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = reference.get("name").and_then(Value::as_str).unwrap_or("");
    let want_uid = reference.get("uid").and_then(Value::as_str).unwrap_or("");
    let resource = match (api_version, kind) {
        ("v1", "Pod") => "pods",
        ("v1", "Secret") => "secrets",
        _ => {
            // Go's GroupVersionKind.String() of the reference, as upstream words it.
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {group}/{version}, Kind={kind}"
            )));
        }
    };
    if name.is_empty() {
        return Err(invalid_request(&[FieldError::required(
            "spec.boundObjectRef.name",
            "",
        )]));
    }
    let obj = lookup(server, resource, ns, name)
        .ok_or_else(|| ApiError::not_found(core_subject(resource, name)))?;
    if resource == "pods" {
        // The ServiceAccount admission plugin defaults an empty serviceAccountName to
        // "default"; devcluster runs no such plugin, so the default is applied here.
        let pod_sa = obj
            .pointer("/spec/serviceAccountName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default");
        if pod_sa != service_account {
            return Err(ApiError::bad_request(format!(
                "cannot bind token for serviceaccount {service_account:?} to pod running with different serviceaccount name."
            )));
        }
    }
    let uid = uid_of(&obj);
    if !want_uid.is_empty() && want_uid != uid {
        return Err(ApiError::conflict(
            core_subject(kind, name),
            &format!(
                "the UID in the bound object reference ({want_uid}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        ));
    }
    let r = Ref {
        name: name.to_owned(),
        uid,
    };
    Ok(Some(if resource == "pods" {
        Bound::Pod(r)
    } else {
        Bound::Secret(r)
    }))
}

/// POST `/api/v1/namespaces/{ns}/serviceaccounts/{name}/token`: a signed token for the service
/// account, optionally bound to a Pod or Secret, answered as the TokenRequest with its status.
pub(super) fn create_token(
    server: &ApiServer,
    ns: &str,
    name: &str,
    req: &ApiRequest,
) -> Result<Reply, ApiError> {
    let mut body = decode_body(req)?;
    if let Some(kind) = body.get("kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != "TokenRequest"
    {
        return Err(ApiError::bad_request(format!(
            "expected TokenRequest, got {kind}"
        )));
    }
    // Index assignment below needs an object; upstream's decoder rejects other shapes too.
    let spec = match body.get("spec") {
        None | Some(Value::Null) => json!({}),
        Some(spec) if spec.is_object() => spec.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "TokenRequest.spec: expected an object",
            ));
        }
    };
    let expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION,
        Some(v) => v.as_i64().ok_or_else(|| {
            invalid_request(&[FieldError::invalid(
                "spec.expirationSeconds",
                v,
                "must be an integer",
            )])
        })?,
    };
    if expiration < MIN_EXPIRATION {
        return Err(invalid_request(&[FieldError::invalid(
            "spec.expirationSeconds",
            &json!(expiration),
            "may not specify a duration less than 10 minutes",
        )]));
    }
    if expiration > MAX_EXPIRATION {
        return Err(invalid_request(&[FieldError::invalid(
            "spec.expirationSeconds",
            &json!(expiration),
            "may not specify a duration larger than 2^32 seconds",
        )]));
    }
    // Upstream defaults empty audiences to the API server's own (`--api-audiences`, which
    // defaults to the issuer).
    let mut audiences = strings(spec.get("audiences"));
    if audiences.is_empty() {
        audiences.push(ISSUER.to_owned());
    }
    let sa = lookup(server, "serviceaccounts", ns, name)
        .ok_or_else(|| ApiError::not_found(core_subject("serviceaccounts", name)))?;
    let bound = match spec.get("boundObjectRef") {
        Some(reference) if reference.is_object() => resolve_bound(server, ns, name, reference)?,
        _ => None,
    };
    let now = now_seconds();
    let claims = Claims {
        audiences: audiences.clone(),
        issued_at: now,
        expires_at: now + expiration,
        jti: uuid::Uuid::new_v4().to_string(),
        namespace: ns.to_owned(),
        service_account: Ref {
            name: name.to_owned(),
            uid: uid_of(&sa),
        },
        bound,
    };
    let expires = jiff::Timestamp::from_second(claims.expires_at)
        .map_err(|e| ApiError::internal(format!("token expiry out of range: {e}")))?
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let signed = token::sign(server.token_key(), &claims);
    // Answer with the request itself, defaulted, plus the status, as upstream does.
    if let Some(map) = body.as_object_mut() {
        map.insert("apiVersion".into(), json!("authentication.k8s.io/v1"));
        map.insert("kind".into(), json!("TokenRequest"));
        let meta = objects::meta_mut(&mut body);
        meta.insert("name".into(), json!(name));
        meta.insert("namespace".into(), json!(ns));
    }
    let mut spec = spec;
    spec["audiences"] = json!(audiences);
    spec["expirationSeconds"] = json!(expiration);
    body["spec"] = spec;
    body["status"] = json!({"token": signed, "expirationTimestamp": expires});
    Ok(Reply::Json(StatusCode::CREATED, body))
}

/// Why a well-signed token no longer authenticates: the objects it names must still exist as
/// the same objects (uid) they were when it was issued.
fn check_objects(server: &ApiServer, claims: &Claims) -> Result<(), String> {
    let ns = &claims.namespace;
    let sa_ref = &claims.service_account;
    let sa = lookup(server, "serviceaccounts", ns, &sa_ref.name).ok_or_else(|| {
        format!(
            "service account token has been invalidated: serviceaccounts {:?} not found (deleted)",
            sa_ref.name
        )
    })?;
    let uid = uid_of(&sa);
    if uid != sa_ref.uid {
        return Err(format!(
            "service account UID ({uid}) does not match claim ({}): the service account was deleted and re-created",
            sa_ref.uid
        ));
    }
    if objects::is_deleting(&sa) {
        return Err(format!(
            "service account token has been invalidated: serviceaccounts {:?} is being deleted",
            sa_ref.name
        ));
    }
    let (resource, kind, r) = match &claims.bound {
        Some(Bound::Pod(r)) => ("pods", "pod", r),
        Some(Bound::Secret(r)) => ("secrets", "secret", r),
        None => return Ok(()),
    };
    let obj = lookup(server, resource, ns, &r.name).ok_or_else(|| {
        format!(
            "service account token has been invalidated: {resource} {:?} not found (the bound {kind} was deleted)",
            r.name
        )
    })?;
    let uid = uid_of(&obj);
    if uid != r.uid {
        return Err(format!(
            "{kind} UID ({uid}) does not match claim ({}): the bound {kind} was deleted and re-created",
            r.uid
        ));
    }
    Ok(())
}

/// Authenticates `token` for `wanted` audiences (empty: the server's own): the verified claims
/// and the audiences they share, or why the token does not authenticate (upstream's wording).
pub(super) fn authenticate_token(
    server: &ApiServer,
    token: &str,
    wanted: &[String],
) -> Result<(Claims, Vec<String>), String> {
    let claims =
        token::verify(server.token_key(), token, now_seconds()).map_err(|e| e.to_string())?;
    let wanted = if wanted.is_empty() {
        vec![ISSUER.to_owned()]
    } else {
        wanted.to_vec()
    };
    let audiences: Vec<String> = wanted
        .iter()
        .filter(|a| claims.audiences.contains(a))
        .cloned()
        .collect();
    if audiences.is_empty() {
        // Upstream's wording (`authenticator.Audiences` mismatch in the JWT authenticator).
        return Err(format!(
            "token audiences {:?} is invalid for the target audiences {:?}",
            claims.audiences, wanted
        ));
    }
    check_objects(server, &claims)?;
    Ok((claims, audiences))
}

/// The `status` of a TokenReview of `token` for `wanted` audiences (empty: the server's own).
fn review_status(server: &ApiServer, token: &str, wanted: &[String]) -> Value {
    let (claims, audiences) = match authenticate_token(server, token, wanted) {
        Ok(ok) => ok,
        Err(why) => return unauthenticated(&why),
    };
    let ns = &claims.namespace;
    let mut extra = serde_json::Map::new();
    if let Some(Bound::Pod(pod)) = &claims.bound {
        extra.insert(
            "authentication.kubernetes.io/pod-name".into(),
            json!([pod.name]),
        );
        extra.insert(
            "authentication.kubernetes.io/pod-uid".into(),
            json!([pod.uid]),
        );
    }
    extra.insert(
        "authentication.kubernetes.io/credential-id".into(),
        json!([format!("JTI={}", claims.jti)]),
    );
    json!({
        "authenticated": true,
        "user": {
            "username": claims.subject(),
            "uid": claims.service_account.uid,
            "groups": [
                "system:serviceaccounts",
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated",
            ],
            "extra": extra,
        },
        "audiences": audiences,
    })
}

/// An unauthenticated status. `authenticated: false` is omitted on the wire, as upstream's
/// `omitempty` does; clients read it as false.
fn unauthenticated(why: &str) -> Value {
    json!({"user": {}, "error": format!("invalid bearer token, {why}")})
}

/// POST `/apis/authentication.k8s.io/v1/tokenreviews`: whether a token authenticates, and as
/// whom. An invalid token is an answer (201, `authenticated` unset, `status.error`), not an
/// HTTP error. Reviews are not stored.
pub(super) fn review(server: &ApiServer, req: &ApiRequest) -> Result<Reply, ApiError> {
    let mut body = decode_body(req)?;
    if let Some(kind) = body.get("kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != "TokenReview"
    {
        return Err(ApiError::bad_request(format!(
            "expected TokenReview, got {kind}"
        )));
    }
    let token = body
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if token.is_empty() {
        return Err(ApiError::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    let wanted = strings(body.pointer("/spec/audiences"));
    let status = review_status(server, &token, &wanted);
    if let Some(map) = body.as_object_mut() {
        map.insert("apiVersion".into(), json!("authentication.k8s.io/v1"));
        map.insert("kind".into(), json!("TokenReview"));
        map.entry("metadata").or_insert_with(|| json!({}));
        map.insert("status".into(), status);
    }
    Ok(Reply::Json(StatusCode::CREATED, body))
}
