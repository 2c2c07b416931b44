//! The `helm` v4 binary as a subprocess: fetch charts, read, install/upgrade, roll back and
//! uninstall releases. No Rust library renders charts as helm does, so, as Argo CD does, the
//! operator drives helm itself.
//!
//! Secrets never reach helm's command line: repository credentials go to files in a private
//! (0700) directory that helm reads (`--repository-config`, `--registry-config`), and values go
//! to a 0600 file passed with `-f`, removed after the call. helm's own state (repository
//! indexes, OCI caches) lives there too, not in `$HOME`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::desired::{ChartRef, Live, ReleaseState, Repository};

/// The longest helm output kept (a release manifest can be large, but not this large).
const OUTPUT_MAX: usize = 16 << 20;
/// The longest error text kept from helm's stderr.
const ERROR_MAX: usize = 2048;

/// Why helm failed, as far as the operator acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The release does not exist.
    ReleaseNotFound,
    /// The repository has no such chart or version.
    ChartNotFound,
    /// The repository or registry cannot be reached (or refused the credentials).
    Unreachable,
    /// The values do not satisfy the chart's `values.schema.json`.
    SchemaInvalid,
    /// Objects of the release exist and belong to something else.
    Conflict,
    /// Another helm operation on the release is in progress.
    Locked,
    /// Anything else (an object rejected by the API server, a template error).
    Other,
}

/// A failed helm call. `message` is helm's error text, trimmed (callers redact values).
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// helm could not be started.
    #[error("cannot run {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file helm needs could not be written.
    #[error("preparing helm's files: {0}")]
    Files(std::io::Error),
    /// helm ran longer than allowed and was killed.
    #[error("helm {command} did not finish within {after:?}")]
    Timeout {
        /// The subcommand.
        command: String,
        /// The limit.
        after: Duration,
    },
    /// helm exited with an error.
    #[error("helm {command}: {message}")]
    Failed {
        /// The subcommand.
        command: String,
        /// What kind of failure.
        failure: Failure,
        /// helm's error text.
        message: String,
    },
    /// helm's output could not be read.
    #[error("reading the output of helm {command}: {detail}")]
    Output {
        /// The subcommand.
        command: String,
        /// Why.
        detail: String,
    },
}

impl HelmError {
    /// The failure kind ([`Failure::Other`] for timeouts and the like).
    pub fn failure(&self) -> Failure {
        match self {
            HelmError::Failed { failure, .. } => *failure,
            HelmError::Timeout { .. } => Failure::Unreachable,
            _ => Failure::Other,
        }
    }
}

/// Reads helm's error text into a [`Failure`].
pub fn classify(stderr: &str) -> Failure {
    let s = stderr;
    if s.contains("release: not found") {
        Failure::ReleaseNotFound
    } else if s.contains("values don't meet the specifications of the schema") {
        Failure::SchemaInvalid
    } else if s.contains("exists and cannot be imported into the current release") {
        Failure::Conflict
    } else if s.contains("another operation (install/upgrade/rollback) is in progress") {
        Failure::Locked
    } else if s.contains("no chart version found")
        || s.contains("no chart name found")
        || s.contains("\"FetchReference\"") && s.trim_end().ends_with("not found")
        || s.contains("MANIFEST_UNKNOWN")
        || s.contains("NAME_UNKNOWN")
    {
        Failure::ChartNotFound
    } else if s.contains("failed to update the following repositories")
        || s.contains("connection refused")
        || s.contains("no such host")
        || s.contains("i/o timeout")
        || s.contains("401 Unauthorized")
        || s.contains("403 Forbidden")
        || s.contains("unauthorized")
        || s.contains("certificate")
        || s.contains("is not a valid chart repository or cannot be reached")
    {
        Failure::Unreachable
    } else {
        Failure::Other
    }
}

