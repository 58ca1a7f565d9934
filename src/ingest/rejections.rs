//! Refused status callbacks, kept in a bounded table so that an operator can see what the
//! platform sent that callhook could not read. Keeping one is best effort: the refusal is
//! answered whether or not the database takes it.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::rejected::RejectedCallback;
use crate::store::Store;

/// Longest wait for the database to keep a refused callback before answering anyway.
const KEEP_DEADLINE: Duration = Duration::from_secs(2);

/// The reasons a callback is refused after its URL was accepted, as metric labels.
pub const REASONS: [&str; 4] = ["not_json_object", "invalid", "too_large", "unreadable"];

#[derive(Clone)]
pub struct Rejections {
    store: Arc<dyn Store>,
    /// Most kept; 0 keeps none.
    max: u32,
}

impl Rejections {
    pub fn new(store: Arc<dyn Store>, max: u32) -> Self {
        Self { store, max }
    }

    /// Keeps `rejected`, counted under `reason` (one of [`REASONS`]).
    pub async fn keep(&self, reason: &'static str, rejected: RejectedCallback) {
        if self.max == 0 {
            return;
        }
        let kept =
            tokio::time::timeout(KEEP_DEADLINE, self.store.keep_rejected(&rejected, self.max))
                .await;
        let result = match kept {
            Ok(Ok(())) => "kept",
            Ok(Err(err)) => {
                tracing::warn!(error = %err, status = rejected.status, reason,
                    "a refused callback could not be kept for GET /v1/rejected");
                "not_kept"
            }
            Err(_) => {
                tracing::warn!(
                    status = rejected.status,
                    reason,
                    "the database did not keep a refused callback within 2 s"
                );
                "not_kept"
            }
        };
        metrics::counter!("callhook_rejected_callbacks_total", "reason" => reason, "result" => result)
            .increment(1);
    }
}
