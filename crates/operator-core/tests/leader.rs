//! Leader election against a real (in-process) API server: one leader at a time, takeover after
//! a crash once the Lease expires, fast handover on graceful shutdown, stepping down when the
//! Lease is taken or the server is unreachable.

use std::time::Duration;

use devcluster::DevCluster;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use operator_core::leader::{LeaderElectionConfig, LeaderElector, ReleaseError, wait_until_leader};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const NAMESPACE: &str = "default";
const LEASE: &str = "leader-test";

/// Lease 2s, renew deadline 1s, retry 200ms.
fn short(identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_millis(200),
        ..LeaderElectionConfig::new(NAMESPACE, LEASE, identity)
    }
}

/// A running candidate.
struct Candidate {
    leading: watch::Receiver<bool>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ReleaseError>>,
}

fn start(client: kube::Client, config: LeaderElectionConfig) -> Candidate {
    let elector = LeaderElector::new(client, config).expect("valid config");
    let leading = elector.subscribe();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(elector.run(shutdown.clone()));
    Candidate {
        leading,
        shutdown,
        task,
    }
}

impl Candidate {
    fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    async fn wait_until_leader(&self, within: Duration) {
        let mut leading = self.leading.clone();
        tokio::time::timeout(within, wait_until_leader(&mut leading))
            .await
            .expect("became leader in time")
            .expect("elector still running");
    }
}

async fn lease(client: &kube::Client) -> Lease {
    Api::<Lease>::namespaced(client.clone(), NAMESPACE)
        .get(LEASE)
        .await
        .expect("lease exists")
}

fn holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref().and_then(|s| s.holder_identity.clone())
}

fn transitions(lease: &Lease) -> i32 {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_transitions)
        .unwrap_or(0)
}

/// Starts `a` and `b` one after the other, so `a` is the first leader.
async fn two_candidates(
    client: &kube::Client,
    config: fn(&str) -> LeaderElectionConfig,
) -> (Candidate, Candidate) {
    let a = start(client.clone(), config("a"));
    a.wait_until_leader(Duration::from_secs(5)).await;
    let b = start(client.clone(), config("b"));
    (a, b)
}

