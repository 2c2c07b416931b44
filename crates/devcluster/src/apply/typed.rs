//! Schema-aware walks over objects (structured-merge-diff's `typed` package): which paths a value
//! sets, how two values differ, and whether a value fits its list types.
//!
//! A position is read from the value and the schema together: objects are maps (granular unless
//! `x-kubernetes-map-type: atomic`), arrays are lists of the schema's list type, anything else is
//! a scalar leaf. An unknown schema is SMD's "deduced" type: granular maps, atomic lists.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, PathElement, path_to_string};
use crate::schema::{ListType, MapType, Node};

/// What a value is at a schema position.
pub(super) enum Shape<'v> {
    /// An object, or a null where the schema expects one.
    Map(Option<&'v Map<String, Value>>),
    /// An array, or a null where the schema expects one.
    List(Option<&'v [Value]>),
    /// Anything else, including a null at a scalar position.
    Scalar,
}

/// Classifies `value` at `node`. A null takes the schema's kind, defaulting to a map as the
/// deduced type does.
pub(super) fn shape<'v>(value: &'v Value, node: &Node) -> Shape<'v> {
    match value {
        Value::Object(m) => Shape::Map(Some(m)),
        Value::Array(l) => Shape::List(Some(l)),
        Value::Null => null_shape(node),
        _ => Shape::Scalar,
    }
}

fn null_shape(node: &Node) -> Shape<'static> {
    if node.is_int_or_string() {
        return Shape::Scalar;
    }
    match node.type_name() {
        Some("object") => Shape::Map(None),
        Some("array") => Shape::List(None),
        Some(_) => Shape::Scalar,
        None if node.raw().is_some_and(|s| s.get("items").is_some()) => Shape::List(None),
        None => Shape::Map(None),
    }
}

/// Whether an object at `node` is owned as a whole.
pub(super) fn is_atomic_map(node: &Node) -> bool {
    node.map_type() == MapType::Atomic
}

/// The path element of list item `index`: its position for atomic lists, its value for sets, its
/// key fields (falling back to schema defaults) for map lists.
pub(super) fn list_item_element(
    item: &Value,
    index: usize,
    list_type: &ListType,
    items: &Node,
) -> Result<PathElement, String> {
    match list_type {
        ListType::Atomic => Ok(PathElement::Index(index)),
        ListType::Set => set_item_element(item),
        ListType::Map(keys) => keyed_item_element(item, keys, items),
    }
}

fn set_item_element(item: &Value) -> Result<PathElement, String> {
    match item {
        Value::Object(_) => {
            Err("associative list without keys has an element that's a map type".into())
        }
        Value::Array(_) => Err("not supported: associative list with lists as elements".into()),
        Value::Null => {
            Err("associative list without keys has an element that's an explicit null".into())
        }
        scalar => Ok(PathElement::Value(scalar.clone())),
    }
}

fn keyed_item_element(item: &Value, keys: &[String], items: &Node) -> Result<PathElement, String> {
    let fields = match item {
        Value::Object(fields) => fields,
        Value::Null => return Err("associative list with keys may not have a null element".into()),
        _ => return Err("associative list with keys may not have non-map elements".into()),
    };
    let mut key = Vec::with_capacity(keys.len());
    for name in keys {
        let default = || items.property(name).raw().and_then(|s| s.get("default"));
        match fields.get(name).or_else(default) {
            Some(v) => key.push((name.clone(), v.clone())),
            None => {
                return Err(format!(
                    "associative list with keys has an element that omits key field {name:?} \
                     (and doesn't have default value)"
                ));
            }
        }
    }
    Ok(PathElement::key(key))
}

/// Checks that every list element can be identified, as SMD does when it types an object.
/// Duplicate keys are allowed in live objects (older API servers accepted them) but not in an
/// applied configuration. The error text is SMD's.
pub(super) fn validate(value: &Value, node: Node, allow_duplicates: bool) -> Result<(), String> {
    let mut errors = Vec::new();
    validate_at(value, node, allow_duplicates, &mut Vec::new(), &mut errors);
    match errors.as_slice() {
        [] => Ok(()),
        [one] => Err(one.clone()),
        many => Err(format!("errors:\n  {}", many.join("\n  "))),
    }
}

