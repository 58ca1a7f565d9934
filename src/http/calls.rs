//! `/v1/calls`: place a call (with `Idempotency-Key`), read one, list them.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, PROBLEM_JSON, Problem};
use super::extract::{AnyJson, Json, QueryParams};
use crate::calls::{Failure, PlaceError, Placement};
use crate::domain::FieldError;
use crate::domain::call::{Call, CallFilter, CallState};
use crate::domain::call_request::CallRequest;
use crate::domain::page::Page;
use crate::domain::time::now;
use crate::store::Claim;

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

/// A response kept whole, so that an idempotent replay is byte-for-byte the first answer.
struct Answer {
    status: StatusCode,
    body: String,
    location: Option<Uuid>,
    retry_after: Option<u64>,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let content_type = if self.status.is_success() {
            "application/json"
        } else {
            PROBLEM_JSON
        };
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, content_type)],
            self.body,
        )
            .into_response();
        if let Some(id) = self.location
            && let Ok(location) = HeaderValue::from_str(&format!("/v1/calls/{id}"))
        {
            response.headers_mut().insert(header::LOCATION, location);
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
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
    let hash = request_hash(&body);
    // From here on the work runs in its own task: a client that hangs up (or the request
    // timeout) drops this handler, but must not cut the exchange with AI Studio short. The
    // call record then gets upstream's answer, and the Idempotency-Key is completed (not left
    // "in progress") so that the client's retry replays that answer.
    let task =
        tokio::spawn(
            async move { create(&state, idempotency_key, &hash, request, &status_base).await },
        );
    match task.await {
        Ok(result) => result,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => Err(ApiError::Unavailable(
            "callhook is shutting down; the call's state is in GET /v1/calls".into(),
        )),
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

async fn create(
    state: &AppState,
    idempotency_key: Option<String>,
    hash: &str,
    request: CallRequest,
    status_base: &str,
) -> Result<Response, ApiError> {
    let Some(key) = idempotency_key else {
        return Ok(place(state, request, status_base).await?.into_response());
    };
    match state.store.claim_idempotency_key(&key, hash, now()).await? {
        Claim::Claimed => {}
        Claim::Completed { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            // The headers of the first answer follow from its body: Location from a call's
            // id, Retry-After from a problem's retry_after.
            let stored = serde_json::from_str::<Value>(&body).unwrap_or_default();
            let location = stored
                .get("id")
                .filter(|_| status.is_success())
                .and_then(Value::as_str)
                .and_then(|id| Uuid::parse_str(id).ok());
            let retry_after = stored.get("retry_after").and_then(Value::as_u64);
            let replay = Answer {
                status,
                body,
                location,
                retry_after,
            };
            let mut response = replay.into_response();
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return Ok(response);
        }
        Claim::Mismatch => {
            return Err(ApiError::field(
                "Idempotency-Key",
                "was already used with a different request body",
            ));
        }
        Claim::InProgress => {
            return Err(ApiError::Conflict(
                "a request with this Idempotency-Key is still in progress; retry later".into(),
            ));
        }
    }
    let answer = match place(state, request, status_base).await {
        Ok(answer) => answer,
        Err(err) => {
            state.store.release_idempotency_key(&key).await?;
            return Err(err);
        }
    };
    // Once AI Studio was asked, the key keeps this answer, whatever it is: a retry replays it
    // and never rings anybody a second time. Should storing it fail, the key stays "in
    // progress" (409 until it expires), and this client still gets the answer.
    if let Err(err) = state
        .store
        .complete_idempotency_key(&key, answer.status.as_u16(), &answer.body)
        .await
    {
        tracing::error!(error = %err, "could not store the answer of an Idempotency-Key");
    }
    Ok(answer.into_response())
}

/// Places the call. An error means that AI Studio was not asked; once it was, the answer is
/// always an [`Answer`], so that an `Idempotency-Key` is never freed for a call that may ring.
async fn place(
    state: &AppState,
    request: CallRequest,
    status_base: &str,
) -> Result<Answer, ApiError> {
    let agent_id = request.agent_id.clone();
    let Placement { call, failure } = match state.placer.place(request, status_base).await {
        Ok(placement) => placement,
        Err(PlaceError::Unrecorded { call_id, error }) => {
            tracing::error!(%call_id, %error, "AI Studio was asked to place a call whose answer could not be recorded");
            let problem = Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "AI Studio was asked to place the call, but callhook could not record its \
                     answer; the call may have been placed and will not be retried \
                     automatically: see GET /v1/calls/{call_id}"
                ),
            )
            .with_call_id(call_id);
            return Ok(Answer {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: serde_json::to_string(&problem).expect("a problem serializes"),
                location: None,
                retry_after: None,
            });
        }
        Err(err) => return Err(place_error(err)),
    };
    let Some(failure) = failure else {
        return Ok(Answer {
            status: StatusCode::CREATED,
            body: serde_json::to_string(&call).expect("a call serializes"),
            location: Some(call.id),
            retry_after: None,
        });
    };
    let (problem, retry_after) = failure_problem(&failure, &agent_id, &call);
    Ok(Answer {
        status: StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_GATEWAY),
        body: serde_json::to_string(&problem.with_call_id(call.id)).expect("a problem serializes"),
        location: None,
        retry_after,
    })
}

