//! The bus: routes messages between plugins by name or kind, synchronously or through mailboxes.
//!
//! A request runs the target's `handle` on the caller's thread under the target's
//! instance lock: no thread hop, so a request/reply costs about a microsecond. A
//! send goes through the target's actor mailbox and is handled on the actor's
//! thread. A hot swap holds the same lock, so a request that arrives mid-swap
//! waits and is then handled by the new instance; a send waits in the mailbox.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::Addr;
use kubernel_abi::{OutBuf, Status};
use parking_lot::{Mutex, RwLock, RwLockWriteGuard};
use serde::Serialize;

use crate::config::PluginConfig;
use crate::host::{Deliver, PluginHost, Poisoned};
use crate::loader::{CallError, Library, Live};
use crate::metrics::KernelMetrics;

/// Settings every slot needs, taken from `[kernel]` and the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Data directory; plugins keep state under `<data_dir>/<name>`.
    pub data_dir: std::path::PathBuf,
    /// Filter passed to plugins for their own log events.
    pub log_filter: String,
    /// How long a request waits for a busy plugin.
    pub request_timeout: Duration,
    /// How often plugin state is snapshotted.
    pub snapshot_interval: Duration,
    /// First restart delay.
    pub restart_backoff_initial: Duration,
    /// Longest restart delay.
    pub restart_backoff_max: Duration,
}

/// One message on the bus: sender, kind, encoded payload, and the sender's trace
/// context (a W3C `traceparent`, empty for none), which the target's SDK makes the
/// parent of its span for the message.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// Sender name (a plugin, `kernel` or `admin`).
    pub from: &'a str,
    /// Message kind.
    pub kind: &'a str,
    /// Encoded message.
    pub payload: &'a [u8],
    /// W3C `traceparent` of the sender's span, or empty.
    pub trace: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// A message without trace context.
    pub fn new(from: &'a str, kind: &'a str, payload: &'a [u8]) -> Self {
        Envelope {
            from,
            kind,
            payload,
            trace: &[],
        }
    }
}

/// Lifecycle state of a plugin slot, as `kubernel plugins` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginState {
    /// Loaded and taking messages.
    Running,
    /// Crashed; waiting for its restart backoff.
    Restarting,
    /// Its last restart attempt failed; retried after the backoff.
    Failed,
    /// Drained on shutdown.
    Stopped,
}

impl PluginState {
    /// Lowercase name, for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginState::Running => "running",
            PluginState::Restarting => "restarting",
            PluginState::Failed => "failed",
            PluginState::Stopped => "stopped",
        }
    }
}

/// Slots by name, as cached per thread.
type SlotsByName = HashMap<Box<str>, Arc<Slot>>;

thread_local! {
    /// Slots whose instance lock this thread holds (to refuse re-entrant requests).
    static HELD: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    /// Slots this thread resolved by name, per bus.
    static RESOLVED: RefCell<HashMap<usize, SlotsByName>> = RefCell::new(HashMap::new());
}

/// Marks a slot as held by this thread while alive.
pub(crate) struct HeldGuard(usize);

impl HeldGuard {
    pub(crate) fn new(id: usize) -> Self {
        HELD.with(|h| h.borrow_mut().push(id));
        HeldGuard(id)
    }

    fn is_held(id: usize) -> bool {
        HELD.with(|h| h.borrow().contains(&id))
    }
}

impl Drop for HeldGuard {
    fn drop(&mut self) {
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            if let Some(pos) = h.iter().rposition(|&x| x == self.0) {
                h.remove(pos);
            }
        });
    }
}

