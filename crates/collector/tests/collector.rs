//! The operator against a real control plane (KUBECREW_CLUSTER), driving the real helm v4
//! binary: Collectors become releases of charts served by a local chart repository (basic
//! auth, like a private repository), are upgraded only on change, repaired on drift, rolled
//! back on a failed upgrade, refused on bad input and uninstalled on deletion. No credential
//! and no value reaches the logs, the status, the events or helm's command line.
//!
//! One cluster, one chart repository and one operator serve every test of this binary (the
//! operator watches the whole cluster); each test has its own Collectors and tenants.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use collector::desired::Repository;
use collector::helm::{Config, Helm};
use collector::live::Inspector;
use collector::reconcile::{Context, OPERATOR, SecretRef};
use collector::resource::Collector;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Event, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use localcluster::{Cluster, Options};
use operator_core::Runtime;
use serde_json::{Value, json};
use testkit::eventually;

const TIMEOUT: Duration = Duration::from_secs(90);
/// The chart repository's credentials: they must never show anywhere.
const USER: &str = "chart-reader";
const PASSWORD: &str = "pw-9f8e7d6c5b4a";
/// A value that must never show anywhere either.
const SECRET_VALUE: &str = "token-5ecr3t-c0ll3ct0r";

struct Fixture {
    cluster: &'static Cluster,
    /// The OCI registry path the node-agent chart was pushed to (`oci://127.0.0.1:<port>/charts`).
    oci: String,
    /// Every command line the operator ran helm with.
    argv_log: PathBuf,
    /// Everything the operator logged.
    logs: Arc<Mutex<Vec<u8>>>,
    /// The real helm.
    helm: PathBuf,
    /// The admin kubeconfig.
    kubeconfig: PathBuf,
    /// The packaged charts.
    repo_dir: PathBuf,
}

static FIXTURE: tokio::sync::OnceCell<Fixture> = tokio::sync::OnceCell::const_new();

/// Captured logs, for the leak check.
#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(start).await
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_owned()
}

