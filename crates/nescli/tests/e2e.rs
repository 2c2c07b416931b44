//! nes end to end (issue 10's acceptance) on the test binary's cluster (localcluster: the real
//! control plane with `KUBECREW_CLUSTER=real`, devcluster by default): nes-controller injecting
//! the sidecar through its webhook (which the API server calls at `https://127.0.0.1:<port>`),
//! network namespaces as the pods (each wired to the host by a veth, as a CNI plugin would, with
//! the address the cluster gave the pod: kwok's on the real cluster, devcluster's pod
//! controller's otherwise), the real agent in each, nes-manager and nes-cliserver in this
//! process, and the real `nescli` binary run inside the pods' namespaces.
//!
//! The cluster enforces RBAC (kube-apiserver always; devcluster is started with it), and the
//! three operators run with their own ServiceAccounts' tokens (TokenRequest) and the RBAC of
//! `deploy/base/nes-*`; at the end each one's grants are compared with what it used (the API
//! server's audit log), as `cargo xtask demo` does for the other operators.
//!
//! Each test works in a namespace of its own, and the operators watch only it: nes-controller's
//! webhook configuration is named after the namespace and sends only its pods.
//!
//! It lives in nescli's crate because cargo builds a binary only for its own package's tests.
//! Needs root and iproute2 (CI has both); elsewhere it says loudly that it skipped.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::CustomResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::core::PartialObjectMeta;
use localcluster::{Cluster, TestEnv};
use nes_agent::api;
use nes_agent::auth::TokenAuth;
use nes_agent::reconciler::{self, Settings};
use nes_api::crd::{NetworkCare, NetworkConfiguration};
use nes_controller::admission::FailurePolicy;
use nes_controller::inject::{INJECT_LABEL, SIDECAR, SidecarSettings};
use nes_controller::template::{Context, Mode};
use nes_controller::webhook::{self, TlsSource};
use operator_core::Runtime;
use serde_json::{Value, json};
use testkit::eventually;
use testkit::netns::{HOST_GATEWAY, Netns};
use testkit::rbac::{
    Permission3, compare, expected_for, granted_to, list, service_account_user, used_by,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(60);
/// How long the garbage collector may take: kube-controller-manager's learns of the nes CRDs'
/// resource types (installed as the test starts) at its discovery resync, every 30 s.
const COLLECTION_TIMEOUT: Duration = Duration::from_secs(90);
const AGENT_PORT: u16 = 7470;
/// The audience the applications' tokens are minted for and nes-cliserver asks TokenReview for.
const AUDIENCE: &str = "nes-cliserver";
/// Where deploy/base puts the operators' ServiceAccounts.
const SYSTEM_NS: &str = "kubecrew-system";

/// Granted to the nes operators for paths this test does not take, with the reason. Anything
/// else granted and unused, or used and not granted, fails the test.
const EXPECTED_UNUSED: &[(&str, Permission3, &str)] = &[
    (
        "nes-controller",
        ("events.k8s.io", "events", "patch"),
        EVENT_SERIES,
    ),
    (
        "nes-controller",
        ("apps", "statefulsets", "patch"),
        "template mode patches the StatefulSet's template (the template-mode test); webhook mode \
         only removes a sidecar template mode left there",
    ),
    (
        "nes-controller",
        ("events.k8s.io", "events", "create"),
        "its Events come from the template-mode reconciler (SidecarInjected, InjectionRefused)",
    ),
    (
        "nes-manager",
        ("nes.kubecrew.io", "networkconfigurations/status", "get"),
        INVALID_SPEC,
    ),
    (
        "nes-manager",
        ("events.k8s.io", "events", "patch"),
        EVENT_SERIES,
    ),
    (
        "nes-manager",
        ("coordination.k8s.io", "leases", "get"),
        IN_PROCESS,
    ),
    (
        "nes-manager",
        ("coordination.k8s.io", "leases", "create"),
        IN_PROCESS,
    ),
    (
        "nes-manager",
        ("coordination.k8s.io", "leases", "update"),
        IN_PROCESS,
    ),
    (
        "nes-cliserver",
        ("apps", "statefulsets/finalizers", "update"),
        "an owner reference with blockOwnerDeletion needs it where the \
         OwnerReferencesPermissionEnforcement admission plugin runs; it is not on by default, and \
         neither devcluster nor the test's kube-apiserver runs it",
    ),
    (
        "nes-cliserver",
        ("nes.kubecrew.io", "networkconfigurations", "delete"),
        "nescli unconfigure deletes the pod's configuration; this test only adds",
    ),
    (
        "nes-cliserver",
        ("nes.kubecrew.io", "networkconfigurations", "list"),
        "the status stream (nescli status --watch) watches the pod's NetworkConfiguration",
    ),
    (
        "nes-cliserver",
        ("nes.kubecrew.io", "networkconfigurations", "watch"),
        "the status stream (nescli status --watch) watches the pod's NetworkConfiguration",
    ),
    (
        "nes-cliserver",
        ("nes.kubecrew.io", "networkcares", "update"),
        "subscribing again with other settings replaces the NetworkCare; this test subscribes once",
    ),
    (
        "nes-cliserver",
        ("nes.kubecrew.io", "networkcares", "delete"),
        "nescli unsubscribe; this test removes the subscription by deleting its owner",
    ),
    (
        "nes-cliserver",
        ("apps", "replicasets", "get"),
        "a Deployment's pod is traced to its owner through the ReplicaSet; these pods belong to \
         StatefulSets",
    ),
];
/// Why `patch events` is granted.
const EVENT_SERIES: &str =
    "kube-runtime's Recorder patches an Event that recurs; this test publishes each once";
/// Why `get <resource>/status` is granted.
const INVALID_SPEC: &str = "an object that does not match the schema gets InvalidSpec \
    conditions merged into its current status (operator-core run.rs); these objects are valid";
/// Why nes-manager's Lease Role is unused here.
const IN_PROCESS: &str = "leader election is off for the in-process manager; the Role is the \
    other operators' (checked by cargo xtask demo)";

/// One "pod": its network namespace (pod IP = the IP the cluster assigned) and the agent inside.
struct PodNet {
    ip: Ipv4Addr,
    netns: Netns,
    agent: Option<RunningAgent>,
}

/// The agent running inside a namespace, as the injected sidecar would: the same library the
/// `nes-agent` binary runs, its API on 0.0.0.0:7470, the token from the namespace's Secret.
struct RunningAgent {
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    _state: tempfile::TempDir,
}

impl RunningAgent {
    fn start(netns: &Netns, token_file: &Path) -> Self {
        let state = tempfile::tempdir().expect("state dir");
        let settings = Settings {
            state_dir: Some(state.path().to_owned()),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(1),
            ..Settings::default()
        };
        let shutdown = CancellationToken::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let netns = netns.clone();
        let token_file = token_file.to_owned();
        let stop = shutdown.clone();
        let thread = std::thread::spawn(move || {
            netns.run(move || async move {
                let (handle, reconciler) = reconciler::start(settings).await.expect("agent starts");
                let task = tokio::spawn(reconciler.run(stop.clone()));
                let listener = tokio::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, AGENT_PORT))
                    .await
                    .expect("bind the agent port");
                let router = api::router(Arc::new(handle), TokenAuth::from_file(token_file));
                ready_tx.send(()).expect("signal ready");
                api::serve(listener, router, stop.cancelled_owned())
                    .await
                    .ok();
                task.await.ok();
            })
        });
        ready_rx.recv().expect("the agent started");
        RunningAgent {
            shutdown,
            thread: Some(thread),
            _state: state,
        }
    }

    /// Stops the agent and waits until its port is closed (a killed container).
    fn kill(mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            thread.join().expect("agent thread");
        }
    }
}

