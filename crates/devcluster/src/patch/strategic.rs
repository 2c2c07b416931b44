//! Strategic merge patch (`application/strategic-merge-patch+json`) as kube-apiserver applies it to
//! built-in kinds.
//!
//! This follows the apply half of `k8s.io/apimachinery/pkg/util/strategicpatch` (`mergeMap` and
//! friends, as of the 1.3x releases), with the merge metadata (`x-kubernetes-patch-strategy`,
//! `x-kubernetes-patch-merge-key`) read from a [`Node`] instead of Go struct tags:
//!
//! - objects merge key by key; `null` deletes a key; any other value replaces;
//! - lists with strategy `merge` merge by their merge key (lists of scalars as a set, with
//!   `$deleteFromPrimitiveList/<field>` removing values); all other lists are replaced;
//! - the directives `$patch` (`replace`/`delete`, in objects and as list elements),
//!   `$retainKeys` and `$setElementOrder/<field>` are honoured and never reach the result.
//!
//! Merged lists are ordered the way upstream orders them: `$setElementOrder` first, then the
//! order of the patch list, then the order of the live list. An element that the patch adds
//! therefore comes *before* the existing ones, exactly as `kubectl patch` shows on a real cluster.
//!
//! Error messages are upstream's, including Go's `%v` rendering of the offending values, and
//! [`StrategicMergeError::status_code`] tells which HTTP status the real server answers with.

use serde_json::{Map, Value};
use thiserror::Error;

use crate::schema::Node;

const DIRECTIVE_MARKER: &str = "$patch";
const DELETE_DIRECTIVE: &str = "delete";
const REPLACE_DIRECTIVE: &str = "replace";
const MERGE_DIRECTIVE: &str = "merge";
const RETAIN_KEYS_STRATEGY: &str = "retainKeys";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";

/// Go's name for the type a JSON object decodes to, as it appears in upstream messages.
const GO_MAP: &str = "map[string]interface {}";
/// Go's name for the type a JSON array decodes to.
const GO_SLICE: &str = "[]interface {}";

/// Why a strategic merge patch could not be applied. Messages are the real server's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StrategicMergeError {
    /// The patch body is JSON but not an object (the server decodes it into a Go map).
    #[error("json: cannot unmarshal {0} into Go value of type map[string]interface {{}}")]
    PatchNotObject(&'static str),
    /// The original document is not an object.
    #[error("invalid JSON document")]
    BadJsonDoc,
    /// A `$deleteFromPrimitiveList` key without `/<field>`.
    #[error("invalid patch format of primitive list")]
    BadPrimitiveListFormat,
    /// `$retainKeys` is not a list, or the patch sets a key the list does not name.
    #[error("invalid patch format of retainKeys")]
    BadRetainKeysFormat,
    /// A `$setElementOrder` key without `/<field>`.
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrderFormat,
    /// A merging list whose elements are lists.
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// A merging-list element (or `$setElementOrder` entry) lacks the merge key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey {
        /// The element, rendered like Go's `%v`.
        map: String,
        /// The merge key.
        key: String,
    },
    /// `$patch` has a value other than `replace`/`delete` (or `merge` in a list).
    #[error("unknown patch type: {directive} in map: {map}")]
    BadPatchType {
        /// The directive value, rendered like Go's `%s`.
        directive: String,
        /// The object holding it, rendered like Go's `%v`.
        map: String,
    },
    /// `$patch: merge` as a list element.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
    /// A value has a different JSON type than the directive or position requires.
    #[error("expected a {expected}, but received a {actual}")]
    BadArgType {
        /// Go type that was required.
        expected: &'static str,
        /// Go type that was found.
        actual: &'static str,
    },
    /// A merging list mixes element types.
    #[error("list element types are not identical: {0}")]
    MixedElementTypes(String),
    /// `$setElementOrder` names a list that is empty in both the object and the patch.
    #[error("no elements in any of the given slices")]
    NoElements,
    /// The schema asks to merge a list of objects but declares no merge key.
    #[error("cannot merge lists without merge key for {0}")]
    MissingMergeKeyDeclaration(&'static str),
    /// The patch list is not in the order `$setElementOrder` gives.
    #[error("the order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}")]
    OrderMismatch {
        /// The patch list, rendered like Go's `%v`.
        patch: String,
        /// The `$setElementOrder` list, rendered like Go's `%v`.
        order: String,
    },
    /// A list element that should be an object is not.
    #[error("value for key {0} is not a map")]
    NotAMap(usize),
    /// The schema carries an unusable `x-kubernetes-patch-strategy`.
    #[error("unexpected patch strategy: {0}")]
    UnexpectedPatchStrategy(String),
}

impl StrategicMergeError {
    /// The HTTP status kube-apiserver answers with (its `interpretStrategicMergePatchError`):
    /// 400 for malformed directives and bodies, 422 for lists of lists, and 500 (a `Status` with
    /// an empty reason) for everything else, such as a missing merge key.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::PatchNotObject(_)
            | Self::BadJsonDoc
            | Self::BadPrimitiveListFormat
            | Self::BadRetainKeysFormat
            | Self::BadSetElementOrderFormat => 400,
            Self::ListOfLists => 422,
            _ => 500,
        }
    }

    /// The `reason` of the `Status` the real server returns (empty means `StatusReasonUnknown`).
    pub fn reason(&self) -> &'static str {
        match self.status_code() {
            400 => "BadRequest",
            422 => "Invalid",
            _ => "",
        }
    }

    /// The `message` of the `Status` the real server returns. For 422 it is a generic text,
    /// because upstream builds that status with `NewGenericServerResponse`.
    pub fn status_message(&self) -> String {
        match self.status_code() {
            422 => "the server rejected our request due to an error in our request".to_owned(),
            _ => self.to_string(),
        }
    }
}

type Result<T> = std::result::Result<T, StrategicMergeError>;

/// A JSON object as serde_json holds it.
type Object = Map<String, Value>;

/// Applies strategic merge `patch` to `original`, an object at position `schema`.
///
/// A `null` patch leaves the object unchanged (the server decodes it to an empty patch);
/// any other non-object patch is a 400 error.
pub fn apply(original: &Value, patch: &Value, schema: Node<'_>) -> Result<Value> {
    let original = match original {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        _ => return Err(StrategicMergeError::BadJsonDoc),
    };
    match patch {
        Value::Object(patch) => merge_map(original, patch.clone(), schema).map(Value::Object),
        Value::Null => Ok(Value::Object(original)),
        other => Err(StrategicMergeError::PatchNotObject(json_kind(other))),
    }
}

