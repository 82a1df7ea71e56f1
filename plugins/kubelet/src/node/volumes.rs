//! Pod volumes, materialized under `<pod dir>/volumes/<kind>/<name>`: emptyDir (a
//! directory; a tmpfs for `medium: Memory` when running as root), hostPath (type-checked, created for
//! `DirectoryOrCreate`/`FileOrCreate`), configMap, secret, downwardAPI and projected
//! (files written from the API objects once, when the pod starts). Containers see them at
//! their `mountPath` through the runtime's bind mounts.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    Container, KeyToPath, Pod, ServiceAccount, ServiceAccountTokenProjection, Volume,
};
use kubernel_client::{Api, Client};

use super::env;
use crate::runtime::Mount;

/// A volume could not be set up: the pod stays `ContainerCreating` with a `FailedMount`
/// Event. Retrying helps once the cause is fixed (the object or path appears).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume {volume:?} : {message}")]
pub struct MountError {
    /// The volume's name.
    pub volume: String,
    /// What is wrong.
    pub message: String,
}

/// Sets up every volume of `pod` under `dir`; returns each volume's host path.
pub async fn prepare(
    client: &Client,
    pod: &Pod,
    dir: &Path,
    ips: &env::Ips,
) -> Result<HashMap<String, PathBuf>, MountError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut paths = HashMap::new();
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    for v in volumes {
        let fail = |message: String| MountError {
            volume: v.name.clone(),
            message,
        };
        let path = setup(client, pod, ns, dir, v, ips).await.map_err(fail)?;
        paths.insert(v.name.clone(), path);
    }
    Ok(paths)
}

fn io(what: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", what.display())
}

async fn setup(
    client: &Client,
    pod: &Pod,
    ns: &str,
    dir: &Path,
    v: &Volume,
    ips: &env::Ips,
) -> Result<PathBuf, String> {
    let under = |kind: &str| dir.join("volumes").join(kind).join(&v.name);
    if let Some(h) = &v.host_path {
        return host_path(Path::new(&h.path), h.type_.as_deref().unwrap_or(""));
    }
    let target = if let Some(e) = &v.empty_dir {
        let p = under("empty-dir");
        std::fs::create_dir_all(&p).map_err(io(&p))?;
        if e.medium.as_deref() == Some("Memory") {
            memory_medium(&p, e.size_limit.as_ref().map(|q| q.0.as_str()))?;
        }
        return Ok(p);
    } else if v.config_map.is_some() {
        under("configmap")
    } else if v.secret.is_some() {
        under("secret")
    } else if v.downward_api.is_some() {
        under("downward-api")
    } else if v.projected.is_some() {
        under("projected")
    } else {
        return Err("volume type not supported by the process runtime (emptyDir, hostPath, configMap, secret, downwardAPI and projected are)".into());
    };
    let mut files: BTreeMap<String, (Vec<u8>, Option<i32>)> = BTreeMap::new();
    if let Some(cm) = &v.config_map {
        let data = env::config_map(client, ns, &cm.name)
            .await
            .map_err(|e| e.0)?;
        match data {
            Some(d) => project(
                &mut files,
                &d,
                cm.items.as_deref(),
                cm.default_mode,
                "ConfigMap",
                &cm.name,
            )?,
            None if cm.optional == Some(true) => {}
            None => return Err(format!("configmap {:?} not found", cm.name)),
        }
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let data = env::secret(client, ns, &name).await.map_err(|e| e.0)?;
        match data {
            Some(d) => project(
                &mut files,
                &d,
                s.items.as_deref(),
                s.default_mode,
                "Secret",
                &name,
            )?,
            None if s.optional == Some(true) => {}
            None => return Err(format!("secret {name:?} not found")),
        }
    }
    if let Some(d) = &v.downward_api {
        for item in d.items.as_deref().unwrap_or_default() {
            if let Some(f) = &item.field_ref {
                let value = env::field_path(pod, &f.field_path, ips).map_err(|e| e.0)?;
                files.insert(
                    item.path.clone(),
                    (value.into_bytes(), item.mode.or(d.default_mode)),
                );
            }
        }
    }
    if let Some(p) = &v.projected {
        for source in p.sources.as_deref().unwrap_or_default() {
            if let Some(cm) = &source.config_map {
                match env::config_map(client, ns, &cm.name)
                    .await
                    .map_err(|e| e.0)?
                {
                    Some(d) => project(
                        &mut files,
                        &d,
                        cm.items.as_deref(),
                        p.default_mode,
                        "ConfigMap",
                        &cm.name,
                    )?,
                    None if cm.optional == Some(true) => {}
                    None => return Err(format!("configmap {:?} not found", cm.name)),
                }
            }
            if let Some(s) = &source.secret {
                match env::secret(client, ns, &s.name).await.map_err(|e| e.0)? {
                    Some(d) => project(
                        &mut files,
                        &d,
                        s.items.as_deref(),
                        p.default_mode,
                        "Secret",
                        &s.name,
                    )?,
                    None if s.optional == Some(true) => {}
                    None => return Err(format!("secret {:?} not found", s.name)),
                }
            }
            if let Some(d) = &source.downward_api {
                for item in d.items.as_deref().unwrap_or_default() {
                    if let Some(f) = &item.field_ref {
                        let value = env::field_path(pod, &f.field_path, ips).map_err(|e| e.0)?;
                        files.insert(
                            item.path.clone(),
                            (value.into_bytes(), item.mode.or(p.default_mode)),
                        );
                    }
                }
            }
            if let Some(t) = &source.service_account_token {
                let token = service_account_token(client, pod, ns, t).await?;
                files.insert(t.path.clone(), (token.into_bytes(), p.default_mode));
            }
        }
    }
    write_files(&target, &files)?;
    Ok(target)
}

