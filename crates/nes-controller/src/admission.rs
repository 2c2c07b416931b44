//! The webhook's decisions, pure: which Pod CREATE requests need their StatefulSet looked up
//! ([`plan`]), whether the pod gets the sidecar ([`decide`]), and the answer sent back
//! ([`respond`], [`respond_error`]). The HTTP server and the lookup are in [`crate::webhook`].

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};

use crate::inject::{self, InjectError, SidecarSettings};

/// What the webhook does when it cannot decide (the StatefulSet lookup failed): the same
/// choice as the configuration's `failurePolicy`, which covers the API server failing to
/// reach the webhook at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FailurePolicy {
    /// Admit the pod without the sidecar (and log and count it): a webhook problem never
    /// blocks the cluster's workloads.
    #[default]
    #[value(name = "Ignore")]
    Ignore,
    /// Refuse the pod: a labelled workload never runs without its sidecar.
    #[value(name = "Fail")]
    Fail,
}

impl FailurePolicy {
    /// The `failurePolicy` value of the webhook configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Ignore => "Ignore",
            FailurePolicy::Fail => "Fail",
        }
    }
}

/// Why a pod is admitted unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Not a CREATE of a v1 Pod (the configuration asks for no other requests).
    NotPodCreate,
    /// The request carries no pod.
    NoObject,
    /// The namespace is excluded.
    ExcludedNamespace,
    /// The controller watches one namespace (`--namespace`) and this is another: its
    /// StatefulSet reconciler would never make the token Secret the sidecar mounts there.
    OtherNamespace,
    /// The pod's controlling owner is not a StatefulSet.
    NotFromStatefulSet,
    /// The StatefulSet is gone or is another one of the same name (its UID differs).
    OwnerNotFound,
    /// The StatefulSet does not carry the label.
    NotLabelled,
    /// The pod already has the sidecar the controller adds (never injected twice).
    AlreadyInjected,
}

impl Skip {
    /// A short label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Skip::NotPodCreate => "not-pod-create",
            Skip::NoObject => "no-object",
            Skip::ExcludedNamespace => "excluded-namespace",
            Skip::OtherNamespace => "other-namespace",
            Skip::NotFromStatefulSet => "not-from-statefulset",
            Skip::OwnerNotFound => "owner-not-found",
            Skip::NotLabelled => "not-labelled",
            Skip::AlreadyInjected => "already-injected",
        }
    }
}

/// What to do with a request before any I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Admit unchanged.
    Skip(Skip),
    /// Look up StatefulSet `name` in `namespace`, then [`decide`].
    LookUp {
        /// The pod's namespace.
        namespace: String,
        /// The controlling StatefulSet's name.
        name: String,
    },
}

/// The outcome for one pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Admit with these RFC 6902 operations (the sidecar).
    Inject(json_patch::Patch),
    /// Admit unchanged.
    Skip(Skip),
    /// Admit unchanged, with a warning: the pod has names the sidecar needs.
    Refused(InjectError),
}

/// The controlling owner of `pod` when it is an `apps/v1` StatefulSet: its name and UID.
pub fn controlling_statefulset(pod: &Pod) -> Option<(&str, &str)> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .filter(|r| r.kind == "StatefulSet" && r.api_version == "apps/v1")
        .map(|r| (r.name.as_str(), r.uid.as_str()))
}

/// Whether `request` needs its StatefulSet looked up. Cheap checks first, so pods that can never
/// be injected cost no API call. `only` is the one namespace the controller watches, if it
/// watches one; `excluded` are never injected.
pub fn plan(
    request: &AdmissionRequest<Pod>,
    only: Option<&str>,
    excluded: &BTreeSet<String>,
) -> Plan {
    let is_pod = request.kind.group.is_empty()
        && request.kind.version == "v1"
        && request.kind.kind == "Pod"
        && request.sub_resource.as_deref().unwrap_or("").is_empty();
    if !is_pod || request.operation != Operation::Create {
        return Plan::Skip(Skip::NotPodCreate);
    }
    let Some(pod) = request.object.as_ref() else {
        return Plan::Skip(Skip::NoObject);
    };
    // The request's namespace is authoritative: the object may not carry one on create.
    let namespace = request
        .namespace
        .clone()
        .or_else(|| pod.metadata.namespace.clone())
        .unwrap_or_default();
    if excluded.contains(&namespace) {
        return Plan::Skip(Skip::ExcludedNamespace);
    }
    if only.is_some_and(|only| only != namespace) {
        return Plan::Skip(Skip::OtherNamespace);
    }
    if inject::metadata_says_injected(Some(&pod.metadata)) {
        return Plan::Skip(Skip::AlreadyInjected);
    }
    match controlling_statefulset(pod) {
        Some((name, _)) => Plan::LookUp {
            namespace,
            name: name.to_owned(),
        },
        None => Plan::Skip(Skip::NotFromStatefulSet),
    }
}

