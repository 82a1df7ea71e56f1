//! Loading the real example `.so` files, refusing broken ones, and containing misbehaving plugins.
//!
//! The example libraries come from `cargo build --workspace` (the project's test
//! script runs it first); when they are missing, the tests build them with `$CARGO`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use kubernel_scheduler_sdk::abi::{point, Descriptor};
use kubernel_scheduler_sdk::{
    export, Cycle, FilterPlugin as SdkFilter, Plugin as SdkPlugin, ScorePlugin as SdkScore, Verdict,
};

use super::*;
use crate::config::SchedulerConfig;
use crate::core::{ScheduleOutcome, Scheduler};
use crate::plugins::in_tree_registry;
use crate::testing::{NodeBuilder, PodBuilder};

/// `target/<profile>` of this test binary (`target/<profile>/deps/<test>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// Path of an example plugin library, building it when absent.
fn example(crate_name: &str) -> PathBuf {
    let path = target_dir().join(format!("lib{}.so", crate_name.replace('-', "_")));
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", crate_name])
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "building {crate_name} failed; run `cargo build --workspace` first"
        );
    }
    assert!(
        path.exists(),
        "{} missing; run `cargo build --workspace` first",
        path.display()
    );
    path
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn scheduler(config: &str, scratch_dir: &Path) -> Scheduler {
    let config = SchedulerConfig::from_toml(config, "test.toml").expect("config");
    let mut registry = in_tree_registry();
    register_external(&mut registry, &config.external_plugins, scratch_dir).expect("load");
    Scheduler::new(&config, &registry, &prometheus::Registry::new())
        .expect("scheduler")
        .with_seed(3)
}

/// Schedules every queued pod, binding each on its node at once.
fn run_all(s: &mut Scheduler, t: Instant) -> Vec<String> {
    let mut placed = Vec::new();
    while let Some(outcome) = s.schedule_one(t) {
        let ScheduleOutcome::Scheduled(sp) = outcome else {
            panic!("{outcome:?}")
        };
        let mut bound = (*sp.pod.pod).clone();
        if let Some(spec) = bound.spec.as_mut() {
            spec.node_name = Some(sp.node.clone());
        }
        placed.push(sp.node.clone());
        s.finish_binding(*sp, Ok(()), t);
        s.on_pod_add(Arc::new(bound), t).expect("bound");
    }
    placed
}

#[test]
fn binpack_so_should_pack_pods_onto_the_fullest_node() {
    let dir = scratch();
    let path = example("kubernel-scheduler-binpack");
    let config = format!(
        "[[profiles]]\nplugins.score.disabled = [{{ name = \"*\" }}]\nplugins.score.enabled = [{{ name = \"Binpack\" }}]\n\
         [[external_plugins]]\nname = \"Binpack\"\npath = {:?}\n",
        path.display().to_string()
    );
    let mut s = scheduler(&config, dir.path());
    let t = Instant::now();
    for n in ["n1", "n2", "n3"] {
        s.on_node_add(
            Arc::new(NodeBuilder::new(n).cpu("4").memory("4Gi").build()),
            t,
        )
        .expect("node");
    }
    s.on_pod_add(
        Arc::new(
            PodBuilder::new("seed")
                .cpu("1")
                .memory("1Gi")
                .node("n2")
                .pod(),
        ),
        t,
    )
    .expect("pod");
    for i in 0..3 {
        s.on_pod_add(
            Arc::new(
                PodBuilder::new(&format!("p{i}"))
                    .cpu("1")
                    .memory("1Gi")
                    .pod(),
            ),
            t,
        )
        .expect("pod");
    }
    assert_eq!(run_all(&mut s, t), vec!["n2", "n2", "n2"]);
}