/// A token for the pod's ServiceAccount, bound to the pod, from the TokenRequest
/// subresource (the apiserver extends the 3607 s ones the ServiceAccount volume
/// asks for to a year, so the file written once at pod start stays valid).
async fn service_account_token(
    client: &Client,
    pod: &Pod,
    ns: &str,
    t: &ServiceAccountTokenProjection,
) -> Result<String, String> {
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .filter(|n| !n.is_empty())
        .unwrap_or("default");
    let mut spec = serde_json::json!({
        "expirationSeconds": t.expiration_seconds.unwrap_or(3600),
        "boundObjectRef": {
            "kind": "Pod",
            "apiVersion": "v1",
            "name": pod.metadata.name.clone().unwrap_or_default(),
            "uid": pod.metadata.uid.clone().unwrap_or_default(),
        },
    });
    if let Some(audience) = t.audience.as_deref().filter(|a| !a.is_empty()) {
        spec["audiences"] = serde_json::json!([audience]);
    }
    let request = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": spec,
    });
    let reply = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_subresource(account, "token", &request)
        .await
        .map_err(|e| format!("requesting a token for service account {ns}/{account}: {e}"))?;
    reply["status"]["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            format!("the token request for service account {ns}/{account} returned no token")
        })
}

/// Mounts a tmpfs on `dir` (once) for an emptyDir with `medium: Memory`, when the
/// kubelet runs as root; otherwise the directory stays on disk (logged once).
fn memory_medium(dir: &Path, size_limit: Option<&str>) -> Result<(), String> {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !rustix::process::geteuid().is_root() {
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                "emptyDir medium Memory is a plain directory: mounting tmpfs needs root"
            );
        }
        return Ok(());
    }
    if crate::runtime::process::is_mount_point(dir) {
        return Ok(());
    }
    let mut options = String::from("mode=0777");
    if let Some(bytes) = size_limit.and_then(crate::runtime::cgroups::memory_bytes) {
        options.push_str(&format!(",size={bytes}"));
    }
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
        .arg(dir)
        .output()
        .map_err(|e| format!("mount tmpfs on {}: {e}", dir.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "mount tmpfs on {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Adds the keys of `data` (all, or the listed `items`) to `files`.
fn project(
    files: &mut BTreeMap<String, (Vec<u8>, Option<i32>)>,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: Option<i32>,
    kind: &str,
    name: &str,
) -> Result<(), String> {
    match items {
        None => {
            for (k, v) in data {
                files.insert(k.clone(), (v.clone(), mode));
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => {
                        files.insert(item.path.clone(), (v.clone(), item.mode.or(mode)));
                    }
                    None => {
                        return Err(format!(
                            "configmap references non-existent config key: {} ({kind} {name})",
                            item.key
                        ))
                    }
                }
            }
        }
    }
    Ok(())
}

/// Writes `files` (relative paths, no `..`) under `target`, replacing what was there.
fn write_files(
    target: &Path,
    files: &BTreeMap<String, (Vec<u8>, Option<i32>)>,
) -> Result<(), String> {
    if target.exists() {
        std::fs::remove_dir_all(target).map_err(io(target))?;
    }
    std::fs::create_dir_all(target).map_err(io(target))?;
    for (rel, (bytes, mode)) in files {
        if rel.starts_with('/') || rel.split('/').any(|p| p == "..") {
            return Err(format!(
                "path {rel:?} must be relative and may not contain '..'"
            ));
        }
        let path = target.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, bytes).map_err(io(&path))?;
        let mode = mode.unwrap_or(0o644) as u32 & 0o777;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(io(&path))?;
    }
    Ok(())
}