/// helm's error text made fit for a condition: the `Error: ` prefix and helm's advice to run
/// `helm repo update` dropped, the values a schema error quotes (`got -1, `) dropped, one line,
/// bounded.
pub fn tidy(stderr: &str) -> String {
    let mut lines: Vec<String> = stderr
        .lines()
        .map(str::trim)
        // helm's progress chatter and its structured log lines repeat what the error says.
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("Hang tight")
                && !l.starts_with("...")
                && !l.starts_with("level=")
        })
        .map(|l| l.strip_prefix("Error: ").unwrap_or(l).to_owned())
        .map(|l| l.replace(" (try 'helm repo update')", ""))
        .map(|l| strip_got(&l))
        .collect();
    lines.dedup();
    let mut text = lines.join(" ");
    if text.len() > ERROR_MAX {
        let mut end = ERROR_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" ...");
    }
    text
}

/// Removes `got <value>, ` from JSON-schema messages (`minimum: got -1, want 0`).
fn strip_got(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("got ") {
        let Some(comma) = rest[i..].find(", want") else {
            break;
        };
        out.push_str(&rest[..i]);
        rest = &rest[i + comma + 2..];
    }
    out.push_str(rest);
    out
}

/// Credentials for the operator's chart repository, from `--chart-repository-secret`.
#[derive(Clone, Default)]
pub struct Credentials {
    /// Basic-auth user (HTTP repositories and OCI registries).
    pub username: Option<String>,
    /// Basic-auth password.
    pub password: Option<String>,
    /// A `.dockerconfigjson` (OCI registries).
    pub docker_config: Option<Vec<u8>>,
    /// A PEM CA bundle to verify the repository with.
    pub ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a credential, even in a debug log.
        f.debug_struct("Credentials")
            .field("username", &self.username.as_ref().map(|_| "<set>"))
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field(
                "docker_config",
                &self.docker_config.as_ref().map(|_| "<set>"),
            )
            .field("ca", &self.ca.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Credentials {
    /// Reads a Secret's data: `username`/`password`, `.dockerconfigjson`, `ca.crt`.
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Self {
        let text = |k: &str| {
            data.get(k)
                .and_then(|v| String::from_utf8(v.clone()).ok())
                .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                .filter(|s| !s.is_empty())
        };
        Self {
            username: text("username"),
            password: text("password"),
            docker_config: data.get(".dockerconfigjson").cloned(),
            ca: data.get("ca.crt").cloned(),
        }
    }
}

/// How helm is run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The helm binary.
    pub binary: PathBuf,
    /// A private directory for helm's files (created 0700).
    pub home: PathBuf,
    /// The kubeconfig helm uses; none means helm's own default (in a pod: the pod's
    /// ServiceAccount).
    pub kubeconfig: Option<PathBuf>,
    /// The longest one helm call may take.
    pub timeout: Duration,
    /// `--history-max`.
    pub history_max: u32,
    /// Talk plain HTTP to OCI registries (a registry without TLS, as in tests).
    pub plain_http: bool,
    /// The largest total size of cached charts, in bytes.
    pub cache_max_bytes: u64,
}

/// One helm subprocess runner.
#[derive(Clone, Debug)]
pub struct Helm {
    config: Config,
    fetching: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// The user helm impersonates in the cluster (`--kube-as-user`), if any.
    as_user: Option<String>,
}

/// An install or upgrade.
pub struct Upgrade<'a> {
    /// The release.
    pub release: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// The packaged chart.
    pub chart: &'a Path,
    /// The values.
    pub values: &'a Value,
    /// The release description helm records.
    pub description: &'a str,
}

/// What `helm get metadata -o json` prints.
#[derive(Deserialize)]
struct Metadata {
    chart: String,
    version: String,
    revision: i64,
    status: String,
}

/// One entry of `helm history -o json`.
#[derive(Deserialize)]
struct HistoryEntry {
    revision: i64,
    status: String,
}

impl Helm {
    /// A runner; creates its private directory.
    pub fn new(config: Config) -> Result<Self, HelmError> {
        private_dir(&config.home).map_err(HelmError::Files)?;
        private_dir(&config.home.join("tmp")).map_err(HelmError::Files)?;
        Ok(Self {
            config,
            fetching: Default::default(),
            as_user: None,
        })
    }

