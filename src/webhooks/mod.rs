//! The webhook deliverer, which runs in every replica and keeps its state in the database:
//! each round records the attempts that ended since the last (one transaction for all of
//! them), then claims the due deliveries of every enabled subscription, up to
//! [`PER_SUBSCRIPTION`] under way at once for each, and sends them. A receiver that is slow
//! or dead holds only its own subscription's slots; ingest never waits on it, since
//! deliveries are rows that its transactions write and this loop reads.

pub mod send;
pub mod target;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::domain::time::{Timestamp, now, span};
use crate::domain::webhook::RetrySchedule;
use crate::store::webhooks::{Attempt, ClaimedDelivery, Next, Target};
use crate::store::{Store, StoreError};
use send::{Answer, Sender};

/// Deliveries under way at once for one subscription, in one replica.
pub const PER_SUBSCRIPTION: usize = 16;
/// The shortest time between two rounds woken by ended attempts, so that attempts ending
/// one after another are recorded, and their slots refilled, together.
const MIN_ROUND_GAP: Duration = Duration::from_millis(5);
/// How often the database is looked at for due deliveries, when nothing wakes the loop.
const POLL: Duration = Duration::from_millis(250);
/// How long a round waits after the database failed it.
const ERROR_PAUSE: Duration = Duration::from_secs(1);
/// Added to the send timeout for a claim's lease: time to record the attempt.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// How often ended deliveries past their retention are deleted, and how many at a time.
const PRUNE_PERIOD: Duration = Duration::from_secs(60);
const PRUNE_BATCH: u32 = 5_000;

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct Settings {
    pub timeout: Duration,
    pub schedule: RetrySchedule,
    pub allow_private: bool,
    /// How long delivered and failed deliveries are kept.
    pub retention: Duration,
}

/// The background deliverer; dropping the handle stops its rounds.
pub struct Deliverer {
    task: tokio::task::JoinHandle<()>,
    /// Deletes what retention and deletions leave, apart from the rounds so that a large
    /// deletion never holds up a delivery.
    pruner: tokio::task::JoinHandle<()>,
    context: Arc<Context>,
}

struct Context {
    store: Arc<dyn Store>,
    sender: Sender,
    settings: Settings,
    /// A send finished: its subscription has a free slot.
    freed: Notify,
    /// Attempts that ended, to be recorded by the next round.
    ended: Mutex<Vec<(ClaimedDelivery, Attempt)>>,
    /// Each enabled subscription's oldest pending delivery's age, as of the last round.
    oldest_pending: Mutex<Vec<(Uuid, f64)>>,
    stopping: AtomicBool,
    sending: TaskTracker,
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        self.task.abort();
        self.pruner.abort();
    }
}

impl Deliverer {
    pub fn start(store: Arc<dyn Store>, settings: Settings) -> Self {
        let context = Arc::new(Context {
            store,
            sender: Sender::new(settings.timeout, settings.allow_private),
            settings,
            freed: Notify::new(),
            ended: Mutex::default(),
            oldest_pending: Mutex::default(),
            stopping: AtomicBool::new(false),
            sending: TaskTracker::new(),
        });
        let task = tokio::spawn(run(context.clone()));
        let pruner = tokio::spawn(prune_every_period(context.clone()));
        Self {
            task,
            pruner,
            context,
        }
    }

    /// `callhook_webhook_oldest_pending_seconds{subscription_id}` in the Prometheus text
    /// format: a series for each enabled subscription as of the last round, and none for one
    /// deleted (a gauge of the recorder would stay forever, one per subscription ever made).
    pub fn oldest_pending_exposition(&self) -> String {
        let ages = self.context.oldest_pending.lock().expect("not poisoned");
        let mut text = String::from(
            "# HELP callhook_webhook_oldest_pending_seconds Age of each enabled webhook \
             subscription's oldest pending delivery.\n\
             # TYPE callhook_webhook_oldest_pending_seconds gauge\n",
        );
        for (id, age) in ages.iter() {
            text.push_str(&format!(
                "callhook_webhook_oldest_pending_seconds{{subscription_id=\"{id}\"}} {age}\n"
            ));
        }
        text
    }

    /// Stops claiming deliveries and waits for those being sent to be recorded. What a
    /// shutdown cuts short is sent again once its lease ends.
    pub async fn drain(&self) {
        self.context.stopping.store(true, Ordering::Release);
        self.context.freed.notify_one();
        self.context.sending.close();
        self.context.sending.wait().await;
        if let Err(err) = record_ended(&self.context).await {
            tracing::warn!(error = %err, "webhook attempts could not be recorded at shutdown; they are sent again once their leases end");
        }
    }
}

