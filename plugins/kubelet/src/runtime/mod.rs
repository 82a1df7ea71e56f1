//! The container runtime interface the kubelet drives, shaped like the CRI: pod sandboxes
//! (a pod's shared network/identity) holding containers, each created, started, stopped and
//! removed by id, with status and list calls; implementations: [`sim::SimRuntime`],
//! [`process::ProcessRuntime`] and [`cri::CriRuntime`] (a CRI client: containerd, CRI-O).
//! [`NodeRuntime`] adds what the real-node agent needs besides: pod directories, images,
//! exec in a container, runtime health.

pub mod cgroups;
pub mod cri;
mod cri_convert;
mod cri_node;
pub mod pod_network;
pub mod process;
mod process_container;
mod process_host;
mod process_state;
pub mod sim;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;

use crate::cidr::Ipv4Cidr;

/// A runtime call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// No sandbox or container has this id (already removed). Retrying does not help.
    #[error("{what} {id:?} not found")]
    NotFound {
        /// `sandbox` or `container`.
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// Every pod address of the node's pod CIDR is in use. Retrying helps once a pod is gone.
    #[error("no free pod IP in {cidr}")]
    AddressesExhausted {
        /// The exhausted range.
        cidr: Ipv4Cidr,
    },
    /// The runtime could not carry out `op`. Retrying may help.
    #[error("{op}: {message}")]
    Failed {
        /// The operation, e.g. `start container web`.
        op: String,
        /// Why.
        message: String,
    },
}

/// Identifies a pod sandbox inside one runtime.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SandboxId(pub String);

/// Identifies a container inside one runtime.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerId(pub String);

/// What a sandbox is created from (CRI `PodSandboxConfig`).
#[derive(Debug, Clone, Copy)]
pub struct PodSandboxConfig<'a> {
    /// Pod name.
    pub name: &'a str,
    /// Pod namespace.
    pub namespace: &'a str,
    /// Pod uid.
    pub uid: &'a str,
    /// True for `hostNetwork` pods: no pod address is allocated.
    pub host_network: bool,
    /// The node's pod CIDR the sandbox's address comes from (CRI `UpdateRuntimeConfig`
    /// sets it per runtime; a runtime serving many simulated nodes needs it per sandbox).
    pub pod_cidr: Option<Ipv4Cidr>,
    /// The pod's address before this kubelet restarted; a runtime that can keep it
    /// (sim) does, so a re-adopted pod keeps its IP.
    pub previous_ip: Option<Ipv4Addr>,
}

/// What a container is created from (CRI `ContainerConfig`).
#[derive(Debug, Clone, Copy)]
pub struct ContainerConfig<'a> {
    /// Container name, unique in the pod.
    pub name: &'a str,
    /// Image reference as written in the pod.
    pub image: &'a str,
    /// Entrypoint (`command`).
    pub command: &'a [String],
    /// Arguments (`args`).
    pub args: &'a [String],
    /// Environment variables, resolved (`env`, `envFrom`).
    pub env: &'a [(String, String)],
    /// Working directory (`workingDir`); `None`: the runtime's default.
    pub working_dir: Option<&'a str>,
    /// Host directories to show the container at a path (CRI `Mount`).
    pub mounts: &'a [Mount],
    /// CPU and memory limits (CRI `LinuxContainerResources`).
    pub limits: cgroups::Limits,
}

/// A host path shown to a container at another path (CRI `Mount`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The host directory or file.
    pub host_path: PathBuf,
    /// Where the container sees it (`volumeMounts[].mountPath`).
    pub container_path: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Whether a sandbox is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxState {
    /// Network and identity are set up; containers can run.
    Ready,
    /// Stopped (or never finished starting).
    NotReady,
}

/// A sandbox as the runtime reports it (CRI `PodSandboxStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxStatus {
    /// Its id.
    pub id: SandboxId,
    /// The uid of the pod it belongs to.
    pub pod_uid: String,
    /// Ready or not.
    pub state: SandboxState,
    /// When it was created.
    pub created_at: Timestamp,
    /// The pod's address, if it has its own network.
    pub ip: Option<Ipv4Addr>,
}

/// Lifecycle state of a container (CRI `ContainerState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Finished (see the exit code).
    Exited,
}

impl ContainerState {
    /// The `container_state` label value of `kubelet_running_containers`.
    pub fn label(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Exited => "exited",
        }
    }
}

/// A container as the runtime reports it (CRI `ContainerStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    /// Its id.
    pub id: ContainerId,
    /// The sandbox it runs in.
    pub sandbox: SandboxId,
    /// Container name.
    pub name: String,
    /// Lifecycle state.
    pub state: ContainerState,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it started, once started.
    pub started_at: Option<Timestamp>,
    /// When it exited, once exited.
    pub finished_at: Option<Timestamp>,
    /// Exit code, once exited.
    pub exit_code: Option<i32>,
    /// Why it is in this state (`Completed`, `Error`, `OOMKilled`, ...), may be empty.
    pub reason: String,
    /// Human-readable detail of `reason` (why a start failed), may be empty.
    pub message: String,
    /// The file holding this container's output, if the runtime keeps one.
    pub log_path: Option<PathBuf>,
}

