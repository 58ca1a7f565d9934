//! Status callbacks refused after their secret or signature was accepted.

use axum::extract::State;

use super::AppState;
use super::error::{ApiError, Problem};
use super::extract::{Json, QueryParams};
use crate::domain::page::Page;
use crate::domain::rejected::RejectedCallback;

/// Refused callbacks (400, 413, 422), newest first, with keyset paging; the table keeps the
/// newest `CALLHOOK_REJECTED_MAX`.
#[utoipa::path(
    get,
    path = "/v1/rejected",
    tag = "status",
    security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1–1000, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, body = Page<RejectedCallback>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_rejected(
    State(state): State<AppState>,
    mut query: QueryParams,
) -> Result<Json<Page<RejectedCallback>>, ApiError> {
    let page = query.page_keyed_by_uuid();
    query.finish()?;
    Ok(Json(state.read(state.store.rejected(&page)).await?))
}
