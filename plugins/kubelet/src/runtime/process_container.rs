//! One container of the process runtime: its process (our child, or one re-adopted
//! after a kubelet restart), how its exit is noticed and reported (exit code, reason,
//! OOM kills), how it is signalled and killed, and its on-disk record.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Child;

use jiff::Timestamp;
use rustix::process::{kill_process_group, Pid, Signal};

use super::cgroups::{self, Limits};
use super::process_state::{self, ContainerRecord};
use super::{ContainerId, ContainerState, ContainerStatus, Mount, SandboxId};

/// Exit code and reason of a container whose process could not be started (as containerd).
pub(super) const START_ERROR: (i32, &str) = (128, "StartError");

/// Exit code and reason of a re-adopted process that ended while it was not our child
/// (its exit status went to PID 1), as upstream reports containers it lost track of.
const UNKNOWN_EXIT: (i32, &str) = (137, "ContainerStatusUnknown");

pub(super) struct Proc {
    pub(super) sandbox: u64,
    pub(super) name: String,
    pub(super) argv: Vec<String>,
    pub(super) env: Vec<(String, String)>,
    pub(super) working_dir: Option<String>,
    pub(super) mounts: Vec<Mount>,
    pub(super) limits: Limits,
    /// The container's cgroup directories (empty: no limits applied).
    pub(super) cgroups: Vec<PathBuf>,
    pub(super) log: PathBuf,
    pub(super) state: ContainerState,
    pub(super) created: Timestamp,
    pub(super) started: Option<Timestamp>,
    pub(super) finished: Option<Timestamp>,
    pub(super) exit_code: Option<i32>,
    pub(super) reason: String,
    pub(super) message: String,
    /// The process (and process group) id while it runs.
    pub(super) pid: Option<u32>,
    /// `starttime` of the process (`/proc/<pid>/stat`), to recognise it after a restart.
    pub(super) start_ticks: Option<u64>,
    /// Our child, unless the process was re-adopted after a kubelet restart.
    pub(super) child: Option<Child>,
}

impl Proc {
    /// Notices that the process exited: reaps our child, or sees an adopted one gone.
    pub(super) fn poll(&mut self) {
        if self.state != ContainerState::Running {
            return;
        }
        if let Some(child) = &mut self.child {
            let waited = child.try_wait();
            if waited.is_err()
                && !self
                    .pid
                    .is_some_and(|p| process_state::is_alive(p, self.start_ticks))
            {
                // Reaped elsewhere (a successor runtime in this process): gone.
                self.exited(UNKNOWN_EXIT.0, UNKNOWN_EXIT.1);
            } else if let Ok(Some(status)) = waited {
                let code = status
                    .code()
                    .or_else(|| status.signal().map(|s| 128 + s))
                    .unwrap_or(-1);
                let reason = if code == 0 {
                    "Completed"
                } else if code == 128 + 9 && cgroups::oom_killed(&self.cgroups) {
                    "OOMKilled"
                } else {
                    "Error"
                };
                self.exited(code, reason);
            }
        } else if let Some(code) = self.pid.and_then(reap) {
            // Adopted, but still our child (the kubelet was swapped in this process).
            self.exited(code, if code == 0 { "Completed" } else { "Error" });
        } else if !self
            .pid
            .is_some_and(|pid| process_state::is_alive(pid, self.start_ticks))
        {
            self.exited(UNKNOWN_EXIT.0, UNKNOWN_EXIT.1);
            self.message = "the process was re-adopted after a kubelet restart and its exit status went to PID 1".into();
        }
    }

    pub(super) fn exited(&mut self, code: i32, reason: &str) {
        self.child = None;
        self.pid = None;
        self.state = ContainerState::Exited;
        self.finished = Some(Timestamp::now());
        self.exit_code = Some(code);
        self.reason = reason.into();
    }

