//! Running a pod's containers: init containers in order, then the containers with their
//! restart policy, CrashLoopBackOff and liveness restarts; starting one instance (env,
//! mounts, limits, Events, probes).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::{spec_grace, Worker};
use crate::node::probes;
use crate::node::status::Phase;
use crate::node::{env, volumes};
use crate::runtime::cgroups::{self, Limits};
use crate::runtime::{ContainerConfig, ContainerState, PullPolicy};

impl Worker {
    /// Runs init containers in order, then the containers; returns the phase.
    pub(super) async fn run_containers(&mut self, pod: &Pod) -> Phase {
        let Some(spec) = pod.spec.as_ref() else {
            return Phase::Pending;
        };
        let policy = spec.restart_policy.as_deref().unwrap_or("Always");
        for c in spec.init_containers.as_deref().unwrap_or_default() {
            let slot = self.slots.entry(c.name.clone()).or_default();
            match (slot.state(), slot.exit_code()) {
                (Some(ContainerState::Exited), Some(0)) => continue,
                (Some(ContainerState::Exited), _) if policy == "Never" => return Phase::Failed,
                (Some(ContainerState::Exited), _) => {
                    self.restart_when_due(pod, c).await;
                    return Phase::Pending;
                }
                (None, _) => {
                    self.start(pod, c).await;
                    return Phase::Pending;
                }
                _ => return Phase::Pending,
            }
        }
        let mut running = false;
        let mut all_done = true;
        let mut any_failed = false;
        for c in &spec.containers {
            let slot = self.slots.entry(c.name.clone()).or_default();
            let failed_probe = slot
                .prober
                .as_ref()
                .and_then(|p| p.state.failed.lock().take());
            match slot.state() {
                None => {
                    all_done = false;
                    self.start(pod, c).await;
                    running |= self
                        .slots
                        .get(&c.name)
                        .is_some_and(|s| s.state() == Some(ContainerState::Running));
                }
                Some(ContainerState::Running) if failed_probe.is_some() => {
                    let message = failed_probe.unwrap_or_default();
                    self.event(pod, Some(&c.name), "Normal", "Killing", &message);
                    self.stop_one(&c.name, spec_grace(pod)).await;
                    self.refresh().await;
                    all_done = false;
                    running = true;
                    if policy != "Never" {
                        self.restart_when_due(pod, c).await;
                    }
                }
                Some(ContainerState::Running | ContainerState::Created) => {
                    running = true;
                    all_done = false;
                }
                Some(ContainerState::Exited) => {
                    let code = slot.exit_code().unwrap_or(0);
                    let restart = policy == "Always" || (policy == "OnFailure" && code != 0);
                    if restart {
                        all_done = false;
                        running = true;
                        self.restart_when_due(pod, c).await;
                    } else if code != 0 {
                        any_failed = true;
                    }
                }
            }
        }
        if all_done && !spec.containers.is_empty() {
            return if any_failed {
                Phase::Failed
            } else {
                Phase::Succeeded
            };
        }
        let started_any = self.slots.values().any(|s| s.current.is_some());
        if running && started_any {
            Phase::Running
        } else {
            Phase::Pending
        }
    }

