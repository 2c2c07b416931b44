//! Label and field selectors: the query-string syntax of `labelSelector` / `fieldSelector`, and the
//! structured `metav1.LabelSelector` used by webhooks, workloads and services.
//!
//! The grammar follows k8s.io/apimachinery/pkg/labels and pkg/fields: comma-separated requirements,
//! `key`, `!key`, `key=value`, `key==value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`,
//! `key>N`, `key<N` for labels; `path=value`, `path==value`, `path!=value` for fields.

use std::collections::BTreeMap;

use serde_json::Value;

/// A selector string or object that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

/// One requirement on a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// The key is present (with any value).
    Exists(String),
    /// The key is absent.
    DoesNotExist(String),
    /// The key is present and its value is one of these.
    In(String, Vec<String>),
    /// The key is absent, or present with a value not among these.
    NotIn(String, Vec<String>),
    /// The key is present and its value is an integer greater than this.
    GreaterThan(String, i64),
    /// The key is present and its value is an integer less than this.
    LessThan(String, i64),
}

impl Requirement {
    fn matches(&self, labels: &dyn Fn(&str) -> Option<String>) -> bool {
        match self {
            Requirement::Exists(k) => labels(k).is_some(),
            Requirement::DoesNotExist(k) => labels(k).is_none(),
            Requirement::In(k, vs) => labels(k).is_some_and(|v| vs.contains(&v)),
            Requirement::NotIn(k, vs) => labels(k).is_none_or(|v| !vs.contains(&v)),
            Requirement::GreaterThan(k, n) => labels(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            Requirement::LessThan(k, n) => labels(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        }
    }
}

/// A label selector: all requirements must hold. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    /// A `metav1.LabelSelector` that is null selects nothing; an empty one selects everything.
    matches_nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector that matches no object (a null `metav1.LabelSelector`).
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            matches_nothing: true,
        }
    }

    /// Whether this selector matches every object.
    pub fn is_everything(&self) -> bool {
        !self.matches_nothing && self.requirements.is_empty()
    }

    /// Parses the `labelSelector` query syntax.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for part in split_top_level(input)? {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_label_requirement(part)?);
        }
        Ok(LabelSelector {
            requirements,
            matches_nothing: false,
        })
    }

    /// Converts a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`). `None` or JSON
    /// null selects nothing, as the API conventions require; `{}` selects everything.
    pub fn from_object(selector: Option<&Value>) -> Result<Self, SelectorError> {
        let Some(selector) = selector.filter(|s| !s.is_null()) else {
            return Ok(Self::nothing());
        };
        let mut requirements = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                let v = v.as_str().ok_or_else(|| {
                    SelectorError(format!("matchLabels[{k}]: value must be a string"))
                })?;
                validate_label_key(k)?;
                validate_label_value(v)?;
                requirements.push(Requirement::In(k.clone(), vec![v.to_owned()]));
            }
        }
        if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
            for expr in exprs {
                let key = expr
                    .get("key")
                    .and_then(Value::as_str)
                    .ok_or_else(|| SelectorError("matchExpressions: key is required".into()))?;
                validate_label_key(key)?;
                let values: Vec<String> = expr
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|vs| {
                        vs.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let op = expr.get("operator").and_then(Value::as_str).unwrap_or("");
                let requirement = match op {
                    "In" | "NotIn" if values.is_empty() => {
                        return Err(SelectorError(format!(
                            "{op}: values set must be non-empty for key {key:?}"
                        )));
                    }
                    "In" => Requirement::In(key.to_owned(), values),
                    "NotIn" => Requirement::NotIn(key.to_owned(), values),
                    "Exists" | "DoesNotExist" if !values.is_empty() => {
                        return Err(SelectorError(format!(
                            "{op}: values set must be empty for key {key:?}"
                        )));
                    }
                    "Exists" => Requirement::Exists(key.to_owned()),
                    "DoesNotExist" => Requirement::DoesNotExist(key.to_owned()),
                    other => {
                        return Err(SelectorError(format!(
                            "{other:?} is not a valid label selector operator"
                        )));
                    }
                };
                requirements.push(requirement);
            }
        }
        Ok(LabelSelector {
            requirements,
            matches_nothing: false,
        })
    }

    /// Whether an object's `metadata.labels` (a JSON object or absent) satisfies the selector.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        if self.matches_nothing {
            return false;
        }
        let lookup = |k: &str| -> Option<String> {
            labels
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        self.requirements.iter().all(|r| r.matches(&lookup))
    }

    /// Whether a plain label map satisfies the selector.
    pub fn matches_map(&self, labels: &BTreeMap<String, String>) -> bool {
        if self.matches_nothing {
            return false;
        }
        let lookup = |k: &str| labels.get(k).cloned();
        self.requirements.iter().all(|r| r.matches(&lookup))
    }
}

