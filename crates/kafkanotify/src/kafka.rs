//! Connecting to Kafka (brokers, TLS, SASL) and publishing notifications with the broker's
//! acknowledgement, shared by the operator and the client.
//!
//! Credentials are read from files or the environment and never logged: [`Connection`]'s
//! `Debug` redacts them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rskafka::BackoffConfig;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use tokio::sync::Mutex;

use crate::event::{ContentMode, Notification};
use crate::partitioner;

/// Kafka connection flags, shared by `kafkanotify` and `kafkanotify-client`.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Bootstrap brokers, `host:port`, comma separated.
    #[arg(
        long = "kafka-brokers",
        env = "KAFKA_BROKERS",
        value_delimiter = ',',
        required = true
    )]
    pub brokers: Vec<String>,
    /// Client id sent to the brokers.
    #[arg(
        long = "kafka-client-id",
        env = "KAFKA_CLIENT_ID",
        default_value = "kubecrew-kafkanotify"
    )]
    pub client_id: String,
    /// Use TLS (implied by any --kafka-tls-* file). Without a CA file, the Mozilla roots are
    /// trusted.
    #[arg(long = "kafka-tls", env = "KAFKA_TLS")]
    pub tls: bool,
    /// PEM file of the CA certificates that sign the brokers' certificates.
    #[arg(long = "kafka-tls-ca-file", env = "KAFKA_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM file of the client certificate chain (mutual TLS).
    #[arg(
        long = "kafka-tls-cert-file",
        env = "KAFKA_TLS_CERT_FILE",
        requires = "tls_key_file"
    )]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM file of the client private key (mutual TLS).
    #[arg(
        long = "kafka-tls-key-file",
        env = "KAFKA_TLS_KEY_FILE",
        requires = "tls_cert_file"
    )]
    pub tls_key_file: Option<PathBuf>,
    /// SASL mechanism; needs a username and a password.
    #[arg(
        long = "kafka-sasl-mechanism",
        env = "KAFKA_SASL_MECHANISM",
        value_enum
    )]
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL username.
    #[arg(long = "kafka-sasl-username", env = "KAFKA_SASL_USERNAME")]
    pub sasl_username: Option<String>,
    /// File holding the SASL password (preferred: a mounted Secret).
    #[arg(long = "kafka-sasl-password-file", env = "KAFKA_SASL_PASSWORD_FILE")]
    pub sasl_password_file: Option<PathBuf>,
    /// SASL password from the environment (e.g. a Secret as env var); never a flag, so it
    /// does not show in process listings.
    #[arg(skip = std::env::var("KAFKA_SASL_PASSWORD").ok())]
    pub sasl_password_env: Option<String>,
    /// How long one publish (connect, metadata, produce, acknowledgement) may take.
    #[arg(long = "kafka-timeout", env = "KAFKA_TIMEOUT", default_value = "10s", value_parser = operator_core::duration::parse)]
    pub timeout: Duration,
}

/// SASL mechanisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SaslMechanism {
    /// PLAIN (use with TLS).
    Plain,
    /// SCRAM-SHA-256.
    #[value(name = "scram-sha-256")]
    ScramSha256,
    /// SCRAM-SHA-512.
    #[value(name = "scram-sha-512")]
    ScramSha512,
}

/// Why the Kafka configuration cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A credentials or certificate file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{path}: {detail}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The TLS settings are inconsistent.
    #[error("TLS: {0}")]
    Tls(String),
    /// SASL is asked for without a complete set of credentials.
    #[error("SASL: {0}")]
    Sasl(String),
}