/// One configured plugin: its current instance, library, state and mailbox.
pub struct Slot {
    /// Index in start order.
    pub id: usize,
    /// Instance name from the config.
    pub name: String,
    pub(crate) bus: Arc<Bus>,
    pub(crate) config: RwLock<PluginConfig>,
    /// The instance: held exclusively for its entry points, shared for `handle_shared`.
    pub(crate) instance: RwLock<Option<Live>>,
    pub(crate) library: RwLock<Arc<Library>>,
    pub(crate) graveyard: Mutex<Vec<Arc<Library>>>,
    status: RwLock<(PluginState, String)>,
    pub(crate) restarts: AtomicU64,
    pub(crate) generation: AtomicU64,
    pub(crate) started_at: RwLock<Instant>,
    pub(crate) snapshot: Mutex<(Vec<u8>, u32)>,
    pub(crate) mailbox: AtomicI64,
    /// The mailbox, once the plugin's `init` returned; see [`Slot::open_mailbox`].
    addr: OnceLock<Addr<PluginHost>>,
    /// Messages sent while `init` runs (`Some` until the mailbox opens): a plugin's
    /// `init` may start work whose answers come as messages (an `api.CallDone`).
    early: Mutex<Option<Vec<Deliver>>>,
}

/// What `GET /plugins` reports for one plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    /// Instance name.
    pub name: String,
    /// Component kind.
    pub kind: String,
    /// Plugin type name from its descriptor.
    pub plugin: String,
    /// Plugin version.
    pub version: String,
    /// Library path it was loaded from.
    pub path: String,
    /// Lifecycle state.
    pub state: PluginState,
    /// Restarts after crashes.
    pub restarts: u64,
    /// Seconds since the current instance started.
    pub uptime_seconds: f64,
    /// kubernel-abi version the plugin was built with.
    pub sdk_version: String,
    /// Snapshot format version.
    pub state_version: u32,
    /// Messages waiting in its mailbox.
    pub mailbox_depth: i64,
    /// Last error (crash, failed restart), if any.
    pub last_error: String,
}

impl Slot {
    /// Opens the plugin's mailbox once its `init` returned: the messages sent
    /// meanwhile go first, in order.
    pub(crate) fn open_mailbox(&self, addr: Addr<PluginHost>) {
        let mut early = self.early.lock();
        for msg in early.take().unwrap_or_default() {
            addr.do_send(msg);
        }
        // Under the lock: a sender that saw no mailbox finds this one, after the early messages.
        let _ = self.addr.set(addr);
    }

    /// The plugin's mailbox, once open.
    pub(crate) fn mailbox_addr(&self) -> Option<&Addr<PluginHost>> {
        self.addr.get()
    }

    /// Current state.
    pub fn state(&self) -> PluginState {
        self.status.read().0
    }

    pub(crate) fn set_state(&self, state: PluginState, error: impl Into<String>) {
        let mut s = self.status.write();
        s.0 = state;
        let error = error.into();
        if !error.is_empty() || state == PluginState::Running {
            s.1 = error;
        }
    }

    /// Snapshot of this slot for `GET /plugins`.
    pub fn info(&self) -> PluginInfo {
        let lib = self.library.read().clone();
        let (state, last_error) = self.status.read().clone();
        PluginInfo {
            name: self.name.clone(),
            kind: lib.meta.kind.clone(),
            plugin: lib.meta.plugin.clone(),
            version: lib.meta.version.clone(),
            path: lib.path.display().to_string(),
            state,
            restarts: self.restarts.load(Ordering::Relaxed),
            uptime_seconds: self.started_at.read().elapsed().as_secs_f64(),
            sdk_version: lib.meta.sdk_version.clone(),
            state_version: lib.meta.state_version,
            mailbox_depth: self.mailbox.load(Ordering::Relaxed),
            last_error,
        }
    }

