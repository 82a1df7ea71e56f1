//! The process runtime's state on disk: one `sandbox.json` per pod directory, rewritten
//! (atomically) on every change, and how a recorded process is recognised again after a
//! restart (same pid, same start time in `/proc/<pid>/stat`, not a zombie).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Name of the state file in each pod directory.
const STATE_FILE: &str = "sandbox.json";

/// A sandbox as recorded on disk.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SandboxRecord {
    pub id: u64,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub created_ms: i64,
    pub ready: bool,
    pub containers: Vec<ContainerRecord>,
    /// The pod's network namespace (bridge network), if it has its own.
    #[serde(default)]
    pub netns: Option<String>,
    /// The pod's address in it.
    #[serde(default)]
    pub ip: Option<std::net::Ipv4Addr>,
    /// The pod CIDR the address came from.
    #[serde(default)]
    pub pod_cidr: Option<String>,
}

/// A container as recorded on disk.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ContainerRecord {
    pub id: u64,
    pub name: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub mounts: Vec<(PathBuf, String, bool)>,
    pub log: PathBuf,
    pub state: String,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub reason: String,
    pub message: String,
    pub pid: Option<u32>,
    pub start_ticks: Option<u64>,
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
}

/// Writes `record` into `dir/sandbox.json` (through a temporary file and a rename).
pub(super) fn write(dir: &Path, record: &SandboxRecord) -> std::io::Result<()> {
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let bytes = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dir.join(STATE_FILE))
}

/// Every sandbox recorded under `root`, with its directory; unreadable files are logged
/// and skipped.
pub(super) fn read_all(root: &Path) -> Vec<(PathBuf, SandboxRecord)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let file = dir.join(STATE_FILE);
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        match serde_json::from_slice::<SandboxRecord>(&bytes) {
            Ok(r) => out.push((dir, r)),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "ignoring an unreadable sandbox state file")
            }
        }
    }
    out
}

/// Field 22 (`starttime`) of `/proc/<pid>/stat` and the state letter (field 3).
fn stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: fields after it follow the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// The start time of process `pid` in clock ticks since boot.
pub(super) fn start_ticks(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, t)| t)
}

/// True when process `pid` runs (not a zombie) and, if `ticks` is known, started then.
pub(super) fn is_alive(pid: u32, ticks: Option<u64>) -> bool {
    stat(pid).is_some_and(|(state, t)| state != 'Z' && state != 'X' && ticks.is_none_or(|k| k == t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_alive_should_recognise_this_process_by_its_start_time() {
        let me = std::process::id();
        let ticks = start_ticks(me).expect("own stat");
        assert!(is_alive(me, Some(ticks)));
        assert!(
            !is_alive(me, Some(ticks + 1)),
            "another process with the same pid"
        );
    }
}
