-- Outcomes counted per UTC hour and per UTC minute of their occurred_at (`minutes`: 60 or 1),
-- status and agent, so that GET /v1/stats sums whole hours, then whole minutes, and counts
-- only the partial minutes at either end of its window row by row. The batch that folds callbacks into outcomes
-- moves each outcome's count in the same transaction. `agent` is '=' followed by the agent
-- id, or '' for outcomes without one, so that the key is never null. The table is not keyed
-- by conversation_uuid: on Citus it stays on the coordinator, undistributed.
--
-- previous_*: the key an outcome was counted under before its latest update, set by that
-- update and returned by it, so that the count moves from exactly the row it replaced.

CREATE TABLE outcome_counts (
    minutes integer     NOT NULL,
    bucket  timestamptz NOT NULL,
    status  text        COLLATE "C" NOT NULL,
    agent   text        COLLATE "C" NOT NULL,
    count   bigint      NOT NULL,
    PRIMARY KEY (minutes, bucket, status, agent)
);

ALTER TABLE outcomes
    ADD COLUMN previous_status      text,
    ADD COLUMN previous_agent_id    text,
    ADD COLUMN previous_occurred_at timestamptz;

INSERT INTO outcome_counts (minutes, bucket, status, agent, count)
SELECT w.minutes, date_bin(make_interval(mins => w.minutes), occurred_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
       status, coalesce('=' || agent_id, ''), count(*)
FROM outcomes CROSS JOIN (VALUES (60), (1)) AS w(minutes)
GROUP BY 1, 2, 3, 4;
