//! JSON values with the semantics structured-merge-diff gives them: a total order (so values can
//! key set-list elements), numeric equality across integers and floats, and Go's text forms
//! (`encoding/json` output and `fmt` quoting), which leak into field-path keys, conflict messages
//! and the last-applied annotation.

use crate::gofmt;
use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

/// Orders values as SMD's `value.Compare`: numbers (integers and floats compared numerically)
/// before strings, booleans, lists, maps and null; lists and maps compare element-wise.
pub(crate) fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => compare_lists(x, y),
        (Value::Object(x), Value::Object(y)) => compare_maps(x, y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Equality as SMD's `value.Equals` (so `1` equals `1.0`).
pub(crate) fn equal(a: &Value, b: &Value) -> bool {
    compare(a, b) == Ordering::Equal
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Number(_) => 0,
        Value::String(_) => 1,
        Value::Bool(_) => 2,
        Value::Array(_) => 3,
        Value::Object(_) => 4,
        Value::Null => 5,
    }
}

fn compare_numbers(x: &Number, y: &Number) -> Ordering {
    match (integer(x), integer(y)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => {
            let (a, b) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            a.partial_cmp(&b).unwrap_or(Ordering::Equal)
        }
    }
}

fn integer(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

fn compare_lists(x: &[Value], y: &[Value]) -> Ordering {
    for (a, b) in x.iter().zip(y) {
        let c = compare(a, b);
        if c != Ordering::Equal {
            return c;
        }
    }
    x.len().cmp(&y.len())
}

fn compare_maps(x: &Map<String, Value>, y: &Map<String, Value>) -> Ordering {
    let mut xs: Vec<_> = x.iter().collect();
    let mut ys: Vec<_> = y.iter().collect();
    xs.sort_by(|a, b| a.0.cmp(b.0));
    ys.sort_by(|a, b| a.0.cmp(b.0));
    for ((ka, va), (kb, vb)) in xs.iter().zip(&ys) {
        let c = ka.cmp(kb).then_with(|| compare(va, vb));
        if c != Ordering::Equal {
            return c;
        }
    }
    xs.len().cmp(&ys.len())
}

/// Renders a value as SMD's `value.ToString` does inside printed field paths.
pub(crate) fn display(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::String(s) => gofmt::quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match integer(n) {
            Some(i) => i.to_string(),
            None => gofmt::float(n.as_f64().unwrap_or(0.0)),
        },
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(display).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(_) => gofmt::json(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn orders_like_smd() {
        assert_eq!(compare(&json!(1), &json!(1.0)), Ordering::Equal);
        assert_eq!(compare(&json!(2), &json!(1.5)), Ordering::Greater);
        assert_eq!(compare(&json!(10), &json!("a")), Ordering::Less);
        assert_eq!(compare(&json!("b"), &json!(true)), Ordering::Less);
        assert_eq!(compare(&json!(null), &json!({})), Ordering::Greater);
        assert_eq!(compare(&json!([1, 2]), &json!([1])), Ordering::Greater);
        assert_eq!(compare(&json!({"a": 1}), &json!({"b": 0})), Ordering::Less);
        assert!(equal(&json!({"a": [1, "x"]}), &json!({"a": [1.0, "x"]})));
        assert!(!equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
    }

    #[test]
    fn writes_go_json() {
        let v = json!({"b": "<&>", "a": [1, 2.5, null, true], "c": 1e21});
        assert_eq!(
            gofmt::json(&v),
            r#"{"a":[1,2.5,null,true],"b":"\u003c\u0026\u003e","c":1e+21}"#
        );
        assert_eq!(gofmt::json(&json!(0.0000001)), "1e-7");
        assert_eq!(gofmt::json(&json!("tab\tq\"\u{1}")), r#""tab\tq\"\u0001""#);
    }

    #[test]
    fn quotes_and_displays_like_go() {
        assert_eq!(gofmt::quote("app"), "\"app\"");
        assert_eq!(gofmt::quote("a\"b\\\u{7}"), "\"a\\\"b\\\\\\a\"");
        assert_eq!(display(&json!("x")), "\"x\"");
        assert_eq!(display(&json!(80)), "80");
        assert_eq!(display(&json!(1.5)), "1.5");
        assert_eq!(display(&json!(1000000.0)), "1e+06");
        assert_eq!(display(&json!(999999.5)), "999999.5");
        assert_eq!(display(&json!(0.0)), "0");
        assert_eq!(display(&json!(0.00001)), "1e-05");
        assert_eq!(display(&json!(null)), "null");
    }
}
