//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`),
//! decoded into the same JSON objects a JSON body gives.
//!
//! kubectl's typed generators (`kubectl create namespace|configmap|secret|deployment ...`)
//! send protobuf. The wire format is the `k8s\0` magic, then a `runtime.Unknown`
//! envelope whose `raw` field holds the object's message. Field numbers, JSON names
//! and types come from `schema.json`, generated from the upstream `generated.proto`
//! files by `scripts/gen-protobuf-schema`.

mod wire;

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};

use wire::{Reader, WireValue};

/// The magic prefix of every Kubernetes protobuf body.
const MAGIC: &[u8] = b"k8s\0";

/// Deepest message nesting accepted (the Kubernetes types nest well under this).
const MAX_DEPTH: usize = 64;

/// Fields whose zero value is meaningful (pointers in the Go types), kept when zero;
/// other zero scalars are dropped, as Go's `omitempty` JSON encoding does.
const KEEP_ZERO: &[&str] = &[
    "replicas",
    "value",
    "automountServiceAccountToken",
    "parallelism",
    "completions",
    "backoffLimit",
    "terminationGracePeriodSeconds",
    "suspend",
    "minReadySeconds",
];

#[derive(Deserialize)]
struct Schema {
    kinds: HashMap<String, String>,
    messages: HashMap<String, Vec<FieldSpec>>,
}

/// `[number, jsonName, "single"|"repeated"|"map", type, mapValueType?]`.
#[derive(Deserialize)]
struct FieldSpec(
    u32,
    String,
    String,
    String,
    #[serde(default)] Option<String>,
);

fn schema() -> Result<&'static Schema, String> {
    static SCHEMA: OnceLock<Result<Schema, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            serde_json::from_str(include_str!("schema.json"))
                .map_err(|e| format!("protobuf schema is corrupt: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Decodes a Kubernetes protobuf body into a JSON object with `apiVersion` and `kind`.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("protobuf body does not start with the k8s\\0 magic")?;
    let schema = schema()?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    let mut reader = Reader::new(rest);
    while let Some((number, value)) = reader.next_field()? {
        match (number, value) {
            (1, WireValue::Bytes(type_meta)) => {
                let mut tm = Reader::new(type_meta);
                while let Some((n, v)) = tm.next_field()? {
                    match (n, v) {
                        (1, WireValue::Bytes(b)) => api_version = utf8(b)?,
                        (2, WireValue::Bytes(b)) => kind = utf8(b)?,
                        _ => {}
                    }
                }
            }
            (2, WireValue::Bytes(b)) => raw = b,
            (3, WireValue::Bytes(b)) if !b.is_empty() => {
                return Err(format!(
                    "protobuf body: content encoding {:?} is not supported",
                    String::from_utf8_lossy(b)
                ))
            }
            _ => {}
        }
    }
    // Options kinds (DeleteOptions, ...) are meta/v1 messages registered in every group version.
    let meta_kind = format!("k8s.io.apimachinery.pkg.apis.meta.v1.{kind}");
    let message = schema
        .kinds
        .get(&format!("{api_version}/{kind}"))
        .or_else(|| kind.ends_with("Options").then_some(&meta_kind))
        .filter(|m| schema.messages.contains_key(m.as_str()))
        .ok_or_else(|| {
            format!("protobuf body: no protobuf schema for {kind} in version {api_version:?}")
        })?;
    let mut object = decode_message(schema, message, raw, 0)?;
    if let Value::Object(map) = &mut object {
        map.insert("apiVersion".into(), Value::String(api_version));
        map.insert("kind".into(), Value::String(kind));
    }
    Ok(object)
}

fn utf8(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "protobuf body: a string is not UTF-8".to_string())
}

