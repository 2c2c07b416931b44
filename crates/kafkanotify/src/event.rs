//! Migration notifications: which one a change calls for, and their wire form (CloudEvents 1.0
//! in Kafka binary content mode), shared by the operator that writes them and the client that
//! reads them.

use std::collections::BTreeMap;

use rskafka::record::Record;
use serde::{Deserialize, Serialize};

use crate::resource::{Endpoint, GROUP, Location};

/// The CloudEvents type prefix: the project domain reversed, then the operator.
pub const TYPE_PREFIX: &str = "io.kubecrew.kafkanotify.edgeapplication.";
/// The content type of record values in binary mode (the value is the data).
pub const CONTENT_TYPE: &str = "application/json";
/// The content type of record values in structured mode (the value is the whole event).
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// How a notification is laid out in a Kafka record (CloudEvents Kafka protocol binding).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ContentMode {
    /// Attributes in `ce_` headers, the value is the data.
    #[default]
    Binary,
    /// The whole event as JSON in the value (`application/cloudevents+json`): for consumers
    /// that read only values, such as Knative's KafkaSource defaults.
    Structured,
}

/// The JSON form of an event in structured mode.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    specversion: String,
    id: String,
    source: String,
    #[serde(rename = "type")]
    ce_type: String,
    time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    datacontenttype: Option<String>,
    data: serde_json::Value,
}

/// What happened to an application's location.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// First announcement of the application.
    Placed,
    /// It moved to another edge node.
    Migrated,
    /// Same edge node, new endpoint.
    EndpointChanged,
    /// The application is gone.
    Removed,
}

impl EventKind {
    /// The short name (`placed`, `migrated`, `endpoint-changed`, `removed`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Placed => "placed",
            EventKind::Migrated => "migrated",
            EventKind::EndpointChanged => "endpoint-changed",
            EventKind::Removed => "removed",
        }
    }

    /// The CloudEvents `type`.
    pub fn ce_type(self) -> String {
        format!("{TYPE_PREFIX}{}", self.as_str())
    }

    /// The kind of a CloudEvents `type`, if it is one of ours.
    pub fn from_ce_type(ce_type: &str) -> Option<Self> {
        match ce_type.strip_prefix(TYPE_PREFIX)? {
            "placed" => Some(EventKind::Placed),
            "migrated" => Some(EventKind::Migrated),
            "endpoint-changed" => Some(EventKind::EndpointChanged),
            "removed" => Some(EventKind::Removed),
            _ => None,
        }
    }
}

/// The notification a live resource calls for: none when consumers already know `desired`.
pub fn decide(desired: &Location, notified: Option<&Location>) -> Option<EventKind> {
    match notified {
        None => Some(EventKind::Placed),
        Some(known) if known == desired => None,
        Some(known) if known.edge_node_id != desired.edge_node_id => Some(EventKind::Migrated),
        Some(_) => Some(EventKind::EndpointChanged),
    }
}

/// The CloudEvents id of a notification: the same for the same logical event (so a
/// re-publication after a crash is recognisable), different for every other.
pub fn event_id(uid: &str, generation: i64, kind: EventKind) -> String {
    match kind {
        // An object is removed once, whatever its generation then.
        EventKind::Removed => format!("{uid}.removed"),
        _ => format!("{uid}.{generation}.{}", kind.as_str()),
    }
}

/// The key of an application: `<namespace>/<appId>`. The appId alone is not unique (it
/// defaults to the resource name, and two namespaces may use the same one), so the namespace is
/// part of every identity: the record key, `ce_subject`, and the client's tracking.
pub fn app_key(namespace: &str, app_id: &str) -> String {
    format!("{namespace}/{app_id}")
}

/// The CloudEvents id of the `removed` sent to a topic the resource stopped using at
/// `generation` (the final `removed` of a deleted resource is [`event_id`]'s): distinct from
/// it, so a client of a topic the application left and later returned to does not drop the
/// final removal as a duplicate.
pub fn retraction_id(uid: &str, generation: i64) -> String {
    format!("{uid}.{generation}.removed")
}

/// The CloudEvents `source`: the resource's API path.
pub fn source(namespace: &str, name: &str) -> String {
    format!("/apis/{GROUP}/v1alpha1/namespaces/{namespace}/edgeapplications/{name}")
}

