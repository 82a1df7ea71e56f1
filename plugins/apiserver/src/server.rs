//! Starts and stops the apiserver: its runtime, store, default namespaces, HTTP listener and kubeconfig.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use kubernel_sdk::{CancellationToken, Context};
use serde_json::json;

use kubernel_api::rest::{ApiCall, ApiCallDone, ApiRequest, ApiResponse, ApiWatch};
use kubernel_api::store::{StoreExport, StoreExportPage, StoreImport, StoreImported};

use crate::bus_watch::{self, refused, BusWatches};

use crate::auth::rbac::Modes;
use crate::auth::TokenFile;
use crate::config::ApiServerConfig;
use crate::config::Storage;
use crate::handlers::{dispatch, ApiState, AuthSettings};
use crate::metrics::Metrics;
use crate::status::ApiError;
use crate::store::embedded::EmbeddedStore;
use crate::store::etcd::{EtcdOptions, EtcdStore, EtcdTls};
use crate::store::{CacheOptions, Store};

/// Namespaces every cluster has.
const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// A running apiserver.
pub struct Server {
    runtime: tokio::runtime::Runtime,
    shutdown: CancellationToken,
    state: Arc<ApiState>,
    router: axum::Router,
    /// The plugin's bus handle (bus watches send their events with it).
    ctx: Context,
    /// Watches over the bus, open until they end or are stopped.
    bus_watches: BusWatches,
}

