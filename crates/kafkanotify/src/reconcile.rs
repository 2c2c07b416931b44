//! The reconciler: the resource's status is the outbox. A location consumers do not know yet
//! is published, the broker's acknowledgement awaited, and only then recorded in
//! `status.notified`; a crash in between re-publishes the same event (same `ce_id`), which
//! consumers drop as a duplicate. Deletion publishes `removed` before the finalizer goes.

use std::sync::Arc;
use std::time::Instant;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use operator_core::conditions::{self, Desired};
use operator_core::finalizer::{self, Event};
use operator_core::{ErrorReason, Runtime};

use crate::event::{self, EventKind, Notification, Payload};
use crate::kafka::{KafkaError, Publisher};
use crate::metrics::PublishMetrics;
use crate::outbox;
use crate::resource::{EdgeApplication, EdgeApplicationStatus, Location, Pending};
use crate::topics::TopicPolicy;

/// The operator's name: field manager, finalizer prefix, event reporter.
pub const OPERATOR: &str = "kafkanotify";

/// A test hook run after the broker acknowledged a record and before the status records it:
/// the window in which a crash makes the operator publish the event again.
pub type AfterPublish = Box<dyn Fn(&Notification) -> HookOutcome + Send + Sync>;

/// What the reconcile does after an [`AfterPublish`] hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOutcome {
    /// Go on and record the acknowledgement.
    Continue,
    /// Stop here as if the process died (the status is not written).
    Crash,
}

/// What the reconciler needs.
pub struct Context {
    /// The operator-core services.
    pub runtime: Arc<Runtime>,
    /// The Kafka producer.
    pub publisher: Publisher,
    /// Which topics resources may name, and the default one.
    pub topics: TopicPolicy,
    /// Publication metrics.
    pub metrics: PublishMetrics,
    /// How long a deletion waits for its removal notices; `None`: for ever.
    pub removal_timeout: Option<std::time::Duration>,
    /// Failpoint for fault-injection tests; `None` in production.
    pub after_publish: Option<AfterPublish>,
}

/// Why a reconcile failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Publishing to Kafka failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The finalizer could not be added or removed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// The object has no namespace (the kind is namespaced, so this is a malformed event).
    #[error("the object has no namespace")]
    NoNamespace,
    /// The failpoint stopped the reconcile.
    #[error("stopped by the after-publish failpoint")]
    Failpoint,
}

impl ErrorReason for Error {
    fn reason(&self) -> String {
        match self {
            Error::Kube(_) => "Kube".into(),
            Error::Kafka(e) => e.reason().into(),
            Error::Finalizer(_) => "Finalizer".into(),
            Error::NoNamespace => "NoNamespace".into(),
            Error::Failpoint => "Failpoint".into(),
        }
    }
}