    /// This runner, with every call to the cluster made as `user` (`--kube-as-user`), e.g. a
    /// tenant's ServiceAccount, so a release can do only what that user may. Fetching charts is
    /// not affected.
    pub fn acting_as(&self, user: Option<String>) -> Self {
        Self {
            as_user: user,
            ..self.clone()
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The packaged chart, from the cache or downloaded into it.
    pub async fn fetch(
        &self,
        chart: &ChartRef,
        credentials: Option<&Credentials>,
    ) -> Result<PathBuf, HelmError> {
        let _one_at_a_time = self.fetching.lock().await;
        let key = short_hash(&chart.repository.to_string());
        let dir = self.config.home.join("charts").join(&key);
        let cached = dir.join(format!("{}-{}.tgz", chart.name, chart.version));
        if tokio::fs::metadata(&cached).await.is_ok() {
            touch(&cached);
            return Ok(cached);
        }
        let repo_dir = self.config.home.join("repositories").join(&key);
        private_dir(&repo_dir).map_err(HelmError::Files)?;
        let download = tempfile::Builder::new()
            .prefix("pull-")
            .tempdir_in(&repo_dir)
            .map_err(HelmError::Files)?;
        let mut args: Vec<OsString> = Vec::new();
        let ca = match credentials.and_then(|c| c.ca.as_ref()) {
            Some(ca) => {
                Some(write_private(&repo_dir.join("ca.crt"), ca).map_err(HelmError::Files)?)
            }
            None => None,
        };
        match &chart.repository {
            Repository::Http(url) => {
                let alias = format!("r{key}");
                let config = repo_dir.join("repositories.yaml");
                let entry = serde_json::json!({
                    "apiVersion": "", "generated": "0001-01-01T00:00:00Z",
                    "repositories": [{
                        "name": alias,
                        "url": url.as_str().trim_end_matches('/'),
                        "username": credentials.and_then(|c| c.username.clone()).unwrap_or_default(),
                        "password": credentials.and_then(|c| c.password.clone()).unwrap_or_default(),
                        "caFile": ca.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                    }]
                });
                // JSON is YAML: helm reads this file as YAML.
                write_private(&config, entry.to_string().as_bytes()).map_err(HelmError::Files)?;
                let common = [
                    OsString::from("--repository-config"),
                    config.into(),
                    "--repository-cache".into(),
                    repo_dir.join("cache").into(),
                ];
                let mut update: Vec<OsString> =
                    vec!["repo".into(), "update".into(), (&alias).into()];
                update.extend(common.iter().cloned());
                self.run("repo update", &update).await?;
                args.extend(["pull".into(), format!("{alias}/{}", chart.name).into()]);
                args.extend(common);
            }
            Repository::Oci(path) => {
                let registry = repo_dir.join("registry.json");
                let auth = credentials
                    .and_then(|c| c.docker_config.clone())
                    .unwrap_or_else(|| b"{\"auths\":{}}".to_vec());
                write_private(&registry, &auth).map_err(HelmError::Files)?;
                args.extend([
                    "pull".into(),
                    format!("{path}/{}", chart.name).into(),
                    "--registry-config".into(),
                    registry.into(),
                ]);
                if self.config.plain_http {
                    args.push("--plain-http".into());
                }
            }
        }
        if let Some(ca) = ca {
            args.extend(["--ca-file".into(), ca.into()]);
        }
        args.extend([
            "--version".into(),
            chart.version.clone().into(),
            "--destination".into(),
            download.path().into(),
        ]);
        self.run("pull", &args).await?;
        let pulled = std::fs::read_dir(download.path())
            .map_err(HelmError::Files)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "tgz"))
            .ok_or_else(|| HelmError::Output {
                command: "pull".into(),
                detail: "no chart archive was written".into(),
            })?;
        std::fs::create_dir_all(&dir).map_err(HelmError::Files)?;
        std::fs::rename(&pulled, &cached).map_err(HelmError::Files)?;
        evict(
            &self.config.home.join("charts"),
            self.config.cache_max_bytes,
            &cached,
        );
        Ok(cached)
    }

