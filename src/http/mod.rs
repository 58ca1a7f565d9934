//! The HTTP surface: routing, middleware and one module per resource. Only this module
//! knows about axum.

pub mod answer;
pub mod auth;
pub mod calls;
pub mod campaigns;
pub mod console;
pub mod error;
pub mod extract;
pub mod forwarded;
pub mod ops;
pub mod outcomes;
pub mod rejected;
pub mod server;
pub mod stats;
pub mod status;
pub mod trace;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::LatencyUnit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::calls::CallPlacer;
use crate::ingest::Ingestor;
use crate::ingest::rejections::Rejections;
use crate::store::health::DatabaseHealth;
use crate::store::{Store, StoreError};
use auth::SecretSet;
use error::{ApiError, problem_response};

/// Largest request body on routes other than the status URLs.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// Everything a handler may use, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub ingestor: Ingestor,
    pub rejections: Rejections,
    pub placer: Arc<CallPlacer>,
    pub api_tokens: SecretSet,
    /// `None` runs the shared status URL open (loopback only).
    pub ingest_secret: Option<SecretSet>,
    pub metrics: PrometheusHandle,
    pub request_timeout: Duration,
    pub connections: crate::config::ConnectionLimits,
    pub database: Arc<DatabaseHealth>,
    /// Infers answered calls while any handle on the state lives.
    pub inference: Arc<crate::calls::results::Inference>,
    /// Dials campaigns while any handle on the state lives.
    pub dispatcher: Arc<crate::campaigns::Dispatcher>,
    /// Sends webhook deliveries while any handle on the state lives.
    pub deliverer: Arc<crate::webhooks::Deliverer>,
    /// Webhook subscriptions may target loopback and private addresses.
    pub webhook_allow_private: bool,
}

impl AppState {
    /// Runs a read of the store: within a deadline, short once the database is known to be
    /// unavailable, which answers 503.
    pub async fn read<T>(
        &self,
        query: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, ApiError> {
        Ok(self.database.read(query).await?)
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "callhook",
        description = "Places outbound calls for Vonage AI Studio agents, receives their status callbacks, and answers what happened to each call."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "calls", description = "Outbound calls placed through AI Studio"),
        (name = "status", description = "Status URLs that AI Studio posts callbacks to"),
        (name = "outcomes", description = "What happened to each conversation"),
        (name = "campaigns", description = "Lists of destinations dialled at a pace, with redials and calling hours"),
        (name = "webhooks", description = "Subscriptions that receive outcomes, call results and campaign completions, signed per Standard Webhooks"),
        (name = "stats", description = "Counts over a time window"),
        (name = "ops", description = "Health, metrics and this document"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes and their OpenAPI description, before state and middleware.
fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::new()
        .routes(routes!(calls::create_call, calls::list_calls))
        .routes(routes!(calls::get_call))
        .routes(routes!(outcomes::list_outcomes))
        .routes(routes!(outcomes::get_outcome))
        .routes(routes!(stats::stats))
        .routes(routes!(stats::timeline))
        .routes(routes!(rejected::list_rejected))
        .routes(routes!(campaigns::get_campaign))
        .routes(routes!(campaigns::list_destinations))
        .routes(routes!(campaigns::pause_campaign))
        .routes(routes!(campaigns::resume_campaign))
        .routes(routes!(campaigns::cancel_campaign))
        .routes(routes!(webhooks::create_webhook, webhooks::list_webhooks))
        .routes(routes!(
            webhooks::get_webhook,
            webhooks::update_webhook,
            webhooks::delete_webhook
        ))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::retry_delivery))
        .merge(
            // The routes that take destinations take up to 100,000 of them in one body.
            OpenApiRouter::new()
                .routes(routes!(
                    campaigns::create_campaign,
                    campaigns::list_campaigns
                ))
                .routes(routes!(campaigns::add_destinations))
                .layer(DefaultBodyLimit::max(campaigns::MAX_BULK_BODY_BYTES)),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_bearer,
        ));
    let status = OpenApiRouter::new()
        .routes(routes!(status::ingest_shared))
        .routes(routes!(status::ingest_for_call));
    let ops = OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi))
        .routes(routes!(console::page))
        .routes(routes!(console::script))
        .routes(routes!(console::style));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(api)
        .merge(status)
        .merge(ops)
}

/// The whole application: routes, state and middleware.
pub fn router(state: AppState) -> Router {
    let (router, document) = routes(&state).split_for_parts();
    let document = ops::OpenApiDocument(
        document
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
            .into(),
    );
    let timeout = state.request_timeout;
    router
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::Other {
                status: StatusCode::METHOD_NOT_ALLOWED,
                detail: "method not allowed on this route".into(),
            }
        })
        .with_state(state)
        .layer(Extension(document))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Innermost first: each layer wraps the ones above it.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(CatchPanicLayer::custom(panic_problem))
        .layer(middleware::map_response(problem_for_bare_errors))
        .layer(middleware::from_fn(record_metrics))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(trace::request_span)
                .on_request(())
                .on_response(
                    DefaultOnResponse::new()
                        .level(tracing::Level::INFO)
                        .latency_unit(LatencyUnit::Millis),
                )
                // The response line carries the status, and ApiError logs the cause of a 5xx:
                // a third line per failure would only repeat them.
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::map_request(trace::drop_unusable_request_id))
}

/// Counts requests by route, method and status, with a latency histogram. Every label takes
/// one of a fixed set of values, whatever a client sends: route templates (else
/// `unmatched`), the methods the API knows (else `other`), and status codes.
async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = trace::method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("route", route),
        ("method", method.to_owned()),
        ("status", status),
    ];
    metrics::counter!("callhook_http_requests_total", &labels).increment(1);
    metrics::histogram!("callhook_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Error responses made by middleware without a body (timeouts) become problem documents.
async fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    if (status.is_client_error() || status.is_server_error())
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        let detail = match status {
            StatusCode::REQUEST_TIMEOUT => "the request took too long and was abandoned",
            _ => status.canonical_reason().unwrap_or("error"),
        };
        let mut problem = problem_response(status, detail.to_owned(), None);
        for (name, value) in response.headers() {
            problem.headers_mut().entry(name).or_insert(value.clone());
        }
        return problem;
    }
    response
}

fn panic_problem(_: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    tracing::error!("a request handler panicked");
    problem_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "an internal error occurred; it has been logged".into(),
        None,
    )
    .into_response()
}
