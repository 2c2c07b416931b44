//! `metadata.managedFields` as the API server reads and writes it: entries keyed by manager
//! identity, sorted on output, with old update entries folded together past a cap.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, PathElement};

/// The kind of write that produced a managedFields entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// A server-side apply (`application/apply-patch+yaml`).
    Apply,
    /// Any other write: create, update, or a JSON/merge/strategic patch.
    Update,
}

impl Operation {
    /// The wire spelling (`"Apply"` / `"Update"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "Apply" => Some(Operation::Apply),
            "Update" => Some(Operation::Update),
            _ => None,
        }
    }
}

/// The identity of a managedFields entry. Appliers are one entry per manager and subresource
/// whatever version they apply; updaters get one entry per version too.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ManagerId {
    pub manager: String,
    pub operation: Operation,
    /// Empty for appliers.
    pub api_version: String,
    /// Empty for the main resource.
    pub subresource: String,
}

impl ManagerId {
    pub fn new(manager: &str, operation: Operation, api_version: &str, subresource: &str) -> Self {
        let api_version = match operation {
            Operation::Apply => "",
            Operation::Update => api_version,
        };
        ManagerId {
            manager: manager.to_owned(),
            operation,
            api_version: api_version.to_owned(),
            subresource: subresource.to_owned(),
        }
    }

    /// The API server's manager identifier (`BuildManagerIdentifier`): the entry without fields
    /// and time as Go JSON. Conflicts are grouped and ordered by it.
    pub fn identifier(&self) -> String {
        let mut parts = Vec::new();
        let mut field = |name: &str, v: &str| {
            if !v.is_empty() {
                let mut part = format!("\"{name}\":");
                crate::gofmt::write_json_string(v, &mut part);
                parts.push(part);
            }
        };
        field("manager", &self.manager);
        field("operation", self.operation.as_str());
        field("apiVersion", &self.api_version);
        field("subresource", &self.subresource);
        format!("{{{}}}", parts.join(","))
    }

    /// How conflict messages name the manager: `"m"`, `"m" with subresource "status"`,
    /// `"m" using apps/v1` (updaters).
    pub fn describe(&self) -> String {
        let mut out = crate::gofmt::quote(&self.manager);
        if !self.subresource.is_empty() {
            out = format!(
                "{out} with subresource {}",
                crate::gofmt::quote(&self.subresource)
            );
        }
        if self.operation == Operation::Update {
            out = format!("{out} using {}", self.api_version);
        }
        out
    }
}

/// The fields one manager owns, and at which version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct VersionedSet {
    pub set: FieldSet,
    pub api_version: String,
    pub applied: bool,
}

/// Decoded managedFields: owned sets and last-change times by manager.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Managed {
    pub fields: BTreeMap<ManagerId, VersionedSet>,
    pub times: BTreeMap<ManagerId, String>,
}

impl Managed {
    /// Decodes a `metadata.managedFields` array (`DecodeManagedFields`), with its error texts.
    pub fn decode(entries: &Value) -> Result<Self, String> {
        let entries = match entries {
            Value::Array(entries) => entries.as_slice(),
            Value::Null => &[],
            other => return Err(format!("managedFields must be a list, got {other}")),
        };
        let mut managed = Managed::default();
        for (i, entry) in entries.iter().enumerate() {
            managed.decode_entry(i, entry)?;
        }
        Ok(managed)
    }

