//! A batch of callbacks into the database: three or four set-based statements in one
//! transaction, whatever the batch's size.

use super::StoreError;
use super::batch::{self, CountChanges, CountKey, Counted};
use super::dialect::Dialect;
use super::outbox;
use super::rows::{self, OUTCOME_COLUMNS};
use super::sql::{Columns, Sql, Value};
use crate::domain::call::{ResultSource, callback_result};
use crate::domain::callback::Callback;
use crate::domain::outcome::Recorded;
use crate::domain::time::{self, Timestamp};
use crate::domain::webhook::{self, EventType};
use crate::telemetry;

/// Stores the new events of a batch, folds them into their outcomes, decides the results of
/// the calls they are for, and moves the outcome counts; returns what became of each.
pub(super) async fn record_callbacks<D: Dialect>(
    db: &D,
    callbacks: &[Callback],
) -> Result<Vec<Recorded>, StoreError> {
    // Three statements per batch, whatever its size: the events, their outcomes, and the
    // counts those outcomes moved in; a fourth when callbacks came through calls' own status
    // URLs, deciding those calls' results. Each takes its locks in one global order (event
    // keys, outcome rows, call rows, count rows, each sorted), and no statement waits on an
    // earlier kind, so concurrent batches never wait on each other in a cycle. Only row and
    // index locks are involved, so this holds on Citus too.
    let mut order: Vec<usize> = (0..callbacks.len()).collect();
    order.sort_by(|&a, &b| event_key(&callbacks[a]).cmp(&event_key(&callbacks[b])));
    let sorted: Vec<&Callback> = order.iter().map(|&i| &callbacks[i]).collect();
    let mut tx = db.begin_write().await?;

    let mut insert = D::sql(
        "INSERT INTO callback_events (conversation_uuid, status, occurred_at, received_at, \
         agent_id, destination, call_id, payload) \
         SELECT conversation_uuid, status, occurred_at, received_at, agent_id, destination, \
         call_id, payload FROM ",
    );
    insert.rows(vec![
        (
            "conversation_uuid",
            texts(&sorted, |cb| Some(cb.conversation_uuid.as_str())),
        ),
        ("status", texts(&sorted, |cb| Some(cb.status.as_str()))),
        ("occurred_at", times(&sorted, |cb| cb.occurred_at)),
        ("received_at", times(&sorted, |cb| cb.received_at)),
        ("agent_id", texts(&sorted, |cb| cb.agent_id.as_deref())),
        ("destination", texts(&sorted, |cb| cb.to.as_deref())),
        (
            "call_id",
            Value::Uuids(sorted.iter().map(|cb| cb.call_id).collect()),
        ),
        ("payload", texts(&sorted, |cb| Some(cb.payload.as_str()))),
    ]);
    // Two copies of one key in a batch store the first.
    insert.push(
        " WHERE TRUE ORDER BY n \
         ON CONFLICT (conversation_uuid, status, occurred_at) DO NOTHING \
         RETURNING conversation_uuid, status, occurred_at",
    );
    let stored_keys = D::fetch_all_in(&mut tx, insert).await?;

    // Each stored key is found in the sorted input without copying it.
    let mut recorded = vec![Recorded::Duplicate; callbacks.len()];
    for row in &stored_keys {
        let (conversation, status, occurred_at) = (
            row.text("conversation_uuid")?,
            row.text("status")?,
            row.time("occurred_at")?,
        );
        let first = sorted.partition_point(|cb| {
            event_key(cb) < (conversation.as_str(), status.as_str(), occurred_at)
        });
        recorded[order[first]] = Recorded::Stored;
    }
    let stored: Vec<&Callback> = order
        .iter()
        .filter(|&&index| recorded[index] == Recorded::Stored)
        .map(|&index| &callbacks[index])
        .collect();
    if !stored.is_empty() {
        let folded = batch::fold(&stored);
        let moved = D::fetch_all_in(&mut tx, fold_outcomes::<D>(&folded)).await?;
        let mut changes = CountChanges::default();
        for row in &moved {
            let before = match row.opt_text("previous_status")? {
                Some(status) => Some(Counted {
                    occurred_at: row.time("previous_occurred_at")?,
                    status,
                    agent_id: row.opt_text("previous_agent_id")?,
                }),
                None => None,
            };
            let now = Counted {
                occurred_at: row.time("occurred_at")?,
                status: row.text("status")?,
                agent_id: row.opt_text("agent_id")?,
            };
            changes.moved(before, now);
        }
        let results = batch::call_results(&stored);
        // (result, source it replaced) of each call decided, read before the commit so that
        // nothing after it can fail a batch that is stored.
        let mut decided = Vec::new();
        let mut decided_calls = Vec::new();
        if !results.is_empty() {
            if let Some(lock) = lock_calls::<D>(&results) {
                D::execute_in(&mut tx, lock).await?;
            }
            for row in D::fetch_all_in(&mut tx, decide_results::<D>(&results)).await? {
                decided.push((row.text("result")?, row.opt_text("previous_result_source")?));
                decided_calls.push(row.uuid("id")?);
            }
        }
        let changes = changes.into_changes();
        if !changes.is_empty() {
            D::execute_in(&mut tx, count_outcomes::<D>(changes)).await?;
        }
        // Last, after every lock of the batch's own rows is taken.
        emit_events::<D>(&mut tx, &moved, &decided_calls).await?;
        D::commit(tx).await?;
        for (result, replaced) in &decided {
            telemetry::count_result(result, ResultSource::Callback);
            if replaced.as_deref() == Some(ResultSource::Inferred.as_str()) {
                telemetry::count_correction();
            }
        }
        return Ok(recorded);
    }
    D::commit(tx).await?;
    Ok(recorded)
}

