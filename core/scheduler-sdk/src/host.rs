//! Host side: builds a [`CycleInput`] from borrowed slices, checking their lengths.
//!
//! The lengths checked here are all a plugin relies on: it reads columns, offsets and
//! candidates through bounds-checked slices, so inconsistent *values* (an offset past
//! the end, a candidate out of range) make the plugin's call fail, never read out of
//! bounds.

use std::marker::PhantomData;

use crate::abi::{
    CycleInput, GroupCount, KeyValue, LabelPair, NodeTable, PodView, Str, StringTable, Strings,
    TaintEntry,
};

/// The node columns a host keeps; every numeric column has one entry per node index.
#[derive(Clone, Copy)]
pub struct NodeColumns<'a> {
    /// Allocatable CPU, millicores.
    pub allocatable_milli_cpu: &'a [i64],
    /// Allocatable memory, bytes.
    pub allocatable_memory: &'a [i64],
    /// Allocatable pod count.
    pub allocatable_pods: &'a [i64],
    /// Requested CPU, millicores.
    pub requested_milli_cpu: &'a [i64],
    /// Requested memory, bytes.
    pub requested_memory: &'a [i64],
    /// Pods per node.
    pub pod_count: &'a [i64],
    /// Requested CPU with non-zero defaults.
    pub non_zero_milli_cpu: &'a [i64],
    /// Requested memory with non-zero defaults.
    pub non_zero_memory: &'a [i64],
    /// One more entry than nodes: offsets into `labels`.
    pub label_offsets: &'a [u32],
    /// Labels grouped by node.
    pub labels: &'a [LabelPair],
    /// One more entry than nodes: offsets into `taints`.
    pub taint_offsets: &'a [u32],
    /// Taints grouped by node.
    pub taints: &'a [TaintEntry],
}

/// The pod being scheduled, as the host hands it over.
#[derive(Clone, Copy)]
pub struct PodData<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
    /// Requested CPU, millicores.
    pub milli_cpu: i64,
    /// Requested memory, bytes.
    pub memory: i64,
    /// Requested CPU with non-zero defaults.
    pub non_zero_milli_cpu: i64,
    /// Requested memory with non-zero defaults.
    pub non_zero_memory: i64,
    /// Priority.
    pub priority: i32,
    /// Labels.
    pub labels: &'a [KeyValue<'a>],
    /// Nodes running pods of the same group.
    pub group: &'a [GroupCount],
}

/// The columns or counts given to [`cycle_input`] do not agree (a host bug: retrying does not help).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutError(pub String);

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "inconsistent cycle input: {}", self.0)
    }
}

impl std::error::Error for LayoutError {}

fn u32_len(what: &str, len: usize) -> Result<u32, LayoutError> {
    u32::try_from(len).map_err(|_| LayoutError(format!("{what} has {len} entries, over u32")))
}

/// Builds the input of one plugin call; the result borrows everything it points at.
pub fn cycle_input<'a, T: StringTable>(
    nodes: &NodeColumns<'a>,
    candidates: &'a [u32],
    pod: &PodData<'a>,
    strings: &'a T,
) -> Result<CycleInput<'a>, LayoutError> {
    let len = nodes.allocatable_milli_cpu.len();
    let columns = [
        ("allocatable_memory", nodes.allocatable_memory.len()),
        ("allocatable_pods", nodes.allocatable_pods.len()),
        ("requested_milli_cpu", nodes.requested_milli_cpu.len()),
        ("requested_memory", nodes.requested_memory.len()),
        ("pod_count", nodes.pod_count.len()),
        ("non_zero_milli_cpu", nodes.non_zero_milli_cpu.len()),
        ("non_zero_memory", nodes.non_zero_memory.len()),
    ];
    for (name, n) in columns {
        if n != len {
            return Err(LayoutError(format!(
                "column {name} has {n} entries, allocatable_milli_cpu has {len}"
            )));
        }
    }
    for (name, n) in [
        ("label_offsets", nodes.label_offsets.len()),
        ("taint_offsets", nodes.taint_offsets.len()),
    ] {
        if n != len + 1 {
            return Err(LayoutError(format!(
                "{name} has {n} entries, expected {}",
                len + 1
            )));
        }
    }
    Ok(CycleInput {
        size: std::mem::size_of::<CycleInput<'static>>() as u32,
        nodes: NodeTable {
            len: u32_len("node table", len)?,
            allocatable_milli_cpu: nodes.allocatable_milli_cpu.as_ptr(),
            allocatable_memory: nodes.allocatable_memory.as_ptr(),
            allocatable_pods: nodes.allocatable_pods.as_ptr(),
            requested_milli_cpu: nodes.requested_milli_cpu.as_ptr(),
            requested_memory: nodes.requested_memory.as_ptr(),
            pod_count: nodes.pod_count.as_ptr(),
            non_zero_milli_cpu: nodes.non_zero_milli_cpu.as_ptr(),
            non_zero_memory: nodes.non_zero_memory.as_ptr(),
            label_offsets: nodes.label_offsets.as_ptr(),
            labels: nodes.labels.as_ptr(),
            labels_len: u32_len("labels", nodes.labels.len())?,
            taint_offsets: nodes.taint_offsets.as_ptr(),
            taints: nodes.taints.as_ptr(),
            taints_len: u32_len("taints", nodes.taints.len())?,
        },
        candidates: candidates.as_ptr(),
        candidates_len: u32_len("candidates", candidates.len())?,
        pod: PodView {
            namespace: Str::borrowed(pod.namespace),
            name: Str::borrowed(pod.name),
            milli_cpu: pod.milli_cpu,
            memory: pod.memory,
            non_zero_milli_cpu: pod.non_zero_milli_cpu,
            non_zero_memory: pod.non_zero_memory,
            priority: pod.priority,
            labels: pod.labels.as_ptr().cast(),
            labels_len: u32_len("pod labels", pod.labels.len())?,
            group: pod.group.as_ptr(),
            group_len: u32_len("group", pod.group.len())?,
        },
        strings: Strings::new(strings),
        _borrow: PhantomData,
    })
}
