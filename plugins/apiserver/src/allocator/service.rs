//! What Services hold from the pools: cluster IPs and node ports taken on create and update, given back on delete.
//!
//! A write reserves what it needs under the pools' lock and gets a [`Transaction`]:
//! the handler writes the object (compare-and-swap), then commits, which gives
//! back what the old object held and the new one does not; a failed write, a
//! refused validation or a dry run drops the transaction, which gives back what
//! the request took. Two requests can never take the same value, and the pools
//! never hold a value no stored Service holds for longer than one write.

use std::net::Ipv4Addr;

use kubernel_api::pointer::Pointer;
use parking_lot::Mutex;
use serde_json::Value;

use super::assign::{allocate_spec, Pools};
use super::ipam::{IpAllocator, IpamError, ServiceCidr};
use super::ports::{PortAllocator, PortRange};
use super::spec::{Held, Wants};
use crate::request::RequestInfo;
use crate::status::ApiError;
use crate::store::Stored;

/// The Service registry's allocator: which cluster IPs and node ports Services hold.
#[derive(Debug)]
pub struct ServiceAllocator {
    pools: Mutex<Pools>,
}

/// Allocations of one write, given back unless the write is committed (see the module doc).
#[must_use = "a dropped transaction gives its allocations back"]
pub struct Transaction<'a> {
    allocator: &'a ServiceAllocator,
    taken: Held,
    old: Held,
    new: Held,
    done: bool,
}

impl Transaction<'_> {
    /// The object was written: gives back what the old object held and the new one does not.
    pub fn commit(mut self) {
        self.done = true;
        self.allocator
            .pools
            .lock()
            .release(&self.old.minus(&self.new));
    }

    /// The write deleted the object (its last finalizer went): gives back all that the old and the new one held.
    pub fn commit_delete(mut self) {
        self.done = true;
        let mut pools = self.allocator.pools.lock();
        pools.release(&self.old);
        pools.release(&self.new);
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.allocator.pools.lock().release(&self.taken);
        }
    }
}

/// True when `info` writes a Service (not its status).
fn writes_service(info: &RequestInfo) -> bool {
    (info.resource.group, info.resource.kind) == ("", "Service") && info.subresource.is_empty()
}

impl ServiceAllocator {
    /// An allocator with nothing held, over `cidr` and `ports`.
    pub fn new(cidr: ServiceCidr, ports: PortRange) -> ServiceAllocator {
        ServiceAllocator {
            pools: Mutex::new(Pools {
                ips: IpAllocator::new(cidr),
                ports: PortAllocator::new(ports),
            }),
        }
    }

    /// The first IP of the service CIDR (the `kubernetes` Service's).
    pub fn first_ip(&self) -> Ipv4Addr {
        self.pools.lock().ips.first()
    }

    /// Marks what the stored `services` hold (at start, before serving). A value
    /// outside the configured ranges or held twice is logged and left as it is.
    pub fn rebuild(&self, services: &[Stored]) {
        let mut pools = self.pools.lock();
        for s in services {
            let held = Held::of(&s.object);
            for &ip in &held.ips {
                if let Err(e) = pools.ips.allocate(ip) {
                    tracing::warn!(service = %s.key, cluster_ip = %ip, error = %e, "stored Service keeps a cluster IP the allocator cannot hold; recreate the Service to move it");
                }
            }
            for &port in &held.ports {
                if let Err(e) = pools.ports.allocate(i64::from(port)) {
                    tracing::warn!(service = %s.key, node_port = port, error = %e, "stored Service keeps a node port the allocator cannot hold; recreate the Service to move it");
                }
            }
        }
        tracing::info!(
            services = services.len(),
            cluster_ips = pools.ips.used(),
            node_ports = pools.ports.used(),
            range = %pools.ips.cidr(),
            "service allocations rebuilt from the store"
        );
    }

