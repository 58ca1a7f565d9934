//! Campaigns: a list of destinations dialled for one agent at a pace, with redials and a
//! calling window, and what became of each destination.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use super::call::{ANSWERED, NOT_PLACED, SessionParameter, UNKNOWN, UpstreamError};
use super::time::{self, Timestamp};
use super::window::Window;

/// A destination AI Studio refused as a bad number (400).
pub const INVALID: &str = "invalid";
/// A destination whose calling window never holds in all of its time zones at once.
pub const OUTSIDE_WINDOW: &str = "outside_window";
/// Results `counts.results` always shows, at zero when none.
pub const COUNTED_RESULTS: [&str; 9] = [
    ANSWERED,
    "busy",
    "timeout",
    "rejected",
    "cancelled",
    "failed",
    INVALID,
    NOT_PLACED,
    UNKNOWN,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignState {
    /// Waiting for `start_at`.
    Scheduled,
    Running,
    /// Nothing is dialled until it is resumed; `error` says why when callhook paused it.
    Paused,
    /// Every destination is done.
    Completed,
    Cancelled,
}

impl CampaignState {
    pub const ALL: [Self; 5] = [
        Self::Scheduled,
        Self::Running,
        Self::Paused,
        Self::Completed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// The slowest pace a campaign may ask for: a call every 1,000 s.
pub const MIN_CALLS_PER_SECOND: f64 = 0.001;
/// Most an agent's spacing is stretched after AI Studio refuses its rate (429).
pub const MAX_SLOW: f64 = 16.0;
/// Longest spacing (and wait after a 429) anything can ask for.
const MAX_SPACING: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// An agent's pace, shared by all its campaigns: when its last request went (its slot), a
/// wait AI Studio asked for, and how much its spacing is stretched after refusals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    pub last_slot: Option<Timestamp>,
    pub hold_until: Option<Timestamp>,
    pub slow: f64,
}

impl Pace {
    /// The time between two requests at `calls_per_second` (the slowest of the agent's
    /// running campaigns), stretched by `slow`, plus `margin`.
    pub fn spacing(
        &self,
        calls_per_second: f64,
        margin: std::time::Duration,
    ) -> std::time::Duration {
        let seconds = self.slow.clamp(1.0, MAX_SLOW) / calls_per_second.max(MIN_CALLS_PER_SECOND);
        std::time::Duration::try_from_secs_f64(seconds)
            .unwrap_or(MAX_SPACING)
            .min(MAX_SPACING)
            + margin
    }

    /// The earliest a request may be sent (`None`: at once).
    pub fn next_free(&self, spacing: std::time::Duration) -> Option<Timestamp> {
        let spacing = super::time::span(spacing.min(MAX_SPACING));
        self.last_slot.map(|at| at + spacing).max(self.hold_until)
    }
}

/// When a destination whose attempt ended with `result` is dialled again, if it is: a result
/// in `redial_on` with attempts left, `redial_after_secs` after the result. `answered` ends a
/// destination whatever `redial_on` says.
pub fn redial_at(
    result: &str,
    attempts: u32,
    max_attempts: u32,
    redial_on: &[String],
    redial_after_secs: u64,
    result_at: Timestamp,
) -> Option<Timestamp> {
    let redial = result != ANSWERED
        && attempts < max_attempts
        && redial_on.iter().any(|status| status == result);
    // Validated to at most a year; an instant past the calendar's end waits forever.
    let after = chrono::Duration::try_seconds(i64::try_from(redial_after_secs).unwrap_or(i64::MAX))
        .unwrap_or(chrono::Duration::MAX);
    redial.then(|| {
        result_at
            .checked_add_signed(after)
            .unwrap_or(Timestamp::MAX_UTC)
    })
}

/// A change of state a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Cancel,
}

impl Control {
    /// The states the change may start from.
    pub fn from_states(self) -> &'static [CampaignState] {
        use CampaignState::*;
        match self {
            Self::Pause => &[Scheduled, Running],
            Self::Resume => &[Paused],
            Self::Cancel => &[Scheduled, Running, Paused],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Cancel => "cancel",
        }
    }
}

