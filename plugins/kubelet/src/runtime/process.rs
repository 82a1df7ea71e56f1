//! The `process` runtime: a sandbox is a pod directory, a container is a host process
//! (`command` + `args`, in its own process group) whose stdout and stderr go to
//! `<pod dir>/<container>-<id>.log`. Images are recorded, never pulled; pods share the
//! host's network. Stopping sends SIGTERM to the process group, then SIGKILL after the
//! timeout; dropping the runtime (the kubelet stops) does the same to every process group
//! it runs, with a 2 s grace, so nothing is orphaned. Each sandbox's state is kept in
//! `<pod dir>/sandbox.json`, so a kubelet that was killed finds its still-running
//! processes again ([`ProcessRuntime::recover`]).
//!
//! Mounts: as root, a container with mounts runs in its own mount namespace
//! (`unshare --mount --propagation private`) where each host directory is bind-mounted
//! at its container path (created on the host when missing, empty). Without root the
//! mounts are skipped with one warning: the files stay under the pod directory.
//!
//! Network: without a [`PodNetwork`] (`network = "host"`) pods share the host's
//! network. With one, a sandbox of a pod that is not `hostNetwork` gets its own network
//! namespace and address (see [`pod_network`](super::pod_network)); its containers join
//! it (`nsenter --net`), removing the sandbox releases both, and [`ProcessRuntime::recover`]
//! removes the namespaces and addresses of sandboxes it has no record of.
//!
//! Limits: as root, a container with CPU or memory limits runs in its own cgroups (see
//! [`cgroups`](super::cgroups)); an exit by SIGKILL with an OOM kill recorded there is
//! reported as `OOMKilled`.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use parking_lot::Mutex;
use rustix::process::Signal;

use super::cgroups::{self, Hierarchy};
use super::pod_network::{Attachment, PodNetwork};
use super::process_container::{format_id, millis, Proc, START_ERROR};
pub use super::process_host::is_mount_point;
use super::process_host::{executable_exists, remove_logs, unmount_below, wrapper_script};
use super::process_state::{self, SandboxRecord};
use super::{
    ContainerConfig, ContainerId, ContainerState, ContainerStatus, PodSandboxConfig, Runtime,
    RuntimeError, SandboxId, SandboxState, SandboxStatus,
};

/// Host processes as containers; pod directories under `root`.
pub struct ProcessRuntime {
    root: PathBuf,
    state: Mutex<State>,
    /// Whether containers with mounts get a private mount namespace (running as root).
    mount_namespaces: bool,
    /// Whether the "mounts skipped" warning was logged already.
    warned_mounts: AtomicBool,
    /// Where container cgroups go, or why limits cannot be applied.
    cgroups: Result<Hierarchy, String>,
    /// Whether the "limits not applied" line was logged already.
    warned_limits: AtomicBool,
    /// Set when a successor takes the processes over (a hot swap): dropping the runtime
    /// then leaves them running.
    detached: AtomicBool,
    /// Pod network namespaces (bridge network), or none (host network).
    network: Option<PodNetwork>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    sandboxes: HashMap<u64, Sandbox>,
    containers: HashMap<u64, Proc>,
}

struct Sandbox {
    namespace: String,
    name: String,
    pod_uid: String,
    dir: PathBuf,
    created: Timestamp,
    ready: bool,
    containers: Vec<u64>,
    /// The pod's own network namespace and address, if it has them.
    attachment: Option<Attachment>,
    /// The pod CIDR the address came from.
    pod_cidr: Option<crate::cidr::Ipv4Cidr>,
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

impl State {
    /// Writes sandbox `key`'s state file; a failure is logged (the runtime keeps working,
    /// only re-adoption after a crash would miss it).
    fn persist(&self, key: u64) {
        let Some(s) = self.sandboxes.get(&key) else {
            return;
        };
        let record = SandboxRecord {
            id: key,
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            uid: s.pod_uid.clone(),
            created_ms: s.created.as_millisecond(),
            ready: s.ready,
            containers: s
                .containers
                .iter()
                .filter_map(|c| self.containers.get(c).map(|p| p.record(*c)))
                .collect(),
            netns: s.attachment.as_ref().map(|a| a.netns.clone()),
            ip: s.attachment.as_ref().map(|a| a.ip),
            pod_cidr: s.pod_cidr.map(|c| c.to_string()),
        };
        if let Err(e) = process_state::write(&s.dir, &record) {
            tracing::warn!(dir = %s.dir.display(), error = %e, "writing the sandbox state failed");
        }
    }
}

impl ProcessRuntime {
    /// A runtime keeping pod directories under `root`, knowing no process yet.
    pub fn new(root: PathBuf) -> ProcessRuntime {
        ProcessRuntime {
            root,
            state: Mutex::new(State::default()),
            mount_namespaces: rustix::process::geteuid().is_root(),
            warned_mounts: AtomicBool::new(false),
            cgroups: cgroups::detect(),
            warned_limits: AtomicBool::new(false),
            detached: AtomicBool::new(false),
            network: None,
        }
    }

