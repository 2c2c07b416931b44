//! The OpenAPI 3 description of the API, generated from the request and response types (their
//! schemars schemas), so it cannot drift from the code: `docs/nes-cliserver.openapi.yaml` is
//! this document, and a test fails when the committed file differs (regenerate with
//! `UPDATE_OPENAPI=1 cargo test -p nes-cliserver openapi`).

use nes_api::ConfigureRequest;
use nes_api::cli::{
    ConfigurationResponse, ErrorBody, StatusResponse, SubscriptionRequest, SubscriptionResponse,
};
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

use crate::api::routes;

/// One operation of the API.
struct Operation {
    path: &'static str,
    method: &'static str,
    summary: &'static str,
    body: Option<Schema>,
    ok: (u16, &'static str, Option<Value>),
    errors: &'static [u16],
}

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

fn json_content(schema: impl serde::Serialize) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn error_description(code: u16) -> &'static str {
    match code {
        400 => "The body is not the expected JSON (serde's message names the problem)",
        401 => "Missing or invalid bearer token",
        403 => "The token is not bound to this pod",
        404 => "Nothing stored for this pod",
        409 => "The resource kept changing under concurrent writes",
        413 => "The body is too large",
        422 => "The request is invalid; one error per problem, with its field path",
        429 => {
            "Too many failed authentications from this address (see Retry-After), or, for a watch, too many open watches of the pod"
        }
        503 => "The Kubernetes API (or TokenReview) is unavailable",
        _ => "Error",
    }
}

/// The OpenAPI document as a JSON value.
pub fn document() -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let error = schema::<ErrorBody>(&mut generator);
    let configuration = schema::<ConfigurationResponse>(&mut generator);
    let status = schema::<StatusResponse>(&mut generator);
    let subscription = schema::<SubscriptionResponse>(&mut generator);
    let operations = [
        Operation {
            path: routes::CONFIGURATION,
            method: "post",
            summary: "Merge a configuration request (add, remove, replace) into the pod's NetworkConfiguration",
            body: Some(schema::<ConfigureRequest>(&mut generator)),
            ok: (
                200,
                "The resulting configuration",
                Some(json_content(&configuration)),
            ),
            errors: &[400, 401, 403, 409, 413, 422, 429, 503],
        },
        Operation {
            path: routes::CONFIGURATION,
            method: "get",
            summary: "The pod's configuration",
            body: None,
            ok: (200, "The configuration", Some(json_content(&configuration))),
            errors: &[401, 403, 404, 429, 503],
        },
        Operation {
            path: routes::CONFIGURATION,
            method: "delete",
            summary: "Delete the pod's NetworkConfiguration",
            body: None,
            ok: (204, "Deleted", None),
            errors: &[401, 403, 404, 429, 503],
        },
        Operation {
            path: routes::STATUS,
            method: "get",
            summary: "The configuration status recorded by nes-manager",
            body: None,
            ok: (200, "The status", Some(json_content(&status))),
            errors: &[401, 403, 404, 429, 503],
        },
        Operation {
            path: routes::STATUS_WATCH,
            method: "get",
            summary: "The status now and after every change, one JSON object per line",
            body: None,
            ok: (
                200,
                "A stream of status objects (NDJSON)",
                Some(json!({"application/x-ndjson": {"schema": &status}})),
            ),
            errors: &[401, 403, 404, 429, 503],
        },
        Operation {
            path: routes::SUBSCRIPTION,
            method: "put",
            summary: "Create or replace the pod's subscription (NetworkCare)",
            body: Some(schema::<SubscriptionRequest>(&mut generator)),
            ok: (200, "The subscription", Some(json_content(&subscription))),
            errors: &[400, 401, 403, 409, 413, 422, 429, 503],
        },
        Operation {
            path: routes::SUBSCRIPTION,
            method: "get",
            summary: "The pod's subscription and its delivery counters",
            body: None,
            ok: (200, "The subscription", Some(json_content(&subscription))),
            errors: &[401, 403, 404, 429, 503],
        },
        Operation {
            path: routes::SUBSCRIPTION,
            method: "delete",
            summary: "Delete the pod's subscription",
            body: None,
            ok: (204, "Deleted", None),
            errors: &[401, 403, 404, 429, 503],
        },
    ];

    let mut paths = Map::new();
    for op in operations {
        let mut responses = Map::new();
        let (code, description, content) = op.ok;
        let mut ok = json!({"description": description});
        if let Some(content) = content {
            ok["content"] = content;
        }
        responses.insert(code.to_string(), ok);
        for code in op.errors {
            responses.insert(
                code.to_string(),
                json!({"description": error_description(*code), "content": json_content(&error)}),
            );
        }
        let mut operation = json!({
            "summary": op.summary,
            "security": [{"bearer": []}],
            "responses": responses,
        });
        if let Some(body) = op.body {
            operation["requestBody"] = json!({"required": true, "content": json_content(body)});
        }
        let item = paths
            .entry(op.path)
            .or_insert_with(|| json!({"parameters": pod_parameters()}));
        item[op.method] = operation;
    }
    paths.insert(
        routes::HEALTHZ.into(),
        json!({"get": {"summary": "Liveness", "responses": {"200": {"description": "ok",
            "content": {"text/plain": {"schema": {"type": "string"}}}}}}}),
    );
    paths.insert(
        routes::METRICS.into(),
        json!({"get": {"summary": "Prometheus metrics", "responses": {"200": {
            "description": "Prometheus text exposition",
            "content": {"text/plain": {"schema": {"type": "string"}}}}}}}),
    );

    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "nes-cliserver",
            "version": "v1",
            "description": "The application-facing API of nes: a pod changes its own network \
                configuration and subscribes to network status. Every /v1 request needs \
                `Authorization: Bearer <token>`, a service account token bound to the pod named \
                in the path. See docs/nes-cliserver.md.",
        },
        "paths": paths,
        "components": {
            "schemas": generator.take_definitions(true),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "A service account token bound to the pod in the path (projected volume, audience = --audience)"}},
        },
    })
}

