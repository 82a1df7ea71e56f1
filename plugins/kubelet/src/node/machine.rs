//! What the real machine offers and how it is doing, read from `/proc`, `/sys` and
//! `statvfs`: the Node's capacity, allocatable, nodeInfo and pressure conditions.

use std::path::Path;

use jiff::Timestamp;
use serde_json::{json, Value};

use crate::pod_status::k8s_time;

/// Memory kept out of `allocatable` and the MemoryPressure threshold (upstream's
/// default hard eviction threshold `memory.available<100Mi`).
const MEMORY_RESERVE_KIB: u64 = 100 * 1024;
/// DiskPressure below this fraction of the node filesystem free (`nodefs.available<10%`).
const DISK_PRESSURE_FREE: f64 = 0.10;
/// PIDPressure below this fraction of `pid_max` free.
const PID_PRESSURE_FREE: f64 = 0.10;
/// Pods per node (upstream `maxPods`).
pub const MAX_PODS: u32 = 110;

/// One reading of the machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Readings {
    /// Online CPUs.
    pub cpus: usize,
    /// `MemTotal` in KiB.
    pub memory_kib: u64,
    /// `MemAvailable` in KiB.
    pub memory_available_kib: u64,
    /// Size of the filesystem holding the pod directories, bytes.
    pub disk_bytes: u64,
    /// Free bytes of that filesystem (for unprivileged users).
    pub disk_free_bytes: u64,
    /// Processes running now.
    pub processes: u64,
    /// `kernel.pid_max`.
    pub pid_max: u64,
}