/// Merge metadata of one field, looked up in its parent's schema.
struct FieldMeta<'a> {
    node: Node<'a>,
    /// The strategy besides `retainKeys` (`merge`, `replace`), if any.
    strategy: Option<&'a str>,
    /// Empty when none is declared, as upstream represents it.
    merge_key: &'a str,
}

impl<'a> FieldMeta<'a> {
    fn lookup(parent: Node<'a>, field: &str) -> Result<Self> {
        let node = parent.property(field);
        let strategies: Vec<&'a str> = node.patch_strategies().collect();
        // `retainKeys` only tells clients to send `$retainKeys`; applying ignores it here.
        let strategy = match strategies.as_slice() {
            [] => None,
            [only] => (*only != RETAIN_KEYS_STRATEGY).then_some(*only),
            [first, second] if *first == RETAIN_KEYS_STRATEGY => Some(*second),
            [first, second] if *second == RETAIN_KEYS_STRATEGY => Some(*first),
            _ => {
                return Err(StrategicMergeError::UnexpectedPatchStrategy(format!(
                    "[{}]",
                    strategies.join(" ")
                )));
            }
        };
        Ok(FieldMeta {
            node,
            strategy,
            merge_key: node.patch_merge_key().unwrap_or(""),
        })
    }

    /// Upstream names the element type (a Go kind) when a merge key is missing.
    fn element_kind_name(&self) -> &'static str {
        let items = self.node.items();
        if items.properties().is_some() {
            "struct"
        } else if items.type_name() == Some("object") {
            "map"
        } else {
            "interface"
        }
    }
}

/// Merges `patch` into `original`, an object at `node`. Directives that act on the object as a
/// whole (`$patch`, `$retainKeys`, `$setElementOrder`) run before the per-key merge, as upstream.
fn merge_map(mut original: Object, mut patch: Object, node: Node<'_>) -> Result<Object> {
    if let Some(directive) = patch.get(DIRECTIVE_MARKER).cloned() {
        return apply_map_directive(&directive, patch);
    }
    apply_retain_keys(&mut original, &mut patch)?;
    apply_element_orders(&mut original, &mut patch, node)?;
    for (key, value) in patch {
        merge_field(&mut original, key, value, node)?;
    }
    Ok(original)
}

/// `$patch` inside an object: `replace` takes the patch instead of merging it (directives and
/// nulls dropped), `delete` leaves an empty object (upstream keeps the key, holding `{}`).
fn apply_map_directive(directive: &Value, patch: Object) -> Result<Object> {
    match directive.as_str() {
        Some(REPLACE_DIRECTIVE) => Ok(strip_map(patch)),
        Some(DELETE_DIRECTIVE) => Ok(Map::new()),
        _ => Err(StrategicMergeError::BadPatchType {
            directive: go_format(directive, Verb::S),
            map: go_format_map(&patch),
        }),
    }
}

/// `$retainKeys`: drops every original key the list does not name. The patch itself may only
/// set named keys (deletions and parallel-list directives excepted).
fn apply_retain_keys(original: &mut Object, patch: &mut Object) -> Result<()> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS_DIRECTIVE) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(StrategicMergeError::BadRetainKeysFormat);
    };
    let retained = |key: &str| retain.iter().any(|k| k.as_str() == Some(key));
    let sets_unlisted_key = patch.iter().any(|(key, value)| {
        !value.is_null()
            && !key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
            && !key.starts_with(SET_ELEMENT_ORDER_PREFIX)
            && !retained(key)
    });
    if sets_unlisted_key {
        return Err(StrategicMergeError::BadRetainKeysFormat);
    }
    original.retain(|key, _| retained(key));
    Ok(())
}

/// Processes every `$setElementOrder/<field>`: merges `<field>` (taking it out of the patch) and
/// orders the result by the directive, then by the live list.
fn apply_element_orders(original: &mut Object, patch: &mut Object, node: Node<'_>) -> Result<()> {
    let order_keys: Vec<String> = patch
        .keys()
        .filter(|key| key.starts_with(SET_ELEMENT_ORDER_PREFIX))
        .cloned()
        .collect();
    for order_key in order_keys {
        let Some(order) = patch.shift_remove(&order_key) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(StrategicMergeError::BadArgType {
                expected: GO_SLICE,
                actual: GoType::of(&order).name(),
            });
        };
        let field = extract_key(&order_key, SET_ELEMENT_ORDER_PREFIX)?;
        if let Some(ordered) = ordered_list(original, patch, field, &order, node)? {
            original.insert(field.to_owned(), Value::Array(ordered));
            patch.shift_remove(field);
        }
    }
    Ok(())
}

/// The merged and ordered value of list `field` under `$setElementOrder`, or `None` when the
/// list is in neither the object nor the patch.
fn ordered_list(
    original: &Object,
    patch: &Object,
    field: &str,
    order: &[Value],
    node: Node<'_>,
) -> Result<Option<Vec<Value>>> {
    let original_list = list_field(original, field)?;
    let patch_list = list_field(patch, field)?;
    let meta = FieldMeta::lookup(node, field)?;
    let merge_key = meta.merge_key;
    validate_patch_order(patch_list.as_deref().unwrap_or_default(), order, merge_key)?;

    let server_order = original_list.clone().unwrap_or_default();
    let patch_items = patch_list.clone().unwrap_or_default();
    let merged = match (original_list, patch_list) {
        (Some(original_list), None) => original_list,
        (None, Some(patch_list)) => strip_list(patch_list),
        (Some(original_list), Some(patch_list)) => {
            merge_list_field(original_list, patch_list, &meta, false)?
        }
        (None, None) => return Ok(None),
    };
    let (in_order, server_only) = if merge_key.is_empty() {
        partition_scalars(merged, order)
    } else {
        partition_maps(merged, order, merge_key)?
    };
    let kind = element_type(&[&server_order, &patch_items])?;
    normalize_element_order(in_order, server_only, order, &server_order, merge_key, kind).map(Some)
}

/// The list under `field`, if present; anything else there is an error.
fn list_field(map: &Object, field: &str) -> Result<Option<Vec<Value>>> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items.clone())),
        Some(other) => Err(StrategicMergeError::BadArgType {
            expected: GO_SLICE,
            actual: GoType::of(other).name(),
        }),
    }
}

