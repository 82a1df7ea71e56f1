//! The CRI runtime: the kubelet as a client of a CRI runtime (containerd, CRI-O) over its
//! gRPC Unix socket (`runtime.v1`). Pod sandboxes and containers live in the runtime,
//! so they survive a kubelet restart and are re-adopted by uid; every call is counted in
//! `kubelet_runtime_operations_total{operation_type}` and timed. The channel connects
//! lazily and again after the runtime restarts, so a runtime that is down at start or
//! goes away only fails calls (and makes the node NotReady) until it is back. Images,
//! exec, health: `cri_node.rs`.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint, Uri};

use super::cri_convert::{self, PodIdentity};
use super::{
    ContainerConfig, ContainerId, ContainerStatus, NodeRuntime, PodSandboxConfig, Runtime,
    RuntimeError, SandboxId, SandboxStatus,
};
use crate::metrics::Metrics;

/// Longest any CRI call may take (a pull of a large image included).
const CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// A CRI runtime reached over a Unix socket.
pub struct CriRuntime {
    pub(super) endpoint: String,
    pub(super) channel: Channel,
    pub(super) metrics: Metrics,
    /// Where pod directories (volumes) live.
    pub(super) root: PathBuf,
    /// Where container logs go (`pod_log_dir`).
    pub(super) log_root: PathBuf,
    /// The runtime's name and version (`containerd://1.6.20`), once it answered.
    pub(super) version: Mutex<Option<String>>,
    /// Sandboxes seen, by id, with the pod they belong to (the CRI's CreateContainer
    /// needs the sandbox config again).
    pub(super) sandboxes: Mutex<HashMap<String, PodIdentity>>,
    /// The sandbox of each container seen (CRI ContainerStatus does not say it).
    pub(super) containers: Mutex<HashMap<String, SandboxId>>,
    /// Whether pods that are not `hostNetwork` need the runtime's pod network (its CNI).
    pub(super) pod_network: bool,
}

/// The socket path of a `unix://` endpoint.
fn socket_path(endpoint: &str) -> Result<PathBuf, String> {
    endpoint
        .strip_prefix("unix://")
        .filter(|p| p.starts_with('/'))
        .map(PathBuf::from)
        .ok_or_else(|| {
            format!("runtime_endpoint {endpoint:?}: not a unix:// address with an absolute path")
        })
}

impl CriRuntime {
    /// A client of the runtime at `endpoint` (`unix:///run/containerd/containerd.sock`);
    /// nothing is contacted yet. Must be called inside a tokio runtime.
    pub fn new(
        endpoint: &str,
        root: PathBuf,
        log_root: PathBuf,
        pod_network: bool,
        metrics: Metrics,
    ) -> Result<CriRuntime, String> {
        let path = socket_path(endpoint)?;
        // The URI is a placeholder: the connector dials the socket.
        let channel = Endpoint::from_static("http://cri.local")
            .connect_timeout(Duration::from_secs(2))
            .timeout(CALL_TIMEOUT)
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(&path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }));
        Ok(CriRuntime {
            endpoint: endpoint.to_string(),
            channel,
            metrics,
            root,
            log_root,
            version: Mutex::new(None),
            sandboxes: Mutex::new(HashMap::new()),
            containers: Mutex::new(HashMap::new()),
            pod_network,
        })
    }

    pub(super) fn runtime_client(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    pub(super) fn image_client(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel.clone())
    }

    /// Runs CRI call `operation` (upstream's operation_type label), counting and timing
    /// it; `what` names the object for errors.
    pub(super) async fn call<T, Fut>(
        &self,
        operation: &'static str,
        what: &str,
        call: Fut,
    ) -> Result<T, RuntimeError>
    where
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let started = Instant::now();
        let result = call.await;
        self.metrics
            .runtime_operation(operation, started.elapsed().as_secs_f64(), result.is_err());
        result.map(tonic::Response::into_inner).map_err(|status| {
            if status.code() == tonic::Code::NotFound {
                return RuntimeError::NotFound {
                    what: if operation.contains("sandbox") {
                        "sandbox"
                    } else {
                        "container"
                    },
                    id: what.to_string(),
                };
            }
            RuntimeError::Failed {
                op: format!("{operation} {what}"),
                message: self.explain(&status),
            }
        })
    }

    /// A gRPC failure in words, naming the endpoint when it could not be reached.
    fn explain(&self, status: &tonic::Status) -> String {
        let unreachable = status.code() == tonic::Code::Unavailable
            || status.message().contains("transport error");
        if unreachable {
            format!(
                "container runtime at {} is unreachable: {}",
                self.endpoint,
                status.message()
            )
        } else {
            format!("{:?}: {}", status.code(), status.message())
        }
    }

    /// The pod of sandbox `id`: known, or read back from the runtime.
    async fn identity(&self, id: &SandboxId) -> Result<PodIdentity, RuntimeError> {
        if let Some(p) = self.sandboxes.lock().get(&id.0) {
            return Ok(p.clone());
        }
        let status = self.sandbox_status_raw(id).await?;
        let p = cri_convert::identity_of(&status).ok_or_else(|| RuntimeError::Failed {
            op: format!("read sandbox {}", id.0),
            message: "the runtime reports no pod metadata".into(),
        })?;
        self.sandboxes.lock().insert(id.0.clone(), p.clone());
        Ok(p)
    }

    async fn sandbox_status_raw(
        &self,
        id: &SandboxId,
    ) -> Result<cri::PodSandboxStatus, RuntimeError> {
        let mut client = self.runtime_client();
        let request = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.0.clone(),
            verbose: false,
        };
        let response = self
            .call(
                "podsandbox_status",
                &id.0,
                client.pod_sandbox_status(request),
            )
            .await?;
        response.status.ok_or_else(|| RuntimeError::NotFound {
            what: "sandbox",
            id: id.0.clone(),
        })
    }

    /// The sandbox of container `id`: known, or listed.
    async fn sandbox_of(&self, id: &ContainerId) -> Result<SandboxId, RuntimeError> {
        if let Some(s) = self.containers.lock().get(&id.0) {
            return Ok(s.clone());
        }
        let mut client = self.runtime_client();
        let request = cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                id: id.0.clone(),
                ..cri::ContainerFilter::default()
            }),
        };
        let list = self
            .call("list_containers", &id.0, client.list_containers(request))
            .await?;
        let c = list
            .containers
            .into_iter()
            .next()
            .ok_or_else(|| RuntimeError::NotFound {
                what: "container",
                id: id.0.clone(),
            })?;
        let sandbox = SandboxId(c.pod_sandbox_id);
        self.containers.lock().insert(id.0.clone(), sandbox.clone());
        Ok(sandbox)
    }
}

