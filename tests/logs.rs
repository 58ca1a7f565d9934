//! The binary's own logs, as an operator collects them: one line per request, and no secret
//! ever, whatever the traffic. AI Studio is stood in for by a real local server (wiremock).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "log-token-SECRET-0123456789";
const SECRET: &str = "log-ingest-SECRET-0123456789";
const KEY: &str = "log-vgai-key-SECRET-0123456789";

struct Service {
    child: Child,
    base: String,
    lines: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Starts the binary on port 0 and reads the bound address from its start-up log line.
    fn start(upstream: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_callhook"))
            .current_dir(dir.path())
            .env_clear()
            .envs([
                (
                    "DATABASE_URL",
                    format!("sqlite://{}", dir.path().join("logs.db").display()),
                ),
                ("CALLHOOK_BIND", "127.0.0.1:0".into()),
                ("CALLHOOK_API_TOKENS", TOKEN.into()),
                ("CALLHOOK_INGEST_SECRET", SECRET.into()),
                ("VGAI_API_KEY", KEY.into()),
                ("VGAI_BASE_URL", upstream.into()),
                ("CALLHOOK_PUBLIC_URL", "https://callhook.example.com".into()),
                ("CALLHOOK_LOG_FORMAT", "json".into()),
                ("RUST_LOG", "debug".into()),
            ])
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let address = loop {
            let line = lines.recv().expect("callhook exited before listening");
            assert_no_secret(&line);
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if event["message"] == "callhook listening" {
                break event["address"].as_str().unwrap().to_owned();
            }
        };
        Self {
            child,
            base: format!("http://{address}"),
            lines,
            _dir: dir,
        }
    }

    /// Stops the service and returns every line it logged after start-up.
    fn stop(mut self) -> Vec<String> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().unwrap();
        self.lines.iter().collect()
    }
}

fn assert_no_secret(line: &str) {
    for secret in [TOKEN, SECRET, KEY] {
        assert!(!line.contains(secret), "secret in log line: {line}");
    }
    assert!(
        !line.contains("SECRET"),
        "part of a secret in log line: {line}"
    );
}

#[tokio::test]
async fn secrets_never_reach_the_logs_and_each_request_has_a_line() {
    let upstream = MockServer::start().await;
    // An upstream that echoes the key back in its error message.
    Mock::given(method("POST"))
        .and(path("/telephony/make-call"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"status": 401, "message": format!("bad key {KEY}")})),
        )
        .mount(&upstream)
        .await;
    let service = Service::start(&upstream.uri());
    let client = reqwest::Client::new();
    let callback = json!({"conversation_uuid": "CON-log", "status": "busy", "timestamp": "2022-05-31T06:40:45Z"});

    let shared = format!("{}/v1/status/{SECRET}", service.base);
    assert_eq!(
        client
            .post(&shared)
            .body(callback.to_string())
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let wrong = format!("{}/v1/status/{SECRET}x", service.base);
    assert_eq!(
        client
            .post(&wrong)
            .body(callback.to_string())
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let outcomes = format!("{}/v1/outcomes", service.base);
    assert_eq!(
        client
            .get(&outcomes)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let wrong_token = format!("{TOKEN}x");
    assert_eq!(
        client
            .get(&outcomes)
            .bearer_auth(&wrong_token)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let call = client
        .post(format!("{}/v1/calls", service.base))
        .bearer_auth(TOKEN)
        .header("x-request-id", "req-log-check")
        .json(&json!({"agent_id": "a1", "to": "972541116037"}))
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), 502);
    assert!(!call.text().await.unwrap().contains(KEY));

    let lines = service.stop();
    for line in &lines {
        assert_no_secret(line);
    }
    let events: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    // JSON lines name their span once, not again in a list.
    assert!(
        events.iter().all(|e| e.get("spans").is_none()),
        "{lines:#?}"
    );
    // The refused placement is explained once, with the call, AI Studio's status and reason.
    let refusals: Vec<&Value> = events
        .iter()
        .filter(|e| e["message"] == "AI Studio refused the call")
        .collect();
    assert_eq!(refusals.len(), 1, "{lines:#?}");
    assert_eq!(refusals[0]["level"], "WARN");
    assert_eq!(refusals[0]["upstream_status"], 401);
    assert!(refusals[0]["call_id"].is_string());
    assert!(refusals[0]["reason"].as_str().unwrap().contains("bad key"));
    // No line repeats a response's failure beside its own.
    assert!(
        events.iter().all(|e| e["message"] != "response failed"),
        "{lines:#?}"
    );
    // One line per request, with route, status, latency and request id.
    let finished: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["message"] == "finished processing request")
        .collect();
    assert_eq!(finished.len(), 5, "{lines:#?}");
    let call_line = finished
        .iter()
        .find(|e| e["span"]["request_id"] == "req-log-check")
        .expect("the call's line carries its request id");
    assert_eq!(call_line["span"]["route"], "/v1/calls");
    assert_eq!(call_line["status"], 502);
    assert!(call_line["latency"].is_string());
    assert!(
        finished
            .iter()
            .any(|e| e["span"]["route"] == "/v1/status/{secret}")
    );
}
