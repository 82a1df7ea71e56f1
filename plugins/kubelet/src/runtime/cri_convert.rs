//! Conversions between the kubelet's runtime types and the CRI `runtime.v1` messages:
//! the sandbox and container configs sent, the statuses read back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use k8s_cri::v1 as cri;

use super::cgroups::Limits;
use super::{
    ContainerConfig, ContainerId, ContainerState, ContainerStatus, Mount, PodSandboxConfig,
    SandboxId, SandboxState, SandboxStatus,
};

/// Label naming the pod (upstream's, so `crictl pods --name` works).
pub(super) const POD_NAME: &str = "io.kubernetes.pod.name";
/// Label naming the pod's namespace.
pub(super) const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Label holding the pod's uid.
pub(super) const POD_UID: &str = "io.kubernetes.pod.uid";
/// Label naming the container.
pub(super) const CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// CFS period the CPU limit is a quota of (upstream's 100 ms).
const CPU_PERIOD_US: i64 = 100_000;

/// A pod's identity as the CRI sandbox metadata carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PodIdentity {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub host_network: bool,
}

impl PodIdentity {
    pub(super) fn of(config: &PodSandboxConfig<'_>, attempt: u32) -> PodIdentity {
        PodIdentity {
            name: config.name.to_string(),
            namespace: config.namespace.to_string(),
            uid: config.uid.to_string(),
            attempt,
            host_network: config.host_network,
        }
    }

    /// The pod's log directory: `<root>/<namespace>_<name>_<uid>`.
    pub(super) fn log_dir(&self, root: &Path) -> PathBuf {
        root.join(format!("{}_{}_{}", self.namespace, self.name, self.uid))
    }
}

fn namespaces(host_network: bool) -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: if host_network {
            cri::NamespaceMode::Node
        } else {
            cri::NamespaceMode::Pod
        } as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..cri::NamespaceOption::default()
    }
}

/// The CRI sandbox config of pod `p`, its logs under `log_root`.
pub(super) fn sandbox_config(p: &PodIdentity, log_root: &Path) -> cri::PodSandboxConfig {
    let labels = HashMap::from([
        (POD_NAME.to_string(), p.name.clone()),
        (POD_NAMESPACE.to_string(), p.namespace.clone()),
        (POD_UID.to_string(), p.uid.clone()),
    ]);
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: p.name.clone(),
            uid: p.uid.clone(),
            namespace: p.namespace.clone(),
            attempt: p.attempt,
        }),
        hostname: if p.host_network {
            String::new()
        } else {
            p.name.chars().take(63).collect()
        },
        log_directory: p.log_dir(log_root).to_string_lossy().into_owned(),
        labels,
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces(p.host_network)),
                ..cri::LinuxSandboxSecurityContext::default()
            }),
            ..cri::LinuxPodSandboxConfig::default()
        }),
        ..cri::PodSandboxConfig::default()
    }
}

/// The identity of a sandbox the runtime reports (`None`: not made by a kubelet).
pub(super) fn identity_of(status: &cri::PodSandboxStatus) -> Option<PodIdentity> {
    let m = status.metadata.as_ref()?;
    let host_network = status
        .linux
        .as_ref()
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.as_ref())
        .is_some_and(|o| o.network == cri::NamespaceMode::Node as i32);
    Some(PodIdentity {
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        uid: m.uid.clone(),
        attempt: m.attempt,
        host_network,
    })
}

/// CPU and memory limits as CRI `LinuxContainerResources` (shares follow the CPU limit,
/// as upstream's do when the request defaults to it).
pub(super) fn resources(limits: Limits) -> cri::LinuxContainerResources {
    let mut r = cri::LinuxContainerResources::default();
    if let Some(m) = limits.cpu_millis {
        let millis = i64::try_from(m).unwrap_or(i64::MAX / CPU_PERIOD_US);
        r.cpu_period = CPU_PERIOD_US;
        r.cpu_quota = (millis * CPU_PERIOD_US / 1000).max(1000);
        r.cpu_shares = (millis * 1024 / 1000).max(2);
    }
    if let Some(b) = limits.memory_bytes {
        r.memory_limit_in_bytes = i64::try_from(b).unwrap_or(i64::MAX);
    }
    r
}

fn mount(m: &Mount) -> cri::Mount {
    cri::Mount {
        container_path: m.container_path.clone(),
        host_path: m.host_path.to_string_lossy().into_owned(),
        readonly: m.read_only,
        ..cri::Mount::default()
    }
}

