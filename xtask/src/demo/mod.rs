//! `cargo xtask demo`: the whole project on one machine. Builds the binaries, starts devcluster
//! and a tansu broker, installs the CRDs and RBAC, runs every operator as a process, applies
//! `deploy/samples` and walks through one story per operator, checking each outcome against a
//! deadline. Every process it starts is stopped at the end, on an error and on Ctrl-C.
//!
//! - [`output`]: what is printed (plain in `--ci`);
//! - [`processes`]: the started processes, their logs and their cleanup;
//! - [`steps`]: step bookkeeping and polling with deadlines;
//! - [`setup`]: build, cluster, broker, CRDs, operators, samples;
//! - [`story`]: the walk-through, one function per operator;
//! - [`kubectl`], [`http`]: the two ways the demo looks at what happened.
//!
//! docs/demo.md describes the run.

mod http;
mod kubectl;
mod output;
mod processes;
mod rbac;
mod setup;
mod steps;
mod story;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use testkit::kafka::Broker;

use kubectl::Kubectl;
use output::{Mark, Output};
use processes::Processes;
use steps::{Outcome, Steps};

/// How the demo runs.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The cluster: devcluster as a process (the default), or the real control plane.
    pub cluster: localcluster::Flavor,
    /// devcluster's port (0: a free one).
    pub port: u16,
    /// Non-interactive: no colours, fail fast with a non-zero exit naming the failed step.
    pub ci: bool,
    /// After the story, leave everything running until Ctrl-C.
    pub keep_running: bool,
}

/// The steps, in order (their names are what failures and the summary show).
const STEPS: &[&str] = &[
    setup::BUILD,
    setup::CLUSTER,
    setup::KAFKA,
    setup::INSTALL,
    setup::OPERATORS,
    setup::SAMPLES,
    story::KAFKANOTIFY,
    story::APPCONFIG,
    story::PEERING,
    story::COLLECTOR,
    story::TEARDOWN,
    rbac::RBAC,
    story::NES,
];

/// Everything the steps share.
pub(crate) struct Ctx {
    /// The workspace root.
    root: PathBuf,
    /// `target/demo`: kubeconfig, peers file, logs.
    dir: PathBuf,
    /// Where the built binaries are (`<target>/debug`).
    bins: PathBuf,
    kubeconfig: PathBuf,
    kubectl: Kubectl,
    out: Output,
    procs: Processes,
    steps: Steps,
    broker: Option<Broker>,
    /// devcluster's port (0: a free one).
    port: u16,
    /// devcluster's URL, once it serves.
    server: String,
    /// `--keep-running`: the samples stay up, so the teardown and the RBAC check are skipped.
    keep_running: bool,
    /// Which cluster the demo runs on.
    flavor: localcluster::Flavor,
    /// The real control plane, when the demo runs on it (stopped at the cleanup).
    real: Option<localcluster::Cluster>,
}

impl Ctx {
    /// Prints the step's header and starts its clock.
    fn begin(&mut self, name: &'static str, what: &str) {
        let (index, total) = self.steps.begin(name);
        self.out.header(index, total, name, what);
    }

    /// Records the step's outcome; a failure becomes an error naming the step.
    fn end(&mut self, result: anyhow::Result<Option<String>>) -> anyhow::Result<()> {
        let (name, outcome) = self.steps.end(&result);
        match outcome {
            Outcome::Done(d) => {
                self.out
                    .ok(&format!("{name} done in {:.1}s", d.as_secs_f64()));
                Ok(())
            }
            Outcome::Skipped(why) => {
                self.out.line(Mark::Skip, &format!("{name} skipped: {why}"));
                Ok(())
            }
            Outcome::Failed(message) => {
                self.out.line(Mark::Fail, &format!("{name}: {message}"));
                bail!("step `{name}` failed: {message}")
            }
        }
    }

    /// The cluster's audit log (one JSON line per request: devcluster's entries, or
    /// kube-apiserver's audit events).
    fn audit_log(&self) -> PathBuf {
        match self
            .real
            .as_ref()
            .and_then(localcluster::Cluster::audit_log)
        {
            Some(path) => path,
            None => self.dir.join("audit.jsonl"),
        }
    }

    /// The kubeconfig an operator runs with (its ServiceAccount's token).
    fn operator_kubeconfig(&self, name: &str) -> PathBuf {
        self.dir.join(format!("kubeconfig-{name}"))
    }

    /// A binary built by the build step.
    fn bin(&self, name: &str) -> PathBuf {
        self.bins.join(name)
    }

    /// The story, from the build to the last operator.
    async fn run_all(&mut self) -> anyhow::Result<()> {
        self.begin(setup::BUILD, "build every binary (debug)");
        let r = setup::build(self).await;
        self.end(r)?;
        let what = match self.flavor {
            localcluster::Flavor::Dev => "start the development cluster (devcluster)",
            localcluster::Flavor::Real => {
                "start the real control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok)"
            }
        };
        self.begin(setup::CLUSTER, what);
        let r = setup::cluster(self).await;
        self.end(r)?;
        self.begin(setup::KAFKA, "start a tansu Kafka broker for kafkanotify");
        let r = setup::kafka(self).await;
        self.end(r)?;
        self.begin(setup::INSTALL, "apply the CRDs and the operators' RBAC");
        let r = setup::install(self).await;
        self.end(r)?;
        self.begin(setup::OPERATORS, "start every operator as a process");
        let r = setup::operators(self).await;
        self.end(r)?;
        self.begin(setup::SAMPLES, "kubectl apply -k deploy/samples");
        let r = setup::samples(self).await;
        self.end(r)?;
        self.begin(
            story::KAFKANOTIFY,
            "an EdgeApplication migrates; the client prints the new endpoint",
        );
        let r = story::kafkanotify(self).await;
        self.end(r)?;
        self.begin(
            story::APPCONFIG,
            "a ConfigMap changes; the Deployment using it rolls",
        );
        let r = story::appconfig(self).await;
        self.end(r)?;
        self.begin(
            story::PEERING,
            "a KindCustomHttp becomes its children; peer servers answer /ping",
        );
        let r = story::peering(self).await;
        self.end(r)?;
        self.begin(
            story::COLLECTOR,
            "a Collector becomes a Helm release in its tenant namespace",
        );
        let r = story::collector(self).await;
        self.end(r)?;
        self.begin(
            story::TEARDOWN,
            "the samples are deleted; each operator cleans up after them",
        );
        let r = story::teardown(self).await;
        self.end(r)?;
        self.begin(
            rbac::RBAC,
            "each operator's RBAC grants what it used in the story, and no more",
        );
        let r = rbac::check(self).await;
        self.end(r)?;
        self.begin(story::NES, "runtime network configuration");
        let r = story::nes(self).await;
        self.end(r)
    }