impl Drop for RunningAgent {
    /// Also when a test fails: the thread holds a handle of the network namespace, and the
    /// namespace (with its veth and host route) is deleted only once the last handle is gone,
    /// which must happen before the process exits, or the next run finds the pod IP's route
    /// taken.
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The agent's Prometheus counter `name{label}` read over HTTP from the host.
async fn agent_counter(ip: Ipv4Addr, series: &str) -> f64 {
    let body = reqwest::get(format!("http://{ip}:{AGENT_PORT}/metrics"))
        .await
        .expect("agent metrics")
        .text()
        .await
        .expect("metrics body");
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn statefulset(name: &str, replicas: i32, labelled: bool) -> StatefulSet {
    let labels = if labelled {
        json!({INJECT_LABEL: "true"})
    } else {
        json!({})
    };
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "serviceAccountName": "app",
                    "containers": [{"name": "app", "image": "app:1"}]
                }
            }
        }
    }))
    .expect("a StatefulSet")
}

/// A token bound to `pod`, for nes-cliserver's audience, written to a file in `dir`.
async fn pod_token(client: &kube::Client, pod: &Pod, dir: &Path) -> PathBuf {
    let sas: Api<ServiceAccount> = Api::default_namespaced(client.clone());
    let request: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": [AUDIENCE],
            "expirationSeconds": 3600,
            "boundObjectRef": {
                "apiVersion": "v1", "kind": "Pod",
                "name": pod.metadata.name, "uid": pod.metadata.uid
            }
        }
    }))
    .expect("a TokenRequest");
    let answer = sas
        .create_token_request("app", &PostParams::default(), &request)
        .await
        .expect("TokenRequest");
    let token = answer.status.expect("token status").token;
    let file = dir.join(format!(
        "{}.token",
        pod.metadata.name.as_deref().unwrap_or("pod")
    ));
    std::fs::write(&file, token).expect("write token");
    file
}

