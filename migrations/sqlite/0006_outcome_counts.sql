-- Outcomes counted per UTC hour of their occurred_at (microseconds, like every instant here),
-- status and agent, so that GET /v1/stats sums whole hours instead of counting outcomes. The
-- batch that folds callbacks into outcomes moves each outcome's count in the same
-- transaction. `agent` is '=' followed by the agent id, or '' for outcomes without one.
--
-- previous_*: the key an outcome was counted under before its latest update, set by that
-- update and returned by it, so that the count moves from exactly the row it replaced.

CREATE TABLE outcome_counts (
    hour   INTEGER NOT NULL,
    status TEXT    NOT NULL,
    agent  TEXT    NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (hour, status, agent)
) WITHOUT ROWID;

ALTER TABLE outcomes ADD COLUMN previous_status TEXT;
ALTER TABLE outcomes ADD COLUMN previous_agent_id TEXT;
ALTER TABLE outcomes ADD COLUMN previous_occurred_at INTEGER;

INSERT INTO outcome_counts (hour, status, agent, count)
SELECT occurred_at - (((occurred_at % 3600000000) + 3600000000) % 3600000000), status,
       coalesce('=' || agent_id, ''), count(*)
FROM outcomes
GROUP BY 1, 2, 3;
