//! create, update (PUT), patch (merge, JSON, strategic, apply) — one pipeline for all writes,
//! in the order the real server runs it: decode -> server-set fields -> defaulting and pruning ->
//! mutating admission -> validation -> managedFields -> validating admission -> storage.

use std::borrow::Cow;
use std::sync::Arc;

use http::StatusCode;
use serde_json::{Value, json};

use super::read::present;
use super::{ApiRequest, ApiServer, Query, lifecycle, ns_key, subject};
use crate::admission::{Attributes, GroupVersionKind, GroupVersionResource, Operation};
use crate::apply::{self, ApplyContext, ApplyError};
use crate::conversion::{self, Conversion, Direction};
use crate::error::ApiError;
use crate::objects::{self, Endpoint};
use crate::rbac::UserInfo;
use crate::resources::ResourceInfo;
use crate::store::{StoreError, resource_version};
use crate::validation::{self, FieldError};

/// Options every write carries.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Do everything but store (`dryRun=All`).
    pub dry_run: bool,
    /// The field manager recorded in managedFields.
    pub field_manager: String,
    /// `fieldValidation`: how unknown fields are treated (Ignore, Warn, Strict).
    pub field_validation: String,
}

impl WriteOptions {
    /// Options for writes the server makes itself.
    pub fn internal(manager: &str) -> Self {
        WriteOptions {
            dry_run: false,
            field_manager: manager.to_owned(),
            field_validation: "Ignore".into(),
        }
    }

    fn from_request(q: &Query, req: &ApiRequest) -> Result<Self, ApiError> {
        // Without a fieldManager the server names the manager after the client's user agent.
        let field_manager = q.field_manager.clone().unwrap_or_else(|| {
            req.user_agent
                .split('/')
                .next()
                .unwrap_or("unknown")
                .chars()
                .take(128)
                .collect()
        });
        if field_manager.len() > 128 {
            return Err(ApiError::bad_request(
                "fieldManager: Too long: must have at most 128 bytes",
            ));
        }
        let field_validation = q.field_validation.clone().unwrap_or_else(|| "Warn".into());
        if !["Ignore", "Warn", "Strict"].contains(&field_validation.as_str()) {
            return Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: {field_validation:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            )));
        }
        Ok(WriteOptions {
            dry_run: q.dry_run,
            field_manager,
            field_validation,
        })
    }
}

/// Decodes a JSON or YAML request body into an object.
pub(super) fn decode_body(req: &ApiRequest) -> Result<Value, ApiError> {
    let ct = req.content_type.to_ascii_lowercase();
    let value: Value = if ct.contains("yaml") {
        let text = std::str::from_utf8(&req.body)
            .map_err(|_| ApiError::bad_request("the request body is not valid UTF-8"))?;
        serde_saphyr::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))?
    } else if ct.contains("protobuf") {
        crate::protobuf::decode(&req.body).map_err(|e| ApiError::bad_request(e.to_string()))?
    } else if ct.contains("cbor") {
        return Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {ct})"
        )));
    } else {
        serde_json::from_slice(&req.body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "couldn't get version/kind; json parse error: the body is not a JSON object",
        ));
    }
    Ok(value)
}

/// Fills a missing apiVersion or kind from the endpoint, as the server's decoder does with its
/// default GroupVersionKind for create and update bodies.
fn default_type(info: &ResourceInfo, obj: &mut Value) {
    if let Some(map) = obj.as_object_mut() {
        if map
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            map.insert("apiVersion".into(), json!(info.api_version()));
        }
        if map
            .get("kind")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            map.insert("kind".into(), json!(info.kind));
        }
    }
}

