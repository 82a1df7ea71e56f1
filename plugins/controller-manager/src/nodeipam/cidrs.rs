//! The pod CIDRs of a cluster CIDR (upstream's `cidrset`): the cluster range cut into
//! node-sized subnets, each free or taken.

use std::fmt;
use std::net::Ipv4Addr;

/// An IPv4 CIDR, `10.244.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// First address (host bits zero).
    pub base: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (a.b.c.d/n)"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{s:?}: {addr:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{s:?}: prefix must be 0-32"))?;
        let mask = mask(prefix);
        if u32::from(addr) & !mask != 0 {
            return Err(format!("{s:?} has host bits set"));
        }
        Ok(Cidr { base: addr, prefix })
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// Node subnets of one cluster CIDR, each free or taken.
#[derive(Debug)]
pub struct CidrSet {
    cluster: Cidr,
    node_prefix: u8,
    taken: Vec<bool>,
    used: usize,
    next: usize,
}

impl CidrSet {
    /// The subnets of `node_prefix` bits in `cluster`; `Err` when they do not fit.
    pub fn new(cluster: Cidr, node_prefix: u8) -> Result<CidrSet, String> {
        if node_prefix < cluster.prefix || node_prefix > 30 {
            return Err(format!(
                "node CIDR mask size {node_prefix} must be between the cluster CIDR's prefix {} and 30",
                cluster.prefix
            ));
        }
        let bits = node_prefix - cluster.prefix;
        if bits > 24 {
            return Err(format!(
                "{cluster} holds 2^{bits} /{node_prefix} subnets; at most 2^24 are supported"
            ));
        }
        Ok(CidrSet {
            cluster,
            node_prefix,
            taken: vec![false; 1 << bits],
            used: 0,
            next: 0,
        })
    }

    /// The cluster CIDR.
    pub fn cluster(&self) -> Cidr {
        self.cluster
    }

    /// Subnets in use / in all.
    pub fn usage(&self) -> (usize, usize) {
        (self.used, self.taken.len())
    }

    fn subnet(&self, index: usize) -> Cidr {
        let size = 1u32 << (32 - u32::from(self.node_prefix));
        let offset = u32::try_from(index).unwrap_or(0).wrapping_mul(size);
        Cidr {
            base: Ipv4Addr::from(u32::from(self.cluster.base).wrapping_add(offset)),
            prefix: self.node_prefix,
        }
    }

    fn index(&self, cidr: Cidr) -> Option<usize> {
        let inside = cidr.prefix == self.node_prefix
            && u32::from(cidr.base) & mask(self.cluster.prefix) == u32::from(self.cluster.base);
        inside.then(|| {
            let offset = u32::from(cidr.base) - u32::from(self.cluster.base);
            (offset >> (32 - u32::from(self.node_prefix))) as usize
        })
    }

    /// Takes the next free subnet (searching on from the last one taken, as upstream).
    pub fn allocate(&mut self) -> Option<Cidr> {
        let n = self.taken.len();
        for i in 0..n {
            let index = (self.next + i) % n;
            if !self.taken[index] {
                self.taken[index] = true;
                self.used += 1;
                self.next = (index + 1) % n;
                return Some(self.subnet(index));
            }
        }
        None
    }

    /// Marks `cidr` taken (a node that already has it); false when it is not one of
    /// this set's subnets.
    pub fn occupy(&mut self, cidr: Cidr) -> bool {
        match self.index(cidr) {
            Some(i) => {
                if !self.taken[i] {
                    self.taken[i] = true;
                    self.used += 1;
                }
                true
            }
            None => false,
        }
    }

    /// Frees `cidr`.
    pub fn release(&mut self, cidr: Cidr) {
        if let Some(i) = self.index(cidr) {
            if self.taken[i] {
                self.taken[i] = false;
                self.used -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn subnets_should_be_handed_out_in_order_and_reused_after_release() {
        let mut set = CidrSet::new(cidr("10.244.0.0/22"), 24).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(set.allocate(), Some(cidr("10.244.0.0/24")));
        assert_eq!(set.allocate(), Some(cidr("10.244.1.0/24")));
        assert!(set.occupy(cidr("10.244.2.0/24")));
        assert_eq!(set.allocate(), Some(cidr("10.244.3.0/24")));
        assert_eq!(set.allocate(), None, "full");
        set.release(cidr("10.244.1.0/24"));
        assert_eq!(set.usage(), (3, 4));
        assert_eq!(set.allocate(), Some(cidr("10.244.1.0/24")));
    }

    #[test]
    fn foreign_cidrs_should_not_be_taken() {
        let mut set = CidrSet::new(cidr("10.244.0.0/16"), 24).unwrap_or_else(|e| panic!("{e}"));
        assert!(!set.occupy(cidr("10.128.0.0/24")));
        assert!(!set.occupy(cidr("10.244.0.0/25")));
        assert_eq!(set.usage(), (0, 256));
    }

    #[test]
    fn bad_ranges_should_be_refused() {
        assert!("10.244.0.1/16".parse::<Cidr>().is_err());
        assert!("10.244.0.0".parse::<Cidr>().is_err());
        assert!(CidrSet::new(cidr("10.244.0.0/24"), 16).is_err());
    }
}
