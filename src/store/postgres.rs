//! The production backend: native `timestamptz` and `uuid`, `$n` placeholders, rows bound as
//! arrays to `unnest`. Statements keep the callback tables distributable by
//! `conversation_uuid` on Citus: outcomes are folded by conditional upserts, never triggers.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Row, Transaction};
use uuid::Uuid;

use super::dialect::Dialect;
use super::sql::{Columns, Sql, Syntax, Value};
use super::{Backend, StoreError};
use crate::domain::time::Timestamp;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct Postgres {
    pool: PgPool,
}

impl Postgres {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }
}

fn placeholder(n: usize) -> String {
    format!("${n}")
}

fn rows(sql: &mut Sql, columns: Vec<(&str, Value)>) {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    sql.push("unnest(");
    for (i, (_, column)) in columns.into_iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        let cast = match &column {
            Value::Texts(_) => "::text[]",
            Value::Ints(_) => "::int8[]",
            Value::Times(_) => "::timestamptz[]",
            Value::Uuids(_) => "::uuid[]",
            _ => "",
        };
        sql.bind(column).push(cast);
    }
    sql.push(") WITH ORDINALITY AS t(")
        .push(&names.join(", "))
        .push(", n)");
}

const SYNTAX: Syntax = Syntax {
    placeholder,
    rows,
    greatest: "GREATEST",
    least: "LEAST",
    lock_rows: " FOR UPDATE",
    row_locks: true,
    skip_locked: " FOR UPDATE SKIP LOCKED",
    db_now: "now()",
    bytewise: " COLLATE \"C\"",
};

fn bind<'q>(
    query: Query<'q, sqlx::Postgres, PgArguments>,
    value: Value,
) -> Query<'q, sqlx::Postgres, PgArguments> {
    match value {
        Value::Text(v) => query.bind(v),
        Value::Int(v) => query.bind(v),
        Value::Int32(v) => query.bind(v),
        Value::Float(v) => query.bind(v),
        Value::Bool(v) => query.bind(v),
        Value::Time(v) => query.bind(v),
        Value::Uuid(v) => query.bind(v),
        Value::Bytes(v) => query.bind(v),
        Value::Texts(v) => query.bind(v),
        Value::Ints(v) => query.bind(v),
        Value::Times(v) => query.bind(v),
        Value::Uuids(v) => query.bind(v),
    }
}

/// The statement with its values bound, taken out of `sql`.
fn query(sql: &mut Sql) -> Query<'_, sqlx::Postgres, PgArguments> {
    let values = std::mem::take(&mut sql.values);
    values.into_iter().fold(sqlx::query(&sql.text), bind)
}

#[async_trait]
impl Dialect for Postgres {
    type Row = PgRow;
    type Tx = Transaction<'static, sqlx::Postgres>;

    const BACKEND: Backend = Backend::Postgres;
    const SYNTAX: &'static Syntax = &SYNTAX;

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    fn pool_usage(&self) -> (u32, u32) {
        let idle = self.pool.num_idle() as u32;
        (self.pool.size().saturating_sub(idle), idle)
    }

    async fn fetch_all(&self, mut sql: Sql) -> Result<Vec<PgRow>, StoreError> {
        Ok(query(&mut sql).fetch_all(&self.pool).await?)
    }

    async fn execute(&self, mut sql: Sql) -> Result<u64, StoreError> {
        Ok(query(&mut sql).execute(&self.pool).await?.rows_affected())
    }

    async fn begin_write(&self) -> Result<Self::Tx, StoreError> {
        // A lock held elsewhere makes the server give up too, not only the client, so that a
        // connection abandoned by the ingest deadline is freed rather than left waiting. The
        // batch's statements are prepared and bind whole arrays, so their generic plans are
        // as good as custom ones and planning them again each time is waste (a fifth of a
        // lone sender's latency). One simple query, so one round trip.
        Ok(self
            .pool
            .begin_with(
                "BEGIN; SET LOCAL lock_timeout = '4s'; SET LOCAL statement_timeout = '4s'; \
                 SET LOCAL plan_cache_mode = force_generic_plan",
            )
            .await?)
    }

    async fn fetch_all_in(tx: &mut Self::Tx, mut sql: Sql) -> Result<Vec<PgRow>, StoreError> {
        Ok(query(&mut sql).fetch_all(&mut **tx).await?)
    }

    async fn execute_in(tx: &mut Self::Tx, mut sql: Sql) -> Result<u64, StoreError> {
        Ok(query(&mut sql).execute(&mut **tx).await?.rows_affected())
    }

    async fn commit(tx: Self::Tx) -> Result<(), StoreError> {
        Ok(tx.commit().await?)
    }
}

impl Columns for PgRow {
    fn text(&self, column: &str) -> Result<String, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn int(&self, column: &str) -> Result<i64, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn float(&self, column: &str) -> Result<f64, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn opt_int32(&self, column: &str) -> Result<Option<i32>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn boolean(&self, column: &str) -> Result<bool, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn time(&self, column: &str) -> Result<Timestamp, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn opt_time(&self, column: &str) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn opt_uuid(&self, column: &str) -> Result<Option<Uuid>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
        Ok(self.try_get(column)?)
    }
}
