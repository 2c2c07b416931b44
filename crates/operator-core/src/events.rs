//! Kubernetes Events (events.k8s.io/v1) for an operator, over kube-runtime's Recorder (which
//! aggregates repeats into series).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// Publishes Events on behalf of one operator.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    /// A recorder reporting as `controller` (the operator name), instance from `POD_NAME`.
    pub fn new(client: kube::Client, controller: &str) -> Self {
        let reporter = Reporter {
            controller: controller.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Events {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// A `Normal` event. Failures to publish are logged, never fatal: events are best effort.
    pub async fn normal(&self, about: &ObjectReference, reason: &str, action: &str, note: String) {
        self.publish(about, EventType::Normal, reason, action, note)
            .await;
    }

    /// A `Warning` event.
    pub async fn warning(&self, about: &ObjectReference, reason: &str, action: &str, note: String) {
        self.publish(about, EventType::Warning, reason, action, note)
            .await;
    }

    async fn publish(
        &self,
        about: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, about).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }
}
