//! get, list and watch.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{ApiServer, Query, Reply, ns_key, subject};
use crate::error::ApiError;
use crate::resources::ResourceInfo;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Event, EventType, ObjectKey, Snapshot, StoreError};
use crate::table;

/// How often an idle watch with bookmarks enabled reports its position.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);
/// Upper bound of a watch without timeoutSeconds (upstream: 30-60 minutes).
const MAX_WATCH: Duration = Duration::from_secs(1800);

/// An object as served at the requested version: converted from its stored form (events.k8s.io
/// Events are stored as core Events), with the version's apiVersion and kind. Custom resources
/// are stored at one version and served at all with only apiVersion changed, as with
/// `conversion: None`.
pub(crate) fn present<'a>(info: &ResourceInfo, obj: &'a Value) -> Cow<'a, Value> {
    let converted = info.conversion.from_storage(obj);
    let api_version = info.api_version();
    if converted.get("apiVersion").and_then(Value::as_str) == Some(api_version.as_str())
        && converted.get("kind").and_then(Value::as_str) == Some(info.kind.as_str())
    {
        return converted;
    }
    let mut owned = converted.into_owned();
    if let Some(map) = owned.as_object_mut() {
        map.insert("apiVersion".into(), json!(api_version));
        map.insert("kind".into(), json!(info.kind));
    }
    Cow::Owned(owned)
}

/// The compiled selectors of a list or watch. They match stored objects: field labels of the
/// served form are translated to the stored form's once, instead of converting every object.
pub(crate) struct Filter {
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    /// Selecting stored core Events, whose `source` label is not a plain path.
    events: bool,
}

impl Filter {
    pub(crate) fn new(info: &ResourceInfo, ns: Option<&str>, q: &Query) -> Result<Self, ApiError> {
        let labels = match &q.label_selector {
            Some(s) => LabelSelector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
            None => LabelSelector::everything(),
        };
        let mut fields = match &q.field_selector {
            Some(s) => FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.0))?,
            None => FieldSelector::default(),
        };
        for r in &mut fields.requirements {
            let supported = r.field == "metadata.name"
                || (r.field == "metadata.namespace" && info.namespaced)
                || info.selectable_fields.iter().any(|f| f == &r.field);
            if !supported {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {}",
                    r.field
                )));
            }
            r.field = info.conversion.field_label(&r.field).into_owned();
        }
        Ok(Filter {
            namespace: ns.map(str::to_owned),
            labels,
            fields,
            events: !info.is_custom() && info.kind == "Event",
        })
    }

    fn selects_all(&self) -> bool {
        self.labels.is_everything() && self.fields.requirements.is_empty()
    }

    pub(crate) fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && obj.pointer("/metadata/namespace").and_then(Value::as_str) != Some(ns.as_str())
        {
            return false;
        }
        self.labels.matches(obj.pointer("/metadata/labels"))
            && self.fields.matches(|f| match f {
                "source" if self.events => event_source(obj),
                _ => field_value(obj, f),
            })
    }
}

/// Core events select on `source`: the source component, or the reporting component of events
/// that have none (upstream's `ToSelectableFields`).
fn event_source(obj: &Value) -> Option<String> {
    field_value(obj, "source.component")
        .filter(|s| !s.is_empty())
        .or_else(|| field_value(obj, "reportingComponent"))
}

/// The value of a selectable field of a stored object (a dotted path), as a string.
fn field_value(obj: &Value, field: &str) -> Option<String> {
    let mut cur = obj;
    for part in field.split('.') {
        cur = cur.get(part)?;
    }
    match cur {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// GET of one object.
pub(super) fn get(
    server: &ApiServer,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    accept: &str,
    q: &Query,
) -> Result<Reply, ApiError> {
    if info.namespaced && ns.is_none() {
        return Err(ApiError::no_route());
    }
    let obj = server
        .store
        .collection(&info.storage_key())
        .get(&(ns_key(info, ns), name.to_owned()))
        .ok_or_else(|| ApiError::not_found(subject(info, name)))?;
    let obj = present(info, &obj);
    if table::wants_table(accept) {
        let meta = json!({"resourceVersion": obj.pointer("/metadata/resourceVersion")});
        return Ok(Reply::Json(
            StatusCode::OK,
            table::table(info, &[&obj], q.include_object.as_deref(), meta),
        ));
    }
    Ok(Reply::Json(StatusCode::OK, obj.into_owned()))
}

#[derive(serde::Deserialize, Serialize)]
struct ContinueToken {
    rv: u64,
    /// The last key returned: namespace and name.
    start: (String, String),
}

fn encode_continue(rv: u64, last: &ObjectKey) -> String {
    let token = ContinueToken {
        rv,
        start: last.clone(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&token).unwrap_or_default())
}

fn decode_continue(token: &str) -> Result<ContinueToken, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    serde_json::from_slice(&raw).map_err(|_| bad())
}

fn parse_rv(rv: &str) -> Result<u64, ApiError> {
    rv.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))
}

