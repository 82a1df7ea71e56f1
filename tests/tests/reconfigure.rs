//! Changing a running plugin's config: applied in place when the plugin supports it
//! (state kept, no swap), refused with the plugin's reason, or named when wrong.

use std::time::Duration;

use anyhow::Result;
use kubernel_api::echo::{Add, GetCount};
use kubernel_e2e::{kernel_section, plugin_entry, Kernel};

fn counter_kernel() -> Result<Kernel> {
    let config = format!(
        "{}{}[plugin.config]\nstart = 10\n",
        kernel_section(),
        plugin_entry("counter", "counter")
    );
    Kernel::start(&config, &[])
}

#[test]
fn admin_put_config_should_apply_in_place_and_keep_state() -> Result<()> {
    let k = counter_kernel()?;
    k.ask("counter", &Add { n: 5 })?;
    let (status, body) = k.send_json(
        "PUT",
        "/plugins/counter/config",
        &serde_json::json!({"quiesce_delay_ms": 1}),
    )?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("in_place"), "{body}");
    let count = k.ask("counter", &GetCount)?;
    assert_eq!(count.total, 15, "state survives an in-place config change");
    assert_eq!(
        k.metric(r#"kubernel_plugin_swaps_total{name="counter",result="reconfigured"}"#)?,
        Some(1.0)
    );

    let (status, body) = k.send_json(
        "PUT",
        "/plugins/counter/config",
        &serde_json::json!({"fail_init": "this config is rejected"}),
    )?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("this config is rejected"), "{body}");

    let (status, body) = k.send_json(
        "PUT",
        "/plugins/counter/config",
        &serde_json::json!({"quiesce_delay": 1}),
    )?;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("quiesce_delay"),
        "names the unknown key: {body}"
    );

    let (status, body) = k.send_json("PUT", "/plugins/nope/config", &serde_json::json!({}))?;
    assert_eq!(status, 404, "{body}");
    let (status, body) = k.send_json("PUT", "/plugins/counter/config", &serde_json::json!([1]))?;
    assert_eq!(status, 400, "{body}");

    assert_eq!(
        k.ask("counter", &GetCount)?.total,
        15,
        "refusals change nothing"
    );
    Ok(())
}

#[test]
fn config_file_change_should_reconfigure_without_a_swap() -> Result<()> {
    let mut k = counter_kernel()?;
    k.ask("counter", &Add { n: 1 })?;
    let path = k.config_path();
    let text = std::fs::read_to_string(&path)?;
    std::fs::write(
        &path,
        text.replace("start = 10", "start = 10\nquiesce_delay_ms = 2"),
    )?;
    k.wait_until(Duration::from_secs(10), "config applied in place", |k| {
        Ok(
            k.metric(r#"kubernel_plugin_swaps_total{name="counter",result="reconfigured"}"#)?
                == Some(1.0),
        )
    })?;
    assert_eq!(k.ask("counter", &GetCount)?.total, 11);
    assert_eq!(
        k.metric(r#"kubernel_plugin_swaps_total{name="counter",result="success"}"#)?
            .unwrap_or(0.0),
        0.0,
        "no swap happened"
    );
    assert_eq!(
        k.metric(r#"kubernel_config_reloads_total{result="applied"}"#)?,
        Some(1.0)
    );
    // A broken file is counted and changes nothing.
    std::fs::write(&path, "[[plugin]\nname = ")?;
    k.wait_until(Duration::from_secs(10), "invalid config counted", |k| {
        Ok(k.metric(r#"kubernel_config_reloads_total{result="invalid"}"#)? == Some(1.0))
    })?;
    assert_eq!(k.ask("counter", &GetCount)?.total, 11);
    Ok(())
}

#[test]
fn extension_swap_should_be_refused_by_a_plugin_without_extensions() -> Result<()> {
    let k = counter_kernel()?;
    let (status, body) = k.send_json(
        "POST",
        "/plugins",
        &serde_json::json!({"name": "counter:scorer", "path": "/nonexistent/lib.so"}),
    )?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("kernel.SwapExtension"), "{body}");
    let (status, body) = k.send_json(
        "POST",
        "/plugins",
        &serde_json::json!({"name": "nope:scorer", "path": "/x.so"}),
    )?;
    assert_eq!(status, 404, "{body}");
    Ok(())
}
