//! Forwards the plugin's `tracing` events and panics to the kernel's log through the host vtable.
//!
//! The plugin has its own copy of `tracing` and of std's panic hook, so the host's
//! subscriber and hook never see them; this module installs, in the plugin's copy,
//! a subscriber layer and a panic hook that call `HostVtable::log`.

use std::fmt::Write as _;
use std::sync::{Once, RwLock};

use kubernel_abi::{level, Bytes, HostVtable};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::{EnvFilter, Layer};

/// The host of the live instance of this library copy (one instance at a time).
static HOST: RwLock<Option<HostVtable>> = RwLock::new(None);
static INSTALL: Once = Once::new();

/// Points log forwarding at `host` and installs the subscriber and panic hook once.
pub(crate) fn install(host: HostVtable, filter: &str) {
    if let Ok(mut current) = HOST.write() {
        *current = Some(host);
    }
    let filter = filter.to_string();
    INSTALL.call_once(move || {
        let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
        let subscriber = tracing_subscriber::registry().with(HostLayer.with_filter(filter));
        // Fails only when this library copy already has a subscriber, which keeps working.
        let _ = tracing::subscriber::set_global_default(subscriber);
        std::panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let payload = if let Some(s) = info.payload().downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = info.payload().downcast_ref::<String>() {
                s.clone()
            } else {
                "non-string payload".to_string()
            };
            forward(
                level::ERROR,
                "panic",
                &format!("panicked{location}: {payload}"),
                "",
            );
        }));
    });
}

/// Stops forwarding for `host` when its instance shuts down.
pub(crate) fn detach(host: &HostVtable) {
    if let Ok(mut current) = HOST.write() {
        if current.is_some_and(|h| h.ctx == host.ctx) {
            *current = None;
        }
    }
}

fn forward(lvl: u8, target: &str, message: &str, fields: &str) {
    let Ok(current) = HOST.read() else { return };
    if let Some(host) = *current {
        (host.log)(
            host.ctx,
            lvl,
            Bytes::from(target),
            Bytes::from(message),
            Bytes::from(fields),
        );
    }
}

struct HostLayer;

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, "{}{}={}", sep(&self.rest), field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, "{}{}={:?}", sep(&self.rest), field.name(), value);
        }
    }
}

fn sep(s: &str) -> &'static str {
    if s.is_empty() {
        ""
    } else {
        " "
    }
}

impl<S: Subscriber> Layer<S> for HostLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        let meta = event.metadata();
        let lvl = match *meta.level() {
            Level::ERROR => level::ERROR,
            Level::WARN => level::WARN,
            Level::INFO => level::INFO,
            Level::DEBUG => level::DEBUG,
            Level::TRACE => level::TRACE,
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        forward(lvl, meta.target(), &fields.message, &fields.rest);
    }
}
