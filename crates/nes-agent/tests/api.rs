//! The HTTP API over real HTTP: the real router and `serve`, a fake agent, `AgentClient` and plain
//! reqwest.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use nes_agent::agent::{Agent, ApplyError};
use nes_agent::api::{self, ApiState, ErrorBody};
use nes_agent::auth::TokenAuth;
use nes_agent::client::{AgentClient, ClientError};
use nes_api::{
    Address, ApiError, ApplyResponse, BootId, DesiredConfig, ItemResult, ItemState, Status,
};
use reqwest::StatusCode;
use tokio::sync::{oneshot, watch};

const TOKEN: &str = "s3cret-token";
const DEADLINE: Duration = Duration::from_secs(10);

/// Validates like the real agent, stores the config, answers every item `applied` and publishes
/// a new status per accepted apply.
struct FakeAgent {
    host_links: BTreeSet<String>,
    boot_id: BootId,
    config: Mutex<Option<DesiredConfig>>,
    sender: Mutex<Option<watch::Sender<Arc<Status>>>>,
    receiver: watch::Receiver<Arc<Status>>,
    healthy: AtomicBool,
    unavailable: AtomicBool,
}

impl FakeAgent {
    fn new() -> Self {
        let boot_id = BootId::from_u128(0x5eed);
        let (sender, receiver) = watch::channel(Arc::new(Status {
            boot_id: boot_id.clone(),
            generation: None,
            links: vec![],
            addresses: vec![],
            routes: vec![],
            results: vec![],
        }));
        FakeAgent {
            host_links: ["lo", "eth0"].map(String::from).into(),
            boot_id,
            config: Mutex::new(None),
            sender: Mutex::new(Some(sender)),
            receiver,
            healthy: AtomicBool::new(true),
            unavailable: AtomicBool::new(false),
        }
    }

    fn stored(&self) -> Option<DesiredConfig> {
        self.config.lock().unwrap().clone()
    }

    /// What the agent does at shutdown: watchers see the channel close.
    fn drop_sender(&self) {
        self.sender.lock().unwrap().take();
    }

    fn accept(&self, config: DesiredConfig) -> Result<ApplyResponse, ApplyError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(ApplyError::Unavailable("shutting down".into()));
        }
        nes_api::validate(&config, &self.host_links).map_err(ApplyError::Invalid)?;
        let mut stored = self.config.lock().unwrap();
        nes_api::generation::check(
            stored.as_ref().map(|c| c.generation),
            config.generation,
            || stored.as_ref() == Some(&config),
        )?;
        let results: Vec<ItemResult> = nes_api::apply_order(&config)
            .into_iter()
            .map(|item| ItemResult {
                item,
                state: ItemState::Applied,
                message: None,
            })
            .collect();
        if let Some(sender) = self.sender.lock().unwrap().as_ref() {
            sender.send_modify(|status| {
                let mut next = Status::clone(status);
                next.generation = Some(config.generation);
                next.results = results.clone();
                *status = Arc::new(next);
            });
        }
        let response = ApplyResponse {
            generation: config.generation,
            boot_id: self.boot_id.clone(),
            results,
        };
        *stored = Some(config);
        Ok(response)
    }
}

impl Agent for FakeAgent {
    async fn apply(&self, config: DesiredConfig) -> Result<ApplyResponse, ApplyError> {
        self.accept(config)
    }

    fn config(&self) -> Option<DesiredConfig> {
        self.stored()
    }

    fn status(&self) -> watch::Receiver<Arc<Status>> {
        self.receiver.clone()
    }

    fn metrics_text(&self) -> String {
        "# TYPE nes_fake_total counter\nnes_fake_total 1\n".into()
    }

    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }
}

