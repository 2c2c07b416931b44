//! Admission webhooks: calling the webhooks of `MutatingWebhookConfiguration` and
//! `ValidatingWebhookConfiguration` objects (admissionregistration.k8s.io/v1) with an
//! `AdmissionReview`, the way kube-apiserver does.
//!
//! The behaviour follows k8s.io/apiserver/pkg/admission/plugin/webhook: `generic/webhook.go`
//! (which webhooks apply), `predicates/{rules,namespace,object}` (matching),
//! `mutating/dispatcher.go` and `validating/dispatcher.go` (calls, failure policy, patches,
//! reinvocation), `request/admissionreview.go` (request and response checks),
//! `errors/statuserror.go` (denial texts) and k8s.io/apiserver/pkg/util/webhook (clients and
//! call errors).
//!
//! Differences from the real server, all deliberate:
//! - `matchConditions` (CEL) are not evaluated: a webhook that declares them is treated as
//!   matching, i.e. it is called wherever its rules and selectors match.
//! - `matchPolicy: Equivalent` only matches the requested resource itself; equivalent resources
//!   in other groups or versions are not known here.
//! - Every call of one request uses the request's own `uid` (the real server mints a fresh UID
//!   for each webhook call).
//! - Besides `https`, `http` URLs (and `http` service resolutions) are called, so tests can run
//!   plain webhook servers.
//! - A patched object is not decoded, defaulted or pruned again here (upstream round-trips it
//!   through its Go type); the caller does that before validation and storage.
//! - Only webhooks take part in reinvocation: there are no in-tree mutating plugins whose changes
//!   would also trigger it.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::Url;
use serde_json::{Map, Value, json};

use crate::selector::LabelSelector;

/// The default of `timeoutSeconds` (admissionregistration/v1 defaulting).
const DEFAULT_TIMEOUT_SECONDS: u64 = 10;
/// The largest `timeoutSeconds` validation accepts.
const MAX_TIMEOUT_SECONDS: u64 = 30;
/// The default of `clientConfig.service.port`.
const DEFAULT_SERVICE_PORT: u16 = 443;
/// client-go keeps at most this much of an unstructured error body.
const MAX_ERROR_BODY_BYTES: usize = 2048;
/// The size of the real server's webhook client cache.
const CLIENT_CACHE_SIZE: usize = 200;

/// The operation of an admission request, as named in rules and in the `AdmissionReview`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `CREATE`
    Create,
    /// `UPDATE`
    Update,
    /// `DELETE`
    Delete,
    /// `CONNECT` (exec, attach, port-forward, proxy)
    Connect,
}

impl Operation {
    /// The wire name: `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// A group, version and kind (`group` is empty for the core group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupVersionKind<'a> {
    /// The API group, empty for the core group.
    pub group: &'a str,
    /// The API version, e.g. `v1`.
    pub version: &'a str,
    /// The kind, e.g. `Pod`.
    pub kind: &'a str,
}

/// A group, version and resource (`group` is empty for the core group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupVersionResource<'a> {
    /// The API group, empty for the core group.
    pub group: &'a str,
    /// The API version, e.g. `v1`.
    pub version: &'a str,
    /// The plural resource name, e.g. `pods`.
    pub resource: &'a str,
}

/// What the webhooks are told about one request. The object itself is passed to
/// [`Admission::mutate`] / [`Admission::validate`] separately, because mutation changes it.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    /// The request UID sent as `request.uid`; responses must echo it.
    pub uid: &'a str,
    /// The operation.
    pub operation: Operation,
    /// The kind of the object (also sent as `requestKind`).
    pub kind: GroupVersionKind<'a>,
    /// The resource requested (also sent as `requestResource`).
    pub resource: GroupVersionResource<'a>,
    /// The subresource, e.g. `status` or `scale`; `None` or empty for the main resource.
    pub sub_resource: Option<&'a str>,
    /// The object name; empty when not known yet (a create with `generateName`).
    pub name: &'a str,
    /// The namespace; `None` or empty for cluster-scoped requests. As in the real server, this
    /// alone decides whether a request counts as namespaced for rule scopes and
    /// `namespaceSelector`. For a Namespace's own URL (`/api/v1/namespaces/{name}`) it is the
    /// namespace's name.
    pub namespace: Option<&'a str>,
    /// The stored object, for UPDATE and DELETE.
    pub old_object: Option<&'a Value>,
    /// The operation's options (`CreateOptions`, `UpdateOptions`, `DeleteOptions`, ...).
    pub options: Option<&'a Value>,
    /// Whether the request is a dry run.
    pub dry_run: bool,
    /// The `authentication.k8s.io/v1` `UserInfo` of the requester.
    pub user_info: &'a Value,
    /// The labels of the request's namespace, for `namespaceSelector`. For a create or update
    /// of a Namespace itself the object's own labels are used instead, as upstream does; a
    /// namespace that is unknown counts as having no labels.
    pub namespace_labels: Option<&'a Value>,
}

impl Attributes<'_> {
    fn namespace(&self) -> &str {
        self.namespace.unwrap_or("")
    }

    fn sub_resource(&self) -> &str {
        self.sub_resource.unwrap_or("")
    }
}

/// Resolves a webhook's `clientConfig.service` to the base URL to call (`scheme://host:port`;
/// `clientConfig.service.path` is appended to it). `None` means the service cannot be reached.
///
/// When the URL is `https` and its host is an IP address, the serving certificate is still
/// verified against `<name>.<namespace>.svc`, as upstream does; for `http` the URL is called as
/// it is.
pub trait ServiceResolver: Send + Sync {
    /// The base URL for `port` of service `namespace/name`, or `None`.
    fn resolve(&self, namespace: &str, name: &str, port: u16) -> Option<String>;
}

impl<F> ServiceResolver for F
where
    F: Fn(&str, &str, u16) -> Option<String> + Send + Sync,
{
    fn resolve(&self, namespace: &str, name: &str, port: u16) -> Option<String> {
        self(namespace, name, port)
    }
}

/// Why admission failed. [`AdmissionError::to_status`] renders it as the `metav1.Status` the
/// real server answers with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdmissionError {
    /// A webhook answered `allowed: false`. `code`, `reason` and `details` come from its
    /// `status` (a code below 400 becomes 400; the reason may be empty).
    #[error("{message}")]
    Denied {
        /// The webhook's name.
        webhook: String,
        /// The HTTP status code.
        code: u16,
        /// The webhook's `status.reason`, possibly empty.
        reason: String,
        /// The full message, `admission webhook "<name>" denied the request: ...`.
        message: String,
        /// The webhook's `status.details`, passed through (boxed to keep the error small).
        details: Option<Box<Value>>,
    },
    /// A webhook with `failurePolicy: Fail` could not be called or gave an unusable answer.
    #[error("Internal error occurred: failed calling webhook {webhook:?}: {message}")]
    Failed {
        /// The webhook's name.
        webhook: String,
        /// What went wrong, e.g. `failed to call webhook: Post "...": context deadline exceeded`.
        message: String,
    },
    /// A dry-run request matched a webhook that may have side effects.
    #[error("admission webhook {webhook:?} does not support dry run")]
    DryRunUnsupported {
        /// The webhook's name.
        webhook: String,
    },
    /// A failure the failure policy does not cover, such as a patch that does not apply.
    #[error("Internal error occurred: {message}")]
    Internal {
        /// The underlying error.
        message: String,
    },
}

impl AdmissionError {
    /// The HTTP status code of the response.
    pub fn http_status(&self) -> u16 {
        match self {
            AdmissionError::Denied { code, .. } => *code,
            AdmissionError::Failed { .. } | AdmissionError::Internal { .. } => 500,
            AdmissionError::DryRunUnsupported { .. } => 400,
        }
    }

    /// The `metav1.Status` reason; empty when a denying webhook gave none.
    pub fn status_reason(&self) -> &str {
        match self {
            AdmissionError::Denied { reason, .. } => reason,
            AdmissionError::Failed { .. } | AdmissionError::Internal { .. } => "InternalError",
            AdmissionError::DryRunUnsupported { .. } => "BadRequest",
        }
    }

    /// The `metav1.Status` message.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The complete `metav1.Status` object, as the real server sends it.
    pub fn to_status(&self) -> Value {
        let mut status = Map::new();
        status.insert("kind".into(), "Status".into());
        status.insert("apiVersion".into(), "v1".into());
        status.insert("metadata".into(), json!({}));
        status.insert("status".into(), "Failure".into());
        status.insert("message".into(), self.message().into());
        if !self.status_reason().is_empty() {
            status.insert("reason".into(), self.status_reason().into());
        }
        if let Some(details) = self.details() {
            status.insert("details".into(), details);
        }
        status.insert("code".into(), self.http_status().into());
        Value::Object(status)
    }

    fn details(&self) -> Option<Value> {
        match self {
            AdmissionError::Denied { details, .. } => details.as_deref().cloned(),
            // apierrors.NewInternalError records the wrapped error as the only cause.
            AdmissionError::Failed { webhook, message } => Some(json!({
                "causes": [{"message": format!("failed calling webhook {webhook:?}: {message}")}]
            })),
            AdmissionError::Internal { message } => Some(json!({"causes": [{"message": message}]})),
            AdmissionError::DryRunUnsupported { .. } => None,
        }
    }
}

/// Calls admission webhooks. Holds the HTTP clients, cached by trust root as upstream does.
pub struct Admission {
    resolver: Arc<dyn ServiceResolver>,
    clients: Mutex<HashMap<ClientKey, reqwest::Client>>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission").finish_non_exhaustive()
    }
}

