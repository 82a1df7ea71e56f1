//! Harness for end-to-end tests: starts the real `kubernel` binary with real plugin libraries.
//!
//! The binary and the test plugins must be built first (`cargo build --workspace`,
//! which `scripts/test` does). Each [`Kernel`] runs in its own temporary data
//! directory with its admin endpoint on a free loopback port.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use kubernel_api::{codec, Message};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The directory holding the build of the binary and plugins: `target/debug` for the
/// tests, `target/release` for the benchmarks (built with the release profile).
pub fn build_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    target.join(if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    })
}

fn built(file: &str) -> PathBuf {
    let path = build_dir().join(file);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` first (scripts/test does)",
        path.display()
    );
    path
}

/// The `kubernel` binary.
pub fn kubernel_bin() -> PathBuf {
    built("kubernel")
}

/// A test plugin library, by crate suffix: `counter`, `counter_next`, `driver`, `bad_abi`, ...
pub fn plugin(name: &str) -> PathBuf {
    built(&format!("libkubernel_test_{name}.so"))
}

/// Kernel settings that keep tests fast: short backoff, snapshots and config polling.
pub fn kernel_section() -> String {
    r#"[kernel]
admin_addr = "127.0.0.1:0"
log_format = "json"
log_filter = "info"
snapshot_interval = "50ms"
restart_backoff_initial = "200ms"
restart_backoff_max = "1s"
config_poll_interval = "100ms"
shutdown_grace = "5s"
"#
    .to_string()
}

/// A `[[plugin]]` entry for a test plugin library.
pub fn plugin_entry(name: &str, lib: &str) -> String {
    format!(
        "\n[[plugin]]\nname = \"{name}\"\npath = \"{}\"\n",
        plugin(lib).display()
    )
}

/// A running kernel process.
pub struct Kernel {
    env: Vec<(String, String)>,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Base URL of the admin endpoint.
    pub admin: String,
}

/// What a failed bus call over the admin endpoint returned.
#[derive(Debug)]
pub struct BusError {
    /// HTTP status.
    pub http: u16,
    /// `x-kubernel-status` header (`panicked`, `unavailable`, ...).
    pub status: String,
    /// Body text.
    pub message: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Runs `kubernel` with `args` and returns its exit status, stdout and stderr.
pub fn kubernel(args: &[&str], env: &[(&str, &str)]) -> Result<(ExitStatus, String, String)> {
    let out = Command::new(kubernel_bin())
        .args(args)
        .envs(env.iter().copied())
        .output()?;
    Ok((
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

impl Kernel {
    /// Starts `kubernel run` with `config` and `env`, and waits until `/readyz` is ok.
    pub fn start(config: &str, env: &[(&str, &str)]) -> Result<Kernel> {
        let dir = tempfile::tempdir()?;
        let config_path = dir.path().join("kubernel.toml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("kubernel.log"))?;
        let data = dir.path().join("data");
        let child = Command::new(kubernel_bin())
            .arg("--data-dir")
            .arg(&data)
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning kubernel")?;
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut kernel = Kernel {
            env,
            child: Some(child),
            dir,
            admin: String::new(),
        };
        let addr_file = data.join("admin-addr");
        kernel.wait_until(Duration::from_secs(20), "the admin address", |k| {
            if let Some(status) = k.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(anyhow!(
                    "kubernel exited with {status} during start:\n{}",
                    k.logs()
                ));
            }
            Ok(addr_file.exists())
        })?;
        kernel.admin = format!("http://{}", std::fs::read_to_string(&addr_file)?.trim());
        kernel.wait_until(Duration::from_secs(20), "readyz", |k| {
            Ok(k.get("/readyz")?.0 == 200)
        })?;
        Ok(kernel)
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The config file path (edit it to test config watching).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("kubernel.toml")
    }

    /// Everything the kernel logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kubernel.log")).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// GET a path of the admin endpoint: status and body.
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        let mut resp = agent().get(&format!("{}{path}", self.admin)).call()?;
        let body = resp.body_mut().read_to_string()?;
        Ok((resp.status().as_u16(), body))
    }

    /// Sends `body` as JSON with `method` (`PUT`, `POST`) to a path of the admin endpoint: status and body.
    pub fn send_json(
        &self,
        method: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(u16, String)> {
        let url = format!("{}{path}", self.admin);
        let mut resp = match method {
            "PUT" => agent().put(&url).send_json(body)?,
            "POST" => agent().post(&url).send_json(body)?,
            other => bail!("send_json: unsupported method {other}"),
        };
        let text = resp.body_mut().read_to_string()?;
        Ok((resp.status().as_u16(), text))
    }

    /// `GET /plugins`.
    pub fn plugins(&self) -> Result<Vec<serde_json::Value>> {
        let (status, body) = self.get("/plugins")?;
        if status != 200 {
            bail!("GET /plugins: {status}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// One plugin's entry of `GET /plugins`.
    pub fn plugin(&self, name: &str) -> Result<serde_json::Value> {
        self.plugins()?
            .into_iter()
            .find(|p| p["name"] == name)
            .ok_or_else(|| anyhow!("no plugin {name} in /plugins"))
    }

    fn bus(
        &self,
        verb: &str,
        target: &str,
        kind: &str,
        payload: Vec<u8>,
        traceparent: Option<&str>,
    ) -> Result<std::result::Result<Vec<u8>, BusError>> {
        let url = format!("{}/bus/{verb}/{target}/{kind}", self.admin);
        let mut req = agent().post(&url);
        if let Some(parent) = traceparent {
            req = req.header("traceparent", parent);
        }
        let mut resp = req.send(&payload[..])?;
        let http = resp.status().as_u16();
        let status = resp
            .headers()
            .get("x-kubernel-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut body = Vec::new();
        resp.body_mut().as_reader().read_to_end(&mut body)?;
        if http / 100 == 2 {
            Ok(Ok(body))
        } else {
            Ok(Err(BusError {
                http,
                status,
                message: String::from_utf8_lossy(&body).into_owned(),
            }))
        }
    }

    /// Sends a typed request to a plugin through the bus and decodes the reply.
    pub fn request<M: Message>(
        &self,
        target: &str,
        msg: &M,
    ) -> Result<std::result::Result<M::Reply, BusError>> {
        Ok(
            match self.bus(
                "request",
                target,
                M::KIND,
                codec::encode(M::KIND, msg)?,
                None,
            )? {
                Ok(bytes) => Ok(codec::decode(M::KIND, &bytes)?),
                Err(e) => Err(e),
            },
        )
    }

    /// Like [`Kernel::request`], failing the test on a bus error.
    pub fn ask<M: Message>(&self, target: &str, msg: &M) -> Result<M::Reply> {
        self.request(target, msg)?
            .map_err(|e| anyhow!("{} to {target}: {e:?}", M::KIND))
    }

    /// `ask` with a W3C `traceparent`, which the kernel puts in the message envelope.
    pub fn ask_traced<M: Message>(
        &self,
        target: &str,
        msg: &M,
        traceparent: &str,
    ) -> Result<M::Reply> {
        let payload = codec::encode(M::KIND, msg)?;
        match self.bus("request", target, M::KIND, payload, Some(traceparent))? {
            Ok(bytes) => Ok(codec::decode(M::KIND, &bytes)?),
            Err(e) => bail!("{} to {target}: {e:?}", M::KIND),
        }
    }

    /// Queues a typed message in a plugin's mailbox.
    pub fn send<M: Message>(&self, target: &str, msg: &M) -> Result<()> {
        match self.bus("send", target, M::KIND, codec::encode(M::KIND, msg)?, None)? {
            Ok(_) => Ok(()),
            Err(e) => bail!("send {} to {target}: {e:?}", M::KIND),
        }
    }

    /// Publishes a typed event to every plugin subscribed to its kind.
    pub fn publish<M: Message>(&self, msg: &M) -> Result<()> {
        let url = format!("{}/bus/publish/{}", self.admin, M::KIND);
        let resp = agent().post(&url).send(&codec::encode(M::KIND, msg)?[..])?;
        if resp.status().as_u16() != 202 {
            bail!("publish {}: {}", M::KIND, resp.status());
        }
        Ok(())
    }

    /// The value of one sample of `/metrics` (`name{labels}` as printed), if present.
    pub fn metric(&self, series: &str) -> Result<Option<f64>> {
        let (_, body) = self.get("/metrics")?;
        Ok(body
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .and_then(|v| v.trim().parse().ok()))
    }

    /// The value of the first sample of `name` whose labels include every
    /// `key="value"` of `labels`, whatever its other labels and their order.
    pub fn sample(&self, name: &str, labels: &[&str]) -> Result<Option<f64>> {
        let (_, body) = self.get("/metrics")?;
        Ok(body.lines().find_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?.strip_prefix('{')?;
            let pairs: Vec<&str> = rest.trim_end_matches('}').split(',').collect();
            labels
                .iter()
                .all(|want| pairs.contains(want))
                .then(|| value.parse().ok())?
        }))
    }

    /// Polls `cond` every 20 ms until it holds or `timeout` passes.
    pub fn wait_until(
        &mut self,
        timeout: Duration,
        what: &str,
        mut cond: impl FnMut(&mut Kernel) -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match cond(self) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => {}
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; logs:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL and starts a new one on the same data dir and config.
    pub fn kill_and_restart(mut self) -> Result<Kernel> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        let data = self.data_dir();
        let _ = std::fs::remove_file(data.join("admin-addr"));
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("kubernel.log"))?;
        let child = Command::new(kubernel_bin())
            .arg("--data-dir")
            .arg(&data)
            .arg("run")
            .arg("--config")
            .arg(self.config_path())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let addr_file = data.join("admin-addr");
        self.wait_until(Duration::from_secs(20), "the restarted kernel", |k| {
            Ok(addr_file.exists() && {
                k.admin = format!("http://{}", std::fs::read_to_string(&addr_file)?.trim());
                k.get("/readyz")?.0 == 200
            })
        })?;
        Ok(self)
    }

    /// Sends SIGTERM and waits (at most `timeout`) for the process to exit.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow!("already stopped"))?;
        signal(child.id(), "TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "kubernel did not exit within {timeout:?} of SIGTERM; logs:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Sends signal `sig` (e.g. `TERM`) to process `pid` with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Kernel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `kubernel run` with a config expected to be refused; returns exit code and stderr.
pub fn run_refused(config: &str, env: &[(&str, &str)]) -> Result<(Option<i32>, String)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kubernel.toml");
    std::fs::write(&path, config)?;
    let data = dir.path().join("data");
    let out = Command::new(kubernel_bin())
        .arg("--data-dir")
        .arg(&data)
        .arg("run")
        .arg("--config")
        .arg(&path)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A free loopback port (bound then released; tests use it at once).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `n` distinct free loopback ports (each held until all are picked, so no two
/// are the same).
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let held = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok(held
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<_>>()?)
}

/// The apiserver plugin library.
pub fn apiserver_lib() -> PathBuf {
    built("libkubernel_apiserver.so")
}

/// A component plugin library built by the workspace, by crate name without the
/// `kubernel-` prefix: `component_lib("scheduler")` -> `libkubernel_scheduler.so`.
pub fn component_lib(name: &str) -> PathBuf {
    built(&format!("libkubernel_{}.so", name.replace('-', "_")))
}

/// A `[[plugin]]` entry for a component with its `[plugin.config]` body (TOML lines).
pub fn component_entry(name: &str, crate_name: &str, config: &str) -> String {
    format!(
        "\n[[plugin]]\nname = \"{name}\"\npath = \"{}\"\n[plugin.config]\n{config}\n",
        component_lib(crate_name).display()
    )
}

/// A kernel running the apiserver plugin on a free port.
pub struct Cluster {
    /// The kernel process.
    pub kernel: Kernel,
    /// kubeconfig written by the apiserver.
    pub kubeconfig: PathBuf,
    /// Base URL of the API.
    pub api: String,
    cache: tempfile::TempDir,
    /// The etcd this cluster started for itself (`KUBERNEL_TEST_STORAGE=etcd`); dropped after the kernel.
    etcd: Option<Etcd>,
}

impl Cluster {
    /// Starts a kernel with the apiserver (and `extra` TOML appended to the config).
    ///
    /// The apiserver stores on its embedded store, or on an etcd started for this
    /// cluster when [`test_storage`] says `etcd`.
    pub fn start(extra: &str) -> Result<Cluster> {
        if test_storage() != "etcd" {
            return Cluster::start_with(extra);
        }
        let etcd = Etcd::start()?;
        let mut cluster = Cluster::start_on_etcd(&etcd.endpoint, extra)?;
        cluster.etcd = Some(etcd);
        Ok(cluster)
    }

    /// Starts a kernel whose apiserver stores in the etcd at `endpoint` (`http://127.0.0.1:P`).
    pub fn start_on_etcd(endpoint: &str, extra: &str) -> Result<Cluster> {
        Cluster::start_on_etcd_members(&[endpoint], extra)
    }

    /// Starts a kernel whose apiserver stores in the etcd cluster with these client URLs.
    pub fn start_on_etcd_members(endpoints: &[&str], extra: &str) -> Result<Cluster> {
        let list: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
        Cluster::start_with(&format!(
            "storage = \"etcd\"\netcd_endpoints = [{}]\n{extra}",
            list.join(", ")
        ))
    }

    fn start_with(extra: &str) -> Result<Cluster> {
        // kubectl and in-process components reach the apiserver over HTTPS on a port
        // the kernel picks (the admin.kubeconfig it writes names it, see
        // `secure_port()`); `api` is the loopback plain-HTTP port.
        let port = free_port()?;
        // Loopback only, unless the test names another address.
        let bind = if extra
            .lines()
            .any(|l| l.trim_start().starts_with("bind_address"))
        {
            ""
        } else {
            "bind_address = \"127.0.0.1\"\n"
        };
        let config = format!(
            "{}\n[[plugin]]\nname = \"apiserver\"\npath = \"{}\"\n[plugin.config]\n{bind}secure_port = 0\ninsecure_port = {port}\nwatch_bookmark_interval_seconds = 1\n{extra}",
            kernel_section(),
            apiserver_lib().display()
        );
        let kernel = Kernel::start(&config, &[])?;
        let kubeconfig = kernel.data_dir().join("admin.kubeconfig");
        Ok(Cluster {
            kernel,
            kubeconfig,
            api: format!("http://127.0.0.1:{port}"),
            cache: tempfile::tempdir()?,
            etcd: None,
        })
    }

    /// Kills the kernel with SIGKILL and restarts it on the same data dir and port.
    pub fn kill_and_restart(self) -> Result<Cluster> {
        let Cluster {
            kernel,
            kubeconfig,
            api,
            cache,
            etcd,
        } = self;
        let kernel = kernel.kill_and_restart()?;
        Ok(Cluster {
            kernel,
            kubeconfig,
            api,
            cache,
            etcd,
        })
    }

    /// The apiserver's HTTPS port (the server of its admin.kubeconfig).
    pub fn secure_port(&self) -> Result<u16> {
        let text = std::fs::read_to_string(&self.kubeconfig)?;
        text.lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .and_then(|server| server.rsplit(':').next())
            .and_then(|port| port.parse().ok())
            .with_context(|| format!("no server port in {}", self.kubeconfig.display()))
    }

    /// Runs the installed `kubectl` against the cluster: exit status, stdout, stderr.
    pub fn kubectl(&self, args: &[&str]) -> Result<(ExitStatus, String, String)> {
        self.kubectl_stdin(args, "")
    }

    /// Runs `kubectl` with `stdin` piped in (for `-f -`).
    pub fn kubectl_stdin(
        &self,
        args: &[&str],
        stdin: &str,
    ) -> Result<(ExitStatus, String, String)> {
        kubectl_with(&self.kubeconfig, self.cache.path(), args, stdin)
    }

    /// A kubeconfig in `dir` for the bearer `token` (a ServiceAccount or bootstrap
    /// token), with the cluster's HTTPS server and CA from `admin.kubeconfig`.
    pub fn token_kubeconfig(&self, dir: &Path, token: &str) -> Result<PathBuf> {
        let admin = std::fs::read_to_string(&self.kubeconfig)?;
        let field = |key: &str| {
            admin
                .lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .map(str::to_string)
                .with_context(|| format!("admin kubeconfig without {key}"))
        };
        let (server, ca) = (field("server: ")?, field("certificate-authority-data: ")?);
        let path = dir.join(format!("token-{}.kubeconfig", token.len()));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: t\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: t\ncurrent-context: c\n"
            ),
        )?;
        Ok(path)
    }

    /// Issues a kubeconfig for `user` in `groups` with `kubernel kubeconfig` (a
    /// client certificate signed by the cluster CA), written into `dir`.
    pub fn issue_kubeconfig(&self, dir: &Path, user: &str, groups: &[&str]) -> Result<PathBuf> {
        let path = dir.join(format!("{}.kubeconfig", user.replace(':', "_")));
        let data_dir = self.kernel.data_dir().display().to_string();
        let out = path.display().to_string();
        let mut args = vec![
            "--data-dir",
            &data_dir,
            "kubeconfig",
            "--user",
            user,
            "-o",
            &out,
        ];
        for g in groups {
            args.extend(["--group", g]);
        }
        let (status, stdout, stderr) = kubernel(&args, &[])?;
        if !status.success() {
            bail!("kubernel kubeconfig failed: {stderr}{stdout}");
        }
        Ok(path)
    }

    /// Runs `kubectl`, failing the test unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let (status, out, err) = self.kubectl(args)?;
        if !status.success() {
            bail!(
                "kubectl {} failed ({status}):\n{err}\n{out}",
                args.join(" ")
            );
        }
        Ok(out)
    }

    /// `kubectl apply -f -` / `create -f -` with a manifest; returns stdout.
    pub fn ok_stdin(&self, args: &[&str], manifest: &str) -> Result<String> {
        let (status, out, err) = self.kubectl_stdin(args, manifest)?;
        if !status.success() {
            bail!(
                "kubectl {} failed ({status}):\n{err}\n{out}",
                args.join(" ")
            );
        }
        Ok(out)
    }

    /// GET a path of the API as JSON: `None` on 404, an error on any other failure.
    pub fn get_json(&self, path: &str) -> Result<Option<serde_json::Value>> {
        let (code, body) = self.get(path)?;
        match code {
            200 => Ok(Some(serde_json::from_str(&body)?)),
            404 => Ok(None),
            _ => bail!("GET {path}: {code} {body}"),
        }
    }

    /// Pod `name` of the `default` namespace.
    pub fn pod(&self, name: &str) -> Result<serde_json::Value> {
        self.get_json(&format!("/api/v1/namespaces/default/pods/{name}"))?
            .ok_or_else(|| anyhow!("pod {name} not found"))
    }

    /// Polls pod `name` until `cond` holds (failing after `timeout` with `what` and
    /// the last status seen); the pod as it was then.
    pub fn wait_pod(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let mut last = serde_json::Value::Null;
        eventually(timeout, what, || {
            last = self.pod(name)?;
            Ok(cond(&last))
        })
        .with_context(|| format!("last seen status: {}", last["status"]))?;
        Ok(last)
    }

    /// `kubectl create -f -` of a JSON manifest.
    pub fn create_object(&self, manifest: &serde_json::Value) -> Result<()> {
        self.ok_stdin(&["create", "-f", "-"], &manifest.to_string())?;
        Ok(())
    }

    /// The Events of object `name`: `REASON MESSAGE` lines, as kubectl prints them.
    pub fn events_of(&self, name: &str) -> Result<String> {
        self.ok(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
        ])
    }

    /// GET a path of the API: status and body.
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        let mut resp = agent().get(&format!("{}{path}", self.api)).call()?;
        let body = resp.body_mut().read_to_string()?;
        Ok((resp.status().as_u16(), body))
    }

    /// Sends `method` with a JSON or raw body: status and body.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<(u16, String)> {
        let url = format!("{}{path}", self.api);
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", content_type)
            .body(body.to_vec())?;
        let mut resp = agent().run(req)?;
        let body = resp.body_mut().read_to_string()?;
        Ok((resp.status().as_u16(), body))
    }
}

