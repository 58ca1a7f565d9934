//! The store over either backend: every statement is written once here, in the SQL both
//! dialects share, and run through the backend's [`Dialect`].

use std::collections::HashMap;

use async_trait::async_trait;
use uuid::Uuid;

use super::dialect::Dialect;
use super::rows::{self, CALL_COLUMNS, OUTCOME_COLUMNS, REJECTED_COLUMNS};
use super::sql::{Columns, PageKey, Sql, Value};
use super::{
    Backend, CallResult, Claim, IDEMPOTENCY_TTL, NewCall, Store, StoreError, StoredAnswer,
};
use super::{outbox, stats, writes};
use crate::domain::call::{
    ANSWERED, Call, CallFilter, CallState, PENDING, ResultSource, upstream_result,
};
use crate::domain::callback::Callback;
use crate::domain::outcome::{Outcome, OutcomeFilter, Recorded};
use crate::domain::page::{Cursor, Page, PageRequest};
use crate::domain::rejected::RejectedCallback;
use crate::domain::stats::{Stats, StatsWindow, Timeline, TimelineWindow};
use crate::domain::time::Timestamp;
use crate::telemetry;

pub(super) struct SqlStore<D> {
    pub(super) db: D,
}

impl<D: Dialect> SqlStore<D> {
    pub(super) fn new(db: D) -> Self {
        Self { db }
    }
}

#[async_trait]
impl<D: Dialect> Store for SqlStore<D> {
    fn backend(&self) -> Backend {
        D::BACKEND
    }

    fn campaigns(&self) -> &dyn super::campaigns::CampaignStore {
        self
    }

    fn webhooks(&self) -> &dyn super::webhooks::WebhookStore {
        self
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.db.migrate().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.execute(D::sql("SELECT 1")).await.map(|_| ())
    }

    fn pool_usage(&self) -> (u32, u32) {
        self.db.pool_usage()
    }

    #[tracing::instrument(skip_all, fields(count = callbacks.len()))]
    async fn record_callbacks(&self, callbacks: &[Callback]) -> Result<Vec<Recorded>, StoreError> {
        writes::record_callbacks(&self.db, callbacks).await
    }

    #[tracing::instrument(skip(self))]
    async fn outcome(&self, conversation_uuid: &str) -> Result<Option<Outcome>, StoreError> {
        // One statement, so one snapshot (the events agree with the outcome's count and
        // status) and one round trip; the outcome's columns repeat on each of its events.
        let mut sql = D::sql(
            "SELECT o.conversation_uuid, o.status, o.agent_id, o.destination, o.occurred_at, \
             o.call_id, o.event_count, o.first_received_at, o.last_received_at, \
             e.status AS event_status, e.occurred_at AS event_occurred_at, \
             e.received_at AS event_received_at, e.payload AS event_payload \
             FROM outcomes o JOIN callback_events e ON e.conversation_uuid = o.conversation_uuid \
             WHERE o.conversation_uuid = ",
        );
        sql.bind(conversation_uuid)
            .push(" ORDER BY e.occurred_at, e.received_at, e.id");
        let rows = self.db.fetch_all(sql).await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut outcome = rows::outcome(first)?;
        outcome.events = Some(rows.iter().map(rows::event).collect::<Result<_, _>>()?);
        Ok(Some(outcome))
    }

    #[tracing::instrument(skip_all)]
    async fn outcomes(
        &self,
        filter: &OutcomeFilter,
        page: &PageRequest,
    ) -> Result<Page<Outcome>, StoreError> {
        let mut sql = D::sql(format!("SELECT {OUTCOME_COLUMNS} FROM outcomes WHERE TRUE"));
        sql.and_in("status", &filter.statuses)
            .and_eq("agent_id", filter.agent_id.as_deref())
            .and_eq("destination", filter.to.as_deref())
            .and_eq("call_id", filter.call_id)
            .and_window("occurred_at", filter.since, filter.until);
        sql.newest_first("occurred_at", "conversation_uuid", PageKey::Text, page);
        let rows = self.db.fetch_all(sql).await?;
        let items = rows.iter().map(rows::outcome).collect::<Result<_, _>>()?;
        Ok(Page::from_rows(items, page.limit, |o: &Outcome| {
            Cursor::new(&o.occurred_at, o.conversation_uuid.clone())
        }))
    }

    #[tracing::instrument(skip_all, fields(call_id = %call.id))]
    async fn insert_call(&self, call: &NewCall) -> Result<(), StoreError> {
        self.db.execute(insert_call::<D>(call)).await.map(|_| ())
    }

