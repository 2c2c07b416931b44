//! Leader election over a `coordination.k8s.io/v1` Lease, following client-go's
//! `leaderelection` package so kubecrew operators interoperate with (and behave like) every other
//! controller that shares a Lease.
//!
//! Several replicas run a [`LeaderElector`] on the same Lease; at most one of them reports
//! `true` on its [`LeaderElector::subscribe`] channel at a time, and only that one should
//! reconcile:
//!
//! - A candidate takes the Lease when it does not exist (creates it), names no holder, names
//!   this candidate already, or has expired. Every write is a replace carrying the observed
//!   `resourceVersion`, so two candidates racing for the same Lease cannot both win: the loser
//!   gets a 409, re-reads and keeps waiting.
//! - The leader renews every `retry_period`. If it cannot renew for `renew_deadline` (measured
//!   from the start of its last successful write), or a fresh read shows another holder, it
//!   stops claiming leadership and goes back to being a candidate. Because
//!   `renew_deadline < lease_duration`, it has stopped before anyone else may take over.
//! - On shutdown (the [`CancellationToken`] passed to [`LeaderElector::run`]) a leader first
//!   stops claiming leadership, then releases the Lease (no holder, `leaseDurationSeconds: 1`)
//!   so a successor takes over at its next retry instead of waiting for the Lease to expire.
//!
//! # Clock skew
//!
//! As in client-go, expiry is judged on the local monotonic clock, never on the `renewTime`
//! written by the holder: a candidate remembers *when it first saw* the current version of the
//! Lease (its `resourceVersion`), and considers the Lease expired once `leaseDurationSeconds`
//! have passed since then without the Lease changing. Skew between the holder's wall clock and
//! ours therefore cannot make a live Lease look expired (or a dead one look live forever). The
//! cost, shared with client-go, is that a freshly started candidate waits one full lease
//! duration before taking over a Lease that was abandoned long ago. `renewTime` and
//! `acquireTime` are still written (wall clock), for humans and tools.
//!
//! # Usage
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use operator_core::leader::{LeaderElectionConfig, LeaderElector, wait_until_leader};
//! use tokio_util::sync::CancellationToken;
//!
//! let config = LeaderElectionConfig::new("kubecrew-system", "my-operator", "pod-abc");
//! let elector = LeaderElector::new(client, config)?;
//! let mut leading = elector.subscribe();
//! let shutdown = CancellationToken::new();
//! let election = tokio::spawn(elector.run(shutdown.clone()));
//! wait_until_leader(&mut leading).await?;
//! // ... reconcile until `*leading.borrow()` turns false, then stop reconciling ...
//! // On SIGTERM: stop reconciling first, then release the Lease.
//! shutdown.cancel();
//! election.await??;
//! # Ok(()) }
//! ```

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Candidates retry acquisition after `retry_period * (1 + JITTER_FACTOR * r)`, `r` uniform in
/// [0, 1), as client-go does, so candidates started together do not keep colliding.
pub const JITTER_FACTOR: f64 = 1.2;

/// `leaseDurationSeconds` written when releasing: the smallest valid value, so a Lease whose
/// release somehow left a holder behind still expires almost at once.
const RELEASED_LEASE_SECONDS: i32 = 1;

/// Where and how to run an election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease; all candidates of one election use the same name.
    pub lease_name: String,
    /// This candidate's identity (unique among candidates, e.g. the pod name), written to
    /// `holderIdentity`.
    pub identity: String,
    /// How long others must wait, after the last renewal they observed, before taking over.
    /// Written as whole seconds (rounded up).
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it steps down.
    pub renew_deadline: Duration,
    /// How often the leader renews, and (jittered) how often candidates retry.
    pub retry_period: Duration,
}

/// A [`LeaderElectionConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A name or the identity is empty (an empty `holderIdentity` means "no holder").
    #[error("leader election {field} must not be empty")]
    Empty {
        /// The empty field.
        field: &'static str,
    },
    /// The Lease stores whole seconds, at least one.
    #[error("lease_duration must be between 1s and {max}s, got {got:?}", max = i32::MAX)]
    LeaseDurationOutOfRange {
        /// The configured value.
        got: Duration,
    },
    /// The leader must give up before others may take over.
    #[error(
        "renew_deadline ({renew_deadline:?}) must be shorter than lease_duration ({lease_duration:?})"
    )]
    RenewDeadlineTooLong {
        /// The configured renew deadline.
        renew_deadline: Duration,
        /// The configured lease duration.
        lease_duration: Duration,
    },
    /// The leader must get at least one retry before its renew deadline.
    #[error(
        "retry_period ({retry_period:?}) must be shorter than renew_deadline ({renew_deadline:?})"
    )]
    RetryPeriodTooLong {
        /// The configured retry period.
        retry_period: Duration,
        /// The configured renew deadline.
        renew_deadline: Duration,
    },
    /// A zero retry period would spin.
    #[error("retry_period must be greater than zero")]
    ZeroRetryPeriod,
}

