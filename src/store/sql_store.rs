//! The store over either backend: every statement is written once here, in the SQL both
//! dialects share, and run through the backend's [`Dialect`].

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use uuid::Uuid;

use super::batch::{self, CountChanges, CountKey, Counted, WindowPart};
use super::dialect::Dialect;
use super::rows::{self, CALL_COLUMNS, OUTCOME_COLUMNS, REJECTED_COLUMNS};
use super::sql::{Columns, Value};
use super::{
    Backend, CallResult, Claim, IDEMPOTENCY_TTL, NewCall, Store, StoreError, StoredAnswer,
};
use crate::domain::call::{
    ANSWERED, Call, CallFilter, CallState, PENDING, ResultSource, callback_result, upstream_result,
};
use crate::domain::callback::Callback;
use crate::domain::outcome::{Outcome, OutcomeFilter, Recorded};
use crate::domain::page::{Cursor, Page, PageRequest};
use crate::domain::rejected::RejectedCallback;
use crate::domain::stats::{FAILURE_STATUSES, InitiatedStats, Stats, StatsWindow};
use crate::domain::time::Timestamp;
use crate::telemetry;

pub(super) struct SqlStore<D> {
    db: D,
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
        // Three statements per batch, whatever its size: the events, their outcomes, and the
        // hourly counts those outcomes moved in. Each takes its locks in one global order
        // (event keys sorted, then outcome rows sorted, then count rows sorted), and no
        // statement waits on an earlier kind, so concurrent batches never wait on each other
        // in a cycle. Only row and index locks are involved, so this holds on Citus too.
        let mut order: Vec<usize> = (0..callbacks.len()).collect();
        order.sort_by(|&a, &b| event_key(&callbacks[a]).cmp(&event_key(&callbacks[b])));
        let sorted: Vec<&Callback> = order.iter().map(|&i| &callbacks[i]).collect();
        let mut tx = self.db.begin_write().await?;

        let mut insert = D::sql(
            "INSERT INTO callback_events (conversation_uuid, status, occurred_at, received_at, \
             agent_id, destination, call_id, payload) \
             SELECT conversation_uuid, status, occurred_at, received_at, agent_id, destination, \
             call_id, payload FROM ",
        );
        insert.rows(vec![
            (
                "conversation_uuid",
                texts(&sorted, |cb| Some(cb.conversation_uuid.as_str())),
            ),
            ("status", texts(&sorted, |cb| Some(cb.status.as_str()))),
            ("occurred_at", times(&sorted, |cb| cb.occurred_at)),
            ("received_at", times(&sorted, |cb| cb.received_at)),
            ("agent_id", texts(&sorted, |cb| cb.agent_id.as_deref())),
            ("destination", texts(&sorted, |cb| cb.to.as_deref())),
            (
                "call_id",
                Value::Uuids(sorted.iter().map(|cb| cb.call_id).collect()),
            ),
            ("payload", texts(&sorted, |cb| Some(cb.payload.as_str()))),
        ]);
        // Two copies of one key in a batch store the first.
        insert.push(
            " WHERE TRUE ORDER BY n \
             ON CONFLICT (conversation_uuid, status, occurred_at) DO NOTHING \
             RETURNING conversation_uuid, status, occurred_at",
        );
        let stored_keys = D::fetch_all_in(&mut tx, insert).await?;