    /// The live release, or `None` when there is none.
    pub async fn release(&self, release: &str, namespace: &str) -> Result<Option<Live>, HelmError> {
        let meta = match self
            .run_json::<Metadata>(
                "get metadata",
                &["get", "metadata", release, "-n", namespace, "-o", "json"],
            )
            .await
        {
            Err(e) if e.failure() == Failure::ReleaseNotFound => return Ok(None),
            other => other?,
        };
        let values = self
            .run_json::<Value>(
                "get values",
                &["get", "values", release, "-n", namespace, "-o", "json"],
            )
            .await?;
        let state = ReleaseState::parse(&meta.status);
        let last_good = if state == ReleaseState::Deployed {
            Some(meta.revision)
        } else {
            self.last_good(release, namespace).await?
        };
        Ok(Some(Live {
            revision: meta.revision,
            state,
            chart: meta.chart,
            version: meta.version,
            values: if values.is_null() {
                Value::Object(Default::default())
            } else {
                values
            },
            last_good,
        }))
    }

    /// The newest revision that was deployed (now `deployed` or `superseded`).
    async fn last_good(&self, release: &str, namespace: &str) -> Result<Option<i64>, HelmError> {
        let history = self
            .run_json::<Vec<HistoryEntry>>(
                "history",
                &[
                    "history", release, "-n", namespace, "-o", "json", "--max", "256",
                ],
            )
            .await?;
        Ok(history
            .iter()
            .filter(|h| h.status == "deployed" || h.status == "superseded")
            .map(|h| h.revision)
            .max())
    }

    /// The release's manifest (every object it rendered), as YAML documents.
    pub async fn manifest(&self, release: &str, namespace: &str) -> Result<String, HelmError> {
        self.run(
            "get manifest",
            &["get", "manifest", release, "-n", namespace],
        )
        .await
    }

    /// `helm upgrade --install`, server-side, with bounded history; returns the new revision.
    pub async fn upgrade(&self, u: &Upgrade<'_>) -> Result<i64, HelmError> {
        let dir = tempfile::Builder::new()
            .prefix("values-")
            .tempdir_in(&self.config.home)
            .map_err(HelmError::Files)?;
        let values = write_private(
            &dir.path().join("values.json"),
            u.values.to_string().as_bytes(),
        )
        .map_err(HelmError::Files)?;
        let args: Vec<OsString> = vec![
            "upgrade".into(),
            "--install".into(),
            u.release.into(),
            u.chart.into(),
            "--namespace".into(),
            u.namespace.into(),
            "--values".into(),
            values.into(),
            // The Collector's values are the whole truth: never reuse a previous release's.
            "--reset-values".into(),
            "--server-side=true".into(),
            // Drift is put back: fields someone changed by hand are taken back from them.
            "--force-conflicts".into(),
            "--history-max".into(),
            self.config.history_max.to_string().into(),
            "--timeout".into(),
            format!("{}s", self.config.timeout.as_secs()).into(),
            "--description".into(),
            u.description.into(),
            "--output".into(),
            "json".into(),
        ];
        #[derive(Deserialize)]
        struct Installed {
            version: i64,
        }
        let out = self.run("upgrade", &args).await?;
        drop(dir);
        serde_json::from_str::<Installed>(&out)
            .map(|i| i.version)
            .map_err(|e| HelmError::Output {
                command: "upgrade".into(),
                detail: e.to_string(),
            })
    }

    /// `helm rollback` to `revision`; returns nothing helm would not also record.
    pub async fn rollback(
        &self,
        release: &str,
        namespace: &str,
        revision: i64,
    ) -> Result<(), HelmError> {
        let args: Vec<OsString> = vec![
            "rollback".into(),
            release.into(),
            revision.to_string().into(),
            "--namespace".into(),
            namespace.into(),
            "--server-side=true".into(),
            "--history-max".into(),
            self.config.history_max.to_string().into(),
            "--timeout".into(),
            format!("{}s", self.config.timeout.as_secs()).into(),
        ];
        self.run("rollback", &args).await.map(drop)
    }

