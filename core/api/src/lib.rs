//! Typed messages exchanged between kubernel plugins, and the codec that carries them.

pub mod bench;
pub mod codec;
pub mod echo;
pub mod kernel;
mod message;
pub mod pointer;
pub mod quantity;
pub mod quota;
pub mod resources;
pub mod rest;
pub mod store;

pub use codec::CodecError;
pub use message::Message;
