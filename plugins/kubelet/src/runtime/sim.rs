//! The `sim` runtime: sandboxes and containers that exist only as a few bytes in memory;
//! containers "run" the moment they start, and pod IPs come from each node's pod CIDR.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use jiff::Timestamp;
use parking_lot::Mutex;

use super::{
    ContainerConfig, ContainerId, ContainerState, ContainerStatus, PodSandboxConfig, Runtime,
    RuntimeError, SandboxId, SandboxState, SandboxStatus,
};
use crate::cidr::Ipv4Cidr;

/// An in-memory runtime for simulated nodes; one instance serves every simulated node.
#[derive(Default)]
pub struct SimRuntime {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    sandboxes: HashMap<u64, Sandbox>,
    containers: HashMap<u64, Container>,
    pools: HashMap<Ipv4Cidr, AddressPool>,
}

struct Sandbox {
    pod_uid: Box<str>,
    cidr: Option<Ipv4Cidr>,
    ip: Option<Ipv4Addr>,
    created: Timestamp,
    ready: bool,
    containers: Vec<u64>,
}

struct Container {
    sandbox: u64,
    name: Box<str>,
    state: ContainerState,
    created: Timestamp,
    started: Option<Timestamp>,
    finished: Option<Timestamp>,
}

/// Which addresses of one pod CIDR are taken: one bit per address.
struct AddressPool {
    used: Vec<u64>,
}

impl AddressPool {
    fn new(cidr: Ipv4Cidr) -> Self {
        let words = cidr.size().div_ceil(64);
        AddressPool {
            used: vec![0; usize::try_from(words).unwrap_or(0)],
        }
    }

    fn is_used(&self, offset: u64) -> bool {
        let (word, bit) = (offset / 64, offset % 64);
        usize::try_from(word)
            .ok()
            .and_then(|w| self.used.get(w))
            .is_some_and(|w| w & (1 << bit) != 0)
    }

    fn set(&mut self, offset: u64, used: bool) {
        let (word, bit) = (offset / 64, offset % 64);
        if let Some(w) = usize::try_from(word)
            .ok()
            .and_then(|w| self.used.get_mut(w))
        {
            if used {
                *w |= 1 << bit;
            } else {
                *w &= !(1 << bit);
            }
        }
    }

    /// Takes `wanted` if it is a free pod address of `cidr`, else the lowest free one.
    /// Skips the network address, the gateway (`.1`) and the broadcast address.
    fn take(&mut self, cidr: Ipv4Cidr, wanted: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        let usable = 2..cidr.size().saturating_sub(1);
        let preferred = wanted
            .and_then(|ip| cidr.offset_of(ip))
            .filter(|o| usable.contains(o) && !self.is_used(*o));
        let offset = preferred.or_else(|| usable.clone().find(|o| !self.is_used(*o)))?;
        self.set(offset, true);
        cidr.host(offset)
    }

    fn release(&mut self, cidr: Ipv4Cidr, ip: Ipv4Addr) {
        if let Some(offset) = cidr.offset_of(ip) {
            self.set(offset, false);
        }
    }
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

impl State {
    fn sandbox_status(&self, id: u64) -> Option<SandboxStatus> {
        let s = self.sandboxes.get(&id)?;
        Some(SandboxStatus {
            id: SandboxId(format_id(id)),
            pod_uid: s.pod_uid.to_string(),
            state: if s.ready {
                SandboxState::Ready
            } else {
                SandboxState::NotReady
            },
            created_at: s.created,
            ip: s.ip,
        })
    }

    fn container_status(&self, id: u64) -> Option<ContainerStatus> {
        let c = self.containers.get(&id)?;
        let exited = c.state == ContainerState::Exited;
        Some(ContainerStatus {
            id: ContainerId(format_id(id)),
            sandbox: SandboxId(format_id(c.sandbox)),
            name: c.name.to_string(),
            state: c.state,
            created_at: c.created,
            started_at: c.started,
            finished_at: c.finished,
            // A simulated container only exits when it is stopped, as if on SIGTERM.
            exit_code: exited.then_some(0),
            reason: if exited {
                "Completed".into()
            } else {
                String::new()
            },
            message: String::new(),
            log_path: None,
        })
    }

    fn stop_container(&mut self, id: u64) {
        if let Some(c) = self.containers.get_mut(&id) {
            if c.state != ContainerState::Exited {
                c.state = ContainerState::Exited;
                c.finished = Some(Timestamp::now());
            }
        }
    }

