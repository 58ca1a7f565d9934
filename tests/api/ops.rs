//! Authentication, problem documents, request ids, health, metrics and the API document.

use serde_json::Value;

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    v1_requires_a_valid_bearer_token,
    status_urls_need_no_bearer_token,
    open_mode_on_loopback_needs_no_token,
    framework_errors_are_problems,
    request_ids_are_generated_or_propagated,
    health_and_readiness_answer,
    metrics_move_with_traffic,
    openapi_documents_every_route,
);

async fn v1_requires_a_valid_bearer_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in [
        "/v1/outcomes",
        "/v1/outcomes/CON-1",
        "/v1/calls",
        "/v1/stats",
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert_problem(response, 401).await;
        let response = app
            .client
            .get(app.url(path))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_problem(response, 401).await;
        let response = app
            .client
            .get(app.url(path))
            .header("authorization", format!("Basic {TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_problem(response, 401).await;
    }
    let response = app
        .client
        .post(app.url("/v1/calls"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(response, 401).await;
    assert_eq!(app.get("/v1/outcomes").await.status(), 200);
}

async fn status_urls_need_no_bearer_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .post_status(&callback("CON-1", "busy", "2022-05-31T06:40:45Z"))
        .await;
    assert_eq!(response.status(), 204);
}

async fn open_mode_on_loopback_needs_no_token(backend: Backend) {
    let app = TestApp::spawn_with(backend, vec![]).await;
    let response = app
        .client
        .post(app.url("/v1/status/whatever"))
        .body(callback("CON-open", "busy", "2022-05-31T06:40:45Z").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = app
        .client
        .get(app.url("/v1/outcomes/CON-open"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn framework_errors_are_problems(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_problem(app.get("/no/such/route").await, 404).await;
    let response = app
        .client
        .delete(app.url("/v1/outcomes"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_problem(response, 405).await;
    let response = app
        .client
        .post(app.url("/v1/calls"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;
    // The content type is not required to be JSON (curl -d sends form encoding).
    let response = app
        .client
        .post(app.url("/v1/calls"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"to":"+972 54-111-6037"}"#)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 422).await;
    assert_eq!(error_fields(&problem), ["agent_id"]);
}

async fn request_ids_are_generated_or_propagated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    let generated = response.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
    let response = app
        .client
        .get(app.url("/no/such/route"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-123");
}

async fn health_and_readiness_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let health: Value = app.public_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    let expected = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(ready["database"], expected);
}

async fn metrics_move_with_traffic(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // The recorder is process-wide and tests run in parallel: compare before and after.
    let scrape = || async { app.text("/metrics").await };
    let before = scrape().await;
    let body = callback("CON-metrics", "busy", "2022-05-31T06:40:45Z");
    app.post_status(&body).await;
    app.post_status(&body).await;
    app.post_status_raw("[]").await;
    let after = scrape().await;
    let stored = r#"callhook_callbacks_total{result="stored"}"#;
    let duplicate = r#"callhook_callbacks_total{result="duplicate"}"#;
    let rejected = r#"callhook_callbacks_rejected_total{reason="not_json_object"}"#;
    let requests =
        r#"callhook_http_requests_total{route="/v1/status/{secret}",method="POST",status="204"}"#;
    for series in [stored, duplicate, rejected] {
        assert!(
            sample(&after, series) >= sample(&before, series) + 1.0,
            "{series}"
        );
    }
    assert!(sample(&after, requests) >= sample(&before, requests) + 2.0);
    assert!(after.contains("callhook_http_request_duration_seconds_bucket{"));
    assert!(after.contains(r#"callhook_db_pool_connections{state="idle"}"#));
    assert!(
        !after.contains(SECRET),
        "the secret path segment is never a label"
    );
}

async fn openapi_documents_every_route(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let document: Value = app.public_json("/openapi.json").await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let documented = |path: &str, method: &str| document["paths"][path][method].is_object();
    for (path, method) in [
        ("/v1/calls", "post"),
        ("/v1/calls", "get"),
        ("/v1/calls/{id}", "get"),
        ("/v1/status/{secret}", "post"),
        ("/v1/status/calls/{call_id}/{signature}", "post"),
        ("/v1/outcomes/{conversation_uuid}", "get"),
        ("/v1/outcomes", "get"),
        ("/v1/stats", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(documented(path, method), "{method} {path} is undocumented");
    }
    assert!(document["components"]["schemas"]["Problem"].is_object());
}

/// Readiness follows the database: cut every connection to it and /readyz answers 503
/// within its one-second budget, while /healthz still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_readiness_fails_when_the_database_is_gone() {
    let app = TestApp::spawn(Backend::Postgres).await;
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let name = app.database_url.rsplit_once('/').unwrap().1.to_owned();
    let admin = std::env::var("CALLHOOK_TEST_DATABASE_URL").unwrap();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .execute(&mut conn)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_problem(response, 503).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