#[test]
fn zone_spread_so_should_spread_a_group_over_zones() {
    let dir = scratch();
    let path = example("kubernel-scheduler-zone-spread");
    let config = format!(
        "[[profiles]]\nplugins.score.disabled = [{{ name = \"*\" }}]\nplugins.score.enabled = [{{ name = \"ZoneSpread\" }}]\n\
         [[profiles.plugin_config]]\nname = \"ZoneSpread\"\nargs = {{ label = \"zone\" }}\n\
         [[external_plugins]]\nname = \"ZoneSpread\"\npath = {:?}\n",
        path.display().to_string()
    );
    let mut s = scheduler(&config, dir.path());
    let t = Instant::now();
    for (n, z) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b")] {
        s.on_node_add(Arc::new(NodeBuilder::new(n).label("zone", z).build()), t)
            .expect("node");
    }
    for i in 0..4 {
        let pod = PodBuilder::new(&format!("w{i}")).label("app", "web").pod();
        s.on_pod_add(Arc::new(pod), t).expect("pod");
    }
    // After the first pod, the other zone scores 100 and the first 0·1/3 + 0·2/3:
    // the group alternates zones and never doubles up on a node.
    let mut placed = run_all(&mut s, t);
    placed.sort();
    assert_eq!(placed, vec!["a1", "a2", "b1", "b2"]);
}

#[test]
fn loading_the_same_path_twice_should_give_two_libraries() {
    let dir = scratch();
    let path = example("kubernel-scheduler-binpack");
    let a = ExternalLibrary::load(&path, dir.path()).expect("first");
    let b = ExternalLibrary::load(&path, dir.path()).expect("second, through a copy");
    assert_eq!(
        (a.plugin_name.as_str(), b.plugin_name.as_str()),
        ("Binpack", "Binpack")
    );
    assert!(
        !std::ptr::eq(a.desc, b.desc),
        "the copy is a distinct mapping"
    );
    assert!(a.has_score() && !a.has_filter());
}

/// A copy of `lib` with the bytes at the first occurrence of `find` (that `ok` accepts) replaced.
fn patched(
    lib: &Path,
    dir: &Path,
    find: &[u8],
    ok: impl Fn(&[u8], usize) -> bool,
    replace: &[u8],
) -> PathBuf {
    let mut bytes = std::fs::read(lib).expect("read");
    let at = (0..bytes.len() - find.len())
        .find(|&i| &bytes[i..i + find.len()] == find && ok(&bytes, i))
        .expect("pattern in library");
    bytes[at..at + replace.len()].copy_from_slice(replace);
    let out = dir.join("patched.so");
    std::fs::write(&out, bytes).expect("write");
    out
}

