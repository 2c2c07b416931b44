//! The stage for the story: binaries, devcluster, the Kafka broker, CRDs and RBAC, the
//! operators as processes, and the samples.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::process::Command;

use super::steps::poll;
use super::{Ctx, http, kubectl};

/// Step names.
pub const BUILD: &str = "build";
pub const CLUSTER: &str = "cluster";
pub const KAFKA: &str = "kafka";
pub const INSTALL: &str = "crds+rbac";
pub const OPERATORS: &str = "operators";
pub const SAMPLES: &str = "samples";

/// The binaries the demo runs.
const BINARIES: &[&str] = &[
    "devcluster",
    "kafkanotify",
    "kafkanotify-client",
    "appconfig-restarter",
    "http-peering",
    "http-peer",
    "collector",
];

/// How long devcluster may take to serve, and the operators to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// `cargo build --workspace --bins --all-features --locked`, then finds the target directory.
pub async fn build(ctx: &mut Ctx) -> anyhow::Result<Option<String>> {
    ctx.out.info(
        "cargo build --workspace --bins --all-features --locked (a debug build: the first run \
         compiles the workspace, about 10 minutes on 2 cores; later runs take seconds)",
    );
    let status = cargo()
        .current_dir(&ctx.root)
        .args([
            "build",
            "--workspace",
            "--bins",
            "--all-features",
            "--locked",
        ])
        .kill_on_drop(true)
        .status()
        .await
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    let metadata = cargo()
        .current_dir(&ctx.root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .kill_on_drop(true)
        .output()
        .await
        .context("running cargo metadata")?;
    if !metadata.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&metadata.stderr).trim()
        );
    }
    ctx.bins = target_directory(&metadata.stdout)?.join("debug");
    for name in BINARIES {
        if !ctx.bin(name).is_file() {
            bail!("{} was not built", ctx.bin(name).display());
        }
    }
    ctx.out.info(&format!("binaries in {}", ctx.bins.display()));
    Ok(None)
}