fn pod_parameters() -> Value {
    json!([
        {"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"},
         "description": "The calling pod's namespace"},
        {"name": "pod", "in": "path", "required": true, "schema": {"type": "string"},
         "description": "The calling pod's name"},
    ])
}

/// The document as YAML (the committed `docs/nes-cliserver.openapi.yaml`).
pub fn yaml() -> String {
    let header = "# Generated by `UPDATE_OPENAPI=1 cargo test -p nes-cliserver openapi` from the \
                  nes-api types; do not edit.\n";
    let body = serde_saphyr::to_string(&document()).expect("a JSON value always serializes");
    format!("{header}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AppState, Settings, router};
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use tower::ServiceExt;

    const FILE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/nes-cliserver.openapi.yaml"
    );

    #[test]
    fn committed_document_is_up_to_date() {
        let generated = yaml();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(FILE, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(FILE).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/nes-cliserver.openapi.yaml is stale: run UPDATE_OPENAPI=1 cargo test -p nes-cliserver openapi"
        );
        // And it is YAML that reads back as the same document.
        let parsed: Value = serde_saphyr::from_str(&committed).unwrap();
        assert_eq!(parsed, document());
    }

    #[test]
    fn schemas_are_referenced_from_components() {
        let doc = document();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in [
            "ConfigureRequest",
            "ConfigurationResponse",
            "StatusResponse",
            "SubscriptionRequest",
            "SubscriptionResponse",
            "ErrorBody",
            "ItemKey",
        ] {
            assert!(schemas.contains_key(name), "{name} missing");
        }
        let text = serde_json::to_string(&doc).unwrap();
        assert!(!text.contains("#/$defs/"), "refs point into components");
    }

    /// Every operation of the document is served by the router, and every other method on its
    /// paths is refused with 405: the document and the router describe the same API.
    #[tokio::test]
    async fn document_and_router_have_the_same_operations() {
        // Unauthenticated requests never reach the API server, so it need not exist.
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap()))
                .unwrap();
        let app = router(AppState::new(client, Settings::default()));
        let doc = document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let uri = path.replace("{namespace}", "team").replace("{pod}", "x-0");
            for method in ["get", "post", "put", "delete", "patch"] {
                let request = Request::builder()
                    .method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap())
                    .uri(&uri)
                    .body(Body::empty())
                    .unwrap();
                let status = app.clone().oneshot(request).await.unwrap().status();
                if item.get(method).is_some() {
                    let expected = if path.starts_with("/v1/") {
                        StatusCode::UNAUTHORIZED
                    } else {
                        StatusCode::OK
                    };
                    assert_eq!(status, expected, "{method} {path}");
                } else {
                    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                }
            }
        }
    }
}
