//! Echo/counter test plugin: echoes, counts, panics on demand, forwards to other plugins.

const STATE_VERSION: u32 = 1;

include!("plugin.rs");
