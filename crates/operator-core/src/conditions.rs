//! Status conditions (`metav1.Condition`) as operators report them: Ready, Reconciling,
//! Stalled, Degraded. Setting a condition keeps its `lastTransitionTime` when the status does
//! not change, so a steady object does not churn, and stamps `observedGeneration`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The object is in its desired state.
pub const READY: &str = "Ready";
/// The operator is working towards the desired state.
pub const RECONCILING: &str = "Reconciling";
/// Progress is impossible without a change to the spec (bad input).
pub const STALLED: &str = "Stalled";
/// The object works but something is wrong (a dependency unavailable, ...).
pub const DEGRADED: &str = "Degraded";

/// A condition's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `True`
    True,
    /// `False`
    False,
    /// `Unknown`
    Unknown,
}

impl Status {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

impl From<bool> for Status {
    fn from(b: bool) -> Self {
        if b { Status::True } else { Status::False }
    }
}

/// A condition to set: type, status, a CamelCase reason and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Condition type, e.g. [`READY`].
    pub type_: String,
    /// Status.
    pub status: Status,
    /// CamelCase reason, e.g. `Applied`, `InvalidSpec`, `KafkaUnavailable`.
    pub reason: String,
    /// Readable message; never contains secret values.
    pub message: String,
}

impl Desired {
    /// A condition of any type.
    pub fn new(type_: &str, status: Status, reason: &str, message: impl Into<String>) -> Self {
        Desired {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    /// `Ready=True`.
    pub fn ready(reason: &str, message: impl Into<String>) -> Self {
        Self::new(READY, Status::True, reason, message)
    }

    /// `Ready=False`.
    pub fn not_ready(reason: &str, message: impl Into<String>) -> Self {
        Self::new(READY, Status::False, reason, message)
    }

    /// `Stalled=True`: the spec must change before anything can progress.
    pub fn stalled(reason: &str, message: impl Into<String>) -> Self {
        Self::new(STALLED, Status::True, reason, message)
    }

    /// `Degraded=True`.
    pub fn degraded(reason: &str, message: impl Into<String>) -> Self {
        Self::new(DEGRADED, Status::True, reason, message)
    }

    /// `Reconciling=True`.
    pub fn reconciling(reason: &str, message: impl Into<String>) -> Self {
        Self::new(RECONCILING, Status::True, reason, message)
    }

    /// `<type>=False` with a reason, for clearing Stalled/Degraded/Reconciling.
    pub fn cleared(type_: &str, reason: &str) -> Self {
        Self::new(type_, Status::False, reason, "")
    }
}

/// Sets `desired` in `conditions`: replaces the condition of the same type, keeping its
/// `lastTransitionTime` if the status is unchanged, or appends it. Returns whether anything
/// other than `observedGeneration` changed.
pub fn set(
    conditions: &mut Vec<Condition>,
    desired: Desired,
    observed_generation: Option<i64>,
    now: jiff::Timestamp,
) -> bool {
    let existing = conditions.iter_mut().find(|c| c.type_ == desired.type_);
    match existing {
        Some(c) => {
            let transition = c.status != desired.status.as_str();
            let changed = transition || c.reason != desired.reason || c.message != desired.message;
            if transition {
                c.last_transition_time = Time(now);
            }
            c.status = desired.status.as_str().to_owned();
            c.reason = desired.reason;
            c.message = desired.message;
            c.observed_generation = observed_generation;
            changed
        }
        None => {
            conditions.push(Condition {
                type_: desired.type_,
                status: desired.status.as_str().to_owned(),
                reason: desired.reason,
                message: desired.message,
                observed_generation,
                last_transition_time: Time(now),
            });
            true
        }
    }
}

/// Sets several conditions at once (see [`set`]).
pub fn set_all(
    conditions: &mut Vec<Condition>,
    desired: impl IntoIterator<Item = Desired>,
    observed_generation: Option<i64>,
    now: jiff::Timestamp,
) -> bool {
    let mut changed = false;
    for d in desired {
        changed |= set(conditions, d, observed_generation, now);
    }
    changed
}

/// The condition of a type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of a type is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut cs = Vec::new();
        assert!(set(
            &mut cs,
            Desired::ready("Applied", "all good"),
            Some(1),
            at(100)
        ));
        assert_eq!(cs[0].last_transition_time.0, at(100));
        // Same status, same text, newer generation: no change, time kept.
        assert!(!set(
            &mut cs,
            Desired::ready("Applied", "all good"),
            Some(2),
            at(200)
        ));
        assert_eq!(cs[0].last_transition_time.0, at(100));
        assert_eq!(cs[0].observed_generation, Some(2));
        // Same status, new message: changed, time kept.
        assert!(set(
            &mut cs,
            Desired::ready("Applied", "still good"),
            Some(2),
            at(300)
        ));
        assert_eq!(cs[0].last_transition_time.0, at(100));
        // Status flips: time moves.
        assert!(set(
            &mut cs,
            Desired::not_ready("Failed", "broken"),
            Some(3),
            at(400)
        ));
        assert_eq!(cs[0].last_transition_time.0, at(400));
        assert_eq!(cs.len(), 1);
        assert!(!is_true(&cs, READY));
    }

    #[test]
    fn several_types_coexist() {
        let mut cs = Vec::new();
        set_all(
            &mut cs,
            [
                Desired::not_ready("InvalidSpec", "spec.port: must be 1-65535"),
                Desired::stalled("InvalidSpec", "spec.port: must be 1-65535"),
            ],
            Some(1),
            at(1),
        );
        assert!(is_true(&cs, STALLED));
        set(&mut cs, Desired::cleared(STALLED, "Fixed"), Some(2), at(2));
        assert!(!is_true(&cs, STALLED));
        assert_eq!(find(&cs, READY).unwrap().reason, "InvalidSpec");
    }
}
