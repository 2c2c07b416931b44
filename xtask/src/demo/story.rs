//! The walk-through: one function per operator, each doing what a user would (kubectl patch,
//! run the client) and waiting, with a deadline, for the outcome it then prints. The parsing
//! and rendering it needs are pure functions, tested below.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::process::Command;

use super::kubectl::{Kubectl, condition, text};
use super::setup::{free_port, read};
use super::steps::poll;
use super::{Ctx, http};

/// Step names.
pub const KAFKANOTIFY: &str = "kafkanotify";
pub const APPCONFIG: &str = "appconfig-restarter";
pub const PEERING: &str = "http-peering";
pub const COLLECTOR: &str = "collector";
pub const NES: &str = "nes";
pub const TEARDOWN: &str = "delete";

/// How long an operator may take to act on a change (generous: debug builds on 2 shared
/// cores, and devcluster's pods become Ready after a delay).
const ACT_TIMEOUT: Duration = Duration::from_secs(90);

/// The sample EdgeApplication and where the demo moves it.
const EDGE_NS: &str = "edge";
const EDGE_APP: &str = "carla";
const APP_ID: &str = "carla-server";
const FIRST_NODE: &str = "node-7";
const NEW_NODE: &str = "node-8";
const NEW_HOST: &str = "10.0.8.12";

/// An EdgeApplication migrates and kafkanotify-client prints its new endpoint.
pub async fn kafkanotify(ctx: &mut Ctx) -> anyhow::Result<Option<String>> {
    let kubectl = ctx.kubectl.clone();
    let notified = poll(
        &mut ctx.procs,
        ctx.out,
        "EdgeApplication edge/carla to be announced on Kafka (status.notified)",
        ACT_TIMEOUT,
        || {
            get_where(
                &kubectl,
                &["edgeapplication", EDGE_APP, "-n", EDGE_NS],
                |app| text(app, "/status/notified/edgeNodeId") == Some(FIRST_NODE),
            )
        },
    )
    .await?;
    ctx.out.ok(&format!(
        "kafkanotify announced {APP_ID} on {FIRST_NODE} (topic {}, partition {}, offset {})",
        text(&notified, "/status/notified/topic").unwrap_or("?"),
        notified
            .pointer("/status/notified/partition")
            .unwrap_or(&Value::Null),
        notified
            .pointer("/status/notified/offset")
            .unwrap_or(&Value::Null),
    ));

    let brokers = ctx
        .broker
        .as_ref()
        .map(|b| b.bootstrap())
        .context("the Kafka broker is not running")?;
    let mut cmd = Command::new(ctx.bin("kafkanotify-client"));
    cmd.args(["--kafka-brokers", &brokers, "--app-id", APP_ID])
        // From the start of the topic: the client learns the current location first, as an
        // edge client starting up would, so no migration can slip past before it listens.
        .args(["--from", "earliest"]);
    let log = ctx.procs.spawn("kafkanotify-client", cmd)?;
    ctx.out.info(&format!(
        "started kafkanotify-client --app-id {APP_ID} --from earliest (output: {})",
        log.display()
    ));
    let first = wait_for_client(ctx, &log, "placed", FIRST_NODE).await?;
    ctx.out.ok(&format!(
        "client: {} is at {} {}",
        first.app_id,
        first.edge_node_id.as_deref().unwrap_or("?"),
        first.endpoint.as_deref().unwrap_or("?")
    ));

    let patch = format!(
        r#"{{"spec":{{"edgeNodeId":"{NEW_NODE}","endpoint":{{"host":"{NEW_HOST}","port":2000,"protocol":"TCP"}}}}}}"#
    );
    ctx.out.info(&format!(
        "migration: kubectl patch edgeapplication {EDGE_APP} -n {EDGE_NS} --type merge -p '{patch}'"
    ));
    kubectl
        .run(&[
            "patch",
            "edgeapplication",
            EDGE_APP,
            "-n",
            EDGE_NS,
            "--type",
            "merge",
            "-p",
            &patch,
        ])
        .await?;
    let moved = wait_for_client(ctx, &log, "migrated", NEW_NODE).await?;
    ctx.out.ok(&format!(
        "client printed: {} migrated {} -> {}, new endpoint {}",
        moved.app_id,
        moved.previous_node.as_deref().unwrap_or("?"),
        moved.edge_node_id.as_deref().unwrap_or("?"),
        moved.endpoint.as_deref().unwrap_or("?")
    ));
    ctx.out.block(&moved.line);
    Ok(None)
}

