//! The real control plane, run as envtest runs it plus the controllers and kwok: etcd,
//! kube-apiserver (TLS, client certificates, RBAC, service-account tokens, audit log, admission
//! webhooks), kube-controller-manager with every controller, kube-scheduler, and kwok driving
//! simulated Nodes so Pods are scheduled, become Running and get an IP.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::config::KubeConfigOptions;

use crate::certs::{Ca, CertFiles, Identity, service_account_key};
use crate::process::{Process, free_port, log_tail};
use crate::workdir::WorkDir;
use crate::{Error, kubeconfig};

/// The ClusterIP range of Services; its first address is the `kubernetes` Service's.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// Pod IPs kwok hands out.
pub const POD_CIDR: &str = "10.244.0.0/16";
/// The user kwok authenticates as.
pub const KWOK_USER: &str = "kwok-controller";
/// The label every simulated node carries (and kwok selects its nodes by).
pub const NODE_LABEL: (&str, &str) = ("kubecrew.io/node", "kwok");

/// How to start the real control plane.
#[derive(Debug, Clone)]
pub struct RealOptions {
    /// Simulated Nodes to create (kwok runs their kubelets' part).
    pub nodes: usize,
    /// Where to keep the cluster's files (certificates, kubeconfigs, etcd data, logs); a
    /// temporary directory removed at the end when `None`.
    pub dir: Option<PathBuf>,
    /// How long the whole start may take.
    pub timeout: Duration,
    /// Run kube-controller-manager, kube-scheduler and kwok (with `nodes` Nodes). Off: etcd and
    /// the API server only, as benchmarks of an operator's own work want it (no rollouts).
    pub controllers: bool,
}

impl Default for RealOptions {
    fn default() -> Self {
        RealOptions {
            nodes: 3,
            dir: None,
            timeout: Duration::from_secs(120),
            controllers: true,
        }
    }
}

/// A running real control plane. Dropping it stops every process (in reverse order) and
/// removes its temporary directory.
pub struct RealCluster {
    processes: Vec<Process>,
    url: String,
    admin_kubeconfig: PathBuf,
    config: kube::Config,
    audit_log: PathBuf,
    started_in: Duration,
    // Last: dropped after the processes are stopped.
    dir: WorkDir,
}

impl std::fmt::Debug for RealCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealCluster")
            .field("url", &self.url)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// The files and ports one start uses.
struct Layout {
    dir: PathBuf,
    bin: PathBuf,
    etcd_client: u16,
    etcd_peer: u16,
    apiserver: u16,
}

impl Layout {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    fn arg(&self, flag: &str, name: &str) -> String {
        format!("--{flag}={}", self.path(name).display())
    }
}

const AUDIT_POLICY: &str = r#"{"apiVersion":"audit.k8s.io/v1","kind":"Policy","omitStages":["RequestReceived"],"rules":[{"level":"Metadata"}]}"#;

