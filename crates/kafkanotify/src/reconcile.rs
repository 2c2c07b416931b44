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
use crate::resource::{EdgeApplication, EdgeApplicationStatus, Location, Notified};

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
    /// Topic of resources without `spec.topic`.
    pub default_topic: String,
    /// Publication metrics.
    pub metrics: PublishMetrics,
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

/// Publishes the spec's location if consumers do not know it yet.
async fn notify(app: &EdgeApplication, ctx: &Context) -> Result<Action, Error> {
    let status = app.status.clone().unwrap_or_default();
    let known = status.notified.as_ref().map(Notified::location);
    let desired = app.location();
    let Some(kind) = event::decide(&desired, known.as_ref()) else {
        let message = format!(
            "consumers know {} at {}",
            desired.edge_node_id,
            describe(&desired)
        );
        write_status(app, ctx, status.notified.clone(), ready(message)).await?;
        return Ok(Action::await_change());
    };
    let topic = app
        .spec
        .topic
        .clone()
        .unwrap_or_else(|| ctx.default_topic.clone());
    let notification = notification(app, kind, Some(&desired), known);
    let ack = match publish(ctx, &topic, &notification).await {
        Ok(ack) => ack,
        Err(e) => {
            report_failure(app, ctx, &status, kind, &e).await;
            return Err(e.into());
        }
    };
    if let Some(hook) = &ctx.after_publish
        && hook(&notification) == HookOutcome::Crash
    {
        return Err(Error::Failpoint);
    }
    let notified = Notified {
        edge_node_id: desired.edge_node_id.clone(),
        endpoint: desired.endpoint.clone(),
        generation: app.meta().generation.unwrap_or_default(),
        event_id: notification.id.clone(),
        topic,
        partition: ack.partition,
        offset: ack.offset,
        time: jiff::Timestamp::now().to_string(),
    };
    let message = format!(
        "published {} to {} at {}",
        kind.as_str(),
        desired.edge_node_id,
        describe(&desired)
    );
    write_status(app, ctx, Some(notified.clone()), ready(message)).await?;
    let note = format!(
        "{} {}: {} at {} (partition {}, offset {})",
        notification.payload.app_id,
        kind.as_str(),
        desired.edge_node_id,
        describe(&desired),
        ack.partition,
        ack.offset
    );
    ctx.runtime
        .events
        .normal(&app.object_ref(&()), "Published", "Publish", note)
        .await;
    Ok(Action::await_change())
}

/// Publishes `removed` for an application consumers were told about; the finalizer is
/// removed only after the broker acknowledged it.
async fn remove(app: &EdgeApplication, ctx: &Context) -> Result<Action, Error> {
    let status = app.status.clone().unwrap_or_default();
    let Some(notified) = status.notified.clone() else {
        // Nobody was ever told about it: nothing to retract.
        return Ok(Action::await_change());
    };
    let notification = notification(app, EventKind::Removed, None, Some(notified.location()));
    if let Err(e) = publish(ctx, &notified.topic, &notification).await {
        report_failure(app, ctx, &status, EventKind::Removed, &e).await;
        return Err(e.into());
    }
    Ok(Action::await_change())
}

/// Publishes and records metrics.
async fn publish(
    ctx: &Context,
    topic: &str,
    notification: &Notification,
) -> Result<crate::kafka::Ack, KafkaError> {
    let started = Instant::now();
    let result = ctx.publisher.publish(topic, notification).await;
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
    if let Err(e) = write_status(app, ctx, status.notified.clone(), desired).await {
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

/// Writes the whole status with `notified` (server-side apply drops fields a manager stops
/// sending, so `notified` is always sent) when it changed.
async fn write_status(
    app: &EdgeApplication,
    ctx: &Context,
    notified: Option<Notified>,
    desired: impl IntoIterator<Item = Desired>,
) -> Result<(), kube::Error> {
    let current = app.status.clone().unwrap_or_default();
    let next = EdgeApplicationStatus {
        notified,
        ..current.clone()
    };
    operator_core::status::update(&ctx.runtime.client, app, OPERATOR, &current, next, desired).await
}
