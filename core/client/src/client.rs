//! The client: one connection pool to the apiserver (or the kernel bus, see
//! [`crate::BusLink`]), requests with metrics and `Status` errors.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use kubernel_sdk::api::rest::ApiRequest;

use crate::bus::BusLink;
use crate::config::{ClientConfig, Endpoint, Transport};
use crate::{ClientError, ClientMetrics};

/// A connection to the apiserver; cheap to clone (clones share the pool).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    server: String,
    host: String,
    token: Option<String>,
    request_timeout: Duration,
    watch_timeout_seconds: u32,
    metrics: Option<ClientMetrics>,
    ca_pem: Option<Vec<u8>>,
    /// Requests go over the kernel bus instead of `http`.
    bus: Option<Arc<BusLink>>,
}

impl Client {
    /// The metrics this client updates, if it has any.
    pub(crate) fn metrics(&self) -> Option<&ClientMetrics> {
        self.inner.metrics.as_ref()
    }

    /// A client for the apiserver `config` names; a kubeconfig path left empty means
    /// `<kernel_data_dir>/admin.kubeconfig`.
    pub fn new(
        config: &ClientConfig,
        kernel_data_dir: Option<&Path>,
        metrics: Option<ClientMetrics>,
    ) -> Result<Client, ClientError> {
        let endpoint = config.endpoint(kernel_data_dir)?;
        Self::build(endpoint, config, metrics)
    }

