//! Several replicas of the binary on one PostgreSQL database, and crashes (`kill -9`): every
//! call is inferred `answered` exactly once, counted by the replicas' own metrics; campaigns
//! keep their agent's pace across replicas, never dial an attempt twice, and finish after a
//! crash. AI Studio is stood in for by real local servers (wiremock, and the recording stand-in
//! of the HTTP suite). Needs the test PostgreSQL that `scripts/test` starts. (Two replicas' rounds seldom overlap here; the race
//! itself, several inferences at once in tight loops, is `store::…replicas_inferring_at_once…`
//! in the HTTP suite, which fails when the inference does not recheck or skip locked rows.)

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[allow(dead_code)]
#[path = "api/studio.rs"]
mod studio;

#[allow(dead_code)]
#[path = "api/receiver.rs"]
mod receiver;

use receiver::{Receiver, Reply};
use studio::{Answer, Studio};

const TOKEN: &str = "replica-token-0123456789";
const SECRET: &str = "replica-ingest-secret-0123456789";
const INFERRED: &str = r#"callhook_call_results_total{result="answered",source="inferred"}"#;

struct Replica {
    child: Child,
    base: String,
}

impl Replica {
    /// Starts the binary on port 0 and reads the bound address from its start-up log line.
    fn start(database_url: &str, upstream: &str, grace: &str) -> Self {
        let spool = tempfile::tempdir().unwrap().keep();
        let mut child = Command::new(env!("CARGO_BIN_EXE_callhook"))
            .env_clear()
            .envs([
                ("DATABASE_URL", database_url),
                ("CALLHOOK_BIND", "127.0.0.1:0"),
                ("CALLHOOK_API_TOKENS", TOKEN),
                ("CALLHOOK_INGEST_SECRET", SECRET),
                ("VGAI_API_KEY", "replica-vgai-key"),
                ("VGAI_BASE_URL", upstream),
                ("VGAI_TIMEOUT_SECS", "0.5"),
                ("CALLHOOK_PUBLIC_URL", "https://callhook.example.com"),
                ("CALLHOOK_ANSWER_GRACE_SECS", grace),
                ("CALLHOOK_SPOOL_DIR", spool.to_str().unwrap()),
                ("CALLHOOK_LOG_FORMAT", "json"),
                ("CALLHOOK_WEBHOOK_ALLOW_PRIVATE", "true"),
                ("CALLHOOK_WEBHOOK_TIMEOUT_SECS", "1"),
                (
                    "CALLHOOK_WEBHOOK_RETRY_SCHEDULE",
                    "0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3",
                ),
                ("RUST_LOG", "info"),
            ])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let address = loop {
            let line = lines
                .next()
                .expect("callhook exited before listening")
                .unwrap();
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if event["message"] == "callhook listening" {
                break event["address"].as_str().unwrap().to_owned();
            }
        };
        // Keep draining its log so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            base: format!("http://{address}"),
        }
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The JSON of an authenticated `GET`.
    async fn get_json(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// An authenticated `POST` of `body`, answered `expected`; returns the answer's JSON.
    async fn post_json(&self, path: &str, body: &Value, expected: u16) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected);
        response.json().await.unwrap_or(Value::Null)
    }

    /// Posts a callback to the shared status URL, asserting its 204.
    async fn call_back(&self, conversation: &str) {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/status/{SECRET}", self.base))
            .json(&json!({
                "conversation_uuid": conversation,
                "status": "busy",
                "timestamp": "2026-12-01T10:00:00Z",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }

    /// The first page of calls with `result`.
    async fn calls(&self, result: &str) -> Value {
        self.get_json(&format!("/v1/calls?result={result}&limit=1000"))
            .await
    }

    async fn inferred(&self) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|line| line.strip_prefix(INFERRED))
            .map_or(0.0, |rest| rest.trim().parse().unwrap())
    }

    /// `kill -9`: no shutdown, no draining.
    fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn database() -> String {
    let admin = std::env::var("CALLHOOK_TEST_DATABASE_URL").expect(
        "CALLHOOK_TEST_DATABASE_URL is not set: run the tests with scripts/test, which starts \
         a throwaway PostgreSQL",
    );
    let name = format!("callhook_replicas_{}", uuid::Uuid::new_v4().simple());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

async fn upstream() -> MockServer {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/telephony/make-call"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "session_id": "5a61cc84-2f49-4a0c-9a4d-0c2a1d7e1c11",
            "session_start_time": "2020-10-14T09:42:07.151657",
        })))
        .mount(&upstream)
        .await;
    upstream
}

