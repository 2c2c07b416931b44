//! The command line. Every flag also reads a `NES_AGENT_*` environment variable, so the same
//! binary is configured by flags locally and by env in a pod spec.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::reconciler::{DEFAULT_ROUTE_PROTOCOL, Settings};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human readable lines.
    Text,
    /// One JSON object per line (for log pipelines).
    Json,
}

/// Applies the pod's desired network configuration (VLANs, addresses, routes) over netlink and
/// reports the pod's network status over HTTP.
#[derive(Debug, Clone, Parser)]
#[command(name = "nes-agent", version)]
pub struct Cli {
    /// Address and port to serve the API on. Port 0 picks a free port; the address actually
    /// bound is printed as the first line on stdout (`listening on ADDR`).
    #[arg(long, env = "NES_AGENT_LISTEN", default_value = "0.0.0.0:7470")]
    pub listen: SocketAddr,
    /// File holding the bearer token that writes (`PUT /v1/config`) must present (a mounted
    /// Secret key; re-read on every write, so rotation needs no restart).
    #[arg(long, env = "NES_AGENT_TOKEN_FILE")]
    pub token_file: PathBuf,
    /// Directory for the agent's state (the accepted configuration and the ledger of what
    /// the agent created), so a restarted container resumes. Without it, state is in memory.
    #[arg(long, env = "NES_AGENT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Route protocol number marking the routes (and addresses) the agent adds
    /// (`ip route show proto N`).
    #[arg(long, env = "NES_AGENT_ROUTE_PROTOCOL", default_value_t = DEFAULT_ROUTE_PROTOCOL,
          value_parser = parse_protocol)]
    pub route_protocol: u8,
    /// Time between full re-reads of the kernel state, which restore anything removed behind
    /// the agent's back even if a notification was lost (`30s`, `500ms`, `2m`).
    #[arg(long, env = "NES_AGENT_RESYNC_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub resync_interval: Duration,
    /// First retry delay for pending or failed items (doubles up to --retry-max).
    #[arg(long, env = "NES_AGENT_RETRY_MIN", default_value = "500ms", value_parser = parse_duration)]
    pub retry_min: Duration,
    /// Longest retry delay.
    #[arg(long, env = "NES_AGENT_RETRY_MAX", default_value = "30s", value_parser = parse_duration)]
    pub retry_max: Duration,
    /// Log format.
    #[arg(long, env = "NES_AGENT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, tracing syntax (`info`, `nes_agent=debug,info`).
    #[arg(long, env = "NES_AGENT_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl Cli {
    /// The reconciler's settings.
    pub fn settings(&self) -> Settings {
        Settings {
            route_protocol: self.route_protocol,
            resync_interval: self.resync_interval,
            retry_min: self.retry_min,
            retry_max: self.retry_max.max(self.retry_min),
            state_dir: self.state_dir.clone(),
        }
    }
}

/// Protocol numbers 0-4 are the kernel's own (unspec, redirect, kernel, boot, static): routes
/// marked with them could not be told apart from routes the agent must never remove.
fn parse_protocol(value: &str) -> Result<u8, String> {
    let protocol: u8 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number from 5 to 255"))?;
    if protocol < 5 {
        return Err(format!(
            "{protocol} is reserved for the kernel and static routes; use 5 to 255"
        ));
    }
    Ok(protocol)
}

/// `500ms`, `30s`, `2m`, `1h`; a bare number is seconds. Zero is refused (a zero interval
/// would spin).
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a duration like 500ms, 30s, 2m or 1h"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "" | "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        "h" => Duration::from_secs(number.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "{value:?}: unknown unit {unit:?} (use ms, s, m or h)"
            ));
        }
    };
    if duration.is_zero() {
        return Err(format!("{value:?}: must be more than zero"));
    }
    Ok(duration)
}

/// Sets up `tracing` with the chosen format and filter.
pub fn init_tracing(format: LogFormat, filter: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| format!("invalid --log-level {filter:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("0s").unwrap_err().contains("more than zero"));
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn protocols() {
        assert_eq!(parse_protocol("201"), Ok(201));
        assert!(parse_protocol("4").unwrap_err().contains("reserved"));
        assert!(parse_protocol("300").is_err());
    }

    #[test]
    fn flags_and_env_names() {
        let cli = Cli::try_parse_from([
            "nes-agent",
            "--token-file",
            "/t",
            "--listen",
            "127.0.0.1:0",
            "--resync-interval",
            "1s",
        ])
        .unwrap();
        assert_eq!(cli.settings().resync_interval, Duration::from_secs(1));
        assert_eq!(cli.route_protocol, DEFAULT_ROUTE_PROTOCOL);
        assert!(
            Cli::try_parse_from(["nes-agent"]).is_err(),
            "the token file is required"
        );
    }
}
