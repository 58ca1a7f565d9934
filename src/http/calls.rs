//! `/v1/calls`: place a call (with `Idempotency-Key`), read one, list them.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde_json::Value;
use uuid::Uuid;

use super::AppState;
use super::answer;
use super::error::{ApiError, Problem};
use super::extract::{AnyJson, Json, QueryParams};
use crate::calls::PlaceError;
use crate::calls::idempotency::{self, Once};
use crate::domain::call::{Call, CallFilter, CallState};
use crate::domain::call_request::CallRequest;
use crate::domain::page::Page;
use crate::store::StoredAnswer;

const IDEMPOTENCY_HEADER: &str = "idempotency-key";
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The body of `POST /v1/calls`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CreateCall {
    /// The AI Studio agent that places the call (`from` is accepted as an alias).
    #[schema(example = "60c09d70e6a68858f4220848")]
    agent_id: String,
    /// A phone number with its country code, as people type it, or a SIP address.
    #[schema(example = "+972 54-111-6037")]
    to: String,
    hangup_on_answer_machine: Option<bool>,
    /// A list of `{name, value}` or an object `{"NAME": "value"}`.
    #[schema(value_type = Option<Object>)]
    session_parameters: Option<crate::domain::call::SessionParameters>,
    /// Free-form JSON object (up to 8 KiB) stored and returned with the call.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// Place an outbound call through AI Studio.
///
/// The call is recorded whatever upstream answers. With `Idempotency-Key`, a repeat of the
/// same request returns the first answer and places no second call.
#[utoipa::path(
    post,
    path = "/v1/calls",
    tag = "calls",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: same key and body, same answer, one call")),
    request_body = CreateCall,
    responses(
        (status = 201, description = "AI Studio accepted the call", body = Call),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "AI Studio has no such agent (or no published version)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this Idempotency-Key is in progress", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request, refused destination, or Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "AI Studio's rate limit; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "AI Studio refused the API key, failed, or could not be reached", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "VGAI_API_KEY is not configured, or the database is unavailable (with Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "AI Studio did not answer in time; the call may have been placed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_call(
    State(state): State<AppState>,
    headers: HeaderMap,
    AnyJson(body): AnyJson<Value>,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers)?;
    let request = CallRequest::parse(&body).map_err(ApiError::Validation)?;
    state.placer.check_configured().map_err(place_error)?;
    let status_base = status_base(state.placer.public_url(), &headers)?;
    let hash = idempotency::request_hash(&body);
    // From here on the work runs in its own task: a client that hangs up (or the request
    // timeout) drops this handler, but must not cut the exchange with AI Studio short. The
    // call record then gets upstream's answer, and the Idempotency-Key is completed (not left
    // "in progress") so that the client's retry replays that answer.
    let task = tokio::spawn(async move {
        let placed = place(&state, request, &status_base);
        let Some(key) = idempotency_key else {
            return Ok(answer::response(placed.await?, false));
        };
        match idempotency::once(state.store.as_ref(), &key, &hash, placed).await? {
            Once::Done(answer) => Ok(answer::response(answer, false)),
            Once::Replayed(answer) => Ok(answer::response(answer, true)),
            Once::Mismatch => Err(ApiError::field(
                "Idempotency-Key",
                "was already used with a different request body",
            )),
            Once::InProgress => Err(ApiError::Conflict(
                "a request with this Idempotency-Key is still in progress; retry later".into(),
            )),
        }
    });
    match task.await {
        Ok(result) => result,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => Err(ApiError::Unavailable(
            "callhook is shutting down; the call's state is in GET /v1/calls".into(),
        )),
    }
}

/// Places the call. An error means that AI Studio was not asked; once it was, the answer is
/// always kept whole, so that an `Idempotency-Key` is never freed for a call that may ring.
async fn place(
    state: &AppState,
    request: CallRequest,
    status_base: &str,
) -> Result<StoredAnswer, ApiError> {
    let agent_id = request.agent_id.clone();
    match state.placer.place(request, status_base).await {
        Ok(placement) => Ok(answer::of_placement(&placement, &agent_id)),
        Err(PlaceError::Unrecorded { call_id, error }) => {
            tracing::error!(%call_id, %error, "AI Studio was asked to place a call whose answer could not be recorded");
            Ok(answer::of_error(&answer::unrecorded(call_id)))
        }
        Err(err) => Err(place_error(err)),
    }
}

/// The base URL of the status URL AI Studio gets: `CALLHOOK_PUBLIC_URL`, or else the one this
/// request reached callhook by (`X-Forwarded-Proto` and `X-Forwarded-Host` from a proxy,
/// else `Host`), as web frameworks build absolute URLs.
fn status_base(public_url: Option<&str>, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(public_url) = public_url {
        return Ok(public_url.to_owned());
    }
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let scheme = match first("x-forwarded-proto") {
        Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    first("x-forwarded-host")
        .or_else(|| first(header::HOST.as_str()))
        .and_then(|host| host.parse::<axum::http::uri::Authority>().ok())
        .filter(|authority| !authority.as_str().contains('@'))
        .map(|authority| format!("{scheme}://{authority}"))
        .ok_or_else(|| {
            ApiError::Unavailable(
                "CALLHOOK_PUBLIC_URL is not set and the request has no Host header to build \
                 AI Studio's status URL from"
                    .into(),
            )
        })
}

fn place_error(err: PlaceError) -> ApiError {
    match err {
        PlaceError::NotConfigured(detail) => ApiError::Unavailable(detail.into()),
        PlaceError::Store(err) | PlaceError::Unrecorded { error: err, .. } => ApiError::Store(err),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|key| !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN)
        .map(|key| Some(key.to_owned()))
        .ok_or_else(|| {
            ApiError::field(
                "Idempotency-Key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
            )
        })
}

/// One call placed through callhook, with its latest outcome.
#[utoipa::path(
    get,
    path = "/v1/calls/{id}",
    tag = "calls",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = Call),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_call(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Call>, ApiError> {
    let not_found = || ApiError::NotFound(format!("no call {id:?}"));
    let uuid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    state
        .read(state.store.call(uuid))
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

/// Calls placed through callhook, newest first, with keyset paging.
#[utoipa::path(
    get,
    path = "/v1/calls",
    tag = "calls",
    security(("bearer" = [])),
    params(
        ("agent_id" = Option<String>, Query),
        ("to" = Option<String>, Query, description = "Destination, as typed or in digits"),
        ("state" = Option<String>, Query, description = "Comma-separated: initiated, rejected, failed, unknown"),
        ("outcome" = Option<String>, Query, description = "Comma-separated callback statuses"),
        ("since" = Option<String>, Query, format = DateTime, description = "RFC 3339; created_at >= since"),
        ("until" = Option<String>, Query, format = DateTime, description = "RFC 3339; created_at < until"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1–1000, default 50"),
        ("cursor" = Option<String>, Query),
    ),
    responses(
        (status = 200, body = Page<Call>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_calls(
    State(state): State<AppState>,
    mut query: QueryParams,
) -> Result<Json<Page<Call>>, ApiError> {
    let mut states = Vec::new();
    for raw in query.list("state") {
        match CallState::parse(&raw) {
            Some(s) => states.push(s),
            None => query.reject(
                "state",
                format!("unknown state {raw:?}: use initiated, rejected, failed or unknown"),
            ),
        }
    }
    let filter = CallFilter {
        agent_id: query.string("agent_id"),
        to: query.destination("to"),
        states,
        outcome_statuses: query.list("outcome"),
        since: query.timestamp("since"),
        until: query.timestamp("until"),
    };
    let page = query.page_keyed_by_uuid();
    query.finish()?;
    Ok(Json(state.read(state.store.calls(&filter, &page)).await?))
}
