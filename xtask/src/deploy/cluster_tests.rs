//! deploy, undeploy and installer against devcluster (in-process, real HTTP, kubectl as the
//! client). devcluster's simulated kubelet makes pods Ready, so rollouts finish; with it off, a
//! rollout can only time out.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use devcluster::{DevCluster, Options, controllers::ControllerOptions};
use serde_json::Value;

use super::apply::deploy;
use super::delete::undeploy;
use super::manifest::{self, ImageOverride};
use super::summary::Rollout;
use super::{DeployOptions, InstallerOptions, UndeployOptions, installer};
use crate::kubectl::{Kubectl, Target};

const NS: &str = "kubecrew-system";
const EDGE_CRDS: &[&str] = &[
    "edgeapplications.kafkanotify.kubecrew.io",
    "kindcustomhttps.peering.kubecrew.io",
];

fn root() -> PathBuf {
    testkit::tools::workspace_root()
}

fn target(cluster: &DevCluster) -> Target {
    Target {
        kubeconfig: Some(cluster.kubeconfig_path().to_owned()),
        context: None,
        cache_dir: None,
    }
}

fn deploy_options(cluster: &DevCluster, overlay: &str) -> DeployOptions {
    DeployOptions {
        overlay: overlay.into(),
        images: ImageOverride::default(),
        dry_run: false,
        timeout: Duration::from_secs(60),
        wait: false,
        force_conflicts: false,
        target: target(cluster),
    }
}

fn undeploy_options(cluster: &DevCluster, overlay: &str) -> UndeployOptions {
    UndeployOptions {
        overlay: overlay.into(),
        keep_crds: false,
        timeout: Duration::from_secs(60),
        target: target(cluster),
    }
}

/// `kubectl get <args> -o json`, `None` when not found.
async fn get(cluster: &DevCluster, args: &[&str]) -> Option<Value> {
    let kubectl = Kubectl::new(target(cluster)).unwrap();
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    let out = kubectl
        .output(&full, None, Duration::from_secs(60))
        .await
        .unwrap();
    if !out.success {
        assert!(out.stderr.contains("NotFound"), "{}", out.stderr);
        return None;
    }
    Some(serde_json::from_str(&out.stdout).unwrap())
}

