//! `/v1/campaigns`: start a campaign, add destinations (JSON or CSV), read campaigns with
//! their progress and their destinations, and pause, resume or cancel one.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, Problem};
use super::extract::{Json, QueryParams};
use super::forwarded;
use crate::domain::FieldError;
use crate::domain::campaign::{
    Campaign, CampaignDestination, CampaignFilter, CampaignState, Control, DestinationFilter,
    DestinationState,
};
use crate::domain::campaign_request::{
    NewCampaign, NewDestination, RawFields, parse_csv, parse_destination_list,
};
use crate::domain::page::Page;
use crate::domain::time::now;
use crate::store::campaigns::{Added, CampaignRecord, Controlled};

/// Largest body of the routes that take destinations (100,000 of them fit).
pub const MAX_BULK_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Start a campaign: destinations dialled for one agent at a pace, with redials and a
/// calling window.
///
/// Validation is all-or-nothing: every bad field is named (`destinations[3].to`) and
/// nothing is created when one is.
#[utoipa::path(
    post,
    path = "/v1/campaigns",
    tag = "campaigns",
    security(("bearer" = [])),
    request_body = crate::domain::campaign_request::CreateCampaign,
    responses(
        (status = 201, description = "The campaign; `Location` names it", body = Campaign),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Over 32 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "VGAI_API_KEY is not configured, or the database is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_campaign(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let fields = json_fields(&body)?;
    let campaign = NewCampaign::parse(&fields).map_err(ApiError::Validation)?;
    drop(fields);
    state.placer.check_configured().map_err(|_| {
        ApiError::Unavailable("VGAI_API_KEY is not set: callhook cannot place calls".into())
    })?;
    let status_base = forwarded::status_base(state.placer.public_url(), &headers)?;
    let at = now();
    let start_at = campaign.start_at.unwrap_or(at);
    let id = Uuid::now_v7();
    let record = CampaignRecord {
        id,
        campaign: &campaign,
        state: if start_at > at {
            CampaignState::Scheduled
        } else {
            CampaignState::Running
        },
        start_at,
        status_base,
        now: at,
    };
    state.store.campaigns().create_campaign(&record).await?;
    drop(campaign);
    tracing::info!(campaign_id = %id, "campaign created");
    state.dispatcher.wake();
    let campaign = read_campaign(&state, id).await?;
    let mut response = (StatusCode::CREATED, Json(campaign)).into_response();
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&format!("/v1/campaigns/{id}")).expect("a uuid path is a header"),
    );
    Ok(response)
}

/// The answer to adding destinations.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AddedDestinations {
    pub added: u64,
}

/// Add destinations to a campaign: JSON `{"destinations": [...]}`, or CSV (`text/csv`) with a
/// header row: a `to` column, `metadata.KEY` columns, every other column a session parameter.
///
/// All or nothing: a bad row is named (`line 4: to`, the header being line 1).
#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/destinations",
    tag = "campaigns",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body(content(
        (crate::domain::campaign_request::AddDestinations = "application/json"),
        (String = "text/csv"),
    )),
    responses(
        (status = 201, body = AddedDestinations),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The campaign is completed or cancelled", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Over 32 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn add_destinations(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = campaign_id(&id)?;
    let destinations: Vec<NewDestination> = if is_csv(&headers) {
        parse_csv(&body).map_err(ApiError::Validation)?
    } else {
        parse_destination_list(&json_fields(&body)?).map_err(ApiError::Validation)?
    };
    drop(body);
    match state
        .store
        .campaigns()
        .add_destinations(id, &destinations, now())
        .await?
    {
        Added::Added(added) => {
            tracing::info!(campaign_id = %id, added, "destinations added");
            state.dispatcher.wake();
            Ok((StatusCode::CREATED, Json(AddedDestinations { added })).into_response())
        }
        Added::NotFound => Err(not_found(id)),
        Added::Closed(state) => Err(ApiError::Conflict(format!(
            "the campaign is {}: no destinations can be added",
            state.as_str()
        ))),
    }
}

