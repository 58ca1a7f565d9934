-- Status callbacks refused (400, 413, 422) after their secret or signature was accepted,
-- kept for inspection; the application trims the table to CALLHOOK_REJECTED_MAX rows.

CREATE TABLE rejected_callbacks (
    id           uuid        PRIMARY KEY,
    received_at  timestamptz NOT NULL,
    status       integer     NOT NULL,
    reason       text        NOT NULL,
    content_type text,
    body         bytea       NOT NULL
);

CREATE INDEX rejected_callbacks_newest ON rejected_callbacks (received_at DESC, id DESC);