/// The items of the patch list (deletions and directive elements aside) must appear in the
/// `$setElementOrder` list, in the same relative order.
fn validate_patch_order(patch_list: &[Value], order: &[Value], merge_key: &str) -> Result<()> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let mut items = Vec::with_capacity(patch_list.len());
    for item in patch_list {
        if merge_key.is_empty() || !is_delete_element(item)? {
            items.push(item);
        }
    }
    let (mut item_index, mut order_index) = (0, 0);
    while let (Some(item), Some(ordered)) = (items.get(item_index), order.get(order_index)) {
        if has_directive_marker(item) {
            item_index += 1;
            continue;
        }
        if merge_key_values_equal(item, ordered, merge_key)? {
            item_index += 1;
        }
        order_index += 1;
    }
    if item_index < items.len() && order_index >= order.len() {
        return Err(StrategicMergeError::OrderMismatch {
            patch: go_format_list(patch_list),
            order: go_format_list(order),
        });
    }
    Ok(())
}

/// Whether two elements are the same list entry (by merge key, or by value for scalars).
fn merge_key_values_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool> {
    if merge_key.is_empty() {
        return Ok(left == right);
    }
    Ok(merge_key_value(left, merge_key)? == merge_key_value(right, merge_key)?)
}

/// The merge key's value of a list element, which must be an object that has it.
fn merge_key_value<'v>(element: &'v Value, merge_key: &str) -> Result<&'v Value> {
    let map = as_map(element)?;
    map.get(merge_key)
        .ok_or_else(|| no_merge_key(map, merge_key))
}

/// Splits `$setElementOrder/<field>` or `$deleteFromPrimitiveList/<field>` into `<field>`.
fn extract_key<'k>(key: &'k str, prefix: &str) -> Result<&'k str> {
    match key.split_once('/') {
        Some((head, field)) if head == prefix => Ok(field),
        _ if prefix == DELETE_FROM_PRIMITIVE_LIST_PREFIX => {
            Err(StrategicMergeError::BadPrimitiveListFormat)
        }
        _ => Err(StrategicMergeError::BadSetElementOrderFormat),
    }
}

/// Merges one patch entry into `original`.
fn merge_field(original: &mut Object, key: String, value: Value, node: Node<'_>) -> Result<()> {
    let (key, is_delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
        (
            extract_key(&key, DELETE_FROM_PRIMITIVE_LIST_PREFIX)?.to_owned(),
            true,
        )
    } else {
        (key, false)
    };
    if value.is_null() {
        original.shift_remove(&key);
        return Ok(());
    }
    let Some(current) = original.get_mut(&key) else {
        // A deletion list for an absent field has nothing to delete.
        if !is_delete_list && let Some(value) = strip_directives(value) {
            original.insert(key, value);
        }
        return Ok(());
    };
    let current = std::mem::take(current);
    match merge_values(current, value, node, &key, is_delete_list)? {
        Some(merged) => {
            original.insert(key, merged);
        }
        None => {
            original.shift_remove(&key);
        }
    }
    Ok(())
}

/// The new value of field `key` (`None` removes it).
fn merge_values(
    current: Value,
    value: Value,
    node: Node<'_>,
    key: &str,
    is_delete_list: bool,
) -> Result<Option<Value>> {
    match (current, value) {
        (Value::Object(current), Value::Object(value)) => {
            let meta = FieldMeta::lookup(node, key)?;
            let merged = if meta.strategy == Some(REPLACE_DIRECTIVE) {
                strip_map(value)
            } else {
                merge_map(current, value, meta.node)?
            };
            Ok(Some(Value::Object(merged)))
        }
        (Value::Array(current), Value::Array(value)) => {
            let meta = FieldMeta::lookup(node, key)?;
            merge_list_field(current, value, &meta, is_delete_list).map(|l| Some(Value::Array(l)))
        }
        // A deletion list never replaces a value of another type.
        (current, value) if is_delete_list && GoType::of(&current) != GoType::of(&value) => {
            Ok(Some(current))
        }
        (_, value) => Ok(strip_directives(value)),
    }
}

/// Merges a list field: by its strategy, or as a deletion list; other lists are replaced.
fn merge_list_field(
    current: Vec<Value>,
    value: Vec<Value>,
    meta: &FieldMeta<'_>,
    is_delete_list: bool,
) -> Result<Vec<Value>> {
    if meta.strategy == Some(MERGE_DIRECTIVE) || is_delete_list {
        merge_list(current, value, meta, is_delete_list)
    } else {
        Ok(strip_list(value))
    }
}

/// Merges a list with strategy `merge`: scalars as a set, objects by merge key.
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: &FieldMeta<'_>,
    is_delete_list: bool,
) -> Result<Vec<Value>> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let kind = element_type(&[&original, &patch])?;
    if kind != GoType::Map {
        return Ok(merge_scalar_list(original, patch, is_delete_list));
    }
    let merge_key = meta.merge_key;
    if merge_key.is_empty() {
        return Err(StrategicMergeError::MissingMergeKeyDeclaration(
            meta.element_kind_name(),
        ));
    }
    let (original, patch) = apply_list_directives(original, patch, merge_key)?;
    let merged = merge_elements(original.clone(), &patch, merge_key, meta.node.items())?;
    let (in_patch, server_only) = partition_maps(merged, &patch, merge_key)?;
    normalize_element_order(in_patch, server_only, &patch, &original, merge_key, kind)
}

/// A list of scalars merges as a set; a deletion list removes its values instead.
fn merge_scalar_list(original: Vec<Value>, patch: Vec<Value>, is_delete_list: bool) -> Vec<Value> {
    if is_delete_list {
        return original
            .into_iter()
            .filter(|v| !patch.contains(v))
            .collect();
    }
    let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
    for value in original.iter().chain(&patch) {
        if !merged.contains(value) {
            merged.push(value.clone());
        }
    }
    let (in_patch, server_only) = partition_scalars(merged, &patch);
    order_partitions(in_patch, server_only, &patch, &original, None)
}

/// Handles `$patch` list elements: `delete` removes the elements with that merge key,
/// `replace` makes the other patch elements the whole list. Returns the (possibly replaced)
/// original and the remaining patch elements.
fn apply_list_directives(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut rest = Vec::with_capacity(patch.len());
    let mut replace = false;
    for element in patch {
        let map = as_map(&element)?;
        let Some(directive) = map.get(DIRECTIVE_MARKER) else {
            rest.push(element);
            continue;
        };
        match directive.as_str() {
            Some(DELETE_DIRECTIVE) => {
                let key_value = map
                    .get(merge_key)
                    .ok_or_else(|| no_merge_key(map, merge_key))?;
                original.retain(|e| e.get(merge_key) != Some(key_value));
            }
            // Keep going: the remaining directives must still be validated and dropped.
            Some(REPLACE_DIRECTIVE) => replace = true,
            Some(MERGE_DIRECTIVE) => return Err(StrategicMergeError::MergeDirectiveInList),
            _ => {
                return Err(StrategicMergeError::BadPatchType {
                    directive: go_format(directive, Verb::S),
                    map: go_format_map(map),
                });
            }
        }
    }
    if replace {
        Ok((rest, Vec::new()))
    } else {
        Ok((original, rest))
    }
}

