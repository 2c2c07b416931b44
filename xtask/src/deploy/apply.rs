//! `cargo xtask deploy`: CRDs and Namespaces first (CRDs waited for until Established), then
//! the rest, server-side, then every applied Deployment's rollout.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use super::manifest::{self, ImageOverride, Object};
use super::summary::{self, Rollout, RolloutResult};
use super::{FIELD_MANAGER, render};
use crate::kubectl::{Kubectl, Target};

/// How long one apply may take (the server answers in seconds; this only bounds a hang).
const APPLY_LIMIT: Duration = Duration::from_secs(300);

/// Extra time kubectl gets beyond its own `--timeout` before it is killed.
const GRACE: Duration = Duration::from_secs(30);

/// What `cargo xtask deploy` does.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// The overlay's name (a directory of `deploy/overlays`).
    pub overlay: String,
    /// Registry and tag of kubecrew's images.
    pub images: ImageOverride,
    /// A server-side dry run: everything is checked, nothing changes.
    pub dry_run: bool,
    /// How long the CRDs may take to be Established, and the rollouts to finish.
    pub timeout: Duration,
    /// Wait for the Deployments' rollouts.
    pub wait: bool,
    /// Take over fields another field manager owns (`--force-conflicts`).
    pub force_conflicts: bool,
    /// The cluster.
    pub target: Target,
}

/// What a deploy did.
#[derive(Debug)]
pub struct Report {
    /// The lines of the summary.
    pub summary: Vec<String>,
    /// The rollouts, waited for or not.
    pub rollouts: Vec<RolloutResult>,
    /// The rollout timeout, for the messages.
    pub timeout: Duration,
}

impl Report {
    /// An error naming every Deployment that did not roll out.
    pub fn result(&self) -> anyhow::Result<()> {
        match summary::rollout_error(&self.rollouts, self.timeout) {
            Some(error) => bail!(error),
            None => Ok(()),
        }
    }
}

/// Renders, applies and waits; prints progress on stderr. Errors are failures to render,
/// apply or see the CRDs Established; how the rollouts went is in the [`Report`].
pub async fn deploy(root: &Path, options: &DeployOptions) -> anyhow::Result<Report> {
    let kubectl = Kubectl::new(options.target.clone())?;
    let objects =
        manifest::apply_order(&render(&kubectl, root, &options.overlay, &options.images).await?);
    let (first, rest): (Vec<Object>, Vec<Object>) = objects
        .into_iter()
        .partition(|o| o.is_crd() || o.is_namespace());
    let mode = if options.dry_run {
        "a server-side dry run"
    } else {
        "server-side apply"
    };
    eprintln!(
        "xtask deploy: deploy/overlays/{} on {} ({mode}, field manager {FIELD_MANAGER})",
        options.overlay,
        kubectl.describe_target()
    );

    let mut applied = Vec::new();
    let mut client_only = Vec::new();
    let mut unchecked = Vec::new();
    apply(&kubectl, &first, options, ServerDryRun(options.dry_run)).await?;
    applied.extend(first.iter().cloned());
    let crds: Vec<&Object> = first.iter().filter(|o| o.is_crd()).collect();
    if options.dry_run {
        let (missing_namespaces, missing_crds) = missing(&kubectl, &first).await?;
        let plan = manifest::dry_run_plan(&rest, &missing_namespaces, &missing_crds);
        apply(&kubectl, &plan.server, options, ServerDryRun(true)).await?;
        applied.extend(plan.server);
        client_dry_run(&kubectl, &plan.client).await?;
        client_only = plan.client;
        unchecked = plan.unchecked;
    } else {
        if !crds.is_empty() {
            wait_established(&kubectl, &crds, options.timeout).await?;
        }
        apply(&kubectl, &rest, options, ServerDryRun(false)).await?;
        applied.extend(rest);
    }

    let deployments: Vec<&Object> = applied
        .iter()
        .filter(|o| o.kind == "Deployment" && o.group() == "apps")
        .collect();
    let rollouts = if options.dry_run || !options.wait {
        deployments
            .iter()
            .map(|d| RolloutResult {
                deployment: d.display_name(),
                rollout: Rollout::NotWaited,
            })
            .collect()
    } else {
        eprintln!(
            "xtask deploy: waiting up to {}s for {} Deployments to roll out",
            options.timeout.as_secs(),
            deployments.len()
        );
        rollouts(&kubectl, &deployments, options.timeout).await
    };
    let verb = if options.dry_run {
        "checked by a server-side dry run (nothing changed)"
    } else {
        "applied"
    };
    let lines = summary::lines(
        verb,
        &applied,
        &client_only,
        &unchecked,
        &rollouts,
        options.timeout,
    );
    Ok(Report {
        summary: lines,
        rollouts,
        timeout: options.timeout,
    })
}

/// Whether an apply is a server-side dry run.
#[derive(Clone, Copy)]
struct ServerDryRun(bool);

