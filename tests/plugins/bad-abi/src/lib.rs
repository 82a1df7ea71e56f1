//! A loadable library whose kubernel descriptor declares an ABI version the kernel does not speak.

use kubernel_sdk::abi::{self, PluginDescriptor};
use kubernel_sdk::{Context, Hosted, Incoming, Plugin, PluginError, Reply};

/// A plugin that does nothing; only its descriptor matters.
pub struct Nothing;

impl Plugin for Nothing {
    type Config = serde::de::IgnoredAny;

    fn init(_ctx: Context, _config: serde::de::IgnoredAny) -> Result<Self, PluginError> {
        Ok(Nothing)
    }

    fn handle(&mut self, msg: &Incoming<'_>) -> Result<Reply, PluginError> {
        Err(PluginError::UnknownKind(msg.kind.to_string()))
    }
}

/// The forged descriptor.
#[no_mangle]
#[allow(unsafe_code)]
pub static KUBERNEL_PLUGIN: PluginDescriptor = PluginDescriptor {
    header: abi::header(abi::MAGIC, abi::ABI_VERSION + 1),
    ..abi::descriptor::<Hosted<Nothing>>("bad-abi", "test", "0.1.0", 1)
};
