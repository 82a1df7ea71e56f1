//! Generic `extern "C"` entry points that turn a safe [`Entry`] type into a descriptor.
//!
//! Each shim converts the opaque instance pointer back to the boxed entry type and
//! runs the call under `catch_unwind`, so a panic becomes [`Status::PANICKED`] with
//! its message in the `OutBuf` instead of aborting the process.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::{Bytes, DescriptorHeader, HostVtable, Instance, OutBuf, PluginDescriptor, Status, Str};

/// The safe shape of a plugin that [`descriptor`] exports through the C ABI.
///
/// Implemented by the SDK; plugin authors implement the SDK's `Plugin` trait.
pub trait Entry: Sized + Send + 'static {
    /// Creates the instance; `config` is the host's init parameters as JSON.
    fn init(host: HostVtable, config: &[u8]) -> Result<Self, String>;
    /// Handles one message; on success the reply has been written to `out`. `trace`
    /// is the sender's W3C `traceparent` from the envelope, empty for none.
    fn handle(
        &mut self,
        from: &[u8],
        kind: &[u8],
        payload: &[u8],
        trace: &[u8],
        out: &mut OutBuf<'_>,
    ) -> Status;
    /// Stops taking new work within `deadline_ms`.
    fn quiesce(&mut self, deadline_ms: u64) -> Result<(), String>;
    /// Resumes after `quiesce`.
    fn resume(&mut self) -> Result<(), String>;
    /// Writes the instance's state to `out`.
    fn snapshot(&mut self, out: &mut OutBuf<'_>) -> Result<(), String>;
    /// Loads state of the given state version.
    fn restore(&mut self, state: &[u8], from_version: u32) -> Result<(), String>;
    /// Writes metrics to `out`.
    fn metrics(&mut self, out: &mut OutBuf<'_>) -> Result<(), String>;
    /// Destroys the instance.
    fn shutdown(self);
    /// The part of the instance that takes messages concurrently (see
    /// [`PluginDescriptor::handle_shared`]), asked once after `init`.
    fn shared(&self) -> Option<Arc<dyn SharedEntry>> {
        None
    }
}

/// Handles messages on many threads at once, beside an [`Entry`].
pub trait SharedEntry: Send + Sync + 'static {
    /// As [`Entry::handle`]; returns [`Status::UNKNOWN_KIND`] without writing to
    /// `out` for a kind that must go through the exclusive `handle`.
    fn handle(
        &self,
        from: &[u8],
        kind: &[u8],
        payload: &[u8],
        trace: &[u8],
        out: &mut OutBuf<'_>,
    ) -> Status;
}

/// What an instance pointer points at: the entry and its shared part.
struct Hosting<E> {
    entry: E,
    shared: Option<Arc<dyn SharedEntry>>,
}

/// The entry behind an instance pointer, for calls made under the exclusive lock.
///
/// # Safety
/// `inst` must be a non-null pointer returned by `init::<E>`, not yet shut down,
/// and the host must hold the instance's lock exclusively for the call.
unsafe fn entry_mut<'a, E>(inst: Instance) -> &'a mut E {
    // SAFETY: per the contract; the field is reached without forming a reference
    // to the whole `Hosting`, whose `shared` part other threads never touch then.
    unsafe { &mut *std::ptr::addr_of_mut!((*(inst as *mut Hosting<E>)).entry) }
}

/// Builds the descriptor that exports `E`; used by the SDK's `export_plugin!`.
pub const fn descriptor<E: Entry>(
    name: &'static str,
    kind: &'static str,
    version: &'static str,
    state_version: u32,
) -> PluginDescriptor {
    PluginDescriptor {
        header: PluginDescriptor::current_header(),
        abi_crate_version: Str::new(crate::ABI_CRATE_VERSION),
        rustc_version: Str::new(crate::BUILD_RUSTC),
        target: Str::new(crate::BUILD_TARGET),
        name: Str::new(name),
        kind: Str::new(kind),
        version: Str::new(version),
        state_version,
        init: init::<E>,
        handle: handle::<E>,
        quiesce: quiesce::<E>,
        resume: resume::<E>,
        snapshot: snapshot::<E>,
        restore: restore::<E>,
        metrics: metrics::<E>,
        shutdown: shutdown::<E>,
        handle_traced: Some(handle_traced::<E>),
        handle_shared: Some(handle_shared::<E>),
    }
}

