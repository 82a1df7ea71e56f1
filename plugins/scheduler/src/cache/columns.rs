//! The columnar copy of the node cache that out-of-tree plugins read, and its string interner.
//!
//! Numeric columns are updated in place on every node or pod change; label and
//! taint tables are rebuilt lazily (node labels change rarely) before a cycle.

use std::collections::HashMap;
use std::sync::Arc;

use kubernel_scheduler_sdk::abi::{effect, StringTable};
use kubernel_scheduler_sdk::host::NodeColumns;
use kubernel_scheduler_sdk::{LabelPair, TaintEntry};

use super::node_info::NodeInfo;

/// Interned label and taint strings; ids are stable for the scheduler's lifetime.
#[derive(Default, Debug)]
pub struct Interner {
    strings: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, u32>,
}

impl Interner {
    /// The id of `s`, interning it if new.
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = self.strings.len() as u32;
        let s: Arc<str> = Arc::from(s);
        self.strings.push(s.clone());
        self.ids.insert(s, id);
        id
    }
}

impl StringTable for Interner {
    fn lookup(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    fn get(&self, id: u32) -> &str {
        self.strings.get(id as usize).map(|s| &**s).unwrap_or("")
    }
}

/// Node columns indexed by cache slot.
#[derive(Default, Debug)]
pub struct Columns {
    alloc_cpu: Vec<i64>,
    alloc_mem: Vec<i64>,
    alloc_pods: Vec<i64>,
    req_cpu: Vec<i64>,
    req_mem: Vec<i64>,
    pod_count: Vec<i64>,
    nz_cpu: Vec<i64>,
    nz_mem: Vec<i64>,
    label_offsets: Vec<u32>,
    labels: Vec<LabelPair>,
    taint_offsets: Vec<u32>,
    taints: Vec<TaintEntry>,
    tables_dirty: bool,
    /// Label and taint strings.
    pub interner: Interner,
}

fn effect_id(effect: &str) -> u32 {
    match effect {
        "NoSchedule" => effect::NO_SCHEDULE,
        "PreferNoSchedule" => effect::PREFER_NO_SCHEDULE,
        "NoExecute" => effect::NO_EXECUTE,
        _ => 0,
    }
}

impl Columns {
    /// Interns a node's labels and taints into `info` and marks the tables stale.
    pub fn intern_node(&mut self, info: &mut NodeInfo) {
        let mut labels: Vec<LabelPair> = info
            .labels()
            .iter()
            .map(|(k, v)| LabelPair {
                key: self.interner.intern(k),
                value: self.interner.intern(v),
            })
            .collect();
        labels.sort_unstable();
        info.label_ids = labels;
        info.taint_ids = info
            .taints
            .iter()
            .map(|t| TaintEntry {
                key: self.interner.intern(&t.key),
                value: self.interner.intern(t.value.as_deref().unwrap_or("")),
                effect: effect_id(&t.effect),
            })
            .collect();
        self.tables_dirty = true;
    }

    /// Copies the numbers of `info` into row `slot`, growing the columns as needed.
    pub fn sync(&mut self, slot: u32, info: &NodeInfo) {
        let i = slot as usize;
        if i >= self.alloc_cpu.len() {
            let n = i + 1;
            for col in [
                &mut self.alloc_cpu,
                &mut self.alloc_mem,
                &mut self.alloc_pods,
                &mut self.req_cpu,
                &mut self.req_mem,
                &mut self.pod_count,
                &mut self.nz_cpu,
                &mut self.nz_mem,
            ] {
                col.resize(n, 0);
            }
            self.tables_dirty = true;
        }
        let live = info.node.is_some();
        let a = &info.allocatable;
        self.alloc_cpu[i] = if live { a.milli_cpu } else { 0 };
        self.alloc_mem[i] = if live { a.memory } else { 0 };
        self.alloc_pods[i] = if live { a.allowed_pod_number } else { 0 };
        self.req_cpu[i] = info.requested.milli_cpu;
        self.req_mem[i] = info.requested.memory;
        self.pod_count[i] = info.pods.len() as i64;
        self.nz_cpu[i] = info.non_zero_milli_cpu;
        self.nz_mem[i] = info.non_zero_memory;
    }

    /// Marks the label and taint tables stale (a node was added or removed).
    pub fn invalidate_tables(&mut self) {
        self.tables_dirty = true;
    }

    /// Rebuilds the label and taint tables from the slots when stale.
    pub fn refresh_tables<'a>(&mut self, slots: impl Iterator<Item = Option<&'a NodeInfo>>) {
        if !self.tables_dirty {
            return;
        }
        self.label_offsets.clear();
        self.labels.clear();
        self.taint_offsets.clear();
        self.taints.clear();
        self.label_offsets.push(0);
        self.taint_offsets.push(0);
        for info in slots {
            if let Some(info) = info.filter(|i| i.node.is_some()) {
                self.labels.extend_from_slice(&info.label_ids);
                self.taints.extend_from_slice(&info.taint_ids);
            }
            self.label_offsets.push(self.labels.len() as u32);
            self.taint_offsets.push(self.taints.len() as u32);
        }
        self.tables_dirty = false;
    }

    /// True when [`Columns::refresh_tables`] must run before [`Columns::node_columns`].
    pub fn tables_stale(&self) -> bool {
        self.tables_dirty
    }

    /// The columns as the SDK's host side takes them.
    pub fn node_columns(&self) -> NodeColumns<'_> {
        NodeColumns {
            allocatable_milli_cpu: &self.alloc_cpu,
            allocatable_memory: &self.alloc_mem,
            allocatable_pods: &self.alloc_pods,
            requested_milli_cpu: &self.req_cpu,
            requested_memory: &self.req_mem,
            pod_count: &self.pod_count,
            non_zero_milli_cpu: &self.nz_cpu,
            non_zero_memory: &self.nz_mem,
            label_offsets: &self.label_offsets,
            labels: &self.labels,
            taint_offsets: &self.taint_offsets,
            taints: &self.taints,
        }
    }
}