fn validate_at(
    value: &Value,
    node: Node,
    allow_duplicates: bool,
    path: &mut Vec<PathElement>,
    errors: &mut Vec<String>,
) {
    let located = |path: &[PathElement], message: String| {
        if path.is_empty() {
            message
        } else {
            format!("{}: {message}", path_to_string(path))
        }
    };
    match value {
        Value::Object(fields) => {
            for (name, child) in fields {
                path.push(PathElement::Field(name.clone()));
                validate_at(child, node.property(name), allow_duplicates, path, errors);
                path.pop();
            }
        }
        Value::Array(items) => {
            let list_type = node.list_type();
            let items_node = node.items();
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                let pe = match list_item_element(item, i, &list_type, &items_node) {
                    Ok(pe) => pe,
                    Err(e) => {
                        errors.push(located(path, format!("element {i}: {e}")));
                        // Without an identity, nothing deeper can be reported.
                        return;
                    }
                };
                if !seen.insert(pe.clone()) && !allow_duplicates {
                    errors.push(located(path, format!("duplicate entries for key {pe}")));
                }
                path.push(pe);
                validate_at(item, items_node, allow_duplicates, path, errors);
                path.pop();
            }
        }
        _ => {}
    }
}

/// The paths a value sets (SMD's `ToFieldSet`): every leaf, every list element, every key of a
/// map that is not a declared property, and atomic maps and lists as a whole.
pub(super) fn to_field_set(value: &Value, node: Node) -> FieldSet {
    let mut set = FieldSet::new();
    collect_fields(value, node, &mut Vec::new(), &mut set);
    set
}

fn collect_fields(value: &Value, node: Node, path: &mut Vec<PathElement>, set: &mut FieldSet) {
    match shape(value, &node) {
        Shape::Scalar => set.insert(path),
        Shape::Map(_) if is_atomic_map(&node) => set.insert(path),
        Shape::Map(fields) => {
            for (name, child) in fields.into_iter().flatten() {
                path.push(PathElement::Field(name.clone()));
                collect_fields(child, node.property(name), path, set);
                if !node.has_property(name) {
                    set.insert(path);
                }
                path.pop();
            }
        }
        Shape::List(items) => {
            let list_type = node.list_type();
            if list_type == ListType::Atomic {
                set.insert(path);
                return;
            }
            let items_node = node.items();
            for (i, item) in items.into_iter().flatten().enumerate() {
                let Ok(pe) = list_item_element(item, i, &list_type, &items_node) else {
                    continue;
                };
                path.push(pe);
                collect_fields(item, items_node, path, set);
                set.insert(path);
                path.pop();
            }
        }
    }
}

/// How two versions of an object differ, as sets of paths.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Comparison {
    /// Present only in the new version.
    pub added: FieldSet,
    /// Present in both with different values.
    pub modified: FieldSet,
    /// Present only in the old version.
    pub removed: FieldSet,
}

impl Comparison {
    /// Drops `fields` and everything below them from all three sets.
    pub fn exclude(&mut self, fields: &FieldSet) {
        self.added = self.added.recursive_difference(fields);
        self.modified = self.modified.recursive_difference(fields);
        self.removed = self.removed.recursive_difference(fields);
    }
}

/// SMD's `Compare`: leaves are compared by value; a granular map or list that appears or
/// disappears as a whole is also recorded itself, so its owner can be tracked.
pub(super) fn compare(old: &Value, new: &Value, node: Node) -> Comparison {
    let mut out = Comparison::default();
    compare_at(Some(old), Some(new), node, &mut Vec::new(), &mut out);
    out
}

