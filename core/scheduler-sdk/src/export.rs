//! Plugin side: the traits a plugin implements and the `extern "C"` shims that export them.
//!
//! Every shim runs the plugin under `catch_unwind`: a panic becomes
//! [`code::PANICKED`] with its message in the host's error buffer, never an abort.

#![allow(unsafe_code)]
// The shims are the ABI's entry points: their pointer arguments are the host's
// arrays under the ABI contract, and the host calls them through plain
// `extern "C" fn` pointers, so they cannot be `unsafe fn`.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::any::Any;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::abi::{
    code, CycleInput, Descriptor, ErrBuf, FilterFn, ScoreFn, Str, Verdict, BUILD_RUSTC,
    BUILD_TARGET, SDK_VERSION,
};
use crate::view::Cycle;

/// Identity and construction of an out-of-tree scheduler plugin.
pub trait Plugin: Sized + Send + Sync + 'static {
    /// The name profiles enable the plugin by.
    const NAME: &'static str;
    /// Filter failure reasons (e.g. `node(s) were too hot`); a [`Verdict::reason`] indexes it.
    const REASONS: &'static [&'static str] = &[];
    /// Creates an instance from the profile's `args` for this plugin, as JSON text
    /// (`null` when none are configured).
    fn new(args: &str) -> Result<Self, String>;
}

/// A Score plugin: ranks every candidate node for one pod in one call.
pub trait ScorePlugin: Plugin {
    /// Writes one score in `0..=100` per candidate (`scores[i]` is for
    /// `cycle.candidates[i]`); `scores` starts zeroed. An error fails the pod's
    /// scheduling attempt (it is retried), not the scheduler.
    fn score(&self, cycle: &Cycle<'_>, scores: &mut [i64]) -> Result<(), String>;
}

/// A Filter plugin: decides for every candidate node whether one pod may run there.
pub trait FilterPlugin: Plugin {
    /// Writes one verdict per candidate; `verdicts` starts as all-pass.
    fn filter(&self, cycle: &Cycle<'_>, verdicts: &mut [Verdict]) -> Result<(), String>;
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked with a non-string payload".to_string()
    }
}

/// Runs `f`, mapping `Err` to [`code::ERROR`] and a panic to [`code::PANICKED`].
fn guarded(err: &mut ErrBuf, f: impl FnOnce() -> Result<(), String>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => code::OK,
        Ok(Err(msg)) => {
            err.write(&msg);
            code::ERROR
        }
        Err(payload) => {
            err.write(&panic_message(payload.as_ref()));
            code::PANICKED
        }
    }
}

/// `create` shim: boxes a new `T`.
pub extern "C" fn create<T: Plugin>(args: Str, inst: &mut *mut c_void, err: &mut ErrBuf) -> i32 {
    guarded(err, || {
        let args = std::str::from_utf8(args.as_bytes()).map_err(|e| format!("args: {e}"))?;
        let plugin = T::new(args)?;
        *inst = Box::into_raw(Box::new(plugin)) as *mut c_void;
        Ok(())
    })
}

/// Checks the instance pointer and wraps the input, for the filter and score shims.
///
/// # Safety
/// `inst` must be null or come from `create::<T>`; `input` must come from the host.
unsafe fn prepare<'a, T>(
    inst: *mut c_void,
    input: &'a CycleInput<'a>,
) -> Result<(&'a T, Cycle<'a>), String> {
    if inst.is_null() {
        return Err("null plugin instance".to_string());
    }
    // SAFETY: `inst` was made by `create::<T>` from a `Box<T>` and is only freed by
    // `destroy::<T>`, after the host's last call; plugins are `Sync`.
    let plugin = unsafe { &*(inst as *const T) };
    // SAFETY: the host built `input` with `host::cycle_input`.
    let cycle = unsafe { Cycle::from_input(input) }?;
    Ok((plugin, cycle))
}

/// `score` shim for a [`ScorePlugin`].
pub extern "C" fn score<T: ScorePlugin>(
    inst: *mut c_void,
    input: &CycleInput<'_>,
    out: *mut i64,
    err: &mut ErrBuf,
) -> i32 {
    guarded(err, || {
        // SAFETY: the host passes the instance it created and an input it built.
        let (plugin, cycle) = unsafe { prepare::<T>(inst, input) }?;
        let n = cycle.candidates.len();
        let scores: &mut [i64] = if n == 0 || out.is_null() {
            &mut []
        } else {
            // SAFETY: the host's output array has one entry per candidate and is not
            // otherwise borrowed during the call.
            unsafe { std::slice::from_raw_parts_mut(out, n) }
        };
        scores.fill(0);
        plugin.score(&cycle, scores)
    })
}

/// `filter` shim for a [`FilterPlugin`].
pub extern "C" fn filter<T: FilterPlugin>(
    inst: *mut c_void,
    input: &CycleInput<'_>,
    out: *mut Verdict,
    err: &mut ErrBuf,
) -> i32 {
    guarded(err, || {
        // SAFETY: the host passes the instance it created and an input it built.
        let (plugin, cycle) = unsafe { prepare::<T>(inst, input) }?;
        let n = cycle.candidates.len();
        let verdicts: &mut [Verdict] = if n == 0 || out.is_null() {
            &mut []
        } else {
            // SAFETY: as in `score`.
            unsafe { std::slice::from_raw_parts_mut(out, n) }
        };
        verdicts.fill(Verdict::default());
        plugin.filter(&cycle, verdicts)
    })
}

/// `score` entry of a plugin without a Score extension point.
pub extern "C" fn no_score(
    _inst: *mut c_void,
    _input: &CycleInput<'_>,
    _out: *mut i64,
    err: &mut ErrBuf,
) -> i32 {
    err.write("this plugin does not implement score");
    code::UNSUPPORTED
}

/// `filter` entry of a plugin without a Filter extension point.
pub extern "C" fn no_filter(
    _inst: *mut c_void,
    _input: &CycleInput<'_>,
    _out: *mut Verdict,
    err: &mut ErrBuf,
) -> i32 {
    err.write("this plugin does not implement filter");
    code::UNSUPPORTED
}

/// `reason` shim: `T::REASONS[index]`, or `""`.
pub extern "C" fn reason<T: Plugin>(index: u32) -> Str {
    match T::REASONS.get(index as usize) {
        Some(r) => Str::new(r),
        None => Str::new(""),
    }
}

/// `destroy` shim: drops the boxed `T`.
pub extern "C" fn destroy<T: Plugin>(inst: *mut c_void) {
    if inst.is_null() {
        return;
    }
    // A panic in `Drop` must not cross the boundary; the instance is gone either way.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: made by `create::<T>` with `Box::into_raw`; the host calls
        // `destroy` once, after its last call on the instance.
        drop(unsafe { Box::from_raw(inst as *mut T) });
    }));
}

/// The descriptor exporting `T`; used by [`crate::export_scheduler_plugin!`].
pub const fn descriptor<T: Plugin>(
    version: &'static str,
    points: u32,
    filter: FilterFn,
    score: ScoreFn,
) -> Descriptor {
    Descriptor {
        header: Descriptor::current_header(),
        sdk_version: Str::new(SDK_VERSION),
        rustc_version: Str::new(BUILD_RUSTC),
        target: Str::new(BUILD_TARGET),
        name: Str::new(T::NAME),
        version: Str::new(version),
        points,
        create: create::<T>,
        filter,
        score,
        reason: reason::<T>,
        destroy: destroy::<T>,
    }
}
