//! Test harness: a namespace of the test binary's cluster (the real control plane with
//! `KUBECREW_CLUSTER=real`, devcluster without its pod controller by default; see localcluster)
//! where the tests set pod status themselves, fake agents served by the real agent HTTP API on
//! loopback addresses, a callback server, and the manager run in-process, watching only the
//! test's namespace.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::CustomResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use localcluster::TestEnv;
use nes_agent::agent::{Agent, ApplyError};
use nes_agent::api::{self, ApiState};
use nes_agent::auth::TokenAuth;
use nes_api::crd::{NetworkCare, NetworkConfiguration};
use nes_api::report::Report;
use nes_api::{ApplyResponse, BootId, DesiredConfig, ItemResult, ItemState, LinkStatus, Status};
use nes_manager::{DeliverySettings, ManagerSettings, OPERATOR};
use operator_core::Runtime;
use operator_core::backoff::Policy;
use serde_json::json;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub const TIMEOUT: Duration = Duration::from_secs(30);
pub const TOKEN: &str = "test-agent-token";

/// Applies like the real agent as far as the manager can tell: the real generation rule (the
/// held generation with the same content, or the next one), every item gets `initial` as its
/// state, and each
/// accepted config publishes a new status. Counts the PUTs it accepted.
pub struct FakeAgent {
    pub boot_id: BootId,
    config: Mutex<Option<DesiredConfig>>,
    sender: watch::Sender<Arc<Status>>,
    initial: Mutex<ItemState>,
    pub puts: AtomicUsize,
}

impl FakeAgent {
    fn new(links: &[&str]) -> Self {
        let boot_id = BootId::from_u128(rand::random());
        let links = links
            .iter()
            .enumerate()
            .map(|(i, name)| LinkStatus {
                name: (*name).to_owned(),
                index: i as u32 + 1,
                operstate: "up".into(),
                mtu: 1500,
                mac: None,
                vlan_id: None,
                parent: None,
            })
            .collect();
        let (sender, _) = watch::channel(Arc::new(Status {
            boot_id: boot_id.clone(),
            generation: None,
            links,
            addresses: vec![],
            routes: vec![],
            results: vec![],
        }));
        FakeAgent {
            boot_id,
            config: Mutex::new(None),
            sender,
            initial: Mutex::new(ItemState::Applied),
            puts: AtomicUsize::new(0),
        }
    }

    pub fn puts(&self) -> usize {
        self.puts.load(Ordering::SeqCst)
    }

    pub fn stored(&self) -> Option<DesiredConfig> {
        self.config.lock().unwrap().clone()
    }

    /// Makes the agent hold `config` without the generation rule, as state written before the
    /// rule existed would, and publishes it (the status stream carries the new generation).
    pub fn force(&self, config: DesiredConfig) {
        let results: Vec<ItemResult> = nes_api::apply_order(&config)
            .into_iter()
            .map(|item| ItemResult {
                item,
                state: ItemState::Applied,
                message: None,
            })
            .collect();
        self.sender.send_modify(|status| {
            let mut next = Status::clone(status);
            next.generation = Some(config.generation);
            next.results = results;
            *status = Arc::new(next);
        });
        *self.config.lock().unwrap() = Some(config);
    }

    /// The state the next applies give every item.
    pub fn answer_with(&self, state: ItemState) {
        *self.initial.lock().unwrap() = state;
    }

    /// Every result becomes `state` (as when a pending item's interface appears).
    pub fn set_results(&self, state: ItemState) {
        self.sender.send_modify(|status| {
            let mut next = Status::clone(status);
            for r in &mut next.results {
                r.state = state;
                r.message = (state != ItemState::Applied).then(|| "waiting".into());
            }
            *status = Arc::new(next);
        });
    }

    /// Link `name` gets `operstate`.
    pub fn set_link(&self, name: &str, operstate: &str) {
        self.sender.send_modify(|status| {
            let mut next = Status::clone(status);
            for l in &mut next.links {
                if l.name == name {
                    l.operstate = operstate.to_owned();
                }
            }
            *status = Arc::new(next);
        });
    }

    /// Takes link `name` down if it is up, else up: a change for the status stream.
    pub fn toggle_link(&self, name: &str) {
        let next = if self.operstate(name) == "up" {
            "down"
        } else {
            "up"
        };
        self.set_link(name, next);
    }