impl Admission {
    /// An admission dispatcher that reaches `clientConfig.service` webhooks through `resolver`.
    pub fn new(resolver: Arc<dyn ServiceResolver>) -> Self {
        Admission {
            resolver,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Runs the matching mutating webhooks of `configs` (`MutatingWebhookConfiguration`
    /// objects) one after another, configurations sorted by name and webhooks in order, applying
    /// each JSONPatch to `object` (`None` for DELETE and for CONNECT without options). If a
    /// webhook changed the object, the webhooks with `reinvocationPolicy: IfNeeded` that ran
    /// before that change run once more. Warnings from the webhooks are added to `warnings`,
    /// also when admission fails.
    pub async fn mutate(
        &self,
        configs: &[Value],
        attrs: &Attributes<'_>,
        mut object: Option<&mut Value>,
        warnings: &mut Vec<String>,
    ) -> Result<(), AdmissionError> {
        if is_exempt(attrs) {
            return Ok(());
        }
        let hooks = webhooks(configs);
        let mut reinvocation = Reinvocation::default();
        for round in [Round::First, Round::Reinvoke] {
            if round == Round::Reinvoke && !reinvocation.needed {
                break;
            }
            for (index, hook) in hooks.iter().enumerate() {
                if !should_call(hook, attrs, object.as_deref())? {
                    continue;
                }
                // A webhook skipped in the first round is never called for the first time
                // in the reinvocation round, as upstream.
                if round == Round::Reinvoke && !reinvocation.pending.contains(&index) {
                    continue;
                }
                let outcome = self
                    .call_mutating(hook, attrs, object.as_deref_mut(), warnings)
                    .await;
                if matches!(outcome, Ok(true)) {
                    reinvocation.object_changed();
                }
                if hook.reinvoke_if_needed {
                    reinvocation.invoked.insert(index);
                }
                match outcome {
                    Ok(_) => {}
                    Err(CallError::Calling(_)) if hook.ignore_failures => {}
                    Err(CallError::Calling(message)) => return Err(hook.failed(message)),
                    Err(CallError::Fatal(error)) => return Err(error),
                }
            }
        }
        Ok(())
    }

    /// Runs the matching validating webhooks of `configs` (`ValidatingWebhookConfiguration`
    /// objects) concurrently, as the real server does. When several fail, the error of the first
    /// in configuration-name order is returned. Warnings are added to `warnings`.
    pub async fn validate(
        &self,
        configs: &[Value],
        attrs: &Attributes<'_>,
        object: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> Result<(), AdmissionError> {
        if is_exempt(attrs) {
            return Ok(());
        }
        let hooks = webhooks(configs);
        let mut relevant = Vec::new();
        for hook in &hooks {
            if should_call(hook, attrs, object)? {
                relevant.push(hook);
            }
        }
        let calls = relevant
            .into_iter()
            .map(|hook| self.call_validating(hook, attrs, object));
        let mut first_error = None;
        for (hook_warnings, result) in futures::future::join_all(calls).await {
            for warning in hook_warnings {
                add_warning(warnings, warning);
            }
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Calls one mutating webhook and applies its patch; `Ok(true)` when the object changed.
    async fn call_mutating(
        &self,
        hook: &Webhook<'_>,
        attrs: &Attributes<'_>,
        object: Option<&mut Value>,
        warnings: &mut Vec<String>,
    ) -> Result<bool, CallError> {
        let reply = self
            .call(hook, attrs, object.as_deref(), Kind::Mutating)
            .await?;
        for warning in reply.warnings {
            add_warning(warnings, warning);
        }
        if !reply.allowed {
            return Err(CallError::Fatal(denial(hook.name, reply.status.as_ref())));
        }
        apply_patch(hook.name, &reply.patch, &reply.patch_type, object)
    }

    /// Calls one validating webhook; returns its warnings and the verdict after the failure
    /// policy.
    async fn call_validating(
        &self,
        hook: &Webhook<'_>,
        attrs: &Attributes<'_>,
        object: Option<&Value>,
    ) -> (Vec<String>, Result<(), AdmissionError>) {
        match self.call(hook, attrs, object, Kind::Validating).await {
            Ok(reply) if reply.allowed => (reply.warnings, Ok(())),
            Ok(reply) => (
                reply.warnings,
                Err(denial(hook.name, reply.status.as_ref())),
            ),
            Err(CallError::Calling(_)) if hook.ignore_failures => (Vec::new(), Ok(())),
            Err(CallError::Calling(message)) => (Vec::new(), Err(hook.failed(message))),
            Err(CallError::Fatal(error)) => (Vec::new(), Err(error)),
        }
    }

    /// Sends the `AdmissionReview` and checks the answer.
    async fn call(
        &self,
        hook: &Webhook<'_>,
        attrs: &Attributes<'_>,
        object: Option<&Value>,
        kind: Kind,
    ) -> Result<Reply, CallError> {
        check_dry_run(hook, attrs)?;
        let version = hook
            .review_versions
            .iter()
            .find_map(|v| ReviewVersion::parse(v))
            .ok_or_else(|| {
                CallError::Calling(
                    "could not create admission objects: webhook does not accept known \
                     AdmissionReview versions (v1, v1beta1)"
                        .into(),
                )
            })?;
        let endpoint = self
            .endpoint(hook)
            .map_err(|e| CallError::Calling(format!("could not get REST client: {e}")))?;
        let review = review_request(version, attrs, object);
        let body = endpoint
            .post(&review, hook.timeout_seconds)
            .await
            .map_err(|e| CallError::Calling(format!("failed to call webhook: {e}")))?;
        let review = decode_review(&body)
            .map_err(|e| CallError::Calling(format!("failed to call webhook: {e}")))?;
        verify_review(review, attrs.uid, version, kind)
            .map_err(|e| CallError::Calling(format!("received invalid webhook response: {e}")))
    }

    /// Where and how to reach a webhook. The error is the real server's text for a client
    /// that cannot be built.
    fn endpoint(&self, hook: &Webhook<'_>) -> Result<Endpoint, String> {
        let config = hook.client_config.unwrap_or(&Value::Null);
        let ca_bundle = str_field(config, "caBundle").filter(|ca| !ca.is_empty());
        if let Some(service) = config.get("service").filter(|s| s.is_object()) {
            return self.service_endpoint(service, ca_bundle);
        }
        // These two are wrapped twice upstream: HookClient already returns an
        // ErrCallingWebhook, which the dispatcher wraps again.
        let Some(url) = str_field(config, "url").filter(|u| !u.is_empty()) else {
            return Err(format!(
                "failed calling webhook {:?}: webhook configuration must have either service or URL",
                hook.name
            ));
        };
        let url = Url::parse(url).map_err(|e| {
            format!(
                "failed calling webhook {:?}: Unparsable URL: {e}",
                hook.name
            )
        })?;
        let client = self.client(ca_bundle, None)?;
        Ok(Endpoint {
            dial_address: dial_address(&url),
            url,
            explicit_port: false,
            client: Ok(client),
        })
    }

    fn service_endpoint(
        &self,
        service: &Value,
        ca_bundle: Option<&str>,
    ) -> Result<Endpoint, String> {
        let name = str_field(service, "name").unwrap_or("");
        let namespace = str_field(service, "namespace").unwrap_or("");
        let path = str_field(service, "path").unwrap_or("");
        let port = service
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .unwrap_or(DEFAULT_SERVICE_PORT);
        let server_name = format!("{name}.{namespace}.svc");
        let mut url = Url::parse(&format!("https://{server_name}:{port}"))
            .map_err(|e| format!("invalid service {namespace}/{name}: {e}"))?;
        url.set_path(path);
        let Some(resolved) = self.resolver.resolve(namespace, name, port) else {
            return Ok(Endpoint {
                dial_address: format!("{server_name}:{port}"),
                url,
                explicit_port: true,
                client: Err(format!("service {name:?} not found")),
            });
        };
        let resolved = Url::parse(&resolved)
            .map_err(|e| format!("service {namespace}/{name} resolved to {resolved:?}: {e}"))?;
        let dial_address = dial_address(&resolved);
        let pinned = resolved_ip(&resolved).filter(|_| resolved.scheme() == "https");
        let client = match pinned {
            // Keep the service's DNS name in the URL so TLS verifies the certificate against
            // it, and dial the resolved address instead.
            Some(addr) => self.client(ca_bundle, Some((&server_name, addr)))?,
            None => {
                url = resolved;
                url.set_path(path);
                self.client(ca_bundle, None)?
            }
        };
        Ok(Endpoint {
            dial_address,
            url,
            explicit_port: true,
            client: Ok(client),
        })
    }

    /// A cached client trusting `ca_bundle` (base64 PEM; the system roots when absent).
    fn client(
        &self,
        ca_bundle: Option<&str>,
        pin: Option<(&str, SocketAddr)>,
    ) -> Result<reqwest::Client, String> {
        let key = ClientKey {
            ca_bundle: ca_bundle.map(str::to_owned),
            pin: pin.map(|(host, addr)| (host.to_owned(), addr)),
        };
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        // Upstream talks HTTP/1.1 to webhooks so that concurrent calls spread over backends.
        let mut builder = reqwest::Client::builder().http1_only().no_proxy();
        if let Some(ca_bundle) = ca_bundle {
            builder = builder.tls_built_in_root_certs(false);
            for certificate in parse_ca_bundle(ca_bundle)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if let Some((host, addr)) = pin {
            builder = builder.resolve(host, addr);
        }
        let client = builder
            .build()
            .map_err(|e| format!("unable to load root certificates: {}", error_chain(&e)))?;
        if clients.len() >= CLIENT_CACHE_SIZE {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// The cache key of a webhook client: what it trusts and where it dials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    ca_bundle: Option<String>,
    pin: Option<(String, SocketAddr)>,
}

/// A resolved webhook address. `client` is an error when dialling will fail (an unresolvable
/// service): upstream notices that only when it connects, so it is a call failure, not a
/// client failure.
struct Endpoint {
    url: Url,
    dial_address: String,
    /// Service URLs always name their port upstream, even the scheme's default one.
    explicit_port: bool,
    client: Result<reqwest::Client, String>,
}

impl Endpoint {
    /// POSTs `review` and returns the body of a 2xx answer; the error is client-go's text.
    async fn post(&self, review: &Value, timeout_seconds: u64) -> Result<Vec<u8>, String> {
        let mut url = self.url.clone();
        // The real client tells the webhook its deadline in the query.
        url.set_query(Some(&format!("timeout={timeout_seconds}s")));
        let dial_failed = |message: String| format!("Post {:?}: {message}", self.shown(&url));
        let client = self.client.as_ref().map_err(|e| dial_failed(e.clone()))?;
        let response = client
            .post(url.clone())
            .timeout(Duration::from_secs(timeout_seconds))
            .header(reqwest::header::ACCEPT, "application/json, */*")
            .json(review)
            .send()
            .await
            .map_err(|e| dial_failed(transport_error(&e, &self.dial_address)))?;
        let code = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = response
            .bytes()
            .await
            .map_err(|e| dial_failed(transport_error(&e, &self.dial_address)))?;
        if !(200..=206).contains(&code) {
            return Err(http_error_message(code, &content_type, &body));
        }
        Ok(body.to_vec())
    }

    /// `url` as the real server shows it in errors.
    fn shown(&self, url: &Url) -> String {
        match (url.port(), url.port_or_known_default()) {
            (None, Some(port)) if self.explicit_port => {
                let mut shown = format!(
                    "{}://{}:{port}{}",
                    url.scheme(),
                    url.host_str().unwrap_or(""),
                    url.path()
                );
                if let Some(query) = url.query() {
                    shown.push('?');
                    shown.push_str(query);
                }
                shown
            }
            _ => url.to_string(),
        }
    }
}

fn parse_ca_bundle(ca_bundle: &str) -> Result<Vec<reqwest::Certificate>, String> {
    const UNPARSABLE: &str = "unable to load root certificates: unable to parse bytes as PEM block";
    let pem = BASE64
        .decode(ca_bundle)
        .map_err(|_| UNPARSABLE.to_owned())?;
    let certificates =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| UNPARSABLE.to_owned())?;
    if certificates.is_empty() {
        return Err(UNPARSABLE.to_owned());
    }
    Ok(certificates)
}

/// The socket address of a URL whose host is an IP address.
fn resolved_ip(url: &Url) -> Option<SocketAddr> {
    let host = url.host_str()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, url.port_or_known_default()?))
}

fn dial_address(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// The admission plugin kind: validating webhooks may not patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mutating,
    Validating,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    First,
    Reinvoke,
}

/// Which mutating webhooks run again (mutating/reinvocationcontext.go).
#[derive(Debug, Default)]
struct Reinvocation {
    /// `IfNeeded` webhooks called since the last change of the object.
    invoked: BTreeSet<usize>,
    /// Webhooks to call in the reinvocation round.
    pending: BTreeSet<usize>,
    /// Whether any webhook changed the object.
    needed: bool,
}

impl Reinvocation {
    fn object_changed(&mut self) {
        self.pending.append(&mut self.invoked);
        self.needed = true;
    }
}

/// The `AdmissionReview` version used for a webhook: the first one it accepts that we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReviewVersion {
    V1,
    V1beta1,
}

impl ReviewVersion {
    fn parse(version: &str) -> Option<Self> {
        match version {
            "v1" => Some(ReviewVersion::V1),
            "v1beta1" => Some(ReviewVersion::V1beta1),
            _ => None,
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            ReviewVersion::V1 => "admission.k8s.io/v1",
            ReviewVersion::V1beta1 => "admission.k8s.io/v1beta1",
        }
    }
}

/// A call that did not end in a usable answer.
#[derive(Debug)]
enum CallError {
    /// The webhook could not be called or answered unusably: `failurePolicy` decides.
    Calling(String),
    /// A rejection or an error `failurePolicy` does not cover.
    Fatal(AdmissionError),
}

/// One webhook of a configuration, with the API defaults applied.
#[derive(Debug)]
struct Webhook<'a> {
    name: &'a str,
    rules: &'a [Value],
    namespace_selector: Option<&'a Value>,
    object_selector: Option<&'a Value>,
    client_config: Option<&'a Value>,
    ignore_failures: bool,
    side_effects: Option<&'a str>,
    timeout_seconds: u64,
    review_versions: Vec<&'a str>,
    reinvoke_if_needed: bool,
}

impl Webhook<'_> {
    fn failed(&self, message: String) -> AdmissionError {
        AdmissionError::Failed {
            webhook: self.name.to_owned(),
            message,
        }
    }
}

/// The webhooks of `configs`, configurations sorted by name (as the real server's
/// configuration manager does) and webhooks in their order.
fn webhooks(configs: &[Value]) -> Vec<Webhook<'_>> {
    let mut sorted: Vec<&Value> = configs.iter().collect();
    sorted.sort_by_key(|c| {
        c.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    });
    sorted
        .into_iter()
        .filter_map(|c| c.get("webhooks").and_then(Value::as_array))
        .flatten()
        .map(webhook)
        .collect()
}

fn webhook(hook: &Value) -> Webhook<'_> {
    let timeout_seconds = hook
        .get("timeoutSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_TIMEOUT_SECONDS)
        .clamp(1, MAX_TIMEOUT_SECONDS);
    Webhook {
        name: str_field(hook, "name").unwrap_or(""),
        rules: hook
            .get("rules")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice),
        namespace_selector: hook.get("namespaceSelector"),
        object_selector: hook.get("objectSelector"),
        client_config: hook.get("clientConfig"),
        ignore_failures: str_field(hook, "failurePolicy") == Some("Ignore"),
        side_effects: str_field(hook, "sideEffects"),
        timeout_seconds,
        review_versions: strings(hook.get("admissionReviewVersions")),
        reinvoke_if_needed: str_field(hook, "reinvocationPolicy") == Some("IfNeeded"),
    }
}

/// Admission configuration objects are never sent to webhooks, so that a broken webhook can
/// always be removed.
fn is_exempt(attrs: &Attributes<'_>) -> bool {
    attrs.kind.group == "admissionregistration.k8s.io"
        && matches!(
            attrs.kind.kind,
            "ValidatingWebhookConfiguration"
                | "MutatingWebhookConfiguration"
                | "ValidatingAdmissionPolicy"
                | "ValidatingAdmissionPolicyBinding"
                | "MutatingAdmissionPolicy"
                | "MutatingAdmissionPolicyBinding"
        )
}

/// Whether a webhook applies to the request (generic/webhook.go `ShouldCallHook`). A selector
/// that does not parse is an error only when the rules match, as upstream.
fn should_call(
    hook: &Webhook<'_>,
    attrs: &Attributes<'_>,
    object: Option<&Value>,
) -> Result<bool, AdmissionError> {
    let namespace_match = namespace_matches(hook, attrs, object);
    if let Ok(false) = namespace_match {
        return Ok(false);
    }
    let object_match = object_matches(hook, attrs, object);
    if let Ok(false) = object_match {
        return Ok(false);
    }
    if !hook.rules.iter().any(|rule| rule_matches(rule, attrs)) {
        return Ok(false);
    }
    let internal = |message: String| AdmissionError::Internal { message };
    namespace_match.map_err(internal)?;
    object_match.map_err(internal)?;
    Ok(true)
}

/// A webhook selector; absent or null is `{}` (everything), the API default.
fn selector(selector: Option<&Value>) -> Result<LabelSelector, String> {
    match selector.filter(|s| !s.is_null()) {
        None => Ok(LabelSelector::everything()),
        Some(s) => LabelSelector::from_object(Some(s)).map_err(|e| e.to_string()),
    }
}

fn namespace_matches(
    hook: &Webhook<'_>,
    attrs: &Attributes<'_>,
    object: Option<&Value>,
) -> Result<bool, String> {
    let is_namespace = attrs.resource.resource == "namespaces";
    // Cluster-scoped objects other than namespaces are never exempted.
    if attrs.namespace().is_empty() && !is_namespace {
        return Ok(true);
    }
    let selector = selector(hook.namespace_selector)?;
    if selector.is_everything() {
        return Ok(true);
    }
    // A namespace being created or updated is matched by its new labels.
    let labels = if is_namespace
        && attrs.sub_resource().is_empty()
        && matches!(attrs.operation, Operation::Create | Operation::Update)
    {
        object.and_then(|o| o.pointer("/metadata/labels"))
    } else {
        attrs.namespace_labels
    };
    Ok(selector.matches(labels))
}

fn object_matches(
    hook: &Webhook<'_>,
    attrs: &Attributes<'_>,
    object: Option<&Value>,
) -> Result<bool, String> {
    let selector = selector(hook.object_selector)?;
    if selector.is_everything() {
        return Ok(true);
    }
    let matches =
        |o: Option<&Value>| o.is_some_and(|o| selector.matches(o.pointer("/metadata/labels")));
    Ok(matches(object) || matches(attrs.old_object))
}

/// Whether one `RuleWithOperations` matches (predicates/rules/rules.go).
fn rule_matches(rule: &Value, attrs: &Attributes<'_>) -> bool {
    scope_matches(str_field(rule, "scope"), attrs)
        && exact_or_wildcard(rule.get("operations"), attrs.operation.as_str())
        && exact_or_wildcard(rule.get("apiGroups"), attrs.resource.group)
        && exact_or_wildcard(rule.get("apiVersions"), attrs.resource.version)
        && resource_matches(rule.get("resources"), attrs)
}

fn scope_matches(scope: Option<&str>, attrs: &Attributes<'_>) -> bool {
    // Namespace objects are cluster-scoped even though their requests carry a namespace.
    let is_namespace = attrs.resource
        == (GroupVersionResource {
            group: "",
            version: "v1",
            resource: "namespaces",
        });
    match scope {
        None | Some("*") => true,
        Some("Namespaced") => !is_namespace && !attrs.namespace().is_empty(),
        Some("Cluster") => is_namespace || attrs.namespace().is_empty(),
        Some(_) => false,
    }
}

fn exact_or_wildcard(items: Option<&Value>, requested: &str) -> bool {
    strings(items)
        .into_iter()
        .any(|item| item == "*" || item == requested)
}

/// `resource/subresource` entries: `*` is every resource without subresource, `*/*` everything,
/// `pods/*` pods with any subresource, `*/scale` the scale subresource of any resource.
fn resource_matches(resources: Option<&Value>, attrs: &Attributes<'_>) -> bool {
    strings(resources).into_iter().any(|entry| {
        let (resource, sub) = entry.split_once('/').unwrap_or((entry, ""));
        (resource == "*" || resource == attrs.resource.resource)
            && (sub == "*" || sub == attrs.sub_resource())
    })
}

/// Dry runs reach only webhooks without side effects.
fn check_dry_run(hook: &Webhook<'_>, attrs: &Attributes<'_>) -> Result<(), CallError> {
    if !attrs.dry_run {
        return Ok(());
    }
    match hook.side_effects {
        None => Err(CallError::Calling("Webhook SideEffects is nil".into())),
        Some("None" | "NoneOnDryRun") => Ok(()),
        Some(_) => Err(CallError::Fatal(AdmissionError::DryRunUnsupported {
            webhook: hook.name.to_owned(),
        })),
    }
}

/// The `AdmissionReview` request body (request/admissionreview.go `CreateV1AdmissionReview`).
fn review_request(version: ReviewVersion, attrs: &Attributes<'_>, object: Option<&Value>) -> Value {
    let kind = json!({
        "group": attrs.kind.group,
        "version": attrs.kind.version,
        "kind": attrs.kind.kind,
    });
    let resource = json!({
        "group": attrs.resource.group,
        "version": attrs.resource.version,
        "resource": attrs.resource.resource,
    });
    let mut request = Map::new();
    request.insert("uid".into(), attrs.uid.into());
    request.insert("kind".into(), kind.clone());
    request.insert("resource".into(), resource.clone());
    if !attrs.sub_resource().is_empty() {
        request.insert("subResource".into(), attrs.sub_resource().into());
    }
    request.insert("requestKind".into(), kind);
    request.insert("requestResource".into(), resource);
    if !attrs.sub_resource().is_empty() {
        request.insert("requestSubResource".into(), attrs.sub_resource().into());
    }
    if !attrs.name.is_empty() {
        request.insert("name".into(), attrs.name.into());
    }
    if !attrs.namespace().is_empty() {
        request.insert("namespace".into(), attrs.namespace().into());
    }
    request.insert("operation".into(), attrs.operation.as_str().into());
    request.insert("userInfo".into(), attrs.user_info.clone());
    request.insert("object".into(), object.cloned().unwrap_or(Value::Null));
    request.insert(
        "oldObject".into(),
        attrs.old_object.cloned().unwrap_or(Value::Null),
    );
    request.insert("dryRun".into(), attrs.dry_run.into());
    request.insert(
        "options".into(),
        attrs.options.cloned().unwrap_or(Value::Null),
    );
    json!({
        "kind": "AdmissionReview",
        "apiVersion": version.api_version(),
        "request": request,
    })
}

/// An `AdmissionReview` answer as decoded, before any check.
#[derive(Debug)]
struct DecodedReview {
    api_version: String,
    kind: String,
    /// `None` when `response` is absent.
    response: Option<DecodedResponse>,
}

#[derive(Debug)]
struct DecodedResponse {
    uid: String,
    allowed: bool,
    status: Option<Value>,
    patch: Vec<u8>,
    patch_type: Option<String>,
    warnings: Vec<String>,
}

/// A checked webhook answer.
#[derive(Debug)]
struct Reply {
    allowed: bool,
    /// The `metav1.Status` of a denial.
    status: Option<Value>,
    /// The decoded patch; always empty for validating webhooks.
    patch: Vec<u8>,
    patch_type: String,
    warnings: Vec<String>,
}

/// Decodes the body; the errors are those of decoding the JSON, before any check.
fn decode_review(body: &[u8]) -> Result<DecodedReview, String> {
    let review: Value = serde_json::from_slice(body)
        .map_err(|e| format!("couldn't get version/kind; json parse error: {e}"))?;
    let kind = str_field(&review, "kind").unwrap_or("");
    if kind.is_empty() {
        return Err(format!(
            "Object 'Kind' is missing in '{}'",
            String::from_utf8_lossy(body)
        ));
    }
    let response = match review.get("response").filter(|r| !r.is_null()) {
        None => None,
        Some(r) => Some(decode_response(r)?),
    };
    Ok(DecodedReview {
        api_version: str_field(&review, "apiVersion").unwrap_or("").to_owned(),
        kind: kind.to_owned(),
        response,
    })
}

fn decode_response(response: &Value) -> Result<DecodedResponse, String> {
    let patch = match response.get("patch") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(encoded)) => BASE64
            .decode(encoded)
            .map_err(|e| format!("illegal base64 data in response.patch: {e}"))?,
        // Go's decoder also fills a []byte from a JSON array of numbers, which is how
        // kube-rs's AdmissionResponse serializes its patch.
        Some(Value::Array(items)) => items
            .iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or("response.patch: an array must hold numbers 0-255 (bytes)")?,
        Some(_) => return Err("response.patch must be a base64-encoded string".into()),
    };
    Ok(DecodedResponse {
        uid: str_field(response, "uid").unwrap_or("").to_owned(),
        allowed: response
            .get("allowed")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        status: response.get("status").filter(|s| s.is_object()).cloned(),
        patch,
        patch_type: str_field(response, "patchType").map(str::to_owned),
        warnings: strings(response.get("warnings"))
            .into_iter()
            .map(str::to_owned)
            .collect(),
    })
}