/// Checks the body's apiVersion and kind against the endpoint; both are required (apply
/// configurations and patch results must carry them).
fn check_type(info: &ResourceInfo, obj: &Value) -> Result<(), ApiError> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() {
        return Err(ApiError::bad_request(
            "Object 'Kind' is missing in the request body",
        ));
    }
    if api_version.is_empty() {
        return Err(ApiError::bad_request(
            "Object 'apiVersion' is missing in the request body",
        ));
    }
    if api_version != info.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            info.api_version()
        )));
    }
    if kind != info.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            info.kind
        )));
    }
    Ok(())
}

/// The namespace a write targets: the URL's, which the body may repeat but not contradict.
fn check_namespace(info: &ResourceInfo, ns: Option<&str>, obj: &Value) -> Result<(), ApiError> {
    if !info.namespaced {
        return Ok(());
    }
    let Some(ns) = ns else {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    };
    match objects::meta_str(obj, "namespace") {
        Some(body_ns) if !body_ns.is_empty() && body_ns != ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => Ok(()),
    }
}

/// The paths server-side apply never tracks ownership of (upstream's stripped metadata), plus
/// the part of the object the endpoint does not write.
fn ignored_fields(info: &ResourceInfo, endpoint: Endpoint) -> Vec<Vec<String>> {
    let mut paths: Vec<Vec<String>> = [
        &["apiVersion"][..],
        &["kind"],
        &["metadata", "name"],
        &["metadata", "namespace"],
        &["metadata", "creationTimestamp"],
        &["metadata", "selfLink"],
        &["metadata", "uid"],
        &["metadata", "generation"],
        &["metadata", "managedFields"],
        &["metadata", "resourceVersion"],
        &["metadata", "deletionTimestamp"],
        &["metadata", "deletionGracePeriodSeconds"],
    ]
    .iter()
    .map(|p| p.iter().map(|s| (*s).to_owned()).collect())
    .collect();
    match endpoint {
        Endpoint::Main if info.status_subresource => paths.push(vec!["status".into()]),
        Endpoint::Status => {
            for top in ["spec", "metadata", "data", "binaryData", "stringData"] {
                paths.push(vec![top.into()]);
            }
        }
        Endpoint::Main => {}
    }
    paths
}

fn apply_context<'a>(
    info: &'a ResourceInfo,
    opts: &'a WriteOptions,
    endpoint: Endpoint,
    ignored: &'a [Vec<String>],
    now: &'a str,
    api_version: &'a str,
) -> ApplyContext<'a> {
    ApplyContext {
        manager: &opts.field_manager,
        api_version,
        kind: &info.kind,
        subresource: (endpoint == Endpoint::Status).then_some("status"),
        time: now,
        ignored,
        schema: info.schema_node(),
    }
}

fn apply_error(info: &ResourceInfo, name: &str, e: ApplyError) -> ApiError {
    match e {
        ApplyError::Conflicts(conflicts) => {
            let causes = conflicts
                .iter()
                .map(|c| {
                    json!({"reason": "FieldManagerConflict",
                           "message": c.cause_message(),
                           "field": c.field})
                })
                .collect();
            ApiError::apply_conflict(
                subject(info, name),
                apply::conflict_message(&conflicts),
                causes,
            )
        }
        ApplyError::Invalid(message) => ApiError::bad_request(message),
        other => ApiError::internal(other.to_string()),
    }
}