    pub fn operstate(&self, name: &str) -> String {
        let status = self.sender.borrow().clone();
        status
            .links
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.operstate.clone())
            .unwrap_or_default()
    }
}

impl Agent for FakeAgent {
    async fn apply(&self, config: DesiredConfig) -> Result<ApplyResponse, ApplyError> {
        let mut stored = self.config.lock().unwrap();
        // The real agent's rule: the held generation again with the same content, or the next.
        nes_api::generation::check(
            stored.as_ref().map(|c| c.generation),
            config.generation,
            || stored.as_ref() == Some(&config),
        )?;
        let state = *self.initial.lock().unwrap();
        let results: Vec<ItemResult> = nes_api::apply_order(&config)
            .into_iter()
            .map(|item| ItemResult {
                item,
                state,
                message: (state != ItemState::Applied).then(|| "waiting".into()),
            })
            .collect();
        self.sender.send_modify(|status| {
            let mut next = Status::clone(status);
            next.generation = Some(config.generation);
            next.results = results.clone();
            *status = Arc::new(next);
        });
        self.puts.fetch_add(1, Ordering::SeqCst);
        let response = ApplyResponse {
            generation: config.generation,
            boot_id: self.boot_id.clone(),
            results,
        };
        *stored = Some(config);
        Ok(response)
    }

    fn config(&self) -> Option<DesiredConfig> {
        self.stored()
    }

    fn status(&self) -> watch::Receiver<Arc<Status>> {
        self.sender.subscribe()
    }

    fn metrics_text(&self) -> String {
        String::new()
    }

    fn healthy(&self) -> bool {
        true
    }
}

/// A fake agent served on `ip:port` by the agent's real router.
pub struct AgentServer {
    pub agent: Arc<FakeAgent>,
    pub state: ApiState,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl AgentServer {
    pub async fn start(ip: IpAddr, port: u16, links: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, TOKEN).unwrap();
        let agent = Arc::new(FakeAgent::new(links));
        let state = ApiState::new();
        let router = api::router_with_state(
            agent.clone(),
            TokenAuth::from_file(&token_file),
            state.clone(),
        );
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, port))
            .await
            .unwrap_or_else(|e| panic!("binding {ip}:{port}: {e}"));
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(api::serve(listener, router, async move {
            let _ = stop.await;
        }));
        AgentServer {
            agent,
            state,
            shutdown: Some(shutdown),
            task,
            _dir: dir,
        }
    }

    /// Stops serving (open status streams end), as an agent that exits.
    pub async fn stop(mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// A free port on `ip` (the same port is then used on other loopback addresses).
pub async fn free_port(ip: IpAddr) -> u16 {
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0))
        .await
        .unwrap();
    listener.local_addr().unwrap().port()
}