/// Waits until the client's output has a change `event` to `node`.
async fn wait_for_client(
    ctx: &mut Ctx,
    log: &std::path::Path,
    event: &str,
    node: &str,
) -> anyhow::Result<ClientChange> {
    poll(
        &mut ctx.procs,
        ctx.out,
        &format!("kafkanotify-client to print the `{event}` change to {node}"),
        ACT_TIMEOUT,
        || {
            let text = read(log);
            let found = client_changes(&text).into_iter().find(|c| {
                c.app_id == APP_ID && c.event == event && c.edge_node_id.as_deref() == Some(node)
            });
            async move { Ok(found) }
        },
    )
    .await
}

/// One location change as kafkanotify-client prints it (a JSON line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientChange {
    /// The application.
    pub app_id: String,
    /// `placed`, `migrated`, `endpoint-changed` or `removed`.
    pub event: String,
    /// The node it is on now (none after `removed`).
    pub edge_node_id: Option<String>,
    /// `host:port/protocol` now.
    pub endpoint: Option<String>,
    /// The node the client knew before.
    pub previous_node: Option<String>,
    /// The line as printed.
    pub line: String,
}

/// The changes in the client's output; other lines (its warnings on stderr share the log)
/// are skipped.
pub fn client_changes(output: &str) -> Vec<ClientChange> {
    output
        .lines()
        .filter_map(|line| {
            let value: Value = serde_json::from_str(line.trim()).ok()?;
            let endpoint = value.pointer("/location/endpoint").map(|e| {
                format!(
                    "{}:{}/{}",
                    e.get("host").and_then(Value::as_str).unwrap_or("?"),
                    e.get("port").and_then(Value::as_u64).unwrap_or(0),
                    e.get("protocol").and_then(Value::as_str).unwrap_or("TCP"),
                )
            });
            Some(ClientChange {
                app_id: value.get("appId")?.as_str()?.to_owned(),
                event: value.get("event")?.as_str()?.to_owned(),
                edge_node_id: text(&value, "/location/edgeNodeId").map(str::to_owned),
                endpoint,
                previous_node: text(&value, "/previous/edgeNodeId").map(str::to_owned),
                line: line.trim().to_owned(),
            })
        })
        .collect()
}

/// The sample AppConfig's objects.
const SHOP_NS: &str = "shop";
const HASH_ANNOTATION: &str = "/spec/template/metadata/annotations/kubecrew.io~1config-hash";