    /// Locks the instance, refusing re-entry from this thread and waiting at most `timeout`.
    pub(crate) fn lock(
        &self,
        timeout: Duration,
    ) -> Result<RwLockWriteGuard<'_, Option<Live>>, CallError> {
        self.refuse_reentry()?;
        self.instance
            .try_write_for(timeout)
            .ok_or_else(|| self.busy(timeout))
    }

    fn refuse_reentry(&self) -> Result<(), CallError> {
        if HeldGuard::is_held(self.id) {
            return Err(CallError {
                status: Status::REENTRANT,
                message: format!(
                    "plugin {:?} is already handling a message on this thread (request cycle)",
                    self.name
                ),
            });
        }
        Ok(())
    }

    fn busy(&self, timeout: Duration) -> CallError {
        CallError {
            status: Status::TIMEOUT,
            message: format!("plugin {:?} stayed busy for {timeout:?}", self.name),
        }
    }

    /// Offers a message to the instance's `handle_shared`, holding its lock shared.
    /// `None`: the plugin takes this kind only through its exclusive `handle`.
    fn deliver_shared(&self, msg: Envelope<'_>, out: &mut OutBuf<'_>) -> Option<Status> {
        if let Err(e) = self.refuse_reentry() {
            out.write(e.message.as_bytes());
            return Some(e.status);
        }
        let timeout = self.bus.settings.request_timeout;
        let Some(guard) = self.instance.try_read_for(timeout) else {
            out.write(self.busy(timeout).message.as_bytes());
            return Some(Status::TIMEOUT);
        };
        let live = guard.as_ref()?;
        if !live.has_shared_handler() {
            return None;
        }
        let _held = HeldGuard::new(self.id);
        let started = Instant::now();
        let status = live.handle_shared(msg, out);
        let seconds = started.elapsed().as_secs_f64();
        drop(guard);
        match status {
            Status::UNKNOWN_KIND => return None,
            Status::PANICKED | Status::FATAL => {
                // Like a panic in `handle`: the instance is dropped (leaked, its
                // memory cannot be trusted) and the host restarts it.
                let poisoned = self.instance.write().take();
                if status == Status::FATAL {
                    if let Some(live) = poisoned {
                        live.shutdown();
                    }
                }
                self.poison(format!(
                    "{} while handling {} from {}",
                    status.name(),
                    msg.kind,
                    msg.from
                ));
            }
            _ => {}
        }
        self.bus
            .metrics
            .observe_message(msg.from, &self.name, msg.kind, seconds);
        Some(status)
    }

    /// Delivers a message to the current instance on this thread; the reply goes to `out`.
    /// A status other than OK is counted in `kubernel_bus_message_errors_total`.
    pub(crate) fn deliver(&self, msg: Envelope<'_>, out: &mut OutBuf<'_>) -> Status {
        let status = self.deliver_once(msg, out);
        if status != Status::OK {
            self.bus.metrics.count_error(&self.name, status);
        }
        status
    }

    fn deliver_once(&self, msg: Envelope<'_>, out: &mut OutBuf<'_>) -> Status {
        if let Some(status) = self.deliver_shared(msg, out) {
            return status;
        }
        let Envelope { from, kind, .. } = msg;
        let mut guard = match self.lock(self.bus.settings.request_timeout) {
            Ok(g) => g,
            Err(e) => {
                out.write(e.message.as_bytes());
                return e.status;
            }
        };
        let _held = HeldGuard::new(self.id);
        let Some(live) = guard.as_mut() else {
            out.write(format!("plugin {:?} is {}", self.name, self.state().as_str()).as_bytes());
            return Status::UNAVAILABLE;
        };
        let started = Instant::now();
        let status = live.handle(msg, out);
        let seconds = started.elapsed().as_secs_f64();
        if status == Status::PANICKED || status == Status::FATAL {
            let poisoned = guard.take();
            if status == Status::FATAL {
                if let Some(live) = poisoned {
                    live.shutdown();
                }
            }
            drop(guard);
            self.poison(format!(
                "{} while handling {kind} from {from}",
                status.name()
            ));
        } else {
            drop(guard);
        }
        // Kinds the plugin did not take are counted as "other": the label stays bounded.
        let kind_label = match status {
            Status::UNKNOWN_KIND | Status::BAD_MESSAGE => "other",
            _ => kind,
        };
        self.bus
            .metrics
            .observe_message(from, &self.name, kind_label, seconds);
        status
    }

    /// Marks the instance dead and asks the host actor to restart it.
    pub(crate) fn poison(&self, reason: String) {
        tracing::error!(plugin = %self.name, reason = %reason, "plugin instance failed; restarting it");
        self.set_state(PluginState::Restarting, reason);
        let generation = self.generation.load(Ordering::SeqCst);
        if let Some(addr) = self.mailbox_addr() {
            addr.do_send(Poisoned { generation });
        }
    }

    /// Takes a snapshot of the running instance for restarts.
    pub(crate) fn take_snapshot(&self) {
        let Ok(mut guard) = self.lock(Duration::from_millis(100)) else {
            return;
        };
        let _held = HeldGuard::new(self.id);
        if let Some(live) = guard.as_mut() {
            let version = live.library().meta.state_version;
            match live.snapshot() {
                Ok(state) => *self.snapshot.lock() = (state, version),
                Err(e) => tracing::warn!(plugin = %self.name, error = %e, "snapshot failed"),
            }
        }
    }

    /// The init parameters (JSON) for a new instance of this slot.
    pub(crate) fn init_params(&self, config: &PluginConfig) -> Vec<u8> {
        let data_dir = self.bus.settings.data_dir.join(&self.name);
        let params = serde_json::json!({
            "name": self.name,
            "data_dir": data_dir,
            "log_filter": self.bus.settings.log_filter,
            "config": config.config,
        });
        params.to_string().into_bytes()
    }
}

