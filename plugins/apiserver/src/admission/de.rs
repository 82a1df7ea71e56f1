//! A deserializer over a JSON value that tracks the field path, to name the field of a type error and collect unknown fields.
//!
//! Unknown fields are found the way `serde_ignored` finds them (the typed
//! visitor skips them through `deserialize_ignored_any`), but with the path in
//! upstream's format (`spec.containers[0].foo`) and the same path available for
//! type errors, which `serde_ignored` cannot give.
//!
//! The path is a chain of borrowed segments on the stack, made into a string
//! only for an error or an unknown field: every body a write carries goes
//! through here, and most have neither.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::Value;

use super::quantity::Quantity;

/// A decoding failure, with the path of the field that caused it.
#[derive(Debug)]
pub(super) struct DecodeError {
    message: String,
    path: Option<String>,
}

impl DecodeError {
    /// Attaches `path` unless a deeper path is already known.
    fn at(mut self, path: Path<'_>) -> DecodeError {
        if self.path.is_none() {
            self.path = Some(path.render());
        }
        self
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path.as_deref() {
            Some(p) if !p.is_empty() => write!(f, "{p}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DecodeError {
            message: msg.to_string(),
            path: None,
        }
    }
}

/// Where a value is in the object: its parent's path and one step from it.
#[derive(Clone, Copy)]
enum Path<'a> {
    /// The value decoding started at (`""` for a whole object, `metadata`...).
    Root(&'a str),
    /// A struct field: `parent.name`.
    Field(&'a Path<'a>, &'a str),
    /// An array item: `parent[i]`.
    Index(&'a Path<'a>, usize),
    /// A map entry: `parent[key]`.
    Key(&'a Path<'a>, &'a str),
}

impl Path<'_> {
    /// The path as upstream writes it: `spec.containers[0].resources.limits[cpu]`.
    fn render(self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(self, out: &mut String) {
        match self {
            Path::Root(root) => out.push_str(root),
            Path::Field(parent, name) => {
                parent.write(out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
            Path::Index(parent, i) => {
                parent.write(out);
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
            Path::Key(parent, key) => {
                parent.write(out);
                out.push('[');
                out.push_str(key);
                out.push(']');
            }
        }
    }
}

/// Deserializes a `T` from `value` found at path `root` (`""` for a whole
/// object); returns it with the paths of the fields `T` does not know.
pub(super) fn from_value<'de, T: de::Deserialize<'de>>(
    value: &'de Value,
    root: &str,
) -> Result<(T, Vec<String>), DecodeError> {
    let unknown = RefCell::new(Vec::new());
    let typed = T::deserialize(PathDe {
        value,
        path: Path::Root(root),
        unknown: &unknown,
    })?;
    Ok((typed, unknown.into_inner()))
}

struct PathDe<'de, 'u, 'p> {
    value: &'de Value,
    path: Path<'p>,
    unknown: &'u RefCell<Vec<String>>,
}

fn visit_number<'de, V: Visitor<'de>>(
    n: &serde_json::Number,
    visitor: V,
) -> Result<V::Value, DecodeError> {
    if let Some(u) = n.as_u64() {
        visitor.visit_u64(u)
    } else if let Some(i) = n.as_i64() {
        visitor.visit_i64(i)
    } else if let Some(f) = n.as_f64() {
        visitor.visit_f64(f)
    } else {
        Err(de::Error::custom(format!("unsupported number {n}")))
    }
}

fn unexpected(v: &Value) -> de::Unexpected<'_> {
    match v {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => de::Unexpected::Unsigned(u),
            (_, Some(i)) => de::Unexpected::Signed(i),
            _ => de::Unexpected::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

impl<'de> PathDe<'de, '_, '_> {
    fn visit_map<V: Visitor<'de>>(
        self,
        visitor: V,
        is_struct: bool,
    ) -> Result<V::Value, DecodeError> {
        let path = self.path;
        match self.value {
            Value::Object(map) => visitor
                .visit_map(MapDe {
                    entries: map.iter(),
                    pending: None,
                    path,
                    is_struct,
                    unknown: self.unknown,
                })
                .map_err(|e| e.at(path)),
            _ => self.deserialize_any_inner(visitor),
        }
    }

    fn deserialize_any_inner<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let path = self.path;
        let result = match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => visit_number(n, visitor),
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => visitor.visit_seq(SeqDe {
                items: items.iter().enumerate(),
                path,
                unknown: self.unknown,
            }),
            Value::Object(map) => visitor.visit_map(MapDe {
                entries: map.iter(),
                pending: None,
                path,
                is_struct: false,
                unknown: self.unknown,
            }),
        };
        result.map_err(|e| e.at(path))
    }
}

impl<'de> de::Deserializer<'de> for PathDe<'de, '_, '_> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_any_inner(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let path = self.path;
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e| e.at(path))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        if let (Value::String(s), "Quantity") = (self.value, name) {
            if let Err(msg) = Quantity::parse(s) {
                return Err(DecodeError {
                    message: msg.to_string(),
                    path: Some(self.path.render()),
                });
            }
        }
        let path = self.path;
        visitor.visit_newtype_struct(self).map_err(|e| e.at(path))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.visit_map(visitor, true)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.visit_map(visitor, false)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        let path = self.path;
        match self.value {
            Value::String(s) => visitor
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: DecodeError| e.at(path)),
            other => Err(de::Error::invalid_type(
                unexpected(other),
                &"an enum variant name",
            ))
            .map_err(|e: DecodeError| e.at(path)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.unknown.borrow_mut().push(self.path.render());
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct identifier
    }
}

struct SeqDe<'de, 'u, 'p> {
    items: std::iter::Enumerate<std::slice::Iter<'de, Value>>,
    path: Path<'p>,
    unknown: &'u RefCell<Vec<String>>,
}

