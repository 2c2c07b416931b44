//! Value transformations of server-side apply: merging an applied configuration into the live
//! object (SMD's `typed/merge.go`), removing owned paths (`typed/remove.go`), and dropping the
//! nulls a typed API server would never store.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, PathElement};
use super::typed::{Shape, is_atomic_map, list_item_element, shape};
use crate::schema::{ListType, Node};

/// Merges `config` into `live`: the configuration wins at every leaf, granular maps merge key by
/// key, associative lists merge element by element (in the configuration's order for the
/// elements it names), and atomic maps and lists are replaced whole.
pub(super) fn merge(live: &Value, config: &Value, node: Node) -> Value {
    merge_at(Some(live), Some(config), node).unwrap_or(Value::Null)
}

fn merge_at(lhs: Option<&Value>, rhs: Option<&Value>, node: Node) -> Option<Value> {
    let (lhs, rhs) = match (lhs, rhs) {
        (None, None) => return None,
        (Some(l), None) => return Some(l.clone()),
        (None, Some(r)) => return Some(r.clone()),
        (Some(l), Some(r)) => (l, r),
    };
    let merged = match (shape(lhs, &node), shape(rhs, &node)) {
        (Shape::Map(l), Shape::Map(r)) => merge_maps(l, r, node),
        (Shape::List(l), Shape::List(r)) => merge_lists(l, r, node),
        // Scalars, and values whose kind changed, are replaced.
        _ => None,
    };
    Some(merged.unwrap_or_else(|| rhs.clone()))
}

/// `None` when the maps are a leaf (atomic, or both empty) and the configuration's value wins.
fn merge_maps(
    lhs: Option<&Map<String, Value>>,
    rhs: Option<&Map<String, Value>>,
    node: Node,
) -> Option<Value> {
    let empty = |m: Option<&Map<String, Value>>| m.is_none_or(Map::is_empty);
    if is_atomic_map(&node) || (empty(lhs) && empty(rhs)) {
        return None;
    }
    let mut out = Map::new();
    for (key, l) in lhs.into_iter().flatten() {
        let r = rhs.and_then(|m| m.get(key));
        if let Some(v) = merge_at(Some(l), r, node.property(key)) {
            out.insert(key.clone(), v);
        }
    }
    for (key, r) in rhs.into_iter().flatten() {
        if !out.contains_key(key) {
            out.insert(key.clone(), r.clone());
        }
    }
    Some(Value::Object(out))
}

/// `None` when the lists are a leaf (atomic, or both empty) and the configuration's value wins.
fn merge_lists(lhs: Option<&[Value]>, rhs: Option<&[Value]>, node: Node) -> Option<Value> {
    let list_type = node.list_type();
    let empty = |l: Option<&[Value]>| l.is_none_or(<[Value]>::is_empty);
    if list_type == ListType::Atomic || (empty(lhs) && empty(rhs)) {
        return None;
    }
    let items = node.items();
    let left = identify(lhs, &list_type, &items);
    let right = identify(rhs, &list_type, &items);
    Some(Value::Array(ListMerge::new(&left, &right, items).run()))
}

fn identify<'v>(
    items: Option<&'v [Value]>,
    list_type: &ListType,
    items_node: &Node,
) -> Vec<(PathElement, &'v Value)> {
    items
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, item)| {
            let pe = list_item_element(item, i, list_type, items_node).ok()?;
            Some((pe, item))
        })
        .collect()
}

/// SMD's ordering of a merged associative list: live elements the configuration does not name
/// keep their place, while the elements both name follow the configuration's order.
struct ListMerge<'a, 'v> {
    left: &'a [(PathElement, &'v Value)],
    right: &'a [(PathElement, &'v Value)],
    /// Live elements by identity; `None` when the live list repeats the identity.
    left_index: BTreeMap<&'a PathElement, Option<&'v Value>>,
    right_index: BTreeMap<&'a PathElement, &'v Value>,
    /// Elements named by both, in the configuration's order, not yet placed.
    shared: std::vec::IntoIter<&'a PathElement>,
    next_shared: Option<&'a PathElement>,
    merged_right: BTreeSet<&'a PathElement>,
    items: Node<'a>,
    out: Vec<Value>,
}

