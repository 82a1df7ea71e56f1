//! A container's environment: the Services' variables (`KUBERNETES_SERVICE_HOST`,
//! ... for the apiserver's `kubernetes` Service always, the pod namespace's
//! Services with `enableServiceLinks`), then `envFrom` (ConfigMaps, Secrets), then
//! `env` (values, `fieldRef`, `resourceFieldRef`, `configMapKeyRef`,
//! `secretKeyRef`), with `$(VAR)` references expanded as upstream does; and
//! `command`/`args` expanded the same way.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kubernel_client::{Api, Client};

/// Why a container's environment could not be built (the container waits in
/// `CreateContainerConfigError`). Retrying helps once the object exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);

/// Data of a ConfigMap (`binaryData` as lossy UTF-8) or `None` when it does not exist.
pub async fn config_map(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, EnvError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(cm)) => {
            let mut data: BTreeMap<String, Vec<u8>> = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            for (k, v) in cm.binary_data.unwrap_or_default() {
                data.insert(k, v.0);
            }
            Ok(Some(data))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(EnvError(format!("configmap {name:?}: {e}"))),
    }
}

/// Data of a Secret (`stringData` merged) or `None` when it does not exist.
pub async fn secret(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, EnvError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(s)) => {
            let mut data: BTreeMap<String, Vec<u8>> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            for (k, v) in s.string_data.unwrap_or_default() {
                data.insert(k, v.into_bytes());
            }
            Ok(Some(data))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(EnvError(format!("secret {name:?}: {e}"))),
    }
}

/// The node's and the pod's addresses, as the downward API shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ips {
    /// `status.hostIP`: the node's InternalIP.
    pub host: String,
    /// `status.podIP`: the pod's own address, or the node's when it shares its network.
    pub pod: String,
}

/// The value of a downward API `fieldPath` of `pod`.
pub fn field_path(pod: &Pod, path: &str, ips: &Ips) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let map_value = |map: Option<&BTreeMap<String, String>>, key: &str| {
        map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
    };
    let render = |map: Option<&BTreeMap<String, String>>| {
        map.map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
    };
    let bracketed = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("['"))
            .and_then(|r| r.strip_suffix("']"))
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => render(meta.labels.as_ref()),
        "metadata.annotations" => render(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.hostIP" | "status.hostIPs" => ips.host.clone(),
        "status.podIP" | "status.podIPs" => ips.pod.clone(),
        _ => {
            if let Some(key) = bracketed("metadata.labels") {
                map_value(meta.labels.as_ref(), key)
            } else if let Some(key) = bracketed("metadata.annotations") {
                map_value(meta.annotations.as_ref(), key)
            } else {
                return Err(EnvError(format!("unsupported fieldPath {path:?}")));
            }
        }
    })
}

/// Expands `$(NAME)` references to defined variables; `$$` is a literal `$`, unknown
/// references stay as written (upstream's rules).
pub fn expand(text: &str, vars: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match vars.iter().rev().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The environment of container `c` of `pod`, resolved against the API.
pub async fn resolve(
    client: &Client,
    pod: &Pod,
    c: &Container,
    ips: &Ips,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut vars: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        ),
        (
            "HOSTNAME".into(),
            pod.metadata.name.clone().unwrap_or_default(),
        ),
    ];
    let set = |vars: &mut Vec<(String, String)>, k: String, v: String| {
        vars.retain(|(old, _)| *old != k);
        vars.push((k, v));
    };
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    for (k, v) in service_env(client, ns, links).await {
        set(&mut vars, k, v);
    }
    for from in c.env_from.as_deref().unwrap_or_default() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (data, name, optional, what) = if let Some(r) = &from.config_map_ref {
            let name = r.name.clone();
            (
                config_map(client, ns, &name).await?,
                name,
                r.optional,
                "configmap",
            )
        } else if let Some(r) = &from.secret_ref {
            let name = r.name.clone();
            (secret(client, ns, &name).await?, name, r.optional, "secret")
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (k, v) in data {
                    set(
                        &mut vars,
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(&v).into_owned(),
                    );
                }
            }
            None if optional == Some(true) => {}
            None => return Err(EnvError(format!("{what} {name:?} not found"))),
        }
    }
    for e in c.env.as_deref().unwrap_or_default() {
        let value = match &e.value_from {
            None => expand(e.value.as_deref().unwrap_or_default(), &vars),
            Some(from) => {
                if let Some(f) = &from.field_ref {
                    field_path(pod, &f.field_path, ips)?
                } else if let Some(r) = &from.resource_field_ref {
                    resource_field(c, &r.resource)
                } else if let Some(k) = &from.config_map_key_ref {
                    let data = config_map(client, ns, &k.name).await?;
                    match (data.as_ref().and_then(|d| d.get(&k.key)), k.optional) {
                        (Some(v), _) => String::from_utf8_lossy(v).into_owned(),
                        (None, Some(true)) => continue,
                        (None, _) if data.is_none() => {
                            return Err(EnvError(format!("configmap {:?} not found", k.name)))
                        }
                        (None, _) => {
                            return Err(EnvError(format!(
                                "couldn't find key {} in ConfigMap {ns}/{}",
                                k.key, k.name
                            )))
                        }
                    }
                } else if let Some(k) = &from.secret_key_ref {
                    let data = secret(client, ns, &k.name).await?;
                    match (data.as_ref().and_then(|d| d.get(&k.key)), k.optional) {
                        (Some(v), _) => String::from_utf8_lossy(v).into_owned(),
                        (None, Some(true)) => continue,
                        (None, _) if data.is_none() => {
                            return Err(EnvError(format!("secret {:?} not found", k.name)))
                        }
                        (None, _) => {
                            return Err(EnvError(format!(
                                "couldn't find key {} in Secret {ns}/{}",
                                k.key, k.name
                            )))
                        }
                    }
                } else {
                    String::new()
                }
            }
        };
        set(&mut vars, e.name.clone(), value);
    }
    Ok(vars)
}

