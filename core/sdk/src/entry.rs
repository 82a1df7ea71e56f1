//! `Hosted<P>`: adapts a [`Plugin`] to the raw ABI entry points.

use std::path::PathBuf;
use std::time::Duration;

use kubernel_abi::{Entry, HostVtable, OutBuf, Status};
use kubernel_api::kernel::{self, CheckReady};
use kubernel_api::Message;
use prometheus::Encoder;
use serde::Deserialize;

use crate::{logging, Context, Incoming, Plugin, Reply};

/// What the kernel passes to `init`, as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitParams {
    /// Instance name from the config.
    pub name: String,
    /// The plugin's state directory.
    pub data_dir: PathBuf,
    /// `RUST_LOG`-style filter for the plugin's own log events.
    #[serde(default)]
    pub log_filter: String,
    /// The `[plugin.config]` table.
    #[serde(default)]
    pub config: serde_json::Value,
}

/// A [`Plugin`] with its [`Context`], as the ABI shims see it.
pub struct Hosted<P: Plugin> {
    plugin: P,
    ctx: Context,
}

fn parse_config<P: Plugin>(config: serde_json::Value) -> Result<P::Config, String> {
    let config = match config {
        serde_json::Value::Null => serde_json::Value::Object(Default::default()),
        other => other,
    };
    serde_path_to_error::deserialize(config).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("config: {}", e.inner())
        } else {
            format!("config: key {path}: {}", e.inner())
        }
    })
}

impl<P: Plugin> Entry for Hosted<P> {
    fn init(host: HostVtable, config: &[u8]) -> Result<Self, String> {
        let params: InitParams = serde_json::from_slice(config)
            .map_err(|e| format!("init parameters from the kernel: {e}"))?;
        logging::install(host, &params.log_filter, &params.name);
        let ctx = Context::new(host, params.name, params.data_dir)?;
        let config = parse_config::<P>(params.config)?;
        let plugin = P::init(ctx.clone(), config).map_err(|e| e.to_string())?;
        Ok(Hosted { plugin, ctx })
    }

    fn handle(
        &mut self,
        from: &[u8],
        kind: &[u8],
        payload: &[u8],
        trace: &[u8],
        out: &mut OutBuf<'_>,
    ) -> Status {
        let Hosted { plugin, ctx } = self;
        let Some(result) = traced(ctx.name(), from, kind, payload, trace, |msg| {
            Self::dispatch(plugin, msg)
        }) else {
            out.write(b"message kind or sender is not UTF-8");
            return Status::BAD_MESSAGE;
        };
        write_result(result, out)
    }

    fn shared(&self) -> Option<std::sync::Arc<dyn kubernel_abi::SharedEntry>> {
        let handler = self.plugin.shared()?;
        Some(std::sync::Arc::new(SharedHosted {
            handler,
            name: self.ctx.name().to_string(),
        }))
    }

    fn quiesce(&mut self, deadline_ms: u64) -> Result<(), String> {
        self.plugin
            .quiesce(Duration::from_millis(deadline_ms))
            .map_err(|e| e.to_string())
    }

    fn resume(&mut self) -> Result<(), String> {
        self.plugin.resume().map_err(|e| e.to_string())
    }

    fn snapshot(&mut self, out: &mut OutBuf<'_>) -> Result<(), String> {
        let state = self.plugin.snapshot().map_err(|e| e.to_string())?;
        out.write(&state);
        Ok(())
    }

    fn restore(&mut self, state: &[u8], from_version: u32) -> Result<(), String> {
        self.plugin
            .restore(state, from_version)
            .map_err(|e| e.to_string())
    }

    fn metrics(&mut self, out: &mut OutBuf<'_>) -> Result<(), String> {
        self.plugin.refresh_metrics();
        let mut families = self.ctx.registry().gather();
        crate::metrics::label_instance(&mut families, self.ctx.name());
        let mut buf = Vec::new();
        prometheus::ProtobufEncoder::new()
            .encode(&families, &mut buf)
            .map_err(|e| format!("encoding metrics: {e}"))?;
        out.write(&buf);
        Ok(())
    }

    fn shutdown(self) {
        self.ctx.cancel();
        self.plugin.shutdown();
        logging::detach(self.ctx.host());
    }
}

