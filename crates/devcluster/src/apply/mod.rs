//! Server-side apply and `metadata.managedFields`, as kube-apiserver's field manager does them on
//! top of sigs.k8s.io/structured-merge-diff.
//!
//! Every write records who owns which fields: [`server_side_apply`] for apply patches, and
//! [`record_update`] for creates, updates and the other patch types. Ownership decides what an
//! apply may change without conflicts and what it removes when a manager stops applying a field.
//! List and map semantics come from the kind's schema ([`crate::schema::Node`]); positions the
//! schema does not describe merge as maps key by key and replace lists whole.

mod fieldset;
mod lastapplied;
mod managed;
mod merge;
mod typed;
mod updater;
mod value;

use serde_json::{Map, Value};

pub use fieldset::{FieldSet, PathElement, path_to_string};
pub use managed::Operation;

use managed::{Managed, ManagerId, strip_set};
use updater::{ConflictSets, Updater};

/// The API server keeps at most this many update entries; older ones are folded together.
const MAX_UPDATE_MANAGERS: usize = 10;

/// The manager that takes ownership of an untracked object's fields on its first apply.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// What a write needs to know besides the objects.
#[derive(Debug, Clone, Copy)]
pub struct ApplyContext<'a> {
    /// The field manager (`fieldManager` query parameter); empty becomes `unknown`.
    pub manager: &'a str,
    /// The `group/version` (or `v1`) the request is served at.
    pub api_version: &'a str,
    /// The kind the request is served for; applied configurations must name it.
    pub kind: &'a str,
    /// The subresource written (`status`, `scale`), if any.
    pub subresource: Option<&'a str>,
    /// The time of the write, RFC 3339 (normalized to UTC whole seconds).
    pub time: &'a str,
    /// Reset fields, as field-name paths (`["status"]`, `["spec"]`, `["metadata", "labels"]`):
    /// never owned by this write and never in conflict. The type and object metadata the API
    /// server never tracks (`apiVersion`, `kind`, `metadata.name`, `metadata.resourceVersion`,
    /// ...) are excluded automatically.
    pub ignored: &'a [Vec<String>],
    /// The schema of the whole object.
    pub schema: crate::schema::Node<'a>,
}

/// Why a write could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The apply would change fields other managers own. The API server answers 409 Conflict
    /// with this message and one `FieldManagerConflict` cause per conflict
    /// ([`Conflict::cause_message`], [`Conflict::field`]).
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The request is malformed (400 Bad Request), e.g. the configuration names another kind.
    #[error("{0}")]
    Invalid(String),
    /// An object does not fit its list types: elements without keys, duplicates in the applied
    /// configuration. The API server reports these as 500 Internal Server Error.
    #[error("{0}")]
    Schema(String),
    /// The live object's managedFields cannot be decoded (500 Internal Server Error).
    #[error("failed to decode managed fields: {0}")]
    ManagedFields(String),
}

/// A field an apply would change that another manager owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The owning manager.
    pub manager: String,
    /// How the owner wrote the field.
    pub operation: Operation,
    /// The owner's API version; empty for appliers, which are not tracked per version.
    pub api_version: String,
    /// The owner's subresource; empty for the main resource.
    pub subresource: String,
    /// The field as SMD prints it, e.g. `.spec.containers[name="app"].image`.
    pub field: String,
}

impl Conflict {
    fn id(&self) -> ManagerId {
        ManagerId::new(
            &self.manager,
            self.operation,
            &self.api_version,
            &self.subresource,
        )
    }

    /// The owner as conflict messages name it: `"kubectl"`, `"ctl" with subresource "status"`,
    /// `"kubectl-client-side-apply" using apps/v1`.
    pub fn manager_description(&self) -> String {
        self.id().describe()
    }

    /// The message of this conflict's status cause: `conflict with "m" using apps/v1`.
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.manager_description())
    }
}