impl LeaderElectionConfig {
    /// A configuration with client-go's defaults: lease 15s, renew deadline 10s, retry 2s.
    pub fn new(
        namespace: impl Into<String>,
        lease_name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        LeaderElectionConfig {
            namespace: namespace.into(),
            lease_name: lease_name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Checks that the durations are consistent and the names non-empty.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("namespace", &self.namespace),
            ("lease_name", &self.lease_name),
            ("identity", &self.identity),
        ] {
            if value.is_empty() {
                return Err(ConfigError::Empty { field });
            }
        }
        if self.lease_duration < Duration::from_secs(1)
            || self.lease_duration > Duration::from_secs(i32::MAX as u64)
        {
            return Err(ConfigError::LeaseDurationOutOfRange {
                got: self.lease_duration,
            });
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(ConfigError::RenewDeadlineTooLong {
                renew_deadline: self.renew_deadline,
                lease_duration: self.lease_duration,
            });
        }
        if self.retry_period.is_zero() {
            return Err(ConfigError::ZeroRetryPeriod);
        }
        if self.retry_period >= self.renew_deadline {
            return Err(ConfigError::RetryPeriodTooLong {
                retry_period: self.retry_period,
                renew_deadline: self.renew_deadline,
            });
        }
        Ok(())
    }

    /// `leaseDurationSeconds` to write. Rounded up: others waiting a little longer is safe, a
    /// little shorter is not.
    fn lease_duration_seconds(&self) -> i32 {
        let secs =
            self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(secs).unwrap_or(i32::MAX)
    }

    /// `namespace/name`, for logs and errors.
    fn lease_ref(&self) -> String {
        format!("{}/{}", self.namespace, self.lease_name)
    }
}

/// A Lease as this candidate observed it: the spec, and the local instant at which this
/// version of it was first seen (the clock that expiry is judged on).
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// The Lease's spec.
    pub spec: &'a LeaseSpec,
    /// When this version of the Lease was first seen.
    pub since: Instant,
}

/// What a candidate should do about the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease: create one naming us.
    Create,
    /// The Lease names us: renew it, keeping `acquireTime` and `leaseTransitions`.
    Renew,
    /// The Lease has no holder or has expired: take it over (new `acquireTime`,
    /// `leaseTransitions` + 1).
    Acquire,
    /// Someone else holds a live Lease.
    Wait {
        /// The current holder.
        holder: String,
        /// How long until the Lease expires unless renewed.
        remaining: Duration,
    },
}

/// Decides what `identity` should do about the Lease `observed` (`None`: it does not exist) at
/// local instant `now`. Pure; see the module documentation for why expiry is judged on
/// `observed.since` rather than `renewTime`.
pub fn decide(observed: Option<Observed<'_>>, identity: &str, now: Instant) -> Decision {
    let Some(observed) = observed else {
        return Decision::Create;
    };
    match holder(observed.spec) {
        None => Decision::Acquire,
        Some(holder) if holder == identity => Decision::Renew,
        Some(holder) => match remaining(observed, now) {
            Some(remaining) => Decision::Wait {
                holder: holder.to_owned(),
                remaining,
            },
            None => Decision::Acquire,
        },
    }
}

/// The holder named by a Lease; an empty identity means none, as in client-go.
fn holder(spec: &LeaseSpec) -> Option<&str> {
    spec.holder_identity.as_deref().filter(|h| !h.is_empty())
}

/// Time left before the observed Lease expires, `None` once expired. A missing or non-positive
/// `leaseDurationSeconds` means expired (client-go reads it as 0).
fn remaining(observed: Observed<'_>, now: Instant) -> Option<Duration> {
    let seconds = observed.spec.lease_duration_seconds.unwrap_or(0);
    let duration = Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    let Some(expires) = observed.since.checked_add(duration) else {
        // Beyond the clock's range: not expiring in this process's lifetime.
        return Some(duration);
    };
    expires
        .checked_duration_since(now)
        .filter(|left| !left.is_zero())
}

