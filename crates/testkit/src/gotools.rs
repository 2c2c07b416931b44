//! The Kubernetes tools built from pinned Go modules: the real control plane (kube-apiserver,
//! kube-controller-manager, kube-scheduler, etcd), kwok, kubectl, helm and an in-memory OCI
//! registry.
//!
//! Each directory under `<workspace>/tools/` is a small Go module with a committed `go.mod` and
//! `go.sum` that pins one upstream module. [`ensure`] builds a module's binaries once into
//! `<tools>/go/<module>-<digest>/bin` (the digest covers every input, so a new pin builds anew)
//! under a file lock, and links each binary into [`bin_dir`]. Go's module and build caches live
//! in `<tools>/go/{mod,cache}`, so a CI machine that keeps the tools directory keeps them too.
//!
//! A first build takes many minutes on 2 cores. Progress (what is being built and the elapsed
//! time, at least every 30 s) goes straight to standard error, where neither cargo's test
//! harness nor the caller can swallow it, and a failed build names the module and its log file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::tools::{ToolError, locked, run_with_progress, tools_dir, workspace_root};

/// One Go module under `tools/` and the binaries it builds.
#[derive(Debug, Clone, Copy)]
pub struct Module {
    /// The directory under `tools/`.
    pub dir: &'static str,
    /// Package paths to build, each into a binary named after its last element (`.` is the
    /// module's own main package, named `output`).
    pub packages: &'static [&'static str],
    /// The binary name of the module's own main package (`.`).
    pub output: &'static str,
}

/// The Kubernetes binaries, all from one `k8s.io/kubernetes` pin.
pub const KUBERNETES: Module = Module {
    dir: "kubernetes",
    packages: &[
        "k8s.io/kubernetes/cmd/kube-apiserver",
        "k8s.io/kubernetes/cmd/kube-controller-manager",
        "k8s.io/kubernetes/cmd/kube-scheduler",
        "k8s.io/kubernetes/cmd/kubectl",
    ],
    output: "",
};

/// etcd, through a wrapper of its server's entry point.
pub const ETCD: Module = Module {
    dir: "etcd",
    packages: &["."],
    output: "etcd",
};

/// kwok: simulated nodes and pod lifecycles.
pub const KWOK: Module = Module {
    dir: "kwok",
    packages: &["sigs.k8s.io/kwok/cmd/kwok"],
    output: "",
};

/// helm v4.
pub const HELM: Module = Module {
    dir: "helm",
    packages: &["helm.sh/helm/v4/cmd/helm"],
    output: "",
};

/// go-containerregistry's in-memory OCI registry (`registry`), built from its own main package:
/// the OCI chart repository of the collector tests (`helm push`/`helm pull` over plain HTTP, no
/// credentials). `registry -port 0` listens on a free port of `localhost` and logs
/// `serving on port N` to standard error; blobs and manifests are lost when it exits.
pub const REGISTRY: Module = Module {
    dir: "registry",
    packages: &["github.com/google/go-containerregistry/cmd/registry"],
    output: "",
};

/// Every module, in the order `cargo xtask tools` builds them.
pub const ALL: &[Module] = &[ETCD, KUBERNETES, KWOK, HELM, REGISTRY];

/// The binaries a real control plane needs.
pub const CONTROL_PLANE: &[Module] = &[ETCD, KUBERNETES, KWOK];

/// `<tools>/bin`: one link per built binary.
pub fn bin_dir() -> PathBuf {
    tools_dir().join("bin")
}

/// `<tools>/share`: data files that come with the tools (kwok's stages).
pub fn share_dir() -> PathBuf {
    tools_dir().join("share")
}

/// The kwok Stage documents (kwokctl's defaults: fast node initialisation, node heartbeat with
/// a Lease, and pod ready/complete/delete), written from the pinned kwok module by [`ensure`].
pub fn kwok_stages() -> PathBuf {
    share_dir().join("kwok-stages.yaml")
}

/// Builds (once) the binaries of `module` and returns [`bin_dir`].
pub fn ensure(module: &Module) -> Result<PathBuf, ToolError> {
    locked(&format!("go-{}", module.dir), || build_if_needed(module))?;
    Ok(bin_dir())
}

/// Builds (once) every module in `modules` and returns [`bin_dir`].
pub fn ensure_all(modules: &[Module]) -> Result<PathBuf, ToolError> {
    for module in modules {
        ensure(module)?;
    }
    Ok(bin_dir())
}

