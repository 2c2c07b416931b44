//! Graceful shutdown is not held up by open connections: neither an idle keep-alive one nor a
//! client stuck in the middle of sending a request.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::Peer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stuck_mid_request_does_not_block_shutdown() {
    let peer = Peer::start(common::config(SocketAddr::from(([127, 0, 0, 1], 0)), None)).await;

    // One complete exchange, so the connection is certainly accepted and being served ...
    let mut stream = tokio::net::TcpStream::connect(peer.addr)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /ping HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    while !answer.ends_with(b"pong") {
        let mut buf = [0; 512];
        let n = tokio::time::timeout(common::WAIT, stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "connection closed early: {answer:?}");
        answer.extend_from_slice(&buf[..n]);
    }
    // ... then half a request that never completes.
    stream
        .write_all(b"GET /ping HTTP/1.1\r\nhost: te")
        .await
        .expect("write");

    // A second, idle keep-alive connection.
    let idle = tokio::net::TcpStream::connect(peer.addr)
        .await
        .expect("connect");

    let stopped = tokio::time::timeout(Duration::from_secs(5), peer.stop()).await;
    assert!(stopped.is_ok(), "shutdown waited for the stuck client");
    drop((stream, idle));
}
