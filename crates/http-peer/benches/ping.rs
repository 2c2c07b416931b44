//! http-peer benchmark: the real binary (a child process, so its memory is its own) answering
//! `GET /ping` to an in-repo load generator: `CONNECTIONS` keep-alive HTTP/1.1 connections
//! (hyper client) sending `REQUESTS` requests in total, one at a time per connection.
//!
//! Prints requests/s, latency percentiles, and the server's RSS (VmRSS, peak VmHWM from
//! `/proc/<pid>/status`) idle and after the load. The server pings itself every second
//! meanwhile, as in a pod. If `wrk` is on the PATH, a `wrk` run follows for comparison.
//!
//! Run: `cargo bench -p http-peer --bench ping` (release build). Load generator and server
//! share the machine's cores: figures are a floor, not the server's ceiling.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

const CONNECTIONS: usize = 32;
const REQUESTS: usize = 200_000;
const WARMUP_REQUESTS: usize = 5_000;

// One thread for the generator, so the server (2 worker threads at most) keeps a core.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr = free_addr()?;
    let dir = tempfile::tempdir()?;
    let peers_file = dir.path().join("hostports");
    std::fs::write(&peers_file, format!("{},{}\n", addr.ip(), addr.port()))?;
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_http-peer"))
        .args(["--listen", &addr.to_string(), "--interval", "1s"])
        .arg("--peers-file")
        .arg(&peers_file)
        .args(["--log-level", "warn"])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = server.id().unwrap_or_default();
    wait_until_serving(addr).await?;
    // A few ping rounds of its own before measuring the idle footprint.
    wait_for_own_pings(addr, 3).await?;
    let idle = Memory::of(pid);
    println!("http-peer pid {pid} on {addr}");
    println!("idle:  {idle}");

    load(addr, WARMUP_REQUESTS, false).await?;
    for json in [false, true] {
        let report = load(addr, REQUESTS, json).await?;
        println!(
            "{} {report}",
            if json {
                "/ping (JSON):"
            } else {
                "/ping (text):"
            }
        );
    }
    println!("after: {}", Memory::of(pid));

    if which("wrk") {
        let output = tokio::process::Command::new("wrk")
            .args(["-t1", &format!("-c{CONNECTIONS}"), "-d5s", "--latency"])
            .arg(format!("http://{addr}/ping"))
            .output()
            .await?;
        println!("wrk -t1 -c{CONNECTIONS} -d5s --latency:");
        print!("{}", String::from_utf8_lossy(&output.stdout));
        println!("after wrk: {}", Memory::of(pid));
    }

    let stopping = Instant::now();
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await?;
    anyhow::ensure!(status.success(), "kill -TERM failed");
    let exit = tokio::time::timeout(Duration::from_secs(10), server.wait()).await??;
    println!(
        "SIGTERM -> exit {} in {:.1} ms",
        exit.code().unwrap_or(-1),
        stopping.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}

/// A port that was free a moment ago.
fn free_addr() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

async fn wait_until_serving(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "http-peer did not start on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Waits until the server has pinged itself `rounds` times (per its `/metrics`).
async fn wait_for_own_pings(addr: SocketAddr, rounds: u32) -> anyhow::Result<()> {
    let series = format!("http_peer_pings_total{{target=\"{addr}\"}} ");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = get(addr, "/metrics").await?;
        let pings: u32 = metrics
            .lines()
            .find_map(|line| line.strip_prefix(&series))
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or(0);
        if pings >= rounds {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no {rounds} self-pings in /metrics:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One GET on a new connection, the body as text.
async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())?;
    let body = sender
        .send_request(request)
        .await?
        .into_body()
        .collect()
        .await?;
    Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

/// Resident memory of a process, from `/proc/<pid>/status`.
struct Memory {
    rss_kib: u64,
    peak_kib: u64,
}

impl Memory {
    fn of(pid: u32) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .unwrap_or(0)
        };
        Memory {
            rss_kib: field("VmRSS:"),
            peak_kib: field("VmHWM:"),
        }
    }
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VmRSS {:.1} MiB, VmHWM {:.1} MiB",
            self.rss_kib as f64 / 1024.0,
            self.peak_kib as f64 / 1024.0
        )
    }
}

struct Report {
    requests: usize,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |q: f64| {
            let index = ((self.latencies_us.len() as f64 - 1.0) * q).round() as usize;
            self.latencies_us.get(index).copied().unwrap_or(0) as f64 / 1000.0
        };
        write!(
            f,
            "{} requests over {CONNECTIONS} connections in {:.2} s: {:.0} req/s, latency p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            self.requests,
            self.elapsed.as_secs_f64(),
            self.requests as f64 / self.elapsed.as_secs_f64(),
            at(0.5),
            at(0.99),
            at(1.0)
        )
    }
}

/// Sends `total` GET /ping over `CONNECTIONS` keep-alive connections; every answer must be a
/// 200 with the expected body.
async fn load(addr: SocketAddr, total: usize, json: bool) -> anyhow::Result<Report> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut connections = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let next = next.clone();
        connections.spawn(async move { connection(addr, next, total, json).await });
    }
    let mut latencies_us = Vec::with_capacity(total);
    while let Some(joined) = connections.join_next().await {
        latencies_us.extend(joined??);
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    Ok(Report {
        requests: latencies_us.len(),
        elapsed,
        latencies_us,
    })
}

async fn connection(
    addr: SocketAddr,
    next: Arc<AtomicUsize>,
    total: usize,
    json: bool,
) -> anyhow::Result<Vec<u32>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let expected: &[u8] = if json { b"{\"pong\":true" } else { b"pong" };
    let mut latencies = Vec::new();
    while next.fetch_add(1, Ordering::Relaxed) < total {
        let mut request = hyper::Request::get("/ping").header("host", addr.to_string());
        if json {
            request = request.header("accept", "application/json");
        }
        let request = request.body(Empty::<Bytes>::new())?;
        sender.ready().await?;
        let sent = Instant::now();
        let response = sender.send_request(request).await?;
        anyhow::ensure!(response.status() == 200, "status {}", response.status());
        let body = response.into_body().collect().await?.to_bytes();
        latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
        anyhow::ensure!(body.starts_with(expected), "unexpected body {body:?}");
    }
    Ok(latencies)
}
