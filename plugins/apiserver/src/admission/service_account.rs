//! The ServiceAccount admission step for pod creates, as upstream's: the pod runs
//! as `spec.serviceAccountName` (`default` when unset), and unless automounting is
//! off (on the pod, else on the ServiceAccount) every container gets the
//! `kube-api-access-<suffix>` projected volume at
//! `/var/run/secrets/kubernetes.io/serviceaccount`: a bound token, the cluster CA
//! (`kube-root-ca.crt`) and the namespace.
//!
//! Differs on purpose: a pod naming the `default` ServiceAccount before it exists
//! (a namespace just created, or a cluster without the controller-manager) is
//! admitted without the volume instead of refused; a missing named account is
//! refused with upstream's message.

use serde_json::{json, Map, Value};

use crate::objects::name_suffix;
use crate::store::Store;

/// Where containers see the ServiceAccount volume.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The ConfigMap holding the cluster CA in every namespace.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";

/// Sets the pod's ServiceAccount and mounts its token; the error is the reason the
/// pod is forbidden.
pub fn admit(store: &dyn Store, pod: &mut Value) -> Result<(), String> {
    if pod["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string() {
        return Ok(());
    }
    let namespace = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let name = ["serviceAccountName", "serviceAccount"]
        .iter()
        .find_map(|f| {
            spec.get(*f)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
    let account = match store.get(&format!("serviceaccounts/{namespace}/{name}")) {
        Ok(Some(a)) => a,
        Ok(None) if name == "default" => return Ok(()),
        Ok(None) => {
            return Err(format!(
                "error looking up service account {namespace}/{name}: serviceaccount \"{name}\" not found"
            ))
        }
        Err(e) => return Err(format!("error looking up service account {namespace}/{name}: {e}")),
    };
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| account.object["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if !automount || mounted(spec) {
        return Ok(());
    }
    let volume = format!("kube-api-access-{}", name_suffix());
    if let Some(volumes) = spec
        .entry("volumes")
        .or_insert_with(|| json!([]))
        .as_array_mut()
    {
        volumes.push(token_volume(&volume));
    }
    for field in ["initContainers", "containers"] {
        for c in spec
            .get_mut(field)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            if let Some(mounts) = c
                .entry("volumeMounts")
                .or_insert_with(|| json!([]))
                .as_array_mut()
            {
                mounts.push(json!({
                    "name": volume,
                    "readOnly": true,
                    "mountPath": MOUNT_PATH,
                }));
            }
        }
    }
    Ok(())
}

/// Whether some container already mounts something at [`MOUNT_PATH`].
fn mounted(spec: &Map<String, Value>) -> bool {
    ["initContainers", "containers"].iter().any(|field| {
        spec.get(*field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| c["volumeMounts"].as_array().into_iter().flatten())
            .any(|m| m["mountPath"] == MOUNT_PATH)
    })
}

/// The projected volume upstream adds: token, CA and namespace.
fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}