    /// Restarts container `c` once its backoff passed; until then it waits in
    /// CrashLoopBackOff (restart at once the first time, then after `crash_loop_backoff`,
    /// doubling up to `crash_loop_backoff_max`).
    async fn restart_when_due(&mut self, pod: &Pod, c: &Container) {
        let base = self.shared.config.crash_loop_backoff;
        let max = self.shared.config.crash_loop_backoff_max;
        let (ns, name) = self.key.split_once('/').unwrap_or_default();
        let Some(slot) = self.slots.get_mut(&c.name) else {
            return;
        };
        let seen = *slot.exited_seen.get_or_insert_with(Instant::now);
        // A container that ran long enough starts its backoff over (upstream: 2x max).
        let ran = slot
            .current
            .as_ref()
            .and_then(|s| Some(s.finished_at?.duration_since(s.started_at?)))
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or_default();
        if ran >= max * 2 {
            slot.delay = Duration::ZERO;
        }
        let until = seen + slot.delay;
        if Instant::now() < until {
            let message = format!(
                "back-off {} restarting failed container={} pod={name}_{ns}({})",
                humanize(slot.delay),
                c.name,
                self.uid
            );
            slot.waiting = Some(("CrashLoopBackOff".into(), message));
            let first = !slot.backoff_reported;
            slot.backoff_reported = true;
            self.due = Some(self.due.map_or(until, |d| d.min(until)));
            if first {
                self.event(
                    pod,
                    Some(&c.name),
                    "Warning",
                    "BackOff",
                    &format!(
                        "Back-off restarting failed container {} in pod {name}_{ns}({})",
                        c.name, self.uid
                    ),
                );
            }
            return;
        }
        slot.delay = if slot.delay.is_zero() {
            base
        } else {
            (slot.delay * 2).min(max)
        };
        slot.restarts += 1;
        self.start(pod, c).await;
    }

    /// Creates and starts a new instance of container `c`, keeping the one before it as
    /// previous.
    async fn start(&mut self, pod: &Pod, c: &Container) {
        let rt = self.shared.runtime.clone();
        let Some(sandbox) = self.sandbox.clone() else {
            return;
        };
        let env = match env::resolve(&self.shared.client, pod, c, &self.ips()).await {
            Ok(env) => env,
            Err(e) => {
                self.wait_config_error(pod, &c.name, &e.0);
                return;
            }
        };
        let mounts = match volumes::mounts(c, self.volumes.as_ref().unwrap_or(&HashMap::new())) {
            Ok(m) => m,
            Err(e) => {
                self.wait_config_error(pod, &c.name, &e);
                return;
            }
        };
        let command: Vec<String> = c
            .command
            .iter()
            .flatten()
            .map(|s| env::expand(s, &env))
            .collect();
        let args: Vec<String> = c
            .args
            .iter()
            .flatten()
            .map(|s| env::expand(s, &env))
            .collect();
        let image = c.image.as_deref().unwrap_or_default();
        if !self.ensure_image(pod, c, image).await {
            return;
        }
        let config = ContainerConfig {
            name: &c.name,
            image,
            command: &command,
            args: &args,
            env: &env,
            working_dir: c.working_dir.as_deref(),
            mounts: &mounts,
            limits: limits_of(c),
        };
        let id = match rt.create_container(&sandbox, &config).await {
            Ok(id) => id,
            Err(e) => {
                self.event(
                    pod,
                    Some(&c.name),
                    "Warning",
                    "Failed",
                    &format!("Error: {e}"),
                );
                return;
            }
        };
        let slot = self.slots.entry(c.name.clone()).or_default();
        if let Some(old) = slot.previous.take() {
            if let Err(e) = rt.remove_container(&old.id).await {
                tracing::debug!(pod = %self.key, error = %e, "removing an old container failed");
            }
        }
        slot.previous = slot.current.take();
        slot.waiting = None;
        slot.exited_seen = None;
        slot.backoff_reported = false;
        self.event(
            pod,
            Some(&c.name),
            "Normal",
            "Created",
            &format!("Created container: {}", c.name),
        );
        let started = rt.start_container(&id).await;
        let status = rt.container_status(&id).await.ok();
        let ctx = self.probe_context(pod, Some(&id));
        let slot = self.slots.entry(c.name.clone()).or_default();
        slot.current = status;
        match started {
            Ok(()) => {
                slot.prober = Some(probes::start(ctx, c, env.clone()));
                slot.env = env;
                self.event(
                    pod,
                    Some(&c.name),
                    "Normal",
                    "Started",
                    &format!("Started container {}", c.name),
                );
            }
            Err(e) => {
                slot.exited_seen = Some(Instant::now());
                let message = slot
                    .current
                    .as_ref()
                    .map_or_else(|| e.to_string(), |s| s.message.clone());
                self.event(
                    pod,
                    Some(&c.name),
                    "Warning",
                    "Failed",
                    &format!("Error: failed to start container {:?}: {message}", c.name),
                );
            }
        }
    }

