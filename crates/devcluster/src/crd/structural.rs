//! CRD structural schemas: what kube-apiextensions-apiserver does with a version's
//! `schema.openAPIV3Schema`.
//!
//! - [`check_structural`]: the schema checks behind a 422 on CRD create/update (structural-schema
//!   invariants, unsupported keywords, list/map extensions, defaults that violate their schema).
//! - [`prune`]: drops unknown fields (`pruning.PruneWithOptions` plus the `ObjectMeta` coercion).
//! - [`apply_defaults`]: `PruneNonNullableNullsWithoutDefaults` followed by `Default`.
//! - [`validate`]: kube-openapi schema validation, embedded `apiVersion`/`kind` checks and
//!   `x-kubernetes-list-type` uniqueness.
//!
//! Error texts follow Kubernetes 1.34: kube-openapi's `validate` messages ("spec.x in body must be
//! of type integer: \"string\"") wrapped into k8s.io/apimachinery `field.Error`s the way
//! `kubeOpenAPIResultToFieldErrors` does. `x-kubernetes-validations` (CEL) rules are only checked
//! for shape at CRD creation and are never evaluated: custom resources violating them are accepted.
//! Schemas are read as raw JSON; CRD schemas cannot contain `$ref`, so nested references are not
//! followed.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use regex::Regex;

use crate::gofmt;
use serde_json::{Map, Value};

use crate::schema::Node;

// ---------------------------------------------------------------------------------------------
// Field errors
// ---------------------------------------------------------------------------------------------

/// The kind of a [`FieldError`]; mirrors `field.ErrorType` of k8s.io/apimachinery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// `FieldValueInvalid`: "Invalid value".
    Invalid,
    /// `FieldValueRequired`: "Required value".
    Required,
    /// `FieldValueNotSupported`: "Unsupported value" (an enum miss).
    NotSupported,
    /// `FieldValueTooLong`: "Too long" (the value is never shown).
    TooLong,
    /// `FieldValueTooMany`: "Too many" (items or properties).
    TooMany,
    /// `FieldValueDuplicate`: "Duplicate value".
    Duplicate,
    /// `FieldValueForbidden`: "Forbidden".
    Forbidden,
    /// `FieldValueTypeInvalid`: "Invalid value" for a wrong JSON type or string format.
    TypeInvalid,
}

impl FieldErrorKind {
    /// The `StatusCause` reason, e.g. `FieldValueInvalid`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Invalid => "FieldValueInvalid",
            Self::Required => "FieldValueRequired",
            Self::NotSupported => "FieldValueNotSupported",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::Duplicate => "FieldValueDuplicate",
            Self::Forbidden => "FieldValueForbidden",
            Self::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Invalid | Self::TypeInvalid => "Invalid value",
            Self::Required => "Required value",
            Self::NotSupported => "Unsupported value",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Duplicate => "Duplicate value",
            Self::Forbidden => "Forbidden",
        }
    }
}

/// One validation problem, rendered exactly as the API server renders a `field.Error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.message())]
pub struct FieldError {
    /// What went wrong.
    pub kind: FieldErrorKind,
    /// The field path, e.g. `spec.endpoint.port`. Errors kube-openapi reports without a path
    /// (`anyOf`/`oneOf`/`allOf`/`not` failures of a custom resource) carry `<nil>`, as upstream.
    pub field: String,
    /// The offending value as shown in the message; `None` leaves it out.
    pub value: Option<Value>,
    /// The explanation after the value, e.g. `must be object at the root`.
    pub detail: String,
}

impl FieldError {
    fn new(
        kind: FieldErrorKind,
        field: impl Into<String>,
        value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            kind,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }

    fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Invalid, field, Some(value), detail)
    }

    fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Required, field, None, detail)
    }

    fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Forbidden, field, None, detail)
    }

    fn duplicate(field: impl Into<String>, value: Value) -> Self {
        Self::new(FieldErrorKind::Duplicate, field, Some(value), "")
    }

    /// `field.NotSupported`: the allowed values are listed quoted.
    fn not_supported(field: impl Into<String>, value: Value, supported: &[String]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| gofmt::quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(FieldErrorKind::NotSupported, field, Some(value), detail)
    }

    /// `field.TooLong`; an unknown maximum gives "value is too long".
    fn too_long(field: impl Into<String>, max: Option<i64>) -> Self {
        let detail = match max {
            Some(1) => "may not be more than 1 byte".to_owned(),
            Some(max) if max >= 0 => format!("may not be more than {max} bytes"),
            _ => "value is too long".to_owned(),
        };
        Self::new(FieldErrorKind::TooLong, field, None, detail)
    }

    /// `field.TooMany`; an unknown count is left out of the message.
    fn too_many(field: impl Into<String>, actual: Option<i64>, max: Option<i64>) -> Self {
        let detail = match max {
            Some(1) => "must have at most 1 item".to_owned(),
            Some(max) if max >= 0 => format!("must have at most {max} items"),
            _ => "has too many items".to_owned(),
        };
        let value = actual.filter(|a| *a >= 0).map(Value::from);
        Self::new(FieldErrorKind::TooMany, field, value, detail)
    }

    /// The message without the field, as in a `StatusCause` (`field.Error.ErrorBody`).
    pub fn body(&self) -> String {
        let label = self.kind.label();
        let shows_value = !matches!(
            self.kind,
            FieldErrorKind::Required | FieldErrorKind::Forbidden | FieldErrorKind::TooLong
        );
        let mut body = match &self.value {
            Some(value) if shows_value => format!("{label}: {}", gofmt::bad_value(value)),
            _ => label.to_owned(),
        };
        if !self.detail.is_empty() {
            body.push_str(": ");
            body.push_str(&self.detail);
        }
        body
    }

    /// The real server's text, e.g. `spec.replicas: Invalid value: "string": spec.replicas in
    /// body must be of type integer: "string"`.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }

    /// The `StatusCause` reason, e.g. `FieldValueInvalid`.
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }
}

// ---------------------------------------------------------------------------------------------
// Schema access
// ---------------------------------------------------------------------------------------------

/// Fields of `TypeMeta`/`ObjectMeta` kept in embedded resources and at the root.
const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// The JSON fields of `metav1.ObjectMeta`; anything else in `metadata` is dropped.
const OBJECT_META_FIELDS: [&str; 15] = [
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// `additionalProperties` of a schema.
#[derive(Clone, Copy)]
enum Additional<'a> {
    Absent,
    Bool(bool),
    Schema(&'a Value),
}

impl<'a> Additional<'a> {
    fn of(s: &'a Value) -> Self {
        match s.get("additionalProperties") {
            Some(Value::Bool(b)) => Additional::Bool(*b),
            Some(v @ Value::Object(_)) => Additional::Schema(v),
            _ => Additional::Absent,
        }
    }

    fn is_present(self) -> bool {
        !matches!(self, Additional::Absent)
    }

    fn schema(self) -> Option<&'a Value> {
        match self {
            Additional::Schema(s) => Some(s),
            _ => None,
        }
    }
}

fn str_kw<'a>(s: &'a Value, key: &str) -> &'a str {
    s.get(key).and_then(Value::as_str).unwrap_or("")
}

fn bool_kw(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn f64_kw(s: &Value, key: &str) -> Option<f64> {
    s.get(key).and_then(Value::as_f64)
}

/// An integer keyword (`maxLength`, `minItems`, ...); fractions are truncated as Go's int64 does.
fn int_kw(s: &Value, key: &str) -> Option<i64> {
    let v = s.get(key)?;
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

fn array_kw<'a>(s: &'a Value, key: &str) -> &'a [Value] {
    s.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn properties(s: &Value) -> Option<&Map<String, Value>> {
    s.get("properties").and_then(Value::as_object)
}

fn property<'a>(s: &'a Value, name: &str) -> Option<&'a Value> {
    properties(s).and_then(|p| p.get(name))
}

fn items(s: &Value) -> Option<&Value> {
    s.get("items").filter(|i| i.is_object())
}

/// The `default`, unless absent or `null` (a null default is no default upstream).
fn default_of(s: &Value) -> Option<&Value> {
    s.get("default").filter(|d| !d.is_null())
}

fn nullable(s: &Value) -> bool {
    bool_kw(s, "nullable")
}

fn is_embedded(s: &Value) -> bool {
    bool_kw(s, "x-kubernetes-embedded-resource")
}

fn preserves_unknown(s: &Value) -> bool {
    bool_kw(s, "x-kubernetes-preserve-unknown-fields")
}

fn is_int_or_string(s: &Value) -> bool {
    bool_kw(s, "x-kubernetes-int-or-string")
}

/// The schema of a field of an object: a declared property, else an `additionalProperties` schema.
fn field_schema<'a>(s: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    let s = s?;
    property(s, name).or_else(|| Additional::of(s).schema())
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn key(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

// ---------------------------------------------------------------------------------------------
// Pruning
// ---------------------------------------------------------------------------------------------

/// Drops fields not specified by the schema, as the API server does on every write and read.
///
/// Subtrees with `x-kubernetes-preserve-unknown-fields` keep unknown fields (their declared
/// properties are still pruned); embedded resources (`x-kubernetes-embedded-resource`) and the root
/// keep `apiVersion`, `kind` and `metadata`, whose fields are cut down to those of `ObjectMeta`.
/// Returns the dropped paths, sorted, without leading dot (`spec.foo`, `spec.items[0].bar`,
/// `metadata.foo`), ready for `unknown field "spec.foo"` under `fieldValidation=Strict/Warn`.
pub fn prune(obj: &mut Value, schema: Node) -> Vec<String> {
    let mut pruner = Pruner {
        prune_object_meta: true,
        pruned: Vec::new(),
    };
    pruner.prune(obj, Some(schema.raw().unwrap_or(&Value::Null)), "", true);
    pruner.pruned.sort();
    pruner.pruned
}

struct Pruner {
    /// Whether `metadata` of resources is cut down to `ObjectMeta` (the coercion step); default
    /// checks at CRD creation only run the structural pruning.
    prune_object_meta: bool,
    pruned: Vec<String>,
}

/// What pruning does with one field of an object.
enum FieldFate<'a> {
    /// Known: prune its value with this schema (`None`: no schema, everything below goes).
    Keep(Option<&'a Value>),
    /// `apiVersion`/`kind`/`metadata` of a resource: kept, `metadata` cut down to `ObjectMeta`.
    Meta,
    /// Unknown: dropped (or left alone under `x-kubernetes-preserve-unknown-fields`).
    Drop,
}

impl Pruner {
    fn prune(&mut self, x: &mut Value, s: Option<&Value>, path: &str, is_resource: bool) {
        if let Some(s) = s.filter(|s| preserves_unknown(s)) {
            self.skip_prune(x, s, path, is_resource);
            return;
        }
        match x {
            Value::Object(map) => {
                let resource = is_resource || s.is_some_and(is_embedded);
                let mut dropped = HashSet::new();
                for (k, v) in map.iter_mut() {
                    let p = child(path, k);
                    match Self::fate(s, k, resource) {
                        FieldFate::Meta => self.prune_meta_field(k, v, &p),
                        FieldFate::Keep(fs) => self.prune(v, fs, &p, false),
                        FieldFate::Drop => {
                            // Upstream does not report TypeMeta/ObjectMeta names at the top level.
                            if !META_FIELDS.contains(&k.as_str()) || !path.is_empty() {
                                self.pruned.push(p);
                            }
                            dropped.insert(k.clone());
                        }
                    }
                }
                map.retain(|k, _| !dropped.contains(k));
            }
            Value::Array(list) => {
                let item_schema = s.and_then(items);
                for (i, v) in list.iter_mut().enumerate() {
                    self.prune(v, item_schema, &index(path, i), false);
                }
            }
            _ => {}
        }
    }

    /// Under `x-kubernetes-preserve-unknown-fields`: unknown fields stay, known ones are pruned.
    fn skip_prune(&mut self, x: &mut Value, s: &Value, path: &str, is_resource: bool) {
        match x {
            Value::Object(map) => {
                let resource = is_resource || is_embedded(s);
                for (k, v) in map.iter_mut() {
                    let p = child(path, k);
                    match Self::fate(Some(s), k, resource) {
                        FieldFate::Meta => self.prune_meta_field(k, v, &p),
                        FieldFate::Keep(fs) => self.prune(v, fs, &p, false),
                        // Unknown fields are preserved here.
                        FieldFate::Drop => {}
                    }
                }
            }
            Value::Array(list) => {
                if let Some(item_schema) = items(s) {
                    for (i, v) in list.iter_mut().enumerate() {
                        self.skip_prune(v, item_schema, &index(path, i), false);
                    }
                }
            }
            _ => {}
        }
    }

    /// What happens to field `k` of an object with schema `s`. `Keep(None)` recurses without a
    /// schema (everything below is dropped), as for `additionalProperties: true`.
    fn fate<'a>(s: Option<&'a Value>, k: &str, resource: bool) -> FieldFate<'a> {
        let Some(s) = s else {
            return FieldFate::Drop;
        };
        if resource && META_FIELDS.contains(&k) {
            return FieldFate::Meta;
        }
        if let Some(p) = property(s, k) {
            return FieldFate::Keep(Some(p));
        }
        match Additional::of(s) {
            Additional::Absent => FieldFate::Drop,
            a => FieldFate::Keep(a.schema()),
        }
    }

    fn prune_meta_field(&mut self, k: &str, v: &mut Value, path: &str) {
        if k != "metadata" || !self.prune_object_meta {
            return;
        }
        if let Value::Object(meta) = v {
            let mut dropped = Vec::new();
            meta.retain(|field, _| {
                let keep = OBJECT_META_FIELDS.contains(&field.as_str());
                if !keep {
                    dropped.push(child(path, field));
                }
                keep
            });
            self.pruned.extend(dropped);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Defaulting
// ---------------------------------------------------------------------------------------------

/// Applies `default`s as the API server does on read and write: first non-nullable `null`s
/// without a default are removed, then missing fields (and non-nullable `null`s) of objects,
/// `additionalProperties` values and list items get their schema's default. Defaulting recurses
/// into defaulted values, so a defaulted object gets its own nested defaults.
pub fn apply_defaults(obj: &mut Value, schema: Node) {
    let Some(s) = schema.raw() else {
        return;
    };
    prune_nulls_without_defaults(obj, Some(s));
    default_value(obj, s);
}

/// `null` is only kept where the schema allows it (`nullable`) or a default will replace it.
fn is_non_nullable_null(x: &Value, s: Option<&Value>) -> bool {
    x.is_null() && s.is_some_and(|s| !nullable(s))
}

fn prune_nulls_without_defaults(x: &mut Value, s: Option<&Value>) {
    match x {
        Value::Object(map) => {
            map.retain(|k, v| {
                let fs = field_schema(s, k);
                !(is_non_nullable_null(v, fs) && fs.and_then(default_of).is_none())
            });
            for (k, v) in map.iter_mut() {
                prune_nulls_without_defaults(v, field_schema(s, k));
            }
        }
        Value::Array(list) => {
            let item_schema = s.and_then(items);
            for v in list {
                prune_nulls_without_defaults(v, item_schema);
            }
        }
        _ => {}
    }
}

fn default_value(x: &mut Value, s: &Value) {
    match x {
        Value::Object(map) => {
            if let Some(props) = properties(s) {
                for (k, prop) in props {
                    let Some(default) = default_of(prop) else {
                        continue;
                    };
                    let missing = map
                        .get(k)
                        .is_none_or(|v| is_non_nullable_null(v, Some(prop)));
                    if missing {
                        map.insert(k.clone(), default.clone());
                    }
                }
            }
            let additional = Additional::of(s).schema();
            for (k, v) in map.iter_mut() {
                if let Some(prop) = property(s, k) {
                    default_value(v, prop);
                } else if let Some(ap) = additional {
                    replace_null_with_default(v, ap);
                    default_value(v, ap);
                }
            }
        }
        Value::Array(list) => {
            if let Some(item_schema) = items(s) {
                for v in list {
                    replace_null_with_default(v, item_schema);
                    default_value(v, item_schema);
                }
            }
        }
        _ => {}
    }
}

fn replace_null_with_default(v: &mut Value, s: &Value) {
    if is_non_nullable_null(v, Some(s)) {
        *v = default_of(s).cloned().unwrap_or(Value::Null);
    }
}

// ---------------------------------------------------------------------------------------------
// Validation of custom resources
// ---------------------------------------------------------------------------------------------

/// Validates a custom resource (after pruning and defaulting) against the schema and returns every
/// error: kube-openapi schema validation, `apiVersion`/`kind` of embedded resources, and uniqueness
/// in `x-kubernetes-list-type: set/map` lists (`Duplicate value` errors).
///
/// `metadata` is validated against the schema like any field, but `ObjectMeta` rules (name format,
/// labels, ...) are the caller's. `x-kubernetes-validations` (CEL) rules are not evaluated.
/// `anyOf`/`oneOf` report the errors of the alternative with the most applicable checks, an
/// approximation of kube-openapi's match counting.
pub fn validate(obj: &Value, schema: Node) -> Vec<FieldError> {
    let Some(s) = schema.raw() else {
        return Vec::new();
    };
    let mut errs = schema_errors(obj, s, None);
    embedded_type_meta_errors("", obj, Some(s), false, &mut errs);
    if let Value::Object(map) = obj {
        list_type_errors("", s, map, &mut errs);
    }
    errs
}

/// kube-openapi validation of `data` against `s`, converted into field errors under `base` (the
/// path of `data`; `None` for a custom resource, whose paths start at its fields).
fn schema_errors(data: &Value, s: &Value, base: Option<&str>) -> Vec<FieldError> {
    let mut validator = Validator::default();
    let outcome = validator.validate(s, "", data);
    outcome
        .errors
        .into_iter()
        .map(|e| e.into_field_error(base))
        .collect()
}

/// A kube-openapi error code, for the `kubeOpenAPIResultToFieldErrors` mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    InvalidType,
    Required,
    TooLong,
    TooShort,
    Pattern,
    Enum,
    MultipleOf,
    Maximum,
    Minimum,
    Unique,
    MaxItems,
    MinItems,
    TooFewProperties,
    TooManyProperties,
    UnallowedProperty,
    MultipleOfMustBePositive,
}

/// A kube-openapi validation error.
#[derive(Debug, Clone)]
enum SchemaError {
    /// An `errors.Validation`: a failed keyword for the value at `name` (a kube-openapi path such
    /// as `spec.items[0].name`, or `.spec` for required fields at the root). `value` is what Go
    /// puts in `Value` (`Null` standing for nil), `limit` its `Valid`.
    Keyword {
        code: Code,
        name: String,
        value: Value,
        allowed: Vec<Value>,
        limit: Option<i64>,
        message: String,
    },
    /// A composite error (`anyOf`, `oneOf`, `allOf`, `not`), reported without a path.
    Composite(String),
}

impl SchemaError {
    fn keyword(code: Code, name: &str, value: Value, message: String) -> Self {
        SchemaError::Keyword {
            code,
            name: name.to_owned(),
            value,
            allowed: Vec::new(),
            limit: None,
            message,
        }
    }

    fn with_limit(mut self, max: i64) -> Self {
        if let SchemaError::Keyword { limit, .. } = &mut self {
            *limit = Some(max);
        }
        self
    }

    /// `kubeOpenAPIResultToFieldErrors`: the field is `base` plus the error's path.
    fn into_field_error(self, base: Option<&str>) -> FieldError {
        // A nil *field.Path renders as "<nil>".
        let base_field = base.unwrap_or("<nil>");
        let (code, name, value, allowed, limit, message) = match self {
            SchemaError::Composite(message) => {
                return FieldError::invalid(base_field, Value::from(""), message);
            }
            SchemaError::Keyword {
                code,
                name,
                value,
                allowed,
                limit,
                message,
            } => (code, name, value, allowed, limit, message),
        };
        let trimmed = name.strip_prefix('.').unwrap_or(&name);
        let field = match (trimmed.is_empty(), base) {
            (true, _) => base_field.to_owned(),
            (false, Some(b)) => format!("{b}.{trimmed}"),
            (false, None) => trimmed.to_owned(),
        };
        let shown = if value.is_null() {
            Value::from("")
        } else {
            value.clone()
        };
        match code {
            Code::Required => FieldError::required(field, ""),
            Code::Enum => {
                let supported: Vec<String> = allowed
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => gofmt::json(other),
                    })
                    .collect();
                FieldError::not_supported(field, value, &supported)
            }
            Code::TooLong => FieldError::too_long(field, limit),
            Code::MaxItems | Code::TooManyProperties => {
                FieldError::too_many(field, value.as_i64(), limit)
            }
            Code::InvalidType => {
                FieldError::new(FieldErrorKind::TypeInvalid, field, Some(shown), message)
            }
            _ => FieldError::invalid(field, shown, message),
        }
    }
}

