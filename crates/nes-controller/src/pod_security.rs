//! Pod Security admission and the sidecar: the nes-agent needs `NET_ADMIN` as uid 0 (Kubernetes
//! sets no ambient capabilities, so a non-root process would not hold it), which only the
//! `privileged` Pod Security level allows: `baseline` forbids adding `NET_ADMIN`, `restricted`
//! also requires non-root. A namespace that enforces either refuses every injected pod, so
//! its StatefulSet stops creating pods; this says so where users look.

use std::collections::BTreeMap;

/// The label by which a namespace enforces a Pod Security level.
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// The level a namespace enforces when it is one the sidecar cannot meet (`baseline` or
/// `restricted`); `None` for `privileged` or no label (the cluster's default then decides,
/// which is `privileged` unless an admission configuration says otherwise).
pub fn forbidding_level(namespace_labels: Option<&BTreeMap<String, String>>) -> Option<&str> {
    let level = namespace_labels?.get(ENFORCE_LABEL)?.as_str();
    matches!(level, "baseline" | "restricted").then_some(level)
}

/// The warning for a namespace that enforces `level`.
pub fn warning(namespace: &str, level: &str) -> String {
    format!(
        "namespace {namespace} enforces Pod Security level \"{level}\", which refuses the \
         nes-agent sidecar (it needs NET_ADMIN as uid 0: level \"privileged\"), so its pods will \
         not be created; label the namespace {ENFORCE_LABEL}=privileged, or remove the nes \
         label from the StatefulSet"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(level: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(ENFORCE_LABEL.to_owned(), level.to_owned())])
    }

    #[test]
    fn only_baseline_and_restricted_forbid_the_sidecar() {
        assert_eq!(
            forbidding_level(Some(&labels("baseline"))),
            Some("baseline")
        );
        assert_eq!(
            forbidding_level(Some(&labels("restricted"))),
            Some("restricted")
        );
        assert_eq!(forbidding_level(Some(&labels("privileged"))), None);
        assert_eq!(forbidding_level(Some(&BTreeMap::new())), None);
        assert_eq!(forbidding_level(None), None);
    }

    #[test]
    fn the_warning_says_what_to_do() {
        let w = warning("shop", "baseline");
        assert!(w.contains("shop") && w.contains("\"baseline\""), "{w}");
        assert!(
            w.contains("pod-security.kubernetes.io/enforce=privileged"),
            "{w}"
        );
    }
}
