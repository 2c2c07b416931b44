//! Two instances of one operator against one devcluster: only the Lease holder reconciles, and
//! a graceful shutdown of the leader hands reconciling to the other at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use operator_core::leader::{LeaderElectionConfig, LeaderElector};
use operator_core::{ErrorReason, Runtime, Settings};

#[derive(Debug, thiserror::Error)]
#[error("never fails")]
struct Never;

impl ErrorReason for Never {
    fn reason(&self) -> String {
        "Never".into()
    }
}

struct Ctx {
    instance: &'static str,
    seen: Arc<Mutex<Vec<(&'static str, String)>>>,
}

async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, Never> {
    ctx.seen.lock().unwrap().push((ctx.instance, cm.name_any()));
    Ok(Action::await_change())
}

struct Instance {
    runtime: Arc<Runtime>,
    leading: tokio::sync::watch::Receiver<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn start(
    client: &kube::Client,
    instance: &'static str,
    seen: &Arc<Mutex<Vec<(&'static str, String)>>>,
) -> Instance {
    let mut config = LeaderElectionConfig::new("default", "gated", instance);
    config.lease_duration = Duration::from_secs(10);
    config.renew_deadline = Duration::from_secs(5);
    config.retry_period = Duration::from_millis(200);
    let elector = LeaderElector::new(client.clone(), config).unwrap();
    let leading = elector.subscribe();
    let runtime = Arc::new(Runtime::new(client.clone(), "gated").with_leader(elector.subscribe()));
    let shutdown = runtime.shutdown.clone();
    let elect = tokio::spawn(async move {
        let _ = elector.run(shutdown).await;
    });
    let api: Api<DeserializeGuard<ConfigMap>> = Api::default_namespaced(client.clone());
    let ctx = Arc::new(Ctx {
        instance,
        seen: seen.clone(),
    });
    let run = tokio::spawn(operator_core::run(
        runtime.clone(),
        api,
        watcher::Config::default().labels("test=gated"),
        |c| c,
        reconcile,
        ctx,
        Settings::default(),
    ));
    Instance {
        runtime,
        leading,
        tasks: vec![elect, run],
    }
}

fn reconciled_by(seen: &Mutex<Vec<(&'static str, String)>>, name: &str) -> Vec<&'static str> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(_, n)| n == name)
        .map(|(i, _)| *i)
        .collect()
}

async fn create(api: &Api<ConfigMap>, name: &str) {
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"test": "gated"}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_shutdown_hands_over() {
    let cluster = devcluster::DevCluster::start(Default::default())
        .await
        .unwrap();
    let client = cluster.client();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let a = start(&client, "a", &seen);
    let b = start(&client, "b", &seen);
    let (leader, follower) = testkit::eventually("a leader", Duration::from_secs(20), || async {
        match (*a.leading.borrow(), *b.leading.borrow()) {
            (true, false) => Some(("a", "b")),
            (false, true) => Some(("b", "a")),
            _ => None,
        }
    })
    .await;

    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for name in ["c1", "c2", "c3"] {
        create(&cms, name).await;
    }
    for name in ["c1", "c2", "c3"] {
        let by = testkit::eventually(
            &format!("{name} reconciled"),
            Duration::from_secs(20),
            || {
                let seen = seen.clone();
                async move { Some(reconciled_by(&seen, name)).filter(|v| !v.is_empty()) }
            },
        )
        .await;
        assert!(
            by.iter().all(|i| *i == leader),
            "{name} reconciled by {by:?}, leader is {leader}"
        );
    }

    // Graceful shutdown of the leader: the follower leads and reconciles well before the
    // 10-second lease would have expired.
    let (gone, stays) = if leader == "a" { (a, b) } else { (b, a) };
    gone.runtime.shutdown.cancel();
    for t in gone.tasks {
        tokio::time::timeout(Duration::from_secs(20), t)
            .await
            .unwrap()
            .unwrap();
    }
    let mut leading = stays.leading.clone();
    tokio::time::timeout(Duration::from_secs(5), leading.wait_for(|l| *l))
        .await
        .expect("handover before the lease expired")
        .unwrap();
    create(&cms, "c4").await;
    let by = testkit::eventually(
        "c4 reconciled by the new leader",
        Duration::from_secs(20),
        || {
            let seen = seen.clone();
            async move { Some(reconciled_by(&seen, "c4")).filter(|v| !v.is_empty()) }
        },
    )
    .await;
    assert!(by.iter().all(|i| *i == follower), "c4 reconciled by {by:?}");

    stays.runtime.shutdown.cancel();
    for t in stays.tasks {
        tokio::time::timeout(Duration::from_secs(20), t)
            .await
            .unwrap()
            .unwrap();
    }
    cluster.shutdown().await;
}
