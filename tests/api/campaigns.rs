//! Campaigns: a list dialled at the agent's pace, with redials, refusals, calling windows and
//! controls. AI Studio is stood in for by a real HTTP server ([`Studio`]) that records when
//! each request arrived and answers by a script.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Days, NaiveTime, Timelike, Utc, Weekday};
use reqwest::Response;
use serde_json::{Value, json};
use tokio::time::sleep;

use crate::backend_tests;
use crate::helpers::*;
use crate::studio::{Answer, Request, Studio};

backend_tests!(
    a_campaign_dials_every_destination_and_completes,
    calls_are_spaced_by_calls_per_second,
    campaigns_of_one_agent_share_the_slowest_pace_and_other_agents_keep_theirs,
    a_failure_in_redial_on_is_redialled_after_the_delay_until_max_attempts,
    a_429_is_retried_as_the_same_attempt_after_retry_after,
    a_bad_number_makes_its_destination_invalid,
    server_errors_are_retried_then_the_destination_is_not_placed,
    an_attempt_without_an_answer_is_done_unknown_and_never_redialled,
    a_refused_agent_or_key_pauses_the_campaign_until_it_is_resumed,
    pause_resume_and_cancel_control_a_campaign,
    no_attempt_starts_outside_the_window,
    no_attempt_starts_before_start_at,
    validation_is_all_or_nothing,
    destinations_are_added_as_csv_or_json,
    a_call_that_rang_after_an_error_is_not_sent_again,
    a_later_callback_that_ends_a_destination_cancels_its_redial,
    a_stopped_slow_campaign_no_longer_holds_its_agent_back,
    a_429_slows_the_agent_for_a_while,
    a_due_redial_goes_before_destinations_not_yet_dialled,
    a_shutdown_waits_for_the_attempt_being_sent,
);

const AGENT: &str = "60c09d70e6a68858f4220848";
const OTHER_AGENT: &str = "60c09d70e6a68858f4220849";
/// Slack for timers and clock granularity on the least spacing asserted.
const SLACK: Duration = Duration::from_millis(5);
/// How long a test watches for requests that must not come.
const QUIET: Duration = Duration::from_millis(1500);
/// Time for a request claimed just before a campaign stopped to arrive.
const IN_FLIGHT: Duration = Duration::from_millis(300);

/// A stand-in AI Studio and a callhook dialling through it, with a 0.5 s upstream timeout and
/// a 1 s answer grace window unless `overrides` say otherwise.
async fn serving(backend: Backend, overrides: &[(&str, &str)]) -> (Studio, TestApp) {
    let studio = Studio::start().await;
    let uri = studio.uri();
    let settings = [
        ("vgai-api-key", VGAI_KEY),
        ("vgai-base-url", uri.as_str()),
        ("vgai-timeout-secs", "0.5"),
        ("answer-grace-secs", "1"),
    ];
    let mut flags = default_flags();
    for &(name, value) in settings.iter().chain(overrides) {
        flags.retain(|(k, _)| k.as_str() != name);
        flags.push((name.to_owned(), value.to_owned()));
    }
    let app = TestApp::spawn_with(backend, flags).await;
    (studio, app)
}

async fn post(app: &TestApp, path: &str, body: &Value) -> Response {
    app.client
        .post(app.url(path))
        .bearer_auth(TOKEN)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Creates a campaign, asserting 201 and its `Location`.
async fn create(app: &TestApp, body: Value) -> Value {
    let response = post(app, "/v1/campaigns", &body).await;
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let campaign: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{campaign}");
    let id = campaign["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{campaign}"));
    assert_eq!(location, Some(format!("/v1/campaigns/{id}")));
    campaign
}