    /// Reserves `ip` for a Service written outside the request path (the `kubernetes` Service).
    pub(super) fn reserve_ip(&self, ip: Ipv4Addr) -> Result<Transaction<'_>, IpamError> {
        self.pools.lock().ips.allocate(ip)?;
        let mut taken = Held::default();
        taken.ips.insert(ip);
        Ok(Transaction {
            allocator: self,
            new: taken.clone(),
            taken,
            old: Held::default(),
            done: false,
        })
    }

    /// Allocates what a new Service needs (a validated object; other kinds pass
    /// untouched): fills `clusterIP`/`clusterIPs` and the `nodePort`s left empty.
    pub fn allocate_create(
        &self,
        info: &RequestInfo,
        object: &mut Value,
    ) -> Result<Transaction<'_>, ApiError> {
        self.allocate(info, None, object)
    }

    /// Allocates what an updated Service needs beyond what `old` holds (after
    /// [`super::prepare_update`] and validation).
    pub fn allocate_update(
        &self,
        info: &RequestInfo,
        old: &Value,
        new: &mut Value,
    ) -> Result<Transaction<'_>, ApiError> {
        self.allocate(info, Some(old), new)
    }

    /// Gives back what a deleted Service held.
    pub fn release(&self, info: &RequestInfo, deleted: &Value) {
        if writes_service(info) {
            self.pools.lock().release(&Held::of(deleted));
        }
    }

    fn allocate(
        &self,
        info: &RequestInfo,
        old: Option<&Value>,
        object: &mut Value,
    ) -> Result<Transaction<'_>, ApiError> {
        let mut txn = Transaction {
            allocator: self,
            taken: Held::default(),
            old: Held::default(),
            new: Held::default(),
            done: false,
        };
        if !writes_service(info) {
            return Ok(txn);
        }
        txn.old = old.map(Held::of).unwrap_or_default();
        let name = object
            .at("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let Some(wants) = object.get("spec").map(Wants::of) else {
            return Ok(txn);
        };
        let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(txn);
        };
        let result = {
            let mut pools = self.pools.lock();
            allocate_spec(&mut pools, spec, &wants, &txn.old, &mut txn.taken)
        };
        result.map_err(|e| e.into_api_error(&name))?;
        txn.new = Held::of(object);
        tracing::debug!(service = %info.key(), taken = ?txn.taken, "service allocations reserved");
        Ok(txn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Verb;
    use serde_json::json;

    fn allocator(cidr: &str, ports: &str) -> ServiceAllocator {
        let cidr = cidr.parse().unwrap_or_else(|e| panic!("{e}"));
        let ports = ports.parse().unwrap_or_else(|e| panic!("{e}"));
        ServiceAllocator::new(cidr, ports)
    }

    fn info(kind: &str) -> RequestInfo {
        RequestInfo {
            verb: Verb::Create,
            resource: kubernel_api::resources::find_kind("", "v1", kind)
                .unwrap_or_else(|| panic!("{kind} is served")),
            subresource: String::new(),
            namespace: "default".into(),
            name: "web".into(),
        }
    }

    fn service(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn created(a: &ServiceAllocator, spec: Value) -> Result<Value, String> {
        let mut object = service(spec);
        let txn = a
            .allocate_create(&info("Service"), &mut object)
            .map_err(|e| e.message)?;
        txn.commit();
        Ok(object["spec"].clone())
    }

    #[test]
    fn create_should_fill_an_empty_cluster_ip_and_node_ports() {
        let a = allocator("10.96.0.0/12", "30000-32767");
        let spec = created(
            &a,
            json!({"type": "NodePort", "ports": [
                {"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}, {"port": 80, "nodePort": 30080}]}),
        );
        assert_eq!(
            spec,
            Ok(
                json!({"type": "NodePort", "clusterIP": "10.96.1.1", "clusterIPs": ["10.96.1.1"], "ports": [
                {"port": 53, "protocol": "UDP", "nodePort": 30086}, {"port": 53, "protocol": "TCP", "nodePort": 30086},
                {"port": 80, "nodePort": 30080}]})
            )
        );
    }

    #[test]
    fn create_should_refuse_taken_values_with_upstream_messages() {
        let a = allocator("10.96.0.0/12", "30000-32767");
        let first = json!({"type": "NodePort", "clusterIP": "10.96.0.10", "ports": [{"port": 80, "nodePort": 30080}]});
        assert!(created(&a, first.clone()).is_ok());
        assert_eq!(
            created(&a, json!({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "ports": [{"port": 80}]})),
            Err("Service \"web\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.0.10\"}: failed to allocate IP 10.96.0.10: provided IP is already allocated".into())
        );
        assert_eq!(
            created(&a, json!({"clusterIP": "10.200.0.1", "ports": [{"port": 80}]})),
            Err("Service \"web\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.200.0.1\"}: failed to allocate IP 10.200.0.1: the provided IP (10.200.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12".into())
        );
        assert_eq!(
            created(&a, json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]})),
            Err("Service \"web\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated".into())
        );
        assert_eq!(
            created(&a, json!({"ipFamilies": ["IPv6"], "ipFamilyPolicy": "RequireDualStack", "ports": [{"port": 80}]})),
            Err("Service \"web\" is invalid: [spec.ipFamilies[0]: Invalid value: \"IPv6\": IPv6 is not configured on this cluster, spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services]".into())
        );
        // A refused request gives back what it took before failing.
        let mut both = service(
            json!({"type": "NodePort", "ports": [{"port": 81}, {"port": 80, "nodePort": 30080}]}),
        );
        assert!(a.allocate_create(&info("Service"), &mut both).is_err());
        assert_eq!(a.pools.lock().ports.used(), 1);
    }

    #[test]
    fn headless_external_name_and_other_kinds_should_take_nothing() {
        let a = allocator("10.96.0.0/12", "30000-32767");
        assert_eq!(
            created(&a, json!({"clusterIP": "None", "clusterIPs": ["None"]})),
            Ok(json!({"clusterIP": "None", "clusterIPs": ["None"]}))
        );
        assert!(created(
            &a,
            json!({"type": "ExternalName", "externalName": "example.com"})
        )
        .is_ok());
        let mut pod = service(json!({}));
        let txn = a.allocate_create(&info("Pod"), &mut pod);
        assert!(txn.is_ok_and(|t| {
            t.commit();
            true
        }));
        assert_eq!(pod, service(json!({})));
        assert_eq!(a.pools.lock().ips.used(), 0);
    }

    #[test]
    fn a_dropped_transaction_should_give_its_allocations_back() {
        let a = allocator("10.96.0.0/29", "30000-30001");
        let mut object = service(json!({"type": "NodePort", "ports": [{"port": 80}]}));
        let txn = a.allocate_create(&info("Service"), &mut object);
        assert!(txn.is_ok());
        drop(txn);
        let pools = a.pools.lock();
        assert_eq!((pools.ips.used(), pools.ports.used()), (0, 0));
    }

    #[test]
    fn update_should_take_new_values_and_give_back_old_ones_on_commit() {
        let a = allocator("10.96.0.0/12", "30000-32767");
        let old = service(
            created(
                &a,
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        let mut new = old.clone();
        new["spec"]["ports"][0]["nodePort"] = json!(30081);
        let txn = a
            .allocate_update(&info("Service"), &old, &mut new)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(created(
            &a,
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]})
        )
        .is_err());
        txn.commit();
        assert!(created(
            &a,
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]})
        )
        .is_ok());
        // Back to ClusterIP: the node port goes, the cluster IP stays.
        let mut plain = new.clone();
        plain["spec"] = json!({"type": "ClusterIP", "clusterIP": new["spec"]["clusterIP"], "ports": [{"port": 80}]});
        let txn = a
            .allocate_update(&info("Service"), &new, &mut plain)
            .unwrap_or_else(|e| panic!("{e}"));
        txn.commit();
        assert!(created(
            &a,
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30081}]})
        )
        .is_ok());
        assert_eq!(a.pools.lock().ips.used(), 3);
        a.release(&info("Service"), &plain);
        assert_eq!(a.pools.lock().ips.used(), 2);
    }

    #[test]
    fn rebuild_should_mark_what_stored_services_hold() {
        let a = allocator("10.96.0.0/12", "30000-32767");
        let stored = |spec: Value| Stored {
            key: "services/default/web".into(),
            object: std::sync::Arc::new(service(spec)),
            json: bytes::Bytes::new(),
            create_revision: 1,
            mod_revision: 1,
        };
        a.rebuild(&[
            stored(json!({"type": "NodePort", "clusterIP": "10.96.0.10", "ports": [{"port": 80, "nodePort": 30080}]})),
            stored(json!({"clusterIP": "192.168.0.1"})),
        ]);
        assert!(created(
            &a,
            json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80}]})
        )
        .is_err());
        assert!(created(
            &a,
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]})
        )
        .is_err());
        let pools = a.pools.lock();
        assert_eq!((pools.ips.used(), pools.ports.used()), (1, 1));
    }
}
