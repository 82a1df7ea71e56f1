//! Safe side of the kubernel plugin ABI: implement [`Plugin`], export it with [`export_plugin!`].
//!
//! ```ignore
//! struct Hello;
//! impl kubernel_sdk::Plugin for Hello {
//!     type Config = serde_json::Value;
//!     fn init(_ctx: Context, _config: Self::Config) -> Result<Self, PluginError> { Ok(Hello) }
//!     fn handle(&mut self, msg: &Incoming<'_>) -> Result<Reply, PluginError> {
//!         match msg.kind {
//!             Echo::KIND => msg.reply::<Echo>(|m| Ok(m)),
//!             _ => Err(PluginError::UnknownKind(msg.kind.to_string())),
//!         }
//!     }
//! }
//! kubernel_sdk::export_plugin!(Hello, name = "hello", kind = "example", state_version = 1);
//! ```

mod context;
mod entry;
mod logging;
mod metrics;
mod plugin;

pub use context::{Context, RequestError};
pub use entry::{Hosted, InitParams};
pub use logging::{set_remote_parent, traceparent};
pub use plugin::{Incoming, Plugin, PluginError, Reply, SharedHandler};

pub use kubernel_abi as abi;
pub use kubernel_api as api;
pub use prometheus;
pub use tokio_util::sync::CancellationToken;
pub use tracing;

/// Exports a [`Plugin`] type as this `cdylib`'s kubernel descriptor.
///
/// `name` is the plugin type's name, `kind` its component kind, `state_version` the
/// version of its snapshot format; the plugin version is the crate's version.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty, name = $name:expr, kind = $kind:expr, state_version = $state:expr $(,)?) => {
        /// The kubernel plugin descriptor of this library.
        #[no_mangle]
        #[allow(unsafe_code)]
        pub static KUBERNEL_PLUGIN: $crate::abi::PluginDescriptor =
            $crate::abi::descriptor::<$crate::Hosted<$plugin>>(
                $name,
                $kind,
                env!("CARGO_PKG_VERSION"),
                $state,
            );
    };
}
