//! A webhook receiver: a real HTTP server on a local port that records every delivery with
//! its headers, verifies nothing itself, and answers by a script (200 once it is used up).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// One scripted answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Status(u16),
    /// This status after this many milliseconds.
    After(u64, u16),
    /// No answer for a minute: past any timeout a test sets.
    Hang,
}

/// A delivery as it arrived.
#[derive(Debug, Clone)]
pub struct Delivery {
    #[allow(dead_code)]
    pub at: Instant,
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub content_type: String,
    pub body: String,
}

impl Delivery {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap().to_owned()
    }
}

#[derive(Default)]
struct Shared {
    deliveries: Mutex<Vec<Delivery>>,
    script: Mutex<VecDeque<Reply>>,
    /// The answer once the script is used up.
    otherwise: Mutex<Option<Reply>>,
    arrived: Notify,
}

/// The receiver, serving until dropped.
pub struct Receiver {
    url: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Receiver {
    /// Binds a local port, then serves on it.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let shared = Arc::new(Shared::default());
        let router = Router::new()
            .route("/hooks", post(receive))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self {
            url,
            shared,
            server,
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The next answers, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().unwrap().extend(replies);
    }

    /// The answer to every delivery once the script is used up (`None`: 200).
    pub fn otherwise(&self, reply: Option<Reply>) {
        *self.shared.otherwise.lock().unwrap() = reply;
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.deliveries.lock().unwrap().clone()
    }

    /// Waits until `n` deliveries arrived, for at most `within`; returns them all.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Delivery> {
        let deadline = Instant::now() + within;
        loop {
            let arrived = self.shared.arrived.notified();
            let deliveries = self.deliveries();
            if deliveries.len() >= n {
                return deliveries;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{} of {n} deliveries arrived within {within:?}: {deliveries:?}",
                deliveries.len()
            );
            let _ = tokio::time::timeout(left, arrived).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    shared.deliveries.lock().unwrap().push(Delivery {
        at: Instant::now(),
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        content_type: header("content-type"),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    shared.arrived.notify_waiters();
    let reply = shared.script.lock().unwrap().pop_front();
    let reply = reply.or(*shared.otherwise.lock().unwrap());
    match reply {
        None => StatusCode::OK.into_response(),
        Some(Reply::Status(status)) => StatusCode::from_u16(status).unwrap().into_response(),
        Some(Reply::After(millis, status)) => {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            StatusCode::from_u16(status).unwrap().into_response()
        }
        Some(Reply::Hang) => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::OK.into_response()
        }
    }
}

/// Verifies a delivery's signature as the Standard Webhooks specification describes it,
/// written here from the specification, independently of callhook's signer: HMAC-SHA256 of
/// `{id}.{timestamp}.{body}`, keyed by the base64-decoded secret after `whsec_`, in base64,
/// after `v1,` (one of the space-separated signatures).
pub fn signature_verifies(delivery: &Delivery, secret: &str) -> bool {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", delivery.id, delivery.timestamp, delivery.body).as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    delivery
        .signature
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}
