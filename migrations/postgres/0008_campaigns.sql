-- Campaigns: lists of destinations dialled at a pace, with redials and a calling window.
-- These tables stay on one node (on Citus, the coordinator): the dispatcher locks an agent's
-- pace row and then that agent's due destinations, which needs them in one place.
--
-- campaigns.state: scheduled, running, paused, completed, cancelled. status_base: where the
-- per-call status URLs of the campaign's calls point. next_index: the index the next added
-- destination gets. call_window: the calling window as JSON (WINDOW is a keyword).
CREATE TABLE campaigns (
    id                       uuid             PRIMARY KEY,
    name                     text,
    agent_id                 text             NOT NULL,
    state                    text             NOT NULL,
    session_parameters       text             NOT NULL,
    hangup_on_answer_machine boolean          NOT NULL,
    calls_per_second         double precision NOT NULL,
    max_attempts             integer          NOT NULL,
    redial_on                text             NOT NULL,
    redial_after_secs        bigint           NOT NULL,
    call_window              text,
    start_at                 timestamptz      NOT NULL,
    status_base              text             NOT NULL,
    next_index               bigint           NOT NULL DEFAULT 0,
    error_status             integer,
    error_message            text,
    created_at               timestamptz      NOT NULL,
    updated_at               timestamptz      NOT NULL,
    completed_at             timestamptz
);

CREATE INDEX campaigns_newest ON campaigns (created_at DESC, id DESC);
CREATE INDEX campaigns_by_state ON campaigns (state, created_at DESC, id DESC);

-- One row per destination. state: pending (waiting for its next attempt, due at
-- next_attempt_at), claimed (an attempt is recorded and its request to AI Studio under way
-- since claimed_at), dialing (AI Studio accepted it; waiting for its result), done (result
-- set). call_id: the current attempt's call, kept while an attempt refused by a rate limit or
-- an outage waits to be sent again. upstream_failures: the current attempt's 5xx answers.
CREATE TABLE campaign_destinations (
    campaign_id        uuid        NOT NULL REFERENCES campaigns (id),
    idx                bigint      NOT NULL,
    destination        text        NOT NULL,
    session_parameters text        NOT NULL,
    metadata           text,
    state              text        NOT NULL,
    result             text,
    attempts           integer     NOT NULL DEFAULT 0,
    upstream_failures  integer     NOT NULL DEFAULT 0,
    next_attempt_at    timestamptz,
    call_id            uuid,
    claimed_at         timestamptz,
    updated_at         timestamptz NOT NULL,
    PRIMARY KEY (campaign_id, idx)
);

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
    last_slot  timestamptz,
    hold_until timestamptz,
    slow       double precision NOT NULL DEFAULT 1
);

ALTER TABLE calls ADD COLUMN destination_index bigint;
CREATE INDEX calls_by_destination ON calls (campaign_id, destination_index, attempt)
    WHERE campaign_id IS NOT NULL;
