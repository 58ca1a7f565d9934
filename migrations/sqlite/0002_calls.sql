-- Calls placed through callhook, and the Idempotency-Key records of POST /v1/calls.

CREATE TABLE calls (
    id                       TEXT    NOT NULL PRIMARY KEY,
    agent_id                 TEXT    NOT NULL,
    destination              TEXT    NOT NULL,
    region                   TEXT    NOT NULL,
    hangup_on_answer_machine INTEGER NOT NULL,
    session_parameters       TEXT    NOT NULL,
    metadata                 TEXT,
    state                    TEXT    NOT NULL,
    session_id               TEXT,
    session_start_time       INTEGER,
    error_status             INTEGER,
    error_message            TEXT,
    created_at               INTEGER NOT NULL,
    updated_at               INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX calls_newest ON calls (created_at DESC, id DESC);
CREATE INDEX calls_by_agent ON calls (agent_id, created_at DESC);

CREATE TABLE idempotency_keys (
    key             TEXT    NOT NULL PRIMARY KEY,
    request_hash    TEXT    NOT NULL,
    response_status INTEGER,
    response_body   TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
