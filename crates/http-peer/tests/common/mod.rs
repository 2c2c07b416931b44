//! Helpers shared by the integration tests: in-process servers, HTTP reads, and a peers
//! directory laid out and updated exactly like the kubelet's ConfigMap volume.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_peer::{Config, Server};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a condition may take: many ping rounds and reloads.
pub const WAIT: Duration = Duration::from_secs(15);

/// A configuration for tests: fast rounds and reloads, short timeouts.
pub fn config(listen: SocketAddr, peers_file: Option<&Path>) -> Config {
    Config {
        listen,
        peers_file: peers_file.map(Path::to_path_buf),
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(500),
        jitter: 0.2,
        instance: format!("test-{}", listen.port()),
        reload_interval: Duration::from_millis(100),
    }
}

/// A server running in-process.
pub struct Peer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<Result<(), http_peer::server::Error>>,
}

impl Peer {
    /// Binds and runs a server.
    pub async fn start(config: Config) -> Peer {
        let server = Server::bind(config).await.expect("server binds");
        Peer::run(server)
    }

    /// Runs an already bound server (bind first to learn ports, then write the peers file).
    pub fn run(server: Server) -> Peer {
        let addr = server.local_addr();
        let stop = CancellationToken::new();
        let task = tokio::spawn(server.run(stop.clone().cancelled_owned()));
        Peer { addr, stop, task }
    }

    /// `host:port`, the target label.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Shuts the server down gracefully and waits until it has stopped.
    pub async fn stop(self) {
        self.stop.cancel();
        let result = tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the server stops in time")
            .expect("the server task does not panic");
        result.expect("the server stops without error");
    }
}

/// Binds `n` servers on free ports of 127.0.0.1 (not running yet).
pub async fn bind_many(n: usize, peers_file: &Path) -> Vec<Server> {
    let mut servers = Vec::new();
    for _ in 0..n {
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        servers.push(
            Server::bind(config(listen, Some(peers_file)))
                .await
                .expect("server binds"),
        );
    }
    servers
}

/// The peers file lines for these addresses.
pub fn hostports(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|addr| format!("{},{}\n", addr.ip(), addr.port()))
        .collect()
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client")
    })
}

/// `GET /peers`, `None` on any failure (so it can be polled).
pub async fn peers(addr: SocketAddr) -> Option<Vec<Value>> {
    let response = client()
        .get(format!("http://{addr}/peers"))
        .send()
        .await
        .ok()?;
    response.json().await.ok()
}

/// `GET /metrics`, `None` on any failure.
pub async fn metrics(addr: SocketAddr) -> Option<String> {
    let response = client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .ok()?;
    response.text().await.ok()
}

/// The entry of `target` (`host:port`) in a `/peers` answer.
pub fn entry<'a>(peers: &'a [Value], target: &str) -> Option<&'a Value> {
    peers
        .iter()
        .find(|peer| format!("{}:{}", peer["host"].as_str().unwrap_or(""), peer["port"]) == target)
}

/// The targets of a `/peers` answer, sorted.
pub fn targets(peers: &[Value]) -> Vec<String> {
    let mut targets: Vec<String> = peers
        .iter()
        .map(|peer| format!("{}:{}", peer["host"].as_str().unwrap_or(""), peer["port"]))
        .collect();
    targets.sort();
    targets
}

/// The value of one series in a Prometheus exposition (`name{labels}` exactly as rendered).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// A directory laid out like a ConfigMap volume written by the kubelet's atomic writer:
/// `..<timestamp>/hostports`, `..data -> ..<timestamp>`, `hostports -> ..data/hostports`.
pub struct ConfigMapVolume {
    dir: tempfile::TempDir,
    current: Option<PathBuf>,
}

impl ConfigMapVolume {
    /// Creates the volume with a first version of `hostports`.
    pub fn new(hostports: &str) -> Self {
        let mut volume = ConfigMapVolume {
            dir: tempfile::tempdir().expect("temp dir"),
            current: None,
        };
        volume.update(hostports);
        std::os::unix::fs::symlink("..data/hostports", volume.dir.path().join("hostports"))
            .expect("key symlink");
        volume
    }

    /// The path the server reads: the `hostports` key.
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("hostports")
    }

    /// Publishes new contents the way the kubelet does: a new timestamped directory, a new
    /// `..data_tmp` symlink to it renamed atomically over `..data`, then the old directory
    /// removed.
    pub fn update(&mut self, hostports: &str) {
        static GENERATION: AtomicUsize = AtomicUsize::new(0);
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        let name = format!("..2026_01_02_03_04_05.{generation:09}");
        let version = self.dir.path().join(&name);
        std::fs::create_dir(&version).expect("version dir");
        std::fs::write(version.join("hostports"), hostports).expect("write hostports");
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp).expect("..data_tmp symlink");
        std::fs::rename(&tmp, self.dir.path().join("..data")).expect("atomic swap of ..data");
        if let Some(old) = self.current.replace(version) {
            std::fs::remove_dir_all(old).expect("remove the old version");
        }
    }
}
