//! What happened to a conversation: the outcome folded from its status callbacks.

use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use super::time::{self, Timestamp};

/// One conversation's outcome. `status` is that of the event with the latest `occurred_at`
/// (a tie goes to the later received).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Outcome {
    #[schema(example = "CON-4ee2e523-4ee13-4e98-ae94-e6e3e1ab9ac6")]
    pub conversation_uuid: String,
    #[schema(example = "busy")]
    pub status: String,
    pub agent_id: Option<String>,
    pub to: Option<String>,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: Timestamp,
    /// Set when a callback came through the per-call status URL of a call placed by callhook.
    pub call_id: Option<Uuid>,
    pub event_count: i64,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub first_received_at: Timestamp,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub last_received_at: Timestamp,
    /// The event history, oldest first; only on the single-outcome endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<Event>>,
}

/// One stored status callback.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Event {
    pub status: String,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: Timestamp,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub received_at: Timestamp,
    /// The callback body exactly as received.
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
}

/// Filters of `GET /v1/outcomes`; every one given must match.
#[derive(Debug, Clone, Default)]
pub struct OutcomeFilter {
    pub statuses: Vec<String>,
    pub agent_id: Option<String>,
    pub to: Option<String>,
    pub call_id: Option<Uuid>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// Whether a stored callback was new or a repeat of one already stored, or was spooled to
/// local disk while the database was unavailable (durable, and stored on replay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Stored,
    Duplicate,
    Spooled,
}
