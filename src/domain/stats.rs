//! Counts over a time window, for dashboards and alerts.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::call::CallState;
use super::time::{self, Timestamp};

/// Statuses AI Studio documents as failures to reach the callee.
pub const FAILURE_STATUSES: [&str; 5] = ["cancelled", "rejected", "busy", "timeout", "failed"];

#[derive(Debug, Clone)]
pub struct StatsWindow {
    pub since: Timestamp,
    pub until: Timestamp,
    pub agent_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Stats {
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub since: Timestamp,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub until: Timestamp,
    pub agent_id: Option<String>,
    /// Outcomes whose `occurred_at` is in the window, by status.
    pub outcomes: BTreeMap<String, i64>,
    /// Calls created in the window, by state (every state is present).
    #[schema(value_type = BTreeMap<String, i64>)]
    pub calls: BTreeMap<CallState, i64>,
    /// Calls created in the window, by result (`pending` for none yet).
    pub results: BTreeMap<String, i64>,
    /// Of the calls initiated in the window: how many got a failure callback, how many none.
    pub initiated: InitiatedStats,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct InitiatedStats {
    pub total: i64,
    pub with_failure_callback: i64,
    pub without_callback: i64,
}

/// The width of a timeline's buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BucketWidth {
    Minute,
    Hour,
}

impl BucketWidth {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "minute" => Some(Self::Minute),
            "hour" => Some(Self::Hour),
            _ => None,
        }
    }

    pub fn seconds(self) -> i64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3600,
        }
    }

    /// The start of the bucket `at` falls in.
    pub fn floor(self, at: Timestamp) -> Timestamp {
        let width = self.seconds() * 1_000_000;
        time::from_micros(time::to_micros(&at).div_euclid(width) * width)
    }

    /// The first bucket edge at or after `at`.
    pub fn ceil(self, at: Timestamp) -> Timestamp {
        let floor = self.floor(at);
        if floor == at {
            at
        } else {
            floor + chrono::Duration::seconds(self.seconds())
        }
    }
}

impl TimelineWindow {
    /// The whole buckets covering `[since, until)`; `Err` with their count when there are
    /// more than [`MAX_BUCKETS`].
    pub fn covering(
        since: Timestamp,
        until: Timestamp,
        width: BucketWidth,
        agent_id: Option<String>,
    ) -> Result<Self, i64> {
        let (since, until) = (width.floor(since), width.ceil(until));
        let buckets = (until - since).num_seconds() / width.seconds();
        if buckets > MAX_BUCKETS {
            return Err(buckets);
        }
        Ok(Self {
            since,
            until,
            width,
            agent_id,
        })
    }
}

/// Most buckets one timeline holds.
pub const MAX_BUCKETS: i64 = 1500;

/// A window cut into whole buckets: `since` and `until` on bucket edges.
#[derive(Debug, Clone)]
pub struct TimelineWindow {
    pub since: Timestamp,
    pub until: Timestamp,
    pub width: BucketWidth,
    pub agent_id: Option<String>,
}

/// Outcomes by status in each bucket of a window, by their `occurred_at`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Timeline {
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub since: Timestamp,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub until: Timestamp,
    pub bucket: BucketWidth,
    pub agent_id: Option<String>,
    /// Every bucket of the window, oldest first, empty ones included.
    pub buckets: Vec<TimelineBucket>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimelineBucket {
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub start: Timestamp,
    /// Outcomes by status (statuses with none left out).
    pub outcomes: BTreeMap<String, i64>,
}
