//! `GET /v1/stats` from the database: outcome counts from the maintained counts plus the
//! window's partial minutes, calls by state and by result, and the initiated calls' fate.

use std::collections::BTreeMap;

use super::StoreError;
use super::batch::{self, Width, WindowPart};
use super::dialect::Dialect;
use super::sql::{Columns, Sql};
use crate::domain::call::PENDING;
use crate::domain::stats::{
    FAILURE_STATUSES, InitiatedStats, Stats, StatsWindow, Timeline, TimelineBucket, TimelineWindow,
};
use crate::domain::time::Timestamp;

pub(super) async fn stats<D: Dialect>(db: &D, window: &StatsWindow) -> Result<Stats, StoreError> {
    let outcomes = counts(db.fetch_all(outcome_counts::<D>(window)).await?)?;

    let mut sql = D::sql("SELECT state AS key, count(*) AS n FROM calls WHERE TRUE");
    sql.and_window("created_at", Some(window.since), Some(window.until))
        .and_eq("agent_id", window.agent_id.as_deref())
        .push(" GROUP BY state");
    let calls = super::calls_by_state(counts(db.fetch_all(sql).await?)?)?;

    let mut sql = D::sql("SELECT coalesce(result, ");
    sql.bind(PENDING)
        .push(") AS key, count(*) AS n FROM calls WHERE TRUE")
        .and_window("created_at", Some(window.since), Some(window.until))
        .and_eq("agent_id", window.agent_id.as_deref())
        .push(" GROUP BY key");
    let results = counts(db.fetch_all(sql).await?)?;

    // A join on a grouped subquery rather than correlated subqueries, which Citus can
    // plan when outcomes are distributed.
    let mut sql = D::sql(
        "SELECT count(*) AS total, \
         coalesce(sum(CASE WHEN f.failed = 1 THEN 1 ELSE 0 END), 0) AS failed, \
         coalesce(sum(CASE WHEN f.call_id IS NULL THEN 1 ELSE 0 END), 0) AS silent \
         FROM calls LEFT JOIN (SELECT call_id, max(CASE WHEN TRUE",
    );
    sql.and_in("status", FAILURE_STATUSES).push(
        " THEN 1 ELSE 0 END) AS failed FROM outcomes WHERE call_id IS NOT NULL \
         GROUP BY call_id) f ON f.call_id = calls.id WHERE state = 'initiated'",
    );
    sql.and_window("created_at", Some(window.since), Some(window.until))
        .and_eq("agent_id", window.agent_id.as_deref());
    let row = db
        .fetch_optional(sql)
        .await?
        .ok_or_else(|| StoreError::Corrupt("an aggregate without a row".into()))?;
    Ok(Stats {
        since: window.since,
        until: window.until,
        agent_id: window.agent_id.clone(),
        outcomes,
        calls,
        results,
        initiated: InitiatedStats {
            total: row.int("total")?,
            with_failure_callback: row.int("failed")?,
            without_callback: row.int("silent")?,
        },
    })
}

/// Outcomes by status whose `occurred_at` is in the window, in one statement (one snapshot):
/// whole hours and whole minutes from the counts, the partial minutes at either end from the
/// outcomes themselves.
fn outcome_counts<D: Dialect>(window: &StatsWindow) -> Sql {
    let mut sql = D::sql("SELECT key, CAST(sum(n) AS BIGINT) AS n FROM (");
    for (i, part) in batch::window_parts(window.since, window.until)
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            sql.push(" UNION ALL ");
        }
        match part {
            WindowPart::Buckets(width, since, until) => {
                sql.push("SELECT status AS key, count AS n FROM outcome_counts WHERE minutes = ")
                    .bind(width.minutes())
                    .and_window("bucket", Some(since), Some(until));
                if let Some(agent_id) = &window.agent_id {
                    sql.push(" AND agent = ")
                        .bind(batch::agent_key(Some(agent_id)));
                }
            }
            WindowPart::Rows(since, until) => {
                sql.push("SELECT status AS key, count(*) AS n FROM outcomes WHERE TRUE")
                    .and_window("occurred_at", Some(since), Some(until))
                    .and_eq("agent_id", window.agent_id.as_deref())
                    .push(" GROUP BY status");
            }
        }
    }
    sql.push(") AS parts GROUP BY key");
    sql
}

fn counts(rows: Vec<impl Columns>) -> Result<BTreeMap<String, i64>, StoreError> {
    let mut counts = BTreeMap::new();
    for row in rows {
        let n = row.int("n")?;
        if n != 0 {
            counts.insert(row.text("key")?, n);
        }
    }
    Ok(counts)
}

/// Outcomes by status per whole bucket of the window, from the maintained counts.
pub(super) async fn timeline<D: Dialect>(
    db: &D,
    window: &TimelineWindow,
) -> Result<Timeline, StoreError> {
    let width = Width::from(window.width);
    let mut sql = D::sql(
        "SELECT bucket, status, CAST(sum(count) AS BIGINT) AS n FROM outcome_counts \
         WHERE minutes = ",
    );
    sql.bind(width.minutes())
        .and_window("bucket", Some(window.since), Some(window.until));
    if let Some(agent_id) = &window.agent_id {
        sql.push(" AND agent = ")
            .bind(batch::agent_key(Some(agent_id)));
    }
    sql.push(" GROUP BY bucket, status");
    let mut by_bucket: BTreeMap<Timestamp, BTreeMap<String, i64>> = BTreeMap::new();
    for row in db.fetch_all(sql).await? {
        let n = row.int("n")?;
        if n != 0 {
            by_bucket
                .entry(row.time("bucket")?)
                .or_default()
                .insert(row.text("status")?, n);
        }
    }
    let step = chrono::Duration::seconds(window.width.seconds());
    let mut buckets = Vec::new();
    let mut start = window.since;
    while start < window.until {
        buckets.push(TimelineBucket {
            start,
            outcomes: by_bucket.remove(&start).unwrap_or_default(),
        });
        start += step;
    }
    Ok(Timeline {
        since: window.since,
        until: window.until,
        bucket: window.width,
        agent_id: window.agent_id.clone(),
        buckets,
    })
}