    #[tracing::instrument(skip(self, result))]
    async fn finish_call(&self, id: Uuid, result: &CallResult) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        let changed = D::fetch_all_in(&mut tx, finish_call::<D>(id, result)).await?;
        emit_upstream_result::<D>(&mut tx, id, result, &changed).await?;
        D::commit(tx).await?;
        count_upstream_result(result, &changed)
    }

    #[tracing::instrument(skip(self))]
    async fn call(&self, id: Uuid) -> Result<Option<Call>, StoreError> {
        let mut sql = D::sql(format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = "));
        sql.bind(id);
        let Some(row) = self.db.fetch_optional(sql).await? else {
            return Ok(None);
        };
        let mut calls = self.with_outcomes(vec![rows::call(&row)?]).await?;
        Ok(calls.pop())
    }

    #[tracing::instrument(skip_all)]
    async fn calls(
        &self,
        filter: &CallFilter,
        page: &PageRequest,
    ) -> Result<Page<Call>, StoreError> {
        let mut sql = D::sql(format!("SELECT {CALL_COLUMNS} FROM calls WHERE TRUE"));
        sql.and_eq("agent_id", filter.agent_id.as_deref())
            .and_eq("destination", filter.to.as_deref())
            .and_in("state", filter.states.iter().map(|s| s.as_str()));
        if !filter.outcome_statuses.is_empty() {
            sql.push(" AND id IN (SELECT call_id FROM outcomes WHERE TRUE")
                .and_in("status", &filter.outcome_statuses)
                .push(")");
        }
        let pending = filter.results.iter().any(|r| r == PENDING);
        let decided: Vec<&String> = filter.results.iter().filter(|r| *r != PENDING).collect();
        match (pending, decided.is_empty()) {
            (false, true) => {}
            (true, true) => {
                sql.push(" AND result IS NULL");
            }
            (false, false) => {
                sql.and_in("result", decided);
            }
            (true, false) => {
                sql.push(" AND (result IS NULL OR TRUE")
                    .and_in("result", decided)
                    .push(")");
            }
        }
        sql.and_eq("campaign_id", filter.campaign_id).and_window(
            "created_at",
            filter.since,
            filter.until,
        );
        sql.newest_first("created_at", "id", PageKey::Uuid, page);
        let rows = self.db.fetch_all(sql).await?;
        let calls = rows.iter().map(rows::call).collect::<Result<_, _>>()?;
        let calls = self.with_outcomes(calls).await?;
        Ok(Page::from_rows(calls, page.limit, |c: &Call| {
            Cursor::new(&c.created_at, c.id.to_string())
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn stats(&self, window: &StatsWindow) -> Result<Stats, StoreError> {
        stats::stats(&self.db, window).await
    }

    #[tracing::instrument(skip_all)]
    async fn timeline(&self, window: &TimelineWindow) -> Result<Timeline, StoreError> {
        stats::timeline(&self.db, window).await
    }

    #[tracing::instrument(skip(self))]
    async fn infer_answered(
        &self,
        initiated_before: Timestamp,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Uuid>, StoreError> {
        // The calls are picked and locked in id order, skipping rows another transaction
        // holds (an ingest batch deciding the same call, another replica inferring); the
        // update checks again that each still has no result.
        let mut sql = D::sql("UPDATE calls SET result = ");
        sql.bind(ANSWERED)
            .push(", result_source = ")
            .bind(ResultSource::Inferred.as_str())
            .push(", result_at = ")
            .bind(now)
            .push(
                " WHERE result IS NULL AND id IN (SELECT id FROM calls \
                 WHERE state = 'initiated' AND result IS NULL AND initiated_at < ",
            )
            .bind(initiated_before)
            .push(" ORDER BY id LIMIT ")
            .bind(i64::from(limit))
            .push(D::SYNTAX.skip_locked)
            .push(") RETURNING id");
        let mut tx = self.db.begin_write().await?;
        let rows = D::fetch_all_in(&mut tx, sql).await?;
        let ids = rows
            .iter()
            .map(|row| row.uuid("id"))
            .collect::<Result<Vec<_>, _>>()?;
        outbox::call_results::<D>(&mut tx, &ids, now).await?;
        D::commit(tx).await?;
        Ok(ids)
    }

    async fn calls_awaiting_result(&self) -> Result<i64, StoreError> {
        let sql =
            D::sql("SELECT count(*) AS n FROM calls WHERE state = 'initiated' AND result IS NULL");
        match self.db.fetch_optional(sql).await? {
            Some(row) => row.int("n"),
            None => Ok(0),
        }
    }

    #[tracing::instrument(skip_all)]
    async fn keep_rejected(
        &self,
        rejected: &RejectedCallback,
        keep: u32,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        let mut insert = D::sql(format!(
            "INSERT INTO rejected_callbacks ({REJECTED_COLUMNS}) VALUES ("
        ));
        insert
            .bind(rejected.id)
            .push(", ")
            .bind(rejected.received_at)
            .push(", ")
            .bind(i32::from(rejected.status))
            .push(", ")
            .bind(rejected.reason.as_str())
            .push(", ")
            .bind(&rejected.content_type)
            .push(", ")
            .bind(Value::Bytes(rejected.body.clone()))
            .push(")");
        D::execute_in(&mut tx, insert).await?;
        let mut trim = D::sql(
            "DELETE FROM rejected_callbacks WHERE (received_at, id) < \
             (SELECT received_at, id FROM rejected_callbacks \
              ORDER BY received_at DESC, id DESC LIMIT 1 OFFSET ",
        );
        trim.bind(i64::from(keep) - 1).push(")");
        D::execute_in(&mut tx, trim).await?;
        D::commit(tx).await
    }

    #[tracing::instrument(skip_all)]
    async fn rejected(&self, page: &PageRequest) -> Result<Page<RejectedCallback>, StoreError> {
        let mut sql = D::sql(format!(
            "SELECT {REJECTED_COLUMNS} FROM rejected_callbacks WHERE TRUE"
        ));
        sql.newest_first("received_at", "id", PageKey::Uuid, page);
        let rows = self.db.fetch_all(sql).await?;
        let items = rows.iter().map(rows::rejected).collect::<Result<_, _>>()?;
        Ok(Page::from_rows(
            items,
            page.limit,
            |r: &RejectedCallback| Cursor::new(&r.received_at, r.id.to_string()),
        ))
    }

    async fn claim_idempotency_key(
        &self,
        key: &str,
        request_hash: &str,
        now: Timestamp,
    ) -> Result<Claim, StoreError> {
        // Expired keys go as new ones come.
        let mut expire = D::sql("DELETE FROM idempotency_keys WHERE expires_at <= ");
        expire.bind(now);
        self.db.execute(expire).await?;
        let mut claim = D::sql(
            "INSERT INTO idempotency_keys (key, request_hash, created_at, expires_at) VALUES (",
        );
        claim
            .bind(key)
            .push(", ")
            .bind(request_hash)
            .push(", ")
            .bind(now)
            .push(", ")
            .bind(now + IDEMPOTENCY_TTL)
            .push(") ON CONFLICT (key) DO NOTHING");
        if self.db.execute(claim).await? == 1 {
            return Ok(Claim::Claimed);
        }
        let mut sql = D::sql(
            "SELECT request_hash, response_status, response_headers, response_body \
             FROM idempotency_keys WHERE key = ",
        );
        sql.bind(key);
        let Some(row) = self.db.fetch_optional(sql).await? else {
            return Ok(Claim::InProgress);
        };
        super::claim_from_parts(
            request_hash,
            row.text("request_hash")?,
            row.opt_int32("response_status")?,
            row.opt_text("response_headers")?,
            row.opt_text("response_body")?,
        )
    }

    async fn complete_idempotency_key(
        &self,
        key: &str,
        answer: &StoredAnswer,
    ) -> Result<(), StoreError> {
        let mut sql = D::sql("UPDATE idempotency_keys SET response_status = ");
        sql.bind(i32::from(answer.status))
            .push(", response_headers = ")
            .bind(super::headers_json(answer))
            .push(", response_body = ")
            .bind(answer.body.as_str())
            .push(" WHERE key = ")
            .bind(key);
        self.db.execute(sql).await.map(|_| ())
    }

    async fn release_idempotency_key(&self, key: &str) -> Result<(), StoreError> {
        let mut sql = D::sql("DELETE FROM idempotency_keys WHERE key = ");
        sql.bind(key).push(" AND response_status IS NULL");
        self.db.execute(sql).await.map(|_| ())
    }
}

impl<D: Dialect> SqlStore<D> {
    /// Each call with its latest outcome.
    async fn with_outcomes(&self, calls: Vec<Call>) -> Result<Vec<Call>, StoreError> {
        if calls.is_empty() {
            return Ok(calls);
        }
        let rows = self.db.fetch_all(outcomes_of::<D>(&calls)).await?;
        with_latest_outcomes(calls, &rows)
    }
}

/// The outcomes of `calls`, for [`with_latest_outcomes`].
pub(super) fn outcomes_of<D: Dialect>(calls: &[Call]) -> Sql {
    let mut sql = D::sql(format!("SELECT {OUTCOME_COLUMNS} FROM outcomes WHERE TRUE"));
    sql.and_in("call_id", calls.iter().map(|c| c.id));
    sql
}

/// Each call with the latest of its outcomes among `rows`.
pub(super) fn with_latest_outcomes<R: Columns>(
    mut calls: Vec<Call>,
    rows: &[R],
) -> Result<Vec<Call>, StoreError> {
    let mut latest = HashMap::<Uuid, Outcome>::new();
    for outcome in rows.iter().map(rows::outcome) {
        let outcome = outcome?;
        let Some(call_id) = outcome.call_id else {
            continue;
        };
        match latest.get(&call_id) {
            Some(seen) if seen.occurred_at >= outcome.occurred_at => {}
            _ => {
                latest.insert(call_id, outcome);
            }
        }
    }
    for call in &mut calls {
        call.outcome = latest.remove(&call.id);
    }
    Ok(calls)
}

/// Records a call about to be sent upstream, as `unknown` until AI Studio answers.
pub(super) fn insert_call<D: Dialect>(call: &NewCall) -> Sql {
    let mut sql = D::sql(
        "INSERT INTO calls (id, agent_id, destination, region, hangup_on_answer_machine, \
         session_parameters, metadata, state, status_url, campaign_id, destination_index, \
         attempt, result, result_source, result_at, created_at, updated_at) VALUES (",
    );
    sql.bind(call.id)
        .push(", ")
        .bind(call.agent_id.as_str())
        .push(", ")
        .bind(call.to.as_str())
        .push(", ")
        .bind(call.region.as_str())
        .push(", ")
        .bind(call.hangup_on_answer_machine)
        .push(", ")
        .bind(super::parameters_json(&call.session_parameters))
        .push(", ")
        .bind(&call.metadata)
        .push(", ")
        .bind(CallState::Unknown.as_str())
        .push(", ")
        .bind(call.status_url.as_str())
        .push(", ")
        .bind(call.campaign_id)
        .push(", ")
        .bind(Value::Int(call.destination_index))
        .push(", ")
        .bind(i64::from(call.attempt))
        .push(", ")
        // Unknown until AI Studio answers: what a crash in between leaves is honest.
        .bind(upstream_result(CallState::Unknown))
        .push(", ")
        .bind(ResultSource::Upstream.as_str())
        .push(", ")
        .bind(call.created_at)
        .push(", ")
        .bind(call.created_at)
        .push(", ")
        .bind(call.created_at)
        .push(")");
    sql
}

/// Records AI Studio's answer to a call; returns the call's `result_source` after it.
pub(super) fn finish_call<D: Dialect>(id: Uuid, result: &CallResult) -> Sql {
    // A callback for the call may have come before the answer to make-call was recorded:
    // its result stands.
    let decided = upstream_result(result.state);
    let keep = "CASE WHEN result_source = 'callback' THEN";
    let mut sql = D::sql("UPDATE calls SET state = ");
    sql.bind(result.state.as_str())
        .push(", session_id = ")
        .bind(&result.session_id)
        .push(", session_start_time = ")
        .bind(result.session_start_time)
        .push(", error_status = ")
        .bind(result.error.as_ref().and_then(|e| e.status).map(i32::from))
        .push(", error_message = ")
        .bind(result.error.as_ref().map(|e| e.message.as_str()))
        .push(", updated_at = ")
        .bind(result.at)
        .push(", initiated_at = ")
        .bind((result.state == CallState::Initiated).then_some(result.at))
        .push(&format!(", result = {keep} result ELSE "))
        .bind(decided)
        .push(&format!(" END, result_source = {keep} result_source ELSE "))
        .bind(decided.map(|_| ResultSource::Upstream.as_str()))
        .push(&format!(" END, result_at = {keep} result_at ELSE "))
        .bind(decided.map(|_| result.at))
        .push(" END WHERE id = ")
        .bind(id);
    sql.push(" RETURNING result_source");
    sql
}

/// Emits `call.result` when AI Studio's answer decided the call's result.
pub(super) async fn emit_upstream_result<D: Dialect>(
    tx: &mut D::Tx,
    id: Uuid,
    result: &CallResult,
    changed: &[D::Row],
) -> Result<(), StoreError> {
    if upstream_decided(result, changed)? {
        outbox::call_results::<D>(tx, &[id], result.at).await?;
    }
    Ok(())
}

/// Whether AI Studio's answer decided the call's result (a callback's did not yield).
fn upstream_decided<R: Columns>(result: &CallResult, changed: &[R]) -> Result<bool, StoreError> {
    Ok(match (upstream_result(result.state), changed.first()) {
        (Some(_), Some(row)) => {
            row.opt_text("result_source")?.as_deref() == Some(ResultSource::Upstream.as_str())
        }
        _ => false,
    })
}

/// Counts the result AI Studio's answer decided, when it stood (a callback's did not yield).
pub(super) fn count_upstream_result<R: Columns>(
    result: &CallResult,
    changed: &[R],
) -> Result<(), StoreError> {
    if let Some(decided) = upstream_result(result.state)
        && upstream_decided(result, changed)?
    {
        telemetry::count_result(decided, ResultSource::Upstream);
    }
    Ok(())
}
