//! A containerd of the test's own (config, root, state and socket in a temp dir) and the
//! OCI images it runs, built from Debian's static busybox and imported with `ctr`, as an
//! air-gapped lab does: no registry is contacted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use kubernel_e2e::eventually;
use serde_json::json;

/// The image the test pods run: busybox with its applets as `/bin/<applet>`.
pub const BUSYBOX_IMAGE: &str = "kubernel.local/busybox:test";
/// The sandbox ("pause") image containerd's CRI plugin needs: the same layer, sleeping.
pub const PAUSE_IMAGE: &str = "kubernel.local/pause:test";
/// Where Debian's `busybox-static` installs busybox.
const BUSYBOX: &str = "/bin/busybox";
/// Applets linked into the image.
const APPLETS: &[&str] = &[
    "sh", "sleep", "echo", "cat", "ls", "test", "touch", "rm", "true", "false", "env", "pwd",
];

/// Why the CRI tests cannot run here (`None`: they can): they need root, containerd,
/// runc, ctr and busybox-static.
pub fn missing() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|u| u.split_whitespace().nth(1).map(str::to_string));
    if uid.as_deref() != Some("0") {
        return Some("not root (containerd and runc need it)".into());
    }
    for tool in ["containerd", "ctr", "runc"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!(
                "{tool} not found (Debian packages containerd and runc; scripts/setup installs them)"
            ));
        }
    }
    if !Path::new(BUSYBOX).exists() {
        return Some(format!(
            "{BUSYBOX} not found (Debian package busybox-static; scripts/setup installs it)"
        ));
    }
    None
}

/// A running containerd; dropping it removes every container it runs, stops it and
/// deletes its directory.
pub struct Containerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Containerd {
    /// Starts a containerd in a fresh temp dir with both test images imported.
    pub fn start() -> Result<Containerd> {
        Containerd::start_with_cni(None)
    }

