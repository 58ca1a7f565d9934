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
mod writer;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, oneshot};

use self::spool::Spool;
use self::writer::{Recorder, Reply, Writer};

use crate::domain::callback::Callback;
use crate::domain::outcome::Recorded;
use crate::store::health::DatabaseHealth;
use crate::store::{Backend, Store, StoreError};

/// How long a callback may wait for room in a full queue before it is answered 503: the
/// writers have fallen behind, and a bounded answer beats unbounded latency and memory.
const QUEUE_WAIT: Duration = Duration::from_secs(1);

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
    /// Most callbacks waiting for a writer.
    pub queue: usize,
}

impl BatchSettings {
    /// SQLite has one writer at a time anyway, and its busy timeout bounds every write (an
    /// embedded engine's call cannot be abandoned midway safely); PostgreSQL commits in
    /// parallel, over a network that may stop answering. Two PostgreSQL writers: one batch
    /// fills while the other commits, and batches stay large, which is where the database's
    /// work per callback is least (4 writers made batches of 10 at 64 senders and cost the
    /// database 60% more CPU for the same rate).
    pub fn for_backend(backend: Backend, max_batch: usize, queue: usize) -> Self {
        let sqlite = backend == Backend::Sqlite;
        Self {
            writers: if sqlite { 1 } else { 2 },
            max_batch,
            write_deadline: (!sqlite).then_some(SERVER_WRITE_DEADLINE),
            queue,
        }
    }
}

/// Why a callback was not stored: the database failed (shared by the callbacks of one
/// batch), or the writers have stopped.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(Arc<StoreError>),
    #[error("the callback writer has stopped")]
    Stopped,
    /// The queue stayed full: the writers have fallen behind.
    #[error("the callback writers are behind; the queue is full")]
    Busy,
}

struct Job {
    callback: Callback,
    reply: oneshot::Sender<Reply>,
}

#[derive(Clone)]
pub struct Ingestor {
    queue: mpsc::Sender<Job>,
}

impl Ingestor {
    /// Starts the writer tasks, and the spool's replayer when there is a spool; they stop
    /// when the last `Ingestor` clone is dropped.
    pub fn start(
        store: Arc<dyn Store>,
        spool: Option<Spool>,
        settings: BatchSettings,
        health: Arc<DatabaseHealth>,
        results: crate::campaigns::Wake,
    ) -> Self {
        let (queue, receiver) = mpsc::channel(settings.queue.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let recorder = Recorder::new(store, settings.write_deadline, results);
        let spool = spool.map(Arc::new);
        if let Some(spool) = &spool {
            // What waits is replayed before writers go back to the database.
            health.set_writes_down(spool.waiting_at_open() > 0);
            tokio::spawn(replay::run(
                recorder.clone(),
                Arc::downgrade(spool),
                health.clone(),
            ));
        }
        let writer = Writer::new(recorder, spool, health);
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
        match tokio::time::timeout(QUEUE_WAIT, self.queue.send(Job { callback, reply })).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(IngestError::Stopped),
            Err(_) => {
                metrics::counter!("callhook_callbacks_total", "result" => "busy").increment(1);
                return Err(IngestError::Busy);
            }
        }
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
