-- The headers of the first answer to an Idempotency-Key (Location, Retry-After), kept with its
-- status and body so that a replay is the whole answer, not rebuilt from the body.

ALTER TABLE idempotency_keys ADD COLUMN response_headers text;