fn compare_at(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    node: Node,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) {
    let (l_shape, r_shape) = (lhs.map(|v| shape(v, &node)), rhs.map(|v| shape(v, &node)));
    let descended = match (l_shape, r_shape) {
        (None, None) => return,
        (Some(Shape::Map(l)), None) => compare_maps(l, None, node, path, out),
        (None, Some(Shape::Map(r))) => compare_maps(None, r, node, path, out),
        (Some(Shape::Map(l)), Some(Shape::Map(r))) => compare_maps(l, r, node, path, out),
        (Some(Shape::List(l)), None) => compare_lists(l, None, node, path, out),
        (None, Some(Shape::List(r))) => compare_lists(None, r, node, path, out),
        (Some(Shape::List(l)), Some(Shape::List(r))) => compare_lists(l, r, node, path, out),
        // Scalars, and values whose kind changed, are compared as leaves.
        _ => false,
    };
    if !descended {
        compare_leaf(lhs, rhs, path, out);
        return;
    }
    match (lhs, rhs) {
        (None, _) => out.added.insert(path),
        (_, None) => out.removed.insert(path),
        _ => {}
    }
}

fn compare_leaf(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    path: &[PathElement],
    out: &mut Comparison,
) {
    match (lhs, rhs) {
        (None, Some(_)) => out.added.insert(path),
        (Some(_), None) => out.removed.insert(path),
        (Some(l), Some(r)) if !super::value::equal(l, r) => out.modified.insert(path),
        _ => {}
    }
}

/// Compares granular maps key by key; returns false when the maps are leaves instead (atomic,
/// or both empty, which keeps the empty/null distinction).
fn compare_maps(
    lhs: Option<&Map<String, Value>>,
    rhs: Option<&Map<String, Value>>,
    node: Node,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) -> bool {
    let empty = |m: Option<&Map<String, Value>>| m.is_none_or(Map::is_empty);
    if is_atomic_map(&node) || (empty(lhs) && empty(rhs)) {
        return false;
    }
    let keys = lhs
        .into_iter()
        .flat_map(|m| m.keys())
        .chain(rhs.into_iter().flat_map(|m| m.keys()));
    let mut seen = BTreeSet::new();
    for key in keys {
        if !seen.insert(key) {
            continue;
        }
        let (l, r) = (lhs.and_then(|m| m.get(key)), rhs.and_then(|m| m.get(key)));
        path.push(PathElement::Field(key.clone()));
        compare_at(l, r, node.property(key), path, out);
        path.pop();
    }
    true
}

/// Compares associative lists element by element, matched by identity; returns false for
/// atomic or empty lists, which are leaves.
fn compare_lists(
    lhs: Option<&[Value]>,
    rhs: Option<&[Value]>,
    node: Node,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) -> bool {
    let list_type = node.list_type();
    let empty = |l: Option<&[Value]>| l.is_none_or(<[Value]>::is_empty);
    if list_type == ListType::Atomic || (empty(lhs) && empty(rhs)) {
        return false;
    }
    let items_node = node.items();
    let (left_order, left) = group_items(lhs, &list_type, &items_node);
    let (right_order, right) = group_items(rhs, &list_type, &items_node);
    let right_only = right_order.into_iter().filter(|pe| !left.contains_key(pe));
    let order: Vec<PathElement> = left_order.into_iter().chain(right_only).collect();
    for pe in order {
        let l = left.get(&pe).map(Vec::as_slice).unwrap_or_default();
        let r = right.get(&pe).map(Vec::as_slice).unwrap_or_default();
        path.push(pe);
        compare_items(l, r, items_node, path, out);
        path.pop();
    }
    true
}

type ItemGroups<'v> = BTreeMap<PathElement, Vec<&'v Value>>;

/// List items grouped by identity, with the identities in first-seen order; a group has several
/// values only when a live object carries duplicates.
fn group_items<'v>(
    items: Option<&'v [Value]>,
    list_type: &ListType,
    items_node: &Node,
) -> (Vec<PathElement>, ItemGroups<'v>) {
    let mut order = Vec::new();
    let mut groups = ItemGroups::new();
    for (i, item) in items.into_iter().flatten().enumerate() {
        let Ok(pe) = list_item_element(item, i, list_type, items_node) else {
            continue;
        };
        let group = groups.entry(pe.clone()).or_default();
        if group.is_empty() {
            order.push(pe);
        }
        group.push(item);
    }
    (order, groups)
}