/// Custom resources: prune unknown fields, apply defaults, validate against the schema.
/// Built-ins: validate metadata. Returns field errors (empty when valid).
fn schema_pass(
    info: &ResourceInfo,
    obj: &mut Value,
    old: Option<&Value>,
    opts: &WriteOptions,
) -> Result<Vec<String>, Vec<FieldError>> {
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    if let (true, Some(schema)) = (info.is_custom(), info.schema.clone()) {
        let node = schema.node();
        let pruned = crate::crd::structural::prune(obj, node);
        if !pruned.is_empty() {
            let unknown: Vec<String> = pruned
                .iter()
                .map(|p| format!("unknown field \"{}\"", p.trim_start_matches('.')))
                .collect();
            match opts.field_validation.as_str() {
                "Strict" => {
                    for u in &unknown {
                        errors.push(FieldError {
                            reason: "FieldValueInvalid",
                            field: String::new(),
                            message: format!(".{u}"),
                        });
                    }
                }
                "Warn" => warnings.extend(unknown),
                _ => {}
            }
        }
        crate::crd::structural::apply_defaults(obj, node);
        for e in crate::crd::structural::validate(obj, node) {
            errors.push(FieldError {
                reason: e.reason(),
                field: e.field.clone(),
                message: e.message(),
            });
        }
    }
    if let Some(meta) = obj.get("metadata") {
        errors.extend(validation::validate_object_meta(
            meta,
            info.name_rule,
            info.namespaced,
        ));
    }
    errors.extend(lifecycle::validate(info, obj));
    if let Some(old) = old {
        errors.extend(lifecycle::validate_update(info, old, obj));
    }
    if errors.is_empty() {
        Ok(warnings)
    } else {
        Err(errors)
    }
}

