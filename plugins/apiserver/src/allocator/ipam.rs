//! ClusterIP allocation from the service CIDR (`service_cluster_ip_range`), as kube-apiserver's `ipallocator`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::Deserialize;

use super::bitmap::Bitmap;

/// Widest service CIDR accepted, as kube-apiserver (`the mask must be >= 12`): 2^20 addresses.
const WIDEST_PREFIX: u8 = 12;
/// Narrowest service CIDR accepted: two usable addresses (the `kubernetes` Service and one more).
const NARROWEST_PREFIX: u8 = 30;

/// A `service_cluster_ip_range` that does not parse or has an unusable size; fixing the config is the only remedy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not `a.b.c.d/n` with an IPv4 address and a prefix length.
    #[error(
        "{0:?} is not an IPv4 CIDR such as 10.96.0.0/12 (IPv6 service ranges are not supported)"
    )]
    Syntax(String),
    /// A prefix outside 12..=30.
    #[error("{cidr:?}: the prefix length must be between /{WIDEST_PREFIX} and /{NARROWEST_PREFIX}, got /{prefix}")]
    Size {
        /// The CIDR as written.
        cidr: String,
        /// Its prefix length.
        prefix: u8,
    },
}

/// An IPv4 service CIDR, e.g. `10.96.0.0/12` (host bits are cleared, as Go's `net.ParseCIDR` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ServiceCidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl ServiceCidr {
    /// Number of addresses in the CIDR, network and broadcast addresses included.
    fn len(&self) -> u32 {
        1 << (32 - self.prefix)
    }
}

impl Default for ServiceCidr {
    /// `10.96.0.0/12`, kubeadm's default.
    fn default() -> ServiceCidr {
        ServiceCidr {
            network: Ipv4Addr::new(10, 96, 0, 0),
            prefix: 12,
        }
    }
}

impl FromStr for ServiceCidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<ServiceCidr, CidrError> {
        let syntax = || CidrError::Syntax(s.to_string());
        let (ip, prefix) = s.trim().split_once('/').ok_or_else(syntax)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| syntax())?;
        let prefix: u8 = prefix.parse().map_err(|_| syntax())?;
        if prefix > 32 {
            return Err(syntax());
        }
        if !(WIDEST_PREFIX..=NARROWEST_PREFIX).contains(&prefix) {
            return Err(CidrError::Size {
                cidr: s.to_string(),
                prefix,
            });
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(ServiceCidr {
            network: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }
}

impl TryFrom<String> for ServiceCidr {
    type Error = CidrError;

    fn try_from(s: String) -> Result<ServiceCidr, CidrError> {
        s.parse()
    }
}

impl fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Why a cluster IP could not be allocated. The texts are kube-apiserver's, which clients match on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// The requested IP is outside the service CIDR (or is its network or broadcast address).
    #[error("the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}")]
    NotInRange {
        /// The requested IP.
        ip: String,
        /// The service CIDR.
        range: ServiceCidr,
    },
    /// The requested IP belongs to another Service.
    #[error("provided IP is already allocated")]
    Allocated,
    /// Every IP of the range is taken; deleting a Service frees one.
    #[error("range is full")]
    Full,
}

/// The cluster IPs of the service CIDR and which of them Services hold.
#[derive(Debug, Clone)]
pub struct IpAllocator {
    cidr: ServiceCidr,
    /// The first usable address (the network address + 1), offset 0 of the bitmap.
    first: u32,
    bits: Bitmap,
}

impl IpAllocator {
    /// An allocator with nothing taken over the usable addresses of `cidr` (all but
    /// the network and broadcast addresses).
    pub fn new(cidr: ServiceCidr) -> IpAllocator {
        let size = cidr.len() - 2;
        IpAllocator {
            cidr,
            first: u32::from(cidr.network) + 1,
            bits: Bitmap::new(size, static_band(cidr.len())),
        }
    }

    /// The service CIDR.
    pub fn cidr(&self) -> ServiceCidr {
        self.cidr
    }