/// request/admissionreview.go `VerifyAdmissionResponse`.
fn verify_review(
    review: DecodedReview,
    uid: &str,
    version: ReviewVersion,
    kind: Kind,
) -> Result<Reply, String> {
    let response = review
        .response
        .ok_or_else(|| "webhook response was absent".to_owned())?;
    let patch_type = match version {
        ReviewVersion::V1 => {
            if response.uid != uid {
                return Err(format!(
                    "expected response.uid={uid:?}, got {:?}",
                    response.uid
                ));
            }
            if review.api_version != "admission.k8s.io/v1" || review.kind != "AdmissionReview" {
                let (group, version) = review
                    .api_version
                    .split_once('/')
                    .unwrap_or(("", &review.api_version));
                return Err(format!(
                    "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, \
                     got {group}/{version}, Kind={}",
                    review.kind
                ));
            }
            verify_patch_fields(&response, kind)?
        }
        // v1beta1 answers were never checked for uid or kind; a patch is always a JSONPatch.
        ReviewVersion::V1beta1 if kind == Kind::Mutating && !response.patch.is_empty() => {
            "JSONPatch".to_owned()
        }
        ReviewVersion::V1beta1 => String::new(),
    };
    Ok(Reply {
        allowed: response.allowed,
        status: response.status,
        patch: match kind {
            Kind::Mutating => response.patch,
            Kind::Validating => Vec::new(),
        },
        patch_type,
        warnings: response.warnings,
    })
}

