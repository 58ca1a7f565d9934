//! The path from an accepted callback to a committed row. Handlers call [`Ingestor::submit`]
//! and answer 2xx only when it returns, which is after the commit.
//!
//! Callbacks are written by a few writer tasks that each take whatever has queued up while
//! their previous transaction committed (group commit): under load many callbacks share one
//! commit (one fsync), while a lone callback is written at once.
//!
//! When the database cannot take a batch (unreachable, locked, shutting down), the batch goes
//! to the [`spool`] on local disk instead, and [`replay`] moves it into the database later:
//! AI Studio does not redeliver, so an outage must not lose what it sends meanwhile.

pub mod rejections;
mod replay;
pub mod spool;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, oneshot};

use self::spool::Spool;

use crate::domain::callback::Callback;
use crate::domain::outcome::Recorded;
use crate::store::{Backend, Store, StoreError};

/// How many callbacks may wait for a writer before submitters wait for room.
const QUEUE_CAPACITY: usize = 4096;

/// How long one write to a database server may take before it counts as unavailable. A
/// healthy commit takes milliseconds; a network partition or a table lock held by someone
/// else can last for ever. Giving up is safe: if the commit did land after all, replay
/// stores nothing twice.
const SERVER_WRITE_DEADLINE: Duration = Duration::from_secs(5);

/// How the writers batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Writer tasks, i.e. transactions in flight at once.
    pub writers: usize,
    /// Most callbacks in one transaction; 1 turns group commit off.
    pub max_batch: usize,
    /// Longest wait for one write before the database counts as unavailable.
    pub write_deadline: Option<Duration>,
}

impl BatchSettings {
    /// SQLite has one writer at a time anyway, and its busy timeout bounds every write (an
    /// embedded engine's call cannot be abandoned midway safely); PostgreSQL commits in
    /// parallel, over a network that may stop answering.
    pub fn for_backend(backend: Backend, max_batch: usize) -> Self {
        let sqlite = backend == Backend::Sqlite;
        Self {
            writers: if sqlite { 1 } else { 4 },
            max_batch,
            write_deadline: (!sqlite).then_some(SERVER_WRITE_DEADLINE),
        }
    }
}

/// Extra time allowed per callback of a batch: each costs round trips to the server.
const WRITE_DEADLINE_PER_CALLBACK: Duration = Duration::from_millis(10);

/// Stores callbacks, giving up after `deadline` (plus a little per callback).
async fn record(
    store: &dyn Store,
    callbacks: &[Callback],
    deadline: Option<Duration>,
) -> Result<Vec<Recorded>, StoreError> {
    let Some(deadline) = deadline else {
        return store.record_callbacks(callbacks).await;
    };
    let deadline = deadline + WRITE_DEADLINE_PER_CALLBACK * callbacks.len() as u32;
    tokio::time::timeout(deadline, store.record_callbacks(callbacks))
        .await
        .unwrap_or(Err(StoreError::Timeout(deadline)))
}

/// Why a callback was not stored: the database failed (shared by the callbacks of one
/// batch), or the writers have stopped.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(Arc<StoreError>),
    #[error("the callback writer has stopped")]
    Stopped,
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
    /// Starts the writer tasks, and the spool's replayer when there is a spool; they stop
    /// when the last `Ingestor` clone is dropped.
    pub fn start(store: Arc<dyn Store>, spool: Option<Spool>, settings: BatchSettings) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let receiver = Arc::new(Mutex::new(receiver));
        let spool = spool.map(Arc::new);
        if let Some(spool) = &spool {
            tokio::spawn(replay::run(
                store.clone(),
                Arc::downgrade(spool),
                settings.write_deadline,
            ));
        }
        let writer = Writer {
            store,
            spool,
            deadline: settings.write_deadline,
        };
        for _ in 0..settings.writers.max(1) {
            tokio::spawn(write_batches(
                writer.clone(),
                receiver.clone(),
                settings.max_batch.max(1),
            ));
        }
        Self { queue }
    }

    /// Stores one callback durably; returns once it is committed (or was already stored).
    pub async fn submit(&self, callback: Callback) -> Result<Recorded, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { callback, reply })
            .await
            .map_err(|_| IngestError::Stopped)?;
        let recorded = answer
            .await
            .map_err(|_| IngestError::Stopped)?
            .map_err(IngestError::Store)?;
        let result = match recorded {
            Recorded::Stored => "stored",
            Recorded::Duplicate => "duplicate",
            Recorded::Spooled => "spooled",
        };
        metrics::counter!("callhook_callbacks_total", "result" => result).increment(1);
        Ok(recorded)
    }
}

#[derive(Clone)]
struct Writer {
    store: Arc<dyn Store>,
    spool: Option<Arc<Spool>>,
    deadline: Option<Duration>,
}

type Reply = Result<Recorded, Arc<StoreError>>;

impl Writer {
    /// Writes a batch in one transaction; when that fails because of what one callback holds,
    /// writes them one by one, so that the others are not failed with it. What the database
    /// cannot take for now goes to the spool.
    async fn write(&self, callbacks: &[Callback]) -> Vec<Reply> {
        // The database failed recently and replay has not committed since: spool at once
        // rather than have every batch wait out the database again.
        if let Some(spool) = &self.spool
            && spool.database_down()
        {
            match spool.put(callbacks).await {
                Ok(()) => return vec![Ok(Recorded::Spooled); callbacks.len()],
                Err(err) => {
                    tracing::error!(error = %err, "the spool cannot be written; trying the database")
                }
            }
        }
        match record(self.store.as_ref(), callbacks, self.deadline).await {
            Ok(recorded) => recorded.into_iter().map(Ok).collect(),
            Err(err) if err.is_refusal() && callbacks.len() > 1 => {
                tracing::warn!(error = %err, batch = callbacks.len(), "batch refused; writing its callbacks singly");
                let mut replies = Vec::with_capacity(callbacks.len());
                for (n, callback) in callbacks.iter().enumerate() {
                    match record(
                        self.store.as_ref(),
                        std::slice::from_ref(callback),
                        self.deadline,
                    )
                    .await
                    {
                        Ok(recorded) => replies.push(Ok(recorded[0])),
                        Err(err) if err.is_refusal() => replies.push(Err(Arc::new(err))),
                        // The database went away meanwhile: the rest waits for it together.
                        Err(err) => {
                            replies.extend(self.spool_or_fail(&callbacks[n..], err).await);
                            break;
                        }
                    }
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
                spool.set_database_down(true);
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

async fn write_batches(
    writer: Writer,
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
        for (reply, result) in replies.into_iter().zip(writer.write(&callbacks).await) {
            let _ = reply.send(result);
        }
    }
}
