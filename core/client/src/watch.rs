//! Watch events as the apiserver streams them: one JSON object per line.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ClientError;

/// One event of a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent<K> {
    /// The object was created (or existed when the watch started).
    Added(K),
    /// The object changed.
    Modified(K),
    /// The object was deleted; its last state.
    Deleted(K),
    /// Progress marker: everything up to this resourceVersion was sent.
    Bookmark(String),
    /// The watch failed, e.g. 410 Gone when its resourceVersion was compacted.
    Error {
        /// HTTP-like code (410 for an expired resourceVersion).
        code: u16,
        /// The `Status` message.
        message: String,
    },
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow)]
    object: &'a RawValue,
}

#[derive(Deserialize)]
struct MetaOnly {
    #[serde(default)]
    metadata: RvOnly,
}

#[derive(Deserialize, Default)]
struct RvOnly {
    #[serde(default, rename = "resourceVersion")]
    resource_version: String,
}

#[derive(Deserialize)]
struct StatusOnly {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    message: String,
}

impl<K: DeserializeOwned> WatchEvent<K> {
    /// Parses one line of a watch stream.
    pub fn parse(line: &[u8]) -> Result<Self, ClientError> {
        let decode = |what: &str, source| ClientError::Decode {
            what: what.to_string(),
            source,
        };
        let raw: RawEvent = serde_json::from_slice(line).map_err(|e| decode("watch event", e))?;
        let object = || {
            serde_json::from_str::<K>(raw.object.get())
                .map_err(|e| decode(&format!("{} watch event object", raw.kind), e))
        };
        Ok(match raw.kind {
            "ADDED" => WatchEvent::Added(object()?),
            "MODIFIED" => WatchEvent::Modified(object()?),
            "DELETED" => WatchEvent::Deleted(object()?),
            "BOOKMARK" => {
                let meta: MetaOnly = serde_json::from_str(raw.object.get())
                    .map_err(|e| decode("BOOKMARK watch event", e))?;
                WatchEvent::Bookmark(meta.metadata.resource_version)
            }
            _ => {
                let status: StatusOnly = serde_json::from_str(raw.object.get())
                    .map_err(|e| decode("ERROR watch event", e))?;
                WatchEvent::Error {
                    code: status.code,
                    message: status.message,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn parse_should_read_objects_bookmarks_and_errors() {
        let added: WatchEvent<Pod> = WatchEvent::parse(
            br#"{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","resourceVersion":"7"}}}"#,
        )
        .expect("added");
        match added {
            WatchEvent::Added(p) => assert_eq!(p.metadata.name.as_deref(), Some("p")),
            other => panic!("unexpected {other:?}"),
        }
        let bookmark: WatchEvent<Pod> = WatchEvent::parse(
            br#"{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"12"}}}"#,
        )
        .expect("bookmark");
        assert_eq!(bookmark, WatchEvent::Bookmark("12".into()));
        let gone: WatchEvent<Pod> = WatchEvent::parse(
            br#"{"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old resource version"}}"#,
        )
        .expect("error");
        assert!(matches!(gone, WatchEvent::Error { code: 410, .. }));
    }
}
