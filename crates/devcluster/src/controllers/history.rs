//! ControllerRevisions: the pod-template history StatefulSets and DaemonSets keep, as upstream's
//! `controller/history` package and both controllers' revision handling do.
//!
//! A revision holds, in `.data`, a strategic merge patch restoring the owner's `spec.template`
//! (`{"spec":{"template":{..., "$patch":"replace"}}}`, what `kubectl rollout undo` applies),
//! and in `.revision` a number that grows with every new or re-used template. Its name is
//! `<owner>-<hash>`, where the hash is [`hash`] of the data.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};

use crate::controllers::podutil::{controller_of, controller_ref};

/// How many times a new revision's name is re-hashed after colliding with another revision.
const MAX_COLLISIONS: usize = 32;
/// Upstream's `alphanums` of `rand.SafeEncodeString`: no vowels, no look-alike characters.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Why revision bookkeeping failed.
#[derive(Debug, thiserror::Error)]
pub(in crate::controllers) enum HistoryError {
    /// The API server refused or failed a request.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// Every candidate name was taken by a revision with other data.
    #[error("no free ControllerRevision name for {0} after {MAX_COLLISIONS} collisions")]
    Collisions(String),
}

/// What a revision records for `template`: upstream's `getPatch`.
pub(in crate::controllers) fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Value::Object(fields) = &mut template {
        fields.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// The pod template a revision recorded, if its data holds one.
pub(in crate::controllers) fn template_of(
    revision: &ControllerRevision,
) -> Option<PodTemplateSpec> {
    let mut template = data_of(revision)?.pointer("/spec/template")?.clone();
    if let Value::Object(fields) = &mut template {
        fields.remove("$patch");
    }
    serde_json::from_value(template).ok()
}

fn data_of(revision: &ControllerRevision) -> Option<&Value> {
    revision.data.as_ref().map(|d| &d.0)
}

/// A revision's hash: 32-bit FNV-1 over the data as canonical JSON (object keys sorted, so
/// the hash does not depend on field order), followed by the collision count when it is not
/// zero, written in decimal and spelled with [`SAFE_ALPHABET`] as upstream's
/// `rand.SafeEncodeString(fmt.Sprint(hash))` does. It has upstream's shape (e.g.
/// `7c9d6b5f48`) but not its value: upstream hashes Go's encoding of the object.
pub(in crate::controllers) fn hash(data: &Value, collision_count: i32) -> String {
    let mut text = String::new();
    canonical_json(data, &mut text);
    if collision_count != 0 {
        text.push_str(&collision_count.to_string());
    }
    let sum = text.bytes().fold(0x811c_9dc5_u32, |h, b| {
        h.wrapping_mul(0x0100_0193) ^ u32::from(b)
    });
    sum.to_string()
        .bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(fields) => {
            let sorted: BTreeMap<&String, &Value> = fields.iter().collect();
            out.push('{');
            for (i, (key, value)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}:", Value::String(key.clone()));
                canonical_json(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        scalar => {
            let _ = write!(out, "{scalar}");
        }
    }
}

/// Upstream's `ControllerRevisionName`: the owner's name (at most 223 bytes) and the hash.
pub(in crate::controllers) fn revision_name(owner: &str, hash: &str) -> String {
    let mut end = owner.len().min(223);
    while !owner.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{hash}", &owner[..end])
}

/// Where the revision for the owner's current template comes from.
#[derive(Debug, PartialEq)]
pub(in crate::controllers) enum Choice<'a> {
    /// This revision is the latest and matches.
    Existing(&'a ControllerRevision),
    /// This older revision matches (a rollback): it becomes the latest with this number.
    Renumber(&'a ControllerRevision, i64),
    /// None matches: a new revision with this number.
    Create(i64),
}

/// Upstream's choice of the update revision among `revisions` (sorted by [`sort`]) for
/// `data`.
pub(in crate::controllers) fn choose<'a>(
    revisions: &'a [ControllerRevision],
    data: &Value,
) -> Choice<'a> {
    let next = revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
    let equal = revisions
        .iter()
        .enumerate()
        .filter(|(_, r)| data_of(r) == Some(data))
        .max_by_key(|(i, r)| (r.revision, *i));
    match equal {
        Some((i, r))
            if revisions
                .iter()
                .enumerate()
                .all(|(j, other)| j == i || other.revision < r.revision) =>
        {
            Choice::Existing(r)
        }
        Some((_, r)) => Choice::Renumber(r, next),
        None => Choice::Create(next),
    }
}

/// Orders revisions oldest first: by number, then creation, then name (upstream's
/// `SortControllerRevisions`).
pub(in crate::controllers) fn sort(revisions: &mut [ControllerRevision]) {
    revisions.sort_by(|a, b| {
        let key = |r: &ControllerRevision| {
            (
                r.revision,
                r.metadata.creation_timestamp.as_ref().map(|t| t.0),
                r.metadata.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
}

/// The revisions to delete so at most `limit` of those not in `live` remain, oldest first
/// (upstream's `truncateHistory`). `revisions` is sorted by [`sort`].
pub(in crate::controllers) fn to_prune<'a>(
    revisions: &'a [ControllerRevision],
    live: &HashSet<String>,
    limit: usize,
) -> Vec<&'a ControllerRevision> {
    let history: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| !r.metadata.name.as_ref().is_some_and(|n| live.contains(n)))
        .collect();
    let excess = history.len().saturating_sub(limit);
    history.into_iter().take(excess).collect()
}

/// `spec.revisionHistoryLimit`, upstream's default 10 when unset.
pub(in crate::controllers) fn history_limit(limit: Option<i32>) -> usize {
    usize::try_from(limit.unwrap_or(10)).unwrap_or(0)
}

/// The revisions of the namespace controlled by the owner with `uid`, sorted by [`sort`].
pub(in crate::controllers) async fn owned(
    api: &Api<ControllerRevision>,
    uid: &str,
) -> Result<Vec<ControllerRevision>, kube::Error> {
    let mut revisions: Vec<ControllerRevision> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| controller_of(&r.metadata).is_some_and(|o| o.uid == uid))
        .collect();
    sort(&mut revisions);
    Ok(revisions)
}

/// What a new revision of one owner looks like, apart from its name, hash and number.
pub(in crate::controllers) struct Proto {
    /// The owner's name: the revision name's prefix.
    owner_name: String,
    /// The owner's controller reference.
    owner: OwnerReference,
    /// The owner's namespace.
    namespace: Option<String>,
    /// The template's labels; the hash is added under `hash_label`.
    labels: BTreeMap<String, String>,
    /// The owner's annotations.
    annotations: Option<BTreeMap<String, String>>,
    /// The label holding the hash: `controller.kubernetes.io/hash` for StatefulSets,
    /// `controller-revision-hash` for DaemonSets.
    hash_label: &'static str,
    /// The template patch ([`template_patch`]).
    data: Value,
}

impl Proto {
    /// The revisions of `owner` for its pod template `template`.
    pub fn new<K: kube::Resource<DynamicType = ()>>(
        owner: &K,
        template: &PodTemplateSpec,
        hash_label: &'static str,
    ) -> Proto {
        let meta = owner.meta();
        Proto {
            owner_name: meta.name.clone().unwrap_or_default(),
            owner: controller_ref(owner),
            namespace: meta.namespace.clone(),
            labels: template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default(),
            annotations: meta.annotations.clone(),
            hash_label,
            data: template_patch(template),
        }
    }

    fn revision(&self, hash: &str, number: i64) -> ControllerRevision {
        let mut labels = self.labels.clone();
        labels.insert(self.hash_label.to_owned(), hash.to_owned());
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(revision_name(&self.owner_name, hash)),
                namespace: self.namespace.clone(),
                labels: Some(labels),
                annotations: self.annotations.clone(),
                owner_references: Some(vec![self.owner.clone()]),
                ..ObjectMeta::default()
            },
            data: Some(RawExtension(self.data.clone())),
            revision: number,
        }
    }
}

