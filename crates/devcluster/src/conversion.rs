//! Conversion between the form a resource is served in and the form its objects are stored in,
//! for resources that share storage with another one (upstream's internal-version round trip).
//!
//! Only one pair needs it among the kinds served here: `events.k8s.io/v1` Events are core/v1
//! Events under `/registry/events`, converted field by field as upstream's
//! `pkg/apis/events/v1/conversion.go` does. Everything else is stored as served ([`Conversion::
//! Identity`]; custom resources with several versions differ only in `apiVersion`, which the
//! read path sets).
//!
//! Three things convert: objects ([`Conversion::to_storage`], [`Conversion::from_storage`]),
//! field selector labels ([`Conversion::field_label`], as upstream's field label conversion
//! functions), and the field sets of `metadata.managedFields` ([`managed_fields_between`]),
//! which stay recorded in the version of the request that made them but must be compared in one
//! version when a write at another version moves ownership (structured-merge-diff converts the
//! objects into each manager's version for that; for a field-for-field rename that is the same
//! as renaming the sets).

use std::borrow::Cow;

use serde_json::{Map, Value};

/// How a served resource relates to its stored objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Conversion {
    /// Stored as served; the read path only sets `apiVersion` and `kind`.
    #[default]
    Identity,
    /// `events.k8s.io/v1` Event, stored as a core/v1 Event.
    EventsV1,
}

/// `events.k8s.io/v1` field <-> core/v1 field. Upstream converts through the internal type, whose
/// fields are the core ones; fields on neither side are dropped by the typed decoding, so they
/// are dropped here too.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("metadata", "metadata"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("reportingController", "reportingComponent"),
    ("reportingInstance", "reportingInstance"),
    ("action", "action"),
    ("reason", "reason"),
    ("regarding", "involvedObject"),
    ("related", "related"),
    ("note", "message"),
    ("type", "type"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// The core/v1 type events are stored as.
const CORE_EVENT_API_VERSION: &str = "v1";
const EVENTS_V1_API_VERSION: &str = "events.k8s.io/v1";
const EVENT_KIND: &str = "Event";

/// One direction of a field mapping.
#[derive(Debug, Clone, Copy)]
struct Renames {
    pairs: &'static [(&'static str, &'static str)],
    reversed: bool,
}

const EVENTS_TO_CORE: Renames = Renames {
    pairs: EVENT_FIELDS,
    reversed: false,
};
const CORE_TO_EVENTS: Renames = Renames {
    pairs: EVENT_FIELDS,
    reversed: true,
};

impl Renames {
    fn iter(self) -> impl Iterator<Item = (&'static str, &'static str)> {
        self.pairs
            .iter()
            .map(move |&(a, b)| if self.reversed { (b, a) } else { (a, b) })
    }

    /// The new name of a field, if it has a counterpart.
    fn get(self, name: &str) -> Option<&'static str> {
        self.iter()
            .find(|(from, _)| *from == name)
            .map(|(_, to)| to)
    }

    /// Copies the mapped top-level fields under their new names and drops the others; the
    /// type becomes `api_version`'s Event.
    fn object(self, obj: &Value, api_version: &str) -> Value {
        let mut out = Map::new();
        out.insert("apiVersion".into(), Value::String(api_version.to_owned()));
        out.insert("kind".into(), Value::String(EVENT_KIND.to_owned()));
        if let Some(fields) = obj.as_object() {
            for (from, to) in self.iter() {
                if let Some(v) = fields.get(from) {
                    out.insert(to.to_owned(), v.clone());
                }
            }
        }
        Value::Object(out)
    }

    /// Renames the first field of a dotted label (`regarding.name`).
    fn label(self, label: &str) -> Cow<'_, str> {
        let (head, rest) = match label.split_once('.') {
            Some((head, rest)) => (head, Some(rest)),
            None => (label, None),
        };
        match (self.get(head), rest) {
            (None, _) => Cow::Borrowed(label),
            (Some(to), Some(rest)) => Cow::Owned(format!("{to}.{rest}")),
            (Some(to), None) => Cow::Borrowed(to),
        }
    }

    /// Renames the first field of a `.field.sub[key="v"]` path.
    fn path(self, path: &str) -> String {
        let Some(rest) = path.strip_prefix('.') else {
            return path.to_owned();
        };
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let (head, tail) = rest.split_at(end);
        match self.get(head) {
            Some(to) => format!(".{to}{tail}"),
            None => path.to_owned(),
        }
    }

    /// Renames the top-level `f:<field>` members of a fieldsV1 set. Members without a
    /// counterpart stay: they match nothing in the other version, and dropping them would lose
    /// ownership the entry's own version still has.
    fn set(self, fields: &Value) -> Value {
        let Some(members) = fields.as_object() else {
            return fields.clone();
        };
        let renamed = members
            .iter()
            .map(|(key, value)| {
                let name = key
                    .strip_prefix("f:")
                    .and_then(|field| self.get(field))
                    .map_or_else(|| key.clone(), |to| format!("f:{to}"));
                (name, value.clone())
            })
            .collect();
        Value::Object(renamed)
    }
}

