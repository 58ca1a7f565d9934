//! The console in a real headless Chromium, driven over WebDriver (fantoccini, through
//! chromedriver), against callhook with calls placed through the built-in AI Studio
//! simulator: the token prompt, the charts' counts, opening an outcome, pausing a campaign,
//! a phone-sized screen, and no error on the page. Screenshots go to the test output
//! (`target/tmp/console*.png`). Needs `chromium` and `chromedriver` (scripts/test installs
//! them).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use callhook::cli::Cli;
use callhook::config::Config;
use callhook::simulator::config::SimulatorConfig;
use callhook::simulator::{self, Simulator};
use clap::Parser;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::net::TcpListener;

#[allow(dead_code)]
#[path = "api/receiver.rs"]
mod receiver;

use receiver::{Receiver, Reply};

const KEY: &str = "simulated-vgai-key-0123456789";
const TOKEN: &str = "console-token-0123456789";
const SECRET: &str = "console-ingest-secret-0123456789";
const AGENT: &str = "60c09d70e6a68858f4220848";
/// Long enough for anything the page waits on, on a loaded machine.
const WAIT: Duration = Duration::from_secs(20);

/// chromedriver on a port of its choosing, and a headless Chromium session through it.
struct Browser {
    driver: Child,
    client: Client,
}

impl Browser {
    async fn start() -> Self {
        let mut driver = Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (scripts/test installs chromium and chromium-driver)");
        let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("chromedriver exited before listening")
                .unwrap();
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                break rest.trim_end_matches('.').to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                            "--disable-dev-shm-usage", "--window-size=1280,1700"]}),
        );
        // chromedriver listens on loopback: plain HTTP.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Self { driver, client }
    }

    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} within {WAIT:?}: {e}"))
    }

    async fn attribute(&self, css: &str, name: &str) -> String {
        self.wait_for(css)
            .await
            .attr(name)
            .await
            .unwrap()
            .unwrap_or_default()
    }

    /// What the page wrote to the browser's console, as chromedriver collects it.
    async fn console_log(&self) -> Vec<Value> {
        match self.client.issue_cmd(BrowserLog).await.unwrap() {
            Value::Array(entries) => entries,
            other => panic!("not a log: {other}"),
        }
    }

    async fn screenshot(&self, name: &str) -> String {
        let path = format!("{}/{name}.png", env!("CARGO_TARGET_TMPDIR"));
        std::fs::write(&path, self.client.screenshot().await.unwrap()).unwrap();
        path
    }

    async fn close(self) {
        let Self { mut driver, client } = self;
        client.close().await.unwrap();
        let _ = driver.kill();
        let _ = driver.wait();
    }
}

