"""SQLite's own one-transaction-per-callback rate on callhook's schema (WAL, synchronous=FULL,
as callhook opens it): store the event once per key, fold it into its outcome, commit; one
writer, since SQLite has one. Prints callbacks per second.

    python3 scripts/bench/sqlite_reference.py DATABASE_FILE SECONDS
"""
import sqlite3
import sys
import time

path, seconds = sys.argv[1], float(sys.argv[2])
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=FULL")
occurred = 1764571245475000  # 2026-12-01T06:40:45.475Z in microseconds
done, started = 0, time.monotonic()
while time.monotonic() - started < seconds:
    conversation = f"REF-{done}"
    now = int(time.time() * 1_000_000)
    payload = f'{{"agent_id":"agent-1","to":"972540000001","conversation_uuid":"{conversation}","status":"busy","timestamp":"2026-12-01T06:40:45.475Z"}}'
    db.execute("BEGIN IMMEDIATE")
    db.execute(
        "INSERT INTO callback_events (conversation_uuid, status, occurred_at, received_at, agent_id, destination, payload) "
        "VALUES (?, 'busy', ?, ?, 'agent-1', '972540000001', ?) "
        "ON CONFLICT (conversation_uuid, status, occurred_at) DO NOTHING",
        (conversation, occurred, now, payload),
    )
    db.execute(
        "INSERT INTO outcomes AS o (conversation_uuid, status, agent_id, destination, occurred_at, status_received_at, "
        "event_count, first_received_at, last_received_at) VALUES (?, 'busy', 'agent-1', '972540000001', ?, ?, 1, ?, ?) "
        "ON CONFLICT (conversation_uuid) DO UPDATE SET event_count = o.event_count + 1, "
        "occurred_at = max(o.occurred_at, excluded.occurred_at), last_received_at = max(o.last_received_at, excluded.last_received_at)",
        (conversation, occurred, now, now, now),
    )
    db.execute("COMMIT")
    done += 1
print(f"{done / (time.monotonic() - started):.0f}")