/// Progress of a campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Counts {
    pub destinations: i64,
    pub pending: i64,
    pub dialing: i64,
    pub done: i64,
    /// Attempts that reached AI Studio.
    pub calls: i64,
    /// Done destinations by their final result.
    pub results: BTreeMap<String, i64>,
}

impl Counts {
    /// Counts with every counted result at zero.
    pub fn empty() -> Self {
        Self {
            results: COUNTED_RESULTS
                .iter()
                .map(|r| ((*r).to_owned(), 0))
                .collect(),
            ..Self::default()
        }
    }
}

/// A campaign with its progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Campaign {
    pub id: Uuid,
    pub name: Option<String>,
    pub agent_id: String,
    pub state: CampaignState,
    /// Session parameters every call of the campaign gets, under each destination's own.
    pub session_parameters: Vec<SessionParameter>,
    pub hangup_on_answer_machine: bool,
    #[schema(example = 1.0)]
    #[serde(serialize_with = "whole_or_fraction")]
    pub calls_per_second: f64,
    #[schema(example = 3)]
    pub max_attempts: u32,
    pub redial_on: Vec<String>,
    #[schema(example = 600)]
    pub redial_after_secs: u64,
    pub window: Option<Window>,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub start_at: Timestamp,
    pub counts: Counts,
    /// Why callhook paused the campaign: AI Studio's refusal of the agent or the key.
    pub error: Option<UpstreamError>,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    #[serde(serialize_with = "time::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<Timestamp>,
}

/// A rate written as given: `1`, not `1.0`; `0.5` as it is.
fn whole_or_fraction<S: serde::Serializer>(rate: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if rate.fract() == 0.0 && *rate >= 0.0 && *rate <= u32::MAX as f64 {
        serializer.serialize_u32(*rate as u32)
    } else {
        serializer.serialize_f64(*rate)
    }
}

/// Where a destination stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DestinationState {
    /// Waiting for its next attempt.
    Pending,
    /// An attempt is under way: being placed, or placed and waiting for its result.
    Dialing,
    /// Its result is final.
    Done,
}

impl DestinationState {
    /// The stored states each shown state covers.
    pub fn stored(self) -> &'static [&'static str] {
        match self {
            Self::Pending => &["pending"],
            Self::Dialing => &["claimed", "dialing"],
            Self::Done => &["done"],
        }
    }

    pub fn of_stored(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(Self::Pending),
            "claimed" | "dialing" => Some(Self::Dialing),
            "done" => Some(Self::Done),
            _ => None,
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(Self::Pending),
            "dialing" => Some(Self::Dialing),
            "done" => Some(Self::Done),
            _ => None,
        }
    }
}

/// One destination of a campaign.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CampaignDestination {
    /// Its place in the campaign, from 0 in the order destinations were added.
    pub index: i64,
    pub to: String,
    /// The destination's own session parameters (the campaign's apply under them).
    pub session_parameters: Vec<SessionParameter>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Box<RawValue>>,
    pub state: DestinationState,
    /// The final result once done: a callback status (`busy`, …), `answered`, `invalid` (a
    /// number AI Studio refused), `not_placed`, `unknown` or `outside_window`.
    pub result: Option<String>,
    pub attempts: u32,
    #[serde(serialize_with = "time::serialize_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Timestamp>,
    /// Its calls, in attempt order.
    pub call_ids: Vec<Uuid>,
}

/// Filters of `GET /v1/campaigns`.
#[derive(Debug, Clone, Default)]
pub struct CampaignFilter {
    pub states: Vec<CampaignState>,
}

/// Filters of `GET /v1/campaigns/{id}/destinations`.
#[derive(Debug, Clone, Default)]
pub struct DestinationFilter {
    pub states: Vec<DestinationState>,
    pub results: Vec<String>,
}
