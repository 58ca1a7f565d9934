//! The shared status URL: every ingest rule of the contract.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    documented_callback_is_stored_and_read_back,
    repeated_callback_is_stored_once,
    same_instant_in_another_offset_is_a_duplicate,
    bodies_that_are_not_json_objects_are_400,
    missing_or_invalid_fields_are_422_naming_each,
    bodies_over_64_kib_are_413,
    wrong_secret_is_401_and_nothing_is_stored,
    secrets_with_url_special_characters_work,
    any_content_type_is_accepted,
    offsetless_timestamps_are_utc,
    unknown_statuses_are_stored_as_sent,
    latest_occurrence_wins_whatever_the_arrival_order,
    occurrence_tie_goes_to_the_later_received,
    concurrent_deliveries_store_each_event_once,
    callbacks_survive_a_restart,
    control_characters_never_fail_a_batch,
    descriptive_fields_follow_the_latest_event_in_any_order,
);

async fn documented_callback_is_stored_and_read_back(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = callback("CON-4ee2e523", "busy", "2022-05-31T06:40:45.475Z");
    let response = app.post_status(&body).await;
    assert_eq!(response.status(), 204);

    let outcome = app.get_json("/v1/outcomes/CON-4ee2e523").await;
    assert_eq!(outcome["conversation_uuid"], "CON-4ee2e523");
    assert_eq!(outcome["status"], "busy");
    assert_eq!(outcome["agent_id"], "60c09d70e6a68858f4220848");
    assert_eq!(outcome["to"], "972542233016");
    assert_eq!(outcome["occurred_at"], "2022-05-31T06:40:45.475Z");
    assert_eq!(outcome["call_id"], Value::Null);
    assert_eq!(outcome["event_count"], 1);
    assert_eq!(outcome["first_received_at"], outcome["last_received_at"]);
    let received = outcome["first_received_at"].as_str().unwrap();
    assert_eq!(
        received.len(),
        "2026-11-24T10:00:00.000Z".len(),
        "{received}"
    );
    assert!(received.ends_with('Z'));
    let events = outcome["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["status"], "busy");
    assert_eq!(events[0]["occurred_at"], "2022-05-31T06:40:45.475Z");
    assert_eq!(events[0]["received_at"], received);
    assert_eq!(events[0]["payload"], body, "the raw payload is kept");
}

async fn repeated_callback_is_stored_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = callback("CON-dup", "timeout", "2022-05-31T06:40:45.475Z");
    for _ in 0..3 {
        assert_eq!(app.post_status(&body).await.status(), 204);
    }
    let outcome = app.get_json("/v1/outcomes/CON-dup").await;
    assert_eq!(outcome["event_count"], 1);
    assert_eq!(outcome["events"].as_array().unwrap().len(), 1);

    // Another status or instant of the same conversation is a new event.
    app.post_status(&callback("CON-dup", "failed", "2022-05-31T06:40:45.475Z"))
        .await;
    app.post_status(&callback("CON-dup", "timeout", "2022-05-31T06:40:46.000Z"))
        .await;
    let outcome = app.get_json("/v1/outcomes/CON-dup").await;
    assert_eq!(outcome["event_count"], 3);
}

async fn same_instant_in_another_offset_is_a_duplicate(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.post_status(&callback("CON-tz", "busy", "2022-05-31T06:40:45.475Z"))
        .await;
    let response = app
        .post_status(&callback("CON-tz", "busy", "2022-05-31T08:40:45.475+02:00"))
        .await;
    assert_eq!(response.status(), 204);
    let outcome = app.get_json("/v1/outcomes/CON-tz").await;
    assert_eq!(outcome["event_count"], 1);
}

async fn bodies_that_are_not_json_objects_are_400(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for body in [
        "",
        "not json",
        "[1,2]",
        "\"busy\"",
        "null",
        "{\"status\":",
        "status=busy",
    ] {
        let problem = assert_problem(app.post_status_raw(body).await, 400).await;
        assert!(
            problem["detail"].as_str().unwrap().contains("JSON object"),
            "{body}"
        );
    }
    let page = app.get_json("/v1/outcomes").await;
    assert_eq!(page["items"], json!([]));
}