    fn decode_entry(&mut self, i: usize, entry: &Value) -> Result<(), String> {
        let text = |name: &str| -> Result<&str, String> {
            match entry.get(name) {
                None | Some(Value::Null) => Ok(""),
                Some(Value::String(s)) => Ok(s),
                Some(other) => Err(format!(
                    "managed fields entry {i}: {name} must be a string, got {other}"
                )),
            }
        };
        if !entry.is_object() {
            return Err(format!("managed fields entry {i} must be an object"));
        }
        let operation =
            Operation::parse(text("operation")?).ok_or("operation must be `Apply` or `Update`")?;
        let api_version = text("apiVersion")?;
        if api_version.is_empty() {
            return Err("apiVersion must not be empty".into());
        }
        match text("fieldsType")? {
            "FieldsV1" => {}
            "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
            other => {
                return Err(format!(
                    "invalid fieldsType {} in managed fields entry {i}",
                    crate::gofmt::quote(other)
                ));
            }
        }
        let set = match entry.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::new(),
            Some(v) => FieldSet::decode_fields_v1(v).map_err(|e| {
                format!("error decoding versioned set from managed fields entry {i}: {e}")
            })?,
        };
        let id = ManagerId::new(
            text("manager")?,
            operation,
            api_version,
            text("subresource")?,
        );
        let time = match text("time")? {
            "" => None,
            t => Some(
                normalize_time(t).ok_or(format!("managed fields entry {i}: invalid time {t:?}"))?,
            ),
        };
        let versioned = VersionedSet {
            set,
            api_version: api_version.to_owned(),
            applied: operation == Operation::Apply,
        };
        self.fields.insert(id.clone(), versioned);
        match time {
            Some(t) => self.times.insert(id, t),
            None => self.times.remove(&id),
        };
        Ok(())
    }

    /// Encodes as the `metadata.managedFields` array, sorted as the API server sorts it:
    /// operation, time (seconds), manager, apiVersion, subresource.
    pub fn encode(&self) -> Vec<Value> {
        let mut entries: Vec<(&ManagerId, &VersionedSet, Option<&String>)> = self
            .fields
            .iter()
            .map(|(id, vs)| (id, vs, self.times.get(id)))
            .collect();
        entries.sort_by(|a, b| {
            let op = |vs: &VersionedSet| if vs.applied { "Apply" } else { "Update" };
            op(a.1)
                .cmp(op(b.1))
                .then_with(|| unix_seconds(a.2).cmp(&unix_seconds(b.2)))
                .then_with(|| a.0.manager.cmp(&b.0.manager))
                .then_with(|| a.1.api_version.cmp(&b.1.api_version))
                .then_with(|| a.0.subresource.cmp(&b.0.subresource))
        });
        entries
            .into_iter()
            .map(|(id, vs, time)| encode_entry(id, vs, time))
            .collect()
    }

    /// Folds the oldest update entries into per-version `ancient-changes` entries until at most
    /// `max` update entries remain (the API server's `capManagersManager`).
    pub fn cap_update_managers(&mut self, max: usize) {
        let mut updaters: Vec<ManagerId> = self
            .fields
            .iter()
            .filter(|(_, vs)| !vs.applied)
            .map(|(id, _)| id.clone())
            .collect();
        if updaters.len() <= max {
            return;
        }
        updaters.sort_by(|a, b| {
            unix_seconds(self.times.get(a))
                .cmp(&unix_seconds(self.times.get(b)))
                .then_with(|| a.identifier().cmp(&b.identifier()))
        });
        let mut first_by_version: BTreeMap<String, ManagerId> = BTreeMap::new();
        let mut remaining = updaters.len();
        for id in updaters {
            if remaining <= max {
                break;
            }
            let Some(vs) = self.fields.get(&id).cloned() else {
                continue;
            };
            let bucket = ManagerId::new("ancient-changes", Operation::Update, &vs.api_version, "");
            let Some(first) = first_by_version.get(&vs.api_version) else {
                first_by_version.insert(vs.api_version.clone(), id);
                continue;
            };
            if !self.fields.contains_key(&bucket)
                && let Some(first_set) = self.fields.remove(first)
            {
                self.fields.insert(bucket.clone(), first_set);
            }
            let bucket_set = self
                .fields
                .get(&bucket)
                .map(|b| b.set.clone())
                .unwrap_or_default();
            self.fields.insert(
                bucket.clone(),
                VersionedSet {
                    set: vs.set.union(&bucket_set),
                    ..vs
                },
            );
            self.fields.remove(&id);
            remaining -= 1;
            // The entry merged last is the most recent one in the bucket.
            match self.times.get(&id).cloned() {
                Some(t) => self.times.insert(bucket, t),
                None => self.times.remove(&bucket),
            };
        }
    }
}

