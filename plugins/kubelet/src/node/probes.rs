//! Container probes: startup, liveness and readiness, each `exec`, `httpGet` or
//! `tcpSocket`, run on their own schedule (`initialDelaySeconds`, `periodSeconds`,
//! `timeoutSeconds`) with `successThreshold`/`failureThreshold`. A prober runs per
//! container instance; its findings wake the pod worker, which restarts the container
//! on a failed liveness (or startup) probe and reports readiness.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ObjectReference, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubernel_client::EventRecorder;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::runtime::{ContainerId, NodeRuntime};

/// Where exec handlers (probes, hooks) of a container run.
#[derive(Clone)]
pub enum ExecIn {
    /// On the host, in the pod's network namespace if it has one (process runtime).
    Host(Option<std::path::PathBuf>),
    /// Inside the container, through the runtime's ExecSync (CRI runtime).
    Container(Arc<dyn NodeRuntime>, ContainerId),
}

/// What the probes of one container instance found so far.
#[derive(Debug, Default)]
pub struct ProbeState {
    /// The startup probe succeeded (true when there is none).
    pub started: AtomicBool,
    /// The readiness probe says ready (true when there is none).
    pub ready: AtomicBool,
    /// Why the container must be restarted (liveness or startup probe failed).
    pub failed: Mutex<Option<String>>,
}

/// The probes of one running container instance; dropping it stops them.
pub struct Prober {
    task: Option<JoinHandle<()>>,
    /// What they found.
    pub state: Arc<ProbeState>,
}

