//! Campaigns as the API reads and changes them: create with destinations, add more, read
//! with live counts, list, and pause / resume / cancel.

use std::collections::HashMap;

use uuid::Uuid;

use super::dialect::Dialect;
use super::sql::{Columns, PageKey, Sql, Value};
use super::sql_store::SqlStore;
use super::{StoreError, parameters_json, rows};
use crate::domain::call::NOT_PLACED;
use crate::domain::campaign::{
    Campaign, CampaignDestination, CampaignFilter, CampaignState, Control, Counts,
    DestinationFilter, DestinationState,
};
use crate::domain::campaign_request::NewDestination;
use crate::domain::page::{Cursor, Page, PageRequest};
use crate::domain::time::Timestamp;

use super::campaigns::{Added, CampaignRecord, Controlled};

/// Destinations inserted by one statement.
const INSERT_CHUNK: usize = 5_000;

pub(super) const CAMPAIGN_COLUMNS: &str = "id, name, agent_id, state, session_parameters, \
     hangup_on_answer_machine, calls_per_second, max_attempts, redial_on, redial_after_secs, \
     call_window, start_at, error_status, error_message, created_at, updated_at, completed_at";

const DESTINATION_COLUMNS: &str = "idx, destination, session_parameters, metadata, state, \
     result, attempts, next_attempt_at";

impl<D: Dialect> SqlStore<D> {
    pub(super) async fn create_campaign_in(
        &self,
        record: &CampaignRecord<'_>,
    ) -> Result<(), StoreError> {
        let campaign = record.campaign;
        let mut tx = self.db.begin_write().await?;
        let mut sql = D::sql(
            "INSERT INTO campaigns (id, name, agent_id, state, session_parameters, \
             hangup_on_answer_machine, calls_per_second, max_attempts, redial_on, \
             redial_after_secs, call_window, start_at, status_base, next_index, created_at, \
             updated_at) VALUES (",
        );
        sql.bind(record.id)
            .push(", ")
            .bind(&campaign.name)
            .push(", ")
            .bind(campaign.agent_id.as_str())
            .push(", ")
            .bind(record.state.as_str())
            .push(", ")
            .bind(parameters_json(&campaign.session_parameters))
            .push(", ")
            .bind(campaign.hangup_on_answer_machine)
            .push(", ")
            .bind(campaign.calls_per_second)
            .push(", ")
            .bind(campaign.max_attempts as i32)
            .push(", ")
            .bind(serde_json::to_string(&campaign.redial_on).expect("statuses serialize"))
            .push(", ")
            .bind(campaign.redial_after_secs as i64)
            .push(", ")
            .bind(Value::Text(campaign.window.as_ref().map(|w| {
                serde_json::to_string(w).expect("a window serializes")
            })))
            .push(", ")
            .bind(record.start_at)
            .push(", ")
            .bind(record.status_base.as_str())
            .push(", ")
            .bind(campaign.destinations.len() as i64)
            .push(", ")
            .bind(record.now)
            .push(", ")
            .bind(record.now)
            .push(")");
        D::execute_in(&mut tx, sql).await?;
        for sql in insert_destinations::<D>(record.id, 0, &campaign.destinations, record.now) {
            D::execute_in(&mut tx, sql).await?;
        }
        D::commit(tx).await
    }

    pub(super) async fn add_destinations_in(
        &self,
        id: Uuid,
        destinations: &[NewDestination],
        now: Timestamp,
    ) -> Result<Added, StoreError> {
        let mut tx = self.db.begin_write().await?;
        // Taking the next indexes locks the campaign: adds to one campaign go one at a time.
        let mut sql = D::sql("UPDATE campaigns SET next_index = next_index + ");
        sql.bind(destinations.len() as i64)
            .push(", updated_at = ")
            .bind(now)
            .push(" WHERE id = ")
            .bind(id)
            .push(" AND state NOT IN ('completed', 'cancelled') RETURNING next_index");
        let Some(row) = D::fetch_all_in(&mut tx, sql).await?.into_iter().next() else {
            return Ok(match self.campaign_state(id).await? {
                Some(state) => Added::Closed(state),
                None => Added::NotFound,
            });
        };
        let first = row.int("next_index")? - destinations.len() as i64;
        for sql in insert_destinations::<D>(id, first, destinations, now) {
            D::execute_in(&mut tx, sql).await?;
        }
        D::commit(tx).await?;
        Ok(Added::Added(destinations.len() as u64))
    }

    async fn campaign_state(&self, id: Uuid) -> Result<Option<CampaignState>, StoreError> {
        let mut sql = D::sql("SELECT state FROM campaigns WHERE id = ");
        sql.bind(id);
        self.db
            .fetch_optional(sql)
            .await?
            .map(|row| campaign_state(&row.text("state")?))
            .transpose()
    }

