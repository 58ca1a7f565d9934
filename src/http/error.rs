//! One error type that is the response: RFC 9457 problem+json, with internal causes logged
//! and never shown.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::FieldError;
use crate::ingest::IngestError;
use crate::store::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";
/// Seconds a client is asked to wait while the database is unavailable.
const DATABASE_RETRY_AFTER: &str = "2";

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    #[schema(example = "urn:callhook:problem:validation")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// For validation problems: each refused field and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// The call record this problem concerns, when one was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<Uuid>,
    /// For 429: the seconds to wait, as in the `Retry-After` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A callback could not be committed (shared by the callbacks of one batch).
    #[error(transparent)]
    Ingest(IngestError),
    /// Any other status with a safe detail (axum's own rejections, fallbacks).
    #[error("{detail}")]
    Other { status: StatusCode, detail: String },
    /// A problem about a call that was recorded: AI Studio's refusal, or an answer that could
    /// not be recorded.
    #[error("{detail}")]
    Call {
        status: StatusCode,
        detail: String,
        errors: Option<Vec<FieldError>>,
        call_id: Uuid,
        /// Seconds to wait before retrying (429).
        retry_after: Option<u64>,
    },
}

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(err) if err.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Ingest(IngestError::Busy) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(_) | Self::Ingest(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Other { status, .. } | Self::Call { status, .. } => *status,
        }
    }
}

impl Problem {
    /// A problem for `status`, with a detail safe to show.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        let slug = match status {
            StatusCode::UNPROCESSABLE_ENTITY => "validation".to_owned(),
            other => other
                .canonical_reason()
                .unwrap_or("error")
                .to_ascii_lowercase()
                .replace(' ', "-"),
        };
        Self {
            kind: format!("urn:callhook:problem:{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: None,
            call_id: None,
            retry_after: None,
        }
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = Some(errors);
        self
    }

    pub fn with_call_id(mut self, call_id: Uuid) -> Self {
        self.call_id = Some(call_id);
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

/// The problem document for a status, with a detail safe to show.
pub fn problem_response(
    status: StatusCode,
    detail: String,
    errors: Option<Vec<FieldError>>,
) -> Response {
    let problem = Problem::new(status, detail);
    match errors {
        Some(errors) => problem.with_errors(errors),
        None => problem,
    }
    .into_response()
}

impl ApiError {
    /// The problem document a client sees: causes of a 5xx are logged here, never shown.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        match self {
            Self::Validation(errors) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                Problem::new(status, format!("invalid fields: {}", fields.join(", ")))
                    .with_errors(errors.clone())
            }
            Self::Store(err) if err.is_unavailable() => {
                Problem::new(status, "the database is unavailable; retry shortly")
            }
            Self::Ingest(IngestError::Busy) => Problem::new(
                status,
                "callhook is storing callbacks as fast as the database takes them and has no \
                 room for more; retry shortly",
            ),
            Self::Store(_) | Self::Ingest(_) => {
                tracing::error!(error = %self, "storage failure");
                Problem::new(status, "an internal error occurred; it has been logged")
            }
            Self::Call {
                detail,
                errors,
                call_id,
                retry_after,
                ..
            } => {
                let mut problem = Problem::new(status, detail.clone()).with_call_id(*call_id);
                problem.errors = errors.clone();
                problem.retry_after = *retry_after;
                problem
            }
            other => Problem::new(status, other.to_string()),
        }
    }

    /// Headers the answer carries beside the problem document.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        match self {
            Self::Unauthorized(_) => {
                vec![(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))]
            }
            Self::Store(err) if err.is_unavailable() => vec![(
                header::RETRY_AFTER,
                HeaderValue::from_static(DATABASE_RETRY_AFTER),
            )],
            Self::Ingest(IngestError::Busy) => {
                vec![(header::RETRY_AFTER, HeaderValue::from_static("1"))]
            }
            Self::Call {
                retry_after: Some(seconds),
                ..
            } => vec![(header::RETRY_AFTER, HeaderValue::from(*seconds))],
            _ => Vec::new(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.problem().into_response();
        response.headers_mut().extend(self.headers());
        response
    }
}

macro_rules! from_rejection {
    ($($rejection:ty),*) => {$(
        impl From<$rejection> for ApiError {
            fn from(rejection: $rejection) -> Self {
                Self::Other { status: rejection.status(), detail: rejection.body_text() }
            }
        }
    )*};
}
from_rejection!(JsonRejection, QueryRejection, PathRejection, BytesRejection);
