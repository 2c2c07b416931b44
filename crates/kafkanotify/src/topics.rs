//! Which topics an EdgeApplication may name. `spec.topic` is written by tenants while the
//! operator publishes (and may create topics) with its own credentials, so the operator's
//! flags decide which topics are acceptable, not the resource.

use std::collections::BTreeSet;

use regex::Regex;

/// The topics the operator publishes to.
#[derive(Debug, Clone)]
pub struct TopicPolicy {
    default: String,
    names: BTreeSet<String>,
    pattern: Option<Regex>,
}

impl TopicPolicy {
    /// `default` is always allowed (it is where resources without `spec.topic` go); so is
    /// every name in `names` and every topic `pattern` matches as a whole.
    pub fn new(
        default: String,
        names: impl IntoIterator<Item = String>,
        pattern: Option<&str>,
    ) -> Result<Self, regex::Error> {
        // Anchored: an allow-list that matched substrings would let `tenant-a` through as
        // `evil-tenant-a-copy`.
        let pattern = pattern
            .map(|p| Regex::new(&format!("^(?:{p})$")))
            .transpose()?;
        Ok(TopicPolicy {
            default,
            names: names.into_iter().filter(|n| !n.is_empty()).collect(),
            pattern,
        })
    }

    /// The topic of resources without `spec.topic`.
    pub fn default_topic(&self) -> &str {
        &self.default
    }

    /// The topic a resource's notifications go to.
    pub fn topic_for(&self, spec_topic: Option<&str>) -> String {
        spec_topic.unwrap_or(&self.default).to_owned()
    }

    /// Whether the operator may publish to `topic`.
    pub fn allows(&self, topic: &str) -> bool {
        topic == self.default
            || self.names.contains(topic)
            || self.pattern.as_ref().is_some_and(|p| p.is_match(topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_default_only_the_default_topic_is_allowed() {
        let p = TopicPolicy::new("moves".into(), [], None).unwrap();
        assert!(p.allows("moves"));
        assert!(!p.allows("other"));
        assert_eq!(p.topic_for(None), "moves");
        assert_eq!(p.topic_for(Some("other")), "other");
    }

    #[test]
    fn lists_and_anchored_patterns_add_topics() {
        let p = TopicPolicy::new(
            "moves".into(),
            ["edge-a".to_owned(), String::new()],
            Some("tenant-[a-z]+"),
        )
        .unwrap();
        assert!(p.allows("edge-a"));
        assert!(p.allows("tenant-b"));
        assert!(
            !p.allows("tenant-b-copy"),
            "the pattern must match the whole name"
        );
        assert!(!p.allows("x-tenant-b"));
        assert!(!p.allows(""));
        assert!(TopicPolicy::new("m".into(), [], Some("(")).is_err());
    }
}
