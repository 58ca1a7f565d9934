//! The path from an accepted callback to a committed row. Handlers call [`Ingestor::submit`]
//! and answer 2xx only when it returns: a batching writer or a durable spool slots in here.

use std::sync::Arc;

use crate::domain::callback::Callback;
use crate::domain::outcome::Recorded;
use crate::store::{Store, StoreError};

#[derive(Clone)]
pub struct Ingestor {
    store: Arc<dyn Store>,
}

impl Ingestor {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Stores one callback durably; returns once it is committed (or was already stored).
    pub async fn submit(&self, callback: Callback) -> Result<Recorded, StoreError> {
        let recorded = self
            .store
            .record_callbacks(std::slice::from_ref(&callback))
            .await?;
        let recorded = recorded.first().copied().unwrap_or(Recorded::Duplicate);
        let result = match recorded {
            Recorded::Stored => "stored",
            Recorded::Duplicate => "duplicate",
        };
        metrics::counter!("callhook_callbacks_total", "result" => result).increment(1);
        Ok(recorded)
    }
}