fn expired(e: StoreError) -> ApiError {
    match e {
        StoreError::Expired { requested, oldest } => {
            ApiError::gone(format!("too old resource version: {requested} ({oldest})"))
        }
        other => ApiError::internal(other.to_string()),
    }
}

/// Picks the snapshot a list reads from, following the resourceVersion / match rules.
fn list_snapshot(
    server: &ApiServer,
    info: &ResourceInfo,
    q: &Query,
) -> Result<(Snapshot, Option<ObjectKey>), ApiError> {
    let collection = server.store.collection(&info.storage_key());
    let rv = q.resource_version.as_deref().filter(|s| !s.is_empty());
    if let Some(m) = q.resource_version_match.as_deref() {
        if rv.is_none() {
            return Err(ApiError::bad_request(
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        if m != "Exact" && m != "NotOlderThan" {
            return Err(ApiError::bad_request(format!(
                "resourceVersionMatch: Unsupported value: {m:?}: supported values: \"Exact\", \"NotOlderThan\""
            )));
        }
    }
    if let Some(token) = &q.continue_token {
        if rv.is_some_and(|r| r != "0") {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let token = decode_continue(token)?;
        let snapshot = collection.snapshot_at(token.rv).map_err(|_| {
            ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
        })?;
        return Ok((snapshot, Some(token.start)));
    }
    match (rv, q.resource_version_match.as_deref()) {
        (Some(rv), Some("Exact")) => {
            let rv = parse_rv(rv)?;
            Ok((collection.snapshot_at(rv).map_err(expired)?, None))
        }
        (Some(rv), _) if rv != "0" => {
            // NotOlderThan (the default for a given version): the latest state is never older.
            parse_rv(rv)?;
            Ok((collection.snapshot(), None))
        }
        _ => Ok((collection.snapshot(), None)),
    }
}

#[derive(Serialize)]
struct ListBody<'a> {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: String,
    metadata: Value,
    items: Vec<Cow<'a, Value>>,
}

/// LIST of a collection (optionally one namespace), with selectors and paging.
pub(super) fn list(
    server: &ApiServer,
    info: &ResourceInfo,
    ns: Option<&str>,
    q: &Query,
    accept: &str,
) -> Result<Reply, ApiError> {
    let filter = Filter::new(info, ns, q)?;
    let (snapshot, start_after) = list_snapshot(server, info, q)?;
    let range_start: ObjectKey = match (&start_after, ns) {
        (Some(k), _) => k.clone(),
        (None, Some(ns)) if info.namespaced => (ns.to_owned(), String::new()),
        _ => (String::new(), String::new()),
    };
    let mut items: Vec<(&ObjectKey, &Arc<Value>)> = Vec::new();
    let mut more = false;
    let mut remaining = 0usize;
    for (key, obj) in snapshot.objects.range(range_start.clone()..) {
        if start_after.as_ref() == Some(key) {
            continue;
        }
        if let Some(ns) = ns
            && info.namespaced
            && key.0 != ns
        {
            break;
        }
        if !filter.matches(obj) {
            continue;
        }
        if q.limit.is_some_and(|l| items.len() >= l) {
            more = true;
            if !filter.selects_all() {
                break;
            }
            remaining += 1;
            continue;
        }
        items.push((key, obj));
    }
    let mut metadata = json!({"resourceVersion": snapshot.rv.to_string()});
    if more && let Some((last, _)) = items.last() {
        metadata["continue"] = json!(encode_continue(snapshot.rv, last));
        if filter.selects_all() {
            metadata["remainingItemCount"] = json!(remaining);
        }
        server
            .store
            .collection(&info.storage_key())
            .retain_snapshot(&snapshot);
    }
    if table::wants_table(accept) {
        let objs: Vec<Cow<Value>> = items.iter().map(|(_, o)| present(info, o)).collect();
        let refs: Vec<&Value> = objs.iter().map(|c| c.as_ref()).collect();
        return Ok(Reply::Json(
            StatusCode::OK,
            table::table(info, &refs, q.include_object.as_deref(), metadata),
        ));
    }
    let body = ListBody {
        kind: info.list_kind.clone(),
        api_version: info.api_version(),
        metadata,
        items: items.iter().map(|(_, o)| present(info, o)).collect(),
    };
    let bytes = serde_json::to_vec(&body).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Reply::Bytes(StatusCode::OK, Bytes::from(bytes)))
}

#[derive(Serialize)]
struct WatchEvent<'a> {
    #[serde(rename = "type")]
    type_: &'a str,
    object: &'a Value,
}

/// Encodes watch events for one watcher: plain objects or one-row Tables.
struct Encoder {
    info: Arc<ResourceInfo>,
    table: bool,
    include_object: Option<String>,
}

impl Encoder {
    fn event(&self, type_: &str, obj: &Value) -> Bytes {
        let obj = present(&self.info, obj);
        let table;
        let object: &Value = if self.table {
            let meta = json!({"resourceVersion": obj.pointer("/metadata/resourceVersion")});
            table = table::table(&self.info, &[&obj], self.include_object.as_deref(), meta);
            &table
        } else {
            &obj
        };
        let mut line = serde_json::to_vec(&WatchEvent { type_, object }).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn bookmark(&self, rv: u64, initial_events_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": meta});
        let mut line = serde_json::to_vec(&WatchEvent {
            type_: "BOOKMARK",
            object: &obj,
        })
        .unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn error(&self, e: &ApiError) -> Bytes {
        let status = e.to_status();
        let mut line = serde_json::to_vec(&WatchEvent {
            type_: "ERROR",
            object: &status,
        })
        .unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }
}

/// What a filtered watcher sees of one change: an object entering the selection is ADDED,
/// one leaving it is DELETED, as the real watch cache reports.
fn filtered(filter: &Filter, event: &Event) -> Option<EventType> {
    let now = filter.matches(&event.object);
    let before = event.previous.as_deref().is_some_and(|p| filter.matches(p));
    match event.kind {
        EventType::Added => now.then_some(EventType::Added),
        EventType::Deleted => before.then_some(EventType::Deleted),
        EventType::Modified => match (before, now) {
            (true, true) => Some(EventType::Modified),
            (true, false) => Some(EventType::Deleted),
            (false, true) => Some(EventType::Added),
            (false, false) => None,
        },
    }
}

/// WATCH of a collection (or one object by name), streamed as JSON lines.
pub(super) fn watch(
    server: &Arc<ApiServer>,
    info: &Arc<ResourceInfo>,
    ns: Option<&str>,
    name: Option<&str>,
    q: &Query,
    accept: &str,
) -> Result<Reply, ApiError> {
    let mut q = q.clone();
    if let Some(name) = name {
        let by_name = format!("metadata.name={name}");
        q.field_selector = Some(match q.field_selector.take() {
            Some(f) if !f.is_empty() => format!("{f},{by_name}"),
            _ => by_name,
        });
    }
    let filter = Filter::new(info, ns, &q)?;
    let send_initial = q.send_initial_events == Some(true);
    if q.send_initial_events.is_some() {
        if q.resource_version_match.as_deref() != Some("NotOlderThan") {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "ListOptions",
                "",
                &[crate::validation::FieldError::forbidden(
                    "sendInitialEvents",
                    "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan",
                )],
            ));
        }
        if send_initial && !q.allow_watch_bookmarks {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "ListOptions",
                "",
                &[crate::validation::FieldError::forbidden(
                    "allowWatchBookmarks",
                    "allowWatchBookmarks required when sendInitialEvents is true",
                )],
            ));
        }
    } else if q.resource_version_match.is_some() {
        return Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        ));
    }
    let collection = server.store.collection(&info.storage_key());
    let rv = q.resource_version.as_deref().filter(|s| !s.is_empty());
    // Without a version (or "0"), or with sendInitialEvents, a watch starts with the current
    // objects as synthetic ADDED events.
    let initial = send_initial || rv.is_none() || rv == Some("0");
    let (initial_objects, start) = if initial {
        let snap = collection.snapshot();
        let objs: Vec<Arc<Value>> = snap
            .objects
            .values()
            .filter(|o| filter.matches(o))
            .cloned()
            .collect();
        (objs, snap.rv)
    } else {
        (Vec::new(), parse_rv(rv.unwrap_or("0"))?)
    };
    let encoder = Encoder {
        info: info.clone(),
        table: table::wants_table(accept),
        include_object: q.include_object.clone(),
    };
    let cursor = collection.watch_from(start);
    let timeout = q
        .timeout_seconds
        .map_or(MAX_WATCH, |s| Duration::from_secs(s).min(MAX_WATCH));
    let bookmarks = q.allow_watch_bookmarks;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut cursor = match cursor {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(encoder.error(&expired(e))).await;
                return;
            }
        };
        for obj in &initial_objects {
            if tx.send(encoder.event("ADDED", obj)).await.is_err() {
                return;
            }
        }
        if send_initial && tx.send(encoder.bookmark(start, true)).await.is_err() {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    if let Some(rv) = cursor.bookmark()
                        && tx.send(encoder.bookmark(rv, false)).await.is_err()
                    {
                        return;
                    }
                }
                events = cursor.next() => {
                    let events = match events {
                        Ok(events) => events,
                        Err(StoreError::Closed) => return,
                        Err(e) => {
                            let _ = tx.send(encoder.error(&expired(e))).await;
                            return;
                        }
                    };
                    for event in events {
                        let Some(kind) = filtered(&filter, &event) else { continue };
                        if tx.send(encoder.event(kind.as_str(), &event.object)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    Ok(Reply::Stream(rx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::builtin_resources;

    fn events_info(group: &str) -> ResourceInfo {
        builtin_resources()
            .into_iter()
            .find(|r| r.group == group && r.plural == "events")
            .unwrap()
    }

    fn selecting(info: &ResourceInfo, fields: &str) -> Result<Filter, ApiError> {
        let q = Query {
            field_selector: Some(fields.to_owned()),
            ..Query::default()
        };
        Filter::new(info, Some("default"), &q)
    }

    /// A core Event as stored.
    fn stored_event() -> Value {
        json!({"apiVersion": "v1", "kind": "Event",
               "metadata": {"name": "e", "namespace": "default"},
               "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
               "reason": "Started", "type": "Normal",
               "reportingComponent": "kubelet", "reportingInstance": "node-1"})
    }

    #[test]
    fn events_api_labels_select_on_the_stored_core_event() {
        let info = events_info("events.k8s.io");
        let obj = stored_event();
        for (selector, matches) in [
            ("regarding.name=web", true),
            ("regarding.name=db", false),
            ("regarding.kind=Pod,reason=Started", true),
            ("reportingController=kubelet", true),
            ("type!=Warning", true),
        ] {
            assert_eq!(
                selecting(&info, selector).unwrap().matches(&obj),
                matches,
                "{selector}"
            );
        }
        // The core spellings are not events.k8s.io labels.
        assert!(selecting(&info, "involvedObject.name=web").is_err());
        assert!(selecting(&info, "reportingComponent=kubelet").is_err());
    }

    #[test]
    fn source_falls_back_to_the_reporting_component() {
        let mut obj = stored_event();
        for group in ["", "events.k8s.io"] {
            let filter = selecting(&events_info(group), "source=kubelet").unwrap();
            assert!(
                filter.matches(&obj),
                "{group}: no source, reporting component"
            );
        }
        obj["source"] = json!({"component": "scheduler"});
        let core = events_info("");
        assert!(!selecting(&core, "source=kubelet").unwrap().matches(&obj));
        assert!(selecting(&core, "source=scheduler").unwrap().matches(&obj));
        assert!(
            selecting(&core, "involvedObject.name=web")
                .unwrap()
                .matches(&obj)
        );
    }

    #[test]
    fn events_are_presented_in_the_requested_version() {
        let obj = stored_event();
        let served = present(&events_info("events.k8s.io"), &obj);
        assert_eq!(served["apiVersion"], "events.k8s.io/v1");
        assert_eq!(served["regarding"]["name"], "web");
        assert_eq!(served["reportingController"], "kubelet");
        assert!(served.get("involvedObject").is_none());
        assert!(matches!(present(&events_info(""), &obj), Cow::Borrowed(_)));
    }
}