    /// `helm uninstall`; a release that is already gone is not an error.
    pub async fn uninstall(&self, release: &str, namespace: &str) -> Result<(), HelmError> {
        let args: Vec<OsString> = vec![
            "uninstall".into(),
            release.into(),
            "--namespace".into(),
            namespace.into(),
            "--ignore-not-found".into(),
            "--timeout".into(),
            format!("{}s", self.config.timeout.as_secs()).into(),
        ];
        self.run("uninstall", &args).await.map(drop)
    }

    async fn run_json<T: serde::de::DeserializeOwned>(
        &self,
        command: &str,
        args: &[&str],
    ) -> Result<T, HelmError> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let out = self.run(command, &args).await?;
        serde_json::from_str(&out).map_err(|e| HelmError::Output {
            command: command.into(),
            detail: e.to_string(),
        })
    }

    /// Runs helm with `args`, in its private environment, killed after the timeout.
    async fn run<A: AsRef<std::ffi::OsStr>>(
        &self,
        command: &str,
        args: &[A],
    ) -> Result<String, HelmError> {
        let home = &self.config.home;
        let mut cmd = tokio::process::Command::new(&self.config.binary);
        cmd.args(args);
        let fetching = command == "pull" || command == "repo update";
        if let (Some(user), false) = (&self.as_user, fetching) {
            cmd.args(["--kube-as-user", user]);
        }
        cmd.env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env("HELM_NO_PLUGINS", "1")
            // client-go's discovery cache goes to $HOME/.kube: keep it in the private directory
            // too (the container's root file system is read-only).
            .env("HOME", home)
            .env("TMPDIR", home.join("tmp"))
            .env_remove("HELM_DEBUG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(kubeconfig) = &self.config.kubeconfig {
            cmd.env("KUBECONFIG", kubeconfig);
        }
        let mut child = cmd.spawn().map_err(|source| HelmError::Spawn {
            binary: self.config.binary.display().to_string(),
            source,
        })?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let work = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let mut stdout = stdout.take(OUTPUT_MAX as u64);
            let mut stderr = stderr.take(OUTPUT_MAX as u64);
            let (a, b, status) = tokio::join!(
                stdout.read_to_end(&mut out),
                stderr.read_to_end(&mut err),
                child.wait()
            );
            a.and(b).and(status).map(|s| (s, out, err))
        };
        let (status, out, err) =
            tokio::time::timeout(self.config.timeout + Duration::from_secs(10), work)
                .await
                .map_err(|_| HelmError::Timeout {
                    command: command.into(),
                    after: self.config.timeout,
                })?
                .map_err(|e| HelmError::Output {
                    command: command.into(),
                    detail: e.to_string(),
                })?;
        let err = String::from_utf8_lossy(&err);
        if !status.success() {
            return Err(HelmError::Failed {
                command: command.into(),
                failure: classify(&err),
                message: tidy(&err),
            });
        }
        String::from_utf8(out).map_err(|e| HelmError::Output {
            command: command.into(),
            detail: e.to_string(),
        })
    }
}

/// The first 16 hex digits of SHA-256: a file-name-safe key.
fn short_hash(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// Creates `dir` (and parents) readable by the operator only.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes `bytes` to `path`, readable by the operator only, and returns the path.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    Ok(path.to_owned())
}

/// Marks a cached chart as used (the cache evicts the least recently used).
fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