    /// Makes sure container `c`'s image is on the node (pulled as its
    /// `imagePullPolicy` says); a failed pull waits in ErrImagePull, then
    /// ImagePullBackOff until its backoff passed (as long as the crash loop's).
    async fn ensure_image(&mut self, pod: &Pod, c: &Container, image: &str) -> bool {
        let now = Instant::now();
        let slot = self.slots.entry(c.name.clone()).or_default();
        if let Some((until, _)) = slot.pull_backoff.filter(|(until, _)| now < *until) {
            slot.waiting = Some((
                "ImagePullBackOff".into(),
                format!("Back-off pulling image {image:?}"),
            ));
            self.due = Some(self.due.map_or(until, |d| d.min(until)));
            return false;
        }
        let policy = PullPolicy::of(image, c.image_pull_policy.as_deref());
        match self.shared.runtime.ensure_image(image, policy).await {
            Ok(message) => {
                if let Some(slot) = self.slots.get_mut(&c.name) {
                    slot.pull_backoff = None;
                }
                self.event(pod, Some(&c.name), "Normal", "Pulled", &message);
                true
            }
            Err(e) => {
                let (base, max) = (
                    self.shared.config.crash_loop_backoff,
                    self.shared.config.crash_loop_backoff_max,
                );
                let slot = self.slots.entry(c.name.clone()).or_default();
                let delay = slot.pull_backoff.map_or(base, |(_, d)| (d * 2).min(max));
                let until = now + delay;
                slot.pull_backoff = Some((until, delay));
                slot.waiting = Some((e.reason.to_string(), e.message.clone()));
                self.due = Some(self.due.map_or(until, |d| d.min(until)));
                tracing::warn!(pod = %self.key, container = %c.name, error = %e, retry_in = ?delay, "image not available");
                self.event(pod, Some(&c.name), "Warning", "Failed", &e.message);
                self.event(
                    pod,
                    Some(&c.name),
                    "Normal",
                    "BackOff",
                    &format!("Back-off pulling image {image:?}"),
                );
                false
            }
        }
    }

    fn wait_config_error(&mut self, pod: &Pod, container: &str, message: &str) {
        let slot = self.slots.entry(container.to_string()).or_default();
        slot.waiting = Some(("CreateContainerConfigError".into(), message.to_string()));
        self.event(
            pod,
            Some(container),
            "Warning",
            "Failed",
            &format!("Error: {message}"),
        );
    }

    async fn stop_one(&mut self, name: &str, grace: Duration) {
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        slot.prober = None;
        if let Some(c) = &slot.current {
            if let Err(e) = self.shared.runtime.stop_container(&c.id, grace).await {
                tracing::warn!(pod = %self.key, container = %name, error = %e, "stopping a container failed");
            }
        }
    }
}

/// The container's `resources.limits` for cpu and memory.
fn limits_of(c: &Container) -> Limits {
    let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
    let get = |k: &str| limits.and_then(|l| l.get(k)).map(|q| q.0.as_str());
    Limits {
        memory_bytes: get("memory").and_then(cgroups::memory_bytes),
        cpu_millis: get("cpu").and_then(cgroups::cpu_millis),
    }
}

/// A backoff delay as Go prints durations (`10s`, `1m20s`, `5m0s`, `200ms`).
fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    if s < 60 {
        return format!("{s}s");
    }
    format!("{}m{}s", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize_should_print_go_durations() {
        assert_eq!(humanize(Duration::from_millis(200)), "200ms");
        assert_eq!(humanize(Duration::from_secs(10)), "10s");
        assert_eq!(humanize(Duration::from_secs(80)), "1m20s");
        assert_eq!(humanize(Duration::from_secs(300)), "5m0s");
    }
}