/// A validated connection configuration.
#[derive(Clone)]
pub struct Connection {
    brokers: Vec<String>,
    client_id: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    sasl: Option<SaslConfig>,
    timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("brokers", &self.brokers)
            .field("client_id", &self.client_id)
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl KafkaArgs {
    /// Checks the flags and reads the files they name.
    pub fn connection(&self) -> Result<Connection, ConfigError> {
        let wants_tls = self.tls
            || self.tls_ca_file.is_some()
            || self.tls_cert_file.is_some()
            || self.tls_key_file.is_some();
        let tls = wants_tls.then(|| self.tls_config()).transpose()?;
        Ok(Connection {
            brokers: self.brokers.clone(),
            client_id: self.client_id.clone(),
            tls: tls.map(Arc::new),
            sasl: self.sasl()?,
            timeout: self.timeout,
        })
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, ConfigError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let mut roots = rustls::RootCertStore::empty();
        match &self.tls_ca_file {
            Some(path) => {
                let pem = read(path)?;
                let certs = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| pem_error(path, e))?;
                if certs.is_empty() {
                    return Err(pem_error(path, "no certificate found"));
                }
                for cert in certs {
                    roots.add(cert).map_err(|e| pem_error(path, e))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::Tls(e.to_string()))?
            .with_root_certificates(roots);
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert_path), Some(key_path)) => {
                let certs = CertificateDer::pem_slice_iter(&read(cert_path)?)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| pem_error(cert_path, e))?;
                let key = PrivateKeyDer::from_pem_slice(&read(key_path)?)
                    .map_err(|e| pem_error(key_path, e))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| ConfigError::Tls(e.to_string()))
            }
            (None, None) => Ok(builder.with_no_client_auth()),
            _ => Err(ConfigError::Tls(
                "a client certificate needs both --kafka-tls-cert-file and --kafka-tls-key-file"
                    .into(),
            )),
        }
    }

    fn sasl(&self) -> Result<Option<SaslConfig>, ConfigError> {
        let Some(mechanism) = self.sasl_mechanism else {
            return Ok(None);
        };
        let username = self
            .sasl_username
            .clone()
            .ok_or_else(|| ConfigError::Sasl("--kafka-sasl-username is required".into()))?;
        let password = match (&self.sasl_password_file, &self.sasl_password_env) {
            (Some(path), _) => String::from_utf8_lossy(&read(path)?).trim_end().to_owned(),
            (None, Some(password)) => password.clone(),
            (None, None) => {
                return Err(ConfigError::Sasl(
                    "a password is required: --kafka-sasl-password-file or KAFKA_SASL_PASSWORD"
                        .into(),
                ));
            }
        };
        let credentials = Credentials::new(username, password);
        Ok(Some(match mechanism {
            SaslMechanism::Plain => SaslConfig::Plain(credentials),
            SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
            SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
        }))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

fn pem_error(path: &Path, detail: impl std::fmt::Display) -> ConfigError {
    ConfigError::Pem {
        path: path.to_owned(),
        detail: detail.to_string(),
    }
}

/// Why talking to Kafka failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// No broker answered in time, or the connection broke.
    #[error("Kafka is unavailable: {0}")]
    Unavailable(String),
    /// A broker answered with an error.
    #[error("Kafka refused the request: {0}")]
    Rejected(String),
    /// The operation took longer than the configured timeout.
    #[error("Kafka did not answer within {0:?}")]
    Timeout(Duration),
    /// The topic does not exist and the operator may not create it (`--create-topics=false`).
    #[error("topic {0} does not exist (and --create-topics is false)")]
    TopicMissing(String),
}

impl KafkaError {
    /// A short machine-readable reason (conditions, metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            KafkaError::Unavailable(_) => "KafkaUnavailable",
            KafkaError::Rejected(_) => "KafkaRejected",
            KafkaError::Timeout(_) => "KafkaTimeout",
            KafkaError::TopicMissing(_) => "KafkaTopicMissing",
        }
    }
}

impl KafkaError {
    /// Whether the error concerns the connection (reset it) rather than one topic or
    /// partition (forget only that topic's metadata).
    pub fn is_connection_level(&self) -> bool {
        matches!(self, KafkaError::Unavailable(_) | KafkaError::Timeout(_))
    }
}

impl From<rskafka::client::error::Error> for KafkaError {
    fn from(e: rskafka::client::error::Error) -> Self {
        use rskafka::client::error::Error as E;
        match e {
            E::ServerError {
                protocol_error,
                error_message,
                ..
            } => KafkaError::Rejected(match error_message {
                Some(m) => format!("{protocol_error}: {m}"),
                None => protocol_error.to_string(),
            }),
            other => KafkaError::Unavailable(other.to_string()),
        }
    }
}

