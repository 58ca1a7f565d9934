-- Status callbacks and the outcomes folded from them (conversation_uuid in byte order, as in
-- SQLite, so that both backends page alike). Both tables stay distributable by
-- conversation_uuid on Citus: every key includes it, and no triggers maintain outcomes.

CREATE TABLE callback_events (
    id                bigint GENERATED ALWAYS AS IDENTITY,
    conversation_uuid text        COLLATE "C" NOT NULL,
    status            text        NOT NULL,
    occurred_at       timestamptz NOT NULL,
    received_at       timestamptz NOT NULL,
    agent_id          text,
    destination       text,
    call_id           uuid,
    payload           text        NOT NULL,
    PRIMARY KEY (conversation_uuid, id),
    UNIQUE (conversation_uuid, status, occurred_at)
);

CREATE TABLE outcomes (
    conversation_uuid  text        COLLATE "C" NOT NULL PRIMARY KEY,
    status             text        NOT NULL,
    agent_id           text,
    destination        text,
    occurred_at        timestamptz NOT NULL,
    -- received_at of the event that gave `status`: breaks ties on occurred_at
    status_received_at timestamptz NOT NULL,
    call_id            uuid,
    event_count        bigint      NOT NULL,
    first_received_at  timestamptz NOT NULL,
    last_received_at   timestamptz NOT NULL
);

CREATE INDEX outcomes_newest ON outcomes (occurred_at DESC, conversation_uuid DESC);
CREATE INDEX outcomes_by_agent ON outcomes (agent_id, occurred_at DESC);
CREATE INDEX outcomes_by_call ON outcomes (call_id) WHERE call_id IS NOT NULL;
