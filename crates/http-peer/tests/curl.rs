//! The documented answers of the endpoints, checked with a real, independent HTTP client:
//! `curl` (a test dependency of the machine, like the compiler).

mod common;

use std::net::SocketAddr;

use common::Peer;

/// Runs curl with `args`, returning its stdout. Fails the test if curl is missing.
async fn curl(args: &[&str]) -> String {
    let output = tokio::process::Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "10",
            "--noproxy",
            "*",
        ])
        .args(args)
        .output()
        .await
        .expect("curl is installed (this test checks the server with an independent client)");
    assert!(output.status.success(), "curl {args:?}: {output:?}");
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// `curl -w` format printing the status and content type after the body.
const STATUS: &str = "\n%{http_code} %{content_type}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_as_documented() {
    let mut config = common::config(SocketAddr::from(([127, 0, 0, 1], 0)), None);
    config.instance = "pod-curl-0".into();
    let peer = Peer::start(config).await;
    let base = format!("http://{}", peer.addr);

    let text = curl(&["--write-out", STATUS, &format!("{base}/ping")]).await;
    assert_eq!(text, "pong\n200 text/plain; charset=utf-8");

    let json = curl(&[
        "--header",
        "Accept: application/json",
        "--write-out",
        STATUS,
        &format!("{base}/ping"),
    ])
    .await;
    let (body, status) = json.rsplit_once('\n').expect("body and status");
    assert_eq!(status, "200 application/json");
    let pong: serde_json::Value = serde_json::from_str(body).expect("JSON body");
    assert_eq!(pong["pong"], true);
    assert_eq!(pong["instance"], "pod-curl-0");
    assert!(pong["uptimeSeconds"].is_u64(), "{pong}");
    assert_eq!(pong.as_object().map(|o| o.len()), Some(3), "{pong}");

    let head = curl(&["--head", &format!("{base}/ping")]).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let health = curl(&["--write-out", STATUS, &format!("{base}/healthz")]).await;
    assert_eq!(health, "ok\n200 text/plain; charset=utf-8");

    let peers = curl(&["--write-out", STATUS, &format!("{base}/peers")]).await;
    assert_eq!(peers, "[]\n200 application/json");

    let metrics = curl(&["--write-out", STATUS, &format!("{base}/metrics")]).await;
    assert!(metrics.contains("http_peer_targets 0"), "{metrics}");
    assert!(
        metrics.ends_with("200 text/plain; version=0.0.4; charset=utf-8"),
        "{metrics}"
    );

    let missing = curl(&[
        "--write-out",
        "%{http_code}",
        "--output",
        "/dev/null",
        &format!("{base}/nope"),
    ])
    .await;
    assert_eq!(missing, "404");
    let post = curl(&[
        "--request",
        "POST",
        "--write-out",
        "%{http_code}",
        "--output",
        "/dev/null",
        &format!("{base}/ping"),
    ])
    .await;
    assert_eq!(post, "405");

    peer.stop().await;
}
