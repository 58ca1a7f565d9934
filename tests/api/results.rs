//! Call results: every placed call gets a final answer, from AI Studio's answer to make-call,
//! from a callback to the call's status URL, or inferred `answered` once the grace window has
//! passed without one. AI Studio is stood in for by a real HTTP server (wiremock).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    an_initiated_call_without_a_callback_is_answered_after_the_grace_window,
    a_failure_callback_decides_the_result_at_once,
    a_late_callback_replaces_an_inference_and_counts_a_correction,
    completed_from_an_end_of_call_webhook_means_answered,
    calls_not_placed_or_unknown_take_their_result_from_upstream,
    results_filter_calls_and_count_in_stats,
    a_restart_inside_the_grace_window_still_infers_once,
);

const AGENT: &str = "60c09d70e6a68858f4220848";
const ANSWERED_NUMBER: &str = "972541110001";
const REFUSED_NUMBER: &str = "972541110002";
const SILENT_NUMBER: &str = "972541110003";

/// An AI Studio that accepts calls to any number but [`REFUSED_NUMBER`] (400) and
/// [`SILENT_NUMBER`] (answers after 3 s, past the client's timeout), and a callhook pointed
/// at it with the answer grace window `grace` (seconds).
async fn serving(backend: Backend, grace: &str) -> (MockServer, TestApp) {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/telephony/make-call"))
        .and(body_partial_json(json!({"to": REFUSED_NUMBER})))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"status": 400, "message": "bad number"})),
        )
        .with_priority(1)
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(path("/telephony/make-call"))
        .and(body_partial_json(json!({"to": SILENT_NUMBER})))
        .respond_with(accepted().set_delay(Duration::from_secs(3)))
        .with_priority(1)
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(path("/telephony/make-call"))
        .respond_with(accepted())
        .with_priority(2)
        .mount(&upstream)
        .await;
    let mut flags = default_flags();
    for (name, value) in [
        ("vgai-api-key", VGAI_KEY),
        ("vgai-base-url", upstream.uri().as_str()),
        ("vgai-timeout-secs", "0.5"),
        ("answer-grace-secs", grace),
    ] {
        flags.push((name.to_owned(), value.to_owned()));
    }
    let app = TestApp::spawn_with(backend, flags).await;
    (upstream, app)
}

fn accepted() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "session_id": "5a61cc84-2f49-4a0c-9a4d-0c2a1d7e1c11",
        "session_start_time": "2020-10-14T09:42:07.151657",
    }))
}

/// Places a call to `to`, returning the call as `POST /v1/calls` answered it (any status).
async fn place(app: &TestApp, to: &str) -> Value {
    let response = app
        .client
        .post(app.url("/v1/calls"))
        .bearer_auth(TOKEN)
        .json(&json!({"agent_id": AGENT, "to": to}))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    // A refused call answers a problem naming the call it recorded.
    if body["id"].is_string() {
        body
    } else {
        let id = body["call_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no call id: {body}"));
        app.get_json(&format!("/v1/calls/{id}")).await
    }
}

async fn call(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v1/calls/{id}")).await
}

/// Posts a callback for the call to its own status URL (its path, on this app).
async fn call_back(app: &TestApp, call: &Value, status: &str, timestamp: &str) {
    let url = call["status_url"].as_str().expect("a status URL");
    let path = url.strip_prefix(PUBLIC_URL).expect("under the public URL");
    let body = json!({
        "conversation_uuid": format!("CON-{}", call["id"].as_str().unwrap()),
        "status": status,
        "timestamp": timestamp,
        "agent_id": AGENT,
    });
    let response = app
        .client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "{}", response.text().await.unwrap());
}