    /// Stops the broker and every process, then checks that none is left.
    async fn cleanup(&mut self) -> anyhow::Result<()> {
        let count = self.procs.len() + usize::from(self.broker.is_some());
        self.out.plain("");
        self.out
            .plain(&format!("cleaning up: stopping {count} processes"));
        if let Some(mut broker) = self.broker.take() {
            broker.stop().await;
        }
        let killed = self.procs.shutdown().await;
        if let Some(real) = self.real.take() {
            real.shutdown().await;
            self.out.ok("the real control plane is stopped");
        }
        if !killed.is_empty() {
            self.out.line(
                Mark::Skip,
                &format!(
                    "killed after not stopping on SIGTERM: {}",
                    killed.join(", ")
                ),
            );
        }
        let left = self.procs.leftovers_after(Duration::from_secs(5)).await;
        if !left.is_empty() {
            bail!("still running after cleanup: {}", left.join(", "));
        }
        self.out.ok("every process the demo started has exited");
        Ok(())
    }
}

/// Runs the demo on its own tokio runtime (the rest of xtask is synchronous).
pub fn run(root: &Path, options: Options) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(demo(root, options))
}

async fn demo(root: &Path, options: Options) -> anyhow::Result<()> {
    let out = Output::new(options.ci);
    let dir = root.join("target").join("demo");
    // A fresh directory per run: an old kubeconfig or log must not be mistaken for this run's.
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let kubeconfig = dir.join("kubeconfig");
    let mut ctx = Ctx {
        root: root.to_owned(),
        bins: PathBuf::new(),
        kubectl: Kubectl::new(&kubeconfig)?,
        kubeconfig,
        out,
        procs: Processes::new(&dir.join("logs"))?,
        steps: Steps::new(STEPS),
        broker: None,
        port: options.port,
        server: String::new(),
        keep_running: options.keep_running,
        flavor: options.cluster,
        real: None,
        dir,
    };
    out.plain(&format!(
        "kubecrew demo: {} steps; processes log to {}",
        STEPS.len(),
        ctx.dir.join("logs").display()
    ));

    let finished = tokio::select! {
        r = ctx.run_all() => Ok(r),
        signal = interrupted() => Err(signal),
    };
    let result = finished.unwrap_or_else(|signal| {
        Err(anyhow::anyhow!(
            "interrupted ({signal}) during step `{}`",
            ctx.steps.current().unwrap_or("?")
        ))
    });
    if let Err(e) = &result
        && ctx.steps.failed().is_none()
    {
        // An interrupt or an error outside any step: say it before the cleanup output.
        out.line(Mark::Fail, &format!("{e:#}"));
    }
    let result = match result {
        Ok(()) if options.keep_running => keep_running(&mut ctx).await,
        other => other,
    };
    let cleanup = ctx.cleanup().await;
    out.plain("");
    out.plain("summary:");
    for line in ctx.steps.summary() {
        out.plain(&line);
    }
    match (result, cleanup) {
        (Err(e), _) => {
            let step = ctx.steps.failed().or(ctx.steps.current());
            match step {
                Some(step) => Err(e.context(format!("demo failed at step `{step}`"))),
                None => Err(e),
            }
        }
        (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(())) => {
            out.plain("demo complete");
            Ok(())
        }
    }
}

/// `--keep-running`: print how to look around, then wait for Ctrl-C (or a process dying).
async fn keep_running(ctx: &mut Ctx) -> anyhow::Result<()> {
    let out = ctx.out;
    let kc = ctx.kubeconfig.display().to_string();
    out.plain("");
    out.plain("everything is running; look around with kubectl:");
    out.plain(&format!("  export KUBECONFIG={kc}"));
    for hint in [
        "kubectl get edgeapplications -A",
        "kubectl get appconfigs -A; kubectl get rs -n shop",
        "kubectl get kindcustomhttps,deploy,svc,cm -n net",
        "kubectl get collectors; kubectl get all -n acme",
    ] {
        out.plain(&format!("  {hint}"));
    }
    out.plain(&format!("logs: {}", ctx.dir.join("logs").display()));
    out.plain("press Ctrl-C to stop everything");
    let watch = async {
        loop {
            if let Some(exited) = ctx.procs.exited() {
                return exited;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::select! {
        signal = interrupted() => {
            out.info(&format!("{signal}: stopping"));
            Ok(())
        }
        exited = watch => bail!(
            "{} exited ({}); see {}",
            exited.name,
            exited.status,
            exited.log.display()
        ),
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM, naming it.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return "Ctrl-C";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        _ = term.recv() => "SIGTERM",
    }
}