    /// [`Client::new`], retried with a growing delay (100 ms to 5 s) until it succeeds
    /// — a component that starts beside the apiserver waits for its kubeconfig — or
    /// `shutdown` (then `None`).
    pub async fn connect(
        config: &ClientConfig,
        kernel_data_dir: Option<&Path>,
        metrics: Option<ClientMetrics>,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Option<Client> {
        retry_until_made(shutdown, || {
            let made = Client::new(config, kernel_data_dir, metrics.clone());
            async move { made }
        })
        .await
    }

    /// The client of a component plugin: over the kernel bus when `config`'s
    /// transport says so, or is `auto` with neither `server` nor `kubeconfig` set and
    /// an apiserver plugin in this process; else [`Client::new`].
    pub fn for_plugin(
        config: &ClientConfig,
        link: &Arc<BusLink>,
        kernel_data_dir: Option<&Path>,
        metrics: Option<ClientMetrics>,
    ) -> Result<Client, ClientError> {
        let bus = match config.transport {
            Transport::Bus => true,
            Transport::Http => false,
            Transport::Auto => {
                config.server.is_empty()
                    && config.kubeconfig.as_os_str().is_empty()
                    && link.has_apiserver()
            }
        };
        if !bus {
            return Self::new(config, kernel_data_dir, metrics);
        }
        // The cluster CA, for components that publish it (kube-root-ca.crt).
        let ca_pem = config.endpoint(kernel_data_dir).ok().and_then(|e| e.ca_pem);
        // Unused over the bus, but built like any other: with the process's provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Client {
            inner: Arc::new(Inner {
                http: reqwest::Client::new(),
                server: "bus://@apiserver".into(),
                host: "bus".into(),
                token: None,
                request_timeout: config.request_timeout,
                watch_timeout_seconds: config.watch_timeout_seconds,
                metrics,
                ca_pem,
                bus: Some(link.clone()),
            }),
        })
    }

    /// [`Client::for_plugin`], retried as [`Client::connect`] does.
    pub async fn connect_plugin(
        config: &ClientConfig,
        link: &Arc<BusLink>,
        kernel_data_dir: Option<&Path>,
        metrics: Option<ClientMetrics>,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Option<Client> {
        let dir = kernel_data_dir.map(Path::to_path_buf);
        retry_until_made(shutdown, || {
            let (config, link, dir, metrics) =
                (config.clone(), link.clone(), dir.clone(), metrics.clone());
            async move {
                // The bus probe waits on the apiserver: not on a runtime worker.
                tokio::task::spawn_blocking(move || {
                    Client::for_plugin(&config, &link, dir.as_deref(), metrics)
                })
                .await
                .map_err(|e| ClientError::Config(format!("making the client: {e}")))?
            }
        })
        .await
    }

    /// A client for the apiserver at `server` (e.g. `http://127.0.0.1:6443`), default settings.
    pub fn from_url(server: &str) -> Result<Client, ClientError> {
        let config = ClientConfig {
            server: server.to_string(),
            ..ClientConfig::default()
        };
        Self::new(&config, None, None)
    }

    fn build(
        endpoint: Endpoint,
        config: &ClientConfig,
        metrics: Option<ClientMetrics>,
    ) -> Result<Client, ClientError> {
        if !endpoint.server.starts_with("http://") && !endpoint.server.starts_with("https://") {
            return Err(ClientError::Config(format!(
                "server {:?} is not an http:// or https:// URL",
                endpoint.server
            )));
        }
        let host = endpoint
            .server
            .split("://")
            .nth(1)
            .unwrap_or_default()
            .to_string();
        // reqwest is built without a default TLS provider: ring for the whole process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("kubernel/", env!("CARGO_PKG_VERSION")))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(64)
            .connect_timeout(Duration::from_secs(5));
        if endpoint.server.starts_with("https://") {
            builder = builder.tls_backend_preconfigured(crate::tls::client_config(&endpoint)?);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Config(format!("HTTP client: {e}")))?;
        let ca_pem = endpoint.ca_pem.clone();
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                server: endpoint.server,
                host,
                token: endpoint.token,
                request_timeout: config.request_timeout,
                watch_timeout_seconds: config.watch_timeout_seconds,
                metrics,
                ca_pem,
                bus: None,
            }),
        })
    }

    /// The PEM CA bundle this client trusts for the apiserver (none over plain HTTP).
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.inner.ca_pem.as_deref()
    }

    /// The apiserver's base URL (`bus://@apiserver` over the kernel bus).
    pub fn server(&self) -> &str {
        &self.inner.server
    }

    /// Server-side timeout asked for each watch.
    pub(crate) fn watch_timeout_seconds(&self) -> u32 {
        self.inner.watch_timeout_seconds
    }

    fn builder(&self, method: &str, path: &str) -> reqwest::RequestBuilder {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut b = self
            .inner
            .http
            .request(method, format!("{}{path}", self.inner.server))
            .header("accept", "application/json");
        if let Some(token) = &self.inner.token {
            b = b.bearer_auth(token);
        }
        #[cfg(feature = "otel")]
        if let Some(traceparent) = traceparent() {
            b = b.header("traceparent", traceparent);
        }
        b
    }

    fn observe(&self, method: &str, code: &str, started: Instant) {
        if let Some(m) = &self.inner.metrics {
            m.requests
                .with_label_values(&[code, method, &self.inner.host])
                .inc();
            m.duration
                .with_label_values(&[method, &self.inner.host])
                .observe(started.elapsed().as_secs_f64());
        }
    }

    /// Sends one request and returns the body of a 2xx answer; any other answer
    /// becomes [`ClientError::Api`] with the `Status` message.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Bytes, ClientError> {
        if let Some(bus) = &self.inner.bus {
            return self.send_bus(bus, method, path, body).await;
        }
        let started = Instant::now();
        let mut b = self
            .builder(method, path)
            .timeout(self.inner.request_timeout);
        if let Some((content_type, bytes)) = body {
            b = b.header("content-type", content_type).body(bytes);
        }
        let transport = |source| ClientError::Transport {
            method: method.to_string(),
            path: path.to_string(),
            source,
        };
        let resp = match b.send().await {
            Ok(r) => r,
            Err(e) => {
                self.observe(method, "<error>", started);
                return Err(transport(e));
            }
        };
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(transport);
        self.observe(method, &status.to_string(), started);
        let bytes = bytes?;
        if (200..300).contains(&status) {
            Ok(bytes)
        } else {
            Err(api_error(method, path, status, &bytes))
        }
    }

    /// [`Client::send`] over the kernel bus.
    async fn send_bus(
        &self,
        bus: &BusLink,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Bytes, ClientError> {
        let started = Instant::now();
        let (content_type, body) = body.map(|(t, b)| (t.to_string(), b)).unwrap_or_default();
        let req = ApiRequest {
            method: method.to_string(),
            path: path.to_string(),
            content_type,
            accept: "application/json".into(),
            body,
        };
        match bus.request(req, self.inner.request_timeout).await {
            Err(message) => {
                self.observe(method, "<error>", started);
                Err(ClientError::Bus {
                    method: method.to_string(),
                    path: path.to_string(),
                    message,
                })
            }
            Ok(resp) => {
                self.observe(method, &resp.status.to_string(), started);
                if (200..300).contains(&resp.status) {
                    Ok(Bytes::from(resp.body))
                } else {
                    Err(api_error(method, path, resp.status, &resp.body))
                }
            }
        }
    }

    /// Opens a watch (`path` includes `watch=true`) and yields one JSON event per item.
    pub(crate) async fn watch_lines(
        &self,
        path: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, ClientError>>, ClientError> {
        let started = Instant::now();
        if let Some(bus) = &self.inner.bus {
            let failed = |message| ClientError::Bus {
                method: "GET".into(),
                path: path.to_string(),
                message,
            };
            let (resp, lines) = match bus.watch(path, self.inner.request_timeout).await {
                Ok(started_watch) => started_watch,
                Err(message) => {
                    self.observe("GET", "<error>", started);
                    return Err(failed(message));
                }
            };
            self.observe("GET", &resp.status.to_string(), started);
            if !(200..300).contains(&resp.status) {
                return Err(api_error("GET", path, resp.status, &resp.body));
            }
            return Ok(lines.map(Ok).boxed());
        }
        let transport = |source| ClientError::Transport {
            method: "GET".into(),
            path: path.to_string(),
            source,
        };
        let resp = self.builder("GET", path).send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        self.observe("GET", &status.to_string(), started);
        if !(200..300).contains(&status) {
            let bytes = resp.bytes().await.map_err(transport)?;
            return Err(api_error("GET", path, status, &bytes));
        }
        let path = path.to_string();
        let mut chunks = resp.bytes_stream();
        let lines = async_stream(move |tx| async move {
            let mut pending: Vec<u8> = Vec::new();
            while let Some(chunk) = chunks.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(source) => {
                        let _ = tx
                            .send(Err(ClientError::Transport {
                                method: "GET".into(),
                                path: path.clone(),
                                source,
                            }))
                            .await;
                        return;
                    }
                };
                pending.extend_from_slice(&chunk);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    if line.len() > 1 && tx.send(Ok(Bytes::from(line))).await.is_err() {
                        return;
                    }
                }
            }
            if !pending.iter().all(u8::is_ascii_whitespace) {
                let _ = tx.send(Ok(Bytes::from(pending))).await;
            }
        });
        Ok(lines.boxed())
    }
}

