//! The kubelet API (plain HTTP on `address:port` until the security issue brings TLS):
//! `/healthz`, `/pods` (the pods bound to this node, as a PodList) and
//! `/containerLogs/{namespace}/{pod}/{container}` with `follow`, `tailLines`,
//! `limitBytes`, `previous`, `timestamps` and `sinceSeconds`. The apiserver's `pods/log`
//! proxies to the last one. Room is left for exec/attach/port-forward routes.

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

/// Serves the kubelet API on `listener` until shutdown.
pub(super) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let shutdown = shared.shutdown.clone();
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods))
        .route("/containerLogs/{namespace}/{pod}/{container}", get(logs))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), count))
        .with_state(shared);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::warn!(error = %e, "the kubelet API stopped");
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
