//! Servers pinging each other in-process: all healthy, then a peer down and back, plus
//! targets failing in each way (closed port, no answer, error status).

mod common;

use std::net::SocketAddr;

use common::{Peer, WAIT, entry, metrics, peers, sample};
use http_peer::Server;

/// Three servers listing each other (and themselves) all report every target healthy, in
/// `/peers` and in `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_see_each_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("hostports");
    let servers = common::bind_many(3, &file).await;
    let addrs: Vec<SocketAddr> = servers.iter().map(Server::local_addr).collect();
    std::fs::write(&file, format!("# the mesh\n{}", common::hostports(&addrs))).expect("write");
    let running: Vec<Peer> = servers.into_iter().map(Peer::run).collect();

    for peer in &running {
        let addr = peer.addr;
        testkit::eventually("every target ok in /peers", WAIT, || async move {
            let peers = peers(addr).await?;
            (peers.len() == 3
                && peers.iter().all(|p| {
                    p["ok"] == true
                        && p["latencyMs"].as_f64().is_some_and(|ms| ms >= 0.0)
                        && p["checkedAt"].is_string()
                        && p["consecutiveFailures"] == 0
                        && p["error"].is_null()
                }))
            .then_some(())
        })
        .await;
        testkit::eventually("every target pinged in /metrics", WAIT, || {
            let addrs = addrs.clone();
            async move {
                let text = metrics(addr).await?;
                let all_pinged = addrs.iter().all(|target| {
                    let pings = sample(
                        &text,
                        &format!(r#"http_peer_pings_total{{target="{target}"}}"#),
                    );
                    let timed = sample(
                        &text,
                        &format!(r#"http_peer_ping_duration_seconds_count{{target="{target}"}}"#),
                    );
                    pings.is_some_and(|n| n >= 1.0) && timed.is_some_and(|n| n >= 1.0)
                });
                (all_pinged
                    && sample(&text, "http_peer_targets") == Some(3.0)
                    && !text.contains("http_peer_ping_failures_total{"))
                .then_some(())
            }
        })
        .await;
    }
    for peer in running {
        peer.stop().await;
    }
}

/// A peer that goes down is reported failing with reason `connect`, and healthy again once
/// it is back on the same port. Targets that never answer (`timeout`), refuse (`connect`) or
/// answer 503 (`status`) are reported with their reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_targets_are_reported_and_recover() {
    // Nothing listens here.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    // Accepts connections (the kernel completes the handshake) but never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    // Answers every request with 503.
    let unavailable = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let unavailable_addr = unavailable.local_addr().expect("addr");
    tokio::spawn(async move {
        let app = axum::Router::new()
            .fallback(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "draining") });
        axum::serve(unavailable, app).await
    });

    let b = Peer::start(common::config(([127, 0, 0, 1], 0).into(), None)).await;
    let b_addr = b.addr;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("hostports");
    std::fs::write(
        &file,
        common::hostports(&[b_addr, closed, silent_addr, unavailable_addr]),
    )
    .expect("write");
    let a = Peer::start(common::config(([127, 0, 0, 1], 0).into(), Some(&file))).await;
    let a_addr = a.addr;

    let reasons = |peers: &[serde_json::Value], target: SocketAddr| {
        entry(peers, &target.to_string()).and_then(|p| p["reason"].as_str().map(str::to_owned))
    };
    testkit::eventually(
        "each failure reported with its reason",
        WAIT,
        || async move {
            let peers = peers(a_addr).await?;
            let b_ok = entry(&peers, &b_addr.to_string())?["ok"] == true;
            let status_error = entry(&peers, &unavailable_addr.to_string())?["error"].clone();
            (b_ok
                && reasons(&peers, closed).as_deref() == Some("connect")
                && reasons(&peers, silent_addr).as_deref() == Some("timeout")
                && reasons(&peers, unavailable_addr).as_deref() == Some("status")
                && status_error == "HTTP 503 Service Unavailable")
                .then_some(())
        },
    )
    .await;
    let text = metrics(a_addr).await.expect("metrics");
    for (target, reason) in [
        (closed, "connect"),
        (silent_addr, "timeout"),
        (unavailable_addr, "status"),
    ] {
        let series =
            format!(r#"http_peer_ping_failures_total{{reason="{reason}",target="{target}"}}"#);
        assert!(
            sample(&text, &series).is_some_and(|n| n >= 1.0),
            "{series} in\n{text}"
        );
    }

    // B goes down.
    b.stop().await;
    let failures =
        format!(r#"http_peer_ping_failures_total{{reason="connect",target="{b_addr}"}}"#);
    testkit::eventually("B reported down", WAIT, || async {
        let peers = peers(a_addr).await?;
        let b = entry(&peers, &b_addr.to_string())?;
        let down = b["ok"] == false
            && b["reason"] == "connect"
            && b["error"].as_str().is_some_and(|e| e.contains("refused"))
            && b["consecutiveFailures"].as_u64().is_some_and(|n| n >= 2);
        let text = metrics(a_addr).await?;
        (down && sample(&text, &failures).is_some_and(|n| n >= 2.0)).then_some(())
    })
    .await;

    // B comes back on the same port.
    let b = Peer::start(common::config(b_addr, None)).await;
    testkit::eventually("B reported healthy again", WAIT, || async {
        let peers = peers(a_addr).await?;
        let b = entry(&peers, &b_addr.to_string())?;
        (b["ok"] == true && b["consecutiveFailures"] == 0 && b["reason"].is_null()).then_some(())
    })
    .await;

    a.stop().await;
    b.stop().await;
    drop(silent);
}
