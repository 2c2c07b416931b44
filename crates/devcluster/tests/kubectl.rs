//! kubectl, a client nobody here wrote, driven against devcluster through its kubeconfig. Any
//! kubectl command that fails fails the test.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
    dir: PathBuf,
}

impl Kubectl {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(testkit::tools::kubectl().expect("kubectl on PATH"));
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args);
        cmd
    }

    /// Runs kubectl and returns stdout; panics with stderr on failure.
    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// [`Kubectl::run`] without blocking the runtime that serves the cluster.
    async fn run_async(&self, args: &[&str]) -> String {
        let out = tokio::process::Command::from(self.command(args))
            .output()
            .await
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.run(&all)).expect("kubectl printed JSON")
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl starts")
    }

    fn file(&self, name: &str, content: &Value) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, serde_json::to_string_pretty(content).unwrap()).unwrap();
        path.display().to_string()
    }
}

/// Lines a child prints, on a channel, so the test can wait for one with a deadline.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_line(rx: &mpsc::Receiver<String>, what: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if what(&line) => return line,
            Ok(_) => continue,
            Err(e) => panic!("no matching line from kubectl: {e}"),
        }
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "kubectl did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kubectl-test-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn field<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer).unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_everyday_commands() {
    let cluster = common::cluster().await;
    let dir = tempdir();
    let k = Kubectl {
        kubeconfig: cluster.kubeconfig_path().to_path_buf(),
        cache: dir.join("cache"),
        dir: dir.clone(),
    };
    // kubectl blocks: run it off the async runtime that serves the cluster.
    tokio::task::spawn_blocking(move || scenario(&k))
        .await
        .expect("scenario");
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}

