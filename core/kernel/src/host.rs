//! `PluginHost`: the supervised actor that owns one plugin slot's lifecycle.
//!
//! It handles queued sends, restarts a crashed instance with exponential backoff
//! (restoring its last snapshot), takes periodic snapshots, performs hot swaps and
//! drains the plugin on shutdown. While it waits out a restart backoff it takes no
//! messages, so sends queue in its mailbox and none is lost.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use kubernel_abi::{OutBuf, Status};

use crate::bus::{Envelope, HeldGuard, PluginState, Slot};
use crate::config::PluginConfig;
use crate::loader::{Library, Live};
use crate::swap::{swap, SwapError, SwapReport};
use crate::vtable::vtable_for;

/// A message queued for the plugin (a send or publish).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    /// Sender name.
    pub from: String,
    /// Message kind.
    pub kind: String,
    /// Encoded message.
    pub payload: Vec<u8>,
    /// The sender's trace context (see [`Envelope`]).
    pub trace: Vec<u8>,
}

/// The instance of this generation crashed during a request on another thread.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Poisoned {
    /// Generation of the instance that crashed.
    pub generation: u64,
}

/// Replace the running instance with one from `library` (a hot swap).
#[derive(Message)]
#[rtype(result = "Result<SwapReport, SwapError>")]
pub struct Swap {
    /// The new library, already loaded and validated.
    pub library: Arc<Library>,
    /// The plugin's config for the new instance.
    pub config: PluginConfig,
}

/// Quiesce and shut the plugin down within `grace` (kernel shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain {
    /// Time the plugin gets.
    pub grace: Duration,
}

/// The actor hosting one plugin slot.
pub struct PluginHost {
    slot: Arc<Slot>,
    next_backoff: Duration,
    last_crash: Option<Instant>,
    /// Sends that arrived while the instance was down, delivered after the restart.
    pending: VecDeque<Deliver>,
}

impl PluginHost {
    /// A host for `slot`, whose instance is already running.
    pub fn new(slot: Arc<Slot>) -> Self {
        let next_backoff = slot.bus.settings.restart_backoff_initial;
        PluginHost {
            slot,
            next_backoff,
            last_crash: None,
            pending: VecDeque::new(),
        }
    }

    fn is_down(&self) -> bool {
        matches!(
            self.slot.state(),
            PluginState::Restarting | PluginState::Failed
        )
    }

    fn schedule_restart(&mut self, ctx: &mut Context<Self>) {
        let settings = &self.slot.bus.settings;
        // A crash long after the previous one starts the backoff from the beginning.
        if self
            .last_crash
            .is_some_and(|t| t.elapsed() > settings.restart_backoff_max * 4)
        {
            self.next_backoff = settings.restart_backoff_initial;
        }
        self.last_crash = Some(Instant::now());
        let delay = self.next_backoff;
        self.next_backoff = (self.next_backoff * 2).min(settings.restart_backoff_max);
        tracing::info!(plugin = %self.slot.name, delay = ?delay, "restarting plugin after backoff");
        ctx.wait(
            actix::clock::sleep(delay)
                .into_actor(self)
                .map(|_, act, ctx| act.restart(ctx)),
        );
    }

