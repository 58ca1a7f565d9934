//! Subscriptions, their delivery log, and the deliverer's claims and attempts.

use std::collections::{BTreeSet, HashSet};

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreError;
use super::dialect::Dialect;
use super::rows::{self, DELIVERY_COLUMNS, SUBSCRIPTION_COLUMNS};
use super::sql::{Columns, PageKey, Value};
use super::sql_store::SqlStore;
use super::webhooks::{
    Attempt, ClaimedDelivery, Created, Next, Retried, SubscriptionRecord, Target, WebhookStore,
};
use crate::domain::page::{Cursor, Page, PageRequest};
use crate::domain::time::Timestamp;
use crate::domain::webhook::{
    Delivery, DeliveryStatus, MAX_SUBSCRIPTIONS, Subscription, SubscriptionUpdate,
};

/// What a delivery pending for a disabled subscription ends with.
const DISABLED: &str = "the subscription was disabled: its receiver answered 410 Gone";

#[async_trait]
impl<D: Dialect> WebhookStore for SqlStore<D> {
    async fn create_subscription(
        &self,
        record: &SubscriptionRecord<'_>,
    ) -> Result<Created, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let count = D::fetch_all_in(
            &mut tx,
            D::sql("SELECT count(*) AS n FROM webhooks WHERE deleted_at IS NULL"),
        )
        .await?;
        if count.first().map(|r| r.int("n")).transpose()?.unwrap_or(0) >= MAX_SUBSCRIPTIONS {
            return Ok(Created::Full);
        }
        let events: Vec<&str> = record
            .subscription
            .events
            .iter()
            .map(|e| e.as_str())
            .collect();
        let mut sql = D::sql(format!(
            "INSERT INTO webhooks ({SUBSCRIPTION_COLUMNS}, secret, updated_at) VALUES ("
        ));
        sql.bind(record.id)
            .push(", ")
            .bind(record.subscription.url.as_str())
            .push(", ")
            .bind(serde_json::to_string(&events).expect("names serialize"))
            .push(", ")
            .bind(&record.subscription.description)
            .push(", ")
            .bind(true)
            .push(", ")
            .bind(None::<&str>)
            .push(", ")
            .bind(record.now)
            .push(", ")
            .bind(record.secret)
            .push(", ")
            .bind(record.now)
            .push(format!(") RETURNING {SUBSCRIPTION_COLUMNS}").as_str());
        let row = D::fetch_all_in(&mut tx, sql).await?;
        let subscription = rows::subscription(
            row.first()
                .ok_or_else(|| StoreError::Corrupt("no row inserted".into()))?,
        )?;
        D::commit(tx).await?;
        Ok(Created::Created(subscription))
    }

    async fn subscription(&self, id: Uuid) -> Result<Option<Subscription>, StoreError> {
        let mut sql = D::sql(format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM webhooks WHERE deleted_at IS NULL AND id = "
        ));
        sql.bind(id);
        self.db
            .fetch_optional(sql)
            .await?
            .map(|row| rows::subscription(&row))
            .transpose()
    }

    async fn subscriptions(&self, page: &PageRequest) -> Result<Page<Subscription>, StoreError> {
        let mut sql = D::sql(format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM webhooks WHERE deleted_at IS NULL"
        ));
        sql.newest_first("created_at", "id", PageKey::Uuid, page);
        let rows = self.db.fetch_all(sql).await?;
        let items = rows
            .iter()
            .map(rows::subscription)
            .collect::<Result<_, _>>()?;
        Ok(Page::from_rows(items, page.limit, |s: &Subscription| {
            Cursor::new(&s.created_at, s.id.to_string())
        }))
    }

    async fn update_subscription(
        &self,
        id: Uuid,
        update: &SubscriptionUpdate,
        now: Timestamp,
    ) -> Result<Option<Subscription>, StoreError> {
        let mut sql = D::sql("UPDATE webhooks SET updated_at = ");
        sql.bind(now);
        if let Some(url) = &update.url {
            sql.push(", url = ").bind(url.as_str());
        }
        if let Some(events) = &update.events {
            let names: Vec<&str> = events.iter().map(|e| e.as_str()).collect();
            sql.push(", events = ")
                .bind(serde_json::to_string(&names).expect("names serialize"));
        }
        if let Some(description) = &update.description {
            sql.push(", description = ").bind(description.as_deref());
        }
        if let Some(enabled) = update.enabled {
            sql.push(", enabled = ")
                .bind(enabled)
                .push(", disabled_reason = ");
            sql.bind(if enabled { None } else { Some("disabled") });
        }
        sql.push(" WHERE deleted_at IS NULL AND id = ")
            .bind(id)
            .push(&format!(" RETURNING {SUBSCRIPTION_COLUMNS}"));
        self.db
            .fetch_optional(sql)
            .await?
            .map(|row| rows::subscription(&row))
            .transpose()
    }

    async fn delete_subscription(&self, id: Uuid, now: Timestamp) -> Result<bool, StoreError> {
        // An update, not a delete: the ingest batches writing deliveries for it right now
        // hold its key (their foreign key), which an update does not wait on.
        let mut sql = D::sql("UPDATE webhooks SET enabled = ");
        sql.bind(false)
            .push(", deleted_at = ")
            .bind(now)
            .push(", updated_at = ")
            .bind(now)
            .push(" WHERE deleted_at IS NULL AND id = ")
            .bind(id);
        Ok(self.db.execute(sql).await? == 1)
    }

    async fn deliveries(
        &self,
        subscription_id: Uuid,
        statuses: &[DeliveryStatus],
        page: &PageRequest,
    ) -> Result<Option<Page<Delivery>>, StoreError> {
        let mut exists = D::sql("SELECT id FROM webhooks WHERE deleted_at IS NULL AND id = ");
        exists.bind(subscription_id);
        if self.db.fetch_optional(exists).await?.is_none() {
            return Ok(None);
        }
        let mut sql = D::sql(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE subscription_id = "
        ));
        sql.bind(subscription_id)
            .and_in("status", statuses.iter().map(|s| s.as_str()));
        sql.newest_first("created_at", "id", PageKey::Uuid, page);
        let rows = self.db.fetch_all(sql).await?;
        let items = rows.iter().map(rows::delivery).collect::<Result<_, _>>()?;
        Ok(Some(Page::from_rows(items, page.limit, |d: &Delivery| {
            Cursor::new(&d.created_at, d.id.to_string())
        })))
    }

    async fn retry_delivery(
        &self,
        subscription_id: Uuid,
        delivery_id: Uuid,
        now: Timestamp,
    ) -> Result<Retried, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let mut sql = D::sql("SELECT enabled FROM webhooks WHERE deleted_at IS NULL AND id = ");
        sql.bind(subscription_id);
        let Some(subscription) = D::fetch_all_in(&mut tx, sql).await?.into_iter().next() else {
            return Ok(Retried::NotFound);
        };
        if !subscription.boolean("enabled")? {
            return Ok(Retried::Disabled);
        }
        let mut sql =
            D::sql("SELECT status, CASE WHEN claimed_by IS NOT NULL AND next_attempt_at > ");
        sql.now(now)
            .push(" THEN 1 ELSE 0 END AS leased FROM webhook_deliveries WHERE id = ")
            .bind(delivery_id)
            .push(" AND subscription_id = ")
            .bind(subscription_id)
            .push(D::SYNTAX.lock_rows);
        let Some(row) = D::fetch_all_in(&mut tx, sql).await?.into_iter().next() else {
            return Ok(Retried::NotFound);
        };
        let pending = row.text("status")? == DeliveryStatus::Pending.as_str();
        if pending && row.int32("leased")? == 1 {
            return Ok(Retried::InFlight);
        }
        // A pending delivery is only brought forward; an ended one gets one attempt more.
        let mut sql = D::sql("UPDATE webhook_deliveries SET status = ");
        sql.bind(DeliveryStatus::Pending.as_str())
            .push(", next_attempt_at = ")
            .bind(now)
            .push(", claimed_by = NULL, once = ")
            .bind(!pending)
            .push(", updated_at = ")
            .bind(now)
            .push(" WHERE id = ")
            .bind(delivery_id);
        D::execute_in(&mut tx, sql).await?;
        D::commit(tx).await?;
        Ok(Retried::Queued)
    }

    async fn delivery_targets(&self) -> Result<Vec<Target>, StoreError> {
        let pending = |of: &str| {
            format!(
                "(SELECT min(d.{of}) FROM webhook_deliveries d \
                 WHERE d.subscription_id = w.id AND d.status = 'pending')"
            )
        };
        let mut sql = D::sql(format!(
            "SELECT w.id, w.url, w.secret, {} AS next_due, {} AS oldest_pending \
             FROM webhooks w WHERE w.enabled = ",
            pending("next_attempt_at"),
            pending("created_at")
        ));
        sql.bind(true);
        self.db
            .fetch_all(sql)
            .await?
            .iter()
            .map(|row| {
                Ok(Target {
                    id: row.uuid("id")?,
                    url: row.text("url")?,
                    secret: row.text("secret")?,
                    next_due: row.opt_time("next_due")?,
                    oldest_pending: row.opt_time("oldest_pending")?,
                })
            })
            .collect()
    }

    async fn claim_deliveries(
        &self,
        subscription_id: Uuid,
        limit: u32,
        now: Timestamp,
        lease: std::time::Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        // A claimed delivery's next attempt is the end of its lease: should its holder die,
        // it is due again then, with nothing else to recover.
        // The deliveries are picked first, by a statement of their own: as a subquery of
        // the update, PostgreSQL may run the pick again per row and claim more than `limit`.
        let claim = Uuid::now_v7();
        let mut sql = D::sql(
            "WITH picked AS MATERIALIZED (SELECT id FROM webhook_deliveries \
             WHERE status = 'pending' AND subscription_id = ",
        );
        sql.bind(subscription_id)
            .push(" AND next_attempt_at <= ")
            .now(now)
            .push(" ORDER BY next_attempt_at LIMIT ")
            .bind(i64::from(limit))
            .push(D::SYNTAX.skip_locked)
            .push(") UPDATE webhook_deliveries SET next_attempt_at = ")
            .now_plus(now, lease)
            .push(", claimed_by = ")
            .bind(claim)
            .push(", attempts = attempts + 1, updated_at = ")
            .bind(now)
            .push(
                " FROM picked WHERE webhook_deliveries.id = picked.id \
                 RETURNING webhook_deliveries.id, payload, attempts, once",
            );
        let mut tx = self.db.begin_write().await?;
        let rows = D::fetch_all_in(&mut tx, sql).await?;
        D::commit(tx).await?;
        rows.iter()
            .map(|row| {
                Ok(ClaimedDelivery {
                    id: row.uuid("id")?,
                    subscription_id,
                    payload: row.text("payload")?,
                    attempts: u32::try_from(row.int32("attempts")?).unwrap_or(u32::MAX),
                    once: row.boolean("once")?,
                    claim,
                })
            })
            .collect()
    }

    async fn record_attempts(
        &self,
        attempts: &[(ClaimedDelivery, Attempt)],
    ) -> Result<HashSet<Uuid>, StoreError> {
        if attempts.is_empty() {
            return Ok(HashSet::new());
        }
        let mut tx = self.db.begin_write().await?;
        // A subscription deleted, or disabled by its receiver's 410, meanwhile gets no more
        // attempts; one stopped by request keeps its deliveries pending for when it is
        // enabled again.
        let mut sql = D::sql("SELECT id FROM webhooks WHERE deleted_at IS NULL AND (enabled = ");
        sql.bind(true)
            .push(" OR disabled_reason IS NULL OR disabled_reason <> 'gone')")
            .and_in("id", attempts.iter().map(|(d, _)| d.subscription_id));
        let open: HashSet<Uuid> = D::fetch_all_in(&mut tx, sql)
            .await?
            .iter()
            .map(|row| row.uuid("id"))
            .collect::<Result<_, _>>()?;
        let next = |(delivery, attempt): &(ClaimedDelivery, Attempt)| match attempt.next {
            Next::RetryAt(_) if !open.contains(&delivery.subscription_id) => Next::Failed,
            next => next,
        };
        let texts = |f: &dyn Fn(&(ClaimedDelivery, Attempt), Next) -> Option<String>| {
            Value::Texts(attempts.iter().map(|a| f(a, next(a))).collect())
        };
        let times = |f: &dyn Fn(&(ClaimedDelivery, Attempt), Next) -> Option<Timestamp>| {
            Value::Times(attempts.iter().map(|a| f(a, next(a))).collect())
        };
        let mut sql = D::sql(
            "UPDATE webhook_deliveries SET status = t.status, next_attempt_at = t.next_attempt_at, \
             claimed_by = NULL, once = ",
        );
        sql.bind(false).push(
            ", last_status_code = t.status_code, last_error = t.error, \
             delivered_at = COALESCE(t.delivered_at, webhook_deliveries.delivered_at), \
             updated_at = t.at FROM ",
        );
        sql.rows(vec![
            (
                "id",
                Value::Uuids(attempts.iter().map(|(d, _)| Some(d.id)).collect()),
            ),
            (
                "claim",
                Value::Uuids(attempts.iter().map(|(d, _)| Some(d.claim)).collect()),
            ),
            (
                "status",
                texts(&|_, next| Some(status_after(next).as_str().to_owned())),
            ),
            (
                "next_attempt_at",
                times(&|_, next| match next {
                    Next::RetryAt(at) => Some(at),
                    _ => None,
                }),
            ),
            (
                "status_code",
                Value::Ints(
                    attempts
                        .iter()
                        .map(|(_, a)| a.status_code.map(i64::from))
                        .collect(),
                ),
            ),
            ("error", texts(&|(_, a), _| a.error.clone())),
            (
                "delivered_at",
                times(&|(_, a), next| (next == Next::Delivered).then_some(a.at)),
            ),
            ("at", times(&|(_, a), _| Some(a.at))),
        ]);
        sql.push(
            " WHERE webhook_deliveries.id = t.id AND webhook_deliveries.claimed_by = t.claim \
             RETURNING webhook_deliveries.id",
        );
        let recorded: HashSet<Uuid> = D::fetch_all_in(&mut tx, sql)
            .await?
            .iter()
            .map(|row| row.uuid("id"))
            .collect::<Result<_, _>>()?;
        let gone: BTreeSet<Uuid> = attempts
            .iter()
            .filter(|(d, a)| a.next == Next::Gone && recorded.contains(&d.id))
            .map(|(d, _)| d.subscription_id)
            .collect();
        for subscription_id in gone {
            let at = attempts.iter().map(|(_, a)| a.at).max().expect("not empty");
            disable::<D>(&mut tx, subscription_id, at).await?;
        }
        D::commit(tx).await?;
        Ok(recorded)
    }

    async fn purge_deleted(
        &self,
        deleted_before: Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let mut sql = D::sql(
            "DELETE FROM webhook_deliveries WHERE id IN (SELECT d.id FROM webhook_deliveries d \
             JOIN webhooks w ON w.id = d.subscription_id WHERE w.deleted_at < ",
        );
        sql.bind(deleted_before)
            .push(" LIMIT ")
            .bind(i64::from(limit))
            .push(")");
        let deliveries = self.db.execute(sql).await?;
        if deliveries > 0 {
            return Ok(deliveries);
        }
        let mut sql = D::sql("DELETE FROM webhooks WHERE deleted_at < ");
        sql.bind(deleted_before).push(
            " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
             WHERE d.subscription_id = webhooks.id)",
        );
        self.db.execute(sql).await
    }

    async fn prune_deliveries(
        &self,
        ended_before: Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let mut sql = D::sql(
            "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries \
             WHERE status <> 'pending' AND updated_at < ",
        );
        sql.bind(ended_before)
            .push(" LIMIT ")
            .bind(i64::from(limit))
            .push(")");
        self.db.execute(sql).await
    }
}