impl RealCluster {
    /// Builds the tools if needed, starts every component and waits until the cluster is
    /// usable: `/readyz`, the `default` namespace and its ServiceAccount (the controller manager
    /// works), and every Node Ready (kwok works).
    pub async fn start(options: RealOptions) -> Result<Self, Error> {
        let begun = Instant::now();
        let bin = tokio::task::spawn_blocking(|| {
            testkit::gotools::ensure_all(testkit::gotools::CONTROL_PLANE)
        })
        .await
        .map_err(|e| Error::Tools(e.to_string()))?
        .map_err(|e| Error::Tools(e.to_string()))?;
        let stages = testkit::gotools::kwok_stages();
        let dir = WorkDir::new(options.dir.clone())?;
        let layout = Layout {
            dir: dir.path().to_owned(),
            bin,
            etcd_client: free_port()?,
            etcd_peer: free_port()?,
            apiserver: free_port()?,
        };
        let url = format!("https://127.0.0.1:{}", layout.apiserver);

        let ca = Ca::generate(&layout.dir)?;
        let service_ip = IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1));
        let serving = ca.serving(&layout.dir, "kube-apiserver", service_ip)?;
        let sa_key = service_account_key(&layout.dir)?;
        let clients = [
            (
                "admin",
                Identity {
                    user: "kubecrew-admin",
                    groups: &["system:masters"],
                },
            ),
            (
                "kube-controller-manager",
                Identity {
                    user: "system:kube-controller-manager",
                    groups: &[],
                },
            ),
            (
                "kube-scheduler",
                Identity {
                    user: "system:kube-scheduler",
                    groups: &[],
                },
            ),
            // kwok writes Node and Pod status for every simulated node: a node-like superuser.
            (
                "kwok",
                Identity {
                    user: KWOK_USER,
                    groups: &["system:masters"],
                },
            ),
        ];
        for (name, identity) in clients {
            let files = ca.client(&layout.dir, name, identity)?;
            kubeconfig::write(
                &layout.path(&format!("{name}.kubeconfig")),
                &kubeconfig::client_certificate(&url, &ca.files.cert, &files),
            )?;
        }
        std::fs::write(layout.path("audit-policy.json"), AUDIT_POLICY)?;

        let mut cluster = RealCluster {
            processes: Vec::new(),
            url: url.clone(),
            admin_kubeconfig: layout.path("admin.kubeconfig"),
            config: kube::Config::new(url.parse().map_err(|e| Error::Kubeconfig(format!("{e}")))?),
            audit_log: layout.path("audit.log"),
            started_in: Duration::ZERO,
            dir,
        };
        let deadline = begun + options.timeout;

        cluster.spawn(&layout, "etcd", etcd_args(&layout))?;
        cluster
            .wait_for("etcd to accept connections", deadline, || async {
                tokio::net::TcpStream::connect(("127.0.0.1", layout.etcd_client))
                    .await
                    .is_ok()
            })
            .await?;

        cluster.spawn(
            &layout,
            "kube-apiserver",
            apiserver_args(&layout, &serving.cert, &serving.key, &sa_key),
        )?;
        cluster.config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&cluster.admin_kubeconfig)
                .map_err(|e| Error::Kubeconfig(e.to_string()))?,
            &KubeConfigOptions::default(),
        )
        .await
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
        let client = cluster.client()?;
        cluster
            .wait_for("kube-apiserver /readyz", deadline, || async {
                let request = http::Request::get("/readyz").body(Vec::new());
                match request {
                    Ok(request) => client.request_text(request).await.is_ok_and(|t| t == "ok"),
                    Err(_) => false,
                }
            })
            .await?;

        if options.controllers {
            cluster
                .start_controllers(&layout, &sa_key, &ca, &stages, &options, deadline)
                .await?;
        }
        cluster.started_in = begun.elapsed();
        tracing::info!(url = %cluster.url, started_in = ?cluster.started_in, "real control plane ready");
        Ok(cluster)
    }

    async fn start_controllers(
        &mut self,
        layout: &Layout,
        sa_key: &CertFiles,
        ca: &Ca,
        stages: &Path,
        options: &RealOptions,
        deadline: Instant,
    ) -> Result<(), Error> {
        self.spawn(
            layout,
            "kube-controller-manager",
            controller_manager_args(layout, &sa_key.key, &ca.files.cert, &ca.files.key),
        )?;
        self.spawn(layout, "kube-scheduler", scheduler_args(layout))?;
        self.spawn(layout, "kwok", kwok_args(layout, stages))?;

        let client = self.client()?;
        let nodes: Api<Node> = Api::all(client.clone());
        for i in 0..options.nodes {
            nodes
                .create(&PostParams::default(), &node(&format!("kwok-node-{i}")))
                .await
                .map_err(|e| Error::Api(format!("creating node kwok-node-{i}: {e}")))?;
        }
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let default_sa: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        self.wait_for(
            "the default namespace and its ServiceAccount (kube-controller-manager)",
            deadline,
            || async {
                namespaces.get_opt("default").await.ok().flatten().is_some()
                    && default_sa.get_opt("default").await.ok().flatten().is_some()
            },
        )
        .await?;
        let wanted = options.nodes;
        self.wait_for("every Node Ready (kwok)", deadline, || async {
            nodes
                .list(&Default::default())
                .await
                .is_ok_and(|list| list.items.iter().filter(|n| node_ready(n)).count() >= wanted)
        })
        .await?;
        Ok(())
    }

    fn spawn(&mut self, layout: &Layout, name: &str, args: Vec<String>) -> Result<(), Error> {
        let process = Process::start(
            name,
            &layout.bin.join(name),
            &args,
            layout.path(&format!("{name}.log")),
        )?;
        self.dir.register_pid(process.pid());
        self.processes.push(process);
        Ok(())
    }

    /// Polls `ready` every 100 ms until it holds; fails when a component exits or the deadline
    /// passes (naming what it waited for and the logs).
    async fn wait_for<F, Fut>(
        &mut self,
        what: &str,
        deadline: Instant,
        mut ready: F,
    ) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        loop {
            for process in &mut self.processes {
                process.check_running()?;
            }
            if ready().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                let logs = self
                    .processes
                    .iter()
                    .map(|p| {
                        format!(
                            "--- {} ({}):\n{}",
                            p.name(),
                            p.log().display(),
                            log_tail(p.log(), 8)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(Error::Timeout {
                    what: what.to_owned(),
                    logs,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The administrator's kubeconfig (client certificate in group `system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// The administrator's client configuration.
    pub fn config(&self) -> &kube::Config {
        &self.config
    }

    /// A new administrator client, bound to the calling tokio runtime.
    pub fn client(&self) -> Result<kube::Client, Error> {
        kube::Client::try_from(self.config.clone()).map_err(|e| Error::Kubeconfig(e.to_string()))
    }

    /// The API server's audit log: one JSON event per request (level Metadata).
    pub fn audit_log(&self) -> &Path {
        &self.audit_log
    }

    /// The cluster's directory (certificates, kubeconfigs, logs of every component).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// How long [`RealCluster::start`] took, tool checks included.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Stops every process, newest first (kwok before the API server before etcd).
    pub fn stop(&mut self) {
        while let Some(mut process) = self.processes.pop() {
            process.stop(Duration::from_secs(5));
        }
    }
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A simulated Node: kwok manages it (selected by [`NODE_LABEL`]) and gives its pods IPs.
fn node(name: &str) -> Node {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                NODE_LABEL.0: NODE_LABEL.1,
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
        },
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "250"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "250"},
        },
    }))
    .expect("a valid Node")
}

