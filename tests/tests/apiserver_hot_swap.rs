//! Hot-swapping the running apiserver keeps the data, the port and kubectl working.

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