/// The store e2e clusters use: `etcd` when `KUBERNEL_TEST_STORAGE=etcd` or when the
/// running test binary's name starts with `etcd_` (so `tests/etcd_conformance.rs` can
/// run other test files' scenarios on etcd), else `embedded`.
pub fn test_storage() -> &'static str {
    let by_env = std::env::var("KUBERNEL_TEST_STORAGE").is_ok_and(|s| s == "etcd");
    let by_binary = std::env::current_exe().is_ok_and(|exe| {
        exe.file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("etcd_"))
    });
    if by_env || by_binary {
        "etcd"
    } else {
        "embedded"
    }
}

/// Where tests find the etcd server (Debian's `etcd-server`, installed by `scripts/setup`).
pub const ETCD_BIN: &str = "/usr/bin/etcd";

/// A single-member etcd on free loopback ports with a temporary data directory.
/// Killed when dropped; [`Etcd::stop`] and [`Etcd::restart`] simulate an outage.
pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    peer_port: u16,
    /// Port of the plain-HTTP `/health` endpoint (`--listen-metrics-urls`).
    health_port: u16,
    /// Client URL, `http://127.0.0.1:<port>` (`https://` with [`Etcd::start_tls`]).
    pub endpoint: String,
    /// The client's TLS files, when started with [`Etcd::start_tls`].
    pub tls: Option<EtcdClientTls>,
}

