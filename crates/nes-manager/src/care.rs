//! The NetworkCare reconciler: the only writer of a NetworkCare's status. It checks the spec
//! (the hub ignores an invalid one) and writes the delivery counters the workers keep in
//! memory. Triggered by the resource, and by the hub after each delivery outcome and when the
//! number of selected pods changes.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use nes_api::crd::{NetworkCare, NetworkCareStatus};
use operator_core::conditions::{self, DEGRADED, Desired};

use crate::Error;
use crate::delivery::Counters;
use crate::operator::{Context, write_status};
use crate::pods::{Selection, check_callback};

/// Reconciles one NetworkCare.
pub async fn reconcile(care: Arc<NetworkCare>, ctx: Arc<Context>) -> Result<Action, Error> {
    let current = care.status.clone().unwrap_or_default();
    let validity = Selection::of(&care).and_then(|_| check_callback(&care.spec.callback.url));
    let counters = match (&validity, care.uid()) {
        (Ok(_), Some(uid)) => {
            // Restoring reads the status afresh: the cached copy can lag behind the last
            // counts the other replica (or an earlier process) wrote.
            let written = if ctx.stats.needs_restore(&uid) {
                Api::<NetworkCare>::namespaced(
                    ctx.runtime.client.clone(),
                    &care.namespace().unwrap_or_default(),
                )
                .get_status(&care.name_any())
                .await?
                .status
                .unwrap_or_default()
            } else {
                current.clone()
            };
            ctx.stats.update(&uid, |c| {
                restore(c, &written);
                c.clone()
            })
        }
        _ => Counters::default(),
    };
    let next = next_status(
        &current,
        validity.err(),
        &counters,
        care.metadata.generation,
    );
    write_status(&ctx.runtime.client, care.as_ref(), &current, &next).await?;
    Ok(Action::await_change())
}

/// Adds the counts an earlier manager (or the other replica) wrote to the status, once per
/// term, so they keep growing across restarts and leadership changes.
fn restore(counters: &mut Counters, status: &NetworkCareStatus) {
    if counters.restored {
        return;
    }
    counters.restored = true;
    counters.deliveries += status.deliveries;
    counters.failures += status.failures;
    if counters.last_delivery_time.is_none() {
        counters.last_delivery_time = status.last_delivery_time.as_ref().map(|t| t.0);
    }
    if counters.last_error.is_none() {
        counters.last_error = status.last_error.clone();
    }
}

/// The status for a spec error (if any) and the counters (pure).
///
/// Conditions: `Ready` is True when the spec is valid and the last report was delivered (or
/// none was due yet); `Degraded` is True when the last report could not be delivered.
pub fn next_status(
    current: &NetworkCareStatus,
    invalid: Option<String>,
    counters: &Counters,
    generation: Option<i64>,
) -> NetworkCareStatus {
    let mut next = current.clone();
    let desired = match invalid {
        Some(message) => [
            Desired::not_ready("InvalidSpec", message),
            Desired::cleared(DEGRADED, "InvalidSpec"),
        ],
        None => {
            next.deliveries = counters.deliveries;
            next.failures = counters.failures;
            next.last_delivery_time = counters.last_delivery_time.map(Time);
            next.last_error = counters.last_error.clone();
            let error = counters.last_error.clone().unwrap_or_default();
            if counters.failing {
                [
                    Desired::not_ready("DeliveryFailing", error.clone()),
                    Desired::degraded("DeliveryFailing", error),
                ]
            } else {
                [
                    Desired::ready("Delivering", format!("{} pods selected", counters.selected)),
                    Desired::cleared(DEGRADED, "Delivering"),
                ]
            }
        }
    };
    conditions::set_all(
        &mut next.conditions,
        desired,
        generation,
        jiff::Timestamp::now(),
    );
    next.observed_generation = generation;
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use operator_core::conditions::READY;

    #[test]
    fn counters_and_conditions() {
        let counters = Counters {
            deliveries: 3,
            selected: 2,
            last_delivery_time: Some(jiff::Timestamp::from_second(5).unwrap()),
            ..Counters::default()
        };
        let ok = next_status(&Default::default(), None, &counters, Some(1));
        assert_eq!(ok.deliveries, 3);
        assert!(conditions::is_true(&ok.conditions, READY));
        assert_eq!(
            conditions::find(&ok.conditions, READY).unwrap().message,
            "2 pods selected"
        );
        assert!(!conditions::is_true(&ok.conditions, DEGRADED));
        // Nothing changed: the same status (so nothing is written).
        assert_eq!(next_status(&ok, None, &counters, Some(1)), ok);

        let failing = Counters {
            failures: 1,
            failing: true,
            last_error: Some("the callback answered HTTP 500".into()),
            ..counters.clone()
        };
        let bad = next_status(&ok, None, &failing, Some(1));
        assert_eq!(bad.failures, 1);
        assert!(conditions::is_true(&bad.conditions, DEGRADED));
        assert_eq!(
            conditions::find(&bad.conditions, READY).unwrap().reason,
            "DeliveryFailing"
        );

        let invalid = next_status(&ok, Some("spec.pods: ...".into()), &counters, Some(2));
        assert_eq!(
            conditions::find(&invalid.conditions, READY).unwrap().reason,
            "InvalidSpec"
        );
        assert_eq!(invalid.observed_generation, Some(2));
    }

    #[test]
    fn restore_adds_the_previous_counts_once() {
        let status = NetworkCareStatus {
            deliveries: 10,
            failures: 2,
            ..Default::default()
        };
        let mut counters = Counters {
            deliveries: 1,
            ..Counters::default()
        };
        restore(&mut counters, &status);
        restore(&mut counters, &status);
        assert_eq!((counters.deliveries, counters.failures), (11, 2));
    }
}
