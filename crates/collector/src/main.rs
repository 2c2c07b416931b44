//! `collector`: installs and maintains a Helm release for every Collector.
#![recursion_limit = "256"]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use kube::CustomResourceExt;
use operator_core::cli::{Command, CommonArgs};

use collector::desired::Repository;
use collector::helm::{Config, Helm};
use collector::live::Inspector;
use collector::reconcile::{Context, OPERATOR, SecretRef};
use collector::resource::Collector;

/// Installs a Helm release of its chart in the tenant's namespace for every Collector.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: CommonArgs,
    /// YAML file mapping `spec.cluster` values to values overlays (e.g. another image
    /// repository for a dev cluster).
    #[arg(long, env = "COLLECTOR_CLUSTER_VALUES")]
    cluster_values: Option<PathBuf>,
    /// The chart repository: an HTTP(S) repository serving index.yaml, or `oci://host/path`.
    /// The chart is `spec.collector.name` at `spec.collector.version` unless the Collector's
    /// `spec.collector.chart` says otherwise.
    #[arg(long, env = "COLLECTOR_CHART_REPOSITORY")]
    chart_repository: Option<String>,
    /// `NAMESPACE/NAME` of a Secret with the repository's credentials: `username` and
    /// `password`, or `.dockerconfigjson` for OCI, and optionally `ca.crt`.
    #[arg(long, env = "COLLECTOR_CHART_REPOSITORY_SECRET")]
    chart_repository_secret: Option<SecretRef>,
    /// Talk plain HTTP to OCI registries (no TLS): for a registry inside a test cluster.
    #[arg(long, env = "COLLECTOR_CHART_REPOSITORY_PLAIN_HTTP")]
    chart_repository_plain_http: bool,
    /// The helm v4 binary.
    #[arg(long, env = "COLLECTOR_HELM", default_value = "helm")]
    helm: PathBuf,
    /// A private directory for helm's files (repository indexes, the chart cache).
    #[arg(
        long,
        env = "COLLECTOR_HELM_HOME",
        default_value = "/var/cache/collector"
    )]
    helm_home: PathBuf,
    /// The kubeconfig helm uses; by default helm's own (in a pod: its ServiceAccount).
    #[arg(long, env = "COLLECTOR_HELM_KUBECONFIG")]
    helm_kubeconfig: Option<PathBuf>,
    /// The longest one helm operation may take, in seconds.
    #[arg(long, env = "COLLECTOR_HELM_TIMEOUT_SECONDS", default_value_t = 300)]
    helm_timeout_seconds: u64,
    /// How many revisions helm keeps per release.
    #[arg(long, env = "COLLECTOR_HISTORY_MAX", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    history_max: u32,
    /// The largest size of the chart cache, in MiB.
    #[arg(long, env = "COLLECTOR_CHART_CACHE_MIB", default_value_t = 256)]
    chart_cache_mib: u64,
    /// helm acts as this ServiceAccount of the tenant's namespace (impersonation), so a
    /// release can do only what that ServiceAccount may.
    #[arg(long, env = "COLLECTOR_TENANT_SERVICE_ACCOUNT")]
    tenant_service_account: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.command.is_none()
        && let Some(namespace) = &cli.common.namespace
    {
        // Watching one namespace would silently skip every Collector: they are cluster-scoped.
        anyhow::bail!(
            "--namespace {namespace} (or KUBECREW_NAMESPACE) does not apply to collector: \
             Collectors are cluster-scoped and each names its tenant namespace; remove it"
        );
    }
    let overlays = match &cli.cluster_values {
        Some(path) => collector::operator::load_overlays(path).context("--cluster-values")?,
        None => Default::default(),
    };
    let repository = cli
        .chart_repository
        .as_deref()
        .map(Repository::parse)
        .transpose()
        .map_err(anyhow::Error::msg)
        .context("--chart-repository")?;
    let helm = Helm::new(Config {
        binary: cli.helm.clone(),
        home: cli.helm_home.clone(),
        kubeconfig: cli.helm_kubeconfig.clone(),
        timeout: Duration::from_secs(cli.helm_timeout_seconds),
        history_max: cli.history_max,
        plain_http: cli.chart_repository_plain_http,
        cache_max_bytes: cli.chart_cache_mib << 20,
    })
    .context("--helm-home")?;
    let Some(launched) =
        operator_core::start(OPERATOR, &cli.common, cli.command, &[Collector::crd()]).await?
    else {
        return Ok(());
    };
    // The same configuration operator-core's client was built from, for the clients that
    // impersonate tenants.
    let kube_config = kube::Config::infer()
        .await
        .context("the cluster's client configuration")?;
    let ctx = Context {
        runtime: launched.runtime.clone(),
        overlays,
        repository,
        credentials: cli.chart_repository_secret,
        helm,
        inspector: Inspector::new(kube_config).context("the cluster's client configuration")?,
        tenant_service_account: cli.tenant_service_account,
    };
    let settings = cli.common.settings();
    collector::operator::run(launched.runtime.clone(), ctx, settings).await;
    launched.finish().await;
    Ok(())
}