/// The names of a list's items.
async fn names(cluster: &DevCluster, args: &[&str]) -> Vec<String> {
    let list = get(cluster, args).await.expect("a list");
    let mut names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// Polls until the namespace is gone (its finalization is asynchronous).
async fn namespace_gone(cluster: &DevCluster, name: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if get(cluster, &["namespace", name]).await.is_none() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_dry_run_rollout_and_undeploy_on_devcluster() {
    let cluster = DevCluster::start(Options::default()).await.unwrap();
    let root = root();

    // A dry run on an empty cluster: checked, nothing created.
    let dry = deploy(
        &root,
        &DeployOptions {
            dry_run: true,
            ..deploy_options(&cluster, "edge")
        },
    )
    .await
    .expect("dry run");
    let text = dry.summary.join("\n");
    assert!(text.contains("nothing changed"), "{text}");
    // The namespace does not exist yet: its contents are checked client-side, and said so.
    assert!(text.contains("checked client-side only"), "{text}");
    assert!(get(&cluster, &["namespace", NS]).await.is_none());
    for crd in EDGE_CRDS {
        assert!(get(&cluster, &["crd", crd]).await.is_none(), "{crd}");
    }
    assert!(
        get(&cluster, &["clusterrole", "kubecrew-kafkanotify"])
            .await
            .is_none()
    );

    // The real thing, with another registry and tag.
    let images = ImageOverride {
        registry: Some("registry.invalid/kc".into()),
        tag: Some("1.2.3-test".into()),
    };
    let report = deploy(
        &root,
        &DeployOptions {
            images: images.clone(),
            ..deploy_options(&cluster, "edge")
        },
    )
    .await
    .expect("deploy");
    assert!(
        report
            .rollouts
            .iter()
            .all(|r| r.rollout == Rollout::NotWaited)
    );
    assert!(get(&cluster, &["namespace", NS]).await.is_some());
    assert!(
        get(&cluster, &["clusterrole", "kubecrew-kafkanotify"])
            .await
            .is_some()
    );
    for crd in EDGE_CRDS {
        let crd = get(&cluster, &["crd", crd]).await.expect("CRD created");
        let established = crd["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True");
        assert!(established, "{crd}");
    }
    assert_eq!(
        names(&cluster, &["serviceaccounts", "-n", NS]).await,
        ["http-peering", "kafkanotify"]
    );
    assert_eq!(
        names(&cluster, &["roles", "-n", NS]).await,
        [
            "http-peering-leader-election",
            "kafkanotify-leader-election"
        ]
    );
    let deployments = get(&cluster, &["deployments", "-n", NS]).await.unwrap();
    let images: Vec<&str> = deployments["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        images,
        [
            "registry.invalid/kc/http-peering:1.2.3-test",
            "registry.invalid/kc/kafkanotify:1.2.3-test"
        ]
    );
    let managed = get(
        &cluster,
        &[
            "deployment",
            "kafkanotify",
            "-n",
            NS,
            "--show-managed-fields",
        ],
    )
    .await
    .unwrap();
    let managers = managed["metadata"]["managedFields"].to_string();
    assert!(managers.contains("kubecrew-xtask"), "{managers}");

    // Now everything exists: a dry run checks it all on the server (and changes nothing, not
    // even the image).
    let dry = deploy(
        &root,
        &DeployOptions {
            dry_run: true,
            ..deploy_options(&cluster, "edge")
        },
    )
    .await
    .expect("second dry run");
    let text = dry.summary.join("\n");
    assert!(!text.contains("client-side"), "{text}");
    let image = get(&cluster, &["deployment", "kafkanotify", "-n", NS])
        .await
        .unwrap()["spec"]["template"]["spec"]["containers"][0]["image"]
        .clone();
    assert_eq!(image, "registry.invalid/kc/kafkanotify:1.2.3-test");

    // Re-applied with the default images and waited for: the simulated kubelet makes the pods
    // Ready, so both rollouts finish.
    let report = deploy(
        &root,
        &DeployOptions {
            wait: true,
            ..deploy_options(&cluster, "edge")
        },
    )
    .await
    .expect("deploy and wait");
    assert_eq!(report.rollouts.len(), 2);
    assert!(
        report.rollouts.iter().all(|r| r.rollout == Rollout::Done),
        "{:?}",
        report.rollouts
    );
    let text = report.summary.join("\n");
    assert!(
        text.contains(&format!("deployment {NS}/kafkanotify")) && text.contains("rolled out"),
        "{text}"
    );

    // Another overlay shares the namespace: undeploying edge keeps it, with its Deployment.
    deploy(&root, &deploy_options(&cluster, "collector"))
        .await
        .expect("deploy collector");
    let report = undeploy(
        &root,
        &UndeployOptions {
            keep_crds: true,
            ..undeploy_options(&cluster, "edge")
        },
    )
    .await
    .expect("undeploy edge, keeping the CRDs");
    assert_eq!(report.kept_namespaces.len(), 1, "{report:?}");
    assert!(
        report.kept_namespaces[0]
            .1
            .contains("kubecrew-system/collector")
    );
    assert_eq!(report.kept_crds.len(), 2);
    assert_eq!(
        names(&cluster, &["deployments", "-n", NS]).await,
        ["collector"]
    );
    assert!(
        get(&cluster, &["clusterrole", "kubecrew-kafkanotify"])
            .await
            .is_none()
    );
    for crd in EDGE_CRDS {
        assert!(get(&cluster, &["crd", crd]).await.is_some(), "{crd} kept");
    }

    // Without --keep-crds the CRDs go too (the rest is already absent: not an error).
    undeploy(&root, &undeploy_options(&cluster, "edge"))
        .await
        .expect("undeploy edge again");
    for crd in EDGE_CRDS {
        assert!(
            get(&cluster, &["crd", crd]).await.is_none(),
            "{crd} deleted"
        );
    }
    // The last overlay in the namespace takes it along.
    undeploy(&root, &undeploy_options(&cluster, "collector"))
        .await
        .expect("undeploy collector");
    assert!(namespace_gone(&cluster, NS).await, "{NS} deleted");
    assert!(
        get(&cluster, &["crd", "collectors.collector.kubecrew.io"])
            .await
            .is_none()
    );
    cluster.shutdown().await;
}

/// Without a kubelet no pod becomes Ready: the wait must end at the timeout with an error
/// naming the Deployment, not hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_that_cannot_finish_times_out_naming_the_deployment() {
    let cluster = DevCluster::start(Options {
        controllers: ControllerOptions {
            pods: false,
            ..ControllerOptions::default()
        },
        ..Options::default()
    })
    .await
    .unwrap();
    let started = Instant::now();
    let report = deploy(
        &root(),
        &DeployOptions {
            wait: true,
            timeout: Duration::from_secs(3),
            ..deploy_options(&cluster, "kafkanotify")
        },
    )
    .await
    .expect("applied");
    assert!(
        matches!(report.rollouts[0].rollout, Rollout::TimedOut(_)),
        "{report:?}"
    );
    let text = report.summary.join("\n");
    assert!(text.contains("NOT rolled out within 3s"), "{text}");
    let err = report
        .result()
        .expect_err("the rollout cannot finish")
        .to_string();
    assert!(
        err.contains("deployment kubecrew-system/kafkanotify did not finish rolling out within 3s"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // The objects were applied all the same.
    assert!(
        get(&cluster, &["deployment", "kafkanotify", "-n", NS])
            .await
            .is_some()
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installer_file_applies_as_its_header_says() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("dist").join("install.yaml");
    let (path, objects) = installer(
        &root(),
        &InstallerOptions {
            overlay: "all".into(),
            images: ImageOverride {
                registry: None,
                tag: Some("0.9.0".into()),
            },
            output: output.clone(),
        },
    )
    .await
    .expect("installer");
    assert_eq!(path, output);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("# kubecrew installer"), "{text}");
    assert!(text.contains(&format!(
        "kubectl apply --server-side -f {}",
        output.display()
    )));
    let parsed = manifest::parse(&text).unwrap();
    assert_eq!(parsed, objects);
    let crds = parsed.iter().take_while(|o| o.is_crd()).count();
    assert_eq!(crds, parsed.iter().filter(|o| o.is_crd()).count());
    assert!(crds >= 6, "{crds} CRDs");
    let kinds: std::collections::BTreeSet<&str> = parsed.iter().map(|o| o.kind.as_str()).collect();
    for kind in [
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "Deployment",
    ] {
        assert!(kinds.contains(kind), "{kind} in {kinds:?}");
    }
    assert!(text.contains("image: ghcr.io/kubecrew/nes-controller:0.9.0"));
    assert!(!text.contains(":0.1.0"));

    // What the header says works on a cluster.
    let cluster = DevCluster::start(Options::default()).await.unwrap();
    let kubectl = Kubectl::new(target(&cluster)).unwrap();
    let path = path.to_string_lossy();
    kubectl
        .run(
            &["apply", "--server-side", "-f", &path],
            None,
            Duration::from_secs(120),
        )
        .await
        .expect("kubectl apply --server-side -f install.yaml");
    let deployments = parsed.iter().filter(|o| o.kind == "Deployment").count();
    assert_eq!(
        names(&cluster, &["deployments", "-n", NS]).await.len(),
        deployments
    );
    cluster.shutdown().await;
}
