//! Protobuf bodies built field by field, decoded and compared with their JSON.

use super::*;

/// Appends field `n` as a length-delimited value.
fn bytes_field(out: &mut Vec<u8>, n: u32, value: &[u8]) {
    varint(out, u64::from(n) << 3 | 2);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn varint_field(out: &mut Vec<u8>, n: u32, value: u64) {
    varint(out, u64::from(n) << 3);
    varint(out, value);
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut type_meta = Vec::new();
    bytes_field(&mut type_meta, 1, api_version.as_bytes());
    bytes_field(&mut type_meta, 2, kind.as_bytes());
    let mut unknown = Vec::new();
    bytes_field(&mut unknown, 1, &type_meta);
    bytes_field(&mut unknown, 2, raw);
    bytes_field(&mut unknown, 3, b"");
    bytes_field(&mut unknown, 4, b"");
    let mut body = MAGIC.to_vec();
    body.extend(unknown);
    body
}

fn metadata(name: &str) -> Vec<u8> {
    let mut meta = Vec::new();
    bytes_field(&mut meta, 1, name.as_bytes());
    bytes_field(&mut meta, 2, b""); // generateName: empty, dropped
    let mut time = Vec::new();
    varint_field(&mut time, 1, GO_ZERO_TIME_SECONDS as u64);
    bytes_field(&mut meta, 8, &time); // creationTimestamp: Go's zero time, dropped
    meta
}

#[test]
fn decode_should_turn_a_configmap_into_its_json() {
    let mut raw = Vec::new();
    bytes_field(&mut raw, 1, &metadata("cm"));
    for (k, v) in [("a", "1"), ("b", "2")] {
        let mut entry = Vec::new();
        bytes_field(&mut entry, 1, k.as_bytes());
        bytes_field(&mut entry, 2, v.as_bytes());
        bytes_field(&mut raw, 2, &entry);
    }
    let json = decode(&envelope("v1", "ConfigMap", &raw)).expect("decodes");
    assert_eq!(
        json,
        serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm"},
            "data": {"a": "1", "b": "2"},
        })
    );
}

#[test]
fn decode_should_handle_quantities_int_or_strings_and_zero_replicas() {
    // Deployment{spec{replicas: 0, strategy{rollingUpdate{maxSurge: "25%"}}, template{spec{containers[{name, resources{requests{cpu: 100m}}}]}}}}
    let mut quantity = Vec::new();
    bytes_field(&mut quantity, 1, b"100m");
    let mut requests_entry = Vec::new();
    bytes_field(&mut requests_entry, 1, b"cpu");
    bytes_field(&mut requests_entry, 2, &quantity);
    let mut resources = Vec::new();
    bytes_field(&mut resources, 2, &requests_entry);
    let mut container = Vec::new();
    bytes_field(&mut container, 1, b"web");
    bytes_field(&mut container, 8, &resources);
    let mut pod_spec = Vec::new();
    bytes_field(&mut pod_spec, 2, &container);
    let mut template = Vec::new();
    bytes_field(&mut template, 2, &pod_spec);
    let mut surge = Vec::new();
    varint_field(&mut surge, 1, 1);
    bytes_field(&mut surge, 3, b"25%");
    let mut rolling = Vec::new();
    bytes_field(&mut rolling, 2, &surge);
    let mut strategy = Vec::new();
    bytes_field(&mut strategy, 2, &rolling);
    let mut spec = Vec::new();
    varint_field(&mut spec, 1, 0);
    bytes_field(&mut spec, 3, &template);
    bytes_field(&mut spec, 4, &strategy);
    let mut raw = Vec::new();
    bytes_field(&mut raw, 1, &metadata("d"));
    bytes_field(&mut raw, 2, &spec);
    let json = decode(&envelope("apps/v1", "Deployment", &raw)).expect("decodes");
    assert_eq!(json["spec"]["replicas"], 0, "{json}");
    assert_eq!(json["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    let c = &json["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["name"], "web");
    assert_eq!(c["resources"]["requests"]["cpu"], "100m");
}

#[test]
fn decode_should_name_what_is_wrong() {
    let no_magic = decode(b"{}").expect_err("not protobuf");
    assert!(no_magic.contains("magic"), "{no_magic}");
    let unknown = decode(&envelope("example.com/v1", "Widget", &[])).expect_err("no schema");
    assert!(unknown.contains("Widget"), "{unknown}");
    let mut truncated = envelope("v1", "ConfigMap", &metadata("x"));
    truncated.truncate(truncated.len() - 3);
    assert!(decode(&truncated).is_err());
    let mut deep = Vec::new();
    // A bad wire type inside the object.
    varint(&mut deep, 1 << 3 | 3);
    let bad = decode(&envelope("v1", "ConfigMap", &deep)).expect_err("wire type 3");
    assert!(bad.contains("wire type"), "{bad}");
}
