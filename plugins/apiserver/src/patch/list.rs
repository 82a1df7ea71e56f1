//! Strategic merge patch of lists: atomic replacement, merging by key, primitive sets and element order.

use serde_json::Value;

use super::merge_keys::{Field, Strategy, TypeDef};
use super::strategic::{is_directive, malformed, merge_map, Object, PATCH_DIRECTIVE};
use super::Failure;

/// Merges list `patch` into list `original` of `field` (atomic unless its strategy is `merge`).
///
/// The order rules are upstream's (`normalizeElementOrder`): elements named by the patch keep the
/// patch's order, elements only on the server keep theirs, and the two runs are interleaved by their
/// positions in the live list. So without `$setElementOrder` an element new to the list comes first,
/// as with kube-apiserver.
pub(super) fn merge_list(
    field: Option<&'static Field>,
    original: Vec<Value>,
    patch: Vec<Value>,
) -> Result<Vec<Value>, Failure> {
    let Some(field) = field.filter(|f| matches!(f.strategy, Strategy::Merge(_))) else {
        return Ok(patch.into_iter().map(strip).collect());
    };
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    if !elements_are_maps(field, &original, &patch)? {
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(&patch) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        return Ok(normalize(None, merged, &patch, &original));
    }
    let key = field.merge_key().ok_or_else(|| {
        malformed(format!(
            "cannot merge lists without merge key for {}",
            field.name
        ))
    })?;
    let (base, items) = split_special(original, patch, key)?;
    let merged = merge_by_key(field.ty, base.clone(), items.clone(), key)?;
    Ok(normalize(Some(key), merged, &items, &base))
}

/// Checks the elements of both lists have one JSON type; `true` when they are maps.
fn elements_are_maps(field: &Field, original: &[Value], patch: &[Value]) -> Result<bool, Failure> {
    let kind = |v: &Value| match v {
        Value::Object(_) => 0,
        Value::String(_) => 1,
        Value::Number(_) => 2,
        Value::Bool(_) => 3,
        Value::Null => 4,
        Value::Array(_) => 5,
    };
    let mut all = original.iter().chain(patch);
    let Some(first) = all.next() else {
        return Ok(false);
    };
    if first.is_array() {
        return Err(super::unprocessable("lists of lists are not supported"));
    }
    if all.any(|v| kind(v) != kind(first)) {
        return Err(malformed(format!(
            "list element types are not identical in {}",
            field.name
        )));
    }
    Ok(first.is_object())
}

/// Applies `$patch` elements: `delete` removes elements by key, `replace` makes the patch the whole list.
/// Returns the base list and the remaining patch elements.
fn split_special(
    original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), Failure> {
    let mut base = original;
    let mut items = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let directive = item
            .get(PATCH_DIRECTIVE)
            .map(|d| d.as_str().unwrap_or_default().to_owned());
        match directive.as_deref() {
            None => items.push(item),
            Some("delete") => {
                let Some(k) = item.get(key) else {
                    return Err(no_merge_key(&item, key));
                };
                base.retain(|o| o.get(key) != Some(k));
            }
            Some("replace") => replace = true,
            Some("merge") if item.get(key).is_some() => items.push(item),
            Some("merge") => {}
            Some(_) => {
                let d = &item[PATCH_DIRECTIVE];
                return Err(malformed(format!("unknown patch type: {d} in map: {item}")));
            }
        }
    }
    Ok(if replace {
        (items, Vec::new())
    } else {
        (base, items)
    })
}

/// Merges each patch element into the element with the same key, or appends it.
fn merge_by_key(
    ty: Option<&'static TypeDef>,
    mut list: Vec<Value>,
    items: Vec<Value>,
    key: &str,
) -> Result<Vec<Value>, Failure> {
    for item in items {
        let Value::Object(item) = item else {
            return Err(malformed("merging list elements must be maps"));
        };
        let Some(k) = item.get(key) else {
            return Err(no_merge_key(&Value::Object(item), key));
        };
        match list.iter().position(|o| o.get(key) == Some(k)) {
            Some(i) => {
                let original = match std::mem::take(&mut list[i]) {
                    Value::Object(o) => o,
                    _ => Object::new(),
                };
                list[i] = Value::Object(merge_map(ty, original, item)?);
            }
            None => list.push(Value::Object(merge_map(ty, Object::new(), item)?)),
        }
    }
    Ok(list)
}