#[derive(Default)]
struct Outcome {
    errors: Vec<SchemaError>,
    /// Applicable checks, kube-openapi's `MatchCount`, used to pick the `anyOf`/`oneOf`
    /// alternative whose errors are reported.
    checks: usize,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.errors.extend(other.errors);
        self.checks += other.checks;
    }

    fn add(&mut self, errors: impl IntoIterator<Item = SchemaError>) {
        self.errors.extend(errors);
        self.checks += 1;
    }

    fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// kube-openapi's `SchemaValidator`, with compiled `pattern`s cached for the run.
#[derive(Default)]
struct Validator {
    patterns: HashMap<String, Result<Regex, String>>,
}

impl Validator {
    /// Runs every applicable check, in kube-openapi's order (type, junctors, string, format,
    /// number, array, enum, object); a failed check does not stop the others.
    fn validate(&mut self, s: &Value, path: &str, data: &Value) -> Outcome {
        let mut out = Outcome::default();
        if data.is_null() {
            out.errors.extend(check_type(s, path, data));
            out.errors.extend(check_enum(s, path, data));
            return out;
        }
        if !declared_types(s).is_empty() || !effective_format(s).is_empty() {
            out.add(check_type(s, path, data));
        }
        let junctors = self.check_junctors(s, path, data);
        out.merge(junctors);
        out.checks += 1;
        if let Value::String(text) = data {
            let string_errors = self.check_string(s, path, text);
            out.add(string_errors);
            if !effective_format(s).is_empty() {
                out.add(check_format(s, path, text));
            }
        }
        if let Value::Number(_) = data {
            out.add(check_number(s, path, data));
        }
        if let Value::Array(list) = data {
            let array = self.check_array(s, path, list);
            out.merge(array);
            out.checks += 1;
        }
        out.add(check_enum(s, path, data));
        if let Value::Object(map) = data {
            let object = self.check_object(s, path, map);
            out.merge(object);
            out.checks += 1;
        }
        out.checks += 1;
        out
    }

    fn check_junctors(&mut self, s: &Value, path: &str, data: &Value) -> Outcome {
        let mut out = Outcome::default();
        let quoted = gofmt::quote(path);
        let any_of = array_kw(s, "anyOf");
        if !any_of.is_empty() {
            let (valid, best) = self.alternatives(any_of, path, data, true);
            if valid == 0 {
                out.errors.push(SchemaError::Composite(format!(
                    "{quoted} must validate at least one schema (anyOf)"
                )));
            }
            out.merge(best);
        }
        let one_of = array_kw(s, "oneOf");
        if !one_of.is_empty() {
            let (valid, best) = self.alternatives(one_of, path, data, false);
            if valid != 1 {
                let found = if valid == 0 {
                    "Found none valid".to_owned()
                } else {
                    format!("Found {valid} valid alternatives")
                };
                out.errors.push(SchemaError::Composite(format!(
                    "{quoted} must validate one and only one schema (oneOf). {found}"
                )));
                if valid == 0 {
                    out.merge(best);
                }
            } else {
                out.merge(best);
            }
        }
        let all_of = array_kw(s, "allOf");
        if !all_of.is_empty() {
            let mut valid = 0;
            for sub in all_of {
                let r = self.validate(sub, path, data);
                valid += usize::from(r.is_valid());
                out.merge(r);
            }
            if valid != all_of.len() {
                let none = if valid == 0 { ". None validated" } else { "" };
                out.errors.push(SchemaError::Composite(format!(
                    "{quoted} must validate all the schemas (allOf){none}"
                )));
            }
        }
        if let Some(not) = s.get("not").filter(|n| n.is_object())
            && self.validate(not, path, data).is_valid()
        {
            out.errors.push(SchemaError::Composite(format!(
                "{quoted} must not validate the schema (not)"
            )));
        }
        out
    }

    /// Validates `data` against each alternative; returns how many passed and the outcome to
    /// report: the first success, else the failure with the most checks (the first on ties).
    /// `anyOf` stops at the first success, `oneOf` counts them all.
    fn alternatives(
        &mut self,
        alts: &[Value],
        path: &str,
        data: &Value,
        stop_at_success: bool,
    ) -> (usize, Outcome) {
        let mut valid = 0;
        let mut first_success: Option<Outcome> = None;
        let mut best_failure: Option<Outcome> = None;
        for alt in alts {
            let r = self.validate(alt, path, data);
            if r.is_valid() {
                valid += 1;
                best_failure = None;
                first_success.get_or_insert(r);
                if stop_at_success {
                    break;
                }
                continue;
            }
            if valid == 0 && best_failure.as_ref().is_none_or(|b| r.checks > b.checks) {
                best_failure = Some(r);
            }
        }
        (valid, best_failure.or(first_success).unwrap_or_default())
    }

    fn check_string(&mut self, s: &Value, path: &str, text: &str) -> Option<SchemaError> {
        let length = i64::try_from(text.chars().count()).unwrap_or(i64::MAX);
        let value = || Value::from(text);
        if let Some(max) = int_kw(s, "maxLength").filter(|max| length > *max) {
            let message = format!("{path} in body should be at most {max} chars long");
            return Some(
                SchemaError::keyword(Code::TooLong, path, value(), message).with_limit(max),
            );
        }
        if let Some(min) = int_kw(s, "minLength").filter(|min| length < *min) {
            let message = format!("{path} in body should be at least {min} chars long");
            return Some(SchemaError::keyword(Code::TooShort, path, value(), message));
        }
        let pattern = str_kw(s, "pattern");
        if pattern.is_empty() {
            return None;
        }
        let shown = match self.regex(pattern) {
            Ok(re) if re.is_match(text) => return None,
            Ok(_) => pattern.to_owned(),
            Err(err) => format!("{pattern}, but pattern is invalid: {err}"),
        };
        let message = format!("{path} in body should match '{shown}'");
        Some(SchemaError::keyword(Code::Pattern, path, value(), message))
    }