impl Drop for Prober {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Where probe results go.
#[derive(Clone)]
pub struct ProbeContext {
    /// Counts `prober_probe_total`.
    pub metrics: Metrics,
    /// Writes `Unhealthy` Events.
    pub recorder: EventRecorder,
    /// The pod the Events are about.
    pub pod: ObjectReference,
    /// Woken when a finding changes what the worker must do.
    pub wake: Arc<Notify>,
    /// The address httpGet and tcpSocket probes go to when the probe names no host.
    pub host: String,
    /// Where exec probes run.
    pub exec: ExecIn,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

struct Schedule {
    kind: Kind,
    probe: Probe,
    due: tokio::time::Instant,
    successes: i32,
    failures: i32,
}

/// Starts the probes of container `c` (running with environment `env`).
pub fn start(ctx: ProbeContext, c: &Container, env: Vec<(String, String)>) -> Prober {
    let state = Arc::new(ProbeState {
        started: AtomicBool::new(c.startup_probe.is_none()),
        ready: AtomicBool::new(c.readiness_probe.is_none()),
        failed: Mutex::new(None),
    });
    let now = tokio::time::Instant::now();
    let schedules: Vec<Schedule> = [
        (Kind::Startup, &c.startup_probe),
        (Kind::Liveness, &c.liveness_probe),
        (Kind::Readiness, &c.readiness_probe),
    ]
    .into_iter()
    .filter_map(|(kind, p)| {
        p.clone().map(|probe| Schedule {
            kind,
            due: now + secs(probe.initial_delay_seconds, 0),
            probe,
            successes: 0,
            failures: 0,
        })
    })
    .collect();
    if schedules.is_empty() {
        return Prober { task: None, state };
    }
    let task = tokio::spawn(run(ctx, c.clone(), env, schedules, state.clone()));
    Prober {
        task: Some(task),
        state,
    }
}

fn secs(v: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(default))
}

async fn run(
    ctx: ProbeContext,
    c: Container,
    env: Vec<(String, String)>,
    mut schedules: Vec<Schedule>,
    state: Arc<ProbeState>,
) {
    loop {
        let started = state.started.load(Ordering::Relaxed);
        let Some(s) = schedules
            .iter_mut()
            .filter(|s| (s.kind == Kind::Startup) != started)
            .min_by_key(|s| s.due)
        else {
            return;
        };
        tokio::time::sleep_until(s.due).await;
        let period = secs(s.probe.period_seconds, 10).max(Duration::from_millis(100));
        s.due = tokio::time::Instant::now() + period;
        let timeout = secs(s.probe.timeout_seconds, 1).max(Duration::from_millis(100));
        let probe_started = std::time::Instant::now();
        let result = match tokio::time::timeout(
            timeout,
            probe_or_unknown(&ctx.host, &ctx.exec, timeout, &c, &env, &s.probe),
        )
        .await
        {
            Ok(Some(r)) => r,
            // The runtime could not run it: no finding (upstream throws the result away).
            Ok(None) => continue,
            Err(_) => Err(format!("timeout: probe did not finish within {timeout:?}")),
        };
        ctx.metrics
            .probe_duration
            .with_label_values(&[s.kind.label()])
            .observe(probe_started.elapsed().as_secs_f64());
        ctx.metrics
            .probes
            .with_label_values(&[
                s.kind.label(),
                if result.is_ok() {
                    "successful"
                } else {
                    "failed"
                },
            ])
            .inc();
        let success_threshold = s.probe.success_threshold.unwrap_or(1).max(1);
        let failure_threshold = s.probe.failure_threshold.unwrap_or(3).max(1);
        match result {
            Ok(()) => {
                s.failures = 0;
                s.successes += 1;
                if s.successes >= success_threshold {
                    match s.kind {
                        Kind::Startup => {
                            state.started.store(true, Ordering::Relaxed);
                            ctx.wake.notify_one();
                        }
                        Kind::Readiness => {
                            if !state.ready.swap(true, Ordering::Relaxed) {
                                ctx.wake.notify_one();
                            }
                        }
                        Kind::Liveness => {}
                    }
                }
            }
            Err(message) => {
                s.successes = 0;
                s.failures += 1;
                let mut reference = ctx.pod.clone();
                reference.field_path = Some(format!("spec.containers{{{}}}", c.name));
                ctx.recorder.record(
                    reference,
                    "Warning",
                    "Unhealthy",
                    &format!("{} probe failed: {message}", s.kind.label()),
                );
                if s.failures >= failure_threshold {
                    match s.kind {
                        Kind::Readiness => {
                            if state.ready.swap(false, Ordering::Relaxed) {
                                ctx.wake.notify_one();
                            }
                        }
                        Kind::Liveness | Kind::Startup => {
                            *state.failed.lock() = Some(format!(
                                "Container {} failed {} probe, will be restarted",
                                c.name,
                                s.kind.label().to_lowercase()
                            ));
                            ctx.wake.notify_one();
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Runs a lifecycle hook handler (`preStop`: exec, httpGet, tcpSocket or sleep) of
/// container `c` (exec where `exec` says, within `timeout`); `Err` says why it failed.
pub async fn run_hook(
    default_host: &str,
    exec: &ExecIn,
    timeout: Duration,
    c: &Container,
    env: &[(String, String)],
    h: &k8s_openapi::api::core::v1::LifecycleHandler,
) -> Result<(), String> {
    if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(u64::try_from(s.seconds).unwrap_or(0))).await;
        return Ok(());
    }
    let as_probe = Probe {
        exec: h.exec.clone(),
        http_get: h.http_get.clone(),
        tcp_socket: h.tcp_socket.clone(),
        ..Probe::default()
    };
    probe(default_host, exec, timeout, c, env, &as_probe).await
}

/// Runs one probe (exec where `exec` says, killed after `timeout`); `Err` carries
/// upstream's failure text.
async fn probe(
    default_host: &str,
    exec: &ExecIn,
    timeout: Duration,
    c: &Container,
    env: &[(String, String)],
    p: &Probe,
) -> Result<(), String> {
    if let Some(e) = &p.exec {
        let argv = e.command.as_deref().unwrap_or_default();
        let Some((program, args)) = argv.split_first() else {
            return Err("exec probe has no command".into());
        };
        let netns = match exec {
            ExecIn::Host(netns) => netns.as_deref(),
            ExecIn::Container(runtime, id) => {
                let out = runtime
                    .exec_sync(id, argv, timeout)
                    .await
                    .map_err(|e| e.to_string())?;
                return exec_result(argv, &out);
            }
        };
        let mut cmd = match netns {
            Some(n) => {
                let mut cmd = tokio::process::Command::new("nsenter");
                cmd.arg(format!("--net={}", n.display()))
                    .arg("--")
                    .arg(program);
                cmd
            }
            None => tokio::process::Command::new(program),
        };
        cmd.args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(w) = &c.working_dir {
            cmd.current_dir(w);
        }
        let out = cmd
            .output()
            .await
            .map_err(|e| format!("exec {program:?}: {e}"))?;
        return if out.status.success() {
            Ok(())
        } else {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            Err(format!(
                "command {argv:?} exited with {}: {}",
                out.status.code().unwrap_or(-1),
                text.trim()
            ))
        };
    }
    if let Some(h) = &p.http_get {
        let host = h
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| default_host.to_string());
        let port = port_of(c, &h.port)?;
        if h.scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
        {
            return Err("HTTPS probes are not supported by the process runtime yet".into());
        }
        let path = h
            .path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        let url = format!("http://{host}:{port}{path}");
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| {
                format!(
                    "Get {url:?}: dial tcp {host}:{port}: connect: {}",
                    plain(&e)
                )
            })?;
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
        );
        for header in h.http_headers.as_deref().unwrap_or_default() {
            request.push_str(&format!("{}: {}\r\n", header.name, header.value));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("Get {url:?}: {e}"))?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(2).any(|w| w == b"\r\n") {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| format!("Get {url:?}: {e}"))?;
            if n == 0 || head.len() > 8192 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&head);
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("Get {url:?}: malformed HTTP response"))?;
        return if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        };
    }
    if let Some(t) = &p.tcp_socket {
        let host = t
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| default_host.to_string());
        let port = port_of(c, &t.port)?;
        return tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map(drop)
            .map_err(|e| format!("dial tcp {host}:{port}: connect: {}", plain(&e)));
    }
    Err("probe has no handler the process runtime supports (exec, httpGet, tcpSocket)".into())
}

/// Runs one probe; `None` when its exec could not be run in the container at all (the
/// runtime failed, e.g. it is down): that is no finding, neither success nor failure.
async fn probe_or_unknown(
    default_host: &str,
    exec: &ExecIn,
    timeout: Duration,
    c: &Container,
    env: &[(String, String)],
    p: &Probe,
) -> Option<Result<(), String>> {
    if let (Some(e), ExecIn::Container(runtime, id)) = (&p.exec, exec) {
        let argv = e.command.as_deref().unwrap_or_default();
        return match runtime.exec_sync(id, argv, timeout).await {
            Ok(out) => Some(exec_result(argv, &out)),
            Err(e) => {
                tracing::debug!(container = %c.name, error = %e, "exec probe not run");
                None
            }
        };
    }
    Some(probe(default_host, exec, timeout, c, env, p).await)
}

/// An exec handler's finding from how its command ended.
fn exec_result(argv: &[String], out: &crate::runtime::ExecOutput) -> Result<(), String> {
    if out.exit_code == 0 {
        Ok(())
    } else {
        Err(format!(
            "command {argv:?} exited with {}: {}",
            out.exit_code,
            String::from_utf8_lossy(&out.output).trim()
        ))
    }
}

/// An I/O error as Go prints it (`connection refused`).
fn plain(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => e.to_string(),
    }
}

/// A probe's port: a number or the name of one of the container's ports.
fn port_of(c: &Container, port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => c
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("port {name:?} not found in the container's ports")),
    }
}
