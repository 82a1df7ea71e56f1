//! The audit log backend: a thread that appends event lines to the log file.
//!
//! Request handling only queues a line on a bounded channel and never waits: when
//! the writer falls behind and the queue is full, the event is dropped and counted in
//! `apiserver_audit_error_total{plugin="log"}`, as upstream's buffered backend does.
//! The thread ends once every sender is gone (the apiserver stopped), after writing
//! what was queued.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

use kubernel_sdk::prometheus::IntCounter;

/// The sending side of the audit log.
#[derive(Debug, Clone)]
pub struct LogWriter {
    tx: SyncSender<String>,
    errors: IntCounter,
}

impl LogWriter {
    /// Opens (appends to, creating with mode 0600) the log at `path` and starts its
    /// writer thread, with room for `capacity` queued events.
    pub fn open(path: &Path, capacity: usize, errors: IntCounter) -> Result<LogWriter, String> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(path)
            .map_err(|e| format!("config: key audit_log_path: {}: {e}", path.display()))?;
        let (tx, rx) = sync_channel(capacity.max(1));
        let thread_errors = errors.clone();
        let name = path.to_path_buf();
        std::thread::Builder::new()
            .name("apiserver-audit".into())
            .spawn(move || write_lines(rx, file, name, thread_errors))
            .map_err(|e| format!("starting the audit log writer: {e}"))?;
        Ok(LogWriter { tx, errors })
    }

    /// Queues one event line without waiting; a full queue drops it (counted).
    pub fn write(&self, line: String) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.errors.inc();
                tracing::warn!("audit log queue full: event dropped");
            }
            Err(TrySendError::Disconnected(_)) => {
                self.errors.inc();
                tracing::warn!("audit log writer stopped: event dropped");
            }
        }
    }
}

/// The writer thread: appends each line, flushing whenever the queue is empty.
fn write_lines(rx: Receiver<String>, file: std::fs::File, path: PathBuf, errors: IntCounter) {
    let mut out = std::io::BufWriter::new(file);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(line) = next {
            if let Err(e) = out
                .write_all(line.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
            {
                errors.inc();
                tracing::warn!(path = %path.display(), error = %e, "writing the audit log failed");
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            errors.inc();
            tracing::warn!(path = %path.display(), error = %e, "writing the audit log failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_writer_should_append_lines_and_count_drops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "old\n").expect("seed");
        let errors = IntCounter::new("e", "e").expect("counter");
        let w = LogWriter::open(&path, 4, errors.clone()).expect("open");
        for i in 0..3 {
            w.write(format!("line {i}"));
        }
        let mut text = String::new();
        for _ in 0..200 {
            text = std::fs::read_to_string(&path).expect("read");
            if text.lines().count() == 4 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(text, "old\nline 0\nline 1\nline 2\n");
        assert_eq!(errors.get(), 0);
        assert!(LogWriter::open(&dir.path().join("no/such/dir"), 1, errors).is_err());
    }
}
