//! The campaign dispatcher, which runs in every replica and keeps its state in the database:
//! each round starts the campaigns whose time has come, ends claims abandoned by a stopped
//! replica, settles attempts whose calls have results (redial or done), and claims the next
//! attempt of every agent whose pace and due destinations allow one. Claimed attempts are
//! sent by [`dial`] at their slot. A round runs when there is work: a slot or a due time
//! coming up, or a wake from this replica (a campaign added or resumed, a result stored);
//! work that another replica creates is seen within [`IDLE_ROUND`].

mod dial;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::calls::CallPlacer;
use crate::domain::call::result_label;
use crate::domain::campaign::CampaignState;
use crate::domain::destination::Destination;
use crate::domain::time::{Timestamp, now, span};
use crate::domain::window::{Opening, Window};
use crate::store::campaigns::{ClaimOutcome, ClaimRequest, Settle};
use crate::store::{Store, StoreError};

/// The longest a dispatcher sleeps without looking at the database.
const IDLE_ROUND: Duration = Duration::from_secs(2);
/// The shortest time between two rounds woken by events, so that a stream of stored
/// callbacks does not turn into a stream of rounds.
const MIN_ROUND_GAP: Duration = Duration::from_millis(10);
/// A slot this close is claimed now; the request waits for it.
const LOOKAHEAD: Duration = Duration::from_millis(50);
/// The earliest a request follows its claim, so that the claim is committed first.
const LEAD: Duration = Duration::from_millis(5);
/// Added to an agent's spacing so that timing noise (a timer firing late, a request taking
/// longer to leave) never brings two requests closer than the pace.
const MARGIN: Duration = Duration::from_millis(2);
/// The shortest time between two settlings woken by results, so that a stream of stored
/// callbacks settles in batches.
const SETTLE_GAP: Duration = Duration::from_millis(100);
/// Attempts settled by one statement.
const SETTLE_BATCH: u32 = 500;
/// How often the gauges are read from the database.
const GAUGE_PERIOD: Duration = Duration::from_secs(5);
/// Agents the in-flight gauge names; the others are summed as `other`.
const MAX_AGENT_LABELS: usize = 100;

/// Wakes the dispatcher: cheap to clone, and coalescing (many wakes before a round are one).
#[derive(Clone, Default)]
pub struct Wake(Arc<WakeInner>);

#[derive(Default)]
struct WakeInner {
    notify: Notify,
    /// Calls got results since the last settling.
    results: AtomicBool,
}

impl Wake {
    /// There is new work (a campaign, destinations, a resume, an answer recorded).
    pub fn notify(&self) {
        self.0.notify.notify_one();
    }

    /// Calls got results: placed attempts may settle.
    pub fn results(&self) {
        self.0.results.store(true, Ordering::Release);
        self.notify();
    }

    fn results_pending(&self) -> bool {
        self.0.results.load(Ordering::Acquire)
    }

    fn take_results(&self) -> bool {
        self.0.results.swap(false, Ordering::AcqRel)
    }

    async fn notified(&self) {
        self.0.notify.notified().await;
    }
}

/// How long an attempt may take: AI Studio's answer within `dial_deadline`, or the claim is
/// taken for abandoned after `lease` and the attempt is `unknown`.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub dial_deadline: Duration,
    pub lease: Duration,
}

impl Timing {
    /// From the upstream timeout: a request and its connection retries, then a margin for
    /// recording the answer.
    pub fn for_upstream_timeout(timeout: Duration) -> Self {
        let dial_deadline = timeout + Duration::from_secs(10);
        Self {
            dial_deadline,
            lease: dial_deadline + Duration::from_secs(5),
        }
    }
}

