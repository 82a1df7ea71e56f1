//! Typed access to one resource type: paths from k8s-openapi's metadata, JSON bodies.

use std::any::TypeId;
use std::marker::PhantomData;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{ListableResource, Metadata, NamespaceResourceScope, Resource};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::params::{push, STRATEGIC_MERGE_PATCH};
use crate::{Client, ClientError, DeleteParams, ListParams, Patch, WatchEvent};

/// A Kubernetes object type the client can read and write (every k8s-openapi top-level type).
pub trait ObjectResource:
    Resource
    + ListableResource
    + Metadata<Ty = ObjectMeta>
    + Serialize
    + DeserializeOwned
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<K> ObjectResource for K where
    K: Resource
        + ListableResource
        + Metadata<Ty = ObjectMeta>
        + Serialize
        + DeserializeOwned
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// A list answer: the items and the revision they were read at.
#[derive(Debug, Clone)]
pub struct ObjectList<K> {
    /// The objects.
    pub items: Vec<K>,
    /// `metadata.resourceVersion` of the list: watch from here.
    pub resource_version: String,
}

#[derive(Deserialize)]
struct RawList<K> {
    #[serde(default = "Vec::new")]
    items: Vec<K>,
    #[serde(default)]
    metadata: RawListMeta,
}

#[derive(Deserialize, Default)]
struct RawListMeta {
    #[serde(default, rename = "resourceVersion")]
    resource_version: String,
    #[serde(default, rename = "continue")]
    continue_token: Option<String>,
}

/// Requests for objects of type `K` in one namespace, or in all namespaces / cluster-scoped.
pub struct Api<K> {
    client: Client,
    namespace: Option<String>,
    _kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Api {
            client: self.client.clone(),
            namespace: self.namespace.clone(),
            _kind: PhantomData,
        }
    }
}

impl<K: ObjectResource> Api<K> {
    /// Objects in namespace `ns` (for namespaced types).
    pub fn namespaced(client: Client, ns: &str) -> Self {
        Api {
            client,
            namespace: Some(ns.to_string()),
            _kind: PhantomData,
        }
    }

    /// Objects of every namespace (namespaced types, lists and watches) or cluster-scoped objects.
    pub fn all(client: Client) -> Self {
        Api {
            client,
            namespace: None,
            _kind: PhantomData,
        }
    }

    /// The same type in another namespace.
    pub fn within(&self, ns: &str) -> Self {
        Self::namespaced(self.client.clone(), ns)
    }

    /// The client this API uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// True when `K` lives in namespaces.
    pub fn is_namespaced() -> bool {
        TypeId::of::<K::Scope>() == TypeId::of::<NamespaceResourceScope>()
    }

    fn collection(&self) -> String {
        let prefix = if K::GROUP.is_empty() {
            format!("/api/{}", K::VERSION)
        } else {
            format!("/apis/{}/{}", K::GROUP, K::VERSION)
        };
        match (&self.namespace, Self::is_namespaced()) {
            (Some(ns), true) => format!("{prefix}/namespaces/{ns}/{}", K::URL_PATH_SEGMENT),
            _ => format!("{prefix}/{}", K::URL_PATH_SEGMENT),
        }
    }

    fn item(&self, name: &str) -> String {
        format!("{}/{name}", self.collection())
    }

    fn decode<T: DeserializeOwned>(&self, what: &str, bytes: &[u8]) -> Result<T, ClientError> {
        serde_json::from_slice(bytes).map_err(|source| ClientError::Decode {
            what: format!("{} {what}", K::KIND),
            source,
        })
    }

    fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, ClientError> {
        serde_json::to_vec(value).map_err(|source| ClientError::Decode {
            what: format!("{} body", K::KIND),
            source,
        })
    }

    /// Reads one object.
    pub async fn get(&self, name: &str) -> Result<K, ClientError> {
        let bytes = self.client.send("GET", &self.item(name), None).await?;
        self.decode(name, &bytes)
    }

    /// Reads one object, `None` when it does not exist.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>, ClientError> {
        match self.get(name).await {
            Ok(k) => Ok(Some(k)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Lists every matching object, following `continue` tokens page by page.
    pub async fn list(&self, params: &ListParams) -> Result<ObjectList<K>, ClientError> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (page, next) = self.list_page(params, token.as_deref()).await?;
            items.extend(page.items);
            match next {
                Some(t) => token = Some(t),
                None => {
                    return Ok(ObjectList {
                        items,
                        resource_version: page.resource_version,
                    })
                }
            }
        }
    }

    /// Lists one page (`params.limit` objects, all when 0) from `continue_token` (the
    /// first page when `None`); returns it and the token of the next page, `None` after
    /// the last. Lets a caller handle a large list without holding all of it.
    pub async fn list_page(
        &self,
        params: &ListParams,
        continue_token: Option<&str>,
    ) -> Result<(ObjectList<K>, Option<String>), ClientError> {
        let mut query = String::new();
        params.append(&mut query);
        if params.limit > 0 {
            push(&mut query, "limit", &params.limit.to_string());
        }
        if let Some(t) = continue_token {
            push(&mut query, "continue", t);
        }
        let path = format!("{}{query}", self.collection());
        let bytes = self.client.send("GET", &path, None).await?;
        let page: RawList<K> = self.decode("list", &bytes)?;
        let next = page.metadata.continue_token.filter(|t| !t.is_empty());
        Ok((
            ObjectList {
                items: page.items,
                resource_version: page.metadata.resource_version,
            },
            next,
        ))
    }

