//! C ABI and SDK for out-of-tree scheduler framework plugins (.so files).
//!
//! A plugin library exports one `#[no_mangle]` static [`abi::Descriptor`]
//! (magic, ABI version, its own size, name, extension points, `extern "C"`
//! functions). One call handles **one pod against all candidate nodes**: the host
//! passes a columnar [`abi::CycleInput`] (node resources, interned labels and taints,
//! the pod's requests and labels) and a host-owned output array with one score or
//! filter verdict per candidate. Nothing is serialised per node and nothing
//! allocated by one side is freed by the other.
//!
//! Score is called once per scheduling cycle with every feasible node. Filter is
//! called once per batch of candidates: one batch per cycle, plus more when
//! rejected nodes leave fewer feasible nodes than the cycle needs.
//!
//! What the host passes, per call: all nodes as columns indexed by a stable node
//! index (allocatable and requested CPU/memory/pods, requests with the 100m/200 MiB
//! scoring defaults, interned labels sorted by key id, taints), the candidate node
//! indices, the pod (requests, priority, labels as strings) and its *group*: the
//! nodes running pods of the same controller (else the same namespace and labels)
//! with their counts. String ids resolve through [`Cycle::lookup`] and
//! [`Cycle::string`]. A plugin instance must be `Send + Sync`: calls may overlap.
//!
//! This SDK is separate from the component ABI (`kubernel-abi`): it is a
//! scheduler-internal extension point, versioned on its own.
//!
//! ```ignore
//! use kubernel_scheduler_sdk::{Cycle, Plugin, ScorePlugin};
//! struct Emptiest;
//! impl Plugin for Emptiest {
//!     const NAME: &'static str = "Emptiest";
//!     fn new(_args: &str) -> Result<Self, String> { Ok(Emptiest) }
//! }
//! impl ScorePlugin for Emptiest {
//!     fn score(&self, c: &Cycle<'_>, out: &mut [i64]) -> Result<(), String> {
//!         for (s, &n) in out.iter_mut().zip(c.candidates) {
//!             *s = 100 - 100 * c.nodes.pod_count[n as usize] / c.nodes.allocatable_pods[n as usize].max(1);
//!         }
//!         Ok(())
//!     }
//! }
//! kubernel_scheduler_sdk::export_scheduler_plugin!(Emptiest, score);
//! ```

pub mod abi;
pub mod export;
pub mod host;
mod view;

pub use abi::{GroupCount, LabelPair, TaintEntry, Verdict};
pub use export::{FilterPlugin, Plugin, ScorePlugin};
pub use view::{Cycle, Nodes, Pod};

/// Exports a plugin type as this `cdylib`'s scheduler plugin descriptor.
///
/// `export_scheduler_plugin!(T, score)`, `(T, filter)` or `(T, filter, score)`,
/// naming the extension points `T` implements; the plugin version is the crate's.
#[macro_export]
macro_rules! export_scheduler_plugin {
    ($plugin:ty, score) => {
        $crate::export_scheduler_plugin!(@export $plugin, $crate::abi::point::SCORE,
            $crate::export::no_filter, $crate::export::score::<$plugin>);
    };
    ($plugin:ty, filter) => {
        $crate::export_scheduler_plugin!(@export $plugin, $crate::abi::point::FILTER,
            $crate::export::filter::<$plugin>, $crate::export::no_score);
    };
    ($plugin:ty, filter, score) => {
        $crate::export_scheduler_plugin!(@export $plugin,
            $crate::abi::point::FILTER | $crate::abi::point::SCORE,
            $crate::export::filter::<$plugin>, $crate::export::score::<$plugin>);
    };
    (@export $plugin:ty, $points:expr, $filter:expr, $score:expr) => {
        /// The kubernel scheduler plugin descriptor of this library.
        #[no_mangle]
        #[allow(unsafe_code)]
        pub static KUBERNEL_SCHEDULER_PLUGIN: $crate::abi::Descriptor =
            $crate::export::descriptor::<$plugin>(
                env!("CARGO_PKG_VERSION"),
                $points,
                $filter,
                $score,
            );
    };
}

#[cfg(test)]
mod tests;
