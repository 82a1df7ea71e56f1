//! How objects, keys and revisions look in etcd: `<prefix><store key>` holding `~NN` and the object's JSON without its resourceVersion.
//!
//! The writes of one group commit share one etcd revision, so a resourceVersion
//! is not etcd's `mod_revision`: it is `mod_revision × 64 + index`, the index
//! (0..=63) telling the writes of one revision apart in the order etcd applied
//! them. A put keeps its index in the value, as `~` and two decimal digits before
//! the JSON (`~07{"kind":...}`), so reads of the key recover it; a delete leaves
//! no value, and takes the index after the previous write of its revision (0 for
//! the first), which both the writer and the watch feed can tell. A value that is
//! plain JSON (from before the index) has index 0.
use std::sync::Arc;

use serde_json::Value;

use crate::store::{stored, Revision, StoreError, Stored};

/// The key prefix of a kubernel cluster in etcd, always ending in `/` (`/registry/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Prefix(String);

impl Prefix {
    /// The prefix for `etcd_prefix` (`/registry` and `/registry/` are the same).
    pub(super) fn new(prefix: &str) -> Prefix {
        let mut prefix = prefix.trim_end_matches('/').to_owned();
        prefix.push('/');
        Prefix(prefix)
    }

    /// The prefix itself.
    pub(super) fn as_str(&self) -> &str {
        &self.0
    }

    /// The etcd key of a store key: `pods/default/a` -> `/registry/pods/default/a`.
    pub(super) fn etcd_key(&self, key: &str) -> String {
        format!("{}{key}", self.0)
    }

    /// The first key after every key under the prefix (etcd's `range_end` of a prefix).
    pub(super) fn range_end(&self) -> Vec<u8> {
        let mut end = self.0.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            // The prefix ends in '/', which is not 0xff: incrementing it cannot overflow.
            *last += 1;
        }
        end
    }

    /// The store key of an etcd key under the prefix; `None` for other keys and
    /// keys that are not UTF-8.
    pub(super) fn store_key(&self, etcd_key: &[u8]) -> Option<Arc<str>> {
        let rest = etcd_key.strip_prefix(self.0.as_bytes())?;
        std::str::from_utf8(rest).ok().map(Arc::from)
    }
}

/// Store revisions per etcd revision: the most writes one group may hold.
pub(super) const PER_REVISION: u64 = 64;

/// First byte of a value that carries its write's index.
const MARK: u8 = b'~';

/// Length of the index before the JSON: the mark and two digits.
const INDEX_LEN: usize = 3;

/// The bytes to put in etcd for `object`: index 0 (see [`set_index`]) and its JSON
/// without `metadata.resourceVersion` (the store derives it from etcd's revision).
/// Refuses non-objects.
pub(super) fn encode(key: &str, object: &mut Value) -> Result<Vec<u8>, StoreError> {
    let metadata = object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| {
            StoreError::Invalid(format!("{key}: not a JSON object with a metadata object"))
        })?;
    metadata.remove("resourceVersion");
    let mut value = index_prefix(0).to_vec();
    serde_json::to_writer(&mut value, object)
        .map_err(|err| StoreError::Invalid(format!("{key}: {err}")))?;
    Ok(value)
}

/// The index prefix of the `index`th write of a revision: `~07`. Indexes sort as
/// their prefixes do (etcd compares values as bytes), and plain JSON (`{`) sorts
/// before every prefix.
pub(super) fn index_prefix(index: u64) -> [u8; INDEX_LEN] {
    let index = u8::try_from(index % 100).unwrap_or(0);
    [MARK, b'0' + index / 10, b'0' + index % 10]
}

/// `value` (made by [`encode`]) as the `index`th write of its revision.
pub(super) fn set_index(value: &mut [u8], index: u64) {
    if let Some(prefix) = value.get_mut(..INDEX_LEN) {
        prefix.copy_from_slice(&index_prefix(index));
    }
}

/// The index of a value's write within its revision, and the value's JSON. The
/// error says why the value is not one the store wrote.
pub(super) fn split(value: &[u8]) -> Result<(u64, &[u8]), String> {
    if value.first() != Some(&MARK) {
        return Ok((0, value));
    }
    let index = match value.get(1..INDEX_LEN) {
        Some([tens @ b'0'..=b'9', ones @ b'0'..=b'9']) => {
            u64::from(tens - b'0') * 10 + u64::from(ones - b'0')
        }
        _ => return Err("a value starting with '~' lacks its two-digit index".into()),
    };
    if index >= PER_REVISION {
        return Err(format!("write index {index} is not below {PER_REVISION}"));
    }
    Ok((index, &value[INDEX_LEN..]))
}

/// The JSON of a value made by [`encode`], without its index.
pub(super) fn json_of(value: &[u8]) -> &[u8] {
    split(value).map_or(value, |(_, json)| json)
}

