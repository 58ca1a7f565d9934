-- Status callbacks refused (400, 413, 422) after their secret or signature was accepted,
-- kept for inspection; the application trims the table to CALLHOOK_REJECTED_MAX rows.

CREATE TABLE rejected_callbacks (
    id           TEXT    NOT NULL PRIMARY KEY,
    received_at  INTEGER NOT NULL,
    status       INTEGER NOT NULL,
    reason       TEXT    NOT NULL,
    content_type TEXT,
    body         BLOB    NOT NULL
) WITHOUT ROWID;

CREATE INDEX rejected_callbacks_newest ON rejected_callbacks (received_at DESC, id DESC);
