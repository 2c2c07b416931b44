//! The peers file is reloaded without a restart when the kubelet updates the ConfigMap
//! volume (atomic swap of the `..data` symlink), and bad lines are skipped.

mod common;

use std::net::SocketAddr;

use common::{ConfigMapVolume, Peer, WAIT, metrics, peers, sample, targets};
use http_peer::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_update_changes_targets_without_restart() {
    let mut volume = ConfigMapVolume::new("");
    let servers = common::bind_many(3, &volume.key()).await;
    let addrs: Vec<SocketAddr> = servers.iter().map(Server::local_addr).collect();
    let [a, b, c] = [addrs[0], addrs[1], addrs[2]];
    volume.update(&common::hostports(&[b]));
    let running: Vec<Peer> = servers.into_iter().map(Peer::run).collect();

    testkit::eventually("A pings B", WAIT, || async move {
        let peers = peers(a).await?;
        (targets(&peers) == [b.to_string()] && peers[0]["ok"] == true).then_some(())
    })
    .await;

    // The new version drops B, adds A itself and C, and has a bad line that is skipped.
    volume.update(&format!(
        "{}c-host,not-a-port\n",
        common::hostports(&[c, a])
    ));
    let mut expected = vec![a.to_string(), c.to_string()];
    expected.sort();
    testkit::eventually("A pings A and C only", WAIT, || {
        let expected = expected.clone();
        async move {
            let peers = peers(a).await?;
            (targets(&peers) == expected && peers.iter().all(|p| p["ok"] == true)).then_some(())
        }
    })
    .await;
    let text = metrics(a).await.expect("metrics");
    assert_eq!(sample(&text, "http_peer_targets"), Some(2.0), "{text}");
    assert!(
        !text.contains(&format!(r#"target="{b}""#)),
        "B's series are removed:\n{text}"
    );
    assert!(
        sample(&text, &format!(r#"http_peer_pings_total{{target="{c}"}}"#)).is_some(),
        "{text}"
    );

    for peer in running {
        peer.stop().await;
    }
}

/// A peers file that does not exist yet means no targets; once it appears it is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_created_later_is_picked_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("hostports");
    let a = Peer::start(common::config(([127, 0, 0, 1], 0).into(), Some(&file))).await;
    let addr = a.addr;
    testkit::eventually("serving with no targets", WAIT, || async move {
        peers(addr).await?.is_empty().then_some(())
    })
    .await;
    std::fs::write(&file, common::hostports(&[addr])).expect("write");
    testkit::eventually("A pings itself", WAIT, || async move {
        let peers = peers(addr).await?;
        (targets(&peers) == [addr.to_string()] && peers[0]["ok"] == true).then_some(())
    })
    .await;
    a.stop().await;
}
