//! A record of every request: who asked for what and how it was answered, kept in memory
//! (bounded) and optionally written to a JSON lines file. Tests read it to compare what an
//! operator's roles grant with what it actually used ([`Audit::used`]).

use std::collections::{BTreeSet, VecDeque};
use std::fs::File;
use std::io::{LineWriter, Write};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

use crate::request_info::RequestInfo;

/// How many entries are kept by default (the oldest are dropped first).
pub const DEFAULT_CAPACITY: usize = 100_000;

/// One request, as audited once its answer is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// When the answer was given (RFC 3339).
    pub time: String,
    /// The user the request acted as ("" when authentication failed).
    pub user: String,
    /// The authenticated user who impersonated `user`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonated_by: Option<String>,
    /// Whether the request addressed a resource (else a non-resource URL, see `path`).
    pub resource_request: bool,
    /// The verb (see [`RequestInfo::verb`]).
    pub verb: String,
    /// API group ("" for core).
    pub api_group: String,
    /// Plural resource name.
    pub resource: String,
    /// Subresource, or "".
    pub subresource: String,
    /// Namespace, or "".
    pub namespace: String,
    /// Object name, or "".
    pub name: String,
    /// The request path.
    pub path: String,
    /// HTTP status code of the answer (200 for a watch stream that started).
    pub code: u16,
}

impl AuditEntry {
    /// The entry for `request` by `user` answered with `code`.
    pub fn new(
        user: &str,
        impersonated_by: Option<&str>,
        request: &RequestInfo,
        code: u16,
    ) -> Self {
        AuditEntry {
            time: jiff::Timestamp::now().to_string(),
            user: user.to_owned(),
            impersonated_by: impersonated_by.map(str::to_owned),
            resource_request: request.resource_request,
            verb: request.verb.clone(),
            api_group: request.api_group.clone(),
            resource: request.resource.clone(),
            subresource: request.subresource.clone(),
            namespace: request.namespace.clone(),
            name: request.name.clone(),
            path: request.path.clone(),
            code,
        }
    }
}

/// What a request used, in the terms of an RBAC rule: `(apiGroup, resource[/subresource], verb)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    /// API group ("" for core).
    pub api_group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    /// The verb.
    pub verb: String,
}

impl Permission {
    /// A permission from its three parts.
    pub fn new(api_group: &str, resource: &str, verb: &str) -> Self {
        Permission {
            api_group: api_group.to_owned(),
            resource: resource.to_owned(),
            verb: verb.to_owned(),
        }
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.api_group.is_empty() {
            write!(f, "{} {}", self.verb, self.resource)
        } else {
            write!(f, "{} {}.{}", self.verb, self.resource, self.api_group)
        }
    }
}

/// The permissions `user`'s resource requests among `entries` used (answered or not: a denied
/// request is still one the user needed). Non-resource URLs (discovery) are left out.
pub fn summarize<'a>(
    entries: impl IntoIterator<Item = &'a AuditEntry>,
    user: &str,
) -> BTreeSet<Permission> {
    entries
        .into_iter()
        .filter(|e| e.user == user && e.resource_request)
        .map(|e| {
            let resource = if e.subresource.is_empty() {
                e.resource.clone()
            } else {
                format!("{}/{}", e.resource, e.subresource)
            };
            Permission {
                api_group: e.api_group.clone(),
                resource,
                verb: e.verb.clone(),
            }
        })
        .collect()
}

/// The audit trail of a server.
pub struct Audit {
    capacity: usize,
    entries: Mutex<VecDeque<AuditEntry>>,
    log: Mutex<Option<LineWriter<File>>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Audit {
    /// An empty trail keeping the last `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Audit {
            capacity,
            entries: Mutex::new(VecDeque::new()),
            log: Mutex::new(None),
        }
    }

    /// Also appends every entry from now on to `path` as a JSON line.
    pub fn log_to(&self, path: &Path) -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        *lock(&self.log) = Some(LineWriter::new(file));
        Ok(())
    }

    /// Records one request.
    pub fn record(&self, entry: AuditEntry) {
        {
            let mut log = lock(&self.log);
            if let Some(w) = log.as_mut() {
                let line = serde_json::to_string(&entry).unwrap_or_default();
                if let Err(e) = writeln!(w, "{line}") {
                    // Stop writing rather than failing (or logging) every request.
                    tracing::warn!(error = %e, "cannot write the audit log; it is closed");
                    *log = None;
                }
            }
        }
        if self.capacity == 0 {
            return;
        }
        let mut entries = lock(&self.entries);
        while entries.len() >= self.capacity {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// Every entry kept, oldest first.
    pub fn entries(&self) -> Vec<AuditEntry> {
        lock(&self.entries).iter().cloned().collect()
    }

    /// The entries of one user (the user acted as), oldest first.
    pub fn entries_for(&self, user: &str) -> Vec<AuditEntry> {
        lock(&self.entries)
            .iter()
            .filter(|e| e.user == user)
            .cloned()
            .collect()
    }

    /// What `user` used: see [`summarize`].
    pub fn used(&self, user: &str) -> BTreeSet<Permission> {
        summarize(lock(&self.entries).iter(), user)
    }

    /// Forgets every entry kept (the log file is left as it is).
    pub fn clear(&self) {
        lock(&self.entries).clear();
    }
}

impl Default for Audit {
    fn default() -> Self {
        Audit::new(DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_info;
    use http::Method;

    fn entry(user: &str, method: Method, path: &str, query: Option<&str>, code: u16) -> AuditEntry {
        AuditEntry::new(user, None, &request_info::parse(&method, path, query), code)
    }

    #[test]
    fn summary_lists_each_permission_of_one_user_once() {
        let entries = [
            entry("u", Method::GET, "/api/v1/namespaces/a/pods/p", None, 200),
            entry("u", Method::GET, "/api/v1/namespaces/a/pods/q", None, 404),
            entry(
                "u",
                Method::GET,
                "/api/v1/namespaces/b/pods",
                Some("watch=true"),
                200,
            ),
            entry(
                "u",
                Method::PUT,
                "/apis/x.io/v1/namespaces/a/ws/w/status",
                None,
                403,
            ),
            entry("u", Method::GET, "/apis", None, 200),
            entry(
                "v",
                Method::DELETE,
                "/api/v1/namespaces/a/pods/p",
                None,
                200,
            ),
        ];
        let used: Vec<String> = summarize(&entries, "u")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(used, ["get pods", "watch pods", "update ws/status.x.io"]);
        assert_eq!(
            summarize(&entries, "v").into_iter().collect::<Vec<_>>(),
            [Permission::new("", "pods", "delete")]
        );
        assert!(summarize(&entries, "w").is_empty());
    }

    #[test]
    fn the_trail_is_bounded_and_logged_as_json_lines() {
        let audit = Audit::new(2);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        audit.log_to(&path).unwrap();
        for name in ["a", "b", "c"] {
            audit.record(entry(name, Method::GET, "/api/v1/nodes", None, 200));
        }
        let users: Vec<String> = audit.entries().into_iter().map(|e| e.user).collect();
        assert_eq!(users, ["b", "c"]);
        assert_eq!(audit.entries_for("c").len(), 1);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "the file keeps everything");
        assert_eq!(lines[0]["user"], "a");
        assert_eq!(lines[0]["verb"], "list");
        assert_eq!(lines[0]["resource"], "nodes");
        assert_eq!(lines[0]["code"], 200);
        assert_eq!(lines[0]["resourceRequest"], true);
        assert!(lines[0].get("impersonatedBy").is_none());
        audit.clear();
        assert!(audit.entries().is_empty());
    }
}
