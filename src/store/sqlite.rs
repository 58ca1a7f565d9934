//! The zero-setup backend: one file, WAL mode with `synchronous=FULL`, so that a committed
//! callback survives a crash. Instants are stored as microseconds since the epoch.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
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
use crate::domain::time::{Timestamp, from_micros, to_micros};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const OUTCOME_COLUMNS: &str = "conversation_uuid, status, agent_id, destination, occurred_at, \
     call_id, event_count, first_received_at, last_received_at";
const CALL_COLUMNS: &str = "id, agent_id, destination, region, hangup_on_answer_machine, \
     session_parameters, metadata, state, session_id, session_start_time, error_status, \
     error_message, created_at";

const INSERT_EVENT: &str = "INSERT INTO callback_events \
     (conversation_uuid, status, occurred_at, received_at, agent_id, destination, call_id, payload) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (conversation_uuid, status, occurred_at) DO NOTHING RETURNING id";

/// Same fold as the Postgres backend: the greatest `(occurred_at, received_at, status)` wins.
const UPSERT_OUTCOME: &str = "INSERT INTO outcomes \
     (conversation_uuid, status, agent_id, destination, occurred_at, status_received_at, call_id, \
      event_count, first_received_at, last_received_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?6, ?6) \
     ON CONFLICT (conversation_uuid) DO UPDATE SET \
       status = CASE WHEN (excluded.occurred_at, excluded.status_received_at, excluded.status) \
                        > (outcomes.occurred_at, outcomes.status_received_at, outcomes.status) \
                     THEN excluded.status ELSE outcomes.status END, \
       status_received_at = CASE WHEN (excluded.occurred_at, excluded.status_received_at, excluded.status) \
                        > (outcomes.occurred_at, outcomes.status_received_at, outcomes.status) \
                     THEN excluded.status_received_at ELSE outcomes.status_received_at END, \
       agent_id = CASE WHEN (excluded.occurred_at, excluded.status_received_at, excluded.status) > (outcomes.occurred_at, outcomes.status_received_at, outcomes.status) \
                     THEN COALESCE(excluded.agent_id, outcomes.agent_id) ELSE COALESCE(outcomes.agent_id, excluded.agent_id) END, \
       destination = CASE WHEN (excluded.occurred_at, excluded.status_received_at, excluded.status) > (outcomes.occurred_at, outcomes.status_received_at, outcomes.status) \
                     THEN COALESCE(excluded.destination, outcomes.destination) ELSE COALESCE(outcomes.destination, excluded.destination) END, \
       call_id = CASE WHEN (excluded.occurred_at, excluded.status_received_at, excluded.status) > (outcomes.occurred_at, outcomes.status_received_at, outcomes.status) \
                     THEN COALESCE(excluded.call_id, outcomes.call_id) ELSE COALESCE(outcomes.call_id, excluded.call_id) END, \
       occurred_at = max(outcomes.occurred_at, excluded.occurred_at), \
       event_count = outcomes.event_count + 1, \
       first_received_at = min(outcomes.first_received_at, excluded.first_received_at), \
       last_received_at = max(outcomes.last_received_at, excluded.last_received_at)";

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
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
        let mut recorded = Vec::with_capacity(callbacks.len());
        // BEGIN IMMEDIATE takes the write lock up front, so the busy timeout applies instead
        // of a deadlock error on lock upgrade.
        let mut conn = self.pool.acquire().await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let result: Result<(), StoreError> = async {
            for cb in callbacks {
                let call_id = cb.call_id.map(|id| id.to_string());
                let inserted = sqlx::query(INSERT_EVENT)
                    .bind(cb.conversation_uuid.as_str())
                    .bind(&cb.status)
                    .bind(to_micros(&cb.occurred_at))
                    .bind(to_micros(&cb.received_at))
                    .bind(&cb.agent_id)
                    .bind(&cb.to)
                    .bind(&call_id)
                    .bind(&cb.payload)
                    .fetch_optional(&mut *conn)
                    .await?;
                if inserted.is_none() {
                    recorded.push(Recorded::Duplicate);
                    continue;
                }
                sqlx::query(UPSERT_OUTCOME)
                    .bind(cb.conversation_uuid.as_str())
                    .bind(&cb.status)
                    .bind(&cb.agent_id)
                    .bind(&cb.to)
                    .bind(to_micros(&cb.occurred_at))
                    .bind(to_micros(&cb.received_at))
                    .bind(&call_id)
                    .execute(&mut *conn)
                    .await?;
                recorded.push(Recorded::Stored);
            }
            Ok(())
        }
        .await;
        let result = match result {
            Ok(()) => sqlx::query("COMMIT")
                .execute(&mut *conn)
                .await
                .map_err(StoreError::from),
            Err(err) => Err(err),
        };
        if let Err(err) = result {
            // The connection goes back to the pool only with its transaction closed.
            if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                conn.detach();
            }
            return Err(err);
        }
        Ok(recorded)
    }

    #[tracing::instrument(skip(self))]
    async fn outcome(&self, conversation_uuid: &str) -> Result<Option<Outcome>, StoreError> {
        // One read transaction: a WAL snapshot, so that the events agree with the outcome.
        let mut tx = self.pool.begin().await?;
        let sql = format!("SELECT {OUTCOME_COLUMNS} FROM outcomes WHERE conversation_uuid = ?");
        let Some(row) = sqlx::query(&sql)
            .bind(conversation_uuid)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let mut outcome = outcome_from_row(&row)?;
        let events = sqlx::query(
            "SELECT status, occurred_at, received_at, payload FROM callback_events \
             WHERE conversation_uuid = ? ORDER BY occurred_at, received_at, id",
        )
        .bind(conversation_uuid)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        outcome.events = Some(
            events
                .iter()
                .map(|row| {
                    Ok(Event {
                        status: row.try_get("status")?,
                        occurred_at: from_micros(row.try_get("occurred_at")?),
                        received_at: from_micros(row.try_get("received_at")?),
                        payload: raw_json(row.try_get("payload")?)?,
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
        let mut query =
            QueryBuilder::<Sqlite>::new(format!("SELECT {OUTCOME_COLUMNS} FROM outcomes WHERE 1"));
        push_in(&mut query, "status", &filter.statuses);
        if let Some(agent_id) = &filter.agent_id {
            query.push(" AND agent_id = ").push_bind(agent_id.clone());
        }
        if let Some(to) = &filter.to {
            query.push(" AND destination = ").push_bind(to.clone());
        }
        if let Some(call_id) = filter.call_id {
            query.push(" AND call_id = ").push_bind(call_id.to_string());
        }
        push_window(&mut query, "occurred_at", filter.since, filter.until);
        if let Some(after) = &page.after {
            query
                .push(" AND (occurred_at, conversation_uuid) < (")
                .push_bind(after.at_micros)
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
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        )
        .bind(call.id.to_string())
        .bind(&call.agent_id)
        .bind(&call.to)
        .bind(call.region.as_str())
        .bind(call.hangup_on_answer_machine)
        .bind(parameters_json(&call.session_parameters))
        .bind(&call.metadata)
        .bind(CallState::Unknown.as_str())
        .bind(to_micros(&call.created_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip(self, result))]
    async fn finish_call(&self, id: Uuid, result: &CallResult) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE calls SET state = ?2, session_id = ?3, session_start_time = ?4, \
             error_status = ?5, error_message = ?6, updated_at = ?7 WHERE id = ?1",
        )
        .bind(id.to_string())
        .bind(result.state.as_str())
        .bind(&result.session_id)
        .bind(result.session_start_time.as_ref().map(to_micros))
        .bind(result.error.as_ref().and_then(|e| e.status).map(i32::from))
        .bind(result.error.as_ref().map(|e| e.message.clone()))
        .bind(to_micros(&result.at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    async fn call(&self, id: Uuid) -> Result<Option<Call>, StoreError> {
        let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = ?");
        let Some(row) = sqlx::query(&sql)
            .bind(id.to_string())
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
            QueryBuilder::<Sqlite>::new(format!("SELECT {CALL_COLUMNS} FROM calls WHERE 1"));
        if let Some(agent_id) = &filter.agent_id {
            query.push(" AND agent_id = ").push_bind(agent_id.clone());
        }
        if let Some(to) = &filter.to {
            query.push(" AND destination = ").push_bind(to.clone());
        }
        let states: Vec<String> = filter
            .states
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        push_in(&mut query, "state", &states);
        if !filter.outcome_statuses.is_empty() {
            query.push(" AND id IN (SELECT call_id FROM outcomes WHERE 1");
            push_in(&mut query, "status", &filter.outcome_statuses);
            query.push(")");
        }
        push_window(&mut query, "created_at", filter.since, filter.until);
        if let Some(after) = &page.after {
            query
                .push(" AND (created_at, id) < (")
                .push_bind(after.at_micros)
                .push(", ")
                .push_bind(after.key.clone())
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
            QueryBuilder::<Sqlite>::new("SELECT status, count(*) FROM outcomes WHERE 1");
        push_window(
            &mut query,
            "occurred_at",
            Some(window.since),
            Some(window.until),
        );
        push_agent(&mut query, &window.agent_id);
        query.push(" GROUP BY status");
        let outcomes = counts(query.build().fetch_all(&self.pool).await?)?;

        let mut query = QueryBuilder::<Sqlite>::new("SELECT state, count(*) FROM calls WHERE 1");
        push_window(
            &mut query,
            "created_at",
            Some(window.since),
            Some(window.until),
        );
        push_agent(&mut query, &window.agent_id);
        query.push(" GROUP BY state");
        let calls = calls_by_state(counts(query.build().fetch_all(&self.pool).await?)?)?;

        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT count(*), coalesce(sum(f.failed), 0), coalesce(sum(f.call_id IS NULL), 0) \
             FROM calls LEFT JOIN (SELECT call_id, max(status IN (",
        );
        let mut list = query.separated(", ");
        for status in FAILURE_STATUSES {
            list.push_bind(status);
        }
        query.push(
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
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(rejected.id.to_string())
        .bind(to_micros(&rejected.received_at))
        .bind(i32::from(rejected.status))
        .bind(&rejected.reason)
        .bind(&rejected.content_type)
        .bind(&rejected.body)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM rejected_callbacks WHERE (received_at, id) < \
             (SELECT received_at, id FROM rejected_callbacks \
              ORDER BY received_at DESC, id DESC LIMIT 1 OFFSET ?)",
        )
        .bind(i64::from(keep) - 1)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn rejected(&self, page: &PageRequest) -> Result<Page<RejectedCallback>, StoreError> {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT id, received_at, status, reason, content_type, body \
             FROM rejected_callbacks WHERE TRUE",
        );
        if let Some(after) = &page.after {
            query
                .push(" AND (received_at, id) < (")
                .push_bind(after.at_micros)
                .push(", ")
                .push_bind(after.key.clone())
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
                    id: parse_uuid(row.try_get("id")?)?.unwrap_or_default(),
                    received_at: from_micros(row.try_get("received_at")?),
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
        sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= ?")
            .bind(to_micros(&now))
            .execute(&self.pool)
            .await?;
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (key, request_hash, created_at, expires_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT (key) DO NOTHING RETURNING key",
        )
        .bind(key)
        .bind(request_hash)
        .bind(to_micros(&now))
        .bind(to_micros(&(now + IDEMPOTENCY_TTL)))
        .fetch_optional(&self.pool)
        .await?;
        if claimed.is_some() {
            return Ok(Claim::Claimed);
        }
        let row = sqlx::query(
            "SELECT request_hash, response_status, response_headers, response_body FROM idempotency_keys WHERE key = ?",
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
            "UPDATE idempotency_keys SET response_status = ?, response_headers = ?, \
             response_body = ? WHERE key = ?",
        )
        .bind(i32::from(answer.status))
        .bind(headers_json(answer))
        .bind(&answer.body)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release_idempotency_key(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM idempotency_keys WHERE key = ? AND response_status IS NULL")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl SqliteStore {
    async fn with_outcomes(&self, mut calls: Vec<Call>) -> Result<Vec<Call>, StoreError> {
        if calls.is_empty() {
            return Ok(calls);
        }
        let ids: Vec<String> = calls.iter().map(|c| c.id.to_string()).collect();
        let mut query =
            QueryBuilder::<Sqlite>::new(format!("SELECT {OUTCOME_COLUMNS} FROM outcomes WHERE 1"));
        push_in(&mut query, "call_id", &ids);
        let rows = query.build().fetch_all(&self.pool).await?;
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

fn push_in(query: &mut QueryBuilder<'_, Sqlite>, column: &str, values: &[String]) {
    if values.is_empty() {
        return;
    }
    query.push(format!(" AND {column} IN ("));
    let mut list = query.separated(", ");
    for value in values {
        list.push_bind(value.clone());
    }
    list.push_unseparated(")");
}

fn push_window(
    query: &mut QueryBuilder<'_, Sqlite>,
    column: &str,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) {
    if let Some(since) = since {
        query
            .push(format!(" AND {column} >= "))
            .push_bind(to_micros(&since));
    }
    if let Some(until) = until {
        query
            .push(format!(" AND {column} < "))
            .push_bind(to_micros(&until));
    }
}

fn push_agent(query: &mut QueryBuilder<'_, Sqlite>, agent_id: &Option<String>) {
    if let Some(agent_id) = agent_id {
        query.push(" AND agent_id = ").push_bind(agent_id.clone());
    }
}

fn counts(rows: Vec<SqliteRow>) -> Result<BTreeMap<String, i64>, StoreError> {
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

fn parse_uuid(raw: Option<String>) -> Result<Option<Uuid>, StoreError> {
    raw.map(|s| Uuid::parse_str(&s).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

fn outcome_from_row(row: &SqliteRow) -> Result<Outcome, StoreError> {
    Ok(Outcome {
        conversation_uuid: row.try_get("conversation_uuid")?,
        status: row.try_get("status")?,
        agent_id: row.try_get("agent_id")?,
        to: row.try_get("destination")?,
        occurred_at: from_micros(row.try_get("occurred_at")?),
        call_id: parse_uuid(row.try_get("call_id")?)?,
        event_count: row.try_get("event_count")?,
        first_received_at: from_micros(row.try_get("first_received_at")?),
        last_received_at: from_micros(row.try_get("last_received_at")?),
        events: None,
    })
}

fn call_from_row(row: &SqliteRow) -> Result<Call, StoreError> {
    let state: String = row.try_get("state")?;
    let parameters: String = row.try_get("session_parameters")?;
    let metadata: Option<String> = row.try_get("metadata")?;
    let id: String = row.try_get("id")?;
    Ok(Call {
        id: Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
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
        session_start_time: row
            .try_get::<Option<i64>, _>("session_start_time")?
            .map(from_micros),
        error: upstream_error(row.try_get("error_status")?, row.try_get("error_message")?),
        outcome: None,
        created_at: from_micros(row.try_get("created_at")?),
    })
}
