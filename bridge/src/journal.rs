//! The fallback journal: every delivery answered with the fallback because the
//! FlowHandler could not be used is appended to a local file, one JSON line
//! each, so the business can replay it later (`flows-bridge replay`).
//!
//! The request path never waits on the disk: it hands the record to a bounded
//! queue (`try_send`) and moves on. A writer task appends what is queued, then
//! `fdatasync`s once per batch (group commit). Files rotate at a size and only
//! a bounded number are kept. The trade-offs (a crash can lose the last
//! unsynced batch; a full queue drops and counts) are in docs/journal.md.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tokio::sync::mpsc;

use crate::{metrics::Metrics, outcome::FallbackReason};

/// Records waiting for the writer; past this the hot path drops and counts.
const QUEUE: usize = 4096;

/// One line of the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// When the fallback was sent (RFC 3339, UTC).
    pub time: String,
    /// Why: `deadline`, `upstream_unavailable`, `upstream_error`, `invalid_reply`, `shed`.
    pub reason: String,
    pub delivery_id: String,
    /// The `X-Webhook-Id` header, when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
    /// The delivery exactly as Platica sent it (the verified body, as JSON).
    pub delivery: Json,
}

/// Where records go: the queue of a writer task.
#[derive(Clone)]
pub struct Journal {
    queue: mpsc::Sender<Record>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Clone)]
pub struct JournalConfig {
    pub path: PathBuf,
    /// Rotate when the current file reaches this size.
    pub max_file_bytes: u64,
    /// Files kept in all (the current one included): `path`, `path.1`, ...
    pub max_files: usize,
}

impl Journal {
    /// Opens (creating, mode 0600) the journal and starts its writer task.
    pub fn start(config: JournalConfig, metrics: Arc<Metrics>) -> io::Result<Journal> {
        let writer = Writer::open(config)?;
        let (queue, records) = mpsc::channel(QUEUE);
        let task_metrics = metrics.clone();
        tokio::task::spawn_blocking(move || writer.run(records, &task_metrics));
        Ok(Journal { queue, metrics })
    }

    /// Queues a record without waiting. A full queue drops it (and counts it).
    pub fn record(
        &self,
        reason: FallbackReason,
        delivery_id: &str,
        webhook_id: Option<&str>,
        body: &Bytes,
    ) {
        let delivery = serde_json::from_slice(body).unwrap_or(Json::Null);
        let record = Record {
            time: crate::sender::now_rfc3339_of(SystemTime::now()),
            reason: reason.as_str().to_owned(),
            delivery_id: delivery_id.to_owned(),
            webhook_id: webhook_id.map(str::to_owned),
            delivery,
        };
        if self.queue.try_send(record).is_err() {
            self.metrics.journal_dropped.inc();
            tracing::error!(delivery_id, "fallback journal queue full: record dropped");
        }
    }
}

struct Writer {
    config: JournalConfig,
    file: File,
    size: u64,
}

impl Writer {
    fn open(config: JournalConfig) -> io::Result<Writer> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(&config.path)?;
        let size = file.metadata()?.len();
        Ok(Writer { config, file, size })
    }

    /// Appends batches until every sender is gone (the bridge shut down).
    fn run(mut self, mut records: mpsc::Receiver<Record>, metrics: &Metrics) {
        let mut batch = Vec::new();
        while let Some(first) = records.blocking_recv() {
            batch.push(first);
            while let Ok(more) = records.try_recv() {
                batch.push(more);
            }
            let written = batch.len() as u64;
            match self.write_batch(&batch) {
                Ok(()) => {
                    metrics.journal_records.inc_by(written);
                }
                Err(error) => {
                    metrics.journal_errors.inc();
                    tracing::error!(%error, records = written, path = %self.config.path.display(), "fallback journal write failed");
                }
            }
            batch.clear();
        }
    }

    fn write_batch(&mut self, batch: &[Record]) -> io::Result<()> {
        let mut lines = Vec::new();
        for record in batch {
            serde_json::to_writer(&mut lines, record)?;
            lines.push(b'\n');
        }
        if self.size > 0 && self.size + lines.len() as u64 > self.config.max_file_bytes {
            self.rotate()?;
        }
        self.file.write_all(&lines)?;
        // Durable before the next batch is taken: one fdatasync per batch.
        self.file.sync_data()?;
        self.size += lines.len() as u64;
        Ok(())
    }

    /// `path` -> `path.1` -> ... -> `path.{max_files-1}`; the oldest is removed.
    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.config.max_files.max(1);
        let numbered = |n: usize| numbered_path(&self.config.path, n);
        let _ = std::fs::remove_file(numbered(keep - 1));
        for n in (1..keep.saturating_sub(1)).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        if keep > 1 {
            std::fs::rename(&self.config.path, numbered(1))?;
        } else {
            std::fs::remove_file(&self.config.path)?;
        }
        self.file = open_append(&self.config.path)?;
        self.size = 0;
        Ok(())
    }
}

