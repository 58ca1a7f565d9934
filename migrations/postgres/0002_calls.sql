-- Calls placed through callhook, and the Idempotency-Key records of POST /v1/calls.

CREATE TABLE calls (
    id                       uuid        PRIMARY KEY,
    agent_id                 text        NOT NULL,
    destination              text        NOT NULL,
    region                   text        NOT NULL,
    hangup_on_answer_machine boolean     NOT NULL,
    session_parameters       text        NOT NULL,
    metadata                 text,
    state                    text        NOT NULL,
    session_id               text,
    session_start_time       timestamptz,
    error_status             integer,
    error_message            text,
    created_at               timestamptz NOT NULL,
    updated_at               timestamptz NOT NULL
);

CREATE INDEX calls_newest ON calls (created_at DESC, id DESC);
CREATE INDEX calls_by_agent ON calls (agent_id, created_at DESC);

CREATE TABLE idempotency_keys (
    key             text        PRIMARY KEY,
    request_hash    text        NOT NULL,
    response_status integer,
    response_body   text,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL
);

CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
