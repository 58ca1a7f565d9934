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
//! do not need anyway).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::callback::Callback;
use crate::domain::time::{from_micros, to_micros};

const SPOOLED: &str = "jsonl";
const WRITING: &str = "tmp";
/// A spool file that could not be read back: kept aside, never deleted, for an operator.
const DAMAGED: &str = "damaged";
/// Where callbacks that the database refused on replay are kept for an operator.
const REFUSED_DIR: &str = "refused";

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
            conversation_uuid: cb.conversation_uuid.clone(),
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

impl From<Record> for Callback {
    fn from(record: Record) -> Self {
        Self {
            conversation_uuid: record.conversation_uuid,
            status: record.status,
            occurred_at: from_micros(record.occurred_at_us),
            received_at: from_micros(record.received_at_us),
            agent_id: record.agent_id,
            to: record.to,
            call_id: record.call_id,
            payload: record.payload,
        }
    }
}

/// A spool file waiting for replay.
#[derive(Debug)]
pub struct SpoolFile {
    path: PathBuf,
}

pub struct Spool {
    dir: PathBuf,
    /// Callbacks on disk awaiting replay.
    pending: AtomicUsize,
}

impl Spool {
    /// Opens (creating) the spool directory. Half-written files were never acknowledged and
    /// are removed; finished ones are counted for replay.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let spool = Self {
            dir: dir.to_owned(),
            pending: AtomicUsize::new(0),
        };
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == WRITING) {
                fs::remove_file(&path)?;
            }
        }
        let mut pending = 0;
        for file in spool.files()? {
            match spool.read(&file) {
                Ok(callbacks) => pending += callbacks.len(),
                Err(err) if err.kind() == io::ErrorKind::InvalidData => {
                    spool.set_aside(file, &err)?
                }
                Err(err) => return Err(err),
            }
        }
        if pending > 0 {
            tracing::warn!(pending, spool = %dir.display(), "spooled callbacks found; replaying them");
        }
        spool.set_pending(pending);
        Ok(spool)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Callbacks waiting for replay.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    fn set_pending(&self, pending: usize) {
        self.pending.store(pending, Ordering::Relaxed);
        metrics::gauge!("callhook_spool_pending_callbacks").set(pending as f64);
    }

    fn add_pending(&self, added: isize) {
        let now = self
            .pending
            .load(Ordering::Relaxed)
            .saturating_add_signed(added);
        self.set_pending(now);
    }

    /// Writes `callbacks` durably; returns once they are on disk.
    pub async fn put(&self, callbacks: &[Callback]) -> io::Result<()> {
        let mut lines = Vec::new();
        for cb in callbacks {
            serde_json::to_writer(&mut lines, &Record::from(cb))?;
            lines.push(b'\n');
        }
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || write_durably(&dir, &lines))
            .await
            .map_err(io::Error::other)??;
        self.add_pending(callbacks.len() as isize);
        Ok(())
    }

    /// The spooled files, oldest first.
    pub fn files(&self) -> io::Result<Vec<SpoolFile>> {
        let mut paths: Vec<PathBuf> = fs::read_dir(&self.dir)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == SPOOLED))
            .collect();
        paths.sort();
        Ok(paths.into_iter().map(|path| SpoolFile { path }).collect())
    }

    /// The callbacks of one spool file. A file that vanished (another replica sharing the
    /// directory replayed it) reads as empty.
    pub fn read(&self, file: &SpoolFile) -> io::Result<Vec<Callback>> {
        let handle = match File::open(&file.path) {
            Ok(handle) => handle,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let mut callbacks = Vec::new();
        for line in BufReader::new(handle).lines() {
            let record: Record = serde_json::from_str(&line?).map_err(|err| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {err}", file.path.display()),
                )
            })?;
            callbacks.push(record.into());
        }
        Ok(callbacks)
    }

    /// Renames a file that cannot be read back to `*.damaged`, so that replay moves on and
    /// nothing is deleted.
    pub fn set_aside(&self, file: SpoolFile, err: &io::Error) -> io::Result<()> {
        tracing::error!(error = %err, "a spool file cannot be read back; renamed to *.{DAMAGED}");
        metrics::counter!("callhook_spool_damaged_files_total").increment(1);
        fs::rename(&file.path, file.path.with_extension(DAMAGED))
    }

    /// Forgets a replayed file of `count` callbacks.
    pub fn remove(&self, file: SpoolFile, count: usize) -> io::Result<()> {
        match fs::remove_file(&file.path) {
            Ok(()) => self.add_pending(-(count as isize)),
            // Another replica sharing the directory replayed it first.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        Ok(())
    }

    /// Keeps callbacks that the database refused under `refused/`, for an operator to read.
    pub fn keep_refused(&self, callbacks: &[Callback]) -> io::Result<()> {
        let dir = self.dir.join(REFUSED_DIR);
        fs::create_dir_all(&dir)?;
        let mut lines = Vec::new();
        for cb in callbacks {
            serde_json::to_writer(&mut lines, &Record::from(cb))?;
            lines.push(b'\n');
        }
        write_durably(&dir, &lines)
    }
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
            conversation_uuid: "CON-spool".into(),
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
        let batch = vec![callback("busy"), callback("timeout")];
        spool.put(&batch).await.unwrap();
        spool.put(&[callback("failed")]).await.unwrap();
        assert_eq!(spool.pending(), 3);

        let reopened = Spool::open(dir.path()).unwrap();
        assert_eq!(reopened.pending(), 3);
        let files = reopened.files().unwrap();
        assert_eq!(files.len(), 2);
        let first = reopened.read(&files[0]).unwrap();
        assert_eq!(first, batch, "oldest file first, every field kept");

        for file in reopened.files().unwrap() {
            let count = reopened.read(&file).unwrap().len();
            reopened.remove(file, count).unwrap();
        }
        assert_eq!(reopened.pending(), 0);
        assert!(reopened.files().unwrap().is_empty());
    }

    #[test]
    fn half_written_files_are_dropped_on_open() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("0193.tmp"), b"{\"conversation_uu").unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.pending(), 0);
        assert!(!dir.path().join("0193.tmp").exists());
    }

    #[test]
    fn a_damaged_file_is_set_aside_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("0193.jsonl"), b"not json\n").unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.pending(), 0);
        assert!(spool.files().unwrap().is_empty());
        assert_eq!(
            fs::read(dir.path().join("0193.damaged")).unwrap(),
            b"not json\n"
        );
    }
}