/// chromedriver's command for the browser's console log.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// callhook with its tokens, placing calls through an in-process simulator.
async fn serve() -> (String, tempfile::TempDir) {
    let simulator_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let simulator_url = format!("http://{}", simulator_listener.local_addr().unwrap());
    let config = SimulatorConfig {
        callback_delay: Duration::from_millis(100),
        rate_per_second: 0.0,
        ..SimulatorConfig::new(KEY)
    };
    tokio::spawn(simulator::serve(
        simulator_listener,
        Simulator::new(config),
        std::future::pending(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let database_url = format!("sqlite://{}", dir.path().join("callhook.db").display());
    let spool = dir.path().join("spool").display().to_string();
    let argv = [
        "callhook".to_owned(),
        format!("--database-url={database_url}"),
        format!("--spool-dir={spool}"),
        format!("--api-tokens={TOKEN}"),
        format!("--ingest-secret={SECRET}"),
        format!("--public-url={base}"),
        format!("--vgai-base-url={simulator_url}"),
        format!("--vgai-api-key={KEY}"),
        "--answer-grace-secs=1".to_owned(),
        "--webhook-allow-private=true".to_owned(),
        "--webhook-retry-schedule=".to_owned(),
    ];
    let config = Config::from_args(Cli::try_parse_from(argv).unwrap().serve).unwrap();
    let store = callhook::open_store(&config).await.unwrap();
    let app = callhook::app(callhook::state(&config, store).unwrap());
    tokio::spawn(callhook::serve(listener, app, std::future::pending()));
    (base, dir)
}

async fn api(base: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// Places calls whose numbers make the simulator answer busy (…2), timeout (…3) or
/// nothing, i.e. answered (…1), and waits until each has its result.
async fn place_calls(base: &str) {
    let numbers = [
        "447700900012",
        "447700900022",
        "447700900032",
        "447700900013",
        "447700900023",
        "447700900011",
        "447700900021",
    ];
    for to in numbers {
        api(
            base,
            reqwest::Method::POST,
            "/v1/calls",
            Some(json!({"agent_id": AGENT, "to": to})),
        )
        .await;
    }
    let started = Instant::now();
    loop {
        let pending = api(base, reqwest::Method::GET, "/v1/calls?result=pending", None).await;
        if pending["items"].as_array().unwrap().is_empty() {
            return;
        }
        assert!(started.elapsed() < WAIT, "calls still pending: {pending}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_calls_results_and_campaigns_and_pauses_a_campaign() {
    let (base, _dir) = serve().await;
    // Two receivers of the outcomes: one takes them, one fails them (with no retries).
    let (taking, failing) = (Receiver::start().await, Receiver::start().await);
    failing.otherwise(Some(Reply::Status(500)));
    let mut subscriptions = Vec::new();
    for receiver in [&taking, &failing] {
        let subscription = api(
            &base,
            reqwest::Method::POST,
            "/v1/webhooks",
            Some(json!({"url": receiver.url(), "events": ["outcome.updated"]})),
        )
        .await;
        subscriptions.push(subscription["id"].as_str().unwrap().to_owned());
    }
    place_calls(&base).await;
    let started = Instant::now();
    loop {
        let log = api(
            &base,
            reqwest::Method::GET,
            &format!("/v1/webhooks/{}/deliveries?status=failed", subscriptions[1]),
            None,
        )
        .await;
        if log["items"].as_array().unwrap().len() == 5 {
            break;
        }
        assert!(started.elapsed() < WAIT, "not failed: {log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    taking.wait_for(5, WAIT).await;
    let start_at = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let campaign = api(
        &base,
        reqwest::Method::POST,
        "/v1/campaigns",
        Some(json!({
            "name": "Console reminders",
            "agent_id": AGENT,
            "start_at": start_at,
            "destinations": [{"to": "447700900041"}, {"to": "447700900042"}],
        })),
    )
    .await;
    let campaign_id = campaign["id"].as_str().unwrap().to_owned();
    assert_eq!(campaign["state"], "scheduled");

    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!("{base}/console"))
        .await
        .unwrap();
    // The data needs a token: the page asks for one, and keeps it for the tab.
    browser.wait_for("#token-dialog[open]").await;
    browser
        .wait_for("#token-input")
        .await
        .send_keys(TOKEN)
        .await
        .unwrap();
    browser.wait_for("#token-save").await.click().await.unwrap();
    browser.wait_for("body[data-loaded=true]").await;

    // Callbacks by status: the simulator's three busy and two timeout callbacks.
    for (status, count) in [("busy", "3"), ("timeout", "2")] {
        let css = format!("#timeline-legend li[data-status={status}]");
        assert_eq!(
            browser.attribute(&css, "data-count").await,
            count,
            "{status}"
        );
    }
    assert_eq!(
        browser.attribute("#timeline-chart", "data-total").await,
        "5"
    );
    // Call results of the window, answered inferred for the two without a callback.
    for (result, count) in [("busy", "3"), ("timeout", "2"), ("answered", "2")] {
        let css = format!("#results-chart rect[data-result={result}]");
        assert_eq!(
            browser.attribute(&css, "data-count").await,
            count,
            "{result}"
        );
    }
    let calls = browser
        .client
        .find_all(Locator::Css("#calls tbody tr.openable"))
        .await
        .unwrap();
    assert_eq!(calls.len(), 7);
    let outcomes = browser
        .client
        .find_all(Locator::Css("#outcomes tbody tr.openable"))
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 5);

    // An outcome opens to its events and their raw payloads.
    outcomes[0].click().await.unwrap();
    browser.wait_for("#detail[open]").await;
    let detail = browser.wait_for("#detail-body").await.text().await.unwrap();
    assert!(
        detail.contains("\"events\"") && detail.contains("\"payload\""),
        "{detail}"
    );
    browser
        .wait_for("#detail button[type=submit]")
        .await
        .click()
        .await
        .unwrap();

    // A call opens without its status URL, whose signature is a credential.
    calls[0].click().await.unwrap();
    browser.wait_for("#detail[open]").await;
    let detail = browser.wait_for("#detail-body").await.text().await.unwrap();
    assert!(detail.contains("\"result\""), "{detail}");
    assert!(!detail.contains("status_url"), "{detail}");
    browser
        .wait_for("#detail button[type=submit]")
        .await
        .click()
        .await
        .unwrap();

    // Pausing the campaign from the page pauses it.
    let row = format!("#campaigns tr[data-id='{campaign_id}']");
    browser
        .wait_for(&format!("{row} button[data-action=pause]"))
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for(&format!("{row}[data-state=paused]")).await;
    let paused = api(
        &base,
        reqwest::Method::GET,
        &format!("/v1/campaigns/{campaign_id}"),
        None,
    )
    .await;
    assert_eq!(paused["state"], "paused");
    browser
        .wait_for(&format!("{row} button[data-action=resume]"))
        .await;

    // Webhooks: each subscription's deliveries, its receiver by origin only; the failed
    // ones sent again from the page reach a receiver that now takes them.
    let taken = format!("#webhooks tr[data-id='{}']", subscriptions[0]);
    let failed = format!("#webhooks tr[data-id='{}']", subscriptions[1]);
    assert_eq!(browser.attribute(&taken, "data-delivered").await, "5");
    assert_eq!(browser.attribute(&failed, "data-failed").await, "5");
    let table = browser.wait_for("#webhooks").await.text().await.unwrap();
    assert!(
        !table.contains("/hooks"),
        "a receiver's path is shown: {table}"
    );
    failing.otherwise(None);
    browser
        .wait_for(&format!("{failed} button[data-action=retry]"))
        .await
        .click()
        .await
        .unwrap();
    failing.wait_for(10, WAIT).await;
    browser
        .wait_for(&format!("{failed}[data-delivered='5']"))
        .await;

    // Nothing went wrong on the page, and no secret is on it. The one error the browser
    // logs is the first request's 401, which asked for the token.
    let errors: Vec<Value> = browser
        .console_log()
        .await
        .into_iter()
        .filter(|entry| entry["level"] == "SEVERE" || entry["level"] == "WARNING")
        .filter(|entry| {
            !entry["message"]
                .as_str()
                .unwrap_or_default()
                .contains("status of 401")
        })
        .collect();
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");
    let status = browser.wait_for("#status").await;
    assert_eq!(status.attr("class").await.unwrap().unwrap_or_default(), "");
    let source = browser.client.source().await.unwrap();
    assert!(!source.contains(SECRET) && !source.contains(TOKEN));
    let wide = browser.screenshot("console").await;

    // A phone-sized screen: nothing wider than the screen but the tables' own scrolling.
    browser.client.set_window_size(390, 844).await.unwrap();
    let overflow = browser
        .client
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(overflow, json!(0), "the page scrolls sideways on a phone");
    let phone = browser.screenshot("console-phone").await;
    println!("screenshots: {wide} {phone}");
    browser.close().await;
}
