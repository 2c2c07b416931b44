//! TokenRequest (`serviceaccounts/token`) and TokenReview, through kube-rs and kubectl.

mod common;

use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{
    BoundObjectReference, TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
    TokenReviewStatus,
};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use testkit::kubectl::Kubectl;

async fn create_sa(client: &Client, name: &str) -> ServiceAccount {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let sa = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &sa).await.unwrap()
}

async fn create_pod(client: &Client, name: &str, sa: &str) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"serviceAccountName": sa, "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    api.create(&PostParams::default(), &pod).await.unwrap()
}

fn request(audiences: &[&str], pod: Option<&str>, expiration: Option<i64>) -> TokenRequest {
    TokenRequest {
        metadata: Default::default(),
        spec: TokenRequestSpec {
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            bound_object_ref: pod.map(|name| BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.into()),
                uid: None,
            }),
            expiration_seconds: expiration,
        },
        status: None,
    }
}

async fn token_for(client: &Client, sa: &str, req: &TokenRequest) -> String {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    api.create_token_request(sa, &PostParams::default(), req)
        .await
        .unwrap()
        .status
        .expect("TokenRequest status")
        .token
}

async fn review(client: &Client, token: &str, audiences: Option<&[&str]>) -> TokenReviewStatus {
    let api: Api<TokenReview> = Api::all(client.clone());
    let tr = TokenReview {
        metadata: Default::default(),
        spec: TokenReviewSpec {
            token: Some(token.to_owned()),
            audiences: audiences.map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
        },
        status: None,
    };
    api.create(&PostParams::default(), &tr)
        .await
        .unwrap()
        .status
        .expect("TokenReview status")
}

fn authenticated(status: &TokenReviewStatus) -> bool {
    status.authenticated == Some(true)
}

