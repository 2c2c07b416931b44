//! The client side: follow the notification topic and report each location change once.
//!
//! rskafka has no consumer groups, so every partition is read directly: one task per
//! partition fetches records and hands them to one [`Tracker`], which drops duplicates by
//! CloudEvents id (an operator that crashed after publishing re-publishes the same id), keeps
//! the current location of each application, and reports a [`Change`] only when it differs.
//!
//! Broker restarts are survived: a failed fetch backs off and reconnects; when the broker lost
//! its log reading restarts from the earliest offset, and the tracker's memory of ids keeps
//! that from reporting anything twice. A lost log shows as an offset past the end or out of
//! range, or (when the new log has already grown back to our position) as a different record
//! at the last offset we read: after every reconnect that record is fetched again and
//! compared.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use rskafka::client::error::{Error as RsError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::record::{Record, RecordAndOffset};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::client_state::ClientState;
use crate::event::{EventKind, Notification};
use crate::kafka::{self, Connection, KafkaError};
use crate::resource::Location;

/// How many event ids the tracker remembers for duplicate detection.
pub const REMEMBERED_IDS: usize = 100_000;
/// How long a fetch waits on the broker for new records.
const FETCH_WAIT_MS: i32 = 250;
/// Upper bound of one fetch.
const FETCH_MAX_BYTES: i32 = 4 * 1024 * 1024;
/// How often the partitions of the topic are looked up again (new partitions, lost topic).
const PARTITION_REFRESH: Duration = Duration::from_secs(5);
/// Backoff bounds after a failed fetch or connection.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Where reading starts in partitions present at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StartAt {
    /// Only changes published from now on.
    Latest,
    /// Everything the topic still holds (the current location of every application).
    Earliest,
}

/// An application: (namespace, appId). The appId alone is not unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppRef {
    /// Namespace of its EdgeApplication.
    pub namespace: String,
    /// Its appId.
    pub app_id: String,
}

impl std::fmt::Display for AppRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.app_id)
    }
}

/// Which application a client follows, as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppSelector {
    /// `namespace/appId`: exactly one application.
    Qualified(AppRef),
    /// A bare appId: the namespace is found on the topic (see [`resolve`]). A tracker with a
    /// bare appId follows the first namespace it sees announce it and ignores the others, so
    /// it never flips between two servers.
    Bare(String),
}

impl std::str::FromStr for AppSelector {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((namespace, app_id)) if !namespace.is_empty() && !app_id.is_empty() => {
                Ok(AppSelector::Qualified(AppRef {
                    namespace: namespace.to_owned(),
                    app_id: app_id.to_owned(),
                }))
            }
            Some(_) => Err(format!("{s:?}: expected namespace/appId or appId")),
            None if s.is_empty() => Err("the appId is empty".into()),
            None => Ok(AppSelector::Bare(s.to_owned())),
        }
    }
}

/// Why a bare appId cannot be followed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    /// Several namespaces announce an application with that appId.
    #[error("appId {app_id} is ambiguous on the topic; use one of: {}", candidates.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    Ambiguous {
        /// The appId given.
        app_id: String,
        /// Every application on the topic with that appId.
        candidates: Vec<AppRef>,
    },
}

/// Decides what a selector means given the applications with its appId found on the topic:
/// a bare appId becomes qualified when exactly one namespace has it, stays bare (the first
/// namespace to announce it wins) when none does, and is an error when several do.
pub fn choose(selector: AppSelector, found: &[AppRef]) -> Result<AppSelector, ResolveError> {
    let AppSelector::Bare(app_id) = selector else {
        return Ok(selector);
    };
    let mut candidates: Vec<AppRef> = found
        .iter()
        .filter(|a| a.app_id == app_id)
        .cloned()
        .collect();
    candidates.sort();
    candidates.dedup();
    match candidates.len() {
        0 => Ok(AppSelector::Bare(app_id)),
        1 => Ok(AppSelector::Qualified(candidates.remove(0))),
        _ => Err(ResolveError::Ambiguous { app_id, candidates }),
    }
}

