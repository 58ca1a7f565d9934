//! Outbound calls placed through AI Studio, and what became of each attempt.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use super::outcome::Outcome;
use super::region::Region;
use super::time::{self, Timestamp};

/// What became of the request to AI Studio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// Upstream accepted the call.
    Initiated,
    /// Upstream refused it (4xx).
    Rejected,
    /// Not placed: upstream answered 5xx or could not be reached.
    Failed,
    /// The request may have reached upstream but no answer came; never retried automatically.
    Unknown,
}

impl CallState {
    pub const ALL: [CallState; 4] = [Self::Initiated, Self::Rejected, Self::Failed, Self::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initiated => "initiated",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// One `{name, value}` pair the agent can read during the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionParameter {
    pub name: String,
    pub value: String,
}

/// `session_parameters` as upstream takes them (a list) or as people write them (an object).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SessionParameters {
    List(Vec<SessionParameter>),
    Map(BTreeMap<String, String>),
}

impl SessionParameters {
    pub fn into_list(self) -> Vec<SessionParameter> {
        match self {
            Self::List(list) => list,
            Self::Map(map) => map
                .into_iter()
                .map(|(name, value)| SessionParameter { name, value })
                .collect(),
        }
    }
}

/// The upstream error of a call attempt, when there was one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UpstreamError {
    /// The upstream HTTP status, absent when no answer came.
    pub status: Option<u16>,
    pub message: String,
}

/// A call placed (or attempted) through callhook.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Call {
    pub id: Uuid,
    pub agent_id: String,
    pub to: String,
    #[schema(example = "eu")]
    pub region: Region,
    pub hangup_on_answer_machine: bool,
    pub session_parameters: Vec<SessionParameter>,
    /// Free-form caller metadata, returned as given.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Box<RawValue>>,
    pub state: CallState,
    pub session_id: Option<String>,
    #[serde(serialize_with = "time::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub session_start_time: Option<Timestamp>,
    pub error: Option<UpstreamError>,
    /// The latest status callback for this call, if any came.
    pub outcome: Option<Outcome>,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// Filters of `GET /v1/calls`; every one given must match.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub agent_id: Option<String>,
    pub to: Option<String>,
    pub states: Vec<CallState>,
    pub outcome_statuses: Vec<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}
