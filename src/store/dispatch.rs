//! The dispatcher's transactions. An agent's pace row is the lock that orders everything done
//! for that agent: a claim holds it while it picks a destination, records the attempt's call
//! and takes the next slot, so two replicas never claim the same attempt nor crowd the
//! agent's pace. Later steps change a destination only from the state they expect it in.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use uuid::Uuid;

use super::campaigns::{
    Added, AttemptEnd, CampaignRecord, CampaignStore, ClaimOutcome, ClaimRequest, Claimed,
    Controlled, DispatchGauges, DispatchView, Recovered, RunningCampaign, Settle, Settling,
};
use super::dialect::Dialect;
use super::outbox;
use super::sql::Columns;
use super::sql_store::{
    SqlStore, count_upstream_result, emit_upstream_result, finish_call, insert_call,
};
use super::{CallResult, NewCall, StoreError};
use crate::domain::call::{ANSWERED, NOT_PLACED, SessionParameter, UNKNOWN};
use crate::domain::campaign::{
    Campaign, CampaignDestination, CampaignFilter, CampaignState, Control, DestinationFilter,
    MAX_SLOW, OUTSIDE_WINDOW, Pace, redial_at,
};
use crate::domain::campaign_request::{NewDestination, merge_parameters};
use crate::domain::page::{Page, PageRequest};
use crate::domain::time::{Timestamp, span};
use crate::domain::window::{Opening, Window};

/// Due destinations one claim looks at per campaign; those outside their window are moved to
/// its next opening as they are seen.
const CANDIDATES: i64 = 50;
/// What a recovered attempt's call says.
const ABANDONED: &str = "callhook stopped before AI Studio's answer was recorded; the call may \
     have been placed and is not retried";

fn parameters(raw: &str) -> Result<Vec<SessionParameter>, StoreError> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(format!("session parameters: {e}")))
}

impl<D: Dialect> SqlStore<D> {
    /// Locks clause for rows read to be changed in this transaction (row locks only where the
    /// backend has them; SQLite's one writer holds the whole database).
    fn lock(of: &str) -> String {
        if D::SYNTAX.row_locks {
            format!(" FOR UPDATE OF {of}")
        } else {
            String::new()
        }
    }

    /// Marks the campaign completed when none of its destinations is left undone.
    async fn complete_if_done(
        tx: &mut D::Tx,
        campaign_id: Uuid,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        // The campaign's row first: destinations being added hold it until they commit, and
        // the check that follows, a statement of its own, then sees them.
        let mut lock = D::sql("SELECT next_index FROM campaigns WHERE id = ");
        lock.bind(campaign_id)
            .push(" AND state IN ('running', 'paused') AND next_index > 0")
            .push(D::SYNTAX.lock_rows);
        if D::fetch_all_in(tx, lock).await?.is_empty() {
            return Ok(());
        }
        let mut undone =
            D::sql("SELECT 1 AS undone FROM campaign_destinations WHERE campaign_id = ");
        undone
            .bind(campaign_id)
            .push(" AND state IN ('pending', 'claimed', 'dialing') LIMIT 1");
        if !D::fetch_all_in(tx, undone).await?.is_empty() {
            return Ok(());
        }
        let mut sql = D::sql("UPDATE campaigns SET state = 'completed', completed_at = ");
        sql.bind(now)
            .push(", updated_at = ")
            .bind(now)
            .push(" WHERE id = ")
            .bind(campaign_id);
        D::execute_in(tx, sql).await?;
        outbox::campaign_completed::<D>(tx, campaign_id, now).await
    }

