//! The console's page and assets, and the time-bucketed counts its chart reads.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    the_console_is_served_without_a_token_and_from_this_origin_only,
    the_timeline_counts_outcomes_per_whole_bucket,
    timeline_parameters_are_checked,
);

async fn the_console_is_served_without_a_token_and_from_this_origin_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (path, content_type, needle) in [
        ("/console", "text/html", "/console/app.js"),
        ("/console/app.js", "text/javascript", "/v1/stats/timeline"),
        ("/console/app.css", "text/css", "grid-template-columns"),
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{path}"
        );
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"));
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let body = response.text().await.unwrap();
        assert!(body.contains(needle), "{path}");
        // Nothing from other hosts.
        assert!(!body.contains("https://"), "{path} loads from elsewhere");
        assert!(!body.contains(TOKEN) && !body.contains(SECRET));
    }
}

async fn the_timeline_counts_outcomes_per_whole_bucket(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (conversation, status, at) in [
        ("CON-t1", "busy", "2026-01-01T10:05:00Z"),
        ("CON-t2", "busy", "2026-01-01T10:20:30Z"),
        ("CON-t3", "timeout", "2026-01-01T11:10:00Z"),
        ("CON-t4", "busy", "2026-01-01T09:59:59Z"),
    ] {
        assert_eq!(
            app.post_status(&callback(conversation, status, at))
                .await
                .status(),
            204
        );
    }
    let hourly = app
        .get_json(
            "/v1/stats/timeline?since=2026-01-01T10:30:00Z&until=2026-01-01T11:30:00Z&bucket=hour",
        )
        .await;
    // Widened to whole hours.
    assert_eq!(hourly["since"], "2026-01-01T10:00:00.000Z");
    assert_eq!(hourly["until"], "2026-01-01T12:00:00.000Z");
    assert_eq!(hourly["bucket"], "hour");
    assert_eq!(
        hourly["buckets"],
        json!([
            {"start": "2026-01-01T10:00:00.000Z", "outcomes": {"busy": 2}},
            {"start": "2026-01-01T11:00:00.000Z", "outcomes": {"timeout": 1}},
        ])
    );
    // Up to 6 hours, minutes by default; every bucket is present.
    let minutes = app
        .get_json("/v1/stats/timeline?since=2026-01-01T10:04:00Z&until=2026-01-01T10:07:00Z")
        .await;
    assert_eq!(minutes["bucket"], "minute");
    let buckets = minutes["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 3);
    assert_eq!(buckets[1]["outcomes"], json!({"busy": 1}));
    assert_eq!(buckets[0]["outcomes"], json!({}));
    // An outcome that moves moves between buckets, and the agent filter applies.
    app.post_status(&callback("CON-t1", "timeout", "2026-01-01T11:40:00Z"))
        .await;
    let moved = app
        .get_json("/v1/stats/timeline?since=2026-01-01T10:00:00Z&until=2026-01-01T12:00:00Z&bucket=hour&agent_id=60c09d70e6a68858f4220848")
        .await;
    assert_eq!(moved["buckets"][0]["outcomes"], json!({"busy": 1}));
    assert_eq!(moved["buckets"][1]["outcomes"], json!({"timeout": 2}));
    let other: Value = app
        .get_json("/v1/stats/timeline?since=2026-01-01T10:00:00Z&until=2026-01-01T12:00:00Z&bucket=hour&agent_id=another")
        .await;
    assert!(
        other["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["outcomes"] == json!({}))
    );
}

async fn timeline_parameters_are_checked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (query, field) in [
        ("bucket=day", "bucket"),
        (
            "since=2026-01-01T00:00:00Z&until=2026-04-01T00:00:00Z&bucket=hour",
            "bucket",
        ),
        (
            "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
            "since",
        ),
        ("since=yesterday", "since"),
    ] {
        let problem =
            assert_problem(app.get(&format!("/v1/stats/timeline?{query}")).await, 422).await;
        assert_eq!(error_fields(&problem), [field], "{query}");
    }
    let unauthenticated = app
        .client
        .get(app.url("/v1/stats/timeline"))
        .send()
        .await
        .unwrap();
    assert_problem(unauthenticated, 401).await;
    let day = app.get_json("/v1/stats/timeline").await;
    assert_eq!(day["bucket"], "hour");
    assert!((24..=25).contains(&day["buckets"].as_array().unwrap().len()));
}
