//! What each backend provides to the shared store: its connection pool, how it runs a
//! statement and begins a write, and its SQL syntax where the two differ.

use async_trait::async_trait;

use super::sql::{Columns, Sql, Syntax};
use super::{Backend, StoreError};

#[async_trait]
pub(super) trait Dialect: Send + Sync + 'static {
    type Row: Columns + Send + Sync;
    /// An open write transaction; dropping it rolls back.
    type Tx: Send;

    const BACKEND: Backend;
    const SYNTAX: &'static Syntax;

    async fn migrate(&self) -> Result<(), StoreError>;
    /// Connections (in use, idle) of the pool.
    fn pool_usage(&self) -> (u32, u32);

    async fn fetch_all(&self, sql: Sql) -> Result<Vec<Self::Row>, StoreError>;
    async fn execute(&self, sql: Sql) -> Result<u64, StoreError>;

    /// Begins a transaction that will write, bounded so that a lock held elsewhere fails it
    /// rather than holding a connection indefinitely.
    async fn begin_write(&self) -> Result<Self::Tx, StoreError>;
    async fn fetch_all_in(tx: &mut Self::Tx, sql: Sql) -> Result<Vec<Self::Row>, StoreError>;
    async fn execute_in(tx: &mut Self::Tx, sql: Sql) -> Result<u64, StoreError>;
    async fn commit(tx: Self::Tx) -> Result<(), StoreError>;

    fn sql(text: impl Into<String>) -> Sql {
        Sql::new(Self::SYNTAX, text)
    }

    async fn fetch_optional(&self, sql: Sql) -> Result<Option<Self::Row>, StoreError> {
        Ok(self.fetch_all(sql).await?.into_iter().next())
    }
}