/// SMD's handling of one identity: one-to-one items are compared recursively; duplicated items
/// are compared as a whole, and gaining or losing duplicates counts as adding or removing.
fn compare_items(
    l: &[&Value],
    r: &[&Value],
    items_node: Node,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) {
    match (l, r) {
        ([] | [_], [] | [_]) => compare_at(
            l.first().copied(),
            r.first().copied(),
            items_node,
            path,
            out,
        ),
        ([_, _, ..], [_, _, ..]) => {
            let same =
                l.len() == r.len() && l.iter().zip(r).all(|(a, b)| super::value::equal(a, b));
            if !same {
                out.modified.insert(path);
            }
        }
        ([_, _, ..], _) => {
            if let Some(new) = r.first() {
                compare_at(None, Some(new), items_node, path, out);
            }
            out.removed.insert(path);
        }
        (_, _) => {
            if let Some(old) = l.first() {
                compare_at(Some(old), None, items_node, path, out);
            }
            out.added.insert(path);
        }
    }
}

/// SMD's `EnsureNamedFieldsAreMembers`: adds every declared property that has owned children as
/// a member itself, so that removing a struct's last owned field removes the struct too (maps
/// keyed by data, like labels, stay).
pub(super) fn ensure_named_fields_are_members(set: &FieldSet, node: Node) -> FieldSet {
    let mut out = FieldSet::new();
    for pe in set.members() {
        out.insert(std::slice::from_ref(pe));
    }
    for (pe, child) in set.children() {
        let child_node = match pe {
            PathElement::Field(name) => {
                if node.has_property(name) {
                    out.insert(std::slice::from_ref(pe));
                }
                node.property(name)
            }
            PathElement::Key(_) => node.items(),
            _ => Node::unknown(),
        };
        out.add_child(
            pe.clone(),
            ensure_named_fields_are_members(child, child_node),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object", "properties": {
                    "name": {"type": "string"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}}
                }},
                "spec": {"type": "object", "properties": {
                    "replicas": {"type": "integer"},
                    "args": {"type": "array", "items": {"type": "string"}},
                    "finalizers": {"type": "array", "items": {"type": "string"},
                                   "x-kubernetes-list-type": "set"},
                    "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                                 "additionalProperties": {"type": "string"}},
                    "ports": {"type": "array", "x-kubernetes-list-type": "map",
                              "x-kubernetes-list-map-keys": ["port", "protocol"],
                              "items": {"type": "object", "properties": {
                                  "port": {"type": "integer"},
                                  "protocol": {"type": "string", "default": "TCP"},
                                  "name": {"type": "string"}}}},
                    "containers": {"type": "array", "x-kubernetes-patch-strategy": "merge",
                                   "x-kubernetes-patch-merge-key": "name",
                                   "items": {"type": "object", "properties": {
                                       "name": {"type": "string"},
                                       "image": {"type": "string"}}}}
                }}
            }
        })
    }

    fn paths(set: &FieldSet) -> Vec<String> {
        set.paths().iter().map(|p| path_to_string(p)).collect()
    }

    #[test]
    fn field_set_of_a_config() {
        let s = schema();
        let v = json!({
            "apiVersion": "v1",
            "metadata": {"name": "x", "labels": {"app": "a"}},
            "spec": {
                "args": ["a", "b"],
                "finalizers": ["f"],
                "selector": {"app": "a"},
                "ports": [{"port": 80, "name": "http"}],
                "containers": [{"name": "app", "image": "i"}],
                "extra": {"x": 1}
            }
        });
        let set = to_field_set(&v, Node::new(&s, None));
        assert_eq!(
            paths(&set),
            vec![
                ".apiVersion",
                ".metadata.name",
                ".metadata.labels.app",
                ".spec.args",
                ".spec.extra",
                ".spec.selector",
                ".spec.containers[name=\"app\"]",
                ".spec.containers[name=\"app\"].image",
                ".spec.containers[name=\"app\"].name",
                ".spec.extra.x",
                ".spec.finalizers[=\"f\"]",
                ".spec.ports[port=80,protocol=\"TCP\"]",
                ".spec.ports[port=80,protocol=\"TCP\"].name",
                ".spec.ports[port=80,protocol=\"TCP\"].port",
            ]
        );
    }

    #[test]
    fn unknown_schema_is_deduced() {
        let v = json!({"a": {"b": 1}, "l": [{"x": 1}]});
        let set = to_field_set(&v, Node::unknown());
        assert_eq!(paths(&set), vec![".a", ".l", ".a.b"]);
    }

    #[test]
    fn validation_reports_smd_errors() {
        let s = schema();
        let node = Node::new(&s, None);
        let missing_key = json!({"spec": {"containers": [{"image": "i"}]}});
        assert_eq!(
            validate(&missing_key, node, false).unwrap_err(),
            ".spec.containers: element 0: associative list with keys has an element that omits \
             key field \"name\" (and doesn't have default value)"
        );
        let dup = json!({"spec": {"finalizers": ["a", "a"], "containers": [{"name": "x"}, {"name": "x"}]}});
        assert_eq!(
            validate(&dup, node, false).unwrap_err(),
            "errors:\n  .spec.finalizers: duplicate entries for key [=\"a\"]\n  \
             .spec.containers: duplicate entries for key [name=\"x\"]"
        );
        assert!(validate(&dup, node, true).is_ok());
        let map_in_set = json!({"spec": {"finalizers": [{"a": 1}]}});
        assert!(
            validate(&map_in_set, node, true)
                .unwrap_err()
                .contains("map type")
        );
    }

    #[test]
    fn compare_records_leaves_and_whole_maps() {
        let s = schema();
        let node = Node::new(&s, None);
        let old = json!({"spec": {"replicas": 1, "args": ["a"], "containers": [{"name": "a", "image": "1"}]}});
        let new = json!({
            "metadata": {"labels": {"x": "y"}},
            "spec": {"replicas": 2, "args": ["a"], "containers": [{"name": "b", "image": "1"}]}
        });
        let c = compare(&old, &new, node);
        assert_eq!(paths(&c.modified), vec![".spec.replicas"]);
        assert_eq!(
            paths(&c.added),
            vec![
                ".metadata",
                ".metadata.labels",
                ".metadata.labels.x",
                ".spec.containers[name=\"b\"]",
                ".spec.containers[name=\"b\"].image",
                ".spec.containers[name=\"b\"].name",
            ]
        );
        assert_eq!(
            paths(&c.removed),
            vec![
                ".spec.containers[name=\"a\"]",
                ".spec.containers[name=\"a\"].image",
                ".spec.containers[name=\"a\"].name",
            ]
        );
    }

    #[test]
    fn compare_treats_atomic_and_empty_as_leaves() {
        let s = schema();
        let node = Node::new(&s, None);
        let old = json!({"spec": {"selector": {"a": "1"}, "args": [], "extra": {}}});
        let new = json!({"spec": {"selector": {"a": "2"}, "args": null, "extra": {}}});
        let c = compare(&old, &new, node);
        assert_eq!(paths(&c.modified), vec![".spec.args", ".spec.selector"]);
        assert!(c.added.is_empty() && c.removed.is_empty());
    }

    #[test]
    fn compare_handles_live_duplicates() {
        let s = schema();
        let node = Node::new(&s, None);
        let old = json!({"spec": {"containers": [{"name": "a"}, {"name": "a", "image": "x"}]}});
        let new = json!({"spec": {"containers": [{"name": "a"}]}});
        let c = compare(&old, &new, node);
        // As in SMD, losing a duplicate both removes the duplicated element and adds the
        // survivor afresh.
        assert_eq!(paths(&c.removed), vec![".spec.containers[name=\"a\"]"]);
        assert_eq!(
            paths(&c.added),
            vec![
                ".spec.containers[name=\"a\"]",
                ".spec.containers[name=\"a\"].name"
            ]
        );
    }

    #[test]
    fn named_fields_become_members() {
        let s = schema();
        let set = FieldSet::from_paths([vec![
            PathElement::Field("metadata".into()),
            PathElement::Field("labels".into()),
            PathElement::Field("app".into()),
        ]]);
        let ensured = ensure_named_fields_are_members(&set, Node::new(&s, None));
        assert_eq!(
            paths(&ensured),
            vec![".metadata", ".metadata.labels", ".metadata.labels.app"]
        );
    }
}