impl ApiServer {
    /// The conversion of another served version of `info`'s objects (same kind and storage).
    fn conversion_at(&self, info: &ResourceInfo, api_version: &str) -> Option<Conversion> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        self.registry
            .by_kind(group, version, &info.kind)
            .filter(|other| other.storage_key() == info.storage_key())
            .map(|other| other.conversion)
    }

    /// Rewrites the field sets of managedFields entries recorded at other versions of the same
    /// objects: into the request's version before the field manager runs (it compares every
    /// manager's fields within one version, as structured-merge-diff does after converting),
    /// and back into each entry's own version afterwards, where they are kept.
    fn rewrite_fields(&self, info: &ResourceInfo, obj: &mut Value, direction: Direction) {
        let api_version = info.api_version();
        conversion::managed_fields_between(
            obj,
            (&api_version, info.conversion),
            |other| self.conversion_at(info, other),
            direction,
        );
    }

    /// Apply conflicts name fields as their owner's entry records them: the field manager found
    /// them in the request's version (see [`Self::rewrite_fields`]). Appliers' conflicts carry
    /// no version; theirs is the one their entry in `live` was recorded at.
    fn conflicts_as_recorded(
        &self,
        info: &ResourceInfo,
        live: &Value,
        e: ApplyError,
    ) -> ApplyError {
        let ApplyError::Conflicts(mut conflicts) = e else {
            return e;
        };
        let request_version = info.api_version();
        for c in &mut conflicts {
            let own_version = if c.api_version.is_empty() {
                applier_version(live, &c.manager, &c.subresource)
            } else {
                Some(c.api_version.as_str())
            };
            let Some(own) = own_version
                .filter(|v| *v != request_version)
                .and_then(|v| self.conversion_at(info, v))
                .filter(|own| *own != info.conversion)
            else {
                continue;
            };
            c.field = own.path_from_storage(&info.conversion.path_to_storage(&c.field));
        }
        ApplyError::Conflicts(conflicts)
    }

    /// [`Self::rewrite_fields`] into the request's version, copying the object only when an
    /// entry of another version is there.
    fn fields_in_request_version(&self, info: &ResourceInfo, obj: &mut Cow<'_, Value>) {
        if conversion::has_entries_of_other_versions(obj, &info.api_version()) {
            self.rewrite_fields(info, obj.to_mut(), Direction::ToRequest);
        }
    }

    fn webhook_configs(&self, plural: &str) -> Vec<Value> {
        let Some(info) = self
            .registry
            .get("admissionregistration.k8s.io", "v1", plural)
        else {
            return Vec::new();
        };
        self.store
            .collection(&info.storage_key())
            .snapshot()
            .objects
            .values()
            .map(|o| (**o).clone())
            .collect()
    }

    /// The namespace object's labels, for webhook namespaceSelectors.
    fn namespace_labels(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        obj: &Value,
    ) -> Option<Value> {
        if info.kind == "Namespace" {
            return obj.pointer("/metadata/labels").cloned();
        }
        let ns = ns?;
        let ns_info = self.registry.get("", "v1", "namespaces")?;
        self.store
            .collection(&ns_info.storage_key())
            .get(&(String::new(), ns.to_owned()))
            .and_then(|n| n.pointer("/metadata/labels").cloned())
    }

    /// Runs the mutating or validating webhooks that match a request. `obj` is the new object
    /// (none for DELETE), mutated in place by mutating webhooks.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn admit(
        &self,
        info: &ResourceInfo,
        operation: Operation,
        ns: Option<&str>,
        name: &str,
        obj: Option<&mut Value>,
        old: Option<&Value>,
        sub: Option<&str>,
        dry_run: bool,
        mutate: bool,
    ) -> Result<Vec<String>, ApiError> {
        let plural = if mutate {
            "mutatingwebhookconfigurations"
        } else {
            "validatingwebhookconfigurations"
        };
        let configs = self.webhook_configs(plural);
        if configs.is_empty() {
            return Ok(Vec::new());
        }
        let label_source = obj.as_deref().or(old).cloned().unwrap_or_default();
        let ns_labels = self.namespace_labels(info, ns, &label_source);
        let uid = uuid::Uuid::new_v4().to_string();
        let user_info = json!({"username": "system:admin", "groups": ["system:masters", "system:authenticated"]});
        // A Namespace's own requests carry its name as the namespace, as upstream.
        let namespace = if info.kind == "Namespace" && !info.is_custom() {
            Some(name)
        } else {
            ns
        };
        let attrs = Attributes {
            uid: &uid,
            operation,
            kind: GroupVersionKind {
                group: &info.group,
                version: &info.version,
                kind: &info.kind,
            },
            resource: GroupVersionResource {
                group: &info.group,
                version: &info.version,
                resource: &info.plural,
            },
            sub_resource: sub,
            name,
            namespace,
            old_object: old,
            options: None,
            dry_run,
            user_info: &user_info,
            namespace_labels: ns_labels.as_ref(),
        };
        let mut warnings = Vec::new();
        let result = if mutate {
            self.admission
                .mutate(&configs, &attrs, obj, &mut warnings)
                .await
        } else {
            self.admission
                .validate(&configs, &attrs, obj.as_deref(), &mut warnings)
                .await
        };
        result.map_err(|e| {
            ApiError::custom(e.http_status(), e.status_reason().to_owned(), e.message())
        })?;
        Ok(warnings)
    }

    /// Checks that a namespaced object's namespace exists and accepts new objects.
    fn check_namespace_open(&self, info: &ResourceInfo, ns: Option<&str>) -> Result<(), ApiError> {
        let (true, Some(ns)) = (info.namespaced, ns) else {
            return Ok(());
        };
        let Some(ns_info) = self.registry.get("", "v1", "namespaces") else {
            return Ok(());
        };
        let namespace = self
            .store
            .collection(&ns_info.storage_key())
            .get(&(String::new(), ns.to_owned()))
            .ok_or_else(|| ApiError::not_found(subject(&ns_info, ns)))?;
        if objects::is_deleting(&namespace) {
            return Err(ApiError::forbidden(
                subject(info, objects::meta_str(&namespace, "name").unwrap_or(ns)),
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            ));
        }
        Ok(())
    }

    /// Creates an object through the full pipeline. `managed` says whether managedFields are
    /// already computed (server-side apply) or must be recorded as an Update.
    pub(crate) async fn create_object(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
        managed: bool,
    ) -> Result<(Value, Vec<String>), ApiError> {
        self.check_namespace_open(info, ns)?;
        objects::prepare_create(info, &mut obj, ns);
        lifecycle::prepare(info, &mut obj)?;
        lifecycle::on_create(self, info, &mut obj);
        let name = objects::meta_str(&obj, "name")
            .unwrap_or_default()
            .to_owned();
        let mut warnings = self
            .admit(
                info,
                Operation::Create,
                ns,
                &name,
                Some(&mut obj),
                None,
                None,
                opts.dry_run,
                true,
            )
            .await?;
        // Mutating webhooks may have added what needs defaulting or converting.
        lifecycle::prepare(info, &mut obj)?;
        warnings.extend(
            schema_pass(info, &mut obj, None, opts)
                .map_err(|errs| ApiError::invalid(&info.group, &info.kind, &name, &errs))?,
        );
        if !managed {
            let now = objects::now_rfc3339();
            let ignored = ignored_fields(info, Endpoint::Main);
            let api_version = info.api_version();
            let ctx = apply_context(info, opts, Endpoint::Main, &ignored, &now, &api_version);
            self.rewrite_fields(info, &mut obj, Direction::ToRequest);
            apply::record_update(None, &mut obj, &ctx).map_err(|e| apply_error(info, &name, e))?;
            self.rewrite_fields(info, &mut obj, Direction::ToOwnVersion);
        }
        warnings.extend(
            self.admit(
                info,
                Operation::Create,
                ns,
                &name,
                Some(&mut obj),
                None,
                None,
                opts.dry_run,
                false,
            )
            .await?,
        );
        if opts.dry_run {
            return Ok((obj, warnings));
        }
        let stored = self
            .collection(info)
            .create(
                (ns_key(info, ns), name.clone()),
                info.conversion.to_storage(obj),
            )
            .map_err(|e| match e {
                StoreError::AlreadyExists => ApiError::already_exists(subject(info, &name)),
                other => ApiError::internal(other.to_string()),
            })?;
        lifecycle::after_write(self, info, &stored, false);
        Ok((present(info, &stored).into_owned(), warnings))
    }

    /// Creates an object with no admission or client options: bootstrap and controllers
    /// inside the server.
    pub(crate) fn create_internal(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        mut obj: Value,
    ) -> Result<Arc<Value>, ApiError> {
        objects::prepare_create(info, &mut obj, ns);
        lifecycle::prepare(info, &mut obj)?;
        lifecycle::on_create(self, info, &mut obj);
        let name = objects::meta_str(&obj, "name")
            .unwrap_or_default()
            .to_owned();
        let stored = self
            .collection(info)
            .create(
                (ns_key(info, ns), name.clone()),
                info.conversion.to_storage(obj),
            )
            .map_err(|_| ApiError::already_exists(subject(info, &name)))?;
        lifecycle::after_write(self, info, &stored, false);
        Ok(stored)
    }

    /// Updates an object through the full pipeline, retrying on a concurrent write when the
    /// caller gave no resourceVersion precondition. `compute` builds the new object from the
    /// current one (a PUT body, a patch result, an apply merge) and says whether managedFields
    /// are already computed.
    pub(crate) async fn update_object<F>(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        endpoint: Endpoint,
        opts: &WriteOptions,
        mut compute: F,
    ) -> Result<(Value, Vec<String>), ApiError>
    where
        F: FnMut(&Value) -> Result<Computed, ApiError>,
    {
        let collection = self.collection(info);
        let key = (ns_key(info, ns), name.to_owned());
        let sub = (endpoint == Endpoint::Status).then_some("status");
        for _attempt in 0..16 {
            let stored = collection
                .get(&key)
                .ok_or_else(|| ApiError::not_found(subject(info, name)))?;
            // The whole pipeline works on the request's version; storage sees its own form.
            let current = present(info, &stored);
            let mut computed = compute(&current)?;
            // Defaults first, as the server's decoding applies them: a body that leaves out
            // what defaulting fills in changes nothing, and bumps no generation.
            lifecycle::prepare(info, &mut computed.object)?;
            if let Some(rv) = computed.precondition_rv
                && rv != resource_version(&current)
            {
                return Err(ApiError::conflict(
                    subject(info, name),
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            let mut new = objects::prepare_update(info, &current, computed.object, endpoint)
                .map_err(|errs| ApiError::invalid(&info.group, &info.kind, name, &errs))?;
            lifecycle::on_update(info, &current, &mut new);
            let mut warnings = self
                .admit(
                    info,
                    Operation::Update,
                    ns,
                    name,
                    Some(&mut new),
                    Some(&current),
                    sub,
                    opts.dry_run,
                    true,
                )
                .await?;
            lifecycle::prepare(info, &mut new)?;
            warnings.extend(
                schema_pass(info, &mut new, Some(&current), opts)
                    .map_err(|errs| ApiError::invalid(&info.group, &info.kind, name, &errs))?,
            );
            if !computed.managed {
                let now = objects::now_rfc3339();
                let ignored = ignored_fields(info, endpoint);
                let api_version = info.api_version();
                let ctx = apply_context(info, opts, endpoint, &ignored, &now, &api_version);
                let mut old = current.clone();
                self.fields_in_request_version(info, &mut old);
                self.rewrite_fields(info, &mut new, Direction::ToRequest);
                apply::record_update(Some(&old), &mut new, &ctx)
                    .map_err(|e| apply_error(info, name, e))?;
                self.rewrite_fields(info, &mut new, Direction::ToOwnVersion);
            }
            warnings.extend(
                self.admit(
                    info,
                    Operation::Update,
                    ns,
                    name,
                    Some(&mut new),
                    Some(&current),
                    sub,
                    opts.dry_run,
                    false,
                )
                .await?,
            );
            if same_ignoring_timestamps(&current, &new) {
                // A no-op write stores nothing and emits no event, as etcd's guaranteed update.
                return Ok((current.into_owned(), warnings));
            }
            if opts.dry_run {
                return Ok((new, warnings));
            }
            let expected = resource_version(&stored);
            let removing = objects::is_deleting(&new) && lifecycle::can_remove(info, &new);
            let new = info.conversion.to_storage(new);
            let result = if removing {
                collection.remove(&key, Some(expected), Some(new))
            } else {
                collection.replace(&key, expected, new)
            };
            match result {
                Ok(stored) => {
                    lifecycle::after_write(self, info, &stored, removing);
                    return Ok((present(info, &stored).into_owned(), warnings));
                }
                Err(StoreError::Conflict) if computed.precondition_rv.is_none() => continue,
                Err(StoreError::Conflict) => {
                    return Err(ApiError::conflict(
                        subject(info, name),
                        "the object has been modified; please apply your changes to the latest version and try again",
                    ));
                }
                Err(StoreError::NotFound) => return Err(ApiError::not_found(subject(info, name))),
                Err(other) => return Err(ApiError::internal(other.to_string())),
            }
        }
        Err(ApiError::conflict(
            subject(info, name),
            "too many concurrent writes; please retry",
        ))
    }
}

/// The version an applier's managedFields entry was recorded at.
fn applier_version<'a>(live: &'a Value, manager: &str, subresource: &str) -> Option<&'a str> {
    live.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|e| {
            let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
            text("manager") == manager
                && text("operation") == "Apply"
                && text("subresource") == subresource
        })?
        .get("apiVersion")?
        .as_str()
}

