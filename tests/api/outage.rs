//! Database outages: callbacks that arrive while the database cannot take them are spooled
//! to local disk, acknowledged, and stored once it is back, also across a restart.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Connection;

use crate::backend_tests;
use crate::helpers::*;

/// Replay retries at most every 10 s, and an outage of SQLite lasts its 10 s busy timeout.
const DEADLINE: Duration = Duration::from_secs(40);

backend_tests!(
    callbacks_during_an_outage_are_spooled_and_replayed,
    spooled_callbacks_survive_a_restart,
    callbacks_the_database_refuses_are_not_spooled,
    without_a_spool_an_outage_is_an_error,
    a_database_that_hangs_is_given_up_on,
);

/// Makes a test database unavailable to callhook the way real outages do, and back.
pub enum Outage {
    /// Connections refused and open ones terminated, as in a restart or failover.
    Postgres {
        admin_url: String,
        database: String,
    },
    /// Another connection holds a lock for as long as it likes: on PostgreSQL, say, a
    /// migration holding a table lock; on SQLite, the write lock past the busy timeout.
    PostgresLock(sqlx::PgConnection),
    SqliteLock(sqlx::SqliteConnection),
}

impl Outage {
    /// The database hangs: writes wait on a lock that is not released.
    pub async fn lock(database_url: &str) -> Self {
        if database_url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(database_url).await.unwrap();
            sqlx::raw_sql("BEGIN EXCLUSIVE")
                .execute(&mut conn)
                .await
                .unwrap();
            return Self::SqliteLock(conn);
        }
        let mut conn = sqlx::PgConnection::connect(database_url).await.unwrap();
        sqlx::raw_sql("BEGIN; LOCK TABLE callback_events IN ACCESS EXCLUSIVE MODE")
            .execute(&mut conn)
            .await
            .unwrap();
        Self::PostgresLock(conn)
    }

    /// The database goes away: on SQLite, whose file cannot go away, it is locked instead.
    pub async fn begin(database_url: &str) -> Self {
        if database_url.starts_with("sqlite:") {
            return Self::lock(database_url).await;
        }
        let admin_url = std::env::var("CALLHOOK_TEST_DATABASE_URL").unwrap();
        let database = database_url.rsplit_once('/').unwrap().1.to_owned();
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::raw_sql(&format!(
            "ALTER DATABASE {database} ALLOW_CONNECTIONS false"
        ))
        .execute(&mut admin)
        .await
        .unwrap();
        // A connection that was starting as connections were refused (the service's
        // background loops connect every fraction of a second) may still come up: end
        // whatever appears until none has for a while.
        let mut quiet = 0;
        while quiet < 5 {
            let ended: Vec<(bool,)> = sqlx::query_as(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            )
            .bind(&database)
            .fetch_all(&mut admin)
            .await
            .unwrap();
            quiet = if ended.is_empty() { quiet + 1 } else { 0 };
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Self::Postgres {
            admin_url,
            database,
        }
    }

    pub async fn end(self) {
        match self {
            Self::PostgresLock(mut conn) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
            }
            Self::SqliteLock(mut conn) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
            }
            Self::Postgres {
                admin_url,
                database,
            } => {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
                sqlx::raw_sql(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
            }
        }
    }
}

fn spooled_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|ext| ext == "jsonl")
        })
        .count()
}