fn scenario(k: &Kubectl) {
    // A CRD and an instance, with server-side apply.
    let crd = k.file("crd.json", &common::widget_crd());
    k.run(&["apply", "--server-side", "-f", &crd]);
    k.run(&[
        "wait",
        "--for=condition=established",
        "crd/widgets.example.com",
        "--timeout=20s",
    ]);
    let resources = k.run(&["api-resources", "--api-group=example.com"]);
    assert!(resources.contains("widgets"), "{resources}");
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                        "metadata": {"name": "w1"}, "spec": {"color": "red"}});
    let wfile = k.file("widget.json", &widget);
    k.run(&["apply", "--server-side", "-f", &wfile]);
    let got = k.json(&["get", "widget", "w1"]);
    assert_eq!(field(&got, "/spec/color"), "red");
    assert_eq!(field(&got, "/spec/replicas"), 1, "schema default");
    let table = k.run(&["get", "widgets"]);
    assert!(
        table.contains("COLOR") && table.contains("red"),
        "printer columns: {table}"
    );
    let short = k.run(&["get", "wd", "-o", "name"]);
    assert_eq!(short.trim(), "widget.example.com/w1");

    // get -w sees a later change.
    let mut watch = k.spawn(&[
        "get",
        "configmap",
        "-w",
        "-o",
        "custom-columns=NAME:.metadata.name,V:.data.v",
        "--no-headers",
    ]);
    let out = lines(&mut watch);
    let watched = json!({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "watched"}, "data": {"v": "one"}});
    k.run(&[
        "apply",
        "--server-side",
        "-f",
        &k.file("watched.json", &watched),
    ]);
    wait_line(&out, |l| l.contains("watched") && l.contains("one"));
    k.run(&[
        "patch",
        "configmap",
        "watched",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"v":"two"}}"#,
    ]);
    wait_line(&out, |l| l.contains("watched") && l.contains("two"));
    let _ = watch.kill();
    let _ = watch.wait();

    // Typed clients send protobuf bodies for built-in kinds.
    k.run(&["create", "configmap", "typed", "--from-literal=a=b"]);
    k.run(&[
        "create",
        "deployment",
        "typed",
        "--image=nginx:1.27",
        "--replicas=0",
    ]);
    let typed = k.json(&["get", "configmap", "typed"]);
    assert_eq!(field(&typed, "/data/a"), "b");
    assert_eq!(
        field(&k.json(&["get", "deployment", "typed"]), "/spec/replicas"),
        0
    );

    // The three patch types, label and annotate.
    k.run(&[
        "patch",
        "configmap",
        "watched",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/data/w","value":"x"}]"#,
    ]);
    let web = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}}});
    k.run(&["apply", "--server-side", "-f", &k.file("web.json", &web)]);
    k.run(&["patch", "deployment", "web", "--type", "strategic", "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","env":[{"name":"MODE","value":"prod"}]}]}}}}"#]);
    k.run(&["label", "configmap", "watched", "tier=front"]);
    k.run(&["annotate", "configmap", "watched", "note=hello"]);
    let cm = k.json(&["get", "configmap", "watched"]);
    assert_eq!(field(&cm, "/data/w"), "x");
    assert_eq!(field(&cm, "/metadata/labels/tier"), "front");
    assert_eq!(field(&cm, "/metadata/annotations/note"), "hello");
    let deploy = k.json(&["get", "deployment", "web"]);
    let containers = field(&deploy, "/spec/template/spec/containers")
        .as_array()
        .unwrap();
    assert_eq!(
        containers.len(),
        1,
        "strategic merge kept the container list"
    );
    assert_eq!(field(&containers[0], "/image"), "nginx:1.27");
    assert_eq!(field(&containers[0], "/env/0/value"), "prod");

    // rollout restart: a strategic merge patch of the pod template annotation.
    k.run(&["rollout", "restart", "deployment/web"]);
    let deploy = k.json(&["get", "deployment", "web"]);
    assert!(
        field(
            &deploy,
            "/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt"
        )
        .is_string(),
        "{deploy}"
    );
    assert_eq!(field(&deploy, "/metadata/generation"), 3);

    // wait --for=condition on a custom resource's status.
    k.run(&[
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
    ]);
    k.run(&[
        "wait",
        "--for=condition=Ready",
        "widget/w1",
        "--timeout=20s",
    ]);

    // delete --wait blocks until the finalizer is removed.
    let held = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]}});
    k.run(&["apply", "--server-side", "-f", &k.file("held.json", &held)]);
    let mut deleting = k.spawn(&[
        "delete",
        "configmap",
        "held",
        "--wait=true",
        "--timeout=60s",
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let cm = k.json(&["get", "configmap", "held"]);
        if field(&cm, "/metadata/deletionTimestamp").is_string() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "deletion did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        deleting.try_wait().unwrap().is_none(),
        "kubectl delete must still be waiting"
    );
    k.run(&[
        "patch",
        "configmap",
        "held",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    let status = wait_exit(&mut deleting);
    assert!(
        status.success(),
        "kubectl delete --wait finished successfully"
    );
    let gone = k.command(&["get", "configmap", "held"]).output().unwrap();
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NotFound"));
}

/// A kubectl for `cluster`, with its own cache and file directory.
fn kubectl_for(cluster: &devcluster::DevCluster) -> Kubectl {
    let dir = tempdir();
    Kubectl {
        kubeconfig: cluster.kubeconfig_path().to_path_buf(),
        cache: dir.join("cache"),
        dir,
    }
}

const CASCADE_TIMEOUT: Duration = Duration::from_secs(20);

/// A ReplicaSet of `replicas` pods labelled `app=<name>`, applied with kubectl.
async fn apply_replica_set(k: &Kubectl, name: &str, replicas: i32) {
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}});
    let file = k.file(&format!("{name}.json"), &rs);
    k.run_async(&["apply", "--server-side", "-f", &file]).await;
}