/// `POST /v1/campaigns/{id}/{action}` (pause, resume, cancel).
async fn control(app: &TestApp, id: &str, action: &str) -> Response {
    app.client
        .post(app.url(&format!("/v1/campaigns/{id}/{action}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
}

async fn campaign(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v1/campaigns/{id}")).await
}

/// Every destination that `query` selects, following the cursor page by page.
async fn destinations(app: &TestApp, id: &str, query: &[(&str, &str)]) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let mut request = app
            .client
            .get(app.url(&format!("/v1/campaigns/{id}/destinations")))
            .bearer_auth(TOKEN)
            .query(query);
        if let Some(cursor) = &cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
    panic!("more than 20 pages: {items:?}");
}

/// The destination whose number is `to` (digits).
async fn destination(app: &TestApp, id: &str, to: &str) -> Value {
    destinations(app, id, &[])
        .await
        .into_iter()
        .find(|d| digits(&d["to"]) == to)
        .unwrap_or_else(|| panic!("no destination {to}"))
}

/// The campaign's calls (every attempt), newest first.
async fn calls(app: &TestApp, id: &str) -> Vec<Value> {
    let page = app
        .get_json(&format!("/v1/calls?campaign_id={id}&limit=100"))
        .await;
    page["items"].as_array().unwrap().clone()
}

/// Polls the campaign until `done` holds, for at most `within`.
async fn wait_for_campaign(
    app: &TestApp,
    id: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let current = campaign(app, id).await;
        if done(&current) {
            return current;
        }
        assert!(
            started.elapsed() < within,
            "still waiting after {within:?}: {current}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_until_completed(app: &TestApp, id: &str, within: Duration) -> Value {
    wait_for_campaign(app, id, within, |c| c["state"] == "completed").await
}

/// Polls until the campaign's call to `to` for `attempt` is initiated (AI Studio accepted
/// it), for at most 5 s.
async fn initiated_call(app: &TestApp, id: &str, to: &str, attempt: u64) -> Value {
    let started = Instant::now();
    loop {
        let calls = calls(app, id).await;
        let found = calls
            .iter()
            .find(|c| c["to"] == to && c["attempt"] == attempt && c["state"] == "initiated");
        if let Some(call) = found {
            return call.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no initiated attempt {attempt} to {to}: {calls:#?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

/// Posts a callback to the call's own status URL, as AI Studio would, returning the instant
/// just before it was sent (the callback was stored after it).
async fn call_back(app: &TestApp, call: &Value, status: &str) -> Instant {
    let url = call["status_url"].as_str().expect("a status URL");
    let path = url.strip_prefix(PUBLIC_URL).expect("under the public URL");
    let body = json!({
        "agent_id": call["agent_id"],
        "to": call["to"],
        "conversation_uuid": format!("CON-{}", call["id"].as_str().unwrap()),
        "status": status,
        "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    });
    let before = Instant::now();
    let response = app
        .client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "{}", response.text().await.unwrap());
    before
}

/// `counts.results` with every documented result at zero but those named.
fn results(nonzero: &[(&str, u64)]) -> Value {
    let mut results = serde_json::Map::new();
    for name in [
        "answered",
        "busy",
        "timeout",
        "rejected",
        "cancelled",
        "failed",
        "invalid",
        "not_placed",
        "unknown",
    ] {
        results.insert(name.to_owned(), json!(0));
    }
    for &(name, n) in nonzero {
        results.insert(name.to_owned(), json!(n));
    }
    Value::Object(results)
}

/// Session parameters as a map, from the upstream list of `{name, value}` or an object.
fn params(value: &Value) -> BTreeMap<String, String> {
    let text = |v: &Value| v.as_str().unwrap_or_else(|| panic!("{value}")).to_owned();
    match value {
        Value::Array(list) => list
            .iter()
            .map(|p| (text(&p["name"]), text(&p["value"])))
            .collect(),
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        _ => panic!("not session parameters: {value}"),
    }
}

fn expected_params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The digits of a number as shown (`+972 54-111-6001` → `972541116001`).
fn digits(value: &Value) -> String {
    let to = value.as_str().unwrap_or_else(|| panic!("{value}"));
    to.chars().filter(char::is_ascii_digit).collect()
}

fn instant(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"))
        .parse()
        .unwrap()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// Asserts that no two requests arrived closer together than `least`.
fn assert_spaced(requests: &[Request], least: Duration) {
    let mut arrivals: Vec<Instant> = requests.iter().map(|r| r.at).collect();
    arrivals.sort();
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap + SLACK >= least,
            "requests {gap:?} apart, less than {least:?}: {requests:#?}"
        );
    }
}

/// Asserts that the request count stays as it is while the test watches for [`QUIET`], once
/// requests already claimed have arrived; returns that count.
async fn assert_quiet(studio: &Studio, matching: impl Fn(&Request) -> bool) -> usize {
    sleep(IN_FLIGHT).await;
    let count = |studio: &Studio| studio.requests().iter().filter(|r| matching(r)).count();
    let before = count(studio);
    sleep(QUIET).await;
    assert_eq!(count(studio), before, "dialled while it must not");
    before
}

/// Every destination is dialled once, as digits, with the campaign's settings and its own
/// session parameters merged over the campaign's; once all are answered the campaign is
/// completed, its counts and calls say so, and the settled attempts are counted in metrics.
async fn a_campaign_dials_every_destination_and_completes(backend: Backend) {
    let (studio, app) = serving(backend, &[]).await;
    let created = create(
        &app,
        json!({
            "name": "November reminders",
            "agent_id": AGENT,
            "destinations": [
                {"to": "+972 54-111-6001",
                 "session_parameters": {"CALLER_NAME": "Diane", "GREETING": "Shalom"},
                 "metadata": {"order": "4711"}},
                {"to": "(972) 541116002",
                 "session_parameters": [{"name": "CALLER_NAME", "value": "Moshe"}]},
                {"to": "972541116003"},
            ],
            "session_parameters": {"COMPANY": "Acme", "GREETING": "Hello"},
            "hangup_on_answer_machine": true,
            "calls_per_second": 5,
        }),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["name"], "November reminders");
    assert_eq!(created["agent_id"], AGENT);
    assert_eq!(created["state"], "running", "{created}");
    assert_eq!(created["calls_per_second"], 5);
    assert_eq!(created["max_attempts"], 1, "the default");
    assert_eq!(created["redial_on"], json!(["busy", "timeout"]));
    assert_eq!(created["redial_after_secs"], 600);
    assert_eq!(created["window"], Value::Null);
    assert!(created["start_at"].is_string());
    assert!(created["created_at"].is_string() && created["updated_at"].is_string());
    assert_eq!(created["error"], Value::Null);
    assert_eq!(created["completed_at"], Value::Null);
    let counts = &created["counts"];
    assert_eq!(counts["destinations"], 3, "{created}");
    let by_state: u64 = ["pending", "dialing", "done"]
        .iter()
        .map(|s| counts[s].as_u64().unwrap())
        .sum();
    assert_eq!(by_state, 3, "{created}");
    assert_eq!(counts["results"], results(&[]));

    let requests = studio.wait_for_requests(3, Duration::from_secs(5)).await;
    let by_to: BTreeMap<String, Request> =
        requests.into_iter().map(|r| (r.to.clone(), r)).collect();
    assert_eq!(
        by_to.keys().collect::<Vec<_>>(),
        ["972541116001", "972541116002", "972541116003"]
    );
    for request in by_to.values() {
        assert_eq!(request.key.as_deref(), Some(VGAI_KEY));
        assert_eq!(request.agent_id, AGENT);
        assert_eq!(request.hangup_on_answer_machine, Some(true));
        assert!(
            request
                .status_url
                .starts_with(&format!("{PUBLIC_URL}/v1/status/")),
            "{request:?}"
        );
        assert!(request.session_parameters.is_array(), "{request:?}");
    }
    let upstream = |to: &str| params(&by_to[to].session_parameters);
    assert_eq!(
        upstream("972541116001"),
        expected_params(&[
            ("CALLER_NAME", "Diane"),
            ("COMPANY", "Acme"),
            ("GREETING", "Shalom")
        ])
    );
    assert_eq!(
        upstream("972541116002"),
        expected_params(&[
            ("CALLER_NAME", "Moshe"),
            ("COMPANY", "Acme"),
            ("GREETING", "Hello")
        ])
    );
    assert_eq!(
        upstream("972541116003"),
        expected_params(&[("COMPANY", "Acme"), ("GREETING", "Hello")])
    );

    let completed = wait_until_completed(&app, id, Duration::from_secs(10)).await;
    assert!(completed["completed_at"].is_string(), "{completed}");
    assert_eq!(completed["error"], Value::Null);
    let counts = &completed["counts"];
    assert_eq!(
        (
            &counts["destinations"],
            &counts["pending"],
            &counts["dialing"],
            &counts["done"],
            &counts["calls"]
        ),
        (&json!(3), &json!(0), &json!(0), &json!(3), &json!(3)),
        "{completed}"
    );
    assert_eq!(counts["results"], results(&[("answered", 3)]));

    let listed = destinations(&app, id, &[]).await;
    let indexes: Vec<&Value> = listed.iter().map(|d| &d["index"]).collect();
    assert_eq!(indexes, [&json!(0), &json!(1), &json!(2)]);
    let numbers: Vec<String> = listed.iter().map(|d| digits(&d["to"])).collect();
    assert_eq!(numbers, ["972541116001", "972541116002", "972541116003"]);
    assert_eq!(listed[0]["metadata"], json!({"order": "4711"}));
    assert_eq!(
        params(&listed[0]["session_parameters"]).get("CALLER_NAME"),
        Some(&"Diane".to_owned())
    );
    let mut call_ids = BTreeSet::new();
    for d in &listed {
        assert_eq!(d["state"], "done", "{d}");
        assert_eq!(d["result"], "answered", "{d}");
        assert_eq!(d["attempts"], 1, "{d}");
        let ids = strings(&d["call_ids"]);
        assert_eq!(ids.len(), 1, "{d}");
        call_ids.extend(ids);
    }
    let calls = calls(&app, id).await;
    assert_eq!(calls.len(), 3, "{calls:#?}");
    for call in &calls {
        assert_eq!(call["campaign_id"], id);
        assert_eq!(call["attempt"], 1);
        assert_eq!(call["result"], "answered", "{call}");
        let to = call["to"].as_str().unwrap();
        assert_eq!(call["status_url"], by_to[to].status_url, "{call}");
    }
    let listed_calls: BTreeSet<String> = calls
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed_calls, call_ids);

    let campaigns = app.get_json("/v1/campaigns").await;
    assert_eq!(campaigns["items"][0]["id"], id, "{campaigns}");
    let completed = app.get_json("/v1/campaigns?state=completed").await;
    assert_eq!(completed["items"].as_array().unwrap().len(), 1);
    let running = app.get_json("/v1/campaigns?state=running").await;
    assert_eq!(running["items"], json!([]));

    // Other tests of this process settle attempts too: only a lower bound holds.
    let metrics = app.text("/metrics").await;
    assert!(
        sample(
            &metrics,
            r#"callhook_campaign_attempts_total{result="answered"}"#
        ) >= 1.0,
        "{metrics}"
    );
}

/// Requests of a campaign are never closer together than `1 / calls_per_second`.
async fn calls_are_spaced_by_calls_per_second(backend: Backend) {
    let (studio, app) = serving(backend, &[]).await;
    let numbers: Vec<String> = (11..=16).map(|n| format!("9725411160{n}")).collect();
    create(
        &app,
        json!({
            "agent_id": AGENT,
            "destinations": numbers.iter().map(|to| json!({"to": to})).collect::<Vec<_>>(),
            "calls_per_second": 5,
        }),
    )
    .await;
    let requests = studio.wait_for_requests(6, Duration::from_secs(10)).await;
    assert_spaced(&requests, Duration::from_millis(200));
    let dialled: BTreeSet<&str> = requests.iter().map(|r| r.to.as_str()).collect();
    assert_eq!(dialled.len(), 6, "each destination once: {requests:#?}");
}

/// Two running campaigns of one agent share its pace, set by the slower of them; a campaign
/// of another agent keeps its own.
async fn campaigns_of_one_agent_share_the_slowest_pace_and_other_agents_keep_theirs(
    backend: Backend,
) {
    // No campaign completes (and stops governing the pace) while the test watches.
    let (studio, app) = serving(backend, &[("answer-grace-secs", "30")]).await;
    let list = |numbers: std::ops::RangeInclusive<u32>| -> Vec<Value> {
        numbers
            .map(|n| json!({"to": format!("9725411160{n}")}))
            .collect()
    };
    for (agent, cps, numbers) in [
        (AGENT, 2, list(21..=23)),
        (AGENT, 5, list(24..=26)),
        (OTHER_AGENT, 5, list(27..=32)),
    ] {
        create(
            &app,
            json!({"agent_id": agent, "destinations": numbers, "calls_per_second": cps}),
        )
        .await;
    }

    let shared = studio
        .wait_for(6, Duration::from_secs(10), |r| r.agent_id == AGENT)
        .await;
    assert_spaced(&shared, Duration::from_millis(500));

    let other = studio
        .wait_for(6, Duration::from_secs(10), |r| r.agent_id == OTHER_AGENT)
        .await;
    assert_spaced(&other, Duration::from_millis(200));
    let span = other.last().unwrap().at - other[0].at;
    // At the shared agent's pace six requests would span 2.5 s.
    assert!(
        span < Duration::from_secs(2),
        "the other agent was slowed: {span:?}"
    );
}

/// A result in `redial_on` is redialled no sooner than `redial_after_secs` after it was
/// stored, until `max_attempts`, each attempt a call of its own; a result not in it, and an
/// answer, end the destination after one attempt.
async fn a_failure_in_redial_on_is_redialled_after_the_delay_until_max_attempts(backend: Backend) {
    const BUSY: &str = "972541116041";
    const ANSWERED: &str = "972541116042";
    const TIMEOUT: &str = "972541116043";
    // Long enough to post each failure before its attempt is inferred answered.
    let (studio, app) = serving(backend, &[("answer-grace-secs", "5")]).await;
    let created = create(
        &app,
        json!({
            "agent_id": AGENT,
            "destinations": [{"to": BUSY}, {"to": ANSWERED}, {"to": TIMEOUT}],
            "calls_per_second": 5,
            "max_attempts": 3,
            "redial_on": ["busy"],
            "redial_after_secs": 1,
        }),
    )
    .await;
    let id = created["id"].as_str().unwrap();

    studio
        .wait_for(1, Duration::from_secs(5), |r| r.to == TIMEOUT)
        .await;
    let timed_out = initiated_call(&app, id, TIMEOUT, 1).await;
    call_back(&app, &timed_out, "timeout").await;

    let mut stored: Option<Instant> = None;
    for attempt in 1..=3 {
        let requests = studio
            .wait_for(attempt, Duration::from_secs(5), |r| r.to == BUSY)
            .await;
        let request = &requests[attempt - 1];
        if let Some(stored) = stored {
            assert!(
                request.at + SLACK >= stored + Duration::from_secs(1),
                "attempt {attempt} {:?} after the busy callback",
                request.at - stored
            );
        }
        let call = initiated_call(&app, id, BUSY, attempt as u64).await;
        assert_eq!(call["status_url"], request.status_url);
        stored = Some(call_back(&app, &call, "busy").await);
    }

    let completed = wait_until_completed(&app, id, Duration::from_secs(10)).await;
    assert!(completed["completed_at"].is_string());
    assert_eq!(completed["counts"]["calls"], 5, "{completed}");
    assert_eq!(
        completed["counts"]["results"],
        results(&[("busy", 1), ("answered", 1), ("timeout", 1)])
    );

    let busy = destination(&app, id, BUSY).await;
    assert_eq!(busy["state"], "done", "{busy}");
    assert_eq!(busy["result"], "busy");
    assert_eq!(busy["attempts"], 3);
    let mut attempts: Vec<Value> = calls(&app, id)
        .await
        .into_iter()
        .filter(|c| c["to"] == BUSY)
        .collect();
    attempts.sort_by_key(|c| c["attempt"].as_u64());
    let attempt_ids: Vec<String> = attempts
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(strings(&busy["call_ids"]), attempt_ids, "in attempt order");
    assert_eq!(attempt_ids.iter().collect::<BTreeSet<_>>().len(), 3);
    let numbers: Vec<&Value> = attempts.iter().map(|c| &c["attempt"]).collect();
    assert_eq!(numbers, [&json!(1), &json!(2), &json!(3)]);
    let urls: BTreeSet<String> = studio
        .requests_to(BUSY)
        .into_iter()
        .map(|r| r.status_url)
        .collect();
    assert_eq!(urls.len(), 3, "three calls, three status URLs");

    for (to, result) in [(ANSWERED, "answered"), (TIMEOUT, "timeout")] {
        let once = destination(&app, id, to).await;
        assert_eq!(once["result"], result, "{once}");
        assert_eq!(once["attempts"], 1, "{once}");
        assert_eq!(strings(&once["call_ids"]).len(), 1);
    }
    sleep(IN_FLIGHT).await;
    assert_eq!(studio.requests_to(BUSY).len(), 3, "no fourth attempt");
    assert_eq!(studio.requests_to(ANSWERED).len(), 1, "an answer is final");
    assert_eq!(studio.requests_to(TIMEOUT).len(), 1, "not in redial_on");
}

/// A 429 is not an attempt: the same call is retried after `Retry-After`.
async fn a_429_is_retried_as_the_same_attempt_after_retry_after(backend: Backend) {
    const RETRIED: &str = "972541116051";
    let (studio, app) = serving(backend, &[]).await;
    studio.script(RETRIED, [Answer::TooMany(1), Answer::Accept]);
    let created = create(
        &app,
        json!({"agent_id": AGENT, "destinations": [{"to": RETRIED}], "calls_per_second": 5}),
    )
    .await;
    let id = created["id"].as_str().unwrap();

    let requests = studio
        .wait_for(2, Duration::from_secs(5), |r| r.to == RETRIED)
        .await;
    let waited = requests[1].at - requests[0].at;
    assert!(
        waited + Duration::from_millis(50) >= Duration::from_secs(1),
        "retried {waited:?} after a 429 asking for 1 s"
    );
    assert_eq!(
        requests[0].status_url, requests[1].status_url,
        "the same call"
    );

    let completed = wait_until_completed(&app, id, Duration::from_secs(10)).await;
    assert_eq!(completed["counts"]["calls"], 1, "{completed}");
    assert_eq!(completed["counts"]["results"], results(&[("answered", 1)]));
    let calls = calls(&app, id).await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0]["attempt"], 1);
    let retried = destination(&app, id, RETRIED).await;
    assert_eq!(retried["attempts"], 1, "{retried}");
    assert_eq!(retried["result"], "answered");
    assert_eq!(
        strings(&retried["call_ids"]),
        [calls[0]["id"].as_str().unwrap()]
    );
    assert_eq!(studio.requests_to(RETRIED).len(), 2);
}

/// AI Studio's 400 (bad number) ends the destination as `invalid`; the others go on.
async fn a_bad_number_makes_its_destination_invalid(backend: Backend) {
    const INVALID: &str = "972541116061";
    const GOOD: &str = "972541116062";
    let (studio, app) = serving(backend, &[]).await;
    studio.script(INVALID, [Answer::Status(400)]);
    let created = create(
        &app,
        json!({
            "agent_id": AGENT,
            "destinations": [{"to": INVALID}, {"to": GOOD}],
            "calls_per_second": 5,
            "max_attempts": 3,
        }),
    )
    .await;
    let id = created["id"].as_str().unwrap();

    let completed = wait_until_completed(&app, id, Duration::from_secs(10)).await;
    assert_eq!(
        completed["counts"]["results"],
        results(&[("invalid", 1), ("answered", 1)]),
        "{completed}"
    );
    let invalid = destination(&app, id, INVALID).await;
    assert_eq!(invalid["state"], "done");
    assert_eq!(invalid["result"], "invalid", "{invalid}");
    assert_eq!(invalid["attempts"], 1);
    assert_eq!(studio.requests_to(INVALID).len(), 1, "never redialled");
    assert_eq!(calls(&app, id).await.len(), 2, "every attempt is a call");

    let indexes = |items: Vec<Value>| -> Vec<Value> {
        items.into_iter().map(|d| d["index"].clone()).collect()
    };
    assert_eq!(
        indexes(destinations(&app, id, &[("result", "invalid")]).await),
        [json!(0)]
    );
    assert_eq!(
        indexes(destinations(&app, id, &[("result", "invalid,answered")]).await),
        [json!(0), json!(1)]
    );
    assert_eq!(
        indexes(destinations(&app, id, &[("state", "done")]).await),
        [json!(0), json!(1)]
    );
    assert!(
        destinations(&app, id, &[("state", "pending,dialing")])
            .await
            .is_empty()
    );
}

/// 5xx answers are retried with backoff as the same call, then the destination is done as
/// `not_placed`; a retry that is accepted goes on as usual.
async fn server_errors_are_retried_then_the_destination_is_not_placed(backend: Backend) {
    const DOWN: &str = "972541116071";
    const FLAKY: &str = "972541116072";
    let (studio, app) = serving(backend, &[]).await;
    studio.script(DOWN, [Answer::Status(500); 10]);
    studio.script(FLAKY, [Answer::Status(503), Answer::Accept]);
    let created = create(
        &app,
        json!({
            "agent_id": AGENT,
            "destinations": [{"to": DOWN}, {"to": FLAKY}],
            "calls_per_second": 5,
        }),
    )
    .await;
    let id = created["id"].as_str().unwrap();

    // Backoff of about 1 s, 2 s and 4 s.
    let completed = wait_until_completed(&app, id, Duration::from_secs(15)).await;
    assert_eq!(
        completed["counts"]["results"],
        results(&[("not_placed", 1), ("answered", 1)]),
        "{completed}"
    );

    let down = studio.requests_to(DOWN);
    assert!((2..=4).contains(&down.len()), "{down:#?}");
    assert!(
        down[1].at - down[0].at >= Duration::from_millis(500),
        "no backoff: {down:#?}"
    );
    assert!(down.iter().all(|r| r.status_url == down[0].status_url));
    let flaky = studio.requests_to(FLAKY);
    assert_eq!(flaky.len(), 2, "{flaky:#?}");
    assert_eq!(flaky[0].status_url, flaky[1].status_url);

    for (to, result) in [(DOWN, "not_placed"), (FLAKY, "answered")] {
        let d = destination(&app, id, to).await;
        assert_eq!(d["state"], "done", "{d}");
        assert_eq!(d["result"], result, "{d}");
        assert_eq!(d["attempts"], 1, "{d}");
        assert_eq!(strings(&d["call_ids"]).len(), 1, "{d}");
    }
    let calls = calls(&app, id).await;
    assert_eq!(calls.len(), 2, "a call per destination: {calls:#?}");
    assert!(calls.iter().all(|c| c["attempt"] == 1));
}

/// An attempt whose request got no answer may have rung: it is `unknown` and never
/// redialled, even when `redial_on` asks for it.
async fn an_attempt_without_an_answer_is_done_unknown_and_never_redialled(backend: Backend) {
    const SILENT: &str = "972541116081";
    let (studio, app) = serving(backend, &[]).await;
    // Only the first request hangs: a second would be accepted, and be seen.
    studio.script(SILENT, [Answer::Hang]);
    let created = create(
        &app,
        json!({
            "agent_id": AGENT,
            "destinations": [{"to": SILENT}],
            "calls_per_second": 5,
            "max_attempts": 3,
            "redial_on": ["busy", "timeout", "unknown"],
            "redial_after_secs": 0,
        }),
    )
    .await;
    let id = created["id"].as_str().unwrap();

    let completed = wait_until_completed(&app, id, Duration::from_secs(10)).await;
    assert_eq!(
        completed["counts"]["results"],
        results(&[("unknown", 1)]),
        "{completed}"
    );
    let silent = destination(&app, id, SILENT).await;
    assert_eq!(silent["result"], "unknown", "{silent}");
    assert_eq!(silent["attempts"], 1);
    let calls = calls(&app, id).await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0]["state"], "unknown");
    assert_eq!(assert_quiet(&studio, |r| r.to == SILENT).await, 1);
}

/// AI Studio's 404 (agent) or 401 (key) pauses the campaign with the error and stops its
/// dialling; resumed, it dials again and completes, while the other stays paused.
async fn a_refused_agent_or_key_pauses_the_campaign_until_it_is_resumed(backend: Backend) {
    let (studio, app) = serving(backend, &[]).await;
    studio.answer_agent(AGENT, Some(Answer::Status(404)));
    studio.answer_agent(OTHER_AGENT, Some(Answer::Status(401)));
    let mut ids = Vec::new();
    for (agent, first) in [(AGENT, 91), (OTHER_AGENT, 94)] {
        let numbers: Vec<Value> = (first..first + 3)
            .map(|n| json!({"to": format!("9725411160{n}")}))
            .collect();
        let created = create(
            &app,
            json!({"agent_id": agent, "destinations": numbers, "calls_per_second": 5}),
        )
        .await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let (refused_agent, refused_key) = (ids[0].as_str(), ids[1].as_str());

    for (id, status) in [(refused_agent, 404), (refused_key, 401)] {
        let paused =
            wait_for_campaign(&app, id, Duration::from_secs(5), |c| c["state"] == "paused").await;
        assert_eq!(paused["error"]["status"], status, "{paused}");
        assert!(paused["error"]["message"].is_string(), "{paused}");
    }
    assert_eq!(assert_quiet(&studio, |r| r.agent_id == AGENT).await, 1);
    assert_eq!(studio.requests_of(OTHER_AGENT).len(), 1);
    let pending = destinations(&app, refused_agent, &[("state", "pending")]).await;
    assert!(pending.len() >= 2, "{pending:#?}");

    studio.answer_agent(AGENT, None);
    let response = control(&app, refused_agent, "resume").await;
    assert_eq!(response.status(), 200);
    let resumed: Value = response.json().await.unwrap();
    assert_eq!(resumed["state"], "running", "{resumed}");
    assert_eq!(resumed["error"], Value::Null);

    let completed = wait_until_completed(&app, refused_agent, Duration::from_secs(10)).await;
    let answered = completed["counts"]["results"]["answered"].as_u64().unwrap();
    assert!(answered >= 2, "{completed}");
    assert!(studio.requests_of(AGENT).len() >= 3);

    let still = campaign(&app, refused_key).await;
    assert_eq!(still["state"], "paused", "{still}");
    assert_eq!(still["error"]["status"], 401);
    assert_eq!(studio.requests_of(OTHER_AGENT).len(), 1);
}

/// Pause stops the dialling and resume goes on with it; cancel ends the campaign; a
/// transition that is not allowed is a 409, an unknown campaign a 404.
async fn pause_resume_and_cancel_control_a_campaign(backend: Backend) {
    let (studio, app) = serving(backend, &[]).await;
    let numbers: Vec<Value> = (101..=106)
        .map(|n| json!({"to": format!("972541116{n}")}))
        .collect();
    let created = create(
        &app,
        json!({"agent_id": AGENT, "destinations": numbers, "calls_per_second": 1}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    studio.wait_for_requests(1, Duration::from_secs(5)).await;

    let response = control(&app, id, "pause").await;
    assert_eq!(response.status(), 200);
    let paused: Value = response.json().await.unwrap();
    assert_eq!(paused["state"], "paused", "{paused}");
    let dialled = assert_quiet(&studio, |_| true).await;
    assert!(dialled <= 2, "{dialled} dialled by a pause at the first");
    assert_eq!(campaign(&app, id).await["state"], "paused");
    assert_problem(control(&app, id, "pause").await, 409).await;

    let response = control(&app, id, "resume").await;
    assert_eq!(response.status(), 200);
    let resumed: Value = response.json().await.unwrap();
    assert_eq!(resumed["state"], "running", "{resumed}");
    studio
        .wait_for_requests(dialled + 1, Duration::from_secs(5))
        .await;

    let response = control(&app, id, "cancel").await;
    assert_eq!(response.status(), 200);
    let cancelled: Value = response.json().await.unwrap();
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    assert_quiet(&studio, |_| true).await;
    for action in ["resume", "cancel", "pause"] {
        assert_problem(control(&app, id, action).await, 409).await;
    }
    assert_eq!(campaign(&app, id).await["state"], "cancelled");

    let unknown = uuid::Uuid::now_v7();
    assert_problem(app.get(&format!("/v1/campaigns/{unknown}")).await, 404).await;
    assert_problem(
        app.get(&format!("/v1/campaigns/{unknown}/destinations"))
            .await,
        404,
    )
    .await;
    for action in ["pause", "resume", "cancel"] {
        assert_problem(control(&app, &unknown.to_string(), action).await, 404).await;
    }
}

/// Outside its window (hours or days) a running campaign dials nothing, and its
/// destinations wait for the window's next opening.
async fn no_attempt_starts_outside_the_window(backend: Backend) {
    let (studio, app) = serving(backend, &[]).await;
    let now = Utc::now();
    let today = now.date_naive();
    let at = |day: chrono::NaiveDate, hour: u32| day.and_hms_opt(hour, 0, 0).unwrap().and_utc();
    // An hour that is over today, or still ahead: never now.
    let (start, end, opening) = if now.hour() >= 12 {
        let tomorrow = today.checked_add_days(Days::new(1)).unwrap();
        ("01:00", "02:00", at(tomorrow, 1))
    } else {
        ("13:00", "14:00", at(today, 13))
    };
    let hours = create(
        &app,
        json!({
            "agent_id": AGENT,
            "destinations": [{"to": "972541116111"}, {"to": "972541116112"}],
            "calls_per_second": 5,
            "window": {"start": start, "end": end, "timezone": "UTC"},
        }),
    )
    .await;
    assert_eq!(hours["state"], "running", "{hours}");
    assert_eq!(hours["window"]["start"], start, "{hours}");
    assert_eq!(hours["window"]["end"], end);
    assert_eq!(hours["window"]["timezone"], "UTC");

    // Every day but today (and tomorrow, so close to midnight that it may be today soon).
    let near_midnight = now.hour() == 23 && now.minute() == 59 && now.second() >= 50;
    let closed = [now.weekday(), now.weekday().succ()];
    let closed = if near_midnight {
        &closed[..]
    } else {
        &closed[..1]
    };
    let days: Vec<String> = (0u8..7)
        .filter_map(|n| Weekday::try_from(n).ok())
        .filter(|d| !closed.contains(d))
        .map(|d| d.to_string().to_lowercase())
        .collect();
    let other_days = create(
        &app,
        json!({
            "agent_id": AGENT,
            "destinations": [{"to": "972541116113"}],
            "calls_per_second": 5,
            "window": {"start": "00:00", "end": "23:59", "days": days, "timezone": "UTC"},
        }),
    )
    .await;
    assert_eq!(other_days["state"], "running", "{other_days}");

    assert_quiet(&studio, |_| true).await;
    assert!(studio.requests().is_empty(), "{:#?}", studio.requests());

    let id = hours["id"].as_str().unwrap();
    let current = campaign(&app, id).await;
    assert_eq!(current["state"], "running");
    assert_eq!(current["counts"]["pending"], 2, "{current}");
    for d in destinations(&app, id, &[]).await {
        assert_eq!(d["state"], "pending", "{d}");
        assert_eq!(d["attempts"], 0, "{d}");
        assert_eq!(d["call_ids"], json!([]), "{d}");
        assert_eq!(instant(&d["next_attempt_at"]), opening, "{d}");
    }
    let id = other_days["id"].as_str().unwrap();
    let waiting = destination(&app, id, "972541116113").await;
    assert_eq!(waiting["state"], "pending", "{waiting}");
    let next = instant(&waiting["next_attempt_at"]);
    assert!(next > now, "{waiting}");
    assert_eq!(next.time(), NaiveTime::MIN, "{waiting}");
    assert!(
        days.contains(&next.weekday().to_string().to_lowercase()),
        "{waiting}"
    );
    assert!(calls(&app, id).await.is_empty());
}

/// Before its `start_at` a campaign is `scheduled` and dials nothing; at it, it starts.
async fn no_attempt_starts_before_start_at(backend: Backend) {
    let (studio, app) = serving(backend, &[]).await;
    let millis = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let later = Utc::now() + chrono::Duration::hours(1);
    let scheduled = create(
        &app,
        json!({
            "agent_id": AGENT,
            "destinations": [{"to": "972541116121"}],
            "calls_per_second": 5,
            "start_at": millis(later),
        }),
    )
    .await;
    assert_eq!(scheduled["state"], "scheduled", "{scheduled}");
    assert_eq!(
        instant(&scheduled["start_at"]),
        instant(&json!(millis(later)))
    );

    let (wall, clock) = (Utc::now(), Instant::now());
    let soon = create(
        &app,
        json!({
            "agent_id": AGENT,
            "destinations": [{"to": "972541116122"}],
            "calls_per_second": 5,
            "start_at": millis(wall + chrono::Duration::milliseconds(1500)),
        }),
    )
    .await;
    assert_eq!(soon["state"], "scheduled", "{soon}");

    let requests = studio.wait_for_requests(1, Duration::from_secs(10)).await;
    assert_eq!(requests[0].to, "972541116122");
    assert!(
        requests[0].at + SLACK >= clock + Duration::from_millis(1500),
        "dialled {:?} after creation, before start_at",
        requests[0].at - clock
    );
    let id = soon["id"].as_str().unwrap();
    wait_for_campaign(&app, id, Duration::from_secs(5), |c| {
        c["state"] == "running" || c["state"] == "completed"
    })
    .await;

    assert_quiet(&studio, |r| r.to == "972541116121").await;
    assert!(studio.requests_to("972541116121").is_empty());
    let id = scheduled["id"].as_str().unwrap();
    let still = campaign(&app, id).await;
    assert_eq!(still["state"], "scheduled", "{still}");
    assert_eq!(still["counts"]["pending"], 1);
}

/// A bad field fails the whole campaign with a 422 naming it, and nothing is created.
async fn validation_is_all_or_nothing(backend: Backend) {
    let (studio, app) = serving(backend, &[]).await;
    let good = json!([{"to": "+972 54-111-6131"}, {"to": "972541116132"}]);
    let cases = [
        (
            json!({"agent_id": AGENT, "destinations": [
                {"to": "+972 54-111-6133"}, {"to": "054-111-6134"}, {"to": "972541116135"}]}),
            vec!["destinations[1].to"],
        ),
        (
            json!({"agent_id": AGENT, "destinations": good, "calls_per_second": 6}),
            vec!["calls_per_second"],
        ),
        (
            json!({"agent_id": AGENT, "destinations": good, "calls_per_second": 0}),
            vec!["calls_per_second"],
        ),
        (
            json!({"agent_id": AGENT, "destinations": good, "max_attempts": 0}),
            vec!["max_attempts"],
        ),
        (
            json!({"agent_id": AGENT, "destinations": good, "max_attempts": 11}),
            vec!["max_attempts"],
        ),
        (json!({"destinations": good}), vec!["agent_id"]),
        (
            json!({"agent_id": AGENT, "destinations": good,
                   "window": {"start": "09:00", "end": "20:00", "timezone": "Mars/Base"}}),
            vec!["window.timezone"],
        ),
        (
            json!({"agent_id": AGENT, "calls_per_second": 6, "max_attempts": 0,
                   "destinations": [{"to": "not a number"}, {"to": "972541116136"}]}),
            vec!["calls_per_second", "destinations[0].to", "max_attempts"],
        ),
    ];
    for (body, fields) in cases {
        let problem = assert_problem(post(&app, "/v1/campaigns", &body).await, 422).await;
        let mut named = error_fields(&problem);
        named.sort();
        assert_eq!(named, fields, "{body}: {problem}");
    }
    assert_eq!(app.get_json("/v1/campaigns").await["items"], json!([]));
    sleep(IN_FLIGHT).await;
    assert!(studio.requests().is_empty());
}

/// Destinations added later, as CSV (a `to` column, `metadata.KEY` columns, session
/// parameters) or JSON, are numbered on and dialled with the campaign's parameters; a CSV
/// with a bad row adds nothing.
async fn destinations_are_added_as_csv_or_json(backend: Backend) {
    // The campaign must not complete before the additions.
    let (studio, app) = serving(backend, &[("answer-grace-secs", "5")]).await;
    let created = create(
        &app,
        json!({
            "agent_id": AGENT,
            "destinations": [{"to": "972541116141"}],
            "session_parameters": {"COMPANY": "Acme"},
            "calls_per_second": 5,
        }),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/v1/campaigns/{id}/destinations");
    let post_csv = |csv: &'static str| {
        app.client
            .post(app.url(&path))
            .bearer_auth(TOKEN)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
    };

    let bad = post_csv("to,CALLER_NAME\n+972 54-111-6142,Ann\nnot a number,Bob\n")
        .await
        .unwrap();
    let problem = assert_problem(bad, 422).await;
    assert_eq!(error_fields(&problem), ["line 3: to"], "{problem}");
    assert_eq!(destinations(&app, id, &[]).await.len(), 1, "nothing added");
    assert_eq!(campaign(&app, id).await["counts"]["destinations"], 1);

    let response = post_csv(
        "to,CALLER_NAME,metadata.order\n+972 54-111-6143,Diane,4711\n+972 54-111-6144,Moshe,4712\n",
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"added": 2}));
    let response = post(
        &app,
        &path,
        &json!({"destinations": [{"to": "+972 54-111-6145",
            "session_parameters": {"CALLER_NAME": "Ann"}, "metadata": {"order": "4713"}}]}),
    )
    .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"added": 1}));

    let first = app.get_json(&format!("{path}?limit=2")).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2, "{first}");
    assert!(first["next_cursor"].is_string(), "{first}");
    let listed = destinations(&app, id, &[("limit", "2")]).await;
    let indexes: Vec<&Value> = listed.iter().map(|d| &d["index"]).collect();
    assert_eq!(indexes, [&json!(0), &json!(1), &json!(2), &json!(3)]);
    let numbers: Vec<String> = listed.iter().map(|d| digits(&d["to"])).collect();
    assert_eq!(
        numbers,
        [
            "972541116141",
            "972541116143",
            "972541116144",
            "972541116145"
        ]
    );
    for (d, name, order) in [
        (&listed[1], "Diane", "4711"),
        (&listed[2], "Moshe", "4712"),
        (&listed[3], "Ann", "4713"),
    ] {
        assert_eq!(
            params(&d["session_parameters"]).get("CALLER_NAME"),
            Some(&name.to_owned()),
            "{d}"
        );
        assert_eq!(d["metadata"], json!({"order": order}), "{d}");
    }
    assert_eq!(campaign(&app, id).await["counts"]["destinations"], 4);

    let requests = studio.wait_for_requests(4, Duration::from_secs(10)).await;
    let upstream = |to: &str| {
        let request = requests.iter().find(|r| r.to == to).unwrap();
        params(&request.session_parameters)
    };
    assert_eq!(
        upstream("972541116141"),
        expected_params(&[("COMPANY", "Acme")])
    );
    assert_eq!(
        upstream("972541116143"),
        expected_params(&[("CALLER_NAME", "Diane"), ("COMPANY", "Acme")])
    );
    assert_eq!(
        upstream("972541116144"),
        expected_params(&[("CALLER_NAME", "Moshe"), ("COMPANY", "Acme")])
    );
    assert_eq!(
        upstream("972541116145"),
        expected_params(&[("CALLER_NAME", "Ann"), ("COMPANY", "Acme")])
    );
}

