//! `POST /v1/calls`, `GET /v1/calls[/{id}]` and `GET /v1/stats`, with AI Studio stood in for
//! by a real HTTP server (wiremock): what callhook sends upstream, how each upstream answer
//! maps to a response and a call record, idempotency, per-call status URLs, filters and counts.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::backend_tests;
use crate::helpers::*;

const AGENT: &str = "60c09d70e6a68858f4220848";
const MISSING_AGENT: &str = "missing-agent";
const BROKEN_AGENT: &str = "broken-agent";
const SESSION_ID: &str = "5a61cc84-2f49-4a0c-9a4d-0c2a1d7e1c11";
const MAKE_CALL: &str = "/telephony/make-call";

// ---------------------------------------------------------------------------------------------
// Helpers of this module
// ---------------------------------------------------------------------------------------------

/// The default flags plus an AI Studio key and base URL pointing at `upstream`.
fn upstream_flags(upstream: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut flags = default_flags();
    flags.push(("vgai-api-key".into(), VGAI_KEY.into()));
    flags.push(("vgai-base-url".into(), upstream.into()));
    flags.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    flags
}

async fn spawn(backend: Backend, upstream: &MockServer) -> TestApp {
    TestApp::spawn_with(backend, upstream_flags(&upstream.uri(), &[])).await
}

/// An AI Studio that gives every make-call `answer`, expecting `calls` of them, and a
/// callhook pointed at it. The server checks its expectation when dropped.
async fn serving(backend: Backend, answer: ResponseTemplate, calls: u64) -> (MockServer, TestApp) {
    serving_with(backend, answer, calls, &[]).await
}

/// [`serving`], with `flags` beside the upstream ones.
async fn serving_with(
    backend: Backend,
    answer: ResponseTemplate,
    calls: u64,
    flags: &[(&str, &str)],
) -> (MockServer, TestApp) {
    let upstream = MockServer::start().await;
    make_call()
        .respond_with(answer)
        .expect(calls)
        .mount(&upstream)
        .await;
    let app = TestApp::spawn_with(backend, upstream_flags(&upstream.uri(), flags)).await;
    (upstream, app)
}

/// AI Studio's documented success answer.
fn accepted() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "session_id": SESSION_ID,
        "session_start_time": "2020-10-14T09:42:07.151657",
    }))
}

/// AI Studio's documented error answer.
fn upstream_error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"status": status, "message": message}))
}

fn make_call() -> wiremock::MockBuilder {
    Mock::given(method("POST")).and(path(MAKE_CALL))
}

/// A response read whole; every body is checked for secrets on the way.
struct Reply {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        assert_no_secrets(&text);
        Self {
            status,
            headers,
            text,
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// Asserts a problem+json answer with `status`, returning the document.
    fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/problem+json")
        );
        let body = self.json();
        assert_eq!(body["status"], status);
        assert!(
            body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(),
            "{body}"
        );
        body
    }
}

fn assert_no_secrets(text: &str) {
    for secret in [VGAI_KEY, TOKEN, SECRET] {
        assert!(
            !text.contains(secret),
            "a response body shows the secret {secret:?}: {text}"
        );
    }
}

async fn post_call(app: &TestApp, body: &Value, idempotency_key: Option<&str>) -> Reply {
    let mut request = app
        .client
        .post(app.url("/v1/calls"))
        .bearer_auth(TOKEN)
        .json(body);
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    Reply::read(request.send().await.unwrap()).await
}

async fn get(app: &TestApp, path: &str) -> Reply {
    Reply::read(app.get(path).await).await
}

async fn get_ok(app: &TestApp, path: &str) -> Value {
    let reply = get(app, path).await;
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.text);
    reply.json()
}

/// The simplest valid request: the default agent, a valid number.
fn a_call() -> Value {
    json!({"agent_id": AGENT, "to": "972541116037"})
}

/// Places a call that must be accepted, returning the call.
async fn place(app: &TestApp, body: Value) -> Value {
    let reply = post_call(app, &body, None).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json()
}

/// The bodies AI Studio received, in order.
async fn upstream_bodies(upstream: &MockServer) -> Vec<Value> {
    upstream
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| request.body_json::<Value>().unwrap())
        .collect()
}

/// The ids of a list page, in order.
fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

fn id(call: &Value) -> String {
    call["id"].as_str().unwrap().to_owned()
}

/// The only call recorded, read through `GET /v1/calls`.
async fn only_call(app: &TestApp) -> Value {
    let page = get_ok(app, "/v1/calls").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    items[0].clone()
}