/// The record value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    /// The application.
    pub app_id: String,
    /// Namespace of the resource.
    pub namespace: String,
    /// Name of the resource.
    pub name: String,
    /// The edge node now hosting it; null once removed.
    pub edge_node_id: Option<String>,
    /// Where to reach it now; null once removed.
    pub endpoint: Option<Endpoint>,
    /// What consumers were told before, if anything.
    pub previous: Option<Location>,
    /// The resource generation announced.
    pub generation: i64,
}

impl Payload {
    /// The application's key, `<namespace>/<appId>` (the record key and `ce_subject`).
    pub fn key(&self) -> String {
        app_key(&self.namespace, &self.app_id)
    }

    /// The location announced, unless the application was removed.
    pub fn location(&self) -> Option<Location> {
        Some(Location {
            edge_node_id: self.edge_node_id.clone()?,
            endpoint: self.endpoint.clone()?,
        })
    }
}

/// One notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// `ce_id`.
    pub id: String,
    /// `ce_source`.
    pub source: String,
    /// `ce_type`.
    pub kind: EventKind,
    /// `ce_time`.
    pub time: jiff::Timestamp,
    /// The value.
    pub payload: Payload,
}

/// Why a record is not a notification of ours.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// A required header is absent.
    #[error("header {0} is missing")]
    MissingHeader(&'static str),
    /// A header is present with an unusable value.
    #[error("header {header} is invalid: {detail}")]
    InvalidHeader {
        /// The header.
        header: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The value is not the JSON payload.
    #[error("the value is not a notification payload: {0}")]
    Payload(String),
}

impl Notification {
    /// The Kafka record in `mode`; the key is `<namespace>/<appId>` in both.
    pub fn to_record_in(&self, mode: ContentMode) -> Record {
        match mode {
            ContentMode::Binary => self.to_record(),
            ContentMode::Structured => {
                let envelope = Envelope {
                    specversion: "1.0".into(),
                    id: self.id.clone(),
                    source: self.source.clone(),
                    ce_type: self.kind.ce_type(),
                    time: self.time.to_string(),
                    subject: Some(self.payload.key()),
                    datacontenttype: Some(CONTENT_TYPE.into()),
                    data: serde_json::to_value(&self.payload).unwrap_or_default(),
                };
                let mut headers = BTreeMap::new();
                headers.insert(
                    "content-type".to_owned(),
                    STRUCTURED_CONTENT_TYPE.as_bytes().to_vec(),
                );
                Record {
                    key: Some(self.payload.key().into_bytes()),
                    value: Some(serde_json::to_vec(&envelope).unwrap_or_default()),
                    headers,
                    timestamp: chrono::DateTime::from_timestamp_millis(self.time.as_millisecond())
                        .unwrap_or_default(),
                }
            }
        }
    }

    /// Reads a structured-mode record.
    fn from_structured(value: &[u8]) -> Result<Self, DecodeError> {
        let e: Envelope =
            serde_json::from_slice(value).map_err(|e| DecodeError::Payload(e.to_string()))?;
        if e.specversion != "1.0" {
            return Err(DecodeError::InvalidHeader {
                header: "specversion",
                detail: format!("unsupported version {}", e.specversion),
            });
        }
        let kind = EventKind::from_ce_type(&e.ce_type).ok_or(DecodeError::InvalidHeader {
            header: "type",
            detail: format!("unknown type {}", e.ce_type),
        })?;
        let time = e
            .time
            .parse()
            .map_err(|err: jiff::Error| DecodeError::InvalidHeader {
                header: "time",
                detail: err.to_string(),
            })?;
        let payload =
            serde_json::from_value(e.data).map_err(|e| DecodeError::Payload(e.to_string()))?;
        Ok(Notification {
            id: e.id,
            source: e.source,
            kind,
            time,
            payload,
        })
    }

    /// The Kafka record in binary mode: key = `<namespace>/<appId>`, CloudEvents attributes
    /// as `ce_` headers.
    pub fn to_record(&self) -> Record {
        let mut headers = BTreeMap::new();
        let mut header = |name: &str, value: String| {
            headers.insert(name.to_owned(), value.into_bytes());
        };
        header("ce_specversion", "1.0".into());
        header("ce_id", self.id.clone());
        header("ce_source", self.source.clone());
        header("ce_type", self.kind.ce_type());
        header("ce_time", self.time.to_string());
        header("ce_subject", self.payload.key());
        header("content-type", CONTENT_TYPE.into());
        let value = serde_json::to_vec(&self.payload).unwrap_or_default();
        let millis = self.time.as_millisecond();
        Record {
            key: Some(self.payload.key().into_bytes()),
            value: Some(value),
            headers,
            timestamp: chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default(),
        }
    }

    /// Reads a record in either content mode (written by [`Notification::to_record_in`] or
    /// by anyone following the same format); the mode is told by the `content-type` header.
    pub fn from_record(record: &Record) -> Result<Self, DecodeError> {
        let structured = record
            .headers
            .get("content-type")
            .is_some_and(|v| v.starts_with(STRUCTURED_CONTENT_TYPE.as_bytes()));
        if structured {
            return Self::from_structured(record.value.as_deref().unwrap_or_default());
        }
        let text = |name: &'static str| -> Result<String, DecodeError> {
            let raw = record
                .headers
                .get(name)
                .ok_or(DecodeError::MissingHeader(name))?;
            String::from_utf8(raw.clone()).map_err(|e| DecodeError::InvalidHeader {
                header: name,
                detail: e.to_string(),
            })
        };
        let version = text("ce_specversion")?;
        if version != "1.0" {
            return Err(DecodeError::InvalidHeader {
                header: "ce_specversion",
                detail: format!("unsupported version {version}"),
            });
        }
        let ce_type = text("ce_type")?;
        let kind = EventKind::from_ce_type(&ce_type).ok_or(DecodeError::InvalidHeader {
            header: "ce_type",
            detail: format!("unknown type {ce_type}"),
        })?;
        let time =
            text("ce_time")?
                .parse()
                .map_err(|e: jiff::Error| DecodeError::InvalidHeader {
                    header: "ce_time",
                    detail: e.to_string(),
                })?;
        let value = record.value.as_deref().unwrap_or_default();
        let payload =
            serde_json::from_slice(value).map_err(|e| DecodeError::Payload(e.to_string()))?;
        Ok(Notification {
            id: text("ce_id")?,
            source: text("ce_source")?,
            kind,
            time,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Protocol;

    fn at(node: &str, host: &str) -> Location {
        Location {
            edge_node_id: node.into(),
            endpoint: Endpoint {
                host: host.into(),
                port: 2000,
                protocol: Protocol::Tcp,
            },
        }
    }

    #[test]
    fn changes_map_to_event_kinds() {
        let a = at("node-a", "10.0.0.1");
        assert_eq!(decide(&a, None), Some(EventKind::Placed));
        assert_eq!(decide(&a, Some(&a)), None);
        assert_eq!(
            decide(&at("node-b", "10.0.0.1"), Some(&a)),
            Some(EventKind::Migrated)
        );
        assert_eq!(
            decide(&at("node-b", "10.0.0.2"), Some(&a)),
            Some(EventKind::Migrated),
            "a node change is a migration even with a new address"
        );
        assert_eq!(
            decide(&at("node-a", "10.0.0.2"), Some(&a)),
            Some(EventKind::EndpointChanged)
        );
        let mut udp = a.clone();
        udp.endpoint.protocol = Protocol::Udp;
        assert_eq!(decide(&udp, Some(&a)), Some(EventKind::EndpointChanged));
    }

    #[test]
    fn ids_are_deterministic_per_logical_event() {
        let id = event_id("u1", 3, EventKind::Migrated);
        assert_eq!(id, event_id("u1", 3, EventKind::Migrated));
        assert_ne!(id, event_id("u1", 4, EventKind::Migrated));
        assert_ne!(id, event_id("u1", 3, EventKind::EndpointChanged));
        assert_ne!(id, event_id("u2", 3, EventKind::Migrated));
        assert_eq!(
            event_id("u1", 3, EventKind::Removed),
            event_id("u1", 9, EventKind::Removed)
        );
    }

    #[test]
    fn records_round_trip_with_cloudevents_headers() {
        let n = Notification {
            id: "u1.2.migrated".into(),
            source: source("edge", "carla"),
            kind: EventKind::Migrated,
            time: "2026-11-22T10:00:00.123Z".parse().unwrap(),
            payload: Payload {
                app_id: "carla".into(),
                namespace: "edge".into(),
                name: "carla".into(),
                edge_node_id: Some("node-b".into()),
                endpoint: Some(at("node-b", "10.0.0.2").endpoint),
                previous: Some(at("node-a", "10.0.0.1")),
                generation: 2,
            },
        };
        let record = n.to_record();
        let header = |h: &str| String::from_utf8(record.headers[h].clone()).unwrap();
        assert_eq!(header("ce_specversion"), "1.0");
        assert_eq!(
            header("ce_type"),
            "io.kubecrew.kafkanotify.edgeapplication.migrated"
        );
        assert_eq!(header("ce_subject"), "edge/carla");
        assert_eq!(header("content-type"), "application/json");
        assert_eq!(
            header("ce_source"),
            "/apis/kafkanotify.kubecrew.io/v1alpha1/namespaces/edge/edgeapplications/carla"
        );
        assert_eq!(record.key.as_deref(), Some(&b"edge/carla"[..]));
        assert_eq!(record.timestamp.timestamp_millis(), n.time.as_millisecond());
        let value: serde_json::Value =
            serde_json::from_slice(record.value.as_ref().unwrap()).unwrap();
        assert_eq!(value["previous"]["edgeNodeId"], "node-a");
        assert_eq!(value["endpoint"]["protocol"], "TCP");
        assert_eq!(Notification::from_record(&record), Ok(n));
    }

    #[test]
    fn the_same_app_id_in_two_namespaces_has_two_keys() {
        assert_eq!(app_key("ns-a", "web"), "ns-a/web");
        assert_ne!(app_key("ns-a", "web"), app_key("ns-b", "web"));
    }

    #[test]
    fn structured_records_carry_the_whole_event_and_read_back() {
        let n = Notification {
            id: "u1.1.placed".into(),
            source: source("edge", "carla"),
            kind: EventKind::Placed,
            time: "2026-11-22T10:00:00.123Z".parse().unwrap(),
            payload: Payload {
                app_id: "carla".into(),
                namespace: "edge".into(),
                name: "carla".into(),
                edge_node_id: Some("node-a".into()),
                endpoint: Some(at("node-a", "10.0.0.1").endpoint),
                previous: None,
                generation: 1,
            },
        };
        let record = n.to_record_in(ContentMode::Structured);
        assert_eq!(
            record.headers["content-type"],
            b"application/cloudevents+json"
        );
        assert!(
            !record.headers.contains_key("ce_id"),
            "attributes live in the value"
        );
        assert_eq!(record.key.as_deref(), Some(&b"edge/carla"[..]));
        let value: serde_json::Value =
            serde_json::from_slice(record.value.as_ref().unwrap()).unwrap();
        assert_eq!(value["specversion"], "1.0");
        assert_eq!(
            value["type"],
            "io.kubecrew.kafkanotify.edgeapplication.placed"
        );
        assert_eq!(value["subject"], "edge/carla");
        assert_eq!(value["datacontenttype"], "application/json");
        assert_eq!(value["data"]["edgeNodeId"], "node-a");
        assert_eq!(Notification::from_record(&record), Ok(n.clone()));
        assert_eq!(
            Notification::from_record(&n.to_record_in(ContentMode::Binary)),
            Ok(n)
        );
    }

    #[test]
    fn foreign_records_are_rejected_with_a_reason() {
        let mut record = Notification {
            id: "x".into(),
            source: "s".into(),
            kind: EventKind::Placed,
            time: jiff::Timestamp::UNIX_EPOCH,
            payload: Payload {
                app_id: "a".into(),
                namespace: "n".into(),
                name: "a".into(),
                edge_node_id: None,
                endpoint: None,
                previous: None,
                generation: 1,
            },
        }
        .to_record();
        record
            .headers
            .insert("ce_type".into(), b"com.example.other".to_vec());
        assert!(matches!(
            Notification::from_record(&record),
            Err(DecodeError::InvalidHeader {
                header: "ce_type",
                ..
            })
        ));
        record.headers.remove("ce_id");
        record
            .headers
            .insert("ce_type".into(), EventKind::Placed.ce_type().into_bytes());
        assert_eq!(
            Notification::from_record(&record),
            Err(DecodeError::MissingHeader("ce_id"))
        );
        record.headers.insert("ce_id".into(), b"x".to_vec());
        record.value = Some(b"not json".to_vec());
        assert!(matches!(
            Notification::from_record(&record),
            Err(DecodeError::Payload(_))
        ));
    }
}
