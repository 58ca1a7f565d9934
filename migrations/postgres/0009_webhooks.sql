-- Outgoing webhooks: subscriptions, and one delivery per subscription and event (a
-- transactional outbox: each delivery is written by the transaction that made its event).
-- These tables stay on one node (on Citus, the coordinator): deliveries are claimed with
-- FOR UPDATE SKIP LOCKED.
--
-- events: the event types wanted, as a JSON array. secret: the signing key, whsec_ and base64.
-- disabled_reason: why enabled is false (gone: the receiver answered 410). deleted_at: when
-- DELETE /v1/webhooks/{id} removed it; its rows go in the background, so that a deletion never
-- waits on, or fails, the ingest batches writing deliveries for it at that moment.
CREATE TABLE webhooks (
    id              uuid        PRIMARY KEY,
    url             text        NOT NULL,
    events          text        NOT NULL,
    description     text,
    secret          text        NOT NULL,
    enabled         boolean     NOT NULL,
    disabled_reason text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz
);

CREATE INDEX webhooks_newest ON webhooks (created_at DESC, id DESC);

-- id: the webhook-id header, the same on every attempt. payload: the body, as sent.
-- status: pending, delivered, failed. next_attempt_at: when a pending delivery is due; while
-- an attempt is under way, the end of its lease (claimed_by holds it), after which another
-- replica may take it over. once: a manual retry, attempted once whatever the schedule says.
CREATE TABLE webhook_deliveries (
    id               uuid        PRIMARY KEY,
    subscription_id  uuid        NOT NULL REFERENCES webhooks (id),
    event_type       text        NOT NULL,
    payload          text        NOT NULL,
    status           text        NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0,
    once             boolean     NOT NULL DEFAULT false,
    next_attempt_at  timestamptz,
    claimed_by       uuid,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL,
    delivered_at     timestamptz,
    updated_at       timestamptz NOT NULL
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (subscription_id, next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_oldest ON webhook_deliveries (subscription_id, created_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_newest ON webhook_deliveries (subscription_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_ended ON webhook_deliveries (updated_at)
    WHERE status <> 'pending';
