//! JSON Pointer lookups (RFC 6901) without allocating.
//!
//! `serde_json::Value::pointer` unescapes every token into a new `String`, two
//! allocations per path segment. Every write the apiserver admits walks dozens of
//! pointers (`/spec/containers`, `/metadata/name`...), none of which holds an
//! escape, so [`Pointer::at`] walks them borrowed and leaves the rare escaped
//! pointer to serde_json.

use serde_json::Value;

/// Borrowed JSON Pointer lookups on a [`Value`].
pub trait Pointer {
    /// The value `pointer` (`/spec/containers/0/name`) names, as
    /// [`Value::pointer`] finds it: `""` is the whole value, array indexes are
    /// decimal without leading zeros, `~0`/`~1` are unescaped.
    fn at(&self, pointer: &str) -> Option<&Value>;
}

impl Pointer for Value {
    fn at(&self, pointer: &str) -> Option<&Value> {
        if pointer.contains('~') {
            return self.pointer(pointer);
        }
        if pointer.is_empty() {
            return Some(self);
        }
        let rest = pointer.strip_prefix('/')?;
        rest.split('/').try_fold(self, |value, token| match value {
            Value::Object(map) => map.get(token),
            Value::Array(items) => index(token).and_then(|i| items.get(i)),
            _ => None,
        })
    }
}

/// An array index token: decimal digits, no leading zero unless it is `0`.
fn index(token: &str) -> Option<usize> {
    let digits = token.bytes().all(|b| b.is_ascii_digit());
    if !digits || token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Pointer;

    #[test]
    fn at_should_find_what_value_pointer_finds() {
        let v = json!({
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "a/b": 1, "m~n": 2, "": {"x": 3}, "7": "seven", "list": [0, 1]
        });
        for p in [
            "",
            "/",
            "/spec",
            "/spec/containers/1/name",
            "/spec/containers/2",
            "/spec/containers/01",
            "/spec/containers/+1",
            "/spec/containers/-",
            "/spec/containers/",
            "/spec/containers/x",
            "/a~1b",
            "/m~0n",
            "//x",
            "/7",
            "/list/0",
            "/list/00",
            "/nope/deeper",
            "spec",
            "/spec/containers/0/name/x",
            "/list/18446744073709551616",
        ] {
            assert_eq!(v.at(p), v.pointer(p), "pointer {p:?}");
        }
    }
}
