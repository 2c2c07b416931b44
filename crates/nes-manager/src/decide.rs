//! The pure decisions of the NetworkConfiguration reconciler: the config to push, whether to
//! push it, and the status and conditions that describe the outcome.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use nes_api::crd::conditions::{AVAILABLE, DEGRADED, PROGRESSING};
use nes_api::crd::{ItemStatus, NetworkConfigurationSpec, NetworkConfigurationStatus};
use nes_api::{BootId, DesiredConfig, ItemResult, ItemState};
use operator_core::conditions::{Desired, Status};

/// The agent config for `spec`, checked by nes-api's `validate` for everything that does not
/// depend on the pod: every interface the spec names counts as existing here (only the agent
/// knows the pod's links; it re-validates and answers 422 for an unknown one). `Err` holds a
/// readable message listing every problem.
///
/// The generation is left at 0: it is the agent's sequence, not the resource's, and [`push`]
/// numbers the config from what the agent holds.
pub fn checked_config(spec: &NetworkConfigurationSpec) -> Result<DesiredConfig, String> {
    let config = DesiredConfig {
        generation: 0,
        vlans: spec.vlans.clone(),
        addresses: spec.addresses.clone(),
        routes: spec.routes.clone(),
    };
    let named: BTreeSet<String> = config
        .vlans
        .iter()
        .map(|v| v.parent.clone())
        .chain(config.addresses.iter().map(|a| a.interface.clone()))
        .chain(config.routes.iter().filter_map(|r| r.interface.clone()))
        .collect();
    nes_api::validate(&config, &named).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    Ok(config)
}

/// What to do with the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// The agent already holds this configuration: nothing is sent.
    UpToDate,
    /// Send this config.
    Send(DesiredConfig),
}

/// Whether `desired` must be pushed to an agent holding `current`.
///
/// The decision is made on what the agent holds, not on what the status remembers: a
/// restarted manager, or an agent that restarted and resumed its saved config, gets nothing;
/// an agent that lost its config (a new pod, a fresh state) gets it again.
///
/// The manager owns the agent's generation: a push is always the generation the agent
/// accepts next (`nes_api::generation::next` of what it holds: 1 for an empty agent, then one
/// step at a time, wrapping past `u64::MAX`), whatever the resource's own generation is. The
/// agent refuses any other jump, so a forged generation cannot lock the manager out, and a
/// re-created resource (whose generation restarts at 1) needs no special case.
pub fn push(desired: &DesiredConfig, current: Option<&DesiredConfig>) -> Push {
    let same = current.is_some_and(|current| {
        current.vlans == desired.vlans
            && current.addresses == desired.addresses
            && current.routes == desired.routes
    });
    if same {
        return Push::UpToDate;
    }
    Push::Send(DesiredConfig {
        generation: nes_api::generation::next(current.map(|c| c.generation)),
        ..desired.clone()
    })
}

/// What the agent holds for a resource, after a push or a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The resource generation whose spec the agent holds.
    pub generation: i64,
    /// The agent run.
    pub boot_id: BootId,
    /// The pod instance.
    pub pod_uid: String,
    /// The agent's per-item results.
    pub results: Vec<ItemResult>,
}

/// Why the configuration is not (fully) in the pod, for conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The spec cannot be applied; nothing is pushed until it changes.
    Invalid(String),
    /// Waiting for the pod or its agent (not an error).
    Waiting {
        /// CamelCase reason.
        reason: String,
        /// Readable message.
        message: String,
    },
    /// Talking to the agent failed; retried with backoff.
    Failing {
        /// CamelCase reason.
        reason: String,
        /// Readable message.
        message: String,
    },
    /// The agent holds the spec; the conditions follow its results.
    Applied(Applied),
}

/// The next status: `previous` with what `outcome` tells. Only [`Outcome::Applied`] changes
/// the applied fields; otherwise they keep describing the last known apply.
/// `lastSuccessfulUpdateTime` moves when every item becomes applied for a new generation, agent
/// run or pod, so a steady resource does not churn.
pub fn next_status(
    previous: &NetworkConfigurationStatus,
    outcome: &Outcome,
    now: jiff::Timestamp,
) -> NetworkConfigurationStatus {
    let mut next = previous.clone();
    let Outcome::Applied(applied) = outcome else {
        return next;
    };
    let results: Vec<ItemStatus> = applied.results.iter().map(ItemStatus::from).collect();
    let all_applied = results.iter().all(|r| r.state == ItemState::Applied);
    let same_target = previous.applied_generation == Some(applied.generation)
        && previous.boot_id.as_deref() == Some(applied.boot_id.as_str())
        && previous.pod_uid.as_deref() == Some(applied.pod_uid.as_str());
    let was_all_applied = same_target
        && previous
            .results
            .iter()
            .all(|r| r.state == ItemState::Applied);
    if all_applied && !(was_all_applied && previous.last_successful_update_time.is_some()) {
        next.last_successful_update_time = Some(Time(now));
    }
    next.applied_generation = Some(applied.generation);
    next.boot_id = Some(applied.boot_id.to_string());
    next.pod_uid = Some(applied.pod_uid.clone());
    next.results = results;
    next
}