    fn restart(&mut self, ctx: &mut Context<Self>) {
        let slot = self.slot.clone();
        slot.restarts.fetch_add(1, Ordering::Relaxed);
        slot.bus
            .metrics
            .restarts
            .with_label_values(&[slot.name.as_str()])
            .inc();
        let lib = slot.library.read().clone();
        let params = slot.init_params(&slot.config.read());
        let (state, from_version) = slot.snapshot.lock().clone();
        let mut guard = slot.instance.lock();
        let held = HeldGuard::new(slot.id);
        let started = Instant::now();
        let result = Live::init(lib, &vtable_for(&slot), &params).and_then(|mut live| {
            if state.is_empty() {
                return Ok(live);
            }
            match live.restore(&state, from_version) {
                Ok(()) => Ok(live),
                Err(e) => {
                    live.shutdown();
                    Err(e)
                }
            }
        });
        match result {
            Ok(live) => {
                *guard = Some(live);
                slot.bus
                    .metrics
                    .load_duration
                    .with_label_values(&[slot.name.as_str(), "restart"])
                    .observe(started.elapsed().as_secs_f64());
                slot.generation.fetch_add(1, Ordering::SeqCst);
                *slot.started_at.write() = Instant::now();
                slot.set_state(PluginState::Running, "");
                drop(held);
                drop(guard);
                tracing::info!(plugin = %slot.name, restarts = slot.restarts.load(Ordering::Relaxed), "plugin restarted from its last snapshot");
                while let Some(m) = self.pending.pop_front() {
                    if !self.deliver(m, ctx) {
                        break;
                    }
                }
            }
            Err(e) => {
                drop(held);
                drop(guard);
                tracing::error!(plugin = %slot.name, error = %e, "plugin restart failed");
                slot.bus
                    .metrics
                    .load_failures
                    .with_label_values(&[slot.name.as_str(), "restart"])
                    .inc();
                slot.set_state(PluginState::Failed, format!("restart failed: {e}"));
                self.schedule_restart(ctx);
            }
        }
    }

    /// Delivers a queued message; false when the instance crashed handling it.
    fn deliver(&mut self, msg: Deliver, ctx: &mut Context<Self>) -> bool {
        let mut out = Vec::new();
        let envelope = Envelope {
            from: &msg.from,
            kind: &msg.kind,
            payload: &msg.payload,
            trace: &msg.trace,
        };
        let status = self.slot.deliver(envelope, &mut OutBuf::new(&mut out));
        if status == Status::PANICKED || status == Status::FATAL {
            ctx.stop();
            return false;
        }
        if !status.is_ok() {
            tracing::warn!(
                plugin = %self.slot.name, from = %msg.from, kind = %msg.kind,
                status = status.name(), error = %String::from_utf8_lossy(&out), "queued message failed"
            );
        }
        true
    }
}

impl Actor for PluginHost {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(usize::MAX);
        let interval = self.slot.bus.settings.snapshot_interval;
        if !interval.is_zero() {
            ctx.run_interval(interval, |act, _| {
                if act.slot.state() == PluginState::Running {
                    act.slot.take_snapshot();
                }
            });
        }
        if self.is_down() {
            self.schedule_restart(ctx);
        }
    }
}

impl Supervised for PluginHost {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        tracing::debug!(plugin = %self.slot.name, "host actor restarting");
    }
}

impl Handler<Deliver> for PluginHost {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        self.slot.mailbox.fetch_sub(1, Ordering::Relaxed);
        if self.is_down() {
            self.pending.push_back(msg);
            ctx.stop();
            return;
        }
        if self.slot.state() == PluginState::Stopped {
            tracing::debug!(plugin = %self.slot.name, kind = %msg.kind, "message for a stopped plugin dropped");
            return;
        }
        self.deliver(msg, ctx);
    }
}

impl Handler<Poisoned> for PluginHost {
    type Result = ();

    fn handle(&mut self, msg: Poisoned, ctx: &mut Context<Self>) {
        if msg.generation == self.slot.generation.load(Ordering::SeqCst) && self.is_down() {
            ctx.stop();
        }
    }
}

impl Handler<Swap> for PluginHost {
    type Result = Result<SwapReport, SwapError>;

    fn handle(&mut self, msg: Swap, _ctx: &mut Context<Self>) -> Self::Result {
        swap(&self.slot, msg.library, msg.config)
    }
}

impl Handler<Drain> for PluginHost {
    type Result = ();

    fn handle(&mut self, msg: Drain, _ctx: &mut Context<Self>) {
        let slot = &self.slot;
        let Ok(mut guard) = slot.lock(msg.grace) else {
            tracing::warn!(plugin = %slot.name, "plugin stayed busy through its grace period; not drained");
            return;
        };
        let _held = HeldGuard::new(slot.id);
        if let Some(mut live) = guard.take() {
            if let Err(e) = live.quiesce(msg.grace) {
                tracing::warn!(plugin = %slot.name, error = %e, "quiesce failed during shutdown");
            }
            live.shutdown();
        }
        slot.set_state(PluginState::Stopped, "");
        tracing::info!(plugin = %slot.name, "plugin drained");
    }
}