/// The revision of the owner's current template among `revisions` (sorted by [`sort`]):
/// the latest if it matches, an older matching one renumbered as the latest (a rollback), or
/// a new one. A new revision's name taken by other data raises `collision_count` and is
/// re-hashed, as upstream does.
pub(in crate::controllers) async fn ensure(
    api: &Api<ControllerRevision>,
    revisions: &[ControllerRevision],
    proto: &Proto,
    collision_count: &mut i32,
) -> Result<ControllerRevision, HistoryError> {
    let number = match choose(revisions, &proto.data) {
        Choice::Existing(r) => return Ok(r.clone()),
        Choice::Renumber(r, number) => {
            let mut renumbered = r.clone();
            renumbered.revision = number;
            let name = renumbered.metadata.name.clone().unwrap_or_default();
            return Ok(api
                .replace(&name, &PostParams::default(), &renumbered)
                .await?);
        }
        Choice::Create(number) => number,
    };
    for _ in 0..MAX_COLLISIONS {
        let revision = proto.revision(&hash(&proto.data, *collision_count), number);
        let name = revision.metadata.name.clone().unwrap_or_default();
        match api.create(&PostParams::default(), &revision).await {
            Ok(created) => return Ok(created),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = api.get(&name).await?;
                if data_of(&existing) == Some(&proto.data) {
                    return Ok(existing);
                }
                *collision_count = collision_count.saturating_add(1);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(HistoryError::Collisions(proto.owner_name.clone()))
}

/// Deletes `revisions`; ones already gone are fine.
pub(in crate::controllers) async fn delete(
    api: &Api<ControllerRevision>,
    revisions: &[&ControllerRevision],
) -> Result<(), kube::Error> {
    for revision in revisions {
        let name = revision.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::debug!(revision = %name, "deleted old ControllerRevision"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(name: &str, number: i64, data: Value) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            data: Some(RawExtension(data)),
            revision: number,
        }
    }

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": image}]}
        }))
        .unwrap()
    }

    #[test]
    fn patches_replace_the_template_and_round_trip() {
        let t = template("nginx:1");
        let data = template_patch(&t);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        let r = revision("web-1", 1, data);
        assert_eq!(template_of(&r), Some(t));
        assert_eq!(template_of(&revision("x", 1, json!({}))), None);
    }

    #[test]
    fn hashes_are_stable_safe_and_collision_aware() {
        let a = json!({"b": 1, "a": [true, null, "x"]});
        let reordered = json!({"a": [true, null, "x"], "b": 1});
        let h = hash(&a, 0);
        assert_eq!(h, hash(&reordered, 0), "field order does not matter");
        assert_ne!(h, hash(&a, 1));
        assert_ne!(h, hash(&json!({"b": 2, "a": [true, null, "x"]}), 0));
        assert!(!h.is_empty() && h.bytes().all(|b| SAFE_ALPHABET.contains(&b)));
        // FNV-1 of `{}` is 0x56770411 = 1450640401; each decimal digit maps to a safe letter.
        assert_eq!(hash(&json!({}), 0), "5894b84845");
        assert_eq!(revision_name(&"n".repeat(300), "h").len(), 225);
    }

    #[test]
    fn the_update_revision_is_reused_renumbered_or_new() {
        let (one, two) = (json!({"v": 1}), json!({"v": 2}));
        let revs = [revision("a", 1, one.clone()), revision("b", 2, two.clone())];
        assert_eq!(choose(&revs, &two), Choice::Existing(&revs[1]));
        assert_eq!(choose(&revs, &one), Choice::Renumber(&revs[0], 3));
        assert_eq!(choose(&revs, &json!({"v": 3})), Choice::Create(3));
        assert_eq!(choose(&[], &one), Choice::Create(1));
    }

    #[test]
    fn history_keeps_live_and_the_newest_revisions() {
        let mut revs: Vec<ControllerRevision> = (1..=5)
            .rev()
            .map(|n| revision(&format!("r{n}"), n, json!(n)))
            .collect();
        sort(&mut revs);
        assert_eq!(revs[0].metadata.name.as_deref(), Some("r1"));
        let live: HashSet<String> = ["r1".to_owned(), "r5".to_owned()].into();
        let names = |v: Vec<&ControllerRevision>| -> Vec<String> {
            v.iter().filter_map(|r| r.metadata.name.clone()).collect()
        };
        assert_eq!(names(to_prune(&revs, &live, 1)), ["r2", "r3"]);
        assert!(to_prune(&revs, &live, 10).is_empty());
        assert_eq!(history_limit(None), 10);
    }
}
