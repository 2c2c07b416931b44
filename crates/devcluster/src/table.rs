//! `meta.k8s.io/v1` Table responses (what `kubectl get` asks for) and the JSONPath subset
//! printer columns use: `.a.b`, `.a[0]`, `.a[*].b`, `.a[?(@.k=="v")].b`, `\.` inside keys.

use serde_json::{Value, json};

use crate::resources::{PrinterColumn, ResourceInfo};

/// A JSONPath that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSONPath {path:?}: {why}")]
pub struct JsonPathError {
    path: String,
    why: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    All,
    Filter { key: Vec<String>, value: String },
}

fn parse_path(path: &str) -> Result<Vec<Step>, JsonPathError> {
    let err = |why: &str| JsonPathError {
        path: path.to_owned(),
        why: why.to_owned(),
    };
    let p = path.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(p);
    let p = p.strip_prefix('$').unwrap_or(p);
    let chars: Vec<char> = p.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let mut key = String::new();
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    key.push(chars[i]);
                    i += 1;
                }
                if !key.is_empty() {
                    steps.push(Step::Key(key));
                }
            }
            '[' => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == ']')
                    .ok_or_else(|| err("unclosed '['"))?
                    + i;
                let inner: String = chars[i + 1..end].iter().collect();
                let inner = inner.trim();
                if inner == "*" {
                    steps.push(Step::All);
                } else if let Some(filter) =
                    inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')'))
                {
                    let (lhs, rhs) = filter
                        .split_once("==")
                        .ok_or_else(|| err("only == filters are supported"))?;
                    let key = lhs
                        .trim()
                        .strip_prefix("@.")
                        .ok_or_else(|| err("filter must start with @."))?
                        .split('.')
                        .map(str::to_owned)
                        .collect();
                    let value = rhs
                        .trim()
                        .trim_matches(|c| c == '"' || c == '\'')
                        .to_owned();
                    steps.push(Step::Filter { key, value });
                } else if let Ok(n) = inner.parse::<usize>() {
                    steps.push(Step::Index(n));
                } else {
                    let key = inner.trim_matches(|c| c == '\'' || c == '"').to_owned();
                    steps.push(Step::Key(key));
                }
                i = end + 1;
            }
            c if c.is_whitespace() => i += 1,
            _ => return Err(err("expected '.' or '['")),
        }
    }
    Ok(steps)
}

/// Evaluates a JSONPath against a value; returns every match (empty when nothing matches).
pub fn eval(path: &str, root: &Value) -> Result<Vec<Value>, JsonPathError> {
    let steps = parse_path(path)?;
    let mut current = vec![root];
    for step in &steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Key(k) => next.extend(v.get(k.as_str())),
                Step::Index(n) => next.extend(v.get(*n)),
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(o) => next.extend(o.values()),
                    _ => {}
                },
                Step::Filter { key, value } => {
                    if let Value::Array(a) = v {
                        next.extend(a.iter().filter(|item| {
                            let mut cur = Some(*item);
                            for k in key {
                                cur = cur.and_then(|c| c.get(k.as_str()));
                            }
                            cur.is_some_and(|c| match c {
                                Value::String(s) => s == value,
                                other => value.parse::<Value>().is_ok_and(|v| v == *other),
                            })
                        }));
                    }
                }
            }
        }
        current = next;
    }
    Ok(current.into_iter().cloned().collect())
}

/// How long ago an RFC 3339 timestamp was, the way kubectl prints ages ("45s", "3m", "2d4h").
pub fn age(timestamp: &str) -> String {
    let Ok(then) = timestamp.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now().as_second() - then.as_second()).max(0);
    human_duration(secs)
}

fn human_duration(secs: i64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        let s = secs % 60;
        if s == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{s}s")
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        let mm = m % 60;
        if mm == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{mm}m")
        }
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        let hh = h % 24;
        if hh == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{hh}h")
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

fn cell(column: &PrinterColumn, obj: &Value) -> Value {
    let values = eval(&column.json_path, obj).unwrap_or_default();
    let Some(first) = values.first() else {
        return Value::Null;
    };
    match column.type_.as_str() {
        "date" => first.as_str().map_or(Value::Null, |t| json!(age(t))),
        "integer" | "number" | "boolean" => first.clone(),
        _ => {
            if values.len() > 1 {
                let parts: Vec<String> = values.iter().map(display).collect();
                json!(parts.join(","))
            } else {
                json!(display(first))
            }
        }
    }
}

fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The column definitions of a resource's table.
pub fn columns(info: &ResourceInfo) -> Vec<PrinterColumn> {
    let name = PrinterColumn {
        name: "Name".into(),
        type_: "string".into(),
        format: "name".into(),
        description: "Name must be unique within a namespace.".into(),
        priority: 0,
        json_path: ".metadata.name".into(),
    };
    let age = PrinterColumn {
        name: "Age".into(),
        type_: "date".into(),
        format: String::new(),
        description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
        priority: 0,
        json_path: ".metadata.creationTimestamp".into(),
    };
    let mut cols = vec![name];
    // A CRD that declares columns replaces the default Age column, as upstream does.
    let custom_columns = info.is_custom() && !info.printer_columns.is_empty();
    cols.extend(info.printer_columns.iter().cloned());
    if !custom_columns {
        cols.push(age);
    }
    cols
}

/// Partial object metadata of an object, for `includeObject=Metadata`.
fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A Table of objects. `include_object` is `None`, `Metadata` (default) or `Object`.
pub fn table(
    info: &ResourceInfo,
    objects: &[&Value],
    include_object: Option<&str>,
    list_meta: Value,
) -> Value {
    let cols = columns(info);
    let definitions: Vec<Value> = cols
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.type_, "format": c.format,
                   "description": c.description, "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let cells: Vec<Value> = cols.iter().map(|c| cell(c, obj)).collect();
            let object = match include_object.unwrap_or("Metadata") {
                "None" => Value::Null,
                "Object" => (*obj).clone(),
                _ => partial_metadata(obj),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

/// Whether an `Accept` header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table") && first.contains("g=meta.k8s.io"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_subset() {
        let obj = json!({
            "metadata": {"name": "a", "labels": {"app.kubernetes.io/name": "x"}},
            "spec": {"ports": [{"port": 80}, {"port": 443}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"},
                                      {"type": "Degraded", "status": "False"}]}
        });
        assert_eq!(eval(".metadata.name", &obj).unwrap(), vec![json!("a")]);
        assert_eq!(
            eval("{.spec.ports[1].port}", &obj).unwrap(),
            vec![json!(443)]
        );
        assert_eq!(
            eval(".spec.ports[*].port", &obj).unwrap(),
            vec![json!(80), json!(443)]
        );
        assert_eq!(
            eval(r#".status.conditions[?(@.type=="Ready")].status"#, &obj).unwrap(),
            vec![json!("True")]
        );
        assert_eq!(
            eval(r".metadata.labels.app\.kubernetes\.io/name", &obj).unwrap(),
            vec![json!("x")]
        );
        assert!(eval(".missing.x", &obj).unwrap().is_empty());
        assert!(eval("[unclosed", &obj).is_err());
    }

    #[test]
    fn ages() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(3600 * 5 + 60), "5h1m");
        assert_eq!(human_duration(86400 * 3), "3d");
    }

    #[test]
    fn accept_negotiation() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
    }
}
