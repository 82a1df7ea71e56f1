//! Fuzzes request decoding: arbitrary bytes as create bodies, PATCH bodies and selectors; any panic is a bug.
//!
//! The paths an input goes through are in `kubernel_apiserver::fuzzing`, shared with
//! the stable test `plugins/apiserver/tests/fuzz_decoding.rs` that CI runs.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kubernel_apiserver::fuzzing::decode_request_body(data);
});