/// The ConfigMap's data changes and the Deployment using it rolls out a new ReplicaSet.
pub async fn appconfig(ctx: &mut Ctx) -> anyhow::Result<Option<String>> {
    let kubectl = ctx.kubectl.clone();
    // The operator must have recorded what the pods run with, or the edit would be its first
    // sight of the Deployment (recorded, not restarted).
    poll(
        &mut ctx.procs,
        ctx.out,
        "AppConfig shop/web to record the Deployment's config hash",
        ACT_TIMEOUT,
        || get_where(&kubectl, &["appconfig", "web", "-n", SHOP_NS], records_web),
    )
    .await?;
    let before = poll(
        &mut ctx.procs,
        ctx.out,
        "Deployment shop/web to be rolled out",
        ACT_TIMEOUT,
        || get_where(&kubectl, &["deployment", "web", "-n", SHOP_NS], rolled_out),
    )
    .await?;
    let old_hash = text(&before, HASH_ANNOTATION).map(str::to_owned);
    let old_sets = replica_sets(&kubectl).await?;
    ctx.out.ok(&format!(
        "AppConfig web watches ConfigMap web-config; Deployment web runs ReplicaSet {}",
        names(&old_sets)
    ));

    let patch = r#"{"data":{"feature-flags":"checkout=v2"}}"#;
    ctx.out.info(&format!(
        "kubectl patch configmap web-config -n {SHOP_NS} --type merge -p '{patch}'"
    ));
    kubectl
        .run(&[
            "patch",
            "configmap",
            "web-config",
            "-n",
            SHOP_NS,
            "--type",
            "merge",
            "-p",
            patch,
        ])
        .await?;
    let after = poll(
        &mut ctx.procs,
        ctx.out,
        "the Deployment's pod template to get a new kubecrew.io/config-hash",
        ACT_TIMEOUT,
        || {
            let old_hash = old_hash.clone();
            get_where(&kubectl, &["deployment", "web", "-n", SHOP_NS], move |d| {
                let hash = text(d, HASH_ANNOTATION);
                hash.is_some() && hash != old_hash.as_deref()
            })
        },
    )
    .await?;
    let new_hash = text(&after, HASH_ANNOTATION).unwrap_or_default().to_owned();
    ctx.out.ok(&format!(
        "config-hash {} -> {}",
        short(old_hash.as_deref().unwrap_or("(none)")),
        short(&new_hash)
    ));
    poll(
        &mut ctx.procs,
        ctx.out,
        "the new ReplicaSet to roll out",
        ACT_TIMEOUT,
        || get_where(&kubectl, &["deployment", "web", "-n", SHOP_NS], rolled_out),
    )
    .await?;
    let new_sets: BTreeSet<String> = replica_sets(&kubectl)
        .await?
        .difference(&old_sets)
        .cloned()
        .collect();
    if new_sets.is_empty() {
        bail!("the Deployment rolled out without a new ReplicaSet");
    }
    ctx.out.ok(&format!(
        "Deployment web rolled: ReplicaSet {} -> {}",
        names(&old_sets),
        names(&new_sets)
    ));
    Ok(None)
}

/// Whether an AppConfig's status records the Deployment `web` with a hash.
fn records_web(app: &Value) -> bool {
    app.pointer("/status/workloads")
        .and_then(Value::as_array)
        .is_some_and(|ws| {
            ws.iter().any(|w| {
                text(w, "/kind") == Some("Deployment")
                    && text(w, "/name") == Some("web")
                    && text(w, "/hash").is_some()
            })
        })
}

/// Whether a Deployment's current template is fully rolled out: observed, every replica
/// updated and available.
pub fn rolled_out(deployment: &Value) -> bool {
    let int = |p: &str| deployment.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let wanted = deployment
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    int("/status/observedGeneration") >= int("/metadata/generation")
        && int("/status/updatedReplicas") == wanted
        && int("/status/availableReplicas") == wanted
        && int("/status/replicas") == wanted
}

/// The names of the ReplicaSets of the Deployment web.
async fn replica_sets(kubectl: &Kubectl) -> anyhow::Result<BTreeSet<String>> {
    let list = kubectl
        .get(&["replicasets", "-n", SHOP_NS, "-l", "app=web"])
        .await?
        .unwrap_or_default();
    Ok(list
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|rs| text(rs, "/metadata/name").map(str::to_owned))
        .collect())
}

