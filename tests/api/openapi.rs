//! Real responses validate against the schemas that /openapi.json declares for them.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(responses_match_their_documented_schemas);

/// The schema of `method path` answering `status` with `content_type`, resolvable on its own.
fn response_schema(
    document: &Value,
    method: &str,
    path: &str,
    status: u16,
    content_type: &str,
) -> Value {
    let schema = &document["paths"][path][method]["responses"][status.to_string()]["content"]
        [content_type]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {status} {content_type} is undocumented"
    );
    json!({ "components": document["components"], "allOf": [schema] })
}

async fn check(
    app: &TestApp,
    document: &Value,
    method: &str,
    template: &str,
    path: &str,
    status: u16,
) -> Value {
    check_with(app, document, (method, template, path), json!({}), status).await
}

/// Sends `body` to `path` and checks the answer against the schema documented for
/// `(method, template)` and `status`; returns the answer.
async fn check_with(
    app: &TestApp,
    document: &Value,
    (method, template, path): (&str, &str, &str),
    body: Value,
    status: u16,
) -> Value {
    let request = match method {
        "get" => app.client.get(app.url(path)),
        "post" => app.client.post(app.url(path)),
        "patch" => app.client.patch(app.url(path)),
        other => panic!("{other}"),
    };
    let response = request
        .bearer_auth(TOKEN)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), status, "{method} {path}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    let schema = response_schema(document, method, template, status, &content_type);
    let validator = jsonschema::validator_for(&schema).expect("the documented schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:?}\n{body}"
    );
    body
}

async fn responses_match_their_documented_schemas(backend: Backend) {
    let mut flags = default_flags();
    // A key lets campaigns be created; the one here starts next year, so nothing is dialled.
    flags.push(("vgai-api-key".into(), VGAI_KEY.into()));
    flags.push(("vgai-base-url".into(), "http://127.0.0.1:9".into()));
    let app = TestApp::spawn_with(backend, flags).await;
    let document: Value = app.public_json("/openapi.json").await;
    app.post_status(&callback("CON-doc", "busy", "2022-05-31T06:40:45.475Z"))
        .await;
    app.post_status(&callback("CON-doc", "timeout", "2022-05-31T06:41:45.475Z"))
        .await;

    check(&app, &document, "get", "/healthz", "/healthz", 200).await;
    check(&app, &document, "get", "/readyz", "/readyz", 200).await;
    check(
        &app,
        &document,
        "get",
        "/v1/outcomes/{conversation_uuid}",
        "/v1/outcomes/CON-doc",
        200,
    )
    .await;
    check(
        &app,
        &document,
        "get",
        "/v1/outcomes/{conversation_uuid}",
        "/v1/outcomes/CON-none",
        404,
    )
    .await;
    check(
        &app,
        &document,
        "get",
        "/v1/outcomes",
        "/v1/outcomes?limit=1",
        200,
    )
    .await;
    check(
        &app,
        &document,
        "get",
        "/v1/outcomes",
        "/v1/outcomes?limit=0",
        422,
    )
    .await;
    check(&app, &document, "get", "/v1/calls", "/v1/calls", 200).await;
    check(
        &app,
        &document,
        "get",
        "/v1/calls/{id}",
        "/v1/calls/0193a5b0-7c2e-7d1a-9f00-000000000000",
        404,
    )
    .await;
    check(&app, &document, "get", "/v1/stats", "/v1/stats", 200).await;
    check(
        &app,
        &document,
        "post",
        "/v1/status/{secret}",
        &format!("/v1/status/{SECRET}"),
        422,
    )
    .await;
    check(
        &app,
        &document,
        "post",
        "/v1/status/{secret}",
        "/v1/status/wrong",
        401,
    )
    .await;
    check(&app, &document, "post", "/v1/calls", "/v1/calls", 422).await;

    let created: Value = app
        .client
        .post(app.url("/v1/campaigns"))
        .bearer_auth(TOKEN)
        .json(&json!({
            "agent_id": "agent", "start_at": "2099-01-01T00:00:00Z",
            "window": {"start": "09:00", "end": "17:00", "days": ["mon"]},
            "destinations": [{"to": "+972 54-111-6037", "metadata": {"order": 1}}],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().expect("a campaign");
    let one = format!("/v1/campaigns/{id}");
    let template = "/v1/campaigns/{id}";
    check(&app, &document, "get", template, &one, 200).await;
    check(
        &app,
        &document,
        "get",
        "/v1/campaigns",
        "/v1/campaigns",
        200,
    )
    .await;
    check(
        &app,
        &document,
        "post",
        "/v1/campaigns",
        "/v1/campaigns",
        422,
    )
    .await;
    let destinations = format!("{one}/destinations");
    let template = "/v1/campaigns/{id}/destinations";
    check(&app, &document, "get", template, &destinations, 200).await;
    check(&app, &document, "post", template, &destinations, 422).await;
    let pause = format!("{one}/pause");
    check(
        &app,
        &document,
        "post",
        "/v1/campaigns/{id}/pause",
        &pause,
        200,
    )
    .await;
    check(
        &app,
        &document,
        "post",
        "/v1/campaigns/{id}/pause",
        &pause,
        409,
    )
    .await;

    check(
        &app,
        &document,
        "get",
        "/v1/stats/timeline",
        "/v1/stats/timeline",
        200,
    )
    .await;
    check(&app, &document, "post", "/v1/webhooks", "/v1/webhooks", 422).await;
    let subscription = check_with(
        &app,
        &document,
        ("post", "/v1/webhooks", "/v1/webhooks"),
        json!({"url": "https://crm.example.com/hooks", "description": "CRM"}),
        201,
    )
    .await;
    check(&app, &document, "get", "/v1/webhooks", "/v1/webhooks", 200).await;
    let one = format!("/v1/webhooks/{}", subscription["id"].as_str().unwrap());
    check(&app, &document, "get", "/v1/webhooks/{id}", &one, 200).await;
    check_with(
        &app,
        &document,
        ("patch", "/v1/webhooks/{id}", &one),
        json!({"enabled": false}),
        200,
    )
    .await;
    app.post_status(&callback("CON-hooked", "busy", "2022-05-31T06:40:45.475Z"))
        .await;
    check_with(
        &app,
        &document,
        ("patch", "/v1/webhooks/{id}", &one),
        json!({"enabled": true}),
        200,
    )
    .await;
    app.post_status(&callback(
        "CON-hooked",
        "timeout",
        "2022-05-31T06:41:45.475Z",
    ))
    .await;
    let log = check(
        &app,
        &document,
        "get",
        "/v1/webhooks/{id}/deliveries",
        &format!("{one}/deliveries"),
        200,
    )
    .await;
    assert_eq!(log["items"].as_array().unwrap().len(), 1, "{log}");
}