/// The events of a batch, for the subscriptions that want them: `outcome.updated` for each
/// outcome it changed, `call.result` for each call whose result it set.
async fn emit_events<D: Dialect>(
    tx: &mut D::Tx,
    moved: &[D::Row],
    decided_calls: &[uuid::Uuid],
) -> Result<(), StoreError> {
    let subscribers = outbox::Subscribers::read::<D>(tx).await?;
    let now = time::now();
    let wanting = subscribers.wanting(EventType::OutcomeUpdated);
    if !wanting.is_empty() {
        let bodies = moved
            .iter()
            .map(|row| {
                rows::outcome(row).map(|o| webhook::envelope(EventType::OutcomeUpdated, now, &o))
            })
            .collect::<Result<Vec<_>, _>>()?;
        outbox::emit::<D>(tx, &wanting, EventType::OutcomeUpdated, &bodies, now).await?;
    }
    outbox::emit_call_results::<D>(tx, &subscribers, decided_calls, now).await
}

/// How events are ordered for their key `(conversation_uuid, status, occurred_at)`.
fn event_key(cb: &Callback) -> (&str, &str, Timestamp) {
    (
        cb.conversation_uuid.as_str(),
        cb.status.as_str(),
        cb.occurred_at,
    )
}

fn texts<'a>(callbacks: &[&'a Callback], field: impl Fn(&'a Callback) -> Option<&'a str>) -> Value {
    Value::Texts(
        callbacks
            .iter()
            .map(|cb| field(cb).map(str::to_owned))
            .collect(),
    )
}

fn times(callbacks: &[&Callback], field: impl Fn(&Callback) -> Timestamp) -> Value {
    Value::Times(callbacks.iter().map(|cb| Some(field(cb))).collect())
}

/// Folds a batch, already folded per conversation, into the stored outcomes by the rule of
/// [`batch::wins`], and returns each outcome's new and previous count key. The previous key
/// is kept in the row by the update itself (`previous_*`), so that it is the row the update
/// actually replaced, whatever committed since the statement began.
fn fold_outcomes<D: Dialect>(folded: &[batch::Folded]) -> Sql {
    let syntax = D::SYNTAX;
    let c = syntax.bytewise;
    let wins = format!(
        "(excluded.occurred_at, excluded.status_received_at, excluded.status{c}) \
         > (o.occurred_at, o.status_received_at, o.status{c})"
    );
    let pick = |column: &str| {
        format!("{column} = CASE WHEN {wins} THEN excluded.{column} ELSE o.{column} END")
    };
    let known = |column: &str| {
        format!(
            "{column} = CASE WHEN {wins} THEN COALESCE(excluded.{column}, o.{column}) \
             ELSE COALESCE(o.{column}, excluded.{column}) END"
        )
    };
    let (greatest, least) = (syntax.greatest, syntax.least);
    let mut sql = D::sql(
        "INSERT INTO outcomes AS o (conversation_uuid, status, agent_id, destination, \
         occurred_at, status_received_at, call_id, event_count, first_received_at, \
         last_received_at) \
         SELECT conversation_uuid, status, agent_id, destination, occurred_at, \
         status_received_at, call_id, event_count, first_received_at, last_received_at FROM ",
    );
    let column =
        |f: fn(&batch::Folded) -> Option<String>| Value::Texts(folded.iter().map(f).collect());
    let instant = |f: fn(&batch::Folded) -> Timestamp| {
        Value::Times(folded.iter().map(|o| Some(f(o))).collect())
    };
    sql.rows(vec![
        (
            "conversation_uuid",
            column(|o| Some(o.conversation_uuid.clone())),
        ),
        ("status", column(|o| Some(o.status.clone()))),
        ("agent_id", column(|o| o.agent_id.clone())),
        ("destination", column(|o| o.destination.clone())),
        ("occurred_at", instant(|o| o.occurred_at)),
        ("status_received_at", instant(|o| o.status_received_at)),
        (
            "call_id",
            Value::Uuids(folded.iter().map(|o| o.call_id).collect()),
        ),
        (
            "event_count",
            Value::Ints(folded.iter().map(|o| Some(o.event_count)).collect()),
        ),
        ("first_received_at", instant(|o| o.first_received_at)),
        ("last_received_at", instant(|o| o.last_received_at)),
    ]);
    sql.push(&format!(
        " WHERE TRUE ORDER BY n \
         ON CONFLICT (conversation_uuid) DO UPDATE SET \
           previous_status = o.status, previous_agent_id = o.agent_id, \
           previous_occurred_at = o.occurred_at, \
           {status}, {received}, {agent}, {destination}, {call}, \
           occurred_at = {greatest}(o.occurred_at, excluded.occurred_at), \
           event_count = o.event_count + excluded.event_count, \
           first_received_at = {least}(o.first_received_at, excluded.first_received_at), \
           last_received_at = {greatest}(o.last_received_at, excluded.last_received_at) \
         RETURNING {OUTCOME_COLUMNS}, previous_status, previous_agent_id, \
           previous_occurred_at",
        status = pick("status"),
        received = pick("status_received_at"),
        agent = known("agent_id"),
        destination = known("destination"),
        call = known("call_id"),
    ));
    sql
}

