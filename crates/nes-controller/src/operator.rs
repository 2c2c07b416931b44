//! The StatefulSet reconciler's process, in either mode: every StatefulSet is watched (not only
//! labelled ones, so that removing the label is seen). Webhook mode also runs
//! [`crate::webhook::start`].

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::watcher;
use operator_core::Settings;

use crate::template::{self, Context};

/// Runs the StatefulSet reconciler (mode from `ctx.mode`) until the runtime shuts down.
pub async fn run(ctx: Arc<Context>, namespace: Option<&str>, settings: Settings) {
    let runtime = ctx.runtime.clone();
    let api: Api<DeserializeGuard<StatefulSet>> = match namespace {
        Some(ns) => Api::namespaced(runtime.client.clone(), ns),
        None => Api::all(runtime.client.clone()),
    };
    operator_core::run(
        runtime,
        api,
        watcher::Config::default(),
        |controller| controller,
        template::reconcile,
        ctx,
        settings,
    )
    .await;
}
