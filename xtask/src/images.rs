//! `cargo xtask images`: builds one container image per shipped binary from the workspace's
//! Dockerfile, with docker or podman, whichever is installed.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// The binaries shipped as images: the operators and the programs they deploy or inject.
pub const IMAGES: &[&str] = &[
    "kafkanotify",
    "kafkanotify-client",
    "collector",
    "appconfig-restarter",
    "http-peering",
    "http-peer",
    "nes-agent",
    "nes-controller",
    "nes-manager",
    "nes-cliserver",
    "nescli",
];

/// What to build and where to put it.
pub struct Options {
    /// Registry and path prefix, e.g. `ghcr.io/kubecrew`.
    pub registry: String,
    /// Image tag.
    pub tag: String,
    /// Push after building.
    pub push: bool,
    /// Only these binaries (all when empty).
    pub only: Vec<String>,
}

/// The image reference of `binary`.
pub fn reference(registry: &str, binary: &str, tag: &str) -> String {
    format!("{}/{binary}:{tag}", registry.trim_end_matches('/'))
}

/// The Dockerfile stage an image is built from: the collector's carries helm.
pub fn target(binary: &str) -> &'static str {
    match binary {
        "collector" => "runtime-collector",
        _ => "runtime",
    }
}

/// The binaries to build: `only` (each checked against [`IMAGES`]) or all of them.
fn selection(only: &[String]) -> anyhow::Result<Vec<&'static str>> {
    if only.is_empty() {
        return Ok(IMAGES.to_vec());
    }
    only.iter()
        .map(|name| {
            IMAGES.iter().copied().find(|i| i == name).with_context(|| {
                format!(
                    "no image named {name:?}; the images are: {}",
                    IMAGES.join(", ")
                )
            })
        })
        .collect()
}

/// The first container engine that answers: docker, else podman. `info` rather than
/// `--version`, because a docker CLI without a reachable daemon cannot build anything.
fn engine() -> Option<&'static str> {
    ["docker", "podman"].into_iter().find(|e| {
        Command::new(e)
            .arg("info")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Builds (and pushes) the selected images.
pub fn run(root: &Path, options: &Options) -> anyhow::Result<()> {
    let binaries = selection(&options.only)?;
    let Some(engine) = engine() else {
        bail!(
            "no container engine answers (`docker info` and `podman info` both fail): \
             install and start docker or podman to build images \
             (the Dockerfile at the workspace root builds one binary per image: \
             `docker build --build-arg BINARY=<name> .`)"
        );
    };
    for binary in binaries {
        let image = reference(&options.registry, binary, &options.tag);
        eprintln!("xtask: {engine} build {image}");
        let status = Command::new(engine)
            .current_dir(root)
            .args(["build", "--build-arg"])
            .arg(format!("BINARY={binary}"))
            .args(["--target", target(binary)])
            .args(["--tag", &image, "."])
            .status()
            .with_context(|| format!("running {engine} build"))?;
        crate::check(status, &format!("building {image}"))?;
        if options.push {
            let status = Command::new(engine).args(["push", &image]).status()?;
            crate::check(status, &format!("pushing {image}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_join_registry_name_and_tag() {
        assert_eq!(
            reference("ghcr.io/kubecrew/", "collector", "0.1.0"),
            "ghcr.io/kubecrew/collector:0.1.0"
        );
    }

    #[test]
    fn a_selection_names_known_images_only() {
        assert_eq!(selection(&[]).unwrap().len(), IMAGES.len());
        assert_eq!(selection(&["nes-agent".into()]).unwrap(), vec!["nes-agent"]);
        let err = selection(&["nope".into()]).unwrap_err().to_string();
        assert!(err.contains("no image named \"nope\""), "{err}");
    }

    #[test]
    fn every_image_is_a_binary_of_the_workspace() {
        let root = testkit::tools::workspace_root();
        for binary in IMAGES {
            let named_after_crate = root.join("crates").join(binary).join("src/main.rs");
            let extra_bin = std::fs::read_dir(root.join("crates"))
                .unwrap()
                .flatten()
                .any(|c| c.path().join(format!("src/bin/{binary}.rs")).exists());
            assert!(
                named_after_crate.exists() || extra_bin,
                "{binary} is not a binary of the workspace"
            );
        }
    }
}
