//! The `#[repr(C)]` types of the scheduler plugin ABI: descriptor, cycle input, outputs.
//!
//! Layout rules: every struct that can grow carries its own size and is append-only;
//! enumerations cross as plain integers so that an unknown value from a newer peer
//! is a value to reject, not undefined behaviour. All arrays are owned by the host
//! and borrowed for the duration of one call.

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The first eight bytes of every scheduler plugin descriptor: `KSCHEDPL` in ASCII.
pub const MAGIC: u64 = u64::from_be_bytes(*b"KSCHEDPL");

/// Version of the descriptor and cycle input layout; the host refuses any other.
pub const ABI_VERSION: u32 = 1;

/// Version of this crate, which plugins report as their SDK version.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Target triple this copy of the SDK was compiled for.
pub const BUILD_TARGET: &str = env!("KUBERNEL_SCHED_BUILD_TARGET");

/// `rustc --version` of the toolchain this copy of the SDK was compiled with.
pub const BUILD_RUSTC: &str = env!("KUBERNEL_SCHED_BUILD_RUSTC");

/// Name of the exported descriptor static, as a C string.
pub const DESCRIPTOR_SYMBOL: &[u8] = b"KUBERNEL_SCHEDULER_PLUGIN\0";

/// Highest score a plugin may write (the framework's `MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

/// Lowest score a plugin may write (the framework's `MinNodeScore`).
pub const MIN_NODE_SCORE: i64 = 0;

/// Id returned by a string lookup when the host has never seen the string.
pub const NO_STRING: u32 = u32::MAX;

/// Extension point bits of [`Descriptor::points`].
pub mod point {
    /// The plugin implements `filter`.
    pub const FILTER: u32 = 1;
    /// The plugin implements `score`.
    pub const SCORE: u32 = 2;
}

/// Return codes of the descriptor's functions.
pub mod code {
    /// The call succeeded.
    pub const OK: i32 = 0;
    /// The plugin reports an error; its message is in the `ErrBuf`.
    pub const ERROR: i32 = 1;
    /// The plugin panicked; its message is in the `ErrBuf`.
    pub const PANICKED: i32 = 2;
    /// The plugin does not implement this extension point.
    pub const UNSUPPORTED: i32 = 3;
}

/// Taint effects as they appear in [`TaintEntry::effect`].
pub mod effect {
    /// `NoSchedule`.
    pub const NO_SCHEDULE: u32 = 1;
    /// `PreferNoSchedule`.
    pub const PREFER_NO_SCHEDULE: u32 = 2;
    /// `NoExecute`.
    pub const NO_EXECUTE: u32 = 3;
}

/// A borrowed UTF-8 string: `'static` in a descriptor, call-scoped in a cycle input.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Str {
    ptr: *const u8,
    len: usize,
}

// SAFETY: a `Str` only points at immutable string data: `'static` literals in a
// descriptor (libraries are never unloaded), or host data borrowed for one call.
unsafe impl Sync for Str {}
// SAFETY: as above.
unsafe impl Send for Str {}

impl Str {
    /// Wraps a `'static` string, for descriptors.
    pub const fn new(s: &'static str) -> Self {
        Str {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// Borrows `s`; the caller keeps `s` alive for as long as the `Str` is read.
    pub fn borrowed(s: &str) -> Self {
        Str {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// The raw bytes; the caller guarantees the data is still alive (see [`Str::borrowed`]).
    pub fn as_bytes(&self) -> &[u8] {
        if self.len == 0 || self.ptr.is_null() {
            return &[];
        }
        // SAFETY: built by `new` (static data) or `borrowed` (data the builder keeps
        // alive for the call in which this `Str` is read); `len` came from that slice.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The string, with invalid UTF-8 (possible only in a forged descriptor) replaced.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }

    /// The string when it is valid UTF-8, else `""`.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

/// A host-owned, fixed-capacity buffer a plugin writes an error message into.
#[repr(C)]
pub struct ErrBuf {
    ptr: *mut u8,
    cap: usize,
    len: usize,
}

impl ErrBuf {
    /// A buffer over `storage`; [`ErrBuf::message`] reads what the plugin wrote.
    pub fn new(storage: &mut [u8]) -> Self {
        ErrBuf {
            ptr: storage.as_mut_ptr(),
            cap: storage.len(),
            len: 0,
        }
    }

    /// Replaces the message with `msg`, truncated to the capacity at a char boundary.
    pub fn write(&mut self, msg: &str) {
        let mut n = msg.len().min(self.cap);
        while !msg.is_char_boundary(n) {
            n -= 1;
        }
        if n > 0 {
            // SAFETY: `ptr` points at `cap` writable bytes borrowed from the host for
            // the call (see `new`), and `n <= cap`; `msg` does not overlap them.
            unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), self.ptr, n) };
        }
        self.len = n;
    }

    /// The message written so far (lossy UTF-8).
    pub fn message(&self) -> String {
        if self.len == 0 || self.ptr.is_null() {
            return String::new();
        }
        let len = self.len.min(self.cap);
        // SAFETY: the first `len <= cap` bytes of the storage were written by `write`.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, len) };
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// One node label: interned key and value ids (see [`Strings`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LabelPair {
    /// Interned label key.
    pub key: u32,
    /// Interned label value.
    pub value: u32,
}

/// One node taint: interned key and value, and an [`effect`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaintEntry {
    /// Interned taint key.
    pub key: u32,
    /// Interned taint value (the empty string when unset).
    pub value: u32,
    /// One of [`effect`].
    pub effect: u32,
}

/// One pod label, as strings (pod labels are not interned).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct KeyValue<'a> {
    /// Label key.
    pub key: Str,
    /// Label value.
    pub value: Str,
    /// Ties the strings to the host data they borrow.
    pub _borrow: PhantomData<&'a str>,
}

impl<'a> KeyValue<'a> {
    /// Borrows a label.
    pub fn new(key: &'a str, value: &'a str) -> Self {
        KeyValue {
            key: Str::borrowed(key),
            value: Str::borrowed(value),
            _borrow: PhantomData,
        }
    }
}

/// How many pods of the incoming pod's group (same controller, or same labels) a node runs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCount {
    /// Node index into the [`NodeTable`] columns.
    pub node: u32,
    /// Number of pods of the group on that node, assumed pods included.
    pub count: u32,
}

/// A filter verdict for one node, written by the plugin.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// 0 = the node fits, 1 = unschedulable, 2 = unschedulable and unresolvable.
    pub code: u16,
    /// Index into the plugin's reasons (see [`Descriptor::reason`]) when `code != 0`.
    pub reason: u16,
}

