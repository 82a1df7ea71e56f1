//! Moving a cluster's state between stores: `kubernel store export` / `import`.
//!
//! The format is JSON lines, one object per line as the API serves it (apiVersion,
//! kind, metadata with its uid, creationTimestamp, ownerReferences and finalizers,
//! spec, status). Import writes each object into the apiserver's store as it is —
//! not through the API's create, which would give it a new uid and drop its status —
//! so owner references and everything else keep pointing at the right objects; only
//! `resourceVersion` is new. Objects that already exist are left as they are.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::pointer::Pointer;
use crate::resources;
use crate::Message;

/// Asks the apiserver (`@apiserver`) for one page of every stored object, in key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreExport {
    /// The last key of the previous page (empty for the first page).
    pub start_after: String,
    /// At most this many objects (0: the apiserver's default of 1,000).
    pub limit: u32,
}

/// One page of a [`StoreExport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreExportPage {
    /// The objects, one JSON document per line, each line ending in `\n`.
    pub lines: String,
    /// The key to pass as `start_after` for the next page; empty on the last page.
    pub next: String,
    /// The store revision the page was read at.
    pub revision: u64,
}

impl Message for StoreExport {
    const KIND: &'static str = "apiserver.StoreExport";
    type Reply = StoreExportPage;
}

/// Writes objects (JSON lines, as [`StoreExport`] produces) into the apiserver's store.
/// Every line is checked first; one bad line refuses the whole batch, naming it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreImport {
    /// The objects, one per line; blank lines are skipped.
    pub lines: String,
    /// The file line number of the first line, for error messages.
    pub first_line: u64,
}

/// What a [`StoreImport`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreImported {
    /// Objects written.
    pub created: u64,
    /// Objects left alone because their key already exists.
    pub existing: u64,
}

impl Message for StoreImport {
    const KIND: &'static str = "apiserver.StoreImport";
    type Reply = StoreImported;
}

/// The storage key of an object: `pods/<ns>/<name>`, `deployments.apps/<ns>/<name>`,
/// `nodes/<name>`.
pub fn storage_key(r: &resources::Resource, namespace: &str, name: &str) -> String {
    if r.namespaced {
        format!("{}/{namespace}/{name}", r.storage_prefix())
    } else {
        format!("{}/{name}", r.storage_prefix())
    }
}

/// Parses one exported line into its storage key and object; `Err` says what is wrong.
pub fn parse_line(line: &str) -> Result<(String, Value), String> {
    let object: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let text = |pointer: &str| {
        object
            .at(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let (api_version, kind, name) = (text("/apiVersion"), text("/kind"), text("/metadata/name"));
    if api_version.is_empty() || kind.is_empty() {
        return Err("apiVersion and kind are required".into());
    }
    if name.is_empty() {
        return Err(format!("{kind}: metadata.name is required"));
    }
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let r = resources::find_kind(group, version, kind)
        .ok_or_else(|| format!("{api_version} {kind} is not a served resource"))?;
    let namespace = text("/metadata/namespace");
    if r.namespaced && namespace.is_empty() {
        return Err(format!("{kind} {name}: metadata.namespace is required"));
    }
    let key = storage_key(r, namespace, name);
    Ok((key, object))
}

/// Every line of `lines` parsed (blank lines skipped), or every error as
/// `line N: message` with `first_line` the number of the first line.
pub fn parse_lines(lines: &str, first_line: u64) -> Result<Vec<(String, Value)>, Vec<String>> {
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in (first_line..).zip(lines.lines()) {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(p) => parsed.push(p),
            Err(e) => errors.push(format!("line {n}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_should_map_to_the_keys_the_apiserver_stores_them_under() {
        let pod =
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"team"}}"#;
        let deploy = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d","namespace":"team"}}"#;
        let node = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1"}}"#;
        let keys: Vec<String> = parse_lines(&format!("{pod}\n\n{deploy}\n{node}\n"), 1)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            ["pods/team/web", "deployments.apps/team/d", "nodes/n1"]
        );
    }

    #[test]
    fn bad_lines_should_be_named_with_their_file_line() {
        let lines = "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"x\"}}\nnot json\n{\"apiVersion\":\"v9\",\"kind\":\"Gadget\",\"metadata\":{\"name\":\"g\"}}\n";
        let errors = parse_lines(lines, 10).err().unwrap_or_default();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert_eq!(errors[0], "line 10: Pod x: metadata.namespace is required");
        assert!(errors[1].starts_with("line 11: not JSON"), "{errors:?}");
        assert_eq!(errors[2], "line 12: v9 Gadget is not a served resource");
    }
}
