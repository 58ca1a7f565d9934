//! Result rows into domain values, the same for both backends.

use serde_json::value::RawValue;

use super::StoreError;
use super::sql::Columns;
use crate::domain::call::{Call, CallState, ResultSource, UpstreamError};
use crate::domain::campaign::{Campaign, CampaignDestination, Counts, DestinationState};
use crate::domain::outcome::{Event, Outcome};
use crate::domain::region::Region;
use crate::domain::rejected::RejectedCallback;
use crate::domain::webhook::{Delivery, DeliveryStatus, EventType, Subscription};
use crate::domain::window::Window;

pub(super) const OUTCOME_COLUMNS: &str = "conversation_uuid, status, agent_id, destination, \
     occurred_at, call_id, event_count, first_received_at, last_received_at";

pub(super) const CALL_COLUMNS: &str = "id, agent_id, destination, region, \
     hangup_on_answer_machine, session_parameters, metadata, state, session_id, \
     session_start_time, error_status, error_message, result, result_source, result_at, \
     campaign_id, attempt, status_url, created_at";

pub(super) const REJECTED_COLUMNS: &str = "id, received_at, status, reason, content_type, body";

pub(super) fn outcome(row: &impl Columns) -> Result<Outcome, StoreError> {
    Ok(Outcome {
        conversation_uuid: row.text("conversation_uuid")?,
        status: row.text("status")?,
        agent_id: row.opt_text("agent_id")?,
        to: row.opt_text("destination")?,
        occurred_at: row.time("occurred_at")?,
        call_id: row.opt_uuid("call_id")?,
        event_count: row.int("event_count")?,
        first_received_at: row.time("first_received_at")?,
        last_received_at: row.time("last_received_at")?,
        events: None,
    })
}

/// An event from columns named `event_status`, `event_occurred_at`, … (a join with its outcome).
pub(super) fn event(row: &impl Columns) -> Result<Event, StoreError> {
    Ok(Event {
        status: row.text("event_status")?,
        occurred_at: row.time("event_occurred_at")?,
        received_at: row.time("event_received_at")?,
        payload: raw_json(row.text("event_payload")?)?,
    })
}

pub(super) fn call(row: &impl Columns) -> Result<Call, StoreError> {
    let state = row.text("state")?;
    let region = row.text("region")?;
    let error_status = row.opt_int32("error_status")?;
    let result_source = row
        .opt_text("result_source")?
        .map(|raw| {
            ResultSource::parse(&raw)
                .ok_or_else(|| StoreError::Corrupt(format!("result source {raw}")))
        })
        .transpose()?;
    Ok(Call {
        id: row.uuid("id")?,
        agent_id: row.text("agent_id")?,
        to: row.text("destination")?,
        region: region
            .parse::<Region>()
            .map_err(|e| StoreError::Corrupt(format!("call region: {e}")))?,
        hangup_on_answer_machine: row.boolean("hangup_on_answer_machine")?,
        session_parameters: serde_json::from_str(&row.text("session_parameters")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        metadata: row.opt_text("metadata")?.map(raw_json).transpose()?,
        state: CallState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("call state {state}")))?,
        session_id: row.opt_text("session_id")?,
        session_start_time: row.opt_time("session_start_time")?,
        error: row.opt_text("error_message")?.map(|message| UpstreamError {
            status: error_status.and_then(|s| u16::try_from(s).ok()),
            message,
        }),
        result: row.opt_text("result")?,
        result_source,
        result_at: row.opt_time("result_at")?,
        campaign_id: row.opt_uuid("campaign_id")?,
        attempt: u32::try_from(row.int32("attempt")?)
            .map_err(|e| StoreError::Corrupt(format!("attempt: {e}")))?,
        status_url: row.opt_text("status_url")?,
        outcome: None,
        created_at: row.time("created_at")?,
    })
}

pub(super) fn rejected(row: &impl Columns) -> Result<RejectedCallback, StoreError> {
    Ok(RejectedCallback {
        id: row.uuid("id")?,
        received_at: row.time("received_at")?,
        status: status_code(row.int32("status")?)?,
        reason: row.text("reason")?,
        content_type: row.opt_text("content_type")?,
        body: row.bytes("body")?,
    })
}

