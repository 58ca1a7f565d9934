//! What campaigns ask of the store: the API's reads and controls, and the dispatcher's
//! steps (claim an attempt, record AI Studio's answer, settle results, recover abandoned
//! claims). Every step is one transaction whose conditions make it safe to run in several
//! replicas at once.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use super::{CallResult, StoreError};
use crate::domain::call::{SessionParameter, UpstreamError};
use crate::domain::campaign::{
    Campaign, CampaignDestination, CampaignFilter, CampaignState, Control, DestinationFilter, Pace,
};
use crate::domain::campaign_request::{NewCampaign, NewDestination};
use crate::domain::page::{Page, PageRequest};
use crate::domain::region::Region;
use crate::domain::time::Timestamp;
use crate::domain::window::{Opening, Window};

/// A campaign to store, with its first destinations.
pub struct CampaignRecord<'a> {
    pub id: Uuid,
    pub campaign: &'a NewCampaign,
    pub state: CampaignState,
    pub start_at: Timestamp,
    /// Base URL of the status URLs its calls get.
    pub status_base: String,
    pub now: Timestamp,
}

/// What adding destinations did.
#[derive(Debug)]
pub enum Added {
    Added(u64),
    NotFound,
    /// The campaign is completed or cancelled.
    Closed(CampaignState),
}

/// What a pause, resume or cancel did.
#[derive(Debug)]
pub enum Controlled {
    Done(Box<Campaign>),
    NotFound,
    /// Not allowed from the campaign's current state.
    NotAllowed(CampaignState),
}

/// A running campaign as the dispatcher sees it.
#[derive(Debug, Clone)]
pub struct RunningCampaign {
    pub id: Uuid,
    pub agent_id: String,
    pub calls_per_second: f64,
    /// When its earliest pending destination is due (`None`: none pending).
    pub next_due: Option<Timestamp>,
}

/// What the dispatcher needs to plan its next steps.
#[derive(Debug, Clone, Default)]
pub struct DispatchView {
    pub running: Vec<RunningCampaign>,
    /// The earliest `start_at` of the scheduled campaigns.
    pub next_start: Option<Timestamp>,
    /// The pace of each agent of a running campaign that has dialled.
    pub paces: HashMap<String, Pace>,
    /// Destinations whose call is placed and waiting for its result.
    pub dialing: i64,
    /// The oldest claim still under way.
    pub oldest_claim: Option<Timestamp>,
}

/// How to claim an attempt.
pub struct ClaimRequest<'a> {
    pub agent_id: &'a str,
    pub now: Timestamp,
    /// A slot this close ahead is taken now, and waited for before sending.
    pub lookahead: Duration,
    /// The earliest a request may follow its claim (the claim's commit comes first).
    pub lead: Duration,
    /// Added to each spacing, so that timing noise never brings two requests closer than
    /// the pace.
    pub margin: Duration,
    /// The id a new call gets.
    pub call_id: Uuid,
    pub region: Region,
    /// Whether a destination may be dialled now under its campaign's window.
    pub opening: &'a (dyn Fn(&Window, &str) -> Opening + Send + Sync),
    /// The status URL of a call, from its campaign's base and its id.
    pub status_url: &'a (dyn Fn(&str, Uuid) -> String + Send + Sync),
}

/// An attempt recorded and ready to send.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub campaign_id: Uuid,
    pub index: i64,
    pub call_id: Uuid,
    pub attempt: u32,
    pub agent_id: String,
    pub to: String,
    pub session_parameters: Vec<SessionParameter>,
    pub hangup_on_answer_machine: bool,
    pub status_url: String,
    /// When the request may be sent.
    pub slot: Timestamp,
    /// When the attempt could have been sent at the earliest: its due time or the agent's
    /// free slot, whichever is later.
    pub ready_at: Timestamp,
    /// 5xx answers this attempt has had.
    pub upstream_failures: u32,
    /// The agent's spacing between requests when this attempt was claimed.
    pub spacing: Duration,
    /// Whether that spacing was stretched after a 429 (an accepted call eases it).
    pub slowed: bool,
}

#[derive(Debug)]
pub enum ClaimOutcome {
    Claimed(Box<Claimed>),
    /// The agent's next slot is later.
    Wait(Timestamp),
    /// Nothing of this agent is due now.
    Idle,
}