/// The Available, Progressing and Degraded conditions for `outcome`.
pub fn conditions(outcome: &Outcome) -> [Desired; 3] {
    let set = |type_: &str, status: bool, reason: &str, message: &str| {
        Desired::new(type_, Status::from(status), reason, message)
    };
    match outcome {
        Outcome::Invalid(message) => [
            set(AVAILABLE, false, "InvalidSpec", message),
            set(PROGRESSING, false, "InvalidSpec", "the spec must be fixed"),
            set(DEGRADED, true, "InvalidSpec", message),
        ],
        Outcome::Waiting { reason, message } => [
            set(AVAILABLE, false, reason, message),
            set(PROGRESSING, true, reason, message),
            set(DEGRADED, false, reason, ""),
        ],
        Outcome::Failing { reason, message } => [
            set(AVAILABLE, false, reason, message),
            set(PROGRESSING, true, reason, "retrying with backoff"),
            set(DEGRADED, true, reason, message),
        ],
        Outcome::Applied(applied) => results_conditions(&applied.results),
    }
}

fn results_conditions(results: &[ItemResult]) -> [Desired; 3] {
    let total = results.len();
    let with = |state| results.iter().filter(move |r| r.state == state);
    let first = |state| {
        with(state)
            .next()
            .map(|r| match &r.message {
                Some(m) => format!("{}: {m}", r.item),
                None => r.item.to_string(),
            })
            .unwrap_or_default()
    };
    let (pending, failed) = (
        with(ItemState::Pending).count(),
        with(ItemState::Failed).count(),
    );
    let available = if pending + failed == 0 {
        Desired::new(
            AVAILABLE,
            Status::True,
            "Applied",
            format!("all {total} items applied"),
        )
    } else {
        Desired::new(
            AVAILABLE,
            Status::False,
            if failed > 0 {
                "ItemsFailed"
            } else {
                "ItemsPending"
            },
            format!("{} of {total} items applied", total - pending - failed),
        )
    };
    let progressing = if pending > 0 {
        Desired::new(
            PROGRESSING,
            Status::True,
            "ItemsPending",
            format!(
                "{pending} of {total} items pending; first: {}",
                first(ItemState::Pending)
            ),
        )
    } else {
        Desired::new(PROGRESSING, Status::False, "Applied", "")
    };
    let degraded = if failed > 0 {
        Desired::new(
            DEGRADED,
            Status::True,
            "ItemsFailed",
            format!(
                "{failed} of {total} items failed; first: {}",
                first(ItemState::Failed)
            ),
        )
    } else {
        Desired::new(DEGRADED, Status::False, "Applied", "")
    };
    [available, progressing, degraded]
}

#[cfg(test)]
mod tests {
    use super::*;
    use nes_api::{Address, ItemKey, VlanLink};

    fn spec() -> NetworkConfigurationSpec {
        NetworkConfigurationSpec {
            pod: "app-0".into(),
            vlans: vec![VlanLink {
                name: "eth0.100".into(),
                parent: "eth0".into(),
                vlan_id: 100,
                mtu: None,
            }],
            addresses: vec![Address {
                interface: "eth0.100".into(),
                cidr: "10.1.0.5/24".into(),
            }],
            routes: vec![],
        }
    }

    fn result(cidr: &str, state: ItemState, message: Option<&str>) -> ItemResult {
        ItemResult {
            item: ItemKey::Address {
                interface: "eth0".into(),
                cidr: cidr.into(),
            },
            state,
            message: message.map(str::to_owned),
        }
    }

    fn applied(generation: i64, boot: &str, results: Vec<ItemResult>) -> Outcome {
        Outcome::Applied(Applied {
            generation,
            boot_id: BootId::new(boot),
            pod_uid: "uid-1".into(),
            results,
        })
    }

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn checked_config_carries_the_items_and_reports_bad_specs() {
        let config = checked_config(&spec()).unwrap();
        assert_eq!(config.generation, 0, "numbered by push");
        assert_eq!(config.vlans.len(), 1);
        let mut bad = spec();
        bad.addresses[0].cidr = "10.1.0.500/24".into();
        bad.vlans[0].vlan_id = 5000;
        let message = checked_config(&bad).unwrap_err();
        assert!(
            message.contains("vlans[0].vlanId") && message.contains("addresses[0].cidr"),
            "{message}"
        );
    }

    #[test]
    fn push_only_when_the_agent_holds_something_else() {
        let desired = checked_config(&spec()).unwrap();
        let numbered = |generation| {
            Push::Send(DesiredConfig {
                generation,
                ..desired.clone()
            })
        };
        // An empty agent gets the first generation.
        assert_eq!(push(&desired, None), numbered(1));
        // Same content: nothing to do, whatever generation the agent numbered it with.
        let held = DesiredConfig {
            generation: 7,
            ..desired.clone()
        };
        assert_eq!(push(&desired, Some(&held)), Push::UpToDate);
        // Different content: the generation after the agent's, never a jump.
        let old = DesiredConfig {
            generation: 2,
            ..Default::default()
        };
        assert_eq!(push(&desired, Some(&old)), numbered(3));
    }