/// Decodes one message of type `name` into JSON.
fn decode_message(
    schema: &Schema,
    name: &str,
    bytes: &[u8],
    depth: usize,
) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "protobuf body: nested deeper than {MAX_DEPTH} messages"
        ));
    }
    if let Some(special) = decode_special(name, bytes)? {
        return Ok(special);
    }
    let fields = schema
        .messages
        .get(name)
        .ok_or_else(|| format!("protobuf body: no schema for message {name}"))?;
    let mut out = Map::new();
    let mut reader = Reader::new(bytes);
    while let Some((number, value)) = reader.next_field()? {
        let Some(spec) = fields.iter().find(|f| f.0 == number) else {
            continue; // a field newer than our schema: ignored, as protobuf decoders do
        };
        let FieldSpec(_, json_name, label, typ, map_value) = spec;
        match label.as_str() {
            "map" => {
                let WireValue::Bytes(entry) = value else {
                    return Err(format!(
                        "protobuf body: {name}.{json_name}: map entry is not a message"
                    ));
                };
                let value_type = map_value.as_deref().unwrap_or("string");
                let (k, v) = decode_map_entry(schema, typ, value_type, entry, depth)?;
                let slot = out
                    .entry(json_name.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = slot {
                    m.insert(k, v);
                }
            }
            "repeated" => {
                let items = decode_repeated(schema, typ, value, depth)?;
                let slot = out
                    .entry(json_name.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(a) = slot {
                    a.extend(items);
                }
            }
            _ => {
                let v = decode_value(schema, typ, value, depth)
                    .map_err(|e| format!("{e} (field {name}.{json_name})"))?;
                if is_zero(&v) && !KEEP_ZERO.contains(&json_name.as_str()) {
                    continue;
                }
                if v.is_null() {
                    continue;
                }
                out.insert(json_name.clone(), v);
            }
        }
    }
    Ok(Value::Object(out))
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

fn decode_repeated(
    schema: &Schema,
    typ: &str,
    value: WireValue<'_>,
    depth: usize,
) -> Result<Vec<Value>, String> {
    let numeric = matches!(
        typ,
        "int32" | "int64" | "uint32" | "uint64" | "bool" | "double" | "float"
    );
    match value {
        WireValue::Bytes(packed) if numeric => {
            let mut r = Reader::new(packed);
            let mut out = Vec::new();
            while !r.is_empty() {
                let v = match typ {
                    "double" => WireValue::Fixed64(r.fixed64()?),
                    "float" => WireValue::Fixed32(r.fixed32()?),
                    _ => WireValue::Varint(r.varint()?),
                };
                out.push(scalar(typ, v)?);
            }
            Ok(out)
        }
        v => Ok(vec![decode_value(schema, typ, v, depth)?]),
    }
}

fn decode_map_entry(
    schema: &Schema,
    key_type: &str,
    value_type: &str,
    entry: &[u8],
    depth: usize,
) -> Result<(String, Value), String> {
    let mut key = String::new();
    let mut value: Option<Value> = None;
    let mut r = Reader::new(entry);
    while let Some((n, v)) = r.next_field()? {
        match n {
            1 => {
                key = match scalar(key_type, v)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                }
            }
            2 => value = Some(decode_value(schema, value_type, v, depth)?),
            _ => {}
        }
    }
    let value = value.unwrap_or_else(|| zero_of(value_type));
    Ok((key, value))
}

fn zero_of(typ: &str) -> Value {
    match typ {
        "string" | "bytes" => Value::String(String::new()),
        "bool" => Value::Bool(false),
        "int32" | "int64" | "uint32" | "uint64" => Value::from(0),
        "double" | "float" => Value::from(0.0),
        _ => Value::Object(Map::new()),
    }
}

fn decode_value(
    schema: &Schema,
    typ: &str,
    value: WireValue<'_>,
    depth: usize,
) -> Result<Value, String> {
    match value {
        WireValue::Bytes(b) if !is_scalar(typ) => decode_message(schema, typ, b, depth + 1),
        v => scalar(typ, v),
    }
}

fn is_scalar(typ: &str) -> bool {
    matches!(
        typ,
        "string" | "bytes" | "bool" | "int32" | "int64" | "uint32" | "uint64" | "double" | "float"
    )
}

fn scalar(typ: &str, value: WireValue<'_>) -> Result<Value, String> {
    Ok(match (typ, value) {
        ("string", WireValue::Bytes(b)) => Value::String(utf8(b)?),
        ("bytes", WireValue::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        ("bool", WireValue::Varint(v)) => Value::Bool(v != 0),
        ("int32", WireValue::Varint(v)) => Value::from(v as i64 as i32),
        ("int64", WireValue::Varint(v)) => Value::from(v as i64),
        ("uint32" | "uint64", WireValue::Varint(v)) => Value::from(v),
        ("double", WireValue::Fixed64(v)) => Value::from(f64::from_bits(v)),
        ("float", WireValue::Fixed32(v)) => Value::from(f64::from(f32::from_bits(v))),
        (typ, other) => {
            return Err(format!(
                "protobuf body: a {typ} field has wire type {}",
                other.wire_type()
            ))
        }
    })
}

/// Messages whose JSON form is not an object of their fields.
fn decode_special(name: &str, bytes: &[u8]) -> Result<Option<Value>, String> {
    const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.";
    let short = match name {
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => "Quantity",
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => "IntOrString",
        "k8s.io.apimachinery.pkg.runtime.RawExtension" => "RawExtension",
        n if n.starts_with(META) => &n[META.len()..],
        _ => return Ok(None),
    };
    if !matches!(
        short,
        "Quantity"
            | "IntOrString"
            | "RawExtension"
            | "Time"
            | "MicroTime"
            | "Duration"
            | "FieldsV1"
    ) {
        return Ok(None);
    }
    let mut ints: HashMap<u32, u64> = HashMap::new();
    let mut blobs: HashMap<u32, &[u8]> = HashMap::new();
    let mut r = Reader::new(bytes);
    while let Some((n, v)) = r.next_field()? {
        match v {
            WireValue::Varint(x) => {
                ints.insert(n, x);
            }
            WireValue::Bytes(b) => {
                blobs.insert(n, b);
            }
            _ => {}
        }
    }
    let text = |n: u32| blobs.get(&n).map(|b| utf8(b)).transpose();
    Ok(Some(match short {
        "Quantity" => Value::String(text(1)?.unwrap_or_default()),
        "IntOrString" => match ints.get(&1).copied().unwrap_or(0) {
            1 => Value::String(text(3)?.unwrap_or_default()),
            _ => Value::from(ints.get(&2).copied().unwrap_or(0) as i64 as i32),
        },
        "Time" | "MicroTime" => {
            let seconds = ints.get(&1).copied().unwrap_or(0) as i64;
            let nanos = ints.get(&2).copied().unwrap_or(0) as i64 as i32;
            timestamp(seconds, nanos, short == "MicroTime")
        }
        "Duration" => Value::String(go_duration(ints.get(&1).copied().unwrap_or(0) as i64)),
        _ => match blobs.get(&1) {
            Some(raw) if !raw.is_empty() => serde_json::from_slice(raw)
                .map_err(|e| format!("protobuf body: embedded {short} is not JSON: {e}"))?,
            _ => Value::Null,
        },
    }))
}

/// Go's zero `time.Time` (year 1) is how a Time that was never set travels.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

fn timestamp(seconds: i64, nanos: i32, micro: bool) -> Value {
    if seconds == 0 && nanos == 0 || seconds == GO_ZERO_TIME_SECONDS {
        return Value::Null;
    }
    match jiff::Timestamp::new(seconds, if micro { nanos } else { 0 }) {
        Ok(t) if micro => Value::String(t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
        Ok(t) => Value::String(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        Err(_) => Value::Null,
    }
}

/// Formats nanoseconds as Go's `time.Duration.String()` for whole seconds and above.
fn go_duration(nanos: i64) -> String {
    let total = nanos / 1_000_000_000;
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests;
