//! Field paths and sets of them (structured-merge-diff's `fieldpath` package), with the
//! `FieldsV1` encoding that `metadata.managedFields[].fieldsV1` uses on the wire.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use super::ApplyError;
use super::value;

/// One step of a field path.
///
/// Variants are ordered as SMD orders them (field names first, then keys, values, indices),
/// which fixes the order of `FieldsV1` keys and of printed conflicts.
#[derive(Debug, Clone)]
pub enum PathElement {
    /// A field of an object (`f:<name>`).
    Field(String),
    /// An element of a map list, identified by its key fields sorted by name (`k:{...}`).
    Key(Vec<(String, Value)>),
    /// An element of a set list, identified by its value (`v:<json>`).
    Value(Value),
    /// An element of an atomic list by position (`i:<n>`); only seen in old data.
    Index(usize),
}

impl PathElement {
    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// A map-list key from unsorted `(name, value)` pairs.
    pub fn key(mut fields: Vec<(String, Value)>) -> Self {
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        PathElement::Key(fields)
    }

    /// The `FieldsV1` object key for this element.
    pub fn to_fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let mut out = String::from("k:{");
                for (i, (name, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    crate::gofmt::write_json_string(name, &mut out);
                    out.push(':');
                    out.push_str(&crate::gofmt::json(v));
                }
                out.push('}');
                out
            }
            PathElement::Value(v) => format!("v:{}", crate::gofmt::json(v)),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a `FieldsV1` object key. `Ok(None)` is an unknown prefix, which SMD skips so that
    /// data written by newer servers still loads.
    pub fn from_fields_v1_key(key: &str) -> Result<Option<Self>, String> {
        let bytes = key.as_bytes();
        if bytes.len() < 2 {
            return Err(format!("key must be 2 characters long: {key:?}"));
        }
        if bytes[1] != b':' {
            return Err(format!("missing colon: {key}"));
        }
        // The second byte is ASCII, so the first one is a whole character and index 2 a boundary.
        let rest = key.get(2..).unwrap_or_default();
        let element = match bytes[0] {
            b'f' => PathElement::Field(rest.to_owned()),
            b'v' => PathElement::Value(parse_json(rest)?),
            b'k' => match parse_json(rest)? {
                Value::Object(fields) => PathElement::key(fields.into_iter().collect()),
                other => return Err(format!("key {rest} is not an object: {other}")),
            },
            b'i' => PathElement::Index(
                rest.parse()
                    .map_err(|e| format!("invalid index {rest:?}: {e}"))?,
            ),
            _ => return Ok(None),
        };
        Ok(Some(element))
    }
}

fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("invalid JSON {text:?}: {e}"))
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => compare_keys(a, b),
            (PathElement::Value(a), PathElement::Value(b)) => value::compare(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// SMD's `FieldList.Compare`: pairwise by name then value, shorter first.
fn compare_keys(a: &[(String, Value)], b: &[(String, Value)]) -> Ordering {
    for ((na, va), (nb, vb)) in a.iter().zip(b) {
        let c = na.cmp(nb).then_with(|| value::compare(va, vb));
        if c != Ordering::Equal {
            return c;
        }
    }
    a.len().cmp(&b.len())
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

/// Printed as SMD prints paths in conflicts: `.spec`, `[name="app"]`, `[="a"]`, `[0]`.
impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(name, v)| format!("{name}={}", value::display(v)))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={}]", value::display(v)),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// Renders a whole path, e.g. `.spec.containers[name="app"].image`.
pub fn path_to_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// A set of field paths (SMD's `fieldpath.Set`): a tree whose nodes may themselves be members.
///
/// Invariant: no child subtree is empty, so structural equality is set equality.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> Self {
        FieldSet::default()
    }

    /// A set of the given paths.
    pub fn from_paths<P: AsRef<[PathElement]>>(paths: impl IntoIterator<Item = P>) -> Self {
        let mut set = FieldSet::new();
        for path in paths {
            set.insert(path.as_ref());
        }
        set
    }

    /// A set of paths made only of field names, e.g. `[["metadata", "name"]]`.
    pub fn from_field_paths<S: AsRef<str>>(paths: &[Vec<S>]) -> Self {
        let paths = paths.iter().map(|p| {
            p.iter()
                .map(|name| PathElement::Field(name.as_ref().to_owned()))
                .collect::<Vec<_>>()
        });
        FieldSet::from_paths(paths)
    }

    /// Adds a path; its parents do not become members. The empty path (the whole object) is
    /// never owned, so it is ignored.
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is a member.
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// Whether the set has no members at all.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// The members directly at this level.
    pub fn members(&self) -> impl Iterator<Item = &PathElement> {
        self.members.iter()
    }

    /// The subtrees below this level.
    pub fn children(&self) -> impl Iterator<Item = (&PathElement, &FieldSet)> {
        self.children.iter()
    }

    /// The paths below `pe`, with `pe` stripped (SMD's `WithPrefix`).
    pub fn with_prefix(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    /// Adds every path of `child` below `pe`.
    pub fn add_child(&mut self, pe: PathElement, child: FieldSet) {
        if child.is_empty() {
            return;
        }
        let merged = match self.children.get(&pe) {
            Some(mine) => mine.union(&child),
            None => child,
        };
        self.children.insert(pe, merged);
    }

    /// Paths in either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, mine)| {
                let theirs = other.children.get(pe)?;
                non_empty(pe, mine.intersection(theirs))
            })
            .collect();
        FieldSet { members, children }
    }

    /// Paths in `self` but not in `other`. As in SMD, removing a parent path does not remove
    /// its children (use [`FieldSet::recursive_difference`] for that).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, mine)| match other.children.get(pe) {
                Some(theirs) => non_empty(pe, mine.difference(theirs)),
                None => Some((pe.clone(), mine.clone())),
            })
            .collect();
        FieldSet { members, children }
    }

    /// Paths in `self` that are neither in `other` nor below a member of `other`.
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter(|(pe, _)| !other.members.contains(pe))
            .filter_map(|(pe, mine)| match other.children.get(pe) {
                Some(theirs) => non_empty(pe, mine.recursive_difference(theirs)),
                None => Some((pe.clone(), mine.clone())),
            })
            .collect();
        FieldSet { members, children }
    }

    /// Every member path, in SMD's iteration order (members of a level before its subtrees).
    pub fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        for pe in &self.members {
            let mut path = prefix.clone();
            path.push(pe.clone());
            out.push(path);
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// Decodes a `fieldsV1` object. Keys with unknown prefixes are skipped, as SMD does.
    pub fn from_fields_v1(v: &Value) -> Result<Self, ApplyError> {
        FieldSet::decode_fields_v1(v).map_err(ApplyError::ManagedFields)
    }

    /// [`FieldSet::from_fields_v1`] with the bare error text, for callers that add context.
    pub(super) fn decode_fields_v1(v: &Value) -> Result<Self, String> {
        read_fields_v1(v)
            .map(|(set, _)| set.unwrap_or_default())
            .map_err(|e| format!("error decoding set: {e}"))
    }

    /// Encodes as a `fieldsV1` object: `{}` marks a member leaf, and `".": {}` marks a member
    /// that also has children.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.emit_fields_v1(false))
    }

    fn emit_fields_v1(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self && !self.is_empty() {
            out.insert(".".into(), Value::Object(Map::new()));
        }
        let elements: BTreeSet<&PathElement> =
            self.members.iter().chain(self.children.keys()).collect();
        for pe in elements {
            let body = match self.children.get(pe) {
                Some(child) => child.emit_fields_v1(self.members.contains(pe)),
                None => Map::new(),
            };
            out.insert(pe.to_fields_v1_key(), Value::Object(body));
        }
        out
    }
}

fn non_empty(pe: &PathElement, set: FieldSet) -> Option<(PathElement, FieldSet)> {
    (!set.is_empty()).then(|| (pe.clone(), set))
}

