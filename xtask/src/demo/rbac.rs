//! Least privilege, checked: the operators run with their ServiceAccounts' tokens against
//! the cluster with RBAC enforced (devcluster, or the real kube-apiserver with `--cluster
//! real`), and after the story the permissions each one used (from the cluster's audit log)
//! are compared with what its Roles and ClusterRoles grant. A
//! permission used but not granted is a missing rule; one granted but never used is a rule too
//! many, unless it is listed in [`EXPECTED_UNUSED`] with the reason the story may not reach it.
//! The comparison itself is [`testkit::rbac`].

use std::collections::BTreeSet;

use anyhow::{Context, bail};
use serde_json::Value;
use testkit::rbac::{
    Permission, Permission3, Verdict, compare, expected_for, granted_to, list,
    service_account_user, used_by,
};

use super::Ctx;
use super::output::Mark;
use super::setup::{NAMESPACE, OPERATOR_NAMES, read};
use super::steps::poll;

/// Step name.
pub const RBAC: &str = "rbac";

/// How long an operator may take to renew its Lease once (client-go's retry period is 2 s).
const RENEW_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Compares each operator's grants with what it used during the story; fails on a missing or
/// an unexplained unused permission, and on any denied request.
pub async fn check(ctx: &mut Ctx) -> anyhow::Result<Option<String>> {
    if ctx.keep_running {
        return Ok(Some(
            "it needs the teardown's deletes; run the demo without --keep-running".to_owned(),
        ));
    }
    let kubectl = ctx.kubectl.clone();
    // Leader election renews with `update` after its first `create`: wait for one renewal, so
    // that verb is in the log rather than racing the story's length.
    for name in OPERATOR_NAMES {
        let kubectl = kubectl.clone();
        poll(
            &mut ctx.procs,
            ctx.out,
            &format!("{name} to renew its Lease {NAMESPACE}/{name}"),
            RENEW_TIMEOUT,
            || {
                let kubectl = kubectl.clone();
                async move {
                    let lease = kubectl.get(&["lease", name, "-n", NAMESPACE]).await?;
                    Ok(lease.filter(renewed).map(|_| ()))
                }
            },
        )
        .await?;
    }
    let rbac = kubectl
        .get(&["clusterroles,clusterrolebindings,roles,rolebindings", "-A"])
        .await?
        .context("kubectl listed no RBAC objects")?;
    let objects = rbac
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let audit = read(&ctx.audit_log());
    let mut failures = Vec::new();
    for name in OPERATOR_NAMES {
        let granted = granted_to(&objects, NAMESPACE, name)?;
        let (used, denied) = used_by(&audit, &service_account_user(NAMESPACE, name))?;
        let verdict = compare(
            &granted,
            &used,
            denied,
            &expected_for(EXPECTED_UNUSED, name),
        );
        report(ctx, name, &granted, &verdict);
        if !verdict.is_exact() {
            failures.push(name);
        }
    }
    if !failures.is_empty() {
        bail!(
            "the RBAC of {} does not match what they do (see above; deploy/base/<operator>/rbac.yaml)",
            failures.join(", ")
        );
    }
    Ok(None)
}

/// Whether a Lease has been renewed since it was acquired.
fn renewed(lease: &Value) -> bool {
    let time = |f: &str| lease.pointer(&format!("/spec/{f}")).and_then(Value::as_str);
    matches!((time("acquireTime"), time("renewTime")), (Some(a), Some(r)) if a != r)
}

/// Prints one operator's verdict.
fn report(ctx: &Ctx, name: &str, granted: &BTreeSet<Permission>, verdict: &Verdict) {
    let out = ctx.out;
    if verdict.is_exact() {
        out.ok(&format!(
            "{name}: {} permissions granted, each one used{}",
            granted.len(),
            if verdict.explained.is_empty() {
                String::new()
            } else {
                format!(" or explained ({})", verdict.explained.len())
            }
        ));
    } else {
        out.line(
            Mark::Fail,
            &format!("{name}: the grants do not match the use"),
        );
    }
    // One line per reason: the permissions it covers, then why the story cannot reach them.
    let mut reasons: Vec<(&str, BTreeSet<Permission>)> = Vec::new();
    for (permission, why) in &verdict.explained {
        match reasons.iter_mut().find(|(w, _)| w == why) {
            Some((_, set)) => {
                set.insert(permission.clone());
            }
            None => reasons.push((why, [permission.clone()].into())),
        }
    }
    for (why, permissions) in &reasons {
        out.info(&format!(
            "not reached by the story: {}: {why}",
            list(permissions)
        ));
    }
    if !verdict.missing.is_empty() {
        out.info(&format!(
            "{name} used but is not granted: {}",
            list(&verdict.missing)
        ));
    }
    if !verdict.unused.is_empty() {
        out.info(&format!(
            "{name} is granted but never used: {}",
            list(&verdict.unused)
        ));
    }
    if !verdict.stale.is_empty() {
        out.info(&format!(
            "{name}: listed as unused in xtask/src/demo/rbac.rs but not granted: {}",
            list(&verdict.stale)
        ));
    }
    for request in verdict.denied.iter().take(10) {
        out.info(&format!("{name} was denied: {request}"));
    }
}

