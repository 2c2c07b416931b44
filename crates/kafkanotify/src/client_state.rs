//! The client's durable memory (`kafkanotify-client --state-file`): the next offset to read in
//! each partition and the last known location of each application, so a restarted client
//! resumes where it stopped instead of missing what happened while it was down.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::resource::Location;

/// What a client remembers between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientState {
    /// The topic it was read from (a state of another topic is not used).
    pub topic: String,
    /// Next offset to read, per partition.
    pub offsets: BTreeMap<i32, i64>,
    /// Last known location per application, keyed `<namespace>/<appId>`.
    pub locations: BTreeMap<String, Location>,
}

/// Why the state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a state.
    #[error("state file {path} is not a kafkanotify-client state: {source}")]
    Format {
        /// The file.
        path: String,
        /// The error.
        source: serde_json::Error,
    },
}

impl ClientState {
    /// Loads the state of `topic` from `path`; an absent file (or another topic's) is a fresh
    /// state.
    pub fn load(path: &Path, topic: &str) -> Result<Self, StateError> {
        let fresh = ClientState {
            topic: topic.to_owned(),
            ..Default::default()
        };
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(fresh),
            Err(source) => {
                return Err(StateError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let state: ClientState =
            serde_json::from_slice(&text).map_err(|source| StateError::Format {
                path: path.display().to_string(),
                source,
            })?;
        Ok(if state.topic == topic { state } else { fresh })
    }

    /// Writes the state atomically: a temporary file beside it, synced, then renamed over it,
    /// so a crash leaves the old state or the new one, never half of one.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp).map_err(io)?;
            file.write_all(&bytes).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Records that the record at `offset` of `partition` was processed, and the location
    /// it leaves its application at (`None`: removed).
    pub fn processed(&mut self, partition: i32, offset: i64, key: String, at: Option<Location>) {
        self.offsets.insert(partition, offset + 1);
        match at {
            Some(location) => {
                self.locations.insert(key, location);
            }
            None => {
                self.locations.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{Endpoint, Protocol};

    #[test]
    fn the_state_round_trips_atomically_and_belongs_to_its_topic() {
        let dir = std::env::temp_dir().join(format!("kn-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        let mut state = ClientState::load(&path, "moves").unwrap();
        assert_eq!(state.offsets.len(), 0);
        let at = Location {
            edge_node_id: "n".into(),
            endpoint: Endpoint {
                host: "h".into(),
                port: 1,
                protocol: Protocol::Tcp,
            },
        };
        state.processed(2, 41, "edge/carla".into(), Some(at.clone()));
        state.save(&path).unwrap();
        let back = ClientState::load(&path, "moves").unwrap();
        assert_eq!(back.offsets[&2], 42);
        assert_eq!(back.locations["edge/carla"], at);
        assert!(!path.with_extension("tmp").exists());
        assert!(
            ClientState::load(&path, "other")
                .unwrap()
                .offsets
                .is_empty()
        );
        let mut removed = back;
        removed.processed(2, 42, "edge/carla".into(), None);
        assert!(removed.locations.is_empty());
        std::fs::write(&path, "nonsense").unwrap();
        assert!(ClientState::load(&path, "moves").is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
