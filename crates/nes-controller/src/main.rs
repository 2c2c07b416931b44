//! `nes-controller`: injects the nes-agent sidecar into labelled StatefulSets' pods.
#![recursion_limit = "256"]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use nes_controller::admission::FailurePolicy;
use nes_controller::inject::SidecarSettings;
use nes_controller::template::{Context, Mode, OPERATOR};
use nes_controller::webhook::{self, TlsSource};
use nes_controller::webhook_config::{self, Endpoint};
use operator_core::cli::{Command, CommonArgs};

/// Puts the nes-agent sidecar into the pods of StatefulSets labelled
/// `network-config/runtime-ip: "true"`: through a mutating admission webhook (default) or by
/// patching their pod template.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: CommonArgs,
    /// How the sidecar gets into the pods.
    #[arg(long, env = "NES_CONTROLLER_MODE", value_enum, default_value_t = Mode::Webhook)]
    mode: Mode,
    /// The nes-agent image.
    #[arg(long, env = "NES_AGENT_IMAGE", default_value_t = SidecarSettings::default().image)]
    agent_image: String,
    /// The agent's API port.
    #[arg(long, env = "NES_AGENT_PORT", default_value_t = 7470)]
    agent_port: u16,
    /// The Secret (in each workload's namespace) holding the agent's write token (key `token`);
    /// created when missing.
    #[arg(
        long,
        env = "NES_AGENT_TOKEN_SECRET",
        default_value = "nes-agent-token"
    )]
    agent_token_secret: String,
    /// CPU request of the sidecar.
    #[arg(long, default_value = "10m")]
    agent_cpu_request: String,
    /// Memory request of the sidecar.
    #[arg(long, default_value = "16Mi")]
    agent_memory_request: String,
    /// Memory limit of the sidecar.
    #[arg(long, default_value = "64Mi")]
    agent_memory_limit: String,
    /// Namespaces never injected (repeatable); the controller's own is always added.
    #[arg(long = "exclude-namespace", default_values_t = ["kube-system".to_owned()])]
    exclude_namespaces: Vec<String>,
    /// The controller's own namespace (the webhook Service's).
    #[arg(long, env = "POD_NAMESPACE", default_value = "nes-system")]
    controller_namespace: String,
    /// Webhook mode: where the HTTPS server listens.
    #[arg(
        long,
        env = "NES_CONTROLLER_WEBHOOK_ADDR",
        default_value = "0.0.0.0:8443"
    )]
    webhook_addr: SocketAddr,
    /// Webhook mode: the Service in front of the webhook (in the controller's namespace).
    #[arg(
        long,
        env = "NES_CONTROLLER_WEBHOOK_SERVICE",
        default_value = "nes-controller"
    )]
    webhook_service: String,
    /// Webhook mode: the Service's port.
    #[arg(long, default_value_t = 443)]
    webhook_service_port: u16,
    /// Webhook mode: call this URL (`https://host:port/mutate`) instead of the Service, for a
    /// webhook running outside the cluster (its host goes into the generated certificate).
    #[arg(long, env = "NES_CONTROLLER_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// Webhook mode: extra names or IP addresses of the generated serving certificate
    /// (repeatable).
    #[arg(long = "webhook-host")]
    webhook_hosts: Vec<String>,
    /// Webhook mode: the name of the MutatingWebhookConfiguration (cluster-wide: give each
    /// installation its own, e.g. one controller per namespace with --namespace).
    #[arg(
        long,
        env = "NES_CONTROLLER_WEBHOOK_CONFIGURATION",
        default_value = nes_controller::webhook_config::CONFIGURATION_NAME
    )]
    webhook_configuration: String,
    /// Webhook mode: what happens when the webhook cannot decide or cannot be reached.
    #[arg(long, env = "NES_CONTROLLER_FAILURE_POLICY", value_enum, ignore_case = true,
          default_value_t = FailurePolicy::Ignore)]
    failure_policy: FailurePolicy,
    /// Webhook mode: serve this certificate (PEM) instead of a generated one; needs
    /// --tls-key-file and --ca-file.
    #[arg(long, requires_all = ["tls_key_file", "ca_file"])]
    tls_cert_file: Option<PathBuf>,
    /// The private key of --tls-cert-file (PEM).
    #[arg(long, requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
    /// The CA that signed --tls-cert-file (PEM): published as the webhook's caBundle.
    #[arg(long, requires = "tls_cert_file")]
    ca_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Checked before anything starts (the API server would refuse the configuration); its host
    // goes into the generated certificate.
    let mut hosts = cli.webhook_hosts.clone();
    if let (None, Mode::Webhook, Some(url)) = (&cli.command, cli.mode, &cli.webhook_url) {
        let host =
            webhook_config::url_host(url).map_err(|e| anyhow::anyhow!("--webhook-url: {e}"))?;
        hosts.push(host);
    }
    let Some(launched) = operator_core::start(OPERATOR, &cli.common, cli.command, &[]).await?
    else {
        return Ok(());
    };
    let sidecar = SidecarSettings {
        image: cli.agent_image,
        port: cli.agent_port,
        token_secret: cli.agent_token_secret,
        cpu_request: cli.agent_cpu_request,
        memory_request: cli.agent_memory_request,
        memory_limit: cli.agent_memory_limit,
    };
    let mut excluded = cli.exclude_namespaces.into_iter().collect::<BTreeSet<_>>();
    excluded.insert(cli.controller_namespace.clone());
    if cli.mode == Mode::Webhook {
        let tls = match (cli.tls_cert_file, cli.tls_key_file, cli.ca_file) {
            (Some(cert), Some(key), Some(ca)) => TlsSource::Files { cert, key, ca },
            _ => TlsSource::Generate(nes_controller::tls::subject_alt_names(
                &cli.webhook_service,
                &cli.controller_namespace,
                &hosts,
            )),
        };
        let endpoint = match cli.webhook_url {
            Some(url) => Endpoint::Url(url),
            None => Endpoint::Service {
                namespace: cli.controller_namespace.clone(),
                name: cli.webhook_service,
                port: cli.webhook_service_port,
                path: webhook::MUTATE_PATH.to_owned(),
            },
        };
        webhook::start(
            &launched.runtime,
            webhook::Options {
                listen: cli.webhook_addr,
                tls,
                endpoint: Some(endpoint),
                configuration_name: cli.webhook_configuration,
                namespace: cli.common.namespace.clone(),
                failure_policy: cli.failure_policy,
                excluded_namespaces: excluded.clone(),
                sidecar: sidecar.clone(),
            },
        )
        .await
        .context("starting the admission webhook")?;
    }
    let ctx = Arc::new(Context {
        mode: cli.mode,
        runtime: launched.runtime.clone(),
        sidecar,
        excluded_namespaces: excluded,
    });
    let settings = cli.common.settings();
    nes_controller::operator::run(ctx, cli.common.namespace.as_deref(), settings).await;
    launched.finish().await;
    Ok(())
}
