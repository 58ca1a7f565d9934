//! `/v1/calls`: place a call (with `Idempotency-Key`), read one, list them.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, Problem};
use super::extract::{AnyJson, Json, QueryParams};
use super::{answer, forwarded};
use crate::calls::PlaceError;
use crate::calls::idempotency::{self, Once};
use crate::domain::call::{Call, CallFilter, CallState};
use crate::domain::call_request::CallRequest;
use crate::domain::page::Page;
use crate::store::StoredAnswer;

const IDEMPOTENCY_HEADER: &str = "idempotency-key";
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

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
    request_body = crate::domain::call_request::CreateCall,
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
    let status_base = forwarded::status_base(state.placer.public_url(), &headers)?;
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
        ("result" = Option<String>, Query, description = "Comma-separated results (answered, busy, timeout, …, not_placed, unknown), `pending` for none yet"),
        ("campaign_id" = Option<String>, Query, format = Uuid, description = "Calls a campaign placed"),
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
    let states = query.list_of(
        "state",
        CallState::parse,
        "initiated, rejected, failed or unknown",
    );
    let filter = CallFilter {
        agent_id: query.string("agent_id"),
        to: query.destination("to"),
        states,
        outcome_statuses: query.list("outcome"),
        results: query.list("result"),
        campaign_id: query.uuid("campaign_id"),
        since: query.timestamp("since"),
        until: query.timestamp("until"),
    };
    let page = query.page_keyed_by_uuid();
    query.finish()?;
    Ok(Json(state.read(state.store.calls(&filter, &page)).await?))
}