#[async_trait::async_trait]
impl Runtime for CriRuntime {
    fn name(&self) -> &'static str {
        match self.version.lock().as_deref() {
            Some(v) if v.starts_with("cri-o") => "cri-o",
            _ => "containerd",
        }
    }

    fn version(&self) -> String {
        self.version
            .lock()
            .clone()
            .unwrap_or_else(|| "containerd://unknown".into())
    }

    async fn run_pod_sandbox(
        &self,
        config: &PodSandboxConfig<'_>,
    ) -> Result<SandboxId, RuntimeError> {
        // A new attempt for each sandbox the pod had (their names must differ).
        let attempt = self
            .list_pod_sandboxes()
            .await?
            .iter()
            .filter(|s| s.pod_uid == config.uid)
            .count();
        let pod = PodIdentity::of(config, u32::try_from(attempt).unwrap_or(u32::MAX));
        let log_dir = pod.log_dir(&self.log_root);
        std::fs::create_dir_all(&log_dir).map_err(|e| RuntimeError::Failed {
            op: format!("create pod log directory {}", log_dir.display()),
            message: e.to_string(),
        })?;
        let dir = NodeRuntime::pod_dir(self, config.namespace, config.name, config.uid);
        std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::Failed {
            op: format!("create pod directory {}", dir.display()),
            message: e.to_string(),
        })?;
        let request = cri::RunPodSandboxRequest {
            config: Some(cri_convert::sandbox_config(&pod, &self.log_root)),
            runtime_handler: String::new(),
        };
        let what = format!("{}/{}", config.namespace, config.name);
        let mut client = self.runtime_client();
        let id = self
            .call("run_podsandbox", &what, client.run_pod_sandbox(request))
            .await?
            .pod_sandbox_id;
        self.sandboxes.lock().insert(id.clone(), pod);
        Ok(SandboxId(id))
    }

    async fn stop_pod_sandbox(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        let mut client = self.runtime_client();
        let request = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.0.clone(),
        };
        match self
            .call("stop_podsandbox", &id.0, client.stop_pod_sandbox(request))
            .await
        {
            Err(RuntimeError::NotFound { .. }) => Ok(()),
            other => other.map(drop),
        }
    }

    async fn remove_pod_sandbox(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        // The CRI removes a running sandbox only once stopped.
        self.stop_pod_sandbox(id).await?;
        let pod = self.identity(id).await.ok();
        let mut client = self.runtime_client();
        let request = cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.0.clone(),
        };
        let result = match self
            .call(
                "remove_podsandbox",
                &id.0,
                client.remove_pod_sandbox(request),
            )
            .await
        {
            Err(RuntimeError::NotFound { .. }) => Ok(()),
            other => other.map(drop),
        };
        if result.is_ok() {
            self.sandboxes.lock().remove(&id.0);
            self.containers.lock().retain(|_, s| s != id);
            // The pod is gone with its last sandbox: so are its logs (upstream's
            // garbage collection does the same later).
            if let Some(dir) = pod.map(|p| p.log_dir(&self.log_root)) {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(dir = %dir.display(), error = %e, "removing the pod's logs failed");
                    }
                }
            }
        }
        result
    }

    async fn pod_sandbox_status(&self, id: &SandboxId) -> Result<SandboxStatus, RuntimeError> {
        let s = self.sandbox_status_raw(id).await?;
        let ip = s
            .network
            .as_ref()
            .map(|n| n.ip.as_str())
            .filter(|ip| !ip.is_empty());
        Ok(cri_convert::sandbox_status(
            &s.id,
            s.metadata.as_ref(),
            s.state,
            s.created_at,
            ip,
        ))
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<SandboxStatus>, RuntimeError> {
        let mut client = self.runtime_client();
        let request = cri::ListPodSandboxRequest { filter: None };
        let list = self
            .call("list_podsandbox", "", client.list_pod_sandbox(request))
            .await?;
        Ok(list
            .items
            .iter()
            .map(|s| {
                cri_convert::sandbox_status(&s.id, s.metadata.as_ref(), s.state, s.created_at, None)
            })
            .collect())
    }

    async fn create_container(
        &self,
        sandbox: &SandboxId,
        config: &ContainerConfig<'_>,
    ) -> Result<ContainerId, RuntimeError> {
        let pod = self.identity(sandbox).await?;
        // Instances of one container are numbered, as their log files are.
        let attempt = self
            .list_raw(Some(sandbox))
            .await?
            .iter()
            .filter(|c| c.metadata.as_ref().is_some_and(|m| m.name == config.name))
            .filter_map(|c| c.metadata.as_ref().map(|m| m.attempt + 1))
            .max()
            .unwrap_or(0);
        let log_dir = pod.log_dir(&self.log_root).join(config.name);
        std::fs::create_dir_all(&log_dir).map_err(|e| RuntimeError::Failed {
            op: format!("create container log directory {}", log_dir.display()),
            message: e.to_string(),
        })?;
        let request = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.0.clone(),
            config: Some(cri_convert::container_config(&pod, config, attempt)),
            sandbox_config: Some(cri_convert::sandbox_config(&pod, &self.log_root)),
        };
        let what = format!("{}/{}/{}", pod.namespace, pod.name, config.name);
        let mut client = self.runtime_client();
        let id = self
            .call("create_container", &what, client.create_container(request))
            .await?
            .container_id;
        self.containers.lock().insert(id.clone(), sandbox.clone());
        Ok(ContainerId(id))
    }

    async fn start_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let mut client = self.runtime_client();
        let request = cri::StartContainerRequest {
            container_id: id.0.clone(),
        };
        self.call("start_container", &id.0, client.start_container(request))
            .await
            .map(drop)
    }

    async fn stop_container(
        &self,
        id: &ContainerId,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        let mut client = self.runtime_client();
        let request = cri::StopContainerRequest {
            container_id: id.0.clone(),
            timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        };
        match self
            .call("stop_container", &id.0, client.stop_container(request))
            .await
        {
            Err(RuntimeError::NotFound { .. }) => Ok(()),
            other => other.map(drop),
        }
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let mut client = self.runtime_client();
        let request = cri::RemoveContainerRequest {
            container_id: id.0.clone(),
        };
        let result = match self
            .call("remove_container", &id.0, client.remove_container(request))
            .await
        {
            Err(RuntimeError::NotFound { .. }) => Ok(()),
            other => other.map(drop),
        };
        if result.is_ok() {
            self.containers.lock().remove(&id.0);
        }
        result
    }

    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus, RuntimeError> {
        let sandbox = self.sandbox_of(id).await?;
        let mut client = self.runtime_client();
        let request = cri::ContainerStatusRequest {
            container_id: id.0.clone(),
            verbose: false,
        };
        let status = self
            .call("container_status", &id.0, client.container_status(request))
            .await?
            .status
            .ok_or_else(|| RuntimeError::NotFound {
                what: "container",
                id: id.0.clone(),
            })?;
        Ok(cri_convert::container_status(&status, &sandbox))
    }

    async fn list_containers(
        &self,
        sandbox: Option<&SandboxId>,
    ) -> Result<Vec<ContainerStatus>, RuntimeError> {
        let mut out = Vec::new();
        for c in self.list_raw(sandbox).await? {
            self.containers
                .lock()
                .insert(c.id.clone(), SandboxId(c.pod_sandbox_id.clone()));
            match self.container_status(&ContainerId(c.id)).await {
                Ok(s) => out.push(s),
                // Removed since the list.
                Err(RuntimeError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

impl CriRuntime {
    async fn list_raw(
        &self,
        sandbox: Option<&SandboxId>,
    ) -> Result<Vec<cri::Container>, RuntimeError> {
        let mut client = self.runtime_client();
        let request = cri::ListContainersRequest {
            filter: sandbox.map(|s| cri::ContainerFilter {
                pod_sandbox_id: s.0.clone(),
                ..cri::ContainerFilter::default()
            }),
        };
        let what = sandbox.map_or("", |s| s.0.as_str());
        Ok(self
            .call("list_containers", what, client.list_containers(request))
            .await?
            .containers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_should_take_only_absolute_unix_addresses() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock"),
            Ok(PathBuf::from("/run/containerd/containerd.sock"))
        );
        assert!(socket_path("tcp://127.0.0.1:1").is_err());
        assert!(socket_path("unix://relative.sock").is_err());
    }
}
