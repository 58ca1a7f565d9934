//! `/v1/webhooks`: subscriptions that receive outcomes, call results and campaign
//! completions (Standard Webhooks), their delivery log, and manual redelivery.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, Problem};
use super::extract::{AnyJson, Json, QueryParams};
use crate::domain::page::Page;
use crate::domain::time::now;
use crate::domain::webhook::{
    CreatedSubscription, Delivery, DeliveryStatus, MAX_SUBSCRIPTIONS, NewSubscription,
    Subscription, SubscriptionUpdate, new_secret,
};
use crate::store::webhooks::{Created, Retried, SubscriptionRecord};
use crate::webhooks::target;

/// Subscribe a URL to events. The answer carries the signing `secret`, shown this once.
///
/// Deliveries are `POST`s of `{"type", "timestamp", "data"}` signed per Standard Webhooks
/// (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    tag = "webhooks",
    security(("bearer" = [])),
    request_body = crate::domain::webhook::CreateSubscription,
    responses(
        (status = 201, description = "The subscription with its secret; `Location` names it", body = CreatedSubscription),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "As many subscriptions as may be kept exist", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid, or the URL's host is a loopback or private address", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_webhook(
    State(state): State<AppState>,
    AnyJson(body): AnyJson<Value>,
) -> Result<Response, ApiError> {
    let subscription = NewSubscription::parse(&body).map_err(ApiError::Validation)?;
    target::check(&subscription.url, state.webhook_allow_private)
        .await
        .map_err(|message| ApiError::field("url", message))?;
    let secret = new_secret();
    let record = SubscriptionRecord {
        id: Uuid::now_v7(),
        subscription: &subscription,
        secret: &secret,
        now: now(),
    };
    match state.store.webhooks().create_subscription(&record).await? {
        Created::Created(subscription) => {
            tracing::info!(subscription_id = %subscription.id, "webhook subscription created");
            let location = format!("/v1/webhooks/{}", subscription.id);
            let mut response = (
                StatusCode::CREATED,
                Json(CreatedSubscription {
                    subscription,
                    secret,
                }),
            )
                .into_response();
            response.headers_mut().insert(
                header::LOCATION,
                HeaderValue::from_str(&location).expect("a uuid path is a header"),
            );
            Ok(response)
        }
        Created::Full => Err(ApiError::Conflict(format!(
            "at most {MAX_SUBSCRIPTIONS} subscriptions are kept: delete one first"
        ))),
    }
}

/// Subscriptions, newest first (without their secrets).
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1–1000, default 50"),
        ("cursor" = Option<String>, Query),
    ),
    responses(
        (status = 200, body = Page<Subscription>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_webhooks(
    State(state): State<AppState>,
    mut query: QueryParams,
) -> Result<Json<Page<Subscription>>, ApiError> {
    let page = query.page_keyed_by_uuid();
    query.finish()?;
    Ok(Json(
        state
            .read(state.store.webhooks().subscriptions(&page))
            .await?,
    ))
}

/// One subscription (without its secret).
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = Subscription),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Subscription>, ApiError> {
    let id = subscription_id(&id)?;
    state
        .read(state.store.webhooks().subscription(id))
        .await?
        .map(Json)
        .ok_or_else(|| not_found(id))
}

/// Change a subscription: its URL, event types or description, or enable it again
/// (`{"enabled": true}`, also after a 410 disabled it) or stop it (`false`: no events are
/// written for it and its pending deliveries wait). Only the fields given change.
#[utoipa::path(
    patch,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = crate::domain::webhook::UpdateSubscription,
    responses(
        (status = 200, body = Subscription),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AnyJson(body): AnyJson<Value>,
) -> Result<Json<Subscription>, ApiError> {
    let id = subscription_id(&id)?;
    let update = SubscriptionUpdate::parse(&body).map_err(ApiError::Validation)?;
    if let Some(url) = &update.url {
        target::check(url, state.webhook_allow_private)
            .await
            .map_err(|message| ApiError::field("url", message))?;
    }
    let subscription = state
        .store
        .webhooks()
        .update_subscription(id, &update, now())
        .await?
        .ok_or_else(|| not_found(id))?;
    tracing::info!(subscription_id = %id, enabled = subscription.enabled, "webhook subscription changed");
    Ok(Json(subscription))
}

/// Delete a subscription: nothing more is written or sent for it (an attempt under way
/// finishes), and its delivery log goes with it.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = subscription_id(&id)?;
    if state
        .store
        .webhooks()
        .delete_subscription(id, now())
        .await?
    {
        tracing::info!(subscription_id = %id, "webhook subscription deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(id))
    }
}

/// A subscription's deliveries, newest first: each event sent or to be sent, its attempts
/// and the last answer.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    tag = "webhooks",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path),
        ("status" = Option<String>, Query, description = "Comma-separated: pending, delivered, failed"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1–1000, default 50"),
        ("cursor" = Option<String>, Query),
    ),
    responses(
        (status = 200, body = Page<Delivery>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
    mut query: QueryParams,
) -> Result<Json<Page<Delivery>>, ApiError> {
    let id = subscription_id(&id)?;
    let statuses = query.list_of(
        "status",
        DeliveryStatus::parse,
        "pending, delivered or failed",
    );
    let page = query.page_keyed_by_uuid();
    query.finish()?;
    state
        .read(state.store.webhooks().deliveries(id, &statuses, &page))
        .await?
        .map(Json)
        .ok_or_else(|| not_found(id))
}

/// Send a delivery again, once: a delivered or failed one gets one more attempt; a pending
/// one is attempted now instead of at its next retry.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("delivery_id" = Uuid, Path)),
    responses(
        (status = 202, description = "Queued for an attempt now"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An attempt is under way, or the subscription is disabled", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn retry_delivery(
    State(state): State<AppState>,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = subscription_id(&id)?;
    let delivery = Uuid::parse_str(&delivery_id)
        .map_err(|_| ApiError::NotFound(format!("no delivery {delivery_id:?}")))?;
    match state
        .store
        .webhooks()
        .retry_delivery(id, delivery, now())
        .await?
    {
        Retried::Queued => {
            tracing::info!(subscription_id = %id, delivery_id = %delivery, "webhook delivery queued again");
            Ok(StatusCode::ACCEPTED)
        }
        Retried::NotFound => Err(ApiError::NotFound(format!(
            "no delivery {delivery} of subscription {id}"
        ))),
        Retried::InFlight => Err(ApiError::Conflict(
            "an attempt of this delivery is under way".into(),
        )),
        Retried::Disabled => Err(ApiError::Conflict(
            "the subscription is disabled: nothing is sent to it".into(),
        )),
    }
}

fn subscription_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(format!("no subscription {raw:?}")))
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("no subscription {id}"))
}
