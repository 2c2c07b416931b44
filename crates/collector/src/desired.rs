//! What a Collector asks for, and what to do about the live release: pure functions.
//!
//! - [`desired`]: the release name and namespace, the chart (repository, name, exact version)
//!   and the values, validated; a spec that cannot work is a [`SpecError`] naming the field.
//! - [`plan`]: given the live release (if any), drift, and the last attempt, whether to install,
//!   upgrade, recover, hold, or leave it alone.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::resource::{Attempt, Collector};
use crate::values::{self, ValuesError};

/// A chart repository: an HTTP(S) repository serving `index.yaml`, or an OCI registry path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Repository {
    /// `http(s)://host/path`, without a trailing slash.
    Http(url::Url),
    /// `oci://host[:port]/path`, without a trailing slash.
    Oci(String),
}

impl Repository {
    /// Parses a repository URL.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim().trim_end_matches('/');
        if let Some(rest) = trimmed.strip_prefix("oci://") {
            let host = rest.split('/').next().unwrap_or_default();
            if host.is_empty() || rest.chars().any(|c| c.is_whitespace() || c == '@') {
                return Err(format!(
                    "{trimmed:?} is not an OCI registry path (oci://host[:port]/path)"
                ));
            }
            return Ok(Self::Oci(trimmed.to_owned()));
        }
        let url = url::Url::parse(trimmed)
            .map_err(|e| format!("{trimmed:?} is not a repository URL: {e}"))?;
        match url.scheme() {
            "http" | "https" if url.host().is_some() => {}
            _ => {
                return Err(format!(
                    "{trimmed:?} is not an http://, https:// or oci:// repository"
                ));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            // Credentials in a URL end up in status, events and helm's command line.
            return Err(
                "repository URLs must not carry credentials: use --chart-repository-secret"
                    .to_owned(),
            );
        }
        Ok(Self::Http(url))
    }

    /// Whether this is an OCI registry.
    pub fn is_oci(&self) -> bool {
        matches!(self, Self::Oci(_))
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http(url) => f.write_str(url.as_str().trim_end_matches('/')),
            Self::Oci(path) => f.write_str(path),
        }
    }
}

/// The chart of a release.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChartRef {
    /// Where it is.
    pub repository: Repository,
    /// Whether the operator's repository credentials apply (only to the operator's own
    /// repository: a Collector cannot send them elsewhere).
    pub with_credentials: bool,
    /// Its name.
    pub name: String,
    /// Its exact version.
    pub version: String,
}

impl fmt::Display for ChartRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{} from {}", self.name, self.version, self.repository)
    }
}

/// A Collector's release, as it should be.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// `lower(tenant.reference)`.
    pub namespace: String,
    /// `<collector.name>-<tenant.instance>`.
    pub release: String,
    /// The chart.
    pub chart: ChartRef,
    /// The values (overlay, then configuration).
    pub values: Value,
    /// [`values::hash`] of the values.
    pub values_hash: String,
}

/// Why a Collector's spec cannot become a release. Messages never quote values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// `tenant.reference` does not make a namespace name.
    #[error(
        "spec.tenant.reference {0:?} is not a valid namespace name once lower-cased (at most 63 characters: a-z, 0-9 and '-', starting and ending with a letter or digit)"
    )]
    Namespace(String),
    /// The release name is not a valid Helm release name.
    #[error(
        "the release name {0:?} (spec.collector.name-spec.tenant.instance) is not a valid Helm release name (at most 53 lower-case letters, digits and '-', starting and ending with a letter or digit)"
    )]
    Release(String),
    /// The version is not one exact semantic version.
    #[error(
        "spec.collector.version {0:?} is not an exact chart version (a semantic version such as 1.2.3, not a range)"
    )]
    Version(String),
    /// The chart name cannot be a chart's name.
    #[error(
        "the chart name {0:?} is not a chart name (lower-case letters, digits, '-', '_' and '.')"
    )]
    ChartName(String),
    /// No repository: neither the operator's nor `spec.collector.chart.repository`.
    #[error(
        "no chart repository: set spec.collector.chart.repository or start the operator with --chart-repository"
    )]
    NoRepository,
    /// `spec.collector.chart.repository` cannot be used.
    #[error("spec.collector.chart.repository: {0}")]
    Repository(String),
    /// The values cannot be decoded.
    #[error(transparent)]
    Values(#[from] ValuesError),
}