/// cargo, without the variables `cargo run` set for xtask itself (`CARGO_MANIFEST_DIR`,
/// `CARGO_PKG_*`, ...): build scripts that watch them (ring's does) would otherwise see a
/// change and rebuild half the workspace on every run.
fn cargo() -> Command {
    let mut cmd = Command::from(crate::cargo());
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_package_env) {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// Whether `name` is one of the variables cargo sets for the package it runs.
pub fn is_package_env(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_MANIFEST_")
        || matches!(
            name,
            "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
        )
}

/// `target_directory` from `cargo metadata` output (respects `CARGO_TARGET_DIR`).
pub fn target_directory(metadata: &[u8]) -> anyhow::Result<PathBuf> {
    let value: Value = serde_json::from_slice(metadata).context("cargo metadata output")?;
    value
        .get("target_directory")
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .context("cargo metadata printed no target_directory")
}

/// The cluster of `--cluster`: devcluster as a process, or the real control plane.
pub async fn cluster(ctx: &mut Ctx) -> anyhow::Result<Option<String>> {
    match ctx.flavor {
        localcluster::Flavor::Dev => devcluster(ctx).await,
        localcluster::Flavor::Real => real(ctx).await,
    }
}

/// The real control plane (built from tools/ on first use), its files in `<demo>/cluster`.
async fn real(ctx: &mut Ctx) -> anyhow::Result<Option<String>> {
    let dir = ctx.dir.join("cluster");
    ctx.out.info(
        "the first run builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler and \
         kwok from the Go modules under tools/ (about 10 minutes on 2 cores; progress below)",
    );
    let cluster = localcluster::Cluster::start(
        localcluster::Flavor::Real,
        localcluster::Options {
            dir: Some(dir.clone()),
            kubeconfig: Some(ctx.kubeconfig.clone()),
            ..localcluster::Options::default()
        },
    )
    .await
    .context("starting the real control plane")?;
    let started = cluster
        .real()
        .map(|r| format!(" in {:.1}s", r.started_in().as_secs_f64()))
        .unwrap_or_default();
    ctx.out.ok(&format!(
        "kube-apiserver {} serving at {}{started} (RBAC, requests audited, 3 kwok Nodes)",
        "v1.37.2",
        cluster.url()
    ));
    ctx.server = cluster.url().to_owned();
    ctx.out.info(&format!(
        "kubeconfig: {}; every component's log: {}",
        ctx.kubeconfig.display(),
        dir.display()
    ));
    ctx.real = Some(cluster);
    Ok(None)
}

/// `devcluster serve` as a process; waits for its `serving at` line.
async fn devcluster(ctx: &mut Ctx) -> anyhow::Result<Option<String>> {
    let mut cmd = Command::new(ctx.bin("devcluster"));
    // RBAC enforced and every request audited: the operators run with their ServiceAccounts'
    // tokens, and the rbac step compares what they did with what they are granted.
    cmd.arg("serve")
        .arg("--port")
        .arg(ctx.port.to_string())
        .arg("--kubeconfig")
        .arg(&ctx.kubeconfig)
        .args(["--authorization", "rbac", "--audit-log"])
        .arg(ctx.audit_log());
    let log = ctx.procs.spawn("devcluster", cmd)?;
    let url = poll(
        &mut ctx.procs,
        ctx.out,
        "devcluster to serve",
        START_TIMEOUT,
        || {
            let log = log.clone();
            async move { Ok(serving_url(&read(&log))) }
        },
    )
    .await?;
    ctx.out.ok(&format!(
        "devcluster serving at {url} (RBAC enforced, requests audited)"
    ));
    ctx.server = url;
    ctx.out
        .info(&format!("kubeconfig: {}", ctx.kubeconfig.display()));
    Ok(None)
}

/// The URL of devcluster's one stdout line `devcluster serving at <url> (kubeconfig <path>)`.
pub fn serving_url(log: &str) -> Option<String> {
    log.lines().find_map(|line| {
        let rest = line.strip_prefix("devcluster serving at ")?;
        rest.split_whitespace().next().map(str::to_owned)
    })
}

/// A file's text, empty when it cannot be read (a log not written yet).
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A tansu broker (testkit's, installed into the tools directory once).
pub async fn kafka(ctx: &mut Ctx) -> anyhow::Result<Option<String>> {
    let installed = testkit::tools::tools_dir()
        .join(format!("tansu-{}", testkit::tools::TANSU_VERSION))
        .join("bin")
        .join("tansu")
        .is_file();
    if !installed {
        ctx.out.info(&format!(
            "installing tansu {} into {} (cargo install, once: several minutes)",
            testkit::tools::TANSU_VERSION,
            testkit::tools::tools_dir().display()
        ));
    }
    let broker = testkit::kafka::Broker::start()
        .await
        .context("starting tansu")?;
    ctx.out.ok(&format!(
        "tansu {} (in-memory storage) at {}",
        testkit::tools::TANSU_VERSION,
        broker.bootstrap()
    ));
    ctx.broker = Some(broker);
    Ok(None)
}

/// Every CRD of deploy/crds (server-side apply), waits until they are served, then the
/// namespace and each operator's RBAC from deploy/base.
pub async fn install(ctx: &mut Ctx) -> anyhow::Result<Option<String>> {
    let crds = files(&ctx.root.join("deploy").join("crds"), "crds.yaml")?;
    for file in &crds {
        let path = file.display().to_string();
        let printed = ctx
            .kubectl
            .run(&["apply", "--server-side", "-f", &path])
            .await?;
        ctx.out.block(printed.trim_end());
    }
    let kubectl = ctx.kubectl.clone();
    poll(
        &mut ctx.procs,
        ctx.out,
        "the CRDs to be Established",
        START_TIMEOUT,
        || {
            let kubectl = kubectl.clone();
            async move {
                let list = kubectl.get(&["customresourcedefinitions"]).await?;
                let items = list
                    .as_ref()
                    .and_then(|l| l.get("items"))
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let all = !items.is_empty()
                    && items
                        .iter()
                        .all(|crd| kubectl::condition(crd, "Established") == Some("True"));
                Ok(all.then_some(()))
            }
        },
    )
    .await?;
    ctx.out
        .ok(&format!("{} CRD files applied and served", crds.len()));

    let deploy = ctx.root.join("deploy");
    let namespace = deploy.join("namespace").join("namespace.yaml");
    ctx.kubectl
        .run(&[
            "apply",
            "--server-side",
            "-f",
            &namespace.display().to_string(),
        ])
        .await?;
    let rbac = files(&deploy.join("base"), "rbac.yaml")?;
    for file in &rbac {
        let path = file.display().to_string();
        ctx.kubectl
            .run(&[
                "apply",
                "--server-side",
                "-n",
                "kubecrew-system",
                "-f",
                &path,
            ])
            .await?;
    }
    ctx.out.ok(&format!(
        "namespace kubecrew-system and the RBAC of {} operators applied",
        rbac.len()
    ));
    for name in OPERATOR_NAMES {
        // What the kubelet mounts into a pod: a token for the operator's ServiceAccount.
        let token = ctx
            .kubectl
            .run(&[
                "create",
                "token",
                name,
                "-n",
                NAMESPACE,
                "--duration",
                "24h",
            ])
            .await?;
        let path = ctx.operator_kubeconfig(name);
        let ca = ctx
            .real
            .as_ref()
            .and_then(|c| c.real())
            .map(|r| r.dir().join("ca.crt"));
        let config = service_account_kubeconfig(&ctx.server, ca.as_deref(), name, token.trim());
        std::fs::write(&path, serde_json::to_vec_pretty(&config)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    ctx.out.ok(&format!(
        "a ServiceAccount token per operator (kubectl create token); each runs with its own \
         kubeconfig ({})",
        ctx.operator_kubeconfig("<operator>").display()
    ));
    Ok(None)
}

/// The namespace the operators' ServiceAccounts, Roles and Leases live in.
pub const NAMESPACE: &str = "kubecrew-system";

/// The operators the demo runs; each one's ServiceAccount and Lease have its name.
pub const OPERATOR_NAMES: [&str; 4] = [
    "kafkanotify",
    "appconfig-restarter",
    "http-peering",
    "collector",
];

/// A kubeconfig (JSON is YAML) for `server` (trusting the CA file `ca` for HTTPS) that
/// authenticates with a ServiceAccount `token`.
pub fn service_account_kubeconfig(
    server: &str,
    ca: Option<&Path>,
    name: &str,
    token: &str,
) -> Value {
    let mut cluster = serde_json::json!({"server": server});
    if let Some(ca) = ca {
        cluster["certificate-authority"] = ca.display().to_string().into();
    }
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "devcluster", "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {
            "cluster": "devcluster", "user": name, "namespace": NAMESPACE
        }}],
        "current-context": name,
    })
}