/// The result of computing an update from the current object.
pub(crate) struct Computed {
    /// The new object as the client means it.
    pub object: Value,
    /// A resourceVersion the current object must have (from the body), if any.
    pub precondition_rv: Option<u64>,
    /// Whether managedFields were computed already (server-side apply).
    pub managed: bool,
}

/// Equal except for managedFields timestamps: upstream does not bump a no-op write.
fn same_ignoring_timestamps(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(fields) = v
            .pointer_mut("/metadata/managedFields")
            .and_then(Value::as_array_mut)
        {
            for f in fields {
                if let Some(f) = f.as_object_mut() {
                    f.remove("time");
                }
            }
        }
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        v
    };
    strip(old) == strip(new)
}

fn body_rv(obj: &Value) -> Result<Option<u64>, ApiError> {
    match objects::meta_str(obj, "resourceVersion") {
        None | Some("") => Ok(None),
        Some(rv) => rv
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))),
    }
}

fn endpoint_of(sub: Option<&str>) -> Endpoint {
    if sub == Some("status") {
        Endpoint::Status
    } else {
        Endpoint::Main
    }
}

fn created_or_ok(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// POST to a collection.
pub(super) async fn create(
    server: &ApiServer,
    info: &ResourceInfo,
    ns: Option<&str>,
    req: &ApiRequest,
    q: &Query,
) -> Result<(StatusCode, Value), ApiError> {
    let opts = WriteOptions::from_request(q, req)?;
    let mut obj = decode_body(req)?;
    default_type(info, &mut obj);
    check_type(info, &obj)?;
    check_namespace(info, ns, &obj)?;
    let (obj, _warnings) = server.create_object(info, ns, obj, &opts, false).await?;
    Ok((StatusCode::CREATED, obj))
}

/// PUT of an object or its status.
pub(super) async fn update(
    server: &ApiServer,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    sub: Option<&str>,
    req: &ApiRequest,
    q: &Query,
) -> Result<(StatusCode, Value), ApiError> {
    let opts = WriteOptions::from_request(q, req)?;
    let mut body = decode_body(req)?;
    default_type(info, &mut body);
    check_type(info, &body)?;
    check_namespace(info, ns, &body)?;
    if let Some(body_name) = objects::meta_str(&body, "name")
        && body_name != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let precondition = body_rv(&body)?;
    let (obj, _) = server
        .update_object(info, ns, name, endpoint_of(sub), &opts, |_| {
            Ok(Computed {
                object: body.clone(),
                precondition_rv: precondition,
                managed: false,
            })
        })
        .await?;
    Ok((StatusCode::OK, obj))
}

/// The kind of a PATCH body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

fn patch_type(content_type: &str) -> Result<PatchType, ApiError> {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
        _ => Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct:?})"
        ))),
    }
}

