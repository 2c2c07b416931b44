//! The real `nescli` binary against nes-cliserver (in-process) on the test binary's cluster (the
//! real kube-apiserver with `KUBECREW_CLUSTER=real`, devcluster by default), identified as a pod
//! would be: POD_NAME, POD_NAMESPACE and a token file.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use nes_api::cli::{ConfigurationResponse, StatusResponse, SubscriptionResponse};
use nes_api::crd::{NetworkCare, NetworkConfiguration};
use nes_cliserver::testing::Fixture;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

struct Pod {
    name: &'static str,
    namespace: String,
    server: String,
    token_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Pod {
    /// Pod `name` of the fixture, with a token bound to `token_of`.
    async fn new(f: &Fixture, name: &'static str, token_of: &str) -> Pod {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, f.token(token_of).await).unwrap();
        Pod {
            name,
            namespace: f.namespace.clone(),
            server: f.url.clone(),
            token_file,
            _dir: dir,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_nescli"));
        command
            .args(args)
            .env("POD_NAME", self.name)
            .env("POD_NAMESPACE", &self.namespace)
            .env("NES_SERVER", &self.server)
            .env("NES_TOKEN_FILE", &self.token_file)
            .kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let output = self.command(args).output().await.unwrap();
        (
            output.status.code().expect("exited"),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (code, stdout, stderr) = self.run(args).await;
        assert_eq!(code, 0, "nescli {args:?}: {stderr}");
        stdout
    }
}

/// Whether a line of `text` has exactly these words (columns are padded with spaces).
fn has_row(text: &str, words: &str) -> bool {
    let wanted: Vec<&str> = words.split_whitespace().collect();
    text.lines()
        .any(|line| line.split_whitespace().collect::<Vec<_>>() == wanted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_get_status_and_subscribe() {
    let f = Fixture::start().await;
    let pod = Pod::new(&f, "x-0", "x-0").await;

    let text = pod
        .ok(&[
            "configure",
            "--add-address",
            "eth0=10.1.0.5/24",
            "--add-route",
            "10.2.0.0/16,via=10.1.0.1,metric=5",
        ])
        .await;
    assert!(
        text.starts_with(&format!(
            "Configuration of {}/x-0 (generation 1):",
            f.namespace
        )),
        "{text}"
    );
    assert!(text.contains("address:eth0/10.1.0.5/24"), "{text}");
    assert!(
        has_row(&text, "route:10.2.0.0/16 via=10.1.0.1 metric=5"),
        "{text}"
    );

    // Remove by the form the table shows, add a VLAN; JSON output is the server's answer.
    let raw = pod
        .ok(&[
            "configure",
            "--remove",
            "address:eth0/10.1.0.5/24",
            "--add-vlan",
            "eth0.100",
            "--add-address",
            "eth0.100=10.3.0.5/24",
            "--output",
            "json",
        ])
        .await;
    let answer: ConfigurationResponse = serde_json::from_str(&raw).unwrap();
    assert_eq!(answer.vlans[0].vlan_id, 100);
    assert_eq!(answer.addresses.len(), 1);
    assert_eq!(answer.addresses[0].interface, "eth0.100");
    let cr = Api::<NetworkConfiguration>::namespaced(f.client.clone(), &f.namespace)
        .get("x-0")
        .await
        .unwrap();
    assert_eq!(cr.spec.addresses, answer.addresses);

    let text = pod.ok(&["get"]).await;
    assert!(has_row(&text, "vlan:eth0.100 parent=eth0 id=100"), "{text}");
    let got: ConfigurationResponse =
        serde_json::from_str(&pod.ok(&["get", "-o", "json"]).await).unwrap();
    assert_eq!(got, answer);

    // Status before and after the manager (simulated) records the agent's answer.
    let text = pod.ok(&["status"]).await;
    assert!(
        text.contains("applied none yet") && text.contains("no item results yet"),
        "{text}"
    );
    Api::<NetworkConfiguration>::namespaced(f.client.clone(), &f.namespace)
        .patch_status(
            "x-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "appliedGeneration": answer.generation,
                "results": [
                    {"item": "vlan eth0.100", "state": "applied"},
                    {"item": "route 10.2.0.0/16 table 254", "state": "failed",
                     "message": "Network is unreachable"}
                ],
                "conditions": [{"type": "Degraded", "status": "True", "reason": "ItemsFailed",
                    "message": "1 item failed", "lastTransitionTime": "2025-01-02T03:04:05Z"}]
            }})),
        )
        .await
        .unwrap();
    let text = pod.ok(&["status"]).await;
    assert!(
        has_row(
            &text,
            "route 10.2.0.0/16 table 254 failed Network is unreachable"
        ),
        "{text}"
    );
    assert!(
        has_row(&text, "Degraded True ItemsFailed 1 item failed"),
        "{text}"
    );
    let status: StatusResponse =
        serde_json::from_str(&pod.ok(&["status", "--output", "json"]).await).unwrap();
    assert_eq!(status.applied_generation, Some(answer.generation));

    // Subscribe, show, unsubscribe.
    let text = pod
        .ok(&[
            "subscribe",
            "--callback",
            "http://x-0.x:8080/reports",
            "--pod",
            "x-1",
            "--change",
            "route",
            "--interface",
            "eth0",
        ])
        .await;
    assert!(
        text.contains("reports to http://x-0.x:8080/reports"),
        "{text}"
    );
    assert!(text.contains("owned by:   StatefulSet x"), "{text}");
    let cares = Api::<NetworkCare>::namespaced(f.client.clone(), &f.namespace);
    assert_eq!(cares.get("x-0").await.unwrap().spec.pods.names, ["x-1"]);
    let shown: SubscriptionResponse =
        serde_json::from_str(&pod.ok(&["subscription", "-o", "json"]).await).unwrap();
    assert_eq!(shown.filter.interfaces, ["eth0"]);
    assert_eq!(
        pod.ok(&["unsubscribe"]).await,
        format!("Subscription of {}/x-0 deleted.\n", f.namespace)
    );
    testkit::eventually("NetworkCare deleted", Duration::from_secs(30), || async {
        cares.get_opt("x-0").await.unwrap().is_none().then_some(())
    })
    .await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_tell_refused_usage_and_unreachable_apart() {
    let f = Fixture::start().await;
    let pod = Pod::new(&f, "x-0", "x-0").await;

    // 422: exit 1, one line per error with its field.
    let (code, _, stderr) = pod
        .run(&["configure", "--add-address", "eth0=10.1.0.300/24"])
        .await;
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr,
        "error: add.addresses[0].cidr: \"10.1.0.300/24\" is not a valid CIDR [invalidCidr]\n"
    );
    // 404: exit 1.
    let (code, _, stderr) = pod.run(&["get"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("has no network configuration"), "{stderr}");

    // x-1's token acting as x-0: 403, exit 3, nothing of the token printed.
    let impostor = Pod::new(&f, "x-0", "x-1").await;
    let token = std::fs::read_to_string(&impostor.token_file).unwrap();
    let (code, stdout, stderr) = impostor
        .run(&["configure", "--add-address", "eth0=10.1.0.5/24"])
        .await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains(&format!("may not act on pod {}/x-0", f.namespace)),
        "{stderr}"
    );
    assert!(!stderr.contains(&token[..20]));

    // Unreadable token file: exit 3.
    let (code, _, stderr) = pod
        .run(&["--token-file", "/nonexistent/token", "get"])
        .await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("cannot read the token file"), "{stderr}");