fn api_code(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(status) => (status.code, status.message),
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_bound_tokens_authenticate_until_the_pod_goes() {
    let cluster = common::cluster().await;
    let client = cluster.client();
    let sa = create_sa(&client, "nes").await;
    let pod = create_pod(&client, "p0", "nes").await;

    let issued = Api::<ServiceAccount>::namespaced(client.clone(), "default")
        .create_token_request(
            "nes",
            &PostParams::default(),
            &request(&["nes-cli"], Some("p0"), None),
        )
        .await
        .unwrap();
    assert_eq!(issued.spec.expiration_seconds, Some(3600), "defaulted");
    let token = issued.status.unwrap().token;

    let status = review(&client, &token, Some(&["nes-cli", "other"])).await;
    assert!(authenticated(&status), "{status:?}");
    assert_eq!(status.audiences, Some(vec!["nes-cli".to_owned()]));
    let user = status.user.unwrap();
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:default:nes")
    );
    assert_eq!(user.uid, sa.metadata.uid);
    assert_eq!(
        user.groups.unwrap(),
        [
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ]
    );
    let extra = user.extra.unwrap();
    assert_eq!(extra["authentication.kubernetes.io/pod-name"], ["p0"]);
    assert_eq!(
        extra["authentication.kubernetes.io/pod-uid"],
        [pod.metadata.uid.clone().unwrap()]
    );
    assert!(extra["authentication.kubernetes.io/credential-id"][0].starts_with("JTI="));

    // Audiences must intersect; none given means the server's own, which this token lacks.
    let wrong = review(&client, &token, Some(&["someone-else"])).await;
    assert!(!authenticated(&wrong));
    assert!(wrong.error.unwrap().contains("audiences"));
    assert!(!authenticated(&review(&client, &token, None).await));

    // Tampering with any part breaks the signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let flipped = if parts[1].as_bytes()[5] == b'A' {
        "B"
    } else {
        "A"
    };
    parts[1].replace_range(5..6, flipped);
    let tampered = review(&client, &parts.join("."), Some(&["nes-cli"])).await;
    assert!(!authenticated(&tampered));
    assert!(tampered.error.unwrap().contains("signature"), "tampered");

    // Deleting the bound pod invalidates the token (once the pod is really gone).
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.delete("p0", &DeleteParams::default()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let gone = loop {
        let status = review(&client, &token, Some(&["nes-cli"])).await;
        if !authenticated(&status) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "token still valid after the pod went"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(gone.error.unwrap().contains("pods \"p0\" not found"));

    // A pod re-created under the same name is another pod.
    create_pod(&client, "p0", "nes").await;
    let recreated = review(&client, &token, Some(&["nes-cli"])).await;
    assert!(recreated.error.unwrap().contains("pod UID"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_are_validated_like_upstream() {
    let cluster = common::cluster().await;
    let client = cluster.client();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");

    let err = sas
        .create_token_request("ghost", &PostParams::default(), &request(&[], None, None))
        .await
        .unwrap_err();
    assert_eq!(
        api_code(err),
        (404, "serviceaccounts \"ghost\" not found".into())
    );

    create_sa(&client, "nes").await;
    let err = sas
        .create_token_request("nes", &PostParams::default(), &request(&[], None, Some(60)))
        .await
        .unwrap_err();
    let (code, message) = api_code(err);
    assert_eq!(code, 422);
    assert!(message.contains("spec.expirationSeconds"), "{message}");

    let err = sas
        .create_token_request(
            "nes",
            &PostParams::default(),
            &request(&[], Some("nope"), None),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(err), (404, "pods \"nope\" not found".into()));

    // An unbound token with the default audience authenticates without audiences given.
    let token = token_for(&client, "nes", &request(&[], None, Some(600))).await;
    let status = review(&client, &token, None).await;
    assert!(authenticated(&status), "{status:?}");
    let extra = status.user.unwrap().extra.unwrap();
    assert!(!extra.contains_key("authentication.kubernetes.io/pod-name"));

    // Deleting and re-creating the service account invalidates its tokens.
    sas.delete("nes", &DeleteParams::default()).await.unwrap();
    create_sa(&client, "nes").await;
    let status = review(&client, &token, None).await;
    assert!(!authenticated(&status));
    assert!(status.error.unwrap().contains("service account UID"));

    // Reviews and token requests are create-only.
    let reviews: Api<TokenReview> = Api::all(client.clone());
    let (code, _) = api_code(reviews.list(&Default::default()).await.unwrap_err());
    assert_eq!(code, 405);
    let get_token = http::Request::get("/api/v1/namespaces/default/serviceaccounts/nes/token")
        .body(Vec::new())
        .unwrap();
    let (code, _) = api_code(client.request_text(get_token).await.unwrap_err());
    assert_eq!(code, 405);

    // Discovery: the subresource under core/v1, the review under its group.
    let core = client.list_core_api_resources("v1").await.unwrap();
    let token = core
        .resources
        .iter()
        .find(|r| r.name == "serviceaccounts/token")
        .expect("serviceaccounts/token in /api/v1");
    assert_eq!(
        (
            token.kind.as_str(),
            token.group.as_deref(),
            token.verbs.clone()
        ),
        (
            "TokenRequest",
            Some("authentication.k8s.io"),
            vec!["create".to_owned()]
        )
    );
    let authn = client
        .list_api_group_resources("authentication.k8s.io/v1")
        .await
        .unwrap();
    let reviews = &authn.resources[0];
    assert_eq!(
        (
            reviews.name.as_str(),
            reviews.namespaced,
            reviews.verbs.clone()
        ),
        ("tokenreviews", false, vec!["create".to_owned()])
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_token_for_a_pod() {
    let cluster = common::cluster().await;
    let client = cluster.client();
    let kubectl = Kubectl::new(cluster.kubeconfig_path()).expect("kubectl on PATH");
    // devcluster runs no service account controller: create `default` as it would.
    create_sa(&client, "default").await;
    create_pod(&client, "p0", "default").await;

    let resources = kubectl
        .run(&[
            "api-resources",
            "--api-group=authentication.k8s.io",
            "-o",
            "name",
        ])
        .await;
    assert!(
        resources.contains("tokenreviews.authentication.k8s.io"),
        "{resources}"
    );

    let token = kubectl
        .run(&[
            "create",
            "token",
            "default",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "p0",
        ])
        .await;
    let token = token.trim();
    let status = review(&client, token, None).await;
    assert!(authenticated(&status), "{status:?}");
    let extra = status.user.unwrap().extra.unwrap();
    assert_eq!(extra["authentication.kubernetes.io/pod-name"], ["p0"]);

    // And a TokenReview through kubectl itself.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("review.json");
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                      "spec": {"token": token}});
    std::fs::write(&file, body.to_string()).unwrap();
    let out = kubectl
        .run(&["create", "-f", file.to_str().unwrap(), "-o", "json"])
        .await;
    let reviewed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reviewed["status"]["authenticated"], true, "{out}");
    assert_eq!(
        reviewed["status"]["user"]["username"],
        "system:serviceaccount:default:default"
    );
    cluster.shutdown().await;
}
