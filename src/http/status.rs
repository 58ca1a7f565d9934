//! The status URLs AI Studio posts callbacks to: the shared one, and one per placed call.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, Problem};
use crate::domain::callback::{Callback, CallbackError};
use crate::domain::time::now;

/// Largest callback body accepted; real ones are a few hundred bytes.
pub const MAX_CALLBACK_BYTES: usize = 64 * 1024;

/// A status callback as AI Studio sends it. Any content type is accepted.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CallbackBody {
    /// Kept when a string (or number); any other value is ignored, never refused.
    #[schema(value_type = Value, required = false, example = "60c09d70e6a68858f4220848")]
    agent_id: Option<serde_json::Value>,
    /// Kept when a string (or number); any other value is ignored, never refused.
    #[schema(value_type = Value, required = false, example = "972542233016")]
    to: Option<serde_json::Value>,
    #[schema(example = "CON-4ee2e523-4ee13-4e98-ae94-e6e3e1ab9ac6")]
    conversation_uuid: String,
    /// `cancelled`, `rejected`, `busy`, `timeout`, `failed`, or any other string (stored as sent).
    #[schema(example = "busy")]
    status: String,
    /// RFC 3339; without an offset it is read as UTC.
    #[schema(example = "2022-05-31T06:40:45.475Z")]
    timestamp: String,
}

/// Receive a status callback on the shared status URL.
#[utoipa::path(
    post,
    path = "/v1/status/{secret}",
    tag = "status",
    params(("secret" = String, Path, description = "CALLHOOK_INGEST_SECRET")),
    request_body(content = CallbackBody, content_type = "application/json"),
    responses(
        (status = 204, description = "Stored (or already stored): committed before this answer; while the database is unavailable, fsynced to the local spool and stored on its return"),
        (status = 400, description = "The body is not a JSON object", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong secret", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing or invalid conversation_uuid, status or timestamp", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn ingest_shared(
    State(state): State<AppState>,
    Path(secret): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    if let Some(secrets) = &state.ingest_secret
        && !secrets.contains(&secret)
    {
        return Err(rejected(
            "secret",
            ApiError::Unauthorized("unknown status URL"),
        ));
    }
    accept(&state, body, None).await
}

/// Receive a status callback on the signed status URL of a call placed by callhook.
#[utoipa::path(
    post,
    path = "/v1/status/calls/{call_id}/{signature}",
    tag = "status",
    params(
        ("call_id" = Uuid, Path, description = "The call the URL was made for"),
        ("signature" = String, Path, description = "HMAC-SHA256 of the call id"),
    ),
    request_body(content = CallbackBody, content_type = "application/json"),
    responses(
        (status = 204, description = "Stored (or already stored), linked to the call; durable before this answer, like the shared status URL"),
        (status = 400, description = "The body is not a JSON object", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Tampered or unknown status URL", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing or invalid conversation_uuid, status or timestamp", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn ingest_for_call(
    State(state): State<AppState>,
    Path((call_id, signature)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let call_id = Uuid::parse_str(&call_id)
        .ok()
        .filter(|id| state.signer.verify(*id, &signature))
        .ok_or_else(|| {
            rejected(
                "signature",
                ApiError::Unauthorized("invalid status URL signature"),
            )
        })?;
    accept(&state, body, Some(call_id)).await
}

async fn accept(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
    call_id: Option<Uuid>,
) -> Result<StatusCode, ApiError> {
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => rejected(
            "too_large",
            ApiError::Other {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                detail: format!("a callback body may be at most {MAX_CALLBACK_BYTES} bytes"),
            },
        ),
        _ => rejected("unreadable", rejection.into()),
    })?;
    let callback = Callback::parse(&body, call_id, now()).map_err(|err| match err {
        CallbackError::NotAnObject => rejected(
            "not_json_object",
            ApiError::BadRequest("the body must be a JSON object".into()),
        ),
        CallbackError::Invalid(errors) => rejected("invalid", ApiError::Validation(errors)),
    })?;
    state
        .ingestor
        .submit(callback)
        .await
        .map_err(ApiError::Ingest)?;
    Ok(StatusCode::NO_CONTENT)
}

fn rejected(reason: &'static str, error: ApiError) -> ApiError {
    metrics::counter!("callhook_callbacks_rejected_total", "reason" => reason).increment(1);
    error
}
