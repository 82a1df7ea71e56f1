//! The `process` runtime: a sandbox is a pod directory, a container is a host process
//! (`command` + `args`, in its own process group) whose stdout and stderr go to
//! `<pod dir>/<container>.log`. Images are recorded, never pulled; pods share the host's
//! network. Stopping sends SIGTERM to the process group, then SIGKILL after the timeout;
//! dropping the runtime kills every process group it started, so nothing is orphaned.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use parking_lot::Mutex;
use rustix::process::{kill_process_group, Pid, Signal};

use super::{
    ContainerConfig, ContainerId, ContainerState, ContainerStatus, PodSandboxConfig, Runtime,
    RuntimeError, SandboxId, SandboxState, SandboxStatus,
};

/// Exit code and reason of a container whose process could not be started (as containerd).
const START_ERROR: (i32, &str) = (128, "StartError");

/// Host processes as containers; pod directories under `root`.
pub struct ProcessRuntime {
    root: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    sandboxes: HashMap<u64, Sandbox>,
    containers: HashMap<u64, Proc>,
}

struct Sandbox {
    pod_uid: String,
    dir: PathBuf,
    created: Timestamp,
    ready: bool,
    containers: Vec<u64>,
}

struct Proc {
    sandbox: u64,
    name: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    working_dir: PathBuf,
    log: PathBuf,
    state: ContainerState,
    created: Timestamp,
    started: Option<Timestamp>,
    finished: Option<Timestamp>,
    exit_code: Option<i32>,
    reason: String,
    child: Option<Child>,
}

impl Proc {
    /// Reaps the process if it exited.
    fn poll(&mut self) {
        let Some(child) = &mut self.child else { return };
        if let Ok(Some(status)) = child.try_wait() {
            let code = status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(-1);
            self.child = None;
            self.state = ContainerState::Exited;
            self.finished = Some(Timestamp::now());
            self.exit_code = Some(code);
            self.reason = if code == 0 { "Completed" } else { "Error" }.into();
        }
    }

    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.child.as_ref().and_then(|c| pid_of(c.id())) {
            if let Err(e) = kill_process_group(pid, signal) {
                tracing::debug!(container = %self.name, ?signal, error = %e, "signalling the process group failed");
            }
        }
    }

    fn status(&self, id: u64) -> ContainerStatus {
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
        }
    }
}

fn pid_of(id: u32) -> Option<Pid> {
    i32::try_from(id).ok().and_then(Pid::from_raw)
}

fn format_id(id: u64) -> String {
    format!("{id:016x}")
}

fn parse_id(what: &'static str, id: &str) -> Result<u64, RuntimeError> {
    u64::from_str_radix(id, 16).map_err(|_| RuntimeError::NotFound {
        what,
        id: id.to_string(),
    })
}

fn not_found(what: &'static str, id: &str) -> RuntimeError {
    RuntimeError::NotFound {
        what,
        id: id.to_string(),
    }
}

impl ProcessRuntime {
    /// A runtime keeping pod directories under `root`.
    pub fn new(root: PathBuf) -> ProcessRuntime {
        ProcessRuntime {
            root,
            state: Mutex::new(State::default()),
        }
    }

