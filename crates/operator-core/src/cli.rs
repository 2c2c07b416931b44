//! The command line every operator shares. Each flag also reads an environment variable, so
//! the same binary is configured by flags locally and by env in a Deployment.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human readable lines.
    Text,
    /// One JSON object per line (for log pipelines).
    Json,
}

/// Subcommands every operator binary has (flatten as `Option<Command>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
}

/// Flags common to all operators (flatten into the operator's own clap struct).
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Watch one namespace only; all namespaces when not set.
    #[arg(long, env = "KUBECREW_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address of the admin server (/metrics, /healthz, /readyz).
    #[arg(long, env = "KUBECREW_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Run only while holding a coordination.k8s.io Lease (for 2+ replicas).
    #[arg(long, env = "KUBECREW_LEADER_ELECT", default_value_t = false)]
    pub leader_elect: bool,
    /// Name of the leader election Lease (default: the operator's name).
    #[arg(long, env = "KUBECREW_LEASE_NAME")]
    pub lease_name: Option<String>,
    /// Namespace of the Lease (default: the pod's namespace from POD_NAMESPACE, else `default`).
    #[arg(long, env = "KUBECREW_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Log format.
    #[arg(long, env = "KUBECREW_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, tracing syntax (`info`, `kafkanotify=debug,info`).
    #[arg(long, env = "KUBECREW_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Reconciles running at once.
    #[arg(long, env = "KUBECREW_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,
    /// Requeue interval after a successful reconcile, in seconds (a periodic resync).
    #[arg(long, env = "KUBECREW_REQUEUE_SECONDS", default_value_t = 300)]
    pub requeue_seconds: u64,
}

impl CommonArgs {
    /// The requeue interval.
    pub fn requeue_after(&self) -> Duration {
        Duration::from_secs(self.requeue_seconds.max(1))
    }

    /// The reconcile loop's settings from these flags (default backoff).
    pub fn settings(&self) -> crate::Settings {
        crate::Settings {
            concurrency: self.concurrency,
            requeue_after: self.requeue_after(),
            backoff: crate::backoff::Policy::default(),
        }
    }

    /// The namespace of the leader election Lease.
    pub fn lease_namespace(&self) -> String {
        self.lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into())
    }
}

/// Installs the tracing subscriber for the format and filter. Call once, from `main`.
pub fn init_tracing(format: LogFormat, level: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|e| format!("invalid --log-level {level:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| format!("installing the log subscriber: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    #[test]
    fn defaults_and_flags() {
        let cli = Cli::try_parse_from(["op"]).unwrap();
        assert_eq!(cli.common.namespace, None);
        assert!(!cli.common.leader_elect);
        assert_eq!(cli.common.concurrency, 4);
        let cli = Cli::try_parse_from([
            "op",
            "--namespace",
            "team",
            "--leader-elect",
            "--log-format",
            "json",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .unwrap();
        assert_eq!(cli.common.namespace.as_deref(), Some("team"));
        assert!(cli.common.leader_elect);
        assert_eq!(cli.common.log_format, LogFormat::Json);
        assert!(Cli::try_parse_from(["op", "--log-format", "xml"]).is_err());
    }
}
