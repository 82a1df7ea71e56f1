//! Watches the pods bound to this node (`spec.nodeName=<node>`) and hands each to its
//! own worker task, keyed by `namespace/name`; a pod recreated under the same name (new
//! uid) gets a new worker after the old one stopped its containers. After the first full
//! list, sandboxes of pods that no longer exist are removed (deleted while the kubelet
//! was down).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kubernel_client::{Api, ListParams};
use tokio::sync::watch;

use super::worker::{Desired, Worker};
use super::Shared;
use crate::watcher::{self, Seen};

struct Entry {
    uid: String,
    tx: watch::Sender<Desired>,
}

fn key_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

struct Dispatcher {
    shared: Arc<Shared>,
    workers: HashMap<String, Entry>,
    listed_once: bool,
}

impl Dispatcher {
    fn applied(&mut self, pod: Pod) {
        let key = key_of(&pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let pod = Arc::new(pod);
        self.shared.pods.lock().insert(key.clone(), (*pod).clone());
        if let Some(e) = self.workers.get(&key) {
            if e.uid == uid {
                e.tx.send_replace(Desired::Present(pod));
                return;
            }
            let (Desired::Present(old) | Desired::Gone(old)) = e.tx.borrow().clone();
            e.tx.send_replace(Desired::Gone(old));
        }
        let (tx, rx) = watch::channel(Desired::Present(pod));
        let worker = Worker::new(self.shared.clone(), key.clone(), uid.clone(), rx);
        tokio::spawn(worker.run());
        self.workers.insert(key, Entry { uid, tx });
    }

    fn gone(&mut self, key: &str, last: Option<Arc<Pod>>) {
        self.shared.pods.lock().remove(key);
        if let Some(e) = self.workers.remove(key) {
            let pod = last.unwrap_or_else(|| match &*e.tx.borrow() {
                Desired::Present(p) | Desired::Gone(p) => p.clone(),
            });
            e.tx.send_replace(Desired::Gone(pod));
        }
    }

    fn listed(&mut self, present: HashSet<String>) {
        let gone: Vec<String> = self
            .workers
            .keys()
            .filter(|k| !present.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.gone(&key, None);
        }
        if !self.listed_once {
            self.listed_once = true;
            let uids: HashSet<String> = self.workers.values().map(|e| e.uid.clone()).collect();
            tokio::spawn(remove_orphans(self.shared.clone(), uids));
        }
    }
}

/// Removes the sandboxes of pods not in `uids` (stopping their processes at once).
async fn remove_orphans(shared: Arc<Shared>, uids: HashSet<String>) {
    let rt = &shared.runtime;
    for s in rt.list_pod_sandboxes().await.unwrap_or_default() {
        if !uids.contains(&s.pod_uid) {
            tracing::info!(uid = %s.pod_uid, "removing the sandbox of a pod that no longer exists");
            if let Err(e) = rt.remove_pod_sandbox(&s.id).await {
                tracing::warn!(uid = %s.pod_uid, error = %e, "removing an orphaned sandbox failed");
            }
        }
    }
}

/// Watches this node's pods until shutdown.
pub(super) async fn run(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let params = ListParams {
        limit: 500,
        ..ListParams::default().fields(&format!("spec.nodeName={}", shared.node_name))
    };
    let mut d = Dispatcher {
        shared: shared.clone(),
        workers: HashMap::new(),
        listed_once: false,
    };
    let mut page_keys = HashSet::new();
    watcher::run(
        api,
        params,
        shared.shutdown.clone(),
        move |seen| match seen {
            Seen::Page(pods) => {
                for pod in pods {
                    page_keys.insert(key_of(&pod));
                    d.applied(pod);
                }
            }
            Seen::Listed => d.listed(std::mem::take(&mut page_keys)),
            Seen::Applied(pod) => d.applied(pod),
            Seen::Deleted(pod) => {
                let key = key_of(&pod);
                let same = d
                    .workers
                    .get(&key)
                    .is_some_and(|e| Some(&e.uid) == pod.metadata.uid.as_ref());
                if same {
                    d.gone(&key, Some(Arc::new(pod)));
                }
            }
        },
    )
    .await;
}
