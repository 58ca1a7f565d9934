//! What a client can send must not grow metrics or logs, hold connections, stall shutdown,
//! fail a query with 500, or lose a callback that carries the fields SPEC.md requires.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend_tests;
use crate::helpers::*;
use crate::outage::Outage;

backend_tests!(
    nul_in_a_filter_is_refused_not_a_server_error,
    callbacks_nested_deep_or_with_huge_numbers_are_stored,
    refused_callbacks_are_kept_newest_first,
    kept_refusals_are_bounded,
);

/// Each idle-connection test waits out a 1 s timeout; this bounds every wait.
const WAIT: Duration = Duration::from_secs(5);

fn flags(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut flags = default_flags();
    flags.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    flags
}

/// Reads until the server closes the connection; the time it took, or `None` past `WAIT`.
async fn closed_after(stream: &mut TcpStream) -> Option<Duration> {
    closed_within(stream, WAIT).await
}

async fn closed_within(stream: &mut TcpStream, patience: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(patience, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

#[tokio::test]
async fn made_up_methods_do_not_grow_metrics() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for n in 0..300 {
        let method = format!("M{n}{}", "X".repeat(200));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        for path in ["/nowhere", "/v1/outcomes"] {
            let response = app
                .client
                .request(method.clone(), app.url(path))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_client_error());
        }
    }
    let metrics = app.text("/metrics").await;
    // The registry is shared by the tests running beside this one: look at label values,
    // not at the size.
    let mut methods: Vec<&str> = metrics
        .split(r#"method=""#)
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    methods.sort_unstable();
    methods.dedup();
    assert!(methods.contains(&"other"), "{methods:?}");
    for method in &methods {
        assert!(
            [
                "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT",
                "other"
            ]
            .contains(method),
            "a client's method became a label: {}",
            &method[..method.len().min(20)]
        );
    }
}

#[tokio::test]
async fn request_ids_are_propagated_only_when_short_and_printable() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let id_for = |sent: String| {
        let request = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", sent);
        async move {
            let response = request.send().await.unwrap();
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    let short = "req-0123456789".to_owned();
    assert_eq!(id_for(short.clone()).await, short);
    let longest = "r".repeat(128);
    assert_eq!(id_for(longest.clone()).await, longest);
    for refused in ["r".repeat(129), "r".repeat(90_000 / 8), "has space".into()] {
        let answered = id_for(refused.clone()).await;
        assert_ne!(answered, refused);
        assert!(
            uuid::Uuid::parse_str(&answered).is_ok(),
            "a generated id replaces {}…: {answered}",
            &refused[..10]
        );
    }
}

#[tokio::test]
async fn idle_and_slow_connections_are_closed() {
    let app = TestApp::spawn_with(Backend::Sqlite, flags(&[("header-timeout-secs", "1")])).await;

    // A connection that never sends a byte.
    let mut idle = connect(&app).await;
    let after = closed_after(&mut idle)
        .await
        .expect("an idle connection is closed");
    assert!(
        after >= Duration::from_millis(900),
        "closed after {after:?}"
    );

    // One that sends a header byte every 200 ms, for ever.
    let mut slow = connect(&app).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    let dripping = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if slow.write_all(b"X").await.is_err() || started.elapsed() > WAIT {
                return started.elapsed();
            }
        }
    };
    let stopped = dripping.await;
    assert!(
        stopped < Duration::from_secs(3),
        "a slow sender was held for {stopped:?}"
    );

    // A keep-alive connection after its response.
    let mut kept = connect(&app).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let after = closed_after(&mut kept)
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(after < Duration::from_secs(3), "closed after {after:?}");
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn a_house_full_of_idle_connections_still_takes_callbacks() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        flags(&[("max-connections", "4"), ("header-timeout-secs", "60")]),
    )
    .await;
    let mut squatters = Vec::new();
    for _ in 0..4 {
        let mut stream = connect(&app).await;
        stream.write_all(b"POST /v1/status/").await.unwrap();
        squatters.push(stream);
    }
    let started = Instant::now();
    let response = tokio::time::timeout(
        WAIT,
        app.post_status(&callback("CON-full", "busy", "2022-05-31T06:40:45Z")),
    )
    .await
    .expect("a callback is answered while idle connections fill the house");
    assert_eq!(response.status(), 204);
    assert!(started.elapsed() < Duration::from_secs(3));
    // The callback's connection came in over the cap: the idlest one made room for it.
    let mut closed = 0;
    for (n, stream) in squatters.iter_mut().enumerate() {
        let patience = if n == 0 {
            WAIT
        } else {
            Duration::from_millis(100)
        };
        if closed_within(stream, patience).await.is_some() {
            closed += 1;
        }
    }
    assert!(closed >= 1, "no idle connection was closed to make room");
}

