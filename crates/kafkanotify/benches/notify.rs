//! kafkanotify benchmark: the operator binary (a separate process, so its memory is its own)
//! against an API server only (devcluster, then the real kube-apiserver, side by side in one run)
//! and a tansu broker.
//!
//! 1. 1,000 migrations of one EdgeApplication, one after another: time from the resource
//!    update to the broker's acknowledgement (`status.notified.time`), p50/p99.
//! 2. 1,000 EdgeApplications created at once: time until every `placed` event is
//!    acknowledged, and the operator's peak RSS.
//!
//! Run: `cargo bench -p kafkanotify --bench notify`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kafkanotify::resource::EdgeApplication;
use kube::CustomResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use localcluster::{Cluster, Flavor, Options};
use serde_json::json;

const MIGRATIONS: usize = 1_000;
const APPS: usize = 1_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // Side by side in one run: devcluster, then the real control plane.
    for flavor in Flavor::for_benchmarks()? {
        run(flavor).await?;
    }
    Ok(())
}

/// One run on an API server only (no controllers: the figures are the operator's own).
async fn run(flavor: Flavor) -> anyhow::Result<()> {
    println!("== on the {} cluster", flavor.name());
    let starting = Instant::now();
    let cluster = Cluster::start(flavor, Options::api_server_only()).await?;
    println!("cluster ready in {:.2} s", starting.elapsed().as_secs_f64());
    let client = cluster.client();
    cluster.install_crd(&EdgeApplication::crd()).await?;
    let broker = testkit::kafka::Broker::start().await?;
    let mut operator = tokio::process::Command::new(env!("CARGO_BIN_EXE_kafkanotify"))
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .args(["--kafka-brokers", &broker.bootstrap()])
        .args(["--metrics-addr", "127.0.0.1:0", "--log-level", "warn"])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = operator.id().unwrap_or_default();

    let api: Api<EdgeApplication> = Api::namespaced(client.clone(), "default");
    migrations(&api).await?;
    burst(&client).await?;
    println!(
        "operator memory: RSS {} MiB, peak {} MiB",
        proc_status_kib(pid, "VmRSS:") / 1024,
        proc_status_kib(pid, "VmHWM:") / 1024
    );
    operator.kill().await?;
    cluster.shutdown().await;
    Ok(())
}

fn app(name: &str, node: &str) -> EdgeApplication {
    serde_json::from_value(json!({
        "apiVersion": "kafkanotify.kubecrew.io/v1alpha1",
        "kind": "EdgeApplication",
        "metadata": {"name": name},
        "spec": {"edgeNodeId": node, "endpoint": {"host": "10.0.0.1", "port": 2000}}
    }))
    .expect("valid EdgeApplication")
}

/// Sequential migrations of one application: update -> acknowledgement latency.
async fn migrations(api: &Api<EdgeApplication>) -> anyhow::Result<()> {
    api.create(&PostParams::default(), &app("bench", "node-0"))
        .await?;
    let mut watch = Box::pin(watcher::watcher(
        api.clone(),
        watcher::Config::default().fields("metadata.name=bench"),
    ));
    wait_notified(&mut watch, 1).await?;
    let mut latencies = Vec::with_capacity(MIGRATIONS);
    for i in 1..=MIGRATIONS {
        let started = jiff::Timestamp::now();
        let patch = json!({"spec": {"edgeNodeId": format!("node-{i}")}});
        let updated = api
            .patch("bench", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let generation = updated.metadata.generation.unwrap_or_default();
        let acked = wait_notified(&mut watch, generation).await?;
        let took = acked.duration_since(started);
        latencies.push(Duration::try_from(took).unwrap_or_default());
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{MIGRATIONS} migrations, update -> record acknowledged: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Waits on the watch until the status records the acknowledgement of `generation`; returns
/// the acknowledgement time.
async fn wait_notified<S>(watch: &mut S, generation: i64) -> anyhow::Result<jiff::Timestamp>
where
    S: futures::Stream<Item = Result<Event<EdgeApplication>, watcher::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let event = tokio::time::timeout_at(deadline, watch.next())
            .await
            .map_err(|_| anyhow::anyhow!("generation {generation} not acknowledged in 60 s"))?;
        let Some(Ok(Event::Apply(app) | Event::InitApply(app))) = event else {
            continue;
        };
        if let Some(n) = app.status.and_then(|s| s.notified)
            && n.generation >= generation
        {
            return Ok(n.time.parse()?);
        }
    }
}

/// Many applications at once: time until all are placed.
async fn burst(client: &kube::Client) -> anyhow::Result<()> {
    let ns = "burst";
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await?;
    let api: Api<EdgeApplication> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    futures::stream::iter(0..APPS)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &app(&format!("app-{i}"), "node-a"))
                    .await
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let created = started.elapsed();
    let mut watch = Box::pin(watcher::watcher(api.clone(), watcher::Config::default()));
    let mut placed = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while placed.len() < APPS {
        let event = tokio::time::timeout_at(deadline, watch.next())
            .await
            .map_err(|_| anyhow::anyhow!("only {} of {APPS} placed in 300 s", placed.len()))?;
        if let Some(Ok(Event::Apply(app) | Event::InitApply(app))) = event
            && app.status.and_then(|s| s.notified).is_some()
        {
            placed.insert(app.metadata.name.unwrap_or_default());
        }
    }
    let all = started.elapsed();
    println!(
        "{APPS} EdgeApplications created at once: created in {:.2} s, all placed events acknowledged after {:.2} s ({:.0} /s)",
        created.as_secs_f64(),
        all.as_secs_f64(),
        APPS as f64 / all.as_secs_f64()
    );
    Ok(())
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
