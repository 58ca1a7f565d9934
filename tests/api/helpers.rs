//! A real callhook on a real socket, over a fresh database per test.

use callhook::cli::Cli;
use callhook::config::Config;
use clap::Parser;
use reqwest::{Client, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const TOKEN: &str = "test-token-0123456789";
pub const SECRET: &str = "ingest-secret-0123456789";
pub const VGAI_KEY: &str = "vgai-key-do-not-leak-42";
pub const PUBLIC_URL: &str = "https://callhook.example.com";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one test per backend for each named `async fn(Backend)` of the module.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )*
        }
    };
}

pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub database_url: String,
    flags: Vec<(String, String)>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The temporary directory of a SQLite file, which lives as long as the app.
    dir: Option<tempfile::TempDir>,
}

/// A fresh, empty database of `backend`; the temporary directory holds a SQLite file.
pub async fn fresh_database(backend: Backend) -> (String, Option<tempfile::TempDir>) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("callhook.db").display());
            (url, Some(dir))
        }
        Backend::Postgres => {
            let admin = std::env::var("CALLHOOK_TEST_DATABASE_URL").expect(
                "CALLHOOK_TEST_DATABASE_URL is not set: run the tests with scripts/test, \
                 which starts a throwaway PostgreSQL",
            );
            let name = format!("callhook_test_{}", uuid::Uuid::new_v4().simple());
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                .await
                .expect("connect to the test PostgreSQL server");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap();
            let base = admin.rsplit_once('/').unwrap().0;
            (format!("{base}/{name}"), None)
        }
    }
}

/// Settings of a test app, as flags (same names as the environment variables).
pub fn default_flags() -> Vec<(String, String)> {
    [
        ("api-tokens", TOKEN),
        ("ingest-secret", SECRET),
        ("public-url", PUBLIC_URL),
        // A database error must fail a test, not vanish into a spool; the outage tests
        // turn the spool on.
        ("spool-dir", "off"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, default_flags()).await
    }

    pub async fn spawn_with(backend: Backend, mut flags: Vec<(String, String)>) -> Self {
        let (database_url, dir) = fresh_database(backend).await;
        flags.insert(0, ("database-url".into(), database_url));
        let mut app = Self::spawn_on(flags).await;
        app.dir = dir;
        app
    }

    /// An app on the database that `flags` name (`database-url`), e.g. to restart on it.
    pub async fn spawn_on(flags: Vec<(String, String)>) -> Self {
        let database_url = flags
            .iter()
            .find(|(k, _)| k == "database-url")
            .map(|(_, v)| v.clone())
            .expect("a database-url flag");
        let mut argv = vec!["callhook".to_owned()];
        argv.extend(flags.iter().map(|(k, v)| format!("--{k}={v}")));
        let kept = flags.clone();
        let config = Config::from_args(Cli::try_parse_from(argv).unwrap().serve).unwrap();
        let store = callhook::open_store(&config).await.unwrap();
        let app = callhook::app(callhook::state(&config, store).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(callhook::serve(listener, app, async move {
            let _ = rx.await;
        }));
        Self {
            base,
            client: Client::new(),
            database_url,
            flags: kept,
            shutdown: Some(tx),
            server: Some(server),
            dir: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// The text of an unauthenticated endpoint (`/metrics`, `/healthz`, …).
    pub async fn text(&self, path: &str) -> String {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        assert!(response.status().is_success(), "GET {path}");
        response.text().await.unwrap()
    }

    /// The JSON of an unauthenticated endpoint (`/healthz`, `/openapi.json`, …).
    pub async fn public_json(&self, path: &str) -> Value {
        serde_json::from_str(&self.text(path).await).unwrap()
    }

    /// Posts a raw body to the shared status URL.
    pub async fn post_status_raw(&self, body: impl Into<reqwest::Body>) -> Response {
        self.client
            .post(self.url(&format!("/v1/status/{SECRET}")))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_status(&self, callback: &Value) -> Response {
        self.post_status_raw(callback.to_string()).await
    }

    /// Stops accepting connections and waits for requests in flight.
    /// Stops the app and starts another with the same settings on the same database (a
    /// SQLite file is kept across).
    pub async fn restart(mut self) -> Self {
        let dir = self.dir.take();
        let flags = std::mem::take(&mut self.flags);
        self.shutdown().await;
        let mut app = Self::spawn_on(flags).await;
        app.dir = dir;
        app
    }

    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

/// Runs `sql` on the app's database over a connection of its own.
pub async fn execute_sql(app: &TestApp, sql: &str) {
    use sqlx::Connection;
    if app.database_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
            .await
            .unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(&app.database_url)
            .await
            .unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    }
}

/// A documented-shape callback.
pub fn callback(conversation_uuid: &str, status: &str, timestamp: &str) -> Value {
    json!({
        "agent_id": "60c09d70e6a68858f4220848",
        "to": "972542233016",
        "conversation_uuid": conversation_uuid,
        "status": status,
        "timestamp": timestamp,
    })
}

/// Asserts a problem+json answer with `status`, returning the document.
pub async fn assert_problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string());
    body
}

/// The fields named by a validation problem's `errors`.
pub fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .expect("a validation problem has errors")
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

/// The value of one series in a Prometheus text exposition (0 when absent).
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}
