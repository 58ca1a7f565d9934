//! The path from an accepted callback to a committed row. Handlers call [`Ingestor::submit`]
//! and answer 2xx only when it returns, which is after the commit.
//!
//! Callbacks are written by a few writer tasks that each take whatever has queued up while
//! their previous transaction committed (group commit): under load many callbacks share one
//! commit (one fsync), while a lone callback is written at once.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::domain::callback::Callback;
use crate::domain::outcome::Recorded;
use crate::store::{Store, StoreError};

/// How many callbacks may wait for a writer before submitters wait for room.
const QUEUE_CAPACITY: usize = 4096;

/// How the writers batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Writer tasks, i.e. transactions in flight at once.
    pub writers: usize,
    /// Most callbacks in one transaction; 1 turns group commit off.
    pub max_batch: usize,
}

impl BatchSettings {
    /// SQLite has one writer at a time anyway; PostgreSQL commits in parallel.
    pub fn for_backend(backend: &str, max_batch: usize) -> Self {
        let writers = if backend == "sqlite" { 1 } else { 4 };
        Self { writers, max_batch }
    }
}

struct Job {
    callback: Callback,
    reply: oneshot::Sender<Result<Recorded, Arc<StoreError>>>,
}

#[derive(Clone)]
pub struct Ingestor {
    queue: mpsc::Sender<Job>,
}

impl Ingestor {
    /// Starts the writer tasks; they stop when the last `Ingestor` clone is dropped.
    pub fn start(store: Arc<dyn Store>, settings: BatchSettings) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..settings.writers.max(1) {
            tokio::spawn(write_batches(
                store.clone(),
                receiver.clone(),
                settings.max_batch.max(1),
            ));
        }
        Self { queue }
    }

    /// Stores one callback durably; returns once it is committed (or was already stored).
    pub async fn submit(&self, callback: Callback) -> Result<Recorded, Arc<StoreError>> {
        let (reply, answer) = oneshot::channel();
        let stopped = || Arc::new(StoreError::Stopped);
        self.queue
            .send(Job { callback, reply })
            .await
            .map_err(|_| stopped())?;
        let recorded = answer.await.map_err(|_| stopped())??;
        let result = match recorded {
            Recorded::Stored => "stored",
            Recorded::Duplicate => "duplicate",
        };
        metrics::counter!("callhook_callbacks_total", "result" => result).increment(1);
        Ok(recorded)
    }
}

async fn write_batches(
    store: Arc<dyn Store>,
    receiver: Arc<Mutex<mpsc::Receiver<Job>>>,
    max_batch: usize,
) {
    loop {
        let mut jobs = Vec::new();
        {
            let mut receiver = receiver.lock().await;
            if receiver.recv_many(&mut jobs, max_batch).await == 0 {
                return;
            }
        }
        metrics::histogram!("callhook_ingest_batch_size").record(jobs.len() as f64);
        let (callbacks, replies): (Vec<Callback>, Vec<_>) = jobs
            .into_iter()
            .map(|job| (job.callback, job.reply))
            .unzip();
        match store.record_callbacks(&callbacks).await {
            Ok(recorded) => {
                for (reply, recorded) in replies.into_iter().zip(recorded) {
                    let _ = reply.send(Ok(recorded));
                }
            }
            // One bad callback must not fail the others: write them one by one.
            Err(err) if callbacks.len() > 1 => {
                tracing::warn!(error = %err, batch = callbacks.len(), "batch failed; writing its callbacks singly");
                for (callback, reply) in callbacks.iter().zip(replies) {
                    let result = store
                        .record_callbacks(std::slice::from_ref(callback))
                        .await
                        .map(|recorded| recorded[0])
                        .map_err(Arc::new);
                    let _ = reply.send(result);
                }
            }
            Err(err) => {
                let err = Arc::new(err);
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}
