-- Campaigns: lists of destinations dialled at a pace, with redials and a calling window.
--
-- campaigns.state: scheduled, running, paused, completed, cancelled. status_base: where the
-- per-call status URLs of the campaign's calls point. next_index: the index the next added
-- destination gets. call_window: the calling window as JSON (named as on PostgreSQL, where WINDOW is a keyword).
CREATE TABLE campaigns (
    id                       TEXT             NOT NULL PRIMARY KEY,
    name                     text,
    agent_id                 text             NOT NULL,
    state                    text             NOT NULL,
    session_parameters       text             NOT NULL,
    hangup_on_answer_machine INTEGER          NOT NULL,
    calls_per_second         REAL             NOT NULL,
    max_attempts             integer          NOT NULL,
    redial_on                text             NOT NULL,
    redial_after_secs        INTEGER          NOT NULL,
    call_window              text,
    start_at                 INTEGER          NOT NULL,
    status_base              text             NOT NULL,
    next_index               INTEGER          NOT NULL DEFAULT 0,
    error_status             integer,
    error_message            text,
    created_at               INTEGER          NOT NULL,
    updated_at               INTEGER          NOT NULL,
    completed_at             INTEGER
);

CREATE INDEX campaigns_newest ON campaigns (created_at DESC, id DESC);
CREATE INDEX campaigns_by_state ON campaigns (state, created_at DESC, id DESC);

-- One row per destination. state: pending (waiting for its next attempt, due at
-- next_attempt_at), claimed (an attempt is recorded and its request to AI Studio under way
-- since claimed_at), dialing (AI Studio accepted it; waiting for its result), done (result
-- set). call_id: the current attempt's call, kept while an attempt refused by a rate limit or
-- an outage waits to be sent again. upstream_failures: the current attempt's 5xx answers.
CREATE TABLE campaign_destinations (
    campaign_id        TEXT        NOT NULL REFERENCES campaigns (id),
    idx                INTEGER      NOT NULL,
    destination        text        NOT NULL,
    session_parameters text        NOT NULL,
    metadata           text,
    state              text        NOT NULL,
    result             text,
    attempts           integer     NOT NULL DEFAULT 0,
    upstream_failures  integer     NOT NULL DEFAULT 0,
    next_attempt_at    INTEGER,
    call_id            TEXT,
    claimed_at         INTEGER,
    updated_at         INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, idx)
) WITHOUT ROWID;

CREATE INDEX campaign_destinations_due ON campaign_destinations (campaign_id, next_attempt_at, idx)
    WHERE state = 'pending';
-- Attempts already begun (redials, attempts to be sent again) are dialled first once due.
CREATE INDEX campaign_destinations_begun ON campaign_destinations (campaign_id, next_attempt_at, idx)
    WHERE state = 'pending' AND attempts > 0;
CREATE INDEX campaign_destinations_active ON campaign_destinations (state, claimed_at);
CREATE INDEX campaign_destinations_counts ON campaign_destinations (campaign_id, state, result, attempts);

-- Each agent's pace, shared by every campaign and replica: when its last request was sent
-- (its slot), until when AI Studio asked it to wait (Retry-After of a 429), and how much its
-- spacing is stretched since AI Studio last refused it for its rate (1: not at all; doubled by
-- each 429, easing back with each accepted call).
CREATE TABLE agent_pace (
    agent_id   text             PRIMARY KEY,
    last_slot  INTEGER,
    hold_until INTEGER,
    slow       REAL NOT NULL DEFAULT 1
) WITHOUT ROWID;

ALTER TABLE calls ADD COLUMN destination_index INTEGER;
CREATE INDEX calls_by_destination ON calls (campaign_id, destination_index, attempt)
    WHERE campaign_id IS NOT NULL;