/// The controller, watching only the test's namespace: in webhook mode its HTTPS webhook
/// (registered with the API server by the configuration it applies, named after the namespace)
/// plus its StatefulSet reconciler, which creates the token Secret.
async fn start_controller(env: &TestEnv, mode: Mode) -> Controller {
    let runtime = Arc::new(Runtime::new(
        operator_client(env.cluster(), "nes-controller").await,
        nes_controller::template::OPERATOR,
    ));
    let sidecar = SidecarSettings {
        image: "nes-agent:e2e".into(),
        port: AGENT_PORT,
        ..SidecarSettings::default()
    };
    let excluded = BTreeSet::from(["kube-system".to_owned()]);
    let namespace = env.namespace().to_owned();
    let mut webhook = None;
    if mode == Mode::Webhook {
        let configuration = format!("nes-controller-{namespace}");
        let started = webhook::start(
            &runtime,
            webhook::Options {
                listen: "127.0.0.1:0".parse().expect("address"),
                tls: TlsSource::Generate(nes_controller::tls::subject_alt_names(
                    "nes-controller",
                    "nes-system",
                    &["127.0.0.1".to_owned()],
                )),
                // https://127.0.0.1:<bound port>/mutate, as --webhook-url would say.
                endpoint: None,
                configuration_name: configuration.clone(),
                namespace: Some(namespace.clone()),
                failure_policy: FailurePolicy::Ignore,
                excluded_namespaces: excluded.clone(),
                sidecar: sidecar.clone(),
            },
        )
        .await
        .expect("the webhook starts");
        let configs: Api<MutatingWebhookConfiguration> = Api::all(env.client());
        eventually("the webhook configuration", TIMEOUT, || async {
            configs.get_opt(&configuration).await.ok().flatten()
        })
        .await;
        webhook = Some((started, configuration));
    }
    let ctx = Arc::new(Context {
        mode,
        runtime: runtime.clone(),
        sidecar,
        excluded_namespaces: excluded,
    });
    let task = tokio::spawn(async move {
        nes_controller::operator::run(ctx, Some(&namespace), operator_core::Settings::default())
            .await;
    });
    Controller {
        runtime,
        task,
        webhook,
    }
}

/// nes-controller in this process.
struct Controller {
    runtime: Arc<Runtime>,
    task: JoinHandle<()>,
    /// Webhook mode: the server and its configuration's name.
    webhook: Option<(webhook::Started, String)>,
}

impl Controller {
    /// Stops it and removes its webhook configuration (cluster-wide: the API server would go on
    /// calling a webhook that is gone).
    async fn stop(self, env: &TestEnv) {
        self.runtime.shutdown.cancel();
        let _ = tokio::time::timeout(TIMEOUT, self.task).await;
        if let Some((started, configuration)) = self.webhook {
            let _ = tokio::time::timeout(TIMEOUT, started.config_sync).await;
            let _ = tokio::time::timeout(TIMEOUT, started.server).await;
            Api::<MutatingWebhookConfiguration>::all(env.client())
                .delete(&configuration, &DeleteParams::default())
                .await
                .expect("the webhook configuration deleted");
        }
    }
}

/// nes-manager, as its binary runs it.
struct Manager {
    runtime: Arc<Runtime>,
    task: JoinHandle<()>,
}

impl Manager {
    async fn start(env: &TestEnv) -> Self {
        let runtime = Arc::new(Runtime::new(
            operator_client(env.cluster(), "nes-manager").await,
            nes_manager::OPERATOR,
        ));
        let settings = nes_manager::ManagerSettings {
            namespace: Some(env.namespace().to_owned()),
            agent_port: AGENT_PORT,
            ..nes_manager::ManagerSettings::default()
        };
        let task = tokio::spawn({
            let runtime = runtime.clone();
            async move {
                nes_manager::run(runtime, settings)
                    .await
                    .expect("nes-manager runs")
            }
        });
        Manager { runtime, task }
    }

    /// Successful reconciles so far (`kubecrew_reconcile_total{result="success"}`).
    fn reconciles(&self) -> u64 {
        self.runtime
            .metrics
            .registry()
            .gather()
            .iter()
            .filter(|f| f.name() == "kubecrew_reconcile_total")
            .flat_map(|f| f.get_metric())
            .filter(|m| m.get_label().iter().any(|l| l.value() == "success"))
            .map(|m| m.get_counter().value() as u64)
            .sum()
    }