impl<'a, 'v> ListMerge<'a, 'v> {
    fn new(
        left: &'a [(PathElement, &'v Value)],
        right: &'a [(PathElement, &'v Value)],
        items: Node<'a>,
    ) -> Self {
        let mut left_index = BTreeMap::new();
        for (pe, v) in left {
            left_index
                .entry(pe)
                .and_modify(|slot| *slot = None)
                .or_insert(Some(*v));
        }
        let right_index: BTreeMap<_, _> = right.iter().map(|(pe, v)| (pe, *v)).collect();
        let shared: Vec<&PathElement> = right
            .iter()
            .map(|(pe, _)| pe)
            .filter(|pe| left_index.contains_key(pe))
            .collect();
        let mut shared = shared.into_iter();
        let next_shared = shared.next();
        ListMerge {
            left,
            right,
            left_index,
            right_index,
            shared,
            next_shared,
            merged_right: BTreeSet::new(),
            items,
            out: Vec::new(),
        }
    }

    fn run(mut self) -> Vec<Value> {
        let (mut li, mut ri) = (0, 0);
        while li < self.left.len() || ri < self.right.len() {
            if let (Some((lpe, _)), Some((rpe, _))) = (self.left.get(li), self.right.get(ri)) {
                if lpe == rpe {
                    self.merge_right(rpe);
                    self.next_shared = self.shared.next();
                    li += 1;
                    ri += 1;
                    continue;
                }
                let is_shared = self.right_index.contains_key(lpe);
                if is_shared && self.next_shared.is_some_and(|n| n != lpe) {
                    // A shared element, but not the one due next in the configuration's order.
                    li += 1;
                    continue;
                }
            }
            if let Some((lpe, lv)) = self.left.get(li) {
                if !self.right_index.contains_key(lpe) {
                    self.out.push((*lv).clone());
                    li += 1;
                    continue;
                }
                if self.merged_right.contains(lpe) {
                    li += 1;
                    continue;
                }
            }
            if let Some((rpe, _)) = self.right.get(ri) {
                self.merge_right(rpe);
                if self.next_shared == Some(rpe) {
                    self.next_shared = self.shared.next();
                }
                ri += 1;
            }
        }
        self.out
    }

    /// Places the configuration's element `pe`, merged with its live counterpart. A repeated
    /// live identity is replaced by the single configured element.
    fn merge_right(&mut self, pe: &'a PathElement) {
        self.merged_right.insert(pe);
        let live = self.left_index.get(pe).copied().flatten();
        let config = self.right_index.get(pe).copied();
        if let Some(v) = merge_at(live, config, self.items) {
            self.out.push(v);
        }
    }
}

/// Removes the paths in `set` from `value` (SMD's `RemoveItems`). A granular map or associative
/// list left with nothing becomes null, as in SMD; [`strip_nulls`] then drops it.
pub(super) fn remove_items(value: &Value, set: &FieldSet, node: Node) -> Value {
    match shape(value, &node) {
        Shape::Scalar => value.clone(),
        Shape::Map(fields) => remove_from_map(fields, set, node),
        Shape::List(items) => remove_from_list(items, set, node),
    }
}

fn remove_from_map(fields: Option<&Map<String, Value>>, set: &FieldSet, node: Node) -> Value {
    let Some(fields) = fields.filter(|m| !m.is_empty() && !is_atomic_map(&node)) else {
        return Value::Null;
    };
    let mut out = Map::new();
    for (key, v) in fields {
        let pe = PathElement::Field(key.clone());
        if set.has(std::slice::from_ref(&pe)) {
            continue;
        }
        let kept = match set.with_prefix(&pe) {
            Some(sub) => remove_items(v, sub, node.property(key)),
            None => v.clone(),
        };
        out.insert(key.clone(), kept);
    }
    if out.is_empty() {
        Value::Null
    } else {
        Value::Object(out)
    }
}

fn remove_from_list(items: Option<&[Value]>, set: &FieldSet, node: Node) -> Value {
    let list_type = node.list_type();
    let Some(items) = items.filter(|l| !l.is_empty() && list_type != ListType::Atomic) else {
        return Value::Null;
    };
    let items_node = node.items();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Ok(pe) = list_item_element(item, i, &list_type, &items_node) else {
            out.push(item.clone());
            continue;
        };
        if set.has(std::slice::from_ref(&pe)) {
            continue;
        }
        match set.with_prefix(&pe) {
            Some(sub) => out.push(remove_items(item, sub, items_node)),
            None => out.push(item.clone()),
        }
    }
    if out.is_empty() {
        Value::Null
    } else {
        Value::Array(out)
    }
}