    /// A runtime over `root` that knows the sandboxes and containers a previous instance
    /// left there: processes still running (same pid and start time) are adopted, the
    /// others are reported exited.
    pub fn recover(root: PathBuf) -> ProcessRuntime {
        ProcessRuntime::recover_with_network(root, None)
    }

    /// [`ProcessRuntime::recover`] with pod network namespaces (bridge network): those
    /// and the addresses of sandboxes not on record are removed.
    pub fn recover_with_network(root: PathBuf, network: Option<PodNetwork>) -> ProcessRuntime {
        let mut rt = ProcessRuntime::new(root);
        rt.network = network;
        let records = process_state::read_all(&rt.root);
        let mut state = rt.state.lock();
        for (dir, record) in records {
            let key = record.id;
            state.next_id = state.next_id.max(key);
            let mut ids = Vec::new();
            for c in record.containers {
                state.next_id = state.next_id.max(c.id);
                ids.push(c.id);
                let id = c.id;
                let p = Proc::from_record(key, c);
                if p.state == ContainerState::Running {
                    tracing::info!(container = %p.name, pid = ?p.pid, pod = %record.name, "re-adopted a running process");
                }
                state.containers.insert(id, p);
            }
            state.sandboxes.insert(
                key,
                Sandbox {
                    namespace: record.namespace,
                    name: record.name,
                    pod_uid: record.uid,
                    dir,
                    created: millis(record.created_ms),
                    ready: record.ready,
                    containers: ids,
                    attachment: record
                        .netns
                        .zip(record.ip)
                        .map(|(netns, ip)| Attachment { netns, ip }),
                    pod_cidr: record.pod_cidr.and_then(|c| c.parse().ok()),
                },
            );
            state.persist(key);
        }
        let keep: std::collections::HashSet<String> = state
            .sandboxes
            .values()
            .filter_map(|s| s.attachment.as_ref().map(|a| a.netns.clone()))
            .collect();
        drop(state);
        if let Some(network) = &rt.network {
            for gone in network.sweep(&keep) {
                tracing::info!(what = %gone, "removed a pod network namespace or address left by a pod that is gone");
            }
        }
        rt
    }

    /// The path of sandbox `id`'s own network namespace, if it has one.
    pub fn sandbox_netns(&self, id: &SandboxId) -> Option<PathBuf> {
        let key = parse_id("sandbox", &id.0).ok()?;
        let state = self.state.lock();
        let a = state.sandboxes.get(&key)?.attachment.as_ref()?;
        Some(PodNetwork::netns_path(&a.netns))
    }

    /// Hands the processes over to a successor (a hot swap): dropping this runtime then
    /// leaves them running, for the successor's [`ProcessRuntime::recover`] to adopt.
    pub fn detach(&self) {
        self.detached.store(true, Ordering::Relaxed);
    }

    /// The directory holding a pod's sandboxes (its volumes live in `volumes/` below it).
    pub fn pod_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        self.root.join(format!("{namespace}_{name}_{uid}"))
    }

