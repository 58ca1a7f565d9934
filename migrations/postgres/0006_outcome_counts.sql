-- Outcomes counted per UTC hour of their occurred_at, status and agent, so that GET /v1/stats
-- sums whole hours instead of counting outcomes. The batch that folds callbacks into outcomes
-- moves each outcome's count in the same transaction. `agent` is '=' followed by the agent
-- id, or '' for outcomes without one, so that the key is never null. The table is not keyed
-- by conversation_uuid: on Citus it stays on the coordinator, undistributed.
--
-- previous_*: the key an outcome was counted under before its latest update, set by that
-- update and returned by it, so that the count moves from exactly the row it replaced.

CREATE TABLE outcome_counts (
    hour   timestamptz NOT NULL,
    status text        COLLATE "C" NOT NULL,
    agent  text        COLLATE "C" NOT NULL,
    count  bigint      NOT NULL,
    PRIMARY KEY (hour, status, agent)
);

ALTER TABLE outcomes
    ADD COLUMN previous_status      text,
    ADD COLUMN previous_agent_id    text,
    ADD COLUMN previous_occurred_at timestamptz;

INSERT INTO outcome_counts (hour, status, agent, count)
SELECT date_bin('1 hour', occurred_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'), status,
       coalesce('=' || agent_id, ''), count(*)
FROM outcomes
GROUP BY 1, 2, 3;