impl Publisher {
    /// How many topics the publisher has cached (the cache is bounded by
    /// [`MAX_CACHED_TOPICS`]).
    pub async fn cached_topics(&self) -> usize {
        self.state.lock().await.topics.len()
    }
}

impl Connection {
    /// The configured timeout for one operation.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Connects to the bootstrap brokers. rskafka retries internally; the deadline makes it
    /// give up after the timeout so the caller can report and back off.
    pub async fn connect(&self) -> Result<Client, KafkaError> {
        let backoff = BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
            deadline: Some(self.timeout),
        };
        let mut builder = ClientBuilder::new(self.brokers.clone())
            .client_id(self.client_id.as_str())
            .backoff_config(backoff);
        if let Some(tls) = &self.tls {
            builder = builder.tls_config(tls.clone());
        }
        if let Some(sasl) = &self.sasl {
            builder = builder.sasl_config(sasl.clone());
        }
        tokio::time::timeout(self.timeout, builder.build())
            .await
            .map_err(|_| KafkaError::Timeout(self.timeout))?
            .map_err(KafkaError::from)
    }
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The partition.
    pub partition: i32,
    /// The offset the broker assigned.
    pub offset: i64,
}

/// How topics the publisher creates are laid out.
#[derive(Debug, Clone, Copy)]
pub struct TopicLayout {
    /// Partitions of a created topic.
    pub partitions: i32,
    /// Replication factor of a created topic.
    pub replication_factor: i16,
    /// Whether a missing topic is created at all.
    pub create: bool,
}

/// Publishes notifications and waits for the broker's acknowledgement. Holds one connection
/// and a partition client per partition; after a failure they are rebuilt on the next call
/// (a restarted broker, a moved partition leader).
pub struct Publisher {
    connection: Connection,
    layout: TopicLayout,
    mode: ContentMode,
    state: Mutex<State>,
}

/// How many topics the publisher keeps metadata and partition clients for; the least recently
/// used beyond that is dropped (and looked up again if used again), so tenants naming many
/// topics over time cannot grow the operator without bound.
pub const MAX_CACHED_TOPICS: usize = 256;

#[derive(Default)]
struct State {
    client: Option<Arc<Client>>,
    topics: TopicCache<Arc<PartitionClient>>,
}

/// Per-topic cache (partition count and partition clients) with least-recently-used eviction.
#[derive(Debug)]
pub struct TopicCache<C> {
    capacity: usize,
    tick: u64,
    topics: HashMap<String, Cached<C>>,
}

#[derive(Debug)]
struct Cached<C> {
    partitions: i32,
    clients: HashMap<i32, C>,
    used: u64,
}

impl<C: Clone> Default for TopicCache<C> {
    fn default() -> Self {
        Self::new(MAX_CACHED_TOPICS)
    }
}

impl<C: Clone> TopicCache<C> {
    /// An empty cache of at most `capacity` topics.
    pub fn new(capacity: usize) -> Self {
        TopicCache {
            capacity: capacity.max(1),
            tick: 0,
            topics: HashMap::new(),
        }
    }

    /// The partition count of `topic`, if cached (marks it used).
    pub fn partitions(&mut self, topic: &str) -> Option<i32> {
        self.tick += 1;
        let tick = self.tick;
        self.topics.get_mut(topic).map(|t| {
            t.used = tick;
            t.partitions
        })
    }

    /// Caches the partition count of `topic`, evicting the least recently used topic when full.
    pub fn set_partitions(&mut self, topic: &str, partitions: i32) {
        self.tick += 1;
        if !self.topics.contains_key(topic) && self.topics.len() >= self.capacity {
            let oldest = self
                .topics
                .iter()
                .min_by_key(|(_, t)| t.used)
                .map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                self.topics.remove(&oldest);
            }
        }
        let tick = self.tick;
        let entry = self.topics.entry(topic.to_owned()).or_insert(Cached {
            partitions,
            clients: HashMap::new(),
            used: tick,
        });
        entry.partitions = partitions;
        entry.used = tick;
    }

    /// The client of one partition, if cached.
    pub fn client(&self, topic: &str, partition: i32) -> Option<C> {
        self.topics.get(topic)?.clients.get(&partition).cloned()
    }

    /// Caches the client of one partition of a cached topic.
    pub fn set_client(&mut self, topic: &str, partition: i32, client: C) {
        if let Some(t) = self.topics.get_mut(topic) {
            t.clients.insert(partition, client);
        }
    }

    /// Drops what is cached about `topic` (after an error about that topic only).
    pub fn forget(&mut self, topic: &str) {
        self.topics.remove(topic);
    }

    /// How many topics are cached.
    pub fn len(&self) -> usize {
        self.topics.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }
}