/// A container runtime: sandboxes and containers, created, started, stopped, removed and
/// inspected by id. All calls are idempotent where the CRI's are (stopping a stopped
/// container succeeds).
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Runtime name, used as the scheme of container ids in pod status (`sim://...`).
    fn name(&self) -> &'static str;

    /// Runtime version, reported as the node's `containerRuntimeVersion` (`sim://0.1.0`).
    fn version(&self) -> String;

    /// Creates and starts a pod sandbox (CRI `RunPodSandbox`).
    async fn run_pod_sandbox(
        &self,
        config: &PodSandboxConfig<'_>,
    ) -> Result<SandboxId, RuntimeError>;

    /// Stops a sandbox and every container in it (CRI `StopPodSandbox`).
    async fn stop_pod_sandbox(&self, id: &SandboxId) -> Result<(), RuntimeError>;

    /// Removes a sandbox and its containers, releasing its address (CRI `RemovePodSandbox`).
    /// Removing an unknown sandbox succeeds.
    async fn remove_pod_sandbox(&self, id: &SandboxId) -> Result<(), RuntimeError>;

    /// Reports one sandbox (CRI `PodSandboxStatus`).
    async fn pod_sandbox_status(&self, id: &SandboxId) -> Result<SandboxStatus, RuntimeError>;

    /// Reports every sandbox (CRI `ListPodSandbox`).
    async fn list_pod_sandboxes(&self) -> Result<Vec<SandboxStatus>, RuntimeError>;

    /// Creates a container in a sandbox (CRI `CreateContainer`).
    async fn create_container(
        &self,
        sandbox: &SandboxId,
        config: &ContainerConfig<'_>,
    ) -> Result<ContainerId, RuntimeError>;

    /// Starts a created container (CRI `StartContainer`).
    async fn start_container(&self, id: &ContainerId) -> Result<(), RuntimeError>;

    /// Stops a container, forcibly after `timeout` (CRI `StopContainer`).
    async fn stop_container(&self, id: &ContainerId, timeout: Duration)
        -> Result<(), RuntimeError>;

    /// Removes a container (CRI `RemoveContainer`); removing an unknown one succeeds.
    async fn remove_container(&self, id: &ContainerId) -> Result<(), RuntimeError>;

    /// Reports one container (CRI `ContainerStatus`).
    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus, RuntimeError>;

    /// Reports the containers of one sandbox, or of all sandboxes (CRI `ListContainers`).
    async fn list_containers(
        &self,
        sandbox: Option<&SandboxId>,
    ) -> Result<Vec<ContainerStatus>, RuntimeError>;
}

/// A container's `imagePullPolicy` (CRI runtimes; the process runtime pulls nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull every time the container starts.
    Always,
    /// Pull only when the image is not on the node.
    IfNotPresent,
    /// Never pull: the image must be on the node.
    Never,
}

impl PullPolicy {
    /// The container's policy: as written, or upstream's default (`Always` for a `:latest`
    /// or untagged image without a digest, else `IfNotPresent`).
    pub fn of(image: &str, written: Option<&str>) -> PullPolicy {
        match written {
            Some("Always") => PullPolicy::Always,
            Some("Never") => PullPolicy::Never,
            Some("IfNotPresent") => PullPolicy::IfNotPresent,
            _ => {
                let name = image.rsplit('/').next().unwrap_or(image);
                let latest = !image.contains('@')
                    && name.split_once(':').is_none_or(|(_, tag)| tag == "latest");
                if latest {
                    PullPolicy::Always
                } else {
                    PullPolicy::IfNotPresent
                }
            }
        }
    }
}

/// Why a container's image is not there (the container waits with `reason`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct ImageError {
    /// `ErrImagePull` (retrying may help, with backoff) or `ErrImageNeverPull` (the
    /// image must be imported first).
    pub reason: &'static str,
    /// What went wrong, naming the image.
    pub message: String,
}

/// What an exec in a container printed and how it ended (CRI `ExecSyncResponse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The command's exit code.
    pub exit_code: i32,
    /// Its standard output and error, in that order.
    pub output: Vec<u8>,
}

/// What the real-node agent needs of a runtime besides the CRI calls of [`Runtime`].
#[async_trait::async_trait]
pub trait NodeRuntime: Runtime {
    /// The directory holding pod `namespace/name` (uid `uid`)'s volumes.
    fn pod_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf;

    /// The network namespace exec handlers run in on the host, if the pod has its own
    /// and the runtime execs on the host.
    fn sandbox_netns(&self, _id: &SandboxId) -> Option<PathBuf> {
        None
    }

    /// Whether exec probes and hooks run inside the container ([`Self::exec_sync`]);
    /// otherwise they run on the host.
    fn execs_in_containers(&self) -> bool {
        false
    }

    /// Whether container logs are in the CRI log format (`<time> <stream> <F|P> <text>`
    /// per line) rather than the raw output.
    fn cri_logs(&self) -> bool {
        false
    }

    /// Runs `command` inside container `id`, killed after `timeout` (CRI `ExecSync`).
    async fn exec_sync(
        &self,
        id: &ContainerId,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let _ = (command, timeout);
        Err(RuntimeError::Failed {
            op: format!("exec in container {}", id.0),
            message: format!("the {} runtime runs exec handlers on the host", self.name()),
        })
    }

    /// Makes sure `image` is on the node as `policy` says (CRI `ImageStatus`,
    /// `PullImage`); `Ok` carries the `Pulled` Event's message.
    async fn ensure_image(&self, image: &str, policy: PullPolicy) -> Result<String, ImageError> {
        let _ = policy;
        Ok(format!(
            "Container image {image:?} not pulled: image not pulled by the {} runtime (it runs the container's command on the host)",
            self.name()
        ))
    }

    /// Tells the runtime the node's pod CIDR (CRI `UpdateRuntimeConfig`; containerd
    /// renders it into its CNI config template).
    async fn update_pod_cidr(&self, cidr: Ipv4Cidr) -> Result<(), RuntimeError> {
        let _ = cidr;
        Ok(())
    }

    /// Checks that the runtime answers and is ready; `Ok` carries its version (the
    /// node's `containerRuntimeVersion`), `Err` why it is not usable.
    async fn health(&self) -> Result<String, String> {
        Ok(self.version())
    }
}
