//! The server's configuration, independent of how it was given (flags, env, a test).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The shortest ping interval accepted: below it the pinger would do little but ping.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Everything [`crate::Server`] needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to serve HTTP on; port 0 lets the OS choose (see [`crate::Server::local_addr`]).
    pub listen: SocketAddr,
    /// The peers file (the mounted `hostports` key); `None`: no peers, only answer pings.
    pub peers_file: Option<PathBuf>,
    /// Time between two ping rounds, before jitter.
    pub interval: Duration,
    /// Timeout of one ping (connect, request and response).
    pub timeout: Duration,
    /// Fraction of the interval by which each wait is randomly shortened or lengthened,
    /// 0 (lockstep) to below 1.
    pub jitter: f64,
    /// This instance's name, reported by `/ping` in JSON.
    pub instance: String,
    /// How often the peers file is checked for changes.
    pub reload_interval: Duration,
}

impl Default for Config {
    /// The binary's defaults: `0.0.0.0:8080`, no peers file, 30 s ± 20 %, 2 s timeout,
    /// reload check every second.
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            peers_file: None,
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(2),
            jitter: 0.2,
            instance: "http-peer".into(),
            reload_interval: Duration::from_secs(1),
        }
    }
}

/// A configuration value out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The ping interval is below [`MIN_INTERVAL`].
    #[error("interval {0:?} is shorter than the minimum {MIN_INTERVAL:?}")]
    IntervalTooShort(Duration),
    /// The ping timeout is zero.
    #[error("timeout must be greater than zero")]
    ZeroTimeout,
    /// The reload interval is below [`MIN_INTERVAL`].
    #[error("reload interval {0:?} is shorter than the minimum {MIN_INTERVAL:?}")]
    ReloadIntervalTooShort(Duration),
    /// The jitter is not in `0..1`.
    #[error("jitter {0} is not a fraction in 0..1")]
    BadJitter(f64),
}

impl Config {
    /// Checks the values that would make the server misbehave (busy loops, no pings).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval < MIN_INTERVAL {
            return Err(ConfigError::IntervalTooShort(self.interval));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        if self.reload_interval < MIN_INTERVAL {
            return Err(ConfigError::ReloadIntervalTooShort(self.reload_interval));
        }
        // Written so that NaN fails too.
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(ConfigError::BadJitter(self.jitter));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        let bad = |change: fn(&mut Config)| {
            let mut config = Config::default();
            change(&mut config);
            config.validate().expect_err("invalid")
        };
        assert!(matches!(
            bad(|c| c.interval = Duration::ZERO),
            ConfigError::IntervalTooShort(_)
        ));
        assert_eq!(
            bad(|c| c.timeout = Duration::ZERO),
            ConfigError::ZeroTimeout
        );
        assert!(matches!(
            bad(|c| c.reload_interval = Duration::from_millis(1)),
            ConfigError::ReloadIntervalTooShort(_)
        ));
        assert!(matches!(bad(|c| c.jitter = 1.0), ConfigError::BadJitter(_)));
        assert!(matches!(
            bad(|c| c.jitter = -0.1),
            ConfigError::BadJitter(_)
        ));
        assert!(matches!(
            bad(|c| c.jitter = f64::NAN),
            ConfigError::BadJitter(_)
        ));
    }
}