/// `<dir>/*/<name>`, sorted.
fn files(dir: &Path, name: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(name))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    if found.is_empty() {
        bail!("no {name} under {}", dir.display());
    }
    Ok(found)
}

/// A free port on 127.0.0.1 (the listener is closed again; nothing else on this machine
/// is expected to take it in the moment before the process binds it).
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}

/// kafkanotify, appconfig-restarter, http-peering and collector against devcluster, each
/// with its own admin port and ServiceAccount token; waits for each one's `/readyz`.
pub async fn operators(ctx: &mut Ctx) -> anyhow::Result<Option<String>> {
    let brokers = ctx
        .broker
        .as_ref()
        .map(|b| b.bootstrap())
        .context("the Kafka broker is not running")?;
    let mut started = Vec::new();
    for name in OPERATOR_NAMES {
        let admin = free_port()?;
        let mut cmd = Command::new(ctx.bin(name));
        // As deploy/base runs them: leader election on, the pod's namespace and name from the
        // downward API, the ServiceAccount's token.
        cmd.env("KUBECONFIG", ctx.operator_kubeconfig(name))
            .env("POD_NAMESPACE", NAMESPACE)
            .env("POD_NAME", format!("{name}-demo"))
            .arg("--leader-elect")
            .arg("--metrics-addr")
            .arg(admin.to_string());
        if name == "kafkanotify" {
            cmd.args(["--kafka-brokers", &brokers]);
        }
        if name == "collector" {
            // helm runs with the operator's kubeconfig (its ServiceAccount), as in a pod.
            let (repository, helm) = chart_repository(ctx).await?;
            cmd.args(["--chart-repository", &repository])
                .arg("--helm")
                .arg(helm)
                .arg("--helm-home")
                .arg(ctx.dir.join("collector-helm"));
            if ctx.flavor == localcluster::Flavor::Dev {
                // devcluster serves plain HTTP, and client-go (helm) sends no credentials over
                // plain HTTP, where devcluster takes a request without any for the
                // administrator's. helm impersonates the operator's ServiceAccount instead, so
                // RBAC and the audit see the identity helm has in a pod.
                cmd.env(
                    "HELM_KUBEASUSER",
                    format!("system:serviceaccount:{NAMESPACE}:{name}"),
                );
            }
        }
        let log = ctx.procs.spawn(name, cmd)?;
        started.push((name, admin, log));
    }
    for (name, admin, log) in started {
        poll(
            &mut ctx.procs,
            ctx.out,
            &format!("{name} to be ready (http://{admin}/readyz)"),
            START_TIMEOUT,
            || async move {
                Ok(match http::get(admin, "/readyz", "*/*").await? {
                    Some((200, _)) => Some(()),
                    _ => None,
                })
            },
        )
        .await?;
        ctx.out.ok(&format!(
            "{name} ready: metrics http://{admin}/metrics, log {}",
            log.display()
        ));
    }
    Ok(None)
}