    /// SIGTERMs container `key`'s process group, waits up to `timeout`, then SIGKILLs it.
    async fn stop(&self, key: u64, timeout: Duration) {
        {
            let mut state = self.state.lock();
            let Some(p) = state.containers.get_mut(&key) else {
                return;
            };
            p.poll();
            p.signal(Signal::TERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut state = self.state.lock();
                let Some(p) = state.containers.get_mut(&key) else {
                    return;
                };
                p.poll();
                if p.child.is_none() {
                    return;
                }
                if Instant::now() >= deadline {
                    p.signal(Signal::KILL);
                    if let Some(child) = &mut p.child {
                        let _ = child.wait();
                    }
                    p.poll();
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ProcessRuntime {
    fn drop(&mut self) {
        for p in self.state.get_mut().containers.values_mut() {
            p.signal(Signal::KILL);
            if let Some(child) = &mut p.child {
                let _ = child.wait();
            }
        }
    }
}

#[async_trait::async_trait]
impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    fn version(&self) -> String {
        format!("process://{}", env!("CARGO_PKG_VERSION"))
    }

    async fn run_pod_sandbox(
        &self,
        config: &PodSandboxConfig<'_>,
    ) -> Result<SandboxId, RuntimeError> {
        let dir = self.root.join(format!(
            "{}_{}_{}",
            config.namespace, config.name, config.uid
        ));
        std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::Failed {
            op: format!("create pod directory {}", dir.display()),
            message: e.to_string(),
        })?;
        let mut state = self.state.lock();
        state.next_id += 1;
        let id = state.next_id;
        state.sandboxes.insert(
            id,
            Sandbox {
                pod_uid: config.uid.to_string(),
                dir,
                created: Timestamp::now(),
                ready: true,
                containers: Vec::new(),
            },
        );
        Ok(SandboxId(format_id(id)))
    }

    async fn stop_pod_sandbox(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        let key = parse_id("sandbox", &id.0)?;
        let containers = match self.state.lock().sandboxes.get_mut(&key) {
            Some(s) => {
                s.ready = false;
                s.containers.clone()
            }
            None => return Ok(()),
        };
        for c in containers {
            self.stop(c, Duration::ZERO).await;
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        self.stop_pod_sandbox(id).await?;
        let key = parse_id("sandbox", &id.0)?;
        let removed = {
            let mut state = self.state.lock();
            let removed = state.sandboxes.remove(&key);
            if let Some(s) = &removed {
                for c in &s.containers {
                    state.containers.remove(c);
                }
            }
            removed
        };
        if let Some(s) = removed {
            if let Err(e) = std::fs::remove_dir_all(&s.dir) {
                tracing::warn!(dir = %s.dir.display(), error = %e, "removing the pod directory failed");
            }
        }
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &SandboxId) -> Result<SandboxStatus, RuntimeError> {
        let key = parse_id("sandbox", &id.0)?;
        let state = self.state.lock();
        let s = state
            .sandboxes
            .get(&key)
            .ok_or_else(|| not_found("sandbox", &id.0))?;
        Ok(sandbox_status(key, s))
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<SandboxStatus>, RuntimeError> {
        let state = self.state.lock();
        Ok(state
            .sandboxes
            .iter()
            .map(|(k, s)| sandbox_status(*k, s))
            .collect())
    }

    async fn create_container(
        &self,
        sandbox: &SandboxId,
        config: &ContainerConfig<'_>,
    ) -> Result<ContainerId, RuntimeError> {
        let key = parse_id("sandbox", &sandbox.0)?;
        let mut state = self.state.lock();
        state.next_id += 1;
        let id = state.next_id;
        let s = state
            .sandboxes
            .get_mut(&key)
            .ok_or_else(|| not_found("sandbox", &sandbox.0))?;
        s.containers.push(id);
        let proc = Proc {
            sandbox: key,
            name: config.name.to_string(),
            argv: config.command.iter().chain(config.args).cloned().collect(),
            env: config.env.to_vec(),
            working_dir: config
                .working_dir
                .map_or_else(|| s.dir.clone(), PathBuf::from),
            log: s.dir.join(format!("{}.log", config.name)),
            state: ContainerState::Created,
            created: Timestamp::now(),
            started: None,
            finished: None,
            exit_code: None,
            reason: String::new(),
            child: None,
        };
        state.containers.insert(id, proc);
        Ok(ContainerId(format_id(id)))
    }

    async fn start_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let key = parse_id("container", &id.0)?;
        let mut state = self.state.lock();
        let p = state
            .containers
            .get_mut(&key)
            .ok_or_else(|| not_found("container", &id.0))?;
        if p.state != ContainerState::Created {
            return Err(RuntimeError::Failed {
                op: format!("start container {}", p.name),
                message: format!("container {} is {}", id.0, p.state.label()),
            });
        }
        match spawn(p) {
            Ok(child) => {
                p.child = Some(child);
                p.state = ContainerState::Running;
                p.started = Some(Timestamp::now());
                Ok(())
            }
            Err(message) => {
                p.state = ContainerState::Exited;
                p.finished = Some(Timestamp::now());
                (p.exit_code, p.reason) = (Some(START_ERROR.0), START_ERROR.1.into());
                Err(RuntimeError::Failed {
                    op: format!("start container {}", p.name),
                    message,
                })
            }
        }
    }

    async fn stop_container(
        &self,
        id: &ContainerId,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        let key = parse_id("container", &id.0)?;
        self.stop(key, timeout).await;
        Ok(())
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let key = parse_id("container", &id.0)?;
        self.stop(key, Duration::ZERO).await;
        let mut state = self.state.lock();
        if let Some(p) = state.containers.remove(&key) {
            if let Some(s) = state.sandboxes.get_mut(&p.sandbox) {
                s.containers.retain(|c| *c != key);
            }
        }
        Ok(())
    }

    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus, RuntimeError> {
        let key = parse_id("container", &id.0)?;
        let mut state = self.state.lock();
        let p = state
            .containers
            .get_mut(&key)
            .ok_or_else(|| not_found("container", &id.0))?;
        p.poll();
        Ok(p.status(key))
    }

    async fn list_containers(
        &self,
        sandbox: Option<&SandboxId>,
    ) -> Result<Vec<ContainerStatus>, RuntimeError> {
        let only = sandbox.map(|s| parse_id("sandbox", &s.0)).transpose()?;
        let mut state = self.state.lock();
        Ok(state
            .containers
            .iter_mut()
            .filter(|(_, p)| only.is_none_or(|s| p.sandbox == s))
            .map(|(k, p)| {
                p.poll();
                p.status(*k)
            })
            .collect())
    }
}

fn sandbox_status(key: u64, s: &Sandbox) -> SandboxStatus {
    SandboxStatus {
        id: SandboxId(format_id(key)),
        pod_uid: s.pod_uid.clone(),
        state: if s.ready {
            SandboxState::Ready
        } else {
            SandboxState::NotReady
        },
        created_at: s.created,
        ip: None,
    }
}

/// Starts the container's process in its own process group, output appended to its log.
fn spawn(p: &Proc) -> Result<Child, String> {
    let Some((program, args)) = p.argv.split_first() else {
        return Err(format!(
            "container {} has no command: the process runtime runs command and args as host processes and does not read images",
            p.name
        ));
    };
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p.log)
        .map_err(|e| format!("log file {}: {e}", p.log.display()))?;
    let err_log = log
        .try_clone()
        .map_err(|e| format!("log file {}: {e}", p.log.display()))?;
    Command::new(program)
        .args(args)
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&p.working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err_log))
        .process_group(0)
        .spawn()
        .map_err(|e| format!("{program:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox<'a>(uid: &'a str) -> PodSandboxConfig<'a> {
        PodSandboxConfig {
            name: "p",
            namespace: "ns",
            uid,
            host_network: true,
            pod_cidr: None,
            previous_ip: None,
        }
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    async fn until_exited(rt: &ProcessRuntime, id: &ContainerId) -> ContainerStatus {
        for _ in 0..250 {
            let s = rt.container_status(id).await.expect("status");
            if s.state == ContainerState::Exited {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("container {} did not exit", id.0);
    }

    #[tokio::test]
    async fn process_runtime_should_run_commands_and_log_their_output() {
        let dir = tempfile::tempdir().expect("temp dir");
        let rt = ProcessRuntime::new(dir.path().to_path_buf());
        let s = rt.run_pod_sandbox(&sandbox("u1")).await.expect("sandbox");
        let command = strings(&["sh", "-c"]);
        let args = strings(&["echo \"hello $WHO from $(pwd)\"; exit 3"]);
        let env = [("WHO".to_string(), "kubelet".to_string())];
        let config = ContainerConfig {
            name: "c",
            image: "busybox",
            command: &command,
            args: &args,
            env: &env,
            working_dir: Some("/tmp"),
        };
        let c = rt.create_container(&s, &config).await.expect("create");
        rt.start_container(&c).await.expect("start");
        let status = until_exited(&rt, &c).await;
        assert_eq!(status.exit_code, Some(3));
        assert_eq!(status.reason, "Error");
        let log = std::fs::read_to_string(dir.path().join("ns_p_u1/c.log")).expect("log");
        assert_eq!(log, "hello kubelet from /tmp\n");
        rt.remove_pod_sandbox(&s).await.expect("remove");
        assert!(!dir.path().join("ns_p_u1").exists());
    }

    #[tokio::test]
    async fn process_runtime_should_stop_the_whole_process_group() {
        let dir = tempfile::tempdir().expect("temp dir");
        let rt = ProcessRuntime::new(dir.path().to_path_buf());
        let s = rt.run_pod_sandbox(&sandbox("u2")).await.expect("sandbox");
        let command = strings(&["sh", "-c", "trap '' TERM; sleep 30 & echo ready; wait"]);
        let config = ContainerConfig {
            name: "stubborn",
            image: "busybox",
            command: &command,
            args: &[],
            env: &[],
            working_dir: None,
        };
        let c = rt.create_container(&s, &config).await.expect("create");
        rt.start_container(&c).await.expect("start");
        // Stop only once the shell ignores SIGTERM.
        let log = dir.path().join("ns_p_u2/stubborn.log");
        for _ in 0..250 {
            if std::fs::read_to_string(&log).is_ok_and(|l| l.contains("ready")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pid = rt
            .state
            .lock()
            .containers
            .values()
            .find_map(|p| p.child.as_ref().map(Child::id));
        let pid = pid.expect("a running process");
        rt.stop_container(&c, Duration::from_millis(200))
            .await
            .expect("stop");
        let status = rt.container_status(&c).await.expect("status");
        assert_eq!(status.state, ContainerState::Exited);
        assert_eq!(
            status.exit_code,
            Some(128 + 9),
            "SIGKILLed after the timeout"
        );
        let mut left = String::from("?");
        // Killed members may linger as zombies until PID 1 reaps them (slow in
        // some VMs): only live members count.
        for _ in 0..150 {
            let ps = Command::new("ps")
                .args(["-e", "-o", "pid=,pgid=,stat="])
                .output()
                .expect("ps");
            left = String::from_utf8_lossy(&ps.stdout)
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() == 3 && f[1] == pid.to_string() && !f[2].starts_with('Z'))
                        .then(|| f[0].to_string())
                })
                .collect::<Vec<_>>()
                .join(" ");
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(left.is_empty(), "processes left in group {pid}: {left}");
    }

    #[tokio::test]
    async fn process_runtime_should_report_a_missing_command_as_a_start_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let rt = ProcessRuntime::new(dir.path().to_path_buf());
        let s = rt.run_pod_sandbox(&sandbox("u3")).await.expect("sandbox");
        let command = strings(&["/nonexistent/bin/server"]);
        let config = ContainerConfig {
            name: "broken",
            image: "busybox",
            command: &command,
            args: &[],
            env: &[],
            working_dir: None,
        };
        let c = rt.create_container(&s, &config).await.expect("create");
        let err = rt.start_container(&c).await.expect_err("no such file");
        assert!(err.to_string().contains("/nonexistent/bin/server"), "{err}");
        let status = rt.container_status(&c).await.expect("status");
        assert_eq!(
            (status.exit_code, status.reason.as_str()),
            (Some(128), "StartError")
        );
    }
}
