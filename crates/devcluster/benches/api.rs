//! devcluster benchmark: creates/s, updates/s, watch fan-out latency with 100 watchers, and
//! memory with 10,000 objects. Prints figures; run with `cargo bench -p devcluster`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use tokio::sync::Mutex;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn cm(name: &str, payload: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"bench": "true"}},
        "data": {"payload": payload}
    }))
    .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cluster = devcluster::DevCluster::start(Default::default())
        .await
        .expect("cluster");
    let client = cluster.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());

    // Creates and updates over HTTP with 16 requests in flight.
    let n = 2_000;
    let start = Instant::now();
    stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &cm(&format!("c-{i}"), "x"))
                    .await
                    .expect("create");
            }
        })
        .await;
    let creates = n as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let api = api.clone();
            async move {
                let p = json!({"data": {"payload": "y"}});
                api.patch(
                    &format!("c-{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(&p),
                )
                .await
                .expect("patch");
            }
        })
        .await;
    let updates = n as f64 / start.elapsed().as_secs_f64();
    println!(
        "devcluster: {creates:.0} creates/s, {updates:.0} updates/s (kube client over HTTP, 16 in flight, {n} objects)"
    );

    // Watch fan-out: 100 watchers, 200 writes; latency from write start to event delivery.
    let watchers = 100;
    let writes = 200;
    let rv = api
        .list(&ListParams::default().limit(1))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let epoch = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(watchers * writes)));
    let mut handles = Vec::new();
    for _ in 0..watchers {
        let api = api.clone();
        let rv = rv.clone();
        let latencies = latencies.clone();
        let mut stream = api
            .watch(
                &WatchParams::default()
                    .fields("metadata.name=fanout")
                    .timeout(300),
                &rv,
            )
            .await
            .unwrap()
            .boxed();
        handles.push(tokio::spawn(async move {
            let mut seen = 0;
            while seen < writes {
                let Some(ev) = stream.try_next().await.unwrap() else {
                    break;
                };
                let obj = match ev {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => o,
                    _ => continue,
                };
                let sent: u64 = obj.data.unwrap()["sent_ns"].parse().unwrap();
                let now = epoch.elapsed().as_nanos() as u64;
                latencies
                    .lock()
                    .await
                    .push(Duration::from_nanos(now.saturating_sub(sent)));
                seen += 1;
            }
        }));
    }
    for i in 0..writes {
        let sent = epoch.elapsed().as_nanos() as u64;
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "fanout"}, "data": {"sent_ns": sent.to_string(), "i": i.to_string()}});
        api.patch(
            "fanout",
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap();
    }
    for h in handles {
        h.await.unwrap();
    }
    let mut l = latencies.lock().await.clone();
    l.sort();
    println!(
        "devcluster: watch fan-out to {watchers} watchers, {writes} writes ({} deliveries): p50 {:?}, p99 {:?}",
        l.len(),
        percentile(&l, 0.50),
        percentile(&l, 0.99)
    );

    // Memory with 10,000 objects (in addition to the above).
    let before = rss_kib();
    let m = 10_000;
    let payload = "v".repeat(256);
    stream::iter(0..m)
        .for_each_concurrent(16, |i| {
            let api = api.clone();
            let payload = payload.clone();
            async move {
                api.create(&PostParams::default(), &cm(&format!("m-{i}"), &payload))
                    .await
                    .expect("create");
            }
        })
        .await;
    let after = rss_kib();
    let start = Instant::now();
    let listed = api.list(&ListParams::default()).await.unwrap().items.len();
    println!(
        "devcluster: 10,000 more ConfigMaps (256-byte payload): RSS {} MiB -> {} MiB (+{:.1} KiB/object); full list of {listed} objects in {:?}; store holds {} objects",
        before / 1024,
        after / 1024,
        (after.saturating_sub(before)) as f64 / m as f64,
        start.elapsed(),
        cluster.api().store.object_count()
    );
    cluster.shutdown().await;
}