/// The background dispatcher; dropping the handle stops its rounds.
pub struct Dispatcher {
    wake: Wake,
    task: tokio::task::JoinHandle<()>,
    /// The attempts being sent.
    dialling: TaskTracker,
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Dispatcher {
    pub fn start(
        store: Arc<dyn Store>,
        placer: Arc<CallPlacer>,
        wake: Wake,
        timing: Timing,
    ) -> Self {
        let dialling = TaskTracker::new();
        let context = Arc::new(Context {
            store,
            placer,
            wake: wake.clone(),
            timing,
            dialling: dialling.clone(),
        });
        let task = tokio::spawn(run(context));
        Self {
            wake,
            task,
            dialling,
        }
    }

    /// Tells the dispatcher that there is new work.
    pub fn wake(&self) {
        self.wake.notify();
    }

    /// Stops claiming attempts and waits for those being sent to get their answer recorded,
    /// so that a shutdown leaves no attempt `unknown` for want of waiting for AI Studio.
    pub async fn drain(&self) {
        self.task.abort();
        self.dialling.close();
        if !self.dialling.is_empty() {
            tracing::info!(
                attempts = self.dialling.len(),
                "waiting for the campaign attempts being sent"
            );
        }
        self.dialling.wait().await;
    }
}

struct Context {
    store: Arc<dyn Store>,
    placer: Arc<CallPlacer>,
    wake: Wake,
    timing: Timing,
    dialling: TaskTracker,
}

async fn run(context: Arc<Context>) {
    let mut gauges_at: Option<tokio::time::Instant> = None;
    let mut settled_at: Option<tokio::time::Instant> = None;
    let mut labelled = Vec::new();
    loop {
        // Attempts settle when this replica stored results (at most every SETTLE_GAP), and
        // every idle round for the results another replica stored.
        let since = settled_at.map(|at: tokio::time::Instant| at.elapsed());
        let results = context.wake.results_pending();
        let settling =
            since.is_none_or(|since| since >= IDLE_ROUND || (results && since >= SETTLE_GAP));
        if settling {
            context.wake.take_results();
            settled_at = Some(tokio::time::Instant::now());
        }
        let next = match round(&context, settling).await {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(%error, "the campaign dispatcher could not read the database; trying again shortly");
                now() + chrono::Duration::seconds(1)
            }
        };
        if gauges_at.is_none_or(|at| at.elapsed() >= GAUGE_PERIOD) {
            gauges_at = Some(tokio::time::Instant::now());
            report_gauges(context.store.as_ref(), &mut labelled).await;
        }
        let mut wait = (next - now()).to_std().unwrap_or_default().min(IDLE_ROUND);
        if results && !settling {
            wait = wait.min(SETTLE_GAP.saturating_sub(since.unwrap_or_default()));
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = context.wake.notified() => tokio::time::sleep(MIN_ROUND_GAP).await,
        }
    }
}

/// One round; returns when the next one is due.
async fn round(context: &Arc<Context>, settling: bool) -> Result<Timestamp, StoreError> {
    let store = context.store.campaigns();
    let at = now();
    let view = store.dispatch_view(at).await?;
    let lease = span(context.timing.lease);
    let mut next = at + span(IDLE_ROUND);
    if let Some(oldest) = view.oldest_claim {
        if oldest + lease <= at {
            for recovered in store.recover_claims(at - lease, at).await? {
                tracing::warn!(
                    campaign_id = %recovered.campaign_id,
                    destination = recovered.index,
                    attempt = recovered.attempt,
                    call_id = %recovered.call_id,
                    result = crate::domain::call::UNKNOWN,
                    "campaign attempt abandoned mid-request by a stopped replica: unknown, not redialled"
                );
                count_attempt(crate::domain::call::UNKNOWN);
            }
        } else {
            next = next.min(oldest + lease);
        }
    }
    if settling && view.dialing > 0 {
        settle(context).await?;
    }
    if let Some(start) = view.next_start {
        next = next.min(start);
    }
    // Each agent's earliest due destination and slowest pace across its running campaigns.
    let mut due: BTreeMap<&str, Timestamp> = BTreeMap::new();
    let mut slowest: BTreeMap<&str, f64> = BTreeMap::new();
    for campaign in &view.running {
        let agent = campaign.agent_id.as_str();
        let rate = slowest.entry(agent).or_insert(campaign.calls_per_second);
        *rate = rate.min(campaign.calls_per_second);
        if let Some(at) = campaign.next_due {
            let entry = due.entry(agent).or_insert(at);
            *entry = (*entry).min(at);
        }
    }
    let lookahead = span(LOOKAHEAD);
    if context.placer.upstream().is_none() {
        // Without VGAI_API_KEY nothing is dialled: campaigns wait, their destinations intact.
        return Ok(next);
    }
    for (agent_id, due_at) in due {
        if due_at > at {
            next = next.min(due_at);
            continue;
        }
        let free = view.paces.get(agent_id).and_then(|pace| {
            pace.next_free(pace.spacing(slowest.get(agent_id).copied().unwrap_or(1.0), MARGIN))
        });
        if let Some(free) = free
            && free - lookahead > at
        {
            next = next.min(free - lookahead);
            continue;
        }
        match claim(context, agent_id, at).await? {
            ClaimOutcome::Claimed(claimed) => {
                let spacing = span(claimed.spacing);
                next = next.min(claimed.slot + spacing - lookahead);
                context
                    .dialling
                    .spawn(dial::dial(context.clone(), *claimed));
            }
            ClaimOutcome::Wait(slot) => next = next.min(slot - lookahead),
            // Destinations moved to their window's opening, or none due after all.
            ClaimOutcome::Idle => next = next.min(at + lookahead),
        }
    }
    Ok(next)
}

