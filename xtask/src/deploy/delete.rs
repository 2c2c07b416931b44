//! `cargo xtask undeploy`: deletes what an overlay renders, in reverse order, Namespaces after
//! their contents (unless something else still runs there), CRDs last and only when asked.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use super::manifest::{self, ImageOverride, Object};
use super::render;
use super::summary;
use crate::kubectl::{Kubectl, Target};

/// Extra time kubectl gets beyond its own `--timeout` before it is killed.
const GRACE: Duration = Duration::from_secs(30);

/// What `cargo xtask undeploy` does.
#[derive(Debug, Clone)]
pub struct UndeployOptions {
    /// The overlay's name.
    pub overlay: String,
    /// Leave the CRDs (and so every custom resource) in place.
    pub keep_crds: bool,
    /// How long each deletion may wait for the objects to be gone.
    pub timeout: Duration,
    /// The cluster.
    pub target: Target,
}

/// What an undeploy did.
#[derive(Debug, Default)]
pub struct Report {
    /// Objects deleted (or already absent).
    pub deleted: Vec<Object>,
    /// Namespaces kept, with the reason.
    pub kept_namespaces: Vec<(String, String)>,
    /// CRDs kept by `--keep-crds`.
    pub kept_crds: Vec<Object>,
}

/// Deletes the overlay's objects; prints progress on stderr.
pub async fn undeploy(root: &Path, options: &UndeployOptions) -> anyhow::Result<Report> {
    let kubectl = Kubectl::new(options.target.clone())?;
    // Images do not matter for a deletion: objects are matched by kind, namespace and name.
    let objects = render(&kubectl, root, &options.overlay, &ImageOverride::default()).await?;
    eprintln!(
        "xtask undeploy: deploy/overlays/{} from {}",
        options.overlay,
        kubectl.describe_target()
    );
    let ordered = manifest::delete_order(&objects);
    let (contents, rest): (Vec<Object>, Vec<Object>) = ordered
        .into_iter()
        .partition(|o| !o.is_crd() && !o.is_namespace());
    let (namespaces, crds): (Vec<Object>, Vec<Object>) =
        rest.into_iter().partition(Object::is_namespace);
    let mut report = Report::default();

    delete(&kubectl, &contents, options.timeout).await?;
    report.deleted.extend(contents.iter().cloned());

    let mut doomed = Vec::new();
    for namespace in namespaces {
        let live = kubectl
            .run(
                &["get", "deployments", "-n", &namespace.name, "-o", "json"],
                None,
                options.timeout + GRACE,
            )
            .await?;
        let live: Value = serde_json::from_str(&live).context("kubectl get printed no JSON")?;
        let others = foreign_deployments(&live, &contents);
        if others.is_empty() {
            doomed.push(namespace);
        } else {
            let why = format!(
                "it still holds Deployments this overlay did not create: {}",
                others.join(", ")
            );
            eprintln!(
                "xtask undeploy: keeping namespace {}: {why}",
                namespace.name
            );
            report.kept_namespaces.push((namespace.name.clone(), why));
        }
    }
    delete(&kubectl, &doomed, options.timeout).await?;
    report.deleted.extend(doomed);

    if options.keep_crds {
        if !crds.is_empty() {
            eprintln!(
                "xtask undeploy: keeping {} CRDs (--keep-crds): {}",
                crds.len(),
                names(&crds)
            );
        }
        report.kept_crds = crds;
    } else if !crds.is_empty() {
        eprintln!(
            "xtask undeploy: WARNING: deleting {} CustomResourceDefinitions ({}); this DELETES \
             EVERY CUSTOM RESOURCE of their kinds in every namespace. Pass --keep-crds to keep \
             them.",
            crds.len(),
            names(&crds)
        );
        delete(&kubectl, &crds, options.timeout).await?;
        report.deleted.extend(crds);
    }
    Ok(report)
}

/// `kubectl delete --ignore-not-found --wait` of `objects` in one call, in their order.
async fn delete(kubectl: &Kubectl, objects: &[Object], timeout: Duration) -> anyhow::Result<()> {
    if objects.is_empty() {
        return Ok(());
    }
    let limit = format!("--timeout={}s", timeout.as_secs());
    let printed = kubectl
        .run(
            &["delete", "--ignore-not-found", "--wait", &limit, "-f", "-"],
            Some(&manifest::stream(objects)),
            timeout + GRACE,
        )
        .await?;
    for line in printed.lines() {
        eprintln!("  {line}");
    }
    Ok(())
}

/// The Deployments of a `kubectl get deployments -o json` list that are not among `ours`
/// (`namespace/name`): the namespace is not this overlay's alone (another overlay shares
/// kubecrew-system, or the user runs things there), so deleting it would delete them too.
pub fn foreign_deployments(list: &Value, ours: &[Object]) -> Vec<String> {
    let items = list
        .get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    items
        .iter()
        .filter_map(|item| {
            let name = item.pointer("/metadata/name")?.as_str()?;
            let namespace = item.pointer("/metadata/namespace")?.as_str()?;
            let mine = ours.iter().any(|o| {
                o.kind == "Deployment"
                    && o.name == name
                    && o.namespace.as_deref() == Some(namespace)
            });
            (!mine).then(|| format!("{namespace}/{name}"))
        })
        .collect()
}

fn names(objects: &[Object]) -> String {
    objects
        .iter()
        .map(|o| o.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `cargo xtask undeploy` on its own runtime.
pub fn run(root: &Path, options: &UndeployOptions) -> anyhow::Result<()> {
    let report = super::block_on(undeploy(root, options))?;
    eprintln!(
        "{} objects deleted (or already absent):",
        report.deleted.len()
    );
    for line in summary::kind_table(&report.deleted) {
        eprintln!("{line}");
    }
    for (namespace, why) in &report.kept_namespaces {
        eprintln!("namespace {namespace} kept: {why}");
    }
    if !report.kept_crds.is_empty() {
        eprintln!("{} CRDs kept (--keep-crds)", report.kept_crds.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployments_of_others_keep_a_namespace() {
        let ours = Object {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "kafkanotify".into(),
            namespace: Some("kubecrew-system".into()),
            defines: None,
            yaml: String::new(),
        };
        let deployment =
            |name: &str| json!({"metadata": {"name": name, "namespace": "kubecrew-system"}});
        let list = json!({"items": [deployment("kafkanotify"), deployment("collector")]});
        assert_eq!(
            foreign_deployments(&list, std::slice::from_ref(&ours)),
            ["kubecrew-system/collector"]
        );
        let list = json!({"items": [deployment("kafkanotify")]});
        assert!(foreign_deployments(&list, &[ours]).is_empty());
        assert!(foreign_deployments(&json!({"items": []}), &[]).is_empty());
    }
}