    /// SIGTERMs container `key`'s process group, waits up to `timeout`, then SIGKILLs it.
    async fn stop(&self, key: u64, timeout: Duration) {
        {
            let mut state = self.state.lock();
            let Some(p) = state.containers.get_mut(&key) else {
                return;
            };
            p.poll();
            if p.state != ContainerState::Running {
                return;
            }
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
                if p.state != ContainerState::Running || Instant::now() >= deadline {
                    p.kill_now();
                    let sandbox = p.sandbox;
                    state.persist(sandbox);
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The cgroups of container `key` with `p`'s limits, or none (logged once).
    fn cgroups_for(&self, key: u64, p: &Proc) -> Vec<PathBuf> {
        if p.limits.is_empty() {
            return Vec::new();
        }
        let made = match &self.cgroups {
            Ok(h) => h.create(&format_id(key), p.limits),
            Err(why) => Err(why.clone()),
        };
        match made {
            Ok(dirs) => dirs,
            Err(why) => {
                if !self.warned_limits.swap(true, Ordering::Relaxed) {
                    tracing::warn!(reason = %why, "container CPU and memory limits are not applied");
                }
                Vec::new()
            }
        }
    }

    fn spawn(&self, p: &Proc, dir: &Path, netns: Option<&str>) -> Result<Child, String> {
        let Some((program, args)) = p.argv.split_first() else {
            return Err(format!(
                "container {} has no command: the process runtime runs command and args as host processes and does not read images",
                p.name
            ));
        };
        let path_var = p
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var("PATH").ok())
            .unwrap_or_default();
        if !executable_exists(program, &path_var) {
            return Err(if program.contains('/') {
                format!("exec: {program:?}: stat {program}: no such file or directory")
            } else {
                format!("exec: {program:?}: executable file not found in $PATH")
            });
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log)
            .map_err(|e| format!("log file {}: {e}", p.log.display()))?;
        let err_log = log
            .try_clone()
            .map_err(|e| format!("log file {}: {e}", p.log.display()))?;
        let mut cmd = match netns {
            Some(n) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", PodNetwork::netns_path(n).display()))
                    .arg("--");
                c
            }
            None => Command::new(program),
        };
        // `cmd` runs `first` (after nsenter, if any) with the arguments that follow.
        let in_netns = netns.is_some();
        let mut start = |first: &str| {
            if in_netns {
                cmd.arg(first);
            } else {
                cmd = Command::new(first);
            }
        };
        let mount = !p.mounts.is_empty() && self.mount_namespaces;
        if mount || !p.cgroups.is_empty() {
            let mounts = if mount { p.mounts.as_slice() } else { &[] };
            start(if mount { "unshare" } else { "/bin/sh" });
            if mount {
                cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh"]);
            }
            cmd.arg("-c")
                .arg(wrapper_script(&p.cgroups, mounts, p.working_dir.as_deref()))
                .arg("kubernel-container")
                .arg(program)
                .args(args)
                .current_dir(dir);
        } else {
            if !p.mounts.is_empty() && !self.warned_mounts.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    dir = %dir.display(),
                    "volumes are not mounted at their mountPath: the kubelet does not run as root, so containers get no mount namespace; the volume files stay under the pod directory"
                );
            }
            start(program);
            cmd.args(args)
                .current_dir(p.working_dir.as_deref().map_or(dir, Path::new));
        }
        cmd.env_clear()
            .envs(p.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .process_group(0)
            .spawn()
            .map_err(|e| format!("exec: {program:?}: {e}"))
    }
}

/// How long processes get between SIGTERM and SIGKILL when the runtime is dropped (the
/// kubelet stops).
const STOP_GRACE: Duration = Duration::from_secs(2);

