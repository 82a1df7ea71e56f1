//! The kubernel kernel: loads component plugins, routes their messages, supervises and hot-swaps them.

pub mod admin;
pub mod bus;
pub mod config;
pub mod host;
pub mod kernel;
pub mod loader;
pub mod logging;
pub mod metrics;
pub mod run;
pub mod swap;
mod vtable;
pub mod watch;

pub use config::Config;
pub use kernel::{Kernel, StartError};