impl Conversion {
    /// The stored form of a served object.
    pub fn to_storage(self, obj: Value) -> Value {
        match self {
            Conversion::Identity => obj,
            Conversion::EventsV1 => {
                let mut stored = EVENTS_TO_CORE.object(&obj, CORE_EVENT_API_VERSION);
                // A core Event's involvedObject is a required struct, which upstream always
                // writes (`{}` for an events.k8s.io Event without `regarding`); typed clients
                // of core/v1 (the Python one) reject an Event without it.
                if let Some(map) = stored.as_object_mut() {
                    map.entry("involvedObject")
                        .or_insert_with(|| Value::Object(Map::new()));
                }
                stored
            }
        }
    }

    /// The served form of a stored object (its `apiVersion` and `kind` too when they differ).
    pub fn from_storage(self, obj: &Value) -> Cow<'_, Value> {
        match self {
            Conversion::Identity => Cow::Borrowed(obj),
            Conversion::EventsV1 => Cow::Owned(CORE_TO_EVENTS.object(obj, EVENTS_V1_API_VERSION)),
        }
    }

    /// The stored form's label for a field selector label of the served form (upstream's field
    /// label conversion: `regarding.name` selects on `involvedObject.name`).
    pub fn field_label(self, label: &str) -> Cow<'_, str> {
        match self {
            Conversion::Identity => Cow::Borrowed(label),
            Conversion::EventsV1 => EVENTS_TO_CORE.label(label),
        }
    }

    /// A field path as apply conflicts print it (`.note`, `.regarding.name`), in the stored
    /// form's field names.
    pub fn path_to_storage(self, path: &str) -> String {
        match self {
            Conversion::Identity => path.to_owned(),
            Conversion::EventsV1 => EVENTS_TO_CORE.path(path),
        }
    }

    /// A field path of the stored form, in the served form's field names.
    pub fn path_from_storage(self, path: &str) -> String {
        match self {
            Conversion::Identity => path.to_owned(),
            Conversion::EventsV1 => CORE_TO_EVENTS.path(path),
        }
    }

    /// A managedFields `fieldsV1` set of the served form, in the stored form's field names.
    pub fn fields_to_storage(self, fields: &Value) -> Value {
        match self {
            Conversion::Identity => fields.clone(),
            Conversion::EventsV1 => EVENTS_TO_CORE.set(fields),
        }
    }

    /// A managedFields `fieldsV1` set of the stored form, in the served form's field names.
    pub fn fields_from_storage(self, fields: &Value) -> Value {
        match self {
            Conversion::Identity => fields.clone(),
            Conversion::EventsV1 => CORE_TO_EVENTS.set(fields),
        }
    }
}

/// Which way [`managed_fields_between`] rewrites entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Every entry's set into the request's version (before the field manager runs).
    ToRequest,
    /// Entries of other versions back into their own version (after it ran).
    ToOwnVersion,
}

/// Whether any `metadata.managedFields` entry was recorded at another version than
/// `api_version` (the cheap test before [`managed_fields_between`]).
pub fn has_entries_of_other_versions(obj: &Value, api_version: &str) -> bool {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(|entries| {
            entries.iter().any(|e| {
                e.get("apiVersion")
                    .and_then(Value::as_str)
                    .is_some_and(|v| v != api_version)
            })
        })
}

