//! The `MutatingWebhookConfiguration` that sends Pod creations to the webhook: built here
//! ([`desired`], pure), server-side applied at start, and kept as built ([`sync`]): someone
//! changing its caBundle (or anything else the controller sets) or deleting it gets it
//! re-applied at once.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::admission::FailurePolicy;
use crate::template::OPERATOR;

/// The configuration's default name (`--webhook-configuration`).
pub const CONFIGURATION_NAME: &str = "nes-controller";
/// The one webhook's name.
pub const WEBHOOK_NAME: &str = "inject.nes.kubecrew.io";
/// The label every namespace carries with its own name (Kubernetes 1.21+).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// How long the API server waits for an answer; the lookup inside stays well below it.
pub const TIMEOUT_SECONDS: i32 = 5;

/// Where the API server reaches the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Through a Service (the usual deployment).
    Service {
        /// The Service's namespace (the controller's own).
        namespace: String,
        /// The Service's name.
        name: String,
        /// The Service's port.
        port: u16,
        /// The HTTP path.
        path: String,
    },
    /// A URL (`https://...`), for a webhook outside the cluster or tests.
    Url(String),
}

/// The host of a webhook URL (`--webhook-url`), which must be `https://host[:port][/path]`
/// without user information or query, as the API server requires: the name or IP address the
/// serving certificate must carry for the API server to trust it.
pub fn url_host(url: &str) -> Result<String, String> {
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!(
            "{url:?}: the API server calls webhooks over https only"
        ));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "{url:?}: the API server refuses user information in a webhook URL"
        ));
    }
    if uri.query().is_some() {
        return Err(format!(
            "{url:?}: the API server refuses a query in a webhook URL"
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(host.to_owned())
}

/// What the configuration says.
#[derive(Debug, Clone)]
pub struct ConfigSettings {
    /// The configuration's name (cluster-wide: one per controller installation).
    pub name: String,
    /// The one namespace whose pods are sent, when the controller watches only one
    /// (`--namespace`); all namespaces but the excluded ones when `None`.
    pub namespace: Option<String>,
    /// Where to call.
    pub endpoint: Endpoint,
    /// What the API server does when the call fails.
    pub failure_policy: FailurePolicy,
    /// Namespaces whose pods are not sent at all (the controller's own included, so the
    /// controller's pods never wait for themselves).
    pub excluded_namespaces: BTreeSet<String>,
    /// The CA the serving certificate is signed by (PEM).
    pub ca_pem: String,
}

/// The configuration as the controller wants it.
pub fn desired(settings: &ConfigSettings) -> MutatingWebhookConfiguration {
    let (service, url) = match &settings.endpoint {
        Endpoint::Service {
            namespace,
            name,
            port,
            path,
        } => (
            Some(ServiceReference {
                namespace: namespace.clone(),
                name: name.clone(),
                port: Some(i32::from(*port)),
                path: Some(path.clone()),
            }),
            None,
        ),
        Endpoint::Url(url) => (None, Some(url.clone())),
    };
    let mut expressions = Vec::new();
    if let Some(namespace) = &settings.namespace {
        expressions.push(LabelSelectorRequirement {
            key: NAMESPACE_NAME_LABEL.to_owned(),
            operator: "In".to_owned(),
            values: Some(vec![namespace.clone()]),
        });
    }
    if !settings.excluded_namespaces.is_empty() {
        expressions.push(LabelSelectorRequirement {
            key: NAMESPACE_NAME_LABEL.to_owned(),
            operator: "NotIn".to_owned(),
            values: Some(settings.excluded_namespaces.iter().cloned().collect()),
        });
    }
    let namespace_selector = (!expressions.is_empty()).then_some(LabelSelector {
        match_expressions: Some(expressions),
        match_labels: None,
    });
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(settings.name.clone()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_owned(),
                    OPERATOR.to_owned(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![MutatingWebhook {
            name: WEBHOOK_NAME.to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            client_config: WebhookClientConfig {
                ca_bundle: Some(ByteString(settings.ca_pem.as_bytes().to_vec())),
                service,
                url,
            },
            failure_policy: Some(settings.failure_policy.as_str().to_owned()),
            // No objectSelector: the label is on the StatefulSet, not on its pods, so every
            // pod is sent and the webhook looks at the owner.
            namespace_selector,
            reinvocation_policy: Some("Never".to_owned()),
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec![String::new()]),
                api_versions: Some(vec!["v1".to_owned()]),
                operations: Some(vec!["CREATE".to_owned()]),
                resources: Some(vec!["pods".to_owned()]),
                scope: Some("Namespaced".to_owned()),
            }]),
            side_effects: "None".to_owned(),
            timeout_seconds: Some(TIMEOUT_SECONDS),
            ..MutatingWebhook::default()
        }]),
    }
}