    /// The first usable address: the `kubernetes` Service's.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first)
    }

    /// Number of addresses held.
    pub fn used(&self) -> u32 {
        self.bits.used()
    }

    fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        u32::from(ip)
            .checked_sub(self.first)
            .filter(|&o| o < self.bits.size())
    }

    /// Takes `ip`, asked for by a Service.
    pub fn allocate(&mut self, ip: Ipv4Addr) -> Result<(), IpamError> {
        let offset = self.offset(ip).ok_or_else(|| IpamError::NotInRange {
            ip: ip.to_string(),
            range: self.cidr,
        })?;
        if self.bits.take(offset) {
            Ok(())
        } else {
            Err(IpamError::Allocated)
        }
    }

    /// Takes a free address, from the upper band first.
    pub fn allocate_next(&mut self) -> Result<Ipv4Addr, IpamError> {
        let offset = self.bits.take_next().ok_or(IpamError::Full)?;
        Ok(Ipv4Addr::from(self.first + offset))
    }

    /// Gives `ip` back; addresses outside the range are ignored.
    pub fn release(&mut self, ip: Ipv4Addr) {
        if let Some(offset) = self.offset(ip) {
            self.bits.release(offset);
        }
    }
}

/// Size of the lower band kept for requested IPs: `min(max(16, size/16), 256)`,
/// none for ranges of 16 addresses or fewer (upstream `calculateRangeOffset`).
fn static_band(len: u32) -> u32 {
    if len <= 16 {
        0
    } else {
        (len / 16).clamp(16, 256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> ServiceCidr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn cidr_should_parse_clear_host_bits_and_print_like_go() {
        assert_eq!(cidr("10.96.0.0/12"), ServiceCidr::default());
        assert_eq!(ServiceCidr::default().to_string(), "10.96.0.0/12");
        assert_eq!(cidr("10.100.1.2/12").to_string(), "10.96.0.0/12");
        assert_eq!(
            "10.96.0.0".parse::<ServiceCidr>(),
            Err(CidrError::Syntax("10.96.0.0".into()))
        );
        assert!("fd00::/108".parse::<ServiceCidr>().is_err());
        assert_eq!(
            "10.0.0.0/8"
                .parse::<ServiceCidr>()
                .map_err(|e| e.to_string()),
            Err("\"10.0.0.0/8\": the prefix length must be between /12 and /30, got /8".into())
        );
    }

    #[test]
    fn allocator_should_hand_out_the_upper_band_and_keep_the_first_ip_for_requests() {
        let mut a = IpAllocator::new(cidr("10.96.0.0/12"));
        assert_eq!(a.first(), ip("10.96.0.1"));
        assert_eq!(a.allocate_next(), Ok(ip("10.96.1.1")));
        assert_eq!(a.allocate_next(), Ok(ip("10.96.1.2")));
        assert_eq!(a.allocate(ip("10.96.0.1")), Ok(()));
        assert_eq!(a.allocate(ip("10.96.0.10")), Ok(()));
        assert_eq!(a.used(), 4);
    }

    #[test]
    fn allocator_should_refuse_taken_and_out_of_range_ips_with_upstream_messages() {
        let mut a = IpAllocator::new(cidr("10.96.0.0/12"));
        assert_eq!(a.allocate(ip("10.96.0.10")), Ok(()));
        assert_eq!(
            a.allocate(ip("10.96.0.10")).map_err(|e| e.to_string()),
            Err("provided IP is already allocated".into())
        );
        for outside in ["10.112.0.1", "10.95.255.255", "10.96.0.0", "10.111.255.255"] {
            assert_eq!(
                a.allocate(ip(outside)).map_err(|e| e.to_string()),
                Err(format!("the provided IP ({outside}) is not in the valid range. The range of valid IPs is 10.96.0.0/12")),
            );
        }
    }

    #[test]
    fn a_tiny_range_should_fill_up_and_take_released_ips_again() {
        let mut a = IpAllocator::new(cidr("10.96.0.0/29"));
        let got: Vec<Ipv4Addr> = (0..6).filter_map(|_| a.allocate_next().ok()).collect();
        assert_eq!(got.len(), 6);
        assert_eq!(got[0], ip("10.96.0.1"));
        assert_eq!(got[5], ip("10.96.0.6"));
        assert_eq!(a.allocate_next(), Err(IpamError::Full));
        a.release(ip("10.96.0.3"));
        a.release(ip("192.168.0.1"));
        assert_eq!(a.allocate_next(), Ok(ip("10.96.0.3")));
    }
}