/// The routing table of all plugin slots and the kernel metrics.
pub struct Bus {
    slots: RwLock<Vec<Arc<Slot>>>,
    by_name: RwLock<HashMap<String, Arc<Slot>>>,
    subscriptions: RwLock<HashMap<String, Vec<Arc<Slot>>>>,
    /// Kernel metrics.
    pub metrics: KernelMetrics,
    /// Shared settings.
    pub settings: Settings,
}

impl Bus {
    /// An empty bus.
    pub fn new(settings: Settings, metrics: KernelMetrics) -> Arc<Bus> {
        Arc::new(Bus {
            slots: RwLock::new(Vec::new()),
            by_name: RwLock::new(HashMap::new()),
            subscriptions: RwLock::new(HashMap::new()),
            metrics,
            settings,
        })
    }

    /// Creates the slot for a plugin whose first instance is about to be created.
    pub(crate) fn add_slot(
        self: &Arc<Self>,
        config: PluginConfig,
        library: Arc<Library>,
    ) -> Arc<Slot> {
        let mut slots = self.slots.write();
        let slot = Arc::new(Slot {
            id: slots.len(),
            name: config.name.clone(),
            bus: self.clone(),
            config: RwLock::new(config),
            instance: RwLock::new(None),
            library: RwLock::new(library),
            graveyard: Mutex::new(Vec::new()),
            status: RwLock::new((PluginState::Running, String::new())),
            restarts: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            started_at: RwLock::new(Instant::now()),
            snapshot: Mutex::new((Vec::new(), 0)),
            mailbox: AtomicI64::new(0),
            addr: OnceLock::new(),
            early: Mutex::new(Some(Vec::new())),
        });
        slots.push(slot.clone());
        self.by_name.write().insert(slot.name.clone(), slot.clone());
        slot
    }

    /// All slots in start order.
    pub fn slots(&self) -> Vec<Arc<Slot>> {
        self.slots.read().clone()
    }

    /// The slot for `target`: a plugin name, or `@kind` for the first running plugin of that kind.
    pub fn resolve(&self, target: &str) -> Result<Arc<Slot>, CallError> {
        let found = if let Some(kind) = target.strip_prefix('@') {
            let slots = self.slots.read();
            let mut of_kind = slots.iter().filter(|s| s.library.read().meta.kind == kind);
            let first = of_kind.clone().next().cloned();
            of_kind
                .find(|s| s.state() == PluginState::Running)
                .cloned()
                .or(first)
        } else {
            self.resolve_name(target)
        };
        found.ok_or_else(|| {
            let names: Vec<String> = self.slots.read().iter().map(|s| s.name.clone()).collect();
            CallError {
                status: Status::UNAVAILABLE,
                message: format!("no plugin {target:?}; loaded: {}", names.join(", ")),
            }
        })
    }

