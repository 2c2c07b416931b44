//! A pod's configuration status: the `NetworkConfiguration` status nes-manager writes, as the
//! API answers it, and the watch of it.

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{self as meta, Time};
use kube::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher::Config};
use nes_api::cli::{Condition, ItemOutcome, StatusResponse};
use nes_api::crd::NetworkConfiguration;

/// A timestamp as Kubernetes writes it (RFC 3339, seconds).
pub fn time_text(time: &Time) -> String {
    match serde_json::to_value(time) {
        Ok(serde_json::Value::String(text)) => text,
        _ => time.0.to_string(),
    }
}

fn condition(c: &meta::Condition) -> Condition {
    Condition {
        type_: c.type_.clone(),
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_transition_time: Some(time_text(&c.last_transition_time)),
        observed_generation: c.observed_generation,
    }
}

/// The answer for a stored configuration: its status, empty until nes-manager wrote one.
pub fn response(namespace: &str, cr: &NetworkConfiguration) -> StatusResponse {
    let status = cr.status.clone().unwrap_or_default();
    StatusResponse {
        namespace: namespace.to_owned(),
        pod: cr.spec.pod.clone(),
        generation: cr.metadata.generation.unwrap_or_default(),
        observed_generation: status.observed_generation,
        applied_generation: status.applied_generation,
        boot_id: status.boot_id,
        pod_uid: status.pod_uid,
        last_successful_update_time: status.last_successful_update_time.as_ref().map(time_text),
        results: status
            .results
            .iter()
            .map(|r| ItemOutcome {
                item: r.item.clone(),
                state: r.state,
                message: r.message.clone(),
            })
            .collect(),
        conditions: status.conditions.iter().map(condition).collect(),
    }
}

/// The status of configuration `name` after every change, starting with the current one: one
/// item per distinct answer (a change of the object that leaves the answer as it was, such as a
/// label, is not repeated). Ends when the object is deleted, or is absent at the start.
/// Transient watch errors are retried with backoff and do not end the stream.
pub fn watch(
    api: Api<NetworkConfiguration>,
    namespace: String,
    name: &str,
) -> impl Stream<Item = StatusResponse> + Send + use<> {
    let fields = format!("metadata.name={name}");
    let events = watcher::watcher(api, Config::default().fields(&fields)).default_backoff();
    events
        .scan(
            (None::<StatusResponse>, false),
            move |(last, seen), event| {
                let step = match event {
                    Ok(Event::Init) => {
                        *seen = false;
                        Some(None)
                    }
                    Ok(Event::InitApply(cr) | Event::Apply(cr)) => {
                        *seen = true;
                        let next = response(&namespace, &cr);
                        if last.as_ref() == Some(&next) {
                            Some(None)
                        } else {
                            *last = Some(next.clone());
                            Some(Some(next))
                        }
                    }
                    Ok(Event::InitDone) if !*seen => None,
                    Ok(Event::InitDone) => Some(None),
                    Ok(Event::Delete(_)) => None,
                    Err(error) => {
                        tracing::warn!(%error, "status watch error; retrying");
                        Some(None)
                    }
                };
                futures::future::ready(step)
            },
        )
        .filter_map(futures::future::ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nes_api::ItemState;
    use nes_api::crd::{ItemStatus, NetworkConfigurationSpec, NetworkConfigurationStatus};

    #[test]
    fn status_is_taken_from_the_resource() {
        let mut cr = NetworkConfiguration::new(
            "x-0",
            NetworkConfigurationSpec {
                pod: "x-0".into(),
                ..Default::default()
            },
        );
        cr.metadata.generation = Some(4);
        assert_eq!(response("team", &cr).results, []);
        let when = Time("2025-01-02T03:04:05Z".parse().unwrap());
        cr.status = Some(NetworkConfigurationStatus {
            observed_generation: Some(4),
            applied_generation: Some(3),
            boot_id: Some("b1".into()),
            pod_uid: Some("u1".into()),
            last_successful_update_time: Some(when.clone()),
            results: vec![ItemStatus {
                item: "address 10.1.0.5/24 on eth0".into(),
                state: ItemState::Failed,
                message: Some("boom".into()),
            }],
            conditions: vec![meta::Condition {
                type_: "Available".into(),
                status: "False".into(),
                reason: "ItemsFailed".into(),
                message: "1 item failed".into(),
                last_transition_time: when,
                observed_generation: Some(4),
            }],
        });
        let answer = response("team", &cr);
        assert_eq!(answer.generation, 4);
        assert_eq!(answer.applied_generation, Some(3));
        assert_eq!(
            answer.last_successful_update_time.as_deref(),
            Some("2025-01-02T03:04:05Z")
        );
        assert_eq!(answer.results[0].state, ItemState::Failed);
        assert_eq!(answer.conditions[0].type_, "Available");
        assert_eq!(
            serde_json::to_value(&answer.conditions[0]).unwrap()["type"],
            "Available"
        );
    }
}