fn etcd_args(l: &Layout) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", l.etcd_client);
    let peer = format!("http://127.0.0.1:{}", l.etcd_peer);
    vec![
        "--name=default".into(),
        l.arg("data-dir", "etcd"),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=default={peer}"),
        // Test data: durability is not worth an fsync per write.
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ]
}

fn apiserver_args(l: &Layout, cert: &Path, key: &Path, sa: &CertFiles) -> Vec<String> {
    vec![
        format!("--etcd-servers=http://127.0.0.1:{}", l.etcd_client),
        format!("--secure-port={}", l.apiserver),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        // The endpoint reconciler refuses a loopback address; nothing in-cluster dials the
        // `kubernetes` Service's endpoints here (there is no pod network).
        "--endpoint-reconciler-type=none".into(),
        format!("--tls-cert-file={}", cert.display()),
        format!("--tls-private-key-file={}", key.display()),
        l.arg("client-ca-file", "ca.crt"),
        l.arg("cert-dir", "apiserver-certs"),
        "--authorization-mode=RBAC".into(),
        "--anonymous-auth=false".into(),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", sa.cert.display()),
        format!("--service-account-signing-key-file={}", sa.key.display()),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--allow-privileged=true".into(),
        l.arg("audit-policy-file", "audit-policy.json"),
        l.arg("audit-log-path", "audit.log"),
        "--audit-log-format=json".into(),
        "--audit-log-mode=blocking".into(),
        "--profiling=false".into(),
        "--v=1".into(),
    ]
}

fn controller_manager_args(l: &Layout, sa_key: &Path, ca: &Path, ca_key: &Path) -> Vec<String> {
    vec![
        l.arg("kubeconfig", "kube-controller-manager.kubeconfig"),
        l.arg(
            "authentication-kubeconfig",
            "kube-controller-manager.kubeconfig",
        ),
        l.arg(
            "authorization-kubeconfig",
            "kube-controller-manager.kubeconfig",
        ),
        "--bind-address=127.0.0.1".into(),
        "--secure-port=0".into(),
        "--leader-elect=false".into(),
        "--controllers=*".into(),
        "--use-service-account-credentials=true".into(),
        format!("--service-account-private-key-file={}", sa_key.display()),
        format!("--root-ca-file={}", ca.display()),
        format!("--cluster-signing-cert-file={}", ca.display()),
        format!("--cluster-signing-key-file={}", ca_key.display()),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--v=1".into(),
    ]
}

fn scheduler_args(l: &Layout) -> Vec<String> {
    vec![
        l.arg("kubeconfig", "kube-scheduler.kubeconfig"),
        l.arg("authentication-kubeconfig", "kube-scheduler.kubeconfig"),
        l.arg("authorization-kubeconfig", "kube-scheduler.kubeconfig"),
        "--bind-address=127.0.0.1".into(),
        "--secure-port=0".into(),
        "--leader-elect=false".into(),
        "--v=1".into(),
    ]
}

fn kwok_args(l: &Layout, stages: &Path) -> Vec<String> {
    vec![
        l.arg("kubeconfig", "kwok.kubeconfig"),
        format!("--config={}", stages.display()),
        "--manage-all-nodes=false".into(),
        format!(
            "--manage-nodes-with-label-selector={}={}",
            NODE_LABEL.0, NODE_LABEL.1
        ),
        format!("--cidr={POD_CIDR}"),
        "--node-ip=10.0.0.10".into(),
        "--node-lease-duration-seconds=40".into(),
    ]
}