    pub(super) async fn campaign_by_id(&self, id: Uuid) -> Result<Option<Campaign>, StoreError> {
        let mut sql = D::sql(format!(
            "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = "
        ));
        sql.bind(id);
        let Some(row) = self.db.fetch_optional(sql).await? else {
            return Ok(None);
        };
        let mut campaigns = self.with_counts(vec![rows::campaign(&row)?]).await?;
        Ok(campaigns.pop())
    }

    pub(super) async fn campaign_page(
        &self,
        filter: &CampaignFilter,
        page: &PageRequest,
    ) -> Result<Page<Campaign>, StoreError> {
        let mut sql = D::sql(format!(
            "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE TRUE"
        ));
        sql.and_in("state", filter.states.iter().map(|s| s.as_str()));
        sql.newest_first("created_at", "id", PageKey::Uuid, page);
        let rows = self.db.fetch_all(sql).await?;
        let campaigns = rows.iter().map(rows::campaign).collect::<Result<_, _>>()?;
        let campaigns = self.with_counts(campaigns).await?;
        Ok(Page::from_rows(campaigns, page.limit, |c: &Campaign| {
            Cursor::new(&c.created_at, c.id.to_string())
        }))
    }

    /// Each campaign with its counts, read from its destinations' index.
    async fn with_counts(&self, campaigns: Vec<Campaign>) -> Result<Vec<Campaign>, StoreError> {
        if campaigns.is_empty() {
            return Ok(campaigns);
        }
        let rows = self.db.fetch_all(counts_of::<D>(&campaigns)).await?;
        attach_counts(campaigns, &rows)
    }

    pub(super) async fn destination_page(
        &self,
        id: Uuid,
        filter: &DestinationFilter,
        page: &PageRequest,
    ) -> Result<Option<Page<CampaignDestination>>, StoreError> {
        if self.campaign_state(id).await?.is_none() {
            return Ok(None);
        }
        let mut sql = D::sql(format!(
            "SELECT {DESTINATION_COLUMNS} FROM campaign_destinations WHERE campaign_id = "
        ));
        sql.bind(id)
            .and_in(
                "state",
                filter
                    .states
                    .iter()
                    .flat_map(|s| s.stored().iter().copied()),
            )
            .and_in("result", &filter.results);
        if let Some(after) = page.after.as_ref().and_then(|c| c.key.parse::<i64>().ok()) {
            sql.push(" AND idx > ").bind(after);
        }
        sql.push(" ORDER BY idx LIMIT ")
            .bind(i64::from(page.limit) + 1);
        let rows = self.db.fetch_all(sql).await?;
        let mut destinations: Vec<CampaignDestination> = rows
            .iter()
            .map(rows::campaign_destination)
            .collect::<Result<_, _>>()?;
        self.with_call_ids(id, &mut destinations).await?;
        Ok(Some(Page::from_rows(
            destinations,
            page.limit,
            |d: &CampaignDestination| Cursor {
                at_micros: 0,
                key: d.index.to_string(),
            },
        )))
    }

    async fn with_call_ids(
        &self,
        id: Uuid,
        destinations: &mut [CampaignDestination],
    ) -> Result<(), StoreError> {
        if destinations.is_empty() {
            return Ok(());
        }
        let mut sql = D::sql("SELECT destination_index, id FROM calls WHERE campaign_id = ");
        sql.bind(id)
            .and_in("destination_index", destinations.iter().map(|d| d.index))
            .push(" ORDER BY destination_index, attempt");
        let mut calls: HashMap<i64, Vec<Uuid>> = HashMap::new();
        for row in self.db.fetch_all(sql).await? {
            calls
                .entry(row.int("destination_index")?)
                .or_default()
                .push(row.uuid("id")?);
        }
        for destination in destinations {
            destination.call_ids = calls.remove(&destination.index).unwrap_or_default();
        }
        Ok(())
    }

