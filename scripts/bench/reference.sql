-- pgbench script: what a receiver writing one transaction per callback does on callhook's own
-- schema, with the same statements callhook's batch uses, one row at a time: store the event
-- once per key, then fold it into its outcome (the same conditional upsert). A new
-- conversation each time, as in the HTTP run.
\set n random(1, 1000000000000)
BEGIN;
INSERT INTO callback_events (conversation_uuid, status, occurred_at, received_at, agent_id, destination, payload)
VALUES ('REF-' || :client_id || '-' || :n, 'busy', TIMESTAMPTZ '2026-12-01 06:40:45.475+00', now(), 'agent-1', '972540000001',
        '{"agent_id":"agent-1","to":"972540000001","conversation_uuid":"REF-' || :n || '","status":"busy","timestamp":"2026-12-01T06:40:45.475Z"}')
ON CONFLICT (conversation_uuid, status, occurred_at) DO NOTHING;
INSERT INTO outcomes AS o (conversation_uuid, status, agent_id, destination, occurred_at, status_received_at,
                           event_count, first_received_at, last_received_at)
VALUES ('REF-' || :client_id || '-' || :n, 'busy', 'agent-1', '972540000001', TIMESTAMPTZ '2026-12-01 06:40:45.475+00', now(), 1, now(), now())
ON CONFLICT (conversation_uuid) DO UPDATE SET
  status = CASE WHEN (excluded.occurred_at, excluded.status_received_at, excluded.status COLLATE "C")
                   > (o.occurred_at, o.status_received_at, o.status COLLATE "C") THEN excluded.status ELSE o.status END,
  occurred_at = GREATEST(o.occurred_at, excluded.occurred_at),
  event_count = o.event_count + 1,
  last_received_at = GREATEST(o.last_received_at, excluded.last_received_at);
END;