fn names(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// The first 12 characters of a hash.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The sample KindCustomHttp.
const NET_NS: &str = "net";

/// How many local peer servers at most (one per line of the sample's `hostports`).
const MAX_LOCAL_PEERS: usize = 8;

/// The KindCustomHttp's three children exist; peer servers run locally with the peers file
/// the operator rendered and ping each other.
pub async fn peering(ctx: &mut Ctx) -> anyhow::Result<Option<String>> {
    let kubectl = ctx.kubectl.clone();
    let mesh = poll(
        &mut ctx.procs,
        ctx.out,
        "KindCustomHttp net/mesh to be Ready",
        ACT_TIMEOUT,
        || {
            get_where(&kubectl, &["kindcustomhttp", "mesh", "-n", NET_NS], |k| {
                condition(k, "Ready") == Some("True")
            })
        },
    )
    .await?;
    let config_map = kubectl
        .get(&["configmap", "mesh-peers", "-n", NET_NS])
        .await?
        .context("ConfigMap net/mesh-peers is missing")?;
    let service = kubectl
        .get(&["service", "mesh", "-n", NET_NS])
        .await?
        .context("Service net/mesh is missing")?;
    let deployment = kubectl
        .get(&["deployment", "mesh", "-n", NET_NS])
        .await?
        .context("Deployment net/mesh is missing")?;
    let hostports = text(&config_map, "/data/hostports")
        .context("ConfigMap net/mesh-peers has no key hostports")?
        .to_owned();
    let targets = hostports_targets(&hostports);
    ctx.out.ok(&format!(
        "KindCustomHttp mesh Ready ({} of {} replicas): ConfigMap mesh-peers ({} targets), \
         Service mesh (port {}), Deployment mesh",
        mesh.pointer("/status/readyReplicas")
            .unwrap_or(&Value::Null),
        mesh.pointer("/spec/replicaCount").unwrap_or(&Value::Null),
        targets.len(),
        service
            .pointer("/spec/ports/0/port")
            .unwrap_or(&Value::Null),
    ));
    ctx.out.info(&format!(
        "the Deployment runs: http-peer {}",
        deployment
            .pointer("/spec/template/spec/containers/0/args")
            .and_then(Value::as_array)
            .map(|a| a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "))
            .unwrap_or_default()
    ));

    if targets.is_empty() || targets.len() > MAX_LOCAL_PEERS {
        bail!(
            "hostports lists {} targets; the demo runs 1 to {MAX_LOCAL_PEERS} local peers",
            targets.len()
        );
    }
    let addrs = targets
        .iter()
        .map(|_| free_port())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let peers_file = ctx.dir.join("peers").join("hostports");
    std::fs::create_dir_all(peers_file.parent().unwrap_or(&ctx.dir))?;
    let rendered = local_peers_file(&targets, &addrs);
    std::fs::write(&peers_file, &rendered)
        .with_context(|| format!("writing {}", peers_file.display()))?;
    ctx.out.info(&format!(
        "no pods run here, so the demo runs {} http-peer processes on 127.0.0.1 with the \
         ConfigMap's hostports rewritten to their ports ({}):",
        addrs.len(),
        peers_file.display()
    ));
    ctx.out.block(rendered.trim_end());
    for (i, addr) in addrs.iter().enumerate() {
        let mut cmd = Command::new(ctx.bin("http-peer"));
        cmd.arg("--listen")
            .arg(addr.to_string())
            .arg("--peers-file")
            .arg(&peers_file)
            .args(["--interval", "1s", "--timeout", "1s"])
            .arg("--instance")
            .arg(format!("mesh-{i}"));
        ctx.procs.spawn(&format!("http-peer-{i}"), cmd)?;
    }
    for (i, addr) in addrs.iter().copied().enumerate() {
        let pong = poll(
            &mut ctx.procs,
            ctx.out,
            &format!("mesh-{i} to answer /ping on {addr}"),
            ACT_TIMEOUT,
            || async move {
                Ok(match http::get(addr, "/ping", "application/json").await? {
                    Some((200, body)) => Some(body),
                    _ => None,
                })
            },
        )
        .await?;
        ctx.out
            .ok(&format!("GET http://{addr}/ping -> {}", pong.trim()));
    }
    let count = addrs.len();
    for (i, addr) in addrs.iter().copied().enumerate() {
        let peers = poll(
            &mut ctx.procs,
            ctx.out,
            &format!("mesh-{i} to reach every peer (/peers)"),
            ACT_TIMEOUT,
            || async move {
                Ok(match http::get(addr, "/peers", "application/json").await? {
                    Some((200, body)) => {
                        let peers: Value = serde_json::from_str(&body)
                            .with_context(|| format!("/peers of {addr} is not JSON"))?;
                        all_peers_ok(&peers, count).then_some(peers)
                    }
                    _ => None,
                })
            },
        )
        .await?;
        ctx.out.ok(&format!(
            "mesh-{i} /peers: {}",
            peers_summary(&peers).join(", ")
        ));
    }
    Ok(None)
}

/// The `(host, port)` lines of a hostports text, as the peer server reads them (blank lines
/// and `#` comments skipped, whitespace trimmed); malformed lines are left out.
pub fn hostports_targets(hostports: &str) -> Vec<(String, u16)> {
    hostports
        .lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or_default().trim();
            let (host, port) = line.rsplit_once(',')?;
            let port = port.trim().parse::<u16>().ok().filter(|p| *p > 0)?;
            let host = host.trim();
            (!host.is_empty()).then(|| (host.to_owned(), port))
        })
        .collect()
}