/// Polls the call until `done` holds, for at most 10 s.
async fn wait_for(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let call = call(app, id).await;
        if done(&call) {
            return call;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still waiting: {call}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn instant(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value.as_str().unwrap().parse().unwrap()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn metric(app: &TestApp, series: &str) -> f64 {
    sample(&app.text("/metrics").await, series)
}

async fn an_initiated_call_without_a_callback_is_answered_after_the_grace_window(backend: Backend) {
    let (_upstream, app) = serving(backend, "0.5").await;
    let placed = place(&app, ANSWERED_NUMBER).await;
    assert_eq!(placed["state"], "initiated");
    assert_eq!(placed["result"], Value::Null, "{placed}");
    assert_eq!(placed["result_source"], Value::Null);
    assert_eq!(placed["result_at"], Value::Null);
    assert_eq!(placed["attempt"], 1);
    assert_eq!(placed["campaign_id"], Value::Null);
    let id = placed["id"].as_str().unwrap();
    assert!(
        placed["status_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{PUBLIC_URL}/v1/status/calls/{id}/")),
        "{placed}"
    );

    let answered = wait_for(&app, id, |c| !c["result"].is_null()).await;
    assert_eq!(answered["result"], "answered", "{answered}");
    assert_eq!(answered["result_source"], "inferred");
    assert!(
        instant(&answered["result_at"])
            >= instant(&placed["created_at"]) + Duration::from_millis(500),
        "inferred before the grace window passed: {answered}"
    );
    assert_eq!(answered["outcome"], Value::Null, "no callback came");
}

async fn a_failure_callback_decides_the_result_at_once(backend: Backend) {
    let (_upstream, app) = serving(backend, "60").await;
    let placed = place(&app, ANSWERED_NUMBER).await;
    let id = placed["id"].as_str().unwrap();
    call_back(&app, &placed, "busy", &now()).await;
    // The 204 comes after the commit that set the result: no waiting.
    let busy = call(&app, id).await;
    assert_eq!(busy["result"], "busy", "{busy}");
    assert_eq!(busy["result_source"], "callback");
    assert!(busy["result_at"].is_string());
    assert_eq!(busy["outcome"]["status"], "busy");
}

async fn a_late_callback_replaces_an_inference_and_counts_a_correction(backend: Backend) {
    let (_upstream, app) = serving(backend, "0.3").await;
    let corrected = "callhook_results_corrected_total";
    let placed = place(&app, ANSWERED_NUMBER).await;
    let id = placed["id"].as_str().unwrap();
    let inferred = wait_for(&app, id, |c| c["result_source"] == "inferred").await;
    let before = metric(&app, corrected).await;

    call_back(&app, &placed, "timeout", &now()).await;

    let late = call(&app, id).await;
    assert_eq!(late["result"], "timeout", "{late}");
    assert_eq!(late["result_source"], "callback");
    assert!(instant(&late["result_at"]) >= instant(&inferred["result_at"]));
    // Other tests of this process may correct calls of their own meanwhile.
    assert!(metric(&app, corrected).await >= before + 1.0);
    // The inference does not come back: the call has its result.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(call(&app, id).await["result"], "timeout");
}

async fn completed_from_an_end_of_call_webhook_means_answered(backend: Backend) {
    let (_upstream, app) = serving(backend, "60").await;
    let placed = place(&app, ANSWERED_NUMBER).await;
    let id = placed["id"].as_str().unwrap();
    call_back(&app, &placed, "completed", "2026-12-01T10:00:05.000Z").await;
    let answered = call(&app, id).await;
    assert_eq!(answered["result"], "answered", "{answered}");
    assert_eq!(answered["result_source"], "callback");

    // An earlier callback arriving late does not replace the later one's result; a later
    // one does.
    call_back(&app, &placed, "busy", "2026-12-01T10:00:01.000Z").await;
    assert_eq!(call(&app, id).await["result"], "answered");
    call_back(&app, &placed, "failed", "2026-12-01T10:00:09.000Z").await;
    assert_eq!(call(&app, id).await["result"], "failed");
}

async fn calls_not_placed_or_unknown_take_their_result_from_upstream(backend: Backend) {
    let (_upstream, app) = serving(backend, "0.2").await;
    let refused = place(&app, REFUSED_NUMBER).await;
    assert_eq!(refused["state"], "rejected", "{refused}");
    assert_eq!(refused["result"], "not_placed");
    assert_eq!(refused["result_source"], "upstream");
    assert!(refused["result_at"].is_string());

    let silent = place(&app, SILENT_NUMBER).await;
    assert_eq!(silent["state"], "unknown", "{silent}");
    assert_eq!(silent["result"], "unknown");
    assert_eq!(silent["result_source"], "upstream");

    // Neither is ever inferred answered.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let id = silent["id"].as_str().unwrap();
    assert_eq!(call(&app, id).await["result"], "unknown");
    assert_eq!(
        call(&app, refused["id"].as_str().unwrap()).await["result"],
        "not_placed"
    );
    // A callback for a call of unknown fate tells what happened after all.
    call_back(&app, &silent, "rejected", &now()).await;
    let decided = call(&app, id).await;
    assert_eq!(decided["result"], "rejected", "{decided}");
    assert_eq!(decided["result_source"], "callback");
}

async fn results_filter_calls_and_count_in_stats(backend: Backend) {
    let (_upstream, app) = serving(backend, "60").await;
    let busy = place(&app, ANSWERED_NUMBER).await;
    call_back(&app, &busy, "busy", &now()).await;
    let pending = place(&app, ANSWERED_NUMBER).await;
    let refused = place(&app, REFUSED_NUMBER).await;
    let ids = |page: Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{page}"))
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let id = |call: &Value| call["id"].as_str().unwrap().to_owned();
    assert_eq!(
        ids(app.get_json("/v1/calls?result=busy").await),
        [id(&busy)]
    );
    assert_eq!(
        ids(app.get_json("/v1/calls?result=pending").await),
        [id(&pending)]
    );
    assert_eq!(
        ids(app.get_json("/v1/calls?result=not_placed,busy").await),
        [id(&refused), id(&busy)]
    );
    assert_eq!(
        ids(app.get_json("/v1/calls?result=pending,not_placed").await),
        [id(&refused), id(&pending)]
    );
    assert!(ids(app.get_json("/v1/calls?result=answered").await).is_empty());
    let campaign = uuid::Uuid::new_v4();
    assert!(
        ids(app
            .get_json(&format!("/v1/calls?campaign_id={campaign}"))
            .await)
        .is_empty(),
        "no call belongs to a campaign"
    );
    let problem = assert_problem(app.get("/v1/calls?campaign_id=nope").await, 422).await;
    assert_eq!(error_fields(&problem), ["campaign_id"]);

    let stats = app.get_json("/v1/stats").await;
    assert_eq!(
        stats["results"],
        json!({"busy": 1, "pending": 1, "not_placed": 1}),
        "{stats}"
    );
}

async fn a_restart_inside_the_grace_window_still_infers_once(backend: Backend) {
    let (_upstream, app) = serving(backend, "1.5").await;
    let placed = place(&app, ANSWERED_NUMBER).await;
    let id = placed["id"].as_str().unwrap().to_owned();
    let app = app.restart().await;
    assert_eq!(call(&app, &id).await["result"], Value::Null, "not yet");

    let answered = wait_for(&app, &id, |c| !c["result"].is_null()).await;
    assert_eq!(answered["result"], "answered");
    assert_eq!(answered["result_source"], "inferred");
    assert!(
        instant(&answered["result_at"])
            >= instant(&placed["created_at"]) + Duration::from_millis(1500),
        "{answered}"
    );
    // Inferred once: later rounds leave it as it is.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(call(&app, &id).await["result_at"], answered["result_at"]);
}
