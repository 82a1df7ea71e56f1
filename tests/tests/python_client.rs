//! The Python `kubernetes` client against the apiserver plugin: CRUD, selectors, pagination, watch, errors, scale.
//!
//! Runs `tests/python/client_crud.py` with the venv that `scripts/setup` makes at `<repo>/.venv`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use kubernel_e2e::{workspace, Cluster};

/// The scenarios `client_crud.py` runs, in order; each prints `ok <scenario>` when it passes.
const SCENARIOS: [&str; 9] = [
    "configmap_crud",
    "pod_crud",
    "list_selectors",
    "list_pagination",
    "watch_from_resource_version",
    "stale_update_conflict",
    "invalid_object",
    "not_found_and_already_exists",
    "deployment_scale",
];

/// Bounds the script's run, so a watch the server never closes fails the test instead of hanging it.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(300);

#[test]
fn python_client_should_work_against_the_apiserver() -> Result<()> {
    let repo = workspace();
    let python = repo.join(".venv/bin/python");
    if !python.exists() {
        bail!(
            "{} is missing: run `bash scripts/setup` first (scripts/test does); it makes the venv with the `kubernetes` client",
            python.display()
        );
    }
    let c = Cluster::start("")?;

    let out_dir = tempfile::tempdir()?;
    let stdout_path = out_dir.path().join("stdout");
    let stderr_path = out_dir.path().join("stderr");
    let mut child = Command::new(&python)
        .arg(repo.join("tests/python/client_crud.py"))
        .arg(&c.kubeconfig)
        .current_dir(&repo)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path)?)
        .stderr(std::fs::File::create(&stderr_path)?)
        .spawn()
        .with_context(|| format!("running {}", python.display()))?;
    let deadline = Instant::now() + SCRIPT_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&stdout_path)?;
    let stderr = std::fs::read_to_string(&stderr_path)?;
    let report = format!(
        "stdout:\n{stdout}\nstderr:\n{stderr}\napiserver logs:\n{}",
        c.kernel.logs()
    );
    match status {
        None => bail!("client_crud.py still running after {SCRIPT_DEADLINE:?}, killed\n{report}"),
        Some(status) if !status.success() => bail!("client_crud.py failed ({status})\n{report}"),
        Some(_) => {}
    }
    println!("{stdout}");

    let lines: Vec<&str> = stdout.lines().collect();
    for scenario in SCENARIOS {
        let ok = format!("ok {scenario}");
        assert!(lines.contains(&ok.as_str()), "no `{ok}` line\n{report}");
    }
    let summary = format!("{} passed, 0 failed", SCENARIOS.len());
    assert_eq!(
        lines.last(),
        Some(&summary.as_str()),
        "closing line\n{report}"
    );
    Ok(())
}
