//! Counts by status and state over a time window.

use axum::extract::State;
use chrono::Duration;

use super::AppState;
use super::error::{ApiError, Problem};
use super::extract::{Json, QueryParams};
use crate::domain::stats::{
    BucketWidth, MAX_BUCKETS, Stats, StatsWindow, Timeline, TimelineWindow,
};
use crate::domain::time::{Timestamp, now};

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
    let (since, until) = window(&mut query);
    let window = StatsWindow {
        since,
        until,
        agent_id: query.string("agent_id"),
    };
    query.finish()?;
    Ok(Json(state.read(state.store.stats(&window)).await?))
}

/// Outcomes by status in each minute or hour of a window (by `occurred_at`), every bucket
/// present: what a chart of callbacks over time needs. The window is widened to whole
/// buckets; it defaults to the last 24 hours, in hours (minutes for windows up to 6 hours).
#[utoipa::path(
    get,
    path = "/v1/stats/timeline",
    tag = "stats",
    security(("bearer" = [])),
    params(
        ("since" = Option<String>, Query, format = DateTime, description = "RFC 3339, inclusive; default until − 24 h"),
        ("until" = Option<String>, Query, format = DateTime, description = "RFC 3339, exclusive; default now"),
        ("bucket" = Option<String>, Query, description = "minute or hour; default minute for windows up to 6 hours, else hour"),
        ("agent_id" = Option<String>, Query),
    ),
    responses(
        (status = 200, body = Timeline),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad parameter, or more than 1500 buckets", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn timeline(
    State(state): State<AppState>,
    mut query: QueryParams,
) -> Result<Json<Timeline>, ApiError> {
    let (since, until) = window(&mut query);
    let width = match query.string("bucket") {
        None if until - since <= Duration::hours(6) => BucketWidth::Minute,
        None => BucketWidth::Hour,
        Some(raw) => BucketWidth::parse(&raw).unwrap_or_else(|| {
            query.reject("bucket", "must be minute or hour");
            BucketWidth::Hour
        }),
    };
    let window = TimelineWindow::covering(since, until, width, query.string("agent_id"));
    let too_many = |buckets: i64| {
        format!(
            "the window holds {buckets} buckets, at most {MAX_BUCKETS}: use a wider bucket or \
             a shorter window"
        )
    };
    if let Err(buckets) = &window {
        query.reject("bucket", too_many(*buckets));
    }
    query.finish()?;
    let window = window.map_err(|buckets| ApiError::field("bucket", too_many(buckets)))?;
    Ok(Json(state.read(state.store.timeline(&window)).await?))
}

/// `since` and `until`: default the 24 hours up to now, and `since` before `until`.
fn window(query: &mut QueryParams) -> (Timestamp, Timestamp) {
    let until = query.timestamp("until").unwrap_or_else(now);
    let since = query
        .timestamp("since")
        .unwrap_or(until - Duration::hours(24));
    if since >= until {
        query.reject("since", "must be before until");
    }
    (since, until)
}