/// A location change of one application, reported once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// Namespace of the application.
    pub namespace: String,
    /// The application.
    pub app_id: String,
    /// What happened.
    pub event: EventKind,
    /// Where it is now; `None` once removed.
    pub location: Option<Location>,
    /// Where this client last knew it, if anywhere.
    pub previous: Option<Location>,
    /// The CloudEvents id.
    pub event_id: String,
    /// The partition of the record.
    pub partition: i32,
    /// The offset of the record.
    pub offset: i64,
    /// The event time (RFC 3339).
    pub time: String,
}

/// Duplicate detection and the current location of each application.
#[derive(Debug)]
pub struct Tracker {
    app_filter: Option<AppSelector>,
    ids: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
    current: HashMap<AppRef, Location>,
}

impl Tracker {
    /// A tracker for one application (`Some(selector)`) or all, remembering `capacity` ids.
    pub fn new(app_filter: Option<AppSelector>, capacity: usize) -> Self {
        Tracker {
            app_filter,
            ids: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            current: HashMap::new(),
        }
    }

    /// Where `app` is, as far as this client knows.
    pub fn location(&self, app: &AppRef) -> Option<&Location> {
        self.current.get(app)
    }

    /// Whether a notification about `app` is one this tracker follows; a bare appId locks
    /// onto the first namespace that announces it.
    fn follows(&mut self, app: &AppRef) -> bool {
        match &self.app_filter {
            None => true,
            Some(AppSelector::Qualified(wanted)) => wanted == app,
            Some(AppSelector::Bare(app_id)) if *app_id == app.app_id => {
                tracing::info!(application = %app, "following the first namespace announcing the appId");
                self.app_filter = Some(AppSelector::Qualified(app.clone()));
                true
            }
            Some(AppSelector::Bare(_)) => false,
        }
    }

    /// Takes in one notification; returns the change it makes, if any.
    pub fn observe(&mut self, n: &Notification, partition: i32, offset: i64) -> Option<Change> {
        let app = AppRef {
            namespace: n.payload.namespace.clone(),
            app_id: n.payload.app_id.clone(),
        };
        if !self.follows(&app) {
            return None;
        }
        if !self.remember(&n.id) {
            return None;
        }
        let location = n.payload.location();
        let previous = match &location {
            Some(new) => self.current.insert(app.clone(), new.clone()),
            None => self.current.remove(&app),
        };
        if previous == location {
            // Announced again under a new id (e.g. after an operator restart with a reset
            // status): nothing changed for this client.
            return None;
        }
        Some(Change {
            namespace: app.namespace,
            app_id: app.app_id,
            event: n.kind,
            location,
            previous,
            event_id: n.id.clone(),
            partition,
            offset,
            time: n.time.to_string(),
        })
    }

