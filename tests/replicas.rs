//! Call results with several replicas of the binary on one PostgreSQL database, and across a
//! crash: every call is inferred `answered` exactly once, counted by the replicas' own
//! metrics. AI Studio is stood in for by a real local server (wiremock). Needs the test
//! PostgreSQL that `scripts/test` starts. (Two replicas' rounds seldom overlap here; the race
//! itself, several inferences at once in tight loops, is `store::…replicas_inferring_at_once…`
//! in the HTTP suite, which fails when the inference does not recheck or skip locked rows.)

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

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
                ("CALLHOOK_PUBLIC_URL", "https://callhook.example.com"),
                ("CALLHOOK_ANSWER_GRACE_SECS", grace),
                ("CALLHOOK_SPOOL_DIR", spool.to_str().unwrap()),
                ("CALLHOOK_LOG_FORMAT", "json"),
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

    /// The first page of calls with `result`.
    async fn calls(&self, result: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}/v1/calls?result={result}&limit=1000", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
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
