//! The kubelet API, HTTPS on `address:port`: `/healthz`, `/pods` (the pods bound to
//! this node, as a PodList) and `/containerLogs/{namespace}/{pod}/{container}` with
//! `follow`, `tailLines`, `limitBytes`, `previous`, `timestamps` and `sinceSeconds`.
//! The apiserver's `pods/log` proxies to the last one. Room is left for
//! exec/attach/port-forward routes.
//!
//! Every client presents a certificate signed by the cluster CA; only members of
//! `system:masters` (the apiserver's `kube-apiserver-kubelet-client`, admins) are
//! served, others get upstream's `Forbidden (user=..., verb=get, resource=nodes,
//! subresource=proxy)`. A kubelet that knows no cluster CA (its apiserver is plain
//! HTTP: tests only) serves plain HTTP, and says so in its log.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;

use super::{logs, Shared};
use crate::config::KubeletConfig;
use crate::runtime::{ContainerState, ContainerStatus};

/// How often a followed log is checked for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Binds the kubelet API's listener.
pub(super) async fn bind(config: &KubeletConfig) -> std::io::Result<TcpListener> {
    let addr = SocketAddr::from((config.address, config.port));
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("binding {addr}: {e}")))
}

/// The kubelet API's TLS settings: its serving pair (`tls_cert_file`, else a
/// self-signed pair kept in `pki_dir`) and the CA of its clients (`client_ca_file`,
/// else `cluster_ca`). `None` when no client CA is known.
pub(super) fn tls_config(
    config: &KubeletConfig,
    pki_dir: &std::path::Path,
    node_name: &str,
    cluster_ca: Option<&[u8]>,
) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    let read = |path: &std::path::Path, key: &str| {
        std::fs::read_to_string(path)
            .map_err(|e| format!("config: key {key}: {}: {e}", path.display()))
    };
    let ca = match &config.client_ca_file {
        Some(path) => read(path, "client_ca_file")?,
        None => match cluster_ca {
            Some(pem) => String::from_utf8_lossy(pem).into_owned(),
            None => return Ok(None),
        },
    };
    let serving = match (&config.tls_cert_file, &config.tls_private_key_file) {
        (Some(cert), Some(key)) => kubernel_pki::CertKey {
            cert_pem: read(cert, "tls_cert_file")?,
            key_pem: read(key, "tls_private_key_file")?,
        },
        (None, None) => self_signed(config, pki_dir, node_name)?,
        _ => {
            return Err(
                "config: keys tls_cert_file and tls_private_key_file go together".to_string(),
            )
        }
    };
    let mut tls =
        kubernel_pki::tls_server_config(&serving, &ca, kubernel_pki::ClientCerts::Required)
            .map_err(|e| format!("kubelet API TLS: {e}"))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(tls)))
}

/// The kubelet's own serving pair in `dir` (`kubelet.crt`, `kubelet.key`), made
/// self-signed for the node's name and addresses when missing.
fn self_signed(
    config: &KubeletConfig,
    dir: &std::path::Path,
    node_name: &str,
) -> Result<kubernel_pki::CertKey, String> {
    let (cert, key) = (dir.join("kubelet.crt"), dir.join("kubelet.key"));
    if let (Ok(cert_pem), Ok(key_pem)) = (
        std::fs::read_to_string(&cert),
        std::fs::read_to_string(&key),
    ) {
        return Ok(kubernel_pki::CertKey { cert_pem, key_pem });
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut names = kubernel_pki::ServingNames::default();
    names.dns.push(node_name.to_string());
    names.dns.push("localhost".to_string());
    names.ips.push(std::net::IpAddr::V4(config.address));
    if !config.address.is_loopback() {
        names.ips.push(std::net::IpAddr::from([127, 0, 0, 1]));
    }
    let pair = kubernel_pki::self_signed_serving(node_name, &names)?;
    kubernel_pki::write_private(&key, &pair.key_pem)?;
    kubernel_pki::write_private(&cert, &pair.cert_pem)?;
    Ok(pair)
}

/// Serves the kubelet API on `listener` until shutdown: over TLS with `tls`, else
/// plain HTTP.
pub(super) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let shutdown = shared.shutdown.clone();
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods))
        .route("/containerLogs/{namespace}/{pod}/{container}", get(logs))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), count))
        .with_state(shared);
    let Some(tls) = tls else {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the kubelet API stopped");
        }
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "kubelet API: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, app, stop) = (acceptor.clone(), app.clone(), shutdown.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(peer = %peer, error = %e, "kubelet API: TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let subject = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| kubernel_pki::certificate_subject(leaf.as_ref()));
            let refusal = match subject {
                Some(Ok((_, groups))) if groups.iter().any(|g| g == "system:masters") => None,
                Some(Ok((user, _))) => Some(format!(
                    "Forbidden (user={user}, verb=get, resource=nodes, subresource=proxy)"
                )),
                _ => Some("Unauthorized".to_string()),
            };
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let app = app.clone();
                    let refusal = refusal.clone();
                    async move {
                        if let Some(message) = refusal {
                            let code = if message == "Unauthorized" {
                                StatusCode::UNAUTHORIZED
                            } else {
                                StatusCode::FORBIDDEN
                            };
                            return Ok((code, message).into_response());
                        }
                        use tower::ServiceExt;
                        app.oneshot(req.map(Body::new)).await
                    }
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(peer = %peer, error = %e, "kubelet API connection ended");
                    }
                }
                _ = stop.cancelled() => conn.as_mut().graceful_shutdown(),
            }
        });
    }
}