    /// The slot named `name`, through a per-thread cache (slots are never removed,
    /// so a cached slot stays valid; a miss falls back to the shared table).
    fn resolve_name(&self, name: &str) -> Option<Arc<Slot>> {
        let bus_id = self as *const Bus as usize;
        let cached = RESOLVED.with(|r| r.borrow().get(&bus_id).and_then(|m| m.get(name).cloned()));
        if cached.is_some() {
            return cached;
        }
        let slot = self.by_name.read().get(name).cloned()?;
        RESOLVED.with(|r| {
            r.borrow_mut()
                .entry(bus_id)
                .or_default()
                .insert(name.into(), slot.clone());
        });
        Some(slot)
    }

    /// Sends a request from `from` and returns the reply bytes (for the kernel, CLI and benches).
    pub fn request(&self, target: &str, msg: Envelope<'_>) -> Result<Vec<u8>, CallError> {
        let slot = self.resolve(target)?;
        let mut out = Vec::new();
        let status = slot.deliver(msg, &mut OutBuf::new(&mut out));
        if status.is_ok() {
            Ok(out)
        } else {
            Err(CallError {
                status,
                message: String::from_utf8_lossy(&out).into_owned(),
            })
        }
    }

    /// Queues a message in `target`'s mailbox.
    pub fn send(&self, target: &str, msg: Envelope<'_>) -> Result<(), CallError> {
        let slot = self.resolve(target)?;
        Self::enqueue(&slot, msg)
    }

    fn enqueue(slot: &Arc<Slot>, msg: Envelope<'_>) -> Result<(), CallError> {
        let deliver = Deliver {
            from: msg.from.to_string(),
            kind: msg.kind.to_string(),
            payload: msg.payload.to_vec(),
            trace: msg.trace.to_vec(),
        };
        slot.mailbox.fetch_add(1, Ordering::Relaxed);
        if let Some(addr) = slot.addr.get() {
            addr.do_send(deliver);
            return Ok(());
        }
        let mut early = slot.early.lock();
        match (early.as_mut(), slot.addr.get()) {
            (Some(queue), _) => queue.push(deliver),
            // The mailbox opened meanwhile.
            (None, Some(addr)) => addr.do_send(deliver),
            (None, None) => {
                slot.mailbox.fetch_sub(1, Ordering::Relaxed);
                return Err(CallError {
                    status: Status::UNAVAILABLE,
                    message: format!("plugin {:?} has no mailbox", slot.name),
                });
            }
        }
        Ok(())
    }

    /// Queues a message to every subscriber of `kind` except the sender.
    pub fn publish(&self, msg: Envelope<'_>) {
        let subscribers = self
            .subscriptions
            .read()
            .get(msg.kind)
            .cloned()
            .unwrap_or_default();
        for slot in subscribers.iter().filter(|s| s.name != msg.from) {
            if let Err(e) = Self::enqueue(slot, msg) {
                tracing::warn!(plugin = %slot.name, kind = msg.kind, error = %e, "published message not delivered");
            }
        }
    }

    /// Subscribes `slot` to `kind`.
    pub fn subscribe(&self, slot: &Arc<Slot>, kind: &str) {
        let mut subs = self.subscriptions.write();
        let list = subs.entry(kind.to_string()).or_default();
        if !list.iter().any(|s| s.id == slot.id) {
            list.push(slot.clone());
        }
    }

    /// The slot with a given id.
    pub(crate) fn slot_by_id(&self, id: usize) -> Option<Arc<Slot>> {
        self.slots.read().get(id).cloned()
    }
}