impl Server {
    /// Opens the store, creates the system namespaces, binds the port and serves.
    pub fn start(
        ctx: &Context,
        config: ApiServerConfig,
        metrics: Metrics,
    ) -> Result<Server, String> {
        if config.insecure_port != 0 && !config.insecure_bind_address.is_loopback() {
            return Err(format!(
                "config: key insecure_bind_address: {} is not a loopback address; the plain-HTTP port (insecure_port) skips authentication and authorization, so it may only listen on loopback",
                config.insecure_bind_address
            ));
        }
        let auth = AuthSettings {
            tokens: match &config.token_auth_file {
                Some(path) => TokenFile::load(path)?,
                None => TokenFile::default(),
            },
            modes: Modes::parse(&config.authorization_modes)?,
            anonymous: config.anonymous_auth,
            service_accounts: None,
            kubelet_client: None,
            abac: crate::auth::abac::from_config(
                &config.authorization_modes,
                config.authorization_policy_file.as_deref(),
            )?,
        };
        let admission = crate::admission::AdmissionPlugins::from_lists(
            &config.enable_admission_plugins,
            &config.disable_admission_plugins,
        )?;
        let auditor = crate::audit::Auditor::start(&config, &metrics)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads.max(1))
            .thread_name("apiserver")
            .enable_all()
            .build()
            .map_err(|e| format!("starting the apiserver runtime: {e}"))?;
        let options = CacheOptions {
            history_revisions: config.history_revisions,
            history_age: Duration::from_secs(config.history_seconds),
            metrics: Some(metrics.watch_cache.clone()),
            ..CacheOptions::default()
        };
        let dir = ctx.data_dir().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| format!("data dir {}: {e}", dir.display()))?;
        let store: Arc<dyn Store> = match config.storage {
            Storage::Embedded => Arc::new(
                EmbeddedStore::open_with_metrics(&dir, options, Some(metrics.commit.clone()))
                    .map_err(|e| format!("opening the store in {}: {e}", dir.display()))?,
            ),
            Storage::Etcd => Arc::new(
                runtime
                    .block_on(EtcdStore::connect(etcd_options(&config, options)))
                    .map_err(|e| e.to_string())?,
            ),
        };
        runtime.block_on(ensure_namespaces(store.as_ref()))?;
        runtime.block_on(ensure_priority_classes(store.as_ref()))?;
        runtime.block_on(crate::auth::bootstrap::ensure(store.as_ref()))?;
        let kernel_dir = dir
            .parent()
            .ok_or_else(|| format!("data dir {} has no parent", dir.display()))?
            .to_path_buf();
        let names = serving_names(&config);
        let pki = kubernel_pki::ensure(&kernel_dir.join("pki"), &names)?;
        if pki.generated {
            tracing::info!(dir = %pki.dir.display(), "generated the cluster PKI");
        }
        let tls = kubernel_pki::tls_server_config(
            &pki.serving,
            &pki.ca.cert_pem,
            kubernel_pki::ClientCerts::Optional,
        )?;
        let addr = SocketAddr::new(config.bind_address, config.secure_port);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| format!("config: key secure_port: cannot listen on {addr}: {e}"))?;
        let addr = listener.local_addr().unwrap_or(addr);
        let insecure = if config.insecure_port == 0 {
            None
        } else {
            let insecure_addr = SocketAddr::new(config.insecure_bind_address, config.insecure_port);
            Some(
                runtime
                    .block_on(tokio::net::TcpListener::bind(insecure_addr))
                    .map_err(|e| {
                        format!("config: key insecure_port: cannot listen on {insecure_addr}: {e}")
                    })?,
            )
        };
        let shutdown = ctx.shutdown_signal().child_token();
        let issuer = crate::auth::serviceaccount::TokenIssuer::load(
            &pki.dir,
            crate::auth::serviceaccount::DEFAULT_ISSUER,
        )?;
        let mut state = ApiState::new(store, metrics.clone(), config, shutdown.clone());
        state.auth = AuthSettings {
            service_accounts: Some(Arc::new(issuer)),
            kubelet_client: Some(Arc::new(crate::tls::kubelet_client_config(
                &pki.kubelet_client,
            )?)),
            ..auth
        };
        state.audit = auditor;
        state.admission = admission;
        let state = Arc::new(state);
        runtime
            .block_on(crate::allocator::start(&state, addr))
            .map_err(|e| format!("service allocations: {e}"))?;
        let router = axum::Router::new()
            .fallback(dispatch)
            .with_state(state.clone());
        runtime.spawn(crate::tls::serve(
            listener,
            Arc::new(tls),
            router.clone(),
            metrics,
            state.config.max_header_bytes,
            shutdown.clone(),
        ));
        if let Some(listener) = insecure {
            let insecure_addr = listener.local_addr().ok();
            tracing::warn!(addr = ?insecure_addr, "serving plain HTTP without authentication or authorization (insecure_port)");
            runtime.spawn(crate::plain::serve(
                listener,
                router.clone(),
                state.config.max_header_bytes,
                shutdown.clone(),
            ));
        }
        let server_url = format!("https://{}", client_addr(addr));
        let kubeconfig = kernel_dir.join("admin.kubeconfig");
        kubernel_pki::write_private(
            &kubeconfig,
            &kubernel_pki::kubeconfig(
                &server_url,
                &pki.ca.cert_pem,
                "kubernetes-admin",
                &pki.admin,
            ),
        )?;
        let kubeconfig = kubeconfig.display().to_string();
        tracing::info!(addr = %addr, kubeconfig = %kubeconfig, "apiserver serving HTTPS; use kubectl --kubeconfig {kubeconfig}");
        Ok(Server {
            runtime,
            shutdown,
            state,
            router,
            ctx: ctx.clone(),
            bus_watches: BusWatches::default(),
        })
    }

    /// What answers `api.Request`s from plugins of this process, on any thread.
    pub fn caller(&self) -> BusCaller {
        BusCaller {
            runtime: self.runtime.handle().clone(),
            router: self.router.clone(),
            limit: self.state.config.max_request_body_bytes * 64,
            ctx: self.ctx.clone(),
        }
    }

    /// One page of `kubernel store export`.
    pub fn export(&self, req: &StoreExport) -> Result<StoreExportPage, String> {
        crate::migrate::export_page(self.state.store.as_ref(), req)
    }

    /// One batch of `kubernel store import`, written on the server's runtime.
    pub fn import(&self, req: StoreImport) -> Result<StoreImported, String> {
        let state = self.state.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        self.runtime.spawn(async move {
            let done = crate::migrate::import(state.store.as_ref(), &state.services, req).await;
            let _ = tx.send(done);
        });
        rx.recv()
            .map_err(|_| "the apiserver is stopping".to_string())?
    }

    /// Starts a watch over the bus for plugin `watcher` through the same handler
    /// chain as HTTP watches; blocks the calling (plugin) thread until it started
    /// or was refused. Its events go to `watcher`'s mailbox.
    pub fn watch(&self, watcher: &str, req: ApiWatch) -> ApiResponse {
        let start = bus_watch::Start {
            router: self.router.clone(),
            runtime: self.runtime.handle().clone(),
            ctx: self.ctx.clone(),
            watches: self.bus_watches.clone(),
            limit: self.state.config.max_request_body_bytes,
        };
        bus_watch::start(start, watcher, req)
    }

    /// Stops bus watch `id` of plugin `watcher`; whether it was open.
    pub fn stop_watch(&self, watcher: &str, id: &str) -> bool {
        self.bus_watches.stop(watcher, id)
    }

    /// Refreshes the storage gauges (called before metrics are gathered).
    pub fn update_gauges(&self) {
        let m = &self.state.metrics;
        let stats = self.state.store.stats();
        m.revision.set(stats.revision as i64);
        m.db_size
            .with_label_values(&[&stats.storage_cluster_id])
            .set(stats.db_size_bytes as i64);
        for (resource, count) in self.state.store.count_by_resource() {
            m.storage_objects
                .with_label_values(&[&resource])
                .set(count as i64);
        }
    }

    /// Whether the apiserver can serve: its store answers (for `/readyz`).
    pub fn ready(&self) -> Result<(), String> {
        self.state.store.health().map_err(|e| e.to_string())
    }

    /// Stops serving: ends watches (a bus watch with its `api.WatchEnded`), closes
    /// the listener and releases the store.
    pub fn stop(self, deadline: Duration) {
        self.bus_watches.close_all(&self.ctx);
        self.shutdown.cancel();
        drop(self.state);
        self.runtime.shutdown_timeout(deadline);
    }
}