/// The spec to write to carry out `decision` (not `Wait`) on `current`, at wall-clock `now`.
/// Fields this elector does not own (`strategy`, `preferredHolder`) are kept.
fn claimed_spec(
    current: Option<&LeaseSpec>,
    decision: &Decision,
    identity: &str,
    lease_duration_seconds: i32,
    now: jiff::Timestamp,
) -> LeaseSpec {
    let base = current.cloned().unwrap_or_default();
    let transitions = base.lease_transitions.unwrap_or(0);
    let (acquire_time, transitions) = match decision {
        Decision::Create => (MicroTime(now), 0),
        Decision::Acquire => (MicroTime(now), transitions.saturating_add(1)),
        // `Wait` never gets here (nothing is written); treating it as a renewal is harmless.
        Decision::Renew | Decision::Wait { .. } => (
            base.acquire_time.clone().unwrap_or(MicroTime(now)),
            transitions,
        ),
    };
    LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(lease_duration_seconds),
        acquire_time: Some(acquire_time),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..base
    }
}

/// The spec that releases `current`: no holder, a one-second duration and fresh times so any
/// candidate takes over at once (client-go's `release`). `leaseTransitions` is kept; the next
/// holder counts the transition.
fn released_spec(current: &LeaseSpec, now: jiff::Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(RELEASED_LEASE_SECONDS),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        ..current.clone()
    }
}

/// Waits until the elector behind `leading` reports leadership. Fails if the elector stopped
/// (its [`LeaderElector::run`] returned or was dropped) without becoming leader.
pub async fn wait_until_leader(leading: &mut watch::Receiver<bool>) -> Result<(), ElectorStopped> {
    leading
        .wait_for(|is_leader| *is_leader)
        .await
        .map(|_| ())
        .map_err(|_| ElectorStopped)
}

/// Waits until the elector behind `leading` no longer claims leadership (including because it
/// stopped).
pub async fn wait_until_not_leader(leading: &mut watch::Receiver<bool>) {
    // An error means the elector is gone, which also means nobody leads on our behalf.
    let _ = leading.wait_for(|is_leader| !*is_leader).await;
}

/// The elector stopped before the awaited change happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the leader elector stopped")]
pub struct ElectorStopped;

/// The Lease could not be released on shutdown; it expires after its lease duration instead.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The API server refused or could not be reached.
    #[error("releasing lease {lease}: {source}")]
    Api {
        /// `namespace/name` of the Lease.
        lease: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The release did not finish within the renew deadline.
    #[error("releasing lease {lease} timed out after {timeout:?}")]
    TimedOut {
        /// `namespace/name` of the Lease.
        lease: String,
        /// How long it tried.
        timeout: Duration,
    },
}

/// The leadership flag. Dropping it (also when the task running the elector is aborted or
/// panics) reports "not leader", so nobody keeps acting on a stale `true`.
struct LeaderFlag(watch::Sender<bool>);

impl LeaderFlag {
    fn set(&self, leading: bool) {
        self.0
            .send_if_modified(|current| std::mem::replace(current, leading) != leading);
    }
}

impl Drop for LeaderFlag {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// The last version of the Lease this candidate saw, and since when (local clock).
#[derive(Debug, Clone)]
struct Observation {
    lease: Lease,
    since: Instant,
}

impl Observation {
    /// Records `lease` seen at `now`: the clock restarts only when the Lease changed (a new
    /// `resourceVersion`), as client-go restarts it only when the record changed.
    fn update(previous: Option<Observation>, lease: Lease, now: Instant) -> Observation {
        let since = match previous {
            Some(prev)
                if prev.lease.metadata.resource_version.is_some()
                    && prev.lease.metadata.resource_version == lease.metadata.resource_version =>
            {
                prev.since
            }
            _ => now,
        };
        Observation { lease, since }
    }

    fn as_observed(&self) -> Observed<'_> {
        Observed {
            spec: self.spec(),
            since: self.since,
        }
    }

    fn spec(&self) -> &LeaseSpec {
        const EMPTY: &LeaseSpec = &LeaseSpec {
            acquire_time: None,
            holder_identity: None,
            lease_duration_seconds: None,
            lease_transitions: None,
            preferred_holder: None,
            renew_time: None,
            strategy: None,
        };
        self.lease.spec.as_ref().unwrap_or(EMPTY)
    }

    fn names(&self, identity: &str) -> bool {
        holder(self.spec()) == Some(identity)
    }
}