fn run(program: &Path, args: &[&str], kubeconfig: Option<&Path>) -> String {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    let out = cmd.output().expect("helm runs");
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn start() -> Fixture {
    let cluster = localcluster::shared(Options::default).await;
    let dir = tempfile::tempdir().unwrap().keep();
    let helm = testkit::gotools::binary(&testkit::gotools::HELM, "helm").expect("helm builds");

    // The chart repository: the project's chart at two versions, a DaemonSet-shaped chart and
    // a chart whose upgrade the API server rejects (when asked to), indexed by helm itself.
    let repo_dir = dir.join("repo");
    let root = workspace();
    let project = root.join("deploy/charts/collector");
    let node_agent = root.join("crates/collector/tests/charts/node-agent");
    let broken = root.join("crates/collector/tests/charts/broken");
    testkit::chartrepo::package(
        &helm,
        &[
            (&project, "0.1.0"),
            (&project, "0.2.0"),
            (&node_agent, "1.0.0"),
            (&broken, "1.0.0"),
        ],
        &repo_dir,
    )
    .expect("charts packaged");

    // An OCI registry (in memory, plain HTTP) holding the node-agent chart.
    let registry = testkit::gotools::binary(&testkit::gotools::REGISTRY, "registry")
        .expect("the registry builds");
    let registry_log = dir.join("registry.log");
    let process = localcluster::process::Process::start(
        "registry",
        &registry,
        &["-port".into(), "0".into()],
        registry_log.clone(),
    )
    .expect("the registry starts");
    // The registry lives as long as this test binary (and dies with it).
    std::mem::forget(process);
    let port = eventually("the registry serves", TIMEOUT, || async {
        let log = std::fs::read_to_string(&registry_log).ok()?;
        log.lines()
            .find_map(|l| l.split("serving on port ").nth(1))
            .map(|p| p.trim().to_owned())
    })
    .await;
    let oci = format!("oci://127.0.0.1:{port}/charts");
    let package = repo_dir.join("node-agent-1.0.0.tgz");
    run(
        &helm,
        &["push", package.to_str().unwrap(), &oci, "--plain-http"],
        None,
    );

    // helm, wrapped to record its command lines (exec keeps helm's own name, which is its
    // server-side apply field manager).
    let argv_log = dir.join("helm-argv.log");
    let wrapper_dir = dir.join("wrapped");
    std::fs::create_dir_all(&wrapper_dir).unwrap();
    let wrapper = wrapper_dir.join("helm");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            argv_log.display(),
            helm.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let kubeconfig = dir.join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig, None).unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let capture = Capture(logs.clone());
    tracing_subscriber::fmt()
        .with_env_filter("collector=debug,operator_core=debug")
        .with_writer(move || capture.clone())
        .with_ansi(false)
        .try_init()
        .ok();

    // The CRDs: Collectors, and ServiceMonitors (the project's chart renders one when served).
    let client = cluster.client();
    let monitor: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
        "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                 "names": {"plural": "servicemonitors", "singular": "servicemonitor",
                           "kind": "ServiceMonitor", "listKind": "ServiceMonitorList"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object",
                         "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .unwrap();
    cluster.install_crd(&Collector::crd()).await.expect("CRD");
    cluster.install_crd(&monitor).await.expect("CRD");
    ensure_namespace(&client, "collector-system").await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "chart-repository", "namespace": "collector-system"},
        "stringData": {"username": USER, "password": PASSWORD}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "collector-system")
        .create(&PostParams::default(), &secret)
        .await
        .expect("credentials Secret");

    // The repository server and the operator run on a runtime of their own: every test's
    // runtime ends with its test.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let serve_dir = repo_dir.clone();
    let repo_dir = repo_dir.clone();
    let helm_home = dir.join("helm-home");
    let helm_kubeconfig = kubeconfig.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let addr = testkit::chartrepo::serve(serve_dir, Some((USER, PASSWORD)))
                .await
                .expect("the chart repository serves");
            let repo = format!("http://{addr}");
            let runtime = Arc::new(Runtime::new(cluster.client(), OPERATOR));
            let ctx = Context {
                runtime: runtime.clone(),
                overlays: BTreeMap::from([(
                    "dev".to_owned(),
                    json!({"podAnnotations": {"overlay": "dev"}}),
                )]),
                repository: Some(Repository::parse(&repo).unwrap()),
                credentials: Some(SecretRef {
                    namespace: "collector-system".into(),
                    name: "chart-repository".into(),
                }),
                helm: Helm::new(Config {
                    binary: wrapper,
                    home: helm_home,
                    kubeconfig: Some(helm_kubeconfig),
                    timeout: Duration::from_secs(60),
                    history_max: 5,
                    // The test registry speaks plain HTTP (HTTP repositories are unaffected).
                    plain_http: true,
                    cache_max_bytes: 64 << 20,
                })
                .unwrap(),
                inspector: Inspector::new(cluster.config()).unwrap(),
                tenant_service_account: None,
            };
            tx.send(()).unwrap();
            collector::operator::run(runtime, ctx, operator_core::Settings::default()).await;
        });
    });
    rx.await.expect("the operator thread starts");
    Fixture {
        cluster,
        oci,
        repo_dir,
        argv_log,
        logs,
        helm,
        kubeconfig,
    }
}

async fn ensure_namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("namespace {name}: {e}"),
    }
}

/// Whether a test that needs the real API server's behaviour can run here; on devcluster it
/// says loudly why it does not.
fn real_only(f: &Fixture, test: &str, needs: &str) -> bool {
    if f.cluster.real().is_some() {
        return true;
    }
    eprintln!(
        "SKIPPED {test} on devcluster: it needs {needs} (docs/devcluster.md, Known differences); \
         it runs on the real control plane (KUBECREW_CLUSTER=real, as `cargo xtask test` and CI do)"
    );
    false
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A Collector `name` of the chart `chart` (instance `main`) for tenant `tenant`. Only the
/// project's chart (collector name `otel`) gets the `dev` cluster's overlay: the test charts'
/// schemas refuse its keys.
fn collector(name: &str, chart: &str, version: &str, tenant: &str, values: &str) -> Collector {
    let cluster = if chart == "otel" { "dev" } else { "plain" };
    serde_json::from_value(json!({
        "apiVersion": "collector.kubecrew.io/v1alpha1",
        "kind": "Collector",
        "metadata": {"name": name},
        "spec": {
            "collector": {"name": chart, "version": version, "configuration": b64(values)},
            "tenant": {"id": format!("id-{tenant}"), "reference": tenant, "instance": "main"},
            "cluster": cluster
        }
    }))
    .expect("valid Collector")
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    )
}