/// Applies a non-apply patch to the current object.
fn apply_patch(
    info: &ResourceInfo,
    kind: PatchType,
    current: &Value,
    body: &[u8],
) -> Result<Value, ApiError> {
    let mut doc = current.clone();
    match kind {
        PatchType::Merge => {
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::merge(&mut doc, &patch);
        }
        PatchType::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            apply_json_patch(&mut doc, &patch)?;
        }
        PatchType::Strategic => {
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            doc = crate::patch::strategic::apply(current, &patch, info.schema_node())
                .map_err(|e| ApiError::custom(e.status_code(), e.reason(), e.status_message()))?;
        }
        PatchType::Apply => unreachable!("apply is handled separately"),
    }
    Ok(doc)
}

/// Applies an RFC 6902 patch the way the API server's library (evanphx/json-patch) does: a
/// `test` of `null` succeeds on a missing path (kube-runtime's finalizer helper relies on it).
pub(crate) fn apply_json_patch(doc: &mut Value, patch: &json_patch::Patch) -> Result<(), ApiError> {
    for op in &patch.0 {
        if let json_patch::PatchOperation::Test(t) = op
            && t.value.is_null()
            && doc.pointer(t.path.as_str()).is_none_or(Value::is_null)
        {
            continue;
        }
        json_patch::patch(doc, std::slice::from_ref(op)).map_err(|e| {
            ApiError::custom(
                422,
                "Invalid",
                format!("the server rejected our request due to an error in our request: {e}"),
            )
        })?;
    }
    Ok(())
}