/// The result of one acquire-or-renew attempt.
#[derive(Debug)]
enum Attempt {
    /// We hold the Lease; others may not take it before `written_at + lease_duration`.
    Leading { written_at: Instant },
    /// Someone else holds a live Lease.
    Held { holder: String, remaining: Duration },
    /// Someone else wrote the Lease between our read and our write.
    Conflict,
}

/// How a term as leader ended.
enum Term {
    /// Renewal failed or the Lease was taken: back to candidate.
    Lost,
    /// Shutdown was requested.
    Cancelled,
}

/// Runs one candidate of an election. Create with [`LeaderElector::new`], take a
/// [`LeaderElector::subscribe`] receiver, then spawn [`LeaderElector::run`].
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    lease: String,
    leader: LeaderFlag,
    observed: Option<Observation>,
    /// A write of ours may have landed without our seeing the answer (cut short by shutdown or
    /// a timeout, or the connection failed), so the Lease may name us unbeknown to
    /// `observed`: if so, check before exiting. Cleared by the next read.
    unsure: bool,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector")
            .field("config", &self.config)
            .field("leading", &*self.leader.0.borrow())
            .finish_non_exhaustive()
    }
}

impl LeaderElector {
    /// A candidate using `client`; fails if `config` does not [validate](LeaderElectionConfig::validate).
    pub fn new(client: kube::Client, config: LeaderElectionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            lease: config.lease_ref(),
            config,
            leader: LeaderFlag(watch::channel(false).0),
            observed: None,
            unsure: false,
        })
    }

    /// Whether this candidate currently leads, updated as it gains and loses leadership.
    /// Reads `false` once the elector has stopped.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.0.subscribe()
    }

    /// Campaigns, leads and re-campaigns until `shutdown` is cancelled; then, if the Lease
    /// names this candidate, stops claiming leadership and releases the Lease before returning.
    /// API errors while campaigning or leading are logged and retried, never returned.
    ///
    /// Stop your reconcile work before cancelling `shutdown`: once the Lease is released a
    /// successor starts at once.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), ReleaseError> {
        loop {
            let Some(written_at) = self.campaign(&shutdown).await else {
                break;
            };
            self.leader.set(true);
            tracing::info!(lease = %self.lease, identity = %self.config.identity,
                holder = %self.config.identity, "became leader");
            let term = self.lead(&shutdown, written_at).await;
            self.leader.set(false);
            if let Term::Cancelled = term {
                break;
            }
        }
        self.release_on_shutdown().await
    }

    /// Tries to acquire until it succeeds (returning when the winning write started) or
    /// `shutdown` is cancelled (`None`).
    async fn campaign(&mut self, shutdown: &CancellationToken) -> Option<Instant> {
        tracing::info!(lease = %self.lease, identity = %self.config.identity,
            "trying to acquire lease");
        loop {
            let attempt =
                tokio::time::timeout(self.config.renew_deadline, self.try_acquire_or_renew());
            let result = shutdown.run_until_cancelled(attempt).await?;
            match result {
                Ok(Ok(Attempt::Leading { written_at })) => return Some(written_at),
                Ok(Ok(Attempt::Held { holder, remaining })) => {
                    tracing::debug!(lease = %self.lease, identity = %self.config.identity,
                        holder = %holder, ?remaining, "lease is held by another candidate");
                }
                Ok(Ok(Attempt::Conflict)) => {
                    tracing::debug!(lease = %self.lease, identity = %self.config.identity,
                        "lost a race for the lease");
                }
                Ok(Err(error)) => {
                    tracing::warn!(lease = %self.lease, identity = %self.config.identity,
                        %error, "failed to acquire lease");
                }
                Err(_) => {
                    tracing::warn!(lease = %self.lease, identity = %self.config.identity,
                        timeout = ?self.config.renew_deadline, "acquiring lease timed out");
                }
            }
            let pause = jittered(self.config.retry_period, rand::random::<f64>());
            shutdown
                .run_until_cancelled(tokio::time::sleep(pause))
                .await?;
        }
    }

    /// Renews every retry period while leading. `written_at` is when the write that made or
    /// kept us leader started; the term ends once `renew_deadline` has passed since the last
    /// such write, which is before anyone else can consider the Lease expired.
    async fn lead(&mut self, shutdown: &CancellationToken, mut written_at: Instant) -> Term {
        let retry = self.config.retry_period;
        loop {
            let deadline = written_at + self.config.renew_deadline;
            let next = Instant::now() + retry;
            let pause = tokio::time::sleep_until(next.min(deadline));
            if shutdown.run_until_cancelled(pause).await.is_none() {
                return Term::Cancelled;
            }
            if Instant::now() >= deadline {
                tracing::warn!(lease = %self.lease, identity = %self.config.identity,
                    renew_deadline = ?self.config.renew_deadline,
                    "failed to renew lease within the renew deadline; stepping down");
                return Term::Lost;
            }
            let attempt = tokio::time::timeout_at(deadline, self.try_acquire_or_renew());
            let Some(result) = shutdown.run_until_cancelled(attempt).await else {
                return Term::Cancelled;
            };
            match result {
                Ok(Ok(Attempt::Leading { written_at: at })) => {
                    written_at = at;
                    tracing::debug!(lease = %self.lease, identity = %self.config.identity,
                        "renewed lease");
                }
                Ok(Ok(Attempt::Held { holder, .. })) => {
                    // The Lease is definitely someone else's: no point waiting for the deadline.
                    tracing::warn!(lease = %self.lease, identity = %self.config.identity,
                        holder = %holder, "lease was taken over; stepping down");
                    return Term::Lost;
                }
                Ok(Ok(Attempt::Conflict)) => {
                    tracing::debug!(lease = %self.lease, identity = %self.config.identity,
                        "lease changed while renewing; retrying");
                }
                Ok(Err(error)) => {
                    tracing::warn!(lease = %self.lease, identity = %self.config.identity,
                        %error, "failed to renew lease");
                }
                // The deadline check at the top of the loop steps down.
                Err(_) => {}
            }
        }
    }

    /// One attempt, as client-go's `tryAcquireOrRenew`: if our last observation names us,
    /// write straight away; if that conflicts (or there is nothing to go on), read the Lease,
    /// decide, and write if the decision allows.
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        if let Some(observed) = self
            .observed
            .clone()
            .filter(|o| o.names(&self.config.identity))
        {
            match self.write(Some(observed.lease), &Decision::Renew).await {
                Err(error) if is_conflict(&error) => {
                    tracing::debug!(lease = %self.lease, identity = %self.config.identity,
                        "lease changed since last observed; re-reading");
                }
                other => return other,
            }
        }
        let current = self.api.get_opt(&self.config.lease_name).await?;
        self.unsure = false;
        let now = Instant::now();
        self.observed = current.map(|lease| Observation::update(self.observed.take(), lease, now));
        let decision = decide(
            self.observed.as_ref().map(Observation::as_observed),
            &self.config.identity,
            now,
        );
        if let Decision::Wait { holder, remaining } = decision {
            return Ok(Attempt::Held { holder, remaining });
        }
        let current = self.observed.as_ref().map(|o| o.lease.clone());
        match self.write(current, &decision).await {
            Err(error) if is_conflict(&error) => Ok(Attempt::Conflict),
            other => other,
        }
    }

    /// Writes the Lease claimed per `decision`: creates it when `current` is `None`, otherwise
    /// replaces it with `current`'s resourceVersion as precondition.
    async fn write(
        &mut self,
        current: Option<Lease>,
        decision: &Decision,
    ) -> Result<Attempt, kube::Error> {
        let spec = claimed_spec(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            decision,
            &self.config.identity,
            self.config.lease_duration_seconds(),
            jiff::Timestamp::now(),
        );
        let written_at = Instant::now();
        self.unsure = true;
        let written = match current {
            Some(lease) => {
                let lease = Lease {
                    spec: Some(spec),
                    ..lease
                };
                self.api
                    .replace(&self.config.lease_name, &PostParams::default(), &lease)
                    .await
            }
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.lease_name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
        };
        self.unsure = !is_definite(&written);
        let written = written?;
        if matches!(decision, Decision::Acquire | Decision::Create) {
            tracing::info!(lease = %self.lease, identity = %self.config.identity,
                holder = %self.config.identity, "acquired lease");
        }
        self.observed = Some(Observation::update(
            self.observed.take(),
            written,
            Instant::now(),
        ));
        Ok(Attempt::Leading { written_at })
    }

    /// Releases the Lease if it (possibly) names us, within the renew deadline.
    async fn release_on_shutdown(&mut self) -> Result<(), ReleaseError> {
        let may_hold = self.unsure
            || self
                .observed
                .as_ref()
                .is_some_and(|o| o.names(&self.config.identity));
        if !may_hold {
            return Ok(());
        }
        let timeout = self.config.renew_deadline;
        match tokio::time::timeout(timeout, self.release()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(ReleaseError::Api {
                lease: self.lease.clone(),
                source,
            }),
            Err(_) => Err(ReleaseError::TimedOut {
                lease: self.lease.clone(),
                timeout,
            }),
        }
    }

    /// Clears the holder if the Lease names us; re-reads and retries on conflict.
    async fn release(&mut self) -> Result<(), kube::Error> {
        loop {
            let lease = match self.observed.take() {
                Some(observed) if observed.names(&self.config.identity) => observed.lease,
                _ => match self.api.get_opt(&self.config.lease_name).await? {
                    Some(lease) => lease,
                    None => return Ok(()),
                },
            };
            let Some(spec) = lease
                .spec
                .as_ref()
                .filter(|s| holder(s) == Some(self.config.identity.as_str()))
            else {
                tracing::info!(lease = %self.lease, identity = %self.config.identity,
                    "lease no longer names us; nothing to release");
                return Ok(());
            };
            let released = Lease {
                spec: Some(released_spec(spec, jiff::Timestamp::now())),
                ..lease
            };
            match self
                .api
                .replace(&self.config.lease_name, &PostParams::default(), &released)
                .await
            {
                Ok(_) => {
                    tracing::info!(lease = %self.lease, identity = %self.config.identity,
                        "released lease");
                    return Ok(());
                }
                // `observed` is now empty, so the next round re-reads.
                Err(error) if is_conflict(&error) => {}
                Err(error) => return Err(error),
            }
        }
    }
}

