//! `cargo xtask`: the project's own automation (tests with their tools, the demo, ...).

mod crds;
mod demo;
mod images;
mod protobuf_descriptors;
mod validate;

use std::path::PathBuf;
use std::process::{Command, ExitStatus};

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
    /// Install the tools the tests drive, then run every test of the workspace.
    Test {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// The walk-through: devcluster, a Kafka broker, every operator as a process, the samples,
    /// and one checked story per operator (docs/demo.md). Ctrl-C stops everything it started.
    Demo {
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
    /// Run the benchmarks and print their figures.
    Bench,
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
        Cmd::Test { args } => {
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
            let status = cargo()
                .current_dir(&root)
                // --all-features: nes-api's CRDs sit behind a feature the agent does not use.
                .args(["test", "--workspace", "--all-features", "--locked"])
                .args(&args)
                .status()?;
            check(status, "cargo test")
        }
        Cmd::Demo {
            port,
            ci,
            keep_running,
        } => demo::run(
            &root,
            demo::Options {
                port,
                ci,
                keep_running,
            },
        ),
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
        Cmd::Bench => {
            let status = cargo()
                .current_dir(&root)
                .args(["bench", "--workspace", "--locked"])
                .status()?;
            check(status, "cargo bench")
        }
    }
}