/// Splits on commas that are not inside `( )`.
fn split_top_level(input: &str) -> Result<Vec<&str>, SelectorError> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(SelectorError(format!(
                        "unexpected ')' in selector {input:?}"
                    )));
                }
            }
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(SelectorError(format!(
            "unbalanced '(' in selector {input:?}"
        )));
    }
    parts.push(&input[start..]);
    Ok(parts)
}

fn parse_label_requirement(part: &str) -> Result<Requirement, SelectorError> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        validate_label_key(key)?;
        return Ok(Requirement::DoesNotExist(key.to_owned()));
    }
    for (op, is_not) in [(" notin ", true), (" in ", false)] {
        if let Some(pos) = part.find(op) {
            let key = part[..pos].trim();
            validate_label_key(key)?;
            let rest = part[pos + op.len()..].trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| {
                    SelectorError(format!(
                        "found '{rest}', expected: '(' and ')' around values"
                    ))
                })?;
            let values: Vec<String> = inner
                .split(',')
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect();
            for v in &values {
                validate_label_value(v)?;
            }
            if values.is_empty() {
                return Err(SelectorError(format!(
                    "for 'in', 'notin' operators, values set can't be empty (key {key:?})"
                )));
            }
            return Ok(if is_not {
                Requirement::NotIn(key.to_owned(), values)
            } else {
                Requirement::In(key.to_owned(), values)
            });
        }
    }
    for op in ["!=", "==", "=", ">", "<"] {
        if let Some(pos) = part.find(op) {
            let key = part[..pos].trim();
            let value = part[pos + op.len()..].trim();
            validate_label_key(key)?;
            return match op {
                "!=" => {
                    validate_label_value(value)?;
                    Ok(Requirement::NotIn(key.to_owned(), vec![value.to_owned()]))
                }
                ">" | "<" => {
                    let n: i64 = value.parse().map_err(|_| {
                        SelectorError(format!(
                            "for 'Gt', 'Lt' operators, the value must be an integer: {value:?}"
                        ))
                    })?;
                    Ok(if op == ">" {
                        Requirement::GreaterThan(key.to_owned(), n)
                    } else {
                        Requirement::LessThan(key.to_owned(), n)
                    })
                }
                _ => {
                    validate_label_value(value)?;
                    Ok(Requirement::In(key.to_owned(), vec![value.to_owned()]))
                }
            };
        }
    }
    validate_label_key(part)?;
    Ok(Requirement::Exists(part.to_owned()))
}

