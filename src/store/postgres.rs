//! The production backend. Statements keep the callback tables distributable by
//! `conversation_uuid` on Citus: outcomes are folded by conditional upserts, never triggers.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::{
    Backend, CallResult, Claim, IDEMPOTENCY_TTL, NewCall, Store, StoreError, StoredAnswer,
    calls_by_state, claim_from_parts, headers_json, latest_outcome_per_call, parameters_json,
    raw_json, region, status_code, upstream_error,
};
use crate::domain::call::{Call, CallFilter, CallState};
use crate::domain::callback::Callback;
use crate::domain::outcome::{Event, Outcome, OutcomeFilter, Recorded};
use crate::domain::page::{Cursor, Page, PageRequest};
use crate::domain::rejected::RejectedCallback;
use crate::domain::stats::{FAILURE_STATUSES, InitiatedStats, Stats, StatsWindow};
use crate::domain::time::Timestamp;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const OUTCOME_COLUMNS: &str = "conversation_uuid, status, agent_id, destination, occurred_at, \
     call_id, event_count, first_received_at, last_received_at";
const CALL_COLUMNS: &str = "id, agent_id, destination, region, hangup_on_answer_machine, \
     session_parameters, metadata, state, session_id, session_start_time, error_status, \
     error_message, created_at";

/// Inserts a batch of events in the order given, each once per key; returns the keys stored.
/// Two copies of one key in a batch store the first.
const INSERT_EVENTS: &str = "INSERT INTO callback_events \
     (conversation_uuid, status, occurred_at, received_at, agent_id, destination, call_id, payload) \
     SELECT conversation_uuid, status, occurred_at, received_at, agent_id, destination, call_id, payload \
     FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], \
                 $6::text[], $7::uuid[], $8::text[]) WITH ORDINALITY \
          AS t(conversation_uuid, status, occurred_at, received_at, agent_id, destination, call_id, payload, n) \
     ORDER BY n \
     ON CONFLICT (conversation_uuid, status, occurred_at) DO NOTHING \
     RETURNING conversation_uuid, status, occurred_at";

/// The order in which a batch's events compete for their outcome: the greatest wins.
const WINNER_FIRST: &str = "ORDER BY occurred_at DESC, received_at DESC, status DESC";

/// Folds a batch's newly stored events into their outcomes in one statement: first within the
/// batch (per conversation, the winner is the greatest `(occurred_at, received_at, status)`,
/// and the descriptive columns come from the greatest event that has them), then with the
/// stored outcome by the same rule, so that any split into batches and any arrival order
/// give the same row.
static FOLD_OUTCOMES: std::sync::LazyLock<String> = std::sync::LazyLock::new(fold_outcomes);