/// Calls `make` until it makes a client, waiting a growing delay (100 ms to 5 s)
/// between failures, or until `shutdown` (then `None`).
async fn retry_until_made<F, Fut>(
    shutdown: &tokio_util::sync::CancellationToken,
    mut make: F,
) -> Option<Client>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Client, ClientError>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match make().await {
            Ok(c) => return Some(c),
            Err(e) => tracing::warn!(error = %e, retry_in = ?delay, "no API client yet"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Runs `produce` as a task feeding a channel and returns the channel as a stream.
fn async_stream<T, F, Fut>(produce: F) -> impl futures::Stream<Item = T> + Send + 'static
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(produce(tx));
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Turns a non-2xx answer into [`ClientError::Api`], reading the `Status` when there is one.
fn api_error(method: &str, path: &str, code: u16, body: &[u8]) -> ClientError {
    let status: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let text = |k: &str| status.get(k).and_then(|v| v.as_str()).map(str::to_string);
    ClientError::Api {
        method: method.to_string(),
        path: path.to_string(),
        code,
        reason: text("reason").unwrap_or_else(|| format!("HTTP {code}")),
        message: text("message")
            .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect()),
    }
}

/// The W3C `traceparent` of the current span when it is exported over OpenTelemetry,
/// so that the apiserver's span of the request becomes its child.
#[cfg(feature = "otel")]
fn traceparent() -> Option<String> {
    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = std::collections::HashMap::new();
    opentelemetry_sdk::propagation::TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}