/// One campaign with its live counts.
#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}",
    tag = "campaigns",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = Campaign),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_campaign(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, ApiError> {
    let id = campaign_id(&id)?;
    read_campaign(&state, id).await.map(Json)
}

/// Campaigns, newest first, with their counts.
#[utoipa::path(
    get,
    path = "/v1/campaigns",
    tag = "campaigns",
    security(("bearer" = [])),
    params(
        ("state" = Option<String>, Query, description = "Comma-separated: scheduled, running, paused, completed, cancelled"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1–1000, default 50"),
        ("cursor" = Option<String>, Query),
    ),
    responses(
        (status = 200, body = Page<Campaign>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_campaigns(
    State(state): State<AppState>,
    mut query: QueryParams,
) -> Result<Json<Page<Campaign>>, ApiError> {
    let states = query.list_of(
        "state",
        CampaignState::parse,
        "scheduled, running, paused, completed or cancelled",
    );
    let page = query.page_keyed_by_uuid();
    query.finish()?;
    let filter = CampaignFilter { states };
    Ok(Json(
        state
            .read(state.store.campaigns().campaigns(&filter, &page))
            .await?,
    ))
}

/// A campaign's destinations in the order they were added, each with its state, attempts,
/// result and calls.
#[utoipa::path(
    get,
    path = "/v1/campaigns/{id}/destinations",
    tag = "campaigns",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path),
        ("state" = Option<String>, Query, description = "Comma-separated: pending, dialing, done"),
        ("result" = Option<String>, Query, description = "Comma-separated results"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1–1000, default 50"),
        ("cursor" = Option<String>, Query),
    ),
    responses(
        (status = 200, body = Page<CampaignDestination>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_destinations(
    State(state): State<AppState>,
    Path(id): Path<String>,
    mut query: QueryParams,
) -> Result<Json<Page<CampaignDestination>>, ApiError> {
    let id = campaign_id(&id)?;
    let states = query.list_of("state", DestinationState::parse, "pending, dialing or done");
    let filter = DestinationFilter {
        states,
        results: query.list("result"),
    };
    let page = query.page();
    if page
        .after
        .as_ref()
        .is_some_and(|c| c.key.parse::<i64>().is_err())
    {
        query.reject("cursor", "is not a cursor returned by this endpoint");
    }
    query.finish()?;
    state
        .read(state.store.campaigns().destinations(id, &filter, &page))
        .await?
        .map(Json)
        .ok_or_else(|| not_found(id))
}

/// Pause a campaign: nothing more is dialled until it is resumed (attempts under way finish).
#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/pause",
    tag = "campaigns",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = Campaign),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Only a scheduled or running campaign can be paused", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn pause_campaign(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, ApiError> {
    control(&state, &id, Control::Pause).await
}

/// Resume a paused campaign (clearing its `error`).
#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/resume",
    tag = "campaigns",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = Campaign),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Only a paused campaign can be resumed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn resume_campaign(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, ApiError> {
    let campaign = control(&state, &id, Control::Resume).await?;
    state.dispatcher.wake();
    Ok(campaign)
}

/// Cancel a campaign: nothing more is dialled, ever (attempts under way finish).
#[utoipa::path(
    post,
    path = "/v1/campaigns/{id}/cancel",
    tag = "campaigns",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = Campaign),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The campaign is already completed or cancelled", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel_campaign(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, ApiError> {
    control(&state, &id, Control::Cancel).await
}

async fn control(state: &AppState, id: &str, control: Control) -> Result<Json<Campaign>, ApiError> {
    let id = campaign_id(id)?;
    match state
        .store
        .campaigns()
        .control_campaign(id, control, now())
        .await?
    {
        Controlled::Done(campaign) => {
            tracing::info!(campaign_id = %id, control = control.as_str(), state = campaign.state.as_str(), "campaign controlled");
            Ok(Json(*campaign))
        }
        Controlled::NotFound => Err(not_found(id)),
        Controlled::NotAllowed(current) => Err(ApiError::Conflict(format!(
            "cannot {} a campaign that is {}",
            control.as_str(),
            current.as_str()
        ))),
    }
}

async fn read_campaign(state: &AppState, id: Uuid) -> Result<Campaign, ApiError> {
    state
        .read(state.store.campaigns().campaign(id))
        .await?
        .ok_or_else(|| not_found(id))
}

fn campaign_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(format!("no campaign {raw:?}")))
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("no campaign {id}"))
}

/// The top-level fields of a JSON object body, whatever its `Content-Type` says.
fn json_fields(body: &[u8]) -> Result<RawFields<'_>, ApiError> {
    serde_json::from_slice::<RawFields<'_>>(body).map_err(|err| {
        if err.is_data() {
            ApiError::Validation(vec![FieldError::new("body", "must be a JSON object")])
        } else {
            ApiError::BadRequest(format!("the body is not valid JSON: {err}"))
        }
    })
}

fn is_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| v == "text/csv" || v == "application/csv")
}
