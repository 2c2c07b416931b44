//! Validation of object metadata the way the API server does it for every kind: names,
//! namespaces, labels, annotations, finalizers. Errors are field errors that become one
//! `422 Invalid` Status with causes.

use serde_json::Value;

use crate::selector::{validate_label_key, validate_label_value};

/// Which rule a kind's `metadata.name` must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain: most kinds, and custom resources.
    Dns1123Subdomain,
    /// RFC 1123 label: namespaces, and a few others.
    Dns1123Label,
    /// RFC 1035 label: services.
    Dns1035Label,
    /// Only path-segment safety (no `/`, `%`, not `.` or `..`): RBAC objects and a few others.
    PathSegment,
}

/// One field error, as `k8s.io/apimachinery/pkg/util/validation/field.Error`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// The StatusCause reason, e.g. `FieldValueInvalid`.
    pub reason: &'static str,
    /// The field path, e.g. `metadata.name`.
    pub field: String,
    /// The full message, e.g. `metadata.name: Invalid value: "X": ...`.
    pub message: String,
}

impl FieldError {
    /// An `Invalid value` error.
    pub fn invalid(field: &str, value: &Value, detail: &str) -> Self {
        FieldError {
            reason: "FieldValueInvalid",
            field: field.to_owned(),
            message: format!("{field}: Invalid value: {value}: {detail}"),
        }
    }

    /// A `Required value` error.
    pub fn required(field: &str, detail: &str) -> Self {
        let message = if detail.is_empty() {
            format!("{field}: Required value")
        } else {
            format!("{field}: Required value: {detail}")
        };
        FieldError {
            reason: "FieldValueRequired",
            field: field.to_owned(),
            message,
        }
    }

    /// A `Forbidden` error.
    pub fn forbidden(field: &str, detail: &str) -> Self {
        FieldError {
            reason: "FieldValueForbidden",
            field: field.to_owned(),
            message: format!("{field}: Forbidden: {detail}"),
        }
    }
}

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// Whether `s` is an RFC 1123 label (at most 63 characters).
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

/// Whether `s` is an RFC 1123 subdomain (at most 253 characters).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// Whether `s` is an RFC 1035 label (starts with a letter).
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Checks a name against a rule; returns the detail messages of every violation.
pub fn name_problems(name: &str, rule: NameRule) -> Vec<String> {
    let mut problems = Vec::new();
    match rule {
        NameRule::Dns1123Subdomain => {
            if name.len() > 253 {
                problems.push("must be no more than 253 characters".to_owned());
            }
            if !name.split('.').all(is_dns1123_label_chars) {
                problems.push(DNS1123_SUBDOMAIN_MSG.to_owned());
            }
        }
        NameRule::Dns1123Label => {
            if name.len() > 63 {
                problems.push("must be no more than 63 characters".to_owned());
            }
            if !is_dns1123_label_chars(name) {
                problems.push(DNS1123_LABEL_MSG.to_owned());
            }
        }
        NameRule::Dns1035Label => {
            if name.len() > 63 {
                problems.push("must be no more than 63 characters".to_owned());
            }
            if !is_dns1123_label_chars(name) || !name.as_bytes()[0].is_ascii_lowercase() {
                problems.push(DNS1035_LABEL_MSG.to_owned());
            }
        }
        NameRule::PathSegment => {}
    }
    problems.extend(path_segment_problems(name));
    problems
}

/// The checks every name gets because it appears in a URL path.
pub fn path_segment_problems(name: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if name == "." || name == ".." {
        problems.push(format!("may not be '{name}'"));
    }
    for bad in ["/", "%"] {
        if name.contains(bad) {
            problems.push(format!("may not contain '{bad}'"));
        }
    }
    problems
}

/// Label characters without the length rule (reported separately, as upstream does).
fn is_dns1123_label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

