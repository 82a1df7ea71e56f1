//! Startup: rebuild the allocations from the stored Services, then create or repair the `kubernetes` Service and its endpoints.
//!
//! As kube-apiserver's bootstrap controller, the `kubernetes` Service in
//! `default` has the first IP of the service CIDR and port 443 (`https`) to the
//! apiserver's port; its Endpoints and EndpointSlice (also named `kubernetes`)
//! list this apiserver's bind address and port. Existing objects keep their
//! identity; only the ports and addresses are rewritten when they changed.

use std::net::SocketAddr;

use kubernel_api::pointer::Pointer;
use kubernel_api::resources::{self, Resource};
use serde_json::{json, Value};

use crate::handlers::ApiState;
use crate::request::{object_key, RequestInfo, Verb};
use crate::store::{ListOptions, Store, StoreError};
use crate::{admission, objects};

const NAME: &str = "kubernetes";
const NAMESPACE: &str = "default";

/// Why startup could not rebuild the allocations or write the `kubernetes` objects.
/// A `Store` error may pass on a restart (the store was unavailable); the others are bugs.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The resource catalog does not serve a kind this module writes.
    #[error("kind {kind} is not in the resource catalog")]
    NotServed {
        /// The kind.
        kind: &'static str,
    },
    /// Reading or writing `key` failed.
    #[error("{key}: {source}")]
    Store {
        /// The storage key.
        key: String,
        /// The store's error.
        source: StoreError,
    },
    /// The server-set metadata of `key` could not be filled in.
    #[error("{key}: {message}")]
    Prepare {
        /// The storage key.
        key: String,
        /// What was wrong.
        message: String,
    },
}

fn resource(group: &str, kind: &'static str) -> Result<&'static Resource, BootstrapError> {
    resources::find_kind(group, "v1", kind).ok_or(BootstrapError::NotServed { kind })
}

/// Rebuilds the allocations from the stored Services, then ensures the
/// `kubernetes` Service, Endpoints and EndpointSlice point at `addr`. Runs once, before serving.
pub async fn start(state: &ApiState, addr: SocketAddr) -> Result<(), BootstrapError> {
    let services = resource("", "Service")?;
    let prefix = format!("{}/", services.storage_prefix());
    let stored = state
        .store
        .list(&ListOptions {
            prefix: prefix.clone(),
            ..ListOptions::default()
        })
        .map_err(|source| BootstrapError::Store {
            key: prefix,
            source,
        })?;
    state.services.rebuild(&stored.items);
    ensure_service(state, services, addr.port()).await?;
    let ip = addr.ip().to_string();
    let port = json!([{"name": "https", "port": addr.port(), "protocol": "TCP"}]);
    let endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": ip}], "ports": port}],
    });
    let store = state.store.as_ref();
    ensure_object(store, resource("", "Endpoints")?, endpoints, &["/subsets"]).await?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"kubernetes.io/service-name": NAME}},
        "addressType": if addr.is_ipv6() { "IPv6" } else { "IPv4" },
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
        "ports": port,
    });
    let slices = resource("discovery.k8s.io", "EndpointSlice")?;
    ensure_object(
        store,
        slices,
        slice,
        &["/addressType", "/endpoints", "/ports"],
    )
    .await
}

/// Creates the `kubernetes` Service with the first IP of the range, or repairs its ports.
async fn ensure_service(
    state: &ApiState,
    r: &'static Resource,
    port: u16,
) -> Result<(), BootstrapError> {
    let first = state.services.first_ip();
    let ip = first.to_string();
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            "sessionAffinity": "None",
        },
        "status": {"loadBalancer": {}},
    });
    let store = state.store.as_ref();
    if repair(store, r, &service, &["/spec/ports"]).await? {
        return Ok(());
    }
    let txn = match state.services.reserve_ip(first) {
        Ok(txn) => txn,
        Err(e) => {
            tracing::warn!(cluster_ip = %ip, error = %e, "the kubernetes Service is not created: the first IP of service_cluster_ip_range is held by another Service");
            return Ok(());
        }
    };
    create(store, r, service).await?;
    txn.commit();
    Ok(())
}

/// Creates `desired` unless it exists, else [`repair`]s the fields at `pointers`.
async fn ensure_object(
    store: &dyn Store,
    r: &'static Resource,
    desired: Value,
    pointers: &[&str],
) -> Result<(), BootstrapError> {
    if !repair(store, r, &desired, pointers).await? {
        create(store, r, desired).await?;
    }
    Ok(())
}

/// Rewrites the fields at `pointers` of the stored object when they differ from
/// `desired`'s (defaulted); false when there is no stored object.
async fn repair(
    store: &dyn Store,
    r: &'static Resource,
    desired: &Value,
    pointers: &[&str],
) -> Result<bool, BootstrapError> {
    let key = object_key(r, NAMESPACE, NAME);
    let failed = |source| BootstrapError::Store {
        key: key.clone(),
        source,
    };
    let Some(current) = store.get(&key).map_err(failed)? else {
        return Ok(false);
    };
    let mut desired = desired.clone();
    admission::apply_defaults(r, &mut desired);
    let mut updated = (*current.object).clone();
    let mut changed = false;
    for pointer in pointers {
        let want = desired.at(pointer).cloned().unwrap_or(Value::Null);
        if current.object.at(pointer) == Some(&want) {
            continue;
        }
        let (parent, field) = pointer.rsplit_once('/').unwrap_or(("", pointer));
        if let Some(slot) = updated.pointer_mut(parent).and_then(Value::as_object_mut) {
            slot.insert(field.to_string(), want);
            changed = true;
        }
    }
    if changed {
        match store
            .update(&key, updated, Some(current.mod_revision))
            .await
        {
            Ok(_) => {
                tracing::info!(key = %key, fields = ?pointers, "repaired to point at this apiserver")
            }
            Err(StoreError::Conflict { .. }) => {
                tracing::warn!(key = %key, "not repaired: it changed while being repaired")
            }
            // Deleted since it was read (another apiserver's cache or a controller):
            // the caller creates it anew.
            Err(StoreError::NotFound { .. }) => {
                tracing::warn!(key = %key, "not repaired: it was deleted while being repaired; creating it");
                return Ok(false);
            }
            Err(e) => return Err(failed(e)),
        }
    }
    Ok(true)
}

/// Creates `object` as the API would: defaults and server-set metadata, then the store.
async fn create(
    store: &dyn Store,
    r: &'static Resource,
    mut object: Value,
) -> Result<(), BootstrapError> {
    let key = object_key(r, NAMESPACE, NAME);
    let info = RequestInfo {
        verb: Verb::Create,
        resource: r,
        subresource: String::new(),
        namespace: NAMESPACE.into(),
        name: NAME.into(),
    };
    admission::apply_defaults(r, &mut object);
    objects::prepare_create(&info, &mut object).map_err(|e| BootstrapError::Prepare {
        key: key.clone(),
        message: e.message,
    })?;
    match store.create(&key, object).await {
        Ok(_) => {
            tracing::info!(key = %key, "created");
            Ok(())
        }
        Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(source) => Err(BootstrapError::Store { key, source }),
    }
}
