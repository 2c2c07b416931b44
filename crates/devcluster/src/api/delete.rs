//! delete and deletecollection: preconditions, finalizers, propagation policy, dry run.

use http::StatusCode;
use serde_json::{Value, json};

use super::read::{Filter, present};
use super::{ApiRequest, ApiServer, Query, Reply, lifecycle, ns_key, subject};
use crate::admission::Operation;
use crate::error::ApiError;
use crate::objects;
use crate::resources::ResourceInfo;
use crate::store::{StoreError, resource_version};

/// The options of a DELETE, from the query and the (optional) DeleteOptions body.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeleteOptions {
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<u64>,
    pub dry_run: bool,
}

impl DeleteOptions {
    fn from_request(req: &ApiRequest, q: &Query) -> Result<Self, ApiError> {
        let mut opts = DeleteOptions {
            propagation: q.propagation_policy.clone(),
            dry_run: q.dry_run,
            ..Default::default()
        };
        if q.orphan_dependents == Some(true) && opts.propagation.is_none() {
            opts.propagation = Some("Orphan".into());
        }
        if !req.body.is_empty() {
            let body: Value = super::write::decode_body(req)?;
            if let Some(p) = body.get("propagationPolicy").and_then(Value::as_str) {
                opts.propagation = Some(p.to_owned());
            }
            if body.get("orphanDependents").and_then(Value::as_bool) == Some(true)
                && opts.propagation.is_none()
            {
                opts.propagation = Some("Orphan".into());
            }
            if let Some(pre) = body.get("preconditions") {
                opts.precondition_uid = pre.get("uid").and_then(Value::as_str).map(str::to_owned);
                opts.precondition_rv = pre
                    .get("resourceVersion")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok());
            }
            if body
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|v| v == "All"))
            {
                opts.dry_run = true;
            }
        }
        if let Some(p) = &opts.propagation
            && !["Orphan", "Background", "Foreground"].contains(&p.as_str())
        {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                &[crate::validation::FieldError {
                    reason: "FieldValueNotSupported",
                    field: "propagationPolicy".into(),
                    message: format!(
                        "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                    ),
                }],
            ));
        }
        Ok(opts)
    }
}

/// What a delete did.
pub(crate) enum Deleted {
    /// Gone from storage: the last state.
    Removed(Value),
    /// Deletion started but finalizers hold the object: its current state.
    Pending(Value),
}

impl ApiServer {
    /// Deletes one object with the real server's rules. Retries on concurrent writes. Deletion
    /// edits metadata only, so it works on the stored form; what admission and the caller see
    /// is the object at the request's version.
    pub(crate) async fn delete_object(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let collection = self.collection(info);
        let key = (ns_key(info, ns), name.to_owned());
        let served = |obj: &Value| present(info, obj).into_owned();
        for _ in 0..16 {
            let current = collection
                .get(&key)
                .ok_or_else(|| ApiError::not_found(subject(info, name)))?;
            if let Some(uid) = &opts.precondition_uid
                && objects::meta_str(&current, "uid") != Some(uid.as_str())
            {
                return Err(ApiError::conflict(
                    subject(info, name),
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        objects::meta_str(&current, "uid").unwrap_or_default()
                    ),
                ));
            }
            if let Some(rv) = opts.precondition_rv
                && rv != resource_version(&current)
            {
                return Err(ApiError::conflict(
                    subject(info, name),
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        resource_version(&current)
                    ),
                ));
            }
            let old = (*current).clone();
            self.admit_delete(info, ns, name, &served(&old), opts.dry_run)
                .await?;