async fn claim(
    context: &Context,
    agent_id: &str,
    at: Timestamp,
) -> Result<ClaimOutcome, StoreError> {
    let signer = context.placer.signer();
    let status_url = |base: &str, call_id: Uuid| format!("{base}{}", signer.path(call_id));
    let opening = |window: &Window, to: &str| match window.hours() {
        Some(hours) => match Destination::parse(to) {
            Ok(to) => hours.next_opening(&to, at),
            Err(_) => hours.next_opening(&Destination::Sip(to.to_owned()), at),
        },
        None => Opening::Now,
    };
    context
        .store
        .campaigns()
        .claim_attempt(&ClaimRequest {
            agent_id,
            now: at,
            lookahead: LOOKAHEAD,
            lead: LEAD,
            margin: MARGIN,
            call_id: Uuid::now_v7(),
            region: context.placer.region(),
            opening: &opening,
            status_url: &status_url,
        })
        .await
}

/// Settles every placed attempt whose call has a result.
async fn settle(context: &Context) -> Result<(), StoreError> {
    loop {
        let settled = context
            .store
            .campaigns()
            .settle_results(now(), SETTLE_BATCH)
            .await?;
        for (attempt, decision) in &settled {
            count_attempt(&attempt.result);
            let redial_at = match decision {
                Settle::Redial(at) => Some(crate::domain::time::format_timestamp(at)),
                Settle::Done => None,
            };
            tracing::info!(
                campaign_id = %attempt.campaign_id,
                destination = attempt.index,
                attempt = attempt.attempts,
                call_id = %attempt.call_id,
                result = %attempt.result,
                redial_at,
                "campaign attempt finished"
            );
        }
        if settled.len() < SETTLE_BATCH as usize {
            return Ok(());
        }
    }
}

/// Counts an attempt by its result (`callhook_campaign_attempts_total{result}`).
fn count_attempt(result: &str) {
    metrics::counter!("callhook_campaign_attempts_total", "result" => result_label(result))
        .increment(1);
}

/// Sets the gauges; `labelled` holds the agents the in-flight gauge names, so that one with
/// nothing in flight any more reads 0.
async fn report_gauges(store: &dyn Store, labelled: &mut Vec<String>) {
    let Ok(gauges) = store.campaigns().dispatch_gauges().await else {
        return;
    };
    let mut by_state: BTreeMap<CampaignState, i64> =
        CampaignState::ALL.iter().map(|s| (*s, 0)).collect();
    for (state, n) in gauges.campaigns {
        by_state.insert(state, n);
    }
    for (state, n) in by_state {
        metrics::gauge!("callhook_campaigns", "state" => state.as_str()).set(n as f64);
    }
    let mut levels: BTreeMap<String, i64> = labelled.iter().map(|a| (a.clone(), 0)).collect();
    let mut other = 0;
    for (agent_id, n) in gauges.in_flight {
        if levels.contains_key(&agent_id) || labelled.len() < MAX_AGENT_LABELS {
            if !levels.contains_key(&agent_id) {
                labelled.push(agent_id.clone());
            }
            levels.insert(agent_id, n);
        } else {
            other += n;
        }
    }
    for (agent_id, n) in levels {
        metrics::gauge!("callhook_campaign_calls_in_flight", "agent_id" => agent_id).set(n as f64);
    }
    metrics::gauge!("callhook_campaign_calls_in_flight", "agent_id" => "other").set(other as f64);
}
