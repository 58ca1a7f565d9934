//! Sending one claimed attempt at its slot, and what AI Studio's answer means for the
//! destination: placed (wait for its result), sent again (rate limit, outage), the campaign
//! paused (agent or key refused), or done.

use std::sync::Arc;
use std::time::Duration;

use super::{Context, count_attempt};
use crate::calls::outcome_of;
use crate::domain::call::{CallState, NOT_PLACED, UNKNOWN, UpstreamError};
use crate::domain::campaign::INVALID;
use crate::domain::time::{Timestamp, now, span};
use crate::store::campaigns::{AttemptEnd, Claimed};
use crate::store::{CallResult, StoreError};
use crate::upstream::{Failure, MakeCall};

/// Times an attempt is sent again after AI Studio failed (5xx) or could not be reached.
const UPSTREAM_RETRIES: u32 = 3;
/// The first wait after such a failure; each next one doubles.
const UPSTREAM_BACKOFF: Duration = Duration::from_secs(1);
/// Tries at recording an answer while the database is unavailable, a second apart.
const RECORD_TRIES: u32 = 4;
/// A request this late for its slot is not sent (the agent's next may be claimed already).
const LATE_LIMIT: Duration = Duration::from_millis(25);
/// Longest wait a 429's `Retry-After` is taken for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Sends the attempt at its slot and records the answer.
pub(super) async fn dial(context: Arc<Context>, claimed: Claimed) {
    let Some(client) = context.placer.upstream() else {
        // Rounds claim nothing without a key; a claim cannot get here without one.
        return;
    };
    let wait = (claimed.slot - now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    let sent_at = now();
    let late = (sent_at - claimed.slot).to_std().unwrap_or_default();
    if late > LATE_LIMIT {
        // The next request of the agent may already be claimed for its own slot: sent now,
        // this one could come too close to it. It goes back, to be claimed (and sent) anew.
        let not_sent = CallResult {
            state: CallState::Failed,
            session_id: None,
            session_start_time: None,
            error: Some(UpstreamError {
                status: None,
                message: format!(
                    "not sent: {} ms late for its slot; it will be sent again",
                    late.as_millis()
                ),
            }),
            at: sent_at,
        };
        let end = AttemptEnd::Retry {
            at: sent_at,
            pace_until: None,
            upstream_failures: claimed.upstream_failures,
        };
        record(&context, &claimed, &not_sent, end).await;
        context.wake.notify();
        return;
    }
    metrics::histogram!("callhook_campaign_dispatch_lag_seconds").record(
        (sent_at - claimed.ready_at)
            .to_std()
            .unwrap_or_default()
            .as_secs_f64(),
    );
    let request = MakeCall {
        agent_id: &claimed.agent_id,
        to: &claimed.to,
        status_url: &claimed.status_url,
        hangup_on_answer_machine: claimed.hangup_on_answer_machine.then_some(true),
        session_parameters: &claimed.session_parameters,
    };
    // One try: a connection that could not be made is sent again at a slot of its own, never
    // seconds after this one's (the client's own connection retries would).
    let sending = tokio::time::timeout(
        context.timing.dial_deadline,
        client.make_call_once(&request),
    );
    let answer = if late > Duration::from_millis(1) {
        // Sent late (a busy machine): the agent's next request keeps its distance from this
        // one, not from the slot.
        let recorded = context
            .store
            .campaigns()
            .sent_late(&claimed.agent_id, sent_at);
        let (answer, recorded) = tokio::join!(sending, recorded);
        if let Err(error) = recorded {
            tracing::warn!(%error, agent_id = claimed.agent_id, "could not record a late request in the agent's pace");
        }
        answer
    } else {
        sending.await
    };
    let answer = answer.unwrap_or(Err(Failure::Timeout));
    let end = end_of(&answer, claimed.upstream_failures, now());
    let recorded = outcome_of(&answer);
    metrics::counter!("callhook_calls_total", "state" => recorded.state.as_str()).increment(1);
    // A placed attempt waits for its result; any other end changes what is due.
    let placed = end == AttemptEnd::Initiated;
    record(&context, &claimed, &recorded, end).await;
    if !placed {
        context.wake.notify();
    }
}

/// Records the answer, trying again while the database is unavailable. Left unrecorded, the
/// claim is found abandoned after its lease, and the attempt is `unknown`.
async fn record(context: &Context, claimed: &Claimed, answer: &CallResult, end: AttemptEnd) {
    let mut tries = 0;
    let recorded = loop {
        tries += 1;
        match context
            .store
            .campaigns()
            .finish_attempt(claimed, answer, &end)
            .await
        {
            Err(error) if error.is_unavailable() && tries < RECORD_TRIES => {
                tracing::warn!(%error, call_id = %claimed.call_id, "recording a campaign attempt failed; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => break other,
        }
    };
    let outcome = match &end {
        AttemptEnd::Initiated => "placed; waiting for its result",
        AttemptEnd::Retry { .. } => "not placed; it will be sent again",
        AttemptEnd::Pause(_) => "refused; the campaign is paused",
        AttemptEnd::Done(_) => "finished",
    };
    let error = answer.error.as_ref().map(|e| e.message.as_str());
    let upstream_status = answer.error.as_ref().and_then(|e| e.status);
    let result = match &end {
        AttemptEnd::Done(result) => Some(result.as_str()),
        _ => None,
    };
    match recorded {
        Ok(true) => {
            if let Some(result) = result {
                count_attempt(result);
            }
            tracing::info!(
                campaign_id = %claimed.campaign_id,
                destination = claimed.index,
                attempt = claimed.attempt,
                call_id = %claimed.call_id,
                state = answer.state.as_str(),
                result,
                upstream_status,
                reason = error,
                "campaign attempt {outcome}"
            );
        }
        Ok(false) => tracing::warn!(
            campaign_id = %claimed.campaign_id,
            destination = claimed.index,
            call_id = %claimed.call_id,
            "AI Studio's answer came after the attempt was taken for abandoned; it stays unknown"
        ),
        Err(error) => log_unrecorded(claimed, &error),
    }
}

fn log_unrecorded(claimed: &Claimed, error: &StoreError) {
    tracing::error!(
        campaign_id = %claimed.campaign_id,
        destination = claimed.index,
        call_id = %claimed.call_id,
        %error,
        "AI Studio's answer to a campaign attempt could not be recorded; the attempt will be unknown"
    );
}

/// What AI Studio's answer means for the destination.
pub(super) fn end_of(
    answer: &Result<crate::upstream::Accepted, Failure>,
    upstream_failures: u32,
    at: Timestamp,
) -> AttemptEnd {
    let after = |wait: Duration| at + span(wait.min(MAX_RETRY_AFTER));
    let retry_or = |result: &str| {
        if upstream_failures < UPSTREAM_RETRIES {
            AttemptEnd::Retry {
                at: after(UPSTREAM_BACKOFF * 2u32.pow(upstream_failures)),
                pace_until: None,
                upstream_failures: upstream_failures + 1,
            }
        } else {
            AttemptEnd::Done(result.to_owned())
        }
    };
    match answer {
        Ok(_) => AttemptEnd::Initiated,
        Err(Failure::Refused {
            status: 429,
            retry_after,
            ..
        }) => {
            let until = after(Duration::from_secs(retry_after.unwrap_or(1)));
            AttemptEnd::Retry {
                at: until,
                pace_until: Some(until),
                upstream_failures,
            }
        }
        Err(Failure::Refused {
            status: 400 | 422, ..
        }) => AttemptEnd::Done(INVALID.into()),
        Err(Failure::Refused {
            status: status @ (401 | 403 | 404),
            message,
            ..
        }) => AttemptEnd::Pause(UpstreamError {
            status: Some(*status),
            message: message.clone(),
        }),
        Err(Failure::Refused { status, .. }) if *status == 408 || *status >= 500 => {
            retry_or(NOT_PLACED)
        }
        Err(Failure::Refused { .. }) => AttemptEnd::Done(NOT_PLACED.into()),
        Err(Failure::Unreachable(_)) => retry_or(NOT_PLACED),
        Err(Failure::Timeout | Failure::Interrupted(_) | Failure::UnreadableAnswer(_)) => {
            AttemptEnd::Done(UNKNOWN.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(
        status: u16,
        retry_after: Option<u64>,
    ) -> Result<crate::upstream::Accepted, Failure> {
        Err(Failure::Refused {
            status,
            message: "no".into(),
            retry_after,
        })
    }

    #[test]
    fn answers_map_to_what_the_destination_does_next() {
        let at: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let later = |s| at + chrono::Duration::seconds(s);
        assert_eq!(
            end_of(&refused(429, Some(3)), 0, at),
            AttemptEnd::Retry {
                at: later(3),
                pace_until: Some(later(3)),
                upstream_failures: 0
            }
        );
        assert_eq!(
            end_of(&refused(400, None), 0, at),
            AttemptEnd::Done(INVALID.into())
        );
        assert!(matches!(
            end_of(&refused(404, None), 0, at),
            AttemptEnd::Pause(_)
        ));
        assert!(matches!(
            end_of(&refused(401, None), 0, at),
            AttemptEnd::Pause(_)
        ));
        assert_eq!(
            end_of(&refused(500, None), 2, at),
            AttemptEnd::Retry {
                at: later(4),
                pace_until: None,
                upstream_failures: 3
            }
        );
        assert_eq!(
            end_of(&refused(503, None), 3, at),
            AttemptEnd::Done(NOT_PLACED.into())
        );
        assert_eq!(
            end_of(&Err(Failure::Timeout), 0, at),
            AttemptEnd::Done(UNKNOWN.into())
        );
    }
}
