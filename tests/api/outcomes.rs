//! Reading outcomes: one with its history, and filtered, paged lists.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    unknown_conversation_is_404_problem,
    lists_are_newest_first_and_filtered,
    cursor_pages_never_repeat_or_skip_while_written_to,
    invalid_filters_are_422_naming_each,
);

async fn unknown_conversation_is_404_problem(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_problem(app.get("/v1/outcomes/CON-nobody").await, 404).await;
}

async fn seed(app: &TestApp, id: &str, status: &str, agent: &str, to: &str, at: &str) {
    let body = json!({"agent_id": agent, "to": to, "conversation_uuid": id, "status": status, "timestamp": at});
    assert_eq!(app.post_status(&body).await.status(), 204);
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["conversation_uuid"].as_str().unwrap().to_owned())
        .collect()
}

async fn lists_are_newest_first_and_filtered(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    seed(
        &app,
        "C1",
        "busy",
        "agent-a",
        "972500000001",
        "2022-05-01T10:00:00Z",
    )
    .await;
    seed(
        &app,
        "C2",
        "timeout",
        "agent-a",
        "972500000002",
        "2022-05-02T10:00:00Z",
    )
    .await;
    seed(
        &app,
        "C3",
        "rejected",
        "agent-b",
        "972500000001",
        "2022-05-03T10:00:00Z",
    )
    .await;
    seed(
        &app,
        "C4",
        "busy",
        "agent-b",
        "972500000003",
        "2022-05-04T10:00:00Z",
    )
    .await;

    let all = app.get_json("/v1/outcomes").await;
    assert_eq!(ids(&all), ["C4", "C3", "C2", "C1"]);
    assert_eq!(all["next_cursor"], Value::Null);
    assert!(
        all["items"][0].get("events").is_none(),
        "lists carry no events"
    );

    let cases = [
        ("status=busy", vec!["C4", "C1"]),
        ("status=busy,timeout", vec!["C4", "C2", "C1"]),
        ("agent_id=agent-a", vec!["C2", "C1"]),
        ("to=972500000001", vec!["C3", "C1"]),
        ("since=2022-05-02T10:00:00Z", vec!["C4", "C3", "C2"]),
        ("until=2022-05-03T10:00:00Z", vec!["C2", "C1"]),
        (
            "since=2022-05-02T00:00:00Z&until=2022-05-04T00:00:00Z&agent_id=agent-b",
            vec!["C3"],
        ),
        ("status=failed", vec![]),
        ("call_id=0193a5b0-7c2e-7d1a-9f00-000000000000", vec![]),
    ];
    for (query, expected) in cases {
        let page = app.get_json(&format!("/v1/outcomes?{query}")).await;
        assert_eq!(ids(&page), expected, "{query}");
    }
}

async fn cursor_pages_never_repeat_or_skip_while_written_to(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Several conversations share an instant, so the key breaks ties.
    for n in 0..23 {
        let at = format!("2022-05-01T10:00:{:02}Z", n / 3);
        seed(&app, &format!("C{n:02}"), "busy", "a", "972500000001", &at).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("/v1/outcomes?limit=5&cursor={c}"),
            None => "/v1/outcomes?limit=5".to_owned(),
        };
        let page = app.get_json(&query).await;
        assert!(page["items"].as_array().unwrap().len() <= 5);
        seen.extend(ids(&page));
        pages += 1;
        // Newer conversations arriving between pages belong before the first page.
        seed(
            &app,
            &format!("N{pages}"),
            "busy",
            "a",
            "972500000001",
            "2022-06-01T00:00:00Z",
        )
        .await;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 5);
    let expected: Vec<String> = {
        let mut all: Vec<(String, String)> = (0..23)
            .map(|n| (format!("{:02}", n / 3), format!("C{n:02}")))
            .collect();
        all.sort();
        all.into_iter().rev().map(|(_, id)| id).collect()
    };
    assert_eq!(seen, expected, "every item once, newest first");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 23);
}

async fn invalid_filters_are_422_naming_each(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cases = [
        ("limit=0", vec!["limit"]),
        ("limit=1001", vec!["limit"]),
        ("limit=ten", vec!["limit"]),
        ("cursor=garbage", vec!["cursor"]),
        ("since=yesterday", vec!["since"]),
        ("until=2022-13-01T00:00:00Z", vec!["until"]),
        ("call_id=not-a-uuid", vec!["call_id"]),
        (
            "limit=-1&since=x&cursor=%21",
            vec!["since", "limit", "cursor"],
        ),
    ];
    for (query, fields) in cases {
        let problem = assert_problem(app.get(&format!("/v1/outcomes?{query}")).await, 422).await;
        let mut got = error_fields(&problem);
        let mut want: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{query}");
    }
    // A cursor of another list, or one pointing past the year 9999, is not a cursor here.
    seed(
        &app,
        "C1",
        "busy",
        "a",
        "972500000001",
        "2022-05-01T10:00:00Z",
    )
    .await;
    seed(
        &app,
        "C2",
        "busy",
        "a",
        "972500000001",
        "2022-05-02T10:00:00Z",
    )
    .await;
    let page = app.get_json("/v1/outcomes?limit=1").await;
    let foreign = page["next_cursor"].as_str().unwrap();
    let problem = assert_problem(app.get(&format!("/v1/calls?cursor={foreign}")).await, 422).await;
    assert_eq!(error_fields(&problem), ["cursor"]);
    let far = "eyJ0Ijo5MjIzMzcyMDM2ODU0Nzc1ODA3LCJrIjoiQzEifQ"; // {"t":i64::MAX,"k":"C1"}
    let problem = assert_problem(app.get(&format!("/v1/outcomes?cursor={far}")).await, 422).await;
    assert_eq!(error_fields(&problem), ["cursor"]);
    assert_eq!(app.get("/v1/outcomes?limit=1000").await.status(), 200);
    assert_eq!(app.get("/v1/outcomes?limit=1").await.status(), 200);
}