async fn missing_or_invalid_fields_are_422_naming_each(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cases = [
        (
            json!({"status": "busy", "timestamp": "2022-05-31T06:40:45Z"}),
            vec!["conversation_uuid"],
        ),
        (
            json!({"conversation_uuid": "C", "timestamp": "2022-05-31T06:40:45Z"}),
            vec!["status"],
        ),
        (
            json!({"conversation_uuid": "C", "status": "busy"}),
            vec!["timestamp"],
        ),
        (
            json!({"conversation_uuid": "C", "status": "busy", "timestamp": "yesterday"}),
            vec!["timestamp"],
        ),
        (
            json!({"conversation_uuid": 7, "status": "", "timestamp": 1653979245}),
            vec!["conversation_uuid", "status", "timestamp"],
        ),
        (json!({}), vec!["conversation_uuid", "status", "timestamp"]),
    ];
    for (body, fields) in cases {
        let problem = assert_problem(app.post_status(&body).await, 422).await;
        assert_eq!(error_fields(&problem), fields, "{body}");
        for error in problem["errors"].as_array().unwrap() {
            assert!(!error["message"].as_str().unwrap().is_empty());
        }
    }
    assert_eq!(app.get_json("/v1/outcomes").await["items"], json!([]));
}

async fn bodies_over_64_kib_are_413(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let padded = |total: usize| {
        let mut body = callback("CON-big", "busy", "2022-05-31T06:40:45.475Z");
        let base = body.to_string().len() + r#","pad":"""#.len();
        body["pad"] = json!("x".repeat(total - base));
        let text = body.to_string();
        assert_eq!(text.len(), total);
        text
    };
    let problem = assert_problem(app.post_status_raw(padded(64 * 1024 + 1)).await, 413).await;
    assert!(problem["detail"].as_str().unwrap().contains("65536"));
    assert_eq!(app.get("/v1/outcomes/CON-big").await.status(), 404);
    // Exactly 64 KiB is within the limit.
    assert_eq!(app.post_status_raw(padded(64 * 1024)).await.status(), 204);
}

async fn wrong_secret_is_401_and_nothing_is_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = callback("CON-auth", "busy", "2022-05-31T06:40:45.475Z");
    for secret in ["wrong", &SECRET[..SECRET.len() - 1], &format!("{SECRET}x")] {
        let response = app
            .client
            .post(app.url(&format!("/v1/status/{secret}")))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 401).await;
        assert!(!problem.to_string().contains(SECRET));
    }
    assert_eq!(app.get("/v1/outcomes/CON-auth").await.status(), 404);
}

async fn any_content_type_is_accepted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (n, content_type) in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=utf-8",
        "",
    ]
    .into_iter()
    .enumerate()
    {
        let body = callback(&format!("CON-ct-{n}"), "busy", "2022-05-31T06:40:45.475Z");
        let mut request = app
            .client
            .post(app.url(&format!("/v1/status/{SECRET}")))
            .body(body.to_string());
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        assert_eq!(
            request.send().await.unwrap().status(),
            204,
            "{content_type:?}"
        );
        assert_eq!(
            app.get(&format!("/v1/outcomes/CON-ct-{n}")).await.status(),
            200
        );
    }
}

async fn offsetless_timestamps_are_utc(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.post_status(&callback("CON-naive", "busy", "2020-10-14T09:42:07.151657"))
        .await;
    let outcome = app.get_json("/v1/outcomes/CON-naive").await;
    assert_eq!(outcome["occurred_at"], "2020-10-14T09:42:07.151Z");
}

