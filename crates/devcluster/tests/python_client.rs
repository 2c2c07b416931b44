//! The Python `kubernetes` client (a second independent implementation of the wire format)
//! lists and watches against devcluster.

mod common;

use std::process::Command;

const SCRIPT: &str = r#"
import sys, threading
from kubernetes import client, config, watch

config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()

names = [n.metadata.name for n in v1.list_namespace().items]
assert "default" in names and "kube-system" in names, names

v1.create_namespaced_config_map("default", client.V1ConfigMap(
    metadata=client.V1ObjectMeta(name="py", labels={"from": "python"}), data={"k": "1"}))
listed = v1.list_namespaced_config_map("default", label_selector="from=python")
assert [c.metadata.name for c in listed.items] == ["py"], listed.items
rv = listed.metadata.resource_version

def change():
    v1.patch_namespaced_config_map("py", "default", {"data": {"k": "2"}})
    v1.delete_namespaced_config_map("py", "default")

seen = []
w = watch.Watch()
threading.Timer(0.1, change).start()
for event in w.stream(v1.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=20):
    seen.append((event["type"], event["object"].metadata.name, (event["object"].data or {}).get("k")))
    if event["type"] == "DELETED":
        w.stop()
assert seen == [("MODIFIED", "py", "2"), ("DELETED", "py", "2")], seen
print("python client ok")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_lists_and_watches() {
    let python = tokio::task::spawn_blocking(testkit::tools::python)
        .await
        .unwrap()
        .expect("Python client installed");
    let c = common::cluster().await;
    let kubeconfig = c.kubeconfig_path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg("-c")
            .arg(SCRIPT)
            .arg(&kubeconfig)
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "python client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python client ok"));
    c.shutdown().await;
}