/// The CRI config of a container of pod `p`: instance `attempt`, its log at
/// `<name>/<attempt>.log` under the sandbox's log directory.
pub(super) fn container_config(
    p: &PodIdentity,
    c: &ContainerConfig<'_>,
    attempt: u32,
) -> cri::ContainerConfig {
    let labels = HashMap::from([
        (POD_NAME.to_string(), p.name.clone()),
        (POD_NAMESPACE.to_string(), p.namespace.clone()),
        (POD_UID.to_string(), p.uid.clone()),
        (CONTAINER_NAME.to_string(), c.name.to_string()),
    ]);
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.to_string(),
            attempt,
        }),
        image: Some(cri::ImageSpec {
            image: c.image.to_string(),
            ..cri::ImageSpec::default()
        }),
        command: c.command.to_vec(),
        args: c.args.to_vec(),
        working_dir: c.working_dir.unwrap_or_default().to_string(),
        envs: c
            .env
            .iter()
            .map(|(key, value)| cri::KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        mounts: c.mounts.iter().map(mount).collect(),
        labels,
        log_path: format!("{}/{attempt}.log", c.name),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources(c.limits)),
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(namespaces(p.host_network)),
                ..cri::LinuxContainerSecurityContext::default()
            }),
        }),
        ..cri::ContainerConfig::default()
    }
}

/// A CRI timestamp (nanoseconds since the epoch; 0: never).
pub(super) fn time(nanos: i64) -> Option<Timestamp> {
    (nanos > 0)
        .then(|| Timestamp::from_nanosecond(i128::from(nanos)).ok())
        .flatten()
}

/// A sandbox as the kubelet sees it.
pub(super) fn sandbox_status(
    id: &str,
    metadata: Option<&cri::PodSandboxMetadata>,
    state: i32,
    created_at: i64,
    ip: Option<&str>,
) -> SandboxStatus {
    SandboxStatus {
        id: SandboxId(id.to_string()),
        pod_uid: metadata.map(|m| m.uid.clone()).unwrap_or_default(),
        state: if state == cri::PodSandboxState::SandboxReady as i32 {
            SandboxState::Ready
        } else {
            SandboxState::NotReady
        },
        created_at: time(created_at).unwrap_or(Timestamp::UNIX_EPOCH),
        ip: ip.and_then(|ip| ip.parse().ok()),
    }
}

/// A container as the kubelet sees it, in sandbox `sandbox`.
pub(super) fn container_status(s: &cri::ContainerStatus, sandbox: &SandboxId) -> ContainerStatus {
    let state = match cri::ContainerState::try_from(s.state) {
        Ok(cri::ContainerState::ContainerCreated) => ContainerState::Created,
        Ok(cri::ContainerState::ContainerRunning) => ContainerState::Running,
        // Unknown (its shim is gone): as good as exited, so it is restarted.
        _ => ContainerState::Exited,
    };
    let exited = state == ContainerState::Exited;
    ContainerStatus {
        id: ContainerId(s.id.clone()),
        sandbox: sandbox.clone(),
        name: s
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default(),
        state,
        created_at: time(s.created_at).unwrap_or(Timestamp::UNIX_EPOCH),
        started_at: time(s.started_at),
        finished_at: if exited {
            time(s.finished_at).or_else(|| Some(Timestamp::now()))
        } else {
            None
        },
        exit_code: exited.then_some(s.exit_code),
        reason: if exited && s.reason.is_empty() {
            if s.exit_code == 0 {
                "Completed"
            } else {
                "Error"
            }
            .into()
        } else {
            s.reason.clone()
        },
        message: s.message.clone(),
        log_path: (!s.log_path.is_empty()).then(|| PathBuf::from(&s.log_path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(host_network: bool) -> PodIdentity {
        PodIdentity {
            name: "web".into(),
            namespace: "default".into(),
            uid: "u1".into(),
            attempt: 0,
            host_network,
        }
    }

    #[test]
    fn sandbox_config_should_put_logs_under_the_pod_directory_and_pick_the_network() {
        let c = sandbox_config(&pod(true), Path::new("/var/log/pods"));
        assert_eq!(c.log_directory, "/var/log/pods/default_web_u1");
        let ns = c
            .linux
            .and_then(|l| l.security_context)
            .and_then(|s| s.namespace_options)
            .expect("namespace options");
        assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
        let c = sandbox_config(&pod(false), Path::new("/l"));
        assert_eq!(c.hostname, "web");
    }

    #[test]
    fn resources_should_turn_limits_into_cfs_quota_shares_and_bytes() {
        let r = resources(Limits {
            memory_bytes: Some(64 << 20),
            cpu_millis: Some(250),
        });
        assert_eq!(
            (r.cpu_period, r.cpu_quota, r.cpu_shares),
            (100_000, 25_000, 256)
        );
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
        assert_eq!(resources(Limits::default()).cpu_quota, 0);
    }

    #[test]
    fn container_status_should_say_why_a_container_exited() {
        let s = cri::ContainerStatus {
            id: "c1".into(),
            state: cri::ContainerState::ContainerExited as i32,
            exit_code: 1,
            started_at: 1_000_000_000,
            finished_at: 2_000_000_000,
            log_path: "/l/x/0.log".into(),
            ..cri::ContainerStatus::default()
        };
        let c = container_status(&s, &SandboxId("s".into()));
        assert_eq!(c.state, ContainerState::Exited);
        assert_eq!((c.exit_code, c.reason.as_str()), (Some(1), "Error"));
        assert_eq!(c.log_path, Some(PathBuf::from("/l/x/0.log")));
        assert!(c.started_at.is_some());
    }
}