/// Deletes the least recently used charts until the cache is within `max` bytes (never `keep`).
fn evict(root: &Path, max: u64, keep: &Path) {
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten())
        .filter_map(Result::ok)
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((m.modified().ok()?, m.len(), e.path()))
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    for (_, size, path) in files {
        if total <= max {
            break;
        }
        if path != keep && std::fs::remove_file(&path).is_ok() {
            total = total.saturating_sub(size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helm_errors_are_classified() {
        let cases = [
            ("Error: release: not found", Failure::ReleaseNotFound),
            (
                "Error: failed to perform \"FetchReference\" on source: 127.0.0.1:39779/charts/some-chart:9.9.9: not found",
                Failure::ChartNotFound,
            ),
            (
                "Error: chart \"demo\" matching 0.2.0 not found in r1 index. (try 'helm repo update'): no chart version found for demo-0.2.0",
                Failure::ChartNotFound,
            ),
            (
                "Error: chart \"nochart\" matching 0.2.0 not found in r1 index. (try 'helm repo update'): no chart name found",
                Failure::ChartNotFound,
            ),
            (
                "...Unable to get an update from the \"r1\" chart repository (http://127.0.0.1:18099):\n\tGet \"http://127.0.0.1:18099/index.yaml\": dial tcp 127.0.0.1:18099: connect: connection refused\nError: failed to update the following repositories: [http://127.0.0.1:18099]",
                Failure::Unreachable,
            ),
            (
                "Error: values don't meet the specifications of the schema(s) in the following chart(s):\ndemo:\n- at '/replicaCount': minimum: got -1, want 0",
                Failure::SchemaInvalid,
            ),
            (
                "Error: unable to continue with install: ServiceAccount \"demo-x\" in namespace \"acme\" exists and cannot be imported into the current release: invalid ownership metadata",
                Failure::Conflict,
            ),
            (
                "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress",
                Failure::Locked,
            ),
            (
                "Error: UPGRADE FAILED: Deployment.apps \"x\" is invalid: spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000",
                Failure::Other,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(classify(text), want, "{text}");
        }
    }

    #[test]
    fn errors_are_tidied_into_one_line_without_schema_values() {
        let text = "Error: values don't meet the specifications of the schema(s) in the following chart(s):\ndemo:\n- at '/replicaCount': minimum: got -1, want 0\n- at '/x': got string, want integer\n";
        assert_eq!(
            tidy(text),
            "values don't meet the specifications of the schema(s) in the following chart(s): demo: - at '/replicaCount': minimum: want 0 - at '/x': want integer"
        );
        assert_eq!(
            tidy(
                "Error: chart \"demo\" matching 0.2.0 not found in r1 index. (try 'helm repo update'): no chart version found"
            ),
            "chart \"demo\" matching 0.2.0 not found in r1 index.: no chart version found"
        );
        assert!(tidy(&"x".repeat(10_000)).len() < ERROR_MAX + 10);
    }

    #[test]
    fn credentials_never_print() {
        let data = BTreeMap::from([
            ("username".to_owned(), b"alice\n".to_vec()),
            ("password".to_owned(), b"hunter22".to_vec()),
        ]);
        let c = Credentials::from_secret_data(&data);
        assert_eq!(c.username.as_deref(), Some("alice"));
        let printed = format!("{c:?}");
        assert!(
            !printed.contains("hunter22") && !printed.contains("alice"),
            "{printed}"
        );
    }

    #[test]
    fn the_cache_evicts_the_least_recently_used() {
        let root = tempfile::tempdir().unwrap();
        let repo = root.path().join("r");
        std::fs::create_dir_all(&repo).unwrap();
        let now = std::time::SystemTime::now();
        for (i, name) in ["old.tgz", "mid.tgz", "new.tgz"].iter().enumerate() {
            let p = repo.join(name);
            std::fs::write(&p, vec![0u8; 100]).unwrap();
            let f = std::fs::File::options().append(true).open(&p).unwrap();
            f.set_modified(now - Duration::from_secs(100 - i as u64 * 10))
                .unwrap();
        }
        evict(root.path(), 250, &repo.join("old.tgz"));
        assert!(repo.join("old.tgz").exists(), "the chart in use stays");
        assert!(!repo.join("mid.tgz").exists());
        assert!(repo.join("new.tgz").exists());
    }
}