async fn create(client: &Client, c: &Collector) {
    Api::<Collector>::all(client.clone())
        .create(&PostParams::default(), c)
        .await
        .expect("Collector created");
}

async fn patch_spec(client: &Client, name: &str, spec: Value) {
    Api::<Collector>::all(client.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await
        .expect("Collector patched");
}

/// A condition, once the status describes the Collector's current generation.
async fn condition(client: &Client, name: &str, type_: &str) -> Option<(String, String, String)> {
    let c = Api::<Collector>::all(client.clone()).get(name).await.ok()?;
    let observed = c.status.as_ref().and_then(|s| s.observed_generation);
    if observed != c.metadata.generation {
        return None;
    }
    let cond = c
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)?;
    Some((cond.status, cond.reason, cond.message))
}

/// Waits for Ready=`status` with `reason`, returning the message (a timeout shows the last
/// condition seen).
async fn ready_is(client: &Client, name: &str, status: &str, reason: &str) -> String {
    let last = Mutex::new(None);
    let found = tokio::time::timeout(
        TIMEOUT,
        eventually(
            &format!("{name} Ready={status} ({reason})"),
            TIMEOUT * 2,
            || async {
                let c = condition(client, name, "Ready").await;
                *last.lock().unwrap() = c.clone();
                let c = c?;
                (c.0 == status && c.1 == reason).then_some(c.2)
            },
        ),
    )
    .await;
    match found {
        Ok(message) => message,
        Err(_) => panic!(
            "timed out after {TIMEOUT:?} waiting for {name} Ready={status} ({reason}); last seen: {:?}",
            last.lock().unwrap()
        ),
    }
}

impl Fixture {
    fn helm(&self, args: &[&str]) -> String {
        run(&self.helm, args, Some(&self.kubeconfig))
    }

    /// `(revision, status)` of every revision of a release.
    fn history(&self, release: &str, namespace: &str) -> Vec<(i64, String)> {
        let out = self.helm(&["history", release, "-n", namespace, "-o", "json"]);
        eprintln!("history of {release}: {out}");
        serde_json::from_str::<Vec<Value>>(&out)
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["revision"].as_i64().unwrap(),
                    h["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn releases(&self, namespace: &str) -> Vec<Value> {
        serde_json::from_str(&self.helm(&["list", "-n", namespace, "-o", "json"])).unwrap()
    }
}

/// Edits metadata only (a label), which triggers a reconcile but changes nothing helm sees.
async fn poke(client: &Client, name: &str) {
    Api::<Collector>::all(client.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"poked": unique("p")}}})),
        )
        .await
        .expect("poked");
}

