//! The command line. Every flag also reads an `HTTP_PEER_*` environment variable, so the
//! same binary is configured by flags locally and by env in a pod spec.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::config::Config;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human readable lines.
    Text,
    /// One JSON object per line (for log pipelines).
    Json,
}

/// Answers `/ping` and pings the peers listed in a file (a mounted ConfigMap key).
#[derive(Debug, Clone, Parser)]
#[command(name = "http-peer", version)]
pub struct Cli {
    /// Address to serve HTTP on (/ping, /peers, /metrics, /healthz).
    #[arg(long, env = "HTTP_PEER_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// The peers file, one `host,port` a line (the mounted ConfigMap key `hostports`).
    /// Without it the server only answers pings.
    #[arg(long, env = "HTTP_PEER_PEERS_FILE")]
    pub peers_file: Option<PathBuf>,
    /// Time between ping rounds (`30s`, `500ms`, `1m`; a bare number is seconds).
    #[arg(long, env = "HTTP_PEER_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Timeout of one ping.
    #[arg(long, env = "HTTP_PEER_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Fraction of the interval by which each wait varies at random (0 to below 1), so
    /// that pods do not ping in lockstep.
    #[arg(long, env = "HTTP_PEER_JITTER", default_value_t = 0.2)]
    pub jitter: f64,
    /// Name of this instance, reported by /ping (default: env POD_NAME, else the hostname).
    #[arg(long, env = "HTTP_PEER_INSTANCE")]
    pub instance: Option<String>,
    /// Log format.
    #[arg(long, env = "HTTP_PEER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, tracing syntax (`info`, `warn`, `http_peer=debug,info`). Successful pings
    /// log at info, failed ones at warn.
    #[arg(long, env = "HTTP_PEER_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl Cli {
    /// The server configuration; the instance name falls back to env `POD_NAME`, then the
    /// hostname. Call [`Config::validate`] on the result.
    pub fn to_config(&self) -> Config {
        let hostname = hostname::get()
            .ok()
            .and_then(|name| name.into_string().ok());
        Config {
            listen: self.listen,
            peers_file: self.peers_file.clone(),
            interval: self.interval,
            timeout: self.timeout,
            jitter: self.jitter,
            instance: resolve_instance(
                self.instance.as_deref(),
                std::env::var("POD_NAME").ok().as_deref(),
                hostname.as_deref(),
            ),
            ..Config::default()
        }
    }
}

/// The instance name: the flag, else `POD_NAME`, else the hostname, else `http-peer`.
/// Empty values count as unset.
pub fn resolve_instance(
    flag: Option<&str>,
    pod_name: Option<&str>,
    hostname: Option<&str>,
) -> String {
    [flag, pod_name, hostname]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|name| !name.is_empty())
        .unwrap_or("http-peer")
        .to_owned()
}

/// A duration flag that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: expected a number with unit ms, s, m or h (e.g. 30s, 500ms)")]
pub struct DurationError(String);

/// Parses `500ms`, `2s`, `1.5s`, `1m`, `1h`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let error = || DurationError(text.to_owned());
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds_per_unit = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(error()),
    };
    if number.is_empty() {
        return Err(error());
    }
    let value: f64 = number.parse().map_err(|_| error())?;
    Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| error())
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
        // Without the module path: ping lines have a `target` field (the peer), and with
        // flattened events the two would be duplicate keys of one JSON object.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_target(false)
            .try_init(),
    };
    result.map_err(|e| format!("installing the log subscriber: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["http-peer"]).expect("defaults parse");
        assert_eq!(cli.listen, SocketAddr::from(([0, 0, 0, 0], 8080)));
        assert_eq!(cli.peers_file, None);
        assert_eq!(cli.interval, Duration::from_secs(30));
        assert_eq!(cli.timeout, Duration::from_secs(2));
        assert_eq!(cli.jitter, 0.2);
        assert_eq!(cli.log_format, LogFormat::Text);
        assert_eq!(cli.log_level, "info");
        assert_eq!(cli.to_config().validate(), Ok(()));
    }

    #[test]
    fn flags() {
        let cli = Cli::try_parse_from([
            "http-peer",
            "--listen",
            "127.0.0.1:0",
            "--peers-file",
            "/etc/peers/hostports",
            "--interval",
            "200ms",
            "--timeout",
            "1.5s",
            "--jitter",
            "0",
            "--instance",
            "pod-a",
            "--log-format",
            "json",
        ])
        .expect("flags parse");
        let config = cli.to_config();
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(
            config.peers_file,
            Some(PathBuf::from("/etc/peers/hostports"))
        );
        assert_eq!(config.interval, Duration::from_millis(200));
        assert_eq!(config.timeout, Duration::from_millis(1500));
        assert_eq!(config.jitter, 0.0);
        assert_eq!(config.instance, "pod-a");
        assert_eq!(cli.log_format, LogFormat::Json);
        assert!(Cli::try_parse_from(["http-peer", "--interval", "soon"]).is_err());
        assert!(Cli::try_parse_from(["http-peer", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration(" 250ms "), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "s", "-1s", "1x", "1.2.3s", "ms", "1e400", "1 s s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            parse_duration("soon").expect_err("bad").to_string(),
            r#"invalid duration "soon": expected a number with unit ms, s, m or h (e.g. 30s, 500ms)"#
        );
    }

    #[test]
    fn instance_falls_back_to_pod_name_then_hostname() {
        assert_eq!(resolve_instance(Some("a"), Some("b"), Some("c")), "a");
        assert_eq!(resolve_instance(None, Some("b"), Some("c")), "b");
        assert_eq!(resolve_instance(Some(" "), Some(""), Some("c")), "c");
        assert_eq!(resolve_instance(None, None, None), "http-peer");
    }
}