/// PEM files a client needs for an etcd started with [`Etcd::start_tls`].
pub struct EtcdClientTls {
    /// The CA that signed etcd's serving certificate and the client's.
    pub ca_file: PathBuf,
    /// The client certificate.
    pub cert_file: PathBuf,
    /// Its key.
    pub key_file: PathBuf,
}

impl Etcd {
    /// Starts etcd and waits until it answers `/health`.
    pub fn start() -> Result<Etcd> {
        Etcd::launch(false)
    }

    /// Starts etcd serving clients over TLS and requiring a client certificate,
    /// with a throwaway CA, server and client certificate made by `openssl`.
    pub fn start_tls() -> Result<Etcd> {
        Etcd::launch(true)
    }

    fn launch(tls: bool) -> Result<Etcd> {
        if !Path::new(ETCD_BIN).exists() {
            bail!("{ETCD_BIN} is missing: run scripts/setup (it installs etcd-server)");
        }
        let client_port = free_port()?;
        let scheme = if tls { "https" } else { "http" };
        let dir = tempfile::tempdir()?;
        let tls = if tls {
            Some(make_certificates(&dir.path().join("tls"))?)
        } else {
            None
        };
        let mut etcd = Etcd {
            child: None,
            dir,
            peer_port: free_port()?,
            health_port: free_port()?,
            endpoint: format!("{scheme}://127.0.0.1:{client_port}"),
            tls,
        };
        etcd.spawn()?;
        Ok(etcd)
    }

