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