/// Text of a caught panic payload.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Runs `f` on the instance behind `inst`, turning a panic into `Status::PANICKED`.
fn guarded<E: Entry>(
    inst: Instance,
    out: &mut OutBuf<'_>,
    f: impl FnOnce(&mut E, &mut OutBuf<'_>) -> Status,
) -> Status {
    if inst.is_null() {
        out.write(b"null plugin instance");
        return Status::ERROR;
    }
    // SAFETY: the host only passes back the pointer that `init::<E>` returned from
    // `Box::into_raw`, never after `shutdown`, and holds the instance's lock
    // exclusively for the duration of the call, so this is the only live reference.
    let entry = unsafe { entry_mut::<E>(inst) };
    let mut scratch = Vec::new();
    let result = {
        let mut guarded_out = OutBuf::new(&mut scratch);
        catch_unwind(AssertUnwindSafe(|| f(entry, &mut guarded_out)))
    };
    match result {
        Ok(status) => {
            out.write(&scratch);
            status
        }
        Err(payload) => {
            out.write(panic_message(payload.as_ref()).as_bytes());
            Status::PANICKED
        }
    }
}

fn unit_result(r: Result<(), String>, out: &mut OutBuf<'_>) -> Status {
    match r {
        Ok(()) => Status::OK,
        Err(e) => {
            out.write(e.as_bytes());
            Status::ERROR
        }
    }
}

extern "C" fn init<E: Entry>(
    host: &HostVtable,
    config: Bytes<'_>,
    inst: &mut Instance,
    err: &mut OutBuf<'_>,
) -> Status {
    if host.size < HostVtable::BASE_SIZE {
        err.write(
            format!(
                "host vtable is {} bytes, this plugin needs at least {}",
                host.size,
                HostVtable::BASE_SIZE
            )
            .as_bytes(),
        );
        return Status::ERROR;
    }
    // SAFETY: the host passes a vtable of its declared size, at least the base.
    let host = unsafe { HostVtable::read_from(host) };
    match catch_unwind(AssertUnwindSafe(|| E::init(host, config.as_slice()))) {
        Ok(Ok(entry)) => {
            let shared = entry.shared();
            *inst = Box::into_raw(Box::new(Hosting { entry, shared })) as Instance;
            Status::OK
        }
        Ok(Err(e)) => {
            err.write(e.as_bytes());
            Status::ERROR
        }
        Err(payload) => {
            err.write(panic_message(payload.as_ref()).as_bytes());
            Status::PANICKED
        }
    }
}

extern "C" fn handle<E: Entry>(
    inst: Instance,
    from: Bytes<'_>,
    kind: Bytes<'_>,
    payload: Bytes<'_>,
    out: &mut OutBuf<'_>,
) -> Status {
    handle_traced::<E>(inst, from, kind, payload, Bytes::new(&[]), out)
}

extern "C" fn handle_traced<E: Entry>(
    inst: Instance,
    from: Bytes<'_>,
    kind: Bytes<'_>,
    payload: Bytes<'_>,
    trace: Bytes<'_>,
    out: &mut OutBuf<'_>,
) -> Status {
    // The reply is written straight into the caller's buffer; on a panic the part
    // already written is followed by the panic message, which the host discards.
    if inst.is_null() {
        out.write(b"null plugin instance");
        return Status::ERROR;
    }
    // SAFETY: as in `guarded`: the pointer came from `init::<E>` and the host holds
    // the instance lock exclusively for this call.
    let entry = unsafe { entry_mut::<E>(inst) };
    replying(out, |out| {
        entry.handle(
            from.as_slice(),
            kind.as_slice(),
            payload.as_slice(),
            trace.as_slice(),
            out,
        )
    })
}

/// Runs a message handler that writes its reply straight into `out`; a panic
/// becomes `Status::PANICKED` with its message after whatever was written.
fn replying(out: &mut OutBuf<'_>, f: impl FnOnce(&mut OutBuf<'_>) -> Status) -> Status {
    match catch_unwind(AssertUnwindSafe(|| f(&mut *out))) {
        Ok(status) => status,
        Err(p) => {
            out.write(panic_message(p.as_ref()).as_bytes());
            Status::PANICKED
        }
    }
}

