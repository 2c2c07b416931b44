//! The decision: given what the listed objects hold now, what the status says the workloads run
//! with, and the time, which workloads to restart, and the next status.
//!
//! The status is the memory that makes restarts exactly-once across operator restarts: a
//! workload is restarted only when the hash of its configuration differs from the one recorded
//! for it, and a workload seen for the first time (or whose template changed which objects it
//! uses) is recorded as it is, since its pods already started with the current configuration.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::hashing;
use crate::resource::{
    AppConfigStatus, ConfigRef, ObservedConfig, ObservedWorkload, UsedConfig, WorkloadKind,
};

/// A workload as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadView {
    /// Its kind.
    pub kind: WorkloadKind,
    /// Its name.
    pub name: String,
    /// The listed objects its pod template uses.
    pub uses: BTreeSet<ConfigRef>,
    /// Its template's current `kubecrew.io/config-hash` annotation.
    pub annotation: Option<String>,
}

/// A restart to perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// The workload's kind.
    pub kind: WorkloadKind,
    /// Its name.
    pub name: String,
    /// The configuration hash to put on its template.
    pub hash: String,
    /// The objects whose data changed.
    pub changed: Vec<ConfigRef>,
}

/// What to do, and the status to write after doing it.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Workloads to restart now.
    pub restarts: Vec<Restart>,
    /// The status once the restarts are done.
    pub status: AppConfigStatus,
    /// Listed objects whose data hash changed since the last status (for metrics).
    pub changed: Vec<ConfigRef>,
    /// Listed objects that do not exist.
    pub missing: Vec<ConfigRef>,
    /// When to look again for a change still inside its debounce window.
    pub requeue_after: Option<Duration>,
}

/// Decides. `observed` maps each listed object to its current data hash (`None`: it does not
/// exist); `workloads` are the candidates using at least one listed object.
pub fn decide(
    previous: &AppConfigStatus,
    observed: &BTreeMap<ConfigRef, Option<String>>,
    workloads: &[WorkloadView],
    now: jiff::Timestamp,
    debounce: Duration,
) -> Plan {
    let known: BTreeMap<&ConfigRef, &ObservedConfig> =
        previous.configs.iter().map(|c| (&c.object, c)).collect();
    let mut configs = Vec::new();
    let mut changed = Vec::new();
    let mut missing = Vec::new();
    for (object, hash) in observed {
        let before = known.get(object).and_then(|c| c.hash.clone());
        if hash.is_none() {
            missing.push(object.clone());
        } else if before.is_some() && *hash != before {
            changed.push(object.clone());
        }
        configs.push(ObservedConfig {
            object: object.clone(),
            // A missing object keeps its last hash, so its deletion changes no workload's hash
            // and its re-creation restarts only if the data differs.
            hash: hash.clone().or(before),
            present: hash.is_some(),
        });
    }
    let effective: BTreeMap<&ConfigRef, &str> = configs
        .iter()
        .map(|c| (&c.object, c.hash.as_deref().unwrap_or("missing")))
        .collect();

    let recorded: BTreeMap<(WorkloadKind, &str), &ObservedWorkload> = previous
        .workloads
        .iter()
        .map(|w| ((w.kind, w.name.as_str()), w))
        .collect();
    let pending_since = previous
        .pending_since
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let started = pending_since.unwrap_or(now);
    let due = started
        .checked_add(jiff::SignedDuration::try_from(debounce).unwrap_or_default())
        .map_or(true, |at| at <= now);

    let mut restarts = Vec::new();
    let mut entries = Vec::new();
    let mut still_pending = false;
    for w in workloads {
        let uses: Vec<UsedConfig> = w
            .uses
            .iter()
            .map(|object| UsedConfig {
                object: object.clone(),
                hash: effective
                    .get(object)
                    .copied()
                    .unwrap_or("missing")
                    .to_owned(),
            })
            .collect();
        let hash = hashing::workload_hash(uses.iter().map(|u| (&u.object, u.hash.as_str())));
        let current = ObservedWorkload {
            kind: w.kind,
            name: w.name.clone(),
            uses: uses.clone(),
            hash: hash.clone(),
            restarted_at: None,
        };
        let entry = match recorded.get(&(w.kind, w.name.as_str())) {
            // First sight, or the template now uses other objects: its pods start (or are
            // being rolled by that template change) with the current configuration.
            None => current,
            Some(before) if same_objects(&before.uses, &uses) && before.hash != hash => {
                if w.annotation.as_deref() == Some(hash.as_str()) {
                    // Restarted already (the status write after the patch was lost).
                    ObservedWorkload {
                        restarted_at: before.restarted_at.clone(),
                        ..current
                    }
                } else if due {
                    restarts.push(Restart {
                        kind: w.kind,
                        name: w.name.clone(),
                        hash: hash.clone(),
                        changed: changed_objects(&before.uses, &uses),
                    });
                    ObservedWorkload {
                        restarted_at: Some(now.to_string()),
                        ..current
                    }
                } else {
                    still_pending = true;
                    (*before).clone()
                }
            }
            Some(before) if same_objects(&before.uses, &uses) => (*before).clone(),
            Some(before) => ObservedWorkload {
                restarted_at: before.restarted_at.clone(),
                ..current
            },
        };
        entries.push(entry);
    }
    entries.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    let requeue_after = still_pending.then(|| {
        let at = started
            .checked_add(jiff::SignedDuration::try_from(debounce).unwrap_or_default())
            .unwrap_or(now);
        Duration::try_from(at.duration_since(now)).unwrap_or_default()
    });
    let status = AppConfigStatus {
        configs,
        workload_count: i32::try_from(entries.len()).unwrap_or(i32::MAX),
        workloads: entries,
        pending_since: still_pending.then(|| started.to_string()),
        conditions: previous.conditions.clone(),
        observed_generation: previous.observed_generation,
    };
    Plan {
        restarts,
        status,
        changed,
        missing,
        requeue_after,
    }
}