/// `kubectl apply --server-side` of `objects` in one call (kubectl applies them in order).
async fn apply(
    kubectl: &Kubectl,
    objects: &[Object],
    options: &DeployOptions,
    dry_run: ServerDryRun,
) -> anyhow::Result<()> {
    if objects.is_empty() {
        return Ok(());
    }
    let manager = format!("--field-manager={FIELD_MANAGER}");
    let mut args = vec!["apply", "--server-side", &manager];
    if options.force_conflicts {
        args.push("--force-conflicts");
    }
    if dry_run.0 {
        args.push("--dry-run=server");
    }
    args.extend(["-f", "-"]);
    let printed = kubectl
        .run(&args, Some(&manifest::stream(objects)), APPLY_LIMIT)
        .await?;
    for line in printed.lines() {
        eprintln!("  {line}");
    }
    Ok(())
}

/// Objects in a namespace the dry run did not create: kubectl's client-side checks only
/// (`--server-side` refuses `--dry-run=client`, and the server would answer "namespace not found").
async fn client_dry_run(kubectl: &Kubectl, objects: &[Object]) -> anyhow::Result<()> {
    if objects.is_empty() {
        return Ok(());
    }
    let printed = kubectl
        .run(
            &["apply", "--dry-run=client", "-f", "-"],
            Some(&manifest::stream(objects)),
            APPLY_LIMIT,
        )
        .await?;
    for line in printed.lines() {
        eprintln!("  {line}");
    }
    Ok(())
}

/// The overlay's Namespaces and CRDs that do not exist on the cluster.
async fn missing(
    kubectl: &Kubectl,
    first: &[Object],
) -> anyhow::Result<(Vec<String>, Vec<Object>)> {
    if first.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let refs: Vec<String> = first.iter().map(resource_ref).collect();
    let mut args = vec!["get", "--ignore-not-found", "-o", "name"];
    args.extend(refs.iter().map(String::as_str));
    let present = kubectl.run(&args, None, APPLY_LIMIT).await?;
    let present: Vec<&str> = present.lines().map(str::trim).collect();
    let absent = |o: &&Object| !present.contains(&resource_ref(o).as_str());
    let namespaces = first
        .iter()
        .filter(|o| o.is_namespace())
        .filter(absent)
        .map(|o| o.name.clone())
        .collect();
    let crds = first
        .iter()
        .filter(|o| o.is_crd())
        .filter(absent)
        .cloned()
        .collect();
    Ok((namespaces, crds))
}

/// `kind/name` as `kubectl get` takes it, for the two kinds the deploy looks up.
fn resource_ref(object: &Object) -> String {
    format!("{}/{}", kind_prefix(object), object.name)
}

fn kind_prefix(object: &Object) -> &'static str {
    if object.is_crd() {
        "customresourcedefinition.apiextensions.k8s.io"
    } else {
        "namespace"
    }
}

/// Waits until every CRD is Established, so the custom resources that follow are served.
async fn wait_established(
    kubectl: &Kubectl,
    crds: &[&Object],
    timeout: Duration,
) -> anyhow::Result<()> {
    let limit = format!("--timeout={}s", timeout.as_secs());
    let names: Vec<String> = crds.iter().map(|c| resource_ref(c)).collect();
    let mut args = vec!["wait", "--for=condition=Established", &limit];
    args.extend(names.iter().map(String::as_str));
    kubectl
        .run(&args, None, timeout + GRACE)
        .await
        .context("waiting for the CRDs to be Established")?;
    eprintln!("  {} CRDs Established", crds.len());
    Ok(())
}

/// `kubectl rollout status` for every Deployment at once, each bounded by `timeout`; results in
/// the Deployments' order.
async fn rollouts(
    kubectl: &Kubectl,
    deployments: &[&Object],
    timeout: Duration,
) -> Vec<RolloutResult> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, deployment) in deployments.iter().enumerate() {
        let kubectl = kubectl.clone();
        let name = format!("deployment/{}", deployment.name);
        let namespace = deployment
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let display = deployment.display_name();
        tasks.spawn(async move {
            let limit = format!("--timeout={}s", timeout.as_secs());
            let args = ["rollout", "status", &name, "-n", &namespace, &limit];
            let rollout = match kubectl.output(&args, None, timeout + GRACE).await {
                Ok(out) if out.success => Rollout::Done,
                Ok(out) if summary::is_timeout(&out.stderr) => Rollout::TimedOut(out.stderr),
                Ok(out) => Rollout::Failed(out.stderr),
                Err(e) => Rollout::TimedOut(format!("{e:#}")),
            };
            match &rollout {
                Rollout::Done => eprintln!("  deployment {display} rolled out"),
                Rollout::TimedOut(m) | Rollout::Failed(m) => {
                    eprintln!("  deployment {display} did not roll out: {m}")
                }
                Rollout::NotWaited => {}
            }
            (
                i,
                RolloutResult {
                    deployment: display,
                    rollout,
                },
            )
        });
    }
    let mut results: Vec<(usize, RolloutResult)> = tasks.join_all().await.into_iter().collect();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// `cargo xtask deploy` on its own runtime.
pub fn run(root: &Path, options: &DeployOptions) -> anyhow::Result<()> {
    let report = super::block_on(deploy(root, options))?;
    for line in &report.summary {
        eprintln!("{line}");
    }
    report.result()
}
