//! Test hosts for the agent: network namespaces the tests create (and remove on drop), the
//! agent running inside one, and iproute2 (`ip -j`) as the independent witness of what the
//! kernel holds.
//!
//! The agent opens its netlink and TCP sockets in the namespace of the thread that starts it,
//! so [`Netns::run`] runs a test body on a thread that has entered the namespace, with a
//! single-threaded runtime that never leaves that thread.

#![allow(dead_code)] // each test file uses a different part

use std::future::Future;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nes_agent::agent::Agent;
use nes_agent::api;
use nes_agent::auth::TokenAuth;
use nes_agent::client::AgentClient;
use nes_agent::reconciler::{self, AgentHandle, Settings};
use nes_api::{ItemState, Status};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The token the test agents accept.
pub const TOKEN: &str = "test-token-0123456789";

/// False (with a loud message) where the tests cannot create network namespaces: they need
/// root and iproute2, which CI has (`cargo xtask test` installs iproute2).
pub fn can_run() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let ip = Command::new("ip").arg("-V").output().is_ok();
    if !(root && ip) {
        eprintln!(
            "\n*** SKIPPED: the nes-agent namespace tests need root and iproute2 (root: {root}, ip: {ip}) ***\n"
        );
    }
    root && ip
}

/// A network namespace, deleted when the last clone is dropped.
#[derive(Clone)]
pub struct Netns {
    inner: Arc<Named>,
}

struct Named(String);

impl Drop for Named {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Netns {
    /// A fresh namespace with loopback up.
    pub fn new() -> Self {
        let name = format!(
            "nes-t{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run_ip(&["netns", "add", &name]);
        let netns = Netns {
            inner: Arc::new(Named(name)),
        };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    /// A fresh namespace with a veth pair `v0`/`v1`, both up.
    pub fn with_veth() -> Self {
        let netns = Netns::new();
        netns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
        netns.ip(&["link", "set", "v0", "up"]);
        netns.ip(&["link", "set", "v1", "up"]);
        netns
    }

    /// Its name under /run/netns.
    pub fn name(&self) -> &str {
        &self.inner.0
    }

    /// Runs `ip -n NAME args...`, panicking with its stderr on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name()];
        all.extend_from_slice(args);
        run_ip(&all)
    }

    /// Runs `ip -n NAME args...` and returns whether it succeeded and its stderr.
    pub fn try_ip(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new("ip")
            .args(["-n", self.name()])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// `ip -j -n NAME args...` parsed.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-j"];
        all.extend_from_slice(args);
        let text = self.ip(&all);
        if text.trim().is_empty() {
            return Value::Array(vec![]);
        }
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("ip -j {args:?}: {e}: {text}"))
    }

    /// The `local/prefixlen` addresses of `dev`, as `ip -j addr` reports them.
    pub fn addresses(&self, dev: &str) -> Vec<String> {
        let json = self.ip_json(&["addr", "show", "dev", dev]);
        let mut out = Vec::new();
        for link in json.as_array().into_iter().flatten() {
            for info in link["addr_info"].as_array().into_iter().flatten() {
                out.push(format!(
                    "{}/{}",
                    info["local"].as_str().unwrap_or("?"),
                    info["prefixlen"]
                ));
            }
        }
        out
    }

    /// The destinations of the routes with protocol `proto` in `table` (`ip -j route`).
    pub fn routes(&self, family: &str, table: &str, proto: &str) -> Vec<Value> {
        let json = self.ip_json(&[family, "route", "show", "table", table, "proto", proto]);
        json.as_array().cloned().unwrap_or_default()
    }

    /// Runs `body` on a thread inside this namespace, on a single-threaded runtime.
    pub fn run<F, Fut, T>(&self, body: F) -> T
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        let path = format!("/run/netns/{}", self.name());
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open the namespace");
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("enter the namespace");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(body())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

fn run_ip(args: &[&str]) -> String {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

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
