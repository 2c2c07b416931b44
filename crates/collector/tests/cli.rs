//! The binary's own checks, before it talks to any cluster.

use std::process::Command;

#[test]
fn a_namespace_is_refused_because_collectors_are_cluster_scoped() {
    let out = Command::new(env!("CARGO_BIN_EXE_collector"))
        .args(["--namespace", "acme", "--metrics-addr", "127.0.0.1:0"])
        // Nowhere to connect: the refusal must come before any cluster access.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBECREW_NAMESPACE")
        .output()
        .expect("collector runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--namespace acme (or KUBECREW_NAMESPACE) does not apply to collector"),
        "{stderr}"
    );
}

#[test]
fn crd_printing_ignores_the_namespace() {
    let out = Command::new(env!("CARGO_BIN_EXE_collector"))
        .args(["--namespace", "acme", "crd"])
        .output()
        .expect("collector runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("kind: CustomResourceDefinition"));
}
