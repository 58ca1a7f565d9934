-- Every placed call's final answer (`result`, `result_source`, `result_at`), kept on the call
-- and set by the statements that decide it: the answer to make-call, the ingest batch that
-- stores a callback for the call, or the inference once the grace window has passed.
-- result_status / result_occurred_at / result_received_at: the callback that gave the result,
-- so that a later one replaces it by the same ordering as outcomes. previous_result_source:
-- set by the ingest update from the row it replaced and returned by it. initiated_at: when AI
-- Studio accepted the call, the start of its grace window. status_url: the per-call status URL
-- given to AI Studio.

ALTER TABLE calls ADD COLUMN result TEXT;
ALTER TABLE calls ADD COLUMN result_source TEXT;
ALTER TABLE calls ADD COLUMN result_at INTEGER;
ALTER TABLE calls ADD COLUMN result_status TEXT;
ALTER TABLE calls ADD COLUMN result_occurred_at INTEGER;
ALTER TABLE calls ADD COLUMN result_received_at INTEGER;
ALTER TABLE calls ADD COLUMN previous_result_source TEXT;
ALTER TABLE calls ADD COLUMN campaign_id TEXT;
ALTER TABLE calls ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE calls ADD COLUMN initiated_at INTEGER;
ALTER TABLE calls ADD COLUMN status_url TEXT;

UPDATE calls SET initiated_at = updated_at WHERE state = 'initiated';
UPDATE calls SET result = 'not_placed', result_source = 'upstream', result_at = updated_at
WHERE state IN ('rejected', 'failed');
UPDATE calls SET result = 'unknown', result_source = 'upstream', result_at = updated_at
WHERE state = 'unknown';
UPDATE calls SET result = CASE WHEN o.status IN ('answered', 'completed') THEN 'answered' ELSE o.status END,
       result_source = 'callback', result_at = o.status_received_at, result_status = o.status,
       result_occurred_at = o.occurred_at, result_received_at = o.status_received_at
FROM (SELECT call_id, status, occurred_at, status_received_at,
             row_number() OVER (PARTITION BY call_id ORDER BY occurred_at DESC, status_received_at DESC) AS r
      FROM outcomes WHERE call_id IS NOT NULL) AS o
WHERE o.call_id = calls.id AND o.r = 1;

CREATE INDEX calls_awaiting_result ON calls (initiated_at)
    WHERE state = 'initiated' AND result IS NULL;
CREATE INDEX calls_by_result ON calls (result, created_at DESC, id DESC);
CREATE INDEX calls_by_campaign ON calls (campaign_id, created_at DESC, id DESC)
    WHERE campaign_id IS NOT NULL;