/// Whether `pod` gets the sidecar, given its controlling StatefulSet as looked up (`None` when
/// it does not exist).
pub fn decide(pod: &Pod, owner: Option<&StatefulSet>, settings: &SidecarSettings) -> Decision {
    let Some((_, uid)) = controlling_statefulset(pod) else {
        return Decision::Skip(Skip::NotFromStatefulSet);
    };
    let Some(owner) = owner.filter(|sts| sts.metadata.uid.as_deref() == Some(uid)) else {
        return Decision::Skip(Skip::OwnerNotFound);
    };
    if !inject::wants_sidecar(owner.metadata.labels.as_ref()) {
        return Decision::Skip(Skip::NotLabelled);
    }
    let Some(spec) = pod.spec.as_ref() else {
        // The API server rejects a pod without spec anyway; nothing to inject into.
        return Decision::Skip(Skip::NoObject);
    };
    match inject::pod_patch(&pod.metadata, spec, settings) {
        Ok(Some(ops)) => match serde_json::from_value(serde_json::Value::Array(ops)) {
            Ok(patch) => Decision::Inject(patch),
            // Our own operations always parse; if not, admitting unchanged is the safe answer.
            Err(_) => Decision::Skip(Skip::AlreadyInjected),
        },
        Ok(None) => Decision::Skip(Skip::AlreadyInjected),
        Err(refused) => Decision::Refused(refused),
    }
}

/// The answer to `request` for `decision`. Always allowed: the sidecar is added or not, a pod
/// is never refused for it.
pub fn respond(request: &AdmissionRequest<Pod>, decision: Decision) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    match decision {
        Decision::Inject(patch) => match response.clone().with_patch(patch) {
            Ok(patched) => patched,
            Err(_) => response,
        },
        Decision::Skip(_) => response,
        Decision::Refused(refused) => {
            let mut response = response;
            response.warnings = Some(vec![format!("nes-agent sidecar not added: {refused}")]);
            response
        }
    }
}

/// The answer to `request` when the decision could not be made (`error` says why): allowed
/// without the sidecar under [`FailurePolicy::Ignore`], denied under [`FailurePolicy::Fail`].
pub fn respond_error(
    request: &AdmissionRequest<Pod>,
    error: &str,
    policy: FailurePolicy,
) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    match policy {
        FailurePolicy::Ignore => {
            let mut response = response;
            response.warnings = Some(vec![format!(
                "nes-agent sidecar not added: nes-controller could not decide ({error})"
            )]);
            response
        }
        FailurePolicy::Fail => response.deny(format!(
            "nes-controller could not decide whether the pod needs the nes-agent sidecar: {error}"
        )),
    }
}