/// The stored object of an etcd value, at `mod_revision` (a store revision).
pub(super) fn decode(
    key: Arc<str>,
    value: &[u8],
    create_revision: Revision,
    mod_revision: Revision,
) -> Result<Stored, StoreError> {
    let (_, json) =
        split(value).map_err(|reason| StoreError::Invalid(format!("{key}: {reason}")))?;
    let object: Value = serde_json::from_slice(json)
        .map_err(|err| StoreError::Invalid(format!("{key}: not JSON: {err}")))?;
    stored(&key, object, create_revision, mod_revision)
}

/// The resourceVersion of the `index`th write of etcd revision `raw`.
pub(super) fn resource_version(raw: i64, index: u64) -> Revision {
    revision(raw)
        .saturating_mul(PER_REVISION)
        .saturating_add(index.min(PER_REVISION - 1))
}

/// The resourceVersion of a key's last write, from its etcd mod_revision and the
/// index its value holds (0 when the value holds none).
pub(super) fn modified(kv: &etcd_client::KeyValue) -> Revision {
    let index = split(kv.value()).map_or(0, |(index, _)| index);
    resource_version(kv.mod_revision(), index)
}

/// The store's create revision of a key etcd created at `raw`: the first store
/// revision of that etcd revision (the index of a create is not kept once the key
/// is updated, so it is left out from the start).
pub(super) fn created(raw: i64) -> Revision {
    resource_version(raw, 0)
}

/// The store revision at which every write of etcd revision `raw` is seen: the
/// revision of a progress notification, a list or a transaction's answer.
pub(super) fn complete(raw: i64) -> Revision {
    resource_version(raw, PER_REVISION - 1)
}

/// The etcd revision a store revision falls in.
pub(super) fn etcd_revision(revision: Revision) -> i64 {
    raw(revision / PER_REVISION)
}

/// A revision from etcd (an `i64`, never negative) as a store revision.
pub(super) fn revision(raw: i64) -> Revision {
    Revision::try_from(raw).unwrap_or(0)
}

/// A store revision as etcd's `i64` (revisions stay far below `i64::MAX`).
pub(super) fn raw(revision: Revision) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{
        complete, decode, encode, etcd_revision, resource_version, set_index, split, Prefix,
    };

    #[test]
    fn prefix_should_map_store_keys_to_etcd_keys_and_back() {
        let prefix = Prefix::new("/registry");
        assert_eq!(prefix, Prefix::new("/registry/"));
        assert_eq!(
            prefix.etcd_key("pods/default/a"),
            "/registry/pods/default/a"
        );
        assert_eq!(prefix.range_end(), b"/registry0".to_vec());
        assert_eq!(
            prefix.store_key(b"/registry/pods/default/a").as_deref(),
            Some("pods/default/a")
        );
        assert_eq!(prefix.store_key(b"/other/pods/default/a"), None);
        assert_eq!(prefix.store_key(b"/registry/\xff"), None);
    }

    #[test]
    fn encode_should_drop_the_resource_version_that_decode_sets_from_the_mod_revision() {
        let mut object = json!({"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "7"}});
        let bytes = encode("pods/default/a", &mut object).expect("encode");
        let (index, json) = split(&bytes).expect("split");
        assert_eq!(index, 0);
        let raw: serde_json::Value = serde_json::from_slice(json).expect("json");
        assert_eq!(raw["metadata"].get("resourceVersion"), None);
        let stored = decode("pods/default/a".into(), &bytes, 3, 9).expect("decode");
        assert_eq!(stored.object["metadata"]["resourceVersion"], "9");
        assert_eq!((stored.create_revision, stored.mod_revision), (3, 9));
        assert!(encode("pods/default/a", &mut json!([1])).is_err());
        assert!(decode("pods/default/a".into(), b"{not json", 1, 1).is_err());
    }

    #[test]
    fn split_should_read_the_index_set_index_wrote_and_take_plain_json_as_index_0() {
        let mut bytes = encode("pods/default/a", &mut json!({"metadata": {}})).expect("encode");
        set_index(&mut bytes, 7);
        assert!(bytes.starts_with(b"~07{"));
        assert_eq!(split(&bytes).map(|(i, _)| i), Ok(7));
        set_index(&mut bytes, 63);
        assert_eq!(split(&bytes), Ok((63, &br#"{"metadata":{}}"#[..])));
        assert_eq!(split(br#"{"a":1}"#).map(|(i, _)| i), Ok(0));
        assert!(split(b"~7{}").is_err());
        assert!(split(b"~64{}").is_err());
        assert!(decode("pods/default/a".into(), b"~x", 1, 1).is_err());
    }

    #[test]
    fn resource_versions_should_count_64_per_etcd_revision() {
        assert_eq!(resource_version(5, 0), 320);
        assert_eq!(resource_version(5, 3), 323);
        assert_eq!(complete(5), 383);
        assert_eq!(etcd_revision(323), 5);
        assert_eq!(etcd_revision(complete(5)), 5);
        assert!(complete(5) < resource_version(6, 0));
    }
}
