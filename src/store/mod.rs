//! Durable state behind one trait, with a module per backend. SQL lives here and nowhere else.

mod batch;
mod campaign_sql;
pub mod campaigns;
mod dialect;
mod dispatch;
pub mod health;
mod outbox;
mod postgres;
mod rows;
mod sql;
mod sql_store;
mod sqlite;
mod stats;
mod webhook_sql;
pub mod webhooks;
mod writes;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::call::{Call, CallFilter, CallState, SessionParameter, UpstreamError};
use crate::domain::callback::Callback;
use crate::domain::outcome::{Outcome, OutcomeFilter, Recorded};
use crate::domain::page::{Page, PageRequest};
use crate::domain::region::Region;
use crate::domain::rejected::RejectedCallback;
use crate::domain::stats::{Stats, StatsWindow, Timeline, TimelineWindow};
use crate::domain::time::Timestamp;

use postgres::Postgres;
use sql_store::SqlStore;
use sqlite::Sqlite;

/// The database engine behind a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// `postgres` or `sqlite`, as logs and `/readyz` name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported DATABASE_URL scheme (expected postgres:// or sqlite://)")]
    UnsupportedUrl,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the database did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

impl StoreError {
    /// Whether the database refused this data itself (a constraint, a value it cannot hold),
    /// as opposed to being unreachable, overloaded, locked or shutting down. Only the latter
    /// can succeed later, so only those callbacks are worth spooling.
    pub fn is_refusal(&self) -> bool {
        let Self::Database(sqlx::Error::Database(err)) = self else {
            return false;
        };
        if !matches!(err.kind(), sqlx::error::ErrorKind::Other) {
            return true;
        }
        let code = err.code().unwrap_or_default();
        if err
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some()
        {
            // SQLSTATE classes 22 (data exception), 23 (integrity constraint violation) and
            // 54 (program limit exceeded, e.g. an index row too large).
            return ["22", "23", "54"]
                .iter()
                .any(|class| code.starts_with(class));
        }
        // SQLite result codes TOOBIG, CONSTRAINT, MISMATCH and RANGE; extended codes keep the
        // primary code in their low byte.
        code.parse::<u32>()
            .is_ok_and(|code| matches!(code & 0xff, 18 | 19 | 20 | 25))
    }
}

impl StoreError {
    /// Whether the database could not be reached or could not answer for now (down,
    /// restarting, out of connections, locked, too slow), so that a retry may succeed.
    pub fn is_unavailable(&self) -> bool {
        use sqlx::Error;
        match self {
            Self::Timeout(_) => true,
            Self::Database(
                Error::PoolTimedOut
                | Error::PoolClosed
                | Error::Io(_)
                | Error::Tls(_)
                | Error::Protocol(_)
                | Error::WorkerCrashed,
            ) => true,
            Self::Database(Error::Database(err)) => {
                let code = err.code().unwrap_or_default();
                if err
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some()
                {
                    // SQLSTATE classes 08 (connection), 53 (insufficient resources), 57
                    // (operator intervention: shutdown, statement timeout), 58 (system
                    // error); 55000 (the database does not allow connections) and 55P03
                    // (lock not available); 40001 and 40P01 (serialization failure, deadlock:
                    // the transaction was rolled back and may succeed if tried again).
                    return ["08", "53", "57", "58"].iter().any(|c| code.starts_with(c))
                        || ["55000", "55P03", "40001", "40P01"].contains(&code.as_ref());
                }
                // SQLite BUSY, LOCKED, IOERR, FULL and CANTOPEN.
                code.parse::<u32>()
                    .is_ok_and(|code| matches!(code & 0xff, 5 | 6 | 10 | 13 | 14))
            }
            _ => false,
        }
    }
}

/// A call about to be sent upstream; stored first with state `unknown`, so that a crash
/// mid-request leaves an honest record.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub id: Uuid,
    pub agent_id: String,
    pub to: String,
    pub region: Region,
    pub hangup_on_answer_machine: bool,
    pub session_parameters: Vec<SessionParameter>,
    pub metadata: Option<String>,
    /// The per-call status URL given to AI Studio.
    pub status_url: String,
    pub campaign_id: Option<Uuid>,
    /// The campaign destination the call is an attempt at.
    pub destination_index: Option<i64>,
    pub attempt: u32,
    pub created_at: Timestamp,
}

/// What upstream answered for a call.
#[derive(Debug, Clone)]
pub struct CallResult {
    pub state: CallState,
    pub session_id: Option<String>,
    pub session_start_time: Option<Timestamp>,
    pub error: Option<UpstreamError>,
    pub at: Timestamp,
}

/// The answer to claiming an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new: the caller owns it and must complete or release it.
    Claimed,
    /// The key was used with another request body.
    Mismatch,
    /// A request with this key is still being processed.
    InProgress,
    /// The key already has an answer: replay it.
    Completed(StoredAnswer),
}

