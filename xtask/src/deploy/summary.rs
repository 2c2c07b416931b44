//! What `cargo xtask deploy` prints at the end: objects per kind and each rollout's result.
//! Pure: built from what was applied and what the rollout waits returned.

use std::time::Duration;

use super::manifest::Object;

/// How one Deployment's rollout ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// `kubectl rollout status` returned success.
    Done,
    /// It did not finish within the timeout; kubectl's last words.
    TimedOut(String),
    /// kubectl failed otherwise (e.g. `ProgressDeadlineExceeded`, the Deployment vanished).
    Failed(String),
    /// Not waited for (`--no-wait`, `--dry-run`).
    NotWaited,
}

/// One Deployment and its rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutResult {
    /// `namespace/name`.
    pub deployment: String,
    /// How it ended.
    pub rollout: Rollout,
}

/// Whether kubectl's message says it gave up waiting (as opposed to a rollout that failed).
pub fn is_timeout(kubectl_stderr: &str) -> bool {
    kubectl_stderr.contains("timed out waiting")
}

/// Objects per kind, in the order the kinds were first applied.
pub fn per_kind(objects: &[Object]) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for object in objects {
        match counts.iter_mut().find(|(k, _)| *k == object.kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((object.kind.clone(), 1)),
        }
    }
    counts
}

/// One indented line per kind with its count, aligned.
pub fn kind_table(objects: &[Object]) -> Vec<String> {
    let counts = per_kind(objects);
    let width = counts.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    counts
        .into_iter()
        .map(|(kind, n)| format!("  {kind:<width$}  {n}"))
        .collect()
}

/// The summary's lines. `verb` says what happened to the objects ("applied", "checked by a
/// server-side dry run"); `client_only` and `unchecked` are the dry run's leftovers.
pub fn lines(
    verb: &str,
    applied: &[Object],
    client_only: &[Object],
    unchecked: &[Object],
    rollouts: &[RolloutResult],
    timeout: Duration,
) -> Vec<String> {
    let mut out = vec![format!("{} objects {verb}:", applied.len())];
    out.extend(kind_table(applied));
    if !client_only.is_empty() {
        out.push(format!(
            "{} objects checked client-side only (their namespace does not exist yet, so the server cannot check them without creating it): {}",
            client_only.len(),
            names(client_only)
        ));
    }
    if !unchecked.is_empty() {
        out.push(format!(
            "{} objects not checked (their CRD is not installed yet): {}",
            unchecked.len(),
            names(unchecked)
        ));
    }
    if !rollouts.is_empty() {
        out.push("rollouts:".into());
        let width = rollouts
            .iter()
            .map(|r| r.deployment.len())
            .max()
            .unwrap_or(0);
        for r in rollouts {
            let result = match &r.rollout {
                Rollout::Done => "rolled out".to_owned(),
                Rollout::TimedOut(_) => format!("NOT rolled out within {}s", timeout.as_secs()),
                Rollout::Failed(message) => format!("FAILED: {message}"),
                Rollout::NotWaited => "not waited for".to_owned(),
            };
            out.push(format!(
                "  deployment {:<width$}  {result}",
                r.deployment,
                width = width
            ));
        }
    }
    out
}

/// The error for rollouts that did not finish, naming each Deployment; `None` if all did.
pub fn rollout_error(rollouts: &[RolloutResult], timeout: Duration) -> Option<String> {
    let failed: Vec<String> = rollouts
        .iter()
        .filter_map(|r| match &r.rollout {
            Rollout::TimedOut(message) => Some(format!(
                "deployment {} did not finish rolling out within {}s ({message}); \
                 look at `kubectl describe deployment` and its pods",
                r.deployment,
                timeout.as_secs()
            )),
            Rollout::Failed(message) => Some(format!(
                "deployment {} failed to roll out: {message}",
                r.deployment
            )),
            Rollout::Done | Rollout::NotWaited => None,
        })
        .collect();
    (!failed.is_empty()).then(|| failed.join("; "))
}

fn names(objects: &[Object]) -> String {
    objects
        .iter()
        .map(|o| format!("{}/{}", o.kind, o.display_name()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(kind: &str, name: &str) -> Object {
        Object {
            api_version: "v1".into(),
            kind: kind.into(),
            name: name.into(),
            namespace: Some("ns".into()),
            defines: None,
            yaml: String::new(),
        }
    }

    #[test]
    fn kinds_are_counted_in_first_seen_order() {
        let objects = [
            object("ServiceAccount", "a"),
            object("Role", "a"),
            object("ServiceAccount", "b"),
        ];
        assert_eq!(
            per_kind(&objects),
            [("ServiceAccount".to_owned(), 2), ("Role".to_owned(), 1)]
        );
    }

    #[test]
    fn the_summary_lists_kinds_and_rollouts() {
        let objects = [object("ServiceAccount", "a"), object("Deployment", "op")];
        let rollouts = [
            RolloutResult {
                deployment: "ns/op".into(),
                rollout: Rollout::Done,
            },
            RolloutResult {
                deployment: "ns/slow".into(),
                rollout: Rollout::TimedOut("timed out waiting for the condition".into()),
            },
        ];
        let text = lines(
            "applied",
            &objects,
            &[],
            &[],
            &rollouts,
            Duration::from_secs(5),
        )
        .join("\n");
        assert_eq!(
            text,
            "2 objects applied:\n  ServiceAccount  1\n  Deployment      1\nrollouts:\n  \
             deployment ns/op    rolled out\n  deployment ns/slow  NOT rolled out within 5s"
        );
    }

    #[test]
    fn a_dry_run_says_what_the_server_could_not_check() {
        let text = lines(
            "checked by a server-side dry run",
            &[object("Namespace", "ns")],
            &[object("Role", "r")],
            &[object("Widget", "w")],
            &[],
            Duration::from_secs(5),
        )
        .join("\n");
        assert!(
            text.contains("1 objects checked client-side only"),
            "{text}"
        );
        assert!(text.contains("Role/ns/r"), "{text}");
        assert!(text.contains("not checked (their CRD is not installed yet): Widget/ns/w"));
    }

    #[test]
    fn unfinished_rollouts_are_an_error_naming_them() {
        let done = RolloutResult {
            deployment: "ns/a".into(),
            rollout: Rollout::Done,
        };
        assert_eq!(
            rollout_error(std::slice::from_ref(&done), Duration::from_secs(1)),
            None
        );
        let slow = RolloutResult {
            deployment: "ns/b".into(),
            rollout: Rollout::TimedOut("error: timed out waiting for the condition".into()),
        };
        let broken = RolloutResult {
            deployment: "ns/c".into(),
            rollout: Rollout::Failed("deployment \"c\" exceeded its progress deadline".into()),
        };
        let err = rollout_error(&[done, slow, broken], Duration::from_secs(3)).unwrap();
        assert!(
            err.contains("deployment ns/b did not finish rolling out within 3s"),
            "{err}"
        );
        assert!(err.contains("deployment ns/c failed to roll out"), "{err}");
        assert!(is_timeout("error: timed out waiting for the condition"));
        assert!(!is_timeout(
            "error: deployment \"c\" exceeded its progress deadline"
        ));
    }
}