/// One request as a write handler sees it: the request, its parsed query, and who sent it.
#[derive(Clone, Copy)]
pub(super) struct Call<'a> {
    /// The request.
    pub req: &'a ApiRequest,
    /// Its query parameters.
    pub q: &'a Query,
    /// The authenticated user it acts as.
    pub user: &'a UserInfo,
}

/// PATCH of an object or its status.
pub(super) async fn patch(
    server: &ApiServer,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    sub: Option<&str>,
    call: Call<'_>,
) -> Result<(StatusCode, Value), ApiError> {
    let (req, q) = (call.req, call.q);
    if info.namespaced && ns.is_none() {
        return Err(ApiError::no_route());
    }
    let kind = patch_type(&req.content_type)?;
    if kind == PatchType::Strategic && info.is_custom() {
        return Err(ApiError::unsupported_media_type(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ));
    }
    let endpoint = endpoint_of(sub);
    if kind == PatchType::Apply {
        return server_side_apply(server, info, ns, name, endpoint, call).await;
    }
    let opts = WriteOptions::from_request(q, req)?;
    let (obj, _) = server
        .update_object(info, ns, name, endpoint, &opts, |current| {
            let patched = apply_patch(info, kind, current, &req.body)?;
            check_type(info, &patched)?;
            // A resourceVersion the patch itself sets is a precondition (optimistic locking).
            let precondition = if objects::meta_str(&patched, "resourceVersion")
                != objects::meta_str(current, "resourceVersion")
            {
                body_rv(&patched)?
            } else {
                None
            };
            Ok(Computed {
                object: patched,
                precondition_rv: precondition,
                managed: false,
            })
        })
        .await?;
    Ok((StatusCode::OK, obj))
}