/// Where an attempt leaves its delivery.
fn status_after(next: Next) -> DeliveryStatus {
    match next {
        Next::Delivered => DeliveryStatus::Delivered,
        Next::RetryAt(_) => DeliveryStatus::Pending,
        Next::Failed | Next::Gone => DeliveryStatus::Failed,
    }
}

/// Disables a subscription whose receiver is gone; its pending deliveries fail, those under
/// way too (their claims stay, so that an attempt ending later still records its answer).
async fn disable<D: Dialect>(
    tx: &mut D::Tx,
    subscription_id: Uuid,
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut sql = D::sql("UPDATE webhooks SET enabled = ");
    sql.bind(false)
        .push(", disabled_reason = 'gone', updated_at = ")
        .bind(now)
        .push(" WHERE id = ")
        .bind(subscription_id);
    D::execute_in(tx, sql).await?;
    let mut sql = D::sql("UPDATE webhook_deliveries SET status = ");
    sql.bind(DeliveryStatus::Failed.as_str())
        .push(", next_attempt_at = NULL, last_error = ")
        .bind(DISABLED)
        .push(", updated_at = ")
        .bind(now)
        .push(" WHERE subscription_id = ")
        .bind(subscription_id)
        .push(" AND status = 'pending'");
    D::execute_in(tx, sql).await.map(|_| ())
}