    async fn view(&self, now: Timestamp) -> Result<DispatchView, StoreError> {
        let summary = D::sql(
            "SELECT (SELECT min(start_at) FROM campaigns WHERE state = 'scheduled') AS next_start, \
             (SELECT count(*) FROM campaign_destinations WHERE state = 'dialing') AS dialing, \
             (SELECT min(claimed_at) FROM campaign_destinations WHERE state = 'claimed') \
             AS oldest_claim",
        );
        let summary = self.db.fetch_optional(summary).await?;
        let mut next_start = summary
            .as_ref()
            .map(|r| r.opt_time("next_start"))
            .transpose()?
            .flatten();
        if next_start.is_some_and(|at| at <= now) {
            let mut start = D::sql("UPDATE campaigns SET state = 'running', updated_at = ");
            start
                .bind(now)
                .push(" WHERE state = 'scheduled' AND start_at <= ")
                .bind(now);
            self.db.execute(start).await?;
            let sql = D::sql(
                "SELECT min(start_at) AS next_start FROM campaigns WHERE state = 'scheduled'",
            );
            next_start = self
                .db
                .fetch_optional(sql)
                .await?
                .map(|r| r.opt_time("next_start"))
                .transpose()?
                .flatten();
        }
        let running = D::sql(
            "SELECT c.id, c.agent_id, c.calls_per_second, (SELECT min(d.next_attempt_at) \
             FROM campaign_destinations d WHERE d.campaign_id = c.id AND d.state = 'pending') \
             AS next_due FROM campaigns c WHERE c.state = 'running'",
        );
        let running: Vec<RunningCampaign> = self
            .db
            .fetch_all(running)
            .await?
            .iter()
            .map(|row| {
                Ok(RunningCampaign {
                    id: row.uuid("id")?,
                    agent_id: row.text("agent_id")?,
                    calls_per_second: row.float("calls_per_second")?,
                    next_due: row.opt_time("next_due")?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        let mut paces = HashMap::new();
        let agents: BTreeSet<&str> = running.iter().map(|c| c.agent_id.as_str()).collect();
        if !agents.is_empty() {
            let mut sql = D::sql(format!(
                "SELECT agent_id, {PACE_COLUMNS} FROM agent_pace WHERE TRUE"
            ));
            sql.and_in("agent_id", agents);
            for row in self.db.fetch_all(sql).await? {
                paces.insert(row.text("agent_id")?, pace(&row)?);
            }
        }
        Ok(DispatchView {
            next_start,
            dialing: summary
                .as_ref()
                .map(|r| r.int("dialing"))
                .transpose()?
                .unwrap_or(0),
            oldest_claim: summary
                .as_ref()
                .map(|r| r.opt_time("oldest_claim"))
                .transpose()?
                .flatten(),
            running,
            paces,
        })
    }

    /// Whether a due destination's attempt may be sent: not when a callback showed that the
    /// call waiting to be sent again rang, nor when a callback changed the result that
    /// scheduled a redial to one that does not redial.
    async fn previous(
        tx: &mut D::Tx,
        campaign_id: Uuid,
        index: i64,
        destination: &D::Row,
        campaign: &D::Row,
    ) -> Result<Previous, StoreError> {
        if destination.int32("attempts")? == 0 {
            return Ok(Previous::Dial);
        }
        let mut sql = D::sql("SELECT result, result_source FROM calls WHERE campaign_id = ");
        sql.bind(campaign_id)
            .push(" AND destination_index = ")
            .bind(index)
            .push(" ORDER BY attempt DESC LIMIT 1");
        let Some(last) = D::fetch_all_in(tx, sql).await?.into_iter().next() else {
            return Ok(Previous::Dial);
        };
        let (result, source) = (last.opt_text("result")?, last.opt_text("result_source")?);
        if destination.opt_uuid("call_id")?.is_some() {
            return Ok(if source.as_deref() == Some("callback") {
                Previous::Settle
            } else {
                Previous::Dial
            });
        }
        let redial_on: Vec<String> = serde_json::from_str(&campaign.text("redial_on")?)
            .map_err(|e| StoreError::Corrupt(format!("redial_on: {e}")))?;
        Ok(match result {
            Some(result) if result == ANSWERED || !redial_on.contains(&result) => {
                Previous::Done(result)
            }
            _ => Previous::Dial,
        })
    }

    async fn claim(&self, request: &ClaimRequest<'_>) -> Result<ClaimOutcome, StoreError> {
        let now = request.now;
        let mut tx = self.db.begin_write().await?;
        let pace_row = || {
            let mut sql = D::sql(format!(
                "SELECT {PACE_COLUMNS} FROM agent_pace WHERE agent_id = "
            ));
            sql.bind(request.agent_id).push(D::SYNTAX.lock_rows);
            sql
        };
        let mut found = D::fetch_all_in(&mut tx, pace_row()).await?;
        if found.is_empty() {
            // The agent's first claim makes its row (another replica's may come first).
            let mut row = D::sql("INSERT INTO agent_pace (agent_id) VALUES (");
            row.bind(request.agent_id)
                .push(") ON CONFLICT (agent_id) DO NOTHING");
            D::execute_in(&mut tx, row).await?;
            found = D::fetch_all_in(&mut tx, pace_row()).await?;
        }
        let pace = match found.first() {
            Some(row) => pace(row)?,
            None => return Err(StoreError::Corrupt("agent pace row vanished".into())),
        };
        // A pause or cancel waits for this claim (and the claim sees it if it came first).
        let mut sql = D::sql(
            "SELECT id, calls_per_second, call_window, session_parameters, \
             hangup_on_answer_machine, status_base, redial_on FROM campaigns \
             WHERE state = 'running' AND agent_id = ",
        );
        sql.bind(request.agent_id);
        if D::SYNTAX.row_locks {
            sql.push(" FOR SHARE");
        }
        let campaigns = D::fetch_all_in(&mut tx, sql).await?;
        let Some(slowest) = campaigns
            .iter()
            .map(|row| row.float("calls_per_second"))
            .collect::<Result<Vec<f64>, _>>()?
            .into_iter()
            .reduce(f64::min)
        else {
            return Ok(ClaimOutcome::Idle);
        };
        // The spacing of the campaigns running now: a slower one that started, or a slow one
        // that stopped, counts from this request on.
        let spacing = pace.spacing(slowest, request.margin);
        let next_free = pace.next_free(spacing);
        if let Some(free) = next_free
            && free > now + span(request.lookahead)
        {
            return Ok(ClaimOutcome::Wait(free));
        }
        // Attempts already begun (redials, and attempts to be sent again) go first once due:
        // their time was promised, where a fresh destination only waits its turn.
        let mut candidates = Vec::new();
        for campaign in &campaigns {
            let id = campaign.uuid("id")?;
            for (fresh, begun) in [(false, " AND attempts > 0"), (true, " AND attempts = 0")] {
                let mut sql = D::sql(
                    "SELECT campaign_id, idx, destination, session_parameters, metadata, \
                     attempts, upstream_failures, call_id, next_attempt_at \
                     FROM campaign_destinations d WHERE state = 'pending'",
                );
                sql.push(begun)
                    .push(" AND campaign_id = ")
                    .bind(id)
                    .push(" AND next_attempt_at <= ")
                    .bind(now)
                    .push(" ORDER BY next_attempt_at, idx LIMIT ")
                    .bind(CANDIDATES)
                    .push(&Self::lock("d"));
                for row in D::fetch_all_in(&mut tx, sql).await? {
                    let due = row.time("next_attempt_at")?;
                    candidates.push((fresh, due, id, row.int("idx")?, campaign, row));
                }
            }
        }
        candidates.sort_by_key(|(fresh, due, id, index, ..)| (*fresh, *due, *id, *index));
        let mut chosen = None;
        let mut ended = BTreeSet::new();
        for (_, due, campaign_id, index, campaign, row) in candidates {
            let to = row.text("destination")?;
            let opening = match campaign.opt_text("call_window")? {
                None => Opening::Now,
                Some(window) => match serde_json::from_str::<Window>(&window) {
                    Ok(window) => (request.opening)(&window, &to),
                    Err(e) => return Err(StoreError::Corrupt(format!("window: {e}"))),
                },
            };
            let previous = match opening {
                Opening::Now => Self::previous(&mut tx, campaign_id, index, &row, campaign).await?,
                Opening::At(_) | Opening::Never => Previous::Dial,
            };
            let mut update = D::sql("UPDATE campaign_destinations SET ");
            match (opening, previous) {
                (Opening::Now, Previous::Dial) => {
                    chosen = Some((due, index, campaign_id, row, campaign));
                    break;
                }
                (Opening::At(at), _) => {
                    update.push("next_attempt_at = ").bind(at);
                }
                (Opening::Now, Previous::Settle) => {
                    // A callback came for the call waiting to be sent again: it rang. Its
                    // result settles the destination; it is not sent again.
                    update.push("state = 'dialing', claimed_at = NULL");
                }
                // A later callback changed the result that scheduled this redial.
                (Opening::Now, Previous::Done(result)) => {
                    update
                        .push("state = 'done', next_attempt_at = NULL, result = ")
                        .bind(result);
                    ended.insert(campaign_id);
                }
                (Opening::Never, _) => {
                    update
                        .push("state = 'done', next_attempt_at = NULL, result = ")
                        .bind(OUTSIDE_WINDOW);
                    ended.insert(campaign_id);
                }
            }
            update
                .push(", updated_at = ")
                .bind(now)
                .push(" WHERE campaign_id = ")
                .bind(campaign_id)
                .push(" AND idx = ")
                .bind(index);
            D::execute_in(&mut tx, update).await?;
        }
        for campaign_id in ended {
            Self::complete_if_done(&mut tx, campaign_id, now).await?;
        }
        let Some((due, index, campaign_id, row, campaign)) = chosen else {
            D::commit(tx).await?;
            return Ok(ClaimOutcome::Idle);
        };
        let slot = next_free.unwrap_or(now).max(now + span(request.lead));
        let mut taken = D::sql("UPDATE agent_pace SET last_slot = ");
        taken
            .bind(slot)
            .push(" WHERE agent_id = ")
            .bind(request.agent_id);
        D::execute_in(&mut tx, taken).await?;

        let reused = row.opt_uuid("call_id")?;
        let attempts = u32::try_from(row.int32("attempts")?).unwrap_or(0);
        let (call_id, attempt) = match reused {
            Some(call_id) => (call_id, attempts.max(1)),
            None => (request.call_id, attempts + 1),
        };
        let base = campaign.text("status_base")?;
        let status_url = (request.status_url)(&base, call_id);
        let to = row.text("destination")?;
        let own = parameters(&row.text("session_parameters")?)?;
        let session_parameters =
            merge_parameters(&parameters(&campaign.text("session_parameters")?)?, &own);
        let hangup = campaign.boolean("hangup_on_answer_machine")?;
        if reused.is_some() {
            // The same attempt sent again: unknown until AI Studio answers, as a new one.
            let mut sql = D::sql("UPDATE calls SET state = 'unknown', result = ");
            sql.bind(UNKNOWN)
                .push(", result_source = 'upstream', result_at = ")
                .bind(now)
                .push(", updated_at = ")
                .bind(now)
                .push(" WHERE id = ")
                .bind(call_id);
            D::execute_in(&mut tx, sql).await?;
        } else {
            let call = NewCall {
                id: call_id,
                agent_id: request.agent_id.to_owned(),
                to: to.clone(),
                region: request.region,
                hangup_on_answer_machine: hangup,
                session_parameters: session_parameters.clone(),
                metadata: row.opt_text("metadata")?,
                status_url: status_url.clone(),
                campaign_id: Some(campaign_id),
                destination_index: Some(index),
                attempt,
                // The instant its request is sent, a slot of the agent's pace.
                created_at: slot,
            };
            D::execute_in(&mut tx, insert_call::<D>(&call)).await?;
        }
        let mut sql = D::sql("UPDATE campaign_destinations SET state = 'claimed', attempts = ");
        sql.bind(attempt as i32)
            .push(", call_id = ")
            .bind(call_id)
            .push(", claimed_at = ")
            .bind(now)
            .push(", next_attempt_at = NULL, updated_at = ")
            .bind(now)
            .push(" WHERE campaign_id = ")
            .bind(campaign_id)
            .push(" AND idx = ")
            .bind(index);
        D::execute_in(&mut tx, sql).await?;
        D::commit(tx).await?;
        Ok(ClaimOutcome::Claimed(Box::new(Claimed {
            campaign_id,
            index,
            call_id,
            attempt,
            agent_id: request.agent_id.to_owned(),
            to,
            session_parameters,
            hangup_on_answer_machine: hangup,
            status_url,
            slot,
            ready_at: next_free.map_or(due, |free| due.max(free)),
            upstream_failures: u32::try_from(row.int32("upstream_failures")?).unwrap_or(0),
            spacing,
            slowed: pace.slow > 1.0,
        })))
    }

    async fn finish(
        &self,
        claimed: &Claimed,
        answer: &CallResult,
        end: &AttemptEnd,
    ) -> Result<bool, StoreError> {
        let now = answer.at;
        let mut tx = self.db.begin_write().await?;
        // An attempt to be sent again ends instead when its campaign was cancelled meanwhile.
        let cancelled_end;
        let end = match end {
            AttemptEnd::Retry { .. } | AttemptEnd::Pause(_) => {
                let mut sql = D::sql("SELECT state FROM campaigns WHERE id = ");
                sql.bind(claimed.campaign_id);
                let state = D::fetch_all_in(&mut tx, sql).await?;
                if state
                    .first()
                    .map(|r| r.text("state"))
                    .transpose()?
                    .as_deref()
                    == Some(CampaignState::Cancelled.as_str())
                {
                    cancelled_end = AttemptEnd::Done(NOT_PLACED.into());
                    &cancelled_end
                } else {
                    end
                }
            }
            _ => end,
        };
        let mut sql = D::sql("UPDATE campaign_destinations SET ");
        match end {
            AttemptEnd::Initiated => {
                sql.push("state = 'dialing', upstream_failures = 0");
            }
            AttemptEnd::Retry {
                at,
                upstream_failures,
                ..
            } => {
                sql.push("state = 'pending', next_attempt_at = ")
                    .bind(*at)
                    .push(", upstream_failures = ")
                    .bind(*upstream_failures as i32);
            }
            AttemptEnd::Pause(_) => {
                sql.push("state = 'pending', next_attempt_at = ").bind(now);
            }
            AttemptEnd::Done(result) => {
                sql.push("state = 'done', result = ").bind(result.as_str());
            }
        }
        sql.push(", claimed_at = NULL, updated_at = ")
            .bind(now)
            .push(" WHERE campaign_id = ")
            .bind(claimed.campaign_id)
            .push(" AND idx = ")
            .bind(claimed.index)
            .push(" AND state = 'claimed' AND call_id = ")
            .bind(claimed.call_id);
        if D::execute_in(&mut tx, sql).await? == 0 {
            return Ok(false);
        }
        match end {
            AttemptEnd::Initiated | AttemptEnd::Done(_) => {
                let changed =
                    D::fetch_all_in(&mut tx, finish_call::<D>(claimed.call_id, answer)).await?;
                emit_upstream_result::<D>(&mut tx, claimed.call_id, answer, &changed).await?;
                if *end == AttemptEnd::Initiated && claimed.slowed {
                    D::execute_in(&mut tx, ease::<D>(&claimed.agent_id)).await?;
                }
                if matches!(end, AttemptEnd::Done(_)) {
                    Self::complete_if_done(&mut tx, claimed.campaign_id, now).await?;
                }
                D::commit(tx).await?;
                count_upstream_result(answer, &changed)?;
                return Ok(true);
            }
            AttemptEnd::Retry { pace_until, .. } => {
                // Undecided: the same call is sent again.
                D::execute_in(&mut tx, undecided_call::<D>(claimed.call_id, answer)).await?;
                if let Some(until) = pace_until {
                    D::execute_in(&mut tx, hold_back::<D>(&claimed.agent_id, *until)).await?;
                }
            }
            AttemptEnd::Pause(error) => {
                D::execute_in(&mut tx, undecided_call::<D>(claimed.call_id, answer)).await?;
                let mut sql = D::sql("UPDATE campaigns SET state = 'paused', error_status = ");
                sql.bind(error.status.map(i32::from))
                    .push(", error_message = ")
                    .bind(error.message.as_str())
                    .push(", updated_at = ")
                    .bind(now)
                    .push(" WHERE id = ")
                    .bind(claimed.campaign_id)
                    .push(" AND state = 'running'");
                D::execute_in(&mut tx, sql).await?;
            }
        }
        D::commit(tx).await?;
        Ok(true)
    }

    async fn settle(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(Settling, Settle)>, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let mut sql = D::sql(
            "SELECT d.campaign_id, d.idx, d.call_id, d.attempts, c.result, c.result_at, \
             p.max_attempts, p.redial_on, p.redial_after_secs \
             FROM campaign_destinations d JOIN calls c ON c.id = d.call_id \
             JOIN campaigns p ON p.id = d.campaign_id \
             WHERE d.state = 'dialing' AND c.result IS NOT NULL LIMIT ",
        );
        sql.bind(i64::from(limit));
        if D::SYNTAX.row_locks {
            sql.push(" FOR UPDATE OF d SKIP LOCKED");
        }
        let mut settled = Vec::new();
        let mut ended = BTreeSet::new();
        for row in D::fetch_all_in(&mut tx, sql).await? {
            let settling = Settling {
                campaign_id: row.uuid("campaign_id")?,
                index: row.int("idx")?,
                call_id: row.uuid("call_id")?,
                attempts: u32::try_from(row.int32("attempts")?).unwrap_or(0),
                result: row.text("result")?,
                result_at: row.opt_time("result_at")?.unwrap_or(now),
                max_attempts: u32::try_from(row.int32("max_attempts")?).unwrap_or(1),
                redial_on: serde_json::from_str(&row.text("redial_on")?)
                    .map_err(|e| StoreError::Corrupt(format!("redial_on: {e}")))?,
                redial_after_secs: u64::try_from(row.int("redial_after_secs")?).unwrap_or(0),
            };
            let decision = match redial_at(
                &settling.result,
                settling.attempts,
                settling.max_attempts,
                &settling.redial_on,
                settling.redial_after_secs,
                settling.result_at,
            ) {
                Some(at) => Settle::Redial(at),
                None => Settle::Done,
            };
            let mut update = D::sql("UPDATE campaign_destinations SET ");
            match decision {
                Settle::Redial(at) => {
                    update
                        .push("state = 'pending', call_id = NULL, next_attempt_at = ")
                        .bind(at);
                }
                Settle::Done => {
                    update
                        .push("state = 'done', result = ")
                        .bind(settling.result.as_str());
                    ended.insert(settling.campaign_id);
                }
            }
            update
                .push(", updated_at = ")
                .bind(now)
                .push(" WHERE campaign_id = ")
                .bind(settling.campaign_id)
                .push(" AND idx = ")
                .bind(settling.index)
                .push(" AND state = 'dialing'");
            if D::execute_in(&mut tx, update).await? == 1 {
                settled.push((settling, decision));
            }
        }
        for campaign_id in ended {
            Self::complete_if_done(&mut tx, campaign_id, now).await?;
        }
        D::commit(tx).await?;
        Ok(settled)
    }

    async fn recover(
        &self,
        claimed_before: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<Recovered>, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let mut sql = D::sql(
            "SELECT campaign_id, idx, call_id, attempts FROM campaign_destinations d \
             WHERE state = 'claimed' AND claimed_at < ",
        );
        sql.bind(claimed_before).push(&Self::lock("d"));
        let mut recovered = Vec::new();
        let mut abandoned = Vec::new();
        for row in D::fetch_all_in(&mut tx, sql).await? {
            let found = Recovered {
                campaign_id: row.uuid("campaign_id")?,
                index: row.int("idx")?,
                call_id: row.uuid("call_id")?,
                attempt: u32::try_from(row.int32("attempts")?).unwrap_or(0),
            };
            let mut update = D::sql("UPDATE campaign_destinations SET state = 'done', result = ");
            update
                .bind(UNKNOWN)
                .push(", claimed_at = NULL, updated_at = ")
                .bind(now)
                .push(" WHERE campaign_id = ")
                .bind(found.campaign_id)
                .push(" AND idx = ")
                .bind(found.index)
                .push(" AND state = 'claimed'");
            if D::execute_in(&mut tx, update).await? == 0 {
                continue;
            }
            let mut call = D::sql("UPDATE calls SET error_message = ");
            call.bind(ABANDONED)
                .push(", updated_at = ")
                .bind(now)
                .push(" WHERE state = 'unknown' AND id = ")
                .bind(found.call_id);
            if D::execute_in(&mut tx, call).await? == 1 {
                // Its result, `unknown` since it was recorded, is now final.
                abandoned.push(found.call_id);
            }
            recovered.push(found);
        }
        outbox::call_results::<D>(&mut tx, &abandoned, now).await?;
        let campaigns: BTreeSet<Uuid> = recovered.iter().map(|r| r.campaign_id).collect();
        for campaign_id in campaigns {
            Self::complete_if_done(&mut tx, campaign_id, now).await?;
        }
        D::commit(tx).await?;
        Ok(recovered)
    }

    async fn gauges(&self) -> Result<DispatchGauges, StoreError> {
        let in_flight = D::sql(
            "SELECT c.agent_id, count(*) AS n FROM campaign_destinations d \
             JOIN campaigns c ON c.id = d.campaign_id \
             WHERE d.state IN ('claimed', 'dialing') GROUP BY c.agent_id",
        );
        let in_flight = self
            .db
            .fetch_all(in_flight)
            .await?
            .iter()
            .map(|row| Ok((row.text("agent_id")?, row.int("n")?)))
            .collect::<Result<_, StoreError>>()?;
        let states = D::sql("SELECT state, count(*) AS n FROM campaigns GROUP BY state");
        let campaigns = self
            .db
            .fetch_all(states)
            .await?
            .iter()
            .map(|row| {
                Ok((
                    super::campaign_sql::campaign_state(&row.text("state")?)?,
                    row.int("n")?,
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(DispatchGauges {
            in_flight,
            campaigns,
        })
    }
}

/// What the previous attempt of a due destination says about sending the next.
enum Previous {
    Dial,
    /// Its call rang after all (a callback came): settle that result.
    Settle,
    /// Its result changed to one that ends the destination.
    Done(String),
}

/// The columns of an agent's pace row.
const PACE_COLUMNS: &str = "last_slot, hold_until, slow";

fn pace(row: &impl Columns) -> Result<Pace, StoreError> {
    Ok(Pace {
        last_slot: row.opt_time("last_slot")?,
        hold_until: row.opt_time("hold_until")?,
        slow: row.float("slow")?,
    })
}

/// Records that the agent's last request left at `sent_at` (later than its slot), so that
/// the next keeps its distance from it.
fn sent_late<D: Dialect>(agent_id: &str, sent_at: Timestamp) -> super::sql::Sql {
    let mut sql = D::sql("UPDATE agent_pace SET last_slot = ");
    sql.bind(sent_at)
        .push(" WHERE agent_id = ")
        .bind(agent_id)
        .push(" AND (last_slot IS NULL OR last_slot < ")
        .bind(sent_at)
        .push(")");
    sql
}

/// AI Studio refused the agent's rate: no request for it before `until`, and its spacing
/// doubles (up to [`MAX_SLOW`] times the campaigns' own).
fn hold_back<D: Dialect>(agent_id: &str, until: Timestamp) -> super::sql::Sql {
    let mut sql =
        D::sql("UPDATE agent_pace SET hold_until = CASE WHEN hold_until IS NULL OR hold_until < ");
    sql.bind(until)
        .push(" THEN ")
        .bind(until)
        .push(&format!(
            " ELSE hold_until END, slow = {}(slow * 2, ",
            D::SYNTAX.least
        ))
        .bind(MAX_SLOW)
        .push(") WHERE agent_id = ")
        .bind(agent_id);
    sql
}

/// AI Studio accepted a call for the agent: a stretched spacing eases back by a tenth.
fn ease<D: Dialect>(agent_id: &str) -> super::sql::Sql {
    let mut sql = D::sql(format!(
        "UPDATE agent_pace SET slow = {}(1.0, slow * 0.9) WHERE slow > 1.0 AND agent_id = ",
        D::SYNTAX.greatest
    ));
    sql.bind(agent_id);
    sql
}

/// A call whose request was refused in a way that sends it again (a rate limit, an outage,
/// a paused campaign): what AI Studio said, and no result yet.
fn undecided_call<D: Dialect>(id: Uuid, answer: &CallResult) -> super::sql::Sql {
    let mut sql = D::sql("UPDATE calls SET state = ");
    sql.bind(answer.state.as_str())
        .push(", error_status = ")
        .bind(answer.error.as_ref().and_then(|e| e.status).map(i32::from))
        .push(", error_message = ")
        .bind(answer.error.as_ref().map(|e| e.message.as_str()))
        .push(", result = NULL, result_source = NULL, result_at = NULL, updated_at = ")
        .bind(answer.at)
        .push(" WHERE id = ")
        .bind(id)
        .push(" AND (result_source IS NULL OR result_source <> 'callback')");
    sql
}

#[async_trait]
impl<D: Dialect> CampaignStore for SqlStore<D> {
    async fn create_campaign(&self, record: &CampaignRecord<'_>) -> Result<(), StoreError> {
        self.create_campaign_in(record).await
    }

    async fn add_destinations(
        &self,
        id: Uuid,
        destinations: &[NewDestination],
        now: Timestamp,
    ) -> Result<Added, StoreError> {
        self.add_destinations_in(id, destinations, now).await
    }

    async fn campaign(&self, id: Uuid) -> Result<Option<Campaign>, StoreError> {
        self.campaign_by_id(id).await
    }

    async fn campaigns(
        &self,
        filter: &CampaignFilter,
        page: &PageRequest,
    ) -> Result<Page<Campaign>, StoreError> {
        self.campaign_page(filter, page).await
    }

    async fn destinations(
        &self,
        id: Uuid,
        filter: &DestinationFilter,
        page: &PageRequest,
    ) -> Result<Option<Page<CampaignDestination>>, StoreError> {
        self.destination_page(id, filter, page).await
    }

    async fn control_campaign(
        &self,
        id: Uuid,
        control: Control,
        now: Timestamp,
    ) -> Result<Controlled, StoreError> {
        self.control_campaign_in(id, control, now).await
    }

    async fn dispatch_view(&self, now: Timestamp) -> Result<DispatchView, StoreError> {
        self.view(now).await
    }

    async fn claim_attempt(&self, request: &ClaimRequest<'_>) -> Result<ClaimOutcome, StoreError> {
        self.claim(request).await
    }

    async fn sent_late(&self, agent_id: &str, sent_at: Timestamp) -> Result<(), StoreError> {
        self.db
            .execute(sent_late::<D>(agent_id, sent_at))
            .await
            .map(|_| ())
    }

    async fn finish_attempt(
        &self,
        claimed: &Claimed,
        answer: &CallResult,
        end: &AttemptEnd,
    ) -> Result<bool, StoreError> {
        self.finish(claimed, answer, end).await
    }

    async fn settle_results(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(Settling, Settle)>, StoreError> {
        self.settle(now, limit).await
    }

    async fn recover_claims(
        &self,
        claimed_before: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<Recovered>, StoreError> {
        self.recover(claimed_before, now).await
    }

    async fn dispatch_gauges(&self) -> Result<DispatchGauges, StoreError> {
        self.gauges().await
    }
}
