//! The kernel refuses plugins it cannot load with exit code 2 and one line naming the file.

use anyhow::Result;
use kubernel_e2e::{kernel_section, plugin, plugin_entry, run_refused};

fn refused_with(entry: &str) -> Result<String> {
    let (code, stderr) = run_refused(&(kernel_section() + entry), &[])?;
    assert_eq!(code, Some(2), "exit code 2; stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    Ok(stderr)
}

fn entry_at(path: &str) -> String {
    format!("\n[[plugin]]\nname = \"broken\"\npath = \"{path}\"\n")
}

#[test]
fn missing_file_should_be_refused() -> Result<()> {
    let err = refused_with(&entry_at("/nonexistent/libnothing.so"))?;
    assert!(
        err.contains("plugin \"broken\": /nonexistent/libnothing.so: no such file"),
        "{err}"
    );
    Ok(())
}

#[test]
fn directory_and_non_elf_file_should_be_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let err = refused_with(&entry_at(&dir.path().display().to_string()))?;
    assert!(err.contains("not a regular file"), "{err}");
    let text = dir.path().join("libtext.so");
    std::fs::write(&text, "#!/bin/sh\necho not a library\n")?;
    let err = refused_with(&entry_at(&text.display().to_string()))?;
    assert!(
        err.contains(&format!("{}: not an ELF shared object", text.display())),
        "{err}"
    );
    Ok(())
}

#[test]
fn library_without_descriptor_should_be_refused() -> Result<()> {
    let err = refused_with(&plugin_entry("broken", "not_a_plugin"))?;
    assert!(err.contains("libkubernel_test_not_a_plugin.so: not a kubernel plugin: no descriptor symbol KUBERNEL_PLUGIN"), "{err}");
    Ok(())
}

#[test]
fn wrong_magic_should_be_refused() -> Result<()> {
    let err = refused_with(&plugin_entry("broken", "bad_magic"))?;
    assert!(err.contains("libkubernel_test_bad_magic.so: not a kubernel plugin: descriptor magic is 0x0bad0bad0bad0bad"), "{err}");
    Ok(())
}

#[test]
fn other_abi_version_should_be_refused_naming_both_versions() -> Result<()> {
    let err = refused_with(&plugin_entry("broken", "bad_abi"))?;
    assert!(err.contains("libkubernel_test_bad_abi.so: ABI version mismatch: plugin has ABI 2 (kubernel-abi 0.1.0), kernel has ABI 1 (kubernel-abi 0.1.0)"), "{err}");
    Ok(())
}

#[test]
fn other_target_should_be_refused() -> Result<()> {
    let err = refused_with(&plugin_entry("broken", "bad_target"))?;
    assert!(err.contains("built for target riscv64gc-unknown-linux-gnu, this kernel runs on x86_64-unknown-linux-gnu") || err.contains("built for target riscv64gc-unknown-linux-gnu, this kernel runs on"), "{err}");
    Ok(())
}

#[test]
fn failing_init_should_be_refused_with_the_plugins_message() -> Result<()> {
    let entry =
        plugin_entry("counter", "counter") + "[plugin.config]\nfail_init = \"database on fire\"\n";
    let err = refused_with(&entry)?;
    assert!(
        err.contains(&format!(
            "plugin \"counter\" ({}): init failed: database on fire",
            plugin("counter").display()
        )),
        "{err}"
    );
    let entry = plugin_entry("counter", "counter") + "[plugin.config]\nstrat = 5\n";
    let err = refused_with(&entry)?;
    assert!(
        err.contains("init failed: config: key strat: unknown field `strat`"),
        "{err}"
    );
    Ok(())
}

#[test]
fn plugin_configured_twice_should_be_refused() -> Result<()> {
    let err = refused_with(
        &(plugin_entry("counter", "counter") + &plugin_entry("counter", "counter_next")),
    )?;
    assert!(
        err.contains(
            "plugin[1].name: plugin \"counter\" is configured twice (plugin[0] and plugin[1])"
        ),
        "{err}"
    );
    Ok(())
}