/// Merges each patch element into the original element with the same merge key, or appends it.
fn merge_elements(
    mut original: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
    items: Node<'_>,
) -> Result<Vec<Value>> {
    for element in patch {
        let key_value = merge_key_value(element, merge_key)?;
        let patch_map = as_map(element)?.clone();
        match find_by_merge_key(&original, merge_key, key_value)? {
            Some(index) => {
                if let Some(Value::Object(current)) = original.get_mut(index) {
                    *current = merge_map(std::mem::take(current), patch_map, items)?;
                }
            }
            None => original.extend(strip_directives(element.clone())),
        }
    }
    Ok(original)
}

/// Index of the first element whose merge key has `key_value`. Elements before it must be objects.
fn find_by_merge_key(list: &[Value], merge_key: &str, key_value: &Value) -> Result<Option<usize>> {
    for (index, element) in list.iter().enumerate() {
        let Value::Object(map) = element else {
            return Err(StrategicMergeError::NotAMap(index));
        };
        if map.get(merge_key) == Some(key_value) {
            return Ok(Some(index));
        }
    }
    Ok(None)
}

/// Splits `merged` into the elements present in `by` and the others.
fn partition_scalars(merged: Vec<Value>, by: &[Value]) -> (Vec<Value>, Vec<Value>) {
    merged.into_iter().partition(|v| by.contains(v))
}

/// Splits `merged` into the elements whose merge key occurs in `by` and the others.
fn partition_maps(
    merged: Vec<Value>,
    by: &[Value],
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut present = Vec::with_capacity(merged.len());
    let mut absent = Vec::new();
    for element in merged {
        let key_value = merge_key_value(&element, merge_key)?;
        if find_by_merge_key(by, merge_key, key_value)?.is_some() {
            present.push(element);
        } else {
            absent.push(element);
        }
    }
    Ok((present, absent))
}

/// Orders a merged list: the patch items by `patch_order`, the server-only items by
/// `server_order`, then interleaves them (upstream's `normalizeElementOrder`).
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    kind: GoType,
) -> Result<Vec<Value>> {
    if kind == GoType::Map {
        for list in [&patch_items, &server_only, patch_order, server_order] {
            for element in list.iter() {
                merge_key_value(element, merge_key)?;
            }
        }
        let patch_items = deletions_last(patch_items)?;
        let server_only = deletions_last(server_only)?;
        Ok(order_partitions(
            patch_items,
            server_only,
            patch_order,
            server_order,
            Some(merge_key),
        ))
    } else {
        Ok(order_partitions(
            patch_items,
            server_only,
            patch_order,
            server_order,
            None,
        ))
    }
}

/// Moves `$patch: delete` elements to the end, as upstream does before sorting.
fn deletions_last(list: Vec<Value>) -> Result<Vec<Value>> {
    let mut kept = Vec::with_capacity(list.len());
    let mut deletions = Vec::new();
    for element in list {
        if is_delete_element(&element)? {
            deletions.push(element);
        } else {
            kept.push(element);
        }
    }
    kept.append(&mut deletions);
    Ok(kept)
}

/// Sorts the patch items and the server-only items, then interleaves them.
fn order_partitions(
    mut patch_items: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
) -> Vec<Value> {
    sort_by_order(&mut patch_items, patch_order, merge_key);
    sort_by_order(&mut server_only, server_order, merge_key);
    merge_sorted(server_only, patch_items, server_order, merge_key)
}

/// Stable sort by position in `order`; elements not in it keep their relative order at the end
/// (deletion elements are the only ones upstream ever leaves unmatched here).
fn sort_by_order(list: &mut [Value], order: &[Value], merge_key: Option<&str>) {
    list.sort_by_key(|element| position_in(order, element, merge_key).unwrap_or(usize::MAX));
}

/// Interleaves two sorted lists: a server-only item goes first only when both it and the next
/// patch item are in the live list and it comes earlier there. New items therefore lead.
fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: Option<&str>,
) -> Vec<Value> {
    let mut merged = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (position_in(server_order, l, merge_key), position_in(server_order, r, merge_key)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        merged.extend(next);
    }
    merged
}

/// Position of `element` in `list`, matching objects by merge key and scalars by value.
fn position_in(list: &[Value], element: &Value, merge_key: Option<&str>) -> Option<usize> {
    match merge_key {
        Some(key) => {
            let wanted = element.get(key);
            list.iter().position(|e| e.get(key) == wanted)
        }
        None => list.iter().position(|e| e == element),
    }
}

/// Whether a merging-list element is `{"$patch": "delete", ...}`; it must be an object.
fn is_delete_element(element: &Value) -> Result<bool> {
    let map = as_map(element)?;
    Ok(map.get(DIRECTIVE_MARKER).and_then(Value::as_str) == Some(DELETE_DIRECTIVE))
}

/// Whether a list element carries `$patch` (with any value).
fn has_directive_marker(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|m| m.contains_key(DIRECTIVE_MARKER))
}

/// The element as an object, or upstream's type error.
fn as_map(value: &Value) -> Result<&Object> {
    value.as_object().ok_or(StrategicMergeError::BadArgType {
        expected: GO_MAP,
        actual: GoType::of(value).name(),
    })
}

fn no_merge_key(map: &Object, merge_key: &str) -> StrategicMergeError {
    StrategicMergeError::NoMergeKey {
        map: go_format_map(map),
        key: merge_key.to_owned(),
    }
}

/// The common type of the elements of `lists` (upstream's `sliceElementType`).
fn element_type(lists: &[&[Value]]) -> Result<GoType> {
    let mut found: Option<GoType> = None;
    for value in lists.iter().flat_map(|l| l.iter()) {
        let kind = GoType::of(value);
        match found {
            None if kind == GoType::Slice => return Err(StrategicMergeError::ListOfLists),
            None => found = Some(kind),
            Some(expected) if expected != kind => {
                let rendered: Vec<String> = lists.iter().map(|l| go_format_list(l)).collect();
                return Err(StrategicMergeError::MixedElementTypes(format!(
                    "[{}]",
                    rendered.join(" ")
                )));
            }
            Some(_) => {}
        }
    }
    found.ok_or(StrategicMergeError::NoElements)
}

