-- Status callbacks and the outcomes folded from them. Instants are microseconds since the
-- Unix epoch (UTC), so that they sort and compare exactly.

CREATE TABLE callback_events (
    id                INTEGER PRIMARY KEY,
    conversation_uuid TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    occurred_at       INTEGER NOT NULL,
    received_at       INTEGER NOT NULL,
    agent_id          TEXT,
    destination       TEXT,
    call_id           TEXT,
    payload           TEXT    NOT NULL,
    UNIQUE (conversation_uuid, status, occurred_at)
);

CREATE TABLE outcomes (
    conversation_uuid  TEXT    NOT NULL PRIMARY KEY,
    status             TEXT    NOT NULL,
    agent_id           TEXT,
    destination        TEXT,
    occurred_at        INTEGER NOT NULL,
    status_received_at INTEGER NOT NULL,
    call_id            TEXT,
    event_count        INTEGER NOT NULL,
    first_received_at  INTEGER NOT NULL,
    last_received_at   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX outcomes_newest ON outcomes (occurred_at DESC, conversation_uuid DESC);
CREATE INDEX outcomes_by_agent ON outcomes (agent_id, occurred_at DESC);
CREATE INDEX outcomes_by_call ON outcomes (call_id) WHERE call_id IS NOT NULL;
