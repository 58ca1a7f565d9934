//! What happened to conversations: one outcome with its events, or a filtered list.

use axum::extract::{Path, State};

use super::AppState;
use super::error::{ApiError, Problem};
use super::extract::{Json, QueryParams};
use crate::domain::conversation::ConversationUuid;
use crate::domain::outcome::{Outcome, OutcomeFilter};
use crate::domain::page::Page;

/// One conversation's outcome and its event history (oldest first).
#[utoipa::path(
    get,
    path = "/v1/outcomes/{conversation_uuid}",
    tag = "outcomes",
    security(("bearer" = [])),
    params(("conversation_uuid" = String, Path)),
    responses(
        (status = 200, body = Outcome),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_outcome(
    State(state): State<AppState>,
    Path(conversation_uuid): Path<String>,
) -> Result<Json<Outcome>, ApiError> {
    // An id no callback can have (empty, control characters: PostgreSQL would refuse a NUL
    // as a parameter) matches nothing, on either backend, without a query.
    let stored = match ConversationUuid::parse(&conversation_uuid) {
        Ok(id) if id.as_str() == conversation_uuid => state.read(state.store.outcome(&id)).await?,
        _ => None,
    };
    stored.map(Json).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no callback has been stored for conversation {conversation_uuid:?}"
        ))
    })
}

/// Outcomes, newest `occurred_at` first, with keyset paging.
#[utoipa::path(
    get,
    path = "/v1/outcomes",
    tag = "outcomes",
    security(("bearer" = [])),
    params(
        ("status" = Option<String>, Query, description = "Comma-separated statuses"),
        ("agent_id" = Option<String>, Query),
        ("to" = Option<String>, Query, description = "Destination, as typed or in digits"),
        ("call_id" = Option<uuid::Uuid>, Query),
        ("since" = Option<String>, Query, format = DateTime, description = "RFC 3339; occurred_at >= since"),
        ("until" = Option<String>, Query, format = DateTime, description = "RFC 3339; occurred_at < until"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1–1000, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, body = Page<Outcome>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_outcomes(
    State(state): State<AppState>,
    mut query: QueryParams,
) -> Result<Json<Page<Outcome>>, ApiError> {
    let filter = OutcomeFilter {
        statuses: query.list("status"),
        agent_id: query.string("agent_id"),
        to: query.destination("to"),
        call_id: query.uuid("call_id"),
        since: query.timestamp("since"),
        until: query.timestamp("until"),
    };
    let page = query.page();
    query.finish()?;
    Ok(Json(
        state.read(state.store.outcomes(&filter, &page)).await?,
    ))
}
