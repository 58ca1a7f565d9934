//! A local, durable holding area for callbacks that the database could not take.
//!
//! AI Studio does not redeliver a callback, so when the database is unreachable a callback
//! is written here instead, and the platform gets its 2xx only after the file is on disk
//! (written, fsynced, renamed into place, directory fsynced). A replayer moves spooled
//! callbacks into the database once it answers again; storing is idempotent, so a replay
//! that is interrupted and repeated stores nothing twice.
//!
//! One file per spooled batch, one JSON line per callback. Files are named by a UUIDv7, so
//! listing them in name order replays them roughly in arrival order (which the outcome rules
//! do not need anyway). The directory is the only record of what waits: nothing is counted
//! in memory, so concurrent writers and the replayer cannot disagree about it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::DateTime;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::callback::Callback;
use crate::domain::conversation::ConversationUuid;
use crate::domain::time::to_micros;

const SPOOLED: &str = "jsonl";
const WRITING: &str = "tmp";
/// A spool file that could not be read back: kept aside, never deleted, for an operator.
const DAMAGED: &str = "damaged";
/// Where callbacks that the database refused on replay are kept for an operator.
const REFUSED_DIR: &str = "refused";
/// Half-written files older than this were abandoned by a process that died mid-write.
const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

/// One spooled callback. Times are microseconds since the epoch, the stores' own precision.
#[derive(Serialize, Deserialize)]
struct Record {
    conversation_uuid: String,
    status: String,
    occurred_at_us: i64,
    received_at_us: i64,
    agent_id: Option<String>,
    to: Option<String>,
    call_id: Option<Uuid>,
    payload: String,
}

impl From<&Callback> for Record {
    fn from(cb: &Callback) -> Self {
        Self {
            conversation_uuid: cb.conversation_uuid.to_string(),
            status: cb.status.clone(),
            occurred_at_us: to_micros(&cb.occurred_at),
            received_at_us: to_micros(&cb.received_at),
            agent_id: cb.agent_id.clone(),
            to: cb.to.clone(),
            call_id: cb.call_id,
            payload: cb.payload.clone(),
        }
    }
}

impl TryFrom<Record> for Callback {
    type Error = &'static str;

    fn try_from(record: Record) -> Result<Self, Self::Error> {
        let time = |us| DateTime::from_timestamp_micros(us).ok_or("a time out of range");
        Ok(Self {
            conversation_uuid: ConversationUuid::parse(&record.conversation_uuid)
                .map_err(|_| "a conversation_uuid no callback can have")?,
            status: record.status,
            occurred_at: time(record.occurred_at_us)?,
            received_at: time(record.received_at_us)?,
            agent_id: record.agent_id,
            to: record.to,
            call_id: record.call_id,
            payload: record.payload,
        })
    }
}

fn invalid_data(path: &Path, reason: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {reason}", path.display()),
    )
}

/// A spool file waiting for replay.
#[derive(Debug)]
pub struct SpoolFile {
    path: PathBuf,
}

pub struct Spool {
    dir: PathBuf,
    /// Files that waited when the spool was opened: replayed before writers go back to the
    /// database.
    waiting_at_open: usize,
}

