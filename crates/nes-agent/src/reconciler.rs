//! The level-driven loop: one task owns the kernel cache, the desired configuration and the
//! ledger, and runs a pass (plan, then netlink changes) whenever something may have changed:
//! a new configuration, a kernel notification, a retry timer for pending or failed items, or
//! the periodic full re-read that restores what someone else removed even if a notification
//! was missed.
//!
//! The HTTP layer talks to it through [`AgentHandle`], which implements [`Agent`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use nes_api::{
    ApplyResponse, BootId, DesiredConfig, ItemKey, ItemResult, ItemState, Status, ValidationError,
    validate,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::agent::{Agent, ApplyError};
use crate::metrics::Metrics;
use crate::netlink::{self, Event, Netlink, NetlinkError, Notifications};
use crate::observed::{Addr, Applied, Change, Observed, RouteEntry};
use crate::plan::{self, Action, Exists, Ledger, Owned, state_for_errno};
use crate::store::{Persisted, Store, StoreError};

/// Most notifications handled before the state is acted on; bounds the latency of a pass
/// behind a never-ending burst.
const MAX_EVENTS_PER_BATCH: usize = 65_536;

/// "File exists": the kernel's answer to an exclusive create of something already there.
const EEXIST: i32 = 17;

/// VLANs can stack; each round creates one level and re-reads the links.
const MAX_ROUNDS_PER_PASS: usize = 5;

/// How the agent behaves.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The route (and address) protocol number marking what the agent adds.
    pub route_protocol: u8,
    /// Time between full re-reads of the kernel state.
    pub resync_interval: Duration,
    /// First retry delay for pending or failed items; doubles up to `retry_max`.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Where to persist the configuration and ledger (`None`: memory only).
    pub state_dir: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            route_protocol: DEFAULT_ROUTE_PROTOCOL,
            resync_interval: Duration::from_secs(30),
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            state_dir: None,
        }
    }
}

/// The agent's route protocol number: unassigned in iproute2's `rt_protos` (which lists 0-18,
/// 42, 99 and 186-192), so `ip route show proto 201` lists exactly the agent's routes.
pub const DEFAULT_ROUTE_PROTOCOL: u8 = 201;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Netlink sockets or the first dump failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

enum Command {
    Apply {
        config: DesiredConfig,
        reply: oneshot::Sender<Result<ApplyResponse, ApplyError>>,
    },
}

/// The handle the HTTP layer uses.
#[derive(Clone)]
pub struct AgentHandle {
    commands: mpsc::Sender<Command>,
    config: Arc<RwLock<Option<DesiredConfig>>>,
    status: watch::Receiver<Arc<Status>>,
    metrics: Metrics,
    healthy: Arc<AtomicBool>,
    boot_id: BootId,
}

impl AgentHandle {
    /// This run's boot id.
    pub fn boot_id(&self) -> &BootId {
        &self.boot_id
    }

