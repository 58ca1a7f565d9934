//! Moves spooled callbacks into the database once it answers again.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::spool::Spool;
use crate::domain::callback::Callback;
use crate::store::{Store, StoreError};

/// How long to wait before looking again, while nothing waits or the database keeps failing:
/// from the first interval, doubling up to the last.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(10);
/// The size a file that timed out as a whole is replayed in.
const SMALL_BATCH: usize = 16;

/// Replays the spool until the ingestor that owns it is gone. The directory is listed on
/// every pass; passes follow each other at once while they make progress.
pub(super) async fn run(store: Arc<dyn Store>, spool: Weak<Spool>, deadline: Option<Duration>) {
    let mut wait = FIRST_RETRY;
    loop {
        let Some(spool) = spool.upgrade() else {
            return;
        };
        let outcome = pass(store.as_ref(), &spool, deadline).await;
        drop(spool);
        match outcome {
            // Nothing waits: look again soon, so that a new outage's files are not left
            // behind a long back-off.
            Ok(None) => {
                wait = FIRST_RETRY;
                tokio::time::sleep(wait).await;
            }
            Ok(Some(replayed)) if replayed > 0 => {
                tracing::info!(replayed, "spooled callbacks stored in the database");
                wait = FIRST_RETRY;
            }
            Ok(Some(_)) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(LAST_RETRY);
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = wait.as_millis() as u64, "spool replay failed; will retry");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(LAST_RETRY);
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
    store: &dyn Store,
    spool: &Spool,
    deadline: Option<Duration>,
) -> Result<Option<usize>, ReplayError> {
    let files = spool.files().await?;
    if files.is_empty() {
        // Nothing to keep in order with: writers may try the database again.
        spool.set_database_down(false);
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
        store_file(store, spool, &callbacks, deadline).await?;
        spool.set_database_down(false);
        spool.remove(file).await?;
        replayed += callbacks.len();
        metrics::counter!("callhook_spool_replayed_total").increment(callbacks.len() as u64);
    }
    Ok(Some(replayed))
}

/// Stores one file's callbacks in one transaction; when the database refuses one of them,
/// stores them singly and keeps the refused ones under `refused/`.
async fn store_file(
    store: &dyn Store,
    spool: &Spool,
    callbacks: &[Callback],
    deadline: Option<Duration>,
) -> Result<(), ReplayError> {
    match super::record(store, callbacks, deadline).await {
        Ok(_) => Ok(()),
        // A large file may be too slow for one transaction (a distant or loaded server):
        // smaller ones each get their own deadline.
        Err(StoreError::Timeout(_)) if callbacks.len() > SMALL_BATCH => {
            for chunk in callbacks.chunks(SMALL_BATCH) {
                Box::pin(store_file(store, spool, chunk, deadline)).await?;
            }
            Ok(())
        }
        Err(err) if err.is_refusal() => {
            for callback in callbacks {
                let one = std::slice::from_ref(callback);
                match super::record(store, one, deadline).await {
                    Ok(_) => {}
                    Err(err) if err.is_refusal() => {
                        tracing::error!(error = %err, conversation_uuid = %callback.conversation_uuid,
                            "the database refused a spooled callback; kept under refused/");
                        metrics::counter!("callhook_spool_refused_total").increment(1);
                        spool.keep_refused(one).await?;
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            Ok(())
        }
        Err(err) => Err(err.into()),
    }
}