async fn run(context: Arc<Context>) {
    let mut slots: HashMap<Uuid, Arc<Semaphore>> = HashMap::new();
    while !context.stopping.load(Ordering::Acquire) {
        let started = tokio::time::Instant::now();
        let wait = match round(&context, &mut slots).await {
            Ok(wait) => wait,
            Err(err) => {
                tracing::warn!(error = %err, "webhook deliveries could not be claimed; trying again");
                ERROR_PAUSE
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = context.freed.notified() => {
                tokio::time::sleep_until(started + MIN_ROUND_GAP).await;
            }
        }
    }
}

/// Records the attempts that ended; those the database could not take wait for the next
/// round (their leases keep them from being sent again meanwhile).
async fn record_ended(context: &Context) -> Result<(), StoreError> {
    let ended = std::mem::take(&mut *context.ended.lock().expect("not poisoned"));
    if ended.is_empty() {
        return Ok(());
    }
    match context.store.webhooks().record_attempts(&ended).await {
        Ok(recorded) => {
            for (delivery, attempt) in &ended {
                if !recorded.contains(&delivery.id) {
                    tracing::warn!(delivery_id = %delivery.id, "the delivery's claim was lost before its attempt was recorded");
                    continue;
                }
                match attempt.next {
                    Next::Delivered => count_ended("delivered"),
                    Next::Failed | Next::Gone => count_ended("failed"),
                    Next::RetryAt(_) => {}
                }
                if attempt.next == Next::Gone {
                    tracing::warn!(subscription_id = %delivery.subscription_id, "the receiver answered 410 Gone: the subscription is disabled");
                }
            }
            Ok(())
        }
        Err(err) => {
            context.ended.lock().expect("not poisoned").extend(ended);
            Err(err)
        }
    }
}

/// Claims and sends what is due; returns how long to wait before the next round.
async fn round(
    context: &Arc<Context>,
    slots: &mut HashMap<Uuid, Arc<Semaphore>>,
) -> Result<Duration, StoreError> {
    record_ended(context).await?;
    let targets = context.store.webhooks().delivery_targets().await?;
    let at = now();
    *context.oldest_pending.lock().expect("not poisoned") = targets
        .iter()
        .map(|t| {
            let age = t.oldest_pending.map_or(0.0, |oldest| {
                (at - oldest).to_std().unwrap_or_default().as_secs_f64()
            });
            (t.id, age)
        })
        .collect();
    slots.retain(|id, _| targets.iter().any(|t| t.id == *id));
    let mut wait = POLL;
    for target in targets {
        let Some(due) = target.next_due else {
            continue;
        };
        if due > at {
            wait = wait.min((due - at).to_std().unwrap_or(POLL));
            continue;
        }
        let slot = slots
            .entry(target.id)
            .or_insert_with(|| Arc::new(Semaphore::new(PER_SUBSCRIPTION)))
            .clone();
        let free = slot.available_permits();
        if free == 0 {
            continue;
        }
        let lease = context.settings.timeout + LEASE_MARGIN;
        let claimed = context
            .store
            .webhooks()
            .claim_deliveries(target.id, free as u32, at, lease)
            .await?;
        let target = Arc::new(target);
        for delivery in claimed {
            let permit = slot
                .clone()
                .try_acquire_owned()
                .expect("no more are claimed than slots are free");
            context
                .sending
                .spawn(deliver(context.clone(), target.clone(), delivery, permit));
        }
    }
    Ok(wait)
}

/// Sends one claimed delivery and records what became of it.
async fn deliver(
    context: Arc<Context>,
    target: Arc<Target>,
    delivery: ClaimedDelivery,
    permit: OwnedSemaphorePermit,
) {
    let started = Instant::now();
    let answer = context
        .sender
        .send(&target.url, &target.secret, delivery.id, &delivery.payload)
        .await;
    metrics::histogram!("callhook_webhook_attempt_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("callhook_webhook_attempts_total", "result" => answer.label()).increment(1);
    let at = now();
    let attempt = attempt_of(&answer, &delivery, &context.settings.schedule, at);
    if attempt.next == Next::Delivered {
        tracing::debug!(delivery_id = %delivery.id, subscription_id = %target.id, attempt = delivery.attempts, "webhook delivered");
    } else {
        tracing::info!(
            delivery_id = %delivery.id,
            subscription_id = %target.id,
            attempt = delivery.attempts,
            result = answer.label(),
            status = attempt.status_code,
            "webhook attempt failed"
        );
    }
    context
        .ended
        .lock()
        .expect("not poisoned")
        .push((delivery, attempt));
    drop(permit);
    context.freed.notify_one();
}

/// What an answer means for the delivery: done, another attempt after the schedule's next
/// wait, or failed once the schedule (or a manual retry's single attempt) is spent.
fn attempt_of(
    answer: &Answer,
    delivery: &ClaimedDelivery,
    schedule: &RetrySchedule,
    at: Timestamp,
) -> Attempt {
    let (status_code, error, next) = match answer {
        Answer::Delivered(status) => (Some(*status), None, Next::Delivered),
        Answer::Gone => (
            Some(410),
            Some("the receiver answered 410 Gone".to_owned()),
            Next::Gone,
        ),
        Answer::Failed { status, error, .. } => {
            let next = match schedule.after(delivery.attempts) {
                Some(wait) if !delivery.once => Next::RetryAt(at + span(wait)),
                _ => Next::Failed,
            };
            (*status, Some(error.clone()), next)
        }
    };
    Attempt {
        status_code,
        error,
        next,
        at,
    }
}

fn count_ended(status: &'static str) {
    metrics::counter!("callhook_webhook_deliveries_total", "status" => status).increment(1);
}

async fn prune_every_period(context: Arc<Context>) {
    let mut period = tokio::time::interval(PRUNE_PERIOD);
    period.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        period.tick().await;
        prune(&context).await;
    }
}

async fn prune(context: &Context) {
    // A deletion is a minute old before its rows go: no batch that read the subscription
    // before it was deleted is still writing deliveries for it.
    let deleted_before = now() - span(PRUNE_PERIOD);
    loop {
        match context
            .store
            .webhooks()
            .purge_deleted(deleted_before, PRUNE_BATCH)
            .await
        {
            Ok(0) => break,
            Ok(_) => continue,
            Err(err) => {
                tracing::warn!(error = %err, "deleted webhook subscriptions could not be purged");
                break;
            }
        }
    }
    let before = now() - span(context.settings.retention);
    loop {
        match context
            .store
            .webhooks()
            .prune_deliveries(before, PRUNE_BATCH)
            .await
        {
            Ok(deleted) if deleted == u64::from(PRUNE_BATCH) => continue,
            Ok(_) => return,
            Err(err) => {
                tracing::warn!(error = %err, "ended webhook deliveries could not be pruned");
                return;
            }
        }
    }
}
