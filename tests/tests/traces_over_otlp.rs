//! With OTEL_EXPORTER_OTLP_ENDPOINT set, the kernel and every component plugin export
//! their spans over OTLP/HTTP: one `kubectl apply` of a Deployment reaches a loopback
//! collector as the apiserver's create (code 201), the deployment controller's
//! reconcile, the scheduling cycle of its pod and the kubelet's sync of that pod.
//! The W3C trace context crosses plugins: the API calls a reconcile makes are
//! children of its span (`traceparent` header), and a message sent over the bus
//! carries its sender's trace context in the envelope: the receiving plugin's
//! `bus_message` span is the sender's child, and the work it does, its own.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use kubernel_api::rest::ApiRequest;
use kubernel_e2e::{
    apiserver_lib, component_entry, free_port, kernel_section, plugin_entry, Kernel,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message as _;

/// (path, body) of one OTLP/HTTP post.
type Post = (String, Vec<u8>);

/// Accepts OTLP/HTTP posts on loopback and forwards (path, body) of each.
fn collector() -> Result<(String, mpsc::Receiver<Post>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || serve(stream, tx));
        }
    });
    Ok((endpoint, rx))
}

/// Answers the posts of one connection (exporters keep theirs open) with 200.
fn serve(stream: TcpStream, tx: mpsc::Sender<Post>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if reader
            .get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
        if tx.send((path, body)).is_err() {
            return;
        }
    }
}

#[test]
fn kernel_spans_should_be_exported_over_otlp() -> Result<()> {
    let (endpoint, received) = collector()?;
    let config = kernel_section() + &plugin_entry("counter", "counter");
    let mut k = Kernel::start(&config, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)])?;
    let status = k.terminate(Duration::from_secs(20))?;
    assert!(status.success(), "{}", k.logs());
    let (path, body) = received.recv_timeout(Duration::from_secs(10))?;
    assert_eq!(path, "/v1/traces");
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("load_plugin") && text.contains("drain_plugins"),
        "span names in the export"
    );
    assert!(text.contains("kubernel"), "service name in the resource");
    Ok(())
}

/// One exported span, flattened: its name, the `kubernel.plugin` of its resource,
/// its attributes as text, and its trace and parent span ids.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    plugin: String,
    attributes: BTreeMap<String, String>,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
}

impl Span {
    fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

fn decode(body: &[u8]) -> Result<Vec<Span>> {
    let request = ExportTraceServiceRequest::decode(body).context("decoding an OTLP export")?;
    let mut spans = Vec::new();
    for rs in request.resource_spans {
        let resource = attributes(&rs.resource.map(|r| r.attributes).unwrap_or_default());
        assert_eq!(
            resource.get("service.name").map(String::as_str),
            Some("kubernel"),
            "service name of every export"
        );
        let plugin = resource.get("kubernel.plugin").cloned().unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                spans.push(Span {
                    name: s.name,
                    plugin: plugin.clone(),
                    attributes: attributes(&s.attributes),
                    trace_id: s.trace_id,
                    span_id: s.span_id,
                    parent_span_id: s.parent_span_id,
                });
            }
        }
    }
    Ok(spans)
}