fn same_objects(a: &[UsedConfig], b: &[UsedConfig]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.object == y.object)
}

fn changed_objects(before: &[UsedConfig], now: &[UsedConfig]) -> Vec<ConfigRef> {
    before
        .iter()
        .zip(now)
        .filter(|(b, n)| b.hash != n.hash)
        .map(|(_, n)| n.object.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::ConfigKind;

    fn cm(name: &str) -> ConfigRef {
        ConfigRef {
            kind: ConfigKind::ConfigMap,
            name: name.into(),
        }
    }

    fn observed(pairs: &[(&str, Option<&str>)]) -> BTreeMap<ConfigRef, Option<String>> {
        pairs
            .iter()
            .map(|(n, h)| (cm(n), h.map(str::to_owned)))
            .collect()
    }

    fn web(uses: &[&str], annotation: Option<&str>) -> WorkloadView {
        WorkloadView {
            kind: WorkloadKind::Deployment,
            name: "web".into(),
            uses: uses.iter().map(|n| cm(n)).collect(),
            annotation: annotation.map(str::to_owned),
        }
    }

    fn t(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    const NO_DEBOUNCE: Duration = Duration::ZERO;

    #[test]
    fn the_first_sight_records_and_restarts_nothing() {
        let plan = decide(
            &AppConfigStatus::default(),
            &observed(&[("app", Some("h1"))]),
            &[web(&["app"], None)],
            t(0),
            NO_DEBOUNCE,
        );
        assert!(plan.restarts.is_empty());
        assert_eq!(plan.status.workloads.len(), 1);
        assert_eq!(plan.status.workloads[0].uses[0].hash, "h1");
        assert!(plan.changed.is_empty());
    }

    #[test]
    fn a_data_change_restarts_once() {
        let base = decide(
            &AppConfigStatus::default(),
            &observed(&[("app", Some("h1"))]),
            &[web(&["app"], None)],
            t(0),
            NO_DEBOUNCE,
        );
        let plan = decide(
            &base.status,
            &observed(&[("app", Some("h2"))]),
            &[web(&["app"], None)],
            t(1),
            NO_DEBOUNCE,
        );
        assert_eq!(plan.restarts.len(), 1);
        assert_eq!(plan.restarts[0].changed, vec![cm("app")]);
        assert_eq!(plan.changed, vec![cm("app")]);
        let restarted_hash = plan.restarts[0].hash.clone();
        // Run again with the status written and the annotation applied: nothing more.
        let again = decide(
            &plan.status,
            &observed(&[("app", Some("h2"))]),
            &[web(&["app"], Some(&restarted_hash))],
            t(2),
            NO_DEBOUNCE,
        );
        assert!(again.restarts.is_empty());
        assert_eq!(again.status, plan.status);
    }

    #[test]
    fn a_lost_status_write_is_not_a_second_restart() {
        let base = decide(
            &AppConfigStatus::default(),
            &observed(&[("app", Some("h1"))]),
            &[web(&["app"], None)],
            t(0),
            NO_DEBOUNCE,
        );
        let first = decide(
            &base.status,
            &observed(&[("app", Some("h2"))]),
            &[web(&["app"], None)],
            t(1),
            NO_DEBOUNCE,
        );
        let hash = first.restarts[0].hash.clone();
        // The patch landed but the status still is `base`.
        let retry = decide(
            &base.status,
            &observed(&[("app", Some("h2"))]),
            &[web(&["app"], Some(&hash))],
            t(2),
            NO_DEBOUNCE,
        );
        assert!(retry.restarts.is_empty());
        assert_eq!(retry.status.workloads[0].hash, hash);
    }

    #[test]
    fn changes_inside_the_window_wait_and_coalesce() {
        let debounce = Duration::from_secs(5);
        let base = decide(
            &AppConfigStatus::default(),
            &observed(&[("app", Some("h1"))]),
            &[web(&["app"], None)],
            t(0),
            debounce,
        );
        let first = decide(
            &base.status,
            &observed(&[("app", Some("h2"))]),
            &[web(&["app"], None)],
            t(10),
            debounce,
        );
        assert!(first.restarts.is_empty());
        assert_eq!(first.requeue_after, Some(Duration::from_secs(5)));
        assert_eq!(first.status.pending_since, Some(t(10).to_string()));
        let second = decide(
            &first.status,
            &observed(&[("app", Some("h3"))]),
            &[web(&["app"], None)],
            t(12),
            debounce,
        );
        assert!(second.restarts.is_empty());
        assert_eq!(second.requeue_after, Some(Duration::from_secs(3)));
        let due = decide(
            &second.status,
            &observed(&[("app", Some("h3"))]),
            &[web(&["app"], None)],
            t(15),
            debounce,
        );
        assert_eq!(due.restarts.len(), 1);
        assert_eq!(due.status.pending_since, None);
        assert_eq!(due.requeue_after, None);
    }

    #[test]
    fn deletion_keeps_the_hash_and_recreation_with_the_same_data_restarts_nothing() {
        let base = decide(
            &AppConfigStatus::default(),
            &observed(&[("app", Some("h1"))]),
            &[web(&["app"], None)],
            t(0),
            NO_DEBOUNCE,
        );
        let gone = decide(
            &base.status,
            &observed(&[("app", None)]),
            &[web(&["app"], None)],
            t(1),
            NO_DEBOUNCE,
        );
        assert!(gone.restarts.is_empty());
        assert_eq!(gone.missing, vec![cm("app")]);
        assert_eq!(gone.status.configs[0].hash.as_deref(), Some("h1"));
        assert!(!gone.status.configs[0].present);
        let back = decide(
            &gone.status,
            &observed(&[("app", Some("h1"))]),
            &[web(&["app"], None)],
            t(2),
            NO_DEBOUNCE,
        );
        assert!(back.restarts.is_empty());
        let changed = decide(
            &gone.status,
            &observed(&[("app", Some("h9"))]),
            &[web(&["app"], None)],
            t(2),
            NO_DEBOUNCE,
        );
        assert_eq!(changed.restarts.len(), 1);
    }

    #[test]
    fn a_template_that_uses_other_objects_is_recorded_not_restarted() {
        let base = decide(
            &AppConfigStatus::default(),
            &observed(&[("a", Some("h1")), ("b", Some("h2"))]),
            &[web(&["a"], None)],
            t(0),
            NO_DEBOUNCE,
        );
        let plan = decide(
            &base.status,
            &observed(&[("a", Some("h1")), ("b", Some("h2"))]),
            &[web(&["a", "b"], None)],
            t(1),
            NO_DEBOUNCE,
        );
        assert!(plan.restarts.is_empty());
        assert_eq!(plan.status.workloads[0].uses.len(), 2);
    }
}
