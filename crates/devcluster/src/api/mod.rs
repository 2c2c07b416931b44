//! The API server proper: resolves a request to a resource, runs the verb with the real
//! server's semantics, and encodes the answer. HTTP framing is in [`crate::server`]; the rules
//! themselves live in [`read`] (get, list, watch), [`write`] (create, update, patch, apply) and
//! [`delete`].

mod auth;
pub mod authz;
mod delete;
mod lifecycle;
mod read;
mod scale;
mod write;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::admission::{Admission, ServiceResolver};
use crate::audit::{Audit, AuditEntry};
use crate::builtin::builtin_resources;
use crate::discovery;
use crate::error::{ApiError, Subject};
use crate::rbac::{Authorization, UserInfo};
use crate::request_info;
use crate::resources::{Registry, ResourceInfo};
use crate::route::{self, ResourcePath, Route};
use crate::store::{Collection, Store, StoreConfig};

pub use write::WriteOptions;

/// Query parameters the API understands.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// `labelSelector`
    pub label_selector: Option<String>,
    /// `fieldSelector`
    pub field_selector: Option<String>,
    /// `limit`
    pub limit: Option<usize>,
    /// `continue`
    pub continue_token: Option<String>,
    /// `resourceVersion`
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`
    pub resource_version_match: Option<String>,
    /// `watch`
    pub watch: bool,
    /// `allowWatchBookmarks`
    pub allow_watch_bookmarks: bool,
    /// `sendInitialEvents`
    pub send_initial_events: Option<bool>,
    /// `timeoutSeconds`
    pub timeout_seconds: Option<u64>,
    /// `dryRun=All`
    pub dry_run: bool,
    /// `fieldManager`
    pub field_manager: Option<String>,
    /// `force` (server-side apply)
    pub force: bool,
    /// `fieldValidation`: Ignore, Warn, Strict
    pub field_validation: Option<String>,
    /// `propagationPolicy`
    pub propagation_policy: Option<String>,
    /// `orphanDependents` (deprecated form of propagationPolicy=Orphan)
    pub orphan_dependents: Option<bool>,
    /// `gracePeriodSeconds`
    pub grace_period_seconds: Option<i64>,
    /// `includeObject` for Table responses: None, Metadata, Object
    pub include_object: Option<String>,
}

impl Query {
    /// Parses a raw query string. Unknown parameters are ignored, as upstream does.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut q = Query::default();
        let Some(raw) = raw else { return Ok(q) };
        let truthy = |v: &str| v == "true" || v == "1";
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            let v = v.into_owned();
            match k.as_ref() {
                "labelSelector" => q.label_selector = Some(v),
                "fieldSelector" => q.field_selector = Some(v),
                "limit" => {
                    let n: i64 = v.parse().map_err(|_| {
                        ApiError::bad_request(format!("invalid limit {v:?}: must be an integer"))
                    })?;
                    q.limit = (n > 0).then_some(n as usize);
                }
                "continue" => q.continue_token = Some(v).filter(|s| !s.is_empty()),
                "resourceVersion" => q.resource_version = Some(v),
                "resourceVersionMatch" => {
                    q.resource_version_match = Some(v).filter(|s| !s.is_empty())
                }
                "watch" => q.watch = truthy(&v),
                "allowWatchBookmarks" => q.allow_watch_bookmarks = truthy(&v),
                "sendInitialEvents" => q.send_initial_events = Some(truthy(&v)),
                "timeoutSeconds" => {
                    q.timeout_seconds = Some(v.parse().map_err(|_| {
                        ApiError::bad_request(format!("invalid timeoutSeconds {v:?}"))
                    })?)
                }
                "dryRun" => {
                    if v != "All" && !v.is_empty() {
                        return Err(ApiError::bad_request(format!(
                            "Invalid dry run value: {v:?}: supported values: \"All\""
                        )));
                    }
                    q.dry_run = v == "All";
                }
                "fieldManager" => q.field_manager = Some(v),
                "force" => q.force = truthy(&v),
                "fieldValidation" => q.field_validation = Some(v),
                "propagationPolicy" => q.propagation_policy = Some(v),
                "orphanDependents" => q.orphan_dependents = Some(truthy(&v)),
                "gracePeriodSeconds" => q.grace_period_seconds = v.parse().ok(),
                "includeObject" => q.include_object = Some(v),
                _ => {}
            }
        }
        Ok(q)
    }
}

/// One API request, decoded from HTTP.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// HTTP method.
    pub method: Method,
    /// Path without query.
    pub path: String,
    /// Raw query string.
    pub query: Option<String>,
    /// `Accept` header.
    pub accept: String,
    /// `Content-Type` header.
    pub content_type: String,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Body bytes.
    pub body: Bytes,
    /// Who the client says it is.
    pub credentials: Credentials,
}

/// The identity headers of a request.
#[derive(Clone, Default)]
pub struct Credentials {
    /// `Authorization` header.
    pub authorization: Option<String>,
    /// `Impersonate-User` header.
    pub impersonate_user: Option<String>,
    /// `Impersonate-Group` headers.
    pub impersonate_groups: Vec<String>,
    /// `Impersonate-Uid` header.
    pub impersonate_uid: Option<String>,
}

impl std::fmt::Debug for Credentials {
    // Tokens never reach logs, even debug ones.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("impersonate_user", &self.impersonate_user)
            .field("impersonate_groups", &self.impersonate_groups)
            .field("impersonate_uid", &self.impersonate_uid)
            .finish()
    }
}

/// What the server answers.
pub enum Reply {
    /// A JSON document with a status code.
    Json(StatusCode, Value),
    /// A stream of JSON lines (watch), each chunk one event.
    Stream(mpsc::Receiver<Bytes>),
    /// A pre-encoded JSON document.
    Bytes(StatusCode, Bytes),
    /// An empty body (HEAD, OPTIONS).
    Empty(StatusCode),
}

impl Reply {
    /// The HTTP status code of the answer (a watch stream starts with 200).
    pub fn code(&self) -> u16 {
        match self {
            Reply::Json(code, _) | Reply::Bytes(code, _) | Reply::Empty(code) => code.as_u16(),
            Reply::Stream(_) => 200,
        }
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Self {
        Reply::Json(
            StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            e.to_status(),
        )
    }
}

/// Settings of an API server.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// Storage settings.
    pub store: StoreConfig,
    /// The authorizer.
    pub authorization: Authorization,
    /// How many audit entries are kept in memory (0: [`crate::audit::DEFAULT_CAPACITY`]).
    pub audit_capacity: usize,
}

/// The API server state shared by every request.
pub struct ApiServer {
    /// Served resources.
    pub registry: Registry,
    /// Objects.
    pub store: Store,
    /// Webhook caller.
    pub admission: Admission,
    me: Weak<ApiServer>,
    next_cluster_ip: AtomicU32,
    cleanups: Mutex<HashSet<String>>,
    /// HMAC key of the service account tokens this server issues; random per server and
    /// never published, so only this server's TokenReview verifies its tokens.
    token_key: [u8; 32],
    /// The authorizer requests pass.
    authorization: Authorization,
    /// Every request and its answer.
    pub audit: Audit,
}

/// Resolves webhook services to addresses: devcluster runs no kube-proxy, so a Service is
/// reachable at the first address of its Endpoints (tests point them at 127.0.0.1).
struct EndpointsResolver {
    server: std::sync::Weak<ApiServer>,
}

impl ServiceResolver for EndpointsResolver {
    fn resolve(&self, namespace: &str, name: &str, port: u16) -> Option<String> {
        let server = self.server.upgrade()?;
        let info = server.registry.get("", "v1", "endpoints")?;
        let ep = server
            .collection(&info)
            .get(&(namespace.to_owned(), name.to_owned()))?;
        let subset = ep.get("subsets")?.as_array()?.first()?;
        let ip = subset
            .get("addresses")?
            .as_array()?
            .first()?
            .get("ip")?
            .as_str()?;
        // The Service port maps to the endpoint port of the same position; with one port it
        // is that port, which is all webhook services use.
        let target = subset
            .get("ports")
            .and_then(Value::as_array)
            .and_then(|p| p.first())
            .and_then(|p| p.get("port"))
            .and_then(Value::as_u64)
            .unwrap_or(u64::from(port));
        Some(format!("https://{ip}:{target}"))
    }
}

impl ApiServer {
    /// A server with the built-in resources, the default namespaces, and empty storage.
    pub fn new(config: ApiConfig) -> Arc<Self> {
        let server = Arc::new_cyclic(|weak| ApiServer {
            registry: Registry::with_builtins(builtin_resources()),
            store: Store::new(config.store),
            admission: Admission::new(Arc::new(EndpointsResolver {
                server: weak.clone(),
            })),
            me: weak.clone(),
            next_cluster_ip: AtomicU32::new(10),
            cleanups: Mutex::new(HashSet::new()),
            token_key: rand::random(),
            authorization: config.authorization,
            audit: Audit::new(if config.audit_capacity == 0 {
                crate::audit::DEFAULT_CAPACITY
            } else {
                config.audit_capacity
            }),
        });
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            if let Some(info) = server.registry.get("", "v1", "namespaces") {
                // Bootstrap objects cannot fail validation; an error here would be a bug.
                let _ = server.create_internal(&info, None, obj);
            }
        }
        server
    }

    /// The collection holding the objects of `info` (shared by the resources served from it).
    pub(crate) fn collection(&self, info: &ResourceInfo) -> Arc<Collection> {
        self.store.collection(&info.storage_key())
    }

    /// The key service account tokens are signed with.
    pub(crate) fn token_key(&self) -> &[u8] {
        &self.token_key
    }

    /// The next free service IP in 10.96.0.0/12.
    pub(crate) fn allocate_cluster_ip(&self) -> String {
        let n = self.next_cluster_ip.fetch_add(1, Ordering::Relaxed);
        let ip = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 96, 0, 0)) + n);
        ip.to_string()
    }

    /// Runs a cleanup controller (namespace or CRD finalization) once per key.
    pub(crate) fn spawn_cleanup<F, Fut>(&self, key: String, task: F)
    where
        F: FnOnce(Arc<ApiServer>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let Some(server) = self.me.upgrade() else {
            return;
        };
        if !self
            .cleanups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone())
        {
            return;
        }
        tokio::spawn(async move {
            task(server.clone()).await;
            server
                .cleanups
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        });
    }

    /// The authorizer this server runs.
    pub fn authorization(&self) -> Authorization {
        self.authorization
    }

    /// Handles one request: authentication, impersonation, authorization (as upstream's
    /// filters, before the path is resolved), the verb, and the audit entry of the answer.
    pub async fn handle(self: &Arc<Self>, req: ApiRequest) -> Reply {
        let info = request_info::parse(&req.method, &req.path, req.query.as_deref());
        let identity = authz::authenticate(self, &req.credentials)
            .map_err(|e| (String::new(), None, e))
            .and_then(|user| {
                let name = user.name.clone();
                authz::impersonate(self, user, &req.credentials).map_err(|e| (name, None, e))
            })
            .and_then(|id| {
                let decision = self.authorize(&id.user, &info);
                if decision.allowed {
                    Ok(id)
                } else {
                    let e = authz::forbidden(&id.user.name, &info, &decision.reason);
                    Err((id.user.name, id.impersonated_by, e))
                }
            });
        let (identity, reply) = match identity {
            Ok(id) => {
                let reply = match self.dispatch(req, &id.user).await {
                    Ok(reply) => reply,
                    Err(e) => e.into(),
                };
                ((id.user.name, id.impersonated_by), reply)
            }
            Err((user, by, e)) => ((user, by), e.into()),
        };
        self.audit.record(AuditEntry::new(
            &identity.0,
            identity.1.as_deref(),
            &info,
            reply.code(),
        ));
        reply
    }

    async fn dispatch(
        self: &Arc<Self>,
        req: ApiRequest,
        user: &UserInfo,
    ) -> Result<Reply, ApiError> {
        let route = route::parse(&req.path).ok_or_else(ApiError::no_route)?;
        if req.method == Method::OPTIONS || req.method == Method::HEAD {
            return Ok(Reply::Empty(StatusCode::OK));
        }
        let ok = |v: Value| Ok(Reply::Json(StatusCode::OK, v));
        match route {
            Route::Version => ok(discovery::version()),
            Route::Health => ok(json!("ok")),
            Route::CoreVersions => ok(discovery::core_versions()),
            Route::Groups => ok(discovery::groups(&self.registry)),
            Route::Group(g) => discovery::group(&self.registry, &g)
                .map(|v| Reply::Json(StatusCode::OK, v))
                .ok_or_else(ApiError::no_route),
            Route::ResourceList { group, version } => {
                discovery::resource_list(&self.registry, &group, &version)
                    .map(|v| Reply::Json(StatusCode::OK, v))
                    .ok_or_else(ApiError::no_route)
            }
            Route::OpenApiV2 => ok(discovery::openapi_v2(&self.registry)),
            Route::OpenApiV3Root => ok(discovery::openapi_v3_root(&self.registry)),
            Route::OpenApiV3 { group, version } => {
                discovery::openapi_v3(&self.registry, &group, &version)
                    .map(|v| Reply::Json(StatusCode::OK, v))
                    .ok_or_else(ApiError::no_route)
            }
            Route::Resource(path) => self.resource(req, path, user).await,
        }
    }

    async fn resource(
        self: &Arc<Self>,
        req: ApiRequest,
        path: ResourcePath,
        user: &UserInfo,
    ) -> Result<Reply, ApiError> {
        let info = self
            .registry
            .get(&path.group, &path.version, &path.resource)
            .ok_or_else(ApiError::no_route)?;
        if path.namespace.is_some() && !info.namespaced {
            return Err(ApiError::no_route());
        }
        let query = Query::parse(req.query.as_deref())?;
        let watch = query.watch || path.watch_prefix;
        let sub = path.subresource.as_deref();
        if let Some(sub) = sub {
            let known = match sub {
                "status" => info.status_subresource,
                "scale" => info.scale.is_some(),
                "finalize" => info.kind == "Namespace",
                "token" => info.group.is_empty() && info.plural == "serviceaccounts",
                _ => false,
            };
            if !known || path.name.is_none() {
                return Err(ApiError::no_route());
            }
        }
        let ns = path.namespace.as_deref();
        let not_allowed = || {
            Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({} {})",
                req.method, req.path
            )))
        };
        // Create-only endpoints answered without storage: TokenRequest and TokenReview.
        if sub == Some("token") {
            return match (&req.method, ns, path.name.as_deref()) {
                (&Method::POST, Some(ns), Some(name)) => auth::create_token(self, ns, name, &req),
                _ => not_allowed(),
            };
        }
        if info.group == "authentication.k8s.io" && info.plural == "tokenreviews" {
            return match (&req.method, path.name.as_deref(), sub) {
                (&Method::POST, None, None) if !watch => auth::review(self, &req),
                _ => not_allowed(),
            };
        }
        if info.group == "authorization.k8s.io"
            && matches!(
                info.plural.as_str(),
                "selfsubjectaccessreviews" | "subjectaccessreviews"
            )
        {
            let self_review = info.plural == "selfsubjectaccessreviews";
            return match (&req.method, path.name.as_deref(), sub) {
                (&Method::POST, None, None) if !watch => {
                    authz::access_review(self, &req, user, self_review)
                }
                _ => not_allowed(),
            };
        }
        match (&req.method, path.name.as_deref(), sub) {
            (&Method::GET, None, _) if watch => {
                read::watch(self, &info, ns, None, &query, &req.accept)
            }
            (&Method::GET, Some(name), None) if watch => {
                read::watch(self, &info, ns, Some(name), &query, &req.accept)
            }
            (&Method::GET, None, _) => read::list(self, &info, ns, &query, &req.accept),
            (&Method::GET, Some(name), Some("scale")) => scale::get(self, &info, ns, name),
            (&Method::GET, Some(name), _) => read::get(self, &info, ns, name, &req.accept, &query),
            (&Method::POST, None, None) => {
                let (code, obj) = write::create(self, &info, ns, &req, &query).await?;
                Ok(Reply::Json(code, obj))
            }
            (&Method::PUT, Some(name), Some("scale")) => {
                scale::put(self, &info, ns, name, &req, &query).await
            }
            (&Method::PATCH, Some(name), Some("scale")) => {
                scale::patch(self, &info, ns, name, &req, &query).await
            }
            (&Method::PUT, Some(name), sub) => {
                let (code, obj) = write::update(self, &info, ns, name, sub, &req, &query).await?;
                Ok(Reply::Json(code, obj))
            }
            (&Method::PATCH, Some(name), sub) => {
                let (code, obj) = write::patch(
                    self,
                    &info,
                    ns,
                    name,
                    sub,
                    write::Call {
                        req: &req,
                        q: &query,
                        user,
                    },
                )
                .await?;
                Ok(Reply::Json(code, obj))
            }
            (&Method::DELETE, Some(name), None) => {
                delete::delete(self, &info, ns, name, &req, &query).await
            }
            (&Method::DELETE, None, None) => {
                delete::delete_collection(self, &info, ns, &req, &query).await
            }
            _ => not_allowed(),
        }
    }
}

/// The subject of errors about an object of a resource.
pub(crate) fn subject<'a>(info: &'a ResourceInfo, name: &'a str) -> Subject<'a> {
    Subject {
        group: &info.group,
        resource: &info.plural,
        name,
    }
}

/// The namespace an object of `info` is stored under ("" for cluster scoped).
pub(crate) fn ns_key(info: &ResourceInfo, ns: Option<&str>) -> String {
    if info.namespaced {
        ns.unwrap_or_default().to_owned()
    } else {
        String::new()
    }
}
