//! `cargo xtask`: the project's own automation (tests with their tools, the demo, ...).

mod cluster;
mod crds;
mod demo;
mod deploy;
mod fuzz;
mod images;
mod kubectl;
mod protobuf_descriptors;
mod validate;

use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "kubecrew project automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the tools the tests drive, then run every test of the workspace. The operators'
    /// integration tests run on the real control plane (built from tools/ on first use).
    Test {
        /// The cluster the operator tests run on: `real` (kube-apiserver and friends, the
        /// default) or `dev` (devcluster: no Go build, seconds faster). KUBECREW_CLUSTER wins.
        #[arg(long, env = "KUBECREW_CLUSTER", default_value = "real")]
        cluster: String,
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// The walk-through: devcluster, a Kafka broker, every operator as a process, the samples,
    /// and one checked story per operator (docs/demo.md). Ctrl-C stops everything it started.
    Demo {
        /// The cluster: `dev` (devcluster as a process, the default: no Go build) or `real`
        /// (kube-apiserver, etcd, kube-controller-manager, kube-scheduler and kwok).
        #[arg(long, default_value = "dev")]
        cluster: String,
        /// devcluster's port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Non-interactive: no colours, fail fast with a non-zero exit naming the failed step.
        #[arg(long)]
        ci: bool,
        /// After the story, leave everything running (and print the kubeconfig) until Ctrl-C.
        #[arg(long, conflicts_with = "ci")]
        keep_running: bool,
    },
    /// Build the tools of the real control plane from the pinned Go modules under tools/
    /// (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, helm, the
    /// in-memory OCI registry), once, into the tools directory (target/tools or
    /// KUBECREW_TOOLS_DIR).
    Tools {
        /// Print the directory of the built binaries as the last line (for PATH).
        #[arg(long)]
        path: bool,
    },
    /// A local cluster for a person to use: the real control plane or devcluster.
    Cluster {
        #[command(subcommand)]
        command: ClusterCmd,
    },
    /// Run the benchmarks and print their figures.
    Bench,
    /// Fuzz the parsers of user input (nes's request decoders, `validate`, item keys) with
    /// cargo-fuzz, installed on first use: build every target of fuzz/, run each for the
    /// budget, print its figures; a crash fails with the input and how to reproduce it.
    Fuzz {
        /// Seconds each target runs.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Afterwards, add the inputs that reached new code to the committed corpus
        /// (fuzz/corpus/<target>).
        #[arg(long)]
        merge: bool,
        /// Only these targets (default: every file of fuzz/fuzz_targets).
        targets: Vec<String>,
    },
    /// Render every kustomize overlay and validate each object against the Kubernetes schemas.
    Validate,
    /// Build one container image per shipped binary (docker or podman) from the Dockerfile.
    Images {
        /// Registry and path prefix of the image names.
        #[arg(long, default_value = "ghcr.io/kubecrew")]
        registry: String,
        /// Image tag (default: the workspace version).
        #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
        tag: String,
        /// Push each image after building it.
        #[arg(long)]
        push: bool,
        /// Only these binaries (default: all).
        only: Vec<String>,
    },
    /// Apply an overlay of deploy/overlays to a cluster (CRDs first), then wait for its rollouts.
    Deploy {
        /// The overlay: a directory name of deploy/overlays (all, edge, nes, <operator>, ...).
        #[arg(long)]
        overlay: String,
        #[command(flatten)]
        images: ImageArgs,
        /// Check everything with a server-side dry run; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Seconds the CRDs may take to be Established and the Deployments to roll out.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Do not wait for the Deployments to roll out.
        #[arg(long)]
        no_wait: bool,
        /// Take over fields that another field manager owns.
        #[arg(long)]
        force_conflicts: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Delete what an overlay renders (reverse order; CRDs last, unless --keep-crds).
    Undeploy {
        /// The overlay: a directory name of deploy/overlays.
        #[arg(long)]
        overlay: String,
        /// Keep the CRDs: deleting a CRD deletes every custom resource of its kind.
        #[arg(long)]
        keep_crds: bool,
        /// Seconds each deletion may wait for the objects to be gone.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Write an overlay, rendered with CRDs first, as one YAML file to `kubectl apply`.
    Installer {
        /// The overlay: a directory name of deploy/overlays.
        #[arg(long, default_value = "all")]
        overlay: String,
        #[command(flatten)]
        images: ImageArgs,
        /// The file to write (a relative path is relative to the workspace root).
        #[arg(long, default_value = "dist/install.yaml")]
        output: PathBuf,
    },
    /// Regenerate deploy/crds/<operator>.yaml from every operator's Rust types.
    Crds {
        /// Fail if the committed YAML differs instead of writing it (CI).
        #[arg(long)]
        check: bool,
    },
    /// Regenerate devcluster's protobuf descriptor table from the upstream generated.proto files.
    ProtobufDescriptors {
        /// Directory searched (recursively) for generated.proto files; defaults to the v1.33
        /// files of the k8s-rs-pb 0.5.0 crate in the cargo registry (`cargo fetch` it first).
        #[arg(long)]
        proto_root: Option<PathBuf>,
        /// Only check that the committed table is up to date.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Start a cluster, print `export KUBECONFIG=...`, and run until Ctrl-C or SIGTERM, then
    /// stop every process it started.
    Up {
        /// The real control plane (etcd, kube-apiserver, kube-controller-manager,
        /// kube-scheduler, kwok with 3 Nodes), built from the Go modules under tools/.
        #[arg(long, conflicts_with = "dev")]
        real: bool,
        /// devcluster, the embedded API server (the default).
        #[arg(long)]
        dev: bool,
        /// Also write the administrator's kubeconfig to this file.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Keep the cluster's files (certificates, logs, etcd data) in this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Registry and tag of kubecrew's own images in a rendered overlay.
#[derive(clap::Args)]
struct ImageArgs {
    /// Tag of kubecrew's images (default: the tag the bases name).
    #[arg(long)]
    image_tag: Option<String>,
    /// Registry and path prefix replacing ghcr.io/kubecrew in kubecrew's image names.
    #[arg(long)]
    registry: Option<String>,
}

impl From<ImageArgs> for deploy::ImageOverride {
    fn from(args: ImageArgs) -> Self {
        deploy::ImageOverride {
            registry: args.registry,
            tag: args.image_tag,
        }
    }
}

/// The cluster kubectl talks to (default: kubectl's own, from KUBECONFIG).
#[derive(clap::Args)]
struct TargetArgs {
    /// kubeconfig file passed to kubectl.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// kubeconfig context passed to kubectl.
    #[arg(long)]
    context: Option<String>,
}

impl From<TargetArgs> for deploy::Target {
    fn from(args: TargetArgs) -> Self {
        deploy::Target {
            kubeconfig: args.kubeconfig,
            context: args.context,
            cache_dir: None,
        }
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn check(status: ExitStatus, what: &str) -> anyhow::Result<()> {
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = testkit::tools::workspace_root();
    match cli.command {
        Cmd::Test { cluster, args } => {
            let flavor = localcluster::Flavor::parse(&cluster)?;
            eprintln!("xtask: checking kubectl");
            let kubectl = testkit::tools::kubectl()?;
            eprintln!("xtask: {}", kubectl.display());
            eprintln!("xtask: checking iproute2 (the nes-agent tests use ip netns)");
            let ip = testkit::tools::iproute2()?;
            eprintln!("xtask: {}", ip.display());
            eprintln!("xtask: installing the Python test client (once, into target/tools)");
            let python = testkit::tools::python().context("installing the Python client")?;
            eprintln!("xtask: {}", python.display());
            eprintln!(
                "xtask: installing the tansu Kafka broker (once, into target/tools; a first build takes minutes)"
            );
            let tansu = testkit::tools::tansu().context("installing tansu")?;
            eprintln!("xtask: {}", tansu.display());
            if flavor == localcluster::Flavor::Real {
                eprintln!(
                    "xtask: building the real control plane, helm and the OCI registry (once, into the tools directory; a first build takes many minutes)"
                );
                let bin = testkit::gotools::ensure_all(testkit::gotools::ALL)
                    .context("building the Go tools")?;
                eprintln!("xtask: {}", bin.display());
            }
            eprintln!(
                "xtask: operator tests run on the {} cluster (KUBECREW_CLUSTER={})",
                flavor.name(),
                flavor.name()
            );
            let status = cargo()
                .current_dir(&root)
                .env("KUBECREW_CLUSTER", flavor.name())
                // --all-features: nes-api's CRDs sit behind a feature the agent does not use.
                // --no-fail-fast: one run reports every failing test binary, not the first.
                .args([
                    "test",
                    "--workspace",
                    "--all-features",
                    "--locked",
                    "--no-fail-fast",
                ])
                .args(&args)
                .status()?;
            check(status, "cargo test")
        }
        Cmd::Demo {
            cluster,
            port,
            ci,
            keep_running,
        } => demo::run(
            &root,
            demo::Options {
                cluster: localcluster::Flavor::parse(&cluster)?,
                port,
                ci,
                keep_running,
            },
        ),
        Cmd::Deploy {
            overlay,
            images,
            dry_run,
            timeout,
            no_wait,
            force_conflicts,
            target,
        } => deploy::run_deploy(
            &root,
            &deploy::DeployOptions {
                overlay,
                images: images.into(),
                dry_run,
                timeout: Duration::from_secs(timeout),
                wait: !no_wait,
                force_conflicts,
                target: target.into(),
            },
        ),
        Cmd::Undeploy {
            overlay,
            keep_crds,
            timeout,
            target,
        } => deploy::run_undeploy(
            &root,
            &deploy::UndeployOptions {
                overlay,
                keep_crds,
                timeout: Duration::from_secs(timeout),
                target: target.into(),
            },
        ),
        Cmd::Installer {
            overlay,
            images,
            output,
        } => deploy::run_installer(
            &root,
            &deploy::InstallerOptions {
                overlay,
                images: images.into(),
                output,
            },
        ),
        Cmd::Cluster {
            command:
                ClusterCmd::Up {
                    real,
                    dev: _,
                    kubeconfig,
                    dir,
                },
        } => cluster::up(cluster::UpOptions {
            flavor: if real {
                localcluster::Flavor::Real
            } else {
                localcluster::Flavor::Dev
            },
            kubeconfig,
            dir,
        }),
        Cmd::Tools { path } => {
            let started = std::time::Instant::now();
            let bin = testkit::gotools::ensure_all(testkit::gotools::ALL)
                .context("building the Go tools")?;
            eprintln!(
                "xtask: tools ready in {:.0?}: {}",
                started.elapsed(),
                bin.display()
            );
            if path {
                println!("{}", bin.display());
            }
            Ok(())
        }
        Cmd::Crds { check } => crds::run(&root, check),
        Cmd::Validate => validate::run(&root),
        Cmd::Images {
            registry,
            tag,
            push,
            only,
        } => images::run(
            &root,
            &images::Options {
                registry,
                tag,
                push,
                only,
            },
        ),
        Cmd::ProtobufDescriptors { proto_root, check } => {
            protobuf_descriptors::run(&root, proto_root.as_deref(), check)
        }
        Cmd::Fuzz {
            seconds,
            merge,
            targets,
        } => fuzz::run(
            &root,
            &fuzz::Options {
                seconds,
                targets,
                merge,
            },
        ),
        Cmd::Bench => {
            let status = cargo()
                .current_dir(&root)
                .args(["bench", "--workspace", "--locked"])
                .status()?;
            check(status, "cargo bench")
        }
    }
}