    fn remove_sandbox(&mut self, id: u64) {
        let Some(s) = self.sandboxes.remove(&id) else {
            return;
        };
        for c in &s.containers {
            self.containers.remove(c);
        }
        if let (Some(cidr), Some(ip)) = (s.cidr, s.ip) {
            if let Some(pool) = self.pools.get_mut(&cidr) {
                pool.release(cidr, ip);
            }
        }
    }
}

#[async_trait::async_trait]
impl Runtime for SimRuntime {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn version(&self) -> String {
        format!("sim://{}", env!("CARGO_PKG_VERSION"))
    }

    async fn run_pod_sandbox(
        &self,
        config: &PodSandboxConfig<'_>,
    ) -> Result<SandboxId, RuntimeError> {
        let mut state = self.state.lock();
        let ip = match (config.host_network, config.pod_cidr) {
            (false, Some(cidr)) => {
                let pool = state
                    .pools
                    .entry(cidr)
                    .or_insert_with(|| AddressPool::new(cidr));
                Some(
                    pool.take(cidr, config.previous_ip)
                        .ok_or(RuntimeError::AddressesExhausted { cidr })?,
                )
            }
            _ => None,
        };
        state.next_id += 1;
        let id = state.next_id;
        state.sandboxes.insert(
            id,
            Sandbox {
                pod_uid: config.uid.into(),
                cidr: config.pod_cidr.filter(|_| ip.is_some()),
                ip,
                created: Timestamp::now(),
                ready: true,
                containers: Vec::new(),
            },
        );
        Ok(SandboxId(format_id(id)))
    }

    async fn stop_pod_sandbox(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        let key = parse_id("sandbox", &id.0)?;
        let mut state = self.state.lock();
        let containers = match state.sandboxes.get_mut(&key) {
            Some(s) => {
                s.ready = false;
                s.containers.clone()
            }
            None => return Ok(()),
        };
        for c in containers {
            state.stop_container(c);
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        let key = parse_id("sandbox", &id.0)?;
        self.state.lock().remove_sandbox(key);
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &SandboxId) -> Result<SandboxStatus, RuntimeError> {
        let key = parse_id("sandbox", &id.0)?;
        self.state
            .lock()
            .sandbox_status(key)
            .ok_or_else(|| RuntimeError::NotFound {
                what: "sandbox",
                id: id.0.clone(),
            })
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<SandboxStatus>, RuntimeError> {
        let state = self.state.lock();
        Ok(state
            .sandboxes
            .keys()
            .filter_map(|id| state.sandbox_status(*id))
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
        let Some(s) = state.sandboxes.get_mut(&key) else {
            return Err(RuntimeError::NotFound {
                what: "sandbox",
                id: sandbox.0.clone(),
            });
        };
        s.containers.push(id);
        state.containers.insert(
            id,
            Container {
                sandbox: key,
                name: config.name.into(),
                state: ContainerState::Created,
                created: Timestamp::now(),
                started: None,
                finished: None,
            },
        );
        Ok(ContainerId(format_id(id)))
    }

    async fn start_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let key = parse_id("container", &id.0)?;
        let mut state = self.state.lock();
        let c = state
            .containers
            .get_mut(&key)
            .ok_or_else(|| RuntimeError::NotFound {
                what: "container",
                id: id.0.clone(),
            })?;
        if c.state != ContainerState::Created {
            return Err(RuntimeError::Failed {
                op: format!("start container {}", c.name),
                message: format!("container {} is {}", id.0, c.state.label()),
            });
        }
        c.state = ContainerState::Running;
        c.started = Some(Timestamp::now());
        Ok(())
    }

    async fn stop_container(
        &self,
        id: &ContainerId,
        _timeout: Duration,
    ) -> Result<(), RuntimeError> {
        let key = parse_id("container", &id.0)?;
        self.state.lock().stop_container(key);
        Ok(())
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let key = parse_id("container", &id.0)?;
        let mut state = self.state.lock();
        if let Some(c) = state.containers.remove(&key) {
            if let Some(s) = state.sandboxes.get_mut(&c.sandbox) {
                s.containers.retain(|x| *x != key);
            }
        }
        Ok(())
    }

    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus, RuntimeError> {
        let key = parse_id("container", &id.0)?;
        self.state
            .lock()
            .container_status(key)
            .ok_or_else(|| RuntimeError::NotFound {
                what: "container",
                id: id.0.clone(),
            })
    }

    async fn list_containers(
        &self,
        sandbox: Option<&SandboxId>,
    ) -> Result<Vec<ContainerStatus>, RuntimeError> {
        let state = self.state.lock();
        let ids: Vec<u64> = match sandbox {
            Some(s) => {
                let key = parse_id("sandbox", &s.0)?;
                state
                    .sandboxes
                    .get(&key)
                    .map(|s| s.containers.clone())
                    .unwrap_or_default()
            }
            None => state.containers.keys().copied().collect(),
        };
        Ok(ids
            .into_iter()
            .filter_map(|id| state.container_status(id))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox<'a>(uid: &'a str, cidr: &Ipv4Cidr) -> PodSandboxConfig<'a> {
        PodSandboxConfig {
            name: "p",
            namespace: "ns",
            uid,
            host_network: false,
            pod_cidr: Some(*cidr),
            previous_ip: None,
        }
    }

    fn container(name: &str) -> ContainerConfig<'_> {
        ContainerConfig {
            name,
            image: "pause",
            command: &[],
            args: &[],
            env: &[],
            working_dir: None,
            mounts: &[],
            limits: Default::default(),
        }
    }

    #[tokio::test]
    async fn sim_runtime_should_run_containers_with_ips_from_the_pod_cidr() {
        let rt = SimRuntime::default();
        let cidr: Ipv4Cidr = "10.128.1.0/24".parse().expect("cidr");
        let s = rt
            .run_pod_sandbox(&sandbox("u1", &cidr))
            .await
            .expect("sandbox");
        let status = rt.pod_sandbox_status(&s).await.expect("status");
        assert_eq!(status.ip, Some(Ipv4Addr::new(10, 128, 1, 2)));
        assert_eq!(status.state, SandboxState::Ready);
        let c = rt
            .create_container(&s, &container("web"))
            .await
            .expect("create");
        rt.start_container(&c).await.expect("start");
        let cs = rt.container_status(&c).await.expect("status");
        assert_eq!(cs.state, ContainerState::Running);
        assert!(cs.started_at.is_some());
        assert!(rt.start_container(&c).await.is_err(), "started twice");
        rt.stop_pod_sandbox(&s).await.expect("stop");
        let listed = rt.list_containers(Some(&s)).await.expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].state, ContainerState::Exited);
        assert_eq!(listed[0].exit_code, Some(0));
    }

