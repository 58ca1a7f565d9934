-- Outcomes counted per UTC hour and per UTC minute of their occurred_at (`minutes`: 60 or 1;
-- instants in microseconds, like every instant here), status and agent, so that GET /v1/stats
-- sums whole hours, then whole minutes, and counts only the partial minutes at either end of
-- its window row by row. The
-- batch that folds callbacks into outcomes moves each outcome's count in the same
-- transaction. `agent` is '=' followed by the agent id, or '' for outcomes without one.
--
-- previous_*: the key an outcome was counted under before its latest update, set by that
-- update and returned by it, so that the count moves from exactly the row it replaced.

CREATE TABLE outcome_counts (
    minutes INTEGER NOT NULL,
    bucket  INTEGER NOT NULL,
    status  TEXT    NOT NULL,
    agent   TEXT    NOT NULL,
    count   INTEGER NOT NULL,
    PRIMARY KEY (minutes, bucket, status, agent)
) WITHOUT ROWID;

ALTER TABLE outcomes ADD COLUMN previous_status TEXT;
ALTER TABLE outcomes ADD COLUMN previous_agent_id TEXT;
ALTER TABLE outcomes ADD COLUMN previous_occurred_at INTEGER;

INSERT INTO outcome_counts (minutes, bucket, status, agent, count)
SELECT w.minutes,
       occurred_at - (((occurred_at % (w.minutes * 60000000)) + w.minutes * 60000000) % (w.minutes * 60000000)),
       status, coalesce('=' || agent_id, ''), count(*)
FROM outcomes CROSS JOIN (SELECT 60 AS minutes UNION ALL SELECT 1) AS w
GROUP BY 1, 2, 3, 4;