    /// Records an id; false if it was seen before.
    fn remember(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        self.ids.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

/// Resolves a bare appId against what the topic holds now (every partition read up to its
/// end): see [`choose`]. A qualified selector is returned as is, without reading.
pub async fn resolve(
    connection: &Connection,
    topic: &str,
    selector: AppSelector,
) -> Result<Result<AppSelector, ResolveError>, KafkaError> {
    if matches!(selector, AppSelector::Qualified(_)) {
        return Ok(Ok(selector));
    }
    let client = connection.connect().await?;
    let Some(count) = kafka::topic_partitions(&client, topic).await? else {
        return Ok(choose(selector, &[]));
    };
    let mut found = Vec::new();
    for partition in 0..count {
        let pc = client
            .partition_client(topic.to_owned(), partition, UnknownTopicHandling::Error)
            .await?;
        let end = pc.get_offset(OffsetAt::Latest).await?;
        let mut next = pc.get_offset(OffsetAt::Earliest).await?;
        while next < end {
            let (records, _) = pc.fetch_records(next, 1..FETCH_MAX_BYTES, 0).await?;
            let Some(last) = records.last() else { break };
            next = last.offset + 1;
            found.extend(records.iter().filter_map(|r| {
                let n = Notification::from_record(&r.record).ok()?;
                Some(AppRef {
                    namespace: n.payload.namespace,
                    app_id: n.payload.app_id,
                })
            }));
        }
    }
    Ok(choose(selector, &found))
}

/// What to follow.
#[derive(Debug, Clone)]
pub struct Config {
    /// The topic.
    pub topic: String,
    /// One application, or all.
    pub app_id: Option<AppSelector>,
    /// Where to start in partitions that exist at startup (later ones are read from the
    /// start).
    pub start: StartAt,
    /// Where the client keeps its position and the applications' locations between runs;
    /// partitions it has a position for resume there instead of at `start`.
    pub state_file: Option<std::path::PathBuf>,
}

/// One record for the tracker.
struct Fetched {
    partition: i32,
    offset: i64,
    notification: Notification,
}

/// Follows the topic until `shutdown` is cancelled, calling `on_change` for every change in
/// the order the records of each application were written. Never returns an error: Kafka
/// trouble is logged and retried.
pub async fn follow<F, Fut>(
    connection: Connection,
    config: Config,
    shutdown: CancellationToken,
    mut on_change: F,
) where
    F: FnMut(Change) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let connection = Arc::new(connection);
    let (tx, mut rx) = mpsc::channel::<Fetched>(1024);
    let mut tracker = Tracker::new(config.app_id.clone(), REMEMBERED_IDS);
    let mut state = load_state(&config);
    for (key, location) in state
        .as_ref()
        .map(|s| s.locations.clone())
        .unwrap_or_default()
    {
        if let Some((namespace, app_id)) = key.split_once('/') {
            tracker.current.insert(
                AppRef {
                    namespace: namespace.to_owned(),
                    app_id: app_id.to_owned(),
                },
                location,
            );
        }
    }
    let resume = state
        .as_ref()
        .map(|s| s.offsets.clone())
        .unwrap_or_default();
    let discovery = tokio::spawn(discover(
        connection.clone(),
        config.clone(),
        resume,
        tx,
        shutdown.clone(),
    ));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            fetched = rx.recv() => match fetched {
                Some(f) => {
                    if let Some(change) = tracker.observe(&f.notification, f.partition, f.offset) {
                        on_change(change).await;
                    }
                    // After the change was handled (its --exec ran): a crash before this
                    // line handles it again on restart, never loses it.
                    if let (Some(s), Some(path)) = (state.as_mut(), config.state_file.as_ref()) {
                        let app = AppRef {
                            namespace: f.notification.payload.namespace.clone(),
                            app_id: f.notification.payload.app_id.clone(),
                        };
                        let at = tracker.location(&app).cloned();
                        s.processed(f.partition, f.offset, app.to_string(), at);
                        if let Err(e) = s.save(path) {
                            tracing::warn!(error = %e, "cannot save the client state");
                        }
                    }
                }
                None => break,
            },
        }
    }
    shutdown.cancel();
    let _ = discovery.await;
}

/// The state of the configured state file, if any (unreadable: logged, started afresh).
fn load_state(config: &Config) -> Option<ClientState> {
    let path = config.state_file.as_ref()?;
    match ClientState::load(path, &config.topic) {
        Ok(state) => Some(state),
        Err(e) => {
            tracing::warn!(error = %e, "starting without the saved state");
            Some(ClientState {
                topic: config.topic.clone(),
                ..Default::default()
            })
        }
    }
}

/// The locations a state file holds for `app` (all applications when `None`), for printing
/// at start.
pub fn saved_locations(
    state_file: &std::path::Path,
    topic: &str,
    app: Option<&AppSelector>,
) -> Result<Vec<(AppRef, Location)>, crate::client_state::StateError> {
    let state = ClientState::load(state_file, topic)?;
    Ok(state
        .locations
        .into_iter()
        .filter_map(|(key, location)| {
            let (namespace, app_id) = key.split_once('/')?;
            let r = AppRef {
                namespace: namespace.to_owned(),
                app_id: app_id.to_owned(),
            };
            let wanted = match app {
                None => true,
                Some(AppSelector::Qualified(q)) => *q == r,
                Some(AppSelector::Bare(a)) => *a == r.app_id,
            };
            wanted.then_some((r, location))
        })
        .collect())
}

