//! Step bookkeeping (what ran, how long it took, what was skipped, which step failed) and
//! waiting with a deadline: every outcome the demo shows is polled for, never slept for.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::output::Output;
use super::processes::{Processes, tail};

/// How often a long wait says it is still waiting.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Time between two checks of a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It did what it shows, in this time.
    Done(Duration),
    /// It was left out, for this reason.
    Skipped(String),
    /// It failed with this message.
    Failed(String),
}

/// The steps of one demo run, in order.
#[derive(Debug)]
pub struct Steps {
    names: &'static [&'static str],
    outcomes: Vec<(&'static str, Outcome)>,
    current: Option<(&'static str, Instant)>,
}

impl Steps {
    /// The bookkeeping for the steps `names`, in the order they run.
    pub fn new(names: &'static [&'static str]) -> Self {
        Steps {
            names,
            outcomes: Vec::new(),
            current: None,
        }
    }

    /// Starts `name` and returns its position (1-based) and the number of steps.
    pub fn begin(&mut self, name: &'static str) -> (usize, usize) {
        self.current = Some((name, Instant::now()));
        let index = self
            .names
            .iter()
            .position(|n| *n == name)
            .map_or(self.outcomes.len() + 1, |i| i + 1);
        (index, self.names.len())
    }

    /// Ends the current step: done (with its duration), skipped with a reason, or failed.
    /// Returns the step's name and its outcome.
    pub fn end(&mut self, result: &anyhow::Result<Option<String>>) -> (&'static str, Outcome) {
        let (name, started) = self.current.take().unwrap_or(("?", Instant::now()));
        let outcome = match result {
            Ok(None) => Outcome::Done(started.elapsed()),
            Ok(Some(reason)) => Outcome::Skipped(reason.clone()),
            Err(e) => Outcome::Failed(format!("{e:#}")),
        };
        self.outcomes.push((name, outcome.clone()));
        (name, outcome)
    }

    /// The step that is running (an interrupt names it).
    pub fn current(&self) -> Option<&'static str> {
        self.current.map(|(name, _)| name)
    }

    /// The first failed step, if any.
    pub fn failed(&self) -> Option<&'static str> {
        self.outcomes
            .iter()
            .find(|(_, o)| matches!(o, Outcome::Failed(_)))
            .map(|(name, _)| *name)
    }

    /// One line per step: its outcome, or "not run" for the steps never reached.
    pub fn summary(&self) -> Vec<String> {
        let width = self.names.iter().map(|n| n.len()).max().unwrap_or(0);
        self.names
            .iter()
            .map(|name| {
                let outcome = self
                    .outcomes
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, o)| o);
                let text = match outcome {
                    Some(Outcome::Done(d)) => format!("ok       {:.1}s", d.as_secs_f64()),
                    Some(Outcome::Skipped(why)) => format!("skipped  {why}"),
                    Some(Outcome::Failed(_)) => "FAILED".to_owned(),
                    None if self.current() == Some(*name) => "interrupted".to_owned(),
                    None => "not run".to_owned(),
                };
                format!("  {name:<width$}  {text}")
            })
            .collect()
    }
}

/// Polls `check` until it returns `Some`, failing after `timeout` with a message naming
/// `what`, or at once when `check` fails or one of the demo's processes has exited (with the
/// end of its log). Says every [`HEARTBEAT`] that it is still waiting.
pub async fn poll<T, F, Fut>(
    procs: &mut Processes,
    out: Output,
    what: &str,
    timeout: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let started = Instant::now();
    let mut next_heartbeat = started + HEARTBEAT;
    loop {
        if let Some(exited) = procs.exited() {
            bail!(
                "{} exited ({}) while waiting for {what}; the end of {}:\n{}",
                exited.name,
                exited.status,
                exited.log.display(),
                tail(&exited.log, 15)
            );
        }
        if let Some(value) = check().await? {
            return Ok(value);
        }
        let now = Instant::now();
        if now.duration_since(started) > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        if now >= next_heartbeat {
            out.info(&format!(
                "still waiting for {what} ({}s of {}s)",
                now.duration_since(started).as_secs(),
                timeout.as_secs()
            ));
            next_heartbeat = now + HEARTBEAT;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &["build", "cluster", "story", "nes"];

    #[test]
    fn steps_are_numbered_in_declared_order() {
        let mut steps = Steps::new(NAMES);
        assert_eq!(steps.begin("cluster"), (2, 4));
        assert_eq!(steps.current(), Some("cluster"));
    }

    #[test]
    fn the_summary_shows_each_outcome_and_the_steps_not_reached() {
        let mut steps = Steps::new(NAMES);
        steps.begin("build");
        steps.end(&Ok(None));
        steps.begin("cluster");
        steps.end(&Ok(Some("no root".into())));
        steps.begin("story");
        let (name, outcome) = steps.end(&Err(anyhow::anyhow!("timed out")));
        assert_eq!(name, "story");
        assert_eq!(outcome, Outcome::Failed("timed out".into()));
        assert_eq!(steps.failed(), Some("story"));
        let summary = steps.summary();
        assert!(summary[0].contains("build") && summary[0].contains("ok"));
        assert!(summary[1].ends_with("skipped  no root"));
        assert!(summary[2].ends_with("FAILED"));
        assert!(summary[3].ends_with("not run"));
    }

    #[test]
    fn an_interrupted_step_says_so() {
        let mut steps = Steps::new(NAMES);
        steps.begin("build");
        assert!(steps.summary()[0].ends_with("interrupted"));
        assert_eq!(steps.failed(), None);
    }

    #[tokio::test]
    async fn poll_returns_the_value_or_times_out_naming_what() {
        let dir = std::env::temp_dir().join(format!("xtask-demo-poll-{}", std::process::id()));
        let mut procs = Processes::new(&dir).expect("log dir");
        let out = Output::new(true);
        let mut n = 0;
        let got = poll(
            &mut procs,
            out,
            "three calls",
            Duration::from_secs(10),
            || {
                n += 1;
                let v = (n >= 3).then_some(n);
                async move { Ok(v) }
            },
        )
        .await
        .expect("value");
        assert_eq!(got, 3);
        let err = poll(
            &mut procs,
            out,
            "nothing",
            Duration::from_millis(300),
            || async { Ok(None::<()>) },
        )
        .await
        .expect_err("times out");
        assert_eq!(err.to_string(), "timed out after 300ms waiting for nothing");
        std::fs::remove_dir_all(&dir).ok();
    }
}