/// Reads an outcome until it has `events` events: replay runs in the background.
async fn await_outcome(app: &TestApp, conversation_uuid: &str, events: i64) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let response = app.get(&format!("/v1/outcomes/{conversation_uuid}")).await;
        if response.status() == 200 {
            let outcome: Value = response.json().await.unwrap();
            if outcome["event_count"] == events || Instant::now() > deadline {
                return outcome;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{conversation_uuid} never reached {events} events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Settings of an app on `database_url` spooling into `spool`.
fn flags(database_url: &str, spool: &Path) -> Vec<(String, String)> {
    let mut flags = default_flags();
    flags.retain(|(k, _)| k != "spool-dir");
    flags.push(("database-url".into(), database_url.to_owned()));
    flags.push(("spool-dir".into(), spool.display().to_string()));
    flags
}

/// Waits until replay has emptied the spool directory.
async fn await_empty_spool(dir: &Path) {
    let deadline = Instant::now() + DEADLINE;
    while spooled_files(dir) > 0 {
        assert!(Instant::now() < deadline, "the spool never drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An app spooling into a directory of its own, with one callback stored before the outage.
struct Spooling {
    app: TestApp,
    database_url: String,
    spool: tempfile::TempDir,
    _database_dir: Option<tempfile::TempDir>,
}

async fn spooling_app(backend: Backend) -> Spooling {
    let (database_url, database_dir) = fresh_database(backend).await;
    let spool = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_on(flags(&database_url, spool.path())).await;
    let stored = app
        .post_status(&callback("CON-outage", "busy", "2022-05-31T06:40:45.475Z"))
        .await;
    assert_eq!(stored.status(), 204);
    Spooling {
        app,
        database_url,
        spool,
        _database_dir: database_dir,
    }
}

/// Posts, during an outage, a repeat of the stored event and two new ones, concurrently.
async fn post_during_outage(app: &TestApp) {
    let repeat = callback("CON-outage", "busy", "2022-05-31T06:40:45.475Z");
    let latest = callback("CON-outage", "failed", "2022-05-31T06:40:47.000Z");
    let middle = callback("CON-outage", "timeout", "2022-05-31T06:40:46.000Z");
    let answers = tokio::join!(
        app.post_status(&repeat),
        app.post_status(&latest),
        app.post_status(&middle),
    );
    for answer in [answers.0, answers.1, answers.2] {
        assert_eq!(answer.status(), 204, "a spooled callback is acknowledged");
    }
}

async fn callbacks_during_an_outage_are_spooled_and_replayed(backend: Backend) {
    let Spooling {
        app,
        database_url,
        spool,
        _database_dir,
    } = spooling_app(backend).await;
    let outage = Outage::begin(&database_url).await;
    post_during_outage(&app).await;
    assert!(spooled_files(spool.path()) > 0, "the callbacks are on disk");
    outage.end().await;

    let outcome = await_outcome(&app, "CON-outage", 3).await;
    assert_eq!(
        outcome["event_count"], 3,
        "the repeat was stored once: {outcome}"
    );
    assert_eq!(outcome["status"], "failed", "the latest occurred_at wins");
    assert_eq!(outcome["occurred_at"], "2022-05-31T06:40:47.000Z");
    await_empty_spool(spool.path()).await;
}

async fn spooled_callbacks_survive_a_restart(backend: Backend) {
    let Spooling {
        app,
        database_url,
        spool,
        _database_dir,
    } = spooling_app(backend).await;
    let outage = Outage::begin(&database_url).await;
    post_during_outage(&app).await;
    // The process goes away while the database is still down; only the disk remembers. Its
    // files move to a directory of their own, so that only the new process can replay them.
    app.shutdown().await;
    let moved = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(spool.path()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::rename(&path, moved.path().join(path.file_name().unwrap())).unwrap();
    }
    assert!(spooled_files(moved.path()) > 0);
    outage.end().await;

    let app = TestApp::spawn_on(flags(&database_url, moved.path())).await;
    let outcome = await_outcome(&app, "CON-outage", 3).await;
    assert_eq!(outcome["event_count"], 3, "{outcome}");
    assert_eq!(outcome["status"], "failed");
    let events: Vec<&str> = outcome["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["busy", "timeout", "failed"], "oldest first");
    await_empty_spool(moved.path()).await;
}

/// A callback the database itself refuses would be refused on replay too: it is answered
/// 500 rather than acknowledged into a spool that can never drain.
async fn callbacks_the_database_refuses_are_not_spooled(backend: Backend) {
    let Spooling {
        app,
        database_url: _,
        spool,
        _database_dir,
    } = spooling_app(backend).await;
    execute_sql(
        &app,
        match backend {
            Backend::Sqlite => {
                "CREATE TRIGGER injected_refusal BEFORE INSERT ON callback_events \
                 WHEN NEW.status = 'poison' BEGIN SELECT RAISE(ABORT, 'injected refusal'); END"
            }
            Backend::Postgres => {
                "ALTER TABLE callback_events ADD CONSTRAINT injected_refusal \
                 CHECK (status <> 'poison') NOT VALID"
            }
        },
    )
    .await;
    let poison = callback("CON-refused", "poison", "2022-05-31T06:40:45.475Z");
    let fine = callback("CON-fine", "busy", "2022-05-31T06:40:45.475Z");
    let (poison, fine) = tokio::join!(app.post_status(&poison), app.post_status(&fine));
    assert_problem(poison, 500).await;
    assert_eq!(fine.status(), 204, "a refused neighbour fails nothing else");
    assert_eq!(spooled_files(spool.path()), 0, "nothing was spooled");
    assert_eq!(
        app.get_json("/v1/outcomes/CON-fine").await["status"],
        "busy"
    );
    assert_eq!(app.get("/v1/outcomes/CON-refused").await.status(), 404);
}

/// `CALLHOOK_SPOOL_DIR=off`: nothing is acknowledged that is not committed.
async fn without_a_spool_an_outage_is_an_error(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let outage = Outage::begin(&app.database_url).await;
    let response = app
        .post_status(&callback(
            "CON-unspooled",
            "busy",
            "2022-05-31T06:40:45.475Z",
        ))
        .await;
    assert_problem(response, 500).await;
    outage.end().await;
    assert_eq!(app.get("/v1/outcomes/CON-unspooled").await.status(), 404);
}

/// A database that neither answers nor fails (a lock held by someone else, a network
/// partition) is given up on after the write deadline: the callbacks are spooled and
/// answered, not left waiting until the request times out.
async fn a_database_that_hangs_is_given_up_on(backend: Backend) {
    let Spooling {
        app,
        database_url,
        spool,
        _database_dir,
    } = spooling_app(backend).await;
    let hang = Outage::lock(&database_url).await;
    post_during_outage(&app).await;
    assert!(spooled_files(spool.path()) > 0);
    hang.end().await;
    let outcome = await_outcome(&app, "CON-outage", 3).await;
    assert_eq!(outcome["event_count"], 3, "{outcome}");
    await_empty_spool(spool.path()).await;
}