/// Waits until the ReplicaSet has `replicas` pods it controls; returns them.
async fn owned_pods(
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    owner: &k8s_openapi::api::apps::v1::ReplicaSet,
    replicas: usize,
) -> Vec<k8s_openapi::api::core::v1::Pod> {
    use kube::ResourceExt;
    let uid = owner.uid();
    let selector = format!("app={}", owner.name_any());
    testkit::eventually("the ReplicaSet's pods", CASCADE_TIMEOUT, || async {
        let list = pods
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .ok()?;
        let owned: Vec<_> = list
            .items
            .into_iter()
            .filter(|p| {
                p.owner_references()
                    .iter()
                    .any(|r| Some(&r.uid) == uid.as_ref())
            })
            .collect();
        (owned.len() == replicas).then_some(owned)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_foreground_cascade_deletes_the_pods_before_the_replica_set() {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::Pod;
    use kube::ResourceExt;
    use kube::api::{Api, Patch, PatchParams};

    let cluster = common::cluster().await;
    let k = kubectl_for(&cluster);
    let sets: Api<ReplicaSet> = Api::default_namespaced(cluster.client());
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    apply_replica_set(&k, "fg", 3).await;
    let rs = sets.get("fg").await.expect("the ReplicaSet exists");
    let created = owned_pods(&pods, &rs, 3).await;
    // One pod is held by a finalizer, so "the pods still exist" is a state, not a race.
    let held = created[0].name_any();
    let hold = json!({"metadata": {"finalizers": ["example.com/hold"]}});
    pods.patch(&held, &PatchParams::default(), &Patch::Merge(&hold))
        .await
        .unwrap();

    let mut deleting = k.spawn(&[
        "delete",
        "replicaset/fg",
        "--cascade=foreground",
        "--wait=true",
        "--timeout=60s",
    ]);

    testkit::eventually(
        "the ReplicaSet marked for foreground deletion",
        CASCADE_TIMEOUT,
        || async {
            let rs = sets.get("fg").await.ok()?;
            let marked = rs.metadata.deletion_timestamp.is_some()
                && rs.finalizers().iter().any(|f| f == "foregroundDeletion");
            marked.then_some(())
        },
    )
    .await;
    assert!(pods.get_opt(&held).await.unwrap().is_some());
    for pod in &created[1..] {
        let name = pod.name_any();
        testkit::eventually(&format!("{name} deleted"), CASCADE_TIMEOUT, || async {
            pods.get_opt(&name).await.ok()?.is_none().then_some(())
        })
        .await;
    }
    let held_pod = testkit::eventually("the held pod being deleted", CASCADE_TIMEOUT, || async {
        let pod = pods.get(&held).await.ok()?;
        pod.metadata.deletion_timestamp.is_some().then_some(pod)
    })
    .await;
    assert_eq!(held_pod.uid(), created[0].uid());
    let waiting = sets.get("fg").await.expect("the owner waits for its pods");
    assert_eq!(waiting.uid(), rs.uid());
    assert!(
        deleting.try_wait().unwrap().is_none(),
        "kubectl delete --wait is still waiting"
    );

    let release = json!({"metadata": {"finalizers": null}});
    pods.patch(&held, &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
    testkit::eventually(
        "the ReplicaSet gone after its pods",
        CASCADE_TIMEOUT,
        || async {
            let rs = sets.get_opt("fg").await.ok()?;
            let pod = pods.get_opt(&held).await.ok()?;
            match (rs, pod) {
                (None, None) => Some(()),
                (None, Some(_)) => panic!("the ReplicaSet went before its pod"),
                _ => None,
            }
        },
    )
    .await;
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut deleting))
        .await
        .unwrap();
    assert!(status.success(), "kubectl delete finished successfully");
    let left = pods
        .list(&kube::api::ListParams::default().labels("app=fg"))
        .await
        .unwrap();
    assert!(left.items.is_empty(), "no pod recreated: {:?}", left.items);
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(&k.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_orphan_cascade_keeps_the_pods_without_their_owner() {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::Pod;
    use kube::ResourceExt;
    use kube::api::Api;

    let cluster = common::cluster().await;
    let k = kubectl_for(&cluster);
    let sets: Api<ReplicaSet> = Api::default_namespaced(cluster.client());
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    apply_replica_set(&k, "orphans", 2).await;
    let rs = sets.get("orphans").await.expect("the ReplicaSet exists");
    let created = owned_pods(&pods, &rs, 2).await;

    // kubectl waits for the ReplicaSet to be gone, which is after its pods were released.
    k.run_async(&["delete", "replicaset/orphans", "--cascade=orphan"])
        .await;
    assert!(sets.get_opt("orphans").await.unwrap().is_none());
    for pod in &created {
        let kept = pods.get(&pod.name_any()).await.expect("the pod is kept");
        assert_eq!(kept.uid(), pod.uid(), "the same pod, not a replacement");
        assert!(kept.owner_references().is_empty(), "{:?}", kept.metadata);
        assert!(kept.metadata.deletion_timestamp.is_none());
    }
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(&k.dir);
}
