//! Test hosts for the agent: network namespaces the tests create (and remove on drop), the
//! agent running inside one, and iproute2 (`ip -j`) as the independent witness of what the
//! kernel holds.
//!
//! The agent opens its netlink and TCP sockets in the namespace of the thread that starts it,
//! so [`Netns::run`] runs a test body on a thread that has entered the namespace, with a
//! single-threaded runtime that never leaves that thread.

#![allow(dead_code)] // each test file uses a different part

use std::sync::Arc;
use std::time::Duration;

use nes_agent::agent::Agent;
use nes_agent::api;
use nes_agent::auth::TokenAuth;
use nes_agent::client::AgentClient;
use nes_agent::reconciler::{self, AgentHandle, Settings};
use nes_api::{ItemState, Status};
use tokio_util::sync::CancellationToken;

pub use testkit::netns::Netns;

/// False (loudly) where the namespace tests cannot run; see [`testkit::netns::can_run`].
pub fn can_run() -> bool {
    testkit::netns::can_run("the nes-agent namespace tests")
}

/// The token the test agents accept.
pub const TOKEN: &str = "test-token-0123456789";

/// A temporary directory holding a token file with [`TOKEN`] (as a mounted Secret would, with
/// a trailing newline the agent must ignore); the directory goes when the guard drops.
pub fn token_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).expect("write token");
    (dir, file)
}

/// An agent running in the current thread's namespace, with its API on 127.0.0.1.
pub struct TestAgent {
    /// The reconciler's handle (metrics, boot id).
    pub handle: AgentHandle,
    /// A client with the right token.
    pub client: AgentClient,
    /// The API's base URL.
    pub base: String,
    shutdown: CancellationToken,
    _token_dir: tempfile::TempDir,
}

/// Settings for tests: quick retries; resync as given.
pub fn settings(resync: Duration) -> Settings {
    Settings {
        resync_interval: resync,
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_secs(1),
        ..Settings::default()
    }
}

impl TestAgent {
    /// Starts an agent (must be called inside [`Netns::run`]).
    pub async fn start(settings: Settings) -> Self {
        let (token_dir, token_file) = token_file();
        let (handle, reconciler) = reconciler::start(settings).await.expect("agent starts");
        let shutdown = CancellationToken::new();
        tokio::spawn(reconciler.run(shutdown.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let router = api::router(Arc::new(handle.clone()), TokenAuth::from_file(token_file));
        tokio::spawn(api::serve(
            listener,
            router,
            shutdown.clone().cancelled_owned(),
        ));
        let client = AgentClient::new(base.clone(), Some(TOKEN.to_owned())).expect("client");
        TestAgent {
            handle,
            client,
            base,
            shutdown,
            _token_dir: token_dir,
        }
    }

    /// The status, straight from the agent.
    pub fn status(&self) -> Arc<Status> {
        self.handle.status().borrow().clone()
    }

    /// Waits (up to `deadline`) until the published status satisfies `check`.
    pub async fn wait_for_status(
        &self,
        deadline: Duration,
        what: &str,
        check: impl Fn(&Status) -> bool,
    ) -> Arc<Status> {
        let mut status = self.handle.status();
        let found = tokio::time::timeout(deadline, async {
            loop {
                let current = status.borrow_and_update().clone();
                if check(&current) {
                    return current;
                }
                if status.changed().await.is_err() {
                    panic!("the agent stopped while waiting for {what}");
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!(
                "timed out after {deadline:?} waiting for {what}; last status: {:#?}",
                self.status()
            )
        })
    }

    /// Waits until every result of the current configuration is applied.
    pub async fn wait_all_applied(&self) -> Arc<Status> {
        self.wait_for_status(Duration::from_secs(10), "all items applied", |s| {
            !s.results.is_empty() && s.results.iter().all(|r| r.state == ItemState::Applied)
        })
        .await
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