fn failure_problem(failure: &Failure, agent_id: &str, call: &Call) -> (Problem, Option<u64>) {
    let problem = match failure {
        Failure::Refused {
            status: 404,
            message,
            ..
        } => Problem::new(
            StatusCode::NOT_FOUND,
            format!(
                "AI Studio has no agent {agent_id:?}, or no published version of it: {message}"
            ),
        ),
        Failure::Refused {
            status: 400,
            message,
            ..
        } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "AI Studio refused the destination",
        )
        .with_errors(vec![FieldError::new(
            "to",
            format!("refused by AI Studio: {message}"),
        )]),
        Failure::Refused {
            status: status @ (401 | 403),
            ..
        } => Problem::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "AI Studio refused callhook's API key ({status}): the operator must check VGAI_API_KEY"
            ),
        ),
        Failure::Refused {
            status: 429,
            retry_after,
            ..
        } => {
            let retry_after = retry_after.unwrap_or(1);
            return (
                Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "AI Studio's call rate limit for this agent was reached; retry after {retry_after} s"
                    ),
                )
                .with_retry_after(retry_after),
                Some(retry_after),
            );
        }
        Failure::Refused {
            status, message, ..
        } if *status >= 500 => Problem::new(
            StatusCode::BAD_GATEWAY,
            format!("AI Studio failed ({status}) and did not place the call: {message}"),
        ),
        Failure::Refused {
            status, message, ..
        } => Problem::new(
            StatusCode::BAD_GATEWAY,
            format!("AI Studio refused the request ({status}): {message}"),
        ),
        Failure::Unreachable => Problem::new(
            StatusCode::BAD_GATEWAY,
            "AI Studio could not be reached; the call was not placed",
        ),
        Failure::Timeout => Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "AI Studio did not answer in time; the call may have been placed and will not be \
                 retried automatically: see GET /v1/calls/{}",
                call.id
            ),
        ),
        Failure::Indeterminate(message) => Problem::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "{message}; the call may have been placed and will not be retried automatically"
            ),
        ),
    };
    (problem, None)
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

/// A digest of the request body that ignores key order and whitespace.
fn request_hash(body: &Value) -> String {
    fn canonical(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), canonical(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
            other => other.clone(),
        }
    }
    hex::encode(Sha256::digest(canonical(body).to_string().as_bytes()))
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
    let page = query.page();
    if page
        .after
        .as_ref()
        .is_some_and(|c| Uuid::parse_str(&c.key).is_err())
    {
        query.reject("cursor", "is not a cursor returned by this endpoint");
    }
    query.finish()?;
    Ok(Json(state.read(state.store.calls(&filter, &page)).await?))
}
