//! A pod's subscription request as a `NetworkCare` spec, and back (pure).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use nes_api::ApiError;
use nes_api::cli::{
    Callback, Change, Filter, Owner, PodSelection, SubscriptionRequest, SubscriptionResponse,
};
use nes_api::crd::{self, ChangeKind, NetworkCare, NetworkCareSpec};

use crate::status::time_text;

fn invalid(code: &str, field: &str, message: String) -> ApiError {
    ApiError {
        code: code.to_owned(),
        message: format!("{field}: {message}"),
        field: Some(field.to_owned()),
    }
}

/// Whether `text` starts with `prefix`, ASCII case ignored. Compares bytes: slicing `text` at
/// `prefix.len()` would panic when that falls inside a multi-byte character (`http://é`).
fn starts_with_ignore_ascii_case(text: &str, prefix: &str) -> bool {
    text.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// The `NetworkCare` spec for `request` of pod `pod`, or every problem with it. An empty pod
/// selection means the calling pod itself.
pub fn spec(pod: &str, request: &SubscriptionRequest) -> Result<NetworkCareSpec, Vec<ApiError>> {
    let mut errors = Vec::new();
    let url = request.callback.url.trim();
    let scheme_ok = ["http://", "https://"]
        .iter()
        .any(|s| url.len() > s.len() && starts_with_ignore_ascii_case(url, s));
    if !scheme_ok || url.contains(char::is_whitespace) {
        errors.push(invalid(
            "invalidUrl",
            "callback.url",
            format!("{url:?} is not an http:// or https:// URL"),
        ));
    }
    for (i, name) in request.pods.names.iter().enumerate() {
        if name.is_empty() {
            errors.push(invalid(
                "invalidName",
                &format!("pods.names[{i}]"),
                "a pod name is not empty".into(),
            ));
        }
    }
    for key in request.pods.selector.keys() {
        if key.is_empty() {
            errors.push(invalid(
                "invalidSelector",
                "pods.selector",
                "label keys are not empty".into(),
            ));
        }
    }
    for (i, interface) in request.filter.interfaces.iter().enumerate() {
        if interface.is_empty() {
            errors.push(invalid(
                "invalidName",
                &format!("filter.interfaces[{i}]"),
                "an interface name is not empty".into(),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let pods = if request.pods.is_empty() {
        crd::PodSelection {
            names: vec![pod.to_owned()],
            selector: None,
        }
    } else {
        crd::PodSelection {
            names: request.pods.names.clone(),
            selector: (!request.pods.selector.is_empty()).then(|| LabelSelector {
                match_labels: Some(request.pods.selector.clone()),
                match_expressions: None,
            }),
        }
    };
    Ok(NetworkCareSpec {
        pods,
        filter: crd::StatusFilter {
            interfaces: request.filter.interfaces.clone(),
            changes: request.filter.changes.iter().map(|c| to_kind(*c)).collect(),
        },
        callback: crd::Callback {
            url: url.to_owned(),
        },
    })
}

fn to_kind(change: Change) -> ChangeKind {
    match change {
        Change::Link => ChangeKind::Link,
        Change::Address => ChangeKind::Address,
        Change::Route => ChangeKind::Route,
        Change::Result => ChangeKind::Result,
    }
}

fn from_kind(kind: ChangeKind) -> Change {
    match kind {
        ChangeKind::Link => Change::Link,
        ChangeKind::Address => Change::Address,
        ChangeKind::Route => Change::Route,
        ChangeKind::Result => Change::Result,
    }
}

/// The answer for a stored `NetworkCare`. A selector's `matchExpressions` (which this API does
/// not write) are not shown.
pub fn response(namespace: &str, care: &NetworkCare) -> SubscriptionResponse {
    let status = care.status.clone().unwrap_or_default();
    let owner = care
        .metadata
        .owner_references
        .as_deref()
        .and_then(|owners| owners.iter().find(|o| o.controller == Some(true)))
        .map(|o| Owner {
            kind: o.kind.clone(),
            name: o.name.clone(),
        });
    SubscriptionResponse {
        namespace: namespace.to_owned(),
        pod: care.metadata.name.clone().unwrap_or_default(),
        owner,
        pods: PodSelection {
            names: care.spec.pods.names.clone(),
            selector: care
                .spec
                .pods
                .selector
                .as_ref()
                .and_then(|s| s.match_labels.clone())
                .unwrap_or_default(),
        },
        filter: Filter {
            interfaces: care.spec.filter.interfaces.clone(),
            changes: care
                .spec
                .filter
                .changes
                .iter()
                .map(|k| from_kind(*k))
                .collect(),
        },
        callback: Callback {
            url: care.spec.callback.url.clone(),
        },
        deliveries: status.deliveries,
        failures: status.failures,
        last_delivery_time: status.last_delivery_time.as_ref().map(time_text),
        last_error: status.last_error,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn request(url: &str) -> SubscriptionRequest {
        SubscriptionRequest {
            callback: Callback { url: url.into() },
            ..Default::default()
        }
    }

    #[test]
    fn an_empty_selection_follows_the_calling_pod() {
        let spec = spec("x-0", &request("http://app:8080/report")).unwrap();
        assert_eq!(spec.pods.names, ["x-0"]);
        assert_eq!(spec.pods.selector, None);
        assert_eq!(spec.callback.url, "http://app:8080/report");
    }

    #[test]
    fn selection_and_filter_are_carried_over_and_back() {
        let mut req = request("https://app/report");
        req.pods.names = vec!["x-1".into()];
        req.pods.selector = BTreeMap::from([("app".to_owned(), "db".to_owned())]);
        req.filter.interfaces = vec!["eth0".into()];
        req.filter.changes = vec![Change::Route, Change::Result];
        let spec = spec("x-0", &req).unwrap();
        assert_eq!(spec.filter.changes, [ChangeKind::Route, ChangeKind::Result]);
        let care = NetworkCare::new("x-0", spec);
        let back = response("team", &care);
        assert_eq!(back.pods, req.pods);
        assert_eq!(back.filter, req.filter);
        assert_eq!(back.callback, req.callback);
        assert_eq!(back.pod, "x-0");
    }

    #[test]
    fn bad_requests_name_every_field() {
        let mut req = request("ftp://app/");
        req.pods.names = vec![String::new()];
        req.filter.interfaces = vec![String::new()];
        let errors = spec("x-0", &req).unwrap_err();
        let fields: Vec<_> = errors.iter().filter_map(|e| e.field.as_deref()).collect();
        assert_eq!(
            fields,
            ["callback.url", "pods.names[0]", "filter.interfaces[0]"]
        );
        assert!(spec("x-0", &request("http://")).is_err());
        assert!(spec("x-0", &request("http://a b/")).is_err());
    }

    #[test]
    fn multi_byte_characters_at_the_scheme_boundary_do_not_panic() {
        // "https://" is 8 bytes; byte 8 of these falls inside a two- or four-byte character.
        for url in [
            "http://é",
            "http://ééé/x",
            "http://😀",
            "é",
            "ö://x/y",
            "HTTPS://é.example/",
        ] {
            let _ = spec("x-0", &request(url));
        }
        assert!(
            spec("x-0", &request("http://é")).is_ok(),
            "a host in any script"
        );
        assert!(spec("x-0", &request("HTTP://é.example/")).is_ok());
        let errors = spec("x-0", &request("ö://x/y")).unwrap_err();
        assert_eq!(errors[0].field.as_deref(), Some("callback.url"));
        assert!(starts_with_ignore_ascii_case("Https://x", "https://"));
        assert!(!starts_with_ignore_ascii_case("http:/", "http://"));
    }
}
