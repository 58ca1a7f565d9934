-- Indexes that serve list pages in their own order (newest first, keyset on
-- (occurred_at, conversation_uuid)), so that a filtered page reads about one page of rows
-- instead of sorting every match; and one that lets the stats window count without reading
-- the table.

DROP INDEX outcomes_by_agent;
CREATE INDEX outcomes_by_agent ON outcomes (agent_id, occurred_at DESC, conversation_uuid DESC);
CREATE INDEX outcomes_by_status ON outcomes (status, occurred_at DESC, conversation_uuid DESC);
CREATE INDEX outcomes_window ON outcomes (occurred_at, status);
CREATE INDEX calls_by_agent_page ON calls (agent_id, created_at DESC, id DESC);
DROP INDEX calls_by_agent;
