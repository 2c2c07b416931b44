//! Navigation over OpenAPI v3 / JSON schemas as the API server reads them.
//!
//! Strategic merge patch, server-side apply and CRD validation all need the same facts about a
//! position in an object: which properties exist, what the items of a list look like, and how a
//! list or map merges (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`,
//! `x-kubernetes-map-type`, `x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`). The real
//! API server derives them from its OpenAPI document; devcluster does the same, for built-in kinds
//! from k8s-openapi's schemas annotated with the upstream merge keys, and for custom resources from
//! the CRD's `openAPIV3Schema`.
//!
//! A [`Node`] is a cursor: a schema plus the definitions its `$ref`s point into. A missing schema
//! is the "deduced" type of structured-merge-diff: maps merge key by key, lists are atomic.

use serde_json::{Map, Value};

/// How a list merges (server-side apply semantics; strategic merge patch maps onto these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// The whole list is one value, owned and replaced as a unit.
    Atomic,
    /// A list of unique scalars; each element is owned separately.
    Set,
    /// A list of objects identified by the values of these keys.
    Map(Vec<String>),
}

/// How an object merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    /// Each key is merged and owned separately (the default).
    Granular,
    /// The whole object is one value.
    Atomic,
}

/// A position in a schema: the schema object (if known) and the definitions `$ref`s resolve in.
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    schema: Option<&'a Value>,
    defs: Option<&'a Map<String, Value>>,
}

impl<'a> Node<'a> {
    /// A node for a schema whose `$ref`s (`#/$defs/<name>` or `#/definitions/<name>` or
    /// `#/components/schemas/<name>`) resolve in `defs`.
    pub fn new(schema: &'a Value, defs: Option<&'a Map<String, Value>>) -> Self {
        Node {
            schema: Some(schema),
            defs,
        }
        .resolved()
    }

    /// The unknown ("deduced") type: granular maps, atomic lists, anything allowed.
    pub fn unknown() -> Self {
        Node {
            schema: None,
            defs: None,
        }
    }

    /// Whether nothing is known about this position.
    pub fn is_unknown(&self) -> bool {
        self.schema.is_none()
    }