    /// The metrics (tests read counters from them).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

impl Agent for AgentHandle {
    async fn apply(&self, config: DesiredConfig) -> Result<ApplyResponse, ApplyError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || ApplyError::Unavailable("the agent is shutting down".to_owned());
        self.commands
            .send(Command::Apply { config, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    fn config(&self) -> Option<DesiredConfig> {
        read(&self.config).clone()
    }

    fn status(&self) -> watch::Receiver<Arc<Status>> {
        self.status.clone()
    }

    fn metrics_text(&self) -> String {
        self.metrics.encode()
    }

    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// Reads a lock, ignoring poisoning: the value is replaced whole, never left half-written.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The loop's state.
pub struct Reconciler {
    settings: Settings,
    netlink: Netlink,
    notifications: Notifications,
    observed: Observed,
    desired: Option<DesiredConfig>,
    owned: Owned,
    results: Vec<ItemResult>,
    /// Removals that failed: the pass must be retried even if every desired item holds.
    removals_failed: bool,
    boot_id: BootId,
    store: Store,
    metrics: Metrics,
    commands: mpsc::Receiver<Command>,
    config: Arc<RwLock<Option<DesiredConfig>>>,
    status: watch::Sender<Arc<Status>>,
    healthy: Arc<AtomicBool>,
    retry: Option<(Instant, Duration)>,
}

/// Opens netlink (notifications first), reads the kernel state and the persisted state, and
/// returns the HTTP handle and the loop to [`Reconciler::run`]. Must be called inside the
/// network namespace to manage, within a tokio runtime.
pub async fn start(settings: Settings) -> Result<(AgentHandle, Reconciler), StartError> {
    let (netlink, notifications) = netlink::connect(settings.route_protocol)?;
    let observed = netlink.dump().await?;
    let store = Store::new(settings.state_dir.as_deref());
    let persisted = load_or_set_aside(&store);
    let boot_id = BootId::from_u128(rand::random::<u128>());
    info!(boot_id = %boot_id, links = observed.links.len(), addresses = observed.addresses.len(),
        routes = observed.routes.len(), restored_generation = ?persisted.config.as_ref().map(|c| c.generation),
        "nes-agent started");
    let metrics = Metrics::new();
    let status = observed.to_status(&boot_id, None, Vec::new(), settings.route_protocol);
    let (status_tx, status_rx) = watch::channel(Arc::new(status));
    let (commands_tx, commands) = mpsc::channel(16);
    let owned = persisted.owned_map();
    let config = Arc::new(RwLock::new(persisted.config.clone()));
    let healthy = Arc::new(AtomicBool::new(true));
    let handle = AgentHandle {
        commands: commands_tx,
        config: config.clone(),
        status: status_rx,
        metrics: metrics.clone(),
        healthy: healthy.clone(),
        boot_id: boot_id.clone(),
    };
    let reconciler = Reconciler {
        settings,
        netlink,
        notifications,
        observed,
        desired: persisted.config,
        owned,
        results: Vec::new(),
        removals_failed: false,
        boot_id,
        store,
        metrics,
        commands,
        config,
        status: status_tx,
        healthy,
        retry: None,
    };
    Ok((handle, reconciler))
}

/// The persisted state; a corrupt file is renamed aside (and the agent starts empty) rather
/// than crash-looping the container on it.
fn load_or_set_aside(store: &Store) -> Persisted {
    match store.load() {
        Ok(persisted) => persisted,
        Err(error @ StoreError::Corrupt { .. }) => {
            error!(%error, "ignoring the unreadable state file; it is kept with a .corrupt suffix");
            if let Some(path) = store.path() {
                let _ = std::fs::rename(path, path.with_extension("json.corrupt"));
            }
            Persisted::default()
        }
        Err(error) => {
            error!(%error, "cannot read the state file; starting without a configuration");
            Persisted::default()
        }
    }
}

impl Reconciler {
    /// Runs until `shutdown` is cancelled or the notification socket closes (an error: the
    /// agent can no longer see the kernel and should be restarted).
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), NetlinkError> {
        if self.desired.is_some() {
            self.pass("startup").await;
        }
        let mut resync = tokio::time::interval(self.settings.resync_interval);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await; // the first tick is immediate; the start-up dump is fresh
        loop {
            let retry_at = self.retry.map(|(at, _)| at);
            tokio::select! {
                () = shutdown.cancelled() => break,
                command = self.commands.recv() => match command {
                    Some(Command::Apply { config, reply }) => {
                        let answer = self.accept(config).await;
                        // The requester may have gone; the configuration stands either way.
                        let _ = reply.send(answer);
                    }
                    None => break,
                },
                event = self.notifications.next() => match event {
                    Some(event) => self.on_events(event).await,
                    None => {
                        self.healthy.store(false, Ordering::Relaxed);
                        error!("the netlink notification socket closed");
                        return Err(NetlinkError::Socket(std::io::Error::other(
                            "the netlink notification socket closed",
                        )));
                    }
                },
                () = sleep_until(retry_at) => {
                    self.retry = self.retry.map(|(_, delay)| (Instant::now() + delay, delay));
                    self.pass("retry").await;
                }
                _ = resync.tick() => {
                    self.resync("periodic").await;
                    if self.desired.is_some() {
                        self.pass("resync").await;
                    }
                }
            }
        }
        info!("nes-agent stopping");
        Ok(())
    }

    /// Validates, checks the generation, persists and applies a new desired configuration.
    async fn accept(&mut self, config: DesiredConfig) -> Result<ApplyResponse, ApplyError> {
        if let Err(error) = self.admit(&config) {
            let label = match &error {
                ApplyError::Invalid(_) => "invalid",
                ApplyError::Conflict { .. } => "conflict",
                ApplyError::Unavailable(_) => "unavailable",
            };
            self.metrics.config_request(label);
            info!(generation = config.generation, %error, "configuration refused");
            return Err(error);
        }
        let unchanged = self.desired.as_ref() == Some(&config);
        let persisted = Persisted {
            config: Some(config.clone()),
            owned: self.owned.values().cloned().collect(),
        };
        if !unchanged && let Err(error) = self.store.save(&persisted) {
            self.metrics.config_request("unavailable");
            error!(%error, "cannot persist the configuration");
            return Err(ApplyError::Unavailable(format!(
                "cannot persist the configuration: {error}"
            )));
        }
        self.metrics.config_request("accepted");
        info!(
            generation = config.generation,
            vlans = config.vlans.len(),
            addresses = config.addresses.len(),
            routes = config.routes.len(),
            unchanged,
            "configuration accepted"
        );
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Some(config.clone());
        self.desired = Some(config);
        self.retry = None;
        // Plan a new configuration on a fresh read, not on the cache: an item someone made a
        // moment ago must be found (and so not owned), not created over.
        self.resync("config").await;
        self.pass("config").await;
        Ok(ApplyResponse {
            generation: self.desired.as_ref().map_or(0, |c| c.generation),
            boot_id: self.boot_id.clone(),
            results: self.results.clone(),
        })
    }

    /// The checks a configuration must pass before anything changes. Interfaces that do not
    /// exist yet are not errors: their items are pending until the interface appears.
    fn admit(&self, config: &DesiredConfig) -> Result<(), ApplyError> {
        if let Err(errors) = validate(config, &self.observed.link_names()) {
            let errors: Vec<ValidationError> = errors
                .into_iter()
                .filter(|e| !matches!(e, ValidationError::UnknownInterface { .. }))
                .collect();
            if !errors.is_empty() {
                return Err(ApplyError::Invalid(errors));
            }
        }
        let applied = self.desired.as_ref();
        nes_api::generation::check(applied.map(|c| c.generation), config.generation, || {
            applied == Some(config)
        })?;
        Ok(())
    }

    /// Handles a burst of notifications, then acts once.
    async fn on_events(&mut self, first: Event) {
        let mut reason = None;
        let mut changed = false;
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(event) = next {
            match event {
                Event::Change(change) => {
                    changed = true;
                    if self.observed.apply(change) == Applied::NeedsResync {
                        reason.get_or_insert("link");
                    }
                }
                Event::Overrun => {
                    warn!(
                        "netlink notifications were lost (socket overrun); re-reading the kernel state"
                    );
                    reason = Some("overrun");
                }
                Event::Ignored => {}
            }
            handled += 1;
            next = if handled < MAX_EVENTS_PER_BATCH {
                self.notifications.try_next()
            } else {
                None
            };
        }
        if let Some(reason) = reason {
            self.resync(reason).await;
            changed = true;
        }
        if !changed {
            return;
        }
        if self.desired.is_some() {
            self.pass("event").await;
        } else {
            self.publish();
        }
    }

    /// Re-reads the whole kernel state.
    async fn resync(&mut self, reason: &'static str) {
        self.metrics.resync(reason);
        match self.netlink.dump().await {
            Ok(observed) => {
                self.observed = observed;
                self.publish();
            }
            Err(error) => {
                warn!(%error, reason, "re-reading the kernel state failed; keeping the cached state")
            }
        }
    }

    /// Plans and applies until nothing is left that can be done now, then records the results,
    /// the ledger and the status.
    async fn pass(&mut self, trigger: &'static str) {
        let Some(desired) = self.desired.clone() else {
            return;
        };
        let started = std::time::Instant::now();
        let owned_before = self.owned.clone();
        let mut changes = 0;
        for round in 1..=MAX_ROUNDS_PER_PASS {
            let plan = plan::plan(
                &desired,
                &self.observed,
                &self.owned,
                self.settings.route_protocol,
            );
            for key in &plan.disown {
                self.owned.remove(key);
            }
            let mut outcomes: BTreeMap<ItemKey, ItemResult> = plan.settled;
            let mut created_link = false;
            self.removals_failed = false;
            for step in plan.steps {
                changes += 1;
                let mut outcome = self.netlink.execute(&step.action).await;
                let mut ledger = step.ledger;
                if outcome.as_ref().err().and_then(NetlinkError::errno) == Some(EEXIST) {
                    // Someone else made it since the last read: never ours (no ledger entry).
                    match plan::on_exists(&step.action) {
                        Some(Exists::Holds) => {
                            outcome = Ok(());
                            ledger = Ledger::Keep;
                        }
                        Some(Exists::Conflict(message)) => {
                            self.metrics.netlink_change(false);
                            warn!(item = %step.key, "{message}");
                            outcomes.insert(
                                step.key.clone(),
                                result(&step.key, ItemState::Failed, Some(message)),
                            );
                            continue;
                        }
                        None => {}
                    }
                }
                match outcome {
                    Ok(()) => {
                        self.metrics.netlink_change(true);
                        debug!(item = %step.key, action = %netlink::describe(&step.action), "applied");
                        created_link |= step.action.creates_link();
                        self.record_success(&step.action, ledger);
                        if step.desired {
                            outcomes.insert(
                                step.key.clone(),
                                result(&step.key, ItemState::Applied, None),
                            );
                        }
                    }
                    Err(error) => {
                        self.metrics.netlink_change(false);
                        let state = error.errno().map_or(ItemState::Failed, state_for_errno);
                        warn!(item = %step.key, %error, ?state, "netlink change failed");
                        if step.desired {
                            outcomes.insert(
                                step.key.clone(),
                                result(&step.key, state, Some(error.to_string())),
                            );
                        } else {
                            self.removals_failed = true;
                        }
                    }
                }
            }
            self.results = plan
                .order
                .iter()
                .filter_map(|key| outcomes.remove(key))
                .collect();
            if !created_link || round == MAX_ROUNDS_PER_PASS {
                break;
            }
            // New links: learn their indexes before planning what goes on them.
            self.resync("link").await;
        }
        if self.owned != owned_before {
            self.save_ledger(&desired);
        }
        self.metrics.pass(trigger, started.elapsed());
        self.metrics.items(&self.results);
        self.schedule_retry();
        let unsettled = plan::unsettled(&self.results).len();
        if changes > 0 || unsettled > 0 {
            info!(
                trigger,
                generation = desired.generation,
                changes,
                unsettled,
                took_ms = started.elapsed().as_millis() as u64,
                "pass done"
            );
        }
        self.publish();
    }

    /// Updates the ledger and, optimistically, the kernel cache after a successful change, so
    /// a pass that runs before the kernel's notification arrives does not redo it.
    fn record_success(&mut self, action: &Action, ledger: Ledger) {
        match ledger {
            Ledger::Own(item) => {
                self.owned.insert(item.key(), item);
            }
            Ledger::Disown(key) => {
                self.owned.remove(&key);
            }
            Ledger::Keep => {}
        }
        let change = match action {
            Action::AddAddress { index, net } => Change::Address(Addr {
                index: *index,
                net: *net,
            }),
            Action::DeleteAddress { index, net } => Change::AddressGone(Addr {
                index: *index,
                net: *net,
            }),
            Action::AddRoute(spec) | Action::ReplaceRoute(spec) => Change::Route(RouteEntry {
                id: spec.id,
                gateway: spec.gateway,
                oif: spec.oif,
                protocol: spec.protocol,
            }),
            Action::DeleteRoute(spec) => Change::RouteGone(spec.id),
            Action::SetLink { index, mtu } => {
                let Some(mut link) = self.observed.links.get(index).cloned() else {
                    return;
                };
                link.admin_up = true;
                link.mtu = mtu.unwrap_or(link.mtu);
                Change::Link(link)
            }
            Action::DeleteLink { index } => Change::LinkGone(*index),
            // The new link's index is learnt by the re-read that follows.
            Action::CreateVlan { .. } => return,
        };
        self.observed.apply(change);
    }

    fn save_ledger(&self, desired: &DesiredConfig) {
        let persisted = Persisted {
            config: Some(desired.clone()),
            owned: self.owned.values().cloned().collect(),
        };
        if let Err(error) = self.store.save(&persisted) {
            // The kernel state is right; only a restart would forget what the agent made.
            error!(%error, "cannot persist the ledger of created items");
        }
    }

    /// Retries with exponential backoff while anything is pending or failed.
    fn schedule_retry(&mut self) {
        let all_applied = self.results.iter().all(|r| r.state == ItemState::Applied);
        if all_applied && !self.removals_failed {
            self.retry = None;
            return;
        }
        let delay = match self.retry {
            None => self.settings.retry_min,
            Some((_, delay)) => (delay * 2).min(self.settings.retry_max),
        };
        self.retry = Some((Instant::now() + delay, delay));
    }

    /// Publishes the status if it changed.
    fn publish(&self) {
        let status = self.observed.to_status(
            &self.boot_id,
            self.desired.as_ref().map(|c| c.generation),
            self.results.clone(),
            self.settings.route_protocol,
        );
        self.status.send_if_modified(|current| {
            if **current == status {
                return false;
            }
            *current = Arc::new(status);
            true
        });
    }
}

fn result(key: &ItemKey, state: ItemState, message: Option<String>) -> ItemResult {
    ItemResult {
        item: key.clone(),
        state,
        message,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