async fn server_side_apply(
    server: &ApiServer,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    endpoint: Endpoint,
    call: Call<'_>,
) -> Result<(StatusCode, Value), ApiError> {
    let (req, q) = (call.req, call.q);
    if q.field_manager.as_deref().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    let opts = WriteOptions::from_request(q, req)?;
    let mut config = decode_body(req)?;
    check_type(info, &config)?;
    check_namespace(info, ns, &config)?;
    // As kube-apiserver: an applied configuration without a name takes the URL's.
    match objects::meta_str(&config, "name") {
        None | Some("") => {
            objects::meta_mut(&mut config).insert("name".into(), json!(name));
        }
        Some(body_name) if body_name != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        Some(_) => {}
    }
    if let (Some(ns), true) = (ns, info.namespaced) {
        objects::meta_mut(&mut config).insert("namespace".into(), json!(ns));
    }
    let precondition = body_rv(&config)?;
    let now = objects::now_rfc3339();
    let ignored = ignored_fields(info, endpoint);
    let api_version = info.api_version();
    let ctx = apply_context(info, &opts, endpoint, &ignored, &now, &api_version);
    let exists = server
        .collection(info)
        .get(&(ns_key(info, ns), name.to_owned()))
        .is_some();
    if !exists {
        if endpoint == Endpoint::Status {
            return Err(ApiError::not_found(subject(info, name)));
        }
        server.authorize_create_by_apply(call.user, req)?;
        let created = apply::server_side_apply(None, &config, q.force, &ctx)
            .map_err(|e| apply_error(info, name, e))?;
        match server.create_object(info, ns, created, &opts, true).await {
            Ok((obj, _)) => return Ok((created_or_ok(true), obj)),
            // Lost a race with another creator: apply onto what they made.
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(e),
        }
    }
    let (obj, _) = server
        .update_object(info, ns, name, endpoint, &opts, |current| {
            let mut live = Cow::Borrowed(current);
            server.fields_in_request_version(info, &mut live);
            let mut merged = apply::server_side_apply(Some(&live), &config, q.force, &ctx)
                .map_err(|e| {
                    apply_error(info, name, server.conflicts_as_recorded(info, &live, e))
                })?;
            server.rewrite_fields(info, &mut merged, Direction::ToOwnVersion);
            Ok(Computed {
                object: merged,
                precondition_rv: precondition,
                managed: true,
            })
        })
        .await?;
    Ok((StatusCode::OK, obj))
}