        // Each stored key is found in the sorted input without copying it.
        let mut recorded = vec![Recorded::Duplicate; callbacks.len()];
        for row in &stored_keys {
            let (conversation, status, occurred_at) = (
                row.text("conversation_uuid")?,
                row.text("status")?,
                row.time("occurred_at")?,
            );
            let first = sorted.partition_point(|cb| {
                event_key(cb) < (conversation.as_str(), status.as_str(), occurred_at)
            });
            recorded[order[first]] = Recorded::Stored;
        }
        let stored: Vec<&Callback> = order
            .iter()
            .filter(|&&index| recorded[index] == Recorded::Stored)
            .map(|&index| &callbacks[index])
            .collect();
        if !stored.is_empty() {
            let folded = batch::fold(&stored);
            let moved = D::fetch_all_in(&mut tx, fold_outcomes::<D>(&folded)).await?;
            let mut changes = CountChanges::default();
            for row in &moved {
                let before = match row.opt_text("previous_status")? {
                    Some(status) => Some(Counted {
                        occurred_at: row.time("previous_occurred_at")?,
                        status,
                        agent_id: row.opt_text("previous_agent_id")?,
                    }),
                    None => None,
                };
                let now = Counted {
                    occurred_at: row.time("occurred_at")?,
                    status: row.text("status")?,
                    agent_id: row.opt_text("agent_id")?,
                };
                changes.moved(before, now);
            }
            let results = batch::call_results(&stored);
            let decided = if results.is_empty() {
                Vec::new()
            } else {
                D::fetch_all_in(&mut tx, decide_results::<D>(&results)).await?
            };
            let changes = changes.into_changes();
            if !changes.is_empty() {
                D::execute_in(&mut tx, count_outcomes::<D>(changes)).await?;
            }
            D::commit(tx).await?;
            for row in &decided {
                telemetry::count_result(&row.text("result")?, ResultSource::Callback);
                if row.opt_text("previous_result_source")?.as_deref()
                    == Some(ResultSource::Inferred.as_str())
                {
                    telemetry::count_correction();
                }
            }
            return Ok(recorded);
        }
        D::commit(tx).await?;
        Ok(recorded)
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
        if let Some(after) = &page.after {
            sql.push(" AND (occurred_at, conversation_uuid) < (")
                .bind(after.at())
                .push(", ")
                .bind(after.key.as_str())
                .push(")");
        }
        sql.push(" ORDER BY occurred_at DESC, conversation_uuid DESC LIMIT ")
            .bind(i64::from(page.limit) + 1);
        let rows = self.db.fetch_all(sql).await?;
        let items = rows.iter().map(rows::outcome).collect::<Result<_, _>>()?;
        Ok(Page::from_rows(items, page.limit, |o: &Outcome| {
            Cursor::new(&o.occurred_at, o.conversation_uuid.clone())
        }))
    }

    #[tracing::instrument(skip_all, fields(call_id = %call.id))]
    async fn insert_call(&self, call: &NewCall) -> Result<(), StoreError> {
        let mut sql = D::sql(
            "INSERT INTO calls (id, agent_id, destination, region, hangup_on_answer_machine, \
             session_parameters, metadata, state, status_url, campaign_id, attempt, result, \
             result_source, result_at, created_at, updated_at) VALUES (",
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
        self.db.execute(sql).await.map(|_| ())
    }

    #[tracing::instrument(skip(self, result))]
    async fn finish_call(&self, id: Uuid, result: &CallResult) -> Result<(), StoreError> {
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
        let changed = self.db.fetch_all(sql).await?;
        if let (Some(decided), Some(row)) = (decided, changed.first())
            && row.opt_text("result_source")?.as_deref() == Some(ResultSource::Upstream.as_str())
        {
            telemetry::count_result(decided, ResultSource::Upstream);
        }
        Ok(())
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
        if let Some(after) = &page.after {
            sql.push(" AND (created_at, id) < (")
                .bind(after.at())
                .push(", ")
                .bind(Uuid::parse_str(&after.key).unwrap_or_default())
                .push(")");
        }
        sql.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .bind(i64::from(page.limit) + 1);
        let rows = self.db.fetch_all(sql).await?;
        let calls = rows.iter().map(rows::call).collect::<Result<_, _>>()?;
        let calls = self.with_outcomes(calls).await?;
        Ok(Page::from_rows(calls, page.limit, |c: &Call| {
            Cursor::new(&c.created_at, c.id.to_string())
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn stats(&self, window: &StatsWindow) -> Result<Stats, StoreError> {
        let outcomes = counts(self.db.fetch_all(outcome_counts::<D>(window)).await?)?;

        let mut sql = D::sql("SELECT state AS key, count(*) AS n FROM calls WHERE TRUE");
        sql.and_window("created_at", Some(window.since), Some(window.until))
            .and_eq("agent_id", window.agent_id.as_deref())
            .push(" GROUP BY state");
        let calls = super::calls_by_state(counts(self.db.fetch_all(sql).await?)?)?;

        let mut sql = D::sql("SELECT coalesce(result, ");
        sql.bind(PENDING)
            .push(") AS key, count(*) AS n FROM calls WHERE TRUE")
            .and_window("created_at", Some(window.since), Some(window.until))
            .and_eq("agent_id", window.agent_id.as_deref())
            .push(" GROUP BY key");
        let results = counts(self.db.fetch_all(sql).await?)?;

        // A join on a grouped subquery rather than correlated subqueries, which Citus can
        // plan when outcomes are distributed.
        let mut sql = D::sql(
            "SELECT count(*) AS total, \
             coalesce(sum(CASE WHEN f.failed = 1 THEN 1 ELSE 0 END), 0) AS failed, \
             coalesce(sum(CASE WHEN f.call_id IS NULL THEN 1 ELSE 0 END), 0) AS silent \
             FROM calls LEFT JOIN (SELECT call_id, max(CASE WHEN TRUE",
        );
        sql.and_in("status", FAILURE_STATUSES).push(
            " THEN 1 ELSE 0 END) AS failed FROM outcomes WHERE call_id IS NOT NULL \
             GROUP BY call_id) f ON f.call_id = calls.id WHERE state = 'initiated'",
        );
        sql.and_window("created_at", Some(window.since), Some(window.until))
            .and_eq("agent_id", window.agent_id.as_deref());
        let row = self
            .db
            .fetch_optional(sql)
            .await?
            .ok_or_else(|| StoreError::Corrupt("an aggregate without a row".into()))?;
        Ok(Stats {
            since: window.since,
            until: window.until,
            agent_id: window.agent_id.clone(),
            outcomes,
            calls,
            results,
            initiated: InitiatedStats {
                total: row.int("total")?,
                with_failure_callback: row.int("failed")?,
                without_callback: row.int("silent")?,
            },
        })
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
        let rows = self.db.fetch_all(sql).await?;
        rows.iter().map(|row| row.uuid("id")).collect()
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
        if let Some(after) = &page.after {
            sql.push(" AND (received_at, id) < (")
                .bind(after.at())
                .push(", ")
                .bind(Uuid::parse_str(&after.key).unwrap_or_default())
                .push(")");
        }
        sql.push(" ORDER BY received_at DESC, id DESC LIMIT ")
            .bind(i64::from(page.limit) + 1);
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
    async fn with_outcomes(&self, mut calls: Vec<Call>) -> Result<Vec<Call>, StoreError> {
        if calls.is_empty() {
            return Ok(calls);
        }
        let mut sql = D::sql(format!("SELECT {OUTCOME_COLUMNS} FROM outcomes WHERE TRUE"));
        sql.and_in("call_id", calls.iter().map(|c| c.id));
        let rows = self.db.fetch_all(sql).await?;
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
}

/// How events are ordered for their key `(conversation_uuid, status, occurred_at)`.
fn event_key(cb: &Callback) -> (&str, &str, Timestamp) {
    (
        cb.conversation_uuid.as_str(),
        cb.status.as_str(),
        cb.occurred_at,
    )
}

fn texts<'a>(callbacks: &[&'a Callback], field: impl Fn(&'a Callback) -> Option<&'a str>) -> Value {
    Value::Texts(
        callbacks
            .iter()
            .map(|cb| field(cb).map(str::to_owned))
            .collect(),
    )
}

fn times(callbacks: &[&Callback], field: impl Fn(&Callback) -> Timestamp) -> Value {
    Value::Times(callbacks.iter().map(|cb| Some(field(cb))).collect())
}

/// Folds a batch, already folded per conversation, into the stored outcomes by the rule of
/// [`batch::wins`], and returns each outcome's new and previous count key. The previous key
/// is kept in the row by the update itself (`previous_*`), so that it is the row the update
/// actually replaced, whatever committed since the statement began.
fn fold_outcomes<D: Dialect>(folded: &[batch::Folded]) -> super::sql::Sql {
    let syntax = D::SYNTAX;
    let c = syntax.bytewise;
    let wins = format!(
        "(excluded.occurred_at, excluded.status_received_at, excluded.status{c}) \
         > (o.occurred_at, o.status_received_at, o.status{c})"
    );
    let pick = |column: &str| {
        format!("{column} = CASE WHEN {wins} THEN excluded.{column} ELSE o.{column} END")
    };
    let known = |column: &str| {
        format!(
            "{column} = CASE WHEN {wins} THEN COALESCE(excluded.{column}, o.{column}) \
             ELSE COALESCE(o.{column}, excluded.{column}) END"
        )
    };
    let (greatest, least) = (syntax.greatest, syntax.least);
    let mut sql = D::sql(
        "INSERT INTO outcomes AS o (conversation_uuid, status, agent_id, destination, \
         occurred_at, status_received_at, call_id, event_count, first_received_at, \
         last_received_at) \
         SELECT conversation_uuid, status, agent_id, destination, occurred_at, \
         status_received_at, call_id, event_count, first_received_at, last_received_at FROM ",
    );
    let column =
        |f: fn(&batch::Folded) -> Option<String>| Value::Texts(folded.iter().map(f).collect());
    let instant = |f: fn(&batch::Folded) -> Timestamp| {
        Value::Times(folded.iter().map(|o| Some(f(o))).collect())
    };
    sql.rows(vec![
        (
            "conversation_uuid",
            column(|o| Some(o.conversation_uuid.clone())),
        ),
        ("status", column(|o| Some(o.status.clone()))),
        ("agent_id", column(|o| o.agent_id.clone())),
        ("destination", column(|o| o.destination.clone())),
        ("occurred_at", instant(|o| o.occurred_at)),
        ("status_received_at", instant(|o| o.status_received_at)),
        (
            "call_id",
            Value::Uuids(folded.iter().map(|o| o.call_id).collect()),
        ),
        (
            "event_count",
            Value::Ints(folded.iter().map(|o| Some(o.event_count)).collect()),
        ),
        ("first_received_at", instant(|o| o.first_received_at)),
        ("last_received_at", instant(|o| o.last_received_at)),
    ]);
    sql.push(&format!(
        " WHERE TRUE ORDER BY n \
         ON CONFLICT (conversation_uuid) DO UPDATE SET \
           previous_status = o.status, previous_agent_id = o.agent_id, \
           previous_occurred_at = o.occurred_at, \
           {status}, {received}, {agent}, {destination}, {call}, \
           occurred_at = {greatest}(o.occurred_at, excluded.occurred_at), \
           event_count = o.event_count + excluded.event_count, \
           first_received_at = {least}(o.first_received_at, excluded.first_received_at), \
           last_received_at = {greatest}(o.last_received_at, excluded.last_received_at) \
         RETURNING status, agent_id, occurred_at, previous_status, previous_agent_id, \
           previous_occurred_at",
        status = pick("status"),
        received = pick("status_received_at"),
        agent = known("agent_id"),
        destination = known("destination"),
        call = known("call_id"),
    ));
    sql
}

/// Sets the result of each call a batch has callbacks for, unless the call already has a
/// later callback's result (the outcome rule decides which is later); returns each call it
/// changed with its result and the source it replaced. Calls are updated in id order.
fn decide_results<D: Dialect>(results: &[batch::CallResultOf<'_>]) -> super::sql::Sql {
    let c = D::SYNTAX.bytewise;
    let mut sql = D::sql(
        "UPDATE calls SET previous_result_source = result_source, result = t.result, \
         result_source = 'callback', result_at = t.received_at, result_status = t.status, \
         result_occurred_at = t.occurred_at, result_received_at = t.received_at FROM ",
    );
    sql.rows(vec![
        (
            "call_id",
            Value::Uuids(results.iter().map(|r| Some(r.call_id)).collect()),
        ),
        (
            "result",
            Value::Texts(
                results
                    .iter()
                    .map(|r| Some(callback_result(&r.callback.status).to_owned()))
                    .collect(),
            ),
        ),
        (
            "status",
            Value::Texts(
                results
                    .iter()
                    .map(|r| Some(r.callback.status.clone()))
                    .collect(),
            ),
        ),
        (
            "occurred_at",
            Value::Times(
                results
                    .iter()
                    .map(|r| Some(r.callback.occurred_at))
                    .collect(),
            ),
        ),
        (
            "received_at",
            Value::Times(
                results
                    .iter()
                    .map(|r| Some(r.callback.received_at))
                    .collect(),
            ),
        ),
    ]);
    sql.push(&format!(
        " WHERE calls.id = t.call_id AND (calls.result_source IS NULL \
           OR calls.result_source <> 'callback' \
           OR (t.occurred_at, t.received_at, t.status{c}) \
              > (calls.result_occurred_at, calls.result_received_at, calls.result_status{c})) \
         RETURNING calls.result, calls.previous_result_source"
    ));
    sql
}

/// Adds changes to the outcome counts, in key order.
fn count_outcomes<D: Dialect>(changes: Vec<(CountKey, i64)>) -> super::sql::Sql {
    let mut sql = D::sql(
        "INSERT INTO outcome_counts AS c (minutes, bucket, status, agent, count) \
         SELECT minutes, bucket, status, agent, count FROM ",
    );
    let texts = |f: fn(&CountKey) -> String| {
        Value::Texts(changes.iter().map(|(k, _)| Some(f(k))).collect())
    };
    sql.rows(vec![
        (
            "minutes",
            Value::Ints(
                changes
                    .iter()
                    .map(|(k, _)| Some(k.width.minutes()))
                    .collect(),
            ),
        ),
        (
            "bucket",
            Value::Times(changes.iter().map(|(k, _)| Some(k.bucket)).collect()),
        ),
        ("status", texts(|k| k.status.clone())),
        ("agent", texts(|k| k.agent.clone())),
        (
            "count",
            Value::Ints(changes.iter().map(|(_, n)| Some(*n)).collect()),
        ),
    ]);
    sql.push(
        " WHERE TRUE ORDER BY n ON CONFLICT (minutes, bucket, status, agent) \
         DO UPDATE SET count = c.count + excluded.count",
    );
    sql
}

/// Outcomes by status whose `occurred_at` is in the window, in one statement (one snapshot):
/// whole hours and whole minutes from the counts, the partial minutes at either end from the
/// outcomes themselves.
fn outcome_counts<D: Dialect>(window: &StatsWindow) -> super::sql::Sql {
    let mut sql = D::sql("SELECT key, CAST(sum(n) AS BIGINT) AS n FROM (");
    for (i, part) in batch::window_parts(window.since, window.until)
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            sql.push(" UNION ALL ");
        }
        match part {
            WindowPart::Buckets(width, since, until) => {
                sql.push("SELECT status AS key, count AS n FROM outcome_counts WHERE minutes = ")
                    .bind(width.minutes())
                    .and_window("bucket", Some(since), Some(until));
                if let Some(agent_id) = &window.agent_id {
                    sql.push(" AND agent = ")
                        .bind(batch::agent_key(Some(agent_id)));
                }
            }
            WindowPart::Rows(since, until) => {
                sql.push("SELECT status AS key, count(*) AS n FROM outcomes WHERE TRUE")
                    .and_window("occurred_at", Some(since), Some(until))
                    .and_eq("agent_id", window.agent_id.as_deref())
                    .push(" GROUP BY status");
            }
        }
    }
    sql.push(") AS parts GROUP BY key");
    sql
}

fn counts(rows: Vec<impl Columns>) -> Result<BTreeMap<String, i64>, StoreError> {
    let mut counts = BTreeMap::new();
    for row in rows {
        let n = row.int("n")?;
        if n != 0 {
            counts.insert(row.text("key")?, n);
        }
    }
    Ok(counts)
}