async fn unknown_statuses_are_stored_as_sent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .post_status(&callback(
            "CON-new",
            "Voicemail_Full",
            "2022-05-31T06:40:45Z",
        ))
        .await;
    assert_eq!(response.status(), 204);
    let outcome = app.get_json("/v1/outcomes/CON-new").await;
    assert_eq!(outcome["status"], "Voicemail_Full");
    let page = app.get_json("/v1/outcomes?status=Voicemail_Full").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);

    // As sent means as sent: no trimming, no case folding, control characters kept.
    for (n, status) in [" Busy ", "tab\there", "BUSY"].into_iter().enumerate() {
        let id = format!("CON-as-sent-{n}");
        let response = app
            .post_status(&callback(&id, status, "2022-05-31T06:40:45Z"))
            .await;
        assert_eq!(response.status(), 204, "{status:?}");
        let outcome = app.get_json(&format!("/v1/outcomes/{id}")).await;
        assert_eq!(outcome["status"], status);
        assert_eq!(outcome["events"][0]["status"], status);
    }
}

async fn latest_occurrence_wins_whatever_the_arrival_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Arrives out of order: the later event first.
    app.post_status(&callback("CON-ooo", "timeout", "2022-05-31T06:41:00.000Z"))
        .await;
    app.post_status(&callback("CON-ooo", "busy", "2022-05-31T06:40:00.000Z"))
        .await;
    let outcome = app.get_json("/v1/outcomes/CON-ooo").await;
    assert_eq!(outcome["status"], "timeout");
    assert_eq!(outcome["occurred_at"], "2022-05-31T06:41:00.000Z");
    assert_eq!(outcome["event_count"], 2);
    let statuses: Vec<&str> = outcome["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["busy", "timeout"], "events oldest first");

    // The same two events in the other order give the same outcome.
    app.post_status(&callback("CON-ino", "busy", "2022-05-31T06:40:00.000Z"))
        .await;
    app.post_status(&callback("CON-ino", "timeout", "2022-05-31T06:41:00.000Z"))
        .await;
    let other = app.get_json("/v1/outcomes/CON-ino").await;
    assert_eq!(other["status"], outcome["status"]);
    assert_eq!(other["occurred_at"], outcome["occurred_at"]);
}

async fn occurrence_tie_goes_to_the_later_received(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (first, second) in [("busy", "rejected"), ("rejected", "busy")] {
        let id = format!("CON-tie-{first}");
        app.post_status(&callback(&id, first, "2022-05-31T06:40:45.475Z"))
            .await;
        app.post_status(&callback(&id, second, "2022-05-31T06:40:45.475Z"))
            .await;
        let outcome = app.get_json(&format!("/v1/outcomes/{id}")).await;
        assert_eq!(outcome["status"], second, "tie goes to the later received");
        assert_eq!(outcome["event_count"], 2);
    }
}

/// Platforms redeliver: every event of several calls arrives several times at once, so
/// concurrent transactions hold overlapping events of the same conversation.
async fn concurrent_deliveries_store_each_event_once(backend: Backend) {
    let app = std::sync::Arc::new(TestApp::spawn(backend).await);
    let statuses = ["busy", "timeout", "failed", "rejected"];
    let conversations: Vec<String> = (0..6).map(|n| format!("CON-race-{n}")).collect();
    let mut tasks = Vec::new();
    for _round in 0..5 {
        // Each round walks the events in another order, so batches overlap differently.
        for (n, status) in statuses.iter().enumerate().rev() {
            for id in conversations.iter().rev() {
                let app = app.clone();
                let body = callback(id, status, &format!("2022-05-31T06:40:4{n}.000Z"));
                tasks.push(tokio::spawn(async move {
                    app.post_status(&body).await.status()
                }));
            }
        }
        for (n, status) in statuses.iter().enumerate() {
            for id in &conversations {
                let app = app.clone();
                let body = callback(id, status, &format!("2022-05-31T06:40:4{n}.000Z"));
                tasks.push(tokio::spawn(async move {
                    app.post_status(&body).await.status()
                }));
            }
        }
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 204);
    }
    for id in &conversations {
        let outcome = app.get_json(&format!("/v1/outcomes/{id}")).await;
        assert_eq!(outcome["event_count"], 4, "{id}");
        assert_eq!(outcome["events"].as_array().unwrap().len(), 4, "{id}");
        assert_eq!(outcome["status"], "rejected", "the latest occurred_at wins");
    }
}