    fn regex(&mut self, pattern: &str) -> Result<&Regex, String> {
        self.patterns
            .entry(pattern.to_owned())
            .or_insert_with(|| go_regex::compile(pattern))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn check_array(&mut self, s: &Value, path: &str, list: &[Value]) -> Outcome {
        let mut out = Outcome::default();
        if let Some(item_schema) = items(s) {
            for (i, item) in list.iter().enumerate() {
                let r = self.validate(item_schema, &index(path, i), item);
                out.merge(r);
            }
        }
        let size = i64::try_from(list.len()).unwrap_or(i64::MAX);
        if let Some(min) = int_kw(s, "minItems").filter(|min| size < *min) {
            let message = format!("{path} in body should have at least {min} items");
            out.errors.push(SchemaError::keyword(
                Code::MinItems,
                path,
                Value::from(size),
                message,
            ));
        }
        if let Some(max) = int_kw(s, "maxItems").filter(|max| size > *max) {
            let message = format!("{path} in body should have at most {max} items");
            out.errors.push(
                SchemaError::keyword(Code::MaxItems, path, Value::from(size), message)
                    .with_limit(max),
            );
        }
        let has_duplicates = || {
            list.iter()
                .enumerate()
                .any(|(i, a)| list[..i].iter().any(|b| go_deep_equal(a, b)))
        };
        if bool_kw(s, "uniqueItems") && has_duplicates() {
            let message = format!("{path} in body shouldn't contain duplicates");
            out.errors.push(SchemaError::keyword(
                Code::Unique,
                path,
                Value::Null,
                message,
            ));
        }
        out
    }

    fn check_object(&mut self, s: &Value, path: &str, map: &Map<String, Value>) -> Outcome {
        let mut out = Outcome::default();
        let count = i64::try_from(map.len()).unwrap_or(i64::MAX);
        // kube-openapi stops at a property-count violation without looking at the fields.
        if let Some(min) = int_kw(s, "minProperties").filter(|min| count < *min) {
            let message = format!("{path} in body should have at least {min} properties");
            out.errors.push(SchemaError::keyword(
                Code::TooFewProperties,
                path,
                Value::from(count),
                message,
            ));
            return out;
        }
        if let Some(max) = int_kw(s, "maxProperties").filter(|max| count > *max) {
            let message = format!("{path} in body should have at most {max} properties");
            let error =
                SchemaError::keyword(Code::TooManyProperties, path, Value::from(count), message);
            out.errors.push(error.with_limit(max));
            return out;
        }
        let declared = properties(s);
        let is_declared = |k: &str| declared.is_some_and(|p| p.contains_key(k));
        match Additional::of(s) {
            Additional::Bool(false) => {
                for k in map.keys().filter(|k| !is_declared(k)) {
                    let message = format!("{path}.{k} in body is a forbidden property");
                    out.errors.push(SchemaError::keyword(
                        Code::UnallowedProperty,
                        path,
                        Value::from(k.as_str()),
                        message,
                    ));
                }
            }
            Additional::Schema(ap) => {
                for (k, v) in map.iter().filter(|(k, _)| !is_declared(k)) {
                    let r = self.validate(ap, &format!("{path}.{k}"), v);
                    out.merge(r);
                }
            }
            _ => {}
        }
        for (name, prop) in declared.into_iter().flatten() {
            if let Some(v) = map.get(name) {
                let r = self.validate(prop, &child(path, name), v);
                out.merge(r);
            }
        }
        for required in array_kw(s, "required").iter().filter_map(Value::as_str) {
            if !map.contains_key(required) {
                let name = format!("{path}.{required}");
                let message = format!("{name} in body is required");
                out.errors.push(SchemaError::keyword(
                    Code::Required,
                    &name,
                    Value::Null,
                    message,
                ));
            }
        }
        out
    }
}

/// The types kube-openapi checks: `type`, or integer and string for `x-kubernetes-int-or-string`.
fn declared_types(s: &Value) -> Vec<&str> {
    if is_int_or_string(s) {
        return vec!["integer", "string"];
    }
    match str_kw(s, "type") {
        "" => Vec::new(),
        t => vec![t],
    }
}

/// The `format`, if the API server validates it (others are ignored, like `int32`).
fn effective_format(s: &Value) -> &str {
    let format = str_kw(s, "format");
    if formats::is_supported(format) {
        format
    } else {
        ""
    }
}

/// The JSON type kube-openapi infers for decoded data, and the Go format of numbers.
fn json_kind(data: &Value) -> (&'static str, &'static str) {
    match data {
        Value::Null => ("null", ""),
        Value::Bool(_) => ("boolean", ""),
        Value::String(_) => ("string", ""),
        Value::Number(n) if n.as_i64().is_some() => ("integer", "int64"),
        Value::Number(_) => ("number", "float64"),
        Value::Array(_) => ("array", ""),
        Value::Object(_) => ("object", ""),
    }
}

fn invalid_type(path: &str, type_name: &str, actual: &str) -> SchemaError {
    let message = format!(
        "{path} in body must be of type {type_name}: {}",
        gofmt::quote(actual)
    );
    SchemaError::keyword(Code::InvalidType, path, Value::from(actual), message)
}

/// kube-openapi's `typeValidator`, quirks included: floats with integral values pass as integers,
/// integers pass as numbers, and a validated `format` on a string type skips the type check for
/// strings and arrays.
fn check_type(s: &Value, path: &str, data: &Value) -> Option<SchemaError> {
    let types = declared_types(s);
    if data.is_null() {
        let rejected = !types.is_empty() && !types.contains(&"null") && !nullable(s);
        return rejected.then(|| invalid_type(path, &types.join(","), "null"));
    }
    let format = effective_format(s);
    let (actual, go_format) = json_kind(data);
    let float_int = actual == "number"
        && data.as_f64().is_some_and(is_json_integer)
        && types.contains(&"integer");
    let int_float = actual == "integer" && types.contains(&"number");
    let text_like = data.is_string() || data.is_array();
    let matches = types.contains(&actual) || float_int || int_float;
    if !(text_like || format.is_empty() || matches || go_format == format) {
        return Some(invalid_type(path, format, go_format));
    }
    let numeric = types.contains(&"number") || types.contains(&"integer");
    if !numeric && !format.is_empty() && text_like {
        return None;
    }
    (!matches).then(|| invalid_type(path, &types.join(","), actual))
}

fn check_format(s: &Value, path: &str, text: &str) -> Option<SchemaError> {
    let format = effective_format(s);
    if formats::is_valid(format, text) {
        return None;
    }
    let message = format!(
        "{path} in body must be of type {format}: {}",
        gofmt::quote(text)
    );
    Some(SchemaError::keyword(
        Code::InvalidType,
        path,
        Value::from(text),
        message,
    ))
}

/// Whether a float is a whole number within JSON's exact integer range (swag's
/// `IsFloat64AJSONInteger`).
fn is_json_integer(f: f64) -> bool {
    const MAX_EXACT: f64 = 9_007_199_254_740_992.0;
    f.is_finite() && f.abs() <= MAX_EXACT && f.trunc() == f
}

/// kube-openapi's `numberValidator`: integers are compared as int64 (bounds truncated), floats as
/// float64; errors come in the order multipleOf, minimum, maximum.
fn check_number(s: &Value, path: &str, data: &Value) -> Vec<SchemaError> {
    let mut errs = Vec::new();
    let int = data.as_i64();
    let float = data.as_f64().unwrap_or(0.0);
    if let Some(factor) = f64_kw(s, "multipleOf") {
        errs.extend(check_multiple_of(path, data, int, float, factor));
    }
    if let Some(min) = f64_kw(s, "minimum") {
        let exclusive = bool_kw(s, "exclusiveMinimum");
        let (fails, shown) = match int {
            Some(i) => {
                let bound = min as i64;
                (
                    if exclusive { i <= bound } else { i < bound },
                    bound.to_string(),
                )
            }
            None => (
                if exclusive { float <= min } else { float < min },
                gofmt::float(min),
            ),
        };
        if fails {
            let op = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            let message = format!("{path} in body should be {op} {shown}");
            errs.push(SchemaError::keyword(
                Code::Minimum,
                path,
                data.clone(),
                message,
            ));
        }
    }
    if let Some(max) = f64_kw(s, "maximum") {
        let exclusive = bool_kw(s, "exclusiveMaximum");
        let (fails, shown) = match int {
            Some(i) => {
                let bound = max as i64;
                (
                    if exclusive { i >= bound } else { i > bound },
                    bound.to_string(),
                )
            }
            None => (
                if exclusive { float >= max } else { float > max },
                gofmt::float(max),
            ),
        };
        if fails {
            let op = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            let message = format!("{path} in body should be {op} {shown}");
            errs.push(SchemaError::keyword(
                Code::Maximum,
                path,
                data.clone(),
                message,
            ));
        }
    }
    errs
}

fn check_multiple_of(
    path: &str,
    data: &Value,
    int: Option<i64>,
    float: f64,
    factor: f64,
) -> Option<SchemaError> {
    // Integers use int64 arithmetic when the factor is whole; upstream truncates fractional
    // factors to zero and panics, so those fall back to the float rule here.
    let whole_factor = (factor.trunc() == factor && factor.abs() < 9.2e18).then_some(factor as i64);
    let (fails, shown, positive) = match (int, whole_factor) {
        (Some(i), Some(f)) if f != 0 => (f > 0 && i % f != 0, f.to_string(), f > 0),
        _ => {
            let multiple = if factor < 1.0 {
                1.0 / factor * float
            } else {
                float / factor
            };
            (
                factor >= 0.0 && !is_json_integer(multiple),
                gofmt::float(factor),
                factor >= 0.0,
            )
        }
    };
    if !positive {
        let message = format!("factor MultipleOf declared for {path} must be positive: {shown}");
        let shown_factor = whole_factor.map_or(Value::from(factor), Value::from);
        return Some(SchemaError::keyword(
            Code::MultipleOfMustBePositive,
            path,
            shown_factor,
            message,
        ));
    }
    fails.then(|| {
        let message = format!("{path} in body should be a multiple of {shown}");
        SchemaError::keyword(Code::MultipleOf, path, data.clone(), message)
    })
}

fn check_enum(s: &Value, path: &str, data: &Value) -> Option<SchemaError> {
    let allowed = array_kw(s, "enum");
    if allowed.is_empty() || allowed.iter().any(|e| enum_matches(e, data)) {
        return None;
    }
    let shown: Vec<String> = allowed.iter().map(gofmt::json).collect();
    let message = format!("{path} in body should be one of [{}]", shown.join(" "));
    Some(SchemaError::Keyword {
        code: Code::Enum,
        name: path.to_owned(),
        value: data.clone(),
        allowed: allowed.to_vec(),
        limit: None,
        message,
    })
}

/// kube-openapi compares enum members after a Go type conversion of the data to the member's
/// type: numbers convert into each other (floats truncate to integers), an integer converts to the
/// string of that code point, and `null` never matches.
fn enum_matches(member: &Value, data: &Value) -> bool {
    match (member, data) {
        (_, Value::Null) | (Value::Null, _) => false,
        (Value::Number(m), Value::Number(d)) => match (m.as_i64(), d.as_i64()) {
            (Some(m), Some(d)) => m == d,
            (Some(m), None) => d.as_f64().is_some_and(|d| d.trunc() as i64 == m),
            (None, _) => m.as_f64() == d.as_f64(),
        },
        (Value::String(m), Value::Number(d)) => d
            .as_i64()
            .map(|i| {
                u32::try_from(i)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{FFFD}')
            })
            .is_some_and(|c| m.chars().eq(std::iter::once(c))),
        _ => go_deep_equal(member, data),
    }
}

/// Go's `reflect.DeepEqual` on decoded JSON, where integers (int64) and floats are distinct types.
fn go_deep_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            (None, None) => x.as_f64() == y.as_f64(),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| go_deep_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| go_deep_equal(v, w)))
        }
        _ => a == b,
    }
}

/// `objectmeta.Validate` for embedded resources: `apiVersion` and `kind` are required strings.
/// (Their `metadata` is `ObjectMeta` validation, which is the caller's.)
fn embedded_type_meta_errors(
    path: &str,
    x: &Value,
    s: Option<&Value>,
    is_resource_root: bool,
    errs: &mut Vec<FieldError>,
) {
    let Some(s) = s else {
        return;
    };
    match x {
        Value::Object(map) => {
            if is_resource_root || is_embedded(s) {
                type_meta_errors(path, map, errs);
            }
            let additional = Additional::of(s);
            for (k, v) in map {
                if let Some(prop) = property(s, k) {
                    embedded_type_meta_errors(&child(path, k), v, Some(prop), false, errs);
                } else if additional.is_present() {
                    embedded_type_meta_errors(&key(path, k), v, additional.schema(), false, errs);
                }
            }
        }
        Value::Array(list) => {
            for (i, v) in list.iter().enumerate() {
                embedded_type_meta_errors(&index(path, i), v, items(s), false, errs);
            }
        }
        _ => {}
    }
}

fn type_meta_errors(path: &str, map: &Map<String, Value>, errs: &mut Vec<FieldError>) {
    for field in ["apiVersion", "kind"] {
        if !map.contains_key(field) {
            errs.push(FieldError::required(child(path, field), ""));
        }
    }
    for (k, v) in map {
        let p = child(path, k);
        let problem = match (k.as_str(), v) {
            ("apiVersion" | "kind", Value::String(s)) if s.is_empty() => {
                Some("must not be empty".to_owned())
            }
            ("apiVersion" | "kind", v) if !v.is_string() => Some("must be a string".to_owned()),
            ("apiVersion", Value::String(s)) if s.matches('/').count() > 1 => {
                Some(format!("unexpected GroupVersion string: {s}"))
            }
            ("kind", Value::String(s)) => {
                let problems = dns1035_label_errors(&s.to_lowercase());
                (!problems.is_empty()).then(|| {
                    format!(
                        "may have mixed case, but should otherwise match: {}",
                        problems.join(",")
                    )
                })
            }
            _ => None,
        };
        if let Some(detail) = problem {
            errs.push(FieldError::invalid(p, v.clone(), detail));
        }
    }
}

/// `validation.IsDNS1035Label` of k8s.io/apimachinery.
fn dns1035_label_errors(value: &str) -> Vec<String> {
    static LABEL: LazyLock<Regex> =
        LazyLock::new(|| Regex::new("^[a-z]([-a-z0-9]*[a-z0-9])?$").expect("constant regex"));
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 characters".to_owned());
    }
    if !LABEL.is_match(value) {
        errs.push(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with \
             an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or \
             'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
                .to_owned(),
        );
    }
    errs
}

/// `listtype.ValidateListSetsAndMaps`: items of `set` lists and keys of `map` lists are unique.
fn list_type_errors(path: &str, s: &Value, obj: &Map<String, Value>, errs: &mut Vec<FieldError>) {
    if let Some(ap) = Additional::of(s).schema() {
        for (k, v) in obj {
            list_value_errors(&key(path, k), ap, v, errs);
        }
    }
    if let Some(props) = properties(s) {
        for (k, v) in obj {
            if let Some(prop) = props.get(k) {
                list_value_errors(&child(path, k), prop, v, errs);
            }
        }
    }
}

fn list_value_errors(path: &str, s: &Value, v: &Value, errs: &mut Vec<FieldError>) {
    match v {
        Value::Array(list) => {
            match str_kw(s, "x-kubernetes-list-type") {
                "set" => {
                    let identities: Vec<Identity> = list.iter().map(Identity::of).collect();
                    for i in first_repeats(&identities) {
                        errs.push(FieldError::duplicate(index(path, i), list[i].clone()));
                    }
                }
                "map" => errs.extend(list_map_errors(path, s, list)),
                _ => {}
            }
            if let Some(item_schema) = items(s) {
                for (i, item) in list.iter().enumerate() {
                    list_value_errors(&index(path, i), item_schema, item, errs);
                }
            }
        }
        Value::Object(map) => list_type_errors(path, s, map, errs),
        _ => {}
    }
}

fn list_map_errors(path: &str, s: &Value, list: &[Value]) -> Vec<FieldError> {
    if let Some((i, x)) = list
        .iter()
        .enumerate()
        .find(|(_, x)| !x.is_null() && !x.is_object())
    {
        return vec![FieldError::invalid(
            index(path, i),
            x.clone(),
            "must be an object for an array of list-type map",
        )];
    }
    if list.len() <= 1 {
        return Vec::new();
    }
    let keys: Vec<&str> = array_kw(s, "x-kubernetes-list-map-keys")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if let [single] = keys.as_slice() {
        // One key: items are compared by the key's value, a missing key being its own value.
        let values: Vec<Option<&Value>> = list.iter().map(|x| x.get(*single)).collect();
        let identities: Vec<Identity> = values
            .iter()
            .map(|v| v.map_or(Identity::Unspecified, Identity::of))
            .collect();
        return first_repeats(&identities)
            .into_iter()
            .map(|i| {
                let mut shown = Map::new();
                if let Some(v) = values[i] {
                    shown.insert((*single).to_owned(), v.clone());
                }
                FieldError::duplicate(index(path, i), Value::Object(shown))
            })
            .collect();
    }
    let key_maps: Vec<Value> = list
        .iter()
        .map(|x| {
            let present = keys
                .iter()
                .filter_map(|k| x.get(*k).map(|v| ((*k).to_owned(), v.clone())));
            Value::Object(present.collect())
        })
        .collect();
    let identities: Vec<Identity> = key_maps.iter().map(Identity::of).collect();
    first_repeats(&identities)
        .into_iter()
        .map(|i| FieldError::duplicate(index(path, i), key_maps[i].clone()))
        .collect()
}

/// How `validateListSet` tells items apart: scalars by Go value (an int64 differs from an equal
/// float64), compounds by their JSON encoding.
#[derive(Debug, PartialEq, Eq, Hash)]
enum Identity {
    Unspecified,
    Null,
    Bool(bool),
    Int(i64),
    Float(u64),
    String(String),
    Compound(String),
}

impl Identity {
    fn of(v: &Value) -> Self {
        match v {
            Value::Null => Identity::Null,
            Value::Bool(b) => Identity::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Identity::Int(i),
                // +0.0 == -0.0 in Go map keys.
                None => Identity::Float((n.as_f64().unwrap_or(0.0) + 0.0).to_bits()),
            },
            Value::String(s) => Identity::String(s.clone()),
            compound => Identity::Compound(gofmt::json(compound)),
        }
    }
}

/// The index of the second occurrence of each repeated identity, in order.
fn first_repeats(identities: &[Identity]) -> Vec<usize> {
    let mut seen: HashMap<&Identity, usize> = HashMap::new();
    let mut repeats = Vec::new();
    for (i, id) in identities.iter().enumerate() {
        let count = seen.entry(id).or_insert(0);
        *count += 1;
        if *count == 2 {
            repeats.push(i);
        }
    }
    repeats
}

// ---------------------------------------------------------------------------------------------
// CRD schema checks
// ---------------------------------------------------------------------------------------------

/// Checks a CRD version's `openAPIV3Schema` the way the API server does on CRD create/update
/// (apiextensions.k8s.io/v1 rules) and returns every problem, with `path` (the schema's field
/// path, e.g. `spec.versions[0].schema.openAPIV3Schema`) as prefix. Note the real server reports
/// `spec.validation.openAPIV3Schema` when all versions share one schema.
///
/// Covered: structural-schema invariants (types everywhere outside junctors, no generics or
/// extensions inside `allOf`/`anyOf`/`oneOf`/`not`, every junctor field also specified outside,
/// root `metadata` restricted to `name`/`generateName`, `additionalProperties` not at the root,
/// embedded-resource and int-or-string rules), unsupported keywords (`$ref`, `id`,
/// `patternProperties`, `uniqueItems: true`, ...), `x-kubernetes-list-type`/`-map-type`/
/// `-list-map-keys` consistency, forbidden defaults in top-level metadata, defaults that are
/// unpruned or violate their own schema, `x-kubernetes-validations` shape (rules are not compiled).
/// Not covered: the status-subresource root restrictions, CEL compilation and cost limits, and
/// `ObjectMeta` validation of defaults inside embedded `metadata`.
pub fn check_structural(schema: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if nullable(schema) {
        errs.push(FieldError::forbidden(
            child(path, "nullable"),
            "nullable cannot be true at the root",
        ));
    }
    let conversion = unsupported_field(schema);
    if conversion.is_none() {
        let mut structural = Vec::new();
        structural_invariants(schema, Level::Root, path, &mut structural);
        value_validation_completeness(schema, Some(schema), path, path, &mut structural);
        structural.sort_by_cached_key(FieldError::message);
        if structural.is_empty() {
            default_errors(schema, path, true, false, &mut errs);
        }
        errs.extend(structural);
    }
    let ssv = SpecValidator {
        allow_defaults: true,
        disallow_reason: String::new(),
        inside_resource_meta: false,
    };
    openapi_schema_errors(schema, path, &ssv, true, &mut errs);
    if errs.is_empty()
        && let Some(problem) = conversion
    {
        errs.push(FieldError::invalid(path, Value::from(""), problem));
    }
    errs
}

/// What `NewStructural` refuses to convert (reported only when nothing else is wrong, since the
/// OpenAPI checks report the same keywords).
fn unsupported_field(s: &Value) -> Option<String> {
    for (keyword, name) in [
        ("id", "id"),
        ("$schema", "schema"),
        ("$ref", "$ref"),
        ("patternProperties", "patternProperties"),
        ("dependencies", "dependencies"),
        ("additionalItems", "additionalItems"),
        ("definitions", "definitions"),
    ] {
        let set = match s.get(keyword) {
            None | Some(Value::Null) => false,
            Some(Value::String(v)) => !v.is_empty(),
            Some(Value::Object(m)) => !m.is_empty() || keyword == "additionalItems",
            Some(_) => true,
        };
        if set {
            return Some(format!("OpenAPIV3Schema '{name}' is not supported"));
        }
    }
    let nested = s
        .get("not")
        .into_iter()
        .chain(
            ["allOf", "anyOf", "oneOf"]
                .iter()
                .flat_map(|k| array_kw(s, k)),
        )
        .chain(Additional::of(s).schema());
    if let Some(problem) = nested.filter(|n| n.is_object()).find_map(unsupported_field) {
        return Some(problem);
    }
    if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
        return Some(
            "internal error: 'x-kubernetes-preserve-unknown-fields' must be true or undefined"
                .to_owned(),
        );
    }
    match s.get("items") {
        Some(Value::Array(_)) => {
            return Some("OpenAPIV3Schema 'items' must be a schema, but is an array".to_owned());
        }
        Some(i @ Value::Object(_)) => {
            if let Some(problem) = unsupported_field(i) {
                return Some(problem);
            }
        }
        _ => {}
    }
    properties(s)
        .into_iter()
        .flatten()
        .find_map(|(_, p)| unsupported_field(p))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