impl Drop for ProcessRuntime {
    fn drop(&mut self) {
        let state = self.state.get_mut();
        // Handed over: the successor owns the state files now.
        if *self.detached.get_mut() {
            return;
        }
        for p in state.containers.values_mut() {
            p.poll();
            p.signal(Signal::TERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            let mut running = false;
            for p in state.containers.values_mut() {
                p.poll();
                running |= p.state == ContainerState::Running;
            }
            if !running {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for p in state.containers.values_mut() {
            p.kill_now();
            cgroups::remove(&p.cgroups);
        }
        let keys: Vec<u64> = state.sandboxes.keys().copied().collect();
        for k in keys {
            state.persist(k);
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
        let dir = self.pod_dir(config.namespace, config.name, config.uid);
        std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::Failed {
            op: format!("create pod directory {}", dir.display()),
            message: e.to_string(),
        })?;
        let id = {
            let mut state = self.state.lock();
            state.next_id += 1;
            state.next_id
        };
        let attachment =
            match (&self.network, config.host_network) {
                (Some(network), false) => {
                    let cidr = config.pod_cidr.ok_or_else(|| RuntimeError::Failed {
                        op: "set up the pod network".into(),
                        message: "the node has no pod CIDR (spec.podCIDR) yet".into(),
                    })?;
                    let netns = network.netns_name(config.uid, &format_id(id));
                    let attached = network.attach(&netns, cidr).await.map_err(|message| {
                        RuntimeError::Failed {
                            op: format!("set up network namespace {netns}"),
                            message,
                        }
                    })?;
                    Some(attached)
                }
                _ => None,
            };
        let mut state = self.state.lock();
        state.sandboxes.insert(
            id,
            Sandbox {
                namespace: config.namespace.to_string(),
                name: config.name.to_string(),
                pod_uid: config.uid.to_string(),
                dir,
                created: Timestamp::now(),
                ready: true,
                containers: Vec::new(),
                pod_cidr: attachment.as_ref().and(config.pod_cidr),
                attachment,
            },
        );
        state.persist(id);
        Ok(SandboxId(format_id(id)))
    }

    async fn stop_pod_sandbox(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        let key = parse_id("sandbox", &id.0)?;
        let containers = {
            let mut state = self.state.lock();
            let containers = match state.sandboxes.get_mut(&key) {
                Some(s) => {
                    s.ready = false;
                    s.containers.clone()
                }
                None => return Ok(()),
            };
            state.persist(key);
            containers
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
                    if let Some(p) = state.containers.remove(c) {
                        cgroups::remove(&p.cgroups);
                    }
                }
            }
            removed
        };
        if let Some(s) = removed {
            if let (Some(network), Some(a)) = (&self.network, &s.attachment) {
                network.detach(&a.netns, s.pod_cidr).await;
            }
            unmount_below(&s.dir);
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
            working_dir: config.working_dir.map(str::to_string),
            mounts: config.mounts.to_vec(),
            limits: config.limits,
            cgroups: Vec::new(),
            log: s.dir.join(format!("{}-{}.log", config.name, format_id(id))),
            state: ContainerState::Created,
            created: Timestamp::now(),
            started: None,
            finished: None,
            exit_code: None,
            reason: String::new(),
            message: String::new(),
            pid: None,
            start_ticks: None,
            child: None,
        };
        state.containers.insert(id, proc);
        state.persist(key);
        Ok(ContainerId(format_id(id)))
    }

    async fn start_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let key = parse_id("container", &id.0)?;
        let mut state = self.state.lock();
        let p = state
            .containers
            .get(&key)
            .ok_or_else(|| not_found("container", &id.0))?;
        if p.state != ContainerState::Created {
            return Err(RuntimeError::Failed {
                op: format!("start container {}", p.name),
                message: format!("container {} is {}", id.0, p.state.label()),
            });
        }
        let (dir, netns) = state
            .sandboxes
            .get(&p.sandbox)
            .map(|s| {
                (
                    s.dir.clone(),
                    s.attachment.as_ref().map(|a| a.netns.clone()),
                )
            })
            .unwrap_or_else(|| (self.root.clone(), None));
        let cgroup_dirs = self.cgroups_for(key, p);
        let Some(p) = state.containers.get_mut(&key) else {
            return Err(not_found("container", &id.0));
        };
        p.cgroups = cgroup_dirs;
        let spawned = self.spawn(p, &dir, netns.as_deref());
        let sandbox = p.sandbox;
        let result = match spawned {
            Ok(child) => {
                p.pid = Some(child.id());
                p.start_ticks = process_state::start_ticks(child.id());
                p.child = Some(child);
                p.state = ContainerState::Running;
                p.started = Some(Timestamp::now());
                Ok(())
            }
            Err(message) => {
                p.state = ContainerState::Exited;
                p.finished = Some(Timestamp::now());
                (p.exit_code, p.reason) = (Some(START_ERROR.0), START_ERROR.1.into());
                p.message = message.clone();
                Err(RuntimeError::Failed {
                    op: format!("start container {}", p.name),
                    message,
                })
            }
        };
        state.persist(sandbox);
        result
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
            cgroups::remove(&p.cgroups);
            remove_logs(&p.log);
            if let Some(s) = state.sandboxes.get_mut(&p.sandbox) {
                s.containers.retain(|c| *c != key);
            }
            state.persist(p.sandbox);
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
        let was = p.state;
        p.poll();
        let (status, sandbox, changed) = (p.status(key), p.sandbox, p.state != was);
        if changed {
            state.persist(sandbox);
        }
        Ok(status)
    }

