//! `cargo xtask validate`: renders every kustomize overlay under `deploy/overlays/` with
//! kubectl and validates each object against the Kubernetes OpenAPI schemas of the version the
//! workspace builds for (the PyPI `kubernetes-validate` package, strict: unknown fields fail).
//! CustomResourceDefinitions are checked as `apiextensions.k8s.io/v1` objects like any other.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The Kubernetes version the manifests must be valid for: the workspace's k8s-openapi
/// feature (`v1_33`), the oldest API the operators support.
pub const KUBERNETES_VERSION: &str = "1.33.0";

/// The overlay directories under `deploy/overlays`, sorted.
pub fn overlays(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("deploy").join("overlays"))
        .context("reading deploy/overlays")?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("kustomization.yaml").exists())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Renders `dir` with `kubectl kustomize`.
pub fn render(kubectl: &Path, dir: &Path) -> anyhow::Result<String> {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .context("running kubectl kustomize")?;
    if !out.status.success() {
        bail!(
            "kubectl kustomize {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Validates the YAML stream in `file`; the error carries the validator's messages.
pub fn validate_file(python: &Path, file: &Path) -> anyhow::Result<()> {
    let out = Command::new(python)
        .args([
            "-m",
            "kubernetes_validate",
            "--kubernetes-version",
            KUBERNETES_VERSION,
        ])
        .args(["--strict", "--quiet"])
        .arg(file)
        .output()
        .context("running kubernetes-validate")?;
    if !out.status.success() {
        bail!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Renders and validates every overlay.
pub fn run(root: &Path) -> anyhow::Result<()> {
    let kubectl = testkit::tools::kubectl()?;
    let python = testkit::tools::python().context("installing kubernetes-validate")?;
    let out_dir = root.join("target").join("validate");
    std::fs::create_dir_all(&out_dir)?;
    let mut failed = Vec::new();
    for dir in overlays(root)? {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let rendered = render(&kubectl, &dir)?;
        let objects =
            rendered.matches("\nkind: ").count() + usize::from(rendered.starts_with("kind: "));
        let file = out_dir.join(format!("{name}.yaml"));
        std::fs::write(&file, &rendered)?;
        match validate_file(&python, &file) {
            Ok(()) => eprintln!(
                "xtask validate: overlays/{name}: {objects} objects valid for Kubernetes {KUBERNETES_VERSION}"
            ),
            Err(e) => {
                eprintln!("xtask validate: overlays/{name}: INVALID\n{e:#}");
                failed.push(name);
            }
        }
    }
    if !failed.is_empty() {
        bail!("invalid overlays: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_overlay_is_found() {
        let root = testkit::tools::workspace_root();
        let names: Vec<String> = overlays(&root)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for expected in ["all", "edge", "nes", "kafkanotify"] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
    }

    /// The validator is strict: a misspelt field or a wrong type fails, a good object passes.
    #[test]
    fn the_validator_rejects_what_kubernetes_would() {
        let python = testkit::tools::python().expect("python with kubernetes-validate");
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.yaml");
        std::fs::write(
            &good,
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: [{port: 80}]\n",
        )
        .unwrap();
        validate_file(&python, &good).expect("a valid Service");
        let typo = dir.path().join("typo.yaml");
        std::fs::write(
            &typo,
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  prots: [{port: 80}]\n",
        )
        .unwrap();
        let err = validate_file(&python, &typo).unwrap_err().to_string();
        assert!(err.contains("prots"), "{err}");
        let wrong_type = dir.path().join("type.yaml");
        std::fs::write(
            &wrong_type,
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: two\n  selector: {}\n  template: {}\n",
        )
        .unwrap();
        assert!(validate_file(&python, &wrong_type).is_err());
    }
}
