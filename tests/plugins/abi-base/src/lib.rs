//! A plugin as an SDK of ABI 1's first layout built it: its descriptor's size stops
//! before `handle_traced`, so the kernel must call the plain `handle`, and traced
//! messages reach it without their trace context.

use kubernel_sdk::abi::{self, DescriptorHeader, PluginDescriptor};
use kubernel_sdk::api::echo::Echo;
use kubernel_sdk::api::Message;
use kubernel_sdk::{Context, Hosted, Incoming, Plugin, PluginError, Reply};

/// Echoes `echo.Echo`.
pub struct Echoer;

impl Plugin for Echoer {
    type Config = serde::de::IgnoredAny;

    fn init(_ctx: Context, _config: serde::de::IgnoredAny) -> Result<Self, PluginError> {
        Ok(Echoer)
    }

    fn handle(&mut self, msg: &Incoming<'_>) -> Result<Reply, PluginError> {
        match msg.kind {
            Echo::KIND => msg.reply::<Echo>(Ok),
            other => Err(PluginError::UnknownKind(other.to_string())),
        }
    }
}

/// The descriptor, declaring only the first layout's size.
#[no_mangle]
#[allow(unsafe_code)]
pub static KUBERNEL_PLUGIN: PluginDescriptor = PluginDescriptor {
    header: DescriptorHeader {
        magic: abi::MAGIC,
        abi_version: abi::ABI_VERSION,
        size: PluginDescriptor::BASE_SIZE,
    },
    ..abi::descriptor::<Hosted<Echoer>>("abi-base", "echo", "0.1.0", 1)
};