/// Reads the machine; `dir` is on the filesystem whose size is `ephemeral-storage`.
pub fn read(dir: &Path) -> Readings {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (disk_bytes, disk_free_bytes) = match rustix::fs::statvfs(dir) {
        Ok(s) => (
            s.f_blocks.saturating_mul(s.f_frsize),
            s.f_bavail.saturating_mul(s.f_frsize),
        ),
        Err(_) => (0, 0),
    };
    let processes = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count() as u64
        })
        .unwrap_or(0);
    Readings {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_kib: field("MemTotal"),
        memory_available_kib: field("MemAvailable"),
        disk_bytes,
        disk_free_bytes,
        processes,
        pid_max: read_trimmed("/proc/sys/kernel/pid_max")
            .parse()
            .unwrap_or(32768),
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Readings {
    /// `status.capacity`.
    pub fn capacity(&self) -> Value {
        json!({
            "cpu": self.cpus.to_string(),
            "memory": format!("{}Ki", self.memory_kib),
            "ephemeral-storage": format!("{}Ki", self.disk_bytes / 1024),
            "pods": MAX_PODS.to_string(),
        })
    }

    /// `status.allocatable`: capacity less the eviction thresholds.
    pub fn allocatable(&self) -> Value {
        let disk = (self.disk_bytes as f64 * (1.0 - DISK_PRESSURE_FREE)) as u64;
        json!({
            "cpu": self.cpus.to_string(),
            "memory": format!("{}Ki", self.memory_kib.saturating_sub(MEMORY_RESERVE_KIB)),
            "ephemeral-storage": format!("{}Ki", disk / 1024),
            "pods": MAX_PODS.to_string(),
        })
    }

    /// (MemoryPressure, DiskPressure, PIDPressure) as booleans.
    pub fn pressure(&self) -> (bool, bool, bool) {
        let memory = self.memory_kib > 0 && self.memory_available_kib < MEMORY_RESERVE_KIB;
        let disk = self.disk_bytes > 0
            && (self.disk_free_bytes as f64) < self.disk_bytes as f64 * DISK_PRESSURE_FREE;
        let pids = self.pid_max > 0
            && ((self.pid_max.saturating_sub(self.processes)) as f64)
                < self.pid_max as f64 * PID_PRESSURE_FREE;
        (memory, disk, pids)
    }
}

/// `kubernetes.io/arch` of this build (Go's names).
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The host name, lowercased, as a default node name.
pub fn hostname() -> String {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .to_lowercase();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// `status.nodeInfo` of this machine.
pub fn node_info(runtime_version: &str) -> Value {
    let machine_id = read_trimmed("/etc/machine-id");
    let system_uuid = match read_trimmed("/sys/class/dmi/id/product_uuid") {
        u if u.is_empty() => machine_id.clone(),
        u => u,
    };
    let os_image = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into());
    json!({
        "machineID": machine_id,
        "systemUUID": system_uuid,
        "bootID": read_trimmed("/proc/sys/kernel/random/boot_id"),
        "kernelVersion": read_trimmed("/proc/sys/kernel/osrelease"),
        "osImage": os_image,
        "containerRuntimeVersion": runtime_version,
        "kubeletVersion": "v1.33.0",
        "kubeProxyVersion": "",
        "operatingSystem": "linux",
        "architecture": architecture(),
    })
}

/// The conditions for `r`, heartbeat `now`, Ready unless `not_ready` says why not; a
/// condition whose status did not change keeps `since` (its previous transition time,
/// when known).
pub fn conditions(
    r: &Readings,
    now: Timestamp,
    not_ready: Option<&str>,
    since: &dyn Fn(&str, &str) -> Option<String>,
) -> Value {
    let now_s = k8s_time(now);
    let condition = |kind: &str, on: bool, (yes, no): ((&str, &str), (&str, &str))| {
        let status = if on { "True" } else { "False" };
        let (reason, message) = if on { yes } else { no };
        json!({
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now_s,
            "lastTransitionTime": since(kind, status).unwrap_or_else(|| now_s.clone()),
        })
    };
    let (memory, disk, pids) = r.pressure();
    json!([
        condition(
            "MemoryPressure",
            memory,
            (
                (
                    "KubeletHasInsufficientMemory",
                    "kubelet has insufficient memory available"
                ),
                (
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available"
                )
            )
        ),
        condition(
            "DiskPressure",
            disk,
            (
                ("KubeletHasDiskPressure", "kubelet has disk pressure"),
                ("KubeletHasNoDiskPressure", "kubelet has no disk pressure")
            )
        ),
        condition(
            "PIDPressure",
            pids,
            (
                (
                    "KubeletHasInsufficientPID",
                    "kubelet has insufficient PID available"
                ),
                (
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available"
                )
            )
        ),
        condition(
            "Ready",
            not_ready.is_none(),
            (
                ("KubeletReady", "kubelet is posting ready status"),
                ("KubeletNotReady", not_ready.unwrap_or_default())
            )
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_should_find_cpus_memory_and_disk() {
        let r = read(Path::new("/"));
        assert!(r.cpus >= 1);
        assert!(r.memory_kib > r.memory_available_kib / 2, "{r:?}");
        assert!(
            r.disk_bytes > 0 && r.disk_free_bytes <= r.disk_bytes,
            "{r:?}"
        );
        assert!(r.processes > 0 && r.pid_max > r.processes, "{r:?}");
        assert_eq!(r.capacity()["pods"], "110");
    }

    #[test]
    fn pressure_should_follow_the_eviction_thresholds() {
        let mut r = Readings {
            cpus: 2,
            memory_kib: 4 << 20,
            memory_available_kib: 2 << 20,
            disk_bytes: 100,
            disk_free_bytes: 50,
            processes: 100,
            pid_max: 1000,
        };
        assert_eq!(r.pressure(), (false, false, false));
        r.memory_available_kib = 50 * 1024;
        r.disk_free_bytes = 5;
        r.processes = 950;
        assert_eq!(r.pressure(), (true, true, true));
        let c = conditions(&r, Timestamp::UNIX_EPOCH, None, &|_, _| None);
        assert_eq!(c[0]["reason"], "KubeletHasInsufficientMemory");
        assert_eq!(c[3]["status"], "True");
        let c = conditions(&r, Timestamp::UNIX_EPOCH, Some("runtime down"), &|_, _| {
            None
        });
        assert_eq!(
            (&c[3]["status"], &c[3]["message"]),
            (&json!("False"), &json!("runtime down"))
        );
    }
}
