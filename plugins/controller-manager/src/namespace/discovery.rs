//! Which namespaced resources the API serves (discovery), and emptying one of
//! them in a namespace with a delete-collection.

use kubernel_client::{Client, ClientError};
use serde_json::Value;

fn decode(what: &str, bytes: &[u8]) -> Result<Value, ClientError> {
    serde_json::from_slice(bytes).map_err(|source| ClientError::Decode {
        what: what.to_string(),
        source,
    })
}

/// Collection path prefixes (`/api/v1`, `/apis/apps/v1`) and plural names of every
/// namespaced resource that can be listed and deleted as a collection.
pub async fn namespaced_resources(client: &Client) -> Result<Vec<(String, String)>, ClientError> {
    let mut versions = vec!["/api/v1".to_string()];
    let groups = decode("/apis", &client.send("GET", "/apis", None).await?)?;
    for g in groups["groups"].as_array().into_iter().flatten() {
        if let Some(gv) = g["preferredVersion"]["groupVersion"].as_str() {
            versions.push(format!("/apis/{gv}"));
        }
    }
    let mut out = Vec::new();
    for prefix in versions {
        let list = decode(&prefix, &client.send("GET", &prefix, None).await?)?;
        for r in list["resources"].as_array().into_iter().flatten() {
            let name = r["name"].as_str().unwrap_or_default();
            let verbs: Vec<&str> = r["verbs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if r["namespaced"].as_bool() == Some(true)
                && !name.contains('/')
                && verbs.contains(&"deletecollection")
                && verbs.contains(&"list")
            {
                out.push((prefix.clone(), name.to_string()));
            }
        }
    }
    Ok(out)
}

/// Deletes every object of one resource in `namespace`; returns how many are still there.
pub async fn delete_all(
    client: &Client,
    (prefix, resource): &(String, String),
    namespace: &str,
) -> Result<usize, ClientError> {
    let path = format!("{prefix}/namespaces/{namespace}/{resource}");
    let body =
        br#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}"#.to_vec();
    match client
        .send("DELETE", &path, Some(("application/json", body)))
        .await
    {
        Ok(_) => {}
        Err(e) if matches!(e.code(), Some(404 | 405)) => return Ok(0),
        Err(e) => return Err(e),
    }
    let list = decode(&path, &client.send("GET", &path, None).await?)?;
    Ok(list["items"].as_array().map_or(0, Vec::len))
}