/// `retry * (1 + JITTER_FACTOR * random)`, `random` in [0, 1).
fn jittered(retry: Duration, random: f64) -> Duration {
    retry.mul_f64(1.0 + JITTER_FACTOR * random.clamp(0.0, 1.0))
}

/// Whether a write's outcome is known: it succeeded, or the server refused it (4xx). Other
/// failures (connection errors, 5xx such as a storage timeout) may hide a write that landed.
fn is_definite<T>(result: &Result<T, kube::Error>) -> bool {
    match result {
        Ok(_) => true,
        Err(kube::Error::Api(status)) => (400..500).contains(&status.code),
        Err(_) => false,
    }
}

/// A 409: someone else created or changed the Lease first.
fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LeaderElectionConfig {
        LeaderElectionConfig::new("ns", "lease", "me")
    }

    fn ts(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(seconds).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

    fn spec(holder: Option<&str>, seconds: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: seconds,
            acquire_time: Some(MicroTime(ts(1_000))),
            renew_time: Some(MicroTime(ts(1_010))),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    fn lease(rv: &str, spec: LeaseSpec) -> Lease {
        Lease {
            metadata: ObjectMeta {
                resource_version: Some(rv.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
        }
    }

    #[test]
    fn defaults_follow_client_go_and_validate() {
        let c = config();
        assert_eq!(c.lease_duration, Duration::from_secs(15));
        assert_eq!(c.renew_deadline, Duration::from_secs(10));
        assert_eq!(c.retry_period, Duration::from_secs(2));
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn renew_deadline_must_be_shorter_than_lease() {
        let mut c = config();
        c.renew_deadline = c.lease_duration;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::RenewDeadlineTooLong { .. })
        ));
        c.renew_deadline = c.lease_duration + Duration::from_secs(1);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::RenewDeadlineTooLong { .. })
        ));
    }

    #[test]
    fn retry_period_must_be_shorter_than_renew_deadline_and_positive() {
        let mut c = config();
        c.retry_period = c.renew_deadline;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::RetryPeriodTooLong { .. })
        ));
        c.retry_period = Duration::ZERO;
        assert_eq!(c.validate(), Err(ConfigError::ZeroRetryPeriod));
    }

    #[test]
    fn lease_duration_must_fit_whole_seconds() {
        let mut c = config();
        c.lease_duration = Duration::from_millis(900);
        c.renew_deadline = Duration::from_millis(500);
        c.retry_period = Duration::from_millis(100);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::LeaseDurationOutOfRange { .. })
        ));
        c.lease_duration = Duration::from_secs(u64::from(u32::MAX));
        assert!(matches!(
            c.validate(),
            Err(ConfigError::LeaseDurationOutOfRange { .. })
        ));
    }

    #[test]
    fn empty_names_are_rejected() {
        let mut c = config();
        c.identity.clear();
        assert_eq!(c.validate(), Err(ConfigError::Empty { field: "identity" }));
        let mut c = config();
        c.lease_name.clear();
        assert_eq!(
            c.validate(),
            Err(ConfigError::Empty {
                field: "lease_name"
            })
        );
        let mut c = config();
        c.namespace.clear();
        assert_eq!(c.validate(), Err(ConfigError::Empty { field: "namespace" }));
    }

    #[test]
    fn config_errors_read_well() {
        let mut c = config();
        c.renew_deadline = Duration::from_secs(20);
        let message = c
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            message,
            "renew_deadline (20s) must be shorter than lease_duration (15s)"
        );
    }

    #[test]
    fn lease_duration_seconds_round_up() {
        let mut c = config();
        assert_eq!(c.lease_duration_seconds(), 15);
        c.lease_duration = Duration::from_millis(1_500);
        assert_eq!(c.lease_duration_seconds(), 2);
    }

    #[test]
    fn missing_lease_is_created() {
        assert_eq!(decide(None, "me", Instant::now()), Decision::Create);
    }

    #[test]
    fn lease_without_holder_is_acquired() {
        let now = Instant::now();
        for s in [spec(None, Some(15)), spec(Some(""), Some(15))] {
            let observed = Observed {
                spec: &s,
                since: now,
            };
            assert_eq!(decide(Some(observed), "me", now), Decision::Acquire);
        }
    }

    #[test]
    fn our_lease_is_renewed_even_when_expired() {
        let s = spec(Some("me"), Some(15));
        let since = Instant::now();
        let later = since + Duration::from_secs(60);
        let observed = Observed { spec: &s, since };
        assert_eq!(decide(Some(observed), "me", since), Decision::Renew);
        assert_eq!(decide(Some(observed), "me", later), Decision::Renew);
    }

    #[test]
    fn live_lease_of_another_holder_is_waited_for() {
        let s = spec(Some("other"), Some(15));
        let since = Instant::now();
        let observed = Observed { spec: &s, since };
        assert_eq!(
            decide(Some(observed), "me", since + Duration::from_secs(5)),
            Decision::Wait {
                holder: "other".into(),
                remaining: Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn lease_expires_exactly_at_the_lease_duration() {
        let s = spec(Some("other"), Some(15));
        let since = Instant::now();
        let observed = Observed { spec: &s, since };
        let just_before = since + Duration::from_secs(15) - Duration::from_millis(1);
        assert!(matches!(
            decide(Some(observed), "me", just_before),
            Decision::Wait { .. }
        ));
        let at = since + Duration::from_secs(15);
        assert_eq!(decide(Some(observed), "me", at), Decision::Acquire);
    }

    #[test]
    fn missing_or_invalid_duration_counts_as_expired() {
        let now = Instant::now();
        for seconds in [None, Some(0), Some(-5)] {
            let s = spec(Some("other"), seconds);
            let observed = Observed {
                spec: &s,
                since: now,
            };
            assert_eq!(
                decide(Some(observed), "me", now),
                Decision::Acquire,
                "{seconds:?}"
            );
        }
    }

    #[test]
    fn renew_time_is_ignored_in_favour_of_the_local_observation() {
        // The holder's clock says it renewed in 1970; we only just saw that record.
        let s = spec(Some("other"), Some(15));
        let now = Instant::now();
        let observed = Observed {
            spec: &s,
            since: now,
        };
        assert!(matches!(
            decide(Some(observed), "me", now),
            Decision::Wait { .. }
        ));
        // And a renewTime far in the future does not keep a record alive we saw long ago.
        let mut future = spec(Some("other"), Some(15));
        future.renew_time = Some(MicroTime(ts(4_000_000_000)));
        let observed = Observed {
            spec: &future,
            since: now,
        };
        let later = now + Duration::from_secs(16);
        assert_eq!(decide(Some(observed), "me", later), Decision::Acquire);
    }

    #[test]
    fn created_spec_names_us_with_no_transitions() {
        let now = ts(2_000);
        let s = claimed_spec(None, &Decision::Create, "me", 15, now);
        assert_eq!(s.holder_identity.as_deref(), Some("me"));
        assert_eq!(s.lease_duration_seconds, Some(15));
        assert_eq!(s.acquire_time, Some(MicroTime(now)));
        assert_eq!(s.renew_time, Some(MicroTime(now)));
        assert_eq!(s.lease_transitions, Some(0));
    }

    #[test]
    fn renewal_keeps_acquire_time_and_transitions() {
        let now = ts(2_000);
        let current = spec(Some("me"), Some(10));
        let s = claimed_spec(Some(&current), &Decision::Renew, "me", 15, now);
        assert_eq!(s.acquire_time, Some(MicroTime(ts(1_000))));
        assert_eq!(s.renew_time, Some(MicroTime(now)));
        assert_eq!(s.lease_transitions, Some(3));
        assert_eq!(s.lease_duration_seconds, Some(15));
    }

    #[test]
    fn takeover_counts_a_transition_and_keeps_foreign_fields() {
        let now = ts(2_000);
        let mut current = spec(Some("other"), Some(15));
        current.strategy = Some("OldestEmulationVersion".into());
        let s = claimed_spec(Some(&current), &Decision::Acquire, "me", 15, now);
        assert_eq!(s.holder_identity.as_deref(), Some("me"));
        assert_eq!(s.acquire_time, Some(MicroTime(now)));
        assert_eq!(s.lease_transitions, Some(4));
        assert_eq!(s.strategy.as_deref(), Some("OldestEmulationVersion"));
    }

    #[test]
    fn takeover_of_a_lease_without_transitions_counts_one() {
        let mut current = spec(None, None);
        current.lease_transitions = None;
        let s = claimed_spec(Some(&current), &Decision::Acquire, "me", 15, ts(2_000));
        assert_eq!(s.lease_transitions, Some(1));
    }

    #[test]
    fn release_clears_the_holder_and_shortens_the_lease() {
        let now = ts(2_000);
        let s = released_spec(&spec(Some("me"), Some(15)), now);
        assert_eq!(s.holder_identity, None);
        assert_eq!(s.lease_duration_seconds, Some(1));
        assert_eq!(s.renew_time, Some(MicroTime(now)));
        assert_eq!(s.lease_transitions, Some(3));
        let since = Instant::now();
        let observed = Observed { spec: &s, since };
        assert_eq!(decide(Some(observed), "other", since), Decision::Acquire);
    }

    #[test]
    fn observation_clock_restarts_only_when_the_lease_changes() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(5);
        let first = Observation::update(None, lease("1", spec(Some("x"), Some(15))), t0);
        assert_eq!(first.since, t0);
        let same = Observation::update(Some(first), lease("1", spec(Some("x"), Some(15))), t1);
        assert_eq!(same.since, t0);
        let changed = Observation::update(Some(same), lease("2", spec(Some("x"), Some(15))), t1);
        assert_eq!(changed.since, t1);
    }

    #[test]
    fn observation_without_resource_version_always_restarts() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(5);
        let mut unversioned = lease("1", spec(Some("x"), Some(15)));
        unversioned.metadata.resource_version = None;
        let first = Observation::update(None, unversioned.clone(), t0);
        assert_eq!(Observation::update(Some(first), unversioned, t1).since, t1);
    }

    #[test]
    fn observation_without_spec_names_nobody() {
        let o = Observation {
            lease: Lease::default(),
            since: Instant::now(),
        };
        assert!(!o.names("me"));
        assert_eq!(
            decide(Some(o.as_observed()), "me", o.since),
            Decision::Acquire
        );
    }

    #[test]
    fn jitter_stays_within_client_go_bounds() {
        let retry = Duration::from_secs(2);
        assert_eq!(jittered(retry, 0.0), retry);
        assert_eq!(jittered(retry, 0.5), Duration::from_millis(3_200));
        assert!(jittered(retry, 1.0) <= retry.mul_f64(1.0 + JITTER_FACTOR));
        assert_eq!(jittered(retry, -3.0), retry);
    }

    #[test]
    fn only_success_and_refusals_are_definite_outcomes() {
        let status = |code| -> Result<(), kube::Error> {
            Err(kube::Error::Api(Box::new(
                kube::core::Status::failure("x", "x").with_code(code),
            )))
        };
        assert!(is_definite(&Ok::<(), kube::Error>(())));
        assert!(is_definite(&status(409)));
        assert!(is_definite(&status(422)));
        assert!(!is_definite(&status(504)));
        assert!(!is_definite::<()>(&Err(
            kube::Error::LinesCodecMaxLineLengthExceeded
        )));
    }

    #[test]
    fn only_409_is_a_conflict() {
        let status = |code| {
            kube::Error::Api(Box::new(
                kube::core::Status::failure("x", "Conflict").with_code(code),
            ))
        };
        assert!(is_conflict(&status(409)));
        assert!(!is_conflict(&status(404)));
        assert!(!is_conflict(&status(500)));
    }

    #[tokio::test]
    async fn leader_flag_reads_false_once_dropped() {
        let flag = LeaderFlag(watch::channel(false).0);
        let mut rx = flag.0.subscribe();
        flag.set(true);
        assert!(*rx.borrow_and_update());
        drop(flag);
        assert!(!*rx.borrow());
        assert_eq!(wait_until_leader(&mut rx).await, Err(ElectorStopped));
        wait_until_not_leader(&mut rx).await;
    }
}