/// Removes directives from a value taken from the patch without merging (upstream's
/// `removeDirectives` after `discardNullValuesFromPatch`): objects carrying `$patch` vanish,
/// `null` members are dropped, and so are leftover `$retainKeys`, `$setElementOrder/…` and
/// `$deleteFromPrimitiveList/…` keys, which upstream leaves for decoding to discard.
fn strip_directives(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) if map.get(DIRECTIVE_MARKER).is_some_and(|d| !d.is_null()) => None,
        Value::Object(map) => Some(Value::Object(strip_map(map))),
        Value::Array(items) => Some(Value::Array(strip_list(items))),
        scalar => Some(scalar),
    }
}

fn strip_map(map: Object) -> Object {
    map.into_iter()
        .filter(|(key, value)| !value.is_null() && !is_directive_key(key))
        .filter_map(|(key, value)| strip_directives(value).map(|v| (key, v)))
        .collect()
}

fn strip_list(items: Vec<Value>) -> Vec<Value> {
    items.into_iter().filter_map(strip_directives).collect()
}

fn is_directive_key(key: &str) -> bool {
    key == DIRECTIVE_MARKER
        || key == RETAIN_KEYS_DIRECTIVE
        || key.starts_with(SET_ELEMENT_ORDER_PREFIX)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
}

/// JSON type name as Go's decoder reports it.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Null | Value::Object(_) => "object",
    }
}

/// The Go type a JSON value has after the server decodes it (integers stay `int64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GoType {
    Map,
    Slice,
    String,
    Int,
    Float,
    Bool,
    Nil,
}

impl GoType {
    fn of(value: &Value) -> Self {
        match value {
            Value::Object(_) => Self::Map,
            Value::Array(_) => Self::Slice,
            Value::String(_) => Self::String,
            Value::Number(n) if n.is_i64() => Self::Int,
            Value::Number(_) => Self::Float,
            Value::Bool(_) => Self::Bool,
            Value::Null => Self::Nil,
        }
    }

    /// `reflect.TypeOf(v)` rendered with `%s`.
    fn name(self) -> &'static str {
        match self {
            Self::Map => GO_MAP,
            Self::Slice => GO_SLICE,
            Self::String => "string",
            Self::Int => "int64",
            Self::Float => "float64",
            Self::Bool => "bool",
            Self::Nil => "%!s(<nil>)",
        }
    }
}

/// Go `fmt` verbs used by upstream messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    V,
    S,
}

fn go_format_map(map: &Object) -> String {
    let mut out = String::new();
    write_go_map(map, Verb::V, &mut out);
    out
}

fn go_format_list(list: &[Value]) -> String {
    let mut out = String::new();
    write_go_list(list, Verb::V, &mut out);
    out
}

fn go_format(value: &Value, verb: Verb) -> String {
    let mut out = String::new();
    write_go(value, verb, &mut out);
    out
}

/// Renders a decoded JSON value as Go's `fmt` does (`map[k:v]` with sorted keys, `[a b]`,
/// `<nil>`, and `%!s(T=v)` for non-strings under `%s`).
fn write_go(value: &Value, verb: Verb, out: &mut String) {
    let scalar = match value {
        Value::Object(map) => return write_go_map(map, verb, out),
        Value::Array(list) => return write_go_list(list, verb, out),
        Value::String(s) => return out.push_str(s),
        Value::Null if verb == Verb::S => return out.push_str("%!s(<nil>)"),
        Value::Null => return out.push_str("<nil>"),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => go_float(n.as_f64().unwrap_or_default()),
        },
    };
    if verb == Verb::S {
        out.push_str(&format!("%!s({}={scalar})", GoType::of(value).name()));
    } else {
        out.push_str(&scalar);
    }
}

fn write_go_map(map: &Object, verb: Verb, out: &mut String) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push_str("map[");
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(key);
        out.push(':');
        write_go(value, verb, out);
    }
    out.push(']');
}

fn write_go_list(list: &[Value], verb: Verb, out: &mut String) {
    out.push('[');
    for (i, value) in list.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_go(value, verb, out);
    }
    out.push(']');
}

