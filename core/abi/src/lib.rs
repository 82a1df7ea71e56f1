//! The C ABI between the kubernel kernel and its plugins: one descriptor, a host vtable, bytes.
//!
//! Nothing Rust-specific crosses this boundary by layout. A plugin is a `cdylib`
//! that exports one `#[no_mangle]` static [`PluginDescriptor`] named
//! [`DESCRIPTOR_SYMBOL`]; the kernel reads its [`DescriptorHeader`] first (magic,
//! ABI version, size), and only then the rest. Messages and state cross as
//! [`Bytes`]; anything a callee returns is written into an [`OutBuf`] owned by the
//! caller, so no allocation is ever freed by the other side's allocator.
//!
//! The descriptor and the vtable are append-only: new entry points go at the end,
//! and `size` tells a reader how much of the struct the other side knows.
//!
//! This crate has no dependencies and changes rarely; every `unsafe` block of the
//! plugin boundary that is not in the kernel's loader lives here.

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::marker::PhantomData;

mod shim;

pub use shim::{descriptor, header, Entry};

/// The first eight bytes of every descriptor: `KUBERNEL` in ASCII.
pub const MAGIC: u64 = u64::from_be_bytes(*b"KUBERNEL");

/// Version of the descriptor and vtable layout; the kernel refuses any other.
pub const ABI_VERSION: u32 = 1;

/// Version of this crate, which plugins report as their SDK version.
pub const ABI_CRATE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Target triple this copy of the ABI was compiled for.
pub const BUILD_TARGET: &str = env!("KUBERNEL_BUILD_TARGET");

/// `rustc --version` of the toolchain this copy of the ABI was compiled with.
pub const BUILD_RUSTC: &str = env!("KUBERNEL_BUILD_RUSTC");

/// Name of the exported descriptor static, as a C string.
pub const DESCRIPTOR_SYMBOL: &[u8] = b"KUBERNEL_PLUGIN\0";

/// Result code of every entry point and host callback.
///
/// A plain integer rather than a Rust enum, so that an unknown value from a newer
/// peer is not undefined behaviour. When a call fails, its `OutBuf` (if it has one)
/// holds a UTF-8 message saying why.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub i32);

impl Status {
    /// The call succeeded.
    pub const OK: Status = Status(0);
    /// The callee reports an error; retrying the same input fails the same way.
    pub const ERROR: Status = Status(1);
    /// The callee panicked; its instance must be treated as poisoned.
    pub const PANICKED: Status = Status(2);
    /// The callee does not handle this message kind.
    pub const UNKNOWN_KIND: Status = Status(3);
    /// The target plugin does not exist, or is restarting or failed; retrying may help.
    pub const UNAVAILABLE: Status = Status(4);
    /// The target did not answer in time; retrying may help.
    pub const TIMEOUT: Status = Status(5);
    /// The instance reports that it is broken and must be restarted.
    pub const FATAL: Status = Status(6);
    /// The request would re-enter a plugin that is already handling a message on this thread.
    pub const REENTRANT: Status = Status(7);
    /// The message could not be decoded by the callee.
    pub const BAD_MESSAGE: Status = Status(8);

    /// True for [`Status::OK`].
    pub fn is_ok(self) -> bool {
        self == Status::OK
    }

    /// A short name for logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Status::OK => "ok",
            Status::ERROR => "error",
            Status::PANICKED => "panicked",
            Status::UNKNOWN_KIND => "unknown_kind",
            Status::UNAVAILABLE => "unavailable",
            Status::TIMEOUT => "timeout",
            Status::FATAL => "fatal",
            Status::REENTRANT => "reentrant",
            Status::BAD_MESSAGE => "bad_message",
            _ => "unknown_status",
        }
    }
}

/// A borrowed byte slice passed across the boundary for the duration of one call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Bytes<'a> {
    ptr: *const u8,
    len: usize,
    _borrow: PhantomData<&'a [u8]>,
}

impl<'a> Bytes<'a> {
    /// Borrows `slice` for one call.
    pub fn new(slice: &'a [u8]) -> Self {
        Bytes {
            ptr: slice.as_ptr(),
            len: slice.len(),
            _borrow: PhantomData,
        }
    }

    /// The borrowed bytes.
    pub fn as_slice(&self) -> &'a [u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: a `Bytes` is only built by `Bytes::new` from a live slice, and the
        // lifetime `'a` ties it to that slice; both sides of the ABI use this crate.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The bytes as UTF-8, replacing invalid sequences.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.as_slice()).into_owned()
    }
}

impl<'a> From<&'a str> for Bytes<'a> {
    fn from(s: &'a str) -> Self {
        Bytes::new(s.as_bytes())
    }
}