    pub(super) fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid.and_then(pid_of) {
            if let Err(e) = kill_process_group(pid, signal) {
                tracing::debug!(container = %self.name, ?signal, error = %e, "signalling the process group failed");
            }
        }
    }

    /// SIGKILLs the process group and waits for our child; no effect once it exited.
    pub(super) fn kill_now(&mut self) {
        if self.state != ContainerState::Running {
            return;
        }
        self.signal(Signal::KILL);
        if let Some(child) = &mut self.child {
            let _ = child.wait();
            self.poll();
        } else {
            // Adopted: reap it if it is our child (after a hot swap), so no zombie stays.
            let reaped = self.pid.and_then(|pid| {
                let (_, status) =
                    rustix::process::waitpid(pid_of(pid), rustix::process::WaitOptions::empty())
                        .ok()??;
                status
                    .exit_status()
                    .or_else(|| status.terminating_signal().map(|s| 128 + s))
            });
            self.exited(reaped.unwrap_or(128 + 9), "Error");
        }
    }

    pub(super) fn status(&self, id: u64) -> ContainerStatus {
        ContainerStatus {
            id: ContainerId(format_id(id)),
            sandbox: SandboxId(format_id(self.sandbox)),
            name: self.name.clone(),
            state: self.state,
            created_at: self.created,
            started_at: self.started,
            finished_at: self.finished,
            exit_code: self.exit_code,
            reason: self.reason.clone(),
            message: self.message.clone(),
            log_path: Some(self.log.clone()),
        }
    }

    pub(super) fn record(&self, id: u64) -> ContainerRecord {
        ContainerRecord {
            id,
            name: self.name.clone(),
            argv: self.argv.clone(),
            env: self.env.clone(),
            working_dir: self.working_dir.clone(),
            mounts: self
                .mounts
                .iter()
                .map(|m| (m.host_path.clone(), m.container_path.clone(), m.read_only))
                .collect(),
            log: self.log.clone(),
            state: self.state.label().to_string(),
            created_ms: self.created.as_millisecond(),
            started_ms: self.started.map(Timestamp::as_millisecond),
            finished_ms: self.finished.map(Timestamp::as_millisecond),
            exit_code: self.exit_code,
            reason: self.reason.clone(),
            message: self.message.clone(),
            pid: self.pid,
            start_ticks: self.start_ticks,
            cgroups: self.cgroups.clone(),
        }
    }

    pub(super) fn from_record(sandbox: u64, r: ContainerRecord) -> Proc {
        let state = match r.state.as_str() {
            "running" => ContainerState::Running,
            "created" => ContainerState::Created,
            _ => ContainerState::Exited,
        };
        let mut p = Proc {
            sandbox,
            name: r.name,
            argv: r.argv,
            env: r.env,
            working_dir: r.working_dir,
            mounts: r
                .mounts
                .into_iter()
                .map(|(host_path, container_path, read_only)| Mount {
                    host_path,
                    container_path,
                    read_only,
                })
                .collect(),
            log: r.log,
            state,
            created: millis(r.created_ms),
            started: r.started_ms.map(millis),
            finished: r.finished_ms.map(millis),
            exit_code: r.exit_code,
            reason: r.reason,
            message: r.message,
            pid: r.pid,
            start_ticks: r.start_ticks,
            limits: Limits::default(),
            cgroups: r.cgroups,
            child: None,
        };
        p.poll();
        p
    }
}

/// The exit code of `pid` if it is a child of this process that exited (reaping it).
fn reap(pid: u32) -> Option<i32> {
    let (_, status) =
        rustix::process::waitpid(pid_of(pid), rustix::process::WaitOptions::NOHANG).ok()??;
    status
        .exit_status()
        .or_else(|| status.terminating_signal().map(|s| 128 + s))
}

pub(super) fn millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn pid_of(id: u32) -> Option<Pid> {
    i32::try_from(id).ok().and_then(Pid::from_raw)
}

pub(super) fn format_id(id: u64) -> String {
    format!("{id:016x}")
}