            let mut next = (*current).clone();
            match opts
                .propagation
                .as_deref()
                .or(lifecycle::default_propagation(info))
            {
                Some("Orphan") => objects::add_finalizer(&mut next, "orphan"),
                Some("Foreground") => objects::add_finalizer(&mut next, "foregroundDeletion"),
                _ => {}
            }
            let already_deleting = objects::is_deleting(&next);
            if !lifecycle::can_remove(info, &next) || lifecycle::graceful(info, &next) {
                // Finalizers (or a kubelet) hold the object: start deletion, keep it.
                if !already_deleting {
                    objects::mark_deleting(&mut next, info);
                    lifecycle::on_delete_start(info, &mut next);
                }
                if next == old {
                    return Ok(Deleted::Pending(served(&old)));
                }
                if opts.dry_run {
                    return Ok(Deleted::Pending(served(&next)));
                }
                match collection.replace(&key, resource_version(&current), next) {
                    Ok(stored) => {
                        lifecycle::after_write(self, info, &stored, false);
                        return Ok(Deleted::Pending(served(&stored)));
                    }
                    Err(StoreError::Conflict) => continue,
                    Err(StoreError::NotFound) => {
                        return Err(ApiError::not_found(subject(info, name)));
                    }
                    Err(e) => return Err(ApiError::internal(e.to_string())),
                }
            }
            if opts.dry_run {
                return Ok(Deleted::Removed(served(&old)));
            }
            match collection.remove(&key, Some(resource_version(&current)), None) {
                Ok(last) => {
                    lifecycle::after_write(self, info, &last, true);
                    return Ok(Deleted::Removed(served(&last)));
                }
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound) => return Err(ApiError::not_found(subject(info, name))),
                Err(e) => return Err(ApiError::internal(e.to_string())),
            }
        }
        Err(ApiError::conflict(
            subject(info, name),
            "too many concurrent writes; please retry",
        ))
    }

    async fn admit_delete(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        old: &Value,
        dry_run: bool,
    ) -> Result<(), ApiError> {
        for mutate in [true, false] {
            self.admit(
                info,
                Operation::Delete,
                ns,
                name,
                None,
                Some(old),
                None,
                dry_run,
                mutate,
            )
            .await?;
        }
        Ok(())
    }
}

fn success_status(info: &ResourceInfo, obj: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": objects::meta_str(obj, "name"),
            "group": info.group,
            "kind": info.plural,
            "uid": objects::meta_str(obj, "uid"),
        }
    })
}

/// DELETE of one object.
pub(super) async fn delete(
    server: &ApiServer,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    req: &ApiRequest,
    q: &Query,
) -> Result<Reply, ApiError> {
    if info.namespaced && ns.is_none() {
        return Err(ApiError::no_route());
    }
    let opts = DeleteOptions::from_request(req, q)?;
    match server.delete_object(info, ns, name, &opts).await? {
        // Custom resources answer with the deleted object, built-ins with a Status.
        Deleted::Removed(obj) if info.is_custom() => Ok(Reply::Json(StatusCode::OK, obj)),
        Deleted::Removed(obj) => Ok(Reply::Json(StatusCode::OK, success_status(info, &obj))),
        Deleted::Pending(obj) => Ok(Reply::Json(StatusCode::OK, obj)),
    }
}

/// DELETE of a collection: deletes every selected object, answers with what was deleted.
pub(super) async fn delete_collection(
    server: &ApiServer,
    info: &ResourceInfo,
    ns: Option<&str>,
    req: &ApiRequest,
    q: &Query,
) -> Result<Reply, ApiError> {
    if info.namespaced && ns.is_none() {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let opts = DeleteOptions::from_request(req, q)?;
    let filter = Filter::new(info, ns, q)?;
    let snapshot = server.collection(info).snapshot();
    let mut items = Vec::new();
    for obj in snapshot.objects.values().filter(|o| filter.matches(o)) {
        let name = objects::meta_str(obj, "name")
            .unwrap_or_default()
            .to_owned();
        match server.delete_object(info, ns, &name, &opts).await {
            Ok(Deleted::Removed(o) | Deleted::Pending(o)) => items.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Reply::Json(
        StatusCode::OK,
        json!({
            "kind": info.list_kind,
            "apiVersion": info.api_version(),
            "metadata": {"resourceVersion": server.store.revision().to_string()},
            "items": items,
        }),
    ))
}
