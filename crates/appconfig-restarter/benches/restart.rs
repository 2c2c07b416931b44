//! appconfig-restarter benchmark: the operator binary (its own process, so its memory is its
//! own) against an API server only (no controllers: the figures are the operator's, not the
//! rollout's), on devcluster and on the real kube-apiserver, side by side in one run.
//!
//! 1. Start-up: 1,000 AppConfigs, each following its own ConfigMap used by its own Deployment
//!    (1,000 Deployments), all created before the operator starts: time until every AppConfig
//!    has recorded its workload, and memory.
//! 2. 1,000 ConfigMap updates one after another: update -> workload patched, p50/p99.
//!
//! Run: `cargo bench -p appconfig-restarter --bench restart`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use appconfig_restarter::resource::AppConfig;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::CustomResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use localcluster::{Cluster, Flavor, Options};
use serde_json::{Value, json};

const OBJECTS: usize = 1_000;
const UPDATES: usize = 1_000;

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
    cluster.install_crd(&AppConfig::crd()).await?;

    let setup = Instant::now();
    futures::stream::iter(0..OBJECTS)
        .map(|i| create_set(client.clone(), format!("app-{i}")))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    println!(
        "created {OBJECTS} ConfigMaps, Deployments and AppConfigs in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let mut operator = tokio::process::Command::new(env!("CARGO_BIN_EXE_appconfig-restarter"))
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .args(["--metrics-addr", "127.0.0.1:0", "--log-level", "warn"])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = operator.id().unwrap_or_default();
    steady(&client).await?;
    println!(
        "start-up with {OBJECTS} AppConfigs x {OBJECTS} Deployments: steady state after {:.2} s; operator RSS {} MiB",
        started.elapsed().as_secs_f64(),
        rss_kib(pid, "VmRSS:") / 1024
    );

    updates(&client).await?;
    println!(
        "operator memory at the end: RSS {} MiB, peak {} MiB",
        rss_kib(pid, "VmRSS:") / 1024,
        rss_kib(pid, "VmHWM:") / 1024
    );
    operator.kill().await?;
    cluster.shutdown().await;
    Ok(())
}

fn deployment(name: &str) -> Value {
    json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27",
                                         "envFrom": [{"configMapRef": {"name": name}}]}]}
            }
        }
    })
}

async fn create_set(client: kube::Client, name: String) -> anyhow::Result<()> {
    let ns = "default";
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"v": "0"}}))?;
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cm)
        .await?;
    let d: Deployment = serde_json::from_value(deployment(&name))?;
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &d)
        .await?;
    let app: AppConfig = serde_json::from_value(json!({
        "apiVersion": "appconfig.kubecrew.io/v1alpha1",
        "kind": "AppConfig",
        "metadata": {"name": name},
        "spec": {"configMaps": [name], "debounce": "0s"}
    }))?;
    Api::<AppConfig>::namespaced(client, ns)
        .create(&PostParams::default(), &app)
        .await?;
    Ok(())
}

/// Waits until every AppConfig has recorded its workload.
async fn steady(client: &kube::Client) -> anyhow::Result<()> {
    let api: Api<AppConfig> = Api::namespaced(client.clone(), "default");
    let mut watch = Box::pin(watcher::watcher(api, watcher::Config::default()));
    let mut done = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while done.len() < OBJECTS {
        let event = tokio::time::timeout_at(deadline, watch.next())
            .await
            .map_err(|_| anyhow::anyhow!("only {} of {OBJECTS} steady", done.len()))?;
        if let Some(Ok(Event::Apply(app) | Event::InitApply(app))) = event
            && app.status.is_some_and(|s| s.workload_count == 1)
        {
            done.insert(app.metadata.name.unwrap_or_default());
        }
    }
    Ok(())
}

/// Sequential ConfigMap updates: update -> Deployment template patched.
async fn updates(client: &kube::Client) -> anyhow::Result<()> {
    let ns = "default";
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let mut watch = Box::pin(watcher::watcher(
        deployments,
        watcher::Config::default().fields("metadata.name=app-0"),
    ));
    let mut latencies = Vec::with_capacity(UPDATES);
    let mut last = None;
    for i in 1..=UPDATES {
        let started = Instant::now();
        cms.patch(
            "app-0",
            &PatchParams::default(),
            &Patch::Merge(&json!({"data": {"v": i.to_string()}})),
        )
        .await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let event = tokio::time::timeout_at(deadline, watch.next())
                .await
                .map_err(|_| anyhow::anyhow!("update {i} never reached the Deployment"))?;
            let Some(Ok(Event::Apply(d) | Event::InitApply(d))) = event else {
                continue;
            };
            let hash = d
                .spec
                .and_then(|s| s.template.metadata)
                .and_then(|m| m.annotations)
                .and_then(|a| a.get("kubecrew.io/config-hash").cloned());
            if hash.is_some() && hash != last {
                last = hash;
                break;
            }
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{UPDATES} ConfigMap updates, update -> Deployment patched: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
    Ok(())
}

fn rss_kib(pid: u32, field: &str) -> u64 {
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
