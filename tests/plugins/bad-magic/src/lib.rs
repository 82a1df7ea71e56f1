//! A loadable library whose kubernel descriptor has the wrong magic number.

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
    header: abi::header(0x0BAD_0BAD_0BAD_0BAD, abi::ABI_VERSION),
    ..abi::descriptor::<Hosted<Nothing>>("bad-magic", "test", "0.1.0", 1)
};
