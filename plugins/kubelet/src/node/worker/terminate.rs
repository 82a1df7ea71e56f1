//! Stopping a pod (once the runtime answers): the preStop hooks, SIGTERM, the grace period, SIGKILL, the sandbox
//! removed, then the delete finished with grace period 0.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kubernel_client::{Api, DeleteParams};

use super::{all_containers, Worker};
use crate::node::probes::{self, ExecIn};
use crate::runtime::{ContainerState, SandboxId};

impl Worker {
    /// Stops every container (SIGTERM, `grace`, SIGKILL) and removes the sandbox.
    pub(super) async fn terminate(&mut self, pod: &Pod, grace: Duration) {
        // With the runtime down nothing could be stopped or removed: wait for it, so no
        // sandbox outlives its pod.
        while self.shared.runtime_health.lock().is_err() {
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        let rt = self.shared.runtime.clone();
        let mut stops = Vec::new();
        let pod_ip = self.ip();
        let execs: HashMap<String, ExecIn> = self
            .slots
            .iter()
            .filter_map(|(name, s)| {
                Some((name.clone(), self.exec_in(Some(&s.current.as_ref()?.id))))
            })
            .collect();
        for (name, slot) in &mut self.slots {
            slot.prober = None;
            if let Some(c) = slot
                .current
                .as_ref()
                .filter(|c| c.state == ContainerState::Running)
            {
                self.shared.recorder.record(
                    Self::reference(pod, Some(name)),
                    "Normal",
                    "Killing",
                    &format!("Stopping container {name}"),
                );
                let rt = rt.clone();
                let id = c.id.clone();
                let spec = all_containers(pod).find(|c| c.name == *name).cloned();
                let hook = spec
                    .as_ref()
                    .and_then(|c| c.lifecycle.as_ref())
                    .and_then(|l| l.pre_stop.clone());
                let env = slot.env.clone();
                let host = pod_ip.clone();
                let exec = execs.get(name).cloned().unwrap_or(ExecIn::Host(None));
                let recorder = self.shared.recorder.clone();
                let reference = Self::reference(pod, Some(name));
                stops.push(async move {
                    let started = Instant::now();
                    // The preStop hook runs first, within the grace period.
                    if let (Some(hook), Some(spec)) = (hook, spec) {
                        let ran = tokio::time::timeout(
                            grace,
                            probes::run_hook(&host, &exec, grace, &spec, &env, &hook),
                        )
                        .await;
                        let failed = match ran {
                            Ok(Ok(())) => None,
                            Ok(Err(e)) => Some(e),
                            Err(_) => Some(format!("did not finish within {grace:?}")),
                        };
                        if let Some(e) = failed {
                            recorder.record(
                                reference,
                                "Warning",
                                "FailedPreStopHook",
                                &format!("PreStopHook failed: {e}"),
                            );
                        }
                    }
                    rt.stop_container(&id, grace.saturating_sub(started.elapsed()))
                        .await
                });
            }
        }
        for result in futures::future::join_all(stops).await {
            if let Err(e) = result {
                tracing::warn!(pod = %self.key, error = %e, "stopping a container failed");
            }
        }
        // Also a sandbox this worker never adopted (the pod was deleted while the
        // kubelet was down).
        let mut ids: Vec<SandboxId> = rt
            .list_pod_sandboxes()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s.pod_uid == self.uid)
            .map(|s| s.id)
            .collect();
        ids.extend(self.sandbox.take());
        ids.dedup();
        for id in ids {
            if let Err(e) = rt.remove_pod_sandbox(&id).await {
                tracing::warn!(pod = %self.key, error = %e, "removing the pod sandbox failed");
            }
        }
        crate::node::host_ports::release(&self.shared, &self.uid);
        tracing::info!(pod = %self.key, "pod stopped");
    }

    /// Deletes the pod for good (grace period 0, only if it still has our uid).
    pub(super) async fn finish_deletion(&self) {
        let (ns, name) = self.key.split_once('/').unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), ns);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            precondition_uid: Some(self.uid.clone()),
            ..DeleteParams::default()
        };
        let mut backoff =
            kubernel_client::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        while !self.shared.shutdown.is_cancelled() {
            match api.delete(name, &params).await {
                Ok(_) => return,
                Err(e) if e.is_not_found() || e.code() == Some(409) => return,
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(pod = %self.key, error = %e, retry_in = ?delay, "finishing the pod deletion failed");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
