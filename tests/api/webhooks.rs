//! Outgoing webhooks: subscriptions, signed deliveries to a real local receiver, retries with
//! the same `webhook-id`, 410, manual retry, deletion, and a receiver that never answers.

use std::time::{Duration, Instant};

use reqwest::Response;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::*;
use crate::receiver::{Receiver, Reply, signature_verifies};
use crate::studio::{Answer, Studio};

backend_tests!(
    a_subscription_shows_its_secret_once_and_is_read_and_deleted_without_it,
    bad_subscriptions_are_refused_naming_the_field,
    loopback_receivers_are_refused_unless_allowed,
    an_outcome_update_is_delivered_signed_per_standard_webhooks,
    each_subscription_gets_only_the_event_types_it_wants,
    call_results_are_delivered_with_the_call_and_its_outcome,
    a_completed_campaign_is_delivered,
    cancelling_a_campaign_delivers_the_results_it_decides,
    a_failing_receiver_is_retried_with_the_same_id_until_it_answers_2xx,
    spent_retries_fail_and_a_manual_retry_delivers_once_more,
    gone_disables_the_subscription,
    a_subscription_is_changed_stopped_and_enabled_again,
    a_stopped_subscription_keeps_its_failing_delivery_for_when_it_is_enabled,
    a_deleted_subscription_gets_nothing_more,
    a_receiver_that_never_answers_holds_back_neither_ingest_nor_other_subscribers,
);

const AGENT: &str = "60c09d70e6a68858f4220848";
/// Long enough for any delivery to arrive on a loaded machine.
const ARRIVAL: Duration = Duration::from_secs(10);

/// A callhook whose webhooks may target loopback, with `overrides` of its flags.
async fn serving(backend: Backend, overrides: &[(&str, &str)]) -> TestApp {
    let mut flags = default_flags();
    for &(name, value) in [("webhook-allow-private", "true")].iter().chain(overrides) {
        flags.retain(|(k, _)| k.as_str() != name);
        flags.push((name.to_owned(), value.to_owned()));
    }
    TestApp::spawn_with(backend, flags).await
}