/// Reconciles one EdgeApplication.
pub async fn reconcile(app: Arc<EdgeApplication>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = app.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<EdgeApplication> = Api::namespaced(ctx.runtime.client.clone(), &namespace);
    finalizer::with_finalizer(&api, OPERATOR, app, |event| async {
        match event {
            Event::Apply(app) => notify(&app, &ctx).await,
            Event::Cleanup(app) => remove(&app, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// Publishes, one event at a time, what each topic's consumers should learn: the spec's
/// location on its topic, then `removed` on topics the resource left.
async fn notify(app: &EdgeApplication, ctx: &Context) -> Result<Action, Error> {
    let mut status = app.status.clone().unwrap_or_default();
    let topic = ctx.topics.topic_for(app.spec.topic.as_deref());
    if !ctx.topics.allows(&topic) {
        // Tenants write spec.topic; the operator publishes with its own credentials, so only
        // the topics its flags allow are used. Nothing is published.
        let message = format!(
            "topic {topic} is not allowed by the operator (--topic, --allowed-topics, --allowed-topics-regex)"
        );
        let next = status.clone();
        write_status(
            app,
            ctx,
            &status,
            next,
            [
                Desired::not_ready("TopicNotAllowed", message),
                Desired::cleared(conditions::DEGRADED, "TopicNotAllowed"),
            ],
        )
        .await?;
        return Ok(Action::await_change());
    }
    let desired = app.location();
    let uid = app.meta().uid.clone().unwrap_or_default();
    let wanted = outbox::Wanted {
        topic: &topic,
        location: &desired,
        uid: &uid,
        generation: app.meta().generation.unwrap_or_default(),
    };
    loop {
        let (base, next) = outbox::next_for_spec(&status, &wanted);
        let Some(event) = next else {
            let message = format!(
                "consumers know {} at {}",
                desired.edge_node_id,
                describe(&desired)
            );
            write_status(app, ctx, &status, base, ready(message)).await?;
            return Ok(Action::await_change());
        };
        status = deliver(app, ctx, &status, base, &event).await?;
    }
}

/// Publishes `removed` on every topic whose consumers know (or may know) the application; the
/// finalizer goes only after the broker acknowledged them, unless the user or the
/// `--removal-timeout` says to give up.
async fn remove(app: &EdgeApplication, ctx: &Context) -> Result<Action, Error> {
    let mut status = app.status.clone().unwrap_or_default();
    let uid = app.meta().uid.clone().unwrap_or_default();
    let generation = app.meta().generation.unwrap_or_default();
    if outbox::next_for_deletion(&status, &uid, generation)
        .1
        .is_none()
    {
        // Nobody was ever told about it, not even maybe: nothing to retract.
        return Ok(Action::await_change());
    }
    while let (base, Some(event)) = outbox::next_for_deletion(&status, &uid, generation) {
        match deliver(app, ctx, &status, base, &event).await {
            Ok(written) => status = written,
            // The notice is tried first even when the user allows giving up: a reachable
            // broker costs nothing, and consumers are told.
            Err(Error::Kafka(e)) => {
                let Some(reason) = give_up_reason(app, ctx.removal_timeout, jiff::Timestamp::now())
                else {
                    return Err(e.into());
                };
                let message = format!(
                    "deleted without the removal notice on topic {} (nor any later one): {}; last error: {e}",
                    event.topic,
                    reason.describe(ctx.removal_timeout)
                );
                tracing::warn!(app = %app.app_id(), %message, "removal notice skipped");
                ctx.metrics.removal_skipped(reason.as_str());
                ctx.runtime
                    .events
                    .warning(
                        &app.object_ref(&()),
                        "RemovalNoticeSkipped",
                        "Remove",
                        message,
                    )
                    .await;
                return Ok(Action::await_change());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Action::await_change())
}

/// Why a deletion may finish without its removal notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The annotation [`SKIP_REMOVAL_NOTICE`] is `"true"`.
    Annotation,
    /// The deletion is older than `--removal-timeout`.
    Timeout,
}

impl GiveUp {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            GiveUp::Annotation => "Annotation",
            GiveUp::Timeout => "Timeout",
        }
    }

    fn describe(self, timeout: Option<std::time::Duration>) -> String {
        match self {
            GiveUp::Annotation => format!("the annotation {SKIP_REMOVAL_NOTICE} is \"true\""),
            GiveUp::Timeout => format!(
                "the broker did not acknowledge it within --removal-timeout {}",
                timeout.map(|t| format!("{t:?}")).unwrap_or_default()
            ),
        }
    }
}

/// Annotation that lets a deletion finish without the removal notice.
pub const SKIP_REMOVAL_NOTICE: &str = "kafkanotify.kubecrew.io/skip-removal-notice";

/// Whether a deleted resource may go without its removal notices (pure).
pub fn give_up_reason(
    app: &EdgeApplication,
    timeout: Option<std::time::Duration>,
    now: jiff::Timestamp,
) -> Option<GiveUp> {
    let annotated = app
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(SKIP_REMOVAL_NOTICE))
        .is_some_and(|v| v == "true");
    if annotated {
        return Some(GiveUp::Annotation);
    }
    let deleted = app.meta().deletion_timestamp.as_ref()?.0;
    let timeout = jiff::SignedDuration::try_from(timeout?).ok()?;
    (now.duration_since(deleted) >= timeout).then_some(GiveUp::Timeout)
}

/// Records `event` as pending, produces it, and records the acknowledgement; returns the
/// status written.
async fn deliver(
    app: &EdgeApplication,
    ctx: &Context,
    current: &EdgeApplicationStatus,
    base: EdgeApplicationStatus,
    event: &Pending,
) -> Result<EdgeApplicationStatus, Error> {
    // The outbox entry first: if the process dies after the broker took the record, the
    // status still says consumers may know it (deletion then retracts it).
    let recorded = write_status(app, ctx, current, outbox::recorded(&base, event), []).await?;
    let notification = notification_for(app, event);
    let ack = match publish(ctx, &event.topic, &notification).await {
        Ok(ack) => ack,
        Err(e) => {
            report_failure(app, ctx, &recorded, event.kind, &e).await;
            return Err(e.into());
        }
    };
    if let Some(hook) = &ctx.after_publish
        && hook(&notification) == HookOutcome::Crash
    {
        return Err(Error::Failpoint);
    }
    let acked = outbox::Acked {
        partition: ack.partition,
        offset: ack.offset,
        time: jiff::Timestamp::now().to_string(),
    };
    let where_ = event
        .location
        .as_ref()
        .map(|l| format!("{} at {}", l.edge_node_id, describe(l)))
        .unwrap_or_else(|| "nowhere".into());
    let message = format!(
        "published {} on {}: {where_}",
        event.kind.as_str(),
        event.topic
    );
    let written = write_status(
        app,
        ctx,
        &recorded,
        outbox::acknowledged(&recorded, event, &acked),
        ready(message),
    )
    .await?;
    let note = format!(
        "{} {} on {}: {where_} (partition {}, offset {})",
        notification.payload.key(),
        event.kind.as_str(),
        event.topic,
        ack.partition,
        ack.offset
    );
    ctx.runtime
        .events
        .normal(&app.object_ref(&()), "Published", "Publish", note)
        .await;
    Ok(written)
}

/// Publishes and records metrics.
async fn publish(
    ctx: &Context,
    topic: &str,
    notification: &Notification,
) -> Result<crate::kafka::Ack, KafkaError> {
    let started = Instant::now();
    let result = ctx.publisher.publish(topic, notification).await;
    ctx.metrics
        .cached_topics(ctx.publisher.cached_topics().await);
    match &result {
        Ok(ack) => {
            ctx.metrics
                .published(notification.kind.as_str(), started.elapsed());
            tracing::info!(
                app = %notification.payload.app_id,
                event = notification.kind.as_str(),
                id = %notification.id,
                topic,
                partition = ack.partition,
                offset = ack.offset,
                "published"
            );
        }
        Err(e) => {
            ctx.metrics.failed(e.reason());
            if e.is_connection_level() {
                ctx.metrics.connection_reset();
            }
            tracing::warn!(app = %notification.payload.app_id, error = %e, "publish failed");
        }
    }
    result
}

/// Marks the resource Degraded (best effort: the error is what gets retried).
async fn report_failure(
    app: &EdgeApplication,
    ctx: &Context,
    status: &EdgeApplicationStatus,
    kind: EventKind,
    error: &KafkaError,
) {
    let message = format!("could not publish {}: {error}", kind.as_str());
    let desired = [
        Desired::not_ready(error.reason(), message.clone()),
        Desired::degraded(error.reason(), message.clone()),
    ];
    if let Err(e) = write_status(app, ctx, status, status.clone(), desired).await {
        tracing::debug!(error = %e, "could not record the failure in status");
    }
    ctx.runtime
        .events
        .warning(&app.object_ref(&()), error.reason(), "Publish", message)
        .await;
}

fn ready(message: String) -> [Desired; 2] {
    [
        Desired::ready("Notified", message),
        Desired::cleared(conditions::DEGRADED, "Notified"),
    ]
}

/// The notification of a recorded event: the same id and payload however often it is
/// produced.
pub fn notification_for(app: &EdgeApplication, event: &Pending) -> Notification {
    let mut n = notification(
        app,
        event.kind,
        event.location.as_ref(),
        event.previous.clone(),
    );
    n.id = event.event_id.clone();
    n.payload.generation = event.generation;
    n
}

/// Builds the notification of `kind` for `app`.
pub fn notification(
    app: &EdgeApplication,
    kind: EventKind,
    location: Option<&Location>,
    previous: Option<Location>,
) -> Notification {
    let namespace = app.namespace().unwrap_or_default();
    let name = app.name_any();
    let generation = app.meta().generation.unwrap_or_default();
    let uid = app.meta().uid.clone().unwrap_or_default();
    Notification {
        id: event::event_id(&uid, generation, kind),
        source: event::source(&namespace, &name),
        kind,
        time: jiff::Timestamp::now(),
        payload: Payload {
            app_id: app.app_id(),
            namespace,
            name,
            edge_node_id: location.map(|l| l.edge_node_id.clone()),
            endpoint: location.map(|l| l.endpoint.clone()),
            previous,
            generation,
        },
    }
}

fn describe(location: &Location) -> String {
    let e = &location.endpoint;
    let protocol = match e.protocol {
        crate::resource::Protocol::Tcp => "TCP",
        crate::resource::Protocol::Udp => "UDP",
    };
    format!("{}:{}/{protocol}", e.host, e.port)
}

/// Writes `next` with the `desired` conditions when it differs from `current` (the status as
/// last read or written), and returns what the status now is. The whole status is always
/// sent: server-side apply drops fields a manager stops sending.
async fn write_status(
    app: &EdgeApplication,
    ctx: &Context,
    current: &EdgeApplicationStatus,
    mut next: EdgeApplicationStatus,
    desired: impl IntoIterator<Item = Desired>,
) -> Result<EdgeApplicationStatus, kube::Error> {
    use operator_core::status::ConditionedStatus;
    let generation = app.meta().generation;
    conditions::set_all(
        next.conditions_mut(),
        desired,
        generation,
        jiff::Timestamp::now(),
    );
    next.set_observed_generation(generation);
    if next != *current {
        let value = serde_json::to_value(&next).map_err(kube::Error::SerdeError)?;
        operator_core::status::apply(
            &ctx.runtime.client,
            &kube::core::ApiResource::erase::<EdgeApplication>(&()),
            app.namespace().as_deref(),
            &app.name_any(),
            OPERATOR,
            value,
        )
        .await?;
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deleted(annotations: serde_json::Value, at: &str) -> EdgeApplication {
        serde_json::from_value(json!({
            "apiVersion": "kafkanotify.kubecrew.io/v1alpha1",
            "kind": "EdgeApplication",
            "metadata": {"name": "carla", "namespace": "edge", "annotations": annotations,
                         "deletionTimestamp": at},
            "spec": {"edgeNodeId": "n", "endpoint": {"host": "h", "port": 1}}
        }))
        .unwrap()
    }

    #[test]
    fn deletion_gives_up_only_when_told_or_after_the_timeout() {
        let now: jiff::Timestamp = "2026-12-08T01:10:00Z".parse().unwrap();
        let minutes = |m: u64| Some(std::time::Duration::from_secs(60 * m));
        let fresh = deleted(json!({}), "2026-12-08T01:05:00Z");
        assert_eq!(give_up_reason(&fresh, minutes(15), now), None);
        assert_eq!(give_up_reason(&fresh, None, now), None, "no timeout: wait");
        assert_eq!(
            give_up_reason(&fresh, minutes(5), now),
            Some(GiveUp::Timeout)
        );
        let told = deleted(json!({SKIP_REMOVAL_NOTICE: "true"}), "2026-12-08T01:09:00Z");
        assert_eq!(
            give_up_reason(&told, minutes(15), now),
            Some(GiveUp::Annotation)
        );
        let not_quite = deleted(json!({SKIP_REMOVAL_NOTICE: "yes"}), "2026-12-08T01:09:00Z");
        assert_eq!(give_up_reason(&not_quite, minutes(15), now), None);
    }
}
