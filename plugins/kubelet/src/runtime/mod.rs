//! The container runtime interface the kubelet drives, shaped like the CRI: pod sandboxes
//! (a pod's shared network/identity) holding containers, each created, started, stopped and
//! removed by id, with status and list calls; implementations: [`sim::SimRuntime`] and
//! [`process::ProcessRuntime`].

pub mod cgroups;
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