/// Checks (or creates) a hostPath of `kind` (upstream's `HostPathType`).
fn host_path(path: &Path, kind: &str) -> Result<PathBuf, String> {
    let meta = std::fs::metadata(path);
    let shown = path.display();
    match kind {
        "" => {}
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(path).map_err(io(path))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                    .map_err(io(path))?;
            } else if !meta.as_ref().is_ok_and(|m| m.is_dir()) {
                return Err(format!(
                    "hostPath type check failed: {shown} is not a directory"
                ));
            }
        }
        "Directory" => {
            if !meta.as_ref().is_ok_and(|m| m.is_dir()) {
                return Err(format!(
                    "hostPath type check failed: {shown} is not a directory"
                ));
            }
        }
        "FileOrCreate" => {
            if meta.is_err() {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent))?;
                }
                std::fs::write(path, b"").map_err(io(path))?;
            } else if !meta.as_ref().is_ok_and(|m| m.is_file()) {
                return Err(format!("hostPath type check failed: {shown} is not a file"));
            }
        }
        "File" => {
            if !meta.as_ref().is_ok_and(|m| m.is_file()) {
                return Err(format!("hostPath type check failed: {shown} is not a file"));
            }
        }
        "Socket" | "CharDevice" | "BlockDevice" => {
            let ok = meta.as_ref().is_ok_and(|m| {
                let t = m.file_type();
                match kind {
                    "Socket" => t.is_socket(),
                    "CharDevice" => t.is_char_device(),
                    _ => t.is_block_device(),
                }
            });
            if !ok {
                return Err(format!(
                    "hostPath type check failed: {shown} is not a {kind}"
                ));
            }
        }
        other => {
            return Err(format!(
                "hostPath type {other:?} is not a known HostPathType"
            ))
        }
    }
    Ok(path.to_path_buf())
}

/// The runtime mounts of container `c` given the volumes' host paths.
pub fn mounts(c: &Container, paths: &HashMap<String, PathBuf>) -> Result<Vec<Mount>, String> {
    c.volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let base = paths.get(&m.name).ok_or_else(|| {
                format!(
                    "volumeMount {:?}: no volume of that name in the pod",
                    m.name
                )
            })?;
            let host_path = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => base.join(sub),
                None => base.clone(),
            };
            Ok(Mount {
                host_path,
                container_path: m.mount_path.clone(),
                read_only: m.read_only == Some(true),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_path_should_check_and_create_by_type() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("a/b");
        let err = host_path(&missing, "Directory").expect_err("missing directory");
        assert!(err.contains("is not a directory"), "{err}");
        host_path(&missing, "DirectoryOrCreate").expect("created");
        assert!(missing.is_dir());
        let file = dir.path().join("f");
        host_path(&file, "FileOrCreate").expect("created");
        assert!(file.is_file());
        assert!(host_path(&missing, "File").is_err());
        assert!(host_path(&missing, "Bogus").is_err());
    }

    #[test]
    fn write_files_should_refuse_escaping_paths() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut files = BTreeMap::new();
        files.insert("../x".to_string(), (b"x".to_vec(), None));
        assert!(write_files(&dir.path().join("v"), &files).is_err());
        files.clear();
        files.insert("sub/k".to_string(), (b"v".to_vec(), Some(0o600)));
        write_files(&dir.path().join("v"), &files).expect("written");
        assert_eq!(
            std::fs::read(dir.path().join("v/sub/k")).expect("file"),
            b"v"
        );
    }
}
