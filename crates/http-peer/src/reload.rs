//! Reloading the peers file when it changes.
//!
//! The kubelet updates a mounted ConfigMap by writing a new timestamped directory and
//! atomically swapping the `..data` symlink to it; the key (`hostports -> ..data/hostports`)
//! never changes itself. File-system events on the key would miss that swap, so the file is
//! simply read again (following the symlinks) every `reload_interval` and its contents
//! compared with the last read. The file is small (a ConfigMap holds at most 1 MiB), so this
//! costs a few microseconds a second.

use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::peers::{self, Parsed, Target};

/// The largest file read: the size limit of a ConfigMap. Larger files are not read, so a
/// wrong path (a log file, a device) cannot make the server allocate without bound.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// What one read of the file means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The contents changed (or were read for the first time).
    Contents(Parsed),
    /// The file cannot be read (first occurrence of this error); the last targets stay.
    Unreadable(String),
}

/// Remembers the last contents and error so that only changes are reported.
#[derive(Debug, Default)]
pub struct FileState {
    last: Option<Vec<u8>>,
    last_error: Option<String>,
}

impl FileState {
    /// Takes the result of one read; returns what changed, if anything.
    pub fn observe(&mut self, read: io::Result<Vec<u8>>) -> Option<Change> {
        match read {
            Ok(bytes) => {
                self.last_error = None;
                if self.last.as_ref() == Some(&bytes) {
                    return None;
                }
                let parsed = peers::parse(&String::from_utf8_lossy(&bytes));
                self.last = Some(bytes);
                Some(Change::Contents(parsed))
            }
            Err(error) => {
                let message = error.to_string();
                if self.last_error.as_ref() == Some(&message) {
                    return None;
                }
                self.last_error = Some(message.clone());
                Some(Change::Unreadable(message))
            }
        }
    }
}

/// Reads the file (following symlinks), refusing files over [`MAX_FILE_BYTES`].
pub fn read_capped(path: &Path) -> io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

/// Checks `path` every `every` until `cancel`, publishing the targets in `targets` whenever
/// they change. Bad lines are logged and skipped. An unreadable file keeps the last targets
/// (a missing file at start means no targets).
pub async fn watch_file(
    path: PathBuf,
    every: Duration,
    targets: watch::Sender<Arc<[Target]>>,
    cancel: CancellationToken,
) {
    let mut state = FileState::default();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let path_for_read = path.clone();
        // Off the async workers: a file read may block (a slow or hung volume).
        let read = tokio::task::spawn_blocking(move || read_capped(&path_for_read))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)));
        match state.observe(read) {
            None => {}
            Some(Change::Unreadable(error)) => {
                tracing::warn!(path = %path.display(), error, "cannot read the peers file; keeping the last targets");
            }
            Some(Change::Contents(parsed)) => publish(&path, parsed, &targets),
        }
    }
}

/// Logs a new file's errors and targets and publishes the targets if they changed.
fn publish(path: &Path, parsed: Parsed, targets: &watch::Sender<Arc<[Target]>>) {
    for error in &parsed.errors {
        tracing::warn!(path = %path.display(), line = error.line, error = %error, "skipping a bad line of the peers file");
    }
    let list = parsed
        .targets
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    tracing::info!(
        path = %path.display(),
        count = parsed.targets.len(),
        bad_lines = parsed.errors.len(),
        targets = %list,
        "peers file loaded"
    );
    let new: Arc<[Target]> = parsed.targets.into();
    // Only wake the pinger when the targets differ (a comment edit changes nothing).
    targets.send_if_modified(|current| {
        if *current == new {
            false
        } else {
            *current = new;
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_are_reported() {
        let mut state = FileState::default();
        let Some(Change::Contents(parsed)) = state.observe(Ok(b"a,1\n".to_vec())) else {
            panic!("the first read is a change");
        };
        assert_eq!(parsed.targets, vec![Target::new("a", 1)]);
        assert_eq!(state.observe(Ok(b"a,1\n".to_vec())), None);
        assert!(matches!(
            state.observe(Ok(b"a,1\nb,2\n".to_vec())),
            Some(Change::Contents(_))
        ));
    }

    #[test]
    fn errors_are_reported_once_and_keep_the_contents() {
        let mut state = FileState::default();
        assert!(state.observe(Ok(b"a,1\n".to_vec())).is_some());
        let missing = || Err(io::Error::new(io::ErrorKind::NotFound, "gone"));
        assert_eq!(
            state.observe(missing()),
            Some(Change::Unreadable("gone".into()))
        );
        assert_eq!(state.observe(missing()), None);
        // Back with the same contents: nothing changed for the targets.
        assert_eq!(state.observe(Ok(b"a,1\n".to_vec())), None);
        // The same error again after a good read is reported again.
        assert!(state.observe(missing()).is_some());
    }

    #[test]
    fn invalid_utf8_is_reported_as_a_bad_line_not_a_crash() {
        let mut state = FileState::default();
        let Some(Change::Contents(parsed)) = state.observe(Ok(b"a,1\n\xff\xfe,2\n".to_vec()))
        else {
            panic!("a change");
        };
        assert_eq!(parsed.targets, vec![Target::new("a", 1)]);
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(parsed.errors[0].line, 2);
    }

    #[test]
    fn reads_are_capped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let small = dir.path().join("small");
        std::fs::write(&small, "a,1\n").expect("write");
        assert_eq!(read_capped(&small).expect("readable"), b"a,1\n");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES as usize + 1]).expect("write");
        assert_eq!(
            read_capped(&big).expect_err("too big").kind(),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            read_capped(&dir.path().join("missing"))
                .expect_err("missing")
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    #[tokio::test]
    async fn publishes_only_when_targets_change() {
        let (tx, mut rx) = watch::channel(Arc::<[Target]>::from(Vec::new()));
        let path = Path::new("peers");
        publish(path, peers::parse("a,1\n"), &tx);
        assert!(rx.has_changed().expect("open"));
        assert_eq!(&**rx.borrow_and_update(), &[Target::new("a", 1)]);
        publish(path, peers::parse("# a comment\na,1\n"), &tx);
        assert!(!rx.has_changed().expect("open"));
    }
}
