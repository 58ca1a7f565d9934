//! callhook: places outbound calls for Vonage AI Studio agents, stores every status callback
//! keyed by `conversation_uuid`, and answers what happened to each call over HTTP.

pub mod calls;
pub mod campaigns;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod ingest;
pub mod simulator;
pub mod store;
pub mod telemetry;
pub mod upstream;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::calls::CallPlacer;
use crate::calls::results::Inference;
use crate::calls::status_url::StatusUrlSigner;
use crate::config::Config;
use crate::http::AppState;
use crate::http::auth::SecretSet;
use crate::http::server::App;
use crate::ingest::rejections::Rejections;
use crate::ingest::spool::Spool;
use crate::ingest::{BatchSettings, Ingestor};
use crate::store::health::DatabaseHealth;
use crate::store::{Store, StoreError};

/// Connects to the configured database and applies its migrations.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    let store = store::connect(&config.database_url).await?;
    store.migrate().await?;
    Ok(store)
}

/// The state handlers share, built from a validated configuration and an open store. Fails
/// when the spool directory cannot be opened.
pub fn state(config: &Config, store: Arc<dyn Store>) -> std::io::Result<AppState> {
    telemetry::register_counters();
    let signer = StatusUrlSigner::new(config.ingest_secret.as_ref());
    let placer = CallPlacer::new(
        store.clone(),
        signer.clone(),
        config.vgai_api_key.clone(),
        &config.vgai_base_url,
        config.vgai_region,
        config.public_url.clone(),
        config.vgai_timeout,
    );
    let spool = config
        .spool_dir
        .as_deref()
        .map(|dir| {
            Spool::open(dir).map_err(|err| {
                std::io::Error::new(
                    err.kind(),
                    format!("CALLHOOK_SPOOL_DIR {}: {err}", dir.display()),
                )
            })
        })
        .transpose()?;
    let database = Arc::new(DatabaseHealth::default());
    let wake = campaigns::Wake::default();
    let placer = Arc::new(placer);
    Ok(AppState {
        ingestor: Ingestor::start(
            store.clone(),
            spool,
            BatchSettings::for_backend(
                store.backend(),
                config.ingest_batch_max,
                config.ingest_queue_max,
            ),
            database.clone(),
            wake.clone(),
        ),
        rejections: Rejections::new(store.clone(), config.rejected_max),
        inference: Arc::new(Inference::start(
            store.clone(),
            config.answer_grace,
            wake.clone(),
        )),
        dispatcher: Arc::new(campaigns::Dispatcher::start(
            store.clone(),
            placer.clone(),
            wake,
            campaigns::Timing::for_upstream_timeout(config.vgai_timeout),
        )),
        deliverer: Arc::new(webhooks::Deliverer::start(
            store.clone(),
            config.webhooks.clone(),
        )),
        webhook_allow_private: config.webhooks.allow_private,
        store,
        placer,
        api_tokens: SecretSet::new(&config.api_tokens),
        ingest_secret: config.ingest_secret.as_ref().map(|s| SecretSet::new([s])),
        metrics: telemetry::metrics_handle(),
        request_timeout: config.request_timeout,
        connections: config.connections,
        database,
    })
}

/// The whole application: its router (`App::router` drives it in-process) and the bounds
/// its connections are served within.
pub fn app(state: AppState) -> App {
    App {
        limits: state.connections,
        dispatcher: state.dispatcher.clone(),
        deliverer: state.deliverer.clone(),
        router: http::router(state),
    }
}

/// Serves `app` on an already-bound listener until `shutdown` completes, then finishes the
/// requests in flight within the configured grace period.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    http::server::serve(listener, app, shutdown).await
}