    /// Starts a containerd whose CRI plugin networks pods with the standard CNI plugins
    /// (`cni_bin_dir`) from `template`, a CNI config in which containerd puts the pod
    /// CIDR the kubelet sends (`{{.PodCIDR}}`); `None`: no CNI config (host network only).
    pub fn start_with_cni(template: Option<(&str, &Path)>) -> Result<Containerd> {
        let dir = tempfile::Builder::new().prefix("kn-cri-").tempdir()?;
        let d = dir.path();
        let cni = d.join("cni");
        let (cni_bin, cni_template) = match template {
            Some((text, bin)) => {
                std::fs::create_dir_all(&cni)?;
                let path = cni.join("template.json");
                std::fs::write(&path, text.replace("@DIR@", &cni.to_string_lossy()))?;
                (
                    bin.to_path_buf(),
                    format!("    conf_template = \"{}\"\n", path.display()),
                )
            }
            None => (cni.join("bin"), String::new()),
        };
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # Containers may not lower their OOM score below containerd's own here (a lab
  # running inside a container lacks CAP_SYS_RESOURCE).
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin}"
    conf_dir = "{cni}/conf"
{cni_template}"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("containerd.sock").display(),
            cni = cni.display(),
            bin = cni_bin.display(),
        );
        std::fs::write(d.join("config.toml"), config)?;
        let mut c = Containerd { dir, child: None };
        c.spawn()?;
        let images = c.dir.path().join("images");
        for (name, cmd) in [
            (BUSYBOX_IMAGE, json!(["sh"])),
            (PAUSE_IMAGE, json!(["sleep", "2147483647"])),
        ] {
            let archive = build_image(&images, name, &cmd)?;
            c.ctr(&["images", "import", &archive.to_string_lossy()])?;
        }
        Ok(c)
    }

    /// The CRI endpoint (`unix://...`) for the kubelet's `runtime_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// A directory for the kubelet's `pod_log_dir`.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("pod-logs")
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting containerd")?;
        self.child = Some(child);
        let sock = self.socket();
        eventually(Duration::from_secs(20), "containerd serving", || {
            Ok(sock.exists() && self.ctr(&["version"]).is_ok())
        })
        .with_context(|| self.logs())
    }

    /// Kills containerd with SIGKILL (its containers' shims keep running).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts containerd again on the same directories.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    /// The tail of containerd's log, for failure messages.
    pub fn logs(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Runs `ctr -n k8s.io <args>` against this containerd; its stdout.
    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .context("running ctr")?;
        if !out.status.success() {
            bail!(
                "ctr {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The ids of every container (sandboxes included) containerd holds.
    pub fn containers(&self) -> Result<Vec<String>> {
        Ok(self
            .ctr(&["containers", "ls", "-q"])?
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Whatever the test left: tasks killed and deleted (their shims exit and their
        // root filesystems are unmounted), containers deleted.
        if self.child.is_none() {
            let _ = self.spawn();
        }
        for id in self.containers().unwrap_or_default() {
            let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", &id]);
        }
        for id in self.containers().unwrap_or_default() {
            let _ = eventually(Duration::from_secs(5), "task deleted", || {
                Ok(self.ctr(&["tasks", "delete", "-f", &id]).is_ok()
                    || self
                        .ctr(&["tasks", "ls", "-q"])
                        .is_ok_and(|t| !t.contains(&id)))
            });
            let _ = self.ctr(&["containers", "delete", &id]);
        }
        self.kill();
        let root = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut below: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&root))
            .collect();
        below.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in below {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

/// `sha256:<hex>` of `file` and its size.
fn digest(file: &Path) -> Result<(String, u64)> {
    let out = Command::new("sha256sum").arg(file).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .split_whitespace()
        .next()
        .filter(|h| h.len() == 64)
        .with_context(|| format!("sha256sum {}: {text}", file.display()))?;
    Ok((format!("sha256:{hex}"), std::fs::metadata(file)?.len()))
}

/// Moves `file` into the layout's blobs under its digest; returns the descriptor fields.
fn add_blob(layout: &Path, file: &Path) -> Result<(String, u64)> {
    let (digest, size) = digest(file)?;
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    std::fs::rename(file, blobs.join(&digest["sha256:".len()..]))?;
    Ok((digest, size))
}

fn tar(dir: &Path, out: &Path) -> Result<()> {
    let status = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .context("running tar")?;
    if !status.success() {
        bail!("tar -C {} failed: {status}", dir.display());
    }
    Ok(())
}

/// Writes an OCI image archive (`oci-layout`, `index.json`, blobs) of one layer holding
/// busybox and its applets, named `name`, running `cmd`; returns the archive's path.
pub fn build_image(work: &Path, name: &str, cmd: &serde_json::Value) -> Result<PathBuf> {
    let base = work.join(name.replace(['/', ':'], "_"));
    let rootfs = base.join("rootfs");
    let layout = base.join("layout");
    for d in ["bin", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    std::fs::create_dir_all(&layout)?;
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox"))?;
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
    }
    let layer = base.join("layer.tar");
    tar(&rootfs, &layer)?;
    let (layer_digest, layer_size) = add_blob(&layout, &layer)?;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": cmd, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let config_file = base.join("config.json");
    std::fs::write(&config_file, config.to_string())?;
    let (config_digest, config_size) = add_blob(&layout, &config_file)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer_size,
        }],
    });
    let manifest_file = base.join("manifest.json");
    std::fs::write(&manifest_file, manifest.to_string())?;
    let (manifest_digest, manifest_size) = add_blob(&layout, &manifest_file)?;
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": name.rsplit(':').next().unwrap_or("latest"),
            },
        }],
    });
    std::fs::write(layout.join("index.json"), index.to_string())?;
    std::fs::write(
        layout.join("oci-layout"),
        json!({"imageLayoutVersion": "1.0.0"}).to_string(),
    )?;
    let archive = base.join("image.tar");
    tar(&layout, &archive)?;
    Ok(archive)
}