impl Spool {
    /// Opens (creating) the spool directory. Half-written files abandoned by a process that
    /// died mid-write were never acknowledged and are removed.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        // The directory's own entry must survive a crash too.
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
        File::open(parent.unwrap_or(Path::new(".")))?.sync_all()?;
        let abandoned = SystemTime::now() - ABANDONED_AFTER;
        let mut waiting = 0;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            match path.extension().and_then(|ext| ext.to_str()) {
                Some(WRITING) if entry.metadata()?.modified()? < abandoned => {
                    fs::remove_file(&path)?
                }
                Some(SPOOLED) => waiting += 1,
                _ => {}
            }
        }
        if waiting > 0 {
            tracing::warn!(files = waiting, spool = %dir.display(), "spooled callbacks found; replaying them");
        }
        metrics::gauge!("callhook_spool_files").set(waiting as f64);
        Ok(Self {
            dir: dir.to_owned(),
            waiting_at_open: waiting,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn waiting_at_open(&self) -> usize {
        self.waiting_at_open
    }

    /// Writes `callbacks` durably; returns once they are on disk.
    pub async fn put(&self, callbacks: &[Callback]) -> io::Result<()> {
        let lines = lines(callbacks)?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || write_durably(&dir, &lines))
            .await
            .map_err(io::Error::other)??;
        metrics::gauge!("callhook_spool_files").increment(1.0);
        Ok(())
    }

    /// The spooled files, oldest first.
    pub async fn files(&self) -> io::Result<Vec<SpoolFile>> {
        let mut entries = tokio::fs::read_dir(&self.dir).await?;
        let mut paths = Vec::new();
        while let Some(entry) = entries.next_entry().await? {
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == SPOOLED) {
                paths.push(path);
            }
        }
        paths.sort();
        metrics::gauge!("callhook_spool_files").set(paths.len() as f64);
        Ok(paths.into_iter().map(|path| SpoolFile { path }).collect())
    }

    /// The callbacks of one spool file; an error of kind `InvalidData` when it cannot be
    /// read back as written.
    pub async fn read(&self, file: &SpoolFile) -> io::Result<Vec<Callback>> {
        let text = tokio::fs::read_to_string(&file.path).await?;
        text.lines()
            .map(|line| {
                let record: Record =
                    serde_json::from_str(line).map_err(|err| invalid_data(&file.path, err))?;
                Callback::try_from(record).map_err(|err| invalid_data(&file.path, err))
            })
            .collect()
    }

    /// Renames a file that cannot be read back to `*.damaged`, so that replay moves on and
    /// nothing is deleted.
    pub async fn set_aside(&self, file: SpoolFile, err: &io::Error) -> io::Result<()> {
        tracing::error!(error = %err, "a spool file cannot be read back; renamed to *.{DAMAGED}");
        metrics::counter!("callhook_spool_damaged_files_total").increment(1);
        tokio::fs::rename(&file.path, file.path.with_extension(DAMAGED)).await
    }

    /// Forgets a replayed file.
    pub async fn remove(&self, file: SpoolFile) -> io::Result<()> {
        match tokio::fs::remove_file(&file.path).await {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    /// Keeps callbacks that the database refused under `refused/`, for an operator to read.
    pub async fn keep_refused(&self, callbacks: &[Callback]) -> io::Result<()> {
        let lines = lines(callbacks)?;
        let dir = self.dir.join(REFUSED_DIR);
        tokio::task::spawn_blocking(move || {
            fs::create_dir_all(&dir)?;
            write_durably(&dir, &lines)
        })
        .await
        .map_err(io::Error::other)?
    }
}

fn lines(callbacks: &[Callback]) -> io::Result<Vec<u8>> {
    let mut lines = Vec::new();
    for cb in callbacks {
        serde_json::to_writer(&mut lines, &Record::from(cb))?;
        lines.push(b'\n');
    }
    Ok(lines)
}

/// Writes a new file under `dir` so that it is either absent or complete after a crash.
fn write_durably(dir: &Path, contents: &[u8]) -> io::Result<()> {
    let name = Uuid::now_v7().simple().to_string();
    let writing = dir.join(format!("{name}.{WRITING}"));
    let done = dir.join(format!("{name}.{SPOOLED}"));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&writing)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&writing, &done)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::parse_timestamp;

    fn callback(status: &str) -> Callback {
        Callback {
            conversation_uuid: ConversationUuid::parse("CON-spool").unwrap(),
            status: status.into(),
            occurred_at: parse_timestamp("2022-05-31T06:40:45.475123Z").unwrap(),
            received_at: parse_timestamp("2026-11-25T10:00:00.000001Z").unwrap(),
            agent_id: Some("agent".into()),
            to: None,
            call_id: Some(Uuid::now_v7()),
            payload: "{\"status\":\"busy\",\"note\":\"\\u0000 kept\"}".into(),
        }
    }

    #[tokio::test]
    async fn spooled_callbacks_read_back_exactly_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.waiting_at_open(), 0);
        let batch = vec![callback("busy"), callback("timeout")];
        spool.put(&batch).await.unwrap();
        spool.put(&[callback("failed")]).await.unwrap();

        let reopened = Spool::open(dir.path()).unwrap();
        assert_eq!(
            reopened.waiting_at_open(),
            2,
            "what waits is replayed first"
        );
        let files = reopened.files().await.unwrap();
        assert_eq!(files.len(), 2);
        let first = reopened.read(&files[0]).await.unwrap();
        assert_eq!(first, batch, "oldest file first, every field kept");

        for file in reopened.files().await.unwrap() {
            reopened.remove(file).await.unwrap();
        }
        assert!(reopened.files().await.unwrap().is_empty());
    }

    #[test]
    fn only_abandoned_half_written_files_are_dropped_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("0190.tmp");
        fs::write(&old, b"{\"conversation_uu").unwrap();
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(SystemTime::now() - 2 * ABANDONED_AFTER)
            .unwrap();
        let fresh = dir.path().join("0193.tmp");
        fs::write(&fresh, b"{\"conversation_uu").unwrap();
        Spool::open(dir.path()).unwrap();
        assert!(!old.exists());
        assert!(
            fresh.exists(),
            "possibly another process's write in progress"
        );
    }

    #[tokio::test]
    async fn a_damaged_file_is_set_aside_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("0193.jsonl"), b"not json\n").unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let file = spool.files().await.unwrap().remove(0);
        let err = spool.read(&file).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        spool.set_aside(file, &err).await.unwrap();
        assert!(spool.files().await.unwrap().is_empty());
        assert_eq!(
            fs::read(dir.path().join("0193.damaged")).unwrap(),
            b"not json\n"
        );
    }
}