impl Verdict {
    /// Code of a node that passes.
    pub const PASS: u16 = 0;
    /// Code of a node that fails, where preemption may help.
    pub const UNSCHEDULABLE: u16 = 1;
    /// Code of a node that fails, where preemption cannot help.
    pub const UNRESOLVABLE: u16 = 2;
}

/// All nodes of the scheduler cache as columns; a node is an index into every column.
///
/// Numeric columns have `len` entries. Node `i`'s labels are
/// `labels[label_offsets[i]..label_offsets[i + 1]]`, sorted by key id; taints likewise.
/// Removed nodes leave an index with zero resources and no labels.
#[repr(C)]
pub struct NodeTable {
    /// Number of node indices.
    pub len: u32,
    /// Allocatable CPU, millicores.
    pub allocatable_milli_cpu: *const i64,
    /// Allocatable memory, bytes.
    pub allocatable_memory: *const i64,
    /// Allocatable pod count.
    pub allocatable_pods: *const i64,
    /// Requested CPU of the node's pods (assumed pods included), millicores.
    pub requested_milli_cpu: *const i64,
    /// Requested memory of the node's pods, bytes.
    pub requested_memory: *const i64,
    /// Number of pods on the node.
    pub pod_count: *const i64,
    /// Requested CPU with unset requests counted as 100m (for scoring).
    pub non_zero_milli_cpu: *const i64,
    /// Requested memory with unset requests counted as 200 MiB (for scoring).
    pub non_zero_memory: *const i64,
    /// `len + 1` offsets into `labels`.
    pub label_offsets: *const u32,
    /// Labels of all nodes, grouped by node.
    pub labels: *const LabelPair,
    /// Number of entries in `labels`.
    pub labels_len: u32,
    /// `len + 1` offsets into `taints`.
    pub taint_offsets: *const u32,
    /// Taints of all nodes, grouped by node.
    pub taints: *const TaintEntry,
    /// Number of entries in `taints`.
    pub taints_len: u32,
}

/// The pod being scheduled.
#[repr(C)]
pub struct PodView {
    /// Namespace.
    pub namespace: Str,
    /// Name.
    pub name: Str,
    /// Requested CPU, millicores (containers, init containers and overhead).
    pub milli_cpu: i64,
    /// Requested memory, bytes.
    pub memory: i64,
    /// Requested CPU with unset requests counted as 100m.
    pub non_zero_milli_cpu: i64,
    /// Requested memory with unset requests counted as 200 MiB.
    pub non_zero_memory: i64,
    /// Priority (0 when unset).
    pub priority: i32,
    /// Labels, `labels_len` entries.
    pub labels: *const KeyValue<'static>,
    /// Number of labels.
    pub labels_len: u32,
    /// Nodes running pods of this pod's group, `group_len` entries sorted by node.
    pub group: *const GroupCount,
    /// Number of group entries.
    pub group_len: u32,
}

/// The host's string interner: key and value ids of node labels and taints.
#[repr(C)]
pub struct Strings {
    ctx: *const c_void,
    lookup: extern "C" fn(*const c_void, Str) -> u32,
    get: extern "C" fn(*const c_void, u32) -> Str,
}

/// A host-side string table that [`Strings`] exposes to plugins.
pub trait StringTable: Sync {
    /// The id of `s`, if the host has interned it.
    fn lookup(&self, s: &str) -> Option<u32>;
    /// The string of `id` (`""` when unknown).
    fn get(&self, id: u32) -> &str;
}

