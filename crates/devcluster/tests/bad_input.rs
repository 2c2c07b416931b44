//! Bad input gets the real server's status code and reason, and the server keeps serving.

mod common;

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{cluster, install_widgets};

struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    async fn send(&self, method: &str, path: &str, ct: &str, body: &str) -> (StatusCode, Value) {
        let resp = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("Content-Type", ct)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let code = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        (code, v)
    }
}

fn assert_status(got: &(StatusCode, Value), code: u16, reason: &str) {
    assert_eq!(got.0.as_u16(), code, "{}", got.1);
    assert_eq!(got.1["kind"], "Status", "{}", got.1);
    assert_eq!(got.1["code"], code);
    assert_eq!(got.1["reason"], reason, "{}", got.1);
}

#[tokio::test]
async fn bad_requests_get_status_errors_and_the_server_keeps_serving() {
    let c = cluster().await;
    install_widgets(&c.client()).await;
    let http = Http {
        base: c.url().to_owned(),
        client: reqwest::Client::new(),
    };
    let cms = "/api/v1/namespaces/default/configmaps";
    let json_ct = "application/json";

    assert_status(
        &http.send("POST", cms, json_ct, "{not json").await,
        400,
        "BadRequest",
    );
    assert_status(
        &http
            .send("POST", cms, "application/yaml", "a: [unclosed")
            .await,
        400,
        "BadRequest",
    );
    assert_status(
        &http.send("GET", "/api/v1/nonexistents", "", "").await,
        404,
        "NotFound",
    );
    assert_status(
        &http
            .send("GET", "/apis/nope.example/v1/things", "", "")
            .await,
        404,
        "NotFound",
    );

    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
    assert_status(
        &http.send("POST", cms, json_ct, &secret.to_string()).await,
        400,
        "BadRequest",
    );

    let bad_name =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}});
    let r = http.send("POST", cms, json_ct, &bad_name.to_string()).await;
    assert_status(&r, 422, "Invalid");
    assert_eq!(r.1["details"]["causes"][0]["field"], "metadata.name");
    assert_eq!(r.1["details"]["kind"], "ConfigMap");

    let bad_ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}});
    assert_status(
        &http
            .send("POST", "/api/v1/namespaces", json_ct, &bad_ns.to_string())
            .await,
        422,
        "Invalid",
    );

    let widgets = "/apis/example.com/v1/namespaces/default/widgets";
    let bad_widget = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"color": "purple", "replicas": 11}});
    let r = http
        .send("POST", widgets, json_ct, &bad_widget.to_string())
        .await;
    assert_status(&r, 422, "Invalid");
    let fields: Vec<&str> = r.1["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert!(
        fields.contains(&"spec.color") && fields.contains(&"spec.replicas"),
        "{fields:?}"
    );
    let missing = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {}});
    let r = http
        .send("POST", widgets, json_ct, &missing.to_string())
        .await;
    assert_status(&r, 422, "Invalid");
    assert!(
        r.1["message"]
            .as_str()
            .unwrap()
            .contains("spec.color: Required value"),
        "{}",
        r.1
    );

    // Strategic merge patch is for built-ins only; unknown patch types are refused.
    let good = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "ok"}, "spec": {"color": "red"}});
    assert_eq!(
        http.send("POST", widgets, json_ct, &good.to_string())
            .await
            .0,
        201
    );
    let smp = http
        .send(
            "PATCH",
            &format!("{widgets}/ok"),
            "application/strategic-merge-patch+json",
            "{}",
        )
        .await;
    assert_status(&smp, 415, "UnsupportedMediaType");
    let weird = http
        .send("PATCH", &format!("{widgets}/ok"), "text/plain", "{}")
        .await;
    assert_status(&weird, 415, "UnsupportedMediaType");
    let apply_without_manager = http
        .send(
            "PATCH",
            &format!("{widgets}/ok"),
            "application/apply-patch+yaml",
            &good.to_string(),
        )
        .await;
    assert_eq!(apply_without_manager.0.as_u16(), 400);

    let (code, version) = http.send("GET", "/version", "", "").await;
    assert_eq!(code, 200, "still serving");
    assert_eq!(version["major"], "1");
    c.shutdown().await;
}
