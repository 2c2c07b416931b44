//! JSON values with the semantics structured-merge-diff gives them: a total order (so values can
//! key set-list elements), numeric equality across integers and floats, and Go's text forms
//! (`encoding/json` output and `fmt` quoting), which leak into field-path keys, conflict messages
//! and the last-applied annotation.

use std::cmp::Ordering;
use std::fmt::Write as _;

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

/// Serializes like Go's `encoding/json`: compact, object keys sorted, `<`, `>`, `&`, U+2028 and
/// U+2029 escaped, floats in Go's shortest form.
pub(crate) fn go_json(v: &Value) -> String {
    let mut out = String::new();
    write_go_json(&mut out, v);
    out
}

fn write_go_json(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&go_json_number(n)),
        Value::String(s) => write_go_json_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json_string(out, k);
                out.push(':');
                write_go_json(out, item);
            }
            out.push('}');
        }
    }
}

/// Writes a JSON string literal the way Go's `encoding/json` does (HTML-safe).
pub(crate) fn write_go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn go_json_number(n: &Number) -> String {
    if integer(n).is_some() {
        return n.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    let abs = f.abs();
    // encoding/json switches to exponent form outside [1e-6, 1e21).
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        go_exponent(f, false)
    } else {
        format!("{f}")
    }
}

/// Formats a float as Go's `%v` (strconv 'g', shortest): exponent form when the decimal exponent
/// is below -4 or at least 6.
pub(crate) fn go_float_v(f: f64) -> String {
    let scientific = format!("{f:e}");
    let exponent: i32 = scientific
        .split_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    if f != 0.0 && !(-4..6).contains(&exponent) {
        go_exponent(f, true)
    } else {
        format!("{f}")
    }
}

/// Rust's shortest `{:e}` rewritten to Go's exponent spelling: a signed exponent of at least two
/// digits (`1e+21`, `1.5e-07`), except that `encoding/json` trims negative ones (`1.5e-7`).
fn go_exponent(f: f64, pad_negative: bool) -> String {
    let formatted = format!("{f:e}");
    let (mantissa, exponent) = formatted.split_once('e').unwrap_or((&formatted, "0"));
    let (sign, digits) = match exponent.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("+", exponent),
    };
    let digits = if sign == "+" || pad_negative {
        format!("{digits:0>2}")
    } else {
        digits.to_owned()
    };
    format!("{mantissa}e{sign}{digits}")
}

/// Quotes a string as Go's `%q` does for the printable text managers and keys consist of.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let code = u32::from(c);
                if code < 0x80 {
                    let _ = write!(out, "\\x{code:02x}");
                } else {
                    let _ = write!(out, "\\u{code:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Renders a value as SMD's `value.ToString` does inside printed field paths.
pub(crate) fn display(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::String(s) => go_quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match integer(n) {
            Some(i) => i.to_string(),
            None => go_float_v(n.as_f64().unwrap_or(0.0)),
        },
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(display).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(_) => go_json(v),
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
            go_json(&v),
            r#"{"a":[1,2.5,null,true],"b":"\u003c\u0026\u003e","c":1e+21}"#
        );
        assert_eq!(go_json(&json!(0.0000001)), "1e-7");
        assert_eq!(go_json(&json!("tab\tq\"\u{1}")), r#""tab\tq\"\u0001""#);
    }

    #[test]
    fn quotes_and_displays_like_go() {
        assert_eq!(go_quote("app"), "\"app\"");
        assert_eq!(go_quote("a\"b\\\u{7}"), "\"a\\\"b\\\\\\x07\"");
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