/// The peers file of the local peers: target `i` of the ConfigMap becomes `addrs[i]`, with
/// the original as a trailing comment.
pub fn local_peers_file(targets: &[(String, u16)], addrs: &[SocketAddr]) -> String {
    let mut file = String::from("# rendered by cargo xtask demo from ConfigMap net/mesh-peers\n");
    for ((host, port), addr) in targets.iter().zip(addrs) {
        file.push_str(&format!("{},{}  # {host},{port}\n", addr.ip(), addr.port()));
    }
    file
}

/// Whether `/peers` lists `count` targets, each with a successful last ping.
pub fn all_peers_ok(peers: &Value, count: usize) -> bool {
    peers.as_array().is_some_and(|list| {
        list.len() == count
            && list
                .iter()
                .all(|p| p.get("ok").and_then(Value::as_bool) == Some(true))
    })
}

/// `host:port ok 0.4 ms` per peer.
fn peers_summary(peers: &Value) -> Vec<String> {
    peers
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}:{} ok {:.1} ms",
                p.get("host").and_then(Value::as_str).unwrap_or("?"),
                p.get("port").and_then(Value::as_u64).unwrap_or(0),
                p.get("latencyMs").and_then(Value::as_f64).unwrap_or(0.0)
            )
        })
        .collect()
}

/// The objects of a release of the project's chart (`deploy/charts/collector`) for release
/// `<name>`: `(kind, name)`. Its ServiceMonitor only exists where the CRD is served.
const RELEASE_OBJECTS: &[(&str, &str)] = &[
    ("ServiceAccount", ""),
    ("Secret", "-config"),
    ("Deployment", ""),
    ("Service", ""),
];

/// The Collector's Helm release is deployed in the tenant namespace.
pub async fn collector(ctx: &mut Ctx) -> anyhow::Result<Option<String>> {
    let kubectl = ctx.kubectl.clone();
    let collector = poll(
        &mut ctx.procs,
        ctx.out,
        "Collector acme-otel to be Ready",
        ACT_TIMEOUT,
        || {
            get_where(&kubectl, &["collector", "acme-otel"], |c| {
                condition(c, "Ready") == Some("True")
            })
        },
    )
    .await?;
    let namespace = text(&collector, "/status/targetNamespace")
        .context("Collector acme-otel has no status.targetNamespace")?
        .to_owned();
    ctx.out.ok(&format!(
        "Collector acme-otel Ready: Helm release {} (chart {}-{}, revision {}) in namespace \
         {namespace}",
        text(&collector, "/status/releaseName").unwrap_or("?"),
        text(&collector, "/status/chart").unwrap_or("?"),
        text(&collector, "/status/deployedVersion").unwrap_or("?"),
        collector
            .pointer("/status/helmRevision")
            .and_then(Value::as_i64)
            .unwrap_or(0),
    ));
    for (kind, ns, name) in release_objects(&collector) {
        let ns = ns.unwrap_or_default();
        let object = kubectl
            .get(&[kind.as_str(), name.as_str(), "-n", ns.as_str()])
            .await?
            .with_context(|| format!("{kind} {ns}/{name} of the release does not exist"))?;
        let owner = text(&object, "/metadata/annotations/meta.helm.sh~1release-name");
        if owner != Some(name_of_release(&collector)) {
            bail!("{kind} {ns}/{name} does not carry the release's helm annotation: {owner:?}");
        }
        ctx.out.ok(&format!(
            "{kind} {ns}/{name} (helm release {})",
            name_of_release(&collector)
        ));
    }
    Ok(None)
}