impl Publisher {
    /// A publisher; it connects on first use, so it can start before the brokers.
    pub fn new(connection: Connection, layout: TopicLayout) -> Self {
        Publisher {
            connection,
            layout,
            mode: ContentMode::Binary,
            state: Mutex::new(State::default()),
        }
    }

    /// The same publisher writing records in `mode`.
    pub fn with_content_mode(mut self, mode: ContentMode) -> Self {
        self.mode = mode;
        self
    }

    /// Publishes `notification` to `topic` (creating the topic if missing) in the partition of
    /// its key, and returns where the broker stored it.
    pub async fn publish(
        &self,
        topic: &str,
        notification: &Notification,
    ) -> Result<Ack, KafkaError> {
        let timeout = self.connection.timeout;
        let result = tokio::time::timeout(timeout, self.try_publish(topic, notification))
            .await
            .unwrap_or(Err(KafkaError::Timeout(timeout)));
        if let Err(e) = &result {
            let mut state = self.state.lock().await;
            if e.is_connection_level() {
                // Start from a fresh connection and fresh metadata next time.
                *state = State::default();
            } else {
                // A refusal about this topic (ACL, missing topic, moved leader) says nothing
                // about the others: only its metadata and clients are looked up again, and
                // the other tenants' connection is left alone.
                state.topics.forget(topic);
            }
        }
        result
    }

    async fn try_publish(
        &self,
        topic: &str,
        notification: &Notification,
    ) -> Result<Ack, KafkaError> {
        let record = notification.to_record_in(self.mode);
        let key = record.key.clone().unwrap_or_default();
        let partitions = self.partitions(topic).await?;
        let partition = partitioner::partition_for(&key, partitions);
        let client = self.partition_client(topic, partition).await?;
        let offsets = client
            .produce(vec![record], Compression::NoCompression)
            .await?;
        let offset = offsets
            .first()
            .copied()
            .ok_or_else(|| KafkaError::Rejected("the broker returned no offset".into()))?;
        Ok(Ack { partition, offset })
    }

    async fn client(&self) -> Result<Arc<Client>, KafkaError> {
        let mut state = self.state.lock().await;
        if let Some(client) = &state.client {
            return Ok(client.clone());
        }
        let client = Arc::new(self.connection.connect().await?);
        state.client = Some(client.clone());
        Ok(client)
    }

    /// The partition count of `topic`, creating it when it does not exist.
    async fn partitions(&self, topic: &str) -> Result<i32, KafkaError> {
        if let Some(n) = self.state.lock().await.topics.partitions(topic) {
            return Ok(n);
        }
        let client = self.client().await?;
        let mut count = topic_partitions(&client, topic).await?;
        if count.is_none() && !self.layout.create {
            return Err(KafkaError::TopicMissing(topic.to_owned()));
        }
        if count.is_none() {
            let created = client
                .controller_client()?
                .create_topic(
                    topic,
                    self.layout.partitions,
                    self.layout.replication_factor,
                    i32::try_from(self.connection.timeout.as_millis()).unwrap_or(i32::MAX),
                )
                .await;
            match created {
                Ok(()) => {
                    tracing::info!(topic, partitions = self.layout.partitions, "created topic");
                }
                // Someone else created it meanwhile: fine.
                Err(rskafka::client::error::Error::ServerError {
                    protocol_error: rskafka::client::error::ProtocolError::TopicAlreadyExists,
                    ..
                }) => {}
                Err(e) => return Err(e.into()),
            }
            count = Some(self.layout.partitions);
        }
        let count = count.unwrap_or(1);
        self.state.lock().await.topics.set_partitions(topic, count);
        Ok(count)
    }