/// Counts every request in `kubelet_http_requests_total` (path: its first segment).
async fn count(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request
        .uri()
        .path()
        .split('/')
        .find(|s| !s.is_empty())
        .unwrap_or("");
    let path = match path {
        "healthz" | "pods" | "containerLogs" => path,
        _ => "other",
    };
    let follow = request
        .uri()
        .query()
        .is_some_and(|q| q.contains("follow=true"));
    shared
        .metrics
        .http_requests
        .with_label_values(&[
            request.method().as_str(),
            path,
            "readwrite",
            if follow { "true" } else { "false" },
        ])
        .inc();
    next.run(request).await
}

async fn pods(State(shared): State<Arc<Shared>>) -> Response {
    let items: Vec<_> = shared.pods.lock().values().cloned().collect();
    let list =
        serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items});
    ([("content-type", "application/json")], list.to_string()).into_response()
}

fn text(code: StatusCode, message: String) -> Response {
    (
        code,
        [("content-type", "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

/// Query parameters of `/containerLogs` (upstream `PodLogOptions`).
#[derive(Debug, Default)]
struct LogOptions {
    follow: bool,
    previous: bool,
    timestamps: bool,
    tail_lines: Option<usize>,
    limit_bytes: Option<usize>,
    since_seconds: Option<i64>,
}

fn parse_options(q: &HashMap<String, String>) -> Result<LogOptions, String> {
    let flag = |k: &str| q.get(k).is_some_and(|v| v == "true" || v == "1");
    let number = |k: &str| -> Result<Option<i64>, String> {
        q.get(k)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| format!("{k}: {v:?} is not an integer"))
            })
            .transpose()
    };
    let non_negative = |k: &str, v: Option<i64>| -> Result<Option<usize>, String> {
        v.map(|n| usize::try_from(n).map_err(|_| format!("{k}: {n} must not be negative")))
            .transpose()
    };
    Ok(LogOptions {
        follow: flag("follow"),
        previous: flag("previous"),
        timestamps: flag("timestamps"),
        tail_lines: non_negative("tailLines", number("tailLines")?)?,
        limit_bytes: non_negative("limitBytes", number("limitBytes")?)?,
        since_seconds: number("sinceSeconds")?,
    })
}

/// The instance whose log is asked for: the newest, or the one before it (`previous`).
async fn find(
    shared: &Shared,
    ns: &str,
    pod: &str,
    container: &str,
    previous: bool,
) -> Result<ContainerStatus, (StatusCode, String)> {
    let uid = shared
        .pods
        .lock()
        .get(&format!("{ns}/{pod}"))
        .and_then(|p| p.metadata.uid.clone())
        .ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                format!("pod {ns}/{pod} not found on node"),
            )
        })?;
    let rt = &shared.runtime;
    let mut instances = Vec::new();
    for s in rt.list_pod_sandboxes().await.unwrap_or_default() {
        if s.pod_uid == uid {
            instances.extend(
                rt.list_containers(Some(&s.id))
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|c| c.name == container),
            );
        }
    }
    instances.sort_by_key(|c| c.created_at);
    let pick = if previous {
        instances
            .len()
            .checked_sub(2)
            .and_then(|i| instances.get(i))
    } else {
        instances.last()
    };
    pick.cloned().ok_or_else(|| {
        if previous {
            (
                StatusCode::BAD_REQUEST,
                format!("previous terminated container {container:?} in pod {pod:?} not found"),
            )
        } else {
            (
                StatusCode::BAD_REQUEST,
                format!(
                    "container {container:?} in pod {pod:?} is waiting to start: ContainerCreating"
                ),
            )
        }
    })
}

