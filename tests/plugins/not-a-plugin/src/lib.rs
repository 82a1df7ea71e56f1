//! A valid shared object that is not a kubernel plugin (no descriptor symbol).

/// Adds two numbers; exists only so the library exports something.
#[no_mangle]
#[allow(unsafe_code)]
pub extern "C" fn not_a_plugin_add(a: u32, b: u32) -> u32 {
    a.wrapping_add(b)
}
