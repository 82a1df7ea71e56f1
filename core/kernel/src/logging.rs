//! Structured logs to stdout (JSON or pretty) and, when configured, OpenTelemetry traces over OTLP.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Keeps the trace exporter alive; `shutdown` flushes it.
pub struct LogGuard {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl LogGuard {
    /// Flushes pending spans.
    pub fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(p) = self.provider {
            let _ = p.shutdown();
        }
    }
}

/// Checks a `RUST_LOG`-style filter, returning the parser's message when invalid.
pub fn check_filter(filter: &str) -> Result<(), String> {
    EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Installs the global subscriber. Plugin events (target `plugin`) are filtered
/// inside each plugin with the same filter, so the kernel lets them all through.
pub fn init(format: LogFormat, filter: &str) -> LogGuard {
    let filter = EnvFilter::try_new(format!("{filter},plugin=trace"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let fmt = move || {
        if json {
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .boxed()
        } else {
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::stdout().is_terminal())
                .boxed()
        }
    };
    // The filter is a global one: it applies to every layer, whatever its position.
    #[cfg(feature = "otlp")]
    {
        let (otel, provider) = match otlp() {
            Some((layer, provider)) => (Some(layer), Some(provider)),
            None => (None, None),
        };
        let _ = tracing_subscriber::registry()
            .with(otel)
            .with(filter)
            .with(fmt())
            .try_init();
        LogGuard { provider }
    }
    #[cfg(not(feature = "otlp"))]
    {
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(fmt())
            .try_init();
        LogGuard {}
    }
}

#[cfg(feature = "otlp")]
type OtelLayer = tracing_opentelemetry::OpenTelemetryLayer<
    tracing_subscriber::Registry,
    opentelemetry_sdk::trace::Tracer,
>;

/// An OTLP/HTTP span exporter when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
#[cfg(feature = "otlp")]
fn otlp() -> Option<(OtelLayer, opentelemetry_sdk::trace::SdkTracerProvider)> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;

    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())?;
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("kubernel: OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}: traces disabled: {e}");
            return None;
        }
    };
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("kubernel")
        .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("kubernel");
    Some((tracing_opentelemetry::layer().with_tracer(tracer), provider))
}