/// True when `observed` has every field `desired` sets, with the same value (the server adds
/// defaults such as `matchPolicy`, which do not count as drift).
pub fn in_sync(
    observed: &MutatingWebhookConfiguration,
    desired: &MutatingWebhookConfiguration,
) -> bool {
    let observed = serde_json::to_value(&observed.webhooks).unwrap_or(Value::Null);
    let desired = serde_json::to_value(&desired.webhooks).unwrap_or(Value::Null);
    contains(&observed, &desired)
}

/// `observed` contains `desired`: objects key by key, arrays element by element (same length).
fn contains(observed: &Value, desired: &Value) -> bool {
    match (observed, desired) {
        (Value::Object(o), Value::Object(d)) => d
            .iter()
            .all(|(key, want)| o.get(key).is_some_and(|have| contains(have, want))),
        (Value::Array(o), Value::Array(d)) => {
            o.len() == d.len() && o.iter().zip(d).all(|(have, want)| contains(have, want))
        }
        _ => observed == desired,
    }
}

/// Server-side applies `desired` with the controller's field manager (forced: the controller
/// owns this object).
pub async fn apply(
    client: &kube::Client,
    desired: &MutatingWebhookConfiguration,
) -> Result<(), kube::Error> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    api.patch(
        desired
            .metadata
            .name
            .as_deref()
            .unwrap_or(CONFIGURATION_NAME),
        &PatchParams::apply(OPERATOR).force(),
        &Patch::Apply(desired),
    )
    .await?;
    Ok(())
}

