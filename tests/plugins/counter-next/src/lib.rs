//! The next build of the counter test plugin: reads version-1 snapshots, writes version 2.

const STATE_VERSION: u32 = 2;

include!("../../counter/src/plugin.rs");