#[test]
fn a_library_with_another_abi_version_should_be_refused_with_a_clear_error() {
    let dir = scratch();
    let lib = example("kubernel-scheduler-binpack");
    // The descriptor header: magic (little-endian), ABI version 1, size.
    let magic = kubernel_scheduler_sdk::abi::MAGIC.to_le_bytes();
    let size = (std::mem::size_of::<Descriptor>() as u32).to_le_bytes();
    let header_follows =
        |b: &[u8], i: usize| b[i + 8..i + 12] == 1u32.to_le_bytes() && b[i + 12..i + 16] == size;
    let mut replacement = magic.to_vec();
    replacement.extend_from_slice(&99u32.to_le_bytes());
    let bad = patched(&lib, dir.path(), &magic, header_follows, &replacement);
    let err = ExternalLibrary::load(&bad, dir.path()).expect_err("refused");
    assert!(
        matches!(
            err,
            LoadError::AbiMismatch {
                plugin: 99,
                host: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().ends_with("patched.so: scheduler plugin ABI version mismatch: plugin has ABI 99, this scheduler has ABI 1; rebuild the plugin against kubernel-scheduler-sdk 0.1.0"),
        "{err}"
    );
}

#[test]
fn a_library_without_the_descriptor_should_be_refused() {
    let dir = scratch();
    let lib = example("kubernel-scheduler-binpack");
    let bad = patched(
        &lib,
        dir.path(),
        b"KUBERNEL_SCHEDULER_PLUGIN\0",
        |_, _| true,
        b"KUBERNEL_SCHEDULER_PLUGIX",
    );
    let err = ExternalLibrary::load(&bad, dir.path()).expect_err("refused");
    assert!(
        err.to_string()
            .ends_with("not a kubernel scheduler plugin: no symbol KUBERNEL_SCHEDULER_PLUGIN"),
        "{err}"
    );
    std::fs::write(dir.path().join("text.so"), "hello").expect("write");
    let err = ExternalLibrary::load(&dir.path().join("text.so"), dir.path()).expect_err("refused");
    assert!(
        err.to_string()
            .ends_with("text.so: not an ELF shared object"),
        "{err}"
    );
    let err =
        ExternalLibrary::load(&dir.path().join("missing.so"), dir.path()).expect_err("refused");
    assert!(
        err.to_string().contains("missing.so: No such file"),
        "{err}"
    );
}

/// Misbehaves on request: panics for pods named `boom`, returns 250 for `big`, a bad verdict for `odd`.
struct Misbehaving;

impl SdkPlugin for Misbehaving {
    const NAME: &'static str = "Misbehaving";
    const REASONS: &'static [&'static str] = &["node(s) were odd"];
    fn new(_args: &str) -> Result<Self, String> {
        Ok(Misbehaving)
    }
}

impl SdkScore for Misbehaving {
    fn score(&self, c: &Cycle<'_>, out: &mut [i64]) -> Result<(), String> {
        assert!(c.pod.name != "boom", "kaboom");
        out.fill(if c.pod.name == "big" { 250 } else { 50 });
        Ok(())
    }
}

impl SdkFilter for Misbehaving {
    fn filter(&self, c: &Cycle<'_>, out: &mut [Verdict]) -> Result<(), String> {
        let code = if c.pod.name == "odd" {
            7
        } else {
            Verdict::PASS
        };
        out.fill(Verdict { code, reason: 0 });
        Ok(())
    }
}

static MISBEHAVING: Descriptor = export::descriptor::<Misbehaving>(
    "0.0.1",
    point::FILTER | point::SCORE,
    export::filter::<Misbehaving>,
    export::score::<Misbehaving>,
);

#[test]
fn a_misbehaving_plugin_should_fail_the_attempt_not_the_scheduler() {
    let config = SchedulerConfig::from_toml(
        "[[profiles]]\nplugins.score.enabled = [{ name = \"Misbehaving\" }]\nplugins.filter.enabled = [{ name = \"Misbehaving\" }]",
        "test.toml",
    )
    .expect("config");
    let mut registry = in_tree_registry();
    let lib = ExternalLibrary::from_static(&MISBEHAVING);
    registry
        .register("Misbehaving", lib.factory("Misbehaving"))
        .expect("register");
    let mut s =
        Scheduler::new(&config, &registry, &prometheus::Registry::new()).expect("scheduler");
    let t = Instant::now();
    for n in ["n1", "n2"] {
        s.on_node_add(Arc::new(NodeBuilder::new(n).build()), t)
            .expect("node");
    }
    let mut errors = Vec::new();
    for name in ["boom", "big", "odd"] {
        s.on_pod_add(Arc::new(PodBuilder::new(name).pod()), t)
            .expect("pod");
        match s.schedule_one(t) {
            Some(ScheduleOutcome::Error { message, .. }) => errors.push(message),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(
        errors[0],
        "running Score plugin \"Misbehaving\": plugin \"Misbehaving\" panicked: kaboom"
    );
    assert!(errors[1].starts_with("running Score plugin \"Misbehaving\": plugin \"Misbehaving\" returned score 250 for node \"n"), "{}", errors[1]);
    assert!(errors[2].starts_with("running \"Misbehaving\" filter plugin: plugin \"Misbehaving\" returned invalid filter verdict 7"), "{}", errors[2]);
    // Still running: a well-behaved pod schedules.
    s.on_pod_add(Arc::new(PodBuilder::new("fine").pod()), t)
        .expect("pod");
    assert!(matches!(
        s.schedule_one(t),
        Some(ScheduleOutcome::Scheduled(_))
    ));
}
