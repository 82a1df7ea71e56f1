//! A worker process: a kernel running only the kubelet (process runtime) and the proxy,
//! pointed at the apiserver of another kernel (as `config/worker.toml` does). Its node
//! registers, the control plane's scheduler places a pod on it, the pod runs as a
//! process of the worker, and stopping the worker stops the pod's process.

use std::time::Duration;

use anyhow::Result;
use kubernel_e2e::{component_entry, eventually, free_ports, kernel_section, Cluster, Kernel};

/// The pids of live processes whose command line contains `needle`.
fn processes(needle: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let zombie = status
                .lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'));
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            !zombie
                && String::from_utf8_lossy(&cmdline)
                    .replace('\0', " ")
                    .contains(needle)
        })
        .collect()
}

#[test]
fn a_worker_process_should_run_the_pods_the_control_plane_schedules_to_it() -> Result<()> {
    let c = Cluster::start(&component_entry("scheduler", "scheduler", ""))?;
    let ports = free_ports(2)?;
    let (kubelet_port, healthz) = (ports[0], ports[1]);
    let worker = Kernel::start(
        &(kernel_section()
            + &component_entry(
                "kubelet",
                "kubelet",
                &format!(
                    "runtime = \"process\"\nnode_name = \"worker-1\"\nport = {kubelet_port}\nlease_renew_interval = \"1s\"\n[plugin.config.client]\nserver = \"{}\"\n",
                    c.api
                ),
            )
            + &component_entry(
                "proxy",
                "proxy",
                &format!(
                    "healthz_bind_address = \"127.0.0.1:{healthz}\"\ncluster_ips = \"false\"\n[plugin.config.client]\nserver = \"{}\"\n",
                    c.api
                ),
            )),
        &[],
    )?;
    eventually(Duration::from_secs(30), "worker-1 Ready", || {
        let ready = c.ok(&[
            "get",
            "node",
            "worker-1",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        Ok(ready.is_ok_and(|r| r == "True"))
    })?;

    let marker = format!("kubernel-worker-test-{}", std::process::id());
    c.ok(&[
        "run",
        "sleeper",
        "--image=busybox",
        "--command",
        "--",
        "sh",
        "-c",
        &format!("sleep 300; : {marker}"),
    ])?;
    eventually(
        Duration::from_secs(30),
        "sleeper Running on worker-1",
        || {
            let out = c.ok(&[
                "get",
                "pod",
                "sleeper",
                "-o",
                "jsonpath={.spec.nodeName} {.status.phase}",
            ])?;
            Ok(out == "worker-1 Running")
        },
    )?;
    eventually(Duration::from_secs(10), "the pod's process", || {
        Ok(!processes(&marker).is_empty())
    })?;

    println!("pod process(es) on the worker: {:?}", processes(&marker));
    // The worker goes: its pods' processes go with it.
    let mut worker = worker;
    worker.terminate(Duration::from_secs(20))?;
    eventually(Duration::from_secs(10), "no process left", || {
        Ok(processes(&marker).is_empty())
    })?;
    Ok(())
}