/// Helm's limit on release names (it stores them in labels and Secret names).
const RELEASE_NAME_MAX: usize = 53;

fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_chart_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 250
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
        && !s.starts_with('.')
}

/// The release a Collector asks for. `repository` is the operator's (`--chart-repository`);
/// `overlays` are the per-cluster values by `spec.cluster`.
pub fn desired(
    c: &Collector,
    repository: Option<&Repository>,
    overlays: &BTreeMap<String, Value>,
) -> Result<Desired, SpecError> {
    let spec = &c.spec;
    let namespace = spec.tenant.reference.to_lowercase();
    if !is_dns_label(&namespace, 63) {
        return Err(SpecError::Namespace(spec.tenant.reference.clone()));
    }
    let release = format!("{}-{}", spec.collector.name, spec.tenant.instance);
    if !is_dns_label(&release, RELEASE_NAME_MAX) {
        return Err(SpecError::Release(release));
    }
    let version = spec.collector.version.trim();
    if semver::Version::parse(version.trim_start_matches('v')).is_err() {
        return Err(SpecError::Version(spec.collector.version.clone()));
    }
    let chart = spec.collector.chart.clone().unwrap_or_default();
    let name = chart.name.unwrap_or_else(|| spec.collector.name.clone());
    if !is_chart_name(&name) {
        return Err(SpecError::ChartName(name));
    }
    let (repository, with_credentials) = match chart.repository.as_deref() {
        Some(own) => {
            let own = Repository::parse(own).map_err(SpecError::Repository)?;
            let same = repository == Some(&own);
            (own, same)
        }
        None => (repository.cloned().ok_or(SpecError::NoRepository)?, true),
    };
    let values = values::resolve(overlays.get(&spec.cluster), &spec.collector.configuration)?;
    let values_hash = values::hash(&values);
    Ok(Desired {
        namespace,
        release,
        chart: ChartRef {
            repository,
            with_credentials,
            name,
            version: version.to_owned(),
        },
        values,
        values_hash,
    })
}

/// The state of a Helm release, as `helm status` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReleaseState {
    /// Deployed.
    Deployed,
    /// The last operation failed.
    Failed,
    /// An install, upgrade or rollback never finished (the process running it died).
    Pending(String),
    /// Anything else helm reports (`superseded`, `uninstalling`, ...).
    Other(String),
}

impl ReleaseState {
    /// Reads helm's status word.
    pub fn parse(word: &str) -> Self {
        match word {
            "deployed" => Self::Deployed,
            "failed" => Self::Failed,
            w if w.starts_with("pending") => Self::Pending(w.to_owned()),
            w => Self::Other(w.to_owned()),
        }
    }
}

/// The live release.
#[derive(Clone, Debug, PartialEq)]
pub struct Live {
    /// Its newest revision.
    pub revision: i64,
    /// That revision's state.
    pub state: ReleaseState,
    /// Its chart's name.
    pub chart: String,
    /// Its chart's version.
    pub version: String,
    /// The values it was given (helm's "user-supplied values").
    pub values: Value,
    /// The newest revision that was deployed successfully, if any.
    pub last_good: Option<i64>,
}

/// What to do about a release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// No release: install it.
    Install,
    /// The release differs from the Collector, or drifted: upgrade, saying why.
    Upgrade(String),
    /// An operation never finished: roll back to the revision (or, with none, uninstall so
    /// the next round installs afresh).
    Recover(Option<i64>),
    /// This exact target failed already: do not try again until the Collector changes.
    Hold(String),
    /// The release is what the Collector asks for.
    UpToDate,
}

