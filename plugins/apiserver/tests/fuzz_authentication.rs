//! Garbage credentials on stable, as CI runs it: authentication headers, bearer
//! tokens, service-account JWTs, bootstrap tokens, token files and client
//! certificates made of seeds and fixed-seed pseudo-random mutations; no panic,
//! and every refusal the bare 401 a client gets (its reason stays in the log).
//!
//! `KUBERNEL_FUZZ_INPUTS` changes the number of generated inputs (default [`INPUTS`]).
//! The cargo-fuzz target `fuzz/fuzz_targets/authenticate.rs` runs the same entry point.

use std::panic::{catch_unwind, AssertUnwindSafe};

use kubernel_apiserver::fuzzing::{authenticate_credentials, AuthFixture};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Generated inputs by default.
const INPUTS: usize = 20_000;
/// Seed of the generator.
const SEED: u64 = 0x6175_7468_6e74_6963;

/// Credentials of every kind, well-formed or nearly.
fn seeds(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let ca = kubernel_pki::load_ca(dir).unwrap_or_else(|e| panic!("{e}"));
    let alice = kubernel_pki::issue_client(&ca, "alice", &["devs".to_string()], 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let der = der_of(&alice.cert_pem);
    vec![
        b"static-token".to_vec(),
        b"Bearer static-token".to_vec(),
        b"bearer  static-token ".to_vec(),
        b"Basic YWxpY2U6cGFzcw==".to_vec(),
        b"abcdef.0123456789abcdef".to_vec(),
        b"ABCDEF.0123456789abcdef".to_vec(),
        b"eyJhbGciOiJFUzI1NiIsImtpZCI6IngifQ.eyJpc3MiOiJodHRwczovL2t1YmVybmV0ZXMuZGVmYXVsdC5zdmMuY2x1c3Rlci5sb2NhbCIsInN1YiI6InN5c3RlbTpzZXJ2aWNlYWNjb3VudDpkZWZhdWx0OmRlZmF1bHQiLCJleHAiOjF9.c2ln".to_vec(),
        b"eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.".to_vec(),
        b"t1,alice,1001,\"dev,ops\"\n\"t2,bob".to_vec(),
        alice.cert_pem.into_bytes(),
        der,
        Vec::new(),
    ]
}

/// The DER inside a PEM certificate (base64 between the armour lines).
fn der_of(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body)
        .unwrap_or_else(|e| panic!("certificate base64: {e}"))
}

fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..rng.random_range(1..6) {
        let at = if out.is_empty() {
            0
        } else {
            rng.random_range(0..out.len())
        };
        match rng.random_range(0..5) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.random_range(0..8),
            1 if !out.is_empty() => {
                out.remove(at);
            }
            2 => out.insert(at, rng.random()),
            3 => out.truncate(at),
            _ => out.extend_from_slice(&[b'.', b' ', 0xff, b'=', b'\n'][..rng.random_range(1..5)]),
        }
    }
    out
}

#[test]
fn garbage_credentials_should_be_refused_without_panics_or_reasons() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let fixture = AuthFixture::new(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let seeds = seeds(dir.path());
    let inputs = std::env::var("KUBERNEL_FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(INPUTS);
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut accepted = 0;
    for n in 0..seeds.len() + inputs {
        let input = match seeds.get(n) {
            Some(seed) => seed.clone(),
            None if rng.random_bool(0.2) => (0..rng.random_range(0..512))
                .map(|_| rng.random())
                .collect(),
            None => {
                let seed = rng.random_range(0..seeds.len());
                mutate(&mut rng, &seeds[seed])
            }
        };
        let outcomes = catch_unwind(AssertUnwindSafe(|| {
            authenticate_credentials(&fixture, &input)
        }))
        .unwrap_or_else(|_| panic!("input {n} panicked: b\"{}\"", input.escape_ascii()));
        for outcome in outcomes {
            match outcome.result {
                Ok(()) => accepted += 1,
                Err(e) => {
                    let status = e.to_status();
                    assert_eq!(e.code, 401, "{}: {status}", outcome.path);
                    assert_eq!(
                        status["message"], "Unauthorized",
                        "{}: {status}",
                        outcome.path
                    );
                }
            }
        }
    }
    // The well-formed seeds get through (the static token, the certificate).
    assert!(accepted >= 3, "only {accepted} inputs accepted");
}