/// Validates `metadata` of an object being created or updated: name (per the kind's rule),
/// labels, annotations (total size), finalizers (qualified names), ownerReferences.
pub fn validate_object_meta(meta: &Value, rule: NameRule, namespaced: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
    let generate_name = meta.get("generateName").and_then(Value::as_str);
    if name.is_empty() {
        if generate_name.is_none_or(str::is_empty) {
            errors.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        for problem in name_problems(name, rule) {
            errors.push(FieldError::invalid(
                "metadata.name",
                &Value::String(name.to_owned()),
                &problem,
            ));
        }
    }
    if namespaced {
        let ns = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
        if ns.is_empty() {
            errors.push(FieldError::required("metadata.namespace", ""));
        }
    } else if meta
        .get("namespace")
        .and_then(Value::as_str)
        .is_some_and(|ns| !ns.is_empty())
    {
        errors.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Err(e) = validate_label_key(k) {
                errors.push(FieldError::invalid(
                    "metadata.labels",
                    &Value::String(k.clone()),
                    &e.0,
                ));
            }
            match v.as_str() {
                Some(v) => {
                    if let Err(e) = validate_label_value(v) {
                        errors.push(FieldError::invalid(
                            "metadata.labels",
                            &Value::String(v.to_owned()),
                            &e.0,
                        ));
                    }
                }
                None => errors.push(FieldError::invalid(
                    "metadata.labels",
                    v,
                    "label values must be strings",
                )),
            }
        }
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        let mut total = 0usize;
        for (k, v) in annotations {
            if let Err(e) = validate_label_key(k) {
                errors.push(FieldError::invalid(
                    "metadata.annotations",
                    &Value::String(k.clone()),
                    &e.0,
                ));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > 256 * 1024 {
            errors.push(FieldError {
                reason: "FieldValueTooLong",
                field: "metadata.annotations".to_owned(),
                message: "metadata.annotations: Too long: must have at most 262144 bytes"
                    .to_owned(),
            });
        }
    }
    if let Some(finalizers) = meta.get("finalizers").and_then(Value::as_array) {
        for (i, f) in finalizers.iter().enumerate() {
            let ok = f.as_str().is_some_and(|s| validate_label_key(s).is_ok());
            if !ok {
                errors.push(FieldError::invalid(
                    &format!("metadata.finalizers[{i}]"),
                    f,
                    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                ));
            }
        }
    }
    if let Some(owners) = meta.get("ownerReferences").and_then(Value::as_array) {
        let mut controllers = 0;
        for (i, o) in owners.iter().enumerate() {
            for key in ["apiVersion", "kind", "name", "uid"] {
                if o.get(key).and_then(Value::as_str).is_none_or(str::is_empty) {
                    errors.push(FieldError::invalid(
                        &format!("metadata.ownerReferences[{i}].{key}"),
                        o.get(key).unwrap_or(&Value::Null),
                        &format!("{key} must not be empty"),
                    ));
                }
            }
            if o.get("controller").and_then(Value::as_bool) == Some(true) {
                controllers += 1;
            }
        }
        if controllers > 1 {
            errors.push(FieldError::invalid(
                "metadata.ownerReferences",
                &Value::Array(owners.clone()),
                "Only one reference can have Controller set to true",
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("A"));
        assert!(!is_dns1123_subdomain("a_b"));
        assert!(is_dns1123_label("abc-1"));
        assert!(!is_dns1123_label("a.b"));
        assert!(is_dns1035_label("abc"));
        assert!(!is_dns1035_label("1abc"));
        assert!(name_problems("Bad_Name", NameRule::Dns1123Subdomain).len() == 1);
        assert!(name_problems(&"a".repeat(64), NameRule::Dns1123Label).len() == 1);
        assert!(!name_problems("a/b", NameRule::PathSegment).is_empty());
        assert!(name_problems("Any_Thing:ok", NameRule::PathSegment).is_empty());
    }

    #[test]
    fn object_meta() {
        let ok = json!({"name": "a", "namespace": "default", "labels": {"app": "x"},
                        "finalizers": ["example.com/f"]});
        assert!(validate_object_meta(&ok, NameRule::Dns1123Subdomain, true).is_empty());
        let bad = json!({"name": "Bad_Name", "labels": {"a b": "c"}, "finalizers": ["a b"]});
        let errs = validate_object_meta(&bad, NameRule::Dns1123Subdomain, true);
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "metadata.name",
                "metadata.namespace",
                "metadata.labels",
                "metadata.finalizers[0]"
            ]
        );
        assert!(errs[0].message.starts_with(
            "metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"
        ));
        let gen_only = json!({"generateName": "x-"});
        assert!(validate_object_meta(&gen_only, NameRule::Dns1123Subdomain, false).is_empty());
    }
}
