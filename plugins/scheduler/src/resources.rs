//! Resource quantities: parsing `resource.Quantity` strings and summing pod requests.
//!
//! Requests of a pod follow upstream `PodRequests`: the sum over containers, at
//! least the largest init container (restartable "sidecar" init containers add to
//! both), plus the pod overhead. The non-zero variant counts a container's unset CPU
//! or memory request as 100m / 200 MiB (`non_zero.go`), for scoring.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// CPU counted for a container without a CPU request when scoring, millicores.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory counted for a container without a memory request when scoring (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A quantity could not be parsed; retrying does not help until the object changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{resource}: invalid quantity {value:?}: {reason}")]
pub struct QuantityError {
    /// Resource name.
    pub resource: String,
    /// The text found.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

pub use kubernel_sdk::api::quantity::parse_scaled;

/// Amounts of every resource a node offers or a pod requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    /// CPU, millicores.
    pub milli_cpu: i64,
    /// Memory, bytes.
    pub memory: i64,
    /// Ephemeral storage, bytes.
    pub ephemeral_storage: i64,
    /// Pod count (only meaningful for allocatable).
    pub allowed_pod_number: i64,
    /// Extended and other scalar resources (`nvidia.com/gpu`, `hugepages-2Mi`, ...), sorted by name.
    pub scalar: Vec<(String, i64)>,
}

impl Resource {
    /// Parses a resource list (`requests`, `allocatable`, ...).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Result<Resource, QuantityError> {
        let mut r = Resource::default();
        for (name, q) in list {
            let err = |reason| QuantityError {
                resource: name.clone(),
                value: q.0.clone(),
                reason,
            };
            match name.as_str() {
                "cpu" => r.milli_cpu = parse_scaled(&q.0, 3).map_err(err)?,
                "memory" => r.memory = parse_scaled(&q.0, 0).map_err(err)?,
                "ephemeral-storage" => r.ephemeral_storage = parse_scaled(&q.0, 0).map_err(err)?,
                "pods" => r.allowed_pod_number = parse_scaled(&q.0, 0).map_err(err)?,
                _ => r.set_scalar(name, parse_scaled(&q.0, 0).map_err(err)?),
            }
        }
        Ok(r)
    }

    /// The amount of scalar resource `name` (0 when absent).
    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .map(|i| self.scalar[i].1)
            .unwrap_or(0)
    }

    fn set_scalar(&mut self, name: &str, value: i64) {
        match self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => self.scalar[i].1 = value,
            Err(i) => self.scalar.insert(i, (name.to_string(), value)),
        }
    }

    /// Combines `other` into `self` resource by resource with `f`.
    fn combine(&mut self, other: &Resource, f: impl Fn(i64, i64) -> i64) {
        self.milli_cpu = f(self.milli_cpu, other.milli_cpu);
        self.memory = f(self.memory, other.memory);
        self.ephemeral_storage = f(self.ephemeral_storage, other.ephemeral_storage);
        self.allowed_pod_number = f(self.allowed_pod_number, other.allowed_pod_number);
        for (name, v) in &other.scalar {
            let mine = self.scalar(name);
            self.set_scalar(name, f(mine, *v));
        }
        for i in 0..self.scalar.len() {
            if other.scalar(&self.scalar[i].0) == 0 {
                self.scalar[i].1 = f(self.scalar[i].1, 0);
            }
        }
    }

    /// Adds `other`.
    pub fn add(&mut self, other: &Resource) {
        self.combine(other, i64::saturating_add);
    }

    /// Subtracts `other`.
    pub fn sub(&mut self, other: &Resource) {
        self.combine(other, i64::saturating_sub);
    }

    /// Raises every amount to at least `other`'s.
    pub fn set_max(&mut self, other: &Resource) {
        self.combine(other, i64::max);
    }

    /// True when no resource is requested (a best-effort pod).
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.iter().all(|(_, v)| *v == 0)
    }
}

