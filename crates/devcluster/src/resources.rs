//! The registry of served resources: built-in kinds and the custom resources of established
//! CRDs, looked up by URL (group, version, plural) or by kind.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

use crate::conversion::Conversion;
use crate::schema::Node;
use crate::validation::NameRule;

/// Where `scale` reads and writes replicas, for resources that declare the subresource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleSpec {
    /// JSON path of the desired replicas, e.g. `.spec.replicas`.
    pub spec_replicas_path: String,
    /// JSON path of the observed replicas, e.g. `.status.replicas`.
    pub status_replicas_path: String,
    /// JSON path of the label selector string in status, if any.
    pub label_selector_path: Option<String>,
}

/// One additional printer column of a CRD version (or a built-in's table column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// OpenAPI type: string, integer, number, boolean, date.
    pub type_: String,
    /// OpenAPI format, if any.
    pub format: String,
    /// Description shown by `kubectl get -o wide --show-kind` help.
    pub description: String,
    /// Columns with priority > 0 only show in wide output.
    pub priority: i64,
    /// The JSONPath evaluated against each object.
    pub json_path: String,
}

/// The schema information of a resource: a root schema and the definitions it refers to.
#[derive(Debug, Clone)]
pub struct SchemaInfo {
    /// Root schema of the whole object.
    pub root: Value,
    /// `$ref` targets (empty for CRD schemas, which have none).
    pub defs: Map<String, Value>,
}

impl SchemaInfo {
    /// A navigation cursor at the root.
    pub fn node(&self) -> Node<'_> {
        Node::new(&self.root, Some(&self.defs))
    }
}

/// Whether a resource is built in or comes from a CRD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Compiled into the server.
    Builtin,
    /// Served for the CRD of this name.
    Crd {
        /// `metadata.name` of the CRD.
        crd_name: String,
        /// The version objects are stored at.
        storage_version: String,
    },
}

/// Everything the server needs to know about one served group/version/resource.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    /// API group, "" for core.
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Plural resource name used in URLs.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind of the objects.
    pub kind: String,
    /// Kind of lists of them.
    pub list_kind: String,
    /// Namespaced or cluster scoped.
    pub namespaced: bool,
    /// Short names for kubectl.
    pub short_names: Vec<String>,
    /// Categories (`kubectl get all`).
    pub categories: Vec<String>,
    /// Whether the status subresource exists (main endpoint ignores status, /status the rest).
    pub status_subresource: bool,
    /// The scale subresource, if declared.
    pub scale: Option<ScaleSpec>,
    /// Rule for metadata.name.
    pub name_rule: NameRule,
    /// Whether metadata.generation is maintained.
    pub has_generation: bool,
    /// Verbs served (discovery).
    pub verbs: Vec<&'static str>,
    /// Schema, if known.
    pub schema: Option<Arc<SchemaInfo>>,
    /// Table columns after NAME (CRD additionalPrinterColumns, or built-in defaults).
    pub printer_columns: Vec<PrinterColumn>,
    /// Extra fields allowed in field selectors besides metadata.name/namespace.
    pub selectable_fields: Vec<String>,
    /// Built-in or CRD.
    pub origin: Origin,
    /// The collection of another resource that stores this one's objects (events.k8s.io
    /// Events are core Events); `None` for the resource's own group and plural.
    pub storage: Option<StorageKey>,
    /// How objects convert between the served and the stored form.
    pub conversion: Conversion,
}

impl ResourceInfo {
    /// `group/version`, or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The key objects of this resource are stored under, shared by all its versions and by
    /// the resources served from the same storage.
    pub fn storage_key(&self) -> StorageKey {
        self.storage.clone().unwrap_or_else(|| StorageKey {
            group: self.group.clone(),
            resource: self.plural.clone(),
        })
    }

    /// Whether it is a custom resource.
    pub fn is_custom(&self) -> bool {
        matches!(self.origin, Origin::Crd { .. })
    }