/// What a test waits for, and how to recognise the span.
type Wanted = (&'static str, fn(&Span) -> bool);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The trace context the test's own bus request carries.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// The apiserver's span of the `api.Request` the test sent over the bus: under the
/// apiserver's `bus_message` span, which is under the test's (remote) span.
fn bus_hop_call(spans: &[Span]) -> Option<&Span> {
    let hops: Vec<&Span> = spans
        .iter()
        .filter(|s| {
            s.plugin == "apiserver"
                && s.name == "bus api.Request"
                && s.attr("kind") == "api.Request"
                && s.attr("from") == "admin"
                && hex(&s.trace_id) == TRACE_ID
                && hex(&s.parent_span_id) == PARENT_ID
        })
        .collect();
    spans.iter().find(|s| {
        s.plugin == "apiserver"
            && s.attr("resource") == "configmaps"
            && hops
                .iter()
                .any(|h| h.trace_id == s.trace_id && h.span_id == s.parent_span_id)
    })
}

/// Spans that must arrive with their parents: what, and the finder.
type Chained = (&'static str, for<'a> fn(&'a [Span]) -> Option<&'a Span>);

const CHAINED: [Chained; 2] = [
    (
        "an API call of the deployment controller under its reconcile",
        child_call,
    ),
    (
        "the apiserver's call for a bus request under its bus_message span, under the sender's",
        bus_hop_call,
    ),
];

/// The apiserver's span of the ReplicaSet create that the deployment controller
/// made while reconciling the Deployment: same trace, parented by the reconcile
/// through the bus hop (the controller-manager calls over the kernel bus).
fn child_call(spans: &[Span]) -> Option<&Span> {
    let reconciles: Vec<&Span> = spans
        .iter()
        .filter(|s| s.attr("controller") == "deployment" && s.attr("key") == "default/traced")
        .collect();
    let under_reconcile = |s: &Span| {
        reconciles
            .iter()
            .any(|r| r.trace_id == s.trace_id && r.span_id == s.parent_span_id)
    };
    let hops: Vec<&Span> = spans
        .iter()
        // Components send `api.Call`s: answered later, to their mailbox.
        .filter(|s| s.plugin == "apiserver" && s.name == "bus api.Call" && under_reconcile(s))
        .collect();
    spans.iter().find(|s| {
        s.plugin == "apiserver"
            && s.attr("verb") == "POST"
            && s.attr("resource") == "replicasets"
            && (under_reconcile(s)
                || hops
                    .iter()
                    .any(|h| h.trace_id == s.trace_id && h.span_id == s.parent_span_id))
    })
}

const NODES: usize = 2;

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: traced
spec:
  replicas: 1
  selector:
    matchLabels: {app: traced}
  template:
    metadata:
      labels: {app: traced}
    spec:
      containers:
      - name: c
        image: registry.k8s.io/pause:3.10
";

fn kubectl(kubeconfig: &std::path::Path, args: &[&str], stdin: &str) -> Result<String> {
    let cache = tempfile::tempdir()?;
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache.path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running kubectl (is it installed?)")?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn one_kubectl_apply_should_be_traced_through_every_component() -> Result<()> {
    let (endpoint, received) = collector()?;
    let port = free_port()?;
    let config = format!(
        "{}\n[[plugin]]\nname = \"apiserver\"\npath = \"{}\"\n[plugin.config]\nbind_address = \"127.0.0.1\"\nsecure_port = {port}\n{}{}{}",
        kernel_section(),
        apiserver_lib().display(),
        component_entry("controller-manager", "controller-manager", ""),
        component_entry("scheduler", "scheduler", ""),
        component_entry(
            "kubelet",
            "kubelet",
            &format!("runtime = \"sim\"\nnodes = {NODES}\nlease_renew_interval = \"1s\""),
        ),
    );
    // Short batches, so that spans arrive while the cluster runs.
    let mut k = Kernel::start(
        &config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    )?;
    let kubeconfig = k.data_dir().join("admin.kubeconfig");
    kubectl(&kubeconfig, &["apply", "-f", "-"], DEPLOYMENT)?;

    // A bus request carrying the sender's trace context in its envelope.
    let reply = k.ask_traced(
        "apiserver",
        &ApiRequest {
            method: "GET".into(),
            path: "/api/v1/namespaces/default/configmaps".into(),
            content_type: String::new(),
            accept: String::new(),
            body: Vec::new(),
        },
        &format!("00-{TRACE_ID}-{PARENT_ID}-01"),
    )?;
    assert_eq!(reply.status, 200);
    let wanted: [Wanted; 4] = [
        ("the apiserver's create of the Deployment (code 201)", |s| {
            s.plugin == "apiserver"
                && s.attr("verb") == "POST"
                && s.attr("resource") == "deployments"
                && s.attr("namespace") == "default"
                && s.attr("code") == "201"
        }),
        ("the deployment controller's reconcile", |s| {
            s.plugin == "controller-manager"
                && s.attr("controller") == "deployment"
                && s.attr("key") == "default/traced"
        }),
        ("the scheduling cycle of the Deployment's pod", |s| {
            s.plugin == "scheduler"
                && s.name == "scheduling_cycle"
                && s.attr("pod").starts_with("default/traced-")
                && s.attr("result") == "scheduled"
                && !s.attr("node").is_empty()
                && s.attributes.contains_key("filter_seconds")
                && s.attr("plugin_durations")
                    .contains("Filter/NodeResourcesFit=")
        }),
        ("the kubelet's sync of the Deployment's pod", |s| {
            s.plugin == "kubelet"
                && s.name == "pod_sync"
                && s.attr("pod").starts_with("default/traced-")
                && !s.attr("node").is_empty()
        }),
    ];
    let mut spans: Vec<Span> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !wanted.iter().all(|(_, f)| spans.iter().any(f))
        || CHAINED.iter().any(|(_, f)| f(&spans).is_none())
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok((path, body)) => {
                assert_eq!(path, "/v1/traces");
                spans.extend(decode(&body)?);
            }
            Err(_) => {
                let mut missing: Vec<&str> = wanted
                    .iter()
                    .filter(|(_, f)| !spans.iter().any(f))
                    .map(|(what, _)| *what)
                    .collect();
                missing.extend(
                    CHAINED
                        .iter()
                        .filter(|(_, f)| f(&spans).is_none())
                        .map(|(what, _)| *what),
                );
                let seen: std::collections::BTreeSet<(String, String)> = spans
                    .iter()
                    .map(|s| (s.plugin.clone(), s.name.clone()))
                    .collect();
                bail!(
                    "no span for {missing:?} within 30 s; spans seen (plugin, name): {seen:?}\n{}",
                    k.logs()
                );
            }
        }
    }
    let seen: BTreeMap<(String, String), usize> = spans.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry((s.plugin.clone(), s.name.clone())).or_default() += 1;
        m
    });
    eprintln!("{} spans received: {seen:?}", spans.len());
    if let Some(cycle) = spans.iter().find(|s| s.name == "scheduling_cycle") {
        eprintln!("scheduling cycle: {:?}", cycle.attributes);
    }
    let status = k.terminate(Duration::from_secs(20))?;
    assert!(status.success(), "{}", k.logs());
    Ok(())
}