/// Permissions granted for paths the story does not reach (or reaches only on a race, as a
/// prune's re-read after a conflicting change), per ServiceAccount, with the reason. An entry
/// naming a permission that is not granted fails the check, so the list follows the RBAC.
pub const EXPECTED_UNUSED: &[(&str, Permission3, &str)] = &[
    (
        "kafkanotify",
        ("kafkanotify.kubecrew.io", "edgeapplications/status", "get"),
        INVALID_SPEC,
    ),
    (
        "appconfig-restarter",
        ("appconfig.kubecrew.io", "appconfigs/status", "get"),
        INVALID_SPEC,
    ),
    (
        "appconfig-restarter",
        ("events.k8s.io", "events", "patch"),
        EVENT_SERIES,
    ),
    (
        "appconfig-restarter",
        ("", "secrets", "get"),
        "an AppConfig naming a Secret reads it (reconcile.rs); the sample names a ConfigMap",
    ),
    (
        "appconfig-restarter",
        ("apps", "statefulsets", "patch"),
        "StatefulSets are restarted as Deployments are; the sample's workload is a Deployment",
    ),
    (
        "appconfig-restarter",
        ("apps", "daemonsets", "patch"),
        "DaemonSets are restarted as Deployments are; the sample's workload is a Deployment",
    ),
    (
        "http-peering",
        ("peering.kubecrew.io", "kindcustomhttps/status", "get"),
        INVALID_SPEC,
    ),
    (
        "http-peering",
        ("events.k8s.io", "events", "create"),
        WARNING_ONLY,
    ),
    (
        "http-peering",
        ("events.k8s.io", "events", "patch"),
        EVENT_SERIES,
    ),
    ("http-peering", ("", "configmaps", "get"), PRUNE),
    ("http-peering", ("", "configmaps", "delete"), PRUNE),
    ("http-peering", ("", "services", "get"), PRUNE),
    ("http-peering", ("", "services", "delete"), PRUNE),
    ("http-peering", ("apps", "deployments", "get"), PRUNE),
    ("http-peering", ("apps", "deployments", "delete"), PRUNE),
    (
        "collector",
        ("events.k8s.io", "events", "create"),
        WARNING_ONLY,
    ),
    (
        "collector",
        ("events.k8s.io", "events", "patch"),
        EVENT_SERIES,
    ),
    ("collector", ("", "secrets", "get"), PRUNE),
    ("collector", ("", "serviceaccounts", "get"), PRUNE),
    ("collector", ("", "services", "get"), PRUNE),
    ("collector", ("", "configmaps", "get"), OTHER_CHARTS),
    ("collector", ("", "configmaps", "create"), OTHER_CHARTS),
    ("collector", ("", "configmaps", "patch"), OTHER_CHARTS),
    ("collector", ("", "configmaps", "delete"), OTHER_CHARTS),
    ("collector", ("apps", "daemonsets", "get"), OTHER_CHARTS),
    ("collector", ("apps", "daemonsets", "create"), OTHER_CHARTS),
    ("collector", ("apps", "daemonsets", "patch"), OTHER_CHARTS),
    ("collector", ("apps", "daemonsets", "delete"), OTHER_CHARTS),
    ("collector", ("apps", "statefulsets", "get"), OTHER_CHARTS),
    (
        "collector",
        ("apps", "statefulsets", "create"),
        OTHER_CHARTS,
    ),
    ("collector", ("apps", "statefulsets", "patch"), OTHER_CHARTS),
    (
        "collector",
        ("apps", "statefulsets", "delete"),
        OTHER_CHARTS,
    ),
    (
        "collector",
        ("monitoring.coreos.com", "servicemonitors", "get"),
        MONITORING,
    ),
    (
        "collector",
        ("monitoring.coreos.com", "servicemonitors", "list"),
        MONITORING,
    ),
    (
        "collector",
        ("monitoring.coreos.com", "servicemonitors", "watch"),
        MONITORING,
    ),
    (
        "collector",
        ("monitoring.coreos.com", "servicemonitors", "create"),
        MONITORING,
    ),
    (
        "collector",
        ("monitoring.coreos.com", "servicemonitors", "patch"),
        MONITORING,
    ),
    (
        "collector",
        ("monitoring.coreos.com", "servicemonitors", "delete"),
        MONITORING,
    ),
];

/// Why collector may create, read, change and delete kinds the demo's chart does not render.
const OTHER_CHARTS: &str = "helm applies and deletes, and the drift check reads and dry-run \
    applies, the kinds of the charts Collectors name: ConfigMaps, DaemonSets and StatefulSets \
    are rendered by other collector charts (crates/collector/tests/charts/node-agent), not by \
    the demo's deploy/charts/collector";
/// Why `get <resource>/status` is granted.
const INVALID_SPEC: &str = "an object that does not match the schema gets InvalidSpec \
    conditions merged into its current status (operator-core run.rs); the samples are valid";
/// Why `patch events` is granted.
const EVENT_SERIES: &str = "kube-runtime's Recorder patches an Event that recurs (a series) \
    instead of creating another; the story publishes each Event once";
/// Why `create events` is granted to operators that only publish warnings.
const WARNING_ONLY: &str = "its only Event is the InvalidSpec warning; the samples are valid";
/// Why `get` and `delete` of a child kind are granted.
const PRUNE: &str = "pruning an inventory entry that is no longer rendered reads it, then \
    deletes it only if unchanged, re-reading it after a conflict (operator-core apply.rs); \
    the story's children stay rendered, and a conflict is a race";
/// Why ServiceMonitors are granted.
const MONITORING: &str = "ServiceMonitors are managed only where the Prometheus Operator's CRD \
    is served; devcluster has none";
