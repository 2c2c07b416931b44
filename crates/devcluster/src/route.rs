//! URL paths of the Kubernetes API, parsed into what they address.

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/version`
    Version,
    /// `/healthz`, `/livez`, `/readyz` (and their sub-checks).
    Health,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`
    ResourceList {
        /// Group ("" for core).
        group: String,
        /// Version.
        version: String,
    },
    /// `/openapi/v2`
    OpenApiV2,
    /// `/openapi/v3`
    OpenApiV3Root,
    /// `/openapi/v3/api/v1` or `/openapi/v3/apis/<group>/<version>`
    OpenApiV3 {
        /// Group ("" for core).
        group: String,
        /// Version.
        version: String,
    },
    /// Anything under a resource.
    Resource(ResourcePath),
}

/// A path under a resource: collection, object, or subresource.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourcePath {
    /// Group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace from `/namespaces/<ns>/`, if any.
    pub namespace: Option<String>,
    /// Plural resource name.
    pub resource: String,
    /// Object name, if addressed.
    pub name: Option<String>,
    /// Subresource (`status`, `scale`, ...), if any.
    pub subresource: Option<String>,
    /// Whether the legacy `/watch/` path prefix was used.
    pub watch_prefix: bool,
}

/// Parses a request path; `None` for paths the server does not serve.
pub fn parse(path: &str) -> Option<Route> {
    let trimmed = path.trim_end_matches('/');
    let segments: Vec<&str> = trimmed.split('/').filter(|s| !s.is_empty()).collect();
    let decoded: Vec<String> = segments.iter().map(|s| percent_decode(s)).collect();
    let s: Vec<&str> = decoded.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["version"] => Some(Route::Version),
        ["healthz" | "livez" | "readyz", ..] => Some(Route::Health),
        ["api"] => Some(Route::CoreVersions),
        ["apis"] => Some(Route::Groups),
        ["apis", group] => Some(Route::Group((*group).to_owned())),
        ["api", version] => Some(Route::ResourceList {
            group: String::new(),
            version: (*version).to_owned(),
        }),
        ["apis", group, version] => Some(Route::ResourceList {
            group: (*group).to_owned(),
            version: (*version).to_owned(),
        }),
        ["openapi", "v2"] | ["swagger.json"] => Some(Route::OpenApiV2),
        ["openapi", "v3"] => Some(Route::OpenApiV3Root),
        ["openapi", "v3", "api", version] => Some(Route::OpenApiV3 {
            group: String::new(),
            version: (*version).to_owned(),
        }),
        ["openapi", "v3", "apis", group, version] => Some(Route::OpenApiV3 {
            group: (*group).to_owned(),
            version: (*version).to_owned(),
        }),
        ["api", version, rest @ ..] => resource("", version, rest),
        ["apis", group, version, rest @ ..] => resource(group, version, rest),
        _ => None,
    }
}

fn resource(group: &str, version: &str, rest: &[&str]) -> Option<Route> {
    let (watch_prefix, rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        _ => (false, rest),
    };
    let mut path = ResourcePath {
        group: group.to_owned(),
        version: version.to_owned(),
        watch_prefix,
        ..Default::default()
    };
    let own = |s: &&str| (*s).to_owned();
    match rest {
        // `/namespaces/<ns>` itself and its subresources address the Namespace object.
        ["namespaces", ns] if group.is_empty() => {
            path.resource = "namespaces".into();
            path.name = Some(own(ns));
        }
        ["namespaces", ns, sub @ ("status" | "finalize")] if group.is_empty() => {
            path.resource = "namespaces".into();
            path.name = Some(own(ns));
            path.subresource = Some(own(sub));
        }
        ["namespaces", ns, resource, tail @ ..] => {
            path.namespace = Some(own(ns));
            path.resource = own(resource);
            match tail {
                [] => {}
                [name] => path.name = Some(own(name)),
                [name, sub] => {
                    path.name = Some(own(name));
                    path.subresource = Some(own(sub));
                }
                _ => return None,
            }
        }
        [resource] => path.resource = own(resource),
        [resource, name] => {
            path.resource = own(resource);
            path.name = Some(own(name));
        }
        [resource, name, sub] => {
            path.resource = own(resource);
            path.name = Some(own(name));
            path.subresource = Some(own(sub));
        }
        _ => return None,
    }
    Some(Route::Resource(path))
}

/// Decodes `%XX` escapes of a path segment.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match parse(path) {
            Some(Route::Resource(r)) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn parses_resource_paths() {
        let r = res("/api/v1/namespaces/default/configmaps/x");
        assert_eq!(
            (
                r.group.as_str(),
                r.namespace.as_deref(),
                r.resource.as_str(),
                r.name.as_deref()
            ),
            ("", Some("default"), "configmaps", Some("x"))
        );
        let r = res("/apis/apps/v1/namespaces/d/deployments/web/scale");
        assert_eq!(r.subresource.as_deref(), Some("scale"));
        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref(), r.namespace),
            ("namespaces", Some("kube-system"), None)
        );
        let r = res("/api/v1/namespaces/x/status");
        assert_eq!(r.subresource.as_deref(), Some("status"));
        let r = res("/apis/example.com/v1/widgets");
        assert_eq!((r.resource.as_str(), r.namespace), ("widgets", None));
        let r = res("/api/v1/watch/namespaces/d/pods");
        assert!(r.watch_prefix);
        let r = res("/api/v1/nodes/n1/status");
        assert_eq!(r.subresource.as_deref(), Some("status"));
        assert_eq!(parse("/apis"), Some(Route::Groups));
        assert_eq!(
            parse("/api/v1"),
            Some(Route::ResourceList {
                group: String::new(),
                version: "v1".into()
            })
        );
        assert_eq!(parse("/nonsense/x"), None);
        assert_eq!(
            res("/api/v1/namespaces/d/configmaps/a%2Fb").name.as_deref(),
            Some("a/b")
        );
    }
}
