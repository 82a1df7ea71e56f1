//! Fills a Service spec from the pools: its cluster IP, node ports and health check port, with kube-apiserver's errors.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use serde_json::{json, Map, Value};

use super::ipam::IpAllocator;
use super::ports::PortAllocator;
use super::spec::{Held, Wants};
use crate::status::{ApiError, Cause};

/// The pools, behind one lock.
#[derive(Debug)]
pub(super) struct Pools {
    /// Cluster IPs.
    pub(super) ips: IpAllocator,
    /// Node ports.
    pub(super) ports: PortAllocator,
}

impl Pools {
    /// Gives back everything `held` names.
    pub(super) fn release(&mut self, held: &Held) {
        held.ips.iter().for_each(|&ip| self.ips.release(ip));
        held.ports.iter().for_each(|&p| self.ports.release(p));
    }
}

/// A `[]string` as Go's `%#v` prints it in field errors (the values are validated IPs: no escapes needed).
fn go_strings(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// An allocation refused: field causes (422 Invalid) or a full range (500 InternalError, as upstream).
pub(super) enum Refused {
    Invalid(Vec<Cause>),
    Internal(String),
}

impl Refused {
    /// The `Status` answered for the Service named `name`.
    pub(super) fn into_api_error(self, name: &str) -> ApiError {
        match self {
            Refused::Invalid(causes) => ApiError::invalid("", "Service", name, causes),
            Refused::Internal(message) => ApiError::internal(message),
        }
    }
}

/// This cluster is single-stack IPv4: IPv6 families, IPv6 or second cluster IPs and
/// `RequireDualStack` are refused with kube-apiserver's messages.
fn check_families(
    spec: &Map<String, Value>,
    ips: &[String],
    headless: bool,
) -> Result<(), Refused> {
    let mut causes = Vec::new();
    let families = spec.get("ipFamilies").and_then(Value::as_array);
    for (i, family) in families.into_iter().flatten().enumerate() {
        if family.as_str() != Some("IPv4") {
            let name = family.as_str().unwrap_or("");
            causes.push(Cause::invalid(
                format!("spec.ipFamilies[{i}]"),
                family,
                &format!("{name} is not configured on this cluster"),
            ));
        }
    }
    for (i, ip) in ips.iter().enumerate() {
        let field = format!("spec.clusterIPs[{i}]");
        if headless {
            break;
        }
        if i > 0 {
            causes.push(Cause::invalid_rendered(
                field,
                &go_strings(ips),
                "this cluster is not configured for dual-stack services",
            ));
        } else if matches!(ip.parse::<IpAddr>(), Ok(IpAddr::V6(_))) {
            causes.push(Cause::invalid_rendered(
                field,
                &go_strings(ips),
                "IPv6 is not configured on this cluster",
            ));
        }
    }
    let policy = spec.get("ipFamilyPolicy");
    if policy == Some(&json!("RequireDualStack")) && !headless {
        causes.push(Cause::invalid(
            "spec.ipFamilyPolicy",
            &json!("RequireDualStack"),
            "this cluster is not configured for dual-stack services",
        ));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(Refused::Invalid(causes))
    }
}

/// Allocates into `spec` what it needs beyond `old`, recording each new value in `taken`.
pub(super) fn allocate_spec(
    pools: &mut Pools,
    spec: &mut Map<String, Value>,
    wants: &Wants,
    old: &Held,
    taken: &mut Held,
) -> Result<(), Refused> {
    if wants.cluster_ip {
        check_families(spec, &wants.ips, wants.headless)?;
        if !wants.headless {
            allocate_cluster_ip(pools, spec, &wants.ips, old, taken)?;
        }
    }
    if wants.node_ports {
        allocate_node_ports(pools, spec, wants.allocates_node_ports, old, taken)?;
    }
    match wants.health_check_port {
        None => {}
        Some(Some(p)) if old.ports.contains(&p) || taken.ports.contains(&p) => {}
        Some(Some(p)) => {
            pools.ports.allocate(i64::from(p)).map_err(|e| {
                Refused::Internal(format!(
                    "failed to allocate requested HealthCheck NodePort {p}: {e}"
                ))
            })?;
            taken.ports.insert(p);
        }
        Some(None) => {
            let p = pools.ports.allocate_next().map_err(|e| {
                Refused::Internal(format!("failed to allocate a HealthCheck NodePort: {e}"))
            })?;
            taken.ports.insert(p);
            spec.insert("healthCheckNodePort".into(), json!(p));
        }
    }
    Ok(())
}

fn allocate_cluster_ip(
    pools: &mut Pools,
    spec: &mut Map<String, Value>,
    ips: &[String],
    old: &Held,
    taken: &mut Held,
) -> Result<(), Refused> {
    let Some(requested) = ips.first() else {
        let ip = pools
            .ips
            .allocate_next()
            .map_err(|e| Refused::Internal(format!("failed to allocate a serviceIP: {e}")))?;
        taken.ips.insert(ip);
        spec.insert("clusterIP".into(), json!(ip.to_string()));
        spec.insert("clusterIPs".into(), json!([ip.to_string()]));
        return Ok(());
    };
    let invalid = |e: &dyn std::fmt::Display| {
        Refused::Invalid(vec![Cause::invalid_rendered(
            "spec.clusterIPs",
            &go_strings(ips),
            &format!("failed to allocate IP {requested}: {e}"),
        )])
    };
    let ip: Ipv4Addr = requested.parse().map_err(|e| invalid(&e))?;
    if !old.ips.contains(&ip) {
        pools.ips.allocate(ip).map_err(|e| invalid(&e))?;
        taken.ips.insert(ip);
    }
    Ok(())
}

/// Node ports as kube-apiserver's `initNodePorts`: a requested port is taken
/// (unless `old` holds it), an empty one gets the port already chosen for the
/// same service port number (TCP and UDP 53 share one) or a free one.
fn allocate_node_ports(
    pools: &mut Pools,
    spec: &mut Map<String, Value>,
    allocates: bool,
    old: &Held,
    taken: &mut Held,
) -> Result<(), Refused> {
    let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    let requested_for = |number: i64, ports: &[Value]| {
        ports.iter().find_map(|p| {
            (p.get("port").and_then(Value::as_i64) == Some(number))
                .then(|| p.get("nodePort").and_then(Value::as_i64).unwrap_or(0))
                .filter(|&np| np != 0)
        })
    };
    let mut by_number: BTreeMap<i64, i64> = BTreeMap::new();
    for i in 0..ports.len() {
        let number = ports[i].get("port").and_then(Value::as_i64).unwrap_or(0);
        let requested = ports[i]
            .get("nodePort")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if requested == 0 && !allocates {
            continue;
        }
        let chosen = match requested {
            0 => match by_number
                .get(&number)
                .copied()
                .or_else(|| requested_for(number, ports))
            {
                Some(np) => np,
                None => {
                    let np = pools.ports.allocate_next().map_err(|e| {
                        Refused::Internal(format!("failed to allocate a nodePort: {e}"))
                    })?;
                    taken.ports.insert(np);
                    i64::from(np)
                }
            },
            np => np,
        };
        let held =
            u16::try_from(chosen).is_ok_and(|p| old.ports.contains(&p) || taken.ports.contains(&p));
        if !held {
            let np = pools.ports.allocate(chosen).map_err(|e| {
                Refused::Invalid(vec![Cause::invalid(
                    format!("spec.ports[{i}].nodePort"),
                    &json!(chosen),
                    &e.to_string(),
                )])
            })?;
            taken.ports.insert(np);
        }
        by_number.entry(number).or_insert(chosen);
        if let Some(port) = ports[i].as_object_mut() {
            port.insert("nodePort".into(), json!(chosen));
        }
    }
    Ok(())
}
