//! What outgoing webhooks ask of the store: subscriptions and their delivery log for the API,
//! and for the deliverer, claiming due deliveries and recording each attempt. A claim is a
//! lease: a delivery claimed by a replica that dies is due again when its lease ends.

use std::collections::HashSet;

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreError;
use crate::domain::page::{Page, PageRequest};
use crate::domain::time::Timestamp;
use crate::domain::webhook::{
    Delivery, DeliveryStatus, NewSubscription, Subscription, SubscriptionUpdate,
};

/// A subscription to store.
pub struct SubscriptionRecord<'a> {
    pub id: Uuid,
    pub subscription: &'a NewSubscription,
    pub secret: &'a str,
    pub now: Timestamp,
}

/// What creating a subscription did.
#[derive(Debug)]
pub enum Created {
    Created(Subscription),
    /// As many subscriptions as may be kept exist already.
    Full,
}

/// What asking for a delivery to be sent again did.
#[derive(Debug, PartialEq, Eq)]
pub enum Retried {
    Queued,
    NotFound,
    /// An attempt is under way.
    InFlight,
    /// The subscription is disabled: nothing is sent to it.
    Disabled,
}

/// An enabled subscription as the deliverer sees it.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: Uuid,
    pub url: String,
    pub secret: String,
    /// When its earliest pending delivery is due (`None`: none pending).
    pub next_due: Option<Timestamp>,
    /// When its oldest pending delivery was made.
    pub oldest_pending: Option<Timestamp>,
}

/// A delivery claimed for one attempt.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub payload: String,
    /// Attempts made, this one included.
    pub attempts: u32,
    /// A manual retry: one attempt, whatever the schedule says.
    pub once: bool,
    /// The claim's own id: only its holder records the attempt.
    pub claim: Uuid,
}

/// What became of an attempt, and what follows it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub next: Next,
    pub at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Delivered,
    RetryAt(Timestamp),
    Failed,
    /// The receiver answered 410: the delivery fails and the subscription is disabled, its
    /// other pending deliveries failing with it.
    Gone,
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn create_subscription(
        &self,
        record: &SubscriptionRecord<'_>,
    ) -> Result<Created, StoreError>;
    async fn subscription(&self, id: Uuid) -> Result<Option<Subscription>, StoreError>;
    /// Subscriptions newest first by `(created_at, id)`.
    async fn subscriptions(&self, page: &PageRequest) -> Result<Page<Subscription>, StoreError>;
    /// Changes the fields `update` names; `None` when there is no such subscription.
    async fn update_subscription(
        &self,
        id: Uuid,
        update: &SubscriptionUpdate,
        now: Timestamp,
    ) -> Result<Option<Subscription>, StoreError>;
    /// Deletes a subscription: nothing more is written or sent for it, and its rows go in
    /// the background ([`Self::purge_deleted`]); false when there was none.
    async fn delete_subscription(&self, id: Uuid, now: Timestamp) -> Result<bool, StoreError>;
    /// A subscription's deliveries newest first by `(created_at, id)`; `None` when there is no
    /// such subscription.
    async fn deliveries(
        &self,
        subscription_id: Uuid,
        statuses: &[DeliveryStatus],
        page: &PageRequest,
    ) -> Result<Option<Page<Delivery>>, StoreError>;
    /// Makes a delivery due now for one more attempt.
    async fn retry_delivery(
        &self,
        subscription_id: Uuid,
        delivery_id: Uuid,
        now: Timestamp,
    ) -> Result<Retried, StoreError>;

    /// The enabled subscriptions, each with when its next delivery is due.
    async fn delivery_targets(&self) -> Result<Vec<Target>, StoreError>;
    /// Claims up to `limit` of a subscription's due deliveries, oldest due first, each for
    /// `lease`; deliveries another replica holds are skipped. Due and lease are read on the
    /// database's clock where replicas share one (PostgreSQL), so that a replica whose own
    /// clock runs ahead never takes over a lease still running.
    async fn claim_deliveries(
        &self,
        subscription_id: Uuid,
        limit: u32,
        now: Timestamp,
        lease: std::time::Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;
    /// Records attempts of claimed deliveries in one transaction; returns the deliveries
    /// recorded, leaving out those whose claim was lost meanwhile (the lease ended and another
    /// replica took the delivery over).
    async fn record_attempts(
        &self,
        attempts: &[(ClaimedDelivery, Attempt)],
    ) -> Result<HashSet<Uuid>, StoreError>;
    /// Deletes up to `limit` deliveries of the subscriptions deleted before `deleted_before`,
    /// and those subscriptions once none is left; returns how many rows went.
    async fn purge_deleted(&self, deleted_before: Timestamp, limit: u32)
    -> Result<u64, StoreError>;
    /// Deletes up to `limit` delivered or failed deliveries that ended before `ended_before`.
    async fn prune_deliveries(
        &self,
        ended_before: Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError>;
}