    /// The schema navigation cursor at the root (unknown if no schema).
    pub fn schema_node(&self) -> Node<'_> {
        match &self.schema {
            Some(s) => s.node(),
            None => Node::unknown(),
        }
    }
}

/// Identifies a collection in storage: group and plural resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageKey {
    /// API group.
    pub group: String,
    /// Plural resource.
    pub resource: String,
}

/// The served resources. Built-ins are fixed; CRD resources come and go.
#[derive(Debug, Default)]
pub struct Registry {
    inner: RwLock<RegistryInner>,
}

#[derive(Debug, Default)]
struct RegistryInner {
    /// (group, version, plural) -> info.
    by_gvr: HashMap<(String, String, String), Arc<ResourceInfo>>,
    /// CRD name -> the (group, version, plural) keys it serves.
    by_crd: HashMap<String, Vec<(String, String, String)>>,
}

impl Registry {
    /// A registry with the given built-in resources.
    pub fn with_builtins(builtins: Vec<ResourceInfo>) -> Self {
        let registry = Registry::default();
        {
            let mut inner = registry.write();
            for info in builtins {
                let key = (
                    info.group.clone(),
                    info.version.clone(),
                    info.plural.clone(),
                );
                inner.by_gvr.insert(key, Arc::new(info));
            }
        }
        registry
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, RegistryInner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, RegistryInner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The resource served at `group/version/plural`.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.read()
            .by_gvr
            .get(&(group.to_owned(), version.to_owned(), plural.to_owned()))
            .cloned()
    }

    /// The resource of a kind in a group/version.
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        self.read()
            .by_gvr
            .values()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
            .cloned()
    }

    /// Every served resource, sorted by group, version, plural.
    pub fn all(&self) -> Vec<Arc<ResourceInfo>> {
        let mut all: Vec<_> = self.read().by_gvr.values().cloned().collect();
        all.sort_by(|a, b| {
            (&a.group, &a.version, &a.plural).cmp(&(&b.group, &b.version, &b.plural))
        });
        all
    }

    /// Groups and their versions, preferred version first (built-in order, then CRD storage).
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in self.all() {
            let versions = groups.entry(r.group.clone()).or_default();
            if !versions.contains(&r.version) {
                versions.push(r.version.clone());
            }
        }
        for versions in groups.values_mut() {
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        groups
    }

    /// Replaces the resources served for a CRD (empty `infos` stops serving it).
    pub fn set_crd(&self, crd_name: &str, infos: Vec<ResourceInfo>) {
        let mut inner = self.write();
        if let Some(old) = inner.by_crd.remove(crd_name) {
            for key in old {
                inner.by_gvr.remove(&key);
            }
        }
        let mut keys = Vec::new();
        for info in infos {
            let key = (
                info.group.clone(),
                info.version.clone(),
                info.plural.clone(),
            );
            keys.push(key.clone());
            inner.by_gvr.insert(key, Arc::new(info));
        }
        if !keys.is_empty() {
            inner.by_crd.insert(crd_name.to_owned(), keys);
        }
    }

    /// Whether `group/plural` is already served by something other than `crd_name`.
    pub fn name_taken(&self, group: &str, plural: &str, crd_name: &str) -> bool {
        self.read().by_gvr.values().any(|r| {
            r.group == group
                && r.plural == plural
                && !matches!(&r.origin, Origin::Crd { crd_name: n, .. } if n == crd_name)
        })
    }
}

/// Kubernetes version priority: GA > beta > alpha, higher numbers first (v1 > v1beta2 > v1alpha1).
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        (3, major, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, major, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, major, n.parse().unwrap_or(0))
    } else {
        (0, 0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ordering() {
        let mut v = vec!["v1alpha1", "v2", "v1beta2", "v1", "v1beta1", "foo"];
        v.sort_by_key(|s| std::cmp::Reverse(version_priority(s)));
        assert_eq!(v, ["v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }
}