fn name_of_release(collector: &Value) -> &str {
    text(collector, "/status/releaseName").unwrap_or_default()
}

/// `(kind, namespace, name)` of each object of the Collector's release of the project's chart,
/// from its status.
pub fn release_objects(collector: &Value) -> Vec<(String, Option<String>, String)> {
    let (Some(release), Some(namespace)) = (
        text(collector, "/status/releaseName"),
        text(collector, "/status/targetNamespace"),
    ) else {
        return Vec::new();
    };
    RELEASE_OBJECTS
        .iter()
        .map(|(kind, suffix)| {
            (
                (*kind).to_owned(),
                Some(namespace.to_owned()),
                format!("{release}{suffix}"),
            )
        })
        .collect()
}

/// The samples' custom resources are deleted; each operator finishes its cleanup (finalizers,
/// owned children, the `removed` announcement) before the objects go.
pub async fn teardown(ctx: &mut Ctx) -> anyhow::Result<Option<String>> {
    if ctx.keep_running {
        return Ok(Some(
            "--keep-running leaves the samples up to look at".to_owned(),
        ));
    }
    let kubectl = ctx.kubectl.clone();
    let collector = kubectl
        .get(&["collector", "acme-otel"])
        .await?
        .context("Collector acme-otel is missing")?;
    let released = release_objects(&collector);
    // The Collector is cluster-scoped (it names its tenant namespace).
    let resources: [&[&str]; 4] = [
        &["edgeapplication", EDGE_APP, "-n", EDGE_NS],
        &["appconfig", "web", "-n", "shop"],
        &["kindcustomhttp", "mesh", "-n", NET_NS],
        &["collector", "acme-otel"],
    ];
    for args in &resources {
        // --wait=false: the finalizers are the operators' to run; the polls below wait for it.
        let mut delete = vec!["delete"];
        delete.extend_from_slice(args);
        delete.push("--wait=false");
        let printed = kubectl.run(&delete).await?;
        ctx.out.block(printed.trim_end());
    }
    for args in &resources {
        let what = match args {
            [kind, name, _, ns] => format!("{kind} {ns}/{name}"),
            _ => args.join(" "),
        };
        poll(
            &mut ctx.procs,
            ctx.out,
            &format!("{what} to be gone"),
            ACT_TIMEOUT,
            || {
                let kubectl = kubectl.clone();
                async move { Ok(kubectl.get(args).await?.is_none().then_some(())) }
            },
        )
        .await?;
        ctx.out.ok(&format!("{what} deleted"));
    }

    let mut children: Vec<(String, Option<String>, String)> = [
        ("ConfigMap", "mesh-peers"),
        ("Service", "mesh"),
        ("Deployment", "mesh"),
    ]
    .iter()
    .map(|(kind, name)| {
        (
            (*kind).to_owned(),
            Some(NET_NS.to_owned()),
            (*name).to_owned(),
        )
    })
    .collect();
    children.extend(released);
    for (kind, ns, name) in &children {
        let mut args = vec![kind.as_str(), name.as_str()];
        if let Some(ns) = ns {
            args.extend(["-n", ns.as_str()]);
        }
        let place = ns.as_deref().map(|n| format!("{n}/")).unwrap_or_default();
        poll(
            &mut ctx.procs,
            ctx.out,
            &format!("{kind} {place}{name} to be cleaned up"),
            ACT_TIMEOUT,
            || {
                let kubectl = kubectl.clone();
                let args = args.clone();
                async move { Ok(kubectl.get(&args).await?.is_none().then_some(())) }
            },
        )
        .await?;
    }
    ctx.out.ok(&format!(
        "their children are gone too: {} objects (the KindCustomHttp's three, the Collector's \
         release)",
        children.len()
    ));

    let log = ctx.procs.log_path("kafkanotify-client");
    let removed = poll(
        &mut ctx.procs,
        ctx.out,
        "kafkanotify-client to print the `removed` change",
        ACT_TIMEOUT,
        || {
            let found = client_changes(&read(&log))
                .into_iter()
                .find(|c| c.app_id == APP_ID && c.event == "removed");
            async move { Ok(found) }
        },
    )
    .await?;
    ctx.out
        .ok("kafkanotify announced the removal; the client printed:");
    ctx.out.block(&removed.line);
    Ok(None)
}