#[test]
fn a_plugin_should_send_its_spans_when_it_stops() -> Result<()> {
    let (endpoint, received) = collector()?;
    let port = free_port()?;
    let config = format!(
        "{}\n[[plugin]]\nname = \"apiserver\"\npath = \"{}\"\n[plugin.config]\nbind_address = \"127.0.0.1\"\nsecure_port = {port}\n",
        kernel_section(),
        apiserver_lib().display(),
    );
    // Batches every 60 s: the create's span can only come with the flush at shutdown.
    let mut k = Kernel::start(
        &config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
        ],
    )?;
    let kubeconfig = k.data_dir().join("admin.kubeconfig");
    kubectl(&kubeconfig, &["create", "configmap", "flushed"], "")?;
    let status = k.terminate(Duration::from_secs(20))?;
    assert!(status.success(), "{}", k.logs());
    let mut spans = Vec::new();
    while let Ok((_, body)) = received.recv_timeout(Duration::from_secs(2)) {
        spans.extend(decode(&body)?);
    }
    assert!(
        spans.iter().any(|s| s.plugin == "apiserver"
            && s.attr("resource") == "configmaps"
            && s.attr("verb") == "POST"
            && s.attr("code") == "201"),
        "the create's span after the apiserver stopped; got {:?}",
        spans
            .iter()
            .map(|s| (&s.plugin, &s.name))
            .collect::<Vec<_>>()
    );
    Ok(())
}