/// What an attempt's answer from AI Studio means for its destination.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptEnd {
    /// Placed: wait for its result.
    Initiated,
    /// Not placed, to be sent again (the same call) at `at`; `pace_until` holds every request
    /// for the agent until then (a rate limit).
    Retry {
        at: Timestamp,
        pace_until: Option<Timestamp>,
        upstream_failures: u32,
    },
    /// The agent or the key was refused: the campaign pauses, and the attempt is sent again
    /// once it is resumed.
    Pause(UpstreamError),
    /// The destination is done with this result.
    Done(String),
}

/// A placed attempt whose call has a result, waiting to be settled.
#[derive(Debug, Clone)]
pub struct Settling {
    pub campaign_id: Uuid,
    pub index: i64,
    pub call_id: Uuid,
    pub attempts: u32,
    pub result: String,
    pub result_at: Timestamp,
    pub max_attempts: u32,
    pub redial_on: Vec<String>,
    pub redial_after_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Another attempt, due then.
    Redial(Timestamp),
    Done,
}

/// A claim found abandoned (its replica stopped mid-request): the attempt is `unknown`.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub campaign_id: Uuid,
    pub index: i64,
    pub call_id: Uuid,
    pub attempt: u32,
}

/// Levels the metrics show: calls in flight by agent, campaigns by state.
#[derive(Debug, Clone, Default)]
pub struct DispatchGauges {
    pub in_flight: Vec<(String, i64)>,
    pub campaigns: Vec<(CampaignState, i64)>,
}

#[async_trait]
pub trait CampaignStore: Send + Sync {
    /// Stores a campaign and its destinations in one transaction.
    async fn create_campaign(&self, record: &CampaignRecord<'_>) -> Result<(), StoreError>;
    /// Adds destinations, all or none, numbered after the campaign's last.
    async fn add_destinations(
        &self,
        id: Uuid,
        destinations: &[NewDestination],
        now: Timestamp,
    ) -> Result<Added, StoreError>;
    async fn campaign(&self, id: Uuid) -> Result<Option<Campaign>, StoreError>;
    /// Campaigns newest first by `(created_at, id)`.
    async fn campaigns(
        &self,
        filter: &CampaignFilter,
        page: &PageRequest,
    ) -> Result<Page<Campaign>, StoreError>;
    /// A campaign's destinations in index order; `None` when there is no such campaign.
    async fn destinations(
        &self,
        id: Uuid,
        filter: &DestinationFilter,
        page: &PageRequest,
    ) -> Result<Option<Page<CampaignDestination>>, StoreError>;
    async fn control_campaign(
        &self,
        id: Uuid,
        control: Control,
        now: Timestamp,
    ) -> Result<Controlled, StoreError>;

    /// Starts the scheduled campaigns whose time has come, and reads what is due.
    async fn dispatch_view(&self, now: Timestamp) -> Result<DispatchView, StoreError>;
    /// Claims the agent's most overdue destination that its window allows now, if the agent's
    /// pace allows a request: records the attempt's call and takes the agent's next slot, in
    /// one transaction that holds the agent's pace row.
    async fn claim_attempt(&self, request: &ClaimRequest<'_>) -> Result<ClaimOutcome, StoreError>;
    /// Records that the agent's last request left at `sent_at`, later than its slot: the
    /// next keeps its distance from it.
    async fn sent_late(&self, agent_id: &str, sent_at: Timestamp) -> Result<(), StoreError>;
    /// Records AI Studio's answer to a claimed attempt and what it means for the destination.
    /// `false` when the claim was no longer held (recovered as abandoned): nothing changes.
    async fn finish_attempt(
        &self,
        claimed: &Claimed,
        answer: &CallResult,
        end: &AttemptEnd,
    ) -> Result<bool, StoreError>;
    /// Settles up to `limit` placed attempts whose calls have a result: another attempt (as
    /// [`crate::domain::campaign::redial_at`] says) or done. Returns what was settled.
    async fn settle_results(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(Settling, Settle)>, StoreError>;
    /// Ends the claims taken before `claimed_before` that are still under way: their
    /// attempts are `unknown`, never sent again.
    async fn recover_claims(
        &self,
        claimed_before: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<Recovered>, StoreError>;
    async fn dispatch_gauges(&self) -> Result<DispatchGauges, StoreError>;
}