/// Drops object fields whose value is null where the schema knows the field and does not mark
/// it `nullable`. A typed API server never stores those nulls (Go's omitempty for built-in
/// kinds, null pruning for custom resources), while free-form data keeps them.
pub(super) fn strip_nulls(value: &mut Value, node: Node) {
    match value {
        Value::Object(fields) => {
            fields.retain(|key, v| {
                let child = node.property(key);
                !(v.is_null() && !child.is_unknown() && !child.ext_bool("nullable"))
            });
            for (key, v) in fields.iter_mut() {
                strip_nulls(v, node.property(key));
            }
        }
        Value::Array(items) => {
            let items_node = node.items();
            for item in items {
                strip_nulls(item, items_node);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "metadata": {"type": "object", "properties": {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
                "spec": {"type": "object", "properties": {
                    "replicas": {"type": "integer"},
                    "note": {"type": "string", "nullable": true},
                    "args": {"type": "array", "items": {"type": "string"}},
                    "finalizers": {"type": "array", "items": {"type": "string"},
                                   "x-kubernetes-list-type": "set"},
                    "selector": {"type": "object", "x-kubernetes-map-type": "atomic"},
                    "containers": {"type": "array", "x-kubernetes-list-type": "map",
                                   "x-kubernetes-list-map-keys": ["name"],
                                   "items": {"type": "object", "properties": {
                                       "name": {"type": "string"},
                                       "image": {"type": "string"},
                                       "env": {"type": "array", "x-kubernetes-list-type": "map",
                                               "x-kubernetes-list-map-keys": ["name"]}}}}
                }}
            }
        })
    }

    #[test]
    fn merges_maps_leaves_and_atomics() {
        let s = schema();
        let live = json!({"metadata": {"labels": {"a": "1"}},
                          "spec": {"replicas": 1, "args": ["x", "y"], "selector": {"a": "1", "b": "2"}}});
        let config = json!({"metadata": {"labels": {"b": "2"}},
                            "spec": {"replicas": 3, "args": ["z"], "selector": {"c": "3"}}});
        let merged = merge(&live, &config, Node::new(&s, None));
        assert_eq!(
            merged,
            json!({"metadata": {"labels": {"a": "1", "b": "2"}},
                   "spec": {"replicas": 3, "args": ["z"], "selector": {"c": "3"}}})
        );
    }

    #[test]
    fn merges_associative_lists_by_identity() {
        let s = schema();
        let live = json!({"spec": {
            "finalizers": ["a", "b"],
            "containers": [{"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}]},
                           {"name": "b", "image": "1"}]}});
        let config = json!({"spec": {
            "finalizers": ["c"],
            "containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}]},
                           {"name": "c", "image": "3"}]}});
        let merged = merge(&live, &config, Node::new(&s, None));
        assert_eq!(
            merged["spec"],
            json!({
                "finalizers": ["a", "b", "c"],
                "containers": [
                    {"name": "a", "image": "1",
                     "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
                    {"name": "b", "image": "1"},
                    {"name": "c", "image": "3"}
                ]
            })
        );
    }

    #[test]
    fn shared_elements_follow_the_configuration_order() {
        let s = schema();
        let node = Node::new(&s, None);
        let live = json!({"spec": {"finalizers": ["a", "b", "c"]}});
        let config = json!({"spec": {"finalizers": ["c", "a"]}});
        assert_eq!(
            merge(&live, &config, node)["spec"]["finalizers"],
            json!(["b", "c", "a"])
        );
        let config = json!({"spec": {"finalizers": ["b", "x", "a"]}});
        assert_eq!(
            merge(&live, &config, node)["spec"]["finalizers"],
            json!(["b", "c", "x", "a"])
        );
    }

    #[test]
    fn repeated_live_identities_collapse_into_the_configured_element() {
        let s = schema();
        let live = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "a", "image": "2"},
                                                  {"name": "b"}]}});
        let config = json!({"spec": {"containers": [{"name": "a", "image": "3"}]}});
        assert_eq!(
            merge(&live, &config, Node::new(&s, None))["spec"]["containers"],
            json!([{"name": "a", "image": "3"}, {"name": "b"}])
        );
    }

    #[test]
    fn null_in_config_is_kept_by_merge() {
        let s = schema();
        let live = json!({"spec": {"replicas": 2, "args": ["a"]}});
        let config = json!({"spec": {"replicas": null}});
        let merged = merge(&live, &config, Node::new(&s, None));
        assert_eq!(merged, json!({"spec": {"replicas": null, "args": ["a"]}}));
    }

    #[test]
    fn removes_owned_paths_and_nulls_emptied_containers() {
        let s = schema();
        let node = Node::new(&s, None);
        let v = json!({"metadata": {"labels": {"a": "1"}},
                       "spec": {"replicas": 1, "finalizers": ["x", "y"],
                                "containers": [{"name": "a", "image": "1"}, {"name": "b"}]}});
        let f = |n: &str| PathElement::Field(n.into());
        let key = PathElement::key(vec![("name".into(), json!("a"))]);
        let set = FieldSet::from_paths([
            vec![f("metadata"), f("labels"), f("a")],
            vec![f("spec"), f("finalizers"), PathElement::Value(json!("x"))],
            vec![f("spec"), f("containers"), key, f("image")],
        ]);
        let out = remove_items(&v, &set, node);
        assert_eq!(
            out,
            json!({"metadata": {"labels": null},
                   "spec": {"replicas": 1, "finalizers": ["y"],
                            "containers": [{"name": "a"}, {"name": "b"}]}})
        );
    }

    #[test]
    fn strips_nulls_unless_nullable_or_free_form() {
        let s = schema();
        let mut v = json!({"metadata": {"labels": null},
                           "spec": {"replicas": null, "note": null, "extra": null,
                                    "containers": [{"name": "a", "image": null}]}});
        strip_nulls(&mut v, Node::new(&s, None));
        assert_eq!(
            v,
            json!({"metadata": {}, "spec": {"note": null, "extra": null,
                                            "containers": [{"name": "a"}]}})
        );
    }
}
