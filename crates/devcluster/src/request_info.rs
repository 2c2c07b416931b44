//! What a request asks to do, in the terms authorization and audit use: upstream's
//! `RequestInfo` (`apiserver/pkg/endpoints/request/requestinfo.go`), derived from the method,
//! path and query alone, before the server knows whether the resource exists.

use http::Method;

use crate::route::percent_decode;

/// The authorization attributes of a request, as upstream's `RequestInfoFactory` computes them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestInfo {
    /// Whether the path addresses a resource (`/api/v1/...`, `/apis/g/v/...`); otherwise it is a
    /// non-resource URL (discovery, `/version`, `/healthz`, OpenAPI).
    pub resource_request: bool,
    /// The request path (authorization of non-resource URLs matches on it).
    pub path: String,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`; for
    /// non-resource URLs the lowercase HTTP method.
    pub verb: String,
    /// API group ("" for core).
    pub api_group: String,
    /// API version.
    pub api_version: String,
    /// Plural resource name.
    pub resource: String,
    /// Subresource (`status`, `scale`, `token`, ...), or "".
    pub subresource: String,
    /// Namespace, or "" (cluster scope).
    pub namespace: String,
    /// Object name, or "". Lists and watches selecting one name with the field selector
    /// `metadata.name=` carry that name, as upstream.
    pub name: String,
}

impl RequestInfo {
    /// `resource` or `resource/subresource`, as RBAC rules name it.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// Subresources of a Namespace object addressed as `/api/v1/namespaces/NAME/SUB`.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// Computes the request attributes of `method path?query`.
pub fn parse(method: &Method, path: &str, query: Option<&str>) -> RequestInfo {
    let mut info = RequestInfo {
        resource_request: false,
        path: path.to_owned(),
        verb: method.as_str().to_ascii_lowercase(),
        ..Default::default()
    };
    let parts: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    // `/api/v1` and `/apis/group/version` are discovery documents: non-resource URLs.
    let rest: &[String] = match parts.first().map(String::as_str) {
        Some("api") if parts.len() >= 3 => &parts[1..],
        Some("apis") if parts.len() >= 4 => {
            info.api_group = parts[1].clone();
            &parts[2..]
        }
        _ => return info,
    };
    info.resource_request = true;
    info.api_version = rest[0].clone();
    let mut rest = &rest[1..];
    let watch_param = query.is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "watch" && (v == "true" || v == "1"))
    });
    if rest[0] == "watch" {
        if rest.len() < 2 {
            // Upstream fails the request ("unable to determine kind and namespace"); an empty
            // resource matches no rule but `*`, which is as close as an answer gets.
            info.verb = "watch".into();
            return info;
        }
        info.verb = "watch".into();
        rest = &rest[1..];
    } else {
        info.verb = match *method {
            Method::POST => "create",
            Method::GET | Method::HEAD => "get",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "",
        }
        .into();
    }
    if rest[0] == "namespaces" && rest.len() > 1 {
        info.namespace = rest[1].clone();
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2].as_str()) {
            rest = &rest[2..];
        }
    }
    // resource/name/subresource; anything further is not interpreted.
    if let Some(resource) = rest.first() {
        info.resource = resource.clone();
    }
    if let Some(name) = rest.get(1) {
        info.name = name.clone();
    }
    if let Some(sub) = rest.get(2) {
        info.subresource = sub.clone();
    }
    if info.name.is_empty() && info.verb == "get" {
        info.verb = if watch_param { "watch" } else { "list" }.into();
        if let Some(name) = query.and_then(selected_name) {
            info.name = name;
        }
    } else if !info.name.is_empty() && info.verb == "get" && watch_param {
        // devcluster serves `GET .../NAME?watch=true` as a watch of that object (upstream
        // clients use the field selector form), so it is authorized as one.
        info.verb = "watch".into();
    }
    if info.name.is_empty() && info.verb == "delete" {
        info.verb = "deletecollection".into();
    }
    info
}

/// The name a `fieldSelector` pins with `metadata.name=NAME` (or `==`), as upstream's
/// `RequiresExactMatch` finds it among the selector's terms.
fn selected_name(query: &str) -> Option<String> {
    let selector = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "fieldSelector")
        .map(|(_, v)| v.into_owned())?;
    selector.split(',').find_map(|term| {
        let term = term.trim();
        let value = term
            .strip_prefix("metadata.name==")
            .or_else(|| term.strip_prefix("metadata.name="))?;
        // A name must be a valid path segment to count (upstream's IsValidPathSegmentName).
        let valid =
            !value.is_empty() && value != "." && value != ".." && !value.contains(['/', '%']);
        valid.then(|| value.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: Method, path: &str, query: Option<&str>) -> RequestInfo {
        parse(&method, path, query)
    }

    /// (verb, group, resource, subresource, namespace, name)
    fn attrs(i: &RequestInfo) -> (&str, &str, &str, &str, &str, &str) {
        (
            &i.verb,
            &i.api_group,
            &i.resource,
            &i.subresource,
            &i.namespace,
            &i.name,
        )
    }

    #[test]
    fn verbs_follow_method_name_and_query() {
        let get = info(Method::GET, "/api/v1/namespaces/ns/pods/p", None);
        assert_eq!(attrs(&get), ("get", "", "pods", "", "ns", "p"));
        assert!(get.resource_request);
        assert_eq!(get.api_version, "v1");
        let list = info(Method::GET, "/api/v1/namespaces/ns/pods", Some("limit=5"));
        assert_eq!(list.verb, "list");
        let watch = info(
            Method::GET,
            "/apis/apps/v1/deployments",
            Some("watch=true&resourceVersion=1"),
        );
        assert_eq!(attrs(&watch), ("watch", "apps", "deployments", "", "", ""));
        assert_eq!(
            info(Method::GET, "/api/v1/pods", Some("watch=1")).verb,
            "watch"
        );
        assert_eq!(
            info(Method::GET, "/api/v1/pods", Some("watch=false")).verb,
            "list"
        );
        let legacy = info(Method::GET, "/api/v1/watch/namespaces/ns/pods/p", None);
        assert_eq!(attrs(&legacy), ("watch", "", "pods", "", "ns", "p"));
        assert_eq!(
            info(Method::POST, "/api/v1/namespaces/ns/pods", None).verb,
            "create"
        );
        assert_eq!(
            info(Method::PUT, "/api/v1/namespaces/ns/pods/p", None).verb,
            "update"
        );
        assert_eq!(
            info(Method::PATCH, "/api/v1/namespaces/ns/pods/p", None).verb,
            "patch"
        );
        assert_eq!(
            info(Method::DELETE, "/api/v1/namespaces/ns/pods/p", None).verb,
            "delete"
        );
        assert_eq!(
            info(Method::DELETE, "/api/v1/namespaces/ns/pods", None).verb,
            "deletecollection"
        );
        assert_eq!(
            info(Method::HEAD, "/api/v1/namespaces/ns/pods/p", None).verb,
            "get"
        );
        let named_watch = info(
            Method::GET,
            "/api/v1/namespaces/ns/pods/p",
            Some("watch=true"),
        );
        assert_eq!(named_watch.verb, "watch");
    }

    #[test]
    fn field_selector_on_name_names_the_object() {
        let q = "fieldSelector=metadata.name%3Dweb&watch=true";
        let i = info(Method::GET, "/api/v1/namespaces/ns/configmaps", Some(q));
        assert_eq!(attrs(&i), ("watch", "", "configmaps", "", "ns", "web"));
        let q = "fieldSelector=status.phase%3DRunning,metadata.name%3D%3Dweb";
        assert_eq!(info(Method::GET, "/api/v1/pods", Some(q)).name, "web");
        let q = "fieldSelector=metadata.name%21%3Dweb";
        assert_eq!(info(Method::GET, "/api/v1/pods", Some(q)).name, "");
        let q = "fieldSelector=metadata.name%3Da%2Fb";
        assert_eq!(info(Method::GET, "/api/v1/pods", Some(q)).name, "");
    }

    #[test]
    fn subresources_and_namespaces() {
        let s = info(
            Method::PUT,
            "/apis/apps/v1/namespaces/ns/deployments/web/status",
            None,
        );
        assert_eq!(
            attrs(&s),
            ("update", "apps", "deployments", "status", "ns", "web")
        );
        let t = info(
            Method::POST,
            "/api/v1/namespaces/ns/serviceaccounts/sa/token",
            None,
        );
        assert_eq!(
            attrs(&t),
            ("create", "", "serviceaccounts", "token", "ns", "sa")
        );
        // The Namespace object is in its own namespace, as upstream says.
        let ns = info(Method::GET, "/api/v1/namespaces/ns", None);
        assert_eq!(attrs(&ns), ("get", "", "namespaces", "", "ns", "ns"));
        let fin = info(Method::PUT, "/api/v1/namespaces/ns/finalize", None);
        assert_eq!(
            attrs(&fin),
            ("update", "", "namespaces", "finalize", "ns", "ns")
        );
        let all = info(Method::GET, "/api/v1/namespaces", None);
        assert_eq!(attrs(&all), ("list", "", "namespaces", "", "", ""));
        let node = info(Method::PATCH, "/api/v1/nodes/n1/status", None);
        assert_eq!(attrs(&node), ("patch", "", "nodes", "status", "", "n1"));
        let crd = info(
            Method::GET,
            "/apis/example.com/v1/namespaces/a%20b/widgets",
            None,
        );
        assert_eq!(crd.namespace, "a b");
    }

    #[test]
    fn discovery_and_other_paths_are_non_resource_urls() {
        for path in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps",
            "/apis/apps/v1",
            "/version",
            "/healthz",
            "/openapi/v3/apis/apps/v1",
        ] {
            let i = info(Method::GET, path, None);
            assert!(!i.resource_request, "{path}");
            assert_eq!((i.verb.as_str(), i.path.as_str()), ("get", path));
        }
        assert_eq!(info(Method::POST, "/foo/bar/baz/qux", None).verb, "post");
    }
}