/// The API server's message for apply conflicts, e.g. `Apply failed with 1 conflict: conflict
/// with "kubectl-client-side-apply" using apps/v1: .spec.replicas`; several conflicts are listed
/// per manager, managers in the order of their identifiers.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: {}: {}",
            only.cause_message(),
            only.field
        );
    }
    let mut by_manager: Vec<(String, &Conflict, Vec<&str>)> = Vec::new();
    for c in conflicts {
        let identifier = c.id().identifier();
        match by_manager.iter_mut().find(|(id, _, _)| *id == identifier) {
            Some((_, _, fields)) => fields.push(&c.field),
            None => by_manager.push((identifier, c, vec![&c.field])),
        }
    }
    by_manager.sort_by(|a, b| a.0.cmp(&b.0));
    let mut lines = Vec::new();
    for (_, c, fields) in by_manager {
        lines.push(format!("conflicts with {}:", c.manager_description()));
        lines.extend(fields.into_iter().map(|f| format!("- {f}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Server-side apply of `config` (a full object with apiVersion, kind and metadata) onto `live`
/// (`None` to create). Returns the new object with its `metadata.managedFields` updated; when
/// the apply changes nothing, that is `live` with only ownership (and, for `kubectl`, the
/// last-applied annotation) updated.
///
/// Fields the manager applied before and omits now are removed unless another manager owns
/// them; changing a field another manager owns is a conflict unless `force` is set, which
/// moves the ownership. Defaulting, validation and the URL-name check are the caller's.
pub fn server_side_apply(
    live: Option<&Value>,
    config: &Value,
    force: bool,
    ctx: &ApplyContext,
) -> Result<Value, ApplyError> {
    check_config(live, config, ctx)?;
    let mut managed = match live {
        Some(live) => decode_managed_fields(live).map_err(ApplyError::ManagedFields)?,
        None => Managed::default(),
    };
    let live_object = live.map_or_else(|| Value::Object(Map::new()), without_managed_fields);
    check_typed(&live_object, config, ctx)?;
    if managed.fields.is_empty() && live.is_some() {
        // Fields set before ownership was tracked go to a stand-in manager, so applying over
        // them is a conflict rather than a silent overwrite.
        let empty = Value::Object(Map::new());
        record_changes(&empty, &live_object, &mut managed, BEFORE_FIRST_APPLY, ctx);
        managed.cap_update_managers(MAX_UPDATE_MANAGERS);
    }
    let (mut object, managed) = match apply_once(&live_object, config, &managed, force, ctx) {
        Err(conflicts) if ctx.manager == lastapplied::KUBECTL_MANAGER => {
            retry_after_client_side_apply(&live_object, config, &managed, conflicts, ctx)?
        }
        other => other.map_err(|c| ApplyError::Conflicts(to_conflicts(c)))?,
    };
    if ctx.manager == lastapplied::KUBECTL_MANAGER {
        lastapplied::sync_annotation(&mut object, config);
    }
    write_managed_fields(&mut object, &managed);
    Ok(object)
}

/// Ownership bookkeeping for a non-apply write (create, update, or a JSON, merge or strategic
/// merge patch), from `old` (`None` on create) to `new`: the manager becomes the `Update` owner
/// of every field it set or changed, those fields leave other managers' sets, fields it removed
/// leave every set, and emptied entries are dropped. Writes `new.metadata.managedFields`.
///
/// As on the API server, a request may replace managedFields (`[]` or `[{}]` clears them) except
/// on subresources; an existing object without managedFields stays untracked; and objects that
/// do not fit their list types lose their managedFields rather than failing the write.
///
/// On create, `old = None` compares against an empty object, which is what the API server does
/// for custom resources; for built-in kinds it compares against the Go zero value, so granular
/// struct fields such as `spec` are not marked as owned themselves (`".": {}`) there. Pass that
/// zero-value skeleton as `old` to reproduce it exactly.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    ctx: &ApplyContext,
) -> Result<(), ApplyError> {
    if !new.is_object() {
        return Err(ApplyError::Invalid(
            "the object must be a JSON object".into(),
        ));
    }
    let mut managed = managed_for_update(old, new, ctx.subresource.is_some());
    remove_managed_fields(new);
    let old_object = old.map_or_else(|| Value::Object(Map::new()), without_managed_fields);
    let untracked = managed.fields.is_empty() && old.is_some_and(has_uid);
    let typed = typed::validate(&old_object, ctx.schema, true).is_ok()
        && typed::validate(new, ctx.schema, true).is_ok();
    if untracked || !typed {
        return Ok(());
    }
    record_changes(&old_object, new, &mut managed, ctx.manager, ctx);
    managed.cap_update_managers(MAX_UPDATE_MANAGERS);
    write_managed_fields(new, &managed);
    Ok(())
}

/// The checks the API server makes on an applied configuration before merging it.
fn check_config(
    live: Option<&Value>,
    config: &Value,
    ctx: &ApplyContext,
) -> Result<(), ApplyError> {
    if !config.is_object() {
        return Err(ApplyError::Invalid(
            "the applied configuration must be an object".into(),
        ));
    }
    let text = |key: &str| config.get(key).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    if api_version != ctx.api_version || kind != ctx.kind {
        return Err(ApplyError::Invalid(format!(
            "invalid object type: {}",
            gvk_string(api_version, kind)
        )));
    }
    let metadata = config.get("metadata");
    if metadata
        .and_then(|m| m.get("managedFields"))
        .is_some_and(|mf| !mf.is_null())
    {
        return Err(ApplyError::Invalid(
            "metadata.managedFields must be nil".into(),
        ));
    }
    let name = metadata.and_then(|m| m.get("name")).and_then(Value::as_str);
    if live.is_none() && name.is_none_or(str::is_empty) {
        return Err(ApplyError::Invalid("name must be provided".into()));
    }
    Ok(())
}

/// Go's `GroupVersionKind.String()`: `apps/v1, Kind=Deployment`, `/v1, Kind=ConfigMap`.
fn gvk_string(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    format!("{group}/{version}, Kind={kind}")
}

/// Both objects must type-check before merging; errors carry the API server's wording.
fn check_typed(live: &Value, config: &Value, ctx: &ApplyContext) -> Result<(), ApplyError> {
    let describe = |obj: &Value| {
        let meta = |key: &str| {
            obj.get("metadata")
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        format!(
            "{}/{}; {}",
            meta("namespace"),
            meta("name"),
            gvk_string(ctx.api_version, ctx.kind)
        )
    };
    typed::validate(config, ctx.schema, false).map_err(|e| {
        ApplyError::Schema(format!(
            "failed to create typed patch object ({}): {e}",
            describe(config)
        ))
    })?;
    typed::validate(live, ctx.schema, true).map_err(|e| {
        ApplyError::Schema(format!(
            "failed to create typed live object ({}): {e}",
            describe(live)
        ))
    })
}

/// One pass of the apply pipeline: SMD's apply, then the API server's stripping of untracked
/// metadata and timestamping. Returns the new object (the live one when nothing changed).
fn apply_once(
    live: &Value,
    config: &Value,
    managed: &Managed,
    force: bool,
    ctx: &ApplyContext,
) -> Result<(Value, Managed), ConflictSets> {
    let ignored = FieldSet::from_field_paths(ctx.ignored);
    let updater = Updater {
        schema: ctx.schema,
        ignored: &ignored,
        api_version: ctx.api_version,
    };
    let applier = applier_id(ctx);
    let mut managed = managed.clone();
    let merged = updater.apply(live, config, &mut managed.fields, &applier, force)?;
    if let Some(vs) = managed.fields.get_mut(&applier) {
        vs.set = vs.set.difference(&strip_set());
        if vs.set.is_empty() {
            managed.fields.remove(&applier);
        }
    }
    if value::equal(live, &merged) {
        return Ok((live.clone(), managed));
    }
    managed.times.insert(applier, write_time(ctx));
    let mut object = merged;
    merge::strip_nulls(&mut object, ctx.schema);
    Ok((object, managed))
}

/// For `kubectl` moving from client-side to server-side apply: conflicts on fields its
/// last-applied annotation shows it set are forgiven by forcing; any others still fail.
fn retry_after_client_side_apply(
    live: &Value,
    config: &Value,
    managed: &Managed,
    conflicts: ConflictSets,
    ctx: &ApplyContext,
) -> Result<(Value, Managed), ApplyError> {
    let Some(allowed) = lastapplied::allowed_conflicts(live, ctx.api_version, ctx.schema) else {
        return Err(ApplyError::Conflicts(to_conflicts(conflicts)));
    };
    let remaining: ConflictSets = conflicts
        .into_iter()
        .map(|(id, set)| (id, set.difference(&allowed)))
        .filter(|(_, set)| !set.is_empty())
        .collect();
    if !remaining.is_empty() {
        return Err(ApplyError::Conflicts(to_conflicts(remaining)));
    }
    apply_once(live, config, managed, true, ctx).map_err(|c| ApplyError::Conflicts(to_conflicts(c)))
}

/// The update half of the field manager: ownership moves to `manager` (an `Update` entry at
/// the request's version), which is stamped with the write time if it gained anything.
fn record_changes(
    old: &Value,
    new: &Value,
    managed: &mut Managed,
    manager: &str,
    ctx: &ApplyContext,
) {
    let ignored = FieldSet::from_field_paths(ctx.ignored);
    let updater = Updater {
        schema: ctx.schema,
        ignored: &ignored,
        api_version: ctx.api_version,
    };
    let id = ManagerId::new(
        non_empty_manager(manager),
        Operation::Update,
        ctx.api_version,
        ctx.subresource.unwrap_or_default(),
    );
    let gained = updater
        .record(old, new, &mut managed.fields)
        .difference(&strip_set());
    if gained.is_empty() {
        return;
    }
    let set = match managed.fields.remove(&id) {
        Some(previous) => gained.union(&previous.set),
        None => gained,
    };
    let entry = managed::VersionedSet {
        set,
        api_version: ctx.api_version.to_owned(),
        applied: false,
    };
    managed.fields.insert(id.clone(), entry);
    managed.times.insert(id, write_time(ctx));
}

fn applier_id(ctx: &ApplyContext) -> ManagerId {
    ManagerId::new(
        non_empty_manager(ctx.manager),
        Operation::Apply,
        ctx.api_version,
        ctx.subresource.unwrap_or_default(),
    )
}

fn non_empty_manager(manager: &str) -> &str {
    if manager.is_empty() {
        "unknown"
    } else {
        manager
    }
}

fn write_time(ctx: &ApplyContext) -> String {
    managed::normalize_time(ctx.time).unwrap_or_else(|| ctx.time.to_owned())
}

/// Conflicts in the API server's order: by manager identifier, then by path.
fn to_conflicts(sets: ConflictSets) -> Vec<Conflict> {
    let mut sets = sets;
    sets.sort_by_key(|(id, _)| id.identifier());
    sets.into_iter()
        .flat_map(|(id, set)| {
            set.paths().into_iter().map(move |path| Conflict {
                manager: id.manager.clone(),
                operation: id.operation,
                api_version: id.api_version.clone(),
                subresource: id.subresource.clone(),
                field: path_to_string(&path),
            })
        })
        .collect()
}

/// Which managedFields an update starts from: the request's own, unless it is a subresource
/// write, it sends none, or they do not decode; then the live object's.
fn managed_for_update(old: Option<&Value>, new: &Value, is_subresource: bool) -> Managed {
    let from_live = || {
        old.and_then(|o| decode_managed_fields(o).ok())
            .unwrap_or_default()
    };
    if is_subresource {
        return from_live();
    }
    match managed_fields(new) {
        Some(entries) if managed::is_reset(entries) => Managed::default(),
        Some(entries) => match Managed::decode(entries) {
            Ok(m) if !m.fields.is_empty() => m,
            _ => from_live(),
        },
        None => from_live(),
    }
}

fn managed_fields(object: &Value) -> Option<&Value> {
    object
        .get("metadata")?
        .get("managedFields")
        .filter(|v| !v.is_null())
}

fn decode_managed_fields(object: &Value) -> Result<Managed, String> {
    managed_fields(object).map_or_else(|| Ok(Managed::default()), Managed::decode)
}

fn has_uid(object: &Value) -> bool {
    object
        .get("metadata")
        .and_then(|m| m.get("uid"))
        .and_then(Value::as_str)
        .is_some_and(|uid| !uid.is_empty())
}

fn without_managed_fields(object: &Value) -> Value {
    let mut copy = object.clone();
    remove_managed_fields(&mut copy);
    copy
}

fn remove_managed_fields(object: &mut Value) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
}

/// Stores the encoded entries; an object nobody owns anything of has no managedFields.
fn write_managed_fields(object: &mut Value, managed: &Managed) {
    remove_managed_fields(object);
    let entries = managed.encode();
    if entries.is_empty() {
        return;
    }
    let Some(fields) = object.as_object_mut() else {
        return;
    };
    let metadata = fields
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(metadata) = metadata.as_object_mut() {
        metadata.insert("managedFields".into(), Value::Array(entries));
    }
}

#[cfg(test)]
mod tests;