/// Finds the topic's partitions and keeps one reader per partition.
async fn discover(
    connection: Arc<Connection>,
    config: Config,
    resume: std::collections::BTreeMap<i32, i64>,
    tx: mpsc::Sender<Fetched>,
    shutdown: CancellationToken,
) {
    let mut readers: HashMap<i32, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut first_look = true;
    let mut retry = RETRY_MIN;
    loop {
        match partition_count(&connection, &config.topic).await {
            Ok(Some(count)) => {
                for partition in 0..count {
                    if readers.contains_key(&partition) {
                        continue;
                    }
                    // Partitions that appear later were created after we started: all of
                    // their records are new to us.
                    let start = if first_look {
                        config.start
                    } else {
                        StartAt::Earliest
                    };
                    let reader = Reader {
                        connection: connection.clone(),
                        topic: config.topic.clone(),
                        partition,
                        tx: tx.clone(),
                        shutdown: shutdown.clone(),
                    };
                    let at = resume.get(&partition).copied();
                    readers.insert(partition, tokio::spawn(reader.run(start, at)));
                }
                first_look = false;
                retry = RETRY_MIN;
            }
            Ok(None) => {
                tracing::debug!(topic = %config.topic, "topic does not exist yet");
                // Whatever is published first is new to us.
                first_look = false;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the topic's partitions; retrying");
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
        let wait = if readers.is_empty() {
            retry.min(Duration::from_secs(1))
        } else {
            PARTITION_REFRESH
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    for (_, reader) in readers {
        let _ = reader.await;
    }
}

async fn partition_count(connection: &Connection, topic: &str) -> Result<Option<i32>, KafkaError> {
    let client = connection.connect().await?;
    kafka::topic_partitions(&client, topic).await
}

/// Reads one partition forever.
struct Reader {
    connection: Arc<Connection>,
    topic: String,
    partition: i32,
    tx: mpsc::Sender<Fetched>,
    shutdown: CancellationToken,
}

impl Reader {
    async fn run(self, start: StartAt, resume: Option<i64>) {
        let mut client: Option<PartitionClient> = None;
        let mut position = resume.map(Position::at).unwrap_or_default();
        let mut retry = RETRY_MIN;
        while !self.shutdown.is_cancelled() {
            match self.step(&mut client, &mut position, start).await {
                Ok(()) => retry = RETRY_MIN,
                Err(e) => {
                    tracing::warn!(topic = %self.topic, partition = self.partition, error = %e,
                        "reading failed; reconnecting");
                    client = None;
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// One fetch (connecting, and positioning or checking the position, first when needed).
    async fn step(
        &self,
        client: &mut Option<PartitionClient>,
        position: &mut Position,
        start: StartAt,
    ) -> Result<(), KafkaError> {
        let pc = match client {
            Some(pc) => pc,
            None => {
                let c = self.connection.connect().await?;
                let pc = c
                    .partition_client(
                        self.topic.clone(),
                        self.partition,
                        UnknownTopicHandling::Error,
                    )
                    .await?;
                if let Some((offset, fingerprint)) = position.last
                    && !self.log_continues(&pc, offset, fingerprint).await?
                {
                    let earliest = pc.get_offset(OffsetAt::Earliest).await?;
                    tracing::warn!(topic = %self.topic, partition = self.partition,
                        last_read = offset, earliest,
                        "the partition is not the log we were reading; reading it from the start");
                    *position = Position::at(earliest);
                }
                client.insert(pc)
            }
        };
        let next = match position.next {
            Some(o) => o,
            None => {
                let at = match start {
                    StartAt::Earliest => OffsetAt::Earliest,
                    StartAt::Latest => OffsetAt::Latest,
                };
                let o = pc.get_offset(at).await?;
                *position = Position::at(o);
                o
            }
        };
        let fetched = tokio::select! {
            _ = self.shutdown.cancelled() => return Ok(()),
            r = pc.fetch_records(next, 1..FETCH_MAX_BYTES, FETCH_WAIT_MS) => r,
        };
        match fetched {
            Ok((records, high_watermark)) => {
                if records.is_empty() && next > high_watermark {
                    // The log restarted below our position: the broker lost it.
                    tracing::warn!(topic = %self.topic, partition = self.partition, position = next,
                        high_watermark, "the partition restarted; reading it from the start");
                    *position = Position::at(pc.get_offset(OffsetAt::Earliest).await?);
                }
                for r in records {
                    position.read(&r);
                    match Notification::from_record(&r.record) {
                        Ok(notification) => {
                            let fetched = Fetched {
                                partition: self.partition,
                                offset: r.offset,
                                notification,
                            };
                            if self.tx.send(fetched).await.is_err() {
                                return Ok(());
                            }
                        }
                        Err(e) => tracing::debug!(partition = self.partition,
                            offset = r.offset, error = %e, "skipping a record that is not a notification"),
                    }
                }
                Ok(())
            }
            Err(RsError::ServerError {
                protocol_error: ProtocolError::OffsetOutOfRange,
                ..
            }) => {
                let earliest = pc.get_offset(OffsetAt::Earliest).await?;
                tracing::warn!(topic = %self.topic, partition = self.partition, position = next,
                    earliest, "offset out of range; reading from the earliest offset");
                *position = Position::at(earliest);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the record at `offset` is still the one we read there: a broker that lost its
    /// log and was written to again has other records at the same offsets.
    async fn log_continues(
        &self,
        pc: &PartitionClient,
        offset: i64,
        fingerprint: u64,
    ) -> Result<bool, KafkaError> {
        match pc.fetch_records(offset, 1..FETCH_MAX_BYTES, 0).await {
            Ok((records, _)) => Ok(same_record_at(&records, offset, fingerprint)),
            Err(RsError::ServerError {
                protocol_error: ProtocolError::OffsetOutOfRange,
                ..
            }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// Where a reader is in its partition.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Position {
    /// The next offset to fetch; `None` until the start offset is looked up.
    next: Option<i64>,
    /// The offset and fingerprint of the last record read, to recognise the same log after a
    /// reconnect.
    last: Option<(i64, u64)>,
}

impl Position {
    fn at(offset: i64) -> Self {
        Position {
            next: Some(offset),
            last: None,
        }
    }

    fn read(&mut self, r: &RecordAndOffset) {
        self.next = Some(r.offset + 1);
        self.last = Some((r.offset, fingerprint(&r.record)));
    }
}

/// A digest of a record's key, value and timestamp: the same record fetched twice has the same
/// fingerprint, a record written to a restarted log at the same offset (a new event id, a new
/// timestamp) almost surely not.
fn fingerprint(record: &Record) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    record.key.hash(&mut h);
    record.value.hash(&mut h);
    record.timestamp.timestamp_millis().hash(&mut h);
    h.finish()
}

/// Whether `records` (fetched from `offset`) start with the record we fingerprinted there.
fn same_record_at(records: &[RecordAndOffset], offset: i64, expected: u64) -> bool {
    records
        .iter()
        .find(|r| r.offset == offset)
        .is_some_and(|r| fingerprint(&r.record) == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Payload;
    use crate::resource::{Endpoint, Protocol};

    fn app_ref(namespace: &str, app_id: &str) -> AppRef {
        AppRef {
            namespace: namespace.into(),
            app_id: app_id.into(),
        }
    }

    fn n(id: &str, app: &str, kind: EventKind, node: Option<&str>) -> Notification {
        n_in("edge", id, app, kind, node)
    }

    fn n_in(
        namespace: &str,
        id: &str,
        app: &str,
        kind: EventKind,
        node: Option<&str>,
    ) -> Notification {
        Notification {
            id: id.into(),
            source: "s".into(),
            kind,
            time: jiff::Timestamp::UNIX_EPOCH,
            payload: Payload {
                app_id: app.into(),
                namespace: namespace.into(),
                name: app.into(),
                edge_node_id: node.map(Into::into),
                endpoint: node.map(|n| Endpoint {
                    host: format!("{n}.example"),
                    port: 2000,
                    protocol: Protocol::Tcp,
                }),
                previous: None,
                generation: 1,
            },
        }
    }

    #[test]
    fn duplicates_are_reported_once() {
        let mut t = Tracker::new(None, 10);
        let placed = n("u.1.placed", "carla", EventKind::Placed, Some("a"));
        let first = t.observe(&placed, 0, 0).expect("a change");
        assert_eq!(first.location.unwrap().edge_node_id, "a");
        assert_eq!(first.previous, None);
        assert_eq!(t.observe(&placed, 0, 1), None, "same id again");
        let moved = n("u.2.migrated", "carla", EventKind::Migrated, Some("b"));
        let change = t.observe(&moved, 0, 2).expect("a change");
        assert_eq!(change.previous.unwrap().edge_node_id, "a");
        assert_eq!(
            t.location(&app_ref("edge", "carla")).unwrap().edge_node_id,
            "b"
        );
    }

    #[test]
    fn a_new_id_for_a_known_location_is_no_change() {
        let mut t = Tracker::new(None, 10);
        t.observe(
            &n("u.1.placed", "carla", EventKind::Placed, Some("a")),
            0,
            0,
        );
        assert_eq!(
            t.observe(
                &n("v.1.placed", "carla", EventKind::Placed, Some("a")),
                0,
                1
            ),
            None
        );
    }

    #[test]
    fn removal_forgets_the_location() {
        let mut t = Tracker::new(None, 10);
        t.observe(
            &n("u.1.placed", "carla", EventKind::Placed, Some("a")),
            0,
            0,
        );
        let change = t
            .observe(&n("u.removed", "carla", EventKind::Removed, None), 0, 1)
            .expect("a change");
        assert_eq!(change.location, None);
        assert!(t.location(&app_ref("edge", "carla")).is_none());
    }

    #[test]
    fn the_filter_keeps_one_application() {
        let mut t = Tracker::new(Some(AppSelector::Bare("carla".into())), 10);
        assert_eq!(
            t.observe(
                &n("x.1.placed", "other", EventKind::Placed, Some("a")),
                0,
                0
            ),
            None
        );
        assert!(
            t.observe(
                &n("u.1.placed", "carla", EventKind::Placed, Some("a")),
                0,
                1
            )
            .is_some()
        );
    }

    #[test]
    fn the_same_app_id_in_two_namespaces_is_two_applications() {
        let mut t = Tracker::new(None, 10);
        t.observe(
            &n_in("ns-a", "a.1.placed", "web", EventKind::Placed, Some("x")),
            0,
            0,
        );
        t.observe(
            &n_in("ns-b", "b.1.placed", "web", EventKind::Placed, Some("y")),
            1,
            0,
        );
        let removed = t
            .observe(
                &n_in("ns-b", "b.removed", "web", EventKind::Removed, None),
                1,
                1,
            )
            .expect("a change");
        assert_eq!(removed.namespace, "ns-b");
        assert_eq!(
            removed.previous.unwrap().edge_node_id,
            "y",
            "ns-b's own location"
        );
        assert_eq!(
            t.location(&app_ref("ns-a", "web")).unwrap().edge_node_id,
            "x"
        );
    }

    #[test]
    fn a_qualified_filter_ignores_other_namespaces() {
        let wanted: AppSelector = "ns-a/web".parse().unwrap();
        let mut t = Tracker::new(Some(wanted), 10);
        assert!(
            t.observe(
                &n_in("ns-a", "a.1.placed", "web", EventKind::Placed, Some("x")),
                0,
                0
            )
            .is_some()
        );
        assert_eq!(
            t.observe(
                &n_in("ns-b", "b.1.placed", "web", EventKind::Placed, Some("y")),
                1,
                0
            ),
            None
        );
        assert_eq!(
            t.observe(
                &n_in("ns-b", "b.removed", "web", EventKind::Removed, None),
                1,
                1
            ),
            None
        );
    }

    #[test]
    fn a_bare_filter_locks_onto_the_first_namespace() {
        let mut t = Tracker::new(Some(AppSelector::Bare("web".into())), 10);
        assert!(
            t.observe(
                &n_in("ns-a", "a.1.placed", "web", EventKind::Placed, Some("x")),
                0,
                0
            )
            .is_some()
        );
        assert_eq!(
            t.observe(
                &n_in("ns-b", "b.1.placed", "web", EventKind::Placed, Some("y")),
                1,
                0
            ),
            None
        );
    }

    #[test]
    fn selectors_parse_and_bare_ones_resolve_only_when_unambiguous() {
        assert_eq!("web".parse(), Ok(AppSelector::Bare("web".into())));
        assert_eq!(
            "ns-a/web".parse(),
            Ok(AppSelector::Qualified(app_ref("ns-a", "web")))
        );
        assert!("/web".parse::<AppSelector>().is_err());
        assert!("ns-a/".parse::<AppSelector>().is_err());
        let found = [
            app_ref("ns-a", "web"),
            app_ref("ns-a", "web"),
            app_ref("ns-b", "other"),
        ];
        assert_eq!(
            choose(AppSelector::Bare("web".into()), &found),
            Ok(AppSelector::Qualified(app_ref("ns-a", "web")))
        );
        assert_eq!(
            choose(AppSelector::Bare("nope".into()), &found),
            Ok(AppSelector::Bare("nope".into()))
        );
        let both = [app_ref("ns-b", "web"), app_ref("ns-a", "web")];
        let err = choose(AppSelector::Bare("web".into()), &both).unwrap_err();
        assert_eq!(
            err.to_string(),
            "appId web is ambiguous on the topic; use one of: ns-a/web, ns-b/web"
        );
    }

    #[test]
    fn memory_of_ids_is_bounded() {
        let mut t = Tracker::new(None, 2);
        for (i, node) in ["a", "b", "c"].iter().enumerate() {
            let id = format!("u.{i}.migrated");
            t.observe(
                &n(&id, "carla", EventKind::Migrated, Some(node)),
                0,
                i as i64,
            );
        }
        assert_eq!(t.ids.len(), 2);
        assert!(
            !t.ids.contains("u.0.migrated"),
            "the oldest id was forgotten"
        );
    }

    fn record_at(offset: i64, value: &str, millis: i64) -> RecordAndOffset {
        RecordAndOffset {
            record: Record {
                key: Some(b"carla".to_vec()),
                value: Some(value.as_bytes().to_vec()),
                headers: Default::default(),
                timestamp: chrono::DateTime::from_timestamp_millis(millis).expect("a time"),
            },
            offset,
        }
    }

    #[test]
    fn the_same_record_at_the_last_offset_means_the_same_log() {
        let read = record_at(4, "event-1", 1_000);
        let mut position = Position::at(0);
        position.read(&read);
        assert_eq!(position.next, Some(5));
        let (offset, fp) = position.last.expect("remembered");
        let refetched = [
            record_at(4, "event-1", 1_000),
            record_at(5, "event-2", 2_000),
        ];
        assert!(same_record_at(&refetched, offset, fp));
    }

    #[test]
    fn another_record_or_none_at_the_last_offset_means_a_lost_log() {
        let fp = fingerprint(&record_at(0, "event-1", 1_000).record);
        // A restarted broker was written to again: same offset, another event.
        assert!(!same_record_at(&[record_at(0, "event-9", 1_000)], 0, fp));
        // Same payload re-published later is another record too.
        assert!(!same_record_at(&[record_at(0, "event-1", 5_000)], 0, fp));
        // Nothing there yet.
        assert!(!same_record_at(&[], 0, fp));
        // The broker answered from a later offset (compacted away).
        assert!(!same_record_at(&[record_at(1, "event-1", 1_000)], 0, fp));
    }
}
