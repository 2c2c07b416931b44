//! `cargo xtask deploy`, `undeploy` and `installer`: one kustomize overlay of `deploy/overlays`,
//! rendered with `kubectl kustomize`, kubecrew's image references optionally rewritten, then
//! applied server-side (CRDs and Namespaces first, CRDs waited for until Established, then the
//! rest, then the Deployments' rollouts), deleted (reverse order, CRDs last), or written out as
//! one installer file.
//!
//! - [`manifest`]: the rendered objects, their order, the image rewrite (pure);
//! - [`summary`]: what is printed at the end (pure);
//! - [`kubectl`]: kubectl against the chosen cluster, with deadlines;
//! - [`apply`], [`delete`]: the deploy and undeploy sequences.

mod apply;
mod delete;
mod manifest;
mod summary;

#[cfg(test)]
mod cluster_tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

pub use crate::kubectl::Target;
pub use apply::{DeployOptions, run as run_deploy};
pub use delete::{UndeployOptions, run as run_undeploy};
pub use manifest::ImageOverride;

use crate::kubectl::Kubectl;
use manifest::Object;

/// The field manager of every apply, so `managedFields` say who set what.
pub const FIELD_MANAGER: &str = "kubecrew-xtask";

/// How long rendering may take.
const RENDER_LIMIT: Duration = Duration::from_secs(60);

/// The directory of overlay `name`, or an error listing the overlays there are.
pub fn overlay_dir(root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let overlays = crate::validate::overlays(root)?;
    let names: Vec<String> = overlays
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    match names.iter().position(|n| n == name) {
        Some(i) => Ok(overlays[i].clone()),
        None => bail!(
            "no overlay {name:?} in {}; the overlays are: {}",
            root.join("deploy").join("overlays").display(),
            names.join(", ")
        ),
    }
}

/// Renders overlay `name` and rewrites kubecrew's images as `images` says; the objects in
/// kustomize's order.
pub async fn render(
    kubectl: &Kubectl,
    root: &Path,
    name: &str,
    images: &ImageOverride,
) -> anyhow::Result<Vec<Object>> {
    images.validate()?;
    let dir = overlay_dir(root, name)?;
    let dir = dir.to_string_lossy();
    let rendered = kubectl
        .run(&["kustomize", &dir], None, RENDER_LIMIT)
        .await
        .with_context(|| format!("rendering deploy/overlays/{name}"))?;
    let (rewritten, _) = manifest::rewrite_images(&rendered, crate::images::IMAGES, images);
    let objects = manifest::parse(&rewritten)
        .with_context(|| format!("reading the rendered deploy/overlays/{name}"))?;
    if objects.is_empty() {
        bail!("deploy/overlays/{name} renders no objects");
    }
    Ok(objects)
}

/// What `cargo xtask installer` writes.
pub struct InstallerOptions {
    /// The overlay's name.
    pub overlay: String,
    /// Registry and tag of kubecrew's images.
    pub images: ImageOverride,
    /// The file (relative paths are relative to the workspace root).
    pub output: PathBuf,
}

/// Writes the rendered overlay, CRDs first, as one YAML file with a header saying how it was
/// made and how to apply it. Returns the file's path and the objects written.
pub async fn installer(
    root: &Path,
    options: &InstallerOptions,
) -> anyhow::Result<(PathBuf, Vec<Object>)> {
    let kubectl = Kubectl::new(Target::default())?;
    let objects =
        manifest::apply_order(&render(&kubectl, root, &options.overlay, &options.images).await?);
    let path = root.join(&options.output);
    let header = manifest::installer_header(
        &options.overlay,
        &options.images,
        &options.output.to_string_lossy(),
        &objects,
    );
    let text = format!("{header}{}", manifest::stream(&objects));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok((path, objects))
}

/// Runs `future` on its own tokio runtime (the rest of xtask is synchronous).
pub fn block_on<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(future)
}

/// `cargo xtask installer`, printing what it wrote.
pub fn run_installer(root: &Path, options: &InstallerOptions) -> anyhow::Result<()> {
    let (path, objects) = block_on(installer(root, options))?;
    eprintln!(
        "xtask installer: wrote {} ({} objects from deploy/overlays/{}):",
        path.display(),
        objects.len(),
        options.overlay
    );
    for line in summary::kind_table(&objects) {
        eprintln!("{line}");
    }
    eprintln!(
        "apply it with: kubectl apply --server-side -f {}",
        options.output.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_overlay_is_an_error_listing_the_overlays() {
        let root = testkit::tools::workspace_root();
        let err = overlay_dir(&root, "edg").unwrap_err().to_string();
        assert!(err.contains("no overlay \"edg\""), "{err}");
        assert!(err.contains("all, "), "{err}");
        assert!(err.contains("edge"), "{err}");
        // Only the names listed: no path tricks.
        assert!(overlay_dir(&root, "../overlays/edge").is_err());
        assert!(
            overlay_dir(&root, "edge")
                .unwrap()
                .ends_with("overlays/edge")
        );
    }

    /// Every image a base names is one of kubecrew's, so `--image-tag` changes them all.
    #[tokio::test]
    async fn every_image_of_the_bases_is_rewritten() {
        let root = testkit::tools::workspace_root();
        let kubectl = Kubectl::new(Target::default()).unwrap();
        let change = ImageOverride {
            registry: Some("registry.invalid/kc".into()),
            tag: Some("t1".into()),
        };
        let objects = render(&kubectl, &root, "all", &change).await.unwrap();
        let text = manifest::stream(&objects);
        assert!(!text.contains("ghcr.io/kubecrew"), "{text}");
        let images: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("image: "))
            .collect();
        assert_eq!(images.len(), 7, "{images:?}");
        for image in images {
            assert!(
                image.starts_with("registry.invalid/kc/") && image.ends_with(":t1"),
                "{image}"
            );
        }
        assert!(text.contains("value: registry.invalid/kc/nes-agent:t1"));
        let bad = ImageOverride {
            registry: None,
            tag: Some("no spaces".into()),
        };
        let err = render(&kubectl, &root, "all", &bad).await.unwrap_err();
        assert!(err.to_string().contains("invalid image tag"), "{err}");
    }
}