pub(super) fn raw_json(text: String) -> Result<Box<RawValue>, StoreError> {
    RawValue::from_string(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn status_code(stored: i32) -> Result<u16, StoreError> {
    u16::try_from(stored).map_err(|e| StoreError::Corrupt(format!("status {stored}: {e}")))
}

pub(super) fn campaign(row: &impl Columns) -> Result<Campaign, StoreError> {
    let corrupt =
        |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt(format!("{what}: {e}"));
    let error_status = row.opt_int32("error_status")?;
    Ok(Campaign {
        id: row.uuid("id")?,
        name: row.opt_text("name")?,
        agent_id: row.text("agent_id")?,
        state: super::campaign_sql::campaign_state(&row.text("state")?)?,
        session_parameters: serde_json::from_str(&row.text("session_parameters")?)
            .map_err(|e| corrupt("session parameters", &e))?,
        hangup_on_answer_machine: row.boolean("hangup_on_answer_machine")?,
        calls_per_second: row.float("calls_per_second")?,
        max_attempts: u32::try_from(row.int32("max_attempts")?)
            .map_err(|e| corrupt("max_attempts", &e))?,
        redial_on: serde_json::from_str(&row.text("redial_on")?)
            .map_err(|e| corrupt("redial_on", &e))?,
        redial_after_secs: u64::try_from(row.int("redial_after_secs")?)
            .map_err(|e| corrupt("redial_after_secs", &e))?,
        window: row
            .opt_text("call_window")?
            .map(|w| serde_json::from_str::<Window>(&w).map_err(|e| corrupt("window", &e)))
            .transpose()?,
        start_at: row.time("start_at")?,
        counts: Counts::empty(),
        error: row.opt_text("error_message")?.map(|message| UpstreamError {
            status: error_status.and_then(|s| u16::try_from(s).ok()),
            message,
        }),
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        completed_at: row.opt_time("completed_at")?,
    })
}

pub(super) fn campaign_destination(row: &impl Columns) -> Result<CampaignDestination, StoreError> {
    let state = row.text("state")?;
    Ok(CampaignDestination {
        index: row.int("idx")?,
        to: row.text("destination")?,
        session_parameters: serde_json::from_str(&row.text("session_parameters")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        metadata: row.opt_text("metadata")?.map(raw_json).transpose()?,
        state: DestinationState::of_stored(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("destination state {state}")))?,
        result: row.opt_text("result")?,
        attempts: u32::try_from(row.int32("attempts")?)
            .map_err(|e| StoreError::Corrupt(format!("attempts: {e}")))?,
        next_attempt_at: row.opt_time("next_attempt_at")?,
        call_ids: Vec::new(),
    })
}

pub(super) const SUBSCRIPTION_COLUMNS: &str =
    "id, url, events, description, enabled, disabled_reason, created_at";

pub(super) const DELIVERY_COLUMNS: &str = "id, event_type, status, attempts, last_status_code, \
     last_error, next_attempt_at, created_at, delivered_at";

pub(super) fn subscription(row: &impl Columns) -> Result<Subscription, StoreError> {
    Ok(Subscription {
        id: row.uuid("id")?,
        url: row.text("url")?,
        events: super::outbox::event_types(&row.text("events")?)?,
        description: row.opt_text("description")?,
        enabled: row.boolean("enabled")?,
        disabled_reason: row.opt_text("disabled_reason")?,
        created_at: row.time("created_at")?,
    })
}

pub(super) fn delivery(row: &impl Columns) -> Result<Delivery, StoreError> {
    let event_type = row.text("event_type")?;
    let status = row.text("status")?;
    Ok(Delivery {
        id: row.uuid("id")?,
        event_type: EventType::parse(&event_type)
            .ok_or_else(|| StoreError::Corrupt(format!("event type {event_type}")))?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery status {status}")))?,
        attempts: u32::try_from(row.int32("attempts")?)
            .map_err(|e| StoreError::Corrupt(format!("attempts: {e}")))?,
        last_status_code: row
            .opt_int32("last_status_code")?
            .map(status_code)
            .transpose()?,
        last_error: row.opt_text("last_error")?,
        next_attempt_at: row.opt_time("next_attempt_at")?,
        created_at: row.time("created_at")?,
        delivered_at: row.opt_time("delivered_at")?,
    })
}