/// The call waiting to be sent again after a 5xx rang after all (its callback came): it is not
/// sent again, and its callback's result settles the destination.
async fn a_call_that_rang_after_an_error_is_not_sent_again(backend: Backend) {
    const RANG: &str = "972541116201";
    let (studio, app) = serving(backend, &[]).await;
    studio.script(RANG, [Answer::Status(502), Answer::Accept]);
    let created = create(
        &app,
        json!({"agent_id": AGENT, "destinations": [{"to": RANG}], "max_attempts": 3,
               "redial_on": ["busy"], "redial_after_secs": 0}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    studio.wait_for_requests(1, Duration::from_secs(5)).await;
    // The retry waits a second after the 502; the callback comes before it.
    let call = calls(&app, id).await.pop().expect("the attempt's call");
    call_back(&app, &call, "timeout").await;
    let completed = wait_until_completed(&app, id, Duration::from_secs(10)).await;
    assert_eq!(
        completed["counts"]["results"],
        results(&[("timeout", 1)]),
        "{completed}"
    );
    assert_quiet(&studio, |_| true).await;
    assert_eq!(
        studio.requests_to(RANG).len(),
        1,
        "the call that rang was sent again"
    );
}

/// A callback that replaces the result which scheduled a redial (a `busy`, then the agent's
/// `completed`) ends the destination with it: the redial is not dialled.
async fn a_later_callback_that_ends_a_destination_cancels_its_redial(backend: Backend) {
    const CALLED: &str = "972541116202";
    let (studio, app) = serving(backend, &[("answer-grace-secs", "30")]).await;
    let created = create(
        &app,
        json!({"agent_id": AGENT, "destinations": [{"to": CALLED}], "max_attempts": 3,
               "redial_on": ["busy"], "redial_after_secs": 2}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let call = initiated_call(&app, id, CALLED, 1).await;
    call_back(&app, &call, "busy").await;
    wait_for_campaign(&app, id, Duration::from_secs(5), |c| {
        c["counts"]["pending"] == 1
    })
    .await;
    sleep(Duration::from_millis(20)).await;
    call_back(&app, &call, "completed").await;
    let completed = wait_until_completed(&app, id, Duration::from_secs(10)).await;
    assert_eq!(
        completed["counts"]["results"],
        results(&[("answered", 1)]),
        "{completed}"
    );
    assert_eq!(
        studio.requests_to(CALLED).len(),
        1,
        "the redial was dialled"
    );
}

/// The pace counts from the campaigns running now: once a slow campaign is cancelled, a fast
/// one of the same agent is not held back by the slow one's spacing.
async fn a_stopped_slow_campaign_no_longer_holds_its_agent_back(backend: Backend) {
    let (studio, app) = serving(backend, &[("answer-grace-secs", "30")]).await;
    let slow = create(
        &app,
        json!({"agent_id": AGENT, "calls_per_second": 0.01,
               "destinations": [{"to": "972541116211"}, {"to": "972541116212"}]}),
    )
    .await;
    studio.wait_for_requests(1, Duration::from_secs(5)).await;
    let cancelled = control(&app, slow["id"].as_str().unwrap(), "cancel").await;
    assert_eq!(cancelled.status(), 200);
    let started = Instant::now();
    create(
        &app,
        json!({"agent_id": AGENT, "calls_per_second": 5,
               "destinations": [{"to": "972541116213"}, {"to": "972541116214"}]}),
    )
    .await;
    let requests = studio.wait_for_requests(3, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "held back by a cancelled campaign's pace: {requests:#?}"
    );
}

/// A 429 holds the agent for its `Retry-After` and stretches its spacing, which eases back
/// as AI Studio accepts calls again.
async fn a_429_slows_the_agent_for_a_while(backend: Backend) {
    let (studio, app) = serving(backend, &[("answer-grace-secs", "30")]).await;
    studio.script("972541116221", [Answer::TooMany(1), Answer::Accept]);
    let numbers: Vec<Value> = (221..=224)
        .map(|n| json!({"to": format!("972541116{n}")}))
        .collect();
    create(
        &app,
        json!({"agent_id": AGENT, "calls_per_second": 5, "destinations": numbers}),
    )
    .await;
    let requests = studio.wait_for_requests(5, Duration::from_secs(10)).await;
    let mut arrivals: Vec<Instant> = requests.iter().map(|r| r.at).collect();
    arrivals.sort();
    assert!(
        arrivals[1] - arrivals[0] + SLACK >= Duration::from_secs(1),
        "not held for Retry-After: {requests:#?}"
    );
    // Doubled after the 429 (400 ms), easing by a tenth per accepted call (360 ms, 324 ms,
    // 292 ms…): well above the campaign's own 200 ms for the calls that follow.
    for pair in arrivals[1..].windows(2) {
        assert!(
            pair[1] - pair[0] + SLACK >= Duration::from_millis(280),
            "the agent's pace did not slow: {requests:#?}"
        );
    }
}

/// A redial that is due goes before the destinations still waiting for their first attempt:
/// a backlog does not starve it.
async fn a_due_redial_goes_before_destinations_not_yet_dialled(backend: Backend) {
    const BUSY: &str = "972541116230";
    let (studio, app) = serving(backend, &[("answer-grace-secs", "30")]).await;
    let mut numbers = vec![json!({"to": BUSY})];
    numbers.extend((231..=240).map(|n| json!({"to": format!("972541116{n}")})));
    let created = create(
        &app,
        json!({"agent_id": AGENT, "calls_per_second": 2, "max_attempts": 2,
               "redial_on": ["busy"], "redial_after_secs": 0, "destinations": numbers}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let call = initiated_call(&app, id, BUSY, 1).await;
    call_back(&app, &call, "busy").await;
    let requests = studio
        .wait_for(2, Duration::from_secs(10), |r| r.to == BUSY)
        .await;
    let all = studio.requests();
    let position = all
        .iter()
        .position(|r| r.status_url != requests[0].status_url && r.to == BUSY)
        .expect("the redial");
    assert!(
        position <= 3,
        "the redial waited behind {position} requests: {all:#?}"
    );
}

/// A shutdown stops claiming attempts and waits for the one being sent: its answer is
/// recorded (the call is initiated, not left `unknown`), and nothing more is dialled.
async fn a_shutdown_waits_for_the_attempt_being_sent(backend: Backend) {
    let (studio, app) = serving(
        backend,
        &[("answer-grace-secs", "30"), ("vgai-timeout-secs", "5")],
    )
    .await;
    studio.answer_agent(AGENT, Some(Answer::Slow(1500)));
    let created = create(
        &app,
        json!({"agent_id": AGENT, "calls_per_second": 0.5,
               "destinations": [{"to": "972541116241"}, {"to": "972541116242"}]}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    studio.wait_for_requests(1, Duration::from_secs(5)).await;
    // Restarted at once: the first app returns from its shutdown only once the answer (due
    // 1.5 s after the request) is recorded.
    let app = app.restart().await;
    let calls = calls(&app, &id).await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0]["state"], "initiated", "{calls:#?}");
    assert_eq!(studio.requests().len(), 1);
}
