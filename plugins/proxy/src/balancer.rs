//! Choosing an endpoint for a new connection with IPVS's schedulers: round robin,
//! source hashing and least connections; and counting open connections per endpoint.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::config::Scheduler;

/// The ready endpoints of one Service port and the scheduler's state over them.
#[derive(Debug, Default)]
pub struct Backends {
    endpoints: Vec<SocketAddr>,
    next: AtomicUsize,
    active: HashMap<SocketAddr, Arc<AtomicUsize>>,
}

/// Held while a connection to an endpoint is open; counts it for `lc`.
#[derive(Debug)]
pub struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Backends {
    /// Backends over `endpoints`; the open-connection counts of endpoints that stay
    /// are carried over from `previous`.
    pub fn new(endpoints: Vec<SocketAddr>, previous: Option<&Backends>) -> Backends {
        let active = endpoints
            .iter()
            .map(|e| {
                let count = previous
                    .and_then(|p| p.active.get(e).cloned())
                    .unwrap_or_default();
                (*e, count)
            })
            .collect();
        Backends {
            endpoints,
            next: AtomicUsize::new(previous.map_or(0, |p| p.next.load(Ordering::Relaxed))),
            active,
        }
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    /// The endpoint for a connection from `client`, `attempt` counting retries after
    /// failed connects (each retry moves to the next endpoint); `None` without endpoints.
    pub fn pick(&self, scheduler: Scheduler, client: IpAddr, attempt: usize) -> Option<SocketAddr> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let first = match scheduler {
            Scheduler::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed),
            Scheduler::SourceHash => source_hash(client),
            Scheduler::LeastConnections => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|i| (start + i) % n)
                    .min_by_key(|&i| self.open_count(&self.endpoints[i]))
                    .unwrap_or(start)
            }
        };
        self.endpoints.get((first + attempt) % n).copied()
    }

    /// Open connections to `endpoint`.
    pub fn open_count(&self, endpoint: &SocketAddr) -> usize {
        self.active
            .get(endpoint)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Counts a connection to `endpoint` until the returned guard is dropped.
    pub fn open(&self, endpoint: &SocketAddr) -> Option<Open> {
        let count = self.active.get(endpoint)?.clone();
        count.fetch_add(1, Ordering::Relaxed);
        Some(Open(count))
    }
}

/// FNV-1a over the address bytes: stable across processes and restarts.
fn source_hash(client: IpAddr) -> usize {
    let bytes = match client {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(h % (usize::MAX as u64)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Backends {
        let e = (1..=3)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 80)))
            .collect();
        Backends::new(e, None)
    }

    fn client(last: u8) -> IpAddr {
        IpAddr::from([192, 168, 0, last])
    }

    #[test]
    fn round_robin_should_spread_evenly() {
        let b = three();
        let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
        for _ in 0..300 {
            if let Some(e) = b.pick(Scheduler::RoundRobin, client(1), 0) {
                *seen.entry(e).or_default() += 1;
            }
        }
        assert_eq!(seen.len(), 3);
        assert!(seen.values().all(|&n| n == 100), "{seen:?}");
    }

    #[test]
    fn source_hash_should_keep_a_client_on_one_endpoint() {
        let b = three();
        let first = b.pick(Scheduler::SourceHash, client(7), 0);
        assert!((0..50).all(|_| b.pick(Scheduler::SourceHash, client(7), 0) == first));
        let spread: std::collections::HashSet<_> = (0..=255u8)
            .filter_map(|i| b.pick(Scheduler::SourceHash, client(i), 0))
            .collect();
        assert_eq!(
            spread.len(),
            3,
            "different clients reach different endpoints"
        );
    }

    #[test]
    fn least_connections_should_avoid_busy_endpoints() {
        let b = three();
        let busy = SocketAddr::from(([10, 0, 0, 1], 80));
        let _held: Vec<Open> = (0..5).filter_map(|_| b.open(&busy)).collect();
        assert!((0..20).all(|_| b.pick(Scheduler::LeastConnections, client(1), 0) != Some(busy)));
        drop(_held);
        assert_eq!(b.open_count(&busy), 0);
    }

    #[test]
    fn a_retry_should_move_to_the_next_endpoint_and_no_endpoints_pick_none() {
        let b = three();
        let a = b.pick(Scheduler::SourceHash, client(9), 0);
        let c = b.pick(Scheduler::SourceHash, client(9), 1);
        assert_ne!(a, c);
        assert_eq!(
            Backends::new(Vec::new(), None).pick(Scheduler::RoundRobin, client(1), 0),
            None
        );
    }

    #[test]
    fn open_counts_should_survive_an_endpoint_update() {
        let b = three();
        let e = SocketAddr::from(([10, 0, 0, 2], 80));
        let _open = b.open(&e);
        let updated = Backends::new(vec![e], Some(&b));
        assert_eq!(updated.open_count(&e), 1);
    }
}