    /// The raw schema object, after `$ref` resolution.
    pub fn raw(&self) -> Option<&'a Value> {
        self.schema
    }

    fn child(&self, schema: Option<&'a Value>) -> Node<'a> {
        Node {
            schema,
            defs: self.defs,
        }
        .resolved()
    }

    /// Follows `$ref` (also inside a single-element `allOf`, as schemars emits it when a
    /// description is attached to a reference).
    fn resolved(self) -> Self {
        let mut node = self;
        for _ in 0..32 {
            let Some(schema) = node.schema else {
                return node;
            };
            let reference = schema.get("$ref").and_then(Value::as_str).or_else(|| {
                schema
                    .get("allOf")
                    .and_then(Value::as_array)
                    .filter(|all| all.len() == 1)
                    .and_then(|all| all[0].get("$ref"))
                    .and_then(Value::as_str)
            });
            let Some(reference) = reference else {
                return node;
            };
            let name = reference.rsplit('/').next().unwrap_or(reference);
            let target = node.defs.and_then(|defs| defs.get(name));
            // Merge annotations live on array properties (never references) and map types on
            // definitions, so nothing written beside a `$ref` is lost by following it.
            node = Node {
                schema: target,
                defs: node.defs,
            };
            if target.is_none() {
                return node;
            }
        }
        node
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.schema.and_then(|s| s.get(key))
    }

    /// The `type` of the schema, if declared.
    pub fn type_name(&self) -> Option<&'a str> {
        self.get("type").and_then(Value::as_str)
    }

    /// The schema of property `name` of an object: a declared property, else
    /// `additionalProperties`, else unknown.
    pub fn property(&self, name: &str) -> Node<'a> {
        if let Some(p) = self.get("properties").and_then(|p| p.get(name)) {
            return self.child(Some(p));
        }
        self.additional_properties()
    }

    /// Whether `name` is a declared property.
    pub fn has_property(&self, name: &str) -> bool {
        self.get("properties").and_then(|p| p.get(name)).is_some()
    }

    /// The declared properties, if any.
    pub fn properties(&self) -> Option<&'a Map<String, Value>> {
        self.get("properties").and_then(Value::as_object)
    }

    /// The schema of `additionalProperties` when it is a schema; unknown otherwise.
    pub fn additional_properties(&self) -> Node<'a> {
        match self.get("additionalProperties") {
            Some(v @ Value::Object(_)) => self.child(Some(v)),
            _ => Node::unknown(),
        }
    }

    /// The schema of list items; unknown when not declared.
    pub fn items(&self) -> Node<'a> {
        self.child(self.get("items"))
    }

    /// A string extension or keyword value, e.g. `x-kubernetes-list-type`.
    pub fn ext_str(&self, key: &str) -> Option<&'a str> {
        self.get(key).and_then(Value::as_str)
    }

    /// A boolean extension, e.g. `x-kubernetes-preserve-unknown-fields`.
    pub fn ext_bool(&self, key: &str) -> bool {
        self.get(key).and_then(Value::as_bool).unwrap_or(false)
    }

    /// How a list at this position merges under server-side apply.
    ///
    /// `x-kubernetes-list-type` wins; otherwise a strategic-merge `patch-strategy: merge` with a
    /// merge key makes it a map keyed by that key (as structured-merge-diff does for built-in
    /// types), a merge strategy without key on scalars makes it a set, and anything else is atomic.
    pub fn list_type(&self) -> ListType {
        match self.ext_str("x-kubernetes-list-type") {
            Some("map") => {
                let keys = self
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|k| {
                        k.iter()
                            .filter_map(|k| k.as_str().map(str::to_owned))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                if keys.is_empty() {
                    match self.patch_merge_key() {
                        Some(k) => ListType::Map(vec![k.to_owned()]),
                        None => ListType::Atomic,
                    }
                } else {
                    ListType::Map(keys)
                }
            }
            Some("set") => ListType::Set,
            Some(_) => ListType::Atomic,
            None => {
                if self.patch_strategies().any(|s| s == "merge") {
                    match self.patch_merge_key() {
                        Some(k) => ListType::Map(vec![k.to_owned()]),
                        None => ListType::Set,
                    }
                } else {
                    ListType::Atomic
                }
            }
        }
    }

    /// How an object at this position merges under server-side apply.
    pub fn map_type(&self) -> MapType {
        match self
            .ext_str("x-kubernetes-map-type")
            .or_else(|| self.ext_str("x-kubernetes-struct-type"))
        {
            Some("atomic") => MapType::Atomic,
            _ => MapType::Granular,
        }
    }

    /// `x-kubernetes-patch-merge-key`, the key strategic merge patch matches list elements by.
    pub fn patch_merge_key(&self) -> Option<&'a str> {
        self.ext_str("x-kubernetes-patch-merge-key")
    }

    /// The comma-separated `x-kubernetes-patch-strategy` values (`merge`, `retainKeys`, `replace`).
    pub fn patch_strategies(&self) -> impl Iterator<Item = &'a str> {
        self.ext_str("x-kubernetes-patch-strategy")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// Whether unknown fields are kept here (`x-kubernetes-preserve-unknown-fields: true`).
    pub fn preserves_unknown_fields(&self) -> bool {
        self.ext_bool("x-kubernetes-preserve-unknown-fields")
    }

    /// Whether this is an int-or-string position (`x-kubernetes-int-or-string: true`).
    pub fn is_int_or_string(&self) -> bool {
        self.ext_bool("x-kubernetes-int-or-string")
    }

    /// Whether this is an embedded resource (`x-kubernetes-embedded-resource: true`).
    pub fn is_embedded_resource(&self) -> bool {
        self.ext_bool("x-kubernetes-embedded-resource")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resolves_refs_and_reads_list_types() {
        let defs = json!({
            "Container": {"type": "object", "properties": {"name": {"type": "string"}}},
        });
        let defs = defs.as_object().unwrap();
        let schema = json!({
            "type": "object",
            "properties": {
                "containers": {
                    "type": "array",
                    "items": {"$ref": "#/$defs/Container"},
                    "x-kubernetes-patch-strategy": "merge",
                    "x-kubernetes-patch-merge-key": "name"
                },
                "finalizers": {"type": "array", "items": {"type": "string"},
                               "x-kubernetes-list-type": "set"},
                "args": {"type": "array", "items": {"type": "string"}},
                "ports": {"type": "array", "x-kubernetes-list-type": "map",
                          "x-kubernetes-list-map-keys": ["port", "protocol"]},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "selector": {"type": "object", "x-kubernetes-map-type": "atomic"}
            }
        });
        let root = Node::new(&schema, Some(defs));
        let containers = root.property("containers");
        assert_eq!(containers.list_type(), ListType::Map(vec!["name".into()]));
        assert_eq!(
            containers.items().property("name").type_name(),
            Some("string")
        );
        assert_eq!(root.property("finalizers").list_type(), ListType::Set);
        assert_eq!(root.property("args").list_type(), ListType::Atomic);
        assert_eq!(
            root.property("ports").list_type(),
            ListType::Map(vec!["port".into(), "protocol".into()])
        );
        assert_eq!(
            root.property("labels").property("x").type_name(),
            Some("string")
        );
        assert_eq!(root.property("selector").map_type(), MapType::Atomic);
        assert!(root.property("nope").is_unknown());
        assert_eq!(Node::unknown().list_type(), ListType::Atomic);
    }
}