#[tokio::test]
async fn exactly_one_of_two_candidates_leads_and_the_lease_names_it() {
    let cluster = DevCluster::start(Default::default())
        .await
        .expect("cluster");
    let client = cluster.client();
    let a = start(client.clone(), short("a"));
    let b = start(client.clone(), short("b"));

    // Watch both flags over several lease durations: never both, and soon always one.
    let until = Instant::now() + Duration::from_secs(6);
    let mut leaders_seen = Vec::new();
    while Instant::now() < until {
        let (la, lb) = (a.is_leader(), b.is_leader());
        assert!(!(la && lb), "both candidates claim leadership");
        if la || lb {
            leaders_seen.push(if la { "a" } else { "b" });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let leader = *leaders_seen.last().expect("someone became leader");
    assert!(
        leaders_seen.iter().all(|l| *l == leader),
        "leadership moved without a failure: {leaders_seen:?}"
    );

    let lease = lease(&client).await;
    let spec = lease.spec.clone().expect("lease has a spec");
    assert_eq!(spec.holder_identity.as_deref(), Some(leader));
    assert_eq!(spec.lease_duration_seconds, Some(2));
    assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());
    // Created by the winner, never taken over.
    assert_eq!(spec.lease_transitions, Some(0));

    for c in [a, b] {
        c.shutdown.cancel();
        c.task.await.expect("no panic").expect("released");
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_crashed_leader_is_replaced_once_its_lease_expires() {
    let cluster = DevCluster::start(Default::default())
        .await
        .expect("cluster");
    let client = cluster.client();
    let (a, b) = two_candidates(&client, short).await;
    // Let b observe a's renewals for a while: it must not take over meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(a.is_leader() && !b.is_leader());
    let before = transitions(&lease(&client).await);

    // Simulate a crash: no release, no more renewals.
    a.task.abort();
    let crashed = Instant::now();
    b.wait_until_leader(Duration::from_secs(6)).await;
    let took = crashed.elapsed();
    // a renewed at most a retry period (plus a request) before the crash, so b may not take
    // over much earlier than one lease duration after it.
    assert!(
        took >= Duration::from_millis(1_500),
        "took over after {took:?}, before the lease can have expired"
    );

    let lease = lease(&client).await;
    assert_eq!(holder(&lease).as_deref(), Some("b"));
    assert_eq!(transitions(&lease), before + 1);

    b.shutdown.cancel();
    b.task.await.expect("no panic").expect("released");
    cluster.shutdown().await;
}

/// Lease 10s, renew deadline 5s, retry 200ms: a takeover by expiry would take ~10s.
fn long(identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_duration: Duration::from_secs(10),
        renew_deadline: Duration::from_secs(5),
        retry_period: Duration::from_millis(200),
        ..LeaderElectionConfig::new(NAMESPACE, LEASE, identity)
    }
}

#[tokio::test]
async fn graceful_shutdown_releases_the_lease_to_the_next_candidate() {
    let cluster = DevCluster::start(Default::default())
        .await
        .expect("cluster");
    let client = cluster.client();
    let (a, b) = two_candidates(&client, long).await;
    let before = transitions(&lease(&client).await);
    assert!(!b.is_leader());

    a.shutdown.cancel();
    a.task.await.expect("no panic").expect("released");
    assert!(!*a.leading.borrow(), "a stopped claiming leadership");
    // Half the lease duration: only a release makes this possible.
    b.wait_until_leader(Duration::from_secs(5)).await;

    let lease = lease(&client).await;
    assert_eq!(holder(&lease).as_deref(), Some("b"));
    assert_eq!(
        lease.spec.as_ref().and_then(|s| s.lease_duration_seconds),
        Some(10)
    );
    assert_eq!(transitions(&lease), before + 1);

    b.shutdown.cancel();
    b.task.await.expect("no panic").expect("released");
    let released = self::lease(&client).await;
    assert_eq!(holder(&released), None);
    assert_eq!(
        released.spec.and_then(|s| s.lease_duration_seconds),
        Some(1)
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_leader_steps_down_when_someone_else_takes_the_lease() {
    let cluster = DevCluster::start(Default::default())
        .await
        .expect("cluster");
    let client = cluster.client();
    // A renew deadline of 5s: stepping down sooner shows the takeover itself was noticed.
    let a = start(client.clone(), long("a"));
    a.wait_until_leader(Duration::from_secs(5)).await;

    // Another party overwrites the Lease (say, an operator with a clock that thinks a expired).
    let api = Api::<Lease>::namespaced(client.clone(), NAMESPACE);
    let mut lease = api.get(LEASE).await.expect("lease exists");
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = Some("intruder".into());
        spec.lease_duration_seconds = Some(60);
    }
    // a renews concurrently: retry on 409 as any well-behaved writer does.
    loop {
        match api.replace(LEASE, &PostParams::default(), &lease).await {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                lease = api.get(LEASE).await.expect("lease exists");
                if let Some(spec) = lease.spec.as_mut() {
                    spec.holder_identity = Some("intruder".into());
                    spec.lease_duration_seconds = Some(60);
                }
            }
            Err(e) => panic!("overwriting the lease: {e}"),
        }
    }

    testkit::eventually(
        "a stepped down before its renew deadline",
        Duration::from_secs(3),
        || {
            let leading = a.is_leader();
            async move { (!leading).then_some(()) }
        },
    )
    .await;
    // And it stays a follower while the intruder's lease is live.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!a.is_leader());
    assert_eq!(
        holder(&self::lease(&client).await).as_deref(),
        Some("intruder")
    );

    // Nothing of ours to release.
    a.shutdown.cancel();
    a.task.await.expect("no panic").expect("nothing to release");
    assert_eq!(
        holder(&self::lease(&client).await).as_deref(),
        Some("intruder")
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_leader_that_cannot_renew_steps_down_after_the_renew_deadline() {
    let cluster = DevCluster::start(Default::default())
        .await
        .expect("cluster");
    let a = start(cluster.client(), short("a"));
    a.wait_until_leader(Duration::from_secs(5)).await;

    cluster.shutdown().await;
    let lost = Instant::now();
    testkit::eventually("a stepped down", Duration::from_secs(4), || {
        let leading = a.is_leader();
        async move { (!leading).then_some(()) }
    })
    .await;
    // It keeps leading while its lease may still be live to others.
    assert!(
        lost.elapsed() >= Duration::from_millis(500),
        "stepped down after {:?}, well before the renew deadline",
        lost.elapsed()
    );

    // The release cannot reach the server; run still ends, and says so.
    a.shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), a.task)
        .await
        .expect("run ends within the renew deadline")
        .expect("no panic");
    assert!(result.is_err(), "release should have failed: {result:?}");
}

#[tokio::test]
async fn wait_until_leader_fails_when_the_elector_stops_first() {
    let cluster = DevCluster::start(Default::default())
        .await
        .expect("cluster");
    let client = cluster.client();
    let (a, b) = two_candidates(&client, long).await;
    let mut b_leading = b.leading.clone();
    b.shutdown.cancel();
    b.task.await.expect("no panic").expect("nothing to release");
    assert!(wait_until_leader(&mut b_leading).await.is_err());
    assert_eq!(holder(&lease(&client).await).as_deref(), Some("a"));

    a.shutdown.cancel();
    a.task.await.expect("no panic").expect("released");
    cluster.shutdown().await;
}