impl<'a> From<&'a [u8]> for Bytes<'a> {
    fn from(s: &'a [u8]) -> Self {
        Bytes::new(s)
    }
}

/// A `'static` string in a descriptor (plugin name, version, target, ...).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Str {
    ptr: *const u8,
    len: usize,
}

// SAFETY: a `Str` only ever points at `'static` string data (see `Str::new`), which
// is immutable and valid on every thread; libraries are never unloaded.
unsafe impl Sync for Str {}
// SAFETY: as above.
unsafe impl Send for Str {}

impl Str {
    /// Wraps a string literal.
    pub const fn new(s: &'static str) -> Self {
        Str {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// The raw bytes; a forged descriptor may hold invalid UTF-8.
    pub fn as_bytes(&self) -> &'static [u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: built by `Str::new` from a `'static str`; the library holding it is
        // never unloaded (the kernel keeps every library handle until exit).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The string, with invalid UTF-8 replaced.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }
}

/// A caller-owned growable buffer that a callee appends its answer to.
///
/// The callee never allocates memory the caller must free: it calls `write`, which
/// runs the caller's code and copies into the caller's `Vec`.
#[repr(C)]
pub struct OutBuf<'a> {
    ctx: *mut c_void,
    write_fn: extern "C" fn(*mut c_void, Bytes<'_>),
    _borrow: PhantomData<&'a mut Vec<u8>>,
}

extern "C" fn append_to_vec(ctx: *mut c_void, bytes: Bytes<'_>) {
    // SAFETY: `ctx` was made from `&mut Vec<u8>` in `OutBuf::new`, which the `'a`
    // lifetime keeps alive and exclusively borrowed while the `OutBuf` exists.
    let vec = unsafe { &mut *(ctx as *mut Vec<u8>) };
    vec.extend_from_slice(bytes.as_slice());
}

impl<'a> OutBuf<'a> {
    /// An `OutBuf` that appends to `vec`.
    pub fn new(vec: &'a mut Vec<u8>) -> Self {
        OutBuf {
            ctx: vec as *mut Vec<u8> as *mut c_void,
            write_fn: append_to_vec,
            _borrow: PhantomData,
        }
    }

    /// Appends `bytes` to the caller's buffer.
    pub fn write(&mut self, bytes: &[u8]) {
        (self.write_fn)(self.ctx, Bytes::new(bytes))
    }
}

/// Opaque handle of one plugin instance, created by `init`.
pub type Instance = *mut c_void;

/// Log levels passed to [`HostVtable::log`], most severe first.
pub mod level {
    /// Errors.
    pub const ERROR: u8 = 1;
    /// Warnings.
    pub const WARN: u8 = 2;
    /// Informational events.
    pub const INFO: u8 = 3;
    /// Debugging events.
    pub const DEBUG: u8 = 4;
    /// Very verbose tracing events.
    pub const TRACE: u8 = 5;
}

/// The kernel's services, handed to a plugin's `init`.
///
/// `ctx` identifies the calling plugin instance to the host; the host keeps it and
/// the vtable valid until after the instance's `shutdown` returns. Targets are a
/// plugin name, or `@kind` for the first running plugin of that kind.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HostVtable {
    /// Size of this struct as the host knows it (append-only).
    pub size: u32,
    /// Host context of this instance; pass it back on every call.
    pub ctx: *const c_void,
    /// Emits a log event: level (see [`level`]), target, message, fields as `k=v` text.
    pub log: extern "C" fn(*const c_void, u8, Bytes<'_>, Bytes<'_>, Bytes<'_>),
    /// Queues a message to a target; the error message, if any, goes to the `OutBuf`.
    pub send:
        extern "C" fn(*const c_void, Bytes<'_>, Bytes<'_>, Bytes<'_>, &mut OutBuf<'_>) -> Status,
    /// Sends a request and waits for the reply, written to the `OutBuf`.
    pub request:
        extern "C" fn(*const c_void, Bytes<'_>, Bytes<'_>, Bytes<'_>, &mut OutBuf<'_>) -> Status,
    /// Queues a message to every plugin subscribed to its kind.
    pub publish: extern "C" fn(*const c_void, Bytes<'_>, Bytes<'_>) -> Status,
    /// Subscribes this instance to a message kind.
    pub subscribe: extern "C" fn(*const c_void, Bytes<'_>) -> Status,
    // Appended entry points: `None` when the host's `size` does not cover them.
    /// `send` with the sender's trace context (a W3C `traceparent`, empty for none),
    /// which travels in the message envelope to the target's `handle_traced`.
    pub send_traced: Option<TracedCall>,
    /// `request` with the sender's trace context, as `send_traced`.
    pub request_traced: Option<TracedCall>,
    /// `publish` with the sender's trace context: kind, payload, trace.
    pub publish_traced:
        Option<extern "C" fn(*const c_void, Bytes<'_>, Bytes<'_>, Bytes<'_>) -> Status>,
}

/// A host call with trace context: ctx, target, kind, payload, trace, reply or error.
pub type TracedCall = extern "C" fn(
    *const c_void,
    Bytes<'_>,
    Bytes<'_>,
    Bytes<'_>,
    Bytes<'_>,
    &mut OutBuf<'_>,
) -> Status;

/// A plugin's `handle` with the sender's trace context: instance, from, kind,
/// payload, trace (a W3C `traceparent`, empty for none), reply or error.
pub type TracedHandle =
    extern "C" fn(Instance, Bytes<'_>, Bytes<'_>, Bytes<'_>, Bytes<'_>, &mut OutBuf<'_>) -> Status;

impl HostVtable {
    /// Size of the vtable as ABI 1 first shipped: every host provides at least this.
    pub const BASE_SIZE: u32 = std::mem::offset_of!(HostVtable, send_traced) as u32;

    /// Copies the vtable a host passed, reading only the `size` bytes the host
    /// declared: entry points appended after the host was built come out `None`.
    ///
    /// # Safety
    /// `host` must point at a vtable of at least `size` readable bytes, and `size`
    /// must be at least [`HostVtable::BASE_SIZE`].
    pub unsafe fn read_from(host: *const HostVtable) -> HostVtable {
        let mut v = std::mem::MaybeUninit::<HostVtable>::zeroed();
        // SAFETY: the caller promises `size` readable bytes and at least the base
        // fields; `size` is read first from the fixed-offset first field.
        unsafe {
            let size = (host as *const u32).read_unaligned() as usize;
            let n = size.min(std::mem::size_of::<HostVtable>());
            std::ptr::copy_nonoverlapping(host as *const u8, v.as_mut_ptr() as *mut u8, n);
            // The appended fields are `Option`s of function pointers: all-zero is `None`.
            v.assume_init()
        }
    }
}

// SAFETY: the host promises that `ctx` is a thread-safe object that stays valid
// until the instance is shut down, and the callbacks are plain functions.
unsafe impl Send for HostVtable {}
// SAFETY: as above.
unsafe impl Sync for HostVtable {}

/// The stable prefix of every descriptor, read before anything else.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DescriptorHeader {
    /// Must be [`MAGIC`].
    pub magic: u64,
    /// Must equal the kernel's [`ABI_VERSION`].
    pub abi_version: u32,
    /// `size_of::<PluginDescriptor>()` as the plugin was built.
    pub size: u32,
}

/// What a plugin exports: its identity and its entry points.
///
/// Every entry point is called with the instance's lock held, so a plugin sees one
/// call at a time (its own threads aside). Entry points that can fail write a
/// UTF-8 message into their `OutBuf` and return a non-OK [`Status`].
#[repr(C)]
pub struct PluginDescriptor {
    /// Stable prefix: magic, ABI version, size.
    pub header: DescriptorHeader,
    /// Version of `kubernel-abi` the plugin was built with.
    pub abi_crate_version: Str,
    /// `rustc --version` of the plugin's toolchain (informational).
    pub rustc_version: Str,
    /// Target triple the plugin was built for.
    pub target: Str,
    /// Plugin type name (e.g. `scheduler`); instances are named by the config.
    pub name: Str,
    /// Component kind: apiserver, scheduler, controller-manager, kubelet, proxy, ...
    pub kind: Str,
    /// Plugin version.
    pub version: Str,
    /// Version of the snapshot format this plugin writes.
    pub state_version: u32,
    /// Creates an instance from the host vtable and the plugin's config (JSON).
    pub init: extern "C" fn(&HostVtable, Bytes<'_>, &mut Instance, &mut OutBuf<'_>) -> Status,
    /// Handles one message `(from, kind, payload)`; the reply goes to the `OutBuf`.
    pub handle: extern "C" fn(Instance, Bytes<'_>, Bytes<'_>, Bytes<'_>, &mut OutBuf<'_>) -> Status,
    /// Stops taking new work and finishes in-flight work within `deadline_ms`.
    pub quiesce: extern "C" fn(Instance, u64, &mut OutBuf<'_>) -> Status,
    /// Undoes `quiesce` (used when a swap rolls back).
    pub resume: extern "C" fn(Instance, &mut OutBuf<'_>) -> Status,
    /// Writes the instance's state.
    pub snapshot: extern "C" fn(Instance, &mut OutBuf<'_>) -> Status,
    /// Loads state written by `snapshot` of a plugin with the given state version.
    pub restore: extern "C" fn(Instance, Bytes<'_>, u32, &mut OutBuf<'_>) -> Status,
    /// Writes the instance's metrics as length-delimited Prometheus protobuf families.
    pub metrics: extern "C" fn(Instance, &mut OutBuf<'_>) -> Status,
    /// Destroys the instance; it is not called again afterwards.
    pub shutdown: extern "C" fn(Instance),
    // Appended entry points: `None` when the descriptor's `size` does not cover them.
    /// `handle` with the sender's trace context from the message envelope.
    pub handle_traced: Option<TracedHandle>,
}

// SAFETY: the descriptor holds only `'static` strings and plain function pointers.
unsafe impl Sync for PluginDescriptor {}
// SAFETY: as above; a copy (see `read_from`) points at the same static strings.
unsafe impl Send for PluginDescriptor {}

impl PluginDescriptor {
    /// Size of the descriptor as ABI 1 first shipped: a kernel loads any
    /// descriptor at least this large, and reads appended fields only when `size`
    /// covers them.
    pub const BASE_SIZE: u32 = std::mem::offset_of!(PluginDescriptor, handle_traced) as u32;

    /// Copies an exported descriptor, reading only the `size` bytes its header
    /// declares: entry points appended after the plugin was built come out `None`.
    ///
    /// # Safety
    /// `desc` must point at a descriptor whose header says at least
    /// [`PluginDescriptor::BASE_SIZE`] bytes, all readable; its strings must outlive
    /// every use of the copy (the kernel never unloads a library).
    pub unsafe fn read_from(desc: *const DescriptorHeader) -> PluginDescriptor {
        let mut d = std::mem::MaybeUninit::<PluginDescriptor>::zeroed();
        // SAFETY: the caller promises the declared size is readable and covers the
        // base fields; the appended fields are `Option`s of function pointers, for
        // which all-zero is `None`.
        unsafe {
            let n = ((*desc).size as usize).min(std::mem::size_of::<PluginDescriptor>());
            std::ptr::copy_nonoverlapping(desc as *const u8, d.as_mut_ptr() as *mut u8, n);
            d.assume_init()
        }
    }

    /// A header with this build's magic, ABI version and size.
    pub const fn current_header() -> DescriptorHeader {
        DescriptorHeader {
            magic: MAGIC,
            abi_version: ABI_VERSION,
            size: std::mem::size_of::<PluginDescriptor>() as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbuf_should_append_to_the_callers_vec() {
        let mut v = b"a".to_vec();
        let mut out = OutBuf::new(&mut v);
        out.write(b"bc");
        out.write(b"");
        assert_eq!(v, b"abc");
    }

    #[test]
    fn bytes_should_round_trip_empty_and_full_slices() {
        assert_eq!(Bytes::new(&[]).as_slice(), b"");
        assert_eq!(Bytes::from("hi").to_string_lossy(), "hi");
    }

    #[test]
    fn a_host_vtable_should_read_appended_entry_points_as_none_past_its_size() {
        extern "C" fn log(_: *const c_void, _: u8, _: Bytes<'_>, _: Bytes<'_>, _: Bytes<'_>) {}
        extern "C" fn call(
            _: *const c_void,
            _: Bytes<'_>,
            _: Bytes<'_>,
            _: Bytes<'_>,
            _: &mut OutBuf<'_>,
        ) -> Status {
            Status::OK
        }
        extern "C" fn publish(_: *const c_void, _: Bytes<'_>, _: Bytes<'_>) -> Status {
            Status::OK
        }
        extern "C" fn subscribe(_: *const c_void, _: Bytes<'_>) -> Status {
            Status::OK
        }
        extern "C" fn publish_traced(
            _: *const c_void,
            _: Bytes<'_>,
            _: Bytes<'_>,
            _: Bytes<'_>,
        ) -> Status {
            Status::OK
        }
        let full = HostVtable {
            size: std::mem::size_of::<HostVtable>() as u32,
            ctx: std::ptr::null(),
            log,
            send: call,
            request: call,
            publish,
            subscribe,
            send_traced: None,
            request_traced: None,
            publish_traced: Some(publish_traced),
        };
        // SAFETY: a whole vtable of the declared size.
        let copy = unsafe { HostVtable::read_from(&full) };
        assert!(copy.publish_traced.is_some());
        let old = HostVtable {
            size: HostVtable::BASE_SIZE,
            ..full
        };
        // SAFETY: as above; the size only claims less of it.
        let copy = unsafe { HostVtable::read_from(&old) };
        assert!(copy.publish_traced.is_none());
        assert_eq!(copy.size, HostVtable::BASE_SIZE);
    }

    #[test]
    fn magic_should_spell_kubernel() {
        assert_eq!(MAGIC.to_be_bytes(), *b"KUBERNEL");
        assert_eq!(Status::TIMEOUT.name(), "timeout");
    }
}
