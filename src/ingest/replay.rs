//! Moves spooled callbacks into the database once it answers again.

use std::sync::{Arc, Weak};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use super::spool::Spool;
use super::writer::{Recorder, Singly};
use crate::domain::callback::Callback;
use crate::store::StoreError;
use crate::store::health::DatabaseHealth;

/// How long to wait before looking again, while nothing waits or the database keeps failing:
/// from the first interval, doubling up to the last.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(10);
const REPLAY_BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(FIRST_RETRY)
    .with_max_delay(LAST_RETRY)
    .without_max_times();
/// The size a file that timed out as a whole is replayed in.
const SMALL_BATCH: usize = 16;

/// Replays the spool until the ingestor that owns it is gone. The directory is listed on
/// every pass; passes follow each other at once while they make progress.
pub(super) async fn run(recorder: Recorder, spool: Weak<Spool>, health: Arc<DatabaseHealth>) {
    let mut backoff = REPLAY_BACKOFF.build();
    loop {
        let Some(spool) = spool.upgrade() else {
            return;
        };
        let outcome = pass(&recorder, &spool, &health).await;
        drop(spool);
        match outcome {
            // Nothing waits: look again soon, so that a new outage's files are not left
            // behind a long back-off.
            Ok(None) => {
                backoff = REPLAY_BACKOFF.build();
                tokio::time::sleep(FIRST_RETRY).await;
            }
            Ok(Some(replayed)) if replayed > 0 => {
                tracing::info!(replayed, "spooled callbacks stored in the database");
                backoff = REPLAY_BACKOFF.build();
            }
            Ok(Some(_)) => tokio::time::sleep(backoff.next().unwrap_or(LAST_RETRY)).await,
            Err(err) => {
                let wait = backoff.next().unwrap_or(LAST_RETRY);
                tracing::warn!(error = %err, retry_in_ms = wait.as_millis() as u64, "spool replay failed; will retry");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ReplayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("spool: {0}")]
    Spool(#[from] std::io::Error),
}

/// Stores every spooled file, oldest first, removing each once committed. Returns how many
/// callbacks were replayed (`None`: the spool was empty); stops at the first database
/// failure. A file that cannot be
/// read is skipped (and one that is damaged set aside), so that it holds up no other.
async fn pass(
    recorder: &Recorder,
    spool: &Spool,
    health: &DatabaseHealth,
) -> Result<Option<usize>, ReplayError> {
    let files = spool.files().await?;
    if files.is_empty() {
        // Nothing to keep in order with: writers may try the database again.
        health.set_writes_down(false);
        return Ok(None);
    }
    let mut replayed = 0;
    for file in files {
        let callbacks = match spool.read(&file).await {
            Ok(callbacks) => callbacks,
            Err(err) if err.kind() == std::io::ErrorKind::InvalidData => {
                spool.set_aside(file, &err).await?;
                continue;
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                tracing::error!(error = %err, "a spool file cannot be read; skipped for now");
                continue;
            }
        };
        store_file(recorder, spool, &callbacks).await?;
        health.set_writes_down(false);
        spool.remove(file).await?;
        replayed += callbacks.len();
        metrics::counter!("callhook_spool_replayed_total").increment(callbacks.len() as u64);
    }
    Ok(Some(replayed))
}

/// Stores one file's callbacks in one transaction; when the database refuses one of them,
/// stores them singly and keeps the refused ones under `refused/`.
async fn store_file(
    recorder: &Recorder,
    spool: &Spool,
    callbacks: &[Callback],
) -> Result<(), ReplayError> {
    match recorder.record(callbacks).await {
        Ok(_) => Ok(()),
        // A large file may be too slow for one transaction (a distant or loaded server):
        // smaller ones each get their own deadline.
        Err(StoreError::Timeout(_)) if callbacks.len() > SMALL_BATCH => {
            for chunk in callbacks.chunks(SMALL_BATCH) {
                Box::pin(store_file(recorder, spool, chunk)).await?;
            }
            Ok(())
        }
        Err(err) if err.is_refusal() => {
            let Singly {
                results,
                unavailable,
            } = recorder.record_singly(callbacks).await;
            for (callback, result) in callbacks.iter().zip(results) {
                if let Err(err) = result {
                    tracing::error!(error = %err, conversation_uuid = %callback.conversation_uuid,
                        "the database refused a spooled callback; kept under refused/");
                    metrics::counter!("callhook_spool_refused_total").increment(1);
                    spool.keep_refused(std::slice::from_ref(callback)).await?;
                }
            }
            match unavailable {
                Some((_, err)) => Err(err.into()),
                None => Ok(()),
            }
        }
        Err(err) => Err(err.into()),
    }
}
