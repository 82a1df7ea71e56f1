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
        let (Ok(from), Ok(kind)) = (std::str::from_utf8(from), std::str::from_utf8(kind)) else {
            out.write(b"message kind or sender is not UTF-8");
            return Status::BAD_MESSAGE;
        };
        // A bus hop from a traced sender: the message's span is a child of the
        // sender's, and whatever the plugin traces while handling it, of this one.
        let span = match std::str::from_utf8(trace) {
            Ok(parent) if !parent.is_empty() => {
                let span = tracing::info_span!(
                    "bus_message",
                    otel.name = %format_args!("bus {kind}"),
                    otel.kind = "consumer",
                    kind,
                    from,
                    to = self.ctx.name(),
                );
                logging::set_remote_parent(&span, parent);
                span
            }
            _ => tracing::Span::none(),
        };
        let _entered = span.enter();
        let msg = Incoming {
            from,
            kind,
            payload,
        };
        let result = if kind == CheckReady::KIND {
            match self.plugin.ready() {
                Ok(()) => Reply::of::<CheckReady>(&()),
                Err(reason) => Err(crate::PluginError::Failed(reason)),
            }
        } else if kind == kernel::RECONFIGURE {
            self.reconfigure(payload)
        } else if kind == kernel::SWAP_EXTENSION {
            self.swap_extension(payload)
        } else {
            self.plugin.handle(&msg)
        };
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

/// Payload of [`kernel::SWAP_EXTENSION`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwapExtensionRequest {
    name: String,
    path: PathBuf,
}

impl<P: Plugin> Hosted<P> {
    /// Applies a [`kernel::RECONFIGURE`] message: the new config table as JSON.
    fn reconfigure(&mut self, payload: &[u8]) -> Result<Reply, crate::PluginError> {
        let config: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|e| crate::PluginError::Failed(format!("new config is not JSON: {e}")))?;
        let config = parse_config::<P>(config).map_err(crate::PluginError::Failed)?;
        self.plugin.reconfigure(config)?;
        Ok(Reply::empty())
    }

    /// Applies a [`kernel::SWAP_EXTENSION`] message.
    fn swap_extension(&mut self, payload: &[u8]) -> Result<Reply, crate::PluginError> {
        let req: SwapExtensionRequest = serde_json::from_slice(payload).map_err(|e| {
            crate::PluginError::Failed(format!(
                "extension swap must be {{\"name\": ..., \"path\": ...}}: {e}"
            ))
        })?;
        let report = self.plugin.swap_extension(&req.name, &req.path)?;
        Ok(Reply(report.into_bytes()))
    }
}