/// Locks the calls a batch decides, in id order, where the update that follows could
/// otherwise lock them in the order of its plan (a hash join scans calls in their physical
/// order); `None` where one writer at a time holds the whole database.
fn lock_calls<D: Dialect>(results: &[batch::CallResultOf<'_>]) -> Option<Sql> {
    let lock = D::SYNTAX.lock_rows;
    if lock.is_empty() {
        return None;
    }
    let mut sql = D::sql("SELECT id FROM calls WHERE TRUE");
    sql.and_in("id", results.iter().map(|r| r.call_id))
        .push(" ORDER BY id")
        .push(lock);
    Some(sql)
}

/// Sets the result of each call a batch has callbacks for, unless the call already has a
/// later callback's result (the outcome rule decides which is later); returns each call it
/// changed with its result and the source it replaced. Calls are updated in id order.
fn decide_results<D: Dialect>(results: &[batch::CallResultOf<'_>]) -> Sql {
    let c = D::SYNTAX.bytewise;
    let mut sql = D::sql(
        "UPDATE calls SET previous_result_source = result_source, result = t.result, \
         result_source = 'callback', result_at = t.received_at, result_status = t.status, \
         result_occurred_at = t.occurred_at, result_received_at = t.received_at FROM ",
    );
    sql.rows(vec![
        (
            "call_id",
            Value::Uuids(results.iter().map(|r| Some(r.call_id)).collect()),
        ),
        (
            "result",
            Value::Texts(
                results
                    .iter()
                    .map(|r| Some(callback_result(&r.callback.status).to_owned()))
                    .collect(),
            ),
        ),
        (
            "status",
            Value::Texts(
                results
                    .iter()
                    .map(|r| Some(r.callback.status.clone()))
                    .collect(),
            ),
        ),
        (
            "occurred_at",
            Value::Times(
                results
                    .iter()
                    .map(|r| Some(r.callback.occurred_at))
                    .collect(),
            ),
        ),
        (
            "received_at",
            Value::Times(
                results
                    .iter()
                    .map(|r| Some(r.callback.received_at))
                    .collect(),
            ),
        ),
    ]);
    sql.push(&format!(
        " WHERE calls.id = t.call_id AND (calls.result_source IS NULL \
           OR calls.result_source <> 'callback' \
           OR (t.occurred_at, t.received_at, t.status{c}) \
              > (calls.result_occurred_at, calls.result_received_at, calls.result_status{c})) \
         RETURNING calls.id, calls.result, calls.previous_result_source"
    ));
    sql
}

/// Adds changes to the outcome counts, in key order.
fn count_outcomes<D: Dialect>(changes: Vec<(CountKey, i64)>) -> Sql {
    let mut sql = D::sql(
        "INSERT INTO outcome_counts AS c (minutes, bucket, status, agent, count) \
         SELECT minutes, bucket, status, agent, count FROM ",
    );
    let texts = |f: fn(&CountKey) -> String| {
        Value::Texts(changes.iter().map(|(k, _)| Some(f(k))).collect())
    };
    sql.rows(vec![
        (
            "minutes",
            Value::Ints(
                changes
                    .iter()
                    .map(|(k, _)| Some(k.width.minutes()))
                    .collect(),
            ),
        ),
        (
            "bucket",
            Value::Times(changes.iter().map(|(k, _)| Some(k.bucket)).collect()),
        ),
        ("status", texts(|k| k.status.clone())),
        ("agent", texts(|k| k.agent.clone())),
        (
            "count",
            Value::Ints(changes.iter().map(|(_, n)| Some(*n)).collect()),
        ),
    ]);
    sql.push(
        " WHERE TRUE ORDER BY n ON CONFLICT (minutes, bucket, status, agent) \
         DO UPDATE SET count = c.count + excluded.count",
    );
    sql
}
