//! Forwards the plugin's `tracing` events and panics to the kernel's log through the host
//! vtable and, with the `otlp` feature, exports the plugin's spans over OTLP/HTTP.
//!
//! The plugin has its own copy of `tracing` and of std's panic hook, so the host's
//! subscriber and hook never see them; this module installs, in the plugin's copy,
//! a subscriber layer and a panic hook that call `HostVtable::log`. The host's
//! exporter never sees the plugin's spans either, so when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set the plugin's copy gets an exporter of its own (service `kubernel`, resource
//! attribute `kubernel.plugin` = the instance name). Without it no layer wants spans,
//! so `tracing` disables every span callsite and spans cost nothing.

use std::fmt::Write as _;
use std::sync::{Once, RwLock};

use kubernel_abi::{level, Bytes, HostVtable};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::{EnvFilter, Layer};

/// The host of the live instance of this library copy (one instance at a time).
static HOST: RwLock<Option<HostVtable>> = RwLock::new(None);
static INSTALL: Once = Once::new();

/// Points log forwarding at `host` and installs the subscriber and panic hook once.
///
/// `name` is the instance name, which the span exporter (installed with the
/// subscriber, so by the first instance of this library copy) puts in its resource.
pub(crate) fn install(host: HostVtable, filter: &str, name: &str) {
    if let Ok(mut current) = HOST.write() {
        *current = Some(host);
    }
    let filter = filter.to_string();
    let name = name.to_string();
    INSTALL.call_once(move || {
        let registry = tracing_subscriber::registry();
        // Fails only when this library copy already has a subscriber, which keeps working.
        // (No `Option` layer: a `None` one would enable every span.)
        #[cfg(feature = "otlp")]
        let _ = match otlp::layer(&name) {
            Some(otel) => tracing::subscriber::set_global_default(
                registry
                    .with(otel.with_filter(
                        EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info")),
                    ))
                    .with(host_layer(&filter)),
            ),
            None => tracing::subscriber::set_global_default(registry.with(host_layer(&filter))),
        };
        #[cfg(not(feature = "otlp"))]
        let _ = {
            let _ = &name;
            tracing::subscriber::set_global_default(registry.with(host_layer(&filter)))
        };
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

/// Stops forwarding for `host` when its instance shuts down, and sends the spans
/// its instance ended.
///
/// The exporter stays: the library is never unloaded, and an instance restarted in
/// this copy keeps using it.
pub(crate) fn detach(host: &HostVtable) {
    #[cfg(feature = "otlp")]
    otlp::flush();
    if let Ok(mut current) = HOST.write() {
        if current.is_some_and(|h| h.ctx == host.ctx) {
            *current = None;
        }
    }
}

/// The W3C `traceparent` of the current span, when spans are exported and one is open.
pub fn traceparent() -> Option<String> {
    #[cfg(feature = "otlp")]
    {
        otlp::traceparent()
    }
    #[cfg(not(feature = "otlp"))]
    None
}

/// Makes `span` a child of the span a W3C `traceparent` names (sent by another
/// plugin or client); ignored when spans are not exported or the value is invalid.
pub fn set_remote_parent(span: &tracing::Span, traceparent: &str) {
    #[cfg(feature = "otlp")]
    otlp::set_remote_parent(span, traceparent);
    #[cfg(not(feature = "otlp"))]
    let _ = (span, traceparent);
}

#[cfg(feature = "otlp")]
mod otlp {
    use std::collections::HashMap;
    use std::sync::OnceLock;

    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
    use opentelemetry_otlp::WithExportConfig as _;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    const TRACEPARENT: &str = "traceparent";

    /// This library copy's span exporter, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

    type OtelLayer = tracing_opentelemetry::OpenTelemetryLayer<
        tracing_subscriber::Registry,
        opentelemetry_sdk::trace::Tracer,
    >;

    /// An OTLP/HTTP span exporter layer when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    pub(super) fn layer(plugin: &str) -> Option<OtelLayer> {
        let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty())?;
        // reqwest is built without a default TLS provider (kubernel-client brings its
        // own rustls setup): ring for this plugin's copy of rustls.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                // The subscriber is not installed yet: straight to the host's log.
                super::forward(
                    kubernel_abi::level::WARN,
                    "otlp",
                    &format!("OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}: spans of this plugin not exported: {e}"),
                    "",
                );
                return None;
            }
        };
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name("kubernel")
            .with_attribute(opentelemetry::KeyValue::new(
                "kubernel.plugin",
                plugin.to_string(),
            ))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("kubernel");
        let _ = PROVIDER.set(provider);
        Some(tracing_opentelemetry::layer().with_tracer(tracer))
    }

    /// Exports the spans ended so far.
    pub(super) fn flush() {
        if let Some(p) = PROVIDER.get() {
            if let Err(e) = p.force_flush() {
                super::forward(
                    kubernel_abi::level::WARN,
                    "otlp",
                    &format!("flushing spans: {e}"),
                    "",
                );
            }
        }
    }

    pub(super) fn traceparent() -> Option<String> {
        PROVIDER.get()?;
        let cx = tracing::Span::current().context();
        if !cx.span().span_context().is_valid() {
            return None;
        }
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        carrier.remove(TRACEPARENT)
    }

    pub(super) fn set_remote_parent(span: &tracing::Span, traceparent: &str) {
        if PROVIDER.get().is_none() || traceparent.is_empty() {
            return;
        }
        let carrier = HashMap::from([(TRACEPARENT.to_string(), traceparent.to_string())]);
        let cx = TraceContextPropagator::new().extract(&carrier);
        if cx.span().span_context().is_valid() {
            let _ = span.set_parent(cx);
        }
    }
}

