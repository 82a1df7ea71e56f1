//! The fuzz target's decoding entry point on stable, as CI runs it: the committed seeds, then a fixed number of seeded pseudo-random and mutated inputs; no panic, and every refusal a 4xx `Status`.
//!
//! libFuzzer needs nightly (see `fuzz/README.md` for the real fuzzer); this test
//! runs the same [`decode_request_body`] over inputs made by a fixed-seed
//! generator, so a failure reproduces exactly. `KUBERNEL_FUZZ_INPUTS` changes the
//! number of generated inputs (default [`INPUTS`]).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use kubernel_apiserver::fuzzing::{decode_request_body, Outcome};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Generated inputs by default.
const INPUTS: usize = 20_000;
/// Seed of the generator.
const SEED: u64 = 0x6b75_6265_726e_656c;
/// Longest generated input, bytes.
const MAX_LEN: usize = 4096;

/// Fragments spliced into mutated inputs: JSON and YAML syntax, edge values,
/// patch operators and selector operators.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"\"",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"1e999",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"\n- ",
    b"\n  ",
    b": |\n",
    b"&a ",
    b"*a",
    b"!!binary ",
    b"---\n",
    b"...\n",
    b"? ",
    b"%YAML 1.2\n",
    b"\t",
    b"\xff",
    b"\xc3\x28",
    b"\"$patch\":\"delete\"",
    b"\"$retainKeys\":[]",
    b"\"$setElementOrder/containers\":[{}]",
    b"\"op\":\"move\"",
    b"\"path\":\"/~2\"",
    b"\"from\":\"/\"",
    b"!=",
    b"==",
    b" in (",
    b" notin (",
    b"!",
    b"metadata.name=",
    b"spec.containers",
    b"\"apiVersion\":\"v1\"",
    b"\"kind\":\"Pod\"",
    b"\"metadata\":{}",
    b"\"name\":\"\"",
    b"\"resources\":{\"limits\":{\"cpu\":\"1e3m\"}}",
    b"\"port\":65536",
];

fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/decode_body");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: cannot read the fuzz seeds: {e}", dir.display()));
    let mut seeds: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry.expect("a seed directory entry").path();
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: cannot read: {e}", path.display()));
            (path.display().to_string(), bytes)
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 10, "{}: too few seeds", dir.display());
    seeds
}

/// Installs a panic hook like the one the SDK installs in a plugin: one line, no
/// backtrace. The YAML scanner panics on some malformed bodies and the apiserver
/// catches those; with the default hook and `RUST_BACKTRACE` set, each one would
/// print and symbolize a backtrace, which takes most of this test's time.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let caught_by_the_apiserver = info
                .location()
                .is_some_and(|l| l.file().contains("libyaml-safer"));
            if !caught_by_the_apiserver {
                eprintln!("panicked: {info}");
            }
        }));
    });
}

/// Runs one input; fails naming it (as an escaped string) on a panic or on an
/// answer that is not a 4xx `Status`.
fn check(label: &str, input: &[u8]) -> Vec<Outcome> {
    let shown = || input.escape_ascii().to_string();
    let outcomes = catch_unwind(AssertUnwindSafe(|| decode_request_body(input)))
        .unwrap_or_else(|_| panic!("{label}: decoding panicked on b\"{}\"", shown()));
    for outcome in &outcomes {
        if let Err(e) = &outcome.result {
            let status = e.to_status();
            assert!(
                (400..500).contains(&e.code)
                    && status["kind"] == "Status"
                    && status["code"] == e.code,
                "{label}: {} answered {e} ({status}) for b\"{}\"",
                outcome.path,
                shown()
            );
        }
    }
    outcomes
}

/// A mutation of `base` (or a splice of it with `other`).
fn mutate(rng: &mut StdRng, base: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = if out.is_empty() {
            0
        } else {
            rng.random_range(0..out.len())
        };
        match rng.random_range(0..7) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.random_range(0..8),
            1 if !out.is_empty() => {
                out[at] = rng.random();
            }
            2 => {
                let end = (at + rng.random_range(1..=16)).min(out.len());
                out.drain(at..end);
            }
            3 => {
                let token = TOKENS[rng.random_range(0..TOKENS.len())];
                out.splice(at..at, token.iter().copied());
            }
            4 => out.truncate(at),
            5 if !other.is_empty() => {
                let from = rng.random_range(0..other.len());
                let end = (from + rng.random_range(1..=64)).min(other.len());
                out.splice(at..at, other[from..end].iter().copied());
            }
            _ => {
                let end = (at + rng.random_range(1..=8)).min(out.len());
                let copy: Vec<u8> = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
        }
    }
    out.truncate(MAX_LEN);
    out
}

/// Bytes drawn at random, half of them printable ASCII.
fn random_bytes(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.random_range(0..=512);
    let printable = rng.random_bool(0.5);
    (0..len)
        .map(|_| {
            if printable {
                rng.random_range(0x20..0x7f)
            } else {
                rng.random()
            }
        })
        .collect()
}

#[test]
fn decoding_should_answer_every_seed_and_generated_input_without_panicking() {
    quiet_panics();
    let seeds = seeds();
    for (name, bytes) in &seeds {
        let outcomes = check(name, bytes);
        // Each seed is something a client really sends: some path accepts it.
        assert!(
            outcomes.iter().any(|o| o.result.is_ok()),
            "{name}: no decoding path accepts the seed: {outcomes:#?}"
        );
    }

    let inputs = std::env::var("KUBERNEL_FUZZ_INPUTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(INPUTS);
    let mut rng = StdRng::seed_from_u64(SEED);
    let (mut accepted, mut refused) = (0usize, 0usize);
    for i in 0..inputs {
        let input = if rng.random_bool(0.25) {
            random_bytes(&mut rng)
        } else {
            let base = &seeds[rng.random_range(0..seeds.len())].1;
            let other = &seeds[rng.random_range(0..seeds.len())].1;
            mutate(&mut rng, base, other)
        };
        for outcome in check(&format!("generated input {i} (seed {SEED:#x})"), &input) {
            match outcome.result {
                Ok(()) => accepted += 1,
                Err(_) => refused += 1,
            }
        }
    }
    println!("{inputs} generated inputs: {accepted} paths accepted, {refused} refused with a 4xx");
    assert!(
        refused > 0 && accepted > 0,
        "the generator reaches both answers"
    );
}

#[test]
fn decoding_should_refuse_garbage_create_bodies_with_400() {
    quiet_panics();
    for garbage in [
        &b""[..],
        b"\x00\x01\x02\xff",
        b"{",
        b"[1,2,3]",
        b"\"just a string\"",
        b"key: [unclosed",
        b"- a\n- b\n",
        b"\xef\xbb\xbf{\"kind\":",
    ] {
        for outcome in check("garbage", garbage) {
            if outcome.path.starts_with("create ") {
                let e = outcome.result.expect_err(&outcome.path);
                assert_eq!(e.code, 400, "{}: {e} for {garbage:?}", outcome.path);
            }
        }
    }
}
