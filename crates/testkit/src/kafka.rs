//! A real Kafka-compatible broker (tansu, in-memory storage) for tests: started on a free
//! port, stoppable and restartable on the same port to simulate an outage.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::tools::{self, ToolError};

/// How long a broker may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running (or stopped) tansu broker. Dropping it kills the process.
pub struct Broker {
    addr: SocketAddr,
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker on a free local port and waits until it accepts connections.
    pub async fn start() -> Result<Self, ToolError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut broker = Broker {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child: None,
        };
        broker.resume().await?;
        Ok(broker)
    }

    /// `host:port` of the broker, for `bootstrap.servers` / `--kafka-brokers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Kills the broker (its in-memory log is lost, as with a broker that lost its disk).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the broker again on the same port, empty.
    pub async fn resume(&mut self) -> Result<(), ToolError> {
        if self.child.is_some() {
            return Ok(());
        }
        let tansu = tokio::task::spawn_blocking(tools::tansu)
            .await
            .map_err(|e| ToolError::Command {
                what: "installing tansu".into(),
                detail: e.to_string(),
            })??;
        let url = format!("tcp://{}", self.addr);
        let child = Command::new(tansu)
            .args(["broker", "--storage-engine", "memory://tansu/"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ToolError::Command {
                what: "starting tansu".into(),
                detail: e.to_string(),
            })?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                self.stop().await;
                return Err(ToolError::Command {
                    what: "starting tansu".into(),
                    detail: format!(
                        "not accepting connections on {} after {START_TIMEOUT:?}",
                        self.addr
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
