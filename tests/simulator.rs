//! callhook against the built-in AI Studio simulator, both in-process on real sockets: the
//! same path as against AI Studio, from `POST /v1/calls` to the stored outcome.

use std::collections::HashMap;
use std::time::Duration;

use callhook::cli::Cli;
use callhook::config::Config;
use callhook::simulator::config::SimulatorConfig;
use callhook::simulator::{self, CallFinished, Simulator};
use clap::Parser;
use reqwest::{Client, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

const KEY: &str = "simulated-vgai-key-0123456789";
const TOKEN: &str = "test-token-0123456789";
const SECRET: &str = "ingest-secret-0123456789";
const AGENT: &str = "60c09d70e6a68858f4220848";
/// How long a test waits for callbacks before failing.
const DEADLINE: Duration = Duration::from_secs(30);

/// Fast callbacks and no rate limit, unless a test says otherwise.
fn fast() -> SimulatorConfig {
    SimulatorConfig {
        // Long enough that the answer to POST /v1/calls (a commit on a loaded machine) comes
        // before the callback, which the tests assert.
        callback_delay: Duration::from_millis(250),
        rate_per_second: 0.0,
        ..SimulatorConfig::new(KEY)
    }
}

/// A simulator and a callhook pointed at it, over a fresh SQLite file.
struct Demo {
    callhook: String,
    simulator: String,
    client: Client,
    finished: broadcast::Receiver<CallFinished>,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

impl Demo {
    async fn start(config: SimulatorConfig) -> Self {
        Self::start_with(config, &[]).await
    }

    /// `flags` override callhook's defaults here (same names as its command-line flags).
    async fn start_with(config: SimulatorConfig, flags: &[(&str, &str)]) -> Self {
        let simulator_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let simulator_url = format!("http://{}", simulator_listener.local_addr().unwrap());
        let sim = Simulator::new(config);
        let finished = sim.subscribe();
        let simulator_server = tokio::spawn(simulator::serve(
            simulator_listener,
            sim,
            std::future::pending(),
        ));

        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let callhook_url = format!("http://{}", listener.local_addr().unwrap());
        let database_url = format!("sqlite://{}", dir.path().join("callhook.db").display());
        let spool_dir = dir.path().join("spool").display().to_string();
        let mut settings: Vec<(&str, &str)> = vec![
            ("database-url", &database_url),
            ("spool-dir", &spool_dir),
            ("api-tokens", TOKEN),
            ("ingest-secret", SECRET),
            ("public-url", &callhook_url),
            ("vgai-base-url", &simulator_url),
            ("vgai-api-key", KEY),
        ];
        for (flag, value) in flags {
            settings.retain(|(f, _)| f != flag);
            settings.push((flag, value));
        }
        let argv = std::iter::once("callhook".to_owned())
            .chain(settings.iter().map(|(k, v)| format!("--{k}={v}")));
        let config = Config::from_args(Cli::try_parse_from(argv).unwrap().serve).unwrap();
        let store = callhook::open_store(&config).await.unwrap();
        let app = callhook::app(callhook::state(&config, store).unwrap());
        let callhook_server = tokio::spawn(callhook::serve(listener, app, std::future::pending()));
        Self {
            callhook: callhook_url,
            simulator: simulator_url,
            client: Client::new(),
            finished,
            servers: vec![simulator_server, callhook_server],
            _dir: dir,
        }
    }

    async fn place(&self, agent_id: &str, to: &str) -> Response {
        self.client
            .post(format!("{}/v1/calls", self.callhook))
            .bearer_auth(TOKEN)
            .json(&json!({"agent_id": agent_id, "to": to}))
            .send()
            .await
            .unwrap()
    }

    /// Places a call that the simulator accepts; returns callhook's call.
    async fn place_ok(&self, to: &str) -> Value {
        let response = self.place(AGENT, to).await;
        assert_eq!(response.status(), 201, "POST /v1/calls to {to}");
        response.json().await.unwrap()
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.callhook))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// Waits until the simulator has finished with every call (callbacks delivered, or the
    /// delay passed for an answered call); keyed by callhook call id.
    async fn finished(&mut self, calls: &[&Value]) -> HashMap<String, CallFinished> {
        let mut waiting: HashMap<String, String> = calls
            .iter()
            .map(|c| {
                let session = c["session_id"]
                    .as_str()
                    .expect("an initiated call")
                    .to_owned();
                (session, c["id"].as_str().unwrap().to_owned())
            })
            .collect();
        let mut done = HashMap::new();
        tokio::time::timeout(DEADLINE, async {
            while !waiting.is_empty() {
                let call = self.finished.recv().await.expect("the simulator runs");
                if let Some(id) = waiting.remove(&call.session_id.to_string()) {
                    done.insert(id, call);
                }
            }
        })
        .await
        .expect("the simulator finished every call before the deadline");
        done
    }

    /// A make-call request sent straight to the simulator.
    async fn make_call(&self, key: Option<&str>, body: &Value) -> Response {
        let mut request = self
            .client
            .post(format!("{}/telephony/make-call", self.simulator))
            .json(body);
        if let Some(key) = key {
            request = request.header("X-Vgai-Key", key);
        }
        request.send().await.unwrap()
    }
}

/// Asserts the platform's `{"status": N, "message": …}` error shape.
async fn assert_upstream_error(response: Response, status: u16) {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

fn statuses(callbacks: &CallFinished) -> Vec<(&str, Result<u16, String>)> {
    callbacks
        .callbacks
        .iter()
        .map(|d| (d.status.as_str(), d.response.clone()))
        .collect()
}

fn event_statuses(outcome: &Value) -> Vec<&str> {
    outcome["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_digit_gives_its_documented_outcome() {
    let mut demo = Demo::start(fast()).await;
    let expected = [
        ("972541116032", "busy"),
        ("972541116033", "timeout"),
        ("972541116034", "rejected"),
        ("972541116035", "cancelled"),
        ("972541116036", "failed"),
        ("sip:1232@sip.example.com", "busy"),
    ];
    let mut calls = Vec::new();
    for (to, _) in expected {
        let call = demo.place_ok(to).await;
        assert_eq!(call["state"], "initiated");
        assert!(call["outcome"].is_null(), "no outcome before the callback");
        calls.push(call);
    }
    let finished = demo.finished(&calls.iter().collect::<Vec<_>>()).await;
    for ((to, status), call) in expected.iter().zip(&calls) {
        let id = call["id"].as_str().unwrap();
        let sent = &finished[id];
        assert_eq!(statuses(sent), [(*status, Ok(204))], "{to}");
        let call = demo.get_json(&format!("/v1/calls/{id}")).await;
        let outcome = &call["outcome"];
        assert_eq!(outcome["status"], *status, "{to}: {call}");
        assert_eq!(outcome["call_id"], id);
        assert_eq!(
            outcome["conversation_uuid"],
            sent.conversation_uuid.as_str()
        );
        let outcome = demo
            .get_json(&format!("/v1/outcomes/{}", sent.conversation_uuid))
            .await;
        assert_eq!(outcome["event_count"], 1);
        assert_eq!(outcome["agent_id"], AGENT);
        assert_eq!(outcome["to"], *to);
        assert!(sent.conversation_uuid.starts_with("CON-"));
    }
    let listed = demo.get_json("/v1/outcomes?status=busy").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_calls_get_no_callback() {
    let mut demo = Demo::start(fast()).await;
    let mut calls = Vec::new();
    for to in ["972541116030", "972541116031", "972541116039"] {
        calls.push(demo.place_ok(to).await);
    }
    let finished = demo.finished(&calls.iter().collect::<Vec<_>>()).await;
    for call in &calls {
        let id = call["id"].as_str().unwrap();
        assert!(finished[id].callbacks.is_empty(), "{call}");
        let call = demo.get_json(&format!("/v1/calls/{id}")).await;
        assert!(call["outcome"].is_null(), "{call}");
        assert_eq!(call["state"], "initiated");
        let listed = demo.get_json(&format!("/v1/outcomes?call_id={id}")).await;
        assert_eq!(listed["items"], json!([]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_callbacks_are_stored_once() {
    let mut demo = Demo::start(fast()).await;
    let call = demo.place_ok("972541116037").await;
    let finished = demo.finished(&[&call]).await;
    let sent = &finished[call["id"].as_str().unwrap()];
    assert_eq!(statuses(sent), [("busy", Ok(204)), ("busy", Ok(204))]);
    let outcome = demo
        .get_json(&format!("/v1/outcomes/{}", sent.conversation_uuid))
        .await;
    assert_eq!(outcome["status"], "busy");
    assert_eq!(outcome["event_count"], 1);

    let mut demo = Demo::start(SimulatorConfig {
        duplicates: true,
        ..fast()
    })
    .await;
    let call = demo.place_ok("972541116034").await;
    let finished = demo.finished(&[&call]).await;
    let sent = &finished[call["id"].as_str().unwrap()];
    assert_eq!(
        statuses(sent),
        [("rejected", Ok(204)), ("rejected", Ok(204))]
    );
    let outcome = demo
        .get_json(&format!("/v1/outcomes/{}", sent.conversation_uuid))
        .await;
    assert_eq!(
        (&outcome["status"], &outcome["event_count"]),
        (&json!("rejected"), &json!(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_callbacks_keep_the_latest_as_outcome() {
    for (config, to, latest, earlier) in [
        (fast(), "972541116038", "cancelled", "busy"),
        (
            SimulatorConfig {
                out_of_order: true,
                ..fast()
            },
            "972541116036",
            "failed",
            "busy",
        ),
    ] {
        let mut demo = Demo::start(config).await;
        let call = demo.place_ok(to).await;
        let finished = demo.finished(&[&call]).await;
        let sent = &finished[call["id"].as_str().unwrap()];
        // The later event arrives first.
        assert_eq!(statuses(sent), [(latest, Ok(204)), (earlier, Ok(204))]);
        assert!(sent.callbacks[0].timestamp > sent.callbacks[1].timestamp);
        let outcome = demo
            .get_json(&format!("/v1/outcomes/{}", sent.conversation_uuid))
            .await;
        assert_eq!(outcome["status"], latest, "{outcome}");
        assert_eq!(outcome["event_count"], 2);
        assert_eq!(event_statuses(&outcome), [earlier, latest]);
        let occurred: chrono::DateTime<chrono::Utc> =
            outcome["occurred_at"].as_str().unwrap().parse().unwrap();
        let sent_at: chrono::DateTime<chrono::Utc> = sent.callbacks[0].timestamp.parse().unwrap();
        assert_eq!(occurred, sent_at);
        let call = demo
            .get_json(&format!("/v1/calls/{}", call["id"].as_str().unwrap()))
            .await;
        assert_eq!(call["outcome"]["status"], latest);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_rate_callhook_answers_429_with_retry_after() {
    let demo = Demo::start(SimulatorConfig {
        rate_per_second: 0.1,
        ..fast()
    })
    .await;
    demo.place_ok("972541116030").await;
    let response = demo.place(AGENT, "972541116030").await;
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    let problem: Value = response.json().await.unwrap();
    let call = demo
        .get_json(&format!(
            "/v1/calls/{}",
            problem["call_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(call["state"], "rejected");
    assert_eq!(call["error"]["status"], 429);
    // The limit is per agent.
    let response = demo.place("another-agent", "972541116030").await;
    assert_eq!(response.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_401_upstream_and_502_from_callhook() {
    let demo = Demo::start_with(fast(), &[("vgai-api-key", "not-the-key")]).await;
    let response = demo.place(AGENT, "972541116032").await;
    assert_eq!(response.status(), 502);
    let problem: Value = response.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("VGAI_API_KEY"));
    assert!(!problem.to_string().contains("not-the-key"));
    let call = demo
        .get_json(&format!(
            "/v1/calls/{}",
            problem["call_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(call["error"]["status"], 401);

    let body = json!({"agent_id": AGENT, "to": "972541116032"});
    assert_upstream_error(demo.make_call(None, &body).await, 401).await;
    assert_upstream_error(demo.make_call(Some("not-the-key"), &body).await, 401).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_answers_like_the_platform() {
    let demo = Demo::start(fast()).await;
    for to in [
        "+972541116032",
        "0541116032",
        "972 54 111 6032",
        "97254CALLME",
        "123456",
        "sip:",
    ] {
        let body = json!({"agent_id": AGENT, "to": to});
        assert_upstream_error(demo.make_call(Some(KEY), &body).await, 400).await;
    }
    assert_upstream_error(
        demo.make_call(Some(KEY), &json!({"agent_id": AGENT})).await,
        400,
    )
    .await;

    let response = demo
        .make_call(
            Some(KEY),
            &json!({"agent_id": AGENT, "to": "972541116030",
                    "session_parameters": [{"name": "CALLER_NAME", "value": "Diane"}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let accepted: Value = response.json().await.unwrap();
    uuid::Uuid::parse_str(accepted["session_id"].as_str().unwrap()).unwrap();
    let start = accepted["session_start_time"].as_str().unwrap();
    assert_eq!(start.len(), "2020-10-14T09:42:07.151657".len(), "{start}");
    chrono::NaiveDateTime::parse_from_str(start, "%Y-%m-%dT%H:%M:%S%.6f").unwrap();

    let response = demo
        .make_call(
            Some(KEY),
            &json!({"agent_id": "fail-500", "to": "972541116030"}),
        )
        .await;
    assert_upstream_error(response, 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_agents_are_404() {
    let demo = Demo::start(SimulatorConfig {
        agents: Some(vec![AGENT.to_owned()]),
        ..fast()
    })
    .await;
    let response = demo.place("no-such-agent", "972541116032").await;
    assert_eq!(response.status(), 404);
    let body = json!({"agent_id": "no-such-agent", "to": "972541116032"});
    assert_upstream_error(demo.make_call(Some(KEY), &body).await, 404).await;
    demo.place_ok("972541116030").await;

    // Without an agent list every agent exists, except the reserved fail-404.
    let demo = Demo::start(fast()).await;
    assert_eq!(demo.place("any-agent", "972541116030").await.status(), 201);
    assert_eq!(demo.place("fail-404", "972541116030").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_agents_fail_and_hang() {
    let demo = Demo::start_with(fast(), &[("vgai-timeout-secs", "0.3")]).await;
    let response = demo.place("fail-500", "972541116032").await;
    assert_eq!(response.status(), 502);
    let problem: Value = response.json().await.unwrap();
    let call = demo
        .get_json(&format!(
            "/v1/calls/{}",
            problem["call_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(call["state"], "failed");

    let response = demo.place("fail-hang", "972541116032").await;
    assert_eq!(response.status(), 504);
    let problem: Value = response.json().await.unwrap();
    let call = demo
        .get_json(&format!(
            "/v1/calls/{}",
            problem["call_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(call["state"], "unknown");
}