    /// Creates `object` (in this API's namespace for namespaced types).
    pub async fn create(&self, object: &K) -> Result<K, ClientError> {
        let body = self.encode(object)?;
        let bytes = self
            .client
            .send("POST", &self.collection(), Some(("application/json", body)))
            .await?;
        self.decode("create", &bytes)
    }

    /// Replaces `name` with `object` (its resourceVersion must match the stored one).
    pub async fn replace(&self, name: &str, object: &K) -> Result<K, ClientError> {
        let body = self.encode(object)?;
        let bytes = self
            .client
            .send("PUT", &self.item(name), Some(("application/json", body)))
            .await?;
        self.decode("replace", &bytes)
    }

    /// Replaces the `status` subresource of `name`.
    pub async fn replace_status(&self, name: &str, object: &K) -> Result<K, ClientError> {
        let body = self.encode(object)?;
        let path = format!("{}/status", self.item(name));
        let bytes = self
            .client
            .send("PUT", &path, Some(("application/json", body)))
            .await?;
        self.decode("replace status", &bytes)
    }

    /// Patches `name`.
    pub async fn patch(&self, name: &str, patch: &Patch) -> Result<K, ClientError> {
        self.patch_at(&self.item(name), patch).await
    }

    /// Patches the `status` subresource of `name`.
    pub async fn patch_status(&self, name: &str, patch: &Patch) -> Result<K, ClientError> {
        self.patch_at(&self.status_path(name), patch).await
    }

    /// Patches the `status` subresource of `name` and discards the object the
    /// apiserver answers: for callers that do not read it (heartbeats, pod status
    /// reports), this saves decoding a whole object per patch.
    pub async fn patch_status_discarding(
        &self,
        name: &str,
        patch: &Patch,
    ) -> Result<(), ClientError> {
        let body = self.encode(patch.value())?;
        self.send_patch(&self.status_path(name), patch.content_type(), body)
            .await
            .map(drop)
    }

    /// Strategic-merge-patches the `status` subresource of `name` with `patch`
    /// serialized straight from its type (no JSON tree built), and, as
    /// [`Api::patch_status_discarding`], does not decode the answer.
    pub async fn strategic_patch_status_discarding<P: Serialize>(
        &self,
        name: &str,
        patch: &P,
    ) -> Result<(), ClientError> {
        let body = self.encode(patch)?;
        self.send_patch(&self.status_path(name), STRATEGIC_MERGE_PATCH, body)
            .await
            .map(drop)
    }

    async fn patch_at(&self, path: &str, patch: &Patch) -> Result<K, ClientError> {
        let body = self.encode(patch.value())?;
        let bytes = self.send_patch(path, patch.content_type(), body).await?;
        self.decode("patch", &bytes)
    }

    async fn send_patch(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Bytes, ClientError> {
        self.client
            .send("PATCH", path, Some((content_type, body)))
            .await
    }

    /// The path of `name`'s `status` subresource.
    fn status_path(&self, name: &str) -> String {
        format!("{}/status", self.item(name))
    }

    /// Deletes `name`; `Ok(false)` when it was already gone.
    pub async fn delete(&self, name: &str, params: &DeleteParams) -> Result<bool, ClientError> {
        let body = self.encode(&params.body())?;
        match self
            .client
            .send("DELETE", &self.item(name), Some(("application/json", body)))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// POSTs `body` to subresource `sub` of `name` (e.g. `binding`, `eviction`).
    pub async fn create_subresource<B: Serialize>(
        &self,
        name: &str,
        sub: &str,
        body: &B,
    ) -> Result<serde_json::Value, ClientError> {
        let body = self.encode(body)?;
        let path = format!("{}/{sub}", self.item(name));
        let bytes = self
            .client
            .send("POST", &path, Some(("application/json", body)))
            .await?;
        self.decode(sub, &bytes)
    }

    /// Watches matching objects from `resource_version` (bookmarks on); the stream
    /// ends when the server closes the watch.
    pub async fn watch(
        &self,
        params: &ListParams,
        resource_version: &str,
    ) -> Result<impl Stream<Item = Result<WatchEvent<K>, ClientError>> + Send + 'static, ClientError>
    {
        let mut query = String::new();
        params.append(&mut query);
        push(&mut query, "watch", "true");
        push(&mut query, "allowWatchBookmarks", "true");
        push(&mut query, "resourceVersion", resource_version);
        push(
            &mut query,
            "timeoutSeconds",
            &self.client.watch_timeout_seconds().to_string(),
        );
        let path = format!("{}{query}", self.collection());
        let lines = self.client.watch_lines(&path).await?;
        Ok(lines.map(|line| line.and_then(|l| WatchEvent::parse(&l))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Node, Pod};

    fn client() -> Client {
        Client::from_url("http://127.0.0.1:1").expect("client")
    }

    #[test]
    fn paths_should_follow_group_version_and_scope() {
        assert_eq!(
            Api::<Pod>::namespaced(client(), "ns").item("p"),
            "/api/v1/namespaces/ns/pods/p"
        );
        assert_eq!(Api::<Pod>::all(client()).collection(), "/api/v1/pods");
        assert_eq!(
            Api::<Deployment>::namespaced(client(), "d").collection(),
            "/apis/apps/v1/namespaces/d/deployments"
        );
        assert_eq!(
            Api::<Node>::namespaced(client(), "ignored").item("n1"),
            "/api/v1/nodes/n1"
        );
    }
}