async fn callbacks_survive_a_restart(backend: Backend) {
    let (database_url, _dir) = fresh_database(backend).await;
    let mut flags = default_flags();
    flags.push(("database-url".into(), database_url));
    let app = TestApp::spawn_on(flags.clone()).await;
    app.post_status(&callback("CON-durable", "busy", "2022-05-31T06:40:45.475Z"))
        .await;
    app.shutdown().await;
    let app = TestApp::spawn_on(flags).await;
    let outcome = app.get_json("/v1/outcomes/CON-durable").await;
    assert_eq!(outcome["status"], "busy");
}

async fn control_characters_never_fail_a_batch(backend: Backend) {
    let app = std::sync::Arc::new(TestApp::spawn(backend).await);
    // NUL is valid JSON but not storable text in PostgreSQL: it must not cost a callback,
    // nor the other callbacks committed with it.
    let mut tasks = Vec::new();
    for n in 0..20 {
        let app = app.clone();
        let mut body = callback(&format!("CON-ctl-{n}"), "busy", "2022-05-31T06:40:45Z");
        if n % 2 == 0 {
            body["agent_id"] = json!("agent\u{0}x");
        }
        tasks.push(tokio::spawn(async move {
            app.post_status(&body).await.status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 204);
    }
    let page = app.get_json("/v1/outcomes?limit=100").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 20);
    let outcome = app.get_json("/v1/outcomes/CON-ctl-0").await;
    assert_eq!(outcome["agent_id"], Value::Null);

    let bad = json!({"conversation_uuid": "CON\u{0}", "status": "busy", "timestamp": "2022-05-31T06:40:45Z"});
    let problem = assert_problem(app.post_status(&bad).await, 422).await;
    assert_eq!(error_fields(&problem), ["conversation_uuid"]);
}

async fn descriptive_fields_follow_the_latest_event_in_any_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let event = |id: &str, agent: &str, to: &str, at: &str| json!({"agent_id": agent, "to": to, "conversation_uuid": id, "status": "busy", "timestamp": at});
    for (id, first_is_older) in [("CON-order-a", true), ("CON-order-b", false)] {
        let older = event(id, "agent-old", "972500000001", "2022-05-31T06:40:00Z");
        let newer = event(id, "agent-new", "972500000002", "2022-05-31T06:41:00Z");
        let (first, second) = if first_is_older {
            (older, newer)
        } else {
            (newer, older)
        };
        app.post_status(&first).await;
        app.post_status(&second).await;
        let outcome = app.get_json(&format!("/v1/outcomes/{id}")).await;
        assert_eq!(outcome["agent_id"], "agent-new", "{id}");
        assert_eq!(outcome["to"], "972500000002", "{id}");
    }
}

async fn secrets_with_url_special_characters_work(backend: Backend) {
    // A base64-style secret: `+`, `=` and `%` stand in a path segment (`%` percent-encoded).
    let secret = "ab+c=d%e~f";
    let mut flags = default_flags();
    flags.retain(|(k, _)| k != "ingest-secret");
    flags.push(("ingest-secret".into(), secret.into()));
    let app = TestApp::spawn_with(backend, flags).await;
    let body = callback("CON-b64", "busy", "2022-05-31T06:40:45Z").to_string();
    let post = |path: String| app.client.post(app.url(&path)).body(body.clone()).send();
    assert_eq!(
        post("/v1/status/ab+c=d%25e~f".into())
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        post("/v1/status/ab+c=d%25e~g".into())
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(app.get("/v1/outcomes/CON-b64").await.status(), 200);
}