/// Decides what to do. `drift` names objects of the release that are missing or were changed;
/// `last` is the newest recorded attempt.
pub fn plan(d: &Desired, live: Option<&Live>, drift: &[String], last: Option<&Attempt>) -> Plan {
    let failed_before = last.filter(|a| {
        a.outcome == OUTCOME_FAILED
            && a.chart == d.chart.name
            && a.version == d.chart.version
            && a.values_hash == d.values_hash
    });
    let Some(live) = live else {
        return match failed_before {
            Some(a) => Plan::Hold(a.message.clone()),
            None => Plan::Install,
        };
    };
    if let ReleaseState::Pending(_) = live.state {
        return Plan::Recover(live.last_good);
    }
    let mut reasons = Vec::new();
    if live.chart != d.chart.name {
        reasons.push(format!("chart {} -> {}", live.chart, d.chart.name));
    }
    if live.version != d.chart.version {
        reasons.push(format!("version {} -> {}", live.version, d.chart.version));
    }
    if values::hash(&live.values) != d.values_hash {
        reasons.push("values changed".to_owned());
    }
    if reasons.is_empty() && live.state == ReleaseState::Deployed {
        if drift.is_empty() {
            return Plan::UpToDate;
        }
        return Plan::Upgrade(format!("drift: {}", drift.join(", ")));
    }
    if let Some(a) = failed_before {
        return Plan::Hold(a.message.clone());
    }
    if reasons.is_empty() {
        reasons.push(format!("release is {}", state_word(&live.state)));
    }
    Plan::Upgrade(reasons.join(", "))
}

fn state_word(state: &ReleaseState) -> &str {
    match state {
        ReleaseState::Deployed => "deployed",
        ReleaseState::Failed => "failed",
        ReleaseState::Pending(w) | ReleaseState::Other(w) => w,
    }
}

/// [`Attempt::outcome`] of an attempt that worked.
pub const OUTCOME_SUCCEEDED: &str = "Succeeded";
/// [`Attempt::outcome`] of an attempt that failed for a reason retrying cannot fix (the chart
/// or values are wrong, or the upgrade failed and was rolled back): held until the Collector
/// changes.
pub const OUTCOME_FAILED: &str = "Failed";
/// [`Attempt::outcome`] of an attempt that failed for a reason that may pass (the repository
/// unreachable, the chart not published yet, objects in the way): retried with backoff.
pub const OUTCOME_RETRYING: &str = "Retrying";

/// How many attempts the status keeps.
pub const HISTORY: usize = 5;