/// The chart version the demo publishes `deploy/charts/collector` as.
pub const COLLECTOR_CHART_VERSION: &str = "0.1.0";

/// Packages the project's collector chart with helm (built from its pinned module if needed)
/// and serves it as an HTTP chart repository for the rest of the demo; returns the
/// repository's URL and helm's path.
async fn chart_repository(ctx: &mut Ctx) -> anyhow::Result<(String, PathBuf)> {
    let helm =
        tokio::task::spawn_blocking(|| testkit::gotools::binary(&testkit::gotools::HELM, "helm"))
            .await??;
    let repo = ctx.dir.join("charts");
    let chart = ctx.root.join("deploy").join("charts").join("collector");
    let (h, r, c) = (helm.clone(), repo.clone(), chart.clone());
    tokio::task::spawn_blocking(move || {
        testkit::chartrepo::package(&h, &[(&c, COLLECTOR_CHART_VERSION)], &r)
    })
    .await??;
    let addr = testkit::chartrepo::serve(repo, None)
        .await
        .context("serving the chart repository")?;
    let url = format!("http://{addr}");
    ctx.out.ok(&format!(
        "chart repository {url}: deploy/charts/collector as collector-{COLLECTOR_CHART_VERSION} \
         (helm package + helm repo index)"
    ));
    Ok((url, helm))
}

/// `kubectl apply --server-side -k deploy/samples`.
pub async fn samples(ctx: &mut Ctx) -> anyhow::Result<Option<String>> {
    let samples = ctx.root.join("deploy").join("samples");
    let printed = ctx
        .kubectl
        .run(&[
            "apply",
            "--server-side",
            "-k",
            &samples.display().to_string(),
        ])
        .await?;
    ctx.out.block(printed.trim_end());
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_line_gives_the_url() {
        let log = "2026-01-01T00:00:00Z INFO devcluster: starting\n\
                   devcluster serving at https://127.0.0.1:41234 (kubeconfig /tmp/k)\n";
        assert_eq!(serving_url(log).as_deref(), Some("https://127.0.0.1:41234"));
        assert_eq!(serving_url("INFO starting\n"), None);
    }

    #[test]
    fn only_the_running_package_variables_are_dropped() {
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_PRE",
            "CARGO_CRATE_NAME",
        ] {
            assert!(is_package_env(name), "{name}");
        }
        for name in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_TERM_COLOR",
            "PATH",
        ] {
            assert!(!is_package_env(name), "{name}");
        }
    }

    #[test]
    fn the_target_directory_comes_from_cargo_metadata() {
        let json = br#"{"packages":[],"target_directory":"/tmp/t","version":1}"#;
        assert_eq!(target_directory(json).unwrap(), PathBuf::from("/tmp/t"));
        assert!(target_directory(b"{}").is_err());
        assert!(target_directory(b"not json").is_err());
    }
}