    #[tokio::test]
    async fn sim_runtime_should_reuse_released_ips_and_honour_previous_ones() {
        let rt = SimRuntime::default();
        let cidr: Ipv4Cidr = "10.128.1.0/24".parse().expect("cidr");
        let a = rt.run_pod_sandbox(&sandbox("a", &cidr)).await.expect("a");
        let b = rt.run_pod_sandbox(&sandbox("b", &cidr)).await.expect("b");
        rt.remove_pod_sandbox(&a).await.expect("remove");
        assert!(rt.pod_sandbox_status(&a).await.is_err());
        let c = rt.run_pod_sandbox(&sandbox("c", &cidr)).await.expect("c");
        assert_eq!(
            rt.pod_sandbox_status(&c).await.expect("c").ip,
            Some(Ipv4Addr::new(10, 128, 1, 2))
        );
        let mut config = sandbox("d", &cidr);
        config.previous_ip = Some(Ipv4Addr::new(10, 128, 1, 77));
        let d = rt.run_pod_sandbox(&config).await.expect("d");
        assert_eq!(
            rt.pod_sandbox_status(&d).await.expect("d").ip,
            Some(Ipv4Addr::new(10, 128, 1, 77))
        );
        let listed = rt.list_pod_sandboxes().await.expect("list");
        assert_eq!(listed.len(), 3);
        assert!(listed.iter().any(|s| s.id == b && s.pod_uid == "b"));
    }

    #[tokio::test]
    async fn sim_runtime_should_report_an_exhausted_cidr() {
        let rt = SimRuntime::default();
        let cidr: Ipv4Cidr = "10.128.1.0/30".parse().expect("cidr");
        rt.run_pod_sandbox(&sandbox("a", &cidr))
            .await
            .expect("one address");
        let err = rt
            .run_pod_sandbox(&sandbox("b", &cidr))
            .await
            .expect_err("exhausted");
        assert!(err.to_string().contains("10.128.1.0/30"), "{err}");
    }
}