/// A float64 as Go's `%v` prints it: `%g` with the shortest digits, which switches to the
/// exponent form (`1e+06`) below exponent -4 and from exponent 6 on.
fn go_float(f: f64) -> String {
    let scientific = format!("{f:e}");
    let Some((mantissa, exponent)) = scientific.split_once('e') else {
        return scientific;
    };
    let exponent: i32 = exponent.parse().unwrap_or_default();
    if f == 0.0 || (-4..6).contains(&exponent) {
        return f.to_string();
    }
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::OnceLock;

    /// Definitions shaped like the built-in OpenAPI: merge keys and strategies from the Go tags.
    fn definitions() -> &'static Value {
        static DEFS: OnceLock<Value> = OnceLock::new();
        DEFS.get_or_init(|| {
            json!({
                "Deployment": {"type": "object", "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"$ref": "#/definitions/ObjectMeta"},
                    "spec": {"$ref": "#/definitions/DeploymentSpec"}
                }},
                "ObjectMeta": {"type": "object", "properties": {
                    "name": {"type": "string"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                    "finalizers": {"type": "array", "items": {"type": "string"},
                                   "x-kubernetes-patch-strategy": "merge"}
                }},
                "DeploymentSpec": {"type": "object", "properties": {
                    "replicas": {"type": "integer"},
                    "strategy": {"type": "object", "x-kubernetes-patch-strategy": "retainKeys",
                                 "properties": {"type": {"type": "string"},
                                                "rollingUpdate": {"type": "object"}}},
                    "template": {"$ref": "#/definitions/PodTemplateSpec"}
                }},
                "PodTemplateSpec": {"type": "object", "properties": {
                    "metadata": {"$ref": "#/definitions/ObjectMeta"},
                    "spec": {"$ref": "#/definitions/PodSpec"}
                }},
                "PodSpec": {"type": "object", "properties": {
                    "containers": {"type": "array", "items": {"$ref": "#/definitions/Container"},
                                   "x-kubernetes-patch-strategy": "merge",
                                   "x-kubernetes-patch-merge-key": "name"},
                    "volumes": {"type": "array", "items": {"$ref": "#/definitions/Volume"},
                                "x-kubernetes-patch-strategy": "merge,retainKeys",
                                "x-kubernetes-patch-merge-key": "name"},
                    "tolerations": {"type": "array", "items": {"type": "object"}},
                    "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
                    "affinity": {"type": "object", "properties": {"nodeAffinity": {"type": "object"}}},
                    "schedulingGates": {"type": "array", "items": {"type": "object"},
                                        "x-kubernetes-patch-strategy": "merge"}
                }},
                "Container": {"type": "object", "properties": {
                    "name": {"type": "string"},
                    "image": {"type": "string"},
                    "args": {"type": "array", "items": {"type": "string"}},
                    "env": {"type": "array", "items": {"$ref": "#/definitions/EnvVar"},
                            "x-kubernetes-patch-strategy": "merge",
                            "x-kubernetes-patch-merge-key": "name"},
                    "ports": {"type": "array", "items": {"type": "object"},
                              "x-kubernetes-patch-strategy": "merge",
                              "x-kubernetes-patch-merge-key": "containerPort"},
                    "volumeMounts": {"type": "array", "items": {"type": "object"},
                                     "x-kubernetes-patch-strategy": "merge",
                                     "x-kubernetes-patch-merge-key": "mountPath"}
                }},
                "EnvVar": {"type": "object", "properties": {
                    "name": {"type": "string"}, "value": {"type": "string"}
                }},
                "Volume": {"type": "object", "properties": {
                    "name": {"type": "string"},
                    "emptyDir": {"type": "object"},
                    "hostPath": {"type": "object"}
                }}
            })
        })
    }

    fn deployment_schema() -> Node<'static> {
        let defs = definitions();
        Node::new(&defs["Deployment"], defs.as_object())
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a", "b", "c"]},
            "spec": {
                "replicas": 2,
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {"name": "app", "image": "nginx:1", "args": ["--a"],
                             "env": [{"name": "A", "value": "a"}],
                             "ports": [{"containerPort": 80, "protocol": "TCP"}],
                             "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                            {"name": "sidecar", "image": "busybox"}
                        ],
                        "volumes": [{"name": "data", "emptyDir": {}}],
                        "tolerations": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}],
                        "nodeSelector": {"disk": "ssd", "zone": "a"},
                        "affinity": {"nodeAffinity": {"required": true}}
                    }
                }
            }
        })
    }

    fn patched(patch: Value) -> Value {
        apply(&deployment(), &patch, deployment_schema()).expect("patch applies")
    }

    fn patch_error(patch: Value) -> StrategicMergeError {
        apply(&deployment(), &patch, deployment_schema()).expect_err("patch is rejected")
    }

    fn pod_spec(patch: Value) -> Value {
        json!({"spec": {"template": {"spec": patch}}})
    }

    fn at<'v>(value: &'v Value, pointer: &str) -> &'v Value {
        value.pointer(pointer).unwrap_or(&Value::Null)
    }

    fn names(value: &Value, pointer: &str) -> Vec<String> {
        at(value, pointer)
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| i["name"].as_str().unwrap_or("?").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    const CONTAINERS: &str = "/spec/template/spec/containers";

    #[test]
    fn rollout_restart_keeps_containers() {
        let result = patched(json!({"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}}}}}));
        let mut expected = deployment();
        expected["spec"]["template"]["metadata"]["annotations"] =
            json!({"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"});
        assert_eq!(result, expected);
    }

    #[test]
    fn updates_a_container_image_by_name() {
        let result = patched(pod_spec(
            json!({"containers": [{"name": "sidecar", "image": "busybox:2"}]}),
        ));
        assert_eq!(names(&result, CONTAINERS), ["app", "sidecar"]);
        assert_eq!(
            at(&result, "/spec/template/spec/containers/1/image"),
            "busybox:2"
        );
        // The other container and the untouched fields of the patched one stay as they were.
        assert_eq!(
            at(&result, "/spec/template/spec/containers/0"),
            at(&deployment(), "/spec/template/spec/containers/0")
        );
    }

    #[test]
    fn merges_nested_merge_lists_and_keeps_other_fields() {
        let result = patched(pod_spec(
            json!({"containers": [{"name": "app", "image": "nginx:2",
            "env": [{"name": "A", "value": "changed"}]}]}),
        ));
        let app = at(&result, "/spec/template/spec/containers/0");
        assert_eq!(app["image"], "nginx:2");
        assert_eq!(app["env"], json!([{"name": "A", "value": "changed"}]));
        assert_eq!(
            app["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}])
        );
        assert_eq!(names(&result, CONTAINERS), ["app", "sidecar"]);
    }

    #[test]
    fn adds_an_env_var_ahead_of_the_existing_ones() {
        // Upstream orders patch items before server-only ones, so additions come first.
        let result = patched(pod_spec(json!({"containers": [{"name": "app",
            "env": [{"name": "B", "value": "b"}]}]})));
        assert_eq!(
            at(&result, "/spec/template/spec/containers/0/env"),
            &json!([{"name": "B", "value": "b"}, {"name": "A", "value": "a"}])
        );
    }

    #[test]
    fn adds_a_container_first_like_the_kubectl_patch_docs_show() {
        let result = patched(pod_spec(
            json!({"containers": [{"name": "redis", "image": "redis"}]}),
        ));
        assert_eq!(names(&result, CONTAINERS), ["redis", "app", "sidecar"]);
    }

    #[test]
    fn merges_by_integer_merge_key() {
        let result = patched(pod_spec(json!({"containers": [{"name": "app",
            "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]}]})));
        assert_eq!(
            at(&result, "/spec/template/spec/containers/0/ports"),
            &json!([{"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 443}])
        );
    }

    #[test]
    fn deletes_a_container_with_patch_delete() {
        let result = patched(pod_spec(
            json!({"containers": [{"name": "sidecar", "$patch": "delete"}]}),
        ));
        assert_eq!(names(&result, CONTAINERS), ["app"]);
        let unknown = patched(pod_spec(
            json!({"containers": [{"name": "ghost", "$patch": "delete"}]}),
        ));
        assert_eq!(names(&unknown, CONTAINERS), ["app", "sidecar"]);
    }

    #[test]
    fn replaces_a_merge_list_with_patch_replace() {
        let result = patched(pod_spec(json!({"containers": [
            {"name": "only", "image": "x"}, {"$patch": "replace"}]})));
        assert_eq!(
            at(&result, CONTAINERS),
            &json!([{"name": "only", "image": "x"}])
        );
    }

    #[test]
    fn empty_patch_list_leaves_a_merge_list_alone() {
        let result = patched(pod_spec(json!({"containers": []})));
        assert_eq!(at(&result, CONTAINERS), at(&deployment(), CONTAINERS));
    }

    #[test]
    fn null_deletes_keys() {
        let result = patched(json!({"metadata": {"labels": {"app": null, "tier": null}},
                                    "spec": {"replicas": null}}));
        assert_eq!(at(&result, "/metadata/labels"), &json!({}));
        assert!(at(&result, "/spec").get("replicas").is_none());
        assert_eq!(
            at(&result, "/spec/template"),
            at(&deployment(), "/spec/template")
        );
    }

    #[test]
    fn non_merge_lists_and_scalars_are_replaced() {
        let result = patched(pod_spec(json!({
            "tolerations": [{"key": "other", "operator": "Exists"}],
            "containers": [{"name": "app", "args": ["--b"]}]
        })));
        assert_eq!(
            at(&result, "/spec/template/spec/tolerations"),
            &json!([{"key": "other", "operator": "Exists"}])
        );
        assert_eq!(
            at(&result, "/spec/template/spec/containers/0/args"),
            &json!(["--b"])
        );
    }

    #[test]
    fn a_value_of_another_type_replaces() {
        let result = patched(json!({"spec": {"replicas": "three", "strategy": "Recreate"}}));
        assert_eq!(at(&result, "/spec/replicas"), "three");
        assert_eq!(at(&result, "/spec/strategy"), "Recreate");
    }

    #[test]
    fn unknown_positions_merge_maps_and_replace_lists() {
        let original = json!({"a": {"x": 1, "y": 2}, "l": [1, 2]});
        let result = apply(
            &original,
            &json!({"a": {"y": 3}, "l": [3]}),
            Node::unknown(),
        )
        .expect("applies");
        assert_eq!(result, json!({"a": {"x": 1, "y": 3}, "l": [3]}));
    }

    #[test]
    fn set_element_order_reorders_merged_list() {
        let result = patched(pod_spec(json!({
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}]
        })));
        assert_eq!(names(&result, CONTAINERS), ["sidecar", "app"]);
    }

    #[test]
    fn set_element_order_places_additions_like_kubectl_apply() {
        let result = patched(pod_spec(json!({
            "$setElementOrder/containers": [{"name": "app"}, {"name": "new"}, {"name": "sidecar"}],
            "containers": [{"name": "app", "image": "nginx:3"}, {"name": "new", "image": "n"}]
        })));
        assert_eq!(names(&result, CONTAINERS), ["app", "new", "sidecar"]);
        assert_eq!(
            at(&result, "/spec/template/spec/containers/0/image"),
            "nginx:3"
        );
        assert_eq!(
            at(&result, "/spec/template/spec/containers/0/args"),
            &json!(["--a"])
        );
    }

    #[test]
    fn set_element_order_on_scalars_with_deletion() {
        let result = patched(json!({"metadata": {
            "$setElementOrder/finalizers": ["c", "a"],
            "$deleteFromPrimitiveList/finalizers": ["b"]
        }}));
        assert_eq!(at(&result, "/metadata/finalizers"), &json!(["c", "a"]));
    }

    #[test]
    fn scalar_merge_lists_are_unions() {
        let result = patched(json!({"metadata": {"finalizers": ["b", "d"]}}));
        // Patch items lead unless the live list orders them after a server-only item.
        assert_eq!(
            at(&result, "/metadata/finalizers"),
            &json!(["a", "b", "d", "c"])
        );
        let appended = patched(json!({"metadata": {"finalizers": ["d"]}}));
        assert_eq!(
            at(&appended, "/metadata/finalizers"),
            &json!(["d", "a", "b", "c"])
        );
    }

    #[test]
    fn delete_from_primitive_list() {
        let result =
            patched(json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zz"]}}));
        assert_eq!(at(&result, "/metadata/finalizers"), &json!(["a", "c"]));
        let absent =
            patched(json!({"metadata": {"$deleteFromPrimitiveList/ownerReferences": ["x"]}}));
        assert!(at(&absent, "/metadata").get("ownerReferences").is_none());
    }

    #[test]
    fn retain_keys_clears_unlisted_fields() {
        let result =
            patched(json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}));
        assert_eq!(at(&result, "/spec/strategy"), &json!({"type": "Recreate"}));
    }

    #[test]
    fn retain_keys_in_a_merge_list_element() {
        let result = patched(pod_spec(json!({"volumes": [
            {"name": "data", "hostPath": {"path": "/x"}, "$retainKeys": ["hostPath", "name"]}
        ]})));
        assert_eq!(
            at(&result, "/spec/template/spec/volumes"),
            &json!([{"name": "data", "hostPath": {"path": "/x"}}])
        );
    }

    #[test]
    fn patch_replace_and_delete_inside_maps() {
        let result = patched(pod_spec(json!({
            "nodeSelector": {"$patch": "replace", "gpu": "yes"},
            "affinity": {"$patch": "delete"}
        })));
        assert_eq!(
            at(&result, "/spec/template/spec/nodeSelector"),
            &json!({"gpu": "yes"})
        );
        // Upstream leaves an empty object behind, not an absent field.
        assert_eq!(at(&result, "/spec/template/spec/affinity"), &json!({}));
    }

    #[test]
    fn directives_never_reach_new_values() {
        let result = patched(pod_spec(json!({
            "containers": [{"name": "new", "image": null, "$setElementOrder/env": [{"name": "X"}],
                            "env": [{"name": "X", "$patch": "delete"}, {"name": "Y"}]}],
            "runtimeClassName": {"$patch": "replace", "name": "x"},
            "hostAliases": [{"ip": "1.2.3.4", "hostnames": null}]
        })));
        assert_eq!(
            at(&result, "/spec/template/spec/containers/0"),
            &json!({"name": "new", "env": [{"name": "Y"}]})
        );
        assert!(
            at(&result, "/spec/template/spec")
                .get("runtimeClassName")
                .is_none()
        );
        assert_eq!(
            at(&result, "/spec/template/spec/hostAliases"),
            &json!([{"ip": "1.2.3.4"}])
        );
        let text = result.to_string();
        assert!(
            !text.contains("$patch") && !text.contains("$setElementOrder"),
            "{text}"
        );
    }

    #[test]
    fn null_and_delete_patches_on_the_whole_object() {
        assert_eq!(patched(Value::Null), deployment());
        assert_eq!(patched(json!({"$patch": "delete"})), json!({}));
        assert_eq!(patched(json!({})), deployment());
    }

    #[test]
    fn patch_that_is_not_an_object_is_a_bad_request() {
        let error = patch_error(json!([{"op": "add"}]));
        assert_eq!(
            error.to_string(),
            "json: cannot unmarshal array into Go value of type map[string]interface {}"
        );
        assert_eq!((error.status_code(), error.reason()), (400, "BadRequest"));
        assert_eq!(
            patch_error(json!("x")),
            StrategicMergeError::PatchNotObject("string")
        );
        let bad_original = apply(&json!([1]), &json!({}), deployment_schema());
        assert_eq!(bad_original, Err(StrategicMergeError::BadJsonDoc));
    }

    #[test]
    fn element_without_merge_key_is_rejected() {
        let error = patch_error(pod_spec(json!({"containers": [{"image": "nginx:2"}]})));
        assert_eq!(
            error.to_string(),
            "map: map[image:nginx:2] does not contain declared merge key: name"
        );
        assert_eq!((error.status_code(), error.reason()), (500, ""));
        let delete = patch_error(pod_spec(json!({"containers": [{"$patch": "delete"}]})));
        assert_eq!(
            delete.to_string(),
            "map: map[$patch:delete] does not contain declared merge key: name"
        );
    }

    #[test]
    fn bad_patch_directives_are_rejected() {
        let in_map = patch_error(pod_spec(json!({"nodeSelector": {"$patch": "explode"}})));
        assert_eq!(
            in_map.to_string(),
            "unknown patch type: explode in map: map[$patch:explode]"
        );
        let numeric = patch_error(json!({"$patch": 1}));
        assert_eq!(
            numeric.to_string(),
            "unknown patch type: %!s(int64=1) in map: map[$patch:1]"
        );
        let in_list = patch_error(pod_spec(
            json!({"containers": [{"name": "app", "$patch": "bogus"}]}),
        ));
        assert_eq!(
            in_list.to_string(),
            "unknown patch type: bogus in map: map[$patch:bogus name:app]"
        );
        let merge = patch_error(pod_spec(
            json!({"containers": [{"name": "app", "$patch": "merge"}]}),
        ));
        assert_eq!(merge, StrategicMergeError::MergeDirectiveInList);
        assert_eq!(in_map.status_code(), 500);
    }

    #[test]
    fn malformed_set_element_order_is_rejected() {
        let not_list = patch_error(pod_spec(json!({"$setElementOrder/containers": "app"})));
        assert_eq!(
            not_list.to_string(),
            "expected a []interface {}, but received a string"
        );
        assert_eq!(not_list.status_code(), 500);
        let bad_key = patch_error(pod_spec(json!({"$setElementOrderX/containers": []})));
        assert_eq!(
            (bad_key.to_string().as_str(), bad_key.status_code()),
            ("invalid patch format of setElementOrder list", 400)
        );
        let no_key = patch_error(pod_spec(
            json!({"$setElementOrder/containers": [{"image": "x"}],
                                                 "containers": [{"name": "app"}]}),
        ));
        assert_eq!(
            no_key.to_string(),
            "map: map[image:x] does not contain declared merge key: name"
        );
        let empty = apply(
            &json!({"metadata": {"finalizers": []}}),
            &json!({"metadata": {"$setElementOrder/finalizers": ["a"]}}),
            deployment_schema(),
        );
        assert_eq!(empty, Err(StrategicMergeError::NoElements));
    }

    #[test]
    fn set_element_order_must_match_the_patch_list() {
        let error = patch_error(pod_spec(json!({
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
            "containers": [{"name": "app", "image": "a"}, {"name": "sidecar", "image": "b"}]
        })));
        assert_eq!(
            error.to_string(),
            "the order in patch list:\n[map[image:a name:app] map[image:b name:sidecar]]\n doesn't match \
             $setElementOrder list:\n[map[name:sidecar] map[name:app]]"
        );
    }

    #[test]
    fn malformed_delete_from_primitive_list_is_rejected() {
        let error = patch_error(json!({"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}}));
        assert_eq!(error, StrategicMergeError::BadPrimitiveListFormat);
        assert_eq!(
            (error.to_string().as_str(), error.status_code()),
            ("invalid patch format of primitive list", 400)
        );
    }

    #[test]
    fn malformed_retain_keys_are_rejected() {
        let not_list = patch_error(json!({"spec": {"strategy": {"$retainKeys": "type"}}}));
        assert_eq!(
            (not_list.to_string().as_str(), not_list.status_code()),
            ("invalid patch format of retainKeys", 400)
        );
        let unlisted = patch_error(
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
        );
        assert_eq!(unlisted, StrategicMergeError::BadRetainKeysFormat);
        // Deleting an unlisted key is allowed.
        let result = patched(
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null}}}),
        );
        assert_eq!(
            at(&result, "/spec/strategy"),
            &json!({"type": "RollingUpdate"})
        );
    }

    #[test]
    fn element_type_errors() {
        let gates = |gates: Value, patch: Value| {
            apply(
                &pod_spec(json!({"schedulingGates": gates})),
                &pod_spec(patch),
                deployment_schema(),
            )
        };
        let lists =
            gates(json!([]), json!({"schedulingGates": [["x"]]})).expect_err("list of lists");
        assert_eq!(lists, StrategicMergeError::ListOfLists);
        assert_eq!((lists.status_code(), lists.reason()), (422, "Invalid"));
        assert_eq!(
            lists.status_message(),
            "the server rejected our request due to an error in our request"
        );
        let mixed = patch_error(pod_spec(json!({"containers": ["x"]})));
        assert_eq!(
            mixed.to_string(),
            "list element types are not identical: [[map[args:[--a] env:[map[name:A value:a]] image:nginx:1 \
             name:app ports:[map[containerPort:80 protocol:TCP]] volumeMounts:[map[mountPath:/data name:data]]] \
             map[image:busybox name:sidecar]] [x]]"
        );
        let keyless = gates(
            json!([{"name": "a"}]),
            json!({"schedulingGates": [{"name": "g"}]}),
        )
        .expect_err("no merge key declared");
        assert_eq!(
            keyless.to_string(),
            "cannot merge lists without merge key for map"
        );
    }

    #[test]
    fn formats_values_like_go() {
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(
            go_format(&json!({"b": null, "a": [true, 2.5]}), Verb::V),
            "map[a:[true 2.5] b:<nil>]"
        );
        assert_eq!(go_format(&json!(false), Verb::S), "%!s(bool=false)");
    }
}