    async fn list_containers(
        &self,
        sandbox: Option<&SandboxId>,
    ) -> Result<Vec<ContainerStatus>, RuntimeError> {
        let only = sandbox.map(|s| parse_id("sandbox", &s.0)).transpose()?;
        let mut state = self.state.lock();
        let mut changed = Vec::new();
        let list = state
            .containers
            .iter_mut()
            .filter(|(_, p)| only.is_none_or(|s| p.sandbox == s))
            .map(|(k, p)| {
                let was = p.state;
                p.poll();
                if p.state != was {
                    changed.push(p.sandbox);
                }
                p.status(*k)
            })
            .collect();
        for s in changed {
            state.persist(s);
        }
        Ok(list)
    }
}

impl super::NodeRuntime for ProcessRuntime {
    fn pod_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        ProcessRuntime::pod_dir(self, namespace, name, uid)
    }

    fn sandbox_netns(&self, id: &SandboxId) -> Option<PathBuf> {
        ProcessRuntime::sandbox_netns(self, id)
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
        ip: s.attachment.as_ref().map(|a| a.ip),
    }
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

    fn path_env() -> Vec<(String, String)> {
        vec![(
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_default(),
        )]
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
        let mut env = path_env();
        env.push(("WHO".to_string(), "kubelet".to_string()));
        let config = ContainerConfig {
            name: "c",
            image: "busybox",
            command: &command,
            args: &args,
            env: &env,
            working_dir: Some("/tmp"),
            mounts: &[],
            limits: Default::default(),
        };
        let c = rt.create_container(&s, &config).await.expect("create");
        rt.start_container(&c).await.expect("start");
        let status = until_exited(&rt, &c).await;
        assert_eq!(status.exit_code, Some(3));
        assert_eq!(status.reason, "Error");
        let log_path = status.log_path.expect("a log file");
        let log = std::fs::read_to_string(log_path).expect("log");
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
        let env = path_env();
        let config = ContainerConfig {
            name: "stubborn",
            image: "busybox",
            command: &command,
            args: &[],
            env: &env,
            working_dir: None,
            mounts: &[],
            limits: Default::default(),
        };
        let c = rt.create_container(&s, &config).await.expect("create");
        rt.start_container(&c).await.expect("start");
        let log = rt
            .container_status(&c)
            .await
            .expect("status")
            .log_path
            .expect("log path");
        // Stop only once the shell ignores SIGTERM.
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
        for (program, says) in [
            ("/nonexistent/bin/server", "no such file or directory"),
            ("no-such-server", "executable file not found in $PATH"),
        ] {
            let command = strings(&[program]);
            let env = path_env();
            let config = ContainerConfig {
                name: "broken",
                image: "busybox",
                command: &command,
                args: &[],
                env: &env,
                working_dir: None,
                mounts: &[],
                limits: Default::default(),
            };
            let c = rt.create_container(&s, &config).await.expect("create");
            let err = rt.start_container(&c).await.expect_err("no such file");
            assert!(err.to_string().contains(program), "{err}");
            let status = rt.container_status(&c).await.expect("status");
            assert_eq!(
                (status.exit_code, status.reason.as_str()),
                (Some(128), "StartError")
            );
            assert!(status.message.contains(says), "{}", status.message);
        }
    }

    #[tokio::test]
    async fn process_runtime_should_readopt_processes_after_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let rt = ProcessRuntime::new(dir.path().to_path_buf());
        let s = rt.run_pod_sandbox(&sandbox("u4")).await.expect("sandbox");
        let command = strings(&["sleep", "30"]);
        let env = path_env();
        let config = ContainerConfig {
            name: "sleeper",
            image: "busybox",
            command: &command,
            args: &[],
            env: &env,
            working_dir: None,
            mounts: &[],
            limits: Default::default(),
        };
        let c = rt.create_container(&s, &config).await.expect("create");
        rt.start_container(&c).await.expect("start");
        // Handed over (a hot swap): dropping the runtime leaves the process running,
        // and a second runtime over the same root finds it.
        rt.detach();
        drop(rt);
        let again = ProcessRuntime::recover(dir.path().to_path_buf());
        let status = again.container_status(&c).await.expect("status");
        assert_eq!(status.state, ContainerState::Running);
        let sandboxes = again.list_pod_sandboxes().await.expect("list");
        assert_eq!(sandboxes.len(), 1);
        assert_eq!(sandboxes[0].pod_uid, "u4");
        again
            .stop_container(&c, Duration::from_secs(2))
            .await
            .expect("stop");
        // Still a child of this process: its exit status is known.
        let status = again.container_status(&c).await.expect("status");
        assert_eq!(status.state, ContainerState::Exited);
        assert_eq!(status.exit_code, Some(128 + 15), "{status:?}");
    }
}
