//! `CycleState`: data plugins share within one pod's scheduling and binding cycle.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::Status;

/// A value stored in a [`CycleState`]: any `Clone` type (upstream `StateData.Clone`),
/// so that the state can be copied for what-if filtering (nominated pods, preemption).
pub trait StateData: Any + Send + Sync {
    /// A boxed copy.
    fn clone_box(&self) -> Box<dyn StateData>;
    /// As `Any`, to downcast.
    fn as_any(&self) -> &dyn Any;
    /// As mutable `Any`, to downcast.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any + Send + Sync + Clone> StateData for T {
    fn clone_box(&self) -> Box<dyn StateData> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Per-cycle storage: PreFilter/PreScore results read by Filter/Score, keyed by name.
///
/// Keys are `'static` strings, by convention `"<Point><Plugin>"` (e.g.
/// `"PreFilterNodePorts"`), so plugins do not collide. Cloning copies every value.
#[derive(Default)]
pub struct CycleState {
    data: HashMap<&'static str, Box<dyn StateData>>,
    /// Bit `i` set: filter plugin `i` returned Skip at PreFilter.
    pub(crate) skip_filter: u64,
    /// Bit `i` set: PreFilter plugin `i` returned Skip (its extensions do not run).
    pub(crate) skip_pre_filter: u64,
    /// Bit `i` set: score plugin `i` returned Skip at PreScore.
    pub(crate) skip_score: u64,
    /// Whether this cycle records per-plugin durations (sampled).
    pub(crate) record_plugin_metrics: bool,
    /// Time spent in each plugin at each extension point, kept when the cycle's span
    /// is exported (shared with the copies made for what-if filtering).
    pub(crate) plugin_times: Option<PluginTimes>,
}

impl std::fmt::Debug for CycleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CycleState")
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Clone for CycleState {
    fn clone(&self) -> Self {
        CycleState {
            data: self
                .data
                .iter()
                .map(|(k, v)| (*k, (**v).clone_box()))
                .collect(),
            skip_filter: self.skip_filter,
            skip_pre_filter: self.skip_pre_filter,
            skip_score: self.skip_score,
            plugin_times: self.plugin_times.clone(),
            record_plugin_metrics: self.record_plugin_metrics,
        }
    }
}

impl CycleState {
    /// An empty state.
    pub fn new() -> Self {
        CycleState::default()
    }

    /// Stores `value` under `key`, replacing any previous value.
    pub fn write<T: Any + Send + Sync + Clone>(&mut self, key: &'static str, value: T) {
        self.data.insert(key, Box::new(value));
    }

    /// The value under `key`, if it exists and has type `T`.
    pub fn read<T: Any + Send + Sync>(&self, key: &'static str) -> Option<&T> {
        self.data
            .get(key)
            .and_then(|v| v.as_ref().as_any().downcast_ref())
    }

    /// The value under `key` for changing it in place (PreFilter extensions).
    pub fn read_mut<T: Any + Send + Sync>(&mut self, key: &'static str) -> Option<&mut T> {
        self.data
            .get_mut(key)
            .and_then(|v| v.as_mut().as_any_mut().downcast_mut())
    }

    /// Like [`CycleState::read`], or an Error status naming the missing key.
    pub fn get<T: Any + Send + Sync>(&self, key: &'static str) -> Result<&T, Status> {
        self.read(key)
            .ok_or_else(|| Status::error(format!("reading {key:?} from cycleState: not found")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycle_state_should_return_values_by_key_and_type() {
        let mut s = CycleState::new();
        s.write("PreFilterX", 7u32);
        assert_eq!(s.read::<u32>("PreFilterX"), Some(&7));
        assert_eq!(s.read::<i64>("PreFilterX"), None);
        assert!(s.get::<u32>("Other").is_err());
        let mut copy = s.clone();
        *copy.read_mut::<u32>("PreFilterX").expect("value") = 8;
        assert_eq!(copy.read::<u32>("PreFilterX"), Some(&8));
        assert_eq!(
            s.read::<u32>("PreFilterX"),
            Some(&7),
            "the original is untouched"
        );
    }
}

/// Time per (extension point, plugin) within one scheduling cycle, summed over the
/// calls (a Filter plugin runs once per chunk of nodes, maybe on several threads).
#[derive(Clone, Default)]
pub struct PluginTimes(Arc<Mutex<BTreeMap<(&'static str, String), Duration>>>);

impl PluginTimes {
    /// Adds `elapsed` to `plugin` at `point`.
    pub fn add(&self, point: &'static str, plugin: &str, elapsed: Duration) {
        let mut times = self.0.lock();
        match times.get_mut(&(point, plugin.to_string())) {
            Some(t) => *t += elapsed,
            None => {
                times.insert((point, plugin.to_string()), elapsed);
            }
        }
    }

    /// `Point/Plugin=duration` pairs (e.g. `Filter/NodeName=1.2µs`), space-separated, in point and plugin order.
    pub fn summary(&self) -> String {
        self.0
            .lock()
            .iter()
            .map(|((point, plugin), t)| format!("{point}/{plugin}={t:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}