/// The AdmissionReview carrying `response`, as JSON. `response.patch` is written base64-encoded,
/// the form Go's encoding of `[]byte` gives and every API server reads (kube's type would
/// write an array of numbers, which only lenient decoders accept).
pub fn review_json(response: AdmissionResponse) -> serde_json::Value {
    use base64::Engine as _;
    let patch = response.patch.clone();
    let mut review = serde_json::to_value(response.into_review()).unwrap_or_default();
    if let (Some(patch), Some(slot)) = (patch, review.pointer_mut("/response/patch")) {
        *slot = base64::engine::general_purpose::STANDARD
            .encode(patch)
            .into();
    }
    review
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::admission::AdmissionReview;
    use serde_json::{Value, json};

    fn request(operation: &str, namespace: &str, pod: Value) -> AdmissionRequest<Pod> {
        let review: AdmissionReview<Pod> = serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "name": "net-0",
                "namespace": namespace,
                "operation": operation,
                "userInfo": {"username": "system:serviceaccount:kube-system:statefulset-controller"},
                "object": pod,
                "dryRun": false
            }
        }))
        .unwrap();
        review.try_into().unwrap()
    }

    fn pod(owner_kind: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "net-0", "ownerReferences": [{
                "apiVersion": if owner_kind == "StatefulSet" { "apps/v1" } else { "v1" },
                "kind": owner_kind, "name": "net", "uid": "sts-uid", "controller": true
            }]},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]}
        })
    }

    fn statefulset(labelled: bool, uid: &str) -> StatefulSet {
        let labels = if labelled {
            json!({inject::INJECT_LABEL: "true"})
        } else {
            json!({})
        };
        serde_json::from_value(json!({
            "metadata": {"name": "net", "namespace": "apps", "uid": uid, "labels": labels}
        }))
        .unwrap()
    }

    fn excluded() -> BTreeSet<String> {
        BTreeSet::from(["kube-system".to_owned(), "nes-system".to_owned()])
    }

    fn look_up() -> Plan {
        Plan::LookUp {
            namespace: "apps".into(),
            name: "net".into(),
        }
    }

    #[test]
    fn plans_a_lookup_only_for_statefulset_pods_being_created() {
        assert_eq!(
            plan(
                &request("CREATE", "apps", pod("StatefulSet")),
                None,
                &excluded()
            ),
            look_up()
        );
        assert_eq!(
            plan(
                &request("UPDATE", "apps", pod("StatefulSet")),
                None,
                &excluded()
            ),
            Plan::Skip(Skip::NotPodCreate)
        );
        assert_eq!(
            plan(
                &request("CREATE", "nes-system", pod("StatefulSet")),
                None,
                &excluded()
            ),
            Plan::Skip(Skip::ExcludedNamespace)
        );
        assert_eq!(
            plan(
                &request("CREATE", "apps", pod("ReplicaSet")),
                None,
                &excluded()
            ),
            Plan::Skip(Skip::NotFromStatefulSet)
        );
        let mut injected = pod("StatefulSet");
        injected["metadata"]["annotations"] = json!({inject::INJECTED_ANNOTATION: "true"});
        assert_eq!(
            plan(&request("CREATE", "apps", injected), None, &excluded()),
            Plan::Skip(Skip::AlreadyInjected)
        );
    }

    #[test]
    fn a_controller_watching_one_namespace_injects_only_there() {
        let only = Some("apps");
        assert_eq!(
            plan(
                &request("CREATE", "apps", pod("StatefulSet")),
                only,
                &excluded()
            ),
            look_up()
        );
        assert_eq!(
            plan(
                &request("CREATE", "other", pod("StatefulSet")),
                only,
                &excluded()
            ),
            Plan::Skip(Skip::OtherNamespace)
        );
        // Excluded wins over watched.
        assert_eq!(
            plan(
                &request("CREATE", "nes-system", pod("StatefulSet")),
                Some("nes-system"),
                &excluded()
            ),
            Plan::Skip(Skip::ExcludedNamespace)
        );
    }

    #[test]
    fn a_non_controller_owner_is_not_followed() {
        let mut p = pod("StatefulSet");
        p["metadata"]["ownerReferences"][0]["controller"] = json!(false);
        assert_eq!(
            plan(&request("CREATE", "apps", p), None, &excluded()),
            Plan::Skip(Skip::NotFromStatefulSet)
        );
    }

    #[test]
    fn a_labelled_owner_gives_a_patch_that_adds_the_sidecar() {
        let req = request("CREATE", "apps", pod("StatefulSet"));
        let pod = req.object.as_ref().unwrap();
        let decision = decide(
            pod,
            Some(&statefulset(true, "sts-uid")),
            &SidecarSettings::default(),
        );
        let Decision::Inject(patch) = decision.clone() else {
            panic!("expected a patch, got {decision:?}");
        };
        let mut object = serde_json::to_value(pod).unwrap();
        json_patch::patch(&mut object, &patch).unwrap();
        assert_eq!(object["spec"]["initContainers"][0]["name"], inject::SIDECAR);

        let response = respond(&req, decision);
        assert!(response.allowed);
        assert_eq!(response.uid, "u-1");
        let wire = review_json(response);
        assert_eq!(wire["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(wire["kind"], "AdmissionReview");
        assert_eq!(wire["response"]["uid"], "u-1");
        assert_eq!(wire["response"]["patchType"], "JSONPatch");
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(wire["response"]["patch"].as_str().expect("a base64 string"))
            .unwrap();
        let decoded: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(decoded, patch);
    }

    #[test]
    fn unlabelled_missing_or_replaced_owners_give_no_patch() {
        let req = request("CREATE", "apps", pod("StatefulSet"));
        let pod = req.object.as_ref().unwrap();
        let settings = SidecarSettings::default();
        assert_eq!(
            decide(pod, Some(&statefulset(false, "sts-uid")), &settings),
            Decision::Skip(Skip::NotLabelled)
        );
        assert_eq!(
            decide(pod, None, &settings),
            Decision::Skip(Skip::OwnerNotFound)
        );
        assert_eq!(
            decide(pod, Some(&statefulset(true, "other-uid")), &settings),
            Decision::Skip(Skip::OwnerNotFound)
        );
        let response = respond(&req, Decision::Skip(Skip::NotLabelled));
        assert!(response.allowed && response.patch.is_none());
        let wire = review_json(response);
        assert!(wire["response"].get("patch").is_none(), "{wire}");
        assert_eq!(wire["response"]["allowed"], true);
    }

    #[test]
    fn a_name_clash_is_admitted_unchanged_with_a_warning() {
        let mut p = pod("StatefulSet");
        p["spec"]["containers"][0]["name"] = json!(inject::SIDECAR);
        let req = request("CREATE", "apps", p);
        let decision = decide(
            req.object.as_ref().unwrap(),
            Some(&statefulset(true, "sts-uid")),
            &SidecarSettings::default(),
        );
        assert!(matches!(decision, Decision::Refused(_)), "{decision:?}");
        let response = respond(&req, decision);
        assert!(response.allowed && response.patch.is_none());
        assert!(response.warnings.unwrap()[0].contains("did not add"));
    }

    #[test]
    fn errors_follow_the_failure_policy() {
        let req = request("CREATE", "apps", pod("StatefulSet"));
        let ignored = respond_error(&req, "timed out", FailurePolicy::Ignore);
        assert!(ignored.allowed && ignored.patch.is_none());
        let failed = respond_error(&req, "timed out", FailurePolicy::Fail);
        assert!(!failed.allowed);
        assert!(failed.result.message.contains("timed out"));
    }
}