/// This test's namespace with the nes CRDs and the agent token Secret. On devcluster the
/// binary's cluster runs without its pod controller; on the real one [`running_pod`] keeps
/// pods away from the scheduler and kwok. Either way the tests give pods their status.
pub async fn env() -> TestEnv {
    localcluster::shared(|| localcluster::Options {
        dev: devcluster::Options {
            controllers: devcluster::controllers::ControllerOptions {
                pods: false,
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let env = TestEnv::new("nes-manager").await;
    env.install_crd(&NetworkConfiguration::crd()).await;
    env.install_crd(&NetworkCare::crd()).await;
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("nes-agent-token".into()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            [(
                "token".to_owned(),
                k8s_openapi::ByteString(TOKEN.as_bytes().to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    };
    env.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    env
}

/// A running manager.
pub struct Manager {
    runtime: Arc<Runtime>,
    task: JoinHandle<()>,
}

impl Manager {
    pub fn start(env: &TestEnv, port: u16) -> Self {
        Self::start_gated(env, port, None)
    }

    /// A manager that leads while `leader` says so, as with `--leader-elect`.
    pub fn start_gated(
        env: &TestEnv,
        port: u16,
        leader: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> Self {
        let mut runtime = Runtime::new(env.client(), OPERATOR);
        if let Some(leader) = leader {
            runtime = runtime.with_leader(leader);
        }
        let runtime = Arc::new(runtime);
        let settings = ManagerSettings {
            namespace: Some(env.namespace().to_owned()),
            agent_port: port,
            agent_timeout: Duration::from_secs(5),
            delivery: DeliverySettings {
                attempts: 3,
                backoff: Policy {
                    initial: Duration::from_millis(20),
                    max: Duration::from_millis(100),
                    factor: 2.0,
                    jitter: 0.0,
                },
                timeout: Duration::from_secs(2),
                queue: 64,
            },
            ..ManagerSettings::default()
        };
        let task = tokio::spawn({
            let runtime = runtime.clone();
            async move {
                nes_manager::run(runtime, settings).await.unwrap();
            }
        });
        Manager { runtime, task }
    }

    pub async fn stop(self) {
        self.runtime.shutdown.cancel();
        self.task.await.unwrap();
    }
}

/// Creates pod `name` and gives it the status of a running pod at `ip`. Returns its uid.
///
/// The pod has a scheduling gate: on the real control plane the scheduler leaves it unbound, so
/// kwok never runs it and never overwrites the status given here (devcluster's pod controller
/// is off, see [`env`]). An unbound pod is also deleted at once, without a grace period.
pub async fn running_pod(
    env: &TestEnv,
    name: &str,
    ip: IpAddr,
    labels: serde_json::Value,
) -> String {
    let api: Api<Pod> = env.api();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "schedulingGates": [{"name": "kubecrew.io/status-by-test"}],
            "containers": [{"name": "app", "image": "app:1"}],
        },
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &pod).await.unwrap();
    let status = json!({"status": {
        "phase": "Running",
        "podIP": ip.to_string(),
        "podIPs": [{"ip": ip.to_string()}],
        "conditions": [{"type": "Ready", "status": "True"}],
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    created.metadata.uid.unwrap()
}

/// Creates NetworkConfiguration `pod` with one VLAN and `addresses` on it.
pub async fn network_configuration(env: &TestEnv, pod: &str, addresses: &[&str]) {
    let api: Api<NetworkConfiguration> = env.api();
    let nc: NetworkConfiguration = serde_json::from_value(json!({
        "apiVersion": "nes.kubecrew.io/v1alpha1", "kind": "NetworkConfiguration",
        "metadata": {"name": pod},
        "spec": {
            "pod": pod,
            "vlans": [{"name": "eth0.100", "parent": "eth0", "vlanId": 100}],
            "addresses": addresses.iter()
                .map(|cidr| json!({"interface": "eth0.100", "cidr": cidr}))
                .collect::<Vec<_>>(),
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &nc).await.unwrap();
}

pub async fn nc_status(
    env: &TestEnv,
    name: &str,
) -> Option<nes_api::crd::NetworkConfigurationStatus> {
    env.api::<NetworkConfiguration>()
        .get(name)
        .await
        .ok()?
        .status
}

pub async fn care_status(env: &TestEnv, name: &str) -> Option<nes_api::crd::NetworkCareStatus> {
    env.api::<NetworkCare>().get(name).await.ok()?.status
}

/// The condition `type_` of a list, as (status, reason).
pub fn condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<(String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// A callback server: records every report it receives and answers `status`.
#[derive(Clone)]
pub struct Callback {
    pub url: String,
    pub reports: Arc<Mutex<Vec<Report>>>,
    pub posts: Arc<AtomicUsize>,
    pub status: Arc<AtomicU16>,
}

impl Callback {
    pub async fn start(status: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let callback = Callback {
            url: format!("http://{}/hooks/network", listener.local_addr().unwrap()),
            reports: Arc::default(),
            posts: Arc::default(),
            status: Arc::new(AtomicU16::new(status)),
        };
        let app = axum::Router::new().route(
            "/hooks/network",
            axum::routing::post({
                let callback = callback.clone();
                move |axum::Json(report): axum::Json<Report>| {
                    let callback = callback.clone();
                    async move {
                        callback.posts.fetch_add(1, Ordering::SeqCst);
                        callback.reports.lock().unwrap().push(report);
                        axum::http::StatusCode::from_u16(callback.status.load(Ordering::SeqCst))
                            .unwrap()
                    }
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        callback
    }

    pub fn reports(&self) -> Vec<Report> {
        self.reports.lock().unwrap().clone()
    }

    pub fn posts(&self) -> usize {
        self.posts.load(Ordering::SeqCst)
    }
}
