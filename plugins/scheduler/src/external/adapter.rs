//! Adapts one instance of an out-of-tree plugin to the framework's Filter and Score traits.
//!
//! Batch calls hand the plugin the cache's columns and every candidate at once;
//! single-node calls (preemption's what-if checks) build a one-row table. Scores
//! outside 0..=100, invalid verdicts, errors and panics become Error statuses that
//! name the plugin (and the node and value): the pod is retried, the scheduler runs on.

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::sync::Arc;

use kubernel_scheduler_sdk::abi::{
    code, ErrBuf, KeyValue, Str, StringTable, MAX_NODE_SCORE, MIN_NODE_SCORE,
};
use kubernel_scheduler_sdk::host::{cycle_input, NodeColumns, PodData};
use kubernel_scheduler_sdk::{GroupCount, LabelPair, TaintEntry, Verdict};

use super::ExternalLibrary;
use crate::cache::{Columns, Interner, NodeInfo};
use crate::framework::*;
use crate::pod_info::PodInfo;

/// Capacity of the error buffer handed to the plugin.
const ERR_CAPACITY: usize = 1024;

/// The opaque instance pointer a plugin's `create` returned.
struct RawInstance(*mut c_void);

// SAFETY: the SDK requires plugin types to be `Send + Sync` (`Plugin` trait bounds)
// and only hands out `&T` to calls; the pointer is freed once, in `Drop`.
unsafe impl Send for RawInstance {}
// SAFETY: as above.
unsafe impl Sync for RawInstance {}

/// One instance of an out-of-tree plugin, usable as a Filter and/or Score plugin.
pub struct ExternalPlugin {
    lib: Arc<ExternalLibrary>,
    inst: RawInstance,
    name: String,
}

impl Drop for ExternalPlugin {
    fn drop(&mut self) {
        (self.lib.desc.destroy)(self.inst.0);
    }
}

/// A one-node column table, for single-node calls.
struct OneNode {
    numbers: [[i64; 1]; 8],
    labels: Vec<LabelPair>,
    taints: Vec<TaintEntry>,
    label_offsets: [u32; 2],
    taint_offsets: [u32; 2],
    strings: Interner,
}

impl OneNode {
    fn new(node: &NodeInfo) -> Self {
        let mut info = node.clone();
        let mut columns = Columns::default();
        columns.intern_node(&mut info);
        let a = &node.allocatable;
        let numbers = [
            [a.milli_cpu],
            [a.memory],
            [a.allowed_pod_number],
            [node.requested.milli_cpu],
            [node.requested.memory],
            [node.pods.len() as i64],
            [node.non_zero_milli_cpu],
            [node.non_zero_memory],
        ];
        OneNode {
            numbers,
            label_offsets: [0, info.label_ids.len() as u32],
            taint_offsets: [0, info.taint_ids.len() as u32],
            labels: info.label_ids,
            taints: info.taint_ids,
            strings: columns.interner,
        }
    }

    fn columns(&self) -> NodeColumns<'_> {
        let n = &self.numbers;
        NodeColumns {
            allocatable_milli_cpu: &n[0],
            allocatable_memory: &n[1],
            allocatable_pods: &n[2],
            requested_milli_cpu: &n[3],
            requested_memory: &n[4],
            pod_count: &n[5],
            non_zero_milli_cpu: &n[6],
            non_zero_memory: &n[7],
            label_offsets: &self.label_offsets,
            labels: &self.labels,
            taint_offsets: &self.taint_offsets,
            taints: &self.taints,
        }
    }
}

impl ExternalPlugin {
    /// Creates an instance with `args` (JSON text).
    pub fn create(
        lib: Arc<ExternalLibrary>,
        name: &str,
        args: &str,
    ) -> Result<Arc<ExternalPlugin>, PluginError> {
        let mut inst = std::ptr::null_mut();
        let mut storage = [0u8; ERR_CAPACITY];
        let mut err = ErrBuf::new(&mut storage);
        let rc = (lib.desc.create)(Str::borrowed(args), &mut inst, &mut err);
        if rc != code::OK || inst.is_null() {
            return Err(PluginError::External {
                plugin: name.to_string(),
                message: format!("{} (library {})", err.message(), lib.path.display()),
            });
        }
        Ok(Arc::new(ExternalPlugin {
            lib,
            inst: RawInstance(inst),
            name: name.to_string(),
        }))
    }

    /// Wraps the instance at the points its library implements.
    pub fn into_instance(self: Arc<Self>) -> PluginInstance {
        let mut i = PluginInstance::new(&self.name);
        if self.lib.has_filter() {
            i = i.filter(self.clone());
        }
        if self.lib.has_score() {
            i = i.score(self);
        }
        i
    }

    fn failure(&self, rc: i32, err: &ErrBuf) -> Status {
        let msg = err.message();
        Status::error(match rc {
            code::PANICKED => format!("plugin {:?} {msg}", self.name),
            code::UNSUPPORTED => format!("plugin {:?}: {msg}", self.name),
            _ => format!("plugin {:?} failed: {msg}", self.name),
        })
    }

    /// Calls the plugin's score function over `slots`.
    fn call_score<T: StringTable>(
        &self,
        cols: &NodeColumns<'_>,
        strings: &T,
        pod: &PodInfo,
        group: &[GroupCount],
        slots: &[u32],
        out: &mut [i64],
    ) -> Status {
        let labels: Vec<KeyValue<'_>> = pod
            .labels()
            .iter()
            .map(|(k, v)| KeyValue::new(k, v))
            .collect();
        let data = pod_data(pod, &labels, group);
        let input = match cycle_input(cols, slots, &data, strings) {
            Ok(i) => i,
            Err(e) => return Status::error(format!("plugin {:?}: {e}", self.name)),
        };
        let mut storage = [0u8; ERR_CAPACITY];
        let mut err = ErrBuf::new(&mut storage);
        let rc = (self.lib.desc.score)(self.inst.0, &input, out.as_mut_ptr(), &mut err);
        if rc != code::OK {
            return self.failure(rc, &err);
        }
        Status::success()
    }

