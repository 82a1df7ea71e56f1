//! `GET pods/{name}/log`: finds the kubelet serving the pod (the Node's address and
//! `status.daemonEndpoints.kubeletEndpoint.Port`) and streams its
//! `/containerLogs/{namespace}/{pod}/{container}` answer back, so `kubectl logs` and
//! `kubectl logs -f` work. The kubelet is called over TLS with the apiserver's
//! `apiserver-kubelet-client` certificate.

use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{read, ApiState, Query};
use crate::request::{object_key, RequestInfo};
use crate::status::ApiError;

/// How long connecting to a kubelet may take (a simulated node's address answers never).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Query parameters passed on to the kubelet (`sinceTime` becomes `sinceSeconds`).
const PASSED: [&str; 6] = [
    "follow",
    "previous",
    "timestamps",
    "tailLines",
    "limitBytes",
    "sinceSeconds",
];

/// The container the request names, or the pod's only container.
fn container_of(pod: &Value, name: &str, query: &Query) -> Result<String, ApiError> {
    let names = |key: &str| -> Vec<String> {
        pod["spec"][key]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let main = names("containers");
    let init = names("initContainers");
    match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) if main.contains(c) || init.contains(c) => Ok(c.clone()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if main.len() == 1 => Ok(main[0].clone()),
        None => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            main.join(" ")
        ))),
    }
}

/// `host:port` of the kubelet on `node`.
fn kubelet_of(state: &ApiState, node: &str) -> Result<String, ApiError> {
    let resource = kubernel_api::resources::find("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("the nodes resource is not registered"))?;
    let stored = state
        .store
        .get(&object_key(resource, "", node))
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .ok_or_else(|| ApiError::not_found("", "nodes", node))?;
    let status = &stored.object["status"];
    let addresses = status["addresses"].as_array().cloned().unwrap_or_default();
    let address = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|kind| {
            addresses
                .iter()
                .find(|a| a["type"] == *kind)
                .and_then(|a| a["address"].as_str())
        })
        .ok_or_else(|| ApiError::bad_request(format!("node {node} has no address")))?;
    let port = status["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .filter(|p| *p > 0)
        .ok_or_else(|| ApiError::bad_request(format!("node {node} reports no kubelet port")))?;
    Ok(if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    })
}

/// The query string for the kubelet.
fn kubelet_query(query: &Query) -> Result<String, ApiError> {
    let mut parts: Vec<String> = PASSED
        .iter()
        .filter_map(|k| query.get(*k).map(|v| (k, v)))
        .map(|(k, v)| {
            if v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                Ok(format!("{k}={v}"))
            } else {
                Err(ApiError::bad_request(format!("{k}: invalid value {v:?}")))
            }
        })
        .collect::<Result<_, _>>()?;
    if let Some(t) = query
        .get("sinceTime")
        .filter(|_| !query.contains_key("sinceSeconds"))
    {
        let since: jiff::Timestamp = t
            .parse()
            .map_err(|e| ApiError::bad_request(format!("sinceTime: {t:?}: {e}")))?;
        let seconds = (jiff::Timestamp::now().as_second() - since.as_second()).max(1);
        parts.push(format!("sinceSeconds={seconds}"));
    }
    Ok(parts.join("&"))
}

/// A connection to a kubelet: TLS, or plain TCP in unit tests.
trait KubeletConn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> KubeletConn for T {}

/// Connects to the kubelet at `addr` (`host:port`), over TLS when the apiserver has
/// its kubelet client settings.
async fn connect(state: &ApiState, addr: &str) -> std::io::Result<Box<dyn KubeletConn>> {
    let timed_out = || {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("dial tcp {addr}: i/o timeout"),
        )
    };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| timed_out())??;
    let Some(tls) = &state.auth.kubelet_client else {
        return Ok(Box::new(tcp));
    };
    let host = addr
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or(addr);
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| timed_out())??;
    Ok(Box::new(stream))
}

/// Reads what is there (up to 16 KiB); empty at the end of the stream.
async fn read_some(stream: &mut Box<dyn KubeletConn>) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 16 * 1024];
    let n = stream.read(&mut buf).await?;
    buf.truncate(n);
    Ok(buf)
}

/// Serves `GET pods/{name}/log` by proxying to the pod's kubelet.
pub async fn proxy(
    state: &ApiState,
    info: &RequestInfo,
    query: &Query,
) -> Result<Response, ApiError> {
    let pod = read::fetch(state, info)?;
    let name = &info.name;
    let container = container_of(&pod.object, name, query)?;
    let node = pod.object["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("pod {name} does not have a host assigned"))
        })?;
    let kubelet = kubelet_of(state, node)?;
    let path = format!(
        "/containerLogs/{}/{name}/{container}?{}",
        info.namespace,
        kubelet_query(query)?
    );
    let scheme = if state.auth.kubelet_client.is_some() {
        "https"
    } else {
        "http"
    };
    let unreachable =
        |e: std::io::Error| ApiError::internal(format!("Get \"{scheme}://{kubelet}{path}\": {e}"));
    let mut stream = connect(state, &kubelet).await.map_err(unreachable)?;
    // HTTP/1.0: the kubelet ends a streamed body by closing the connection.
    let request = format!("GET {path} HTTP/1.0\r\nHost: {kubelet}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(unreachable)?;
    stream.flush().await.map_err(unreachable)?;
    let mut head = Vec::new();
    let body_start = loop {
        let chunk = read_some(&mut stream).await.map_err(unreachable)?;
        if chunk.is_empty() {
            return Err(ApiError::internal(format!(
                "kubelet {kubelet} closed the connection without an answer"
            )));
        }
        head.extend_from_slice(&chunk);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 64 * 1024 {
            return Err(ApiError::internal(format!(
                "kubelet {kubelet} sent an oversized header"
            )));
        }
    };
    let rest = head.split_off(body_start);
    let status_line = String::from_utf8_lossy(&head);
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| ApiError::internal(format!("kubelet {kubelet} sent a malformed answer")))?;
    if code != 200 {
        let mut message = rest;
        loop {
            let chunk = read_some(&mut stream).await.unwrap_or_default();
            if chunk.is_empty() || message.len() > 64 * 1024 {
                break;
            }
            message.extend_from_slice(&chunk);
        }
        let message = String::from_utf8_lossy(&message).trim().to_string();
        return Err(match code {
            404 => ApiError::not_found("", "pods", name).with_message(message),
            400..=499 => ApiError::bad_request(message),
            _ => ApiError::internal(message),
        });
    }
    let first = (!rest.is_empty()).then_some(rest);
    let body = futures::stream::unfold((stream, first), |(mut stream, first)| async move {
        if let Some(bytes) = first {
            return Some((
                Ok::<Bytes, std::io::Error>(Bytes::from(bytes)),
                (stream, None),
            ));
        }
        match read_some(&mut stream).await {
            Ok(chunk) if chunk.is_empty() => None,
            Ok(chunk) => Some((Ok(Bytes::from(chunk)), (stream, None))),
            Err(e) => Some((Err(e), (stream, None))),
        }
    });
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::internal(e.to_string()))
}