/// An answer kept whole for an `Idempotency-Key`, so that a replay is the first answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub status: u16,
    /// Headers beyond `Content-Type`, which follows from the status.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// Campaigns and their dispatch.
    fn campaigns(&self) -> &dyn campaigns::CampaignStore;
    /// Webhook subscriptions and their deliveries.
    fn webhooks(&self) -> &dyn webhooks::WebhookStore;
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Answers when the database does.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Connections (in use, idle) of the pool.
    fn pool_usage(&self) -> (u32, u32);

    /// Stores callbacks in one transaction, each once per `(conversation_uuid, status,
    /// occurred_at)`, and folds the new ones into their outcomes. Returns when committed.
    async fn record_callbacks(&self, callbacks: &[Callback]) -> Result<Vec<Recorded>, StoreError>;
    /// One outcome with its events, oldest first.
    async fn outcome(&self, conversation_uuid: &str) -> Result<Option<Outcome>, StoreError>;
    /// Outcomes newest first by `(occurred_at, conversation_uuid)`.
    async fn outcomes(
        &self,
        filter: &OutcomeFilter,
        page: &PageRequest,
    ) -> Result<Page<Outcome>, StoreError>;

    async fn insert_call(&self, call: &NewCall) -> Result<(), StoreError>;
    async fn finish_call(&self, id: Uuid, result: &CallResult) -> Result<(), StoreError>;
    /// One call with its latest outcome.
    async fn call(&self, id: Uuid) -> Result<Option<Call>, StoreError>;
    /// Calls newest first by `(created_at, id)`, each with its latest outcome.
    async fn calls(
        &self,
        filter: &CallFilter,
        page: &PageRequest,
    ) -> Result<Page<Call>, StoreError>;
    async fn stats(&self, window: &StatsWindow) -> Result<Stats, StoreError>;
    /// Outcomes by status per bucket of a window whose ends are bucket edges.
    async fn timeline(&self, window: &TimelineWindow) -> Result<Timeline, StoreError>;

    /// Sets `answered` (source `inferred`) on up to `limit` initiated calls without a result
    /// that were initiated before `initiated_before`, and returns their ids. Each call is
    /// inferred once however many replicas run this at once: rows another transaction holds
    /// are skipped, and a row that got a result meanwhile is left alone.
    async fn infer_answered(
        &self,
        initiated_before: Timestamp,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Uuid>, StoreError>;
    /// Initiated calls still waiting for a result.
    async fn calls_awaiting_result(&self) -> Result<i64, StoreError>;

    /// Keeps a refused callback, dropping the oldest beyond the newest `keep`.
    async fn keep_rejected(&self, rejected: &RejectedCallback, keep: u32)
    -> Result<(), StoreError>;
    /// Refused callbacks newest first by `(received_at, id)`.
    async fn rejected(&self, page: &PageRequest) -> Result<Page<RejectedCallback>, StoreError>;

    async fn claim_idempotency_key(
        &self,
        key: &str,
        request_hash: &str,
        now: Timestamp,
    ) -> Result<Claim, StoreError>;
    async fn complete_idempotency_key(
        &self,
        key: &str,
        answer: &StoredAnswer,
    ) -> Result<(), StoreError>;
    /// Forgets a claimed key whose request never reached upstream.
    async fn release_idempotency_key(&self, key: &str) -> Result<(), StoreError>;
}

/// Opens the store that `database_url` names (`postgres://` or `sqlite://`).
pub async fn connect(database_url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let scheme = database_url.split(':').next().unwrap_or_default();
    match scheme {
        "postgres" | "postgresql" => Ok(Arc::new(SqlStore::new(
            Postgres::connect(database_url).await?,
        ))),
        "sqlite" => Ok(Arc::new(SqlStore::new(
            Sqlite::connect(database_url).await?,
        ))),
        _ => Err(StoreError::UnsupportedUrl),
    }
}

/// What a claim found for a key already stored: another body, an answer, or work in progress.
fn claim_from_parts(
    request_hash: &str,
    stored_hash: String,
    status: Option<i32>,
    headers: Option<String>,
    body: Option<String>,
) -> Result<Claim, StoreError> {
    if stored_hash != request_hash {
        return Ok(Claim::Mismatch);
    }
    let (Some(status), Some(body)) = (status, body) else {
        return Ok(Claim::InProgress);
    };
    let headers = match headers {
        Some(json) => {
            serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?
        }
        None => Vec::new(),
    };
    Ok(Claim::Completed(StoredAnswer {
        status: rows::status_code(status)?,
        headers,
        body,
    }))
}

fn headers_json(answer: &StoredAnswer) -> String {
    serde_json::to_string(&answer.headers).expect("header pairs serialize")
}

fn parameters_json(parameters: &[SessionParameter]) -> String {
    serde_json::to_string(parameters).expect("session parameters serialize")
}

/// Counts by call state, every state present.
fn calls_by_state(
    rows: impl IntoIterator<Item = (String, i64)>,
) -> Result<BTreeMap<CallState, i64>, StoreError> {
    let mut calls: BTreeMap<CallState, i64> = CallState::ALL.iter().map(|s| (*s, 0)).collect();
    for (state, count) in rows {
        let state = CallState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("call state {state}")))?;
        calls.insert(state, count);
    }
    Ok(calls)
}