/// The Services' variables, as the docker links upstream imitates: the apiserver's
/// `kubernetes` Service in `default` always, and with `links` every Service of
/// `ns` that has a ClusterIP. A failed read leaves them out (logged): the container
/// still starts, as it would in a cluster without the Service.
async fn service_env(client: &Client, ns: &str, links: bool) -> Vec<(String, String)> {
    let mut services: Vec<Service> = Vec::new();
    if links {
        match Api::<Service>::namespaced(client.clone(), ns)
            .list(&Default::default())
            .await
        {
            Ok(list) => services.extend(list.items),
            Err(e) => {
                tracing::warn!(namespace = %ns, error = %e, "listing Services for the pod's environment")
            }
        }
    }
    let has_master = ns == "default" && links;
    if !has_master {
        match Api::<Service>::namespaced(client.clone(), "default")
            .get_opt("kubernetes")
            .await
        {
            Ok(Some(s)) => services.push(s),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading the kubernetes Service for the pod's environment")
            }
        }
    }
    let mut vars = Vec::new();
    for s in &services {
        vars.extend(link_vars(s));
    }
    vars
}

/// The variables of one Service (none without a ClusterIP or ports).
fn link_vars(s: &Service) -> Vec<(String, String)> {
    let Some(spec) = &s.spec else {
        return Vec::new();
    };
    let ip = spec.cluster_ip.as_deref().unwrap_or_default();
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ip.is_empty() || ip == "None" || ports.is_empty() {
        return Vec::new();
    }
    let name = s
        .metadata
        .name
        .as_deref()
        .unwrap_or_default()
        .to_ascii_uppercase()
        .replace('-', "_");
    let mut vars = vec![
        (format!("{name}_SERVICE_HOST"), ip.to_string()),
        (format!("{name}_SERVICE_PORT"), ports[0].port.to_string()),
    ];
    for p in ports {
        if let Some(port_name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            vars.push((
                format!(
                    "{name}_SERVICE_PORT_{}",
                    port_name.to_ascii_uppercase().replace('-', "_")
                ),
                p.port.to_string(),
            ));
        }
    }
    let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
        p.protocol.as_deref().unwrap_or("TCP").to_string()
    };
    let first = &ports[0];
    vars.push((
        format!("{name}_PORT"),
        format!(
            "{}://{ip}:{}",
            proto(first).to_ascii_lowercase(),
            first.port
        ),
    ));
    for p in ports {
        let (upper, port) = (proto(p).to_ascii_uppercase(), p.port);
        let prefix = format!("{name}_PORT_{port}_{upper}");
        vars.push((
            prefix.clone(),
            format!("{}://{ip}:{port}", upper.to_ascii_lowercase()),
        ));
        vars.push((format!("{prefix}_PROTO"), upper.to_ascii_lowercase()));
        vars.push((format!("{prefix}_PORT"), port.to_string()));
        vars.push((format!("{prefix}_ADDR"), ip.to_string()));
    }
    vars
}

/// `resourceFieldRef` values: the container's limit (or request) as written, or the
/// node's CPU count / nothing when unset.
fn resource_field(c: &Container, resource: &str) -> String {
    let res = c.resources.as_ref();
    let (kind, name) = resource.split_once('.').unwrap_or(("limits", resource));
    let map = match kind {
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => res.and_then(|r| r.limits.as_ref()),
    };
    match map.and_then(|m| m.get(name)) {
        Some(q) => q.0.clone(),
        None if name == "cpu" && kind == "limits" => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .to_string(),
        None => "0".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_vars_should_spell_the_kubernetes_service_as_upstream() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kubernetes"},
            "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]},
        }))
        .expect("service");
        let vars: BTreeMap<String, String> = link_vars(&svc).into_iter().collect();
        let get = |k: &str| vars.get(k).map(String::as_str);
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT"), Some("443"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
        assert_eq!(get("KUBERNETES_PORT"), Some("tcp://10.96.0.1:443"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP"), Some("tcp://10.96.0.1:443"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP_PROTO"), Some("tcp"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP_PORT"), Some("443"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP_ADDR"), Some("10.96.0.1"));
        let headless: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"port": 5432}]},
        }))
        .expect("service");
        assert!(link_vars(&headless).is_empty());
    }

    #[test]
    fn expand_should_follow_upstream_rules() {
        let vars = vec![("A".to_string(), "1".to_string())];
        assert_eq!(expand("x$(A)y", &vars), "x1y");
        assert_eq!(expand("$(B)", &vars), "$(B)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("cost $5 $(A", &vars), "cost $5 $(A");
    }

    #[test]
    fn field_path_should_read_metadata_and_labels() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": []},
        }))
        .expect("pod");
        let ips = Ips {
            host: "127.0.0.1".into(),
            pod: "10.244.0.5".into(),
        };
        assert_eq!(
            field_path(&pod, "status.hostIP", &ips).expect("host ip"),
            "127.0.0.1"
        );
        assert_eq!(field_path(&pod, "metadata.name", &ips).expect("name"), "p");
        assert_eq!(
            field_path(&pod, "metadata.labels['app']", &ips).expect("label"),
            "web"
        );
        assert_eq!(
            field_path(&pod, "status.podIP", &ips).expect("ip"),
            "10.244.0.5"
        );
        assert!(field_path(&pod, "spec.bogus", &ips).is_err());
    }
}
