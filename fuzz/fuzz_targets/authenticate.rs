//! Fuzzes authentication: arbitrary bytes as Authorization headers, bearer tokens,
//! service-account JWTs, bootstrap tokens, token files and client certificates.
//!
//! The paths are in `kubernel_apiserver::fuzzing::authenticate_credentials`, shared
//! with the stable test `plugins/apiserver/tests/fuzz_authentication.rs` that CI runs.

#![no_main]

use std::sync::OnceLock;

use kubernel_apiserver::fuzzing::{authenticate_credentials, AuthFixture};
use libfuzzer_sys::fuzz_target;

fn fixture() -> &'static AuthFixture {
    static FIXTURE: OnceLock<AuthFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("kubernel-fuzz-auth-{}", std::process::id()));
        AuthFixture::new(&dir).unwrap_or_else(|e| panic!("auth fixture: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = authenticate_credentials(fixture(), data);
});