/// Asserts that the one recorded call failed in `state`, with the upstream `status` (or none).
async fn assert_recorded_failure(app: &TestApp, state: &str, status: Option<u16>) -> Value {
    let call = only_call(app).await;
    assert_eq!(call["state"], state, "{call}");
    assert_eq!(call["error"]["status"], json!(status), "{call}");
    let message = call["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.trim().is_empty(), "{call}");
    assert_eq!(call["session_id"], Value::Null);
    assert_eq!(call["outcome"], Value::Null);
    let single = get_ok(app, &format!("/v1/calls/{}", id(&call))).await;
    assert_eq!(single, call);
    call
}

/// A timestamp `seconds_ago` before now, as AI Studio writes them.
fn timestamp(seconds_ago: i64) -> String {
    (Utc::now() - chrono::Duration::seconds(seconds_ago))
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn is_rfc3339_utc_millis(value: &Value) -> bool {
    let Some(text) = value.as_str() else {
        return false;
    };
    text.len() == 24
        && text.ends_with('Z')
        && text.as_bytes()[19] == b'.'
        && chrono::DateTime::parse_from_rfc3339(text).is_ok()
}

/// The path of the status URL AI Studio was given, on this test app.
fn status_path(upstream_body: &Value) -> String {
    let url = upstream_body["status_url"].as_str().unwrap();
    url.strip_prefix(PUBLIC_URL)
        .unwrap_or_else(|| panic!("{url} is not under {PUBLIC_URL}"))
        .to_owned()
}

async fn post_raw(app: &TestApp, path: &str, body: &Value) -> Reply {
    Reply::read(
        app.client
            .post(app.url(path))
            .body(body.to_string())
            .send()
            .await
            .unwrap(),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Placing a call
// ---------------------------------------------------------------------------------------------

async fn a_placed_call_is_201_with_location_and_the_documented_shape(backend: Backend) {
    let (upstream, app) = serving(backend, accepted(), 2).await;

    let reply = post_call(
        &app,
        &json!({
            "agent_id": AGENT,
            "to": "+972 54-111-6037",
            "session_parameters": {"CALLER_NAME": "Diane Miller"},
        }),
        None,
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    let call = reply.json();
    let call_id = id(&call);
    uuid::Uuid::parse_str(&call_id).expect("the id is a UUID");
    assert_eq!(
        reply.header("location").as_deref(),
        Some(format!("/v1/calls/{call_id}").as_str())
    );
    assert_eq!(call["agent_id"], AGENT);
    assert_eq!(call["to"], "972541116037");
    assert_eq!(call["region"], "eu");
    assert_eq!(call["hangup_on_answer_machine"], false);
    assert_eq!(
        call["session_parameters"],
        json!([{"name": "CALLER_NAME", "value": "Diane Miller"}])
    );
    assert_eq!(call["state"], "initiated");
    assert_eq!(call["session_id"], SESSION_ID);
    assert_eq!(call["session_start_time"], "2020-10-14T09:42:07.151Z");
    assert_eq!(call["error"], Value::Null);
    assert_eq!(call["outcome"], Value::Null);
    assert!(is_rfc3339_utc_millis(&call["created_at"]), "{call}");

    // The Location names the same call.
    let location = reply.header("location").unwrap();
    assert_eq!(get_ok(&app, &location).await, call);

    let second = place(
        &app,
        json!({
            "agent_id": AGENT,
            "to": "(972) 541116037",
            "hangup_on_answer_machine": true,
            "session_parameters": [{"name": "CALLER_NAME", "value": "Diane Miller"}],
        }),
    )
    .await;
    assert_eq!(second["to"], "972541116037");
    assert_eq!(second["hangup_on_answer_machine"], true);
    assert_ne!(id(&second), call_id);

    let received = upstream.received_requests().await.unwrap();
    assert_eq!(received.len(), 2);
    for (request, call) in received.iter().zip([&call, &second]) {
        assert_eq!(request.headers.get("x-vgai-key").unwrap(), VGAI_KEY);
        assert!(
            request
                .headers
                .get("content-type")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let body: Value = request.body_json().unwrap();
        assert_eq!(body["agent_id"], AGENT);
        assert_eq!(body["to"], "972541116037", "digits only: {body}");
        assert_eq!(
            body["session_parameters"],
            json!([{"name": "CALLER_NAME", "value": "Diane Miller"}]),
            "the upstream list shape: {body}"
        );
        let status_url = body["status_url"].as_str().unwrap();
        assert!(
            status_url.starts_with(&format!("{PUBLIC_URL}/v1/status/")),
            "{status_url}"
        );
        assert!(
            status_url.contains(&id(call)),
            "each call gets its own status URL: {status_url}"
        );
        assert!(!status_url.contains(SECRET), "{status_url}");
    }
    let first: Value = received[0].body_json().unwrap();
    let second: Value = received[1].body_json().unwrap();
    assert_ne!(first["status_url"], second["status_url"]);
    assert_eq!(second["hangup_on_answer_machine"], true);
    assert!(
        first.get("hangup_on_answer_machine").is_none()
            || first["hangup_on_answer_machine"] == false
    );
}

async fn sip_addresses_pass_as_given(backend: Backend) {
    // A US agent, for once: the call records its region.
    let (upstream, app) = serving_with(backend, accepted(), 1, &[("vgai-region", "us")]).await;

    let call = place(
        &app,
        json!({"agent_id": AGENT, "to": "sip:1234@sip.example.com"}),
    )
    .await;
    assert_eq!(call["to"], "sip:1234@sip.example.com");
    assert_eq!(call["region"], "us");
    assert_eq!(call["session_parameters"], json!([]));
    assert_eq!(
        upstream_bodies(&upstream).await[0]["to"],
        "sip:1234@sip.example.com"
    );
}

async fn bad_destinations_are_422_before_any_upstream_request(backend: Backend) {
    let (_upstream, app) = serving(backend, accepted(), 0).await;

    for to in [
        "054-111-6037",             // national number
        "0541116037",               // national number
        "97254CALLME",              // letters
        "+972 54 abc 6037",         // letters
        "123456",                   // too short for E.164
        "1234567890123456",         // too long for E.164
        "+1 (234) 567-8901-2345-6", // too long, as typed
        "",
    ] {
        let reply = post_call(&app, &json!({"agent_id": AGENT, "to": to}), None).await;
        let problem = reply.problem(422);
        assert!(
            error_fields(&problem).contains(&"to".to_owned()),
            "{to:?}: {problem}"
        );
    }
    let reply = post_call(
        &app,
        &json!({"agent_id": AGENT, "to": 972541116037u64}),
        None,
    )
    .await;
    assert!(error_fields(&reply.problem(422)).contains(&"to".to_owned()));
    let reply = post_call(&app, &json!({"agent_id": AGENT}), None).await;
    assert!(error_fields(&reply.problem(422)).contains(&"to".to_owned()));
    let reply = post_call(
        &app,
        &json!({"agent_id": AGENT, "to": "972541116037", "metadata": ["not", "an", "object"]}),
        None,
    )
    .await;
    assert!(error_fields(&reply.problem(422)).contains(&"metadata".to_owned()));

    // Nothing reached upstream, so nothing was recorded.
    let page = get_ok(&app, "/v1/calls").await;
    assert_eq!(page["items"], json!([]));
}

async fn metadata_is_stored_and_returned(backend: Backend) {
    let (upstream, app) = serving(backend, accepted(), 1).await;
    let metadata = json!({
        "crm_id": "A-17",
        "tags": ["vip", "renewal"],
        "nested": {"attempt": 2, "score": 1.5, "note": null, "ok": true},
    });

    let call = place(
        &app,
        json!({"agent_id": AGENT, "to": "972541116037", "metadata": metadata}),
    )
    .await;
    assert_eq!(call["metadata"], metadata);
    assert_eq!(
        get_ok(&app, &format!("/v1/calls/{}", id(&call))).await["metadata"],
        metadata
    );
    assert_eq!(
        get_ok(&app, "/v1/calls").await["items"][0]["metadata"],
        metadata
    );
    // Metadata is callhook's: AI Studio does not get it.
    assert!(
        upstream_bodies(&upstream).await[0]
            .get("metadata")
            .is_none()
    );
    // At most 8 KiB of it, refused before AI Studio is asked.
    let oversized = json!({"blob": "x".repeat(9 * 1024)});
    let reply = post_call(
        &app,
        &json!({"agent_id": AGENT, "to": "972541116037", "metadata": oversized}),
        None,
    )
    .await;
    assert!(error_fields(&reply.problem(422)).contains(&"metadata".to_owned()));
}

// ---------------------------------------------------------------------------------------------
// Per-call status URLs
// ---------------------------------------------------------------------------------------------

async fn a_callback_on_the_call_status_url_becomes_its_outcome(backend: Backend) {
    let (upstream, app) = serving(backend, accepted(), 1).await;
    let call = place(&app, json!({"agent_id": AGENT, "to": "+972 54-111-6037"})).await;
    let call_id = id(&call);
    let status_path = status_path(&upstream_bodies(&upstream).await[0]);
    assert!(status_path.starts_with("/v1/status/"), "{status_path}");

    let conversation = "CON-4ee2e523-4ee13-4e98-ae94-e6e3e1ab9ac6";
    let occurred_at = timestamp(5);
    let mut busy = callback(conversation, "busy", &occurred_at);
    busy["agent_id"] = json!(AGENT);
    busy["to"] = json!("972541116037");
    let reply = post_raw(&app, &status_path, &busy).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    // A repeat is stored once.
    assert_eq!(post_raw(&app, &status_path, &busy).await.status, 204);

    let seen = get_ok(&app, &format!("/v1/calls/{call_id}")).await;
    let outcome = &seen["outcome"];
    assert_eq!(outcome["conversation_uuid"], conversation, "{seen}");
    assert_eq!(outcome["status"], "busy");
    assert_eq!(outcome["call_id"], call_id.as_str());
    assert_eq!(outcome["occurred_at"], occurred_at);
    assert_eq!(outcome["event_count"], 1);
    for field in ["occurred_at", "first_received_at", "last_received_at"] {
        assert!(is_rfc3339_utc_millis(&outcome[field]), "{field}: {outcome}");
    }
    assert_eq!(seen["state"], "initiated");

    let stored = get_ok(&app, &format!("/v1/outcomes/{conversation}")).await;
    assert_eq!(stored["call_id"], call_id.as_str());

    // A later event of the same conversation becomes the call's outcome.
    let later = callback(conversation, "failed", &timestamp(1));
    assert_eq!(post_raw(&app, &status_path, &later).await.status, 204);
    let seen = get_ok(&app, &format!("/v1/calls/{call_id}")).await;
    assert_eq!(seen["outcome"]["status"], "failed", "{seen}");
    assert_eq!(seen["outcome"]["event_count"], 2);
    assert_eq!(
        get_ok(&app, "/v1/calls").await["items"][0]["outcome"]["status"],
        "failed"
    );
}

async fn tampered_or_foreign_status_urls_are_401_and_store_nothing(backend: Backend) {
    let (upstream, app) = serving(backend, accepted(), 2).await;
    let first = place(&app, json!({"agent_id": AGENT, "to": "972541116037"})).await;
    let second = place(&app, json!({"agent_id": AGENT, "to": "972541116038"})).await;
    let bodies = upstream_bodies(&upstream).await;
    let first_path = status_path(&bodies[0]);
    let (prefix, signature) = first_path.rsplit_once('/').unwrap();
    assert!(prefix.contains(&id(&first)), "{first_path}");

    let mut tampered = signature.to_owned().into_bytes();
    tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let conversation = "CON-forged";
    let forged = callback(conversation, "busy", &timestamp(2));
    for path in [
        format!("{prefix}/{tampered}"),
        format!("{prefix}/not-a-signature"),
        // A valid signature, moved to another call.
        first_path.replace(&id(&first), &id(&second)),
        first_path.replace(&id(&first), &uuid::Uuid::now_v7().to_string()),
        first_path.replace(&id(&first), "not-a-uuid"),
    ] {
        let reply = post_raw(&app, &path, &forged).await;
        reply.problem(401);
    }

    let reply = get(&app, &format!("/v1/outcomes/{conversation}")).await;
    reply.problem(404);
    assert_eq!(get_ok(&app, "/v1/outcomes").await["items"], json!([]));
    for call in [&first, &second] {
        let seen = get_ok(&app, &format!("/v1/calls/{}", id(call))).await;
        assert_eq!(seen["outcome"], Value::Null, "{seen}");
    }
}

// ---------------------------------------------------------------------------------------------
// Upstream answers
// ---------------------------------------------------------------------------------------------

async fn upstream_404_is_404_and_the_call_is_rejected(backend: Backend) {
    let (_upstream, app) = serving(backend, upstream_error(404, "agent not found"), 1).await;

    let reply = post_call(
        &app,
        &json!({"agent_id": MISSING_AGENT, "to": "972541116037"}),
        None,
    )
    .await;
    let problem = reply.problem(404);
    assert!(reply.header("location").is_none());
    let call = assert_recorded_failure(&app, "rejected", Some(404)).await;
    assert_eq!(call["error"]["message"], "agent not found");
    assert_eq!(call["agent_id"], MISSING_AGENT);
    if let Some(call_id) = problem.get("call_id") {
        assert_eq!(call_id, &call["id"]);
    }
}

async fn upstream_400_is_422_naming_to_and_the_call_is_rejected(backend: Backend) {
    let (_upstream, app) = serving(
        backend,
        upstream_error(400, "bad destination number format"),
        1,
    )
    .await;

    let reply = post_call(&app, &a_call(), None).await;
    let problem = reply.problem(422);
    assert!(
        error_fields(&problem).contains(&"to".to_owned()),
        "{problem}"
    );
    let call = assert_recorded_failure(&app, "rejected", Some(400)).await;
    assert_eq!(call["error"]["message"], "bad destination number format");
}

async fn upstream_401_is_502_blaming_the_key_without_showing_it(backend: Backend) {
    let (_upstream, app) = serving(backend, upstream_error(401, "not authorised"), 1).await;

    let reply = post_call(&app, &a_call(), None).await;
    let problem = reply.problem(502);
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("VGAI_API_KEY"), "{detail}");
    assert!(!reply.text.contains(VGAI_KEY));
    assert_recorded_failure(&app, "rejected", Some(401)).await;
}

async fn upstream_429_is_429_with_retry_after(backend: Backend) {
    let (_upstream, app) = serving(
        backend,
        upstream_error(429, "too many calls").insert_header("Retry-After", "7"),
        1,
    )
    .await;

    let reply = post_call(&app, &a_call(), None).await;
    reply.problem(429);
    assert_eq!(reply.header("retry-after").as_deref(), Some("7"));
    let call = assert_recorded_failure(&app, "rejected", Some(429)).await;
    assert_eq!(call["error"]["message"], "too many calls");
}

async fn upstream_500_is_502_and_the_call_failed(backend: Backend) {
    let (_upstream, app) = serving(
        backend,
        upstream_error(500, "failed to fetch preconfigured session information"),
        1,
    )
    .await;

    let reply = post_call(&app, &a_call(), None).await;
    reply.problem(502);
    let call = assert_recorded_failure(&app, "failed", Some(500)).await;
    assert_eq!(
        call["error"]["message"],
        "failed to fetch preconfigured session information"
    );
}

async fn upstream_errors_that_are_not_json_are_still_mapped(backend: Backend) {
    let upstream = MockServer::start().await;
    let html = |status| {
        ResponseTemplate::new(status).set_body_raw("<html><body>nope</body></html>", "text/html")
    };
    make_call()
        .and(body_partial_json(json!({"agent_id": MISSING_AGENT})))
        .respond_with(html(404))
        .expect(1)
        .mount(&upstream)
        .await;
    make_call()
        .and(body_partial_json(json!({"agent_id": BROKEN_AGENT})))
        .respond_with(html(503))
        .expect(1)
        .mount(&upstream)
        .await;
    make_call()
        .and(body_partial_json(json!({"agent_id": AGENT})))
        .respond_with(ResponseTemplate::new(400).set_body_string(""))
        .expect(1)
        .mount(&upstream)
        .await;
    let app = spawn(backend, &upstream).await;

    let call = |agent: &str| json!({"agent_id": agent, "to": "972541116037"});
    post_call(&app, &call(MISSING_AGENT), None)
        .await
        .problem(404);
    post_call(&app, &call(BROKEN_AGENT), None)
        .await
        .problem(502);
    let problem = post_call(&app, &call(AGENT), None).await.problem(422);
    assert!(error_fields(&problem).contains(&"to".to_owned()));

    let page = get_ok(&app, "/v1/calls").await;
    let items = page["items"].as_array().unwrap();
    let mut seen: Vec<(String, Value)> = items
        .iter()
        .map(|c| {
            assert!(
                !c["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .is_empty(),
                "{c}"
            );
            (
                c["state"].as_str().unwrap().to_owned(),
                c["error"]["status"].clone(),
            )
        })
        .collect();
    seen.sort_by_key(|(state, status)| (state.clone(), status.as_u64()));
    assert_eq!(
        seen,
        [
            ("failed".to_owned(), json!(503)),
            ("rejected".to_owned(), json!(400)),
            ("rejected".to_owned(), json!(404)),
        ]
    );
}

async fn upstream_messages_never_echo_the_key(backend: Backend) {
    let (_upstream, app) = serving(
        backend,
        upstream_error(404, &format!("no agent for key {VGAI_KEY}")),
        1,
    )
    .await;

    // Reply::read asserts that no body shows the key.
    let reply = post_call(&app, &a_call(), None).await;
    reply.problem(404);
    assert_recorded_failure(&app, "rejected", Some(404)).await;
}

async fn a_slow_upstream_is_504_unknown_and_never_retried(backend: Backend) {
    let (upstream, app) = serving_with(
        backend,
        accepted().set_delay(Duration::from_secs(3)),
        1,
        &[("vgai-timeout-secs", "0.5")],
    )
    .await;

    let started = std::time::Instant::now();
    let reply = post_call(&app, &a_call(), None).await;
    reply.problem(504);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout was not applied"
    );
    let call = only_call(&app).await;
    assert_eq!(call["state"], "unknown", "{call}");
    assert_eq!(call["session_id"], Value::Null);
    assert!(call["error"]["message"].is_string(), "{call}");
    // Exactly one request: a retry could ring the person twice.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(upstream.received_requests().await.unwrap().len(), 1);
}

async fn an_unreachable_upstream_is_502_and_the_call_failed(backend: Backend) {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let app = TestApp::spawn_with(
        backend,
        upstream_flags(&format!("http://127.0.0.1:{port}"), &[]),
    )
    .await;

    let reply = post_call(&app, &a_call(), None).await;
    reply.problem(502);
    assert_recorded_failure(&app, "failed", None).await;
}

async fn without_a_vgai_key_calls_are_503(backend: Backend) {
    let upstream = MockServer::start().await;
    make_call()
        .respond_with(accepted())
        .expect(0)
        .mount(&upstream)
        .await;
    let mut flags = default_flags();
    flags.push(("vgai-base-url".into(), upstream.uri()));
    let app = TestApp::spawn_with(backend, flags).await;

    let reply = post_call(&app, &a_call(), None).await;
    let problem = reply.problem(503);
    assert!(
        problem["detail"].as_str().unwrap().contains("VGAI_API_KEY"),
        "{problem}"
    );
    assert_eq!(get_ok(&app, "/v1/calls").await["items"], json!([]));
}

/// Without CALLHOOK_PUBLIC_URL the status URL is built from the address the client used,
/// as a proxy reports it; callbacks through it reach the call.
async fn without_a_public_url_the_status_url_follows_the_request(backend: Backend) {
    let upstream = MockServer::start().await;
    make_call()
        .respond_with(accepted())
        .expect(2)
        .mount(&upstream)
        .await;
    let flags = upstream_flags(&upstream.uri(), &[])
        .into_iter()
        .filter(|(k, _)| k != "public-url")
        .collect();
    let app = TestApp::spawn_with(backend, flags).await;
    let body = json!({"agent_id": AGENT, "to": "972541116037"});

    let direct = post_call(&app, &body, None).await;
    assert_eq!(direct.status, 201, "{}", direct.text);
    let proxied = app
        .client
        .post(app.url("/v1/calls"))
        .bearer_auth(TOKEN)
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "hooks.example.com, internal.lan")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 201);

    let received = upstream.received_requests().await.unwrap();
    let status_urls: Vec<String> = received
        .iter()
        .map(|r| {
            let sent: Value = serde_json::from_slice(&r.body).unwrap();
            sent["status_url"].as_str().unwrap().to_owned()
        })
        .collect();
    let direct_path = status_urls[0]
        .strip_prefix(&app.base)
        .unwrap_or_else(|| panic!("{} is not under {}", status_urls[0], app.base));
    assert!(
        direct_path.starts_with("/v1/status/calls/"),
        "{direct_path}"
    );
    assert!(
        status_urls[1].starts_with("https://hooks.example.com/v1/status/calls/"),
        "{}",
        status_urls[1]
    );

    let response = app
        .client
        .post(&status_urls[0])
        .body(callback("CON-no-public-url", "busy", "2022-05-31T06:40:45.475Z").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let call = get_ok(&app, &format!("/v1/calls/{}", id(&direct.json()))).await;
    assert_eq!(call["outcome"]["status"], "busy", "{call}");
}

// ---------------------------------------------------------------------------------------------
// Idempotency-Key
// ---------------------------------------------------------------------------------------------

async fn the_same_idempotency_key_and_body_replays_the_first_answer(backend: Backend) {
    let (_upstream, app) = serving(backend, accepted(), 1).await;
    let body = json!({
        "agent_id": AGENT,
        "to": "+972 54-111-6037",
        "session_parameters": {"CALLER_NAME": "Diane Miller"},
    });

    let first = post_call(&app, &body, Some("order-1234")).await;
    assert_eq!(first.status, 201, "{}", first.text);
    // The same body, keys in another order.
    let again = json!({
        "session_parameters": {"CALLER_NAME": "Diane Miller"},
        "to": "+972 54-111-6037",
        "agent_id": AGENT,
    });
    let second = post_call(&app, &again, Some("order-1234")).await;
    assert_eq!(second.status, first.status);
    assert_eq!(second.text, first.text);
    assert_eq!(second.header("location"), first.header("location"));
    assert_eq!(
        second.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(ids(&get_ok(&app, "/v1/calls").await).len(), 1);
    // The call is there, as the first answer said.
    let call = first.json();
    assert_eq!(
        get_ok(&app, &format!("/v1/calls/{}", id(&call))).await,
        call
    );
}

async fn the_same_idempotency_key_replays_a_refusal(backend: Backend) {
    // Whatever AI Studio answered, the key keeps it: the same request is never sent twice.
    for (status, expected) in [(404, 404), (500, 502), (429, 429)] {
        let (_upstream, app) = serving(backend, upstream_error(status, "refused"), 1).await;
        let body = json!({"agent_id": MISSING_AGENT, "to": "972541116037"});
        let key = format!("k-{status}");

        let first = post_call(&app, &body, Some(&key)).await;
        first.problem(expected);
        let second = post_call(&app, &body, Some(&key)).await;
        second.problem(expected);
        assert_eq!(second.text, first.text);
        assert_eq!(
            second.headers.get("retry-after"),
            first.headers.get("retry-after"),
            "the replay carries the first answer's Retry-After"
        );
        assert_eq!(ids(&get_ok(&app, "/v1/calls").await).len(), 1);
    }
}

async fn an_idempotency_key_reused_with_another_body_is_422(backend: Backend) {
    let (_upstream, app) = serving(backend, accepted(), 1).await;

    let first = post_call(
        &app,
        &json!({"agent_id": AGENT, "to": "972541116037"}),
        Some("k-1"),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let other = post_call(
        &app,
        &json!({"agent_id": AGENT, "to": "972541116038"}),
        Some("k-1"),
    )
    .await;
    let problem = other.problem(422);
    assert!(
        error_fields(&problem).contains(&"Idempotency-Key".to_owned()),
        "{problem}"
    );
    assert_eq!(ids(&get_ok(&app, "/v1/calls").await).len(), 1);
}

async fn concurrent_requests_with_one_idempotency_key_place_one_call(backend: Backend) {
    let (_upstream, app) = serving(
        backend,
        accepted().set_delay(Duration::from_millis(1500)),
        1,
    )
    .await;
    let body = json!({"agent_id": AGENT, "to": "972541116037"});

    let (a, b) = tokio::join!(
        post_call(&app, &body, Some("k-race")),
        post_call(&app, &body, Some("k-race")),
    );
    let mut replies = [a, b];
    replies.sort_by_key(|r| r.status);
    assert_eq!(replies[0].status, 201, "{}", replies[0].text);
    match replies[1].status {
        409 => {
            replies[1].problem(409);
        }
        201 => assert_eq!(replies[1].text, replies[0].text),
        other => panic!("unexpected {other}: {}", replies[1].text),
    }
    assert_eq!(ids(&get_ok(&app, "/v1/calls").await).len(), 1);
    // Once the first finished, the key replays its answer.
    let later = post_call(&app, &body, Some("k-race")).await;
    assert_eq!(later.text, replies[0].text);
}

async fn a_timed_out_call_is_replayed_not_retried(backend: Backend) {
    let (upstream, app) = serving_with(
        backend,
        accepted().set_delay(Duration::from_secs(3)),
        1,
        &[("vgai-timeout-secs", "0.5")],
    )
    .await;
    let body = json!({"agent_id": AGENT, "to": "972541116037"});

    let first = post_call(&app, &body, Some("k-slow")).await;
    first.problem(504);
    // The call may have been placed: the same key must not place it again.
    let second = post_call(&app, &body, Some("k-slow")).await;
    second.problem(504);
    assert_eq!(second.text, first.text);
    assert_eq!(upstream.received_requests().await.unwrap().len(), 1);
    assert_eq!(only_call(&app).await["state"], "unknown");
}

async fn a_client_that_gives_up_does_not_lose_the_answer(backend: Backend) {
    let (upstream, app) = serving(
        backend,
        accepted().set_delay(Duration::from_millis(1000)),
        1,
    )
    .await;
    let body = json!({"agent_id": AGENT, "to": "972541116037"});

    // The client hangs up while AI Studio is still answering.
    let impatient = app
        .client
        .post(app.url("/v1/calls"))
        .bearer_auth(TOKEN)
        .header("Idempotency-Key", "k-gone")
        .timeout(Duration::from_millis(300))
        .json(&body)
        .send()
        .await;
    assert!(impatient.is_err(), "the client was meant to give up");
    assert_eq!(upstream.received_requests().await.unwrap().len(), 1);

    // AI Studio accepted the call: callhook records that, whoever is still listening.
    let mut call = Value::Null;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        call = only_call(&app).await;
        if call["state"] != "unknown" {
            break;
        }
    }
    assert_eq!(call["state"], "initiated", "{call}");
    assert_eq!(call["session_id"], SESSION_ID);

    // The retry the client makes gets the answer it missed, and places no second call.
    let retry = post_call(&app, &body, Some("k-gone")).await;
    assert_eq!(retry.status, 201, "{}", retry.text);
    assert_eq!(id(&retry.json()), id(&call));
    assert_eq!(upstream.received_requests().await.unwrap().len(), 1);
}

/// Runs `sql` on the app's database, beside the app (to inject a storage failure).
async fn a_call_whose_answer_could_not_be_recorded_is_not_placed_again(backend: Backend) {
    let (upstream, app) = serving(
        backend,
        accepted().set_delay(Duration::from_millis(1000)),
        1,
    )
    .await;
    let body = json!({"agent_id": AGENT, "to": "972541116037"});
    let (break_calls, repair_calls) = match backend {
        Backend::Sqlite => (
            "CREATE TRIGGER injected_failure BEFORE UPDATE ON calls \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
            "DROP TRIGGER injected_failure",
        ),
        Backend::Postgres => (
            "ALTER TABLE calls ADD CONSTRAINT injected_failure CHECK (state = 'unknown') NOT VALID",
            "ALTER TABLE calls DROP CONSTRAINT injected_failure",
        ),
    };

    // The attempt is recorded and sent; while AI Studio answers, the call table stops taking
    // updates, so its answer cannot be recorded.
    let (first, ()) = tokio::join!(post_call(&app, &body, Some("k-lost")), async {
        while upstream.received_requests().await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        execute_sql(&app, break_calls).await;
    });
    assert!(first.status >= 500, "{}", first.text);
    execute_sql(&app, repair_calls).await;

    // The client's retry must not ring the person a second time.
    let retry = post_call(&app, &body, Some("k-lost")).await;
    assert_eq!(retry.status, first.status, "{}", retry.text);
    assert_eq!(retry.text, first.text);
    assert_eq!(upstream.received_requests().await.unwrap().len(), 1);
    // The record says what callhook knows: the call may have been placed.
    assert_eq!(only_call(&app).await["state"], "unknown");
}

// ---------------------------------------------------------------------------------------------
// Listing and counting
// ---------------------------------------------------------------------------------------------

/// An upstream that accepts `AGENT`, has no `MISSING_AGENT` and fails for `BROKEN_AGENT`.
async fn mixed_upstream() -> MockServer {
    let upstream = MockServer::start().await;
    make_call()
        .and(body_partial_json(json!({"agent_id": AGENT})))
        .respond_with(accepted())
        .mount(&upstream)
        .await;
    make_call()
        .and(body_partial_json(json!({"agent_id": MISSING_AGENT})))
        .respond_with(upstream_error(404, "agent not found"))
        .mount(&upstream)
        .await;
    make_call()
        .and(body_partial_json(json!({"agent_id": BROKEN_AGENT})))
        .respond_with(upstream_error(
            500,
            "failed to fetch preconfigured session information",
        ))
        .mount(&upstream)
        .await;
    upstream
}

/// Places a call whatever upstream answers; returns the id of the recorded call.
async fn attempt(app: &TestApp, agent: &str, to: &str) -> String {
    let reply = post_call(app, &json!({"agent_id": agent, "to": to}), None).await;
    let calls = get_ok(app, "/v1/calls?limit=1").await;
    let newest = ids(&calls).remove(0);
    if reply.status == 201 {
        assert_eq!(id(&reply.json()), newest);
    }
    newest
}

async fn calls_are_filtered_and_paged_newest_first(backend: Backend) {
    let upstream = mixed_upstream().await;
    let app = spawn(backend, &upstream).await;
    let c1 = attempt(&app, AGENT, "+972 54-111-6037").await;
    let c2 = attempt(&app, AGENT, "+44 20 7946 0958").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mid = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let c3 = attempt(&app, MISSING_AGENT, "972541116037").await;
    let c4 = attempt(&app, BROKEN_AGENT, "972541116037").await;
    let c5 = attempt(&app, AGENT, "sip:1234@sip.example.com").await;
    let (c1, c2, c3, c4, c5) = (
        c1.as_str(),
        c2.as_str(),
        c3.as_str(),
        c4.as_str(),
        c5.as_str(),
    );

    // A busy callback for c1, through its status URL.
    let bodies = upstream_bodies(&upstream).await;
    let c1_path = status_path(&bodies[0]);
    assert!(c1_path.contains(c1));
    let reply = post_raw(&app, &c1_path, &callback("CON-c1", "busy", &timestamp(1))).await;
    assert_eq!(reply.status, 204, "{}", reply.text);

    let list = |query: &str| {
        let app = &app;
        let path = format!("/v1/calls{query}");
        async move { ids(&get_ok(app, &path).await) }
    };
    assert_eq!(list("").await, [c5, c4, c3, c2, c1]);
    assert_eq!(list("?state=rejected").await, [c3]);
    assert_eq!(list("?state=failed").await, [c4]);
    assert_eq!(list("?state=initiated,failed").await, [c5, c4, c2, c1]);
    assert_eq!(list("?state=unknown").await, Vec::<String>::new());
    assert_eq!(list(&format!("?agent_id={AGENT}")).await, [c5, c2, c1]);
    assert_eq!(list("?to=%2B972%2054-111-6037").await, [c4, c3, c1]);
    assert_eq!(list("?to=972541116037").await, [c4, c3, c1]);
    assert_eq!(list("?to=sip:1234@sip.example.com").await, [c5]);
    assert_eq!(list("?outcome=busy").await, [c1]);
    assert_eq!(
        list("?outcome=timeout,cancelled").await,
        Vec::<String>::new()
    );
    assert_eq!(list(&format!("?since={mid}")).await, [c5, c4, c3]);
    assert_eq!(list(&format!("?until={mid}")).await, [c2, c1]);
    assert_eq!(
        list(&format!("?since={mid}&state=initiated&agent_id={AGENT}")).await,
        [c5]
    );

    // Paging: every call once, in order, then no cursor.
    let mut paged = Vec::new();
    let mut path = "/v1/calls?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = get_ok(&app, &path).await;
        let page_ids = ids(&page);
        assert!(page_ids.len() <= 2);
        paged.extend(page_ids);
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/calls?limit=2&cursor={cursor}"),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(paged, [c5, c4, c3, c2, c1]);
    assert_eq!(pages, 3);
    // Paging composes with filters.
    let page = get_ok(&app, &format!("/v1/calls?agent_id={AGENT}&limit=2")).await;
    assert_eq!(ids(&page), [c5, c2]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let page = get_ok(
        &app,
        &format!("/v1/calls?agent_id={AGENT}&limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(ids(&page), [c1]);
    assert_eq!(page["next_cursor"], Value::Null);

    for bad in [
        "?state=bogus",
        "?limit=0",
        "?limit=1001",
        "?cursor=garbage",
        "?since=yesterday",
    ] {
        get(&app, &format!("/v1/calls{bad}")).await.problem(422);
    }
    get(&app, &format!("/v1/calls/{}", uuid::Uuid::now_v7()))
        .await
        .problem(404);
    get(&app, "/v1/calls/not-a-uuid").await.problem(404);
}

async fn stats_count_outcomes_calls_and_initiated_calls(backend: Backend) {
    let upstream = mixed_upstream().await;
    let app = spawn(backend, &upstream).await;
    let a = attempt(&app, AGENT, "972541116031").await;
    let b = attempt(&app, AGENT, "972541116032").await;
    let c = attempt(&app, AGENT, "972541116033").await;
    attempt(&app, MISSING_AGENT, "972541116034").await;
    attempt(&app, BROKEN_AGENT, "972541116035").await;

    let bodies = upstream_bodies(&upstream).await;
    let path_of = |call: &str| {
        bodies
            .iter()
            .map(status_path)
            .find(|p| p.contains(call))
            .unwrap()
    };
    let with_agent = |conversation: &str, status: &str, agent: &str| {
        let mut cb = callback(conversation, status, &timestamp(10));
        cb["agent_id"] = json!(agent);
        cb
    };
    // a: a documented failure; b: a status callhook does not know; c: nothing yet.
    for (path, cb) in [
        (path_of(&a), with_agent("CON-a", "busy", AGENT)),
        (path_of(&b), with_agent("CON-b", "voicemail", AGENT)),
        (
            format!("/v1/status/{SECRET}"),
            with_agent("CON-elsewhere", "timeout", "another-agent"),
        ),
    ] {
        let reply = post_raw(&app, &path, &cb).await;
        assert_eq!(reply.status, 204, "{path}: {}", reply.text);
    }
    assert_eq!(
        get_ok(&app, &format!("/v1/calls/{c}")).await["outcome"],
        Value::Null
    );

    let stats = get_ok(&app, "/v1/stats").await;
    assert_eq!(
        stats["outcomes"],
        json!({"busy": 1, "voicemail": 1, "timeout": 1}),
        "{stats}"
    );
    assert_eq!(
        stats["calls"],
        json!({"initiated": 3, "rejected": 1, "failed": 1, "unknown": 0}),
        "{stats}"
    );
    assert_eq!(
        stats["initiated"],
        json!({"total": 3, "with_failure_callback": 1, "without_callback": 1}),
        "{stats}"
    );
    assert!(is_rfc3339_utc_millis(&stats["since"]) && is_rfc3339_utc_millis(&stats["until"]));

    let stats = get_ok(&app, &format!("/v1/stats?agent_id={AGENT}")).await;
    assert_eq!(
        stats["outcomes"],
        json!({"busy": 1, "voicemail": 1}),
        "{stats}"
    );
    assert_eq!(
        stats["calls"],
        json!({"initiated": 3, "rejected": 0, "failed": 0, "unknown": 0}),
        "{stats}"
    );
    assert_eq!(stats["initiated"]["total"], 3);

    // A window that ended before any of this holds nothing.
    let stats = get_ok(
        &app,
        "/v1/stats?since=2020-01-01T00:00:00Z&until=2020-01-02T00:00:00Z",
    )
    .await;
    assert_eq!(stats["outcomes"], json!({}), "{stats}");
    assert_eq!(
        stats["calls"],
        json!({"initiated": 0, "rejected": 0, "failed": 0, "unknown": 0})
    );
    assert_eq!(
        stats["initiated"],
        json!({"total": 0, "with_failure_callback": 0, "without_callback": 0})
    );
    get(
        &app,
        "/v1/stats?since=2020-01-02T00:00:00Z&until=2020-01-01T00:00:00Z",
    )
    .await
    .problem(422);
}

/// Calls by resulting state and upstream latency by outcome show on /metrics.
async fn call_metrics_move(backend: Backend) {
    let upstream = MockServer::start().await;
    make_call().respond_with(accepted()).mount(&upstream).await;
    let app = spawn(backend, &upstream).await;
    let scrape = || async {
        let response = app.client.get(app.url("/metrics")).send().await.unwrap();
        response.text().await.unwrap()
    };
    let before = scrape().await;
    place(&app, json!({"agent_id": AGENT, "to": "972541116037"})).await;
    let after = scrape().await;
    // The recorder is process-wide and tests run in parallel: compare before and after.
    for series in [
        r#"callhook_calls_total{state="initiated"}"#,
        r#"callhook_upstream_request_duration_seconds_count{outcome="200"}"#,
    ] {
        assert!(
            sample(&after, series) >= sample(&before, series) + 1.0,
            "{series}"
        );
    }
}

/// A shutdown that arrives while a call is being placed waits for its answer.
async fn shutdown_finishes_requests_in_flight(backend: Backend) {
    let (upstream, app) =
        serving(backend, accepted().set_delay(Duration::from_millis(400)), 1).await;
    let request = app
        .client
        .post(app.url("/v1/calls"))
        .bearer_auth(TOKEN)
        .json(&json!({"agent_id": AGENT, "to": "972541116037"}))
        .send();
    let in_flight = tokio::spawn(request);
    // Shut down once upstream has the request, i.e. while callhook waits for its answer.
    while upstream
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty()
    {
        tokio::task::yield_now().await;
    }
    let base = app.base.clone();
    app.shutdown().await;
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 201);
    assert!(
        reqwest::get(format!("{base}/healthz")).await.is_err(),
        "no longer listening"
    );
}

backend_tests!(
    a_placed_call_is_201_with_location_and_the_documented_shape,
    sip_addresses_pass_as_given,
    bad_destinations_are_422_before_any_upstream_request,
    metadata_is_stored_and_returned,
    a_callback_on_the_call_status_url_becomes_its_outcome,
    tampered_or_foreign_status_urls_are_401_and_store_nothing,
    upstream_404_is_404_and_the_call_is_rejected,
    upstream_400_is_422_naming_to_and_the_call_is_rejected,
    upstream_401_is_502_blaming_the_key_without_showing_it,
    upstream_429_is_429_with_retry_after,
    upstream_500_is_502_and_the_call_failed,
    upstream_errors_that_are_not_json_are_still_mapped,
    upstream_messages_never_echo_the_key,
    a_slow_upstream_is_504_unknown_and_never_retried,
    an_unreachable_upstream_is_502_and_the_call_failed,
    without_a_vgai_key_calls_are_503,
    without_a_public_url_the_status_url_follows_the_request,
    the_same_idempotency_key_and_body_replays_the_first_answer,
    the_same_idempotency_key_replays_a_refusal,
    an_idempotency_key_reused_with_another_body_is_422,
    concurrent_requests_with_one_idempotency_key_place_one_call,
    a_timed_out_call_is_replayed_not_retried,
    a_client_that_gives_up_does_not_lose_the_answer,
    a_call_whose_answer_could_not_be_recorded_is_not_placed_again,
    calls_are_filtered_and_paged_newest_first,
    stats_count_outcomes_calls_and_initiated_calls,
    shutdown_finishes_requests_in_flight,
    call_metrics_move,
);