impl<'de> SeqAccess<'de> for SeqDe<'de, '_, '_> {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        match self.items.next() {
            Some((i, value)) => seed
                .deserialize(PathDe {
                    value,
                    path: Path::Index(&self.path, i),
                    unknown: self.unknown,
                })
                .map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'de, 'u, 'p> {
    entries: serde_json::map::Iter<'de>,
    pending: Option<(&'de String, &'de Value)>,
    path: Path<'p>,
    /// Struct fields are `a.b`; map entries are `a[b]`.
    is_struct: bool,
    unknown: &'u RefCell<Vec<String>>,
}

impl<'de> MapAccess<'de> for MapDe<'de, '_, '_> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        match self.entries.next() {
            Some((k, v)) => {
                self.pending = Some((k, v));
                seed.deserialize(de::value::BorrowedStrDeserializer::<DecodeError>::new(k))
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        let (k, value) = self
            .pending
            .take()
            .ok_or_else(|| de::Error::custom("a map value was read before its key"))?;
        let path = if self.is_struct {
            Path::Field(&self.path, k)
        } else {
            Path::Key(&self.path, k)
        };
        seed.deserialize(PathDe {
            value,
            path,
            unknown: self.unknown,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    #[test]
    fn from_value_should_collect_nested_unknown_fields() {
        let v = json!({"spec": {"foo": 1, "containers": [{"name": "c", "image": "i", "bar": {"x": 1}}]}, "metadata": {"baz": true}});
        let (_, unknown) = from_value::<Pod>(&v, "")
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            unknown,
            vec!["metadata.baz", "spec.containers[0].bar", "spec.foo"]
        );
    }

    #[test]
    fn from_value_should_name_the_field_of_a_type_error() {
        let v =
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": "80"}]}]}});
        let e = from_value::<Pod>(&v, "").err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("spec.containers[0].ports[0].containerPort: invalid type: string \"80\", expected i32"));
    }

    #[test]
    fn from_value_should_use_brackets_for_map_keys() {
        let v = json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "lots"}}}]}});
        let e = from_value::<Pod>(&v, "").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("spec.containers[0].resources.limits[cpu]: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
        );
    }

    #[test]
    fn from_value_should_reject_non_string_label_values() {
        let v = json!({"metadata": {"labels": {"a": 1}}});
        let e = from_value::<Pod>(&v, "").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("metadata.labels[a]: invalid type: integer `1`, expected a string")
        );
    }
}
