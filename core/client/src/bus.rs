//! The bus transport: API requests and watches to the apiserver plugin of this
//! process over the kernel bus instead of HTTPS.
//!
//! A request is an `api.Call`: the apiserver starts it on its own runtime and
//! answers to the plugin's mailbox with an `api.CallDone`, so no thread of the
//! caller waits for it. The apiserver knows the caller as its plugin's component
//! identity (`system:kube-scheduler`, ...), so no certificate or token is involved.
//! A watch is an `api.Watch`; its lines come to the plugin's mailbox as
//! `api.WatchEvents`. The plugin hands its mailbox to the link: [`BusLink`] is
//! a [`SharedHandler`] for its plugin's `shared`, or its `handle` calls
//! [`BusLink::deliver`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use kubernel_sdk::abi::Status;
use kubernel_sdk::api::rest::{
    ApiCall, ApiCallDone, ApiRequest, ApiResponse, ApiWatch, ApiWatchEnded, ApiWatchEvents,
    ApiWatchStop,
};
use kubernel_sdk::api::Message;
use kubernel_sdk::{Context, Incoming, PluginError, Reply, RequestError, SharedHandler};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

/// The target of API messages: the plugin of kind `apiserver`.
const APISERVER: &str = "@apiserver";

/// Calls one plugin has open at once; more wait for one to end (as streams
/// past an HTTP/2 connection's limit do, Go's default 250).
const MAX_CALLS_IN_FLIGHT: usize = 250;

/// A plugin's link to the apiserver of its process; shared by its clients.
pub struct BusLink {
    ctx: Context,
    /// Open watches by id: where their lines go.
    watches: Mutex<HashMap<String, mpsc::UnboundedSender<Delivery>>>,
    /// Calls waiting for their `api.CallDone`, by id.
    calls: Mutex<HashMap<u64, oneshot::Sender<ApiResponse>>>,
    /// Bounds the open calls.
    call_slots: tokio::sync::Semaphore,
    next_id: AtomicU64,
}

/// What the apiserver sent for one watch.
enum Delivery {
    Lines(Vec<u8>),
    Ended,
}

impl BusLink {
    /// A link for the plugin of `ctx`; its `handle` must pass messages to [`BusLink::deliver`].
    pub fn new(ctx: Context) -> Arc<BusLink> {
        Arc::new(BusLink {
            ctx,
            watches: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
            call_slots: tokio::sync::Semaphore::new(MAX_CALLS_IN_FLIGHT),
            next_id: AtomicU64::new(1),
        })
    }

    /// Takes the apiserver's messages for this plugin's calls and watches
    /// (`api.CallDone`, `api.WatchEvents`, `api.WatchEnded`); `None` for any other
    /// kind, which the plugin handles itself.
    pub fn deliver(&self, msg: &Incoming<'_>) -> Option<Result<Reply, PluginError>> {
        match msg.kind {
            ApiCallDone::KIND => Some(msg.reply::<ApiCallDone>(|done| {
                if let Some(tx) = self.calls.lock().remove(&done.id) {
                    let _ = tx.send(done.response);
                }
                Ok(())
            })),
            ApiWatchEvents::KIND => Some(msg.reply::<ApiWatchEvents>(|e| {
                if let Some(tx) = self.watches.lock().get(&e.id) {
                    let _ = tx.send(Delivery::Lines(e.lines));
                }
                Ok(())
            })),
            ApiWatchEnded::KIND => Some(msg.reply::<ApiWatchEnded>(|e| {
                if let Some(tx) = self.watches.lock().remove(&e.id) {
                    let _ = tx.send(Delivery::Ended);
                }
                Ok(())
            })),
            _ => None,
        }
    }

    /// Whether this process has an apiserver plugin to talk to (loaded before the
    /// calling plugin: plugins start in config order).
    pub fn has_apiserver(&self) -> bool {
        let probe = ApiRequest {
            method: "GET".into(),
            path: "/version".into(),
            content_type: String::new(),
            accept: String::new(),
            body: Vec::new(),
        };
        match self.ctx.request(APISERVER, &probe) {
            Ok(_) => true,
            // The kernel's answer when no plugin of that kind is configured.
            Err(RequestError::Rejected { message, .. }) => !message.starts_with("no plugin"),
            Err(RequestError::Codec(_)) => true,
        }
    }

