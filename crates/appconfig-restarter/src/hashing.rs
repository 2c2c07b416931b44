//! Hashes that stand for configuration without revealing it: SHA-256 over an object's data
//! (optionally only some keys), and over the objects a workload uses.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::resource::ConfigRef;

/// SHA-256 (hex) of an object's `data` and `binaryData`, keys sorted, restricted to `keys` when
/// given. Each entry is length-prefixed, so no two different maps hash alike by concatenation.
pub fn data_hash<'a>(
    data: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    binary: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    keys: Option<&[String]>,
) -> String {
    let wanted = |k: &str| keys.is_none_or(|keys| keys.iter().any(|w| w == k));
    let entries: BTreeMap<(&str, u8), &[u8]> = data
        .into_iter()
        .map(|(k, v)| ((k, 0), v))
        .chain(binary.into_iter().map(|(k, v)| ((k, 1), v)))
        .filter(|((k, _), _)| wanted(k))
        .collect();
    let mut hasher = Sha256::new();
    for ((key, section), value) in entries {
        feed(&mut hasher, key.as_bytes());
        hasher.update([section]);
        feed(&mut hasher, value);
    }
    hex::encode(hasher.finalize())
}

/// SHA-256 (hex) over the objects a workload uses and their data hashes: the value of the
/// workload's `kubecrew.io/config-hash` annotation.
pub fn workload_hash<'a>(uses: impl IntoIterator<Item = (&'a ConfigRef, &'a str)>) -> String {
    let sorted: BTreeMap<&ConfigRef, &str> = uses.into_iter().collect();
    let mut hasher = Sha256::new();
    for (object, hash) in sorted {
        feed(&mut hasher, object.kind.as_str().as_bytes());
        feed(&mut hasher, object.name.as_bytes());
        feed(&mut hasher, hash.as_bytes());
    }
    hex::encode(hasher.finalize())
}

fn feed(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::ConfigKind;

    fn h(data: &[(&str, &str)], keys: Option<&[String]>) -> String {
        data_hash(data.iter().map(|(k, v)| (*k, v.as_bytes())), [], keys)
    }

    #[test]
    fn order_does_not_matter_content_does() {
        let a = h(&[("x", "1"), ("y", "2")], None);
        assert_eq!(a, h(&[("y", "2"), ("x", "1")], None));
        assert_ne!(a, h(&[("x", "1"), ("y", "3")], None));
        assert_ne!(h(&[("ab", "c")], None), h(&[("a", "bc")], None));
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn keys_restrict_what_counts() {
        let keys = vec!["x".to_owned()];
        assert_eq!(
            h(&[("x", "1"), ("y", "2")], Some(&keys)),
            h(&[("x", "1"), ("y", "changed")], Some(&keys))
        );
        assert_ne!(h(&[("x", "1")], Some(&keys)), h(&[("x", "2")], Some(&keys)));
    }

    #[test]
    fn binary_data_is_distinct_from_data() {
        let text = data_hash([("k", &b"v"[..])], [], None);
        let binary = data_hash([], [("k", &b"v"[..])], None);
        assert_ne!(text, binary);
    }

    #[test]
    fn workload_hashes_follow_their_objects() {
        let a = ConfigRef {
            kind: ConfigKind::ConfigMap,
            name: "a".into(),
        };
        let b = ConfigRef {
            kind: ConfigKind::Secret,
            name: "a".into(),
        };
        let one = workload_hash([(&a, "h1"), (&b, "h2")]);
        assert_eq!(one, workload_hash([(&b, "h2"), (&a, "h1")]));
        assert_ne!(one, workload_hash([(&a, "h1"), (&b, "h3")]));
        assert_ne!(one, workload_hash([(&a, "h1")]));
    }
}