async fn subscribe_raw(app: &TestApp, body: &Value) -> Response {
    app.client
        .post(app.url("/v1/webhooks"))
        .bearer_auth(TOKEN)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Subscribes `url` to `events` (all when `None`), returning the answer with its secret.
async fn subscribe(app: &TestApp, url: &str, events: Option<&[&str]>) -> Value {
    let mut body = json!({"url": url, "description": "test receiver"});
    if let Some(events) = events {
        body["events"] = json!(events);
    }
    let response = subscribe_raw(app, &body).await;
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

async fn delete(app: &TestApp, path: &str) -> Response {
    app.client
        .delete(app.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
}

async fn post_authed(app: &TestApp, path: &str) -> Response {
    app.client
        .post(app.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
}

fn id(value: &Value) -> &str {
    value["id"].as_str().unwrap()
}

async fn deliveries(app: &TestApp, subscription: &Value) -> Vec<Value> {
    let page = app
        .get_json(&format!("/v1/webhooks/{}/deliveries", id(subscription)))
        .await;
    page["items"].as_array().unwrap().clone()
}

/// Polls the delivery log until `done` holds for it, for at most [`ARRIVAL`].
async fn log_until(
    app: &TestApp,
    subscription: &Value,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let log = deliveries(app, subscription).await;
        if done(&log) {
            return log;
        }
        assert!(started.elapsed() < ARRIVAL, "still waiting: {log:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn post_callback(app: &TestApp, conversation: &str, status: &str) {
    let response = app
        .post_status(&callback(conversation, status, &now()))
        .await;
    assert_eq!(response.status(), 204);
}

async fn a_subscription_shows_its_secret_once_and_is_read_and_deleted_without_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = subscribe_raw(
        &app,
        &json!({"url": "https://crm.example.com/hooks", "events": ["call.result"], "description": "CRM"}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap();
    assert!(
        secret.starts_with("whsec_") && secret.len() > 30,
        "{created}"
    );
    assert_eq!(location, format!("/v1/webhooks/{}", id(&created)));
    assert_eq!(created["url"], "https://crm.example.com/hooks");
    assert_eq!(created["events"], json!(["call.result"]));
    assert_eq!(created["description"], "CRM");
    assert_eq!(created["enabled"], true);
    assert!(created["created_at"].is_string());

    let read = app.get_json(&location).await;
    assert_eq!(read["id"], created["id"]);
    assert_eq!(read["events"], json!(["call.result"]));
    assert!(read.get("secret").is_none(), "{read}");
    let all = subscribe(&app, "https://other.example.com/hooks", None).await;
    assert_eq!(
        all["events"],
        json!(["outcome.updated", "call.result", "campaign.completed"])
    );
    let list = app.get_json("/v1/webhooks").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], all["id"], "newest first");
    assert!(items.iter().all(|s| s.get("secret").is_none()), "{list}");
    assert!(!list.to_string().contains(secret));

    assert_eq!(delete(&app, &location).await.status(), 204);
    assert_problem(app.get(&location).await, 404).await;
    assert_problem(delete(&app, &location).await, 404).await;
    assert_problem(app.get("/v1/webhooks/not-a-uuid").await, 404).await;
    assert_eq!(
        app.get_json("/v1/webhooks").await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let unauthenticated = app
        .client
        .get(app.url("/v1/webhooks"))
        .send()
        .await
        .unwrap();
    assert_problem(unauthenticated, 401).await;
}

async fn bad_subscriptions_are_refused_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (body, fields) in [
        (json!({}), vec!["url"]),
        (json!({"url": "ftp://example.com/x"}), vec!["url"]),
        (json!({"url": "example.com/hooks"}), vec!["url"]),
        (json!({"url": "https://user:pw@example.com/"}), vec!["url"]),
        (
            json!({"url": "https://example.com/", "events": ["call.result", "call.rang"]}),
            vec!["events[1]"],
        ),
        (
            json!({"url": "https://example.com/", "events": []}),
            vec!["events"],
        ),
        (
            json!({"url": 7, "description": ["x"], "secret": "mine"}),
            vec!["url", "description", "secret"],
        ),
    ] {
        let problem = assert_problem(subscribe_raw(&app, &body).await, 422).await;
        assert_eq!(error_fields(&problem), fields, "{body}");
        assert!(!problem.to_string().contains("pw"), "{problem}");
    }
    let response = app
        .client
        .post(app.url("/v1/webhooks"))
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;
    assert!(
        app.get_json("/v1/webhooks").await["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

async fn loopback_receivers_are_refused_unless_allowed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for url in [
        "http://127.0.0.1:9/hooks",
        "http://localhost:9/hooks",
        "http://[::1]/hooks",
        "http://10.0.0.7/hooks",
        "http://169.254.169.254/latest/meta-data",
    ] {
        let problem = assert_problem(subscribe_raw(&app, &json!({"url": url})).await, 422).await;
        assert_eq!(error_fields(&problem), ["url"], "{url}");
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("CALLHOOK_WEBHOOK_ALLOW_PRIVATE"),
            "{problem}"
        );
    }
    let allowed = serving(backend, &[]).await;
    subscribe(&allowed, "http://127.0.0.1:9/hooks", None).await;
}

async fn an_outcome_update_is_delivered_signed_per_standard_webhooks(backend: Backend) {
    let app = serving(backend, &[]).await;
    let receiver = Receiver::start().await;
    let subscription = subscribe(&app, &receiver.url(), Some(&["outcome.updated"])).await;
    let secret = subscription["secret"].as_str().unwrap();
    post_callback(&app, "CON-signed", "busy").await;

    let delivery = receiver.wait_for(1, ARRIVAL).await.remove(0);
    assert!(signature_verifies(&delivery, secret), "{delivery:?}");
    assert!(
        !signature_verifies(&delivery, "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
        "another secret must not verify"
    );
    assert_eq!(delivery.content_type, "application/json");
    let sent_at: i64 = delivery.timestamp.parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - sent_at).abs() < 300);
    let body = delivery.json();
    assert_eq!(body["type"], "outcome.updated");
    assert!(body["timestamp"].is_string());
    let data = &body["data"];
    assert_eq!(data["conversation_uuid"], "CON-signed");
    assert_eq!(data["status"], "busy");
    assert_eq!(data["event_count"], 1);
    assert_eq!(data["agent_id"], AGENT);
    assert!(data.get("events").is_none(), "{data}");
    let stored = app.get_json("/v1/outcomes/CON-signed").await;
    assert_eq!(data["occurred_at"], stored["occurred_at"]);

    let log = log_until(&app, &subscription, |log| {
        log.first().is_some_and(|d| d["status"] == "delivered")
    })
    .await;
    assert_eq!(log.len(), 1);
    let logged = &log[0];
    assert_eq!(logged["id"], delivery.id, "webhook-id is the delivery id");
    assert_eq!(logged["event_type"], "outcome.updated");
    assert_eq!(logged["attempts"], 1);
    assert_eq!(logged["last_status_code"], 200);
    assert_eq!(logged["last_error"], Value::Null);
    assert_eq!(logged["next_attempt_at"], Value::Null);
    assert!(logged["created_at"].is_string() && logged["delivered_at"].is_string());

    // A second callback of the conversation is a second event, with its own id.
    post_callback(&app, "CON-signed", "timeout").await;
    let second = receiver.wait_for(2, ARRIVAL).await.remove(1);
    assert_ne!(second.id, delivery.id);
    assert_eq!(second.json()["data"]["event_count"], 2);
    assert!(signature_verifies(&second, secret));
    let metrics = app.text("/metrics").await;
    assert!(
        sample(
            &metrics,
            r#"callhook_webhook_attempts_total{result="delivered"}"#
        ) >= 2.0
    );
}

async fn each_subscription_gets_only_the_event_types_it_wants(backend: Backend) {
    let app = serving(backend, &[]).await;
    let (outcomes, campaigns) = (Receiver::start().await, Receiver::start().await);
    let wants_outcomes = subscribe(&app, &outcomes.url(), Some(&["outcome.updated"])).await;
    let wants_campaigns = subscribe(&app, &campaigns.url(), Some(&["campaign.completed"])).await;
    for n in 0..3 {
        post_callback(&app, &format!("CON-filter-{n}"), "rejected").await;
    }
    let arrived = outcomes.wait_for(3, ARRIVAL).await;
    assert!(arrived.iter().all(|d| d.event_type() == "outcome.updated"));
    // Events are written with the change that makes them: none was written for the other.
    assert!(deliveries(&app, &wants_campaigns).await.is_empty());
    assert_eq!(deliveries(&app, &wants_outcomes).await.len(), 3);
    assert!(campaigns.deliveries().is_empty());
}

/// A stand-in AI Studio and a callhook placing calls through it, with a short grace window.
async fn placing(backend: Backend, overrides: &[(&str, &str)]) -> (Studio, TestApp) {
    let studio = Studio::start().await;
    let uri = studio.uri();
    let mut settings = vec![
        ("vgai-api-key", VGAI_KEY),
        ("vgai-base-url", uri.as_str()),
        ("vgai-timeout-secs", "0.5"),
        ("answer-grace-secs", "0.5"),
    ];
    settings.extend_from_slice(overrides);
    let app = serving(backend, &settings).await;
    (studio, app)
}

async fn place(app: &TestApp, to: &str) -> Value {
    let response = app
        .client
        .post(app.url("/v1/calls"))
        .bearer_auth(TOKEN)
        .json(&json!({"agent_id": AGENT, "to": to}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

async fn call_results_are_delivered_with_the_call_and_its_outcome(backend: Backend) {
    let (studio, app) = placing(backend, &[]).await;
    let receiver = Receiver::start().await;
    subscribe(&app, &receiver.url(), Some(&["call.result"])).await;
    studio.script("972541112002", [Answer::Status(400)]);

    // A callback through the call's own status URL decides its result.
    let busy = place(&app, "972541112001").await;
    let path = busy["status_url"]
        .as_str()
        .unwrap()
        .strip_prefix(PUBLIC_URL)
        .unwrap()
        .to_owned();
    let response = app
        .client
        .post(app.url(&path))
        .json(&json!({
            "conversation_uuid": "CON-result-busy",
            "status": "busy",
            "timestamp": now(),
            "agent_id": AGENT,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    // AI Studio refusing a call decides it too; a call without a callback is inferred.
    let refused = app
        .client
        .post(app.url("/v1/calls"))
        .bearer_auth(TOKEN)
        .json(&json!({"agent_id": AGENT, "to": "972541112002"}))
        .send()
        .await
        .unwrap();
    let refused: Value = refused.json().await.unwrap();
    let refused_id = refused["call_id"].as_str().unwrap().to_owned();
    let answered = place(&app, "972541112003").await;

    let arrived = receiver.wait_for(3, ARRIVAL).await;
    let data = |call_id: &str| -> Value {
        arrived
            .iter()
            .map(|d| d.json())
            .find(|body| body["data"]["id"] == call_id)
            .unwrap_or_else(|| panic!("no call.result for {call_id}: {arrived:?}"))["data"]
            .clone()
    };
    assert!(arrived.iter().all(|d| d.event_type() == "call.result"));
    let busy_data = data(id(&busy));
    assert_eq!(busy_data["result"], "busy");
    assert_eq!(busy_data["result_source"], "callback");
    assert_eq!(busy_data["outcome"]["conversation_uuid"], "CON-result-busy");
    assert_eq!(busy_data["outcome"]["status"], "busy");
    assert_eq!(busy_data["to"], "972541112001");
    let refused_data = data(&refused_id);
    assert_eq!(refused_data["result"], "not_placed");
    assert_eq!(refused_data["state"], "rejected");
    let answered_data = data(id(&answered));
    assert_eq!(answered_data["result"], "answered");
    assert_eq!(answered_data["result_source"], "inferred");
    assert_eq!(answered_data["outcome"], Value::Null);
    // The payload is the call as the API shows it.
    let shown = app.get_json(&format!("/v1/calls/{}", id(&answered))).await;
    assert_eq!(answered_data, shown);
    assert_eq!(arrived.len(), 3, "one event per result: {arrived:?}");
}

async fn a_completed_campaign_is_delivered(backend: Backend) {
    let (studio, app) = placing(backend, &[]).await;
    let receiver = Receiver::start().await;
    subscribe(&app, &receiver.url(), Some(&["campaign.completed"])).await;
    studio.script("972541113001", [Answer::Status(400)]);
    let response = app
        .client
        .post(app.url("/v1/campaigns"))
        .bearer_auth(TOKEN)
        .json(&json!({"agent_id": AGENT, "destinations": [{"to": "972541113001"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let campaign: Value = response.json().await.unwrap();

    let delivery = receiver.wait_for(1, ARRIVAL).await.remove(0);
    let body = delivery.json();
    assert_eq!(body["type"], "campaign.completed");
    assert_eq!(body["data"]["id"], campaign["id"]);
    assert_eq!(body["data"]["state"], "completed");
    assert!(body["data"]["completed_at"].is_string());
    assert_eq!(body["data"]["counts"]["done"], 1, "{body}");
    assert_eq!(receiver.deliveries().len(), 1);
}

async fn a_failing_receiver_is_retried_with_the_same_id_until_it_answers_2xx(backend: Backend) {
    let app = serving(backend, &[("webhook-retry-schedule", "0.2,0.2,0.2,0.2")]).await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::Status(500), Reply::Status(429), Reply::Status(302)]);
    let subscription = subscribe(&app, &receiver.url(), None).await;
    let secret = subscription["secret"].as_str().unwrap();
    post_callback(&app, "CON-retried", "failed").await;

    let arrived = receiver.wait_for(4, ARRIVAL).await;
    assert!(arrived.iter().all(|d| d.id == arrived[0].id), "{arrived:?}");
    assert!(arrived.iter().all(|d| d.body == arrived[0].body));
    assert!(arrived.iter().all(|d| signature_verifies(d, secret)));
    let log = log_until(&app, &subscription, |log| log[0]["status"] == "delivered").await;
    assert_eq!(log[0]["attempts"], 4);
    assert_eq!(log[0]["last_status_code"], 200);
    assert_eq!(receiver.deliveries().len(), 4, "nothing after the 2xx");
}

async fn spent_retries_fail_and_a_manual_retry_delivers_once_more(backend: Backend) {
    let app = serving(backend, &[("webhook-retry-schedule", "0.1")]).await;
    let receiver = Receiver::start().await;
    receiver.otherwise(Some(Reply::Status(503)));
    let subscription = subscribe(&app, &receiver.url(), None).await;
    post_callback(&app, "CON-manual", "busy").await;

    let log = log_until(&app, &subscription, |log| {
        log.first().is_some_and(|d| d["status"] == "failed")
    })
    .await;
    let failed = &log[0];
    assert_eq!(failed["attempts"], 2, "the first try and one retry");
    assert_eq!(failed["last_status_code"], 503);
    assert!(failed["last_error"].as_str().unwrap().contains("503"));
    assert_eq!(failed["next_attempt_at"], Value::Null);
    assert_eq!(failed["delivered_at"], Value::Null);
    assert_eq!(receiver.deliveries().len(), 2);

    receiver.otherwise(None);
    let retry = format!(
        "/v1/webhooks/{}/deliveries/{}/retry",
        id(&subscription),
        id(failed)
    );
    assert_eq!(post_authed(&app, &retry).await.status(), 202);
    let arrived = receiver.wait_for(3, ARRIVAL).await;
    assert_eq!(arrived[2].id, id(failed));
    let log = log_until(&app, &subscription, |log| log[0]["status"] == "delivered").await;
    assert_eq!(log[0]["attempts"], 3);

    // A manual retry of a delivered one sends it once more; one that fails is not retried.
    receiver.otherwise(Some(Reply::Status(500)));
    assert_eq!(post_authed(&app, &retry).await.status(), 202);
    receiver.wait_for(4, ARRIVAL).await;
    let log = log_until(&app, &subscription, |log| log[0]["status"] == "failed").await;
    assert_eq!(log[0]["attempts"], 4);

    let unknown = format!(
        "/v1/webhooks/{}/deliveries/{}/retry",
        id(&subscription),
        uuid::Uuid::now_v7()
    );
    assert_problem(post_authed(&app, &unknown).await, 404).await;
    let filtered = app
        .get_json(&format!(
            "/v1/webhooks/{}/deliveries?status=delivered",
            id(&subscription)
        ))
        .await;
    assert!(filtered["items"].as_array().unwrap().is_empty());
    let bad = app
        .get(&format!(
            "/v1/webhooks/{}/deliveries?status=sent",
            id(&subscription)
        ))
        .await;
    assert_eq!(error_fields(&assert_problem(bad, 422).await), ["status"]);
}

async fn gone_disables_the_subscription(backend: Backend) {
    let app = serving(backend, &[("webhook-retry-schedule", "0.1,0.1")]).await;
    let receiver = Receiver::start().await;
    receiver.otherwise(Some(Reply::Status(410)));
    let subscription = subscribe(&app, &receiver.url(), Some(&["outcome.updated"])).await;
    post_callback(&app, "CON-gone", "busy").await;

    let log = log_until(&app, &subscription, |log| {
        log.first().is_some_and(|d| d["status"] == "failed")
    })
    .await;
    assert_eq!(log[0]["attempts"], 1, "410 is not retried");
    assert_eq!(log[0]["last_status_code"], 410);
    let disabled = app
        .get_json(&format!("/v1/webhooks/{}", id(&subscription)))
        .await;
    assert_eq!(disabled["enabled"], false, "{disabled}");
    assert_eq!(disabled["disabled_reason"], "gone");

    // A disabled subscription gets no more events, and its deliveries cannot be retried.
    post_callback(&app, "CON-gone-2", "busy").await;
    assert_eq!(deliveries(&app, &subscription).await.len(), 1);
    let retry = format!(
        "/v1/webhooks/{}/deliveries/{}/retry",
        id(&subscription),
        id(&log[0])
    );
    assert_problem(post_authed(&app, &retry).await, 409).await;
    assert_eq!(receiver.deliveries().len(), 1);
}

async fn a_deleted_subscription_gets_nothing_more(backend: Backend) {
    let app = serving(backend, &[("webhook-retry-schedule", "0.3,0.3,0.3,0.3")]).await;
    let (deleted, kept) = (Receiver::start().await, Receiver::start().await);
    deleted.otherwise(Some(Reply::Status(500)));
    let doomed = subscribe(&app, &deleted.url(), Some(&["outcome.updated"])).await;
    subscribe(&app, &kept.url(), Some(&["outcome.updated"])).await;
    post_callback(&app, "CON-deleted-1", "busy").await;
    deleted.wait_for(1, ARRIVAL).await;
    let series = format!(
        "callhook_webhook_oldest_pending_seconds{{subscription_id=\"{}\"}}",
        id(&doomed)
    );
    let started = Instant::now();
    while !app.text("/metrics").await.contains(&series) {
        assert!(started.elapsed() < ARRIVAL, "no {series}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let path = format!("/v1/webhooks/{}", id(&doomed));
    assert_eq!(delete(&app, &path).await.status(), 204);
    let before = deleted.deliveries().len();

    // Events after the deletion reach the subscription left, and a retry of the deleted
    // one's failing delivery (due every 0.3 s) never comes.
    let started = Instant::now();
    let mut n = 2;
    while started.elapsed() < Duration::from_millis(1200) {
        post_callback(&app, &format!("CON-deleted-{n}"), "busy").await;
        kept.wait_for(n, ARRIVAL).await;
        n += 1;
    }
    assert_eq!(
        deleted.deliveries().len(),
        before,
        "sent after its deletion"
    );
    // Its gauge went with it: a series per subscription ever made would grow forever.
    assert!(!app.text("/metrics").await.contains(&series));
    assert_problem(app.get(&format!("{path}/deliveries")).await, 404).await;
}

async fn a_receiver_that_never_answers_holds_back_neither_ingest_nor_other_subscribers(
    backend: Backend,
) {
    let app = serving(backend, &[("webhook-timeout-secs", "5")]).await;
    let (dead, alive) = (Receiver::start().await, Receiver::start().await);
    dead.otherwise(Some(Reply::Hang));
    let stuck = subscribe(&app, &dead.url(), Some(&["outcome.updated"])).await;
    subscribe(&app, &alive.url(), Some(&["outcome.updated"])).await;

    let events = 2 * callhook::webhooks::PER_SUBSCRIPTION;
    let started = Instant::now();
    for n in 0..events {
        post_callback(&app, &format!("CON-hang-{n}"), "busy").await;
    }
    let all = alive.wait_for(events, ARRIVAL).await;
    // Within the dead receiver's timeout: neither ingest nor the other subscriber waited
    // for it.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(all.len(), events);
    // Only a bounded number of its deliveries are under way at once.
    dead.wait_for(1, ARRIVAL).await;
    let under_way = dead.deliveries().len();
    assert!(
        (1..=callhook::webhooks::PER_SUBSCRIPTION).contains(&under_way),
        "{under_way} at once"
    );
    let log = deliveries(&app, &stuck).await;
    assert_eq!(log.len(), events);
    assert!(log.iter().all(|d| d["status"] == "pending"));
    // Claimed, and under way or about to be: never more than its slots.
    let attempted = log.iter().filter(|d| d["attempts"] == 1).count();
    assert!(
        (under_way..=callhook::webhooks::PER_SUBSCRIPTION).contains(&attempted),
        "{attempted} claimed: {log:?}"
    );
}

async fn patch(app: &TestApp, subscription: &Value, body: Value) -> Response {
    app.client
        .patch(app.url(&format!("/v1/webhooks/{}", id(subscription))))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn a_subscription_is_changed_stopped_and_enabled_again(backend: Backend) {
    let app = serving(backend, &[]).await;
    let (first, second) = (Receiver::start().await, Receiver::start().await);
    first.otherwise(Some(Reply::Status(410)));
    let subscription = subscribe(&app, &first.url(), Some(&["campaign.completed"])).await;

    // Moved to another receiver, for other events, with another description.
    let response = patch(
        &app,
        &subscription,
        json!({"url": second.url(), "events": ["outcome.updated"], "description": null}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let changed: Value = response.json().await.unwrap();
    assert_eq!(changed["url"], second.url());
    assert_eq!(changed["events"], json!(["outcome.updated"]));
    assert_eq!(changed["description"], Value::Null);
    assert!(changed.get("secret").is_none());
    post_callback(&app, "CON-patched", "busy").await;
    second.wait_for(1, ARRIVAL).await;

    // Stopped: no events are written for it; enabled again: they are.
    let stopped: Value = patch(&app, &subscription, json!({"enabled": false}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stopped["enabled"], false);
    post_callback(&app, "CON-while-stopped", "busy").await;
    assert_eq!(deliveries(&app, &subscription).await.len(), 1);
    let enabled: Value = patch(&app, &subscription, json!({"enabled": true}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(enabled["enabled"], true);
    assert_eq!(enabled["disabled_reason"], Value::Null);
    post_callback(&app, "CON-enabled", "busy").await;
    let arrived = second.wait_for(2, ARRIVAL).await;
    assert_eq!(
        arrived[1].json()["data"]["conversation_uuid"],
        "CON-enabled"
    );

    for (body, field) in [
        (json!({"url": "gopher://x"}), "url"),
        (json!({"events": []}), "events"),
        (json!({"enabled": "yes"}), "enabled"),
        (json!({"secret": "mine"}), "secret"),
    ] {
        let problem = assert_problem(patch(&app, &subscription, body.clone()).await, 422).await;
        assert_eq!(error_fields(&problem), [field], "{body}");
    }
    let missing = json!({"id": uuid::Uuid::now_v7()});
    assert_problem(patch(&app, &missing, json!({"enabled": true})).await, 404).await;
    assert!(first.deliveries().is_empty());
}

async fn cancelling_a_campaign_delivers_the_results_it_decides(backend: Backend) {
    let (studio, app) = placing(backend, &[]).await;
    let receiver = Receiver::start().await;
    subscribe(&app, &receiver.url(), Some(&["call.result"])).await;
    // AI Studio asks the attempt to wait a minute: the destination waits to send it again.
    studio.script("972541114001", [Answer::TooMany(60)]);
    let response = app
        .client
        .post(app.url("/v1/campaigns"))
        .bearer_auth(TOKEN)
        .json(&json!({"agent_id": AGENT, "destinations": [{"to": "972541114001"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let campaign: Value = response.json().await.unwrap();
    studio.wait_for_requests(1, ARRIVAL).await;
    let path = format!("/v1/campaigns/{}", id(&campaign));
    let started = Instant::now();
    loop {
        let destinations = app.get_json(&format!("{path}/destinations")).await;
        let first = &destinations["items"][0];
        if first["state"] == "pending" && first["attempts"] == 1 {
            break;
        }
        assert!(started.elapsed() < ARRIVAL, "{destinations}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        post_authed(&app, &format!("{path}/cancel")).await.status(),
        200
    );

    // Its call was never placed: cancelling decided that, and said so.
    let delivery = receiver.wait_for(1, ARRIVAL).await.remove(0);
    let data = &delivery.json()["data"];
    assert_eq!(data["campaign_id"], campaign["id"]);
    assert_eq!(data["result"], "not_placed", "{data}");
}

async fn a_stopped_subscription_keeps_its_failing_delivery_for_when_it_is_enabled(
    backend: Backend,
) {
    let app = serving(backend, &[("webhook-retry-schedule", "0.2,0.2,0.2,0.2")]).await;
    let receiver = Receiver::start().await;
    // The first attempt fails after the subscription was stopped meanwhile.
    receiver.script([Reply::After(500, 500)]);
    let subscription = subscribe(&app, &receiver.url(), Some(&["outcome.updated"])).await;
    post_callback(&app, "CON-stopped", "busy").await;
    receiver.wait_for(1, ARRIVAL).await;
    let response = patch(&app, &subscription, json!({"enabled": false})).await;
    assert_eq!(response.status(), 200);
    let log = log_until(&app, &subscription, |log| log[0]["last_status_code"] == 500).await;
    assert_eq!(
        log[0]["status"], "pending",
        "a stop is not a failure: {log:?}"
    );

    patch(&app, &subscription, json!({"enabled": true})).await;
    let log = log_until(&app, &subscription, |log| log[0]["status"] == "delivered").await;
    assert_eq!(log[0]["attempts"], 2);
    assert_eq!(receiver.deliveries().len(), 2);
}
