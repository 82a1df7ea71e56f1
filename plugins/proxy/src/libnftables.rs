//! nftables scripts run in this process through `libnftables.so.1` (shipped with the
//! nftables package, loaded at run time): no `nft` process to start per change, which
//! at 10,000 Services is most of an incremental sync (see the proxy benchmark). The
//! library is opened once and never closed; each [`Nft`] owns one context whose
//! output and errors are buffered, so nothing is printed.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr::NonNull;
use std::sync::OnceLock;

use libloading::Library;

/// The library's file name (its soname).
const LIBRARY: &str = "libnftables.so.1";

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxBuffer = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxGetBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// The entry points used, as declared in `nftables/libnftables.h`.
struct Functions {
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    buffer_output: CtxBuffer,
    buffer_error: CtxBuffer,
    get_error_buffer: CtxGetBuffer,
    run_cmd_from_buffer: RunCmd,
}

/// Loads the library once per process; the error says what is missing.
fn functions() -> Result<&'static Functions, String> {
    static LOADED: OnceLock<Result<Functions, String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            // SAFETY: libnftables runs no initialisers with preconditions; it stays
            // loaded for the life of the process (the Library is leaked below).
            let library = unsafe { Library::new(LIBRARY) }
                .map_err(|e| format!("loading {LIBRARY}: {e} (install nftables)"))?;
            let library: &'static Library = Box::leak(Box::new(library));
            // SAFETY: each symbol is looked up with the type of its C declaration in
            // libnftables.h; the library is never unloaded, so the pointers stay valid.
            unsafe {
                Ok(Functions {
                    ctx_new: *symbol(library, b"nft_ctx_new\0")?,
                    ctx_free: *symbol(library, b"nft_ctx_free\0")?,
                    buffer_output: *symbol(library, b"nft_ctx_buffer_output\0")?,
                    buffer_error: *symbol(library, b"nft_ctx_buffer_error\0")?,
                    get_error_buffer: *symbol(library, b"nft_ctx_get_error_buffer\0")?,
                    run_cmd_from_buffer: *symbol(library, b"nft_run_cmd_from_buffer\0")?,
                })
            }
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// # Safety
/// `T` must be the type of the symbol `name`.
unsafe fn symbol<T>(
    library: &'static Library,
    name: &[u8],
) -> Result<libloading::Symbol<'static, T>, String> {
    // SAFETY: the caller passes the symbol's true type.
    unsafe { library.get::<T>(name) }.map_err(|e| {
        format!(
            "{LIBRARY}: no {}: {e}",
            String::from_utf8_lossy(name).trim_end_matches('\0')
        )
    })
}

/// One libnftables context.
pub struct Nft {
    functions: &'static Functions,
    ctx: NonNull<c_void>,
}

// SAFETY: the context is only used through `&mut self`, so by one thread at a time;
// libnftables keeps no thread-local state for it.
unsafe impl Send for Nft {}

impl Nft {
    /// A new context (flags 0: the default, `NFT_CTX_DEFAULT`).
    pub fn new() -> Result<Nft, String> {
        let functions = functions()?;
        // SAFETY: nft_ctx_new takes flags by value and returns an owned context or NULL.
        let ctx = unsafe { (functions.ctx_new)(0) };
        let ctx = NonNull::new(ctx).ok_or_else(|| format!("{LIBRARY}: nft_ctx_new failed"))?;
        // SAFETY: ctx is a live context owned by this value.
        let buffered = unsafe {
            (functions.buffer_output)(ctx.as_ptr()) == 0
                && (functions.buffer_error)(ctx.as_ptr()) == 0
        };
        let nft = Nft { functions, ctx };
        if !buffered {
            return Err(format!("{LIBRARY}: cannot buffer its output"));
        }
        Ok(nft)
    }

    /// Runs `script` (nft's syntax) as one transaction; the error is nft's message.
    pub fn run(&mut self, script: &str) -> Result<(), String> {
        let script = CString::new(script).map_err(|_| "nft script with a NUL byte".to_string())?;
        // SAFETY: ctx is live and used by this thread only; script is NUL-terminated
        // and outlives the call.
        let rc =
            unsafe { (self.functions.run_cmd_from_buffer)(self.ctx.as_ptr(), script.as_ptr()) };
        // SAFETY: ctx is live; the returned buffer is NUL-terminated and valid until
        // the next call on this context, and is copied at once.
        let error = unsafe {
            let text = (self.functions.get_error_buffer)(self.ctx.as_ptr());
            if text.is_null() {
                String::new()
            } else {
                CStr::from_ptr(text).to_string_lossy().into_owned()
            }
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(format!(
                "nft: {}",
                error.lines().take(6).collect::<Vec<_>>().join(" | ")
            ))
        }
    }
}

impl Drop for Nft {
    fn drop(&mut self) {
        // SAFETY: ctx is owned by this value and not used after this.
        unsafe { (self.functions.ctx_free)(self.ctx.as_ptr()) }
    }
}