fn encode_entry(id: &ManagerId, vs: &VersionedSet, time: Option<&String>) -> Value {
    let mut entry = Map::new();
    if !id.manager.is_empty() {
        entry.insert("manager".into(), Value::String(id.manager.clone()));
    }
    let operation = if vs.applied {
        Operation::Apply
    } else {
        Operation::Update
    };
    entry.insert("operation".into(), operation.as_str().into());
    entry.insert("apiVersion".into(), Value::String(vs.api_version.clone()));
    if let Some(t) = time {
        entry.insert("time".into(), Value::String(t.clone()));
    }
    entry.insert("fieldsType".into(), "FieldsV1".into());
    entry.insert("fieldsV1".into(), vs.set.to_fields_v1());
    if !id.subresource.is_empty() {
        entry.insert("subresource".into(), Value::String(id.subresource.clone()));
    }
    Value::Object(entry)
}

/// Whether a client asks to clear managedFields: an empty list, or a list of one empty entry.
pub(super) fn is_reset(entries: &Value) -> bool {
    match entries.as_array().map(Vec::as_slice) {
        Some([]) => true,
        Some([Value::Object(entry)]) => entry.values().all(|v| match v {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            // Any fieldsV1 object, even `{}`, is a non-empty entry.
            _ => false,
        }),
        _ => false,
    }
}