async fn observed_generation(client: &Client, name: &str) -> Option<i64> {
    let c = Api::<Collector>::all(client.clone()).get(name).await.ok()?;
    let generation = c.metadata.generation;
    c.status
        .and_then(|s| s.observed_generation)
        .filter(|g| Some(*g) == generation)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_charts_become_releases_and_only_changes_make_revisions() {
    let f = fixture().await;
    let client = f.cluster.client();
    let tenant = unique("acme");
    // The project's chart, under another collector name; and a DaemonSet-shaped chart.
    let mut otel = collector(
        &unique("otel"),
        "otel",
        "0.1.0",
        &tenant,
        &format!("replicas: 2\nconfig: |\n  token: {SECRET_VALUE}\n"),
    );
    otel.spec.collector.chart = Some(collector::resource::ChartOverride {
        repository: None,
        name: Some("collector".into()),
    });
    let agent = collector(
        &unique("agent"),
        "node-agent",
        "1.0.0",
        &tenant,
        "logLevel: debug\n",
    );
    create(&client, &otel).await;
    create(&client, &agent).await;
    let otel_name = otel.metadata.name.clone().unwrap();
    let agent_name = agent.metadata.name.clone().unwrap();
    ready_is(&client, &otel_name, "True", "Deployed").await;
    ready_is(&client, &agent_name, "True", "Deployed").await;

    let ns = tenant.to_lowercase();
    let releases = f.releases(&ns);
    let mut listed: Vec<(String, String, String)> = releases
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["chart"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            (
                "node-agent-main".into(),
                "node-agent-1.0.0".into(),
                "deployed".into()
            ),
            (
                "otel-main".into(),
                "collector-0.1.0".into(),
                "deployed".into()
            ),
        ]
    );
    let values: Value =
        serde_json::from_str(&f.helm(&["get", "values", "otel-main", "-n", &ns, "-o", "json"]))
            .unwrap();
    assert_eq!(values["replicas"], 2, "values from configuration");
    assert_eq!(
        values["podAnnotations"]["overlay"], "dev",
        "and the overlay"
    );
    let d = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("otel-main")
        .await
        .unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(2));
    let ds = Api::<DaemonSet>::namespaced(client.clone(), &ns)
        .get("node-agent-main")
        .await
        .unwrap();
    let ds = ds.status.unwrap();
    assert_eq!(
        ds.number_ready, ds.desired_number_scheduled,
        "the DaemonSet runs"
    );
    if f.cluster.real().is_some() {
        assert!(ds.number_ready > 0, "on every kwok node");
    }

    // No change, no revision: poke both (a reconcile each) and wait until they were seen.
    poke(&client, &otel_name).await;
    poke(&client, &agent_name).await;
    f.cluster
        .assert_quiet_for(Duration::from_secs(15), |r| {
            r.namespace == ns || (r.resource == "collectors" && r.subresource.is_empty())
        })
        .await;
    assert_eq!(f.history("otel-main", &ns).len(), 1);
    assert_eq!(f.history("node-agent-main", &ns).len(), 1);

    // A version change: exactly one new revision.
    patch_spec(
        &client,
        &otel_name,
        json!({"collector": {"version": "0.2.0"}}),
    )
    .await;
    eventually("otel-main at 0.2.0", TIMEOUT, || async {
        let c = Api::<Collector>::all(client.clone())
            .get(&otel_name)
            .await
            .ok()?;
        let s = c.status?;
        (s.deployed_version.as_deref() == Some("0.2.0") && conditions_ready(&s.conditions))
            .then_some(())
    })
    .await;
    let history = f.history("otel-main", &ns);
    assert_eq!(
        history,
        [(1, "superseded".to_owned()), (2, "deployed".to_owned())]
    );
    let status = Api::<Collector>::all(client.clone())
        .get(&otel_name)
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.helm_revision, Some(2));
    assert_eq!(status.chart.as_deref(), Some("collector"));
    assert_eq!(status.release_name.as_deref(), Some("otel-main"));
    assert_eq!(status.values_hash.as_ref().map(String::len), Some(64));
    assert!(
        status
            .history
            .iter()
            .any(|a| a.action == "Upgrade" && a.outcome == "Succeeded" && a.version == "0.2.0")
    );
    assert_no_leaks(f, &client, &[&otel_name, &agent_name]).await;
}