fn fold_outcomes() -> String {
    let first = |column: &str| format!("(array_agg({column} {WINNER_FIRST}))[1]");
    let first_known = |column: &str| {
        format!("(array_agg({column} {WINNER_FIRST}) FILTER (WHERE {column} IS NOT NULL))[1]")
    };
    let wins = "(EXCLUDED.occurred_at, EXCLUDED.status_received_at, EXCLUDED.status) \
                > (o.occurred_at, o.status_received_at, o.status)";
    let pick = |column: &str| {
        format!("{column} = CASE WHEN {wins} THEN EXCLUDED.{column} ELSE o.{column} END")
    };
    let known = |column: &str| {
        format!(
            "{column} = CASE WHEN {wins} THEN COALESCE(EXCLUDED.{column}, o.{column}) \
             ELSE COALESCE(o.{column}, EXCLUDED.{column}) END"
        )
    };
    format!(
        "INSERT INTO outcomes AS o \
         (conversation_uuid, status, agent_id, destination, occurred_at, status_received_at, \
          call_id, event_count, first_received_at, last_received_at) \
         SELECT conversation_uuid, {status}, {agent_id}, {destination}, max(occurred_at), \
                {received_at}, {call_id}, count(*), min(received_at), max(received_at) \
         FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], \
                     $6::text[], $7::uuid[]) \
              AS t(conversation_uuid, status, occurred_at, received_at, agent_id, destination, call_id) \
         GROUP BY conversation_uuid ORDER BY conversation_uuid \
         ON CONFLICT (conversation_uuid) DO UPDATE SET {pick_status}, {pick_received}, \
           {known_agent}, {known_destination}, {known_call}, \
           occurred_at = GREATEST(o.occurred_at, EXCLUDED.occurred_at), \
           event_count = o.event_count + EXCLUDED.event_count, \
           first_received_at = LEAST(o.first_received_at, EXCLUDED.first_received_at), \
           last_received_at = GREATEST(o.last_received_at, EXCLUDED.last_received_at)",
        status = first("status"),
        agent_id = first_known("agent_id"),
        destination = first_known("destination"),
        received_at = first("received_at"),
        call_id = first_known("call_id"),
        pick_status = pick("status"),
        pick_received = pick("status_received_at"),
        known_agent = known("agent_id"),
        known_destination = known("destination"),
        known_call = known("call_id"),
    )
}

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn pool_usage(&self) -> (u32, u32) {
        let idle = self.pool.num_idle() as u32;
        (self.pool.size().saturating_sub(idle), idle)
    }

    #[tracing::instrument(skip_all, fields(count = callbacks.len()))]
    async fn record_callbacks(&self, callbacks: &[Callback]) -> Result<Vec<Recorded>, StoreError> {
        // Two statements per batch, whatever its size: the events, then their outcomes. Each
        // takes its locks in one global order (event keys sorted, then outcome rows sorted),
        // and no statement waits on the other kind, so concurrent batches never wait on each
        // other in a cycle. Only row and index locks are involved, so this holds on Citus too.
        let mut order: Vec<usize> = (0..callbacks.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&callbacks[a], &callbacks[b]);
            (&a.conversation_uuid, &a.status, a.occurred_at).cmp(&(
                &b.conversation_uuid,
                &b.status,
                b.occurred_at,
            ))
        });
        let sorted: Vec<&Callback> = order.iter().map(|&i| &callbacks[i]).collect();
        let mut tx = self.pool.begin().await?;
        // A lock held elsewhere makes the server give up too, not only the client, so that a
        // connection abandoned by the ingest deadline is freed rather than left waiting.
        sqlx::query(
            "SELECT set_config('lock_timeout', '4s', true), \
                    set_config('statement_timeout', '4s', true)",
        )
        .execute(&mut *tx)
        .await?;
        let stored_keys = sqlx::query(INSERT_EVENTS)
            .bind(
                sorted
                    .iter()
                    .map(|cb| cb.conversation_uuid.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                sorted
                    .iter()
                    .map(|cb| cb.status.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(sorted.iter().map(|cb| cb.occurred_at).collect::<Vec<_>>())
            .bind(sorted.iter().map(|cb| cb.received_at).collect::<Vec<_>>())
            .bind(
                sorted
                    .iter()
                    .map(|cb| cb.agent_id.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(sorted.iter().map(|cb| cb.to.as_deref()).collect::<Vec<_>>())
            .bind(sorted.iter().map(|cb| cb.call_id).collect::<Vec<_>>())
            .bind(
                sorted
                    .iter()
                    .map(|cb| cb.payload.as_str())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&mut *tx)
            .await?;
        // Each stored key is found in the sorted input without copying it; the first of two
        // copies of a key is the one stored.
        let mut recorded = vec![Recorded::Duplicate; callbacks.len()];
        for row in &stored_keys {
            let (conversation, status, occurred_at): (&str, &str, Timestamp) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            let first = sorted.partition_point(|cb| {
                (
                    cb.conversation_uuid.as_str(),
                    cb.status.as_str(),
                    cb.occurred_at,
                ) < (conversation, status, occurred_at)
            });
            recorded[order[first]] = Recorded::Stored;
        }
        let stored: Vec<&Callback> = order
            .iter()
            .filter(|&&index| recorded[index] == Recorded::Stored)
            .map(|&index| &callbacks[index])
            .collect();
        if !stored.is_empty() {
            sqlx::query(FOLD_OUTCOMES.as_str())
                .bind(
                    stored
                        .iter()
                        .map(|cb| cb.conversation_uuid.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    stored
                        .iter()
                        .map(|cb| cb.status.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(stored.iter().map(|cb| cb.occurred_at).collect::<Vec<_>>())
                .bind(stored.iter().map(|cb| cb.received_at).collect::<Vec<_>>())
                .bind(
                    stored
                        .iter()
                        .map(|cb| cb.agent_id.as_deref())
                        .collect::<Vec<_>>(),
                )
                .bind(stored.iter().map(|cb| cb.to.as_deref()).collect::<Vec<_>>())
                .bind(stored.iter().map(|cb| cb.call_id).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(recorded)
    }

    #[tracing::instrument(skip(self))]
    async fn outcome(&self, conversation_uuid: &str) -> Result<Option<Outcome>, StoreError> {
        // One statement, so one snapshot (the events agree with the outcome's count and
        // status) and one round trip; the events come as parallel arrays, oldest first.
        let sql = format!(
            "SELECT {OUTCOME_COLUMNS}, e.statuses, e.occurred, e.received, e.payloads \
             FROM outcomes CROSS JOIN LATERAL ( \
               SELECT array_agg(status ORDER BY occurred_at, received_at, id) AS statuses, \
                      array_agg(occurred_at ORDER BY occurred_at, received_at, id) AS occurred, \
                      array_agg(received_at ORDER BY occurred_at, received_at, id) AS received, \
                      array_agg(payload ORDER BY occurred_at, received_at, id) AS payloads \
               FROM callback_events \
               WHERE callback_events.conversation_uuid = outcomes.conversation_uuid) e \
             WHERE outcomes.conversation_uuid = $1"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(conversation_uuid)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let mut outcome = outcome_from_row(&row)?;
        let statuses: Vec<String> = row.try_get::<Option<_>, _>("statuses")?.unwrap_or_default();
        let occurred: Vec<Timestamp> = row.try_get::<Option<_>, _>("occurred")?.unwrap_or_default();
        let received: Vec<Timestamp> = row.try_get::<Option<_>, _>("received")?.unwrap_or_default();
        let payloads: Vec<String> = row.try_get::<Option<_>, _>("payloads")?.unwrap_or_default();
        outcome.events = Some(
            statuses
                .into_iter()
                .zip(occurred)
                .zip(received)
                .zip(payloads)
                .map(|(((status, occurred_at), received_at), payload)| {
                    Ok(Event {
                        status,
                        occurred_at,
                        received_at,
                        payload: raw_json(payload)?,
                    })
                })
                .collect::<Result<_, StoreError>>()?,
        );
        Ok(Some(outcome))
    }

    #[tracing::instrument(skip_all)]
    async fn outcomes(
        &self,
        filter: &OutcomeFilter,
        page: &PageRequest,
    ) -> Result<Page<Outcome>, StoreError> {
        let mut query = QueryBuilder::<Postgres>::new(format!(
            "SELECT {OUTCOME_COLUMNS} FROM outcomes WHERE TRUE"
        ));
        if !filter.statuses.is_empty() {
            query
                .push(" AND status = ANY(")
                .push_bind(filter.statuses.clone())
                .push(")");
        }
        if let Some(agent_id) = &filter.agent_id {
            query.push(" AND agent_id = ").push_bind(agent_id.clone());
        }
        if let Some(to) = &filter.to {
            query.push(" AND destination = ").push_bind(to.clone());
        }
        if let Some(call_id) = filter.call_id {
            query.push(" AND call_id = ").push_bind(call_id);
        }
        push_window(&mut query, "occurred_at", filter.since, filter.until);
        if let Some(after) = &page.after {
            query
                .push(" AND (occurred_at, conversation_uuid) < (")
                .push_bind(after.at())
                .push(", ")
                .push_bind(after.key.clone())
                .push(")");
        }
        query
            .push(" ORDER BY occurred_at DESC, conversation_uuid DESC LIMIT ")
            .push_bind(i64::from(page.limit) + 1);
        let rows = query.build().fetch_all(&self.pool).await?;
        let items = rows
            .iter()
            .map(outcome_from_row)
            .collect::<Result<_, _>>()?;
        Ok(Page::from_rows(items, page.limit, |o: &Outcome| {
            Cursor::new(&o.occurred_at, o.conversation_uuid.clone())
        }))
    }

    #[tracing::instrument(skip_all, fields(call_id = %call.id))]
    async fn insert_call(&self, call: &NewCall) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO calls (id, agent_id, destination, region, hangup_on_answer_machine, \
             session_parameters, metadata, state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(call.id)
        .bind(&call.agent_id)
        .bind(&call.to)
        .bind(call.region.as_str())
        .bind(call.hangup_on_answer_machine)
        .bind(parameters_json(&call.session_parameters))
        .bind(&call.metadata)
        .bind(CallState::Unknown.as_str())
        .bind(call.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip(self, result))]
    async fn finish_call(&self, id: Uuid, result: &CallResult) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE calls SET state = $2, session_id = $3, session_start_time = $4, \
             error_status = $5, error_message = $6, updated_at = $7 WHERE id = $1",
        )
        .bind(id)
        .bind(result.state.as_str())
        .bind(&result.session_id)
        .bind(result.session_start_time)
        .bind(result.error.as_ref().and_then(|e| e.status).map(i32::from))
        .bind(result.error.as_ref().map(|e| e.message.clone()))
        .bind(result.at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    async fn call(&self, id: Uuid) -> Result<Option<Call>, StoreError> {
        let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = $1");
        let Some(row) = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let mut calls = self.with_outcomes(vec![call_from_row(&row)?]).await?;
        Ok(calls.pop())
    }

    #[tracing::instrument(skip_all)]
    async fn calls(
        &self,
        filter: &CallFilter,
        page: &PageRequest,
    ) -> Result<Page<Call>, StoreError> {
        let mut query =
            QueryBuilder::<Postgres>::new(format!("SELECT {CALL_COLUMNS} FROM calls WHERE TRUE"));
        if let Some(agent_id) = &filter.agent_id {
            query.push(" AND agent_id = ").push_bind(agent_id.clone());
        }
        if let Some(to) = &filter.to {
            query.push(" AND destination = ").push_bind(to.clone());
        }
        if !filter.states.is_empty() {
            let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
            query.push(" AND state = ANY(").push_bind(states).push(")");
        }
        if !filter.outcome_statuses.is_empty() {
            query
                .push(" AND id IN (SELECT call_id FROM outcomes WHERE status = ANY(")
                .push_bind(filter.outcome_statuses.clone())
                .push("))");
        }
        push_window(&mut query, "created_at", filter.since, filter.until);
        if let Some(after) = &page.after {
            let id = Uuid::parse_str(&after.key).unwrap_or_default();
            query
                .push(" AND (created_at, id) < (")
                .push_bind(after.at())
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        query
            .push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(page.limit) + 1);
        let rows = query.build().fetch_all(&self.pool).await?;
        let calls = rows.iter().map(call_from_row).collect::<Result<_, _>>()?;
        let calls = self.with_outcomes(calls).await?;
        Ok(Page::from_rows(calls, page.limit, |c: &Call| {
            Cursor::new(&c.created_at, c.id.to_string())
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn stats(&self, window: &StatsWindow) -> Result<Stats, StoreError> {
        let mut query =
            QueryBuilder::<Postgres>::new("SELECT status, count(*) FROM outcomes WHERE TRUE");
        push_window(
            &mut query,
            "occurred_at",
            Some(window.since),
            Some(window.until),
        );
        push_agent(&mut query, &window.agent_id);
        query.push(" GROUP BY status");
        let outcomes = counts(query.build().fetch_all(&self.pool).await?)?;

        let mut query =
            QueryBuilder::<Postgres>::new("SELECT state, count(*) FROM calls WHERE TRUE");
        push_window(
            &mut query,
            "created_at",
            Some(window.since),
            Some(window.until),
        );
        push_agent(&mut query, &window.agent_id);
        query.push(" GROUP BY state");
        let calls = calls_by_state(counts(query.build().fetch_all(&self.pool).await?)?)?;

        // A join on a grouped subquery rather than correlated subqueries, which Citus can
        // plan when outcomes are distributed.
        let mut query = QueryBuilder::<Postgres>::new(
            "SELECT count(*), count(*) FILTER (WHERE f.failed), \
             count(*) FILTER (WHERE f.call_id IS NULL) FROM calls LEFT JOIN \
             (SELECT call_id, bool_or(status = ANY(",
        );
        query.push_bind(FAILURE_STATUSES.to_vec()).push(
            ")) AS failed FROM outcomes WHERE call_id IS NOT NULL GROUP BY call_id) f \
             ON f.call_id = calls.id WHERE state = 'initiated'",
        );
        push_window(
            &mut query,
            "created_at",
            Some(window.since),
            Some(window.until),
        );
        push_agent(&mut query, &window.agent_id);
        let row = query.build().fetch_one(&self.pool).await?;
        Ok(Stats {
            since: window.since,
            until: window.until,
            agent_id: window.agent_id.clone(),
            outcomes,
            calls,
            initiated: InitiatedStats {
                total: row.try_get(0)?,
                with_failure_callback: row.try_get(1)?,
                without_callback: row.try_get(2)?,
            },
        })
    }

    #[tracing::instrument(skip_all)]
    async fn keep_rejected(
        &self,
        rejected: &RejectedCallback,
        keep: u32,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO rejected_callbacks (id, received_at, status, reason, content_type, body) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(rejected.id)
        .bind(rejected.received_at)
        .bind(i32::from(rejected.status))
        .bind(&rejected.reason)
        .bind(&rejected.content_type)
        .bind(&rejected.body)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM rejected_callbacks WHERE (received_at, id) < \
             (SELECT received_at, id FROM rejected_callbacks \
              ORDER BY received_at DESC, id DESC OFFSET $1 LIMIT 1)",
        )
        .bind(i64::from(keep) - 1)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn rejected(&self, page: &PageRequest) -> Result<Page<RejectedCallback>, StoreError> {
        let mut query = QueryBuilder::<Postgres>::new(
            "SELECT id, received_at, status, reason, content_type, body \
             FROM rejected_callbacks WHERE TRUE",
        );
        if let Some(after) = &page.after {
            let id = Uuid::parse_str(&after.key).unwrap_or_default();
            query
                .push(" AND (received_at, id) < (")
                .push_bind(after.at())
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        query
            .push(" ORDER BY received_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(page.limit) + 1);
        let rows = query.build().fetch_all(&self.pool).await?;
        let items = rows
            .iter()
            .map(|row| {
                Ok(RejectedCallback {
                    id: row.try_get("id")?,
                    received_at: row.try_get("received_at")?,
                    status: status_code(row.try_get("status")?)?,
                    reason: row.try_get("reason")?,
                    content_type: row.try_get("content_type")?,
                    body: row.try_get("body")?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
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
        sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (key, request_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING RETURNING key",
        )
        .bind(key)
        .bind(request_hash)
        .bind(now)
        .bind(now + IDEMPOTENCY_TTL)
        .fetch_optional(&self.pool)
        .await?;
        if claimed.is_some() {
            return Ok(Claim::Claimed);
        }
        let row = sqlx::query(
            "SELECT request_hash, response_status, response_headers, response_body FROM idempotency_keys WHERE key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(Claim::InProgress);
        };
        claim_from_parts(
            request_hash,
            row.try_get("request_hash")?,
            row.try_get("response_status")?,
            row.try_get("response_headers")?,
            row.try_get("response_body")?,
        )
    }

    async fn complete_idempotency_key(
        &self,
        key: &str,
        answer: &StoredAnswer,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE idempotency_keys SET response_status = $2, response_headers = $3, \
             response_body = $4 WHERE key = $1",
        )
        .bind(key)
        .bind(i32::from(answer.status))
        .bind(headers_json(answer))
        .bind(&answer.body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release_idempotency_key(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM idempotency_keys WHERE key = $1 AND response_status IS NULL")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl PostgresStore {
    async fn with_outcomes(&self, mut calls: Vec<Call>) -> Result<Vec<Call>, StoreError> {
        if calls.is_empty() {
            return Ok(calls);
        }
        let ids: Vec<Uuid> = calls.iter().map(|c| c.id).collect();
        let sql = format!("SELECT {OUTCOME_COLUMNS} FROM outcomes WHERE call_id = ANY($1)");
        let rows = sqlx::query(&sql).bind(ids).fetch_all(&self.pool).await?;
        let outcomes = rows
            .iter()
            .map(outcome_from_row)
            .collect::<Result<_, _>>()?;
        let mut latest = latest_outcome_per_call(outcomes);
        for call in &mut calls {
            call.outcome = latest.remove(&call.id);
        }
        Ok(calls)
    }
}

fn push_window(
    query: &mut QueryBuilder<'_, Postgres>,
    column: &str,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) {
    if let Some(since) = since {
        query.push(format!(" AND {column} >= ")).push_bind(since);
    }
    if let Some(until) = until {
        query.push(format!(" AND {column} < ")).push_bind(until);
    }
}

fn push_agent(query: &mut QueryBuilder<'_, Postgres>, agent_id: &Option<String>) {
    if let Some(agent_id) = agent_id {
        query.push(" AND agent_id = ").push_bind(agent_id.clone());
    }
}

fn counts(rows: Vec<PgRow>) -> Result<BTreeMap<String, i64>, StoreError> {
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

fn outcome_from_row(row: &PgRow) -> Result<Outcome, StoreError> {
    Ok(Outcome {
        conversation_uuid: row.try_get("conversation_uuid")?,
        status: row.try_get("status")?,
        agent_id: row.try_get("agent_id")?,
        to: row.try_get("destination")?,
        occurred_at: row.try_get("occurred_at")?,
        call_id: row.try_get("call_id")?,
        event_count: row.try_get("event_count")?,
        first_received_at: row.try_get("first_received_at")?,
        last_received_at: row.try_get("last_received_at")?,
        events: None,
    })
}

fn call_from_row(row: &PgRow) -> Result<Call, StoreError> {
    let state: String = row.try_get("state")?;
    let parameters: String = row.try_get("session_parameters")?;
    let metadata: Option<String> = row.try_get("metadata")?;
    Ok(Call {
        id: row.try_get("id")?,
        agent_id: row.try_get("agent_id")?,
        to: row.try_get("destination")?,
        region: region(row.try_get("region")?)?,
        hangup_on_answer_machine: row.try_get("hangup_on_answer_machine")?,
        session_parameters: serde_json::from_str(&parameters)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        metadata: metadata.map(raw_json).transpose()?,
        state: CallState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("call state {state}")))?,
        session_id: row.try_get("session_id")?,
        session_start_time: row.try_get("session_start_time")?,
        error: upstream_error(row.try_get("error_status")?, row.try_get("error_message")?),
        outcome: None,
        created_at: row.try_get("created_at")?,
    })
}