fn numbered_path(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Deliveries hold personal data: owner only.
        options.mode(0o600);
    }
    options.open(path)
}

/// Reads a journal file: every record, or the line number of a bad one.
pub fn read(path: &Path) -> io::Result<Vec<Result<Record, String>>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, max_file_bytes: u64, max_files: usize) -> JournalConfig {
        JournalConfig {
            path: dir.join("fallbacks.jsonl"),
            max_file_bytes,
            max_files,
        }
    }

    fn body(id: &str) -> Bytes {
        Bytes::from(format!(
            r#"{{"id":"{id}","event":"whatsapp.flows.init","data":{{}}}}"#
        ))
    }

    async fn wait_for(metrics: &Metrics, records: u64) {
        for _ in 0..500 {
            if metrics.journal_records.get() >= records {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        panic!(
            "journal wrote {} of {records}",
            metrics.journal_records.get()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_are_json_lines_with_the_whole_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let journal = Journal::start(config(dir.path(), 1 << 20, 3), metrics.clone()).unwrap();
        journal.record(FallbackReason::Deadline, "d1", Some("wh_1"), &body("d1"));
        journal.record(FallbackReason::Shed, "d2", None, &body("d2"));
        wait_for(&metrics, 2).await;
        let records: Vec<Record> = read(&dir.path().join("fallbacks.jsonl"))
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].reason, "deadline");
        assert_eq!(records[0].webhook_id.as_deref(), Some("wh_1"));
        assert_eq!(records[0].delivery["id"], "d1");
        assert_eq!(records[1].reason, "shed");
        assert!(records[1].time.ends_with('Z'));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("fallbacks.jsonl"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rotation_bounds_the_total_size() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        // Each record is ~150 bytes: 400-byte files hold two, three files kept.
        let journal = Journal::start(config(dir.path(), 400, 3), metrics.clone()).unwrap();
        for n in 0..20 {
            let id = format!("d{n}");
            journal.record(FallbackReason::UpstreamError, &id, None, &body(&id));
            wait_for(&metrics, n + 1).await;
        }
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(
            files,
            ["fallbacks.jsonl", "fallbacks.jsonl.1", "fallbacks.jsonl.2"]
        );
        let mut total = 0;
        for file in &files {
            let size = std::fs::metadata(dir.path().join(file)).unwrap().len();
            assert!(size <= 400, "{file}: {size}");
            total += read(&dir.path().join(file)).unwrap().len();
        }
        // The newest records are kept; the current file has the last one.
        let current = read(&dir.path().join("fallbacks.jsonl")).unwrap();
        assert_eq!(current.last().unwrap().as_ref().unwrap().delivery_id, "d19");
        assert!((4..20).contains(&total), "{total}");
    }

    #[test]
    fn bad_lines_are_reported_by_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        std::fs::write(&path, "{\"time\":\"t\",\"reason\":\"shed\",\"delivery_id\":\"a\",\"delivery\":{}}\nnot json\n\n").unwrap();
        let records = read(&path).unwrap();
        assert!(records[0].is_ok());
        assert!(records[1].as_ref().unwrap_err().starts_with("line 2"));
        assert_eq!(records.len(), 2);
    }
}
