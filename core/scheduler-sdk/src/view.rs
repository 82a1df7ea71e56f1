//! Plugin side: safe, bounds-checked views of a [`CycleInput`].

#![allow(unsafe_code)]

use crate::abi::{CycleInput, GroupCount, KeyValue, LabelPair, TaintEntry};

/// Builds a slice from a host pointer and length; empty when the length is zero.
///
/// # Safety
/// `ptr` must point at `len` initialised values that stay alive and unmodified for `'a`.
unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if len == 0 || ptr.is_null() {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

/// One plugin call's view: the pod, all nodes, the candidates and the string table.
pub struct Cycle<'a> {
    input: &'a CycleInput<'a>,
    /// All nodes as columns.
    pub nodes: Nodes<'a>,
    /// The pod being scheduled.
    pub pod: Pod<'a>,
    /// Node indices to filter or score; the output has one entry per candidate.
    pub candidates: &'a [u32],
}

/// The node columns; index them with a candidate's node index.
pub struct Nodes<'a> {
    /// Allocatable CPU, millicores.
    pub allocatable_milli_cpu: &'a [i64],
    /// Allocatable memory, bytes.
    pub allocatable_memory: &'a [i64],
    /// Allocatable pod count.
    pub allocatable_pods: &'a [i64],
    /// Requested CPU of the node's pods, millicores.
    pub requested_milli_cpu: &'a [i64],
    /// Requested memory of the node's pods, bytes.
    pub requested_memory: &'a [i64],
    /// Pods on the node.
    pub pod_count: &'a [i64],
    /// Requested CPU with unset requests counted as 100m.
    pub non_zero_milli_cpu: &'a [i64],
    /// Requested memory with unset requests counted as 200 MiB.
    pub non_zero_memory: &'a [i64],
    label_offsets: &'a [u32],
    labels: &'a [LabelPair],
    taint_offsets: &'a [u32],
    taints: &'a [TaintEntry],
}

/// The pod being scheduled.
pub struct Pod<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
    /// Requested CPU, millicores.
    pub milli_cpu: i64,
    /// Requested memory, bytes.
    pub memory: i64,
    /// Requested CPU with unset requests counted as 100m.
    pub non_zero_milli_cpu: i64,
    /// Requested memory with unset requests counted as 200 MiB.
    pub non_zero_memory: i64,
    /// Priority.
    pub priority: i32,
    /// Nodes running pods of the same controller (or with the same labels), by node.
    pub group: &'a [GroupCount],
    labels: &'a [KeyValue<'a>],
}

impl<'a> Cycle<'a> {
    /// Wraps the host's input.
    ///
    /// # Safety
    /// `input` must come from the host through the ABI (built by
    /// [`crate::host::cycle_input`]), so that its pointers and lengths describe live
    /// arrays for the duration of the call.
    pub unsafe fn from_input(input: &'a CycleInput<'a>) -> Result<Self, String> {
        let needed = std::mem::size_of::<CycleInput<'static>>();
        if (input.size as usize) < needed {
            return Err(format!(
                "host cycle input is {} bytes, this plugin needs {needed}; upgrade the scheduler",
                input.size
            ));
        }
        let t = &input.nodes;
        let n = t.len as usize;
        // SAFETY: the host built every column with `n` entries, the offsets with
        // `n + 1`, and the other arrays with the lengths stored next to them
        // (`host::cycle_input` checks this); all live for the call.
        let nodes = unsafe {
            Nodes {
                allocatable_milli_cpu: slice(t.allocatable_milli_cpu, n),
                allocatable_memory: slice(t.allocatable_memory, n),
                allocatable_pods: slice(t.allocatable_pods, n),
                requested_milli_cpu: slice(t.requested_milli_cpu, n),
                requested_memory: slice(t.requested_memory, n),
                pod_count: slice(t.pod_count, n),
                non_zero_milli_cpu: slice(t.non_zero_milli_cpu, n),
                non_zero_memory: slice(t.non_zero_memory, n),
                label_offsets: slice(t.label_offsets, n + 1),
                labels: slice(t.labels, t.labels_len as usize),
                taint_offsets: slice(t.taint_offsets, n + 1),
                taints: slice(t.taints, t.taints_len as usize),
            }
        };
        let p = &input.pod;
        // SAFETY: as above; pod strings and labels borrow the host's pod for the call.
        let pod = unsafe {
            Pod {
                namespace: std::str::from_utf8(p.namespace.as_bytes()).unwrap_or(""),
                name: std::str::from_utf8(p.name.as_bytes()).unwrap_or(""),
                milli_cpu: p.milli_cpu,
                memory: p.memory,
                non_zero_milli_cpu: p.non_zero_milli_cpu,
                non_zero_memory: p.non_zero_memory,
                priority: p.priority,
                group: slice(p.group, p.group_len as usize),
                labels: slice(p.labels.cast::<KeyValue<'a>>(), p.labels_len as usize),
            }
        };
        // SAFETY: as above.
        let candidates = unsafe { slice(input.candidates, input.candidates_len as usize) };
        Ok(Cycle {
            input,
            nodes,
            pod,
            candidates,
        })
    }

    /// The interned id of a label or taint string, if any node uses it.
    pub fn lookup(&self, s: &str) -> Option<u32> {
        self.input.strings.lookup(s)
    }

    /// The string of an interned id (`""` when unknown).
    pub fn string(&self, id: u32) -> String {
        self.input.strings.get(id).to_string_lossy()
    }
}

impl<'a> Nodes<'a> {
    /// Number of node indices.
    pub fn len(&self) -> usize {
        self.allocatable_milli_cpu.len()
    }

    /// True when the table has no node.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Labels of node `i`, sorted by key id; empty when `i` or the offsets are out of range.
    pub fn labels(&self, i: u32) -> &'a [LabelPair] {
        range(self.label_offsets, self.labels, i)
    }

    /// The value id of label `key` on node `i`.
    pub fn label(&self, i: u32, key: u32) -> Option<u32> {
        let labels = self.labels(i);
        labels
            .binary_search_by_key(&key, |l| l.key)
            .ok()
            .map(|at| labels[at].value)
    }

    /// Taints of node `i`.
    pub fn taints(&self, i: u32) -> &'a [TaintEntry] {
        range(self.taint_offsets, self.taints, i)
    }
}

fn range<'a, T>(offsets: &[u32], items: &'a [T], i: u32) -> &'a [T] {
    let i = i as usize;
    match (offsets.get(i), offsets.get(i + 1)) {
        (Some(&a), Some(&b)) => items.get(a as usize..b as usize).unwrap_or(&[]),
        _ => &[],
    }
}

impl<'a> Pod<'a> {
    /// The pod's labels as `(key, value)` pairs.
    pub fn labels(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.labels
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_str()))
    }

    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&'a str> {
        self.labels().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}