    #[test]
    fn an_agent_holding_the_maximum_generation_still_takes_the_next_push() {
        // Whoever put u64::MAX there (state from before the agent enforced the sequence), the
        // manager's next push is the one the agent accepts: 1, after the wrap.
        let desired = checked_config(&spec()).unwrap();
        let stuck = DesiredConfig {
            generation: u64::MAX,
            ..Default::default()
        };
        let Push::Send(next) = push(&desired, Some(&stuck)) else {
            panic!("the content differs: a push");
        };
        assert_eq!(next.generation, 1);
        assert_eq!(
            nes_api::generation::check(Some(u64::MAX), next.generation, || false),
            Ok(())
        );
    }

    #[test]
    fn conditions_follow_the_results() {
        let [available, progressing, degraded] = conditions(&applied(
            1,
            "b",
            vec![result("10.0.0.1/24", ItemState::Applied, None)],
        ));
        assert_eq!(
            (available.status, progressing.status, degraded.status),
            (Status::True, Status::False, Status::False)
        );
        assert_eq!(available.message, "all 1 items applied");

        let [available, progressing, degraded] = conditions(&applied(
            1,
            "b",
            vec![
                result("10.0.0.1/24", ItemState::Applied, None),
                result("10.0.0.2/24", ItemState::Pending, Some("no eth0 yet")),
                result("10.0.0.3/24", ItemState::Failed, Some("File exists")),
            ],
        ));
        assert_eq!(available.status, Status::False);
        assert_eq!(available.reason, "ItemsFailed");
        assert_eq!(available.message, "1 of 3 items applied");
        assert_eq!(progressing.status, Status::True);
        assert_eq!(
            progressing.message,
            "1 of 3 items pending; first: address 10.0.0.2/24 on eth0: no eth0 yet"
        );
        assert_eq!(degraded.status, Status::True);
        assert!(
            degraded.message.contains("File exists"),
            "{}",
            degraded.message
        );
    }

    #[test]
    fn conditions_for_invalid_waiting_and_failing() {
        let [a, p, d] = conditions(&Outcome::Invalid("vlans[0].vlanId: bad".into()));
        assert_eq!(
            (a.status, p.status, d.status),
            (Status::False, Status::False, Status::True)
        );
        assert_eq!(d.reason, "InvalidSpec");
        let [a, p, d] = conditions(&Outcome::Waiting {
            reason: "PodNotRunning".into(),
            message: "pod app-0 is Pending".into(),
        });
        assert_eq!(
            (a.status, p.status, d.status),
            (Status::False, Status::True, Status::False)
        );
        assert_eq!(p.message, "pod app-0 is Pending");
        let [a, p, d] = conditions(&Outcome::Failing {
            reason: "AgentUnreachable".into(),
            message: "connection refused".into(),
        });
        assert_eq!(
            (a.status, p.status, d.status),
            (Status::False, Status::True, Status::True)
        );
    }

    #[test]
    fn status_records_the_apply_and_keeps_the_success_time_steady() {
        let ok = vec![result("10.0.0.1/24", ItemState::Applied, None)];
        let first = next_status(&Default::default(), &applied(1, "b1", ok.clone()), at(10));
        assert_eq!(first.applied_generation, Some(1));
        assert_eq!(first.boot_id.as_deref(), Some("b1"));
        assert_eq!(first.pod_uid.as_deref(), Some("uid-1"));
        assert_eq!(first.results[0].item, "address 10.0.0.1/24 on eth0");
        assert_eq!(first.last_successful_update_time, Some(Time(at(10))));
        // Same apply seen again: nothing moves.
        let again = next_status(&first, &applied(1, "b1", ok.clone()), at(20));
        assert_eq!(again, first);
        // A new agent run applied it again: the time moves.
        let rebooted = next_status(&first, &applied(1, "b2", ok.clone()), at(30));
        assert_eq!(rebooted.last_successful_update_time, Some(Time(at(30))));
        // Pending items: no success time change; the applied fields still follow.
        let pending = vec![result("10.0.0.1/24", ItemState::Pending, None)];
        let waiting = next_status(&rebooted, &applied(2, "b2", pending), at(40));
        assert_eq!(waiting.applied_generation, Some(2));
        assert_eq!(waiting.last_successful_update_time, Some(Time(at(30))));
        let done = next_status(&waiting, &applied(2, "b2", ok), at(50));
        assert_eq!(done.last_successful_update_time, Some(Time(at(50))));
        // Not applied (pod gone): the last known apply is kept.
        let gone = Outcome::Waiting {
            reason: "PodNotFound".into(),
            message: "no pod".into(),
        };
        assert_eq!(next_status(&done, &gone, at(60)), done);
    }
}