/// The path of a built binary, building its module first if needed.
pub fn binary(module: &Module, name: &str) -> Result<PathBuf, ToolError> {
    Ok(ensure(module)?.join(name))
}

fn source_dir(module: &Module) -> PathBuf {
    workspace_root().join("tools").join(module.dir)
}

fn binary_names(module: &Module) -> Vec<&'static str> {
    module
        .packages
        .iter()
        .map(|p| {
            if *p == "." {
                module.output
            } else {
                p.rsplit('/').next().unwrap_or(p)
            }
        })
        .collect()
}

/// The version a `require` line of `go.mod` pins `path` at.
pub fn required_version(go_mod: &str, path: &str) -> Option<String> {
    go_mod.lines().find_map(|line| {
        let line = line.trim().trim_start_matches("require").trim();
        let mut words = line.split_whitespace();
        (words.next()? == path).then(|| words.next().map(str::to_owned))?
    })
}

/// The `-ldflags` that stamp the pinned version into a module's binaries, as upstream's own
/// release builds do (`kube-apiserver --version` prints the pinned version).
pub fn ldflags(module: &Module, go_mod: &str) -> String {
    let mut flags = vec!["-s".to_owned(), "-w".to_owned()];
    match module.dir {
        "kubernetes" => {
            if let Some(version) = required_version(go_mod, "k8s.io/kubernetes") {
                let mut parts = version.trim_start_matches('v').split('.');
                let (major, minor) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                for pkg in [
                    "k8s.io/client-go/pkg/version",
                    "k8s.io/component-base/version",
                ] {
                    for (key, value) in [
                        ("gitVersion", version.as_str()),
                        ("gitMajor", major),
                        ("gitMinor", minor),
                        ("gitTreeState", "clean"),
                        ("buildDate", "1970-01-01T00:00:00Z"),
                    ] {
                        flags.push(format!("-X {pkg}.{key}={value}"));
                    }
                }
            }
        }
        "helm" => {
            if let Some(version) = required_version(go_mod, "helm.sh/helm/v4") {
                flags.push(format!(
                    "-X helm.sh/helm/v4/internal/version.version={version}"
                ));
            }
        }
        _ => {}
    }
    flags.join(" ")
}

/// A digest of everything a build depends on: the module's files and the flags.
fn digest(module: &Module) -> Result<String, ToolError> {
    let dir = source_dir(module);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| e == "go" || e == "mod" || e == "sum")
        })
        .collect();
    files.sort();
    let mut hash = Sha256::new();
    for file in &files {
        hash.update(file.file_name().unwrap_or_default().as_encoded_bytes());
        hash.update(std::fs::read(file)?);
    }
    hash.update(module.packages.join(" "));
    let go_mod = std::fs::read_to_string(dir.join("go.mod"))?;
    hash.update(ldflags(module, &go_mod));
    Ok(hex::encode(&hash.finalize()[..6]))
}

fn build_if_needed(module: &Module) -> Result<(), ToolError> {
    let src = source_dir(module);
    let out = tools_dir()
        .join("go")
        .join(format!("{}-{}", module.dir, digest(module)?));
    let names = binary_names(module);
    let built = out.join("built");
    if !built.is_file() {
        build(module, &src, &out.join("bin"))?;
        if module.dir == KWOK.dir {
            write_kwok_stages(&src, &out)?;
        }
        std::fs::write(&built, names.join("\n"))?;
    }
    let bin = bin_dir();
    std::fs::create_dir_all(&bin)?;
    for name in &names {
        relink(&out.join("bin").join(name), &bin.join(name))?;
    }
    if module.dir == KWOK.dir {
        std::fs::create_dir_all(share_dir())?;
        relink(&out.join("kwok-stages.yaml"), &kwok_stages())?;
    }
    Ok(())
}

fn relink(target: &Path, link: &Path) -> Result<(), ToolError> {
    if std::fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    let tmp = link.with_extension("new-link");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link)?;
    Ok(())
}

/// The environment of every `go` command: caches in the tools directory, static binaries.
fn go(src: &Path) -> Command {
    let cache = tools_dir().join("go");
    let mut cmd = Command::new(std::env::var_os("GO").unwrap_or_else(|| "go".into()));
    cmd.current_dir(src)
        .env("GOMODCACHE", cache.join("mod"))
        .env("GOCACHE", cache.join("cache"))
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "-mod=readonly -buildvcs=false")
        .stdin(Stdio::null());
    cmd
}