/// Checks `patch` / `patchType` of a v1 answer and returns the patch type.
fn verify_patch_fields(response: &DecodedResponse, kind: Kind) -> Result<String, String> {
    match kind {
        Kind::Mutating => match (&response.patch_type, response.patch.is_empty()) {
            (None, false) => {
                Err("webhook returned response.patch but not response.patchType".into())
            }
            (Some(_), true) => {
                Err("webhook returned response.patchType but not response.patch".into())
            }
            (Some(t), false) if t.is_empty() => Err(format!(
                "webhook returned invalid response.patchType of {t:?}"
            )),
            (patch_type, _) => Ok(patch_type.clone().unwrap_or_default()),
        },
        Kind::Validating if !response.patch.is_empty() => {
            Err("validating webhook may not return response.patch".into())
        }
        Kind::Validating if response.patch_type.is_some() => {
            Err("validating webhook may not return response.patchType".into())
        }
        Kind::Validating => Ok(String::new()),
    }
}

/// errors/statuserror.go `ToStatusErr`.
fn denial(webhook: &str, status: Option<&Value>) -> AdmissionError {
    let field = |name: &str| {
        status
            .and_then(|s| str_field(s, name))
            .unwrap_or("")
            .to_owned()
    };
    let (message, reason) = (field("message"), field("reason"));
    let denied_by = format!("admission webhook {webhook:?} denied the request");
    let message = if !message.is_empty() {
        format!("{denied_by}: {message}")
    } else if !reason.is_empty() {
        format!("{denied_by}: {reason}")
    } else {
        format!("{denied_by} without explanation")
    };
    // A rejection never goes out with a success code.
    let code = status
        .and_then(|s| s.get("code"))
        .and_then(Value::as_i64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..=999).contains(c))
        .unwrap_or(400);
    AdmissionError::Denied {
        webhook: webhook.to_owned(),
        code,
        reason,
        message,
        details: status
            .and_then(|s| s.get("details"))
            .filter(|d| d.is_object())
            .map(|d| Box::new(d.clone())),
    }
}

/// Applies a mutating webhook's patch (mutating/dispatcher.go `callAttrMutatingHook`).
/// `Ok(true)` when the object changed.
fn apply_patch(
    webhook: &str,
    patch: &[u8],
    patch_type: &str,
    object: Option<&mut Value>,
) -> Result<bool, CallError> {
    if patch.is_empty() {
        return Ok(false);
    }
    // Upstream only decodes the operations as JSON objects here; invalid operations fail when
    // applied, which the failure policy does not cover.
    let operations: Vec<Map<String, Value>> = serde_json::from_slice(patch).map_err(|e| {
        CallError::Calling(format!(
            "received undecodable patch in webhook response: {e}"
        ))
    })?;
    if operations.is_empty() {
        return Ok(false);
    }
    let Some(object) = object else {
        return Err(CallError::Fatal(AdmissionError::Internal {
            message: format!(
                "admission webhook {webhook:?} attempted to modify the object, which is not \
                 supported for this operation"
            ),
        }));
    };
    if patch_type != "JSONPatch" {
        return Err(CallError::Calling(format!(
            "unsupported patch type {patch_type:?}"
        )));
    }
    let internal = |message: String| CallError::Fatal(AdmissionError::Internal { message });
    let operations: json_patch::Patch = serde_json::from_value(Value::Array(
        operations.into_iter().map(Value::Object).collect(),
    ))
    .map_err(|e| internal(e.to_string()))?;
    let mut patched = object.clone();
    json_patch::patch_unsafe(&mut patched, &operations).map_err(|e| internal(e.to_string()))?;
    let changed = patched != *object;
    *object = patched;
    Ok(changed)
}

/// client-go's text for a non-2xx answer (`transformResponse` / `NewGenericServerResponse`).
fn http_error_message(code: u16, content_type: &str, body: &[u8]) -> String {
    if let Ok(status) = serde_json::from_slice::<Value>(body)
        && str_field(&status, "kind") == Some("Status")
    {
        return str_field(&status, "message").unwrap_or("").to_owned();
    }
    let server_message = if content_type.trim_start().starts_with("text/") {
        let body = body.get(..MAX_ERROR_BODY_BYTES).unwrap_or(body);
        String::from_utf8_lossy(body).trim().to_owned()
    } else {
        "unknown".to_owned()
    };
    match code {
        409 => "the server reported a conflict".into(),
        404 => "the server could not find the requested resource".into(),
        400 => "the server rejected our request for an unknown reason".into(),
        401 => "the server has asked for the client to provide credentials".into(),
        403 => server_message,
        405 => "the server does not allow this method on the requested resource".into(),
        422 => "the server rejected our request due to an error in our request".into(),
        504 => "the server was unable to return a response in the time allotted, but may still \
                be processing the request"
            .into(),
        429 => {
            "the server has received too many requests and has asked us to try again later".into()
        }
        500.. => format!(
            "an error on the server ({server_message:?}) has prevented the request from succeeding"
        ),
        _ => format!(
            "the server responded with the status code {code} but did not return more information"
        ),
    }
}