#[tokio::test]
async fn shutdown_ends_within_its_grace_period_with_a_stuck_client() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        flags(&[("shutdown-grace-secs", "1"), ("header-timeout-secs", "60")]),
    )
    .await;
    let mut stuck = connect(&app).await;
    stuck
        .write_all(b"POST /v1/status/x HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert_eq!(app.get("/healthz").await.status(), 200);
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), app.shutdown())
        .await
        .expect("shutdown is bounded");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    assert!(closed_after(&mut stuck).await.is_some());
}

async fn nul_in_a_filter_is_refused_not_a_server_error(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let nul_cursor = {
        use base64::Engine;
        let json = r#"{"t":1000000,"k":"a\u0000b"}"#;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    };
    for (path, field) in [
        ("/v1/outcomes?agent_id=%00", "agent_id"),
        ("/v1/outcomes?status=busy,%00", "status"),
        ("/v1/outcomes?to=%00", "to"),
        ("/v1/calls?agent_id=a%00b", "agent_id"),
        ("/v1/calls?to=%00", "to"),
        ("/v1/calls?outcome=%00", "outcome"),
        ("/v1/stats?agent_id=%00", "agent_id"),
        (&format!("/v1/outcomes?cursor={nul_cursor}"), "cursor"),
        ("/v1/rejected?cursor=%00", "cursor"),
    ] {
        let problem = assert_problem(app.get(path).await, 422).await;
        assert_eq!(error_fields(&problem), [field], "{path}");
    }
    assert_problem(app.get("/v1/outcomes/%00").await, 404).await;
    assert_problem(app.get("/v1/outcomes/CON%00-1").await, 404).await;
}

async fn callbacks_nested_deep_or_with_huge_numbers_are_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let deep = format!("{}1{}", "[".repeat(1000), "]".repeat(1000));
    let digits = "7".repeat(5000);
    for (n, extra) in [deep.as_str(), "1e999999", digits.as_str()]
        .into_iter()
        .enumerate()
    {
        let conversation = format!("CON-odd-{n}");
        let body = format!(
            r#"{{"conversation_uuid":"{conversation}","status":"busy","timestamp":"2022-05-31T06:40:45Z","to":{extra},"details":{{"x":{extra}}}}}"#
        );
        let response = app.post_status_raw(body.clone()).await;
        assert_eq!(response.status(), 204, "{}", &extra[..20.min(extra.len())]);
        let response = app.get(&format!("/v1/outcomes/{conversation}")).await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        assert!(
            text.contains(extra),
            "the raw payload is returned as stored"
        );
        assert!(
            text.contains(r#""to":null"#),
            "an unusable `to` is dropped: {}",
            &text[..300]
        );
    }
}

async fn refused_callbacks_are_kept_newest_first(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let shared = app.url(&format!("/v1/status/{SECRET}"));
    let post = |url: String, body: Vec<u8>, content_type: &'static str| {
        let request = app
            .client
            .post(url)
            .header("content-type", content_type)
            .body(body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        post(
            shared.clone(),
            b"status=busy".to_vec(),
            "application/x-www-form-urlencoded"
        )
        .await,
        400
    );
    let missing = br#"{"conversation_uuid":"CON-r","status":"busy"}"#.to_vec();
    assert_eq!(
        post(shared.clone(), missing.clone(), "application/json").await,
        422
    );
    let mut huge = b"{\"pad\":\"".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 70 * 1024));
    assert_eq!(
        post(shared.clone(), huge.clone(), "application/json").await,
        413
    );
    // Not kept: a wrong secret, and what was stored.
    let wrong = app.url("/v1/status/not-the-secret");
    assert_eq!(post(wrong, b"[]".to_vec(), "application/json").await, 401);
    let stored = callback("CON-ok", "busy", "2022-05-31T06:40:45Z").to_string();
    assert_eq!(
        post(shared.clone(), stored.into_bytes(), "application/json").await,
        204
    );

    let page = app.get_json("/v1/rejected").await;
    let items = page["items"].as_array().unwrap();
    let statuses: Vec<_> = items
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [413, 422, 400], "newest first");
    let (too_large, invalid, not_object) = (&items[0], &items[1], &items[2]);
    assert_eq!(
        too_large["body"].as_str().unwrap().len(),
        64 * 1024,
        "cut at 64 KiB"
    );
    assert!(
        too_large["body"]
            .as_str()
            .unwrap()
            .starts_with("{\"pad\":\"xxx")
    );
    assert_eq!(invalid["body"], String::from_utf8(missing).unwrap());
    assert!(
        invalid["reason"].as_str().unwrap().contains("timestamp"),
        "{invalid}"
    );
    assert_eq!(invalid["content_type"], "application/json");
    assert_eq!(not_object["body"], "status=busy");
    assert_eq!(
        not_object["content_type"],
        "application/x-www-form-urlencoded"
    );
    for item in items {
        assert!(uuid::Uuid::parse_str(item["id"].as_str().unwrap()).is_ok());
        assert!(item["received_at"].as_str().unwrap().ends_with('Z'));
    }
    // Cursor paging walks the same list.
    let first = app.get_json("/v1/rejected?limit=2").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second = app
        .get_json(&format!("/v1/rejected?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(second["items"][0]["status"], 400);
    assert_eq!(second["next_cursor"], Value::Null);
    assert_problem(
        app.client
            .get(app.url("/v1/rejected"))
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    let metrics = app.text("/metrics").await;
    assert!(
        sample(
            &metrics,
            r#"callhook_rejected_callbacks_total{reason="too_large",result="kept"}"#
        ) >= 1.0
    );
}

async fn kept_refusals_are_bounded(backend: Backend) {
    let app = TestApp::spawn_with(backend, flags(&[("rejected-max", "3")])).await;
    for n in 0..7 {
        let body = format!(r#"{{"conversation_uuid":"CON-{n}"}}"#);
        assert_eq!(app.post_status_raw(body).await.status(), 422);
    }
    let page = app.get_json("/v1/rejected?limit=10").await;
    let bodies: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        bodies,
        [6, 5, 4].map(|n| format!(r#"{{"conversation_uuid":"CON-{n}"}}"#)),
        "the oldest go first"
    );
}

#[tokio::test]
async fn reads_during_a_postgres_outage_answer_503_quickly() {
    let app = TestApp::spawn(Backend::Postgres).await;
    assert_eq!(app.get("/v1/outcomes").await.status(), 200);
    let outage = Outage::begin(&app.database_url).await;
    let first = app.get("/v1/outcomes").await;
    assert!(first.headers().contains_key("retry-after"));
    assert_problem(first, 503).await;
    // Once the outage is known, every read hears of it at once.
    for path in [
        "/v1/outcomes/CON-1",
        "/v1/calls",
        "/v1/stats",
        "/v1/rejected",
    ] {
        let started = Instant::now();
        let response = app.get(path).await;
        assert_problem(response, 503).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{path} took {:?}",
            started.elapsed()
        );
    }
    outage.end().await;
    let deadline = Instant::now() + WAIT;
    while app.get("/v1/outcomes").await.status() != 200 {
        assert!(Instant::now() < deadline, "reads never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writers that fall behind (here: SQLite's write lock held elsewhere) fill the queue; a
/// callback that finds no room within a second is answered 503 with Retry-After rather than
/// waiting out the request timeout, and those that were queued are stored once it clears.
#[tokio::test]
async fn a_full_ingest_queue_answers_503_promptly() {
    let app = TestApp::spawn_with(Backend::Sqlite, flags(&[("ingest-queue-max", "1")])).await;
    let lock = Outage::lock(&app.database_url).await;
    let started = Instant::now();
    let mut posts = tokio::task::JoinSet::new();
    for n in 0..3 {
        let request = app
            .client
            .post(app.url(&format!("/v1/status/{SECRET}")))
            .body(callback(&format!("CON-queue-{n}"), "busy", "2022-05-31T06:40:45Z").to_string());
        posts.spawn(async move { request.send().await.unwrap() });
    }
    let first = posts.join_next().await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(first.headers()["retry-after"], "1");
    assert_problem(first, 503).await;
    lock.end().await;
    while let Some(queued) = posts.join_next().await {
        assert_eq!(queued.unwrap().status(), 204);
    }
    let stored = app.get_json("/v1/outcomes").await;
    assert_eq!(stored["items"].as_array().unwrap().len(), 2);
}