/// `validateStructuralInvariants`.
fn structural_invariants(s: &Value, lvl: Level, path: &str, errs: &mut Vec<FieldError>) {
    let ty = str_kw(s, "type");
    if ty == "array" && items(s).is_none() {
        errs.push(FieldError::required(
            child(path, "items"),
            "must be specified",
        ));
    }
    if let Some(item_schema) = items(s) {
        structural_invariants(item_schema, Level::Item, &child(path, "items"), errs);
    }
    for (k, prop) in properties(s).into_iter().flatten() {
        structural_invariants(
            prop,
            Level::Field,
            &key(&child(path, "properties"), k),
            errs,
        );
    }
    let additional = Additional::of(s);
    if additional.is_present() && lvl == Level::Root {
        errs.push(FieldError::forbidden(
            child(path, "additionalProperties"),
            "must not be used at the root",
        ));
    }
    if let Some(ap) = additional.schema() {
        structural_invariants(ap, Level::Field, &child(path, "additionalProperties"), errs);
    }
    extension_invariants(s, path, errs);
    let skip_any_of = is_int_or_string_any_of(array_kw(s, "anyOf"));
    let skip_first_all_of_any_of = array_kw(s, "allOf")
        .first()
        .is_some_and(|first| is_int_or_string_any_of(array_kw(first, "anyOf")));
    value_validation_invariants(s, skip_any_of, skip_first_all_of_any_of, lvl, path, errs);
    type_invariants(s, ty, lvl, path, additional, errs);
    let check_metadata = lvl == Level::Root || is_embedded(s);
    for field in ["kind", "apiVersion"] {
        if let Some(p) = property(s, field).filter(|_| check_metadata) {
            let field_type = str_kw(p, "type");
            if field_type != "string" {
                let p = child(&key(&child(path, "properties"), field), "type");
                errs.push(FieldError::invalid(
                    p,
                    Value::from(field_type),
                    "must be string",
                ));
            }
        }
    }
    if let Some(metadata) = property(s, "metadata") {
        metadata_invariants(
            metadata,
            check_metadata,
            lvl,
            &key(&child(path, "properties"), "metadata"),
            errs,
        );
    }
    if is_embedded(s) && !preserves_unknown(s) && properties(s).is_none_or(Map::is_empty) {
        errs.push(FieldError::required(
            child(path, "properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

fn type_invariants(
    s: &Value,
    ty: &str,
    lvl: Level,
    path: &str,
    additional: Additional,
    errs: &mut Vec<FieldError>,
) {
    let type_path = child(path, "type");
    const EMBEDDED: &str = "must be object if x-kubernetes-embedded-resource is true";
    if is_embedded(s) && ty != "object" {
        errs.push(if ty.is_empty() {
            FieldError::required(&type_path, EMBEDDED)
        } else {
            FieldError::invalid(&type_path, Value::from(ty), EMBEDDED)
        });
    } else if ty.is_empty() && !is_int_or_string(s) && !preserves_unknown(s) {
        let detail = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errs.push(FieldError::required(&type_path, detail));
    }
    if is_embedded(s) && additional.is_present() {
        errs.push(FieldError::forbidden(
            child(path, "additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if lvl == Level::Root && !ty.is_empty() && ty != "object" {
        errs.push(FieldError::invalid(
            &type_path,
            Value::from(ty),
            "must be object at the root",
        ));
    }
}

fn extension_invariants(s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if !is_int_or_string(s) {
        return;
    }
    for extension in [
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
    ] {
        if bool_kw(s, extension) {
            errs.push(FieldError::invalid(
                child(path, extension),
                Value::Bool(true),
                "must be false if x-kubernetes-int-or-string is true",
            ));
        }
    }
}

/// The two int-or-string exceptions: `anyOf: [{type: integer}, {type: string}]` exactly.
fn is_int_or_string_any_of(any_of: &[Value]) -> bool {
    let only_type = |v: &Value, t: &str| {
        v.as_object().is_some_and(|m| {
            m.iter().all(|(k, v)| match k.as_str() {
                "type" => v.as_str() == Some(t),
                _ => is_zero(v),
            })
        })
    };
    matches!(any_of, [a, b] if only_type(a, "integer") && only_type(b, "string"))
}

/// Zero values are indistinguishable from unset fields once decoded into Go structs.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// `validateValueValidation`: junctors must not define structure, patterns must compile.
fn value_validation_invariants(
    s: &Value,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    lvl: Level,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    if !skip_any_of {
        for (i, sub) in array_kw(s, "anyOf").iter().enumerate() {
            nested_invariants(sub, false, lvl, &index(&child(path, "anyOf"), i), errs);
        }
    }
    for (i, sub) in array_kw(s, "allOf").iter().enumerate() {
        let skip = skip_first_all_of_any_of && i == 0;
        nested_invariants(sub, skip, lvl, &index(&child(path, "allOf"), i), errs);
    }
    for (i, sub) in array_kw(s, "oneOf").iter().enumerate() {
        nested_invariants(sub, false, lvl, &index(&child(path, "oneOf"), i), errs);
    }
    if let Some(not) = s.get("not").filter(|n| n.is_object()) {
        nested_invariants(not, false, lvl, &child(path, "not"), errs);
    }
    let pattern = str_kw(s, "pattern");
    if !pattern.is_empty()
        && let Err(err) = go_regex::compile(pattern)
    {
        errs.push(FieldError::invalid(
            child(path, "pattern"),
            Value::from(pattern),
            format!("must be a valid regular expression, but isn't: {err}"),
        ));
    }
}

/// `validateNestedValueValidation`: what a junctor branch may not specify.
fn nested_invariants(
    v: &Value,
    skip_any_of: bool,
    lvl: Level,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    if !v.is_object() {
        return;
    }
    value_validation_invariants(v, skip_any_of, false, lvl, path, errs);
    if let Some(item_schema) = items(v) {
        nested_invariants(item_schema, false, lvl, &child(path, "items"), errs);
    }
    for (k, prop) in properties(v).into_iter().flatten() {
        nested_invariants(
            prop,
            false,
            Level::Field,
            &key(&child(path, "properties"), k),
            errs,
        );
    }
    let forbidden = |name: &str, detail: &str| FieldError::forbidden(child(path, name), detail);
    const EMPTY: &str = "must be empty to be structural";
    const UNDEFINED: &str = "must be undefined to be structural";
    const FALSE: &str = "must be false to be structural";
    if !str_kw(v, "type").is_empty() {
        errs.push(forbidden("type", EMPTY));
    }
    if Additional::of(v).is_present() {
        errs.push(forbidden("additionalProperties", UNDEFINED));
    }
    let checks: [(&str, bool, &str); 11] = [
        ("default", default_of(v).is_some(), UNDEFINED),
        ("title", !str_kw(v, "title").is_empty(), EMPTY),
        ("description", !str_kw(v, "description").is_empty(), EMPTY),
        ("nullable", nullable(v), FALSE),
        (
            "externalDocs",
            v.get("externalDocs").is_some_and(|d| !d.is_null()),
            UNDEFINED,
        ),
        (
            "x-kubernetes-preserve-unknown-fields",
            preserves_unknown(v),
            FALSE,
        ),
        ("x-kubernetes-embedded-resource", is_embedded(v), FALSE),
        ("x-kubernetes-int-or-string", is_int_or_string(v), FALSE),
        (
            "x-kubernetes-list-map-keys",
            !array_kw(v, "x-kubernetes-list-map-keys").is_empty(),
            EMPTY,
        ),
        (
            "x-kubernetes-list-type",
            v.get("x-kubernetes-list-type")
                .is_some_and(|t| !t.is_null()),
            UNDEFINED,
        ),
        (
            "x-kubernetes-map-type",
            v.get("x-kubernetes-map-type").is_some_and(|t| !t.is_null()),
            UNDEFINED,
        ),
    ];
    errs.extend(
        checks
            .into_iter()
            .filter(|(_, set, _)| *set)
            .map(|(name, _, detail)| forbidden(name, detail)),
    );
    if !array_kw(v, "x-kubernetes-validations").is_empty() {
        errs.push(forbidden("x-kubernetes-validations", EMPTY));
    }
    if property(v, "metadata").is_some() {
        errs.push(FieldError::forbidden(
            key(&child(path, "properties"), "metadata"),
            "must not be specified in a nested context",
        ));
    }
}

/// `validateStructuralMetadataInvariants`.
fn metadata_invariants(
    m: &Value,
    check_metadata: bool,
    lvl: Level,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let ty = str_kw(m, "type");
    if check_metadata && ty != "object" {
        errs.push(FieldError::invalid(
            child(path, "type"),
            Value::from(ty),
            "must be object",
        ));
    }
    if lvl != Level::Root {
        return;
    }
    let props: Vec<&str> = properties(m)
        .into_iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .collect();
    let name_only = props.iter().all(|p| *p == "name" || *p == "generateName");
    let restricts_more = match m.as_object() {
        Some(fields) => fields.iter().any(|(k, v)| match k.as_str() {
            // Not part of the structural schema, or checked elsewhere.
            "type" | "default" | "example" | "externalDocs" => false,
            "properties" => !name_only,
            "enum" | "allOf" | "anyOf" | "oneOf" => v.as_array().is_some_and(|a| !a.is_empty()),
            _ => !is_zero(v),
        }),
        None => false,
    };
    if restricts_more {
        errs.push(FieldError::forbidden(
            path,
            "must not specify anything other than name and generateName, but metadata is implicitly specified",
        ));
    }
}

/// `validateStructuralCompleteness`: everything a junctor mentions is specified outside of it.
fn value_validation_completeness(
    v: &Value,
    s: Option<&Value>,
    s_path: &str,
    v_path: &str,
    errs: &mut Vec<FieldError>,
) {
    let Some(s) = s else {
        errs.push(FieldError::required(
            s_path,
            format!("because it is defined in {v_path}"),
        ));
        return;
    };
    if let Some(not) = v.get("not").filter(|n| n.is_object()) {
        nested_completeness(not, Some(s), s_path, &child(v_path, "not"), errs);
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        for (i, sub) in array_kw(v, junctor).iter().enumerate() {
            nested_completeness(
                sub,
                Some(s),
                s_path,
                &index(&child(v_path, junctor), i),
                errs,
            );
        }
    }
}

fn nested_completeness(
    v: &Value,
    s: Option<&Value>,
    s_path: &str,
    v_path: &str,
    errs: &mut Vec<FieldError>,
) {
    let Some(s) = s else {
        errs.push(FieldError::required(
            s_path,
            format!("because it is defined in {v_path}"),
        ));
        return;
    };
    value_validation_completeness(v, Some(s), s_path, v_path, errs);
    if let Some(v_items) = items(v) {
        nested_completeness(
            v_items,
            items(s),
            &child(s_path, "items"),
            &child(v_path, "items"),
            errs,
        );
    }
    for (k, v_prop) in properties(v).into_iter().flatten() {
        let s_prop_path = key(&child(s_path, "properties"), k);
        let v_prop_path = key(&child(v_path, "properties"), k);
        match property(s, k) {
            None => errs.push(FieldError::required(
                s_prop_path,
                format!("because it is defined in {v_prop_path}"),
            )),
            Some(s_prop) => {
                nested_completeness(v_prop, Some(s_prop), &s_prop_path, &v_prop_path, errs)
            }
        }
    }
}

/// `defaulting.ValidateDefaults`: defaults must be pruned and valid against their own schema.
fn default_errors(
    s: &Value,
    path: &str,
    is_root: bool,
    inside_meta: bool,
    errs: &mut Vec<FieldError>,
) {
    let resource = is_root || is_embedded(s);
    let inside_meta = inside_meta && !is_embedded(s);
    if let Some(default) = default_of(s).filter(|_| !inside_meta) {
        errs.extend(default_value_errors(
            default,
            s,
            resource,
            &child(path, "default"),
        ));
    }
    if let Some(item_schema) = items(s) {
        default_errors(item_schema, &child(path, "items"), false, inside_meta, errs);
    }
    for (k, prop) in properties(s).into_iter().flatten() {
        let sub_inside_meta = inside_meta || (resource && META_FIELDS.contains(&k.as_str()));
        default_errors(
            prop,
            &key(&child(path, "properties"), k),
            false,
            sub_inside_meta,
            errs,
        );
    }
}

fn default_value_errors(default: &Value, s: &Value, resource: bool, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut pruned = default.clone();
    let mut pruner = Pruner {
        prune_object_meta: false,
        pruned: Vec::new(),
    };
    pruner.prune(&mut pruned, Some(s), "", resource);
    if !pruner.pruned.is_empty() {
        errs.push(FieldError::invalid(
            path,
            default.clone(),
            "must not have unknown fields",
        ));
    }
    let mut meta_errs = Vec::new();
    embedded_type_meta_errors(path, default, Some(s), resource, &mut meta_errs);
    if meta_errs.is_empty() {
        errs.extend(schema_errors(default, s, Some(path)));
    } else {
        errs.extend(meta_errs);
    }
    errs
}

/// The `specStandardValidatorV3` state: where defaults are allowed.
#[derive(Clone)]
struct SpecValidator {
    allow_defaults: bool,
    disallow_reason: String,
    inside_resource_meta: bool,
}

impl SpecValidator {
    fn forbid_defaults(&self, reason: &str) -> Self {
        SpecValidator {
            allow_defaults: false,
            disallow_reason: reason.to_owned(),
            inside_resource_meta: self.inside_resource_meta,
        }
    }
}

const OPENAPI_V3_TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

/// `ValidateCustomResourceDefinitionOpenAPISchema` for apiextensions.k8s.io/v1.
fn openapi_schema_errors(
    s: &Value,
    path: &str,
    ssv: &SpecValidator,
    is_root: bool,
    errs: &mut Vec<FieldError>,
) {
    if !s.is_object() {
        return;
    }
    keyword_errors(s, path, ssv, errs);
    if bool_kw(s, "uniqueItems") {
        errs.push(FieldError::forbidden(
            child(path, "uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    let has_properties = properties(s).is_some_and(|p| !p.is_empty());
    match Additional::of(s) {
        Additional::Absent => {}
        additional => {
            if has_properties
                && matches!(additional, Additional::Bool(false) | Additional::Schema(_))
            {
                errs.push(FieldError::forbidden(
                    child(path, "additionalProperties"),
                    "additionalProperties and properties are mutual exclusive",
                ));
            }
            if let Some(ap) = additional.schema() {
                let sub = if ssv.inside_resource_meta {
                    ssv.forbid_defaults("inside additionalProperties applying to object metadata")
                } else {
                    ssv.clone()
                };
                openapi_schema_errors(ap, &child(path, "additionalProperties"), &sub, false, errs);
            }
        }
    }
    for (k, prop) in properties(s).into_iter().flatten() {
        let mut sub = ssv.clone();
        if (is_root || is_embedded(s)) && META_FIELDS.contains(&k.as_str()) {
            sub.inside_resource_meta = true;
            if is_root {
                sub = sub.forbid_defaults(&format!("in top-level {k}"));
            }
        }
        openapi_schema_errors(prop, &key(&child(path, "properties"), k), &sub, false, errs);
    }
    if let Some(not) = s.get("not") {
        openapi_schema_errors(not, &child(path, "not"), ssv, false, errs);
    }
    for junctor in ["allOf", "oneOf", "anyOf"] {
        for (i, sub) in array_kw(s, junctor).iter().enumerate() {
            openapi_schema_errors(sub, &index(&child(path, junctor), i), ssv, false, errs);
        }
    }
    for (k, def) in s
        .get("definitions")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        openapi_schema_errors(def, &key(&child(path, "definitions"), k), ssv, false, errs);
    }
    match s.get("items") {
        Some(Value::Array(list)) => {
            for (i, item) in list.iter().enumerate() {
                openapi_schema_errors(item, &index(&child(path, "items"), i), ssv, false, errs);
            }
        }
        Some(item) => openapi_schema_errors(item, &child(path, "items"), ssv, false, errs),
        None => {}
    }
    extension_errors(s, path, errs);
    list_map_key_errors(s, path, errs);
    validation_rule_errors(s, path, errs);
}

/// `specStandardValidatorV3.validate`: keywords CRDs do not support.
fn keyword_errors(s: &Value, path: &str, ssv: &SpecValidator, errs: &mut Vec<FieldError>) {
    let ty = str_kw(s, "type");
    if !ty.is_empty() && !OPENAPI_V3_TYPES.contains(&ty) {
        let supported: Vec<String> = OPENAPI_V3_TYPES.iter().map(|t| (*t).to_owned()).collect();
        errs.push(FieldError::not_supported(
            child(path, "type"),
            Value::from(ty),
            &supported,
        ));
    }
    if s.get("default").is_some() && !ssv.allow_defaults {
        let mut detail = "must not be set".to_owned();
        if !ssv.disallow_reason.is_empty() {
            detail.push(' ');
            detail.push_str(&ssv.disallow_reason);
        }
        errs.push(FieldError::forbidden(child(path, "default"), detail));
    }
    let present = |k: &str| match s.get(k) {
        None | Some(Value::Null) => false,
        Some(Value::String(v)) => !v.is_empty(),
        Some(Value::Object(m)) => !m.is_empty() || k == "additionalItems" || k == "dependencies",
        Some(_) => true,
    };
    for (k, detail) in [
        ("id", "id is not supported"),
        ("additionalItems", "additionalItems is not supported"),
        ("patternProperties", "patternProperties is not supported"),
        ("definitions", "definitions is not supported"),
        ("dependencies", "dependencies is not supported"),
        ("$ref", "$ref is not supported"),
    ] {
        if present(k) {
            errs.push(FieldError::forbidden(child(path, k), detail));
        }
    }
    if ty == "null" {
        errs.push(FieldError::forbidden(
            child(path, "type"),
            "type cannot be set to null, use nullable as an alternative",
        ));
    }
    if s.get("items")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        errs.push(FieldError::forbidden(
            child(path, "items"),
            "items must be a schema object and not an array",
        ));
    }
    if ssv.inside_resource_meta && is_embedded(s) {
        errs.push(FieldError::forbidden(
            child(path, "x-kubernetes-embedded-resource"),
            "must not be used inside of resource meta",
        ));
    }
}

/// `x-kubernetes-preserve-unknown-fields`, `-map-type` and `-list-type` consistency.
fn extension_errors(s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let ty = str_kw(s, "type");
    let type_path = child(path, "type");
    let type_error = |wanted: &str, extension: &str| {
        let detail = format!("must be {wanted} if {extension} is specified");
        if ty.is_empty() {
            FieldError::required(&type_path, detail)
        } else {
            FieldError::invalid(&type_path, Value::from(ty), detail)
        }
    };
    if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
        errs.push(FieldError::invalid(
            child(path, "x-kubernetes-preserve-unknown-fields"),
            Value::Bool(false),
            "must be true or undefined",
        ));
    }
    if let Some(map_type) = s.get("x-kubernetes-map-type").filter(|t| !t.is_null()) {
        if ty != "object" {
            errs.push(type_error("object", "x-kubernetes-map-type"));
        }
        let name = map_type.as_str().unwrap_or("");
        if name != "atomic" && name != "granular" {
            let supported = ["atomic".to_owned(), "granular".to_owned()];
            errs.push(FieldError::not_supported(
                child(path, "x-kubernetes-map-type"),
                map_type.clone(),
                &supported,
            ));
        }
    }
    let list_type = s.get("x-kubernetes-list-type").filter(|t| !t.is_null());
    if let Some(list_type) = list_type {
        if ty != "array" {
            errs.push(type_error("array", "x-kubernetes-list-type"));
        } else if list_type.as_str() == Some("set") {
            errs.extend(set_item_errors(s, path));
        }
        let name = list_type.as_str().unwrap_or("");
        if !["atomic", "set", "map"].contains(&name) {
            let supported = ["atomic".to_owned(), "set".to_owned(), "map".to_owned()];
            errs.push(FieldError::not_supported(
                child(path, "x-kubernetes-list-type"),
                list_type.clone(),
                &supported,
            ));
        }
    }
    if !array_kw(s, "x-kubernetes-list-map-keys").is_empty() {
        const NEEDS_MAP: &str = "must be map if x-kubernetes-list-map-keys is non-empty";
        let list_type_path = child(path, "x-kubernetes-list-type");
        match list_type {
            None => errs.push(FieldError::required(list_type_path, NEEDS_MAP)),
            Some(t) if t.as_str() != Some("map") => {
                errs.push(FieldError::invalid(list_type_path, t.clone(), NEEDS_MAP))
            }
            Some(_) => {}
        }
    }
}

/// Items of a `set` list must be scalars or atomic.
fn set_item_errors(s: &Value, path: &str) -> Option<FieldError> {
    let item_schema = items(s)?;
    const DETAIL: &str = "must be atomic as item of a list with x-kubernetes-list-type=set";
    let list_type = item_schema
        .get("x-kubernetes-list-type")
        .cloned()
        .unwrap_or(Value::Null);
    match str_kw(item_schema, "type") {
        "array" if !list_type.is_null() && list_type.as_str() != Some("atomic") => {
            let p = child(&child(path, "items"), "x-kubernetes-list-type");
            Some(FieldError::invalid(p, list_type, DETAIL))
        }
        // Upstream shows the items' list type here, usually null.
        "object" if str_kw(item_schema, "x-kubernetes-map-type") != "atomic" => {
            let p = child(&child(path, "items"), "x-kubernetes-map-type");
            Some(FieldError::invalid(p, list_type, DETAIL))
        }
        _ => None,
    }
}

/// `x-kubernetes-list-type: map` needs object items keyed by required-or-defaulted scalars.
fn list_map_key_errors(s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let list_type = str_kw(s, "x-kubernetes-list-type");
    let keys_value = s
        .get("x-kubernetes-list-map-keys")
        .cloned()
        .unwrap_or(Value::Null);
    let keys: Vec<&str> = array_kw(s, "x-kubernetes-list-map-keys")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let items_path = child(path, "items");
    let keys_path = child(path, "x-kubernetes-list-map-keys");
    if list_type == "map" {
        if keys.is_empty() {
            errs.push(FieldError::required(
                &keys_path,
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        match s.get("items") {
            None => errs.push(FieldError::required(
                &items_path,
                "must have a schema if x-kubernetes-list-type is map",
            )),
            Some(list @ Value::Array(_)) => errs.push(FieldError::invalid(
                &items_path,
                list.clone(),
                "must only have a single schema if x-kubernetes-list-type is map",
            )),
            Some(item_schema) => {
                let item_type = str_kw(item_schema, "type");
                if item_type != "object" {
                    errs.push(FieldError::invalid(
                        child(&items_path, "type"),
                        Value::from(item_type),
                        "must be object if parent array's x-kubernetes-list-type is map",
                    ));
                } else {
                    let mut seen = HashSet::new();
                    for k in &keys {
                        match property(item_schema, k) {
                            Some(p) if matches!(str_kw(p, "type"), "array" | "object") => {
                                errs.push(FieldError::invalid(
                                    child(&key(&child(&items_path, "properties"), k), "type"),
                                    Value::from(item_type),
                                    "must be a scalar type if parent array's x-kubernetes-list-type is map",
                                ));
                            }
                            Some(_) => {}
                            None => errs.push(FieldError::invalid(
                                &keys_path,
                                keys_value.clone(),
                                "entries must all be names of item properties",
                            )),
                        }
                        if !seen.insert(*k) {
                            errs.push(FieldError::invalid(
                                &keys_path,
                                keys_value.clone(),
                                "must not contain duplicate entries",
                            ));
                        }
                    }
                }
            }
        }
    }
    // validateMapListKeysMapSet
    let Some(item_schema) = items(s).filter(|_| list_type == "set" || list_type == "map") else {
        return;
    };
    if nullable(item_schema) {
        errs.push(FieldError::forbidden(
            child(&items_path, "nullable"),
            format!("cannot be nullable when x-kubernetes-list-type is {list_type}"),
        ));
    }
    if list_type != "map" {
        return;
    }
    let required: Vec<&str> = array_kw(item_schema, "required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for k in &keys {
        let Some(p) = property(item_schema, k) else {
            continue;
        };
        let prop_path = key(&child(&items_path, "properties"), k);
        if !required.contains(k) && p.get("default").is_none() {
            errs.push(FieldError::required(
                child(&prop_path, "default"),
                "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
            ));
        }
        if nullable(p) {
            errs.push(FieldError::forbidden(
                child(&prop_path, "nullable"),
                "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
            ));
        }
    }
}

/// The shape of `x-kubernetes-validations` rules (the CEL itself is not compiled).
fn validation_rule_errors(s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    const REASONS: [&str; 4] = [
        "FieldValueDuplicate",
        "FieldValueForbidden",
        "FieldValueInvalid",
        "FieldValueRequired",
    ];
    let has_newlines = |t: &str| t.contains(['\n', '\r']);
    for (i, rule) in array_kw(s, "x-kubernetes-validations").iter().enumerate() {
        let rule_path = index(&child(path, "x-kubernetes-validations"), i);
        let field = |name: &str| child(&rule_path, name);
        let text = |name: &str| str_kw(rule, name);
        let expression = text("rule").trim();
        let message = text("message");
        if expression.is_empty() {
            errs.push(FieldError::required(field("rule"), "rule is not specified"));
        } else if !message.is_empty() && message.trim().is_empty() {
            errs.push(FieldError::invalid(
                field("message"),
                Value::from(message),
                "message must be non-empty if specified",
            ));
        } else if has_newlines(message.trim()) {
            errs.push(FieldError::invalid(
                field("message"),
                Value::from(message),
                "message must not contain line breaks",
            ));
        } else if has_newlines(expression) && message.trim().is_empty() {
            errs.push(FieldError::required(
                field("message"),
                "message must be specified if rule contains line breaks",
            ));
        }
        let message_expression = text("messageExpression");
        if !message_expression.is_empty() && message_expression.trim().is_empty() {
            errs.push(FieldError::required(
                field("messageExpression"),
                "messageExpression must be non-empty if specified",
            ));
        }
        if let Some(reason) = rule.get("reason").and_then(Value::as_str)
            && !REASONS.contains(&reason)
        {
            let supported: Vec<String> = REASONS.iter().map(|r| (*r).to_owned()).collect();
            errs.push(FieldError::not_supported(
                field("reason"),
                Value::from(reason),
                &supported,
            ));
        }
        let field_path = text("fieldPath");
        if !field_path.is_empty() && field_path.trim().is_empty() {
            errs.push(FieldError::invalid(
                field("fieldPath"),
                Value::from(field_path),
                "fieldPath must be non-empty if specified",
            ));
        }
        if has_newlines(field_path) {
            errs.push(FieldError::invalid(
                field("fieldPath"),
                Value::from(field_path),
                "fieldPath must not contain line breaks",
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Go text conventions
// ---------------------------------------------------------------------------------------------

/// Go `regexp` (RE2) patterns on top of the `regex` crate.
mod go_regex {
    use regex::Regex;

    /// Compiles a Go pattern; the error is Go's `error parsing regexp: ...` text where the
    /// problem is recognized.
    pub(super) fn compile(pattern: &str) -> Result<Regex, String> {
        Regex::new(&translate(pattern)).map_err(|err| go_error(pattern, &err))
    }

    /// Go's `\d`, `\w`, `\s` and `\b` are ASCII-only where the regex crate's are Unicode-aware.
    fn translate(pattern: &str) -> String {
        let mut out = String::with_capacity(pattern.len());
        let mut chars = pattern.chars();
        let mut in_class = false;
        let mut class_start = false;
        while let Some(c) = chars.next() {
            let was_class_start = class_start;
            class_start = false;
            match c {
                '\\' => {
                    let Some(next) = chars.next() else {
                        out.push(c);
                        break;
                    };
                    match (next, in_class) {
                        ('d', _) => out.push_str("[0-9]"),
                        ('D', _) => out.push_str("[^0-9]"),
                        ('w', _) => out.push_str("[0-9A-Za-z_]"),
                        ('W', _) => out.push_str("[^0-9A-Za-z_]"),
                        ('s', _) => out.push_str("[\\t\\n\\f\\r ]"),
                        ('S', _) => out.push_str("[^\\t\\n\\f\\r ]"),
                        ('b', false) => out.push_str("(?-u:\\b)"),
                        ('B', false) => out.push_str("(?-u:\\B)"),
                        _ => {
                            out.push(c);
                            out.push(next);
                        }
                    }
                }
                '[' if !in_class => {
                    in_class = true;
                    class_start = true;
                    out.push(c);
                }
                '^' if was_class_start => {
                    class_start = true;
                    out.push(c);
                }
                // A `]` right after `[` or `[^` is a literal in Go.
                ']' if in_class && was_class_start => out.push_str("\\]"),
                ']' if in_class => {
                    in_class = false;
                    out.push(c);
                }
                // `[:alpha:]` is a POSIX class in both dialects.
                '[' if chars.clone().next() == Some(':') => {
                    out.push(c);
                    let mut previous = c;
                    for posix in chars.by_ref() {
                        out.push(posix);
                        if previous == ':' && posix == ']' {
                            break;
                        }
                        previous = posix;
                    }
                }
                // Any other `[` in a class is a literal in Go; the regex crate would nest.
                '[' => out.push_str("\\["),
                _ => out.push(c),
            }
        }
        out
    }

    /// Renders a regex-crate error like Go's `regexp/syntax.Error`.
    fn go_error(pattern: &str, err: &regex::Error) -> String {
        let text = err.to_string();
        let kind = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or(text.as_str())
            .trim();
        let fragment_from_caret = || caret_fragment(pattern, &text);
        let (code, fragment) = match kind {
            "repetition operator missing expression" => (
                "missing argument to repetition operator",
                fragment_from_caret(),
            ),
            "unclosed group" => ("missing closing )", pattern.to_owned()),
            "unopened group" => ("unexpected )", pattern.to_owned()),
            "unclosed character class" => ("missing closing ]", fragment_from_caret()),
            "invalid character class range, the start must be <= the end" => {
                ("invalid character class range", fragment_from_caret())
            }
            "incomplete escape sequence, reached end of pattern prematurely" => {
                ("trailing backslash at end of expression", String::new())
            }
            k if k.contains("escape sequence") => {
                ("invalid escape sequence", fragment_from_caret())
            }
            k if k.contains("look-around") => {
                ("invalid or unsupported Perl syntax", fragment_from_caret())
            }
            k if k.contains("repetition") || k.contains("decimal") => {
                ("invalid repeat count", fragment_from_caret())
            }
            other => return format!("error parsing regexp: {other}: `{pattern}`"),
        };
        format!("error parsing regexp: {code}: `{fragment}`")
    }

    /// The part of a single-line pattern the regex crate's error underlines (to its end when the
    /// caret marks only the start).
    fn caret_fragment(pattern: &str, text: &str) -> String {
        let lines: Vec<&str> = text.lines().collect();
        let Some(caret_line) = lines.iter().find(|l| l.trim_start().starts_with('^')) else {
            return pattern.to_owned();
        };
        let indent = caret_line.len() - caret_line.trim_start().len();
        let start = caret_line.find('^').unwrap_or(indent).saturating_sub(4);
        let end = caret_line.rfind('^').unwrap_or(indent).saturating_sub(4);
        let chars: Vec<char> = pattern.chars().collect();
        if pattern.contains('\n') || start >= chars.len() {
            return pattern.to_owned();
        }
        let end = if end > start { end } else { chars.len() - 1 };
        chars[start..=end.min(chars.len() - 1)].iter().collect()
    }
}

/// The string formats the API server validates (kube-openapi's strfmt registry, after
/// apiextensions strips the unsupported ones such as `int32`, `int64`, `float` and `double`).
mod formats {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::LazyLock;

    use regex::Regex;

    const SUPPORTED: [&str; 24] = [
        "bsonobjectid",
        "uri",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "cidr",
        "mac",
        "uuid",
        "uuid3",
        "uuid4",
        "uuid5",
        "isbn",
        "isbn10",
        "isbn13",
        "creditcard",
        "ssn",
        "hexcolor",
        "rgbcolor",
        "byte",
        "password",
        "date",
        "duration",
        "datetime",
    ];

    fn normalize(format: &str) -> String {
        format.replace('-', "")
    }

    /// Whether the API server validates `format` (`date-time` is `datetime`).
    pub(super) fn is_supported(format: &str) -> bool {
        !format.is_empty() && SUPPORTED.contains(&normalize(format).as_str())
    }

    fn pattern(re: &'static LazyLock<Regex>, s: &str) -> bool {
        re.is_match(s)
    }

    macro_rules! regex {
        ($name:ident, $re:expr) => {
            static $name: LazyLock<Regex> =
                LazyLock::new(|| Regex::new($re).expect("constant regex"));
        };
    }

    regex!(
        HOSTNAME,
        r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$"
    );
    regex!(
        UUID,
        r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$"
    );
    regex!(
        UUID3,
        r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$"
    );
    regex!(
        UUID4,
        r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$"
    );
    regex!(
        UUID5,
        r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$"
    );
    regex!(
        BASE64,
        r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$"
    );
    regex!(HEXCOLOR, r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$");
    regex!(
        RGBCOLOR,
        r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$"
    );
    regex!(SSN, r"^\d{3}[- ]?\d{2}[- ]?\d{4}$");
    regex!(
        CREDITCARD,
        r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|(222[1-9]|22[3-9][0-9]|2[3-6][0-9]{2}|27[01][0-9]|2720)[0-9]{12}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35\d{3})\d{11}|6[27][0-9]{14})$"
    );
    regex!(
        TIME_OF_DAY,
        r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$"
    );
    regex!(
        GO_DURATION,
        r"^[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$"
    );
    regex!(LOOSE_DURATION, r"(\d+)\s*([A-Za-zµ]+)");

    /// Whether `s` is valid for a supported `format`.
    pub(super) fn is_valid(format: &str, s: &str) -> bool {
        match normalize(format).as_str() {
            "bsonobjectid" => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
            "uri" => is_request_uri(s),
            "email" => is_email(s),
            "hostname" => is_hostname(s),
            "ipv4" => is_ipv4(s),
            "ipv6" => s.contains(':') && parse_ip(s).is_some(),
            "cidr" => is_cidr(s),
            "mac" => is_mac(s),
            "uuid" => pattern(&UUID, s),
            "uuid3" => pattern(&UUID3, s),
            "uuid4" => pattern(&UUID4, s),
            "uuid5" => pattern(&UUID5, s),
            "isbn" => is_isbn10(s) || is_isbn13(s),
            "isbn10" => is_isbn10(s),
            "isbn13" => is_isbn13(s),
            "creditcard" => is_credit_card(s),
            "ssn" => s.len() == 11 && pattern(&SSN, s),
            "hexcolor" => pattern(&HEXCOLOR, s),
            "rgbcolor" => pattern(&RGBCOLOR, s),
            "byte" => pattern(&BASE64, s),
            "date" => is_date(s),
            "duration" => is_duration(s),
            "datetime" => is_date_time(s),
            _ => true,
        }
    }

    fn is_hostname(s: &str) -> bool {
        pattern(&HOSTNAME, s) && s.len() <= 255 && s.split('.').all(|label| label.len() <= 63)
    }

    /// `time.Parse("2006-01-02", s)`.
    fn is_date(s: &str) -> bool {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return false;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            let part = s.get(r)?;
            part.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| part.parse().ok())?
        };
        let (Some(year), Some(month), Some(day)) = (num(0..4), num(5..7), num(8..10)) else {
            return false;
        };
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return false,
        };
        (1..=days).contains(&day)
    }

    /// strfmt's `IsDateTime`: a date, a `t`, and a time with fraction and zone.
    fn is_date_time(s: &str) -> bool {
        if s.len() < 4 {
            return false;
        }
        let lower = s.to_lowercase();
        let mut parts = lower.split('t');
        let (Some(date), Some(time)) = (parts.next(), parts.next()) else {
            return false;
        };
        if !is_date(date) {
            return false;
        }
        TIME_OF_DAY.captures(time).is_some_and(|c| {
            let field = |i: usize| c.get(i).map_or("", |m| m.as_str());
            field(1) <= "23" && field(2) <= "59" && field(3) <= "59"
        })
    }

    /// strfmt's `IsDuration`: a Go duration, or a number followed by a unit word anywhere (the
    /// last spelling of each unit is a prefix: `seconds`, `hours`, `weeks` all count).
    fn is_duration(s: &str) -> bool {
        const UNITS: [&[&str]; 8] = [
            &["ns", "nano"],
            &["us", "µs", "micro"],
            &["ms", "milli"],
            &["s", "sec"],
            &["m", "min"],
            &["h", "hr", "hour"],
            &["d", "day"],
            &["w", "wk", "week"],
        ];
        if s == "0" || GO_DURATION.is_match(s) {
            return true;
        }
        let known = |unit: &str| {
            UNITS.iter().any(|variants| {
                let last = variants.len() - 1;
                variants.iter().enumerate().any(|(i, v)| {
                    v.eq_ignore_ascii_case(unit) || (i == last && unit.starts_with(v))
                })
            })
        };
        LOOSE_DURATION.captures_iter(s).any(|c| {
            let number = c.get(1).is_some_and(|n| n.as_str().parse::<i64>().is_ok());
            number && c.get(2).is_some_and(|u| known(&u.as_str().to_lowercase()))
        })
    }

    /// `net.ParseIP` as Kubernetes calls it (`ParseIPSloppy`: IPv4 parts may have leading zeros).
    fn parse_ip(s: &str) -> Option<()> {
        if s.contains(':') {
            return s.parse::<Ipv6Addr>().ok().map(|_| ());
        }
        let parts: Vec<&str> = s.split('.').collect();
        let valid = parts.len() == 4
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && p.parse::<u32>().is_ok_and(|n| n <= 255)
            });
        valid.then_some(())
    }

    fn is_ipv4(s: &str) -> bool {
        s.contains('.') && (parse_ip(s).is_some() || s.parse::<Ipv4Addr>().is_ok())
    }

    fn is_cidr(s: &str) -> bool {
        let Some((ip, prefix)) = s.split_once('/') else {
            return false;
        };
        let bits = if ip.contains(':') { 128 } else { 32 };
        parse_ip(ip).is_some()
            && !prefix.is_empty()
            && prefix.bytes().all(|b| b.is_ascii_digit())
            && prefix.parse::<u32>().is_ok_and(|n| n <= bits)
    }

    /// `net.ParseMAC`: 6, 8 or 20 octets as `xx:xx`, `xx-xx` or `xxxx.xxxx`.
    fn is_mac(s: &str) -> bool {
        let b = s.as_bytes();
        if b.len() < 14 {
            return false;
        }
        let hex = |chunk: &[u8]| chunk.iter().all(u8::is_ascii_hexdigit);
        let (group, sep) = if b[2] == b':' || b[2] == b'-' {
            (2, b[2])
        } else if b[4] == b'.' {
            (4, b'.')
        } else {
            return false;
        };
        if !(b.len() + 1).is_multiple_of(group + 1) {
            return false;
        }
        let octets = (b.len() + 1) / (group + 1) * group / 2;
        [6, 8, 20].contains(&octets)
            && b.chunks(group + 1).all(|c| {
                c.len() >= group && hex(&c[..group]) && c.get(group).is_none_or(|b| *b == sep)
            })
    }

    fn isbn_digits(s: &str) -> String {
        s.chars()
            .filter(|c| !(c.is_whitespace() || *c == '-'))
            .collect()
    }

    fn is_isbn10(s: &str) -> bool {
        let d: Vec<u8> = isbn_digits(s).into_bytes();
        if d.len() != 10
            || !d[..9].iter().all(u8::is_ascii_digit)
            || !(d[9].is_ascii_digit() || d[9] == b'X')
        {
            return false;
        }
        let head: u32 = d[..9]
            .iter()
            .zip(1..)
            .map(|(c, w)| w * u32::from(c - b'0'))
            .sum();
        let last = if d[9] == b'X' {
            10
        } else {
            u32::from(d[9] - b'0')
        };
        (head + 10 * last).is_multiple_of(11)
    }

    fn is_isbn13(s: &str) -> bool {
        let d: Vec<u8> = isbn_digits(s).into_bytes();
        if d.len() != 13 || !d.iter().all(u8::is_ascii_digit) {
            return false;
        }
        let sum: u32 = d[..12]
            .iter()
            .enumerate()
            .map(|(i, c)| if i % 2 == 0 { 1 } else { 3 } * u32::from(c - b'0'))
            .sum();
        u32::from(d[12] - b'0') == (10 - sum % 10) % 10
    }

    fn is_credit_card(s: &str) -> bool {
        let digits: String = s.chars().filter(char::is_ascii_digit).collect();
        if !CREDITCARD.is_match(&digits) {
            return false;
        }
        let sum: u32 = digits
            .bytes()
            .rev()
            .enumerate()
            .map(|(i, c)| {
                let n = u32::from(c - b'0');
                match (i % 2 == 1, n * 2) {
                    (true, doubled) if doubled >= 10 => doubled % 10 + 1,
                    (true, doubled) => doubled,
                    (false, _) => n,
                }
            })
            .sum();
        sum.is_multiple_of(10)
    }

    /// `url.ParseRequestURI`: an absolute URI or an absolute path.
    fn is_request_uri(s: &str) -> bool {
        if s.is_empty() || s.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return false;
        }
        if s == "*" {
            return true;
        }
        let Some((scheme, rest)) = split_scheme(s) else {
            return false;
        };
        let rest = rest.split_once('?').map_or(rest, |(path, _)| path);
        if !rest.starts_with('/') {
            return !scheme.is_empty();
        }
        let mut path = rest;
        if !scheme.is_empty() && rest.starts_with("//") && !rest.starts_with("///") {
            let authority_and_path = &rest[2..];
            let end = authority_and_path
                .find('/')
                .unwrap_or(authority_and_path.len());
            let (authority, after) = authority_and_path.split_at(end);
            if !valid_authority(authority) {
                return false;
            }
            path = after;
        }
        valid_escapes(path)
    }

    /// `getScheme`: `None` when the URI starts with `:`.
    fn split_scheme(s: &str) -> Option<(&str, &str)> {
        for (i, c) in s.char_indices() {
            match c {
                'a'..='z' | 'A'..='Z' => {}
                '0'..='9' | '+' | '-' | '.' if i > 0 => {}
                ':' if i == 0 => return None,
                ':' => return Some((&s[..i], &s[i + 1..])),
                _ => return Some(("", s)),
            }
        }
        Some(("", s))
    }

    fn valid_authority(authority: &str) -> bool {
        let (userinfo, host) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let userinfo_ok = userinfo.is_none_or(|u| {
            u.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(c))
        });
        userinfo_ok && valid_host(host)
    }

    fn valid_host(host: &str) -> bool {
        let (name, port) = if let Some(rest) = host.strip_prefix('[') {
            let Some(close) = rest.find(']') else {
                return false;
            };
            (&rest[..close], &rest[close + 1..])
        } else {
            match host.rfind(':') {
                Some(i) => (&host[..i], &host[i..]),
                None => (host, ""),
            }
        };
        let port_ok = port.is_empty()
            || (port.starts_with(':') && port[1..].bytes().all(|b| b.is_ascii_digit()));
        let allowed = |c: char| {
            !c.is_ascii() || c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:[]<>\"%".contains(c)
        };
        port_ok && name.chars().all(allowed) && valid_escapes(name)
    }

    /// Every `%` starts a two-digit hex escape.
    fn valid_escapes(s: &str) -> bool {
        let b = s.as_bytes();
        let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
        let mut i = 0;
        while let Some(&c) = b.get(i) {
            if c != b'%' {
                i += 1;
            } else if hex(i + 1) && hex(i + 2) {
                i += 3;
            } else {
                return false;
            }
        }
        true
    }

    /// `mail.ParseAddress`: `local@domain` or `Name <local@domain>`.
    fn is_email(s: &str) -> bool {
        let s = s.trim();
        let addr = match (s.rfind('<'), s.ends_with('>')) {
            (Some(open), true) => &s[open + 1..s.len() - 1],
            (None, false) => s,
            _ => return false,
        };
        let Some((local, domain)) = addr.rsplit_once('@') else {
            return false;
        };
        let atext = |c: char| {
            !c.is_ascii() || c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
        };
        let dot_atom = |t: &str| {
            !t.is_empty()
                && t.split('.')
                    .all(|part| !part.is_empty() && part.chars().all(atext))
        };
        let quoted = |t: &str| t.len() >= 2 && t.starts_with('"') && t.ends_with('"');
        let literal = |t: &str| t.starts_with('[') && t.ends_with(']');
        (dot_atom(local) || quoted(local)) && (dot_atom(domain) || literal(domain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const P: &str = "spec.versions[0].schema.openAPIV3Schema";

    /// An EdgeApplication schema as a controller-gen user would write it.
    fn edge_schema() -> Value {
        json!({
            "type": "object",
            "description": "EdgeApplication runs an app on an edge node.",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "required": ["edgeNodeId"],
                    "properties": {
                        "appId": {"type": "string", "format": "uuid"},
                        "edgeNodeId": {"type": "string", "minLength": 3, "maxLength": 20, "pattern": "^[a-z0-9-]+$"},
                        "replicas": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 10, "default": 1},
                        "endpoint": {
                            "type": "object",
                            "required": ["host"],
                            "default": {"host": "localhost"},
                            "properties": {
                                "host": {"type": "string", "format": "hostname"},
                                "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 8080},
                                "protocol": {"type": "string", "enum": ["TCP", "UDP"], "default": "TCP"}
                            }
                        },
                        "weight": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "multipleOf": 0.5},
                        "maxSurge": {
                            "x-kubernetes-int-or-string": true,
                            "anyOf": [{"type": "integer"}, {"type": "string"}],
                            "pattern": "^[0-9]+%?$"
                        },
                        "tags": {"type": "array", "maxItems": 3, "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                        "labels": {"type": "object", "maxProperties": 2, "additionalProperties": {"type": "string", "maxLength": 10}},
                        "config": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": true,
                            "properties": {"mode": {"type": "string"}}
                        },
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
                        "ports": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["port", "protocol"],
                            "items": {
                                "type": "object",
                                "required": ["port"],
                                "properties": {
                                    "port": {"type": "integer"},
                                    "protocol": {"type": "string", "default": "TCP"},
                                    "name": {"type": "string", "nullable": true}
                                }
                            }
                        },
                        "notes": {"type": "string", "nullable": true},
                        "expiresAt": {"type": "string", "format": "date-time"}
                    }
                },
                "status": {
                    "type": "object",
                    "properties": {
                        "conditions": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["type"],
                            "items": {
                                "type": "object",
                                "required": ["type", "status"],
                                "properties": {
                                    "type": {"type": "string"},
                                    "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                                    "message": {"type": "string"}
                                }
                            }
                        }
                    }
                }
            }
        })
    }

    fn app(spec: Value) -> Value {
        json!({
            "apiVersion": "edge.example.com/v1",
            "kind": "EdgeApplication",
            "metadata": {"name": "app1", "namespace": "default"},
            "spec": spec
        })
    }

    fn msgs(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    fn check(schema: Value) -> Vec<String> {
        msgs(&check_structural(&schema, P))
    }

    fn validate_spec(spec: Value) -> Vec<String> {
        let schema = edge_schema();
        msgs(&validate(&app(spec), Node::new(&schema, None)))
    }

    fn with_property(name: &str, prop: Value) -> Value {
        json!({"type": "object", "properties": {name: prop}})
    }

    // --- check_structural -------------------------------------------------------------------

    #[test]
    fn realistic_schema_is_accepted() {
        assert_eq!(check(edge_schema()), Vec::<String>::new());
    }

    #[test]
    fn missing_types_are_required_per_level() {
        let schema = json!({
            "properties": {
                "spec": {"properties": {"a": {"type": "string"}}},
                "list": {"type": "array", "items": {"properties": {}}},
                "blob": {"x-kubernetes-preserve-unknown-fields": true},
                "port": {"x-kubernetes-int-or-string": true}
            }
        });
        assert_eq!(
            check(schema),
            [
                format!(
                    "{P}.properties[list].items.type: Required value: must not be empty for specified array items"
                ),
                format!(
                    "{P}.properties[spec].type: Required value: must not be empty for specified object fields"
                ),
                format!("{P}.type: Required value: must not be empty at the root"),
            ]
        );
    }

    #[test]
    fn root_must_be_a_non_nullable_object_without_additional_properties() {
        assert_eq!(
            check(json!({"type": "integer"})),
            [format!(
                "{P}.type: Invalid value: \"integer\": must be object at the root"
            )]
        );
        assert_eq!(
            check(
                json!({"type": "object", "nullable": true, "additionalProperties": {"type": "string"}})
            ),
            [
                format!("{P}.nullable: Forbidden: nullable cannot be true at the root"),
                format!("{P}.additionalProperties: Forbidden: must not be used at the root"),
            ]
        );
    }

    #[test]
    fn root_metadata_may_only_restrict_name_and_generate_name() {
        let name_only =
            json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}});
        assert_eq!(
            check(with_property("metadata", name_only)),
            Vec::<String>::new()
        );
        let labels = json!({"type": "object", "properties": {"labels": {"type": "object"}}});
        assert_eq!(
            check(with_property("metadata", labels)),
            [format!(
                "{P}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, \
                 but metadata is implicitly specified"
            )]
        );
        let described = json!({"type": "object", "description": "standard object metadata"});
        assert_eq!(check(with_property("metadata", described)).len(), 1);
        let with_default = json!({"type": "object", "default": {"labels": {"a": "b"}}});
        assert_eq!(
            check(with_property("metadata", with_default)),
            [format!(
                "{P}.properties[metadata].default: Forbidden: must not be set in top-level metadata"
            )]
        );
    }

    #[test]
    fn int_or_string_rules() {
        let preserve = json!({"x-kubernetes-int-or-string": true, "x-kubernetes-preserve-unknown-fields": true});
        assert_eq!(
            check(with_property("port", preserve)),
            [format!(
                "{P}.properties[port].x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false if \
                 x-kubernetes-int-or-string is true"
            )]
        );
        // The real server accepts a type beside the extension (validation then uses integer|string).
        let typed = json!({"type": "string", "x-kubernetes-int-or-string": true});
        assert_eq!(check(with_property("port", typed)), Vec::<String>::new());
        // Only the exact anyOf [integer, string] may carry types inside a junctor.
        let reordered = json!({"x-kubernetes-int-or-string": true, "anyOf": [{"type": "string"}, {"type": "integer"}]});
        assert_eq!(
            check(with_property("port", reordered)),
            [
                format!(
                    "{P}.properties[port].anyOf[0].type: Forbidden: must be empty to be structural"
                ),
                format!(
                    "{P}.properties[port].anyOf[1].type: Forbidden: must be empty to be structural"
                ),
            ]
        );
        let wrapped = json!({
            "x-kubernetes-int-or-string": true,
            "allOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}, {"pattern": "^[0-9]+$"}]
        });
        assert_eq!(check(with_property("port", wrapped)), Vec::<String>::new());
    }

    #[test]
    fn junctors_must_not_define_structure() {
        let schema = json!({
            "type": "object",
            "properties": {"a": {"type": "string"}},
            "allOf": [{"properties": {"a": {"type": "string", "description": "x", "nullable": true}}}],
            "anyOf": [{"properties": {"b": {}}}],
            "not": {"properties": {"metadata": {}}}
        });
        assert_eq!(
            check(schema),
            [
                format!(
                    "{P}.allOf[0].properties[a].description: Forbidden: must be empty to be structural"
                ),
                format!(
                    "{P}.allOf[0].properties[a].nullable: Forbidden: must be false to be structural"
                ),
                format!(
                    "{P}.allOf[0].properties[a].type: Forbidden: must be empty to be structural"
                ),
                format!(
                    "{P}.not.properties[metadata]: Forbidden: must not be specified in a nested context"
                ),
                format!(
                    "{P}.properties[b]: Required value: because it is defined in {P}.anyOf[0].properties[b]"
                ),
                format!(
                    "{P}.properties[metadata]: Required value: because it is defined in {P}.not.properties[metadata]"
                ),
            ]
        );
    }

    #[test]
    fn arrays_need_items_and_patterns_must_compile() {
        let schema = json!({
            "type": "object",
            "properties": {"list": {"type": "array"}, "name": {"type": "string", "pattern": "+"}}
        });
        assert_eq!(
            check(schema),
            [
                format!("{P}.properties[list].items: Required value: must be specified"),
                format!(
                    "{P}.properties[name].pattern: Invalid value: \"+\": must be a valid regular expression, but \
                     isn't: error parsing regexp: missing argument to repetition operator: `+`"
                ),
            ]
        );
    }

    #[test]
    fn embedded_resources_need_object_type_and_fields() {
        assert_eq!(
            check(with_property(
                "t",
                json!({"type": "object", "x-kubernetes-embedded-resource": true})
            )),
            [format!(
                "{P}.properties[t].properties: Required value: must not be empty if x-kubernetes-embedded-resource is \
                 true without x-kubernetes-preserve-unknown-fields"
            )]
        );
        let array = json!({"type": "array", "items": {"type": "string"}, "x-kubernetes-embedded-resource": true,
                           "x-kubernetes-preserve-unknown-fields": true});
        assert_eq!(
            check(with_property("t", array)),
            [format!(
                "{P}.properties[t].type: Invalid value: \"array\": must be object if x-kubernetes-embedded-resource is true"
            )]
        );
    }

    #[test]
    fn unsupported_keywords_are_forbidden() {
        let schema = json!({
            "type": "object",
            "properties": {
                "a": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
                "b": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": {"type": "string"}},
                "c": {"$ref": "#/definitions/c"},
                "d": {"type": "null"},
                "e": {"type": "object", "x-kubernetes-preserve-unknown-fields": false}
            }
        });
        assert_eq!(
            check(schema),
            [
                format!(
                    "{P}.properties[a].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime \
                     complexity becomes quadratic"
                ),
                format!(
                    "{P}.properties[b].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
                ),
                format!("{P}.properties[c].$ref: Forbidden: $ref is not supported"),
                format!(
                    "{P}.properties[d].type: Unsupported value: \"null\": supported values: \"array\", \"boolean\", \
                     \"integer\", \"number\", \"object\", \"string\""
                ),
                format!(
                    "{P}.properties[d].type: Forbidden: type cannot be set to null, use nullable as an alternative"
                ),
                format!(
                    "{P}.properties[e].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined"
                ),
            ]
        );
    }

    #[test]
    fn list_map_needs_keys_that_are_required_scalars() {
        let no_keys = json!({"type": "array", "x-kubernetes-list-type": "map",
                             "items": {"type": "object", "properties": {"name": {"type": "string"}}}});
        assert_eq!(
            check(with_property("ports", no_keys)),
            [format!(
                "{P}.properties[ports].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"
            )]
        );
        let bad_keys = json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name", "nope"],
                              "items": {"type": "object", "properties": {"name": {"type": "string"}}}});
        assert_eq!(
            check(with_property("ports", bad_keys)),
            [
                format!(
                    "{P}.properties[ports].x-kubernetes-list-map-keys: Invalid value: [\"name\",\"nope\"]: entries must \
                     all be names of item properties"
                ),
                format!(
                    "{P}.properties[ports].items.properties[name].default: Required value: this property is in \
                     x-kubernetes-list-map-keys, so it must have a default or be a required property"
                ),
            ]
        );
        let not_array = json!({"type": "object", "x-kubernetes-list-type": "set", "x-kubernetes-map-type": "weird"});
        assert_eq!(
            check(with_property("x", not_array)),
            [
                format!(
                    "{P}.properties[x].x-kubernetes-map-type: Unsupported value: \"weird\": supported values: \"atomic\", \"granular\""
                ),
                format!(
                    "{P}.properties[x].type: Invalid value: \"object\": must be array if x-kubernetes-list-type is specified"
                ),
            ]
        );
        let object_set =
            json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "object"}});
        assert_eq!(
            check(with_property("x", object_set)),
            [format!(
                "{P}.properties[x].items.x-kubernetes-map-type: Invalid value: null: must be atomic as item of a list with x-kubernetes-list-type=set"
            )]
        );
    }

    #[test]
    fn defaults_must_validate_and_be_pruned() {
        let wrong_type = json!({"type": "string", "enum": ["On", "Off"], "default": true});
        assert_eq!(
            check(with_property("power", wrong_type)),
            [
                format!(
                    "{P}.properties[power].default: Invalid value: \"boolean\":  in body must be of type string: \"boolean\""
                ),
                format!(
                    "{P}.properties[power].default: Unsupported value: true: supported values: \"On\", \"Off\""
                ),
            ]
        );
        let out_of_range = json!({"type": "integer", "maximum": 65535, "default": 70000});
        assert_eq!(
            check(with_property("port", out_of_range)),
            [format!(
                "{P}.properties[port].default: Invalid value: 70000:  in body should be less than or equal to 65535"
            )]
        );
        let unknown = json!({"type": "object", "properties": {"host": {"type": "string"}}, "default": {"host": "h", "extra": 1}});
        assert_eq!(
            check(with_property("endpoint", unknown)),
            [format!(
                "{P}.properties[endpoint].default: Invalid value: {{\"extra\":1,\"host\":\"h\"}}: must not have unknown fields"
            )]
        );
        let missing_required = json!({"type": "object", "required": ["host"], "properties": {"host": {"type": "string"}}, "default": {}});
        assert_eq!(
            check(with_property("endpoint", missing_required)),
            [format!(
                "{P}.properties[endpoint].default.host: Required value"
            )]
        );
    }

    #[test]
    fn structural_errors_hide_default_errors_and_unsupported_fields_hide_structural_ones() {
        let schema =
            json!({"type": "object", "properties": {"a": {"default": 5, "properties": {}}}});
        assert_eq!(
            check(schema),
            [format!(
                "{P}.properties[a].type: Required value: must not be empty for specified object fields"
            )]
        );
        let schema = json!({"properties": {"a": {"patternProperties": {"x": {"type": "string"}}}}});
        assert_eq!(
            check(schema),
            [format!(
                "{P}.properties[a].patternProperties: Forbidden: patternProperties is not supported"
            )]
        );
    }

    #[test]
    fn validation_rules_are_checked_for_shape_only() {
        let rules = json!({"type": "string", "x-kubernetes-validations": [
            {"rule": "self.size() > 1"},
            {"rule": "  "},
            {"rule": "self != ''", "reason": "Nope"}
        ]});
        assert_eq!(
            check(with_property("a", rules)),
            [
                format!(
                    "{P}.properties[a].x-kubernetes-validations[1].rule: Required value: rule is not specified"
                ),
                format!(
                    "{P}.properties[a].x-kubernetes-validations[2].reason: Unsupported value: \"Nope\": supported values: \
                     \"FieldValueDuplicate\", \"FieldValueForbidden\", \"FieldValueInvalid\", \"FieldValueRequired\""
                ),
            ]
        );
    }

    // --- prune ------------------------------------------------------------------------------

    #[test]
    fn prune_drops_unknown_fields_and_reports_sorted_paths() {
        let schema = edge_schema();
        let mut obj = app(json!({
            "edgeNodeId": "node-1",
            "bogus": true,
            "endpoint": {"host": "h", "extra": {"deep": 1}},
            "labels": {"a": "b"},
            "config": {"mode": "fast", "anything": {"goes": [1, 2]}},
            "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "junk": 1}, "spec": {"x": 1}}
        }));
        obj["metadata"]["bogus"] = json!(1);
        obj["status"] = json!({"conditions": [{"type": "Ready", "status": "True", "junk": 1}]});
        obj["unknownTop"] = json!("x");
        let pruned = prune(&mut obj, Node::new(&schema, None));
        assert_eq!(
            pruned,
            [
                "metadata.bogus",
                "spec.bogus",
                "spec.endpoint.extra",
                "spec.template.metadata.junk",
                "status.conditions[0].junk",
                "unknownTop"
            ]
        );
        assert_eq!(
            obj["metadata"],
            json!({"name": "app1", "namespace": "default"})
        );
        assert_eq!(obj["spec"]["endpoint"], json!({"host": "h"}));
        assert_eq!(obj["spec"]["labels"], json!({"a": "b"}));
        assert_eq!(
            obj["spec"]["config"],
            json!({"mode": "fast", "anything": {"goes": [1, 2]}})
        );
        assert_eq!(
            obj["spec"]["template"],
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": 1}})
        );
        assert_eq!(
            obj["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}])
        );
        assert_eq!(obj["apiVersion"], "edge.example.com/v1");
    }

    #[test]
    fn prune_inside_preserved_subtree_still_prunes_known_objects() {
        let schema = with_property(
            "config",
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                   "properties": {"inner": {"type": "object", "properties": {"a": {"type": "string"}}}}}),
        );
        let mut obj = json!({"config": {"free": 1, "inner": {"a": "x", "b": "y"}}});
        assert_eq!(
            prune(&mut obj, Node::new(&schema, None)),
            ["config.inner.b"]
        );
        assert_eq!(obj, json!({"config": {"free": 1, "inner": {"a": "x"}}}));
    }

    #[test]
    fn prune_with_additional_properties_true_keeps_keys_but_not_their_contents() {
        let schema = with_property("m", json!({"type": "object", "additionalProperties": true}));
        let mut obj = json!({"m": {"k": {"nested": 1}, "s": "v"}});
        assert_eq!(prune(&mut obj, Node::new(&schema, None)), ["m.k.nested"]);
        assert_eq!(obj, json!({"m": {"k": {}, "s": "v"}}));
    }

    #[test]
    fn prune_without_schema_keeps_only_type_and_object_meta() {
        let mut obj =
            json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a"}, "spec": {"a": 1}});
        assert_eq!(prune(&mut obj, Node::unknown()), ["spec"]);
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a"}})
        );
    }

    // --- apply_defaults ---------------------------------------------------------------------

    #[test]
    fn defaults_fill_missing_fields_recursively() {
        let schema = edge_schema();
        let mut obj = app(
            json!({"edgeNodeId": "node-1", "replicas": 3, "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}),
        );
        apply_defaults(&mut obj, Node::new(&schema, None));
        assert_eq!(obj["spec"]["replicas"], 3);
        assert_eq!(
            obj["spec"]["endpoint"],
            json!({"host": "localhost", "port": 8080, "protocol": "TCP"})
        );
        assert_eq!(
            obj["spec"]["ports"],
            json!([{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}])
        );
        let mut partial = app(json!({"endpoint": {"host": "h", "protocol": "UDP"}}));
        apply_defaults(&mut partial, Node::new(&schema, None));
        assert_eq!(
            partial["spec"]["endpoint"],
            json!({"host": "h", "protocol": "UDP", "port": 8080})
        );
        assert_eq!(partial["spec"]["replicas"], 1);
    }

    #[test]
    fn defaults_replace_or_drop_non_nullable_nulls() {
        let schema = edge_schema();
        let mut obj = app(
            json!({"replicas": null, "appId": null, "notes": null, "ports": [{"port": 1, "protocol": null}]}),
        );
        apply_defaults(&mut obj, Node::new(&schema, None));
        let spec = &obj["spec"];
        assert_eq!(spec["replicas"], 1, "null with a default is defaulted");
        assert!(
            spec.get("appId").is_none(),
            "null without a default is dropped"
        );
        assert_eq!(spec["notes"], Value::Null, "nullable null is kept");
        assert_eq!(spec["ports"], json!([{"port": 1, "protocol": "TCP"}]));
    }

    #[test]
    fn defaults_apply_to_additional_properties_and_items() {
        let schema = json!({"type": "object", "properties": {
            "byName": {"type": "object", "additionalProperties": {"type": "object", "properties": {"n": {"type": "integer", "default": 2}}}},
            "levels": {"type": "array", "items": {"type": "string", "default": "info"}}
        }});
        let mut obj = json!({"byName": {"a": {}, "b": {"n": 5}}, "levels": ["debug", null]});
        apply_defaults(&mut obj, Node::new(&schema, None));
        assert_eq!(
            obj,
            json!({"byName": {"a": {"n": 2}, "b": {"n": 5}}, "levels": ["debug", "info"]})
        );
    }

    // --- validate ---------------------------------------------------------------------------

    #[test]
    fn valid_object_has_no_errors() {
        let spec = json!({
            "appId": "0f8fad5b-d9cb-469f-a165-70867728950e",
            "edgeNodeId": "node-1",
            "replicas": 2.0,
            "endpoint": {"host": "edge.example.com", "port": 443, "protocol": "UDP"},
            "weight": 1.5,
            "maxSurge": "25%",
            "tags": ["a", "b"],
            "labels": {"tier": "edge"},
            "template": {"apiVersion": "apps/v1", "kind": "Deployment"},
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 80, "protocol": "UDP"}],
            "notes": null,
            "expiresAt": "2030-01-02T03:04:05.123Z"
        });
        assert_eq!(validate_spec(spec), Vec::<String>::new());
    }

    #[test]
    fn type_errors_name_the_actual_type() {
        let errs = validate(
            &app(json!({"edgeNodeId": "node-1", "replicas": "two"})),
            Node::new(&edge_schema(), None),
        );
        assert_eq!(
            msgs(&errs),
            [
                "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""
            ]
        );
        assert_eq!(errs[0].reason(), "FieldValueTypeInvalid");
        assert_eq!(
            errs[0].body(),
            "Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""
        );
        assert_eq!(
            validate_spec(json!({"edgeNodeId": "node-1", "replicas": 2.5})),
            [
                "spec.replicas: Invalid value: \"number\": spec.replicas in body must be of type integer: \"number\""
            ]
        );
        assert_eq!(
            validate_spec(json!({"edgeNodeId": null})),
            [
                "spec.edgeNodeId: Invalid value: \"null\": spec.edgeNodeId in body must be of type string: \"null\""
            ]
        );
    }

    #[test]
    fn required_and_enum_errors() {
        let errs = validate(
            &app(json!({"endpoint": {"protocol": "SCTP"}})),
            Node::new(&edge_schema(), None),
        );
        assert_eq!(
            msgs(&errs),
            [
                "spec.endpoint.protocol: Unsupported value: \"SCTP\": supported values: \"TCP\", \"UDP\"",
                "spec.endpoint.host: Required value",
                "spec.edgeNodeId: Required value",
            ]
        );
        let reasons: Vec<&str> = errs.iter().map(FieldError::reason).collect();
        assert_eq!(
            reasons,
            [
                "FieldValueNotSupported",
                "FieldValueRequired",
                "FieldValueRequired"
            ]
        );
    }

    #[test]
    fn numeric_bounds_and_multiples() {
        assert_eq!(
            validate_spec(
                json!({"edgeNodeId": "n-1", "endpoint": {"host": "h", "port": 70000}, "replicas": -1})
            ),
            [
                "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0",
                "spec.endpoint.port: Invalid value: 70000: spec.endpoint.port in body should be less than or equal to 65535",
            ]
        );
        assert_eq!(
            validate_spec(json!({"edgeNodeId": "n-1", "weight": 0})),
            ["spec.weight: Invalid value: 0: spec.weight in body should be greater than 0"]
        );
        assert_eq!(
            validate_spec(json!({"edgeNodeId": "n-1", "weight": 0.7})),
            ["spec.weight: Invalid value: 0.7: spec.weight in body should be a multiple of 0.5"]
        );
        let schema = with_property(
            "n",
            json!({"type": "number", "maximum": 1000000, "multipleOf": 3}),
        );
        assert_eq!(
            msgs(&validate(
                &json!({"n": 2000000.5}),
                Node::new(&schema, None)
            )),
            [
                "n: Invalid value: 2.0000005e+06: n in body should be a multiple of 3",
                "n: Invalid value: 2.0000005e+06: n in body should be less than or equal to 1e+06",
            ]
        );
        assert_eq!(
            msgs(&validate(&json!({"n": 7}), Node::new(&schema, None))),
            ["n: Invalid value: 7: n in body should be a multiple of 3"]
        );
    }

    #[test]
    fn string_length_pattern_and_format() {
        let errs = validate(
            &app(json!({"edgeNodeId": "n".repeat(21)})),
            Node::new(&edge_schema(), None),
        );
        assert_eq!(
            msgs(&errs),
            ["spec.edgeNodeId: Too long: may not be more than 20 bytes"]
        );
        assert_eq!(errs[0].reason(), "FieldValueTooLong");
        assert_eq!(
            validate_spec(json!({"edgeNodeId": "ab"})),
            [
                "spec.edgeNodeId: Invalid value: \"ab\": spec.edgeNodeId in body should be at least 3 chars long"
            ]
        );
        assert_eq!(
            validate_spec(json!({"edgeNodeId": "Node_1"})),
            [
                "spec.edgeNodeId: Invalid value: \"Node_1\": spec.edgeNodeId in body should match '^[a-z0-9-]+$'"
            ]
        );
        assert_eq!(
            validate_spec(
                json!({"edgeNodeId": "n-1", "appId": "nope", "expiresAt": "2030-02-30T00:00:00Z", "endpoint": {"host": "-bad-"}})
            ),
            [
                "spec.appId: Invalid value: \"nope\": spec.appId in body must be of type uuid: \"nope\"",
                "spec.endpoint.host: Invalid value: \"-bad-\": spec.endpoint.host in body must be of type hostname: \"-bad-\"",
                "spec.expiresAt: Invalid value: \"2030-02-30T00:00:00Z\": spec.expiresAt in body must be of type date-time: \"2030-02-30T00:00:00Z\"",
            ]
        );
    }

    #[test]
    fn int_or_string_accepts_both_and_reports_anyof_failures() {
        assert_eq!(
            validate_spec(json!({"edgeNodeId": "n-1", "maxSurge": 3})),
            Vec::<String>::new()
        );
        assert_eq!(
            validate_spec(json!({"edgeNodeId": "n-1", "maxSurge": "abc"})),
            [
                "spec.maxSurge: Invalid value: \"abc\": spec.maxSurge in body should match '^[0-9]+%?$'"
            ]
        );
        let errs = validate(
            &app(json!({"edgeNodeId": "n-1", "maxSurge": true})),
            Node::new(&edge_schema(), None),
        );
        assert_eq!(
            msgs(&errs),
            [
                "spec.maxSurge: Invalid value: \"boolean\": spec.maxSurge in body must be of type integer,string: \"boolean\"",
                "<nil>: Invalid value: \"\": \"spec.maxSurge\" must validate at least one schema (anyOf)",
                "spec.maxSurge: Invalid value: \"boolean\": spec.maxSurge in body must be of type integer: \"boolean\"",
            ]
        );
    }

    #[test]
    fn lists_and_maps_sizes_and_uniqueness() {
        let errs = validate(
            &app(
                json!({"edgeNodeId": "n-1", "tags": ["a", "b", "a", "a"], "labels": {"a": "1", "b": "2", "c": "3"}}),
            ),
            Node::new(&edge_schema(), None),
        );
        assert_eq!(
            msgs(&errs),
            [
                "spec.tags: Too many: 4: must have at most 3 items",
                "spec.labels: Too many: 3: must have at most 2 items",
                "spec.tags[2]: Duplicate value: \"a\"",
            ]
        );
        assert_eq!(errs[0].reason(), "FieldValueTooMany");
        assert_eq!(errs[2].reason(), "FieldValueDuplicate");
        assert_eq!(
            validate_spec(json!({"edgeNodeId": "n-1", "labels": {"a": "0123456789x"}})),
            ["spec.labels.a: Too long: may not be more than 10 bytes"]
        );
    }

    #[test]
    fn list_map_keys_must_be_unique() {
        let mut obj = app(
            json!({"edgeNodeId": "n-1", "ports": [{"port": 80, "protocol": "TCP"}, {"protocol": "TCP", "port": 80}, "x"]}),
        );
        obj["status"] = json!({"conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "Ready", "status": "Maybe"}
        ]});
        assert_eq!(
            msgs(&validate(&obj, Node::new(&edge_schema(), None))),
            [
                "spec.ports[2]: Invalid value: \"string\": spec.ports[2] in body must be of type object: \"string\"",
                "status.conditions[1].status: Unsupported value: \"Maybe\": supported values: \"True\", \"False\", \"Unknown\"",
                "spec.ports[2]: Invalid value: \"x\": must be an object for an array of list-type map",
                "status.conditions[1]: Duplicate value: {\"type\":\"Ready\"}",
            ]
        );
        obj["spec"]["ports"] =
            json!([{"port": 80, "protocol": "TCP"}, {"protocol": "TCP", "port": 80}]);
        obj["status"] = json!({});
        assert_eq!(
            msgs(&validate(&obj, Node::new(&edge_schema(), None))),
            ["spec.ports[1]: Duplicate value: {\"port\":80,\"protocol\":\"TCP\"}"]
        );
    }

    #[test]
    fn embedded_resources_need_api_version_and_kind() {
        assert_eq!(
            validate_spec(
                json!({"edgeNodeId": "n-1", "template": {"apiVersion": "a/b/c", "kind": "My_Kind", "spec": {}}})
            ),
            [
                "spec.template.apiVersion: Invalid value: \"a/b/c\": unexpected GroupVersion string: a/b/c",
                "spec.template.kind: Invalid value: \"My_Kind\": may have mixed case, but should otherwise match: a \
                 DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic \
                 character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for \
                 validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
            ]
        );
        assert_eq!(
            validate_spec(json!({"edgeNodeId": "n-1", "template": {"metadata": {"name": "x"}}})),
            [
                "spec.template.apiVersion: Required value",
                "spec.template.kind: Required value"
            ]
        );
    }

    #[test]
    fn junctors_report_composite_errors_without_a_path() {
        let schema = json!({"type": "object", "properties": {
            "one": {"type": "integer", "oneOf": [{"minimum": 0}, {"maximum": 10}]},
            "all": {"type": "string", "allOf": [{"minLength": 2}, {"maxLength": 3}]},
            "not": {"type": "string", "not": {"enum": ["forbidden"]}}
        }});
        let errs = validate(
            &json!({"one": 5, "all": "abcd", "not": "forbidden"}),
            Node::new(&schema, None),
        );
        assert_eq!(
            msgs(&errs),
            [
                "<nil>: Invalid value: \"\": \"one\" must validate one and only one schema (oneOf). Found 2 valid alternatives",
                "all: Too long: may not be more than 3 bytes",
                "<nil>: Invalid value: \"\": \"all\" must validate all the schemas (allOf)",
                "<nil>: Invalid value: \"\": \"not\" must not validate the schema (not)",
            ]
        );
    }

    #[test]
    fn closed_objects_unique_items_and_property_counts() {
        let schema = json!({"type": "object", "properties": {
            "closed": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false},
            "uniq": {"type": "array", "items": {"type": "integer"}, "uniqueItems": true, "minItems": 5},
            "few": {"type": "object", "minProperties": 2, "properties": {"a": {"type": "integer"}}}
        }});
        let obj =
            json!({"closed": {"a": "x", "b": "y"}, "uniq": [1, 1], "few": {"a": "not-checked"}});
        assert_eq!(
            msgs(&validate(&obj, Node::new(&schema, None))),
            [
                "closed: Invalid value: \"b\": closed.b in body is a forbidden property",
                "uniq: Invalid value: 2: uniq in body should have at least 5 items",
                "uniq: Invalid value: \"\": uniq in body shouldn't contain duplicates",
                "few: Invalid value: 1: few in body should have at least 2 properties",
            ]
        );
    }

    #[test]
    fn enum_comparison_follows_go_conversions() {
        let schema = with_property("n", json!({"enum": [1, 2.5, "x"]}));
        let ok = |v: Value| validate(&json!({"n": v}), Node::new(&schema, None)).is_empty();
        assert!(ok(json!(1)));
        assert!(ok(json!(1.0)));
        assert!(ok(json!(2.5)));
        assert!(
            ok(json!(120)),
            "an integer converts to the string of its code point ('x')"
        );
        assert!(!ok(json!("1")));
        assert!(!ok(json!(2)));
        assert_eq!(
            msgs(&validate(&json!({"n": null}), Node::new(&schema, None))),
            ["n: Unsupported value: null: supported values: \"1\", \"2.5\", \"x\""]
        );
    }

    // --- rendering and formats --------------------------------------------------------------

    #[test]
    fn go_rendering_of_values() {
        assert_eq!(gofmt::float(65535.0), "65535");
        assert_eq!(gofmt::float(1e6), "1e+06");
        assert_eq!(gofmt::float(0.5), "0.5");
        assert_eq!(gofmt::float(0.00001), "1e-05");
        assert_eq!(gofmt::float(-1234.25), "-1234.25");
        assert_eq!(
            gofmt::json(&json!({"b": [1, 2.5, 1e21, 1e-7], "a": "<&>"})),
            r#"{"a":"\u003c\u0026\u003e","b":[1,2.5,1e+21,1e-7]}"#
        );
        assert_eq!(gofmt::quote("a\"b\n\u{7f}é"), r#""a\"b\n\x7fé""#);
    }

    #[test]
    fn go_regex_dialect() {
        let re = go_regex::compile(r"^\d+\s\w$").expect("valid");
        assert!(re.is_match("12 a"));
        assert!(!re.is_match("١٢ a"), "\\d is ASCII-only in Go");
        assert!(
            go_regex::compile("^[[:alpha:]]+$")
                .expect("posix class")
                .is_match("abc")
        );
        assert!(
            go_regex::compile("^[]a]+$")
                .expect("leading ]")
                .is_match("]a")
        );
        assert_eq!(
            go_regex::compile("(abc").map(|_| ()),
            Err("error parsing regexp: missing closing ): `(abc`".to_owned())
        );
    }

    #[test]
    fn string_formats() {
        let cases: [(&str, &str, bool); 30] = [
            ("uuid", "0F8FAD5B-D9CB-469F-A165-70867728950E", true),
            ("uuid", "0f8fad5b-d9cb", false),
            ("date", "2024-02-29", true),
            ("date", "2023-02-29", false),
            ("date-time", "2024-01-01T10:00:00+02:00", true),
            ("date-time", "2024-01-01 10:00:00", false),
            ("hostname", "edge-01.example.com", true),
            ("hostname", "under_score.com", false),
            ("ipv4", "010.1.2.3", true),
            ("ipv4", "1.2.3.256", false),
            ("ipv6", "fe80::1", true),
            ("ipv6", "1.2.3.4", false),
            ("cidr", "10.0.0.0/8", true),
            ("cidr", "10.0.0.0/33", false),
            ("uri", "https://example.com:8443/a?b=c", true),
            ("uri", "relative/path", false),
            ("email", "Ops <ops@example.com>", true),
            ("email", "ops.example.com", false),
            ("byte", "aGVsbG8=", true),
            ("byte", "not base64", false),
            ("mac", "00:1a:2b:3c:4d:5e", true),
            ("mac", "00:1a:2b:3c:4d", false),
            ("duration", "1h30m", true),
            ("duration", "soon", false),
            ("isbn", "978-0321751041", true),
            ("creditcard", "4111 1111 1111 1111", true),
            ("creditcard", "4111 1111 1111 1112", false),
            ("hexcolor", "#FFF", true),
            ("int32", "anything: not validated", true),
            ("password", "", true),
        ];
        for (format, value, valid) in cases {
            assert_eq!(
                !formats::is_supported(format) || formats::is_valid(format, value),
                valid,
                "{format} {value:?}"
            );
        }
    }

    #[test]
    fn integer_formats_are_not_validated() {
        let schema = with_property("n", json!({"type": "integer", "format": "int32"}));
        assert!(validate(&json!({"n": 9_000_000_000_i64}), Node::new(&schema, None)).is_empty());
        let schema = with_property("s", json!({"type": "string", "format": "uuid"}));
        assert_eq!(
            msgs(&validate(&json!({"s": 5}), Node::new(&schema, None))),
            ["s: Invalid value: \"int64\": s in body must be of type uuid: \"int64\""]
        );
    }
}
