//! How objects and keys look in etcd: `<prefix><store key>` holding the object's JSON without its resourceVersion.

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

/// The bytes to put in etcd for `object`: its JSON without `metadata.resourceVersion`
/// (etcd's mod_revision is the resource version). Refuses non-objects.
pub(super) fn encode(key: &str, object: &mut Value) -> Result<Vec<u8>, StoreError> {
    let metadata = object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| {
            StoreError::Invalid(format!("{key}: not a JSON object with a metadata object"))
        })?;
    metadata.remove("resourceVersion");
    serde_json::to_vec(object).map_err(|err| StoreError::Invalid(format!("{key}: {err}")))
}

/// The stored object of an etcd value written at `mod_revision`.
pub(super) fn decode(
    key: Arc<str>,
    value: &[u8],
    create_revision: Revision,
    mod_revision: Revision,
) -> Result<Stored, StoreError> {
    let object: Value = serde_json::from_slice(value)
        .map_err(|err| StoreError::Invalid(format!("{key}: not JSON: {err}")))?;
    stored(&key, object, create_revision, mod_revision)
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

    use super::{decode, encode, Prefix};

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
        let raw: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(raw["metadata"].get("resourceVersion"), None);
        let stored = decode("pods/default/a".into(), &bytes, 3, 9).expect("decode");
        assert_eq!(stored.object["metadata"]["resourceVersion"], "9");
        assert_eq!((stored.create_revision, stored.mod_revision), (3, 9));
        assert!(encode("pods/default/a", &mut json!([1])).is_err());
        assert!(decode("pods/default/a".into(), b"{not json", 1, 1).is_err());
    }
}
