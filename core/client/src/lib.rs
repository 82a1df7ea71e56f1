//! Client-side building blocks shared by kubernel components.

mod backoff;

pub use backoff::Backoff;
