//! Whether the database answers, as the last reads and writes found: reads during an outage
//! are refused quickly rather than each waiting out the pool's connect timeout, and callbacks
//! go straight to the spool rather than each waiting out the write deadline.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::StoreError;

/// Longest wait for a read while the database answers.
const READ_DEADLINE: Duration = Duration::from_secs(5);
/// Longest wait for a read once the database was found unavailable: long enough for a
/// healthy query, short enough that clients hear 503 at once during an outage.
const READ_DEADLINE_WHILE_DOWN: Duration = Duration::from_millis(500);

/// Reads and writes are told apart: a table lock (a migration, say) can stop writes while
/// reads still answer.
#[derive(Debug, Default)]
pub struct DatabaseHealth {
    down: AtomicBool,
    /// Set when a batch of callbacks had to be spooled, cleared when a replay commits.
    writes_down: AtomicBool,
}

impl DatabaseHealth {
    /// Whether the last read found the database unavailable.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Whether callbacks are being spooled because the database could not take them.
    pub fn writes_down(&self) -> bool {
        self.writes_down.load(Ordering::Relaxed)
    }

    pub fn set_writes_down(&self, down: bool) {
        self.writes_down.store(down, Ordering::Relaxed);
    }

    /// Runs a read within a deadline, and learns from its result whether the database is up.
    pub async fn read<T>(
        &self,
        query: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let deadline = if self.is_down() {
            READ_DEADLINE_WHILE_DOWN
        } else {
            READ_DEADLINE
        };
        let result = tokio::time::timeout(deadline, query)
            .await
            .unwrap_or(Err(StoreError::Timeout(deadline)));
        match &result {
            Ok(_) => self.down.store(false, Ordering::Relaxed),
            Err(err) if err.is_unavailable() => {
                if !self.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %err, "the database is unavailable; reads answer 503 until it is back");
                }
            }
            Err(_) => {}
        }
        result
    }
}
