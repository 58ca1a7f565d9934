//! A stand-in for AI Studio's make-call API: a real HTTP server on a local port that records
//! every request with its arrival instant and answers each destination by a script.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How long a hanging answer takes: far past any client timeout a test sets.
const HANG: Duration = Duration::from_secs(30);

/// One scripted answer to a make-call request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 with a fresh `session_id`.
    Accept,
    /// An error status with AI Studio's `{"status", "message"}` body.
    Status(u16),
    /// 429 with `Retry-After` in seconds.
    TooMany(u64),
    /// No answer within the client's timeout.
    Hang,
    /// 200 after this many milliseconds.
    #[allow(dead_code)] // the replica tests answer slowly; the HTTP suite does not
    Slow(u64),
}

/// A make-call request as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    pub key: Option<String>,
    pub agent_id: String,
    pub to: String,
    pub status_url: String,
    /// The upstream list of `{name, value}`, or null when absent.
    pub session_parameters: Value,
    pub hangup_on_answer_machine: Option<bool>,
}

#[derive(Default)]
struct Script {
    requests: Vec<Request>,
    /// Answers per destination (`to` as sent), consumed one per request.
    by_to: HashMap<String, VecDeque<Answer>>,
    /// The answer to every request of an agent once its destination's script is used up.
    by_agent: HashMap<String, Answer>,
}

#[derive(Default)]
struct Shared {
    script: Mutex<Script>,
    arrived: Notify,
}

/// The stand-in, serving until dropped. Unscripted requests are accepted.
pub struct Studio {
    uri: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Studio {
    /// Binds a local port, then serves on it.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared::default());
        let router = Router::new()
            .route("/telephony/make-call", post(make_call))
            .with_state(shared.clone());
        let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            uri,
            shared,
            server,
        }
    }

    /// The base URL, as `VGAI_BASE_URL`.
    pub fn uri(&self) -> String {
        self.uri.clone()
    }

    /// Queues answers for the next requests to `to` (digits as sent upstream).
    pub fn script(&self, to: &str, answers: impl IntoIterator<Item = Answer>) {
        let mut script = self.shared.script.lock().unwrap();
        script
            .by_to
            .entry(to.to_owned())
            .or_default()
            .extend(answers);
    }

    /// Answers every request of `agent_id` with `answer` (`None`: accept again), after the
    /// destination's own script.
    pub fn answer_agent(&self, agent_id: &str, answer: Option<Answer>) {
        let mut script = self.shared.script.lock().unwrap();
        match answer {
            Some(answer) => script.by_agent.insert(agent_id.to_owned(), answer),
            None => script.by_agent.remove(agent_id),
        };
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.script.lock().unwrap().requests.clone()
    }

    /// The requests to `to` so far, in arrival order.
    pub fn requests_to(&self, to: &str) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.to == to).collect()
    }

    /// The requests of `agent_id` so far, in arrival order.
    pub fn requests_of(&self, agent_id: &str) -> Vec<Request> {
        let requests = self.requests();
        requests
            .into_iter()
            .filter(|r| r.agent_id == agent_id)
            .collect()
    }

    /// Waits until at least `n` requests have arrived that `matching` selects, for at most
    /// `within`, and returns those.
    pub async fn wait_for(
        &self,
        n: usize,
        within: Duration,
        matching: impl Fn(&Request) -> bool,
    ) -> Vec<Request> {
        let deadline = Instant::now() + within;
        loop {
            // Registered before looking, so an arrival in between still wakes us.
            let arrived = self.shared.arrived.notified();
            let requests: Vec<Request> = self.requests().into_iter().filter(&matching).collect();
            if requests.len() >= n {
                return requests;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{} of {n} requests after {within:?}: {requests:#?}",
                requests.len()
            );
            let _ = tokio::time::timeout(left, arrived).await;
        }
    }

    /// Waits until at least `n` requests in all have arrived, for at most `within`.
    pub async fn wait_for_requests(&self, n: usize, within: Duration) -> Vec<Request> {
        self.wait_for(n, within, |_| true).await
    }
}

impl Drop for Studio {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn make_call(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let at = Instant::now();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
    let request = Request {
        at,
        key: headers
            .get("x-vgai-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        agent_id: text("agent_id"),
        to: text("to"),
        status_url: text("status_url"),
        session_parameters: body["session_parameters"].clone(),
        hangup_on_answer_machine: body["hangup_on_answer_machine"].as_bool(),
    };
    let answer = {
        let mut script = shared.script.lock().unwrap();
        let scripted = script
            .by_to
            .get_mut(&request.to)
            .and_then(VecDeque::pop_front);
        let answer = scripted
            .or_else(|| script.by_agent.get(&request.agent_id).copied())
            .unwrap_or(Answer::Accept);
        script.requests.push(request);
        answer
    };
    shared.arrived.notify_waiters();
    match answer {
        Answer::Accept => accepted(),
        Answer::Status(code) => refused(code, &[]),
        Answer::TooMany(seconds) => refused(429, &[(header::RETRY_AFTER, seconds.to_string())]),
        Answer::Hang => {
            tokio::time::sleep(HANG).await;
            accepted()
        }
        Answer::Slow(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            accepted()
        }
    }
}

fn accepted() -> Response {
    axum::Json(json!({
        "session_id": uuid::Uuid::new_v4().to_string(),
        "session_start_time": "2020-10-14T09:42:07.151657",
    }))
    .into_response()
}

fn refused(code: u16, headers: &[(header::HeaderName, String)]) -> Response {
    let message = match code {
        400 => "Invalid destination number format",
        401 => "Unauthorized",
        404 => "Agent not found",
        429 => "Too many requests",
        _ => "Failed to fetch preconfigured session information",
    };
    let mut response = (
        StatusCode::from_u16(code).unwrap(),
        axum::Json(json!({"status": code, "message": message})),
    )
        .into_response();
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name.clone(), value.parse().unwrap());
    }
    response
}
