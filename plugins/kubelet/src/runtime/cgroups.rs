//! Per-container CPU and memory limits through cgroups, v2 or v1, for the process
//! runtime when it runs as root. Each container gets a cgroup below the kubelet's own
//! (so the limits nest inside whatever limits the kubelet already has): on v1 one in the
//! `memory` and one in the `cpu` hierarchy, on v2 one with `memory.max` and `cpu.max`.
//! The container's shell wrapper joins them before it execs the command, so every child
//! is inside too. An OOM kill is read back from `memory.oom_control` (v1) or
//! `memory.events` (v2).

use std::path::{Path, PathBuf};

/// CPU and memory limits of one container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// `resources.limits.memory` in bytes.
    pub memory_bytes: Option<u64>,
    /// `resources.limits.cpu` in millicores.
    pub cpu_millis: Option<u64>,
}

impl Limits {
    /// True when no limit is set.
    pub fn is_empty(&self) -> bool {
        self.memory_bytes.is_none() && self.cpu_millis.is_none()
    }
}

/// Where container cgroups are created, if anywhere.
#[derive(Debug, Clone)]
pub(super) enum Hierarchy {
    /// cgroup v2 (unified) with the memory and cpu controllers: the parent directory.
    V2(PathBuf),
    /// cgroup v1: the parents in the memory and cpu hierarchies.
    V1 { memory: PathBuf, cpu: PathBuf },
}

/// The kubelet's own cgroup path in hierarchy `controller` (`""` for v2), from
/// `/proc/self/cgroup`.
fn own_path(controller: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        matches.then(|| path.trim_start_matches('/').to_string())
    })
}

/// Finds a usable hierarchy; `Err` says why limits cannot be applied.
pub(super) fn detect() -> Result<Hierarchy, String> {
    if !rustix::process::geteuid().is_root() {
        return Err("the kubelet does not run as root".into());
    }
    let root = Path::new("/sys/fs/cgroup");
    let v1_memory = root.join("memory");
    let v1_cpu = root.join("cpu");
    if v1_memory.join("memory.limit_in_bytes").exists() && v1_cpu.join("cpu.cfs_quota_us").exists()
    {
        let memory = v1_memory.join(own_path("memory").unwrap_or_default());
        let cpu = v1_cpu.join(own_path("cpu").unwrap_or_default());
        return Ok(Hierarchy::V1 { memory, cpu });
    }
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "memory")
        && controllers.split_whitespace().any(|c| c == "cpu")
    {
        let own = root.join(own_path("").unwrap_or_default());
        let parent = own.join("kubernel-pods");
        std::fs::create_dir_all(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        // Controllers are handed down through subtree_control at each level.
        for dir in [&own, &parent] {
            std::fs::write(dir.join("cgroup.subtree_control"), "+memory +cpu")
                .map_err(|e| format!("enabling memory and cpu in {}: {e}", dir.display()))?;
        }
        return Ok(Hierarchy::V2(parent));
    }
    Err("no cgroup v1 memory and cpu hierarchies and no cgroup v2 with the memory and cpu controllers".into())
}

impl Hierarchy {
    /// Creates the cgroups of container `name` with `limits`; returns their directories.
    pub(super) fn create(&self, name: &str, limits: Limits) -> Result<Vec<PathBuf>, String> {
        let write = |dir: &Path, file: &str, value: String| {
            std::fs::write(dir.join(file), &value)
                .map_err(|e| format!("{}/{file} = {value}: {e}", dir.display()))
        };
        let mkdir = |dir: &Path| {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))
        };
        let leaf = format!("kubernel-{name}");
        match self {
            Hierarchy::V1 { memory, cpu } => {
                let (m, c) = (memory.join(&leaf), cpu.join(&leaf));
                mkdir(&m)?;
                mkdir(&c)?;
                if let Some(bytes) = limits.memory_bytes {
                    write(&m, "memory.limit_in_bytes", bytes.to_string())?;
                }
                if let Some(millis) = limits.cpu_millis {
                    write(&c, "cpu.cfs_period_us", "100000".into())?;
                    write(&c, "cpu.cfs_quota_us", (millis.max(1) * 100).to_string())?;
                }
                Ok(vec![m, c])
            }
            Hierarchy::V2(parent) => {
                let dir = parent.join(&leaf);
                mkdir(&dir)?;
                if let Some(bytes) = limits.memory_bytes {
                    write(&dir, "memory.max", bytes.to_string())?;
                }
                if let Some(millis) = limits.cpu_millis {
                    write(&dir, "cpu.max", format!("{} 100000", millis.max(1) * 100))?;
                }
                Ok(vec![dir])
            }
        }
    }
}

/// True when the kernel OOM-killed a process in one of `dirs`.
pub(super) fn oom_killed(dirs: &[PathBuf]) -> bool {
    dirs.iter().any(|d| {
        ["memory.oom_control", "memory.events"].iter().any(|f| {
            std::fs::read_to_string(d.join(f)).is_ok_and(|t| {
                t.lines().any(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
                })
            })
        })
    })
}

/// Removes `dirs` (once their processes are gone); failures are logged.
pub(super) fn remove(dirs: &[PathBuf]) {
    for d in dirs {
        if let Err(e) = std::fs::remove_dir(d) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::debug!(cgroup = %d.display(), error = %e, "removing a container cgroup failed");
            }
        }
    }
}

/// A Kubernetes quantity of memory (`128Mi`, `1G`, `500000`) in bytes.
pub fn memory_bytes(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let n: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "m" => 1e-3,
        _ => return None,
    };
    Some((n * factor) as u64)
}

/// A Kubernetes quantity of CPU (`500m`, `2`, `0.5`) in millicores.
pub fn cpu_millis(q: &str) -> Option<u64> {
    let q = q.trim();
    match q.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => q.parse::<f64>().ok().map(|c| (c * 1000.0) as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_should_parse_as_kubernetes_writes_them() {
        assert_eq!(memory_bytes("64Mi"), Some(64 << 20));
        assert_eq!(memory_bytes("1G"), Some(1_000_000_000));
        assert_eq!(memory_bytes("1500"), Some(1500));
        assert_eq!(memory_bytes("12Zi"), None);
        assert_eq!(cpu_millis("500m"), Some(500));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(cpu_millis("0.25"), Some(250));
    }
}