    async fn partition_client(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<PartitionClient>, KafkaError> {
        if let Some(c) = self.state.lock().await.topics.client(topic, partition) {
            return Ok(c);
        }
        let client = self.client().await?;
        let pc = Arc::new(
            client
                .partition_client(topic, partition, UnknownTopicHandling::Retry)
                .await?,
        );
        self.state
            .lock()
            .await
            .topics
            .set_client(topic, partition, pc.clone());
        Ok(pc)
    }
}

/// How many partitions `topic` has, if it exists.
pub async fn topic_partitions(client: &Client, topic: &str) -> Result<Option<i32>, KafkaError> {
    let topics = client.list_topics().await?;
    Ok(topics
        .into_iter()
        .find(|t| t.name == topic)
        .map(|t| i32::try_from(t.partitions.len()).unwrap_or(i32::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    fn parse(args: &[&str]) -> Result<KafkaArgs, clap::Error> {
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|c| c.kafka)
    }

    #[test]
    fn only_connection_errors_reset_the_connection() {
        assert!(KafkaError::Unavailable("broken pipe".into()).is_connection_level());
        assert!(KafkaError::Timeout(Duration::from_secs(1)).is_connection_level());
        assert!(!KafkaError::Rejected("TOPIC_AUTHORIZATION_FAILED".into()).is_connection_level());
        assert!(!KafkaError::TopicMissing("gone".into()).is_connection_level());
    }

    #[test]
    fn the_topic_cache_is_bounded_and_forgets_one_topic() {
        let mut cache: TopicCache<u32> = TopicCache::new(2);
        cache.set_partitions("a", 3);
        cache.set_client("a", 0, 10);
        cache.set_partitions("b", 1);
        assert_eq!(
            cache.partitions("a"),
            Some(3),
            "a is now the most recently used"
        );
        cache.set_partitions("c", 2);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.partitions("b"), None, "b was the least recently used");
        assert_eq!(cache.client("a", 0), Some(10));
        cache.forget("a");
        assert_eq!(cache.partitions("a"), None);
        assert_eq!(cache.partitions("c"), Some(2), "the others stay");
    }

    #[test]
    fn brokers_split_on_commas() {
        let args = parse(&["--kafka-brokers", "a:9092,b:9092"]).unwrap();
        assert_eq!(args.brokers, ["a:9092", "b:9092"]);
        assert_eq!(args.timeout, Duration::from_secs(10));
        let connection = args.connection().unwrap();
        assert!(connection.tls.is_none() && connection.sasl.is_none());
    }

    #[test]
    fn sasl_needs_complete_credentials_and_is_never_printed() {
        let dir = std::env::temp_dir().join(format!("kafkanotify-sasl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "s3cret-value\n").unwrap();
        let mut args = parse(&[
            "--kafka-brokers",
            "a:9092",
            "--kafka-sasl-mechanism",
            "scram-sha-512",
            "--kafka-sasl-username",
            "edge",
        ])
        .unwrap();
        args.sasl_password_env = None;
        let err = args.connection().unwrap_err().to_string();
        assert!(err.contains("password is required"), "{err}");
        args.sasl_password_file = Some(file.clone());
        let connection = args.connection().unwrap();
        match &connection.sasl {
            Some(SaslConfig::ScramSha512(c)) => assert_eq!(c.password, "s3cret-value"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(!format!("{connection:?}").contains("s3cret"));
        args.sasl_username = None;
        assert!(args.connection().is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn tls_files_are_checked() {
        let args = parse(&["--kafka-brokers", "a:9092", "--kafka-tls"]).unwrap();
        assert!(args.connection().unwrap().tls.is_some(), "public roots");
        let args = parse(&[
            "--kafka-brokers",
            "a:9092",
            "--kafka-tls-ca-file",
            "/nonexistent/ca.pem",
        ])
        .unwrap();
        let err = args.connection().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        assert!(
            parse(&[
                "--kafka-brokers",
                "a:9092",
                "--kafka-tls-cert-file",
                "c.pem"
            ])
            .is_err(),
            "a certificate without a key is refused"
        );
    }
}