/// nes needs root and network namespaces for real agents; the demo points at its
/// end-to-end test rather than reconfiguring this machine's network.
pub async fn nes(ctx: &mut Ctx) -> anyhow::Result<Option<String>> {
    let root = nix::unistd::geteuid().is_root();
    let netns = root && netns_works().await;
    let reason = if netns {
        ctx.out.info(
            "this machine has root and `ip netns`: nes's walk-through with real agents in \
             network namespaces is `cargo test -p nescli --test e2e -- --nocapture`",
        );
        "not part of the demo (it changes the host's network namespaces); run \
         `cargo test -p nescli --test e2e`"
    } else if root {
        "`ip netns` does not work here; nes's agents need network namespaces (see docs/nes.md)"
    } else {
        "needs root and network namespaces (nes's agents configure links, addresses and routes); \
         as root run `cargo test -p nescli --test e2e`"
    };
    Ok(Some(reason.to_owned()))
}

/// Whether `ip netns list` runs.
async fn netns_works() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let ip: Option<PathBuf> = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|p| p.join("ip"))
        .find(|p| p.is_file());
    let Some(ip) = ip else {
        return false;
    };
    Command::new(ip)
        .args(["netns", "list"])
        .kill_on_drop(true)
        .output()
        .await
        .is_ok_and(|o| o.status.success())
}