/// Runs `handle` on a message to plugin `to` inside its `bus <kind>` span;
/// `None` when the sender or kind is not UTF-8.
fn traced<R>(
    to: &str,
    from: &[u8],
    kind: &[u8],
    payload: &[u8],
    trace: &[u8],
    handle: impl FnOnce(&Incoming<'_>) -> R,
) -> Option<R> {
    let (Ok(from), Ok(kind)) = (std::str::from_utf8(from), std::str::from_utf8(kind)) else {
        return None;
    };
    let span = message_span(kind, from, to, trace);
    let _entered = span.enter();
    Some(handle(&Incoming {
        from,
        kind,
        payload,
    }))
}

/// The span of a bus message from a traced sender: a child of the sender's span,
/// and the parent of whatever the plugin traces while handling it.
fn message_span(kind: &str, from: &str, to: &str, trace: &[u8]) -> tracing::Span {
    match std::str::from_utf8(trace) {
        Ok(parent) if !parent.is_empty() => {
            let span = tracing::info_span!(
                "bus_message",
                otel.name = %format_args!("bus {kind}"),
                otel.kind = "consumer",
                kind,
                from,
                to,
            );
            logging::set_remote_parent(&span, parent);
            span
        }
        _ => tracing::Span::none(),
    }
}

/// Writes a handler's reply, or its error, to `out`.
fn write_result(result: Result<Reply, crate::PluginError>, out: &mut OutBuf<'_>) -> Status {
    match result {
        Ok(reply) => {
            out.write(&reply.0);
            Status::OK
        }
        Err(e) => {
            out.write(e.to_string().as_bytes());
            e.status()
        }
    }
}

/// A plugin's [`crate::SharedHandler`], as the ABI shims see it.
struct SharedHosted {
    handler: std::sync::Arc<dyn crate::SharedHandler>,
    name: String,
}

impl kubernel_abi::SharedEntry for SharedHosted {
    fn handle(
        &self,
        from: &[u8],
        kind: &[u8],
        payload: &[u8],
        trace: &[u8],
        out: &mut OutBuf<'_>,
    ) -> Status {
        // Not UTF-8: the exclusive handler answers it, with its error.
        match traced(&self.name, from, kind, payload, trace, |msg| {
            self.handler.handle(msg)
        }) {
            Some(Some(result)) => write_result(result, out),
            Some(None) | None => Status::UNKNOWN_KIND,
        }
    }
}

/// Payload of [`kernel::SWAP_EXTENSION`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwapExtensionRequest {
    name: String,
    path: PathBuf,
}

impl<P: Plugin> Hosted<P> {
    /// The kernel's own kinds (readiness, reconfigure, extension swaps), then the plugin's.
    fn dispatch(plugin: &mut P, msg: &Incoming<'_>) -> Result<Reply, crate::PluginError> {
        if msg.kind == CheckReady::KIND {
            match plugin.ready() {
                Ok(()) => Reply::of::<CheckReady>(&()),
                Err(reason) => Err(crate::PluginError::Failed(reason)),
            }
        } else if msg.kind == kernel::RECONFIGURE {
            Self::reconfigure(plugin, msg.payload)
        } else if msg.kind == kernel::SWAP_EXTENSION {
            Self::swap_extension(plugin, msg.payload)
        } else {
            plugin.handle(msg)
        }
    }

    /// Applies a [`kernel::RECONFIGURE`] message: the new config table as JSON.
    fn reconfigure(plugin: &mut P, payload: &[u8]) -> Result<Reply, crate::PluginError> {
        let config: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|e| crate::PluginError::Failed(format!("new config is not JSON: {e}")))?;
        let config = parse_config::<P>(config).map_err(crate::PluginError::Failed)?;
        plugin.reconfigure(config)?;
        Ok(Reply::empty())
    }

    /// Applies a [`kernel::SWAP_EXTENSION`] message.
    fn swap_extension(plugin: &mut P, payload: &[u8]) -> Result<Reply, crate::PluginError> {
        let req: SwapExtensionRequest = serde_json::from_slice(payload).map_err(|e| {
            crate::PluginError::Failed(format!(
                "extension swap must be {{\"name\": ..., \"path\": ...}}: {e}"
            ))
        })?;
        let report = plugin.swap_extension(&req.name, &req.path)?;
        Ok(Reply(report.into_bytes()))
    }
}
