//! `cargo xtask crds`: regenerates `deploy/crds/<operator>.yaml` from the Rust types of every
//! operator, by running each operator binary's `crd` subcommand. An operator is a workspace
//! package that depends on `operator-core` and has a binary of its own name. `--check` fails
//! when the committed YAML differs from what the types generate (CI runs it).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

/// Workspace packages that are operators (depend on operator-core, have a same-named binary).
fn operators(root: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: Value = serde_json::from_slice(&out.stdout)?;
    let mut names = Vec::new();
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        let name = pkg["name"].as_str().unwrap_or_default();
        let uses_core = pkg["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["name"] == "operator-core" && d["kind"].is_null());
        let has_bin = pkg["targets"].as_array().into_iter().flatten().any(|t| {
            t["name"] == name
                && t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "bin"))
        });
        if uses_core && has_bin {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Regenerates (or with `check`, verifies) the CRD YAML of every operator.
pub fn run(root: &Path, check: bool) -> anyhow::Result<()> {
    let dir = root.join("deploy").join("crds");
    std::fs::create_dir_all(&dir)?;
    let names = operators(root)?;
    if names.is_empty() {
        eprintln!("xtask crds: no operator crates yet; nothing to generate");
    }
    let mut stale = Vec::new();
    for name in &names {
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root)
            .args([
                "run",
                "--quiet",
                "--locked",
                "--package",
                name,
                "--bin",
                name,
                "--",
                "crd",
            ])
            .output()
            .with_context(|| format!("running {name} crd"))?;
        if !out.status.success() {
            bail!(
                "{name} crd failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let path = dir.join(format!("{name}.yaml"));
        let generated = String::from_utf8(out.stdout)?;
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed == generated {
            continue;
        }
        if check {
            stale.push(path.display().to_string());
        } else {
            std::fs::write(&path, generated)?;
            eprintln!("xtask crds: wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        bail!(
            "CRD YAML is out of date with the Rust types: {}; run `cargo xtask crds` and commit",
            stale.join(", ")
        );
    }
    Ok(())
}