fn build(module: &Module, src: &Path, bin: &Path) -> Result<(), ToolError> {
    std::fs::create_dir_all(bin)?;
    let names = binary_names(module).join(", ");
    let go_mod = std::fs::read_to_string(src.join("go.mod"))?;
    let mut dest = bin.as_os_str().to_owned();
    dest.push("/");
    let mut cmd = go(src);
    cmd.args(["build", "-trimpath", "-ldflags"])
        .arg(ldflags(module, &go_mod))
        .arg("-o")
        .arg(&dest)
        .args(module.packages);
    run_with_progress(
        &format!("{names} (tools/{})", module.dir),
        &format!("go-{}", module.dir),
        &mut cmd,
    )
    .map_err(|e| match e {
        ToolError::Io(io) if io.kind() == std::io::ErrorKind::NotFound => ToolError::Command {
            what: format!("go build of tools/{}", module.dir),
            detail: "go is not on PATH; install Go 1.26 or newer".into(),
        },
        other => other,
    })
}

/// kwokctl's default stages, read from the pinned kwok module's own files (never copied into
/// this repository), concatenated into one multi-document YAML for `kwok --config`.
fn write_kwok_stages(src: &Path, out: &Path) -> Result<(), ToolError> {
    let listed = go(src)
        .args(["list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kwok"])
        .output()?;
    if !listed.status.success() {
        return Err(ToolError::Command {
            what: "go list -m sigs.k8s.io/kwok".into(),
            detail: String::from_utf8_lossy(&listed.stderr).into_owned(),
        });
    }
    let kwok = PathBuf::from(String::from_utf8_lossy(&listed.stdout).trim());
    let stages = kwok.join("kustomize").join("stage");
    let mut yaml = String::new();
    for file in [
        "node/fast/node-initialize.yaml",
        "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
        "pod/fast/pod-ready.yaml",
        "pod/fast/pod-complete.yaml",
        "pod/fast/pod-delete.yaml",
    ] {
        let path = stages.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| ToolError::Command {
            what: format!("reading kwok's stage {}", path.display()),
            detail: e.to_string(),
        })?;
        yaml.push_str("---\n");
        yaml.push_str(&text);
        if !text.ends_with('\n') {
            yaml.push('\n');
        }
    }
    std::fs::write(out.join("kwok-stages.yaml"), yaml)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GO_MOD: &str = "module x\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes v1.37.2 // indirect\n\nrequire (\n\thelm.sh/helm/v4 v4.3.2\n)\n";

    #[test]
    fn required_versions_from_single_and_block_requires() {
        assert_eq!(
            required_version(GO_MOD, "k8s.io/kubernetes").as_deref(),
            Some("v1.37.2")
        );
        assert_eq!(
            required_version(GO_MOD, "helm.sh/helm/v4").as_deref(),
            Some("v4.3.2")
        );
        assert_eq!(required_version(GO_MOD, "k8s.io/api"), None);
    }

    #[test]
    fn kubernetes_binaries_carry_the_pinned_version() {
        let flags = ldflags(&KUBERNETES, GO_MOD);
        assert!(flags.contains("-X k8s.io/component-base/version.gitVersion=v1.37.2"));
        assert!(flags.contains("-X k8s.io/client-go/pkg/version.gitMinor=37"));
        assert!(flags.contains("-X k8s.io/component-base/version.gitMajor=1"));
        assert!(ldflags(&HELM, GO_MOD).contains("version.version=v4.3.2"));
    }

    #[test]
    fn binaries_are_named_after_their_packages() {
        assert_eq!(
            binary_names(&KUBERNETES),
            [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kubectl"
            ]
        );
        assert_eq!(binary_names(&ETCD), ["etcd"]);
        assert_eq!(binary_names(&REGISTRY), ["registry"]);
    }

    #[test]
    fn the_registry_is_built_by_xtask_tools_but_is_no_part_of_the_control_plane() {
        let dirs = |modules: &[Module]| modules.iter().map(|m| m.dir).collect::<Vec<_>>();
        assert_eq!(
            dirs(ALL),
            ["etcd", "kubernetes", "kwok", "helm", "registry"]
        );
        assert_eq!(dirs(CONTROL_PLANE), ["etcd", "kubernetes", "kwok"]);
    }

    #[test]
    fn every_module_is_committed_with_its_sums() {
        for module in ALL {
            let dir = source_dir(module);
            assert!(dir.join("go.mod").is_file(), "{} has a go.mod", module.dir);
            assert!(dir.join("go.sum").is_file(), "{} has a go.sum", module.dir);
        }
    }
}