extern "C" fn handle_shared<E: Entry>(
    inst: Instance,
    from: Bytes<'_>,
    kind: Bytes<'_>,
    payload: Bytes<'_>,
    trace: Bytes<'_>,
    out: &mut OutBuf<'_>,
) -> Status {
    if inst.is_null() {
        out.write(b"null plugin instance");
        return Status::ERROR;
    }
    // SAFETY: the pointer came from `init::<E>` and is not shut down (the host holds
    // the instance lock shared); only the `shared` field is read, which nothing
    // writes after `init`.
    let shared = unsafe { &*std::ptr::addr_of!((*(inst as *const Hosting<E>)).shared) };
    let Some(shared) = shared else {
        return Status::UNKNOWN_KIND;
    };
    replying(out, |out| {
        shared.handle(
            from.as_slice(),
            kind.as_slice(),
            payload.as_slice(),
            trace.as_slice(),
            out,
        )
    })
}

extern "C" fn quiesce<E: Entry>(inst: Instance, deadline_ms: u64, err: &mut OutBuf<'_>) -> Status {
    guarded::<E>(inst, err, |e, out| unit_result(e.quiesce(deadline_ms), out))
}

extern "C" fn resume<E: Entry>(inst: Instance, err: &mut OutBuf<'_>) -> Status {
    guarded::<E>(inst, err, |e, out| unit_result(e.resume(), out))
}

extern "C" fn snapshot<E: Entry>(inst: Instance, out: &mut OutBuf<'_>) -> Status {
    guarded::<E>(inst, out, |e, out| {
        let mut state = Vec::new();
        match e.snapshot(&mut OutBuf::new(&mut state)) {
            Ok(()) => {
                out.write(&state);
                Status::OK
            }
            Err(msg) => {
                out.write(msg.as_bytes());
                Status::ERROR
            }
        }
    })
}

extern "C" fn restore<E: Entry>(
    inst: Instance,
    state: Bytes<'_>,
    from_version: u32,
    err: &mut OutBuf<'_>,
) -> Status {
    guarded::<E>(inst, err, |e, out| {
        unit_result(e.restore(state.as_slice(), from_version), out)
    })
}

extern "C" fn metrics<E: Entry>(inst: Instance, out: &mut OutBuf<'_>) -> Status {
    guarded::<E>(inst, out, |e, out| {
        let mut text = Vec::new();
        match e.metrics(&mut OutBuf::new(&mut text)) {
            Ok(()) => {
                out.write(&text);
                Status::OK
            }
            Err(msg) => {
                out.write(msg.as_bytes());
                Status::ERROR
            }
        }
    })
}

extern "C" fn shutdown<E: Entry>(inst: Instance) {
    if inst.is_null() {
        return;
    }
    // SAFETY: the pointer came from `Box::into_raw` in `init::<E>`; the host calls
    // `shutdown` once, last, and never uses the instance afterwards.
    let hosting = unsafe { Box::from_raw(inst as *mut Hosting<E>) };
    // A panic while shutting down cannot be reported anywhere useful; the
    // instance is gone either way.
    let _ = catch_unwind(AssertUnwindSafe(|| hosting.entry.shutdown()));
}

/// A descriptor header, for hand-built descriptors in tests of the loader.
pub const fn header(magic: u64, abi_version: u32) -> DescriptorHeader {
    DescriptorHeader {
        magic,
        abi_version,
        size: std::mem::size_of::<PluginDescriptor>() as u32,
    }
}
