//! The results AI Studio never reports: a call it initiated that gets no status callback
//! within the grace window was answered. Every replica runs this; the store infers each call
//! once, and the inference survives restarts since it reads only the calls table.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::call::{ANSWERED, ResultSource};
use crate::domain::time::now;
use crate::store::Store;

/// Most calls one statement infers; more wait for the next statement, right after.
const BATCH: u32 = 500;

/// The background task; dropping the handle stops it.
pub struct Inference {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Inference {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Inference {
    /// Starts inferring, every so often (a quarter of the grace window, between 0.1 s and
    /// 5 s), the calls whose grace window has passed.
    /// `results` is told when calls were inferred (campaigns settle them).
    pub fn start(store: Arc<dyn Store>, grace: Duration, results: crate::campaigns::Wake) -> Self {
        let period = (grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if infer(store.as_ref(), grace).await {
                    results.results();
                }
            }
        });
        Self { task }
    }
}

/// One round: infers every call due now, then reports how many still wait. Returns whether
/// any call was inferred.
async fn infer(store: &dyn Store, grace: Duration) -> bool {
    let mut any = false;
    loop {
        let at = now();
        match store.infer_answered(at - grace, at, BATCH).await {
            Ok(inferred) => {
                any |= !inferred.is_empty();
                for call_id in &inferred {
                    tracing::debug!(%call_id, "no status callback within the grace window: answered");
                    crate::telemetry::count_result(ANSWERED, ResultSource::Inferred);
                }
                if inferred.len() < BATCH as usize {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "inferring answered calls failed; trying again shortly");
                return any;
            }
        }
    }
    if let Ok(waiting) = store.calls_awaiting_result().await {
        metrics::gauge!("callhook_calls_awaiting_result").set(waiting as f64);
    }
    any
}
