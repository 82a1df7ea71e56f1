//! Container log files: each process writes its own file directly (so its output
//! survives a kubelet restart); the kubelet's log watcher time-stamps their growth
//! ([`LineTimes`]) and rotates a file past `container_log_max_size` by copy-and-truncate,
//! keeping `container_log_max_files` files in all (`<log>.1` the newest rotated one).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use super::Shared;

/// `<log><suffix>` next to `log`.
fn with_suffix(log: &Path, suffix: &str) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// The `i`-th rotated file of `log` (1 = newest).
pub(super) fn rotated(log: &Path, i: usize) -> PathBuf {
    with_suffix(log, &format!(".{i}"))
}

/// When each part of a log file was first seen by the kubelet: the log watcher records
/// `(end offset, time)` pairs in `<log>.times` as the file grows. A line's time is that
/// of the first pair at or past its end (precise to the watcher's period).
pub(super) struct LineTimes {
    marks: Vec<(u64, Timestamp)>,
}

impl LineTimes {
    fn times_path(log: &Path) -> PathBuf {
        with_suffix(log, ".times")
    }

    /// Reads the marks of `log` (none when the file is missing).
    pub(super) fn load(log: &Path) -> LineTimes {
        let text = std::fs::read_to_string(Self::times_path(log)).unwrap_or_default();
        let marks = text
            .lines()
            .filter_map(|l| {
                let (off, ms) = l.split_once(' ')?;
                Some((
                    off.parse().ok()?,
                    Timestamp::from_millisecond(ms.parse().ok()?).ok()?,
                ))
            })
            .collect();
        LineTimes { marks }
    }

    /// The time the byte before `end` was first seen (now when not seen yet).
    pub(super) fn time_of(&self, end: u64) -> Timestamp {
        let i = self.marks.partition_point(|(off, _)| *off < end);
        self.marks.get(i).map_or_else(Timestamp::now, |(_, t)| *t)
    }