/// Requests of one container; with `non_missing`, unset CPU/memory get the scoring defaults.
fn container_requests(c: &Container, non_missing: bool) -> Result<Resource, QuantityError> {
    let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let mut r = match requests {
        Some(list) => Resource::from_list(list)?,
        None => Resource::default(),
    };
    if non_missing {
        if !requests.is_some_and(|l| l.contains_key("cpu")) {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !requests.is_some_and(|l| l.contains_key("memory")) {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    Ok(r)
}

/// The pod's effective requests (upstream `PodRequests`).
pub fn pod_requests(spec: &PodSpec, non_missing: bool) -> Result<Resource, QuantityError> {
    let mut reqs = Resource::default();
    for c in &spec.containers {
        reqs.add(&container_requests(c, non_missing)?);
    }
    let mut restartable = Resource::default();
    let mut init_max = Resource::default();
    for c in spec.init_containers.iter().flatten() {
        let mut r = container_requests(c, non_missing)?;
        if c.restart_policy.as_deref() == Some("Always") {
            reqs.add(&r);
            restartable.add(&r);
            r = restartable.clone();
        } else {
            r.add(&restartable);
        }
        init_max.set_max(&r);
    }
    reqs.set_max(&init_max);
    if let Some(overhead) = &spec.overhead {
        reqs.add(&Resource::from_list(overhead)?);
    }
    Ok(reqs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn container(cpu: Option<&str>, mem: Option<&str>) -> Container {
        let mut requests = BTreeMap::new();
        if let Some(c) = cpu {
            requests.insert("cpu".to_string(), Quantity(c.to_string()));
        }
        if let Some(m) = mem {
            requests.insert("memory".to_string(), Quantity(m.to_string()));
        }
        Container {
            resources: Some(ResourceRequirements {
                requests: Some(requests),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn parse_scaled_should_read_every_suffix() {
        assert_eq!(parse_scaled("100m", 3), Ok(100));
        assert_eq!(parse_scaled("1.5", 3), Ok(1500));
        assert_eq!(parse_scaled("2", 3), Ok(2000));
        assert_eq!(parse_scaled("1Gi", 0), Ok(1 << 30));
        assert_eq!(parse_scaled("128974848", 0), Ok(128_974_848));
        assert_eq!(parse_scaled("129e6", 0), Ok(129_000_000));
        assert_eq!(parse_scaled("123Mi", 0), Ok(123 << 20));
        assert_eq!(parse_scaled("1k", 0), Ok(1000));
        // Rounds up: 0.5m CPU is 1 millicore.
        assert_eq!(parse_scaled("0.5m", 3), Ok(1));
        assert!(parse_scaled("abc", 0).is_err());
        assert!(parse_scaled("1Zi", 0).is_err());
        assert!(parse_scaled("1e999", 0).is_err());
    }

    #[test]
    fn pod_requests_should_take_the_larger_of_containers_and_init_containers() {
        let spec = PodSpec {
            containers: vec![
                container(Some("100m"), Some("1Gi")),
                container(Some("200m"), None),
            ],
            init_containers: Some(vec![container(Some("500m"), Some("10Mi"))]),
            ..Default::default()
        };
        let r = pod_requests(&spec, false).expect("requests");
        assert_eq!((r.milli_cpu, r.memory), (500, 1 << 30));
        let nz = pod_requests(&spec, true).expect("requests");
        // The second container's missing memory counts as 200 MiB when scoring.
        assert_eq!(
            (nz.milli_cpu, nz.memory),
            (500, (1 << 30) + DEFAULT_MEMORY_REQUEST)
        );
    }

    #[test]
    fn pod_requests_should_add_sidecars_and_overhead() {
        let mut sidecar = container(Some("50m"), Some("1Mi"));
        sidecar.restart_policy = Some("Always".into());
        let spec = PodSpec {
            containers: vec![container(Some("100m"), Some("1Mi"))],
            init_containers: Some(vec![sidecar, container(Some("120m"), Some("1Mi"))]),
            overhead: Some([("cpu".to_string(), Quantity("10m".into()))].into()),
            ..Default::default()
        };
        // containers 100 + sidecar 50 = 150; init 120 + sidecar 50 = 170; + overhead 10.
        let r = pod_requests(&spec, false).expect("requests");
        assert_eq!(r.milli_cpu, 180);
    }

    #[test]
    fn resource_should_add_and_subtract_scalars() {
        let mut a =
            Resource::from_list(&[("nvidia.com/gpu".to_string(), Quantity("2".into()))].into())
                .expect("list");
        let b = a.clone();
        a.add(&b);
        assert_eq!(a.scalar("nvidia.com/gpu"), 4);
        a.sub(&b);
        assert_eq!(a.scalar("nvidia.com/gpu"), 2);
        assert!(!a.is_zero());
    }
}
