//! Pods a Permit plugin told to wait: upstream's `waitingPodsMap` and `waitingPod`.
//!
//! A pod whose Permit plugins return Wait stays assumed on its node while its
//! binding cycle waits in [`WaitingPod::wait`]. Every waiting plugin must
//! [`WaitingPod::allow`] it; one [`WaitingPod::reject`] or one plugin's timeout
//! ends the wait with Unschedulable. Plugins reach waiting pods through the
//! [`WaitingPods`] handle in their [`super::FactoryContext`] (e.g. the last pod of
//! a gang allows the others).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{Code, Status};
use crate::pod_info::PodInfo;

/// Upstream's rejection message when a plugin's wait expires.
pub fn timeout_message(waited: Duration, plugin: &str) -> String {
    format!("rejected due to timeout after waiting {waited:?} at plugin {plugin}")
}

#[derive(Debug)]
struct WaitState {
    /// Plugin -> (deadline, timeout) of the plugins that have not allowed yet.
    pending: BTreeMap<String, (Instant, Duration)>,
    decision: Option<Status>,
}

/// One pod waiting on Permit.
#[derive(Debug)]
pub struct WaitingPod {
    pod: Arc<PodInfo>,
    node: String,
    state: Mutex<WaitState>,
    notify: tokio::sync::Notify,
}

impl WaitingPod {
    /// A pod on `node` waiting for `plugins` (name, timeout), counted from `now`.
    pub fn new(
        pod: Arc<PodInfo>,
        node: &str,
        plugins: impl IntoIterator<Item = (String, Duration)>,
        now: Instant,
    ) -> Arc<Self> {
        Arc::new(WaitingPod {
            pod,
            node: node.to_string(),
            state: Mutex::new(WaitState {
                pending: plugins
                    .into_iter()
                    .map(|(p, t)| (p, (now + t, t)))
                    .collect(),
                decision: None,
            }),
            notify: tokio::sync::Notify::new(),
        })
    }

    /// The pod.
    pub fn pod(&self) -> &Arc<PodInfo> {
        &self.pod
    }

    /// The node it is assumed on.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Plugins that have not allowed it yet.
    pub fn pending_plugins(&self) -> Vec<String> {
        self.state.lock().pending.keys().cloned().collect()
    }

    fn decide(&self, state: &mut WaitState, status: Status) {
        if state.decision.is_none() {
            state.decision = Some(status);
            self.notify.notify_waiters();
        }
    }

    /// `plugin` allows the pod; once every waiting plugin did, the wait succeeds.
    pub fn allow(&self, plugin: &str) {
        let mut state = self.state.lock();
        state.pending.remove(plugin);
        if state.pending.is_empty() {
            self.decide(&mut state, Status::success());
        }
    }

    /// `plugin` rejects the pod with `message` (Unschedulable).
    pub fn reject(&self, plugin: &str, message: &str) {
        let mut state = self.state.lock();
        let s = Status::unschedulable(message.to_string());
        let s = if plugin.is_empty() {
            s
        } else {
            s.with_plugin(plugin)
        };
        self.decide(&mut state, s);
    }

    /// Rejects the pod if a plugin's deadline passed by `now`; returns the decision so far.
    pub fn expire(&self, now: Instant) -> Option<Status> {
        let mut state = self.state.lock();
        if state.decision.is_none() {
            let expired = state
                .pending
                .iter()
                .find(|(_, (deadline, _))| *deadline <= now)
                .map(|(p, (_, t))| (p.clone(), *t));
            if let Some((plugin, waited)) = expired {
                let s =
                    Status::unschedulable(timeout_message(waited, &plugin)).with_plugin(&plugin);
                self.decide(&mut state, s);
            }
        }
        state.decision.clone()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.state.lock().pending.values().map(|(d, _)| *d).min()
    }

    /// Waits until allowed (Success), rejected, or a plugin's timeout (Unschedulable).
    pub async fn wait(&self) -> Status {
        loop {
            let notified = self.notify.notified();
            if let Some(s) = self.expire(Instant::now()) {
                return s;
            }
            match self.next_deadline() {
                Some(deadline) => {
                    let deadline = tokio::time::Instant::from_std(deadline);
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(deadline) => {}
                    }
                }
                // Nothing pending and no decision cannot happen (allow decides); be safe.
                None => return Status::new(Code::Success, ""),
            }
        }
    }
}

/// The waiting pods of one scheduler, by uid.
#[derive(Debug, Default)]
pub struct WaitingPods {
    pods: Mutex<HashMap<String, Arc<WaitingPod>>>,
}

impl WaitingPods {
    /// An empty map.
    pub fn new() -> Arc<Self> {
        Arc::new(WaitingPods::default())
    }

    pub(crate) fn add(&self, pod: Arc<WaitingPod>) {
        self.pods.lock().insert(pod.pod.uid.clone(), pod);
    }

    pub(crate) fn remove(&self, uid: &str) -> Option<Arc<WaitingPod>> {
        self.pods.lock().remove(uid)
    }

    /// The waiting pod with `uid`.
    pub fn get(&self, uid: &str) -> Option<Arc<WaitingPod>> {
        self.pods.lock().get(uid).cloned()
    }

    /// Every waiting pod (a snapshot).
    pub fn all(&self) -> Vec<Arc<WaitingPod>> {
        self.pods.lock().values().cloned().collect()
    }

    /// Number of waiting pods.
    pub fn len(&self) -> usize {
        self.pods.lock().len()
    }

    /// Whether no pod waits.
    pub fn is_empty(&self) -> bool {
        self.pods.lock().is_empty()
    }

    /// Rejects the waiting pod `uid` (upstream `RejectWaitingPod`); false when none waits.
    pub fn reject(&self, uid: &str, plugin: &str, message: &str) -> bool {
        match self.get(uid) {
            Some(wp) => {
                wp.reject(plugin, message);
                true
            }
            None => false,
        }
    }
}