/// SMD's `readIterV1`: the subtree (if any) and whether the node itself is a member. A node with
/// no children at all (`{}`) is a member.
fn read_fields_v1(v: &Value) -> Result<(Option<FieldSet>, bool), String> {
    let Value::Object(entries) = v else {
        return Err(format!("expected an object, got {v}"));
    };
    let mut set: Option<FieldSet> = None;
    let mut is_member = false;
    for (key, child) in entries {
        if key == "." {
            is_member = true;
            continue;
        }
        let Some(pe) = PathElement::from_fields_v1_key(key)? else {
            continue;
        };
        let (grandchildren, child_is_member) = read_fields_v1(child)?;
        let node = set.get_or_insert_with(FieldSet::new);
        if child_is_member {
            node.members.insert(pe.clone());
        }
        if let Some(grandchildren) = grandchildren {
            node.children.insert(pe, grandchildren);
        }
    }
    let is_member = is_member || set.is_none();
    Ok((set, is_member))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.into())
    }

    fn set(paths: &[&[PathElement]]) -> FieldSet {
        FieldSet::from_paths(paths.iter().copied())
    }

    #[test]
    fn fields_v1_round_trip_with_self_markers() {
        let key = PathElement::key(vec![("name".into(), json!("app"))]);
        let s = set(&[
            &[f("metadata"), f("labels"), f("app")],
            &[f("spec"), f("containers"), key.clone()],
            &[f("spec"), f("containers"), key.clone(), f("image")],
            &[f("spec"), f("finalizers"), PathElement::Value(json!("x"))],
        ]);
        let encoded = s.to_fields_v1();
        assert_eq!(
            encoded,
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {}}},
                    "f:finalizers": {"v:\"x\"": {}}
                }
            })
        );
        // Keys come out in SMD order: "." first, then sorted.
        let containers = &encoded["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"];
        let keys: Vec<_> = containers.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, vec![".", "f:image"]);
        assert_eq!(FieldSet::from_fields_v1(&encoded).unwrap(), s);
    }

    #[test]
    fn decodes_members_children_and_skips_unknown_prefixes() {
        let s = FieldSet::from_fields_v1(&json!({
            "f:a": {".": {}, "f:b": {}},
            "f:c": {"z:future": {}},
            "k:{\"port\":80,\"protocol\":\"TCP\"}": {},
            "i:3": {}
        }))
        .unwrap();
        assert!(s.has(&[f("a")]));
        assert!(s.has(&[f("a"), f("b")]));
        // Only an unknown child: the node is a plain member.
        assert!(s.has(&[f("c")]));
        let key = PathElement::key(vec![
            ("protocol".into(), json!("TCP")),
            ("port".into(), json!(80)),
        ]);
        assert!(s.has(&[key]));
        assert!(s.has(&[PathElement::Index(3)]));
    }

    #[test]
    fn rejects_malformed_fields_v1() {
        for bad in [
            json!([]),
            json!({"x": {}}),
            json!({"fx": {}}),
            json!({"f:a": 1}),
            json!({"k:[1]": {}}),
            json!({"v:{oops": {}}),
            json!({"i:-1": {}}),
        ] {
            let err = FieldSet::from_fields_v1(&bad).unwrap_err();
            assert!(matches!(err, ApplyError::ManagedFields(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn element_order_is_field_key_value_index() {
        let mut v = [
            PathElement::Index(0),
            PathElement::Value(json!("a")),
            PathElement::key(vec![("name".into(), json!("a"))]),
            f("z"),
            f("a"),
        ];
        v.sort();
        let printed: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(printed, vec![".a", ".z", "[name=\"a\"]", "[=\"a\"]", "[0]"]);
    }

    #[test]
    fn prints_paths_like_smd() {
        let key = PathElement::key(vec![
            ("protocol".into(), json!("TCP")),
            ("containerPort".into(), json!(80)),
        ]);
        let path = [f("spec"), f("ports"), key, f("name")];
        assert_eq!(
            path_to_string(&path),
            ".spec.ports[containerPort=80,protocol=\"TCP\"].name"
        );
    }

    #[test]
    fn set_algebra_matches_smd() {
        let a = set(&[&[f("a"), f("b")], &[f("a"), f("c")], &[f("d")]]);
        let b = set(&[&[f("a"), f("b")], &[f("d")], &[f("e")]]);
        assert_eq!(
            a.union(&b),
            set(&[&[f("a"), f("b")], &[f("a"), f("c")], &[f("d")], &[f("e")]])
        );
        assert_eq!(a.intersection(&b), set(&[&[f("a"), f("b")], &[f("d")]]));
        assert_eq!(a.difference(&b), set(&[&[f("a"), f("c")]]));
        // A parent member does not remove children in a plain difference...
        let parent = set(&[&[f("a")]]);
        assert_eq!(a.difference(&parent), a.difference(&FieldSet::new()));
        // ...but does in a recursive one.
        assert_eq!(a.recursive_difference(&parent), set(&[&[f("d")]]));
        assert!(a.difference(&a).is_empty());
        assert_eq!(a.difference(&a), FieldSet::new());
    }

    #[test]
    fn iterates_members_before_subtrees() {
        let s = set(&[
            &[f("spec"), f("replicas")],
            &[f("a")],
            &[f("metadata"), f("x")],
        ]);
        let printed: Vec<String> = s.paths().iter().map(|p| path_to_string(p)).collect();
        assert_eq!(printed, vec![".a", ".metadata.x", ".spec.replicas"]);
    }

    #[test]
    fn empty_path_is_never_owned() {
        let mut s = FieldSet::new();
        s.insert(&[]);
        assert!(s.is_empty());
        assert!(!s.has(&[]));
        assert_eq!(s.to_fields_v1(), json!({}));
    }
}
