//! The ownership engine of structured-merge-diff (`merge.Updater`): who loses which fields when
//! an object changes, and the apply merge with pruning of fields an applier stopped applying.
//!
//! All managers are assumed to be at the object's current version; devcluster serves one
//! version per kind, so SMD's cross-version conversions never apply.

use std::collections::BTreeMap;

use serde_json::Value;

use super::fieldset::FieldSet;
use super::managed::{ManagerId, VersionedSet};
use super::merge::{merge, remove_items};
use super::typed::{Comparison, compare, ensure_named_fields_are_members, to_field_set};
use crate::schema::Node;

/// Owned sets by manager.
pub(super) type ManagedSets = BTreeMap<ManagerId, VersionedSet>;

/// Fields other managers own that a write would change, by manager.
pub(super) type ConflictSets = Vec<(ManagerId, FieldSet)>;

/// Ownership rules for one kind at one version.
pub(super) struct Updater<'a> {
    pub schema: Node<'a>,
    /// Reset fields: never owned, never in conflict.
    pub ignored: &'a FieldSet,
    pub api_version: &'a str,
}

impl Updater<'_> {
    /// Takes from every manager but `writer` the fields the change from `old` to `new`
    /// modifies, adds or removes. Without `force`, any owned field being modified or added is a
    /// conflict and nothing changes. Managers left with nothing are dropped.
    pub fn update(
        &self,
        old: &Value,
        new: &Value,
        managers: &mut ManagedSets,
        writer: Option<&ManagerId>,
        force: bool,
    ) -> Result<Comparison, ConflictSets> {
        let mut changes = compare(old, new, self.schema);
        changes.exclude(self.ignored);
        let touched = changes.modified.union(&changes.added);
        let conflicts: ConflictSets = managers
            .iter()
            .filter(|(id, _)| Some(*id) != writer)
            .map(|(id, vs)| (id.clone(), vs.set.intersection(&touched)))
            .filter(|(_, set)| !set.is_empty())
            .collect();
        if !force && !conflicts.is_empty() {
            return Err(conflicts);
        }
        for (id, vs) in managers.iter_mut() {
            if Some(id) != writer {
                vs.set = vs.set.difference(&touched).difference(&changes.removed);
            }
        }
        managers.retain(|_, vs| !vs.set.is_empty());
        Ok(changes)
    }

    /// A non-apply write (SMD `Update` as the API server drives it): moves ownership of what
    /// changed to the writer and returns the fields the writer gains, reset fields excluded.
    pub fn record(&self, old: &Value, new: &Value, managers: &mut ManagedSets) -> FieldSet {
        let changes = match self.update(old, new, managers, None, true) {
            Ok(changes) => changes,
            // Forced updates cannot conflict.
            Err(_) => return FieldSet::new(),
        };
        changes
            .modified
            .union(&changes.added)
            .difference(&changes.removed)
            .recursive_difference(self.ignored)
    }

    /// Applies `config` for `applier` (SMD `Apply`): merges it into `live`, makes the applier
    /// own exactly the configuration's fields, prunes what it applied before but no longer
    /// does, and takes conflicting fields from others when forced. Returns the new object.
    pub fn apply(
        &self,
        live: &Value,
        config: &Value,
        managers: &mut ManagedSets,
        applier: &ManagerId,
        force: bool,
    ) -> Result<Value, ConflictSets> {
        let merged = merge(live, config, self.schema);
        let last_applied = managers.get(applier).map(|vs| vs.set.clone());
        let applied = to_field_set(config, self.schema).recursive_difference(self.ignored);
        managers.insert(
            applier.clone(),
            VersionedSet {
                set: applied,
                api_version: self.api_version.to_owned(),
                applied: true,
            },
        );
        let merged = match last_applied.filter(|s| !s.is_empty()) {
            Some(last) => self.prune(&merged, managers, &last),
            None => merged,
        };
        self.update(live, &merged, managers, Some(applier), force)?;
        Ok(merged)
    }

    /// Removes what the applier owned last time and no longer applies, unless someone else
    /// (any manager, or the new configuration) owns it.
    fn prune(&self, merged: &Value, managers: &ManagedSets, last: &FieldSet) -> Value {
        let named = |set: &FieldSet| ensure_named_fields_are_members(set, self.schema);
        let pruned = self.remove(merged, &named(last));
        let pruned = self.add_back_owned(merged, &pruned, managers);
        self.add_back_dangling(merged, &pruned, last)
    }

    /// SMD's `addBackOwnedItems`: restores pruned paths that some manager owns.
    fn add_back_owned(&self, merged: &Value, pruned: &Value, managers: &ManagedSets) -> Value {
        let named = |set: &FieldSet| ensure_named_fields_are_members(set, self.schema);
        let owned = managers
            .values()
            .fold(FieldSet::new(), |acc, vs| acc.union(&vs.set));
        let merged_set = named(&to_field_set(merged, self.schema));
        let pruned_set = named(&to_field_set(pruned, self.schema));
        let unowned_removed = merged_set.difference(&pruned_set.union(&named(&owned)));
        self.remove(merged, &unowned_removed)
    }

    /// SMD's `addBackDanglingItems`: only paths the applier owned last time may go.
    fn add_back_dangling(&self, merged: &Value, pruned: &Value, last: &FieldSet) -> Value {
        let named = |set: &FieldSet| ensure_named_fields_are_members(set, self.schema);
        let merged_set = named(&to_field_set(merged, self.schema));
        let pruned_set = named(&to_field_set(pruned, self.schema));
        let gone = merged_set
            .difference(&pruned_set)
            .intersection(&named(last));
        self.remove(merged, &gone)
    }

    fn remove(&self, value: &Value, set: &FieldSet) -> Value {
        match remove_items(value, set, self.schema) {
            // An object is never removed as a whole, only emptied.
            Value::Null => Value::Object(Default::default()),
            kept => kept,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fieldset::{PathElement, path_to_string};
    use super::super::managed::Operation;
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "metadata": {"type": "object", "properties": {
                "name": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "spec": {"type": "object", "properties": {
                "replicas": {"type": "integer"},
                "strategy": {"type": "object", "properties": {
                    "type": {"type": "string"},
                    "rollingUpdate": {"type": "object", "properties": {
                        "maxSurge": {"type": "integer"}}}}},
                "containers": {"type": "array", "x-kubernetes-list-type": "map",
                               "x-kubernetes-list-map-keys": ["name"],
                               "items": {"type": "object", "properties": {
                                   "name": {"type": "string"}, "image": {"type": "string"}}}}}}}})
    }

    fn applier(name: &str) -> ManagerId {
        ManagerId::new(name, Operation::Apply, "v1", "")
    }

    fn owned(managers: &ManagedSets, id: &ManagerId) -> Vec<String> {
        managers[id]
            .set
            .paths()
            .iter()
            .map(|p| path_to_string(p))
            .collect()
    }

    #[test]
    fn apply_prunes_struct_fields_and_map_keys_no_longer_applied() {
        let s = schema();
        let ignored = FieldSet::new();
        let u = Updater {
            schema: Node::new(&s, None),
            ignored: &ignored,
            api_version: "v1",
        };
        let mut managers = ManagedSets::new();
        let a = applier("a");
        let first = json!({"metadata": {"labels": {"x": "1", "y": "2"}},
                           "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let live = u
            .apply(&json!({}), &first, &mut managers, &a, false)
            .unwrap();
        assert_eq!(live, first);
        let second =
            json!({"metadata": {"labels": {"y": "2"}}, "spec": {"strategy": {"type": "Recreate"}}});
        let live = u.apply(&live, &second, &mut managers, &a, false).unwrap();
        assert_eq!(live, second);
        assert_eq!(
            owned(&managers, &a),
            vec![".metadata.labels.y", ".spec.strategy.type"]
        );
    }

    #[test]
    fn pruning_keeps_fields_someone_else_owns() {
        let s = schema();
        let ignored = FieldSet::new();
        let u = Updater {
            schema: Node::new(&s, None),
            ignored: &ignored,
            api_version: "v1",
        };
        let mut managers = ManagedSets::new();
        let (a, b) = (applier("a"), applier("b"));
        let config = json!({"spec": {"replicas": 3}});
        let live = u
            .apply(&json!({}), &config, &mut managers, &a, false)
            .unwrap();
        let live = u.apply(&live, &config, &mut managers, &b, false).unwrap();
        let live = u
            .apply(&live, &json!({}), &mut managers, &a, false)
            .unwrap();
        assert_eq!(live, json!({"spec": {"replicas": 3}}));
        assert!(!managers.contains_key(&a));
        assert_eq!(owned(&managers, &b), vec![".spec.replicas"]);
    }

    #[test]
    fn conflicts_unless_forced_and_same_value_is_shared() {
        let s = schema();
        let ignored = FieldSet::new();
        let u = Updater {
            schema: Node::new(&s, None),
            ignored: &ignored,
            api_version: "v1",
        };
        let mut managers = ManagedSets::new();
        let (a, b) = (applier("a"), applier("b"));
        let live = u
            .apply(
                &json!({}),
                &json!({"spec": {"replicas": 1}}),
                &mut managers,
                &a,
                false,
            )
            .unwrap();
        let err = u
            .apply(
                &live,
                &json!({"spec": {"replicas": 2}}),
                &mut managers.clone(),
                &b,
                false,
            )
            .unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].0, a);
        let shared = u
            .apply(
                &live,
                &json!({"spec": {"replicas": 1}}),
                &mut managers.clone(),
                &b,
                false,
            )
            .unwrap();
        assert_eq!(shared, live);
        let forced = u
            .apply(
                &live,
                &json!({"spec": {"replicas": 2}}),
                &mut managers,
                &b,
                true,
            )
            .unwrap();
        assert_eq!(forced["spec"]["replicas"], json!(2));
        assert!(!managers.contains_key(&a));
        assert_eq!(owned(&managers, &b), vec![".spec.replicas"]);
    }

    #[test]
    fn record_takes_changed_fields_and_drops_removed_ones() {
        let s = schema();
        let ignored = FieldSet::from_field_paths(&[vec!["status"]]);
        let u = Updater {
            schema: Node::new(&s, None),
            ignored: &ignored,
            api_version: "v1",
        };
        let mut managers = ManagedSets::new();
        let a = applier("a");
        let live = u
            .apply(
                &json!({}),
                &json!({"spec": {"replicas": 1, "containers": [{"name": "c", "image": "i"}]}}),
                &mut managers,
                &a,
                false,
            )
            .unwrap();
        let mut new = live.clone();
        new["spec"]["replicas"] = json!(5);
        new["spec"]["containers"] = json!([]);
        new["status"] = json!({"ready": true});
        let gained = u.record(&live, &new, &mut managers);
        let gained: Vec<String> = gained.paths().iter().map(|p| path_to_string(p)).collect();
        assert_eq!(gained, vec![".spec.replicas"]);
        // The applier lost the replicas (taken) and the container (removed).
        assert!(!managers.contains_key(&a));
        let key = PathElement::key(vec![("name".into(), json!("c"))]);
        assert!(!managers.values().any(|vs| vs.set.has(&[
            PathElement::Field("spec".into()),
            PathElement::Field("containers".into()),
            key.clone()
        ])));
    }
}