    // Nothing listening: exit 3.
    let (code, _, stderr) = pod.run(&["--server", "http://127.0.0.1:1", "status"]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("cannot reach nes-cliserver"), "{stderr}");

    // Usage errors: exit 2.
    let (code, _, stderr) = pod.run(&["configure", "--add-route", "10.2.0.0/16"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("needs via=GW, dev=IF, or both"), "{stderr}");
    let mut anonymous = pod.command(&["status"]);
    anonymous.env_remove("POD_NAME");
    let output = anonymous.output().await.unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("set POD_NAME"));
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_prints_every_change_until_the_server_stops() {
    let mut f = Fixture::start().await;
    let pod = Pod::new(&f, "x-0", "x-0").await;
    pod.ok(&["configure", "--add-address", "eth0=10.1.0.5/24"])
        .await;

    let mut child = pod
        .command(&["status", "--watch", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let next = async |lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>| {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("a line within 30s")
            .unwrap()?;
        Some(serde_json::from_str::<StatusResponse>(&line).unwrap())
    };
    let first = next(&mut lines).await.expect("the current status");
    assert_eq!(first.applied_generation, None);
    Api::<NetworkConfiguration>::namespaced(f.client.clone(), &f.namespace)
        .patch_status(
            "x-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"appliedGeneration": first.generation}})),
        )
        .await
        .unwrap();
    let second = next(&mut lines).await.expect("the update");
    assert_eq!(second.applied_generation, Some(first.generation));

    f.stop_server().await;
    assert!(next(&mut lines).await.is_none(), "output ends");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("nescli exits")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    f.shutdown().await;
}
