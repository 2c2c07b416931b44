//! The API on the test binary's cluster (the real kube-apiserver with `KUBECREW_CLUSTER=real`,
//! devcluster by default; see localcluster), each test in a namespace of its own: pod-bound
//! tokens from TokenRequest, the server in-process, the custom resources checked with a kube
//! client.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use nes_api::cli::{ConfigurationResponse, ErrorBody, StatusResponse, SubscriptionResponse};
use nes_api::crd::{NetworkCare, NetworkConfiguration};
use nes_cliserver::Settings;
use nes_cliserver::testing::{COLLECTION_TIMEOUT, Fixture, STATEFULSET, TIMEOUT};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post(url: &str, token: Option<&str>, body: Value) -> reqwest::Response {
    let mut request = http().post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn errors(response: reqwest::Response) -> ErrorBody {
    response.json().await.unwrap()
}

fn configurations(f: &Fixture) -> Api<NetworkConfiguration> {
    Api::namespaced(f.client.clone(), &f.namespace)
}

fn cares(f: &Fixture) -> Api<NetworkCare> {
    Api::namespaced(f.client.clone(), &f.namespace)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_merges_requests_into_the_pods_configuration() {
    let f = Fixture::start().await;
    let token = f.token("x-0").await;
    let url = format!("{}/configuration", f.pod_url("x-0"));

    let first = post(
        &url,
        Some(&token),
        json!({"add": {"addresses": [{"interface": "eth0", "cidr": "10.1.0.5/24"}]}}),
    )
    .await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: ConfigurationResponse = first.json().await.unwrap();
    assert_eq!(first.addresses.len(), 1);

    let second = post(
        &url,
        Some(&token),
        json!({
            "add": {
                "addresses": [{"interface": "eth0", "cidr": "10.1.0.6/24"}],
                "routes": [{"destination": "10.2.0.0/16", "gateway": "10.1.0.1"}]
            },
            "remove": [{"kind": "address", "interface": "eth0", "cidr": "10.1.0.5/24"}]
        }),
    )
    .await;
    assert_eq!(second.status(), StatusCode::OK);
    let second: ConfigurationResponse = second.json().await.unwrap();
    assert_eq!(second.pod, "x-0");
    assert!(second.generation > first.generation, "{second:?}");
    assert_eq!(second.addresses[0].cidr, "10.1.0.6/24");
    assert_eq!(second.routes[0].destination, "10.2.0.0/16");

    // The resource: merged, named after the pod, owned by the StatefulSet.
    let cr = configurations(&f).get("x-0").await.unwrap();
    assert_eq!(cr.spec.pod, "x-0");
    assert_eq!(cr.spec.addresses, second.addresses);
    assert_eq!(cr.spec.routes, second.routes);
    let set = Api::<StatefulSet>::namespaced(f.client.clone(), &f.namespace)
        .get(STATEFULSET)
        .await
        .unwrap();
    let owners = cr.metadata.owner_references.clone().unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].kind, "StatefulSet");
    assert_eq!(Some(&owners[0].uid), set.metadata.uid.as_ref());
    assert_eq!(owners[0].controller, Some(true));
    assert_eq!(owners[0].block_owner_deletion, Some(true));

    // GET answers the same; an unchanged request writes nothing.
    let got: ConfigurationResponse = http()
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, second);
    let again: ConfigurationResponse = post(&url, Some(&token), json!({"add": {}}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again.generation, second.generation);

    // Invalid input: 422 with the field of the request.
    let invalid = post(
        &url,
        Some(&token),
        json!({"add": {"addresses": [{"interface": "eth0", "cidr": "10.1.0.300/24"}]}}),
    )
    .await;
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = errors(invalid).await;
    assert_eq!(body.errors[0].code, "invalidCidr");
    assert_eq!(
        body.errors[0].field.as_deref(),
        Some("add.addresses[0].cidr")
    );
    // Malformed JSON: 400 with serde's message.
    let malformed = post(&url, Some(&token), json!({"add": {}, "delete": []})).await;
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert!(
        errors(malformed).await.errors[0]
            .message
            .contains("unknown field `delete`")
    );

    // DELETE removes the resource; then GET is 404.
    let deleted = http()
        .delete(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    eventually("configuration deleted", TIMEOUT, || async {
        configurations(&f)
            .get_opt("x-0")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let missing = http().get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_pods_own_token_is_accepted() {
    let f = Fixture::start().await;
    let own = f.token("x-0").await;
    let other = f.token("x-1").await;
    let url = format!("{}/configuration", f.pod_url("x-0"));
    let body = json!({"add": {"addresses": [{"interface": "eth0", "cidr": "10.1.0.5/24"}]}});
    assert_eq!(
        post(&url, Some(&own), body.clone()).await.status(),
        StatusCode::OK
    );
    let before = configurations(&f).get("x-0").await.unwrap();

    // x-1's token on x-0's path: 403, nothing changed, the message does not echo the token.
    let replace = json!({"replace": true, "add": {}});
    let forbidden = post(&url, Some(&other), replace.clone()).await;
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    let message = errors(forbidden).await.errors[0].message.clone();
    assert!(
        message.contains(&format!("{}/x-0", f.namespace)),
        "{message}"
    );
    assert!(!message.contains("x-1") && !message.contains(&other[..20]));
    for route in ["configuration", "status", "subscription"] {
        let read = http()
            .get(format!("{}/{route}", f.pod_url("x-0")))
            .bearer_auth(&other)
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), StatusCode::FORBIDDEN, "GET {route}");
    }
    let after = configurations(&f).get("x-0").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );

    // No token, a malformed token, a token of another audience: 401 with a challenge.
    let missing = post(&url, None, replace.clone()).await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert!(
        errors(missing).await.errors[0]
            .message
            .contains("missing bearer token")
    );
    let garbage = post(&url, Some("not-a-token"), replace.clone()).await;
    assert_eq!(garbage.status(), StatusCode::UNAUTHORIZED);
    let elsewhere = f.token_for("x-0", "another-service").await;
    let misdirected = post(&url, Some(&elsewhere), replace).await;
    assert_eq!(misdirected.status(), StatusCode::UNAUTHORIZED);
    assert!(
        errors(misdirected).await.errors[0]
            .message
            .contains("audience"),
        "the API server's reason names the audience"
    );

    // A pod that is not of a StatefulSet can authenticate but has no configuration.
    let pods: Api<Pod> = Api::namespaced(f.client.clone(), &f.namespace);
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "lone"},
            "spec": {"serviceAccountName": "app", "containers": [{"name": "c", "image": "app:1"}]}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let lone = f.token("lone").await;
    let refused = post(
        &format!("{}/configuration", f.pod_url("lone")),
        Some(&lone),
        body,
    )
    .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error = &errors(refused).await.errors[0];
    assert_eq!(error.code, "noStatefulSet");
    assert!(error.message.contains("no StatefulSet owner"), "{error:?}");

    // Its subscription is owned by the pod itself.
    let subscribed = http()
        .put(format!("{}/subscription", f.pod_url("lone")))
        .bearer_auth(&lone)
        .json(&json!({"callback": {"url": "http://lone:8080/"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(subscribed.status(), StatusCode::OK);
    let subscribed: SubscriptionResponse = subscribed.json().await.unwrap();
    assert_eq!(subscribed.owner.unwrap().kind, "Pod");

    let metrics = http()
        .get(format!("{}/metrics", f.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains(r#"code="403",route="/v1/namespaces/{namespace}/pods/{pod}/configuration""#),
        "{metrics}"
    );
    assert!(metrics.contains("nes_cliserver_tokenreview_duration_seconds_count"));
    assert!(metrics.contains(r#"nes_cliserver_tokenreview_cache_total{result="hit"}"#));
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_and_configurations_go_with_the_statefulset() {
    let f = Fixture::start().await;
    let token = f.token("x-0").await;
    let url = format!("{}/subscription", f.pod_url("x-0"));
    let put = http()
        .put(&url)
        .bearer_auth(&token)
        .json(&json!({
            "pods": {"names": ["x-1"], "selector": {"app": "x"}},
            "filter": {"interfaces": ["eth0"], "changes": ["route", "result"]},
            "callback": {"url": "http://x-0.x:8080/reports"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let answer: SubscriptionResponse = put.json().await.unwrap();
    assert_eq!(answer.pods.names, ["x-1"]);
    let owner = answer.owner.clone().unwrap();
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("StatefulSet", "x")
    );

    let care = cares(&f).get("x-0").await.unwrap();
    assert_eq!(care.spec.callback.url, "http://x-0.x:8080/reports");
    assert_eq!(
        care.spec.pods.selector.unwrap().match_labels.unwrap()["app"],
        "x"
    );
    let owners = care.metadata.owner_references.unwrap();
    assert_eq!(owners[0].kind, "StatefulSet");

    // PUT again replaces; GET shows it; a bad URL is 422 with the field.
    let replaced: SubscriptionResponse = http()
        .put(&url)
        .bearer_auth(&token)
        .json(&json!({"callback": {"url": "https://collector/reports"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replaced.pods.names, ["x-0"], "defaults to the caller");
    let got: SubscriptionResponse = http()
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, replaced);
    let bad = http()
        .put(&url)
        .bearer_auth(&token)
        .json(&json!({"callback": {"url": "collector/reports"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        errors(bad).await.errors[0].field.as_deref(),
        Some("callback.url")
    );

    let configured = post(
        &format!("{}/configuration", f.pod_url("x-0")),
        Some(&token),
        json!({"add": {"addresses": [{"interface": "eth0", "cidr": "10.1.0.5/24"}]}}),
    )
    .await;
    assert_eq!(configured.status(), StatusCode::OK);

    // Deleting the StatefulSet: the garbage collector deletes both resources.
    Api::<StatefulSet>::namespaced(f.client.clone(), &f.namespace)
        .delete(STATEFULSET, &DeleteParams::background())
        .await
        .unwrap();
    eventually(
        "NetworkConfiguration and NetworkCare collected",
        COLLECTION_TIMEOUT,
        || async {
            let configuration = configurations(&f).get_opt("x-0").await.unwrap();
            let care = cares(&f).get_opt("x-0").await.unwrap();
            (configuration.is_none() && care.is_none()).then_some(())
        },
    )
    .await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_its_watch_follow_the_managers_writes() {
    let mut f = Fixture::start().await;
    let token = f.token("x-0").await;
    let status_url = format!("{}/status", f.pod_url("x-0"));
    let missing = http()
        .get(&status_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let configured: ConfigurationResponse = post(
        &format!("{}/configuration", f.pod_url("x-0")),
        Some(&token),
        json!({"add": {"addresses": [{"interface": "eth0", "cidr": "10.1.0.5/24"}]}}),
    )
    .await
    .json()
    .await
    .unwrap();

    let watch = http()
        .get(format!("{status_url}/watch"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), StatusCode::OK);
    assert_eq!(watch.headers()["content-type"], "application/x-ndjson");
    let mut lines = lines(watch);
    let first = next_status(&mut lines).await.expect("the current status");
    assert_eq!(first.generation, configured.generation);
    assert_eq!(first.applied_generation, None);

    // The manager (simulated) records the agent's answer.
    configurations(&f)
        .patch_status(
            "x-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "observedGeneration": configured.generation,
                "appliedGeneration": configured.generation,
                "bootId": "b1",
                "results": [{"item": "address 10.1.0.5/24 on eth0", "state": "applied"}],
                "conditions": [{"type": "Available", "status": "True", "reason": "Applied",
                    "message": "all items applied", "lastTransitionTime": "2025-01-02T03:04:05Z"}]
            }})),
        )
        .await
        .unwrap();
    let update = next_status(&mut lines).await.expect("the updated status");
    assert_eq!(update.applied_generation, Some(configured.generation));
    assert_eq!(update.results[0].item, "address 10.1.0.5/24 on eth0");
    assert_eq!(update.conditions[0].status, "True");

    let got: StatusResponse = http()
        .get(&status_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, update);

    // Shutting the server down ends the stream cleanly.
    f.stop_server().await;
    assert!(next_status(&mut lines).await.is_none(), "stream ended");
    f.shutdown().await;
}

/// Sends a request whose headers announce a 1 MiB body but only its first byte, and returns the
/// status line of the answer: the server must answer without waiting for the rest.
async fn status_line_without_the_body(f: &Fixture, path: &str, token: &str) -> String {
    let address = f.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(TIMEOUT, async {
        while !answer.windows(2).any(|w| w == b"\r\n") {
            let n = stream.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the server closed the connection without answering");
            answer.extend_from_slice(&buffer[..n]);
        }
    })
    .await
    .expect("an answer before the body was sent");
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().unwrap_or_default().to_owned()
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn metrics_text(f: &Fixture) -> String {
    http()
        .get(format!("{}/metrics", f.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_callers_cost_little_and_are_throttled() {
    let f = Fixture::start_with(Settings {
        auth_failures_per_minute: 3,
        ..Settings::default()
    })
    .await;
    let own = f.token("x-0").await;
    let other = f.token("x-1").await;
    let url = format!("{}/configuration", f.pod_url("x-0"));
    let path = url.trim_start_matches(&f.url).to_owned();
    // The pod's own token, reviewed once and cached.
    let got = http().get(&url).bearer_auth(&own).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::NOT_FOUND, "no configuration yet");

    // Refused before the body: a garbage token (failure 1), and x-1's valid token.
    let refused = status_line_without_the_body(&f, &path, "garbage-1").await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let forbidden = status_line_without_the_body(&f, &path, &other).await;
    assert!(forbidden.starts_with("HTTP/1.1 403"), "{forbidden}");

    // The same refused token again is answered from the negative cache.
    let again = post(&url, Some("garbage-1"), json!({})).await;
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    let text = metrics_text(&f).await;
    assert_eq!(
        metric(
            &text,
            r#"nes_cliserver_tokenreview_cache_total{result="negative_hit"}"#
        ),
        1.0
    );

    // Failures 2 and 3 use up the budget; the next new token is refused without a review.
    for token in ["garbage-2", "garbage-3"] {
        let answer = post(&url, Some(token), json!({})).await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    }
    let reviews = metric(
        &metrics_text(&f).await,
        "nes_cliserver_tokenreview_duration_seconds_count",
    );
    let throttled = post(&url, Some("garbage-4"), json!({})).await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&wait), "retry after {wait} s");
    assert_eq!(errors(throttled).await.errors[0].code, "tooManyFailures");
    let text = metrics_text(&f).await;
    assert_eq!(
        metric(&text, "nes_cliserver_tokenreview_duration_seconds_count"),
        reviews,
        "no TokenReview for a throttled request"
    );
    assert_eq!(metric(&text, "nes_cliserver_auth_throttled_total"), 1.0);

    // The pod's own token, still cached, is served.
    let got = http().get(&url).bearer_auth(&own).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::NOT_FOUND);
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_are_capped_per_pod_and_end_in_time() {
    const MAX_WATCH: Duration = Duration::from_secs(5);
    let f = Fixture::start_with(Settings {
        max_watches_per_pod: 2,
        max_watch: MAX_WATCH,
        ..Settings::default()
    })
    .await;
    let token = f.token("x-0").await;
    // A real token ends when its claims say: about an hour from now (TokenRequest's default).
    let end = nes_cliserver::claims::token_end(&token).expect("the token's expiry");
    let left = end
        .duration_since(std::time::SystemTime::now())
        .expect("in the future");
    assert!(
        left > Duration::from_secs(600) && left <= Duration::from_secs(3600),
        "{left:?}"
    );

    let configured = post(
        &format!("{}/configuration", f.pod_url("x-0")),
        Some(&token),
        json!({"add": {"addresses": [{"interface": "eth0", "cidr": "10.1.0.5/24"}]}}),
    )
    .await;
    assert_eq!(configured.status(), StatusCode::OK);
    let watch_url = format!("{}/status/watch", f.pod_url("x-0"));
    let open = || async {
        http()
            .get(&watch_url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
    };
    let mut first = lines(open().await);
    let mut second = lines(open().await);
    assert!(next_status(&mut first).await.is_some());
    assert!(next_status(&mut second).await.is_some());
    let third = open().await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(errors(third).await.errors[0].code, "tooManyWatches");
    assert_eq!(
        metric(&metrics_text(&f).await, "nes_cliserver_status_watches"),
        2.0
    );

    // Both end by themselves (here at the 5 s maximum; a token's end works the same way).
    assert!(next_status(&mut first).await.is_none(), "the watch ended");
    assert!(next_status(&mut second).await.is_none(), "the watch ended");
    eventually("the watch places are free", TIMEOUT, || async {
        (metric(&metrics_text(&f).await, "nes_cliserver_status_watches") == 0.0).then_some(())
    })
    .await;
    let again = open().await;
    assert_eq!(again.status(), StatusCode::OK);
    f.shutdown().await;
}

type Lines = std::pin::Pin<Box<dyn futures::Stream<Item = String> + Send>>;

/// The response body split into lines.
fn lines(response: reqwest::Response) -> Lines {
    let stream = response.bytes_stream();
    Box::pin(futures::stream::unfold(
        (stream, Vec::<u8>::new()),
        |(mut stream, mut buffer)| async move {
            loop {
                if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    let text = String::from_utf8(line).unwrap();
                    return Some((text, (stream, buffer)));
                }
                match stream.next().await {
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    _ => return None,
                }
            }
        },
    ))
}

async fn next_status(lines: &mut Lines) -> Option<StatusResponse> {
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next())
        .await
        .expect("a status line or the end within 30s")?;
    Some(serde_json::from_str(&line).unwrap())
}