    /// Sends one request and waits at most `timeout` for its answer.
    pub(crate) async fn request(
        &self,
        req: ApiRequest,
        timeout: Duration,
    ) -> Result<ApiResponse, String> {
        let started = tokio::time::Instant::now();
        let Ok(Ok(_slot)) = tokio::time::timeout(timeout, self.call_slots.acquire()).await else {
            return Err(format!(
                "no answer from the apiserver within {timeout:?} ({MAX_CALLS_IN_FLIGHT} requests of this plugin still open)"
            ));
        };
        let timeout = timeout.saturating_sub(started.elapsed());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.calls.lock().insert(id, tx);
        // Forgets the call however this future ends (answered, timed out, dropped).
        let _waiting = ForgetCall { link: self, id };
        // The apiserver only starts the call here: this does not wait for it.
        let call = ApiCall { id, request: req };
        match self.ctx.request(APISERVER, &call) {
            Ok(()) => {}
            // An apiserver without `api.Call` (an older build swapped in): ask it
            // the blocking way, off the runtime's workers.
            Err(RequestError::Rejected {
                status: Status::UNKNOWN_KIND,
                ..
            }) => return self.request_blocking(call.request, timeout).await,
            Err(e) => return Err(e.to_string()),
        }
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(format!("no answer from the apiserver within {timeout:?}")),
            Ok(Err(_)) => Err("the apiserver dropped the request".into()),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// An `api.Request`, answered on a blocking thread.
    async fn request_blocking(
        &self,
        req: ApiRequest,
        timeout: Duration,
    ) -> Result<ApiResponse, String> {
        let ctx = self.ctx.clone();
        let span = tracing::Span::current();
        let call =
            tokio::task::spawn_blocking(move || span.in_scope(|| ctx.request(APISERVER, &req)));
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(format!("no answer from the apiserver within {timeout:?}")),
            Ok(Err(e)) => Err(format!("bus request task: {e}")),
            Ok(Ok(Err(e))) => Err(e.to_string()),
            Ok(Ok(Ok(resp))) => Ok(resp),
        }
    }

    /// Starts a watch on `path` (with `watch=true`): the apiserver's answer to the
    /// watch request, and its lines, which end when the watch does. Dropping the
    /// stream stops the watch.
    pub(crate) async fn watch(
        self: &Arc<Self>,
        path: &str,
        timeout: Duration,
    ) -> Result<(ApiResponse, WatchLines), String> {
        let id = format!(
            "{}-{}",
            self.ctx.name(),
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = mpsc::unbounded_channel();
        self.watches.lock().insert(id.clone(), tx);
        let lines = WatchLines {
            link: self.clone(),
            id: id.clone(),
            rx,
            pending: Vec::new(),
            ended: false,
        };
        let ctx = self.ctx.clone();
        let req = ApiWatch {
            id,
            path: path.to_string(),
            accept: String::new(),
        };
        let call = tokio::task::spawn_blocking(move || ctx.request(APISERVER, &req));
        // On an error `lines` is dropped, which forgets the watch.
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(format!("no answer from the apiserver within {timeout:?}")),
            Ok(Err(e)) => Err(format!("bus watch task: {e}")),
            Ok(Ok(Err(e))) => Err(e.to_string()),
            Ok(Ok(Ok(resp))) => Ok((resp, lines)),
        }
    }
}

impl SharedHandler for BusLink {
    fn handle(&self, msg: &Incoming<'_>) -> Option<Result<Reply, PluginError>> {
        self.deliver(msg)
    }
}

/// Removes a call from [`BusLink::calls`] when its waiter goes away.
struct ForgetCall<'a> {
    link: &'a BusLink,
    id: u64,
}

impl Drop for ForgetCall<'_> {
    fn drop(&mut self) {
        self.link.calls.lock().remove(&self.id);
    }
}

/// The lines of one bus watch, one JSON event each; stops the watch when dropped.
pub(crate) struct WatchLines {
    link: Arc<BusLink>,
    id: String,
    rx: mpsc::UnboundedReceiver<Delivery>,
    /// Lines received and not yet yielded, in reverse order.
    pending: Vec<Bytes>,
    ended: bool,
}

impl Stream for WatchLines {
    type Item = Bytes;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Bytes>> {
        use std::task::Poll;
        loop {
            if let Some(line) = self.pending.pop() {
                return Poll::Ready(Some(line));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            match self.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) | Poll::Ready(Some(Delivery::Ended)) => self.ended = true,
                Poll::Ready(Some(Delivery::Lines(chunk))) => {
                    let mut lines: Vec<Bytes> = chunk
                        .split(|b| *b == b'\n')
                        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                        .map(Bytes::copy_from_slice)
                        .collect();
                    lines.reverse();
                    self.pending = lines;
                }
            }
        }
    }
}

impl Drop for WatchLines {
    fn drop(&mut self) {
        let open = self.link.watches.lock().remove(&self.id).is_some();
        if open && !self.ended {
            // Its `api.WatchEnded` follows and finds no receiver.
            let stop = ApiWatchStop {
                id: self.id.clone(),
            };
            let _ = self.link.ctx.send(APISERVER, &stop);
        }
    }
}
