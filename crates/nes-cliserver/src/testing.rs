//! A test fixture (feature `testing`): a namespace of the test binary's cluster (localcluster:
//! the real control plane with `KUBECREW_CLUSTER=real`, devcluster by default) with the nes
//! CRDs, a ServiceAccount `app`, a StatefulSet `x` with pods `x-0` and `x-1`, and this server
//! running in-process. Used by this crate's integration tests and by nescli's.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::CustomResourceExt;
use kube::api::{Api, PostParams};
use localcluster::TestEnv;
use nes_api::crd::{NetworkCare, NetworkConfiguration};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{AppState, Settings};

/// The audience the server requires and the fixture's tokens carry.
pub const AUDIENCE: &str = "nes-cliserver";
/// The StatefulSet.
pub const STATEFULSET: &str = "x";
/// How long the fixture waits for the cluster.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// How long a test waits for the garbage collector to delete the dependents of a deleted owner.
/// kube-controller-manager's collector learns of new resource types (the nes CRDs, installed as
/// the test starts) at its discovery resync, every 30 s, so their dependents can wait that long
/// before it even sees them.
pub const COLLECTION_TIMEOUT: Duration = Duration::from_secs(90);

/// A test's namespace with the objects above, and the server.
pub struct Fixture {
    /// The test's share of the cluster.
    pub env: TestEnv,
    /// The namespace of the fixture's objects (the test's own).
    pub namespace: String,
    /// An administrator client whose default namespace is [`Fixture::namespace`].
    pub client: kube::Client,
    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// The server's state (its metrics).
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl Fixture {
    /// Starts everything in a new namespace and waits for the pods `x-0` and `x-1`.
    pub async fn start() -> Fixture {
        Fixture::start_with(Settings::default()).await
    }

    /// [`Fixture::start`] with the server's `settings` (the audience is always [`AUDIENCE`]).
    pub async fn start_with(settings: Settings) -> Fixture {
        let env = TestEnv::new("nes-cliserver").await;
        let namespace = env.namespace().to_owned();
        let client = env.client();
        for crd in [NetworkConfiguration::crd(), NetworkCare::crd()] {
            env.install_crd(&crd).await;
        }
        let sas: Api<ServiceAccount> = env.api();
        sas.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "app"}})).unwrap(),
        )
        .await
        .expect("ServiceAccount created");
        let sets: Api<StatefulSet> = env.api();
        let set = serde_json::from_value(json!({
            "metadata": {"name": STATEFULSET},
            "spec": {
                "replicas": 2,
                "serviceName": STATEFULSET,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": {"app": STATEFULSET}},
                "template": {
                    "metadata": {"labels": {"app": STATEFULSET}},
                    "spec": {
                        "serviceAccountName": "app",
                        "containers": [{"name": "app", "image": "app:1"}]
                    }
                }
            }
        }))
        .unwrap();
        sets.create(&PostParams::default(), &set)
            .await
            .expect("StatefulSet created");
        let pods: Api<Pod> = env.api();
        for name in ["x-0", "x-1"] {
            testkit::eventually(&format!("pod {name} exists"), TIMEOUT, || async {
                pods.get_opt(name).await.ok().flatten()
            })
            .await;
        }
        let state = AppState::new(
            client.clone(),
            Settings {
                audience: Some(AUDIENCE.into()),
                ..settings
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(crate::serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        Fixture {
            env,
            namespace,
            client,
            url,
            state,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// A token of ServiceAccount `app` bound to `pod`, for [`AUDIENCE`].
    pub async fn token(&self, pod: &str) -> String {
        self.token_for(pod, AUDIENCE).await
    }

    /// A token of ServiceAccount `app` bound to `pod`, for `audience`.
    pub async fn token_for(&self, pod: &str, audience: &str) -> String {
        let request = TokenRequest {
            metadata: Default::default(),
            spec: TokenRequestSpec {
                audiences: vec![audience.into()],
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod.into()),
                    uid: None,
                }),
                expiration_seconds: None,
            },
            status: None,
        };
        Api::<ServiceAccount>::namespaced(self.client.clone(), &self.namespace)
            .create_token_request("app", &PostParams::default(), &request)
            .await
            .expect("TokenRequest")
            .status
            .expect("TokenRequest status")
            .token
    }

    /// The URL of a pod's resources: `{url}/v1/namespaces/{namespace}/pods/{pod}`.
    pub fn pod_url(&self, pod: &str) -> String {
        format!(
            "{}{}",
            self.url,
            nes_api::cli::pod_path(&self.namespace, pod)
        )
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop_server(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stops cleanly");
        }
    }

    /// Stops the server (the cluster is the test binary's, shared with the other tests).
    pub async fn shutdown(mut self) {
        self.stop_server().await;
    }
}