/// Times as `metav1.Time` writes them: RFC 3339 in UTC, whole seconds.
pub(super) fn normalize_time(t: &str) -> Option<String> {
    let ts: jiff::Timestamp = t.parse().ok()?;
    Some(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn unix_seconds(time: Option<&String>) -> i64 {
    time.and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or(0, |ts| ts.as_second())
}

/// Fields the API server never records as owned (its `stripMetaManager`). `metadata` itself is
/// only removed as a member; its children stay.
pub(super) fn strip_set() -> FieldSet {
    let f = |name: &str| PathElement::Field(name.to_owned());
    let mut set = FieldSet::from_paths([[f("apiVersion")], [f("kind")], [f("metadata")]]);
    for name in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        set.insert(&[f("metadata"), f(name)]);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(manager: &str, op: &str, version: &str, time: &str) -> Value {
        json!({"manager": manager, "operation": op, "apiVersion": version, "time": time,
               "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:x": {}}}})
    }

    #[test]
    fn identifiers_and_descriptions() {
        let update = ManagerId::new(
            "kubectl-client-side-apply",
            Operation::Update,
            "apps/v1",
            "",
        );
        assert_eq!(
            update.identifier(),
            r#"{"manager":"kubectl-client-side-apply","operation":"Update","apiVersion":"apps/v1"}"#
        );
        assert_eq!(
            update.describe(),
            "\"kubectl-client-side-apply\" using apps/v1"
        );
        let apply = ManagerId::new("ctl", Operation::Apply, "v1", "status");
        assert_eq!(
            apply.identifier(),
            r#"{"manager":"ctl","operation":"Apply","subresource":"status"}"#
        );
        assert_eq!(apply.describe(), "\"ctl\" with subresource \"status\"");
    }

    #[test]
    fn decode_encode_round_trip_and_sort() {
        let raw = json!([
            entry("b", "Update", "v1", "2024-01-01T00:00:02Z"),
            entry("a", "Update", "v1", "2024-01-01T00:00:02Z"),
            entry("z", "Update", "v1", "2024-01-01T00:00:01Z"),
            entry("c", "Apply", "v1", "2024-01-01T00:00:09Z"),
        ]);
        let managed = Managed::decode(&raw).unwrap();
        let encoded = managed.encode();
        let names: Vec<&str> = encoded
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["c", "z", "a", "b"]);
        assert_eq!(
            encoded[1],
            entry("z", "Update", "v1", "2024-01-01T00:00:01Z")
        );
        let keys: Vec<&String> = encoded[0].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            vec![
                "manager",
                "operation",
                "apiVersion",
                "time",
                "fieldsType",
                "fieldsV1"
            ]
        );
    }

    #[test]
    fn apply_entries_share_identity_across_versions() {
        let raw = json!([
            entry("m", "Apply", "v1", "2024-01-01T00:00:00Z"),
            entry("m", "Apply", "v2", "2024-01-01T00:00:00Z")
        ]);
        assert_eq!(Managed::decode(&raw).unwrap().fields.len(), 1);
        let raw = json!([
            entry("m", "Update", "v1", "2024-01-01T00:00:00Z"),
            entry("m", "Update", "v2", "2024-01-01T00:00:00Z")
        ]);
        assert_eq!(Managed::decode(&raw).unwrap().fields.len(), 2);
    }

    #[test]
    fn decode_errors_match_the_api_server() {
        let mut bad = entry("m", "Patch", "v1", "2024-01-01T00:00:00Z");
        assert_eq!(
            Managed::decode(&json!([bad])).unwrap_err(),
            "operation must be `Apply` or `Update`"
        );
        bad = entry("m", "Update", "", "2024-01-01T00:00:00Z");
        assert_eq!(
            Managed::decode(&json!([bad])).unwrap_err(),
            "apiVersion must not be empty"
        );
        bad = entry("m", "Update", "v1", "2024-01-01T00:00:00Z");
        bad["fieldsType"] = json!("FieldsV2");
        assert_eq!(
            Managed::decode(&json!([bad])).unwrap_err(),
            "invalid fieldsType \"FieldsV2\" in managed fields entry 0"
        );
        bad["fieldsType"] = json!(null);
        assert_eq!(
            Managed::decode(&json!([bad])).unwrap_err(),
            "missing fieldsType in managed fields entry 0"
        );
        bad["fieldsType"] = json!("FieldsV1");
        bad["fieldsV1"] = json!({"nope": {}});
        assert_eq!(
            Managed::decode(&json!([bad])).unwrap_err(),
            "error decoding versioned set from managed fields entry 0: error decoding set: \
             missing colon: nope"
        );
    }

    #[test]
    fn normalizes_times_to_utc_seconds() {
        assert_eq!(
            normalize_time("2024-05-01T12:00:00.5+02:00").as_deref(),
            Some("2024-05-01T10:00:00Z")
        );
        assert_eq!(normalize_time("yesterday"), None);
    }

    #[test]
    fn recognizes_reset_requests() {
        assert!(is_reset(&json!([])));
        assert!(is_reset(&json!([{}])));
        assert!(!is_reset(&json!([{"manager": "x"}])));
        assert!(!is_reset(&json!([{}, {}])));
        assert!(!is_reset(&json!(null)));
    }

    #[test]
    fn caps_update_managers_into_ancient_changes() {
        let mut raw = Vec::new();
        for i in 0..12 {
            raw.push(entry(
                &format!("m{i:02}"),
                "Update",
                "v1",
                &format!("2024-01-01T00:00:{i:02}Z"),
            ));
        }
        raw.push(entry("applier", "Apply", "v1", "2024-01-01T00:00:00Z"));
        let mut managed = Managed::decode(&Value::Array(raw)).unwrap();
        managed.cap_update_managers(10);
        let names: Vec<String> = managed.fields.keys().map(|id| id.manager.clone()).collect();
        // m00 and m01 and m02 are the oldest: m00 stays first-of-version, m01 creates the bucket
        // (absorbing m00), m02 joins it.
        assert_eq!(managed.fields.values().filter(|vs| !vs.applied).count(), 10);
        assert!(names.contains(&"ancient-changes".to_string()));
        assert!(!names.contains(&"m00".to_string()));
        assert!(!names.contains(&"m01".to_string()));
        assert!(!names.contains(&"m02".to_string()));
        assert!(names.contains(&"m03".to_string()));
        let bucket = ManagerId::new("ancient-changes", Operation::Update, "v1", "");
        assert_eq!(managed.times[&bucket], "2024-01-01T00:00:02Z");
    }

    #[test]
    fn strip_set_removes_metadata_member_but_not_its_children() {
        let f = |n: &str| PathElement::Field(n.into());
        let owned = FieldSet::from_paths([
            vec![f("metadata")],
            vec![f("metadata"), f("name")],
            vec![f("metadata"), f("labels"), f("a")],
            vec![f("kind")],
        ]);
        let kept = owned.difference(&strip_set());
        assert_eq!(
            kept,
            FieldSet::from_paths([vec![f("metadata"), f("labels"), f("a")]])
        );
    }
}