/// A transport error in the words of Go's HTTP client where they matter to readers.
fn transport_error(error: &reqwest::Error, dial_address: &str) -> String {
    if error.is_timeout() {
        return "context deadline exceeded".into();
    }
    let refused = std::iter::successors(std::error::Error::source(error), |e| e.source())
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::ConnectionRefused);
    if refused {
        return format!("dial tcp {dial_address}: connect: connection refused");
    }
    error_chain(error)
}

/// The innermost messages of an error chain, joined like Go's wrapped errors.
fn error_chain(error: &dyn std::error::Error) -> String {
    let sources: Vec<String> = std::iter::successors(error.source(), |e| e.source())
        .map(ToString::to_string)
        .collect();
    if sources.is_empty() {
        error.to_string()
    } else {
        sources.join(": ")
    }
}

/// Adds a warning unless it is already there (the real warning recorder deduplicates).
fn add_warning(warnings: &mut Vec<String>, warning: String) {
    if !warnings.contains(&warning) {
        warnings.push(warning);
    }
}

fn str_field<'a>(value: &'a Value, field: &str) -> Option<&'a str> {
    value.get(field).and_then(Value::as_str)
}

/// The string items of a JSON array; anything else is empty.
fn strings(value: Option<&Value>) -> Vec<&str> {
    value
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::LazyLock;

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{StatusCode, Uri, header};
    use axum::response::IntoResponse;

    // ---- fixtures -------------------------------------------------------------------------

    const UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";

    /// A self-signed certificate for `injector.webhooks.svc`, as a webhook's caBundle.
    const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBmDCCAT2gAwIBAgIUEzxIotllq1ahlzohW2icISRmSbkwCgYIKoZIzj0EAwIw
IDEeMBwGA1UEAwwVaW5qZWN0b3Iud2ViaG9va3Muc3ZjMCAXDTI2MTEyMjAzMTI0
MFoYDzIxMjYxMDI5MDMxMjQwWjAgMR4wHAYDVQQDDBVpbmplY3Rvci53ZWJob29r
cy5zdmMwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATMuifAay511u6KPb1FwR0q
aQapd3+7qIkBetahCiMFhHvnH7G/Xt8ZzLEdzlkpLtoT7c/p3QW7KGOZvO5Kti7S
o1MwUTAdBgNVHQ4EFgQUpW7k/ntqpd2umtKbJGRZlQIBJNwwHwYDVR0jBBgwFoAU
pW7k/ntqpd2umtKbJGRZlQIBJNwwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQD
AgNJADBGAiEAwcFqmEgAd/cM/lvPqYK8KJjz69j7AsU8D1cnLEvlqcQCIQDAAgJu
uhJrW/tIOj38yFVLim3jzte+PmsPjred9j2iHA==
-----END CERTIFICATE-----
";

    static USER: LazyLock<Value> = LazyLock::new(
        || json!({"username": "alice", "uid": "1", "groups": ["system:authenticated"]}),
    );

    const PODS: GroupVersionResource<'static> = GroupVersionResource {
        group: "",
        version: "v1",
        resource: "pods",
    };

    fn pod_create() -> Attributes<'static> {
        Attributes {
            uid: UID,
            operation: Operation::Create,
            kind: GroupVersionKind {
                group: "",
                version: "v1",
                kind: "Pod",
            },
            resource: PODS,
            sub_resource: None,
            name: "web",
            namespace: Some("default"),
            old_object: None,
            options: None,
            dry_run: false,
            user_info: &USER,
            namespace_labels: None,
        }
    }

    fn cluster_create(kind: &'static str, resource: &'static str) -> Attributes<'static> {
        Attributes {
            kind: GroupVersionKind {
                group: "",
                version: "v1",
                kind,
            },
            resource: GroupVersionResource {
                group: "",
                version: "v1",
                resource,
            },
            namespace: None,
            ..pod_create()
        }
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]}
        })
    }

    /// A webhook matching pod creation at `url`, with `overrides` replacing fields.
    fn hook(name: &str, url: &str, overrides: Value) -> Value {
        let mut hook = json!({
            "name": name,
            "clientConfig": {"url": url},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"]}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        });
        if let (Some(hook), Some(overrides)) = (hook.as_object_mut(), overrides.as_object()) {
            for (k, v) in overrides {
                hook.insert(k.clone(), v.clone());
            }
        }
        hook
    }

    fn config(name: &str, hooks: Vec<Value>) -> Value {
        json!({"metadata": {"name": name}, "webhooks": hooks})
    }

    fn admission() -> Admission {
        Admission::new(Arc::new(|_: &str, _: &str, _: u16| None))
    }

    fn matches(hook_value: &Value, attrs: &Attributes<'_>, object: Option<&Value>) -> bool {
        should_call(&webhook(hook_value), attrs, object).expect("selectors parse")
    }

    // ---- a webhook server on 127.0.0.1:0 ---------------------------------------------------

    type Handler = dyn Fn(&str, &Value) -> (u16, String) + Send + Sync;

    #[derive(Debug, Clone)]
    struct Call {
        path: String,
        query: String,
        review: Value,
    }

    #[derive(Clone)]
    struct ServerState {
        handler: Arc<Handler>,
        calls: Arc<Mutex<Vec<Call>>>,
        together: Arc<tokio::sync::Barrier>,
    }

    struct TestServer {
        base: String,
        calls: Arc<Mutex<Vec<Call>>>,
    }

    impl TestServer {
        fn url(&self, path: &str) -> String {
            format!("{}{path}", self.base)
        }

        fn calls(&self) -> Vec<Call> {
            self.calls.lock().unwrap().clone()
        }

        fn paths(&self) -> Vec<String> {
            self.calls().into_iter().map(|c| c.path).collect()
        }
    }

    /// Serves `handler(path, review) -> (status, body)`. Paths starting with `/slow` answer after
    /// 3 s; paths starting with `/together` wait until two such requests are in flight.
    async fn serve(
        handler: impl Fn(&str, &Value) -> (u16, String) + Send + Sync + 'static,
    ) -> TestServer {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let state = ServerState {
            handler: Arc::new(handler),
            calls: calls.clone(),
            together: Arc::new(tokio::sync::Barrier::new(2)),
        };
        let app = Router::new().fallback(handle).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        TestServer {
            base: format!("http://{addr}"),
            calls,
        }
    }

    async fn handle(State(state): State<ServerState>, uri: Uri, body: Bytes) -> impl IntoResponse {
        let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        state.calls.lock().unwrap().push(Call {
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or("").to_owned(),
            review: review.clone(),
        });
        if uri.path().starts_with("/slow") {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        if uri.path().starts_with("/together") {
            state.together.wait().await;
        }
        let (code, body) = (state.handler)(uri.path(), &review);
        let content_type = if body.starts_with('{') {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        };
        (
            StatusCode::from_u16(code).unwrap(),
            [(header::CONTENT_TYPE, content_type)],
            body,
        )
    }

    /// An `AdmissionReview` answer to `review` with `response` (its uid filled in).
    fn answer(review: &Value, mut response: Value) -> (u16, String) {
        response["uid"] = review["request"]["uid"].clone();
        let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                          "response": response});
        (200, body.to_string())
    }

    fn allow(review: &Value) -> (u16, String) {
        answer(review, json!({"allowed": true}))
    }

    fn patch_answer(review: &Value, operations: Value) -> (u16, String) {
        let patch = BASE64.encode(operations.to_string());
        answer(
            review,
            json!({"allowed": true, "patchType": "JSONPatch", "patch": patch}),
        )
    }

    /// A local URL nothing listens on.
    async fn dead_url() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}/hook")
    }

    async fn mutate(
        configs: &[Value],
        attrs: &Attributes<'_>,
        object: &mut Value,
    ) -> Result<(), AdmissionError> {
        admission()
            .mutate(configs, attrs, Some(object), &mut Vec::new())
            .await
    }

    async fn validate(configs: &[Value], attrs: &Attributes<'_>) -> Result<(), AdmissionError> {
        admission()
            .validate(configs, attrs, Some(&pod()), &mut Vec::new())
            .await
    }

    // ---- matching -------------------------------------------------------------------------

    #[test]
    fn rules_match_resources_and_subresources() {
        let cases = [
            (json!(["pods"]), "pods", "", true),
            (json!(["pods"]), "pods", "status", false),
            (json!(["pods/status"]), "pods", "status", true),
            (json!(["pods/status"]), "pods", "", false),
            (json!(["*"]), "deployments", "", true),
            (json!(["*"]), "pods", "status", false),
            (json!(["*/*"]), "pods", "status", true),
            (json!(["*/*"]), "pods", "", true),
            (json!(["*/scale"]), "deployments", "scale", true),
            (json!(["*/scale"]), "deployments", "status", false),
            (json!(["pods/*"]), "pods", "exec", true),
            // `*` as subresource also matches the main resource, as upstream.
            (json!(["pods/*"]), "pods", "", true),
            (json!(["services", "pods"]), "pods", "", true),
            (json!([]), "pods", "", false),
        ];
        for (resources, resource, sub, want) in cases {
            let rule = json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
                              "resources": resources});
            let attrs = Attributes {
                resource: GroupVersionResource { resource, ..PODS },
                sub_resource: Some(sub),
                ..pod_create()
            };
            assert_eq!(
                rule_matches(&rule, &attrs),
                want,
                "{resources} vs {resource}/{sub}"
            );
        }
    }

    #[test]
    fn rules_match_operations_groups_and_versions() {
        let rule = |ops: Value, groups: Value, versions: Value| {
            json!({"operations": ops, "apiGroups": groups, "apiVersions": versions,
                   "resources": ["*"]})
        };
        let attrs = pod_create();
        assert!(rule_matches(
            &rule(json!(["*"]), json!([""]), json!(["v1"])),
            &attrs
        ));
        assert!(rule_matches(
            &rule(json!(["UPDATE", "CREATE"]), json!(["*"]), json!(["*"])),
            &attrs
        ));
        assert!(!rule_matches(
            &rule(json!(["UPDATE"]), json!(["*"]), json!(["*"])),
            &attrs
        ));
        assert!(!rule_matches(
            &rule(json!(["*"]), json!(["apps"]), json!(["*"])),
            &attrs
        ));
        assert!(!rule_matches(
            &rule(json!(["*"]), json!(["*"]), json!(["v1beta1"])),
            &attrs
        ));
        assert!(!rule_matches(
            &json!({"apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}),
            &attrs
        ));
        let connect = Attributes {
            operation: Operation::Connect,
            sub_resource: Some("exec"),
            ..pod_create()
        };
        let exec = json!({"operations": ["CONNECT"], "apiGroups": [""], "apiVersions": ["v1"],
                          "resources": ["pods/exec"]});
        assert!(rule_matches(&exec, &connect));
    }

    #[test]
    fn rule_scopes() {
        let rule = |scope: &str| {
            json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
                   "resources": ["*"], "scope": scope})
        };
        let namespaced = pod_create();
        let node = cluster_create("Node", "nodes");
        // A namespace's own requests carry its name as namespace, yet it is cluster-scoped.
        let namespace = Attributes {
            namespace: Some("team-a"),
            ..cluster_create("Namespace", "namespaces")
        };
        for (scope, want) in [
            ("*", [true, true, true]),
            ("Namespaced", [true, false, false]),
            ("Cluster", [false, true, true]),
            ("Bogus", [false, false, false]),
        ] {
            let got = [&namespaced, &node, &namespace].map(|a| rule_matches(&rule(scope), a));
            assert_eq!(got, want, "scope {scope}");
        }
    }

    #[test]
    fn namespace_selector_uses_the_namespace_labels() {
        let hook = hook(
            "ns.example.com",
            "http://unused",
            json!({"namespaceSelector": {"matchLabels": {"env": "prod"}},
                   "rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
                              "resources": ["*"]}]}),
        );
        let prod = json!({"env": "prod"});
        let dev = json!({"env": "dev"});
        let in_prod = Attributes {
            namespace_labels: Some(&prod),
            ..pod_create()
        };
        let in_dev = Attributes {
            namespace_labels: Some(&dev),
            ..pod_create()
        };
        assert!(matches(&hook, &in_prod, Some(&pod())));
        assert!(!matches(&hook, &in_dev, Some(&pod())));
        assert!(
            !matches(&hook, &pod_create(), Some(&pod())),
            "unknown namespace: no labels"
        );
        // Cluster-scoped objects are never exempted by a namespace selector.
        assert!(matches(&hook, &cluster_create("Node", "nodes"), None));
        // A namespace being created is matched by its own new labels...
        let namespace = json!({"metadata": {"name": "team-a", "labels": {"env": "prod"}}});
        let create_ns = Attributes {
            namespace_labels: Some(&dev),
            ..cluster_create("Namespace", "namespaces")
        };
        assert!(matches(&hook, &create_ns, Some(&namespace)));
        // ...and one being deleted by its stored labels.
        let delete_ns = Attributes {
            operation: Operation::Delete,
            namespace: Some("team-a"),
            namespace_labels: Some(&dev),
            ..cluster_create("Namespace", "namespaces")
        };
        assert!(!matches(&hook, &delete_ns, None));
    }

    #[test]
    fn object_selector_matches_the_new_or_the_old_object() {
        let hook = hook(
            "obj.example.com",
            "http://unused",
            json!({"objectSelector": {"matchLabels": {"app": "web"}},
                   "rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"],
                              "resources": ["*"]}]}),
        );
        let labelled = |app: &str| json!({"metadata": {"labels": {"app": app}}});
        let (web, db) = (labelled("web"), labelled("db"));
        assert!(matches(&hook, &pod_create(), Some(&web)));
        assert!(!matches(&hook, &pod_create(), Some(&db)));
        assert!(!matches(&hook, &pod_create(), Some(&json!({}))));
        let update = |old| Attributes {
            operation: Operation::Update,
            old_object: Some(old),
            ..pod_create()
        };
        assert!(
            matches(&hook, &update(&web), Some(&db)),
            "old object matches"
        );
        assert!(!matches(&hook, &update(&db), Some(&db)));
        let delete = Attributes {
            operation: Operation::Delete,
            old_object: Some(&web),
            ..pod_create()
        };
        assert!(matches(&hook, &delete, None));
        assert!(!matches(
            &hook,
            &Attributes {
                operation: Operation::Delete,
                ..pod_create()
            },
            None
        ));
        // Without a selector there is nothing to match against, and everything matches.
        let plain = self::hook("plain.example.com", "http://unused", json!({}));
        assert!(matches(&plain, &pod_create(), None));
    }

    #[test]
    fn bad_selectors_fail_only_webhooks_whose_rules_match() {
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]});
        let matching = hook(
            "bad.example.com",
            "http://unused",
            json!({"objectSelector": bad}),
        );
        let error = should_call(&webhook(&matching), &pod_create(), Some(&pod())).unwrap_err();
        assert_eq!(error.http_status(), 500);
        assert!(
            error.message().starts_with("Internal error occurred: "),
            "{error}"
        );
        let other = hook(
            "bad.example.com",
            "http://unused",
            json!({"objectSelector": bad, "rules": [{"operations": ["DELETE"],
                   "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}]}),
        );
        assert!(!matches(&other, &pod_create(), Some(&pod())));
    }

    #[test]
    fn admission_configuration_objects_are_exempt() {
        for kind in [
            "MutatingWebhookConfiguration",
            "ValidatingAdmissionPolicyBinding",
        ] {
            let attrs = Attributes {
                kind: GroupVersionKind {
                    group: "admissionregistration.k8s.io",
                    version: "v1",
                    kind,
                },
                ..pod_create()
            };
            assert!(is_exempt(&attrs), "{kind}");
        }
        assert!(!is_exempt(&pod_create()));
    }

    // ---- calling webhooks -----------------------------------------------------------------

    #[tokio::test]
    async fn mutating_webhook_injects_a_sidecar_and_a_label() {
        let server = serve(|_, review| {
            patch_answer(
                review,
                json!([
                    {"op": "add", "path": "/spec/containers/-",
                     "value": {"name": "proxy", "image": "envoy:1.30"}},
                    {"op": "add", "path": "/metadata/labels/injected", "value": "true"}
                ]),
            )
        })
        .await;
        let configs = [config(
            "injector",
            vec![hook(
                "inject.example.com",
                &server.url("/inject"),
                json!({}),
            )],
        )];
        let options = json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"});
        let attrs = Attributes {
            options: Some(&options),
            ..pod_create()
        };
        let mut object = pod();
        mutate(&configs, &attrs, &mut object).await.unwrap();

        assert_eq!(
            object["spec"]["containers"][1],
            json!({"name": "proxy", "image": "envoy:1.30"})
        );
        assert_eq!(
            object["metadata"]["labels"],
            json!({"app": "web", "injected": "true"})
        );
        let calls = server.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(
            (calls[0].path.as_str(), calls[0].query.as_str()),
            ("/inject", "timeout=10s")
        );
        assert_eq!(
            calls[0].review,
            json!({
                "kind": "AdmissionReview",
                "apiVersion": "admission.k8s.io/v1",
                "request": {
                    "uid": UID,
                    "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                    "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                    "name": "web",
                    "namespace": "default",
                    "operation": "CREATE",
                    "userInfo": *USER,
                    "object": pod(),
                    "oldObject": null,
                    "dryRun": false,
                    "options": options,
                }
            })
        );
    }

    #[tokio::test]
    async fn webhooks_that_do_not_match_are_not_called() {
        let server = serve(|_, review| allow(review)).await;
        let deployments = json!({"rules": [{"operations": ["CREATE"], "apiGroups": ["apps"],
                                            "apiVersions": ["v1"], "resources": ["deployments"]}]});
        let prod_only = json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}});
        let configs = [config(
            "skipped",
            vec![
                hook("deploy.example.com", &server.url("/deploy"), deployments),
                hook("prod.example.com", &server.url("/prod"), prod_only),
                hook("pods.example.com", &server.url("/pods"), json!({})),
            ],
        )];
        mutate(&configs, &pod_create(), &mut pod()).await.unwrap();
        validate(&configs, &pod_create()).await.unwrap();
        assert_eq!(server.paths(), ["/pods", "/pods"]);
    }

    #[tokio::test]
    async fn denials_carry_the_webhook_status() {
        let server = serve(|path, review| match path {
            "/custom" => answer(
                review,
                json!({"allowed": false, "status": {"code": 422, "reason": "Invalid",
                       "message": "images must be pinned", "details": {"name": "web"}}}),
            ),
            "/bare" => answer(review, json!({"allowed": false})),
            _ => answer(
                review,
                json!({"allowed": false, "status": {"code": 200, "reason": "NotAllowed"}}),
            ),
        })
        .await;
        let deny = |path: &str| {
            [config(
                "policy",
                vec![hook("policy.example.com", &server.url(path), json!({}))],
            )]
        };

        let error = validate(&deny("/custom"), &pod_create()).await.unwrap_err();
        assert_eq!(error.http_status(), 422);
        assert_eq!(error.status_reason(), "Invalid");
        assert_eq!(
            error.to_status(),
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "admission webhook \"policy.example.com\" denied the request: images must be pinned",
                   "reason": "Invalid", "details": {"name": "web"}, "code": 422})
        );

        let error = validate(&deny("/bare"), &pod_create()).await.unwrap_err();
        assert_eq!((error.http_status(), error.status_reason()), (400, ""));
        assert_eq!(
            error.message(),
            "admission webhook \"policy.example.com\" denied the request without explanation"
        );
        assert!(error.to_status().get("reason").is_none());

        // A success code is never sent with a rejection; the reason stands in for the message.
        let error = mutate(&deny("/ok-code"), &pod_create(), &mut pod())
            .await
            .unwrap_err();
        assert_eq!(error.http_status(), 400);
        assert_eq!(
            error.message(),
            "admission webhook \"policy.example.com\" denied the request: NotAllowed"
        );
    }

    #[tokio::test]
    async fn failure_policy_decides_when_the_webhook_is_down() {
        let url = dead_url().await;
        let down = |policy: &str| {
            [config(
                "down",
                vec![hook(
                    "down.example.com",
                    &url,
                    json!({"failurePolicy": policy}),
                )],
            )]
        };
        let error = mutate(&down("Fail"), &pod_create(), &mut pod())
            .await
            .unwrap_err();
        let address = url.trim_start_matches("http://").trim_end_matches("/hook");
        assert_eq!(
            error.message(),
            format!(
                "Internal error occurred: failed calling webhook \"down.example.com\": failed to \
                 call webhook: Post \"{url}?timeout=10s\": dial tcp {address}: connect: connection refused"
            )
        );
        assert_eq!(
            (error.http_status(), error.status_reason()),
            (500, "InternalError")
        );
        assert!(validate(&down("Fail"), &pod_create()).await.is_err());
        // A missing failurePolicy means Fail.
        let no_policy = [config(
            "down",
            vec![hook("down.example.com", &url, json!({}))],
        )];
        assert!(validate(&no_policy, &pod_create()).await.is_err());

        let mut object = pod();
        mutate(&down("Ignore"), &pod_create(), &mut object)
            .await
            .unwrap();
        assert_eq!(object, pod());
        validate(&down("Ignore"), &pod_create()).await.unwrap();
    }

    #[tokio::test]
    async fn slow_webhooks_time_out() {
        let server = serve(|_, review| allow(review)).await;
        let slow = |policy: &str| {
            [config(
                "slow",
                vec![hook(
                    "slow.example.com",
                    &server.url("/slow"),
                    json!({"timeoutSeconds": 1, "failurePolicy": policy}),
                )],
            )]
        };
        let error = validate(&slow("Fail"), &pod_create()).await.unwrap_err();
        assert!(
            error.message().ends_with(&format!(
                "Post \"{}?timeout=1s\": context deadline exceeded",
                server.url("/slow")
            )),
            "{error}"
        );
        validate(&slow("Ignore"), &pod_create()).await.unwrap();

        // Timeouts above the API maximum are capped.
        let long = [config(
            "long",
            vec![hook(
                "long.example.com",
                &server.url("/long"),
                json!({"timeoutSeconds": 300}),
            )],
        )];
        validate(&long, &pod_create()).await.unwrap();
        assert_eq!(server.calls().last().unwrap().query, "timeout=30s");
    }

    #[tokio::test]
    async fn a_response_for_another_uid_is_a_failed_call() {
        let server = serve(|_, _| {
            (
                200,
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                         "response": {"uid": "not-the-uid", "allowed": true}})
                .to_string(),
            )
        })
        .await;
        let configs = |policy: &str| {
            [config(
                "uid",
                vec![hook(
                    "uid.example.com",
                    &server.url("/uid"),
                    json!({"failurePolicy": policy}),
                )],
            )]
        };
        let error = mutate(&configs("Fail"), &pod_create(), &mut pod())
            .await
            .unwrap_err();
        assert_eq!(
            error,
            AdmissionError::Failed {
                webhook: "uid.example.com".into(),
                message: format!(
                    "received invalid webhook response: expected response.uid=\"{UID}\", got \"not-the-uid\""
                ),
            }
        );
        validate(&configs("Ignore"), &pod_create()).await.unwrap();
    }

    #[tokio::test]
    async fn dry_runs_only_reach_webhooks_without_side_effects() {
        let server = serve(|_, review| allow(review)).await;
        let dry_run = Attributes {
            dry_run: true,
            ..pod_create()
        };
        let with = |side_effects: Value, policy: &str| {
            let mut hook = hook(
                "fx.example.com",
                &server.url("/fx"),
                json!({"failurePolicy": policy}),
            );
            hook["sideEffects"] = side_effects;
            if hook["sideEffects"].is_null() {
                hook.as_object_mut().unwrap().remove("sideEffects");
            }
            [config("fx", vec![hook])]
        };

        // Not covered by the failure policy.
        let error = validate(&with(json!("Some"), "Ignore"), &dry_run)
            .await
            .unwrap_err();
        assert_eq!(
            error,
            AdmissionError::DryRunUnsupported {
                webhook: "fx.example.com".into()
            }
        );
        assert_eq!(
            (error.http_status(), error.status_reason()),
            (400, "BadRequest")
        );
        assert_eq!(
            error.message(),
            "admission webhook \"fx.example.com\" does not support dry run"
        );
        assert!(
            mutate(&with(json!("Unknown"), "Ignore"), &dry_run, &mut pod())
                .await
                .is_err()
        );

        // A missing sideEffects is a failed call, which the failure policy covers.
        validate(&with(Value::Null, "Ignore"), &dry_run)
            .await
            .unwrap();
        let error = validate(&with(Value::Null, "Fail"), &dry_run)
            .await
            .unwrap_err();
        assert!(
            error.message().ends_with("Webhook SideEffects is nil"),
            "{error}"
        );
        assert!(server.calls().is_empty());

        validate(&with(json!("NoneOnDryRun"), "Fail"), &dry_run)
            .await
            .unwrap();
        validate(&with(json!("Some"), "Fail"), &pod_create())
            .await
            .unwrap();
        let calls = server.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].review["request"]["dryRun"], json!(true));
        assert_eq!(calls[1].review["request"]["dryRun"], json!(false));
    }

    /// `/observe` allows; `/label` adds the `seen` label when it is missing; `/allow` allows.
    async fn reinvocation_server() -> TestServer {
        serve(|path, review| match path {
            "/label" if review["request"]["object"]["metadata"]["labels"]["seen"].is_null() => {
                patch_answer(
                    review,
                    json!([{"op": "add", "path": "/metadata/labels/seen", "value": "yes"}]),
                )
            }
            _ => allow(review),
        })
        .await
    }

    #[tokio::test]
    async fn if_needed_webhooks_run_again_after_a_later_change() {
        let server = reinvocation_server().await;
        let configs = |policy: &str, second: &str| {
            [
                config(
                    "b-second",
                    vec![hook("second.example.com", &server.url(second), json!({}))],
                ),
                config(
                    "a-first",
                    vec![hook(
                        "first.example.com",
                        &server.url("/observe"),
                        json!({"reinvocationPolicy": policy}),
                    )],
                ),
            ]
        };
        let mut object = pod();
        mutate(&configs("IfNeeded", "/label"), &pod_create(), &mut object)
            .await
            .unwrap();
        assert_eq!(server.paths(), ["/observe", "/label", "/observe"]);
        let calls = server.calls();
        assert_eq!(
            calls[2].review["request"]["object"]["metadata"]["labels"]["seen"],
            "yes"
        );
        assert_eq!(object["metadata"]["labels"]["seen"], "yes");

        server.calls.lock().unwrap().clear();
        mutate(&configs("Never", "/label"), &pod_create(), &mut pod())
            .await
            .unwrap();
        assert_eq!(server.paths(), ["/observe", "/label"]);

        server.calls.lock().unwrap().clear();
        mutate(&configs("IfNeeded", "/allow"), &pod_create(), &mut pod())
            .await
            .unwrap();
        assert_eq!(server.paths(), ["/observe", "/allow"], "nothing changed");
    }

    #[tokio::test]
    async fn a_webhook_is_not_reinvoked_for_its_own_change() {
        let server = reinvocation_server().await;
        let configs = [config(
            "labels",
            vec![
                hook("allow.example.com", &server.url("/allow"), json!({})),
                hook(
                    "label.example.com",
                    &server.url("/label"),
                    json!({"reinvocationPolicy": "IfNeeded"}),
                ),
            ],
        )];
        mutate(&configs, &pod_create(), &mut pod()).await.unwrap();
        assert_eq!(server.paths(), ["/allow", "/label"]);
    }

    #[tokio::test]
    async fn validating_webhooks_are_called_concurrently() {
        // Each answer waits until both requests have arrived: sequential calls would time out.
        let server = serve(|_, review| allow(review)).await;
        let configs = [
            config(
                "one",
                vec![hook(
                    "one.example.com",
                    &server.url("/together/1"),
                    json!({"timeoutSeconds": 5}),
                )],
            ),
            config(
                "two",
                vec![hook(
                    "two.example.com",
                    &server.url("/together/2"),
                    json!({"timeoutSeconds": 5}),
                )],
            ),
        ];
        validate(&configs, &pod_create()).await.unwrap();
        assert_eq!(server.calls().len(), 2);
    }

    #[tokio::test]
    async fn the_first_failing_validator_in_name_order_wins_and_warnings_are_kept() {
        let server = serve(|path, review| match path {
            "/warn" => answer(review, json!({"allowed": true, "warnings": ["w1", "dup"]})),
            _ => answer(
                review,
                json!({"allowed": false, "warnings": ["dup", "w2"],
                                       "status": {"message": path}}),
            ),
        })
        .await;
        let configs = [
            config(
                "c",
                vec![hook("c.example.com", &server.url("/deny-c"), json!({}))],
            ),
            config(
                "a",
                vec![hook("a.example.com", &server.url("/warn"), json!({}))],
            ),
            config(
                "b",
                vec![hook("b.example.com", &server.url("/deny-b"), json!({}))],
            ),
        ];
        let mut warnings = Vec::new();
        let error = admission()
            .validate(&configs, &pod_create(), Some(&pod()), &mut warnings)
            .await
            .unwrap_err();
        assert_eq!(
            error.message(),
            "admission webhook \"b.example.com\" denied the request: /deny-b"
        );
        assert_eq!(warnings, ["w1", "dup", "w2"]);
    }

    #[tokio::test]
    async fn admission_review_versions() {
        let server = serve(|path, _| match path {
            // v1beta1 answers are not checked for uid or apiVersion.
            "/beta" => (
                200,
                json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
                                    "response": {"uid": "other", "allowed": true}})
                .to_string(),
            ),
            _ => (
                200,
                json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
                              "response": {"uid": UID, "allowed": true}})
                .to_string(),
            ),
        })
        .await;
        let with = |path: &str, versions: Value| {
            [config(
                "v",
                vec![hook(
                    "v.example.com",
                    &server.url(path),
                    json!({"admissionReviewVersions": versions}),
                )],
            )]
        };
        validate(&with("/beta", json!(["v1beta1", "v1"])), &pod_create())
            .await
            .unwrap();
        assert_eq!(
            server.calls()[0].review["apiVersion"],
            "admission.k8s.io/v1beta1"
        );

        let error = validate(&with("/v1", json!(["v2", "v1"])), &pod_create())
            .await
            .unwrap_err();
        assert!(
            error.message().ends_with(
                "received invalid webhook response: expected webhook response of \
                 admission.k8s.io/v1, Kind=AdmissionReview, got admission.k8s.io/v1beta1, Kind=AdmissionReview"
            ),
            "{error}"
        );
        assert_eq!(
            server.calls()[1].review["apiVersion"],
            "admission.k8s.io/v1"
        );

        let error = validate(&with("/v2", json!(["v2"])), &pod_create())
            .await
            .unwrap_err();
        assert_eq!(
            error.message(),
            "Internal error occurred: failed calling webhook \"v.example.com\": could not create \
             admission objects: webhook does not accept known AdmissionReview versions (v1, v1beta1)"
        );
        assert_eq!(server.calls().len(), 2);
    }

    #[tokio::test]
    async fn service_webhooks_are_reached_through_the_resolver() {
        let server = serve(|_, review| allow(review)).await;
        let base = server.base.clone();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let seen = asked.clone();
        let admission = Admission::new(Arc::new(move |namespace: &str, name: &str, port: u16| {
            seen.lock()
                .unwrap()
                .push(format!("{namespace}/{name}:{port}"));
            (name == "injector").then(|| base.clone())
        }));
        let with = |service: Value| {
            let mut hook = hook("svc.example.com", "unused", json!({}));
            hook["clientConfig"] = json!({"service": service});
            [config("svc", vec![hook])]
        };
        let service =
            json!({"namespace": "webhooks", "name": "injector", "port": 8443, "path": "/inject"});
        admission
            .validate(&with(service), &pod_create(), Some(&pod()), &mut Vec::new())
            .await
            .unwrap();
        assert_eq!(server.paths(), ["/inject"]);

        let error = admission
            .validate(
                &with(json!({"namespace": "webhooks", "name": "missing", "path": "/p"})),
                &pod_create(),
                Some(&pod()),
                &mut Vec::new(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            error.message(),
            "Internal error occurred: failed calling webhook \"svc.example.com\": failed to call \
             webhook: Post \"https://missing.webhooks.svc:443/p?timeout=10s\": service \"missing\" not found"
        );
        assert_eq!(
            *asked.lock().unwrap(),
            ["webhooks/injector:8443", "webhooks/missing:443"]
        );
    }

    #[tokio::test]
    async fn https_services_are_dialled_at_the_resolved_address_under_their_own_name() {
        // A plain HTTP server: the TLS handshake must fail there, after connecting to it.
        let server = serve(|_, review| allow(review)).await;
        let resolved = server.base.replace("http://", "https://");
        let admission = Admission::new(Arc::new(move |_: &str, _: &str, _: u16| {
            Some(resolved.clone())
        }));
        let mut hook = hook("tls.example.com", "unused", json!({}));
        hook["clientConfig"] = json!({
            "service": {"namespace": "webhooks", "name": "injector", "path": "/inject"},
            "caBundle": BASE64.encode(TEST_CA_PEM),
        });
        let error = admission
            .validate(
                &[config("tls", vec![hook])],
                &pod_create(),
                Some(&pod()),
                &mut Vec::new(),
            )
            .await
            .unwrap_err();
        let message = error.message();
        assert!(
            message.contains("failed to call webhook: Post \"https://injector.webhooks.svc:443/inject?timeout=10s\": "),
            "{message}"
        );
        assert!(
            !message.contains("dns error") && !message.contains("connection refused"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn ca_bundles_must_hold_certificates() {
        let server = serve(|_, review| allow(review)).await;
        let with = |ca_bundle: String| {
            let mut hook = hook("ca.example.com", &server.url("/ca"), json!({}));
            hook["clientConfig"]["caBundle"] = ca_bundle.into();
            [config("ca", vec![hook])]
        };
        validate(&with(BASE64.encode(TEST_CA_PEM)), &pod_create())
            .await
            .unwrap();
        for bad in [
            "not base64!".to_owned(),
            BASE64.encode("no certificate here"),
        ] {
            let error = validate(&with(bad), &pod_create()).await.unwrap_err();
            assert_eq!(
                error.message(),
                "Internal error occurred: failed calling webhook \"ca.example.com\": could not get \
                 REST client: unable to load root certificates: unable to parse bytes as PEM block"
            );
        }
        assert_eq!(server.calls().len(), 1);
    }

    #[tokio::test]
    async fn client_config_needs_a_url_or_a_service() {
        let mut hook = hook("none.example.com", "unused", json!({}));
        hook["clientConfig"] = json!({});
        let error = validate(&[config("none", vec![hook])], &pod_create())
            .await
            .unwrap_err();
        assert_eq!(
            error.message(),
            "Internal error occurred: failed calling webhook \"none.example.com\": could not get \
             REST client: failed calling webhook \"none.example.com\": webhook configuration must \
             have either service or URL"
        );
    }

    #[tokio::test]
    async fn patch_problems() {
        let server = serve(|path, review| match path {
            "/missing-path" => patch_answer(review, json!([{"op": "remove", "path": "/spec/nothing"}])),
            "/bogus-op" => patch_answer(review, json!([{"op": "bogus", "path": "/spec"}])),
            "/not-json" => answer(review, json!({"allowed": true, "patchType": "JSONPatch",
                                                 "patch": BASE64.encode("not json")})),
            "/no-type" => answer(review, json!({"allowed": true, "patch": BASE64.encode("[]")})),
            "/merge" => answer(review, json!({"allowed": true, "patchType": "MergePatch",
                                              "patch": BASE64.encode(r#"[{"op":"add","path":"/x","value":1}]"#)})),
            "/empty" => answer(review, json!({"allowed": true, "patchType": "JSONPatch",
                                              "patch": BASE64.encode("[]")})),
            _ => patch_answer(review, json!([{"op": "add", "path": "/x", "value": 1}])),
        })
        .await;
        let with = |path: &str, policy: &str| {
            [config(
                "p",
                vec![hook(
                    "p.example.com",
                    &server.url(path),
                    json!({"failurePolicy": policy,
                "rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}]}),
                )],
            )]
        };

        // Patches that do not apply are internal errors, whatever the failure policy says.
        for path in ["/missing-path", "/bogus-op"] {
            let mut object = pod();
            let error = mutate(&with(path, "Ignore"), &pod_create(), &mut object)
                .await
                .unwrap_err();
            assert!(
                matches!(error, AdmissionError::Internal { .. }),
                "{path}: {error:?}"
            );
            assert_eq!(error.http_status(), 500);
            assert_eq!(object, pod(), "{path}: object left alone");
        }
        let delete = Attributes {
            operation: Operation::Delete,
            old_object: None,
            ..pod_create()
        };
        let error = admission()
            .mutate(&with("/add", "Ignore"), &delete, None, &mut Vec::new())
            .await
            .unwrap_err();
        assert_eq!(
            error.message(),
            "Internal error occurred: admission webhook \"p.example.com\" attempted to modify the \
             object, which is not supported for this operation"
        );

        // Malformed answers are failed calls.
        let mut object = pod();
        mutate(&with("/not-json", "Ignore"), &pod_create(), &mut object)
            .await
            .unwrap();
        assert_eq!(object, pod());
        let error = mutate(&with("/not-json", "Fail"), &pod_create(), &mut pod())
            .await
            .unwrap_err();
        assert!(
            error
                .message()
                .contains("received undecodable patch in webhook response: "),
            "{error}"
        );
        let error = mutate(&with("/no-type", "Fail"), &pod_create(), &mut pod())
            .await
            .unwrap_err();
        assert!(
            error.message().ends_with("received invalid webhook response: webhook returned response.patch but not response.patchType"),
            "{error}"
        );
        let error = mutate(&with("/merge", "Fail"), &pod_create(), &mut pod())
            .await
            .unwrap_err();
        assert!(
            error
                .message()
                .ends_with("unsupported patch type \"MergePatch\""),
            "{error}"
        );
        let error = validate(&with("/add", "Fail"), &pod_create())
            .await
            .unwrap_err();
        assert!(
            error
                .message()
                .ends_with("validating webhook may not return response.patch"),
            "{error}"
        );

        let mut object = pod();
        mutate(&with("/empty", "Fail"), &pod_create(), &mut object)
            .await
            .unwrap();
        assert_eq!(object, pod());
    }

    #[tokio::test]
    async fn unusable_http_answers_are_failed_calls() {
        let server = serve(|path, _| match path {
            "/boom" => (500, "boom\n".into()),
            "/missing" => (404, "404 page not found".into()),
            "/status" => (
                503,
                json!({"kind": "Status", "message": "draining"}).to_string(),
            ),
            "/absent" => (
                200,
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).to_string(),
            ),
            _ => (200, "ok".into()),
        })
        .await;
        let cases = [
            (
                "/boom",
                "failed to call webhook: an error on the server (\"boom\") has prevented the request from succeeding",
            ),
            (
                "/missing",
                "failed to call webhook: the server could not find the requested resource",
            ),
            ("/status", "failed to call webhook: draining"),
            (
                "/absent",
                "received invalid webhook response: webhook response was absent",
            ),
            (
                "/text",
                "failed to call webhook: couldn't get version/kind; json parse error: expected value at line 1 column 1",
            ),
        ];
        for (path, want) in cases {
            let configs = [config(
                "h",
                vec![hook("h.example.com", &server.url(path), json!({}))],
            )];
            let error = validate(&configs, &pod_create()).await.unwrap_err();
            assert_eq!(
                error,
                AdmissionError::Failed {
                    webhook: "h.example.com".into(),
                    message: want.into()
                },
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn match_conditions_are_not_evaluated() {
        let server = serve(|_, review| allow(review)).await;
        let conditions = json!({"matchConditions": [{"name": "never", "expression": "false"}]});
        let configs = [config(
            "cel",
            vec![hook("cel.example.com", &server.url("/cel"), conditions)],
        )];
        validate(&configs, &pod_create()).await.unwrap();
        assert_eq!(server.paths(), ["/cel"]);
    }
}

#[cfg(test)]
mod patch_encoding_tests {
    use super::*;

    #[test]
    fn a_patch_is_read_from_base64_or_from_an_array_of_bytes() {
        let base64 = decode_response(&json!({"uid": "u", "allowed": true, "patch": "W10="}))
            .expect("base64 patch");
        assert_eq!(base64.patch, b"[]");
        let array = decode_response(&json!({"uid": "u", "allowed": true, "patch": [91, 93]}))
            .expect("array patch");
        assert_eq!(array.patch, b"[]");
        let err = decode_response(&json!({"uid": "u", "allowed": true, "patch": [91, 300]}))
            .expect_err("not bytes");
        assert!(err.contains("0-255"), "{err}");
        let err = decode_response(&json!({"uid": "u", "allowed": true, "patch": 5}))
            .expect_err("neither");
        assert!(err.contains("base64-encoded string"), "{err}");
    }
}