    fn call_filter<T: StringTable>(
        &self,
        cols: &NodeColumns<'_>,
        strings: &T,
        pod: &PodInfo,
        group: &[GroupCount],
        slots: &[u32],
        out: &mut [Verdict],
    ) -> Status {
        let labels: Vec<KeyValue<'_>> = pod
            .labels()
            .iter()
            .map(|(k, v)| KeyValue::new(k, v))
            .collect();
        let data = pod_data(pod, &labels, group);
        let input = match cycle_input(cols, slots, &data, strings) {
            Ok(i) => i,
            Err(e) => return Status::error(format!("plugin {:?}: {e}", self.name)),
        };
        let mut storage = [0u8; ERR_CAPACITY];
        let mut err = ErrBuf::new(&mut storage);
        let rc = (self.lib.desc.filter)(self.inst.0, &input, out.as_mut_ptr(), &mut err);
        if rc != code::OK {
            return self.failure(rc, &err);
        }
        Status::success()
    }

    fn check_score(&self, node: &str, score: i64) -> Result<i64, Status> {
        if (MIN_NODE_SCORE..=MAX_NODE_SCORE).contains(&score) {
            Ok(score)
        } else {
            Err(Status::error(format!(
                "plugin {:?} returned score {score} for node {node:?}, outside {MIN_NODE_SCORE}..={MAX_NODE_SCORE}",
                self.name
            )))
        }
    }

    fn verdict(&self, node: &str, v: Verdict) -> Status {
        let reason = || {
            let text = (self.lib.desc.reason)(u32::from(v.reason)).to_string_lossy();
            if text.is_empty() {
                format!("node(s) rejected by plugin {}", self.name)
            } else {
                text
            }
        };
        match v.code {
            Verdict::PASS => Status::success(),
            Verdict::UNSCHEDULABLE => Status::unschedulable(reason()),
            Verdict::UNRESOLVABLE => Status::unresolvable(reason()),
            c => Status::error(format!(
                "plugin {:?} returned invalid filter verdict {c} for node {node:?}",
                self.name
            )),
        }
    }
}

fn pod_data<'a>(
    pod: &'a PodInfo,
    labels: &'a [KeyValue<'a>],
    group: &'a [GroupCount],
) -> PodData<'a> {
    PodData {
        namespace: &pod.namespace,
        name: &pod.name,
        milli_cpu: pod.requests.milli_cpu,
        memory: pod.requests.memory,
        non_zero_milli_cpu: pod.non_zero_milli_cpu,
        non_zero_memory: pod.non_zero_memory,
        priority: pod.priority,
        labels,
        group,
    }
}

impl Plugin for ExternalPlugin {
    fn name(&self) -> &str {
        &self.name
    }
}

impl FilterPlugin for ExternalPlugin {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let one = OneNode::new(node);
        let mut out = [Verdict::default()];
        let s = self.call_filter(&one.columns(), &one.strings, pod, &[], &[0], &mut out);
        if !s.is_success() {
            return s;
        }
        self.verdict(&node.name, out[0])
    }

    fn filter_batch(
        &self,
        _state: &CycleState,
        pod: &PodInfo,
        nodes: &NodeSnapshot<'_>,
        slots: &[u32],
        failed: &mut Vec<(usize, Status)>,
    ) {
        let cache = nodes.cache();
        let mut verdicts = vec![Verdict::default(); slots.len()];
        let group = cache.group_counts(pod.group);
        let s = self.call_filter(
            &cache.columns().node_columns(),
            &cache.columns().interner,
            pod,
            group,
            slots,
            &mut verdicts,
        );
        if !s.is_success() {
            // The call failed as a whole: one error fails the cycle.
            failed.push((0, s));
            return;
        }
        for (i, (&slot, v)) in slots.iter().zip(verdicts).enumerate() {
            if v.code != Verdict::PASS {
                failed.push((i, self.verdict(&nodes.node(slot).name, v)));
            }
        }
    }

    fn filters_in_one_call(&self) -> bool {
        true
    }
}

impl ScorePlugin for ExternalPlugin {
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let one = OneNode::new(node);
        let mut out = [0i64];
        let s = self.call_score(&one.columns(), &one.strings, pod, &[], &[0], &mut out);
        if !s.is_success() {
            return Err(s);
        }
        self.check_score(&node.name, out[0])
    }

    fn score_batch(
        &self,
        _state: &CycleState,
        pod: &PodInfo,
        nodes: &NodeSnapshot<'_>,
        slots: &[u32],
        out: &mut [i64],
    ) -> Status {
        let cache = nodes.cache();
        let group = cache.group_counts(pod.group);
        let s = self.call_score(
            &cache.columns().node_columns(),
            &cache.columns().interner,
            pod,
            group,
            slots,
            out,
        );
        if !s.is_success() {
            return s;
        }
        for (&score, &slot) in out.iter().zip(slots) {
            if let Err(e) = self.check_score(&nodes.node(slot).name, score) {
                return e;
            }
        }
        Status::success()
    }

    fn scores_in_one_call(&self) -> bool {
        true
    }
}