/// `history` with `attempt` appended, keeping the newest [`HISTORY`]. An attempt that repeats
/// the newest one (same action, target, outcome and message) replaces it, so a retried error
/// does not push the history out.
pub fn record(history: &[Attempt], attempt: Attempt) -> Vec<Attempt> {
    let mut list = history.to_vec();
    let repeats = list.last().is_some_and(|l| {
        l.action == attempt.action
            && l.chart == attempt.chart
            && l.version == attempt.version
            && l.values_hash == attempt.values_hash
            && l.outcome == attempt.outcome
            && l.message == attempt.message
    });
    if repeats {
        list.pop();
    }
    list.push(attempt);
    let excess = list.len().saturating_sub(HISTORY);
    list.drain(..excess);
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use serde_json::json;

    fn collector(name: &str, version: &str, reference: &str, configuration: &str) -> Collector {
        serde_json::from_value(json!({
            "apiVersion": "collector.kubecrew.io/v1alpha1",
            "kind": "Collector",
            "metadata": {"name": "acme-otel", "generation": 1},
            "spec": {
                "collector": {"name": name, "version": version,
                              "configuration": base64::engine::general_purpose::STANDARD.encode(configuration)},
                "tenant": {"id": "t-42", "reference": reference, "instance": "main"},
                "cluster": "dev"
            }
        }))
        .unwrap()
    }

    fn repo() -> Repository {
        Repository::parse("https://charts.example.com/stable/").unwrap()
    }

    fn attempt(outcome: &str, version: &str, hash: &str) -> Attempt {
        Attempt {
            time: "2026-12-08T00:00:00Z".into(),
            action: "Upgrade".into(),
            chart: "otel".into(),
            version: version.into(),
            values_hash: hash.into(),
            outcome: outcome.into(),
            message: "boom".into(),
        }
    }

    #[test]
    fn a_collector_names_release_namespace_chart_and_values() {
        let overlays = BTreeMap::from([("dev".to_owned(), json!({"replicas": 1, "a": "o"}))]);
        let d = desired(
            &collector("otel", "1.2.3", "Acme", "replicas: 2\n"),
            Some(&repo()),
            &overlays,
        )
        .unwrap();
        assert_eq!(d.namespace, "acme");
        assert_eq!(d.release, "otel-main");
        assert_eq!(d.chart.name, "otel");
        assert_eq!(d.chart.version, "1.2.3");
        assert!(d.chart.with_credentials);
        assert_eq!(
            d.chart.repository.to_string(),
            "https://charts.example.com/stable"
        );
        assert_eq!(d.values, json!({"replicas": 2, "a": "o"}));
        assert_eq!(d.values_hash, values::hash(&d.values));
    }

    #[test]
    fn a_chart_override_gets_no_credentials_unless_it_is_the_operators_repository() {
        let mut c = collector("otel", "1.2.3", "acme", "");
        c.spec.collector.chart = Some(crate::resource::ChartOverride {
            repository: Some("oci://registry.local:5000/charts".into()),
            name: Some("opentelemetry-collector".into()),
        });
        let d = desired(&c, Some(&repo()), &BTreeMap::new()).unwrap();
        assert_eq!(d.chart.name, "opentelemetry-collector");
        assert!(d.chart.repository.is_oci());
        assert!(!d.chart.with_credentials);
        c.spec.collector.chart = Some(crate::resource::ChartOverride {
            repository: Some("https://charts.example.com/stable".into()),
            name: None,
        });
        let d = desired(&c, Some(&repo()), &BTreeMap::new()).unwrap();
        assert!(d.chart.with_credentials);
        assert_eq!(d.chart.name, "otel");
    }

    #[test]
    fn specs_that_cannot_work_name_the_field() {
        let none = BTreeMap::new();
        let r = Some(repo());
        let r = r.as_ref();
        assert!(matches!(
            desired(&collector("otel", "1.0.0", "acme corp", ""), r, &none),
            Err(SpecError::Namespace(_))
        ));
        assert!(matches!(
            desired(&collector("Otel", "1.0.0", "acme", ""), r, &none),
            Err(SpecError::Release(_))
        ));
        assert!(matches!(
            desired(&collector(&"o".repeat(50), "1.0.0", "acme", ""), r, &none),
            Err(SpecError::Release(_))
        ));
        for range in ["^1.0.0", "1.x", "latest", ">=1", ""] {
            assert!(
                matches!(
                    desired(&collector("otel", range, "acme", ""), r, &none),
                    Err(SpecError::Version(_))
                ),
                "{range}"
            );
        }
        assert!(matches!(
            desired(&collector("otel", "1.0.0", "acme", ""), None, &none),
            Err(SpecError::NoRepository)
        ));
        let mut c = collector("otel", "1.0.0", "acme", "");
        c.spec.collector.configuration = "%%%".into();
        assert!(matches!(
            desired(&c, r, &none),
            Err(SpecError::Values(ValuesError::Base64(_)))
        ));
        c.spec.collector.chart = Some(crate::resource::ChartOverride {
            repository: Some("https://user:pw@charts.example.com".into()),
            name: None,
        });
        let err = desired(&c, r, &none).unwrap_err().to_string();
        assert!(err.contains("must not carry credentials"), "{err}");
        assert!(!err.contains("pw@"), "{err}");
    }

    #[test]
    fn repositories_parse_and_print_without_trailing_slashes() {
        assert_eq!(
            Repository::parse("oci://r.local:5000/charts/").unwrap(),
            Repository::Oci("oci://r.local:5000/charts".into())
        );
        assert!(Repository::parse("oci://").is_err());
        assert!(Repository::parse("ftp://x").is_err());
        assert!(Repository::parse("not a url").is_err());
        assert_eq!(
            Repository::parse("http://127.0.0.1:8080")
                .unwrap()
                .to_string(),
            "http://127.0.0.1:8080"
        );
    }

    fn live(version: &str, values: Value, state: ReleaseState) -> Live {
        Live {
            revision: 3,
            state,
            chart: "otel".into(),
            version: version.into(),
            values,
            last_good: Some(2),
        }
    }

    #[test]
    fn plans_follow_the_difference() {
        let d = desired(
            &collector("otel", "1.2.3", "acme", "replicas: 2\n"),
            Some(&repo()),
            &BTreeMap::new(),
        )
        .unwrap();
        let same = live("1.2.3", json!({"replicas": 2}), ReleaseState::Deployed);
        assert_eq!(plan(&d, None, &[], None), Plan::Install);
        assert_eq!(plan(&d, Some(&same), &[], None), Plan::UpToDate);
        assert_eq!(
            plan(
                &d,
                Some(&same),
                &["Deployment/otel-main missing".into()],
                None
            ),
            Plan::Upgrade("drift: Deployment/otel-main missing".into())
        );
        let older = live("1.2.2", json!({"replicas": 1}), ReleaseState::Deployed);
        assert_eq!(
            plan(&d, Some(&older), &[], None),
            Plan::Upgrade("version 1.2.2 -> 1.2.3, values changed".into())
        );
        let failed = live("1.2.3", json!({"replicas": 2}), ReleaseState::Failed);
        assert_eq!(
            plan(&d, Some(&failed), &[], None),
            Plan::Upgrade("release is failed".into())
        );
        let pending = live(
            "1.2.3",
            json!({}),
            ReleaseState::Pending("pending-upgrade".into()),
        );
        assert_eq!(plan(&d, Some(&pending), &[], None), Plan::Recover(Some(2)));
    }

    #[test]
    fn a_target_that_failed_is_held_until_the_collector_changes() {
        let d = desired(
            &collector("otel", "1.2.3", "acme", ""),
            Some(&repo()),
            &BTreeMap::new(),
        )
        .unwrap();
        let rolled_back = live("1.2.2", json!({}), ReleaseState::Deployed);
        let failed = attempt(OUTCOME_FAILED, "1.2.3", &d.values_hash);
        assert_eq!(
            plan(&d, Some(&rolled_back), &[], Some(&failed)),
            Plan::Hold("boom".into())
        );
        assert_eq!(
            plan(&d, None, &[], Some(&failed)),
            Plan::Hold("boom".into())
        );
        // A retryable failure, or a failure of another target, is no reason to hold.
        let retrying = attempt(OUTCOME_RETRYING, "1.2.3", &d.values_hash);
        assert!(matches!(
            plan(&d, Some(&rolled_back), &[], Some(&retrying)),
            Plan::Upgrade(_)
        ));
        let other = attempt(OUTCOME_FAILED, "1.2.4", &d.values_hash);
        assert!(matches!(
            plan(&d, Some(&rolled_back), &[], Some(&other)),
            Plan::Upgrade(_)
        ));
        // Drift of a held release that is otherwise up to date is still repaired.
        let current = live("1.2.3", json!({}), ReleaseState::Deployed);
        assert!(matches!(
            plan(&d, Some(&current), &["x".into()], Some(&failed)),
            Plan::Upgrade(_)
        ));
    }

    #[test]
    fn history_keeps_the_newest_five_and_folds_repeats() {
        let mut list = Vec::new();
        for v in 0..8 {
            list = record(&list, attempt(OUTCOME_SUCCEEDED, &v.to_string(), "h"));
        }
        assert_eq!(list.len(), HISTORY);
        assert_eq!(list.last().unwrap().version, "7");
        assert_eq!(list.first().unwrap().version, "3");
        let before = list.len();
        list = record(&list, attempt(OUTCOME_RETRYING, "8", "h"));
        list = record(&list, attempt(OUTCOME_RETRYING, "8", "h"));
        assert_eq!(list.len(), before);
        assert_eq!(list.last().unwrap().outcome, OUTCOME_RETRYING);
        assert_eq!(list[list.len() - 2].version, "7");
    }
}