    /// The etcd process' id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills etcd with SIGKILL (its data stays for [`Etcd::restart`]).
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts etcd again on the same ports and data, after [`Etcd::stop`].
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn()
    }

    /// Everything etcd logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// Freezes etcd with SIGSTOP: connections stay open and nothing answers (a hung member).
    pub fn pause(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), "STOP");
        }
    }

    /// Thaws etcd after [`Etcd::pause`] with SIGCONT.
    pub fn resume(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), "CONT");
        }
    }

    fn spawn(&mut self) -> Result<()> {
        let client = self.endpoint.clone();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))?;
        let health = format!("http://127.0.0.1:{}", self.health_port);
        let mut command = Command::new(ETCD_BIN);
        command
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .args(["--listen-metrics-urls", &health]);
        if self.tls.is_some() {
            let tls = self.dir.path().join("tls");
            command
                .arg("--trusted-ca-file")
                .arg(tls.join("ca.crt"))
                .arg("--cert-file")
                .arg(tls.join("server.crt"))
                .arg("--key-file")
                .arg(tls.join("server.key"))
                .arg("--client-cert-auth");
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {ETCD_BIN}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let health = format!("{health}/health");
        loop {
            let healthy = agent()
                .get(&health)
                .call()
                .ok()
                .and_then(|mut resp| resp.body_mut().read_to_string().ok())
                .is_some_and(|body| body.contains("true"));
            if healthy {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("etcd exited with {status} during start:\n{}", self.logs());
            }
            if Instant::now() > deadline {
                bail!("etcd {client} not healthy within 20 s:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Makes a CA, a server certificate for 127.0.0.1 and a client certificate in `dir`
/// with `openssl`; returns the client's files.
fn make_certificates(dir: &Path) -> Result<EtcdClientTls> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )?;
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n")?;
    let steps: [&[&str]; 5] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=kubernel-test-ca",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=etcd",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "server.ext",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=kubernel",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.crt",
            "-days",
            "1",
            "-extfile",
            "client.ext",
        ],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .context("running openssl")?;
        if !out.status.success() {
            bail!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(EtcdClientTls {
        ca_file: dir.join("ca.crt"),
        cert_file: dir.join("client.crt"),
        key_file: dir.join("client.key"),
    })
}

/// Polls `cond` every 50 ms until it holds, failing after `timeout` with `what`
/// and the last error `cond` returned.
pub fn eventually(
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match cond() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = format!(": {e:#}"),
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}{last}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Opens a long-running GET (a watch) at `url` and sends each line of its body, as
/// it arrives, to the returned channel, which closes when the response ends.
pub fn stream_lines(url: &str) -> Result<std::sync::mpsc::Receiver<String>> {
    use std::io::BufRead;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent.get(url).call()?;
    if resp.status() != 200 {
        bail!("GET {url}: {}", resp.status());
    }
    let reader = std::io::BufReader::new(resp.into_body().into_reader());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in reader.lines().map_while(std::result::Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

/// Runs `kubectl` with `kubeconfig`, a discovery cache in `cache_dir` and `stdin`
/// piped in: exit status, stdout, stderr.
pub fn kubectl_with(
    kubeconfig: &Path,
    cache_dir: &Path,
    args: &[&str],
    stdin: &str,
) -> Result<(ExitStatus, String, String)> {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache_dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running kubectl (is it installed?)")?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    Ok((
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Runs `kubectl` as the user of `kubeconfig` (a fresh discovery cache), with
/// `stdin`: success, stdout, stderr.
pub fn kubectl_as(kubeconfig: &Path, args: &[&str], stdin: &str) -> Result<(bool, String, String)> {
    let cache = tempfile::tempdir()?;
    let (status, stdout, stderr) = kubectl_with(kubeconfig, cache.path(), args, stdin)?;
    Ok((status.success(), stdout, stderr))
}

/// Tests that need root and a network of their own: the test runs itself again
/// inside a network namespace it creates (and the mount namespace `ip netns exec`
/// gives it), so nothing touches the host's network.
pub mod netns {
    use std::process::Command;

    use anyhow::{bail, Result};

    /// Set in the environment of the test's second run, inside its namespace.
    const INSIDE: &str = "KUBERNEL_TEST_IN_NETNS";

    /// Whether this process runs as root.
    pub fn is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .map(|l| l.split_whitespace().nth(2) == Some("0"))
            })
            .unwrap_or(false)
    }

    /// Whether this is the run inside the test's namespace.
    pub fn inside() -> bool {
        std::env::var_os(INSIDE).is_some()
    }

    /// Deletes the namespace when the test ends, however it ends.
    struct Netns(String);

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }

    /// Runs test `name` of this binary again inside a new network namespace; skips
    /// (passes, saying so) when not root. The inner run's lines that contain
    /// `measured:` are printed, so figures reach the outer test's output.
    pub fn in_new_netns(name: &str) -> Result<()> {
        if inside() {
            bail!("{name}: already inside the test's network namespace");
        }
        if !is_root() {
            eprintln!("{name}: skipped, needs root (it creates network namespaces)");
            return Ok(());
        }
        // Tests of one binary run at once: the test's name keeps their namespaces apart.
        let short: String = name.chars().take(40).collect();
        let ns = Netns(format!("kubernel-nettest-{}-{short}", std::process::id()));
        let out = Command::new("ip").args(["netns", "add", &ns.0]).output()?;
        if !out.status.success() {
            bail!("ip netns add: {}", String::from_utf8_lossy(&out.stderr));
        }
        let exe = std::env::current_exe()?;
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.0])
            .arg(exe)
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(INSIDE, "1")
            .output()?;
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() || !text.contains("1 passed") {
            bail!("inside the network namespace:\n{text}");
        }
        for line in text.lines().filter(|l| l.contains("measured:")) {
            println!("{line}");
        }
        Ok(())
    }
}

/// A raw HTTP/1.1 GET over TLS trusting `ca_pem`, with an optional client pair and
/// extra header lines: the status code and body, or the TLS/IO error.
pub fn tls_get(
    port: u16,
    ca_pem: &str,
    client: Option<(&str, &str)>,
    path: &str,
    headers: &[u8],
) -> Result<(u16, String)> {
    use rustls::pki_types::pem::PemObject as _;
    use std::io::Write as _;

    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder.with_client_auth_cert(
            rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()?,
            rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes())?,
        )?,
        None => builder.with_no_client_auth(),
    };
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?.to_owned();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)?;
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut req =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n").into_bytes();
    req.extend_from_slice(headers);
    req.extend_from_slice(b"\r\n");
    tls.write_all(&req)?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        // The server may close without close_notify after a full response.
        Err(e) if !out.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e.into()),
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status line in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((code, body))
}
