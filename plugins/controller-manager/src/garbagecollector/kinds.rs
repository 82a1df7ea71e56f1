//! The resource types the garbage collector watches, behind one object-safe
//! interface that reads, deletes and patches an object's metadata.

use std::marker::PhantomData;

use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubernel_client::{Api, Client, ClientError, DeleteParams, ObjectResource, Patch};

/// One resource type as the garbage collector uses it.
pub trait GcKind: Send + Sync {
    /// `apiVersion`, e.g. `apps/v1`.
    fn api_version(&self) -> &'static str;
    /// `kind`, e.g. `ReplicaSet`.
    fn kind(&self) -> &'static str;
    /// True for namespaced types.
    fn namespaced(&self) -> bool;
    /// The live object's metadata, `None` when it does not exist.
    fn get<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ObjectMeta>, ClientError>>;
    /// Deletes the object if it still has `uid`, with `policy` (`Background`, `Foreground`, `Orphan`).
    fn delete<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        uid: &'a str,
        policy: &'a str,
    ) -> BoxFuture<'a, Result<(), ClientError>>;
    /// Patches the object.
    fn patch<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        patch: Patch,
    ) -> BoxFuture<'a, Result<(), ClientError>>;
}

/// [`GcKind`] for a k8s-openapi type.
pub struct Typed<K> {
    client: Client,
    _kind: PhantomData<fn() -> K>,
}

impl<K: ObjectResource> Typed<K> {
    /// The type `K` over `client`.
    pub fn new(client: Client) -> Self {
        Typed {
            client,
            _kind: PhantomData,
        }
    }

    fn api(&self, ns: &str) -> Api<K> {
        if Api::<K>::is_namespaced() {
            Api::namespaced(self.client.clone(), ns)
        } else {
            Api::all(self.client.clone())
        }
    }
}

impl<K: ObjectResource> GcKind for Typed<K> {
    fn api_version(&self) -> &'static str {
        K::API_VERSION
    }

    fn kind(&self) -> &'static str {
        K::KIND
    }

    fn namespaced(&self) -> bool {
        Api::<K>::is_namespaced()
    }

    fn get<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ObjectMeta>, ClientError>> {
        Box::pin(async move {
            Ok(self
                .api(ns)
                .get_opt(name)
                .await?
                .map(|o| o.metadata().clone()))
        })
    }

    fn delete<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        uid: &'a str,
        policy: &'a str,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(async move {
            let params = DeleteParams {
                propagation_policy: Some(policy.to_string()),
                precondition_uid: Some(uid.to_string()),
                ..DeleteParams::default()
            };
            match self.api(ns).delete(name, &params).await {
                Ok(_) => Ok(()),
                // The uid precondition failed: a new object took the name; nothing to do.
                Err(e) if e.code() == Some(409) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    fn patch<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        patch: Patch,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(async move {
            match self.api(ns).patch(name, &patch).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(e),
            }
        })
    }
}