async fn logs(
    State(shared): State<Arc<Shared>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let options = match parse_options(&query) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let instance = match find(&shared, &ns, &pod, &container, options.previous).await {
        Ok(c) => c,
        Err((code, message)) => return text(code, message),
    };
    let Some(path) = instance.log_path.clone() else {
        return text(
            StatusCode::NOT_FOUND,
            format!("container {container:?} has no log file"),
        );
    };
    let max_files = shared.config.container_log_max_files;
    let cri = shared.runtime.cri_logs();
    let read = if cri {
        logs::read_cri(&path)
    } else {
        logs::read_all(&path, max_files)
            .map(|l| (l, std::fs::metadata(&path).map_or(0, |m| m.len())))
    };
    let (mut lines, mut offset) = match read {
        Ok(l) => l,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading {}: {e}", path.display()),
            )
        }
    };
    // Following: a partial last line waits for its newline.
    if options.follow && !cri {
        if let Some((_, last)) = lines.last().filter(|(_, l)| !l.ends_with(b"\n")) {
            offset = offset.saturating_sub(last.len() as u64);
            lines.pop();
        }
    }
    if let Some(since) = options.since_seconds {
        let from = Timestamp::now().as_second() - since;
        lines.retain(|(t, _)| t.as_second() >= from);
    }
    if let Some(n) = options.tail_lines {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    let mut first = Vec::new();
    for (t, line) in &lines {
        render(&mut first, line, options.timestamps.then_some(*t));
    }
    if let Some(limit) = options.limit_bytes {
        first.truncate(limit);
    }
    if !options.follow {
        return (StatusCode::OK, [("content-type", "text/plain")], first).into_response();
    }
    let state = Follow {
        shared,
        path,
        id: instance.id.clone(),
        offset,
        pending: Vec::new(),
        first: Some(first),
        timestamps: options.timestamps,
        cri,
        sent: 0,
        limit: options.limit_bytes,
        done: false,
    };
    let stream = futures::stream::unfold(state, |mut f| async move {
        let chunk = f.next().await?;
        Some((Ok::<Bytes, std::io::Error>(Bytes::from(chunk)), f))
    });
    (
        StatusCode::OK,
        [("content-type", "text/plain")],
        Body::from_stream(stream),
    )
        .into_response()
}

fn render(out: &mut Vec<u8>, line: &[u8], time: Option<Timestamp>) {
    if let Some(t) = time {
        out.extend_from_slice(t.strftime("%Y-%m-%dT%H:%M:%S%.9fZ ").to_string().as_bytes());
    }
    out.extend_from_slice(line);
}

/// A followed log: what was sent, where reading goes on.
struct Follow {
    shared: Arc<Shared>,
    path: PathBuf,
    id: crate::runtime::ContainerId,
    offset: u64,
    pending: Vec<u8>,
    first: Option<Vec<u8>>,
    timestamps: bool,
    /// The file is in the CRI log format.
    cri: bool,
    sent: usize,
    limit: Option<usize>,
    done: bool,
}

impl Follow {
    /// The next chunk, or `None` when the container exited and everything was sent.
    async fn next(&mut self) -> Option<Vec<u8>> {
        if let Some(first) = self.first.take() {
            self.sent += first.len();
            if !first.is_empty() {
                return Some(first);
            }
        }
        loop {
            if self.done || self.shared.shutdown.is_cancelled() {
                return None;
            }
            if self.limit.is_some_and(|l| self.sent >= l) {
                return None;
            }
            let exited = !matches!(
                self.shared.runtime.container_status(&self.id).await,
                Ok(s) if s.state == ContainerState::Running || s.state == ContainerState::Created
            );
            let fresh = self.read_more().await;
            if exited {
                // Last read after the exit: send what remains, partial line included.
                self.done = true;
                let mut rest = fresh;
                rest.append(&mut self.pending);
                let rest = self.stamp(rest);
                return (!rest.is_empty()).then(|| self.cap(rest));
            }
            let mut all = std::mem::take(&mut self.pending);
            all.extend_from_slice(&fresh);
            let complete = all.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            self.pending = all.split_off(complete);
            if !all.is_empty() {
                let chunk = self.stamp(all);
                return Some(self.cap(chunk));
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }

    fn cap(&mut self, mut chunk: Vec<u8>) -> Vec<u8> {
        if let Some(limit) = self.limit {
            chunk.truncate(limit.saturating_sub(self.sent));
        }
        self.sent += chunk.len();
        chunk
    }

    fn stamp(&self, lines: Vec<u8>) -> Vec<u8> {
        if self.cri {
            let mut out = Vec::with_capacity(lines.len());
            for (t, line) in logs::parse_cri(&lines) {
                render(&mut out, &line, self.timestamps.then_some(t));
            }
            return out;
        }
        if !self.timestamps {
            return lines;
        }
        let mut out = Vec::with_capacity(lines.len() + 32);
        let now = Timestamp::now();
        for (_, line) in logs::split_lines(&lines) {
            render(&mut out, &line, Some(now));
        }
        out
    }

    async fn read_more(&mut self) -> Vec<u8> {
        let Ok(mut file) = tokio::fs::File::open(&self.path).await else {
            return Vec::new();
        };
        // Rotated (copied and truncated) since the last read: start over.
        if file.metadata().await.is_ok_and(|m| m.len() < self.offset) {
            self.offset = 0;
        }
        if file.seek(SeekFrom::Start(self.offset)).await.is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        if let Ok(n) = file.read_to_end(&mut buf).await {
            self.offset += n as u64;
        }
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_options_should_refuse_bad_numbers() {
        let mut q = HashMap::new();
        q.insert("tailLines".to_string(), "-1".to_string());
        assert!(parse_options(&q).is_err());
        q.insert("tailLines".to_string(), "x".to_string());
        assert!(parse_options(&q).is_err());
        q.insert("tailLines".to_string(), "2".to_string());
        q.insert("follow".to_string(), "true".to_string());
        let o = parse_options(&q).expect("options");
        assert_eq!((o.tail_lines, o.follow), (Some(2), true));
    }
}
