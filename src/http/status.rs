//! The status URLs AI Studio posts callbacks to: the shared one, and one per placed call.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, Problem};
use crate::domain::callback::{Callback, CallbackError};
use crate::domain::rejected::RejectedCallback;
use crate::domain::time::now;

/// Largest callback body accepted; real ones are a few hundred bytes.
pub const MAX_CALLBACK_BYTES: usize = 64 * 1024;

/// What a status URL answers.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // read by the OpenAPI document only
enum CallbackAnswers {
    #[response(
        status = 204,
        description = "Stored (or already stored): committed before this answer (through a per-call URL, linked to the call); while the database is unavailable, fsynced to the local spool and stored on its return"
    )]
    Stored,
    /// The body is not a JSON object
    #[response(status = 400, content_type = "application/problem+json")]
    NotAnObject(#[to_schema] Problem),
    /// Wrong secret, or a tampered or unknown per-call status URL
    #[response(status = 401, content_type = "application/problem+json")]
    Unknown(#[to_schema] Problem),
    /// Body over 64 KiB
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(#[to_schema] Problem),
    /// Missing or invalid conversation_uuid, status or timestamp
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(#[to_schema] Problem),
}

/// Receive a status callback on the shared status URL.
#[utoipa::path(
    post,
    path = "/v1/status/{secret}",
    tag = "status",
    params(("secret" = String, Path, description = "CALLHOOK_INGEST_SECRET")),
    request_body(content = crate::domain::callback::CallbackBody, content_type = "application/json"),
    responses(CallbackAnswers)
)]
pub async fn ingest_shared(
    State(state): State<AppState>,
    Path(secret): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    if let Some(secrets) = &state.ingest_secret
        && !secrets.contains(&secret)
    {
        return Err(counted(
            "secret",
            ApiError::Unauthorized("unknown status URL"),
        ));
    }
    accept(&state, &headers, body, None).await
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
    request_body(content = crate::domain::callback::CallbackBody, content_type = "application/json"),
    responses(CallbackAnswers)
)]
pub async fn ingest_for_call(
    State(state): State<AppState>,
    Path((call_id, signature)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let call_id = Uuid::parse_str(&call_id)
        .ok()
        .filter(|id| state.placer.signer().verify(*id, &signature))
        .ok_or_else(|| {
            counted(
                "signature",
                ApiError::Unauthorized("invalid status URL signature"),
            )
        })?;
    accept(&state, &headers, body, Some(call_id)).await
}

/// Stores a callback whose URL was accepted; one refused with 400, 413 or 422 is kept for
/// `GET /v1/rejected` before the refusal is answered.
async fn accept(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    call_id: Option<Uuid>,
) -> Result<StatusCode, ApiError> {
    let received_at = now();
    let (reason, error, body) = match read_body(body).await {
        Ok(body) => match Callback::parse(&body, call_id, received_at) {
            Ok(callback) => {
                state
                    .ingestor
                    .submit(callback)
                    .await
                    .map_err(ApiError::Ingest)?;
                return Ok(StatusCode::NO_CONTENT);
            }
            Err(CallbackError::NotAnObject) => (
                "not_json_object",
                ApiError::BadRequest("the body must be a JSON object".into()),
                body,
            ),
            Err(CallbackError::Invalid(errors)) => ("invalid", ApiError::Validation(errors), body),
        },
        Err(Unread::TooLarge(prefix)) => (
            "too_large",
            ApiError::Other {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                detail: format!("a callback body may be at most {MAX_CALLBACK_BYTES} bytes"),
            },
            prefix,
        ),
        Err(Unread::Broken(prefix)) => (
            "unreadable",
            ApiError::BadRequest("the body could not be read to its end".into()),
            prefix,
        ),
    };
    let error = counted(reason, error);
    let rejected = RejectedCallback::new(
        received_at,
        error.status().as_u16(),
        refusal_reason(&error),
        headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
        &body,
    );
    state.rejections.keep(reason, rejected).await;
    Err(error)
}

/// A body that could not be read whole, with what was read of it (at most 64 KiB).
enum Unread {
    TooLarge(Vec<u8>),
    Broken(Vec<u8>),
}

async fn read_body(mut body: Body) -> Result<Vec<u8>, Unread> {
    let mut read = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(Unread::Broken(read));
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if read.len() + data.len() > MAX_CALLBACK_BYTES {
            let room = MAX_CALLBACK_BYTES - read.len();
            read.extend_from_slice(&data[..room]);
            return Err(Unread::TooLarge(read));
        }
        read.extend_from_slice(&data);
    }
    Ok(read)
}

/// The refusal as one line: the problem's detail, or each refused field and why.
fn refusal_reason(error: &ApiError) -> String {
    match error {
        ApiError::Validation(errors) => errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

fn counted(reason: &'static str, error: ApiError) -> ApiError {
    metrics::counter!("callhook_callbacks_rejected_total", "reason" => reason).increment(1);
    error
}