/// Runs `api.Request`s and `api.Call`s of plugins in this process through the
/// apiserver's handler chain; cheap to clone, usable from many threads at once.
#[derive(Clone)]
pub struct BusCaller {
    runtime: tokio::runtime::Handle,
    router: axum::Router,
    /// Largest response body read back.
    limit: usize,
    /// Sends `api.CallDone`s.
    ctx: Context,
}

impl BusCaller {
    /// Runs an API request from a plugin of this process through the same handler
    /// chain as HTTP requests; blocks the calling (plugin) thread until answered.
    pub fn call(&self, from: &str, req: ApiRequest) -> ApiResponse {
        let request = match self.prepare(from, req) {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let (router, limit) = (self.router.clone(), self.limit);
        self.runtime.spawn(async move {
            let _ = tx.send(respond(router, request, limit).await);
        });
        rx.recv()
            .unwrap_or_else(|_| refused(&ApiError::unavailable("the apiserver is stopping")))
    }

    /// Starts an `api.Call` from plugin `from` and returns at once; its response
    /// goes to `from`'s mailbox as an `api.CallDone`.
    pub fn start(&self, from: &str, call: ApiCall) {
        let (router, limit) = (self.router.clone(), self.limit);
        let prepared = self.prepare(from, call.request);
        let mut answer = Answer {
            ctx: self.ctx.clone(),
            to: from.to_string(),
            id: call.id,
            sent: false,
        };
        self.runtime.spawn(async move {
            let response = match prepared {
                Ok(request) => respond(router, request, limit).await,
                Err(resp) => resp,
            };
            answer.send(response);
        });
    }

    /// The HTTP request an API request from plugin `from` stands for, or the
    /// response refusing it.
    fn prepare(
        &self,
        from: &str,
        req: ApiRequest,
    ) -> Result<axum::http::Request<axum::body::Body>, ApiResponse> {
        if req.path.contains("watch=true") || req.path.contains("watch=1") {
            return Err(refused(&ApiError::bad_request(
                "an api.Request cannot watch: send an api.Watch (its events come as api.WatchEvents messages)",
            )));
        }
        let mut builder = axum::http::Request::builder()
            .method(req.method.as_str())
            .uri(req.path.as_str());
        if !req.content_type.is_empty() {
            builder = builder.header(axum::http::header::CONTENT_TYPE, req.content_type.as_str());
        }
        if !req.accept.is_empty() {
            builder = builder.header(axum::http::header::ACCEPT, req.accept.as_str());
        }
        // The sender's trace context came in the message envelope: the span of
        // the bus message is current, and the request's span becomes its child.
        if let Some(parent) = kubernel_sdk::traceparent() {
            builder = builder.header("traceparent", parent);
        }
        match builder.body(axum::body::Body::from(req.body)) {
            Ok(mut r) => {
                r.extensions_mut()
                    .insert(crate::auth::Caller::Bus(from.to_string()));
                Ok(r)
            }
            Err(e) => Err(refused(&ApiError::bad_request(format!(
                "invalid API request: {e}"
            )))),
        }
    }
}

/// The `api.CallDone` one call owes its caller: sent with the response, or with
/// a 503 if the call is dropped first (the apiserver stops or is swapped while it
/// runs), so the caller is not left waiting for its timeout.
struct Answer {
    ctx: Context,
    to: String,
    id: u64,
    sent: bool,
}

impl Answer {
    fn send(&mut self, response: ApiResponse) {
        self.sent = true;
        let done = ApiCallDone {
            id: self.id,
            response,
        };
        if let Err(e) = self.ctx.send(&self.to, &done) {
            // The caller is gone (stopped or swapped): nobody waits for this answer.
            tracing::debug!(plugin = %self.to, error = %e, "api.CallDone not delivered");
        }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if !self.sent {
            self.send(refused(&ApiError::unavailable("the apiserver is stopping")));
        }
    }
}

/// Runs `request` through `router` and reads its response back.
async fn respond(
    router: axum::Router,
    request: axum::http::Request<axum::body::Body>,
    limit: usize,
) -> ApiResponse {
    use tower::ServiceExt;
    let Ok(resp) = router.oneshot(request).await;
    let (parts, body) = resp.into_parts();
    match axum::body::to_bytes(body, limit).await {
        Ok(body) => bus_watch::answer(&parts, body.to_vec()),
        Err(e) => refused(&ApiError::internal(format!("reading the response: {e}"))),
    }
}

/// The etcd backend's settings from the apiserver's config.
fn etcd_options(config: &ApiServerConfig, cache: CacheOptions) -> EtcdOptions {
    EtcdOptions {
        endpoints: config.etcd_endpoints.clone(),
        prefix: config.etcd_prefix.clone(),
        tls: EtcdTls {
            ca_file: config.etcd_ca_file.clone(),
            cert_file: config.etcd_cert_file.clone(),
            key_file: config.etcd_key_file.clone(),
        },
        request_timeout: config.etcd_request_timeout,
        compaction_interval: config.etcd_compaction_interval,
        cache,
    }
}

async fn ensure_namespaces(store: &dyn Store) -> Result<(), String> {
    for ns in SYSTEM_NAMESPACES {
        let key = format!("namespaces/{ns}");
        if store.get(&key).map_err(|e| e.to_string())?.is_some() {
            continue;
        }
        let object = json!({
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {
                "name": ns,
                "uid": crate::objects::new_uid(),
                "creationTimestamp": crate::objects::now(),
                "labels": { "kubernetes.io/metadata.name": ns },
            },
            "spec": { "finalizers": ["kubernetes"] },
            "status": { "phase": "Active" },
        });
        match store.create(&key, object).await {
            Ok(_) | Err(crate::store::StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(format!("creating namespace {ns}: {e}")),
        }
    }
    Ok(())
}

/// The system PriorityClasses (`system-node-critical`, `system-cluster-critical`).
async fn ensure_priority_classes(store: &dyn Store) -> Result<(), String> {
    use crate::admission::priority::{system_class, PREFIX, SYSTEM_CLASSES};
    for (name, value, description) in SYSTEM_CLASSES {
        let key = format!("{PREFIX}{name}");
        if store.get(&key).map_err(|e| e.to_string())?.is_some() {
            continue;
        }
        match store
            .create(&key, system_class(name, value, description))
            .await
        {
            Ok(_) | Err(crate::store::StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(format!("creating PriorityClass {name}: {e}")),
        }
    }
    Ok(())
}

/// The address clients of this machine use for `addr`: loopback for a wildcard bind.
fn client_addr(addr: SocketAddr) -> SocketAddr {
    let ip = if addr.ip().is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        addr.ip()
    };
    SocketAddr::new(ip, addr.port())
}

/// The addresses of this host's interfaces (in the apiserver's network namespace),
/// loopback and link-local ones left out; empty if they cannot be read.
fn host_addresses() -> Vec<IpAddr> {
    let interfaces = match if_addrs::get_if_addrs() {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the network interfaces for the serving certificate");
            return Vec::new();
        }
    };
    let mut ips = Vec::new();
    for ip in interfaces.iter().map(|i| i.ip()) {
        let link_local = match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        };
        if !ip.is_loopback() && !link_local && !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

/// The serving certificate's names: the host name, `localhost`, the `kubernetes`
/// Service's names and ClusterIP, 127.0.0.1, the bind address (every interface's
/// address when it is `0.0.0.0`) and `cert_sans`.
fn serving_names(config: &ApiServerConfig) -> kubernel_pki::ServingNames {
    let mut names = kubernel_pki::ServingNames::default();
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.dns.push(host.to_string());
        }
    }
    for dns in [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ] {
        names.dns.push(dns.to_string());
    }
    names.ips.push(IpAddr::from([127, 0, 0, 1]));
    let services = crate::allocator::ServiceAllocator::new(
        config.service_cluster_ip_range,
        config.service_node_port_range,
    );
    names.ips.push(IpAddr::V4(services.first_ip()));
    // Every interface when bound to all of them (the node IPs), else the one bound.
    let bound = if config.bind_address.is_unspecified() {
        host_addresses()
    } else {
        vec![config.bind_address]
    };
    for ip in bound {
        if !names.ips.contains(&ip) {
            names.ips.push(ip);
        }
    }
    for san in &config.cert_sans {
        match san.parse::<IpAddr>() {
            Ok(ip) if !names.ips.contains(&ip) => names.ips.push(ip),
            Ok(_) => {}
            Err(_) if !names.dns.contains(san) => names.dns.push(san.clone()),
            Err(_) => {}
        }
    }
    names
}
