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