/// Applies `desired` and keeps it so until `shutdown`: a watch on the configuration re-applies
/// it whenever what is stored differs from what was built, or it is deleted. Failed applies
/// are retried with a growing pause (up to 30 s).
pub async fn sync(
    client: kube::Client,
    desired: MutatingWebhookConfiguration,
    shutdown: CancellationToken,
) {
    let name = desired
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| CONFIGURATION_NAME.to_owned());
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, config).boxed();
    let mut retry = Duration::from_millis(250);
    // Applied once up front, so the webhook is registered even before the watch starts.
    let mut needs_apply = true;
    let mut seen_in_list = false;
    loop {
        if needs_apply {
            match apply(&client, &desired).await {
                Ok(()) => {
                    tracing::info!(
                        configuration = %name,
                        "webhook configuration applied"
                    );
                    needs_apply = false;
                    retry = Duration::from_millis(250);
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?retry, "applying the webhook configuration failed");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(Duration::from_secs(30));
                    continue;
                }
            }
        }
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = events.next() => event,
        };
        match event {
            Some(Ok(watcher::Event::Apply(observed) | watcher::Event::InitApply(observed))) => {
                seen_in_list = true;
                if !in_sync(&observed, &desired) {
                    tracing::info!(
                        configuration = %name,
                        "webhook configuration changed by someone else: restoring it"
                    );
                    needs_apply = true;
                }
            }
            Some(Ok(watcher::Event::Delete(_))) => {
                tracing::info!(
                    configuration = %name,
                    "webhook configuration deleted: re-creating it"
                );
                needs_apply = true;
            }
            // A (re)list: an object that is there comes as InitApply; one deleted while the
            // watch was down is noticed by its absence.
            Some(Ok(watcher::Event::Init)) => seen_in_list = false,
            Some(Ok(watcher::Event::InitDone)) => needs_apply |= !seen_in_list,
            Some(Err(e)) => {
                // The watcher recovers by itself (relist); its own backoff is not built in, so
                // pause a little to avoid a hot loop against a failing server.
                tracing::warn!(error = %e, "watching the webhook configuration failed");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(Duration::from_secs(30));
            }
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: Endpoint) -> ConfigSettings {
        ConfigSettings {
            name: CONFIGURATION_NAME.to_owned(),
            namespace: None,
            endpoint,
            failure_policy: FailurePolicy::Ignore,
            excluded_namespaces: BTreeSet::from([
                "kube-system".to_owned(),
                "nes-system".to_owned(),
            ]),
            ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_owned(),
        }
    }

    fn service() -> Endpoint {
        Endpoint::Service {
            namespace: "nes-system".into(),
            name: "nes-controller".into(),
            port: 443,
            path: "/mutate".into(),
        }
    }

    #[test]
    fn the_configuration_is_as_specified() {
        let wire = serde_json::to_value(desired(&settings(service()))).unwrap();
        let hook = &wire["webhooks"][0];
        assert_eq!(wire["metadata"]["name"], CONFIGURATION_NAME);
        assert_eq!(hook["name"], WEBHOOK_NAME);
        assert_eq!(hook["failurePolicy"], "Ignore");
        assert_eq!(hook["sideEffects"], "None");
        assert_eq!(hook["timeoutSeconds"], 5);
        assert_eq!(hook["reinvocationPolicy"], "Never");
        assert_eq!(hook["admissionReviewVersions"], serde_json::json!(["v1"]));
        assert_eq!(
            hook["rules"][0],
            serde_json::json!({"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                               "resources": ["pods"], "scope": "Namespaced"})
        );
        assert_eq!(
            hook["namespaceSelector"]["matchExpressions"][0],
            serde_json::json!({"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                               "values": ["kube-system", "nes-system"]})
        );
        assert!(hook.get("objectSelector").is_none());
        assert_eq!(
            hook["clientConfig"]["service"],
            serde_json::json!({"namespace": "nes-system", "name": "nes-controller", "port": 443, "path": "/mutate"})
        );
        // caBundle is base64 of the PEM on the wire.
        assert!(
            hook["clientConfig"]["caBundle"]
                .as_str()
                .unwrap()
                .starts_with("LS0tLS1CRUdJTi")
        );
    }

    #[test]
    fn a_url_endpoint_and_the_fail_policy() {
        let mut s = settings(Endpoint::Url("https://127.0.0.1:8443/mutate".into()));
        s.failure_policy = FailurePolicy::Fail;
        let wire = serde_json::to_value(desired(&s)).unwrap();
        let hook = &wire["webhooks"][0];
        assert_eq!(hook["clientConfig"]["url"], "https://127.0.0.1:8443/mutate");
        assert!(hook["clientConfig"].get("service").is_none());
        assert_eq!(hook["failurePolicy"], "Fail");
    }

    #[test]
    fn a_controller_of_one_namespace_registers_a_configuration_of_its_own_for_it() {
        let mut s = settings(Endpoint::Url("https://127.0.0.1:8443/mutate".into()));
        s.name = "nes-controller-team".into();
        s.namespace = Some("team".into());
        let wire = serde_json::to_value(desired(&s)).unwrap();
        assert_eq!(wire["metadata"]["name"], "nes-controller-team");
        assert_eq!(
            wire["webhooks"][0]["namespaceSelector"]["matchExpressions"],
            serde_json::json!([
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team"]},
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                 "values": ["kube-system", "nes-system"]}
            ])
        );
    }

    #[test]
    fn a_webhook_url_names_the_host_the_certificate_needs() {
        assert_eq!(
            url_host("https://127.0.0.1:8443/mutate").unwrap(),
            "127.0.0.1"
        );
        assert_eq!(url_host("https://[::1]:8443/mutate").unwrap(), "::1");
        assert_eq!(
            url_host("https://hooks.example.com/mutate").unwrap(),
            "hooks.example.com"
        );
        for (bad, why) in [
            ("http://127.0.0.1:8443/mutate", "https only"),
            ("https://user@127.0.0.1/mutate", "user information"),
            ("https://127.0.0.1/mutate?x=1", "query"),
            ("127.0.0.1:8443", "https only"),
            ("not a url", "not a URL"),
        ] {
            let error = url_host(bad).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn server_defaults_are_not_drift_but_a_new_ca_bundle_is() {
        let want = desired(&settings(service()));
        let mut stored = serde_json::to_value(&want).unwrap();
        stored["webhooks"][0]["matchPolicy"] = "Equivalent".into();
        stored["webhooks"][0]["objectSelector"] = serde_json::json!({});
        stored["metadata"]["resourceVersion"] = "7".into();
        let stored: MutatingWebhookConfiguration = serde_json::from_value(stored).unwrap();
        assert!(in_sync(&stored, &want));

        let mut tampered = stored.clone();
        tampered.webhooks.as_mut().unwrap()[0]
            .client_config
            .ca_bundle = Some(ByteString(b"someone else's CA".to_vec()));
        assert!(!in_sync(&tampered, &want));
        let mut emptied = stored;
        emptied.webhooks = None;
        assert!(!in_sync(&emptied, &want));
    }
}