async fn place(replica: &Replica, n: usize) -> String {
    let call: Value = reqwest::Client::new()
        .post(format!("{}/v1/calls", replica.base))
        .bearer_auth(TOKEN)
        .json(&json!({"agent_id": "agent", "to": format!("9725411{n:05}")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(call["state"], "initiated", "{call}");
    call["id"].as_str().unwrap().to_owned()
}

/// Polls until no call is pending, for at most 20 s.
async fn until_none_pending(replica: &Replica) {
    let started = Instant::now();
    loop {
        let page = replica.calls("pending").await;
        if page["items"].as_array().unwrap().is_empty() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still pending: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn all_inferred(replica: &Replica, calls: usize) {
    let page = replica.calls("answered").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), calls);
    assert!(
        items.iter().all(|c| c["result_source"] == "inferred"),
        "{page}"
    );
}

#[tokio::test]
async fn two_replicas_on_one_database_infer_each_call_once() {
    let (database_url, upstream) = (database().await, upstream().await);
    let first = Replica::start(&database_url, &upstream.uri(), "1");
    let second = Replica::start(&database_url, &upstream.uri(), "1");
    // The series alerts watch exist from start-up, at 0, in a fresh process.
    let metrics = first.metrics().await;
    for series in [
        "callhook_results_corrected_total 0",
        r#"callhook_call_results_total{result="answered",source="inferred"} 0"#,
        r#"callhook_callbacks_total{result="busy"} 0"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == series),
            "no {series} in:\n{metrics}"
        );
    }
    let calls = 40;
    for n in 0..calls {
        place(if n % 2 == 0 { &first } else { &second }, n).await;
    }
    until_none_pending(&first).await;
    all_inferred(&second, calls).await;
    // A few more rounds of both: nothing is inferred again.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (a, b) = (first.inferred().await, second.inferred().await);
    assert_eq!(
        a + b,
        calls as f64,
        "inferred {a} + {b} times for {calls} calls"
    );
}

#[tokio::test]
async fn a_replica_killed_inside_the_grace_window_leaves_the_inference_to_its_successor() {
    let (database_url, upstream) = (database().await, upstream().await);
    let doomed = Replica::start(&database_url, &upstream.uri(), "2");
    let calls = 10;
    for n in 0..calls {
        place(&doomed, n).await;
    }
    assert_eq!(
        doomed.inferred().await,
        0.0,
        "inferred before the grace window passed"
    );
    doomed.crash();
    let successor = Replica::start(&database_url, &upstream.uri(), "2");
    until_none_pending(&successor).await;
    all_inferred(&successor, calls).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(successor.inferred().await, calls as f64);
}

/// A campaign of `count` destinations of `agent` at `rate` calls per second, one attempt each.
async fn start_campaign(
    replica: &Replica,
    agent: &str,
    first: usize,
    count: usize,
    rate: f64,
) -> String {
    let destinations: Vec<Value> = (first..first + count)
        .map(|n| json!({"to": format!("9725422{n:05}")}))
        .collect();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/campaigns", replica.base))
        .bearer_auth(TOKEN)
        .json(&json!({"agent_id": agent, "calls_per_second": rate, "destinations": destinations}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let campaign: Value = response.json().await.unwrap();
    campaign["id"].as_str().unwrap().to_owned()
}

/// Polls the campaign until it is completed, for at most `within`.
async fn until_completed(replica: &Replica, id: &str, within: Duration) -> Value {
    let started = Instant::now();
    loop {
        let campaign = replica.get_json(&format!("/v1/campaigns/{id}")).await;
        if campaign["state"] == "completed" {
            return campaign;
        }
        assert!(started.elapsed() < within, "not completed: {campaign}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that no destination and no call was requested twice.
fn assert_dialled_once(requests: &[studio::Request]) {
    let mut numbers: Vec<&str> = requests.iter().map(|r| r.to.as_str()).collect();
    let mut calls: Vec<&str> = requests.iter().map(|r| r.status_url.as_str()).collect();
    numbers.sort_unstable();
    calls.sort_unstable();
    let (n, c) = (numbers.len(), calls.len());
    numbers.dedup();
    calls.dedup();
    assert_eq!(numbers.len(), n, "a destination was dialled twice");
    assert_eq!(calls.len(), c, "a call was requested twice");
}

/// `kill -9` while a request is in flight, then a successor on the same database: it finishes
/// the campaign; the attempt cut off mid-request is `unknown` and never dialled again.
async fn a_campaign_finishes_after_its_replica_is_killed_mid_request(database_url: &str) {
    let studio = Studio::start().await;
    // Each answer takes 150 ms of the 200 ms between requests: a kill lands mid-request.
    studio.answer_agent("agent", Some(Answer::Slow(150)));
    let doomed = Replica::start(database_url, &studio.uri(), "1");
    let destinations = 20;
    let id = start_campaign(&doomed, "agent", 0, destinations, 5.0).await;
    studio.wait_for_requests(6, Duration::from_secs(10)).await;
    doomed.crash();
    let dialled_before = studio.requests().len();
    let successor = Replica::start(database_url, &studio.uri(), "1");
    // The abandoned claim is taken for unknown once its lease (the upstream timeout + 15 s)
    // has passed.
    let campaign = until_completed(&successor, &id, Duration::from_secs(45)).await;
    let requests = studio.requests();
    assert_dialled_once(&requests);
    let counts = &campaign["counts"];
    assert_eq!(counts["destinations"], destinations);
    assert_eq!(counts["done"], destinations);
    assert_eq!(
        counts["calls"], destinations,
        "one attempt each: {campaign}"
    );
    let (answered, unknown) = (
        counts["results"]["answered"].as_u64().unwrap(),
        counts["results"]["unknown"].as_u64().unwrap(),
    );
    assert_eq!(answered + unknown, destinations as u64, "{campaign}");
    assert!(
        unknown >= 1,
        "the attempt in flight at the kill is unknown: {campaign}"
    );
    assert!(
        dialled_before < requests.len() && requests.len() <= destinations,
        "{dialled_before} before the kill, {} in all",
        requests.len()
    );
}

#[tokio::test]
async fn a_campaign_survives_kill_9_on_postgres() {
    a_campaign_finishes_after_its_replica_is_killed_mid_request(&database().await).await;
}

#[tokio::test]
async fn a_campaign_survives_kill_9_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("callhook.db").display());
    a_campaign_finishes_after_its_replica_is_killed_mid_request(&url).await;
}

/// Two replicas dial two campaigns of one agent: the agent's requests stay one pace apart,
/// no attempt is dialled twice, and both replicas take part.
#[tokio::test]
async fn two_replicas_share_an_agents_pace_and_dial_each_attempt_once() {
    let (database_url, studio) = (database().await, Studio::start().await);
    let first = Replica::start(&database_url, &studio.uri(), "1");
    let second = Replica::start(&database_url, &studio.uri(), "1");
    let a = start_campaign(&first, "agent", 0, 12, 4.0).await;
    let b = start_campaign(&second, "agent", 100, 12, 4.0).await;
    until_completed(&first, &a, Duration::from_secs(30)).await;
    until_completed(&second, &b, Duration::from_secs(30)).await;
    let requests = studio.requests();
    assert_eq!(requests.len(), 24);
    assert_dialled_once(&requests);
    let mut arrivals: Vec<Instant> = requests.iter().map(|r| r.at).collect();
    arrivals.sort();
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap + Duration::from_millis(5) >= Duration::from_millis(250),
            "two requests for one agent {gap:?} apart"
        );
    }
    let placed = |metrics: String| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(r#"callhook_calls_total{state="initiated"} "#))
            .map_or(0.0, |n| n.trim().parse::<f64>().unwrap())
    };
    let (by_first, by_second) = (
        placed(first.metrics().await),
        placed(second.metrics().await),
    );
    assert_eq!(by_first + by_second, 24.0);
    assert!(
        by_first > 0.0 && by_second > 0.0,
        "one replica dialled everything: {by_first} and {by_second}"
    );
}

/// Subscribes `receiver` to outcome updates through `replica`; returns the subscription's id.
async fn subscribe(replica: &Replica, receiver: &Receiver) -> String {
    let subscription = replica
        .post_json(
            "/v1/webhooks",
            &json!({"url": receiver.url(), "events": ["outcome.updated"]}),
            201,
        )
        .await;
    subscription["id"].as_str().unwrap().to_owned()
}

/// Polls a subscription's delivery log until `count` deliveries are delivered, for at most
/// `within`.
async fn until_delivered(replica: &Replica, subscription: &str, count: usize, within: Duration) {
    let started = Instant::now();
    loop {
        let page = replica
            .get_json(&format!(
                "/v1/webhooks/{subscription}/deliveries?status=delivered&limit=1000"
            ))
            .await;
        if page["items"].as_array().unwrap().len() >= count {
            return;
        }
        assert!(started.elapsed() < within, "not delivered: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `kill -9` right after a callback's 204, its event not yet delivered (the receiver fails
/// every attempt until then): a successor on the same database delivers it.
async fn an_acknowledged_event_is_delivered_after_kill_9(database_url: &str) {
    let receiver = Receiver::start().await;
    receiver.otherwise(Some(Reply::Status(503)));
    let doomed = Replica::start(database_url, "http://127.0.0.1:9", "60");
    let subscription = subscribe(&doomed, &receiver).await;
    doomed.call_back("CON-killed").await;
    doomed.crash();
    receiver.otherwise(None);
    let successor = Replica::start(database_url, "http://127.0.0.1:9", "60");
    // An attempt cut off by the kill is due again once its lease (timeout + 10 s) ends.
    until_delivered(&successor, &subscription, 1, Duration::from_secs(30)).await;
    let arrived = receiver.deliveries();
    assert!(!arrived.is_empty());
    assert!(
        arrived.iter().all(|d| d.id == arrived[0].id),
        "one event: {arrived:?}"
    );
    assert_eq!(arrived[0].json()["data"]["conversation_uuid"], "CON-killed");
}

#[tokio::test]
async fn an_acknowledged_event_survives_kill_9_on_postgres() {
    an_acknowledged_event_is_delivered_after_kill_9(&database().await).await;
}

#[tokio::test]
async fn an_acknowledged_event_survives_kill_9_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("callhook.db").display());
    an_acknowledged_event_is_delivered_after_kill_9(&url).await;
}

/// Two replicas deliver one subscription's events: each event arrives, none twice, and
/// both replicas take part (each counts its own attempts).
#[tokio::test]
async fn two_replicas_deliver_each_event_once() {
    let database_url = database().await;
    let receiver = Receiver::start().await;
    let first = Replica::start(&database_url, "http://127.0.0.1:9", "60");
    let second = Replica::start(&database_url, "http://127.0.0.1:9", "60");
    let subscription = subscribe(&first, &receiver).await;
    let events = 200;
    for n in 0..events {
        let replica = if n % 2 == 0 { &first } else { &second };
        replica.call_back(&format!("CON-shared-{n}")).await;
    }
    until_delivered(&second, &subscription, events, Duration::from_secs(30)).await;
    let arrived = receiver.deliveries();
    let mut ids: Vec<&str> = arrived.iter().map(|d| d.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), events, "every event arrived");
    assert_eq!(arrived.len(), events, "an event was delivered twice");
    let attempts = |metrics: String| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(r#"callhook_webhook_attempts_total{result="delivered"}"#))
            .map_or(0.0, |rest| rest.trim().parse::<f64>().unwrap())
    };
    let (a, b) = (
        attempts(first.metrics().await),
        attempts(second.metrics().await),
    );
    assert_eq!(a + b, events as f64);
    assert!(a > 0.0 && b > 0.0, "one replica did all: {a} and {b}");
}
