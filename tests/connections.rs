//! The binary under a small open-file limit: idle connections that use up every descriptor
//! must not lock a status callback out (AI Studio does not send it again).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_past_the_open_file_limit_do_not_lock_callbacks_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\"")
        .arg(env!("CARGO_BIN_EXE_callhook"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("fd.db").display()),
        )
        .env("CALLHOOK_BIND", "127.0.0.1:0")
        .env("CALLHOOK_SPOOL_DIR", "off")
        .env("CALLHOOK_LOG_FORMAT", "json")
        // Above what 64 descriptors allow: the cap alone would not save the callback.
        .env("CALLHOOK_MAX_CONNECTIONS", "1000")
        .env("CALLHOOK_HEADER_TIMEOUT_SECS", "120")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("callhook exited before listening")
            .unwrap();
        if let Ok(event) = serde_json::from_str::<Value>(&line)
            && event["message"] == "callhook listening"
        {
            break event["address"].as_str().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));

    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    let started = Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        reqwest::Client::new()
            .post(format!("http://{address}/v1/status/anything"))
            .body(
                r#"{"conversation_uuid":"CON-fd","status":"busy","timestamp":"2022-05-31T06:40:45Z"}"#,
            )
            .send(),
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let response = response.expect("the callback was answered").unwrap();
    assert_eq!(response.status(), 204);
    assert!(started.elapsed() < Duration::from_secs(5));
}
