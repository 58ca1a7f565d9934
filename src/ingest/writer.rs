//! Writing batches of callbacks: within a deadline, one by one when the database refuses
//! what one of them holds, and to the spool when the database cannot take them for now.

use std::sync::Arc;
use std::time::Duration;

use super::spool::Spool;
use crate::campaigns::Wake;
use crate::domain::callback::Callback;
use crate::domain::outcome::Recorded;
use crate::store::health::DatabaseHealth;
use crate::store::{Store, StoreError};

/// Extra time allowed per callback of a batch: each costs round trips to the server.
const WRITE_DEADLINE_PER_CALLBACK: Duration = Duration::from_millis(10);

/// What one submitted callback gets: recorded, or the failure shared by its batch.
pub(super) type Reply = Result<Recorded, Arc<StoreError>>;

/// Stores callbacks in the database, giving up after a deadline that grows with the batch.
#[derive(Clone)]
pub(super) struct Recorder {
    store: Arc<dyn Store>,
    deadline: Option<Duration>,
    /// Told when callbacks for calls placed here are stored (they may settle campaigns).
    results: Wake,
}

/// Callbacks written one by one: each one's result, up to the first that failed for want of
/// the database (whose index and error come last; the rest were not tried).
pub(super) struct Singly {
    pub results: Vec<Result<Recorded, StoreError>>,
    pub unavailable: Option<(usize, StoreError)>,
}

impl Recorder {
    pub fn new(store: Arc<dyn Store>, deadline: Option<Duration>, results: Wake) -> Self {
        Self {
            store,
            deadline,
            results,
        }
    }

    /// Stores `callbacks` in one transaction.
    pub async fn record(&self, callbacks: &[Callback]) -> Result<Vec<Recorded>, StoreError> {
        let recorded = match self.deadline {
            None => self.store.record_callbacks(callbacks).await,
            Some(deadline) => {
                let deadline = deadline + WRITE_DEADLINE_PER_CALLBACK * callbacks.len() as u32;
                tokio::time::timeout(deadline, self.store.record_callbacks(callbacks))
                    .await
                    .unwrap_or(Err(StoreError::Timeout(deadline)))
            }
        };
        if recorded.is_ok() && callbacks.iter().any(|c| c.call_id.is_some()) {
            self.results.results();
        }
        recorded
    }

    /// Stores `callbacks` one transaction each, after the database refused them together, so
    /// that the one it refuses fails alone. Stops when the database goes away meanwhile.
    pub async fn record_singly(&self, callbacks: &[Callback]) -> Singly {
        let mut results = Vec::with_capacity(callbacks.len());
        for (n, callback) in callbacks.iter().enumerate() {
            match self.record(std::slice::from_ref(callback)).await {
                Ok(recorded) => results.push(Ok(recorded[0])),
                Err(err) if err.is_refusal() => results.push(Err(err)),
                Err(err) => {
                    return Singly {
                        results,
                        unavailable: Some((n, err)),
                    };
                }
            }
        }
        Singly {
            results,
            unavailable: None,
        }
    }
}

/// One writer's way to durable storage: the database, else the spool.
#[derive(Clone)]
pub(super) struct Writer {
    recorder: Recorder,
    spool: Option<Arc<Spool>>,
    health: Arc<DatabaseHealth>,
}

impl Writer {
    pub fn new(recorder: Recorder, spool: Option<Arc<Spool>>, health: Arc<DatabaseHealth>) -> Self {
        Self {
            recorder,
            spool,
            health,
        }
    }

    /// Writes a batch in one transaction; when that fails because of what one callback holds,
    /// writes them one by one, so that the others are not failed with it. What the database
    /// cannot take for now goes to the spool.
    pub async fn write(&self, callbacks: &[Callback]) -> Vec<Reply> {
        // The database failed recently and replay has not committed since: spool at once
        // rather than have every batch wait out the database again.
        if let Some(spool) = &self.spool
            && self.health.writes_down()
        {
            match spool.put(callbacks).await {
                Ok(()) => return vec![Ok(Recorded::Spooled); callbacks.len()],
                Err(err) => {
                    tracing::error!(error = %err, "the spool cannot be written; trying the database")
                }
            }
        }
        match self.recorder.record(callbacks).await {
            Ok(recorded) => recorded.into_iter().map(Ok).collect(),
            Err(err) if err.is_refusal() && callbacks.len() > 1 => {
                tracing::warn!(error = %err, batch = callbacks.len(), "batch refused; writing its callbacks singly");
                let Singly {
                    results,
                    unavailable,
                } = self.recorder.record_singly(callbacks).await;
                let mut replies: Vec<Reply> =
                    results.into_iter().map(|r| r.map_err(Arc::new)).collect();
                if let Some((n, err)) = unavailable {
                    // The database went away meanwhile: the rest waits for it together.
                    replies.extend(self.spool_or_fail(&callbacks[n..], err).await);
                }
                replies
            }
            Err(err) => self.spool_or_fail(callbacks, err).await,
        }
    }

    /// Spools callbacks that the database could not take for now; a refusal is final, and
    /// without a spool so is any failure.
    async fn spool_or_fail(&self, callbacks: &[Callback], err: StoreError) -> Vec<Reply> {
        let err = Arc::new(err);
        let Some(spool) = self.spool.as_ref().filter(|_| !err.is_refusal()) else {
            return vec![Err(err); callbacks.len()];
        };
        match spool.put(callbacks).await {
            Ok(()) => {
                self.health.set_writes_down(true);
                tracing::warn!(error = %err, count = callbacks.len(), spool = %spool.dir().display(),
                    "database unavailable; callbacks spooled to disk for replay");
                vec![Ok(Recorded::Spooled); callbacks.len()]
            }
            Err(spool_err) => {
                tracing::error!(error = %err, spool_error = %spool_err,
                    "database unavailable and the spool cannot be written");
                vec![Err(err); callbacks.len()]
            }
        }
    }
}
