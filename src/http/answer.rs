//! How a placed call becomes its answer: `201` with the call, or the problem that AI Studio's
//! refusal means. Answers are kept whole (status, headers, body) for `Idempotency-Key`
//! replays, and written out from that one form.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::error::{ApiError, PROBLEM_JSON};
use crate::calls::{Placement, UNREADABLE_ANSWER};
use crate::domain::FieldError;
use crate::store::StoredAnswer;
use crate::upstream::Failure;

/// The answer to a placement: the call, or why AI Studio did not initiate it.
pub fn of_placement(placement: &Placement, agent_id: &str) -> StoredAnswer {
    let call = &placement.call;
    match &placement.failure {
        None => StoredAnswer {
            status: StatusCode::CREATED.as_u16(),
            headers: vec![(
                header::LOCATION.to_string(),
                format!("/v1/calls/{}", call.id),
            )],
            body: serde_json::to_string(call).expect("a call serializes"),
        },
        Some(failure) => of_error(&failure_error(failure, agent_id, call.id)),
    }
}

/// A problem kept as an answer.
pub fn of_error(error: &ApiError) -> StoredAnswer {
    StoredAnswer {
        status: error.status().as_u16(),
        headers: error
            .headers()
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect(),
        body: serde_json::to_string(&error.problem()).expect("a problem serializes"),
    }
}

/// AI Studio was asked, and its answer could not be recorded.
pub fn unrecorded(call_id: Uuid) -> ApiError {
    call_problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            "AI Studio was asked to place the call, but callhook could not record its answer; \
             the call may have been placed and will not be retried automatically: see \
             GET /v1/calls/{call_id}"
        ),
        call_id,
    )
}

/// Writes a kept answer; `replayed` marks a repeat of an `Idempotency-Key`.
pub fn response(answer: StoredAnswer, replayed: bool) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let content_type = if status.is_success() {
        "application/json"
    } else {
        PROBLEM_JSON
    };
    let mut response =
        (status, [(header::CONTENT_TYPE, content_type)], answer.body).into_response();
    let headers = response.headers_mut();
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (
            name.parse::<header::HeaderName>(),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

fn call_problem(status: StatusCode, detail: String, call_id: Uuid) -> ApiError {
    ApiError::Call {
        status,
        detail,
        errors: None,
        call_id,
        retry_after: None,
    }
}

/// What AI Studio's refusal means for the client: 404 no agent, 422 a refused number, 502
/// a refused key or a failure, 429 its rate limit, 504 no answer in time.
fn failure_error(failure: &Failure, agent_id: &str, call_id: Uuid) -> ApiError {
    let problem = |status, detail: String| call_problem(status, detail, call_id);
    let may_ring = "the call may have been placed and will not be retried automatically";
    match failure {
        Failure::Refused {
            status: 404,
            message,
            ..
        } => problem(
            StatusCode::NOT_FOUND,
            format!(
                "AI Studio has no agent {agent_id:?}, or no published version of it: {message}"
            ),
        ),
        Failure::Refused {
            status: 400,
            message,
            ..
        } => ApiError::Call {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: "AI Studio refused the destination".into(),
            errors: Some(vec![FieldError::new(
                "to",
                format!("refused by AI Studio: {message}"),
            )]),
            call_id,
            retry_after: None,
        },
        Failure::Refused {
            status: status @ (401 | 403),
            ..
        } => problem(
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
            ApiError::Call {
                status: StatusCode::TOO_MANY_REQUESTS,
                detail: format!(
                    "AI Studio's call rate limit for this agent was reached; retry after {retry_after} s"
                ),
                errors: None,
                call_id,
                retry_after: Some(retry_after),
            }
        }
        Failure::Refused {
            status, message, ..
        } if *status >= 500 => problem(
            StatusCode::BAD_GATEWAY,
            format!("AI Studio failed ({status}) and did not place the call: {message}"),
        ),
        Failure::Refused {
            status, message, ..
        } => problem(
            StatusCode::BAD_GATEWAY,
            format!("AI Studio refused the request ({status}): {message}"),
        ),
        Failure::Unreachable(_) => problem(
            StatusCode::BAD_GATEWAY,
            "AI Studio could not be reached; the call was not placed".into(),
        ),
        Failure::Timeout => problem(
            StatusCode::GATEWAY_TIMEOUT,
            format!("AI Studio did not answer in time; {may_ring}: see GET /v1/calls/{call_id}"),
        ),
        Failure::Interrupted(message) => {
            problem(StatusCode::BAD_GATEWAY, format!("{message}; {may_ring}"))
        }
        Failure::UnreadableAnswer(_) => problem(
            StatusCode::BAD_GATEWAY,
            format!("{UNREADABLE_ANSWER}; {may_ring}"),
        ),
    }
}
