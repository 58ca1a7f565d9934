//! Counts by status and state over a time window.

use axum::extract::State;
use chrono::Duration;

use super::AppState;
use super::error::{ApiError, Problem};
use super::extract::{Json, QueryParams};
use crate::domain::stats::{Stats, StatsWindow};
use crate::domain::time::now;

/// Outcome counts by status, call counts by state, and how many initiated calls got a
/// failure callback or none yet. The window defaults to the last 24 hours.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "stats",
    security(("bearer" = [])),
    params(
        ("since" = Option<String>, Query, format = DateTime, description = "RFC 3339, inclusive; default until − 24 h"),
        ("until" = Option<String>, Query, format = DateTime, description = "RFC 3339, exclusive; default now"),
        ("agent_id" = Option<String>, Query),
    ),
    responses(
        (status = 200, body = Stats),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn stats(
    State(state): State<AppState>,
    mut query: QueryParams,
) -> Result<Json<Stats>, ApiError> {
    let until = query.timestamp("until").unwrap_or_else(now);
    let since = query
        .timestamp("since")
        .unwrap_or(until - Duration::hours(24));
    if since >= until {
        query.reject("since", "must be before until");
    }
    let window = StatsWindow {
        since,
        until,
        agent_id: query.string("agent_id"),
    };
    query.finish()?;
    Ok(Json(state.read(state.store.stats(&window)).await?))
}
