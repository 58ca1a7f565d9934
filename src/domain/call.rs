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
    /// The call's final answer: a failure status a callback reported (`busy`, `timeout`,
    /// `rejected`, `cancelled`, `failed` or any other status as sent), `answered`,
    /// `not_placed` or `unknown`; `null` while undecided.
    #[schema(example = "answered")]
    pub result: Option<String>,
    /// What decided `result`.
    pub result_source: Option<ResultSource>,
    /// When `result` was set.
    #[serde(serialize_with = "time::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub result_at: Option<Timestamp>,
    /// The campaign that placed the call, if one did.
    pub campaign_id: Option<Uuid>,
    /// Which attempt at its destination this call is: 1 for a call placed on its own.
    #[schema(example = 1)]
    pub attempt: u32,
    /// The per-call status URL given to AI Studio: post a callback here (e.g. `completed`
    /// from an agent's end-of-call webhook) to decide the result.
    pub status_url: Option<String>,
    /// The latest status callback for this call, if any came.
    pub outcome: Option<Outcome>,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// What decided a call's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultSource {
    /// AI Studio's answer to make-call (`not_placed`, `unknown`).
    Upstream,
    /// A status callback for the call.
    Callback,
    /// The grace window passed without a callback: `answered`.
    Inferred,
}

impl ResultSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Callback => "callback",
            Self::Inferred => "inferred",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Upstream, Self::Callback, Self::Inferred]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

/// The result AI Studio's answer to make-call decides on its own, if any: a call it did not
/// place was `not_placed`, one whose fate is unknown is `unknown`; an initiated call waits
/// for a callback or the grace window.
pub fn upstream_result(state: CallState) -> Option<&'static str> {
    match state {
        CallState::Rejected | CallState::Failed => Some(NOT_PLACED),
        CallState::Unknown => Some(UNKNOWN),
        CallState::Initiated => None,
    }
}

/// The result a status callback gives its call: its status, with `answered` and `completed`
/// (as an agent's end-of-call webhook may post) both read as `answered`.
pub fn callback_result(status: &str) -> &str {
    match status {
        "answered" | "completed" => ANSWERED,
        other => other,
    }
}

pub const ANSWERED: &str = "answered";
pub const NOT_PLACED: &str = "not_placed";
pub const UNKNOWN: &str = "unknown";
/// How `GET /v1/calls?result=` and `GET /v1/stats` name an undecided result.
pub const PENDING: &str = "pending";

/// The results a metric labels by name; any other status a callback reports is `other`, so
/// that what clients send cannot grow the label set.
pub fn result_label(result: &str) -> &'static str {
    [
        ANSWERED,
        NOT_PLACED,
        UNKNOWN,
        "busy",
        "timeout",
        "rejected",
        "cancelled",
        "failed",
        super::campaign::INVALID,
        super::campaign::OUTSIDE_WINDOW,
    ]
    .into_iter()
    .find(|known| *known == result)
    .unwrap_or("other")
}

/// Filters of `GET /v1/calls`; every one given must match.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub agent_id: Option<String>,
    pub to: Option<String>,
    pub states: Vec<CallState>,
    pub outcome_statuses: Vec<String>,
    /// Results, `pending` for none yet.
    pub results: Vec<String>,
    pub campaign_id: Option<Uuid>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}