struct Harness {
    base: String,
    agent: Arc<FakeAgent>,
    state: ApiState,
    token_file: PathBuf,
    http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let agent = Arc::new(FakeAgent::new());
        let state = ApiState::new();
        let router = api::router_with_state(
            Arc::clone(&agent),
            TokenAuth::from_file(&token_file),
            state.clone(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = tokio::spawn(api::serve(listener, router, async move {
            let _ = stop.await;
        }));
        Harness {
            base,
            agent,
            state,
            token_file,
            http: reqwest::Client::new(),
            shutdown: Some(shutdown),
            server,
            _dir: dir,
        }
    }

    fn client(&self) -> AgentClient {
        self.client_with(Some(TOKEN))
    }

    fn client_with(&self, token: Option<&str>) -> AgentClient {
        AgentClient::with_client(self.http.clone(), &self.base, token.map(String::from))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A raw `PUT /v1/config` with the right token.
    async fn put_raw(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .put(self.url("/v1/config"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(DEADLINE, future)
        .await
        .expect("deadline passed")
}

/// Polls `condition` until it holds or the deadline passes (for state with no change signal).
async fn eventually(mut condition: impl FnMut() -> bool) {
    testkit::eventually("the condition", DEADLINE, || {
        let holds = condition();
        async move { holds.then_some(()) }
    })
    .await;
}

async fn error_body(response: reqwest::Response) -> Vec<ApiError> {
    response.json::<ErrorBody>().await.unwrap().errors
}

fn config(generation: u64) -> DesiredConfig {
    DesiredConfig {
        generation,
        addresses: vec![Address {
            interface: "eth0".into(),
            cidr: "10.0.0.5/24".into(),
        }],
        ..Default::default()
    }
}

fn api_error(error: ClientError) -> (u16, Vec<ApiError>) {
    match error {
        ClientError::Api { status, errors } => (status, errors),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn put_then_get_config_and_status() {
    let h = Harness::start().await;
    let client = h.client();

    let response = client.apply(&config(1)).await.unwrap();
    assert_eq!(response.generation, 1);
    assert_eq!(response.boot_id, h.agent.boot_id);
    assert_eq!(response.results.len(), 1);
    assert_eq!(response.results[0].state, ItemState::Applied);

    assert_eq!(client.config().await.unwrap(), Some(config(1)));
    let status = client.status().await.unwrap();
    assert_eq!(status.generation, Some(1));
    assert_eq!(status.boot_id, h.agent.boot_id);
}

#[tokio::test]
async fn get_config_before_any_is_404() {
    let h = Harness::start().await;
    assert_eq!(h.client().config().await.unwrap(), None);

    let response = h.http.get(h.url("/v1/config")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_body(response).await[0].code, "notFound");
}

#[tokio::test]
async fn writes_without_a_token_are_401_with_a_challenge() {
    let h = Harness::start().await;
    let (status, errors) = api_error(h.client_with(None).apply(&config(1)).await.unwrap_err());
    assert_eq!((status, errors[0].code.as_str()), (401, "unauthorized"));

    let response = h
        .http
        .put(h.url("/v1/config"))
        .header("authorization", "Basic dXNlcjpwdw==")
        .json(&config(1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(h.agent.stored(), None);
}

#[tokio::test]
async fn writes_with_a_wrong_token_are_403_and_never_echo_it() {
    let h = Harness::start().await;
    h.client().apply(&config(1)).await.unwrap();

    let wrong = h.client_with(Some("guess-1234"));
    let (status, errors) = api_error(wrong.apply(&config(2)).await.unwrap_err());
    assert_eq!((status, errors[0].code.as_str()), (403, "forbidden"));
    let text = format!("{errors:?}");
    assert!(
        !text.contains("guess-1234") && !text.contains(TOKEN),
        "{text}"
    );
    assert_eq!(h.agent.stored(), Some(config(1)));
}

#[tokio::test]
async fn writes_fail_closed_with_an_empty_or_missing_token_file() {
    let h = Harness::start().await;
    let client = h.client();

    std::fs::write(&h.token_file, "  \n").unwrap();
    let (status, errors) = api_error(client.apply(&config(1)).await.unwrap_err());
    assert_eq!((status, errors[0].code.as_str()), (503, "unavailable"));
    assert!(
        errors[0]
            .message
            .contains(&h.token_file.display().to_string())
    );
    assert_eq!(h.agent.stored(), None);

    std::fs::remove_file(&h.token_file).unwrap();
    let (status, errors) = api_error(client.apply(&config(1)).await.unwrap_err());
    assert_eq!(status, 503);
    assert!(!errors[0].message.contains(TOKEN));
    assert_eq!(h.agent.stored(), None);
}

#[tokio::test]
async fn a_rotated_token_file_applies_to_the_next_request() {
    let h = Harness::start().await;
    h.client().apply(&config(1)).await.unwrap();

    std::fs::write(&h.token_file, "rotated\n").unwrap();
    let (status, _) = api_error(h.client().apply(&config(2)).await.unwrap_err());
    assert_eq!(status, 403);
    assert_eq!(h.agent.stored(), Some(config(1)));

    let rotated = h.client_with(Some("rotated"));
    assert_eq!(rotated.apply(&config(2)).await.unwrap().generation, 2);
}

#[tokio::test]
async fn invalid_json_is_400_with_serdes_position() {
    let h = Harness::start().await;
    let response = h.put_raw("{\"generation\": 1,").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let errors = error_body(response).await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].code, "badRequest");
    assert!(errors[0].message.contains("line 1 column"), "{errors:?}");
    assert_eq!(errors[0].field, None);
    assert_eq!(h.agent.stored(), None);
}

#[tokio::test]
async fn unknown_fields_are_400_naming_the_field() {
    let h = Harness::start().await;
    let body = r#"{"generation": 1, "routes": [{"destination": "default", "gw": "10.0.0.1"}]}"#;
    let response = h.put_raw(body).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let errors = error_body(response).await;
    assert!(
        errors[0].message.contains("unknown field `gw`"),
        "{errors:?}"
    );
    assert_eq!(h.agent.stored(), None);
}

#[tokio::test]
async fn non_json_content_type_is_415_and_huge_bodies_413() {
    let h = Harness::start().await;
    let response = h
        .http
        .put(h.url("/v1/config"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body(r#"{"generation": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error_body(response).await[0].code, "unsupportedMediaType");

    let response = h.put_raw(vec![b' '; api::MAX_CONFIG_BYTES + 1]).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_body(response).await[0].code, "payloadTooLarge");
    assert_eq!(h.agent.stored(), None);
}

#[tokio::test]
async fn invalid_configs_are_422_with_one_error_per_rule() {
    let h = Harness::start().await;
    let mut bad = config(1);
    bad.addresses[0].cidr = "10.0.0.300/24".into();
    bad.addresses.push(Address {
        interface: "eth9".into(),
        cidr: "10.0.1.5/24".into(),
    });
    let (status, errors) = api_error(h.client().apply(&bad).await.unwrap_err());
    assert_eq!(status, 422);
    assert_eq!(
        errors[0],
        ApiError {
            code: "invalidCidr".into(),
            message: r#"addresses[0].cidr: "10.0.0.300/24" is not a valid CIDR"#.into(),
            field: Some("addresses[0].cidr".into()),
        }
    );
    assert_eq!(errors[1].code, "unknownInterface");
    assert_eq!(errors[1].field.as_deref(), Some("addresses[1].interface"));
    assert_eq!(errors.len(), 2);
    assert_eq!(h.agent.stored(), None);
}

#[tokio::test]
async fn conflicts_are_409_and_unavailability_503() {
    let h = Harness::start().await;
    let client = h.client();
    for generation in 1..=5 {
        client.apply(&config(generation)).await.unwrap();
    }

    let (status, errors) = api_error(client.apply(&config(3)).await.unwrap_err());
    assert_eq!((status, errors[0].code.as_str()), (409, "conflict"));
    assert!(errors[0].message.contains("generation 3"), "{errors:?}");

    // A forged jump to the end of the sequence is refused, and says what is accepted.
    let (status, errors) = api_error(client.apply(&config(u64::MAX)).await.unwrap_err());
    assert_eq!(status, 409);
    assert_eq!(
        errors[0].message,
        "generation 18446744073709551615 is not the next generation: the agent holds generation 5 and accepts 5 again (same content) or 6"
    );

    h.agent.unavailable.store(true, Ordering::SeqCst);
    let (status, errors) = api_error(client.apply(&config(6)).await.unwrap_err());
    assert_eq!((status, errors[0].code.as_str()), (503, "unavailable"));
    assert_eq!(h.agent.stored(), Some(config(5)));
}

#[tokio::test]
async fn ndjson_watch_sends_the_current_status_then_changes() {
    let h = Harness::start().await;
    let client = h.client();
    let mut statuses = Box::pin(client.watch().await.unwrap());

    let first = within(statuses.next()).await.unwrap().unwrap();
    assert_eq!(first.generation, None);
    eventually(|| h.state.watchers() == 1).await;

    client.apply(&config(1)).await.unwrap();
    let changed = within(statuses.next()).await.unwrap().unwrap();
    assert_eq!(changed.generation, Some(1));

    drop(statuses);
    eventually(|| h.state.watchers() == 0).await;
}

#[tokio::test]
async fn ndjson_is_the_default_watch_format() {
    let h = Harness::start().await;
    let response = h.http.get(h.url("/v1/status/watch")).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let mut chunks = response.bytes_stream();
    let mut text = Vec::new();
    while !text.contains(&b'\n') {
        text.extend_from_slice(&within(chunks.next()).await.unwrap().unwrap());
    }
    let status: Status = serde_json::from_slice(&text).unwrap();
    assert_eq!(status.boot_id, h.agent.boot_id);
}

/// Reads from an SSE body until one whole event (ending in a blank line) is buffered.
async fn next_event(
    chunks: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
) -> String {
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let event = buffer[..end].to_owned();
            buffer.drain(..end + 2);
            return event;
        }
        let chunk = within(chunks.next()).await.unwrap().unwrap();
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

fn sse_status(event: &str) -> Status {
    let mut lines = event.lines();
    assert_eq!(lines.next(), Some("event: status"), "{event}");
    let data = lines.next().and_then(|l| l.strip_prefix("data: "));
    assert_eq!(lines.next(), None, "one data line: {event}");
    serde_json::from_str(data.unwrap()).unwrap()
}

#[tokio::test]
async fn sse_watch_sends_status_events() {
    let h = Harness::start().await;
    let response = h
        .http
        .get(h.url("/v1/status/watch"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut chunks = response.bytes_stream();
    let mut buffer = String::new();

    let first = sse_status(&next_event(&mut chunks, &mut buffer).await);
    assert_eq!(first.generation, None);

    h.client().apply(&config(1)).await.unwrap();
    let changed = sse_status(&next_event(&mut chunks, &mut buffer).await);
    assert_eq!(changed.generation, Some(1));
}

#[tokio::test]
async fn watch_ends_when_the_agent_drops_its_sender() {
    let h = Harness::start().await;
    let mut statuses = Box::pin(h.client().watch().await.unwrap());
    within(statuses.next()).await.unwrap().unwrap();

    h.agent.drop_sender();
    assert!(within(statuses.next()).await.is_none());
    eventually(|| h.state.watchers() == 0).await;
}

#[tokio::test]
async fn graceful_shutdown_ends_open_watches() {
    let mut h = Harness::start().await;
    let mut statuses = Box::pin(h.client().watch().await.unwrap());
    within(statuses.next()).await.unwrap().unwrap();

    h.shutdown.take().unwrap().send(()).unwrap();
    assert!(within(statuses.next()).await.is_none());
    within(&mut h.server).await.unwrap().unwrap();
}

#[tokio::test]
async fn healthz_follows_the_agent() {
    let h = Harness::start().await;
    let response = h.http.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "ok");
    assert!(h.client().healthy().await.unwrap());

    h.agent.healthy.store(false, Ordering::SeqCst);
    let response = h.http.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!h.client().healthy().await.unwrap());
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let h = Harness::start().await;
    let response = h.http.get(h.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4"
    );
    assert!(response.text().await.unwrap().contains("nes_fake_total 1"));
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_the_error_shape() {
    let h = Harness::start().await;
    let response = h.http.get(h.url("/v2/nothing")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_body(response).await[0].code, "noRoute");

    let response = h.http.delete(h.url("/v1/config")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("PUT"), "{allow}");
    assert_eq!(error_body(response).await[0].code, "methodNotAllowed");
}