/// `kubectl get <args>` once; the object when it exists and `pred` holds.
async fn get_where(
    kubectl: &Kubectl,
    args: &[&str],
    pred: impl Fn(&Value) -> bool,
) -> anyhow::Result<Option<Value>> {
    Ok(kubectl.get(args).await?.filter(|v| pred(v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_lines_become_changes_and_other_lines_are_skipped() {
        let output = concat!(
            "2026-01-01T00:00:00Z WARN kafkanotify::follow: fetch failed, retrying\n",
            r#"{"appId":"carla-server","event":"placed","location":{"edgeNodeId":"node-7","endpoint":{"host":"10.0.7.12","port":2000,"protocol":"TCP"}},"previous":null,"eventId":"u.1.placed","partition":1,"offset":0,"time":"t"}"#,
            "\n",
            r#"{"appId":"carla-server","event":"migrated","location":{"edgeNodeId":"node-8","endpoint":{"host":"10.0.8.12","port":2000,"protocol":"TCP"}},"previous":{"edgeNodeId":"node-7","endpoint":{"host":"10.0.7.12","port":2000,"protocol":"TCP"}},"eventId":"u.2.migrated","partition":1,"offset":1,"time":"t"}"#,
            "\n",
            r#"{"appId":"carla-server","event":"removed","location":null,"previous":null,"eventId":"u.removed","partition":1,"offset":2,"time":"t"}"#,
            "\n{\"unrelated\": true}\n",
        );
        let changes = client_changes(output);
        assert_eq!(changes.len(), 3);
        assert_eq!(changes[0].event, "placed");
        assert_eq!(changes[0].previous_node, None);
        let moved = &changes[1];
        assert_eq!(moved.event, "migrated");
        assert_eq!(moved.edge_node_id.as_deref(), Some("node-8"));
        assert_eq!(moved.endpoint.as_deref(), Some("10.0.8.12:2000/TCP"));
        assert_eq!(moved.previous_node.as_deref(), Some("node-7"));
        assert!(
            moved
                .line
                .starts_with(r#"{"appId":"carla-server","event":"migrated""#)
        );
        assert_eq!(changes[2].edge_node_id, None);
        assert_eq!(changes[2].endpoint, None);
    }

    #[test]
    fn hostports_are_read_like_the_peer_server_reads_them() {
        let text = "# peers\n\nmesh-0.mesh.net.svc,8080\n  10.0.0.7 , 9090  # trailing\n\
                    [fd00::7],8080\nno-comma\nbad,port\nzero,0\n";
        assert_eq!(
            hostports_targets(text),
            vec![
                ("mesh-0.mesh.net.svc".to_owned(), 8080),
                ("10.0.0.7".to_owned(), 9090),
                ("[fd00::7]".to_owned(), 8080),
            ]
        );
    }

    #[test]
    fn the_local_peers_file_maps_each_target_to_a_local_port() {
        let targets = vec![("mesh-0.x".to_owned(), 8080), ("mesh-1.x".to_owned(), 8080)];
        let addrs: Vec<SocketAddr> = vec![
            "127.0.0.1:40001".parse().unwrap(),
            "127.0.0.1:40002".parse().unwrap(),
        ];
        let file = local_peers_file(&targets, &addrs);
        // What the peer server will read from it: exactly the local addresses.
        assert_eq!(
            hostports_targets(&file),
            vec![
                ("127.0.0.1".to_owned(), 40001),
                ("127.0.0.1".to_owned(), 40002)
            ]
        );
        assert!(file.contains("127.0.0.1,40001  # mesh-0.x,8080\n"));
    }

    #[test]
    fn peers_are_ok_only_when_all_are_listed_and_answered() {
        let ok = json!([{"host": "127.0.0.1", "port": 1, "ok": true, "latencyMs": 0.42},
                        {"host": "127.0.0.1", "port": 2, "ok": true, "latencyMs": 0.5}]);
        assert!(all_peers_ok(&ok, 2));
        assert!(!all_peers_ok(&ok, 3));
        let pending = json!([{"host": "127.0.0.1", "port": 1, "ok": true},
                             {"host": "127.0.0.1", "port": 2, "ok": false, "checkedAt": null}]);
        assert!(!all_peers_ok(&pending, 2));
        assert!(!all_peers_ok(&json!({}), 0));
        assert_eq!(peers_summary(&ok)[0], "127.0.0.1:1 ok 0.4 ms");
    }

    #[test]
    fn a_rollout_is_done_when_every_replica_is_updated_and_available() {
        let mut d = json!({
            "metadata": {"generation": 2},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1,
                       "availableReplicas": 2}
        });
        assert!(!rolled_out(&d));
        d["status"] = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
                             "availableReplicas": 2});
        assert!(rolled_out(&d));
        d["metadata"]["generation"] = json!(3);
        assert!(!rolled_out(&d), "a template change not yet observed");
    }

    #[test]
    fn the_release_objects_come_from_the_status() {
        let c = json!({"status": {"releaseName": "otel-main", "targetNamespace": "acme"}});
        assert_eq!(
            release_objects(&c),
            vec![
                (
                    "ServiceAccount".into(),
                    Some("acme".into()),
                    "otel-main".into()
                ),
                (
                    "Secret".into(),
                    Some("acme".into()),
                    "otel-main-config".into()
                ),
                ("Deployment".into(), Some("acme".into()), "otel-main".into()),
                ("Service".into(), Some("acme".into()), "otel-main".into()),
            ]
        );
        assert!(release_objects(&json!({"status": {}})).is_empty());
    }

    #[test]
    fn records_web_needs_a_hash_for_the_deployment() {
        let app = json!({"status": {"workloads": [
            {"kind": "Deployment", "name": "web", "hash": "abc"}]}});
        assert!(records_web(&app));
        assert!(!records_web(&json!({"status": {"workloads": [
            {"kind": "StatefulSet", "name": "web", "hash": "abc"}]}})));
        assert!(!records_web(&json!({})));
    }
}