fn no_merge_key(item: &Value, key: &str) -> Failure {
    malformed(format!(
        "map: {item} does not contain declared merge key: {key}"
    ))
}

/// Orders `merged` by a `$setElementOrder` list `order` (elements or their merge keys).
pub(super) fn reorder(
    field: Option<&Field>,
    merged: Vec<Value>,
    order: &[Value],
    live: &[Value],
) -> Vec<Value> {
    let key = field
        .and_then(Field::merge_key)
        .filter(|_| merged.iter().all(Value::is_object));
    normalize(key, merged, order, live)
}

/// Checks the patch list names its elements in the relative order of the `$setElementOrder` list.
pub(super) fn validate_order(
    field: Option<&Field>,
    patch: &[Value],
    order: &[Value],
) -> Result<(), Failure> {
    let key = field.and_then(Field::merge_key);
    let items: Vec<&Value> = patch
        .iter()
        .filter(|v| v.get(PATCH_DIRECTIVE).is_none())
        .collect();
    let (mut p, mut o) = (0, 0);
    while p < items.len() && o < order.len() {
        let same = match key {
            Some(key) => {
                let (Some(a), Some(b)) = (items[p].get(key), order[o].get(key)) else {
                    let missing = if items[p].get(key).is_none() {
                        items[p]
                    } else {
                        &order[o]
                    };
                    return Err(no_merge_key(missing, key));
                };
                a == b
            }
            None => items[p] == &order[o],
        };
        if same {
            p += 1;
        }
        o += 1;
    }
    if p < items.len() {
        let listed = Value::Array(patch.to_vec());
        return Err(malformed(format!(
            "the order in patch list {listed} doesn't match $setElementOrder list {}",
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

/// Upstream `normalizeElementOrder`: patch elements in patch order, server-only ones in live order, interleaved.
fn normalize(
    key: Option<&str>,
    merged: Vec<Value>,
    patch_order: &[Value],
    live: &[Value],
) -> Vec<Value> {
    let (in_patch, server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|v| index(patch_order, v, key).is_some());
    let in_patch = sort_by_order(in_patch, patch_order, key);
    let server_only = sort_by_order(server_only, live, key);
    merge_sorted(server_only, in_patch, live, key)
}

/// Position of `v` in `list`, comparing merge keys (or whole values without a key).
fn index(list: &[Value], v: &Value, key: Option<&str>) -> Option<usize> {
    match key {
        Some(key) => list.iter().position(|x| x.get(key) == v.get(key)),
        None => list.iter().position(|x| x == v),
    }
}

/// Go's `sort.SliceStable` (insertion sort) with upstream's comparator, where an element missing from
/// `order` sorts before anything.
fn sort_by_order(items: Vec<Value>, order: &[Value], key: Option<&str>) -> Vec<Value> {
    let mut tagged: Vec<(Option<usize>, Value)> = items
        .into_iter()
        .map(|v| (index(order, &v, key), v))
        .collect();
    let less = |a: Option<usize>, b: Option<usize>| match (a, b) {
        (Some(a), Some(b)) => a < b,
        _ => true,
    };
    for i in 1..tagged.len() {
        let mut j = i;
        while j > 0 && less(tagged[j].0, tagged[j - 1].0) {
            tagged.swap(j, j - 1);
            j -= 1;
        }
    }
    tagged.into_iter().map(|(_, v)| v).collect()
}

/// Upstream `mergeSortedSlice`: takes a server-only element first only when both are live and it comes first.
fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    live: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (Some(l), Some(r)) => {
                matches!((index(live, l, key), index(live, r, key)), (Some(a), Some(b)) if a < b)
            }
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return out,
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
}

/// An atomic value as stored: `null` map entries and directive keys removed, recursively.
fn strip(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, v)| !v.is_null() && !is_directive(k))
                .map(|(k, v)| (k, strip(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::merge_keys::lookup;
    use crate::status::ApiError;
    use serde_json::json;

    fn list(v: Value) -> Vec<Value> {
        match v {
            Value::Array(items) => items,
            _ => Vec::new(),
        }
    }

    fn names(v: &[Value]) -> Vec<&str> {
        v.iter().filter_map(|c| c["name"].as_str()).collect()
    }

    #[test]
    fn merge_list_should_order_like_upstream() {
        let containers = lookup("Pod", &["spec", "containers"]);
        let live = list(json!([{"name": "a"}, {"name": "b"}]));
        let cases = [
            (json!([{"name": "c"}]), vec!["c", "a", "b"]),
            (json!([{"name": "b", "image": "x"}]), vec!["a", "b"]),
            (json!([{"name": "b"}, {"name": "a"}]), vec!["b", "a"]),
            (
                json!([{"name": "a", "$patch": "delete"}, {"name": "c"}]),
                vec!["c", "b"],
            ),
            (json!([{"name": "z"}, {"$patch": "replace"}]), vec!["z"]),
            (json!([]), vec!["a", "b"]),
        ];
        for (patch, want) in cases {
            let out = merge_list(containers, live.clone(), list(patch.clone())).unwrap_or_default();
            assert_eq!(names(&out), want, "{patch}");
        }
    }

    #[test]
    fn merge_list_should_union_primitive_sets() {
        let finalizers = lookup("Pod", &["metadata", "finalizers"]);
        let out = merge_list(
            finalizers,
            list(json!(["a", "b"])),
            list(json!(["b", "c", "c"])),
        )
        .ok();
        assert_eq!(out, Some(list(json!(["a", "b", "c"]))));
    }

    #[test]
    fn merge_list_should_replace_atomic_lists() {
        let tolerations = lookup("Pod", &["spec", "tolerations"]);
        let out = merge_list(
            tolerations,
            list(json!([{"key": "a"}])),
            list(json!([{"key": "b", "value": null}])),
        )
        .ok();
        assert_eq!(out, Some(list(json!([{"key": "b"}]))));
    }

    #[test]
    fn merge_list_should_reject_malformed_elements() {
        let containers = lookup("Pod", &["spec", "containers"]);
        let live = list(json!([{"name": "a"}]));
        let cases = [
            (json!([{"image": "x"}]), 400),
            (json!([{"image": "x", "$patch": "delete"}]), 400),
            (json!([{"name": "a", "$patch": "sideways"}]), 400),
            (json!(["a"]), 400),
            (json!([["a"]]), 400),
        ];
        for (patch, code) in cases {
            let err = merge_list(containers, live.clone(), list(patch.clone())).err();
            assert_eq!(err.map(|e| ApiError::from(e).code), Some(code), "{patch}");
        }
        let err = merge_list(containers, Vec::new(), list(json!([["a"]]))).err();
        assert_eq!(err.map(|e| ApiError::from(e).code), Some(422));
    }

    #[test]
    fn reorder_should_put_listed_elements_in_order_and_keep_server_only_ones() {
        let containers = lookup("Pod", &["spec", "containers"]);
        let live = list(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]));
        let order = list(json!([{"name": "c"}, {"name": "a"}]));
        let out = reorder(containers, live.clone(), &order, &live);
        assert_eq!(names(&out), vec!["b", "c", "a"]);
    }

    #[test]
    fn validate_order_should_reject_a_patch_out_of_order() {
        let containers = lookup("Pod", &["spec", "containers"]);
        let order = list(json!([{"name": "a"}, {"name": "b"}]));
        let ok = list(json!([{"name": "a"}, {"name": "x", "$patch": "delete"}, {"name": "b"}]));
        assert!(validate_order(containers, &ok, &order).is_ok());
        let bad = list(json!([{"name": "b"}, {"name": "a"}]));
        assert_eq!(
            validate_order(containers, &bad, &order)
                .err()
                .map(|e| ApiError::from(e).code),
            Some(400)
        );
    }
}
