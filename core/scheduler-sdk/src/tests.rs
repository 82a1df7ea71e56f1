//! Round trips through the descriptor's `extern "C"` functions, in process.

use std::collections::HashMap;
use std::ffi::c_void;

use crate::abi::{code, effect, point, Descriptor, ErrBuf, KeyValue, Str, StringTable};
use crate::host::{cycle_input, NodeColumns, PodData};
use crate::*;

struct Table(Vec<&'static str>, HashMap<&'static str, u32>);

impl Table {
    fn new(strings: &[&'static str]) -> Self {
        let map = strings.iter().enumerate().map(|(i, s)| (*s, i as u32));
        Table(strings.to_vec(), map.collect())
    }
}

impl StringTable for Table {
    fn lookup(&self, s: &str) -> Option<u32> {
        self.1.get(s).copied()
    }
    fn get(&self, id: u32) -> &str {
        self.0.get(id as usize).copied().unwrap_or("")
    }
}

/// Scores by free pod slots; panics for a pod named `boom`.
struct FreeSlots;

impl Plugin for FreeSlots {
    const NAME: &'static str = "FreeSlots";
    fn new(args: &str) -> Result<Self, String> {
        if args == "bad" {
            return Err("bad args".into());
        }
        Ok(FreeSlots)
    }
}

impl ScorePlugin for FreeSlots {
    fn score(&self, c: &Cycle<'_>, out: &mut [i64]) -> Result<(), String> {
        assert!(c.pod.name != "boom", "asked to explode");
        for (s, &n) in out.iter_mut().zip(c.candidates) {
            let n = n as usize;
            *s = 100 - 100 * c.nodes.pod_count[n] / c.nodes.allocatable_pods[n];
        }
        Ok(())
    }
}

/// Rejects nodes without the `zone` label and nodes with a NoSchedule taint.
struct NeedsZone;

impl Plugin for NeedsZone {
    const NAME: &'static str = "NeedsZone";
    const REASONS: &'static [&'static str] = &["node(s) had no zone", "node(s) were tainted"];
    fn new(_args: &str) -> Result<Self, String> {
        Ok(NeedsZone)
    }
}

impl FilterPlugin for NeedsZone {
    fn filter(&self, c: &Cycle<'_>, out: &mut [Verdict]) -> Result<(), String> {
        let zone = c.lookup("zone");
        for (v, &n) in out.iter_mut().zip(c.candidates) {
            if zone.and_then(|z| c.nodes.label(n, z)).is_none() {
                *v = Verdict {
                    code: Verdict::UNRESOLVABLE,
                    reason: 0,
                };
            } else if c
                .nodes
                .taints(n)
                .iter()
                .any(|t| t.effect == effect::NO_SCHEDULE)
            {
                *v = Verdict {
                    code: Verdict::UNSCHEDULABLE,
                    reason: 1,
                };
            }
        }
        Ok(())
    }
}

static SCORER: Descriptor = export::descriptor::<FreeSlots>(
    "1.0.0",
    point::SCORE,
    export::no_filter,
    export::score::<FreeSlots>,
);
static FILTER: Descriptor = export::descriptor::<NeedsZone>(
    "1.0.0",
    point::FILTER,
    export::filter::<NeedsZone>,
    export::no_score,
);

struct Fixture {
    cols: Vec<Vec<i64>>,
    label_offsets: Vec<u32>,
    labels: Vec<LabelPair>,
    taint_offsets: Vec<u32>,
    taints: Vec<TaintEntry>,
    strings: Table,
}

/// Three nodes: 0 in zone a, 1 in zone b with a NoSchedule taint, 2 without a zone.
fn fixture() -> Fixture {
    let pods = vec![0, 5, 10];
    let alloc = vec![10, 10, 10];
    let zero = vec![0; 3];
    Fixture {
        cols: vec![
            zero.clone(),
            zero.clone(),
            alloc,
            zero.clone(),
            zero.clone(),
            pods,
            zero.clone(),
            zero,
        ],
        label_offsets: vec![0, 1, 2, 2],
        labels: vec![
            LabelPair { key: 0, value: 1 },
            LabelPair { key: 0, value: 2 },
        ],
        taint_offsets: vec![0, 0, 1, 1],
        taints: vec![TaintEntry {
            key: 3,
            value: 4,
            effect: effect::NO_SCHEDULE,
        }],
        strings: Table::new(&["zone", "a", "b", "dedicated", ""]),
    }
}

