//! API errors as the real server reports them: a `metav1.Status` body with the right HTTP code,
//! `reason`, message and details, so clients (kube-rs's `ErrorResponse`, kubectl's messages,
//! `apierrors.IsConflict` and friends) recognise them.

use std::borrow::Cow;

use serde_json::{Value, json};

use crate::validation::FieldError;

/// A failed API request.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason`, e.g. `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`.
    pub reason: Cow<'static, str>,
    /// Human readable message.
    pub message: String,
    /// `Status.details`, if any (boxed: errors travel in every `Result` of the request path).
    pub details: Option<Box<Value>>,
}

/// The group and resource (or kind) an error is about, for `Status.details`.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// API group ("" for core).
    pub group: &'a str,
    /// Plural resource name for most errors; the Kind for `Invalid`.
    pub resource: &'a str,
    /// Object name.
    pub name: &'a str,
}

impl Subject<'_> {
    /// `configmaps` or `deployments.apps`, as the server names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    fn details(&self) -> Value {
        let mut d = serde_json::Map::new();
        if !self.name.is_empty() {
            d.insert("name".into(), json!(self.name));
        }
        if !self.group.is_empty() {
            d.insert("group".into(), json!(self.group));
        }
        d.insert("kind".into(), json!(self.resource));
        Value::Object(d)
    }
}

impl ApiError {
    fn new(code: u16, reason: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.into(),
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    /// 404 for an object that does not exist.
    pub fn not_found(s: Subject<'_>) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", s.qualified(), s.name),
        )
        .with_details(s.details())
    }

    /// 404 for a path the server does not serve.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    /// 409 on create of an existing name.
    pub fn already_exists(s: Subject<'_>) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", s.qualified(), s.name),
        )
        .with_details(s.details())
    }

    /// 409 on a write with a stale resourceVersion or a failed precondition.
    pub fn conflict(s: Subject<'_>, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {}",
                s.qualified(),
                s.name,
                why
            ),
        )
        .with_details(s.details())
    }

    /// 409 for server-side apply conflicts; `causes` name the fields and managers.
    pub fn apply_conflict(s: Subject<'_>, message: String, causes: Vec<Value>) -> Self {
        let mut details = s.details();
        if let Some(d) = details.as_object_mut() {
            d.insert("causes".into(), Value::Array(causes));
        }
        Self::new(409, "Conflict", message).with_details(details)
    }

    /// 422 with one cause per field error. `kind` is the object's Kind, as upstream reports it.
    pub fn invalid(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let list = errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>();
        let summary = if list.len() == 1 {
            list[0].clone()
        } else {
            format!("[{}]", list.join(", "))
        };
        let causes = errors
            .iter()
            .map(|e| {
                // The cause message is the error without its leading "field: ".
                let msg = e
                    .message
                    .strip_prefix(&format!("{}: ", e.field))
                    .unwrap_or(&e.message);
                json!({"reason": e.reason, "message": msg, "field": e.field})
            })
            .collect::<Vec<_>>();
        let subject = Subject {
            group,
            resource: kind,
            name,
        };
        let mut details = subject.details();
        if let Some(d) = details.as_object_mut() {
            d.insert("causes".into(), Value::Array(causes));
        }
        Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {summary}"),
        )
        .with_details(details)
    }

    /// 400 for a malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 403 for an operation the server refuses.
    pub fn forbidden(s: Subject<'_>, why: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!("{} \"{}\" is forbidden: {}", s.qualified(), s.name, why),
        )
        .with_details(s.details())
    }

    /// 403 from the authorizer, as upstream's `NewForbidden(groupResource, name, err)` words it:
    /// `pods "x" is forbidden: WHY`, `pods is forbidden: WHY` without a name, `forbidden: WHY`
    /// for non-resource URLs (empty `resource`).
    pub fn forbidden_request(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let subject = Subject {
            group,
            resource,
            name,
        };
        let message = if resource.is_empty() {
            format!("forbidden: {why}")
        } else if name.is_empty() {
            format!("{} is forbidden: {why}", subject.qualified())
        } else {
            format!("{} {name:?} is forbidden: {why}", subject.qualified())
        };
        let mut details = serde_json::Map::new();
        if !name.is_empty() {
            details.insert("name".into(), json!(name));
        }
        if !group.is_empty() {
            details.insert("group".into(), json!(group));
        }
        if !resource.is_empty() {
            details.insert("kind".into(), json!(resource));
        }
        Self::new(403, "Forbidden", message).with_details(Value::Object(details))
    }

    /// 401 for a request whose credentials do not authenticate (upstream says no more).
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 405 for a verb a resource does not support.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message).with_details(json!({}))
    }

    /// 406 when no acceptable representation can be produced.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    /// 415 for a body content type the endpoint does not take.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    /// 410 when a resourceVersion or continue token is too old.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 500 for failures inside the server (webhook calls, ...).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// An error with an explicit code and reason (webhook denials carry their own).
    pub fn custom(
        code: u16,
        reason: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(code, reason, message)
    }

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason.as_ref(),
            "code": self.code,
        });
        if let (Some(details), Some(obj)) = (&self.details, status.as_object_mut()) {
            obj.insert("details".into(), (**details).clone());
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bodies_look_like_the_real_server() {
        let s = Subject {
            group: "apps",
            resource: "deployments",
            name: "web",
        };
        let st = ApiError::not_found(s).to_status();
        assert_eq!(st["message"], "deployments.apps \"web\" not found");
        assert_eq!(st["details"]["group"], "apps");
        assert_eq!(st["code"], 404);
        let c = ApiError::conflict(
            Subject {
                group: "",
                resource: "configmaps",
                name: "x",
            },
            "the object has been modified; please apply your changes to the latest version and try again",
        );
        assert!(
            c.message
                .starts_with("Operation cannot be fulfilled on configmaps \"x\"")
        );
        let inv = ApiError::invalid(
            "",
            "ConfigMap",
            "Bad",
            &[FieldError::invalid(
                "metadata.name",
                &json!("Bad"),
                "must be lowercase",
            )],
        );
        assert_eq!(
            inv.message,
            "ConfigMap \"Bad\" is invalid: metadata.name: Invalid value: \"Bad\": must be lowercase"
        );
        assert_eq!(
            inv.to_status()["details"]["causes"][0]["message"],
            "Invalid value: \"Bad\": must be lowercase"
        );
    }
}