    pub(super) async fn control_campaign_in(
        &self,
        id: Uuid,
        control: Control,
        now: Timestamp,
    ) -> Result<Controlled, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let state = match control {
            Control::Pause => "'paused'",
            // A campaign resumed before its start waits for it again.
            Control::Resume => "CASE WHEN start_at > ",
            Control::Cancel => "'cancelled'",
        };
        let mut sql = D::sql("UPDATE campaigns SET state = ");
        sql.push(state);
        if control == Control::Resume {
            sql.bind(now).push(
                " THEN 'scheduled' ELSE 'running' END, error_status = NULL, error_message = NULL",
            );
        }
        sql.push(", updated_at = ")
            .bind(now)
            .push(" WHERE id = ")
            .bind(id)
            .and_in("state", control.from_states().iter().map(|s| s.as_str()))
            .push(" RETURNING id");
        let changed = !D::fetch_all_in(&mut tx, sql).await?.is_empty();
        if changed && control == Control::Cancel {
            // Attempts waiting to be sent again (after a rate limit, an outage or a pause)
            // never will be: their calls were not placed.
            let mut sql = D::sql("UPDATE calls SET result = ");
            sql.bind(NOT_PLACED)
                .push(", result_source = 'upstream', result_at = ")
                .bind(now)
                .push(
                    " WHERE id IN (SELECT call_id FROM campaign_destinations \
                     WHERE state = 'pending' AND call_id IS NOT NULL AND campaign_id = ",
                )
                .bind(id)
                .push(") AND result IS NULL RETURNING id");
            let not_placed = D::fetch_all_in(&mut tx, sql)
                .await?
                .iter()
                .map(|row| row.uuid("id"))
                .collect::<Result<Vec<_>, _>>()?;
            super::outbox::call_results::<D>(&mut tx, &not_placed, now).await?;
        }
        D::commit(tx).await?;
        if !changed {
            return Ok(match self.campaign_state(id).await? {
                Some(state) => Controlled::NotAllowed(state),
                None => Controlled::NotFound,
            });
        }
        match self.campaign_by_id(id).await? {
            Some(campaign) => Ok(Controlled::Done(Box::new(campaign))),
            None => Ok(Controlled::NotFound),
        }
    }
}

/// The statements that insert destinations numbered from `first`, a chunk each.
fn insert_destinations<D: Dialect>(
    campaign_id: Uuid,
    first: i64,
    destinations: &[NewDestination],
    now: Timestamp,
) -> Vec<Sql> {
    destinations
        .chunks(INSERT_CHUNK)
        .enumerate()
        .map(|(chunk, destinations)| {
            let start = first + (chunk * INSERT_CHUNK) as i64;
            let mut sql = D::sql(
                "INSERT INTO campaign_destinations (campaign_id, idx, destination, \
                 session_parameters, metadata, state, next_attempt_at, updated_at) SELECT ",
            );
            sql.bind(campaign_id)
                .push(", t.idx, t.destination, t.session_parameters, t.metadata, 'pending', ")
                .bind(now)
                .push(", ")
                .bind(now)
                .push(" FROM ")
                .rows(vec![
                    (
                        "idx",
                        Value::Ints(
                            (0..destinations.len())
                                .map(|i| Some(start + i as i64))
                                .collect(),
                        ),
                    ),
                    (
                        "destination",
                        Value::Texts(
                            destinations
                                .iter()
                                .map(|d| Some(d.to.to_string()))
                                .collect(),
                        ),
                    ),
                    (
                        "session_parameters",
                        Value::Texts(
                            destinations
                                .iter()
                                .map(|d| Some(parameters_json(&d.session_parameters)))
                                .collect(),
                        ),
                    ),
                    (
                        "metadata",
                        Value::Texts(destinations.iter().map(|d| d.metadata.clone()).collect()),
                    ),
                ]);
            sql
        })
        .collect()
}

/// The counts of `campaigns`' destinations, for [`attach_counts`].
pub(super) fn counts_of<D: Dialect>(campaigns: &[Campaign]) -> Sql {
    let mut sql = D::sql(
        "SELECT campaign_id, state, result, count(*) AS n, sum(attempts) AS calls \
         FROM campaign_destinations WHERE TRUE",
    );
    sql.and_in("campaign_id", campaigns.iter().map(|c| c.id))
        .push(" GROUP BY campaign_id, state, result");
    sql
}

/// Each campaign with its counts from `rows`.
pub(super) fn attach_counts<R: Columns>(
    mut campaigns: Vec<Campaign>,
    rows: &[R],
) -> Result<Vec<Campaign>, StoreError> {
    let mut counts: HashMap<Uuid, Counts> = HashMap::new();
    for row in rows {
        let counts = counts
            .entry(row.uuid("campaign_id")?)
            .or_insert_with(Counts::empty);
        let n = row.int("n")?;
        counts.destinations += n;
        counts.calls += row.opt_int("calls")?.unwrap_or(0);
        let state = row.text("state")?;
        match DestinationState::of_stored(&state) {
            Some(DestinationState::Pending) => counts.pending += n,
            Some(DestinationState::Dialing) => counts.dialing += n,
            Some(DestinationState::Done) => {
                counts.done += n;
                let result = row.opt_text("result")?.unwrap_or_else(|| NOT_PLACED.into());
                *counts.results.entry(result).or_default() += n;
            }
            None => return Err(StoreError::Corrupt(format!("destination state {state}"))),
        }
    }
    for campaign in &mut campaigns {
        campaign.counts = counts.remove(&campaign.id).unwrap_or_else(Counts::empty);
    }
    Ok(campaigns)
}

pub(super) fn campaign_state(raw: &str) -> Result<CampaignState, StoreError> {
    CampaignState::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("campaign state {raw}")))
}