impl Fixture {
    fn columns(&self) -> NodeColumns<'_> {
        let c = &self.cols;
        NodeColumns {
            allocatable_milli_cpu: &c[0],
            allocatable_memory: &c[1],
            allocatable_pods: &c[2],
            requested_milli_cpu: &c[3],
            requested_memory: &c[4],
            pod_count: &c[5],
            non_zero_milli_cpu: &c[6],
            non_zero_memory: &c[7],
            label_offsets: &self.label_offsets,
            labels: &self.labels,
            taint_offsets: &self.taint_offsets,
            taints: &self.taints,
        }
    }
}

fn pod<'a>(name: &'a str, labels: &'a [KeyValue<'a>]) -> PodData<'a> {
    PodData {
        namespace: "default",
        name,
        milli_cpu: 100,
        memory: 1,
        non_zero_milli_cpu: 100,
        non_zero_memory: 1,
        priority: 0,
        labels,
        group: &[],
    }
}

fn create(desc: &Descriptor, args: &str) -> Result<*mut c_void, String> {
    let mut inst = std::ptr::null_mut();
    let mut storage = [0u8; 256];
    let mut err = ErrBuf::new(&mut storage);
    match (desc.create)(Str::borrowed(args), &mut inst, &mut err) {
        code::OK => Ok(inst),
        _ => Err(err.message()),
    }
}

#[test]
fn score_should_write_one_score_per_candidate() {
    let f = fixture();
    let candidates = [2u32, 0, 1];
    let input = cycle_input(&f.columns(), &candidates, &pod("p", &[]), &f.strings).expect("input");
    let inst = create(&SCORER, "null").expect("create");
    let mut out = vec![-1i64; 3];
    let mut storage = [0u8; 256];
    let mut err = ErrBuf::new(&mut storage);
    let rc = (SCORER.score)(inst, &input, out.as_mut_ptr(), &mut err);
    assert_eq!(rc, code::OK, "{}", err.message());
    // 100 - 100 * pods / allocatable pods, for nodes 2, 0, 1.
    assert_eq!(out, vec![0, 100, 50]);
    (SCORER.destroy)(inst);
}

#[test]
fn score_should_turn_a_panic_into_an_error_code() {
    let f = fixture();
    let input = cycle_input(&f.columns(), &[0], &pod("boom", &[]), &f.strings).expect("input");
    let inst = create(&SCORER, "null").expect("create");
    let mut out = [0i64];
    let mut storage = [0u8; 256];
    let mut err = ErrBuf::new(&mut storage);
    let rc = (SCORER.score)(inst, &input, out.as_mut_ptr(), &mut err);
    assert_eq!(rc, code::PANICKED);
    assert_eq!(err.message(), "panicked: asked to explode");
    let rc = (SCORER.filter)(inst, &input, std::ptr::null_mut(), &mut err);
    assert_eq!(rc, code::UNSUPPORTED);
    (SCORER.destroy)(inst);
}

#[test]
fn create_should_report_the_plugins_error() {
    assert_eq!(create(&SCORER, "bad").err().as_deref(), Some("bad args"));
}

#[test]
fn filter_should_read_interned_labels_and_taints() {
    let f = fixture();
    let labels = [KeyValue::new("app", "web")];
    let p = pod("p", &labels);
    let input = cycle_input(&f.columns(), &[0, 1, 2], &p, &f.strings).expect("input");
    let inst = create(&FILTER, "null").expect("create");
    let mut out = vec![Verdict::default(); 3];
    let mut storage = [0u8; 256];
    let mut err = ErrBuf::new(&mut storage);
    let rc = (FILTER.filter)(inst, &input, out.as_mut_ptr(), &mut err);
    assert_eq!(rc, code::OK, "{}", err.message());
    assert_eq!(out[0], Verdict::default());
    assert_eq!(
        out[1],
        Verdict {
            code: Verdict::UNSCHEDULABLE,
            reason: 1
        }
    );
    assert_eq!(
        out[2],
        Verdict {
            code: Verdict::UNRESOLVABLE,
            reason: 0
        }
    );
    assert_eq!((FILTER.reason)(1).as_str(), "node(s) were tainted");
    assert_eq!((FILTER.reason)(7).as_str(), "");
    assert_eq!(FILTER.name.as_str(), "NeedsZone");
    (FILTER.destroy)(inst);
}

#[test]
fn cycle_input_should_refuse_columns_of_different_lengths() {
    let mut f = fixture();
    f.cols[4].pop();
    let err = cycle_input(&f.columns(), &[], &pod("p", &[]), &f.strings)
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("requested_memory has 2 entries"),
        "{err}"
    );
}

#[test]
fn errbuf_should_truncate_at_a_char_boundary() {
    let mut storage = [0u8; 4];
    let mut err = ErrBuf::new(&mut storage);
    err.write("aé€b");
    assert_eq!(err.message(), "aé");
}