    async fn stop(self) {
        self.runtime.shutdown.cancel();
        self.task.await.expect("nes-manager stops");
    }
}

/// nes-cliserver on every host address (the pods reach it at [`HOST_GATEWAY`]).
struct CliServer {
    port: u16,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl CliServer {
    async fn start(client: kube::Client, port: u16) -> Self {
        let state = nes_cliserver::AppState::new(
            client,
            nes_cliserver::Settings {
                audience: Some(AUDIENCE.into()),
                ..nes_cliserver::Settings::default()
            },
        );
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
            .await
            .expect("bind nes-cliserver");
        let port = listener.local_addr().expect("address").port();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(nes_cliserver::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        CliServer { port, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("server task")
            .expect("nes-cliserver stops cleanly");
    }
}

/// Runs `nescli` as `pod`, inside `netns` when given (reaching the server at the host end of
/// its veth), else on the host.
async fn nescli(
    netns: Option<&Netns>,
    namespace: &str,
    pod: &str,
    token_file: &Path,
    server_port: u16,
    args: &[&str],
) -> Output {
    let nescli = env!("CARGO_BIN_EXE_nescli");
    let server = match netns {
        Some(_) => format!("http://{HOST_GATEWAY}:{server_port}"),
        None => format!("http://127.0.0.1:{server_port}"),
    };
    let mut command = match netns {
        Some(ns) => {
            let mut c = tokio::process::Command::new("ip");
            c.args(["netns", "exec", ns.name(), nescli]);
            c
        }
        None => tokio::process::Command::new(nescli),
    };
    command
        .args(["--pod", pod, "--namespace", namespace])
        .env("NES_SERVER", server)
        .env("NES_TOKEN_FILE", token_file)
        .args(args);
    let output = command.output().await.expect("run nescli");
    eprintln!(
        "nescli {args:?} as {pod}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A callback receiver: every POSTed report with the time it arrived.
struct Callback {
    url: String,
    reports: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl Callback {
    async fn start() -> Self {
        let reports: Arc<Mutex<Vec<(Instant, Value)>>> = Arc::default();
        let sink = reports.clone();
        let router = axum::Router::new().route(
            "/report",
            axum::routing::post(move |axum::Json(report): axum::Json<Value>| {
                let sink = sink.clone();
                async move {
                    sink.lock().expect("reports").push((Instant::now(), report));
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the callback");
        let addr: SocketAddr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        Callback {
            url: format!("http://{addr}/report"),
            reports,
        }
    }

    /// The first report received after `since` that has a change of `interface`.
    fn report_after(&self, since: Instant, interface: &str) -> Option<(Instant, Value)> {
        self.reports
            .lock()
            .expect("reports")
            .iter()
            .find(|(at, report)| {
                *at >= since
                    && report["changes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["interface"] == interface)
            })
            .cloned()
    }
}

fn condition_true(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    kind: &str,
) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == kind && c.status == "True")
}

/// The pods `names` (in the client's namespace) once each is Running with the IP the cluster
/// gave it (kwok's on the real cluster): the address its network namespace must carry, since
/// nes-manager dials the agent at `status.podIP`.
async fn pods_with_ips(client: &kube::Client, names: &[&str]) -> Vec<Pod> {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let mut out = Vec::new();
    for name in names {
        let pod = eventually(&format!("pod {name} runs with an IP"), TIMEOUT, || async {
            pods.get_opt(name).await.ok().flatten().filter(|p| {
                p.status
                    .as_ref()
                    .is_some_and(|s| s.phase.as_deref() == Some("Running") && s.pod_ip.is_some())
            })
        })
        .await;
        out.push(pod);
    }
    out
}

fn has_sidecar(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.name == SIDECAR && c.restart_policy.as_deref() == Some("Always"))
        })
}

fn pod_ip(pod: &Pod) -> Ipv4Addr {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
        .expect("an IPv4 pod IP")
}

/// The agent's boot id, read from its API over the veth.
async fn agent_boot_id(ip: Ipv4Addr) -> Option<String> {
    let status: Value = reqwest::get(format!("http://{ip}:{AGENT_PORT}/v1/status"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    status["bootId"].as_str().map(str::to_owned)
}

/// What the kernel holds in a namespace, as `ip -j` shows it (the witness for "nothing changed").
fn kernel_state(netns: &Netns) -> (Value, Value) {
    (
        netns.ip_json(&["addr", "show"]),
        netns.ip_json(&["route", "show", "table", "all"]),
    )
}

/// This test's namespace on the binary's cluster, with what the operators need: the nes CRDs,
/// the operators' namespace, ServiceAccounts and RBAC as deploy/base installs them (once per
/// cluster), and the applications' ServiceAccount `app`.
async fn env() -> TestEnv {
    let cluster = localcluster::shared(|| {
        let mut options = localcluster::Options::default();
        // devcluster enforces RBAC only when asked (kube-apiserver always does).
        options.dev.authorization = devcluster::Authorization::Rbac;
        // Pod IPs the host does not use, so each network namespace can carry its pod's address
        // (the real cluster's come from kwok's 10.244.0.0/16).
        options.dev.controllers.pod_ip_pool = (Ipv4Addr::new(10, 252, 0, 0), 16);
        options
    })
    .await;
    static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    INSTALLED.get_or_init(|| install(cluster)).await;
    let env = TestEnv::new("nes-e2e").await;
    env.api::<ServiceAccount>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "app"}}))
                .expect("a ServiceAccount"),
        )
        .await
        .expect("ServiceAccount app");
    env
}

/// The cluster-wide part of [`env`]: CRDs, the operators' namespace and RBAC.
async fn install(cluster: &'static Cluster) {
    for crd in [NetworkConfiguration::crd(), NetworkCare::crd()] {
        cluster.install_crd(&crd).await.expect("CRD installs");
    }
    let kubectl = cluster.kubectl_runner().expect("kubectl");
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let namespace = deploy.join("namespace/namespace.yaml");
    kubectl
        .run(&[
            "apply",
            "--server-side",
            "-f",
            &namespace.display().to_string(),
        ])
        .await;
    for operator in ["nes-controller", "nes-manager", "nes-cliserver"] {
        let rbac = deploy.join("base").join(operator).join("rbac.yaml");
        kubectl
            .run(&[
                "apply",
                "--server-side",
                "-n",
                SYSTEM_NS,
                "-f",
                &rbac.display().to_string(),
            ])
            .await;
    }
}

/// A client acting as the operator's ServiceAccount (what its pod's mounted token gives it).
async fn operator_client(cluster: &Cluster, operator: &str) -> kube::Client {
    let sas: Api<ServiceAccount> = Api::namespaced(cluster.client(), SYSTEM_NS);
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": []}})).expect("a TokenRequest");
    let token = sas
        .create_token_request(operator, &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .expect("token status")
        .token;
    cluster.client_with_token(&token).expect("a client")
}

/// The API server's audit log as JSON lines (kube-apiserver's file, or devcluster's trail in
/// the form `serve --audit-log` writes), only the requests about this test's namespace or about
/// cluster-scoped objects: the binary's other tests use the same ServiceAccounts in their own
/// namespaces.
fn audit_log(env: &TestEnv) -> String {
    let all = match (env.cluster().real(), env.cluster().dev()) {
        (Some(real), _) => std::fs::read_to_string(real.audit_log()).expect("the audit log"),
        (None, Some(dev)) => dev
            .audit()
            .entries()
            .iter()
            .map(|e| serde_json::to_string(e).expect("an audit entry serializes") + "\n")
            .collect(),
        (None, None) => unreachable!("a cluster is real or devcluster"),
    };
    all.lines()
        .filter(|line| {
            let entry: Value = serde_json::from_str(line).expect("an audit line is JSON");
            let namespace = entry
                .pointer("/objectRef/namespace")
                .or_else(|| entry.get("namespace"))
                .and_then(Value::as_str)
                .unwrap_or("");
            namespace.is_empty() || namespace == env.namespace()
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

/// [`audit_log`] once every request of the operators (stopped by then) in it has been
/// answered. kube-apiserver audits a watch at its start (stage ResponseStarted) and again when
/// it ends (ResponseComplete), which is the event that counts, written only after the API
/// server has noticed the stopped client's disconnect. devcluster writes one line per request
/// at once.
async fn settled_audit_log(env: &TestEnv) -> String {
    let operators = service_account_user(SYSTEM_NS, "");
    eventually("every audited request answered", TIMEOUT, || async {
        let log = audit_log(env);
        let mut open = BTreeSet::new();
        for line in log.lines() {
            let entry: Value = serde_json::from_str(line).expect("an audit line is JSON");
            let user = entry
                .pointer("/user/username")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !user.starts_with(&operators) {
                continue;
            }
            let id = entry["auditID"].as_str().unwrap_or_default().to_owned();
            match entry["stage"].as_str() {
                Some("ResponseStarted") => {
                    open.insert(id);
                }
                Some("ResponseComplete" | "Panic") => {
                    open.remove(&id);
                }
                _ => {}
            }
        }
        open.is_empty().then_some(log)
    })
    .await
}

/// Each operator's grants against what it used in this test: nothing used that is not
/// granted, nothing denied, nothing granted and unused but [`EXPECTED_UNUSED`].
async fn assert_least_privilege(env: &TestEnv, operators: &[&str]) {
    let kubectl = env.kubectl();
    let listed = kubectl
        .run(&[
            "get",
            "clusterroles,clusterrolebindings,roles,rolebindings",
            "-A",
            "-o",
            "json",
        ])
        .await;
    let listed: Value = serde_json::from_str(&listed).expect("kubectl prints JSON");
    let objects = listed["items"].as_array().cloned().unwrap_or_default();
    let log = settled_audit_log(env).await;
    let mut failures = Vec::new();
    for operator in operators {
        let granted = granted_to(&objects, SYSTEM_NS, operator).expect("readable RBAC");
        let (used, denied) =
            used_by(&log, &service_account_user(SYSTEM_NS, operator)).expect("the audit log");
        let verdict = compare(
            &granted,
            &used,
            denied,
            &expected_for(EXPECTED_UNUSED, operator),
        );
        if !verdict.is_exact() {
            failures.push(format!(
                "{operator}: missing [{}], unused [{}], listed but not granted [{}], denied {:?}",
                list(&verdict.missing),
                list(&verdict.unused),
                list(&verdict.stale),
                verdict.denied
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "the RBAC of deploy/base does not match what the operators did:\n{}",
        failures.join("\n")
    );
}

/// How long the settled nes operators are watched for writes.
const QUIET: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nes_end_to_end_with_the_webhook() {
    if !testkit::netns::can_run("the nes end-to-end test") {
        return;
    }
    let env = env().await;
    let client = env.client();
    let ns = env.namespace().to_owned();
    let controller = start_controller(&env, Mode::Webhook).await;

    // 1. The webhook injects the sidecar into the pods of the labelled StatefulSet only.
    let sets: Api<StatefulSet> = env.api();
    let pp = PostParams::default();
    sets.create(&pp, &statefulset("net", 2, true))
        .await
        .expect("StatefulSet net");
    sets.create(&pp, &statefulset("watcher", 1, false))
        .await
        .expect("StatefulSet watcher");
    let pods = pods_with_ips(&client, &["net-0", "net-1", "watcher-0"]).await;
    assert!(
        has_sidecar(&pods[0]) && has_sidecar(&pods[1]),
        "net pods get the sidecar"
    );
    assert!(
        !has_sidecar(&pods[2]),
        "the unlabelled StatefulSet's pod is untouched"
    );
    let template_init = sets
        .get("net")
        .await
        .expect("net")
        .spec
        .and_then(|s| s.template.spec);
    assert!(
        template_init.and_then(|s| s.init_containers).is_none(),
        "webhook mode leaves the StatefulSet template alone"
    );

    // The agents, one per pod namespace, with the token from the Secret the controller made.
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets: Api<Secret> = env.api();
    let secret = eventually("the agent token Secret", TIMEOUT, || async {
        secrets.get_opt("nes-agent-token").await.ok().flatten()
    })
    .await;
    let agent_token = dir.path().join("agent-token");
    let token = &secret.data.expect("data")["token"];
    std::fs::write(&agent_token, &token.0).expect("write the agent token");
    let mut net: Vec<PodNet> = pods[..2]
        .iter()
        .map(|pod| {
            let ip = pod_ip(pod);
            let netns = Netns::with_host_link(ip);
            // A second link for the application's addresses, so taking it down in step 5
            // leaves the pod reachable over eth0.
            // (A veth pair inside the namespace: this kernel has no dummy links.)
            netns.ip(&[
                "link", "add", "data0", "type", "veth", "peer", "name", "data1",
            ]);
            netns.ip(&["link", "set", "data0", "up"]);
            netns.ip(&["link", "set", "data1", "up"]);
            let agent = Some(RunningAgent::start(&netns, &agent_token));
            PodNet { ip, netns, agent }
        })
        .collect();

    let mut manager = Manager::start(&env).await;
    let mut server =
        CliServer::start(operator_client(env.cluster(), "nes-cliserver").await, 0).await;
    let tokens: Vec<PathBuf> = {
        let mut out = Vec::new();
        for pod in &pods {
            out.push(pod_token(&client, pod, dir.path()).await);
        }
        out
    };

    // 2. From inside pod 0, two requests: an address, then a route through it.
    let out = nescli(
        Some(&net[0].netns),
        &ns,
        "net-0",
        &tokens[0],
        server.port,
        &["configure", "--add-address", "data0=10.99.0.5/24"],
    )
    .await;
    assert!(out.status.success(), "configure an address");
    let out = nescli(
        Some(&net[0].netns),
        &ns,
        "net-0",
        &tokens[0],
        server.port,
        &["configure", "--add-route", "10.98.0.0/16,via=10.99.0.1"],
    )
    .await;
    assert!(out.status.success(), "configure a route");
    let configs: Api<NetworkConfiguration> = env.api();
    let config = configs
        .get("net-0")
        .await
        .expect("NetworkConfiguration net-0");
    assert_eq!(config.spec.pod, "net-0");
    assert_eq!(config.spec.addresses.len(), 1, "{:?}", config.spec);
    assert_eq!(
        config.spec.routes.len(),
        1,
        "both requests merged: {:?}",
        config.spec
    );
    let owner = &config.metadata.owner_references.as_ref().expect("owners")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("StatefulSet", "net")
    );
    assert_eq!(owner.controller, Some(true));
    let applied = |netns: &Netns| {
        netns
            .addresses("data0")
            .contains(&"10.99.0.5/24".to_owned())
            && netns
                .routes("-4", "main", "201")
                .iter()
                .any(|r| r["dst"] == "10.98.0.0/16" && r["gateway"] == "10.99.0.1")
    };
    eventually(
        "pod 0's namespace holds the address and route",
        TIMEOUT,
        || async { applied(&net[0].netns).then_some(()) },
    )
    .await;
    // Available for the merged spec: the status of the first request alone (generation 1)
    // can still be the latest when the namespace already holds both items.
    let available = eventually("net-0 is Available at its generation", TIMEOUT, || async {
        let c = configs.get("net-0").await.ok()?;
        let generation = c.metadata.generation;
        let status = c.status?;
        (condition_true(&status.conditions, "Available") && status.applied_generation == generation)
            .then_some(status)
    })
    .await;
    assert_eq!(available.results.len(), 2, "{available:?}");
    assert!(
        !net[1]
            .netns
            .addresses("data0")
            .iter()
            .any(|a| a.starts_with("10.99.")),
        "pod 1 is not touched"
    );

    // 3. Pod 1's token cannot configure pod 0.
    let generation = configs
        .get("net-0")
        .await
        .expect("net-0")
        .metadata
        .generation;
    let out = nescli(
        Some(&net[1].netns),
        &ns,
        "net-0",
        &tokens[1],
        server.port,
        &["configure", "--add-address", "data0=10.99.0.66/24"],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "a 403 is a credentials error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("403") || stderr.contains("forbidden"),
        "{stderr}"
    );
    assert_eq!(
        configs
            .get("net-0")
            .await
            .expect("net-0")
            .metadata
            .generation,
        generation,
        "nothing changed"
    );

    // 4. Pod 0's agent is killed, its state lost and the kernel's items flushed by hand; a new
    //    agent (new boot id, empty state) gets the configuration back from the manager.
    let old_boot = agent_boot_id(net[0].ip).await.expect("boot id");
    net[0].agent.take().expect("agent").kill();
    net[0].netns.ip(&["addr", "flush", "dev", "data0"]);
    assert!(!applied(&net[0].netns));
    net[0].agent = Some(RunningAgent::start(&net[0].netns, &agent_token));
    let new_boot = eventually("the new agent answers", TIMEOUT, || async {
        agent_boot_id(net[0].ip).await
    })
    .await;
    assert_ne!(new_boot, old_boot);
    eventually(
        "the manager re-applies to the new agent",
        TIMEOUT,
        || async { applied(&net[0].netns).then_some(()) },
    )
    .await;
    eventually("net-0's status names the new boot id", TIMEOUT, || async {
        let status = configs.get("net-0").await.ok()?.status?;
        (status.boot_id.as_deref() == Some(new_boot.as_str())
            && condition_true(&status.conditions, "Available"))
        .then_some(())
    })
    .await;

    // 5. A subscriber (watcher-0) asks for link changes of net-0; taking data0 down reaches
    //    its callback.
    let callback = Callback::start().await;
    let out = nescli(
        None,
        &ns,
        "watcher-0",
        &tokens[2],
        server.port,
        &[
            "subscribe",
            "--callback",
            &callback.url,
            "--pod",
            "net-0",
            "--change",
            "link",
        ],
    )
    .await;
    assert!(out.status.success(), "subscribe");
    let cares: Api<NetworkCare> = env.api();
    let care = cares.get("watcher-0").await.expect("NetworkCare watcher-0");
    let owner = &care.metadata.owner_references.as_ref().expect("owners")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("StatefulSet", "watcher")
    );
    eventually("the subscription follows net-0", TIMEOUT, || async {
        let status = cares.get("watcher-0").await.ok()?.status?;
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True" && c.message.starts_with("1 pod"))
            .then_some(())
    })
    .await;
    let down = Instant::now();
    net[0].netns.ip(&["link", "set", "data0", "down"]);
    let (at, report) = eventually("a report of data0 going down", TIMEOUT, || async {
        callback.report_after(down, "data0")
    })
    .await;
    let latency = at.duration_since(down);
    eprintln!("e2e: link down -> callback report in {latency:?}");
    assert_eq!(report["pod"], "net-0", "{report}");
    net[0].netns.ip(&["link", "set", "data0", "up"]);
    eventually("the route is back once data0 is up", TIMEOUT, || async {
        applied(&net[0].netns).then_some(())
    })
    .await;

    // 7. Restarting nes-manager and nes-cliserver changes nothing in the namespaces. The
    //    witness is taken once the kernel itself is done: IPv6 duplicate address detection of
    //    the links' link-local addresses (data0 was just up again) changes flags and routes.
    eventually("IPv6 address detection done", TIMEOUT, || async {
        net.iter()
            .all(|p| {
                !kernel_state(&p.netns)
                    .0
                    .to_string()
                    .contains("\"tentative\"")
            })
            .then_some(())
    })
    .await;
    let before: Vec<_> = net.iter().map(|p| kernel_state(&p.netns)).collect();
    let accepted = |ip| agent_counter(ip, "nes_agent_config_requests_total{outcome=\"accepted\"}");
    let accepted_before = (accepted(net[0].ip).await, accepted(net[1].ip).await);
    manager.stop().await;
    server.stop().await;
    manager = Manager::start(&env).await;
    server = CliServer::start(operator_client(env.cluster(), "nes-cliserver").await, 0).await;
    eventually("the new manager has reconciled net-0", TIMEOUT, || async {
        // Two resources exist (net-0's NetworkConfiguration, watcher-0's NetworkCare), and a
        // reconcile of net-0 is where a push would happen.
        (manager.reconciles() >= 2).then_some(())
    })
    .await;
    let out = nescli(
        Some(&net[0].netns),
        &ns,
        "net-0",
        &tokens[0],
        server.port,
        &["status"],
    )
    .await;
    assert!(out.status.success(), "the new server answers");
    let after: Vec<_> = net.iter().map(|p| kernel_state(&p.netns)).collect();
    assert_eq!(before, after, "the namespaces are unchanged");
    assert_eq!(
        (accepted(net[0].ip).await, accepted(net[1].ip).await),
        accepted_before,
        "no configuration was pushed again"
    );
    // Reconciled and nothing changing: no operator writes anything (status, events,
    // Secrets) into the namespace, however often the agents report.
    env.assert_quiet_for(QUIET, |_| false).await;

    // 6. Deleting the StatefulSet collects its NetworkConfigurations; deleting the
    //    subscriber's owner collects its NetworkCare.
    sets.delete("net", &DeleteParams::default())
        .await
        .expect("delete net");
    eventually(
        "net-0's NetworkConfiguration is collected",
        COLLECTION_TIMEOUT,
        || async {
            let meta: Option<PartialObjectMeta<NetworkConfiguration>> =
                configs.get_metadata_opt("net-0").await.ok()?;
            meta.is_none().then_some(())
        },
    )
    .await;
    sets.delete("watcher", &DeleteParams::default())
        .await
        .expect("delete watcher");
    eventually(
        "watcher-0's NetworkCare is collected",
        COLLECTION_TIMEOUT,
        || async {
            cares
                .get_opt("watcher-0")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;

    manager.stop().await;
    server.stop().await;
    for pod in &mut net {
        if let Some(agent) = pod.agent.take() {
            agent.kill();
        }
    }
    controller.stop(&env).await;
    assert_least_privilege(&env, &["nes-controller", "nes-manager", "nes-cliserver"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_mode_injects_through_the_statefulset_template() {
    let env = env().await;
    let controller = start_controller(&env, Mode::Template).await;
    let sets: Api<StatefulSet> = env.api();
    sets.create(&PostParams::default(), &statefulset("net", 2, true))
        .await
        .expect("StatefulSet net");
    eventually("the template has the sidecar", TIMEOUT, || async {
        let spec = sets.get("net").await.ok()?.spec?.template.spec?;
        spec.init_containers?
            .iter()
            .any(|c| c.name == SIDECAR)
            .then_some(())
    })
    .await;
    let pods: Api<Pod> = env.api();
    for name in ["net-0", "net-1"] {
        eventually(
            &format!("{name} runs with the sidecar"),
            TIMEOUT,
            || async { pods.get_opt(name).await.ok().flatten().filter(has_sidecar) },
        )
        .await;
    }
    // Template mode leaves the webhook's grants unused, so only denials are checked here; the
    // webhook test compares everything.
    controller.stop(&env).await;
    let log = settled_audit_log(&env).await;
    let (_, denied) =
        used_by(&log, &service_account_user(SYSTEM_NS, "nes-controller")).expect("the audit log");
    assert!(denied.is_empty(), "nes-controller was denied: {denied:?}");
}
