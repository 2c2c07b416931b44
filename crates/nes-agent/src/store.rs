//! What the agent keeps across restarts of its container: the accepted desired configuration
//! (so a restarted agent re-applies it without waiting for the manager) and the ledger of
//! items it created (so it still removes only what it made).
//!
//! One JSON file, replaced atomically (write a temporary file, fsync, rename), so a crash
//! mid-write leaves the previous version. In a pod the directory is an `emptyDir`, which lives
//! as long as the pod and its network namespace.

use std::io::Write;
use std::path::{Path, PathBuf};

use nes_api::DesiredConfig;
use serde::{Deserialize, Serialize};

use crate::plan::{Item, Owned};

/// The file name inside the state directory.
pub const STATE_FILE: &str = "nes-agent-state.json";

/// The persisted state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Persisted {
    /// The accepted desired configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<DesiredConfig>,
    /// The items the agent created and has not removed.
    #[serde(default)]
    pub owned: Vec<Item>,
}

impl Persisted {
    /// The ledger as a map.
    pub fn owned_map(&self) -> Owned {
        self.owned
            .iter()
            .map(|item| (item.key(), item.clone()))
            .collect()
    }
}

/// A state-file problem.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a state file of this agent.
    #[error("{path}: not a valid state file: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

/// The state file in a directory; `None` keeps state in memory only.
#[derive(Debug, Clone)]
pub struct Store {
    path: Option<PathBuf>,
}

impl Store {
    /// A store in `dir` (created if missing), or an in-memory one.
    pub fn new(dir: Option<&Path>) -> Self {
        Store {
            path: dir.map(|dir| dir.join(STATE_FILE)),
        }
    }

    /// The state file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The saved state; empty when there is no file yet.
    pub fn load(&self) -> Result<Persisted, StoreError> {
        let Some(path) = &self.path else {
            return Ok(Persisted::default());
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Persisted::default()),
            Err(source) => {
                return Err(StoreError::Io {
                    path: path.clone(),
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
            path: path.clone(),
            source,
        })
    }

    /// Replaces the saved state.
    pub fn save(&self, state: &Persisted) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let temporary = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(state).map_err(|source| StoreError::Corrupt {
            path: path.clone(),
            source,
        })?;
        let mut file = std::fs::File::create(&temporary).map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&temporary, path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nes_api::Address;

    #[test]
    fn saves_and_loads_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(Some(&dir.path().join("state")));
        assert_eq!(store.load().unwrap(), Persisted::default());
        let state = Persisted {
            config: Some(DesiredConfig {
                generation: 3,
                ..Default::default()
            }),
            owned: vec![Item::Address(Address {
                interface: "v0".into(),
                cidr: "10.1.0.2/24".into(),
            })],
        };
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), state);
        assert_eq!(store.load().unwrap().owned_map().len(), 1);
        assert!(
            !dir.path()
                .join("state")
                .join("nes-agent-state.json.tmp")
                .exists()
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let error = Store::new(Some(dir.path())).load().unwrap_err();
        assert!(error.to_string().contains(STATE_FILE), "{error}");
    }

    #[test]
    fn memory_store_keeps_nothing() {
        let store = Store::new(None);
        store.save(&Persisted::default()).unwrap();
        assert_eq!(store.load().unwrap(), Persisted::default());
    }
}