/// Validates a label key: an optional DNS subdomain prefix and `/`, then a name of at most 63
/// characters of alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
pub fn validate_label_key(key: &str) -> Result<(), SelectorError> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty()
            || prefix.len() > 253
            || !crate::validation::is_dns1123_subdomain(prefix))
    {
        return Err(SelectorError(format!(
            "invalid label key {key:?}: prefix part must be a DNS-1123 subdomain"
        )));
    }
    if !is_qualified_name_part(name) {
        return Err(SelectorError(format!(
            "invalid label key {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        )));
    }
    Ok(())
}

/// Validates a label value: empty, or at most 63 characters like a qualified name part.
pub fn validate_label_value(value: &str) -> Result<(), SelectorError> {
    if value.is_empty() || is_qualified_name_part(value) {
        Ok(())
    } else {
        Err(SelectorError(format!(
            "invalid label value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        )))
    }
}

fn is_qualified_name_part(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// One requirement of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field path, e.g. `metadata.name` or `spec.nodeName`.
    pub field: String,
    /// The value compared against.
    pub value: String,
    /// `!=` rather than `=`.
    pub negated: bool,
}

/// A field selector: all requirements must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// The requirements, in the order given.
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses the `fieldSelector` query syntax (`\` escapes `,`, `=`, `!` and `\` in values).
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for part in split_unescaped(input, ',') {
            if part.trim().is_empty() {
                continue;
            }
            let (field, value, negated) = if let Some((f, v)) = split_op(&part, "!=") {
                (f, v, true)
            } else if let Some((f, v)) = split_op(&part, "==") {
                (f, v, false)
            } else if let Some((f, v)) = split_op(&part, "=") {
                (f, v, false)
            } else {
                return Err(SelectorError(format!(
                    "invalid selector: '{input}'; can't understand '{part}'"
                )));
            };
            requirements.push(FieldRequirement {
                field: field.trim().to_owned(),
                value: unescape(&value),
                negated,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether the selector matches, given a function returning an object's value for a field
    /// (`None` when the field is absent, which compares as the empty string, as upstream).
    pub fn matches(&self, field_value: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let actual = field_value(&r.field).unwrap_or_default();
            (actual == r.value) != r.negated
        })
    }
}

fn split_unescaped(input: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in input.chars() {
        if escaped {
            current.push('\\');
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

/// Splits at the first unescaped occurrence of `op`.
fn split_op(part: &str, op: &str) -> Option<(String, String)> {
    let bytes = part.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if part[i..].starts_with(op) {
            // `=` must not be the tail of `!=` or the head of `==`.
            if op == "=" && (part[i..].starts_with("==") || (i > 0 && bytes[i - 1] == b'!')) {
                i += 1;
                continue;
            }
            return Some((part[..i].to_owned(), part[i + op.len()..].to_owned()));
        }
        i += 1;
    }
    None
}

fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut escaped = false;
    for c in value.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels() -> Value {
        json!({"app": "web", "tier": "front", "n": "5"})
    }

    #[test]
    fn parses_and_matches_label_selectors() {
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app in (web, db)", true),
            ("app notin (web)", false),
            ("missing notin (web)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,tier=back", false),
            ("app in (web,db),tier", true),
            ("n>4", true),
            ("n<4", false),
        ];
        for (input, want) in cases {
            let sel = LabelSelector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(sel.matches(Some(&labels())), want, "{input}");
        }
        assert!(!LabelSelector::parse("app=web").unwrap().matches(None));
    }

    #[test]
    fn rejects_bad_label_selectors() {
        for bad in [
            "app in web",
            "app in ()",
            "a b=c",
            "app=we b",
            "-x=y",
            "n>x",
            "app in (a",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn structured_selectors() {
        let sel = LabelSelector::from_object(Some(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]},
                                 {"key": "gone", "operator": "DoesNotExist"}]
        })))
        .unwrap();
        assert!(sel.matches(Some(&labels())));
        assert!(
            LabelSelector::from_object(Some(&json!({})))
                .unwrap()
                .matches(None)
        );
        assert!(
            !LabelSelector::from_object(None)
                .unwrap()
                .matches(Some(&labels()))
        );
        assert!(
            LabelSelector::from_object(Some(
                &json!({"matchExpressions":[{"key":"a","operator":"Bogus"}]})
            ))
            .is_err()
        );
    }

    #[test]
    fn field_selectors() {
        let sel = FieldSelector::parse("metadata.name=a\\,b,spec.nodeName!=n1").unwrap();
        assert_eq!(sel.requirements[0].value, "a,b");
        assert!(sel.requirements[1].negated);
        let get = |f: &str| match f {
            "metadata.name" => Some("a,b".to_owned()),
            "spec.nodeName" => Some("n2".to_owned()),
            _ => None,
        };
        assert!(sel.matches(get));
        assert!(
            FieldSelector::parse("metadata.name==x")
                .unwrap()
                .requirements[0]
                .value
                == "x"
        );
        assert!(FieldSelector::parse("nonsense").is_err());
        assert!(FieldSelector::parse("spec.x=").unwrap().matches(|_| None));
    }
}
