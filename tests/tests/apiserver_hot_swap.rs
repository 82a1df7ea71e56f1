//! Hot-swapping the running apiserver keeps the data, the port, kubectl and the
//! in-process components (on the bus) working.

use anyhow::Result;
use kubernel_e2e::{apiserver_lib, kubernel, Cluster};

#[test]
fn apiserver_swap_should_keep_serving_the_same_data() -> Result<()> {
    let c = Cluster::start("")?;
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: before\ndata:\n  a: \"1\"\n";
    c.ok_stdin(&["create", "-f", "-"], cm)?;
    let data = c.kernel.data_dir().display().to_string();
    let lib = apiserver_lib().display().to_string();
    for _ in 0..2 {
        let (status, out, err) = kubernel(&["--data-dir", &data, "swap", "apiserver", &lib], &[])?;
        assert!(status.success(), "{err}");
        assert!(
            out.starts_with("swapped apiserver: 0.1.0 -> 0.1.0"),
            "{out}"
        );
        assert_eq!(
            c.ok(&["get", "configmap", "before", "-o", "jsonpath={.data.a}"])?,
            "1"
        );
    }
    c.ok_stdin(&["create", "-f", "-"], &cm.replace("before", "after"))?;
    let out = c.ok(&["get", "configmaps", "-o", "name"])?;
    assert!(
        out.contains("configmap/before") && out.contains("configmap/after"),
        "{out}"
    );
    assert_eq!(c.kernel.plugin("apiserver")?["state"], "running");
    Ok(())
}

#[test]
fn components_on_the_bus_should_carry_on_across_an_apiserver_swap() -> Result<()> {
    let c = Cluster::start(&format!(
        "{}{}{}",
        kubernel_e2e::component_entry("scheduler", "scheduler", ""),
        kubernel_e2e::component_entry("controller-manager", "controller-manager", ""),
        kubernel_e2e::component_entry(
            "kubelet",
            "kubelet",
            "runtime = \"sim\"\nnodes = 2\nnode_name_prefix = \"swap-\"\n"
        ),
    ))?;
    let ready = |want: &str| -> Result<bool> {
        Ok(c.ok(&[
            "get",
            "deployment",
            want,
            "-o",
            "jsonpath={.status.readyReplicas}",
        ])? == "2")
    };
    c.ok(&[
        "create",
        "deployment",
        "before",
        "--image=busybox",
        "--replicas=2",
    ])?;
    kubernel_e2e::eventually(std::time::Duration::from_secs(30), "before ready", || {
        ready("before")
    })?;
    let data = c.kernel.data_dir().display().to_string();
    let lib = apiserver_lib().display().to_string();
    let (status, _, err) = kubernel(&["--data-dir", &data, "swap", "apiserver", &lib], &[])?;
    assert!(status.success(), "{err}");
    // The components' bus watches ended with the old instance; they watch again
    // and act on what happens after the swap.
    c.ok(&[
        "create",
        "deployment",
        "after",
        "--image=busybox",
        "--replicas=2",
    ])?;
    kubernel_e2e::eventually(std::time::Duration::from_secs(30), "after ready", || {
        ready("after")
    })?;
    for plugin in ["scheduler", "controller-manager", "kubelet"] {
        assert_eq!(c.kernel.plugin(plugin)?["state"], "running", "{plugin}");
    }
    Ok(())
}
