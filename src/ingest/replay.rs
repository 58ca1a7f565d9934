//! Moves spooled callbacks into the database once it answers again.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::spool::Spool;
use crate::domain::callback::Callback;
use crate::store::{Store, StoreError};

/// How often a non-empty spool is tried while the database keeps failing: from the first
/// interval, doubling up to the last.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(10);

/// Replays the spool until the ingestor that owns it is gone.
pub(super) async fn run(store: Arc<dyn Store>, spool: Weak<Spool>) {
    let mut wait = FIRST_RETRY;
    loop {
        tokio::time::sleep(wait).await;
        let Some(spool) = spool.upgrade() else {
            return;
        };
        if spool.pending() == 0 {
            wait = FIRST_RETRY;
            continue;
        }
        match drain(store.as_ref(), &spool).await {
            Ok(replayed) => {
                tracing::info!(replayed, "spooled callbacks stored in the database");
                wait = FIRST_RETRY;
            }
            Err(err) => {
                tracing::warn!(error = %err, pending = spool.pending(), retry_in_ms = wait.as_millis() as u64,
                    "spool replay failed; will retry");
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
/// callbacks were replayed; stops at the first database failure.
async fn drain(store: &dyn Store, spool: &Spool) -> Result<usize, ReplayError> {
    let mut replayed = 0;
    for file in spool.files()? {
        let callbacks = match spool.read(&file) {
            Ok(callbacks) => callbacks,
            Err(err) if err.kind() == std::io::ErrorKind::InvalidData => {
                spool.set_aside(file, &err)?;
                continue;
            }
            Err(err) => return Err(err.into()),
        };
        store_file(store, spool, &callbacks).await?;
        spool.remove(file, callbacks.len())?;
        replayed += callbacks.len();
        metrics::counter!("callhook_spool_replayed_total").increment(callbacks.len() as u64);
    }
    Ok(replayed)
}

/// Stores one file's callbacks in one transaction; when the database refuses one of them,
/// stores them singly and keeps the refused ones under `refused/`.
async fn store_file(
    store: &dyn Store,
    spool: &Spool,
    callbacks: &[Callback],
) -> Result<(), ReplayError> {
    match store.record_callbacks(callbacks).await {
        Ok(_) => Ok(()),
        Err(err) if err.is_refusal() => {
            for callback in callbacks {
                let one = std::slice::from_ref(callback);
                match store.record_callbacks(one).await {
                    Ok(_) => {}
                    Err(err) if err.is_refusal() => {
                        tracing::error!(error = %err, conversation_uuid = %callback.conversation_uuid,
                            "the database refused a spooled callback; kept under refused/");
                        spool.keep_refused(one)?;
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            Ok(())
        }
        Err(err) => Err(err.into()),
    }
}