    /// Records that `log` is `len` bytes long now, if it grew since `last`.
    fn mark(log: &Path, last: u64, len: u64) {
        if len <= last {
            return;
        }
        use std::io::Write;
        let line = format!("{len} {}\n", Timestamp::now().as_millisecond());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(Self::times_path(log));
        if let Ok(mut f) = file {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// `(end offset, line with its newline)` for each line of `content` (the last one may
/// lack its newline).
pub(super) fn split_lines(content: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in content.iter().enumerate() {
        if *b == b'\n' {
            out.push((i as u64 + 1, content[start..=i].to_vec()));
            start = i + 1;
        }
    }
    if start < content.len() {
        out.push((content.len() as u64, content[start..].to_vec()));
    }
    out
}

/// Every line of a container's log, oldest rotated file first, each with its time.
pub(super) fn read_all(log: &Path, max_files: usize) -> std::io::Result<Vec<(Timestamp, Vec<u8>)>> {
    let mut files: Vec<PathBuf> = (1..max_files.max(1))
        .rev()
        .map(|i| rotated(log, i))
        .filter(|p| p.exists())
        .collect();
    files.push(log.to_path_buf());
    let mut out = Vec::new();
    for f in files {
        let content = match std::fs::read(&f) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let times = LineTimes::load(&f);
        out.extend(
            split_lines(&content)
                .into_iter()
                .map(|(end, line)| (times.time_of(end), line)),
        );
    }
    Ok(out)
}

/// The lines of CRI-format log content (`<RFC 3339 time> <stream> <P|F> <text>` per
/// line, as CRI runtimes write them), each with its time; a partial (`P`) line is joined
/// with the lines that complete it. Unparsable lines are kept whole, dated now.
pub(super) fn parse_cri(content: &[u8]) -> Vec<(Timestamp, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending: Option<(Timestamp, Vec<u8>)> = None;
    for (_, raw) in split_lines(content) {
        let line = raw.strip_suffix(b"\n").unwrap_or(&raw);
        let mut fields = line.splitn(4, |b| *b == b' ');
        let (time, _stream, tag, text) =
            (fields.next(), fields.next(), fields.next(), fields.next());
        let time = time
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(|t| t.parse::<Timestamp>().ok());
        let (Some(time), Some(tag)) = (time, tag) else {
            out.push((Timestamp::now(), raw.clone()));
            continue;
        };
        let text = text.unwrap_or_default();
        let entry = pending.get_or_insert_with(|| (time, Vec::new()));
        entry.1.extend_from_slice(text);
        if tag != b"P" {
            if let Some((t, mut text)) = pending.take() {
                text.push(b'\n');
                out.push((t, text));
            }
        }
    }
    out.extend(pending);
    out
}

/// Log lines, each with its time.
pub(super) type DatedLines = Vec<(Timestamp, Vec<u8>)>;

/// Every line of a CRI-format container log with its time, and how many bytes of the
/// file were read (the complete lines).
pub(super) fn read_cri(log: &Path) -> std::io::Result<(DatedLines, u64)> {
    let content = match std::fs::read(log) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let complete = content
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    Ok((parse_cri(&content[..complete]), complete as u64))
}

/// Rotates `log`: the rotated files move up one (the oldest beyond `max_files - 1` is
/// dropped), `log` is copied to `<log>.1` and truncated; its process keeps appending.
pub(super) fn rotate(log: &Path, max_files: usize) -> std::io::Result<()> {
    let keep = max_files.saturating_sub(1);
    let gone = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    if keep > 0 {
        gone(std::fs::remove_file(rotated(log, keep)))?;
        gone(std::fs::remove_file(LineTimes::times_path(&rotated(
            log, keep,
        ))))?;
        for i in (1..keep).rev() {
            gone(std::fs::rename(rotated(log, i), rotated(log, i + 1)))?;
            gone(std::fs::rename(
                LineTimes::times_path(&rotated(log, i)),
                LineTimes::times_path(&rotated(log, i + 1)),
            ))?;
        }
        std::fs::copy(log, rotated(log, 1))?;
        gone(std::fs::rename(
            LineTimes::times_path(log),
            LineTimes::times_path(&rotated(log, 1)),
        ))?;
    } else {
        gone(std::fs::remove_file(LineTimes::times_path(log)))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(log)?
        .set_len(0)
}

/// Every `period`: marks the growth of every running container's log (see
/// [`LineTimes`]) and rotates the logs grown past `container_log_max_size`.
pub(super) async fn watch(shared: Arc<Shared>, period: Duration) {
    let max_size = shared.config.container_log_max_bytes();
    let max_files = shared.config.container_log_max_files;
    let mut sizes: HashMap<PathBuf, u64> = HashMap::new();
    let mut ticker = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let containers = shared
            .runtime
            .list_containers(None)
            .await
            .unwrap_or_default();
        let mut alive = HashMap::new();
        for c in containers {
            let Some(path) = c.log_path else { continue };
            let len = std::fs::metadata(&path).map_or(0, |m| m.len());
            let last = sizes.get(&path).copied().unwrap_or_else(|| {
                // First look after a (re)start: go on from the last mark.
                LineTimes::load(&path).marks.last().map_or(0, |(o, _)| *o)
            });
            LineTimes::mark(&path, last, len);
            let mut now = len.max(last);
            if len > max_size {
                match rotate(&path, max_files) {
                    Ok(()) => {
                        now = 0;
                        shared.metrics.log_rotations.inc();
                    }
                    Err(e) => {
                        tracing::warn!(log = %path.display(), error = %e, "rotating a container log failed")
                    }
                }
            }
            alive.insert(path, now);
        }
        sizes = alive;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_cri_should_strip_the_prefix_and_join_partial_lines() {
        let content = b"2026-01-02T03:04:05.123456789Z stdout F hi\n\
2026-01-02T03:04:06Z stderr P par\n\
2026-01-02T03:04:07Z stderr F tial\n";
        let lines = parse_cri(content);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].1, b"hi\n");
        assert_eq!(lines[1].1, b"partial\n");
        assert_eq!(lines[0].0.as_second(), lines[1].0.as_second() - 1);
    }

    #[test]
    fn split_lines_should_keep_newlines_and_offsets() {
        let lines = split_lines(b"a\nbc\nd");
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], (2, b"a\n".to_vec()));
        assert_eq!(lines[1], (5, b"bc\n".to_vec()));
        assert_eq!(lines[2], (6, b"d".to_vec()));
    }

    #[test]
    fn line_times_should_date_a_line_by_the_first_mark_past_its_end() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("c.log");
        std::fs::write(LineTimes::times_path(&log), "5 1000\n12 2000\n").expect("marks");
        let t = LineTimes::load(&log);
        assert_eq!(t.time_of(3).as_millisecond(), 1000);
        assert_eq!(t.time_of(5).as_millisecond(), 1000);
        assert_eq!(t.time_of(6).as_millisecond(), 2000);
    }

    #[test]
    fn rotate_should_keep_max_files_and_read_all_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("c.log");
        for round in 0..4 {
            std::fs::write(&log, format!("line {round}\n")).expect("write");
            LineTimes::mark(&log, 0, 7);
            rotate(&log, 3).expect("rotate");
        }
        std::fs::write(&log, "line 4\n").expect("write");
        assert!(rotated(&log, 2).exists() && !rotated(&log, 3).exists());
        let lines: Vec<String> = read_all(&log, 3)
            .expect("read")
            .into_iter()
            .map(|(_, l)| String::from_utf8_lossy(&l).into_owned())
            .collect();
        assert_eq!(lines, ["line 2\n", "line 3\n", "line 4\n"]);
    }
}
