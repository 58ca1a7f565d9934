//! A built-in AI Studio: a plain HTTP server with the make-call endpoint and the status
//! callbacks that follow, so callhook's whole job can be seen without an AI Studio account.
//! callhook reaches it through `VGAI_BASE_URL`, by the same code path as the real platform.

mod callback;
pub mod config;
mod make_call;
pub mod plan;
mod rate;

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

pub use callback::{CallFinished, Delivered};
pub use make_call::MakeCall;

use config::SimulatorConfig;
use make_call::AcceptedCall;
use plan::PlannedCallback;
use rate::RateLimiter;

/// Finished-call notices kept for subscribers that fall behind.
const FINISHED_BACKLOG: usize = 1024;
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);

/// The simulator's shared state; cheap to clone.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    config: SimulatorConfig,
    agents: Option<HashSet<String>>,
    rate: RateLimiter,
    http: reqwest::Client,
    finished: broadcast::Sender<CallFinished>,
    closing: watch::Sender<bool>,
}

impl Simulator {
    pub fn new(config: SimulatorConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(CALLBACK_TIMEOUT)
            .user_agent(concat!("callhook-simulator/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds with static settings");
        Self {
            inner: Arc::new(Inner {
                agents: config.agents.as_ref().map(|a| a.iter().cloned().collect()),
                rate: RateLimiter::new(config.rate_per_second),
                http,
                finished: broadcast::channel(FINISHED_BACKLOG).0,
                closing: watch::channel(false).0,
                config,
            }),
        }
    }

    /// `POST /telephony/make-call` and `GET /healthz`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/telephony/make-call", post(make_call::make_call))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(self.clone())
    }

    /// A notice for every accepted call once its callbacks are delivered (or, when answered,
    /// once the callback delay has passed): lets tests wait without sleeping.
    pub fn subscribe(&self) -> broadcast::Receiver<CallFinished> {
        self.inner.finished.subscribe()
    }

    fn key_matches(&self, key: &[u8]) -> bool {
        key.ct_eq(self.inner.config.key.expose_secret().as_bytes())
            .into()
    }

    fn knows_agent(&self, agent_id: &str) -> bool {
        self.inner
            .agents
            .as_ref()
            .is_none_or(|agents| agents.contains(agent_id))
    }

    fn admit(&self, agent_id: &str) -> Result<(), u64> {
        self.inner.rate.admit(agent_id)
    }

    fn plan(&self, to: &str) -> Vec<PlannedCallback> {
        let config = &self.inner.config;
        plan::plan(to, config.duplicates, config.out_of_order)
    }

    fn callback_delay(&self) -> Duration {
        self.inner.config.callback_delay
    }

    fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    fn place(&self, call: AcceptedCall) {
        tokio::spawn(callback::deliver(self.clone(), call));
    }

    fn finished(&self, call: CallFinished) {
        // Nobody listening is the normal case outside tests.
        let _ = self.inner.finished.send(call);
    }

    /// Completes after `limit`, or sooner when the simulator is shutting down.
    async fn closing_or(&self, limit: Duration) {
        let mut closing = self.inner.closing.subscribe();
        let _ = tokio::time::timeout(limit, closing.wait_for(|closing| *closing)).await;
    }
}

/// Serves the simulator on an already-bound listener until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    simulator: Simulator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let closing = simulator.inner.closing.clone();
    axum::serve(listener, simulator.router())
        .with_graceful_shutdown(async move {
            shutdown.await;
            closing.send_replace(true);
        })
        .await
}

/// A simulator started beside callhook: where it listens, and the key it accepts.
pub struct Beside {
    pub address: SocketAddr,
    pub key: SecretString,
}

/// Starts a simulator on a free loopback port, accepting a fresh key, until the process ends.
pub async fn start_beside() -> std::io::Result<Beside> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let address = listener.local_addr()?;
    let key = hex::encode(rand::rng().random::<[u8; 16]>());
    let simulator = Simulator::new(SimulatorConfig::new(&key));
    tokio::spawn(serve(listener, simulator, std::future::pending()));
    Ok(Beside {
        address,
        key: SecretString::from(key),
    })
}

/// The address a local client uses to reach a listener bound to `bind`.
pub fn reachable(bind: SocketAddr) -> SocketAddr {
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bind.port())
}
