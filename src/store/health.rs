//! Whether the database answers, as the last reads found, so that reads during an outage
//! are refused quickly rather than each waiting out the pool's connect timeout.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::StoreError;

/// Longest wait for a read while the database answers.
const READ_DEADLINE: Duration = Duration::from_secs(5);
/// Longest wait for a read once the database was found unavailable: long enough for a
/// healthy query, short enough that clients hear 503 at once during an outage.
const READ_DEADLINE_WHILE_DOWN: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
pub struct DatabaseHealth {
    down: AtomicBool,
}

impl DatabaseHealth {
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
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
