//! The real binary: configured by environment variables, JSON logs (one line per ping), and a
//! graceful exit on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(15);

/// Waits for the next JSON log line matching `wanted`.
async fn next_log(
    lines: &mut mpsc::UnboundedReceiver<String>,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.recv().await {
            let log: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            if wanted(&log) {
                return log;
            }
        }
        panic!("the process exited before the expected log line");
    })
    .await
    .expect("the expected log line in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_runs_from_env_logs_json_and_stops_on_sigterm() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("hostports");
    std::fs::write(
        &file,
        format!("{},{}\nbad line\n", closed.ip(), closed.port()),
    )
    .expect("write");

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_http-peer"))
        .env("HTTP_PEER_LISTEN", "127.0.0.1:0")
        .env("HTTP_PEER_PEERS_FILE", &file)
        .env("HTTP_PEER_INTERVAL", "100ms")
        .env("HTTP_PEER_TIMEOUT", "1s")
        .env("HTTP_PEER_LOG_FORMAT", "json")
        .env("POD_NAME", "pod-bin-0")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn http-peer");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, mut lines) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let listening = next_log(&mut lines, |log| log["message"] == "listening").await;
    let addr = listening["addr"].as_str().expect("addr field").to_owned();
    assert_eq!(listening["instance"], "pod-bin-0");

    let pong: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("http://{addr}/ping"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("ping")
        .json()
        .await
        .expect("JSON");
    assert_eq!(pong["instance"], "pod-bin-0");

    let bad = next_log(&mut lines, |log| {
        log["message"] == "skipping a bad line of the peers file"
    })
    .await;
    assert_eq!(bad["line"], 2, "{bad}");
    let ping = next_log(&mut lines, |log| log["message"] == "ping").await;
    assert_eq!(ping["target"], closed.to_string(), "{ping}");
    assert_eq!(ping["ok"], false, "{ping}");
    assert_eq!(ping["reason"], "connect", "{ping}");
    assert!(ping["error"].is_string(), "{ping}");

    let pid = child.id().expect("running").to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits in time after SIGTERM")
        .expect("wait");
    assert!(status.success(), "graceful exit, got {status}");
    next_log(&mut lines, |log| log["message"] == "stopped").await;
}