/// The layer that forwards events to the host's log. It only takes events: spans
/// are left to the exporter.
fn host_layer<S>(filter: &str) -> impl Layer<S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    HostLayer.with_filter(filter.and(filter_fn(|meta| meta.is_event())))
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

#[cfg(test)]
mod tests {
    use std::ffi::c_void;
    use std::sync::Mutex;

    use kubernel_abi::{OutBuf, Status};

    use super::*;

    static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

    extern "C" fn log(
        _: *const c_void,
        _: u8,
        target: Bytes<'_>,
        msg: Bytes<'_>,
        fields: Bytes<'_>,
    ) {
        if let Ok(mut logged) = LOGGED.lock() {
            logged.push(format!(
                "{}: {} {}",
                target.to_string_lossy(),
                msg.to_string_lossy(),
                fields.to_string_lossy()
            ));
        }
    }

    extern "C" fn message(
        _: *const c_void,
        _: Bytes<'_>,
        _: Bytes<'_>,
        _: Bytes<'_>,
        _: &mut OutBuf<'_>,
    ) -> Status {
        Status::ERROR
    }

    extern "C" fn publish(_: *const c_void, _: Bytes<'_>, _: Bytes<'_>) -> Status {
        Status::ERROR
    }

    extern "C" fn subscribe(_: *const c_void, _: Bytes<'_>) -> Status {
        Status::ERROR
    }

    #[test]
    fn without_an_otlp_endpoint_spans_should_be_disabled_and_events_forwarded() {
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
            eprintln!("skipped: OTEL_EXPORTER_OTLP_ENDPOINT is set");
            return;
        }
        let host = HostVtable {
            size: std::mem::size_of::<HostVtable>() as u32,
            ctx: std::ptr::null(),
            log,
            send: message,
            request: message,
            publish,
            subscribe,
            send_traced: None,
            request_traced: None,
            publish_traced: None,
        };
        install(host, "info", "test");
        let span = tracing::info_span!("scheduling_cycle", pod = "default/p");
        assert!(
            span.is_disabled(),
            "no layer takes spans: they cost nothing"
        );
        let _entered = span.enter();
        assert_eq!(traceparent(), None);
        tracing::info!(key = "v", "hello");
        tracing::debug!("filtered out");
        let logged = LOGGED.lock().map(|l| l.clone()).unwrap_or_default();
        assert!(
            logged.iter().any(|l| l.ends_with(": hello key=v")),
            "{logged:?}"
        );
        assert!(!logged.iter().any(|l| l.contains("filtered out")));
        detach(&host);
    }
}