/// Rewrites the `fieldsV1` of the `metadata.managedFields` entries recorded at other versions
/// of the same stored objects, between their own version and the request's. `request` is the
/// request's `apiVersion` and conversion; `resolve` names the conversion of another served
/// version of the same storage (`None`: not served, the entry is left alone). Returns whether
/// anything changed.
pub fn managed_fields_between(
    obj: &mut Value,
    request: (&str, Conversion),
    resolve: impl Fn(&str) -> Option<Conversion>,
    direction: Direction,
) -> bool {
    let Some(entries) = obj
        .pointer_mut("/metadata/managedFields")
        .and_then(Value::as_array_mut)
    else {
        return false;
    };
    let (request_version, request_conversion) = request;
    let mut changed = false;
    for entry in entries {
        let Some(own_version) = entry.get("apiVersion").and_then(Value::as_str) else {
            continue;
        };
        if own_version == request_version {
            continue;
        }
        let Some(own) = resolve(own_version).filter(|c| *c != request_conversion) else {
            continue;
        };
        let Some(fields) = entry.get_mut("fieldsV1") else {
            continue;
        };
        let (from, to) = match direction {
            Direction::ToRequest => (own, request_conversion),
            Direction::ToOwnVersion => (request_conversion, own),
        };
        *fields = to.fields_from_storage(&from.fields_to_storage(fields));
        changed = true;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn core_event() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default", "resourceVersion": "7",
                         "managedFields": [{"manager": "m", "operation": "Update",
                                            "apiVersion": "v1", "fieldsV1": {"f:message": {}}}]},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "uid": "u1"},
            "reason": "Started",
            "message": "Started container",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2025-01-01T00:00:00Z",
            "lastTimestamp": "2025-01-01T00:01:00Z",
            "count": 3,
            "type": "Normal",
            "eventTime": "2025-01-01T00:00:00.000001Z",
            "series": {"count": 3, "lastObservedTime": "2025-01-01T00:01:00.000000Z"},
            "action": "Start",
            "related": {"kind": "Node", "name": "node-1"},
            "reportingComponent": "kubelet",
            "reportingInstance": "node-1"
        })
    }

    fn events_v1_event() -> Value {
        json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default", "resourceVersion": "7",
                         "managedFields": [{"manager": "m", "operation": "Update",
                                            "apiVersion": "v1", "fieldsV1": {"f:message": {}}}]},
            "regarding": {"kind": "Pod", "name": "web", "namespace": "default", "uid": "u1"},
            "reason": "Started",
            "note": "Started container",
            "deprecatedSource": {"component": "kubelet", "host": "node-1"},
            "deprecatedFirstTimestamp": "2025-01-01T00:00:00Z",
            "deprecatedLastTimestamp": "2025-01-01T00:01:00Z",
            "deprecatedCount": 3,
            "type": "Normal",
            "eventTime": "2025-01-01T00:00:00.000001Z",
            "series": {"count": 3, "lastObservedTime": "2025-01-01T00:01:00.000000Z"},
            "action": "Start",
            "related": {"kind": "Node", "name": "node-1"},
            "reportingController": "kubelet",
            "reportingInstance": "node-1"
        })
    }

    #[test]
    fn core_to_events_v1_renames_every_field() {
        let served = Conversion::EventsV1
            .from_storage(&core_event())
            .into_owned();
        assert_eq!(served, events_v1_event());
    }

    #[test]
    fn events_v1_to_core_renames_every_field() {
        let stored = Conversion::EventsV1.to_storage(events_v1_event());
        assert_eq!(stored, core_event());
    }

    #[test]
    fn round_trips_are_lossless_for_known_fields() {
        let core = core_event();
        let back =
            Conversion::EventsV1.to_storage(Conversion::EventsV1.from_storage(&core).into_owned());
        assert_eq!(back, core);
        let served = events_v1_event();
        let stored = Conversion::EventsV1.to_storage(served.clone());
        assert_eq!(
            Conversion::EventsV1.from_storage(&stored).into_owned(),
            served
        );
    }

    #[test]
    fn conversion_defaults_nothing_but_the_required_involved_object() {
        // Upstream's conversion copies; it does not fill the source from the reporting
        // controller or the other way round (only the `source` field selector falls back).
        let served = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                            "metadata": {"name": "e"}, "reportingController": "ctl",
                            "reportingInstance": "ctl-1"});
        let stored = Conversion::EventsV1.to_storage(served);
        assert_eq!(
            stored,
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
                   "involvedObject": {},
                   "reportingComponent": "ctl", "reportingInstance": "ctl-1"})
        );
    }

    #[test]
    fn fields_of_the_other_version_are_dropped() {
        // `message` is not an events.k8s.io/v1 field: typed decoding drops it upstream, so it
        // cannot overwrite the note.
        let served = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                            "metadata": {"name": "e"}, "note": "kept", "message": "dropped"});
        let stored = Conversion::EventsV1.to_storage(served);
        assert_eq!(stored["message"], "kept");
        assert!(stored.get("note").is_none());
    }

    #[test]
    fn identity_borrows() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap"});
        assert!(matches!(
            Conversion::Identity.from_storage(&obj),
            Cow::Borrowed(_)
        ));
        assert_eq!(Conversion::Identity.to_storage(obj.clone()), obj);
    }

    #[test]
    fn field_labels_follow_upstream() {
        let c = Conversion::EventsV1;
        assert_eq!(c.field_label("regarding.name"), "involvedObject.name");
        assert_eq!(
            c.field_label("regarding.fieldPath"),
            "involvedObject.fieldPath"
        );
        assert_eq!(c.field_label("reportingController"), "reportingComponent");
        assert_eq!(c.field_label("reason"), "reason");
        assert_eq!(c.field_label("type"), "type");
        assert_eq!(c.field_label("source"), "source");
        assert_eq!(c.field_label("metadata.name"), "metadata.name");
        assert_eq!(
            Conversion::Identity.field_label("regarding.name"),
            "regarding.name"
        );
    }

    #[test]
    fn field_sets_rename_top_level_members_only() {
        let served = json!({"f:note": {}, "f:regarding": {"f:name": {}, "f:kind": {}},
                            "f:metadata": {"f:labels": {"f:note": {}}}, "f:unknown": {}});
        let stored = Conversion::EventsV1.fields_to_storage(&served);
        assert_eq!(
            stored,
            json!({"f:message": {}, "f:involvedObject": {"f:name": {}, "f:kind": {}},
                   "f:metadata": {"f:labels": {"f:note": {}}}, "f:unknown": {}})
        );
        assert_eq!(Conversion::EventsV1.fields_from_storage(&stored), served);
    }

    #[test]
    fn conflict_paths_rename_their_first_field() {
        let c = Conversion::EventsV1;
        assert_eq!(c.path_to_storage(".note"), ".message");
        assert_eq!(c.path_to_storage(".regarding.name"), ".involvedObject.name");
        assert_eq!(
            c.path_from_storage(".involvedObject.name"),
            ".regarding.name"
        );
        assert_eq!(
            c.path_from_storage(".metadata.labels.a"),
            ".metadata.labels.a"
        );
        assert_eq!(c.path_from_storage(".unknown[0]"), ".unknown[0]");
        assert_eq!(c.path_from_storage("odd"), "odd");
    }

    fn resolve(api_version: &str) -> Option<Conversion> {
        match api_version {
            "v1" => Some(Conversion::Identity),
            "events.k8s.io/v1" => Some(Conversion::EventsV1),
            _ => None,
        }
    }

    #[test]
    fn managed_fields_are_compared_in_the_request_version_and_kept_in_their_own() {
        let mut obj = json!({"metadata": {"managedFields": [
            {"manager": "core", "apiVersion": "v1", "fieldsV1": {"f:message": {}, "f:count": {}}},
            {"manager": "new", "apiVersion": "events.k8s.io/v1", "fieldsV1": {"f:note": {}}},
            {"manager": "odd", "apiVersion": "events.k8s.io/v1beta1", "fieldsV1": {"f:x": {}}}
        ]}});
        let original = obj.clone();
        let request = ("events.k8s.io/v1", Conversion::EventsV1);
        assert!(managed_fields_between(
            &mut obj,
            request,
            resolve,
            Direction::ToRequest
        ));
        let entries = &obj["metadata"]["managedFields"];
        assert_eq!(
            entries[0]["apiVersion"], "v1",
            "the entry keeps its version"
        );
        assert_eq!(
            entries[0]["fieldsV1"],
            json!({"f:note": {}, "f:deprecatedCount": {}})
        );
        assert_eq!(
            entries[1]["fieldsV1"],
            json!({"f:note": {}}),
            "request version untouched"
        );
        assert_eq!(
            entries[2]["fieldsV1"],
            json!({"f:x": {}}),
            "unserved version untouched"
        );
        assert!(managed_fields_between(
            &mut obj,
            request,
            resolve,
            Direction::ToOwnVersion
        ));
        assert_eq!(obj, original);
    }

    #[test]
    fn managed_fields_of_one_form_need_no_rewrite() {
        let mut obj = json!({"metadata": {"managedFields": [
            {"manager": "a", "apiVersion": "example.com/v1", "fieldsV1": {"f:spec": {}}}]}});
        let crd_versions = |_: &str| Some(Conversion::Identity);
        let request = ("example.com/v2", Conversion::Identity);
        assert!(!managed_fields_between(
            &mut obj,
            request,
            crd_versions,
            Direction::ToRequest
        ));
        assert!(!managed_fields_between(
            &mut json!({}),
            request,
            crd_versions,
            Direction::ToRequest
        ));
    }
}