extern "C" fn lookup_shim<T: StringTable>(ctx: *const c_void, s: Str) -> u32 {
    // SAFETY: `ctx` was made from `&T` in `Strings::new`, borrowed for as long as
    // the `Strings` (and the cycle input holding it) lives.
    let table = unsafe { &*(ctx as *const T) };
    catch_unwind(AssertUnwindSafe(|| table.lookup(s.as_str())))
        .ok()
        .flatten()
        .unwrap_or(NO_STRING)
}

extern "C" fn get_shim<T: StringTable>(ctx: *const c_void, id: u32) -> Str {
    // SAFETY: as in `lookup_shim`.
    let table = unsafe { &*(ctx as *const T) };
    catch_unwind(AssertUnwindSafe(|| Str::borrowed(table.get(id)))).unwrap_or_else(|_| Str::new(""))
}

impl Strings {
    /// Exposes `table`; the returned value must not outlive it (enforced by [`CycleInput`]).
    pub fn new<T: StringTable>(table: &T) -> Self {
        Strings {
            ctx: table as *const T as *const c_void,
            lookup: lookup_shim::<T>,
            get: get_shim::<T>,
        }
    }

    /// The id of `s`, if interned.
    pub fn lookup(&self, s: &str) -> Option<u32> {
        match (self.lookup)(self.ctx, Str::borrowed(s)) {
            NO_STRING => None,
            id => Some(id),
        }
    }

    /// The string of `id`.
    pub fn get(&self, id: u32) -> Str {
        (self.get)(self.ctx, id)
    }
}

/// Everything one plugin call sees: all nodes, the candidates, the pod, the strings.
///
/// Built by the host with [`crate::host::cycle_input`]; the output array of the
/// call has `candidates_len` entries, one per candidate, in candidate order.
#[repr(C)]
pub struct CycleInput<'a> {
    /// `size_of::<CycleInput>()` as the host was built (append-only).
    pub size: u32,
    /// All nodes.
    pub nodes: NodeTable,
    /// Indices of the nodes to filter or score.
    pub candidates: *const u32,
    /// Number of candidates (and of output entries).
    pub candidates_len: u32,
    /// The pod.
    pub pod: PodView,
    /// Label and taint strings.
    pub strings: Strings,
    /// Ties the raw pointers to the host data they borrow.
    pub _borrow: PhantomData<&'a ()>,
}

/// Creates a plugin instance from its arguments (JSON text); `*inst` receives it.
pub type CreateFn = extern "C" fn(args: Str, inst: &mut *mut c_void, err: &mut ErrBuf) -> i32;
/// Filters the candidates; `out` has `candidates_len` entries.
pub type FilterFn = extern "C" fn(
    inst: *mut c_void,
    input: &CycleInput<'_>,
    out: *mut Verdict,
    err: &mut ErrBuf,
) -> i32;
/// Scores the candidates; `out` has `candidates_len` entries.
pub type ScoreFn = extern "C" fn(
    inst: *mut c_void,
    input: &CycleInput<'_>,
    out: *mut i64,
    err: &mut ErrBuf,
) -> i32;
/// The text of filter reason `index` (`""` when out of range).
pub type ReasonFn = extern "C" fn(index: u32) -> Str;
/// Destroys an instance made by `create`.
pub type DestroyFn = extern "C" fn(inst: *mut c_void);

/// The stable prefix of every descriptor, read before anything else.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Header {
    /// Must be [`MAGIC`].
    pub magic: u64,
    /// Must equal the host's [`ABI_VERSION`].
    pub abi_version: u32,
    /// `size_of::<Descriptor>()` as the plugin was built.
    pub size: u32,
}

/// What a scheduler plugin library exports under [`DESCRIPTOR_SYMBOL`].
#[repr(C)]
pub struct Descriptor {
    /// Magic, ABI version, size.
    pub header: Header,
    /// Version of `kubernel-scheduler-sdk` the plugin was built with.
    pub sdk_version: Str,
    /// `rustc --version` of the plugin's toolchain.
    pub rustc_version: Str,
    /// Target triple the plugin was built for.
    pub target: Str,
    /// Plugin name, as profiles refer to it.
    pub name: Str,
    /// Plugin version.
    pub version: Str,
    /// Extension points implemented, bits of [`point`].
    pub points: u32,
    /// Creates an instance.
    pub create: CreateFn,
    /// Filter entry point (returns [`code::UNSUPPORTED`] when not implemented).
    pub filter: FilterFn,
    /// Score entry point (returns [`code::UNSUPPORTED`] when not implemented).
    pub score: ScoreFn,
    /// Filter reason texts.
    pub reason: ReasonFn,
    /// Destroys an instance.
    pub destroy: DestroyFn,
}

// SAFETY: the descriptor holds only `'static` strings and plain function pointers.
unsafe impl Sync for Descriptor {}

impl Descriptor {
    /// A header with this build's magic, ABI version and size.
    pub const fn current_header() -> Header {
        Header {
            magic: MAGIC,
            abi_version: ABI_VERSION,
            size: std::mem::size_of::<Descriptor>() as u32,
        }
    }
}