fn conditions_ready(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upgrade_is_rolled_back_and_not_retried() {
    let f = fixture().await;
    if !real_only(
        f,
        "a_failed_upgrade_is_rolled_back_and_not_retried",
        "the API server to refuse a container port out of range",
    ) {
        return;
    }
    let client = f.cluster.client();
    let tenant = unique("fail");
    let ns = tenant.clone();
    let c = collector(
        &unique("broken"),
        "broken",
        "1.0.0",
        &tenant,
        "broken: false\n",
    );
    let name = c.metadata.name.clone().unwrap();
    create(&client, &c).await;
    ready_is(&client, &name, "True", "Deployed").await;

    patch_spec(
        &client,
        &name,
        json!({"collector": {"configuration": b64("broken: true\n")}}),
    )
    .await;
    let message = ready_is(&client, &name, "False", "UpgradeFailed").await;
    assert!(message.contains("rolled back to revision 1"), "{message}");
    let (stalled, _, _) = condition(&client, &name, "Stalled").await.unwrap();
    assert_eq!(stalled, "True");
    assert_eq!(
        f.history("broken-main", &ns),
        [
            (1, "superseded".to_owned()),
            (2, "failed".to_owned()),
            (3, "deployed".to_owned())
        ],
        "the failed revision, then the rollback to the first"
    );
    let d = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("broken-main")
        .await
        .unwrap();
    assert!(
        d.metadata.name.is_some(),
        "the previous revision still runs"
    );
    // Held: another reconcile does not try the same upgrade again.
    poke(&client, &name).await;
    eventually("the poke is reconciled", TIMEOUT, || {
        observed_generation(&client, &name)
    })
    .await;
    f.cluster
        .assert_quiet_for(Duration::from_secs(10), |r| r.namespace == ns)
        .await;
    assert_eq!(f.history("broken-main", &ns).len(), 3);
    // Fixing the values deploys again.
    patch_spec(
        &client,
        &name,
        json!({"collector": {"configuration": b64("broken: false\n")}}),
    )
    .await;
    ready_is(&client, &name, "True", "Deployed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_reported_and_the_release_stays() {
    let f = fixture().await;
    let client = f.cluster.client();
    let tenant = unique("bad");
    let ns = tenant.clone();
    let c = collector(
        &unique("bad"),
        "node-agent",
        "1.0.0",
        &tenant,
        "logLevel: info\n",
    );
    let name = c.metadata.name.clone().unwrap();
    create(&client, &c).await;
    ready_is(&client, &name, "True", "Deployed").await;
    let before = f.history("node-agent-main", &ns);

    let cases: [(Value, &str, &str); 6] = [
        (
            json!({"collector": {"configuration": "%%%"}}),
            "InvalidSpec",
            "not valid base64",
        ),
        (
            json!({"collector": {"configuration": b64(&format!("a: [{SECRET_VALUE}\n"))}}),
            "InvalidSpec",
            "not valid YAML",
        ),
        (
            json!({"collector": {"configuration": b64(&format!("logLevel: {SECRET_VALUE}\n"))}}),
            "ValuesInvalid",
            "values.schema.json",
        ),
        (
            json!({"collector": {"configuration": b64("logLevel: info\n"), "version": "9.9.9"}}),
            "ChartNotFound",
            "no chart version found",
        ),
        (
            json!({"collector": {"version": "1.0.0", "chart": {"name": "no-such-chart"}}}),
            "ChartNotFound",
            "no chart name found",
        ),
        (
            // A chart is named by name and version: only a new one is fetched.
            json!({"collector": {"version": "1.0.1",
                                 "chart": {"name": "node-agent", "repository": "http://127.0.0.1:1"}}}),
            "RepositoryUnreachable",
            "unreachable",
        ),
    ];
    for (spec, reason, says) in cases {
        patch_spec(&client, &name, spec).await;
        let message = ready_is(&client, &name, "False", reason).await;
        assert!(message.contains(says), "{reason}: {message}");
        assert!(!message.contains(SECRET_VALUE), "{message}");
        assert_eq!(
            f.history("node-agent-main", &ns),
            before,
            "{reason}: unchanged"
        );
    }
    // Fixed: deployed again, with the new values as one new revision.
    patch_spec(
        &client,
        &name,
        json!({"collector": {"chart": null, "version": "1.0.0",
                             "configuration": b64("logLevel: warn\n")}}),
    )
    .await;
    ready_is(&client, &name, "True", "Deployed").await;
    assert_eq!(f.history("node-agent-main", &ns).len(), before.len() + 1);
    assert_no_leaks(f, &client, &[&name]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_or_edited_objects_of_a_release_come_back() {
    let f = fixture().await;
    let client = f.cluster.client();
    let tenant = unique("drift");
    let ns = tenant.clone();
    let mut otel = collector(&unique("otel"), "otel", "0.1.0", &tenant, "replicas: 2\n");
    otel.spec.collector.chart = Some(collector::resource::ChartOverride {
        repository: None,
        name: Some("collector".into()),
    });
    let agent = collector(&unique("agent"), "node-agent", "1.0.0", &tenant, "");
    create(&client, &otel).await;
    create(&client, &agent).await;
    ready_is(
        &client,
        otel.metadata.name.as_deref().unwrap(),
        "True",
        "Deployed",
    )
    .await;
    ready_is(
        &client,
        agent.metadata.name.as_deref().unwrap(),
        "True",
        "Deployed",
    )
    .await;

    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    let daemonsets = Api::<DaemonSet>::namespaced(client.clone(), &ns);
    let old = deployments.get("otel-main").await.unwrap().metadata.uid;
    deployments
        .delete("otel-main", &DeleteParams::default())
        .await
        .unwrap();
    let old_ds = daemonsets
        .get("node-agent-main")
        .await
        .unwrap()
        .metadata
        .uid;
    daemonsets
        .delete("node-agent-main", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the Deployment is back", TIMEOUT, || async {
        let d = deployments.get_opt("otel-main").await.ok()??;
        (d.metadata.uid != old).then_some(())
    })
    .await;
    eventually("the DaemonSet is back", TIMEOUT, || async {
        let d = daemonsets.get_opt("node-agent-main").await.ok()??;
        (d.metadata.uid != old_ds).then_some(())
    })
    .await;
    // A hand edit of a field the chart sets is taken back.
    deployments
        .patch(
            "otel-main",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    eventually("replicas are 2 again", TIMEOUT, || async {
        let d = deployments.get("otel-main").await.ok()?;
        (d.spec?.replicas == Some(2)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_uninstalls_and_objects_of_others_are_never_touched() {
    let f = fixture().await;
    let client = f.cluster.client();
    let tenant = unique("own");
    let ns = tenant.clone();
    ensure_namespace(&client, &ns).await;
    // A Secret that was there first, with the name the project's chart gives its config.
    let theirs: Secret = serde_json::from_value(json!({
        "metadata": {"name": "otel-main-config", "namespace": ns},
        "stringData": {"config.yaml": "theirs"}
    }))
    .unwrap();
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let uid = secrets
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap()
        .metadata
        .uid;
    let mut otel = collector(&unique("otel"), "otel", "0.1.0", &tenant, "");
    otel.spec.collector.chart = Some(collector::resource::ChartOverride {
        repository: None,
        name: Some("collector".into()),
    });
    let otel_name = otel.metadata.name.clone().unwrap();
    create(&client, &otel).await;
    let message = ready_is(&client, &otel_name, "False", "Conflict").await;
    assert!(
        message.contains("Secret \"otel-main-config\"") && message.contains("cannot be imported"),
        "{message}"
    );
    let agent = collector(&unique("agent"), "node-agent", "1.0.0", &tenant, "");
    let agent_name = agent.metadata.name.clone().unwrap();
    create(&client, &agent).await;
    ready_is(&client, &agent_name, "True", "Deployed").await;

    let collectors = Api::<Collector>::all(client.clone());
    for name in [&otel_name, &agent_name] {
        collectors
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    for name in [&otel_name, &agent_name] {
        eventually(&format!("{name} is gone"), TIMEOUT, || async {
            collectors.get_opt(name).await.ok()?.is_none().then_some(())
        })
        .await;
    }
    assert!(f.releases(&ns).is_empty(), "every release uninstalled");
    eventually("the DaemonSet is gone", TIMEOUT, || async {
        Api::<DaemonSet>::namespaced(client.clone(), &ns)
            .get_opt("node-agent-main")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let kept = secrets
        .get("otel-main-config")
        .await
        .expect("their Secret stays");
    assert_eq!(kept.metadata.uid, uid, "never deleted or replaced");
    let labels = kept.metadata.labels.unwrap_or_default();
    assert!(
        !labels.contains_key("app.kubernetes.io/managed-by"),
        "never adopted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_from_an_oci_registry_becomes_a_release() {
    let f = fixture().await;
    let client = f.cluster.client();
    let tenant = unique("oci");
    let mut c = collector(
        &unique("oci"),
        "node-agent",
        "1.0.0",
        &tenant,
        "logLevel: warn\n",
    );
    c.spec.collector.chart = Some(collector::resource::ChartOverride {
        repository: Some(f.oci.clone()),
        name: None,
    });
    let name = c.metadata.name.clone().unwrap();
    create(&client, &c).await;
    ready_is(&client, &name, "True", "Deployed").await;
    let releases = f.releases(&tenant);
    assert_eq!(releases.len(), 1, "{releases:?}");
    assert_eq!(releases[0]["chart"], "node-agent-1.0.0");
    assert_eq!(releases[0]["status"], "deployed");
    // A version the registry does not have.
    patch_spec(&client, &name, json!({"collector": {"version": "1.0.7"}})).await;
    let message = ready_is(&client, &name, "False", "ChartNotFound").await;
    assert!(message.contains("not found"), "{message}");
    assert_eq!(f.history("node-agent-main", &tenant).len(), 1, "unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_service_account_bounds_what_a_release_may_do() {
    let f = fixture().await;
    if !real_only(
        f,
        "a_tenant_service_account_bounds_what_a_release_may_do",
        "RBAC enforced for impersonated users (the shared devcluster allows everyone everything)",
    ) {
        return;
    }
    let client = f.cluster.client();
    let ns = unique("tenant");
    ensure_namespace(&client, &ns).await;
    // The tenant's ServiceAccount may keep helm's records and create what the DaemonSet chart
    // renders, nothing more.
    for object in [
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "collector-tenant", "namespace": ns}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "collector-tenant", "namespace": ns},
               "rules": [
                   {"apiGroups": [""], "resources": ["secrets", "configmaps"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
                   {"apiGroups": ["apps"], "resources": ["daemonsets"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "collector-tenant", "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                           "name": "collector-tenant"},
               "subjects": [{"kind": "ServiceAccount", "name": "collector-tenant",
                             "namespace": ns}]}),
    ] {
        let kind = object["kind"].as_str().unwrap().to_owned();
        let ar = match kind.as_str() {
            "ServiceAccount" => {
                kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::ServiceAccount>(&())
            }
            "Role" => kube::api::ApiResource::erase::<k8s_openapi::api::rbac::v1::Role>(&()),
            _ => kube::api::ApiResource::erase::<k8s_openapi::api::rbac::v1::RoleBinding>(&()),
        };
        let object: kube::api::DynamicObject = serde_json::from_value(object).unwrap();
        Api::<kube::api::DynamicObject>::namespaced_with(client.clone(), &ns, &ar)
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
    let user = format!("system:serviceaccount:{ns}:collector-tenant");
    let home = tempfile::tempdir().unwrap();
    let helm = Helm::new(Config {
        binary: f.helm.clone(),
        home: home.path().to_owned(),
        kubeconfig: Some(f.kubeconfig.clone()),
        timeout: Duration::from_secs(60),
        history_max: 5,
        plain_http: false,
        cache_max_bytes: 1 << 20,
    })
    .unwrap()
    .acting_as(Some(user.clone()));
    let upgrade = |release: &'static str, chart: &'static str| collector::helm::Upgrade {
        release,
        namespace: &ns,
        chart: Box::leak(f.repo_dir.join(chart).into_boxed_path()),
        values: Box::leak(Box::new(json!({}))),
        description: "tenant test",
    };
    let revision = helm
        .upgrade(&upgrade("node-agent-main", "node-agent-1.0.0.tgz"))
        .await
        .expect("the tenant may install the DaemonSet chart");
    assert_eq!(revision, 1);
    let err = helm
        .upgrade(&upgrade("otel-main", "collector-0.1.0.tgz"))
        .await
        .expect_err("the tenant may not create Deployments or Services");
    let message = err.to_string();
    assert!(
        message.contains("forbidden") && message.contains(&user),
        "{message}"
    );
    assert!(
        Api::<Deployment>::namespaced(client.clone(), &ns)
            .get_opt("otel-main")
            .await
            .unwrap()
            .is_none()
    );
    // The drift check reads and dry-run applies as the tenant too.
    let inspector = Inspector::new(f.cluster.config()).unwrap();
    let manifest = helm.manifest("node-agent-main", &ns).await.unwrap();
    let observed = inspector
        .observe(&manifest, "node-agent-main", &ns, Some(&user))
        .await
        .expect("the tenant may read its release's objects");
    assert!(observed.drift.is_empty(), "{observed:?}");
    let foreign = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kube-root-ca.crt\n  namespace: default\n";
    let elsewhere = inspector
        .observe(foreign, "node-agent-main", "default", Some(&user))
        .await
        .expect_err("the tenant may not read another namespace");
    assert!(elsewhere.to_string().contains("forbidden"), "{elsewhere}");
}

/// No credential and no value in the operator's logs, the Collectors' status and events, or
/// helm's command lines.
async fn assert_no_leaks(f: &Fixture, client: &Client, names: &[&str]) {
    let logs = String::from_utf8_lossy(&f.logs.lock().unwrap()).into_owned();
    assert!(!logs.is_empty(), "the operator logged");
    let argv = std::fs::read_to_string(&f.argv_log).expect("helm ran");
    let mut texts = vec![("logs", logs), ("helm command lines", argv)];
    for name in names {
        let c = Api::<Collector>::all(client.clone())
            .get(name)
            .await
            .unwrap();
        texts.push(("status", serde_json::to_string(&c.status).unwrap()));
    }
    let events = Api::<Event>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    texts.push(("events", serde_json::to_string(&events.items).unwrap()));
    for (what, text) in texts {
        for secret in [PASSWORD, SECRET_VALUE, &b64(&format!("{USER}:{PASSWORD}"))] {
            assert!(!text.contains(secret), "{what} contain a secret");
        }
    }
}
