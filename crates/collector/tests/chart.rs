//! The collector Helm chart (`deploy/charts/collector`) and the test charts under
//! `tests/charts`, checked with the real helm built from `tools/helm`: golden renderings (the
//! chart's equivalents of the renderer's golden tests), its values schema, and `helm lint`.
//!
//! Depends on testkit and std only, not on the collector library.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testkit::gotools;

/// The release and namespace of every rendering (the renderer's `otel-main` in `acme`).
const RELEASE: &str = "otel-main";
const NAMESPACE: &str = "acme";
/// Makes the ServiceMonitor kind "served" for `helm template`.
const SERVICE_MONITOR_API: &str = "monitoring.coreos.com/v1/ServiceMonitor";

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `<workspace>/deploy/charts/collector`.
fn collector_chart() -> PathBuf {
    manifest_dir().join("../../deploy/charts/collector")
}

/// `tests/charts/<name>`.
fn test_chart(name: &str) -> PathBuf {
    manifest_dir().join("tests/charts").join(name)
}

/// `tests/golden/chart`: `<case>.values.yaml` in, `<case>.yaml` out.
fn golden_dir() -> PathBuf {
    manifest_dir().join("tests/golden")
}

/// Runs helm with its config, cache and data directories of its own (nothing of the user's
/// helm setup leaks in) and without a cluster.
fn helm(args: &[&str]) -> Output {
    let helm = gotools::binary(&gotools::HELM, "helm")
        .unwrap_or_else(|e| panic!("helm from tools/helm: {e}"));
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("chart-helm-home");
    Command::new(&helm)
        .args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", helm.display()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs helm and returns its standard output; fails the test with helm's error otherwise.
fn helm_ok(args: &[&str]) -> String {
    let out = helm(args);
    assert!(
        out.status.success(),
        "helm {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        text(&out.stderr),
        text(&out.stdout)
    );
    text(&out.stdout)
}

/// Runs helm expecting a failure and returns its standard error.
fn helm_err(args: &[&str]) -> String {
    let out = helm(args);
    assert!(
        !out.status.success(),
        "helm {} succeeded but should fail:\n{}",
        args.join(" "),
        text(&out.stdout)
    );
    text(&out.stderr)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Renders the collector chart with `tests/golden/chart/<case>.values.yaml` and compares the
/// output with `tests/golden/chart/<case>.yaml` (`UPDATE_GOLDEN=1` rewrites it).
fn golden(case: &str) {
    let chart = collector_chart();
    let values = golden_dir().join(format!("{case}.values.yaml"));
    let rendered = helm_ok(&[
        "template",
        RELEASE,
        path_str(&chart),
        "--namespace",
        NAMESPACE,
        "--api-versions",
        SERVICE_MONITOR_API,
        "-f",
        path_str(&values),
    ]);
    let path = golden_dir().join(format!("{case}.yaml"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &rendered)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading {} (UPDATE_GOLDEN=1 writes it): {e}",
            path.display()
        )
    });
    if rendered != expected {
        let first = rendered
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| rendered.lines().count().min(expected.lines().count()));
        panic!(
            "golden {} differs from helm's rendering from line {} (UPDATE_GOLDEN=1 to accept):\n\
             --- rendered\n{rendered}\n--- expected\n{expected}",
            path.display(),
            first + 1
        );
    }
}

#[test]
fn golden_defaults() {
    golden("defaults");
}

#[test]
fn golden_overlay_and_values() {
    golden("overlay-and-values");
}

#[test]
fn golden_no_service_monitor() {
    golden("no-service-monitor");
}

#[test]
fn the_service_monitor_needs_its_kind_served() {
    let chart = collector_chart();
    let rendered = helm_ok(&["template", RELEASE, path_str(&chart), "-n", NAMESPACE]);
    assert!(rendered.contains("kind: Deployment"), "{rendered}");
    assert!(!rendered.contains("kind: ServiceMonitor"), "{rendered}");
}

#[test]
fn a_misspelt_value_is_refused_by_the_schema() {
    let chart = collector_chart();
    let stderr = helm_err(&["template", RELEASE, path_str(&chart), "--set", "replica=2"]);
    assert!(
        stderr.contains("additional properties 'replica' not allowed"),
        "{stderr}"
    );
    let stderr = helm_err(&[
        "template",
        RELEASE,
        path_str(&chart),
        "--set",
        "serviceMonitor.intervall=10s",
    ]);
    assert!(
        stderr.contains("at '/serviceMonitor': additional properties 'intervall' not allowed"),
        "{stderr}"
    );
}

#[test]
fn out_of_range_values_are_refused_by_the_schema() {
    let chart = collector_chart();
    let stderr = helm_err(&[
        "template",
        RELEASE,
        path_str(&chart),
        "--set",
        "replicas=-1",
    ]);
    assert!(stderr.contains("at '/replicas': minimum"), "{stderr}");
    let stderr = helm_err(&[
        "template",
        RELEASE,
        path_str(&chart),
        "--set",
        "service.ports[0].name=otlp,service.ports[0].port=70000,service.ports[0].protocol=HTTP",
    ]);
    assert!(
        stderr.contains("at '/service/ports/0/port': maximum"),
        "{stderr}"
    );
    assert!(
        stderr.contains("at '/service/ports/0/protocol': value must be one of"),
        "{stderr}"
    );
}

#[test]
fn helm_lint_passes_for_every_chart() {
    let with_values: [(PathBuf, &[&str]); 4] = [
        (collector_chart(), &[]),
        (test_chart("node-agent"), &[]),
        (test_chart("broken"), &[]),
        (test_chart("broken"), &["--set", "broken=true"]),
    ];
    for (chart, values) in &with_values {
        let mut args = vec!["lint", "--strict", path_str(chart)];
        args.extend_from_slice(values);
        let out = helm_ok(&args);
        assert!(out.contains("0 chart(s) failed"), "{out}");
    }
}

#[test]
fn the_test_charts_render_what_their_tests_rely_on() {
    let node_agent = test_chart("node-agent");
    let rendered = helm_ok(&[
        "template",
        "agent",
        path_str(&node_agent),
        "--set",
        "logLevel=debug",
    ]);
    for expected in [
        "kind: ConfigMap",
        "name: \"agent-config\"",
        "kind: DaemonSet",
        "image: \"registry.local/node-agent:1.0.0\"",
        "- operator: Exists",
        "value: \"debug\"",
    ] {
        assert!(rendered.contains(expected), "{expected}:\n{rendered}");
    }
    let stderr = helm_err(&[
        "template",
        "agent",
        path_str(&node_agent),
        "--set",
        "logLevel=trace",
    ]);
    assert!(stderr.contains("at '/logLevel'"), "{stderr}");

    // The schema and helm let the broken Deployment through: only the API server refuses it.
    let broken = test_chart("broken");
    let valid = helm_ok(&["template", "app", path_str(&broken)]);
    assert!(valid.contains("containerPort: 8080"), "{valid}");
    let refused = helm_ok(&["template", "app", path_str(&broken), "--set", "broken=true"]);
    assert!(refused.contains("containerPort: 70000"), "{refused}");
}
