//! The transactional outbox: the deliveries of an event are written by the transaction that
//! makes the event, one row for each subscription that wants it, in one statement however
//! many events and subscriptions there are. A change that commits has its deliveries; one
//! that rolls back has none.

use uuid::Uuid;

use super::StoreError;
use super::campaign_sql::{CAMPAIGN_COLUMNS, attach_counts, counts_of};
use super::dialect::Dialect;
use super::rows::{self, CALL_COLUMNS};
use super::sql::{Columns, Value};
use super::sql_store::{outcomes_of, with_latest_outcomes};
use crate::domain::time::Timestamp;
use crate::domain::webhook::{DeliveryStatus, EventType, envelope};

/// The enabled subscriptions and the event types each wants, as the transaction sees them.
#[derive(Debug, Default)]
pub(super) struct Subscribers(Vec<(Uuid, Vec<EventType>)>);

impl Subscribers {
    /// Reads them in `tx`. A subscription created by a transaction that commits after this
    /// read is created after the change being made, and does not get its event.
    pub async fn read<D: Dialect>(tx: &mut D::Tx) -> Result<Self, StoreError> {
        let mut sql =
            D::sql("SELECT id, events FROM webhooks WHERE deleted_at IS NULL AND enabled = ");
        sql.bind(true);
        let mut subscribers = Vec::new();
        for row in D::fetch_all_in(tx, sql).await? {
            subscribers.push((row.uuid("id")?, event_types(&row.text("events")?)?));
        }
        Ok(Self(subscribers))
    }

    /// The subscriptions that want `event`.
    pub fn wanting(&self, event: EventType) -> Vec<Uuid> {
        self.0
            .iter()
            .filter(|(_, events)| events.contains(&event))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Event types as stored: a JSON array of their names.
pub(super) fn event_types(stored: &str) -> Result<Vec<EventType>, StoreError> {
    let names: Vec<String> =
        serde_json::from_str(stored).map_err(|e| StoreError::Corrupt(format!("events: {e}")))?;
    names
        .iter()
        .map(|name| {
            EventType::parse(name).ok_or_else(|| StoreError::Corrupt(format!("event {name}")))
        })
        .collect()
}

/// Writes a pending delivery of each body to each of `subscribers`, due now.
pub(super) async fn emit<D: Dialect>(
    tx: &mut D::Tx,
    subscribers: &[Uuid],
    event: EventType,
    bodies: &[String],
    now: Timestamp,
) -> Result<(), StoreError> {
    if subscribers.is_empty() || bodies.is_empty() {
        return Ok(());
    }
    let count = subscribers.len() * bodies.len();
    let (mut ids, mut subscriptions, mut payloads) = (
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
    );
    for subscriber in subscribers {
        for body in bodies {
            ids.push(Some(Uuid::now_v7()));
            subscriptions.push(Some(*subscriber));
            payloads.push(Some(body.clone()));
        }
    }
    let mut sql = D::sql(
        "INSERT INTO webhook_deliveries (id, subscription_id, event_type, payload, status, \
         next_attempt_at, created_at, updated_at) SELECT id, subscription_id, ",
    );
    sql.bind(event.as_str())
        .push(", payload, ")
        .bind(DeliveryStatus::Pending.as_str())
        .push(", ")
        .bind(now)
        .push(", ")
        .bind(now)
        .push(", ")
        .bind(now)
        .push(" FROM ");
    sql.rows(vec![
        ("id", Value::Uuids(ids)),
        ("subscription_id", Value::Uuids(subscriptions)),
        ("payload", Value::Texts(payloads)),
    ]);
    D::execute_in(tx, sql).await.map(|_| ())
}

/// Emits `call.result` for each of `call_ids`, with the call as it now is in `tx`.
pub(super) async fn emit_call_results<D: Dialect>(
    tx: &mut D::Tx,
    subscribers: &Subscribers,
    call_ids: &[Uuid],
    now: Timestamp,
) -> Result<(), StoreError> {
    let wanting = subscribers.wanting(EventType::CallResult);
    if wanting.is_empty() || call_ids.is_empty() {
        return Ok(());
    }
    let mut sql = D::sql(format!("SELECT {CALL_COLUMNS} FROM calls WHERE TRUE"));
    sql.and_in("id", call_ids.iter().copied())
        .push(" ORDER BY id");
    let calls = D::fetch_all_in(tx, sql)
        .await?
        .iter()
        .map(rows::call)
        .collect::<Result<Vec<_>, _>>()?;
    let outcomes = D::fetch_all_in(tx, outcomes_of::<D>(&calls)).await?;
    let calls = with_latest_outcomes(calls, &outcomes)?;
    let bodies: Vec<String> = calls
        .iter()
        .map(|call| envelope(EventType::CallResult, now, call))
        .collect();
    emit::<D>(tx, &wanting, EventType::CallResult, &bodies, now).await
}

/// Emits `call.result` for each of `call_ids` when a subscription wants it, reading the
/// subscriptions first.
pub(super) async fn call_results<D: Dialect>(
    tx: &mut D::Tx,
    call_ids: &[Uuid],
    now: Timestamp,
) -> Result<(), StoreError> {
    if call_ids.is_empty() {
        return Ok(());
    }
    let subscribers = Subscribers::read::<D>(tx).await?;
    emit_call_results::<D>(tx, &subscribers, call_ids, now).await
}

/// Emits `campaign.completed` with the campaign as it now is in `tx`.
pub(super) async fn campaign_completed<D: Dialect>(
    tx: &mut D::Tx,
    campaign_id: Uuid,
    now: Timestamp,
) -> Result<(), StoreError> {
    let wanting = Subscribers::read::<D>(tx)
        .await?
        .wanting(EventType::CampaignCompleted);
    if wanting.is_empty() {
        return Ok(());
    }
    let mut sql = D::sql(format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = "
    ));
    sql.bind(campaign_id);
    let campaigns = D::fetch_all_in(tx, sql)
        .await?
        .iter()
        .map(rows::campaign)
        .collect::<Result<Vec<_>, _>>()?;
    if campaigns.is_empty() {
        return Ok(());
    }
    let counts = D::fetch_all_in(tx, counts_of::<D>(&campaigns)).await?;
    let bodies: Vec<String> = attach_counts(campaigns, &counts)?
        .iter()
        .map(|campaign| envelope(EventType::CampaignCompleted, now, campaign))
        .collect();
    emit::<D>(tx, &wanting, EventType::CampaignCompleted, &bodies, now).await
}
