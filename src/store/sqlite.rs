//! The zero-setup backend: one file, WAL mode with `synchronous=FULL`, so that a committed
//! callback survives a crash. Instants are stored as microseconds since the epoch and uuids
//! as text; rows are bound as one JSON array read by `json_each`.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Transaction};
use uuid::Uuid;

use super::dialect::Dialect;
use super::sql::{Columns, Sql, Syntax, Value};
use super::{Backend, StoreError};
use crate::domain::time::{Timestamp, from_micros, to_micros};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct Sqlite {
    pool: SqlitePool,
}

impl Sqlite {
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

fn placeholder(n: usize) -> String {
    format!("?{n}")
}

fn rows(sql: &mut Sql, columns: Vec<(&str, Value)>) {
    let len = columns.first().map_or(0, |(_, column)| column_len(column));
    let mut rows = vec![Vec::with_capacity(columns.len()); len];
    for (_, column) in &columns {
        for (row, value) in rows.iter_mut().zip(column_json(column)) {
            row.push(value);
        }
    }
    sql.push("(SELECT ");
    for (i, (name, _)) in columns.iter().enumerate() {
        sql.push(&format!("json_extract(value, '$[{i}]') AS {name}, "));
    }
    sql.push("key AS n FROM json_each(")
        .bind(
            serde_json::Value::Array(rows.into_iter().map(serde_json::Value::Array).collect())
                .to_string(),
        )
        .push(")) AS t");
}

fn column_len(column: &Value) -> usize {
    match column {
        Value::Texts(v) => v.len(),
        Value::Ints(v) => v.len(),
        Value::Times(v) => v.len(),
        Value::Uuids(v) => v.len(),
        _ => 0,
    }
}

fn column_json(column: &Value) -> Vec<serde_json::Value> {
    match column {
        Value::Texts(v) => v.iter().map(|v| json!(v)).collect(),
        Value::Ints(v) => v.iter().map(|v| json!(v)).collect(),
        Value::Times(v) => v.iter().map(|v| json!(v.as_ref().map(to_micros))).collect(),
        Value::Uuids(v) => v
            .iter()
            .map(|v| json!(v.map(|id| id.to_string())))
            .collect(),
        _ => Vec::new(),
    }
}

const SYNTAX: Syntax = Syntax {
    placeholder,
    rows,
    greatest: "max",
    least: "min",
    lock_rows: "",
    row_locks: false,
    skip_locked: "",
    db_now: "",
    bytewise: "",
};

fn bind<'q>(
    query: Query<'q, sqlx::Sqlite, SqliteArguments<'q>>,
    value: Value,
) -> Query<'q, sqlx::Sqlite, SqliteArguments<'q>> {
    match value {
        Value::Text(v) => query.bind(v),
        Value::Int(v) => query.bind(v),
        Value::Int32(v) => query.bind(v),
        Value::Float(v) => query.bind(v),
        Value::Bool(v) => query.bind(v),
        Value::Time(v) => query.bind(v.as_ref().map(to_micros)),
        Value::Uuid(v) => query.bind(v.map(|id| id.to_string())),
        Value::Bytes(v) => query.bind(v),
        // Columns of rows are bound through `rows`, as JSON.
        Value::Texts(_) | Value::Ints(_) | Value::Times(_) | Value::Uuids(_) => {
            query.bind(None::<String>)
        }
    }
}

/// The statement with its values bound, taken out of `sql`.
fn query(sql: &mut Sql) -> Query<'_, sqlx::Sqlite, SqliteArguments<'_>> {
    let values = std::mem::take(&mut sql.values);
    values.into_iter().fold(sqlx::query(&sql.text), bind)
}

#[async_trait]
impl Dialect for Sqlite {
    type Row = SqliteRow;
    type Tx = Transaction<'static, sqlx::Sqlite>;

    const BACKEND: Backend = Backend::Sqlite;
    const SYNTAX: &'static Syntax = &SYNTAX;

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    fn pool_usage(&self) -> (u32, u32) {
        let idle = self.pool.num_idle() as u32;
        (self.pool.size().saturating_sub(idle), idle)
    }

    async fn fetch_all(&self, mut sql: Sql) -> Result<Vec<SqliteRow>, StoreError> {
        Ok(query(&mut sql).fetch_all(&self.pool).await?)
    }

    async fn execute(&self, mut sql: Sql) -> Result<u64, StoreError> {
        Ok(query(&mut sql).execute(&self.pool).await?.rows_affected())
    }

    async fn begin_write(&self) -> Result<Self::Tx, StoreError> {
        // BEGIN IMMEDIATE takes the write lock up front, so the busy timeout applies instead
        // of a deadlock error on lock upgrade.
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn fetch_all_in(tx: &mut Self::Tx, mut sql: Sql) -> Result<Vec<SqliteRow>, StoreError> {
        Ok(query(&mut sql).fetch_all(&mut **tx).await?)
    }

    async fn execute_in(tx: &mut Self::Tx, mut sql: Sql) -> Result<u64, StoreError> {
        Ok(query(&mut sql).execute(&mut **tx).await?.rows_affected())
    }

    async fn commit(tx: Self::Tx) -> Result<(), StoreError> {
        Ok(tx.commit().await?)
    }
}

fn parse_uuid(raw: Option<String>) -> Result<Option<Uuid>, StoreError> {
    raw.map(|s| Uuid::parse_str(&s).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

impl Columns for SqliteRow {
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
        Ok(from_micros(self.try_get(column)?))
    }

    fn opt_time(&self, column: &str) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.try_get::<Option<i64>, _>(column)?.map(from_micros))
    }

    fn opt_uuid(&self, column: &str) -> Result<Option<Uuid>, StoreError> {
        parse_uuid(self.try_get(column)?)
    }

    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
        Ok(self.try_get(column)?)
    }
}
