//! IPv4 CIDR ranges: parsing, the N-th subnet of a range and the N-th address of a subnet.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// A CIDR text that does not parse. Retrying does not help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an IPv4 CIDR like 10.128.0.0/10: {reason}")]
pub struct CidrError {
    /// The text given.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// An IPv4 network: a base address (host bits zero) and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    base: u32,
    prefix: u8,
}

impl Ipv4Cidr {
    /// The network of `octets` with `prefix` bits (host bits are cleared; prefix capped at 32).
    pub const fn literal(octets: [u8; 4], prefix: u8) -> Ipv4Cidr {
        let prefix = if prefix > 32 { 32 } else { prefix };
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix as u32)
        };
        Ipv4Cidr {
            base: u32::from_be_bytes(octets) & mask,
            prefix,
        }
    }

    /// The network's first address.
    pub fn base(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    /// The prefix length (`/24` -> 24).
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// How many addresses the network spans (2^(32-prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// How many `/prefix` subnets the network holds; 0 when `prefix` is shorter than its own.
    pub fn subnet_count(&self, prefix: u8) -> u64 {
        if prefix < self.prefix || prefix > 32 {
            return 0;
        }
        1u64 << (prefix - self.prefix)
    }

    /// The `index`-th `/prefix` subnet, or `None` past the end.
    pub fn subnet(&self, prefix: u8, index: u64) -> Option<Ipv4Cidr> {
        if index >= self.subnet_count(prefix) {
            return None;
        }
        let step = 1u64 << (32 - u32::from(prefix));
        let base = u64::from(self.base) + index * step;
        Some(Ipv4Cidr {
            base: u32::try_from(base).ok()?,
            prefix,
        })
    }

    /// The address `offset` places after the base, or `None` outside the network.
    pub fn host(&self, offset: u64) -> Option<Ipv4Addr> {
        if offset >= self.size() {
            return None;
        }
        u32::try_from(u64::from(self.base) + offset)
            .ok()
            .map(Ipv4Addr::from)
    }

    /// Offset of `addr` from the base, or `None` when `addr` is outside the network.
    pub fn offset_of(&self, addr: Ipv4Addr) -> Option<u64> {
        let a = u32::from(addr);
        (a >= self.base && u64::from(a - self.base) < self.size()).then(|| u64::from(a - self.base))
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let err = |reason| CidrError {
            text: text.to_string(),
            reason,
        };
        let (addr, prefix) = text.split_once('/').ok_or_else(|| err("no /prefix"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err("bad address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| err("bad prefix length"))?;
        if prefix > 32 {
            return Err(err("prefix length over 32"));
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        let base = u32::from(addr);
        if base & !mask != 0 {
            return Err(err("host bits set"));
        }
        Ok(Ipv4Cidr { base, prefix })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base(), self.prefix)
    }
}

impl<'de> serde::Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().expect("valid cidr")
    }

    #[test]
    fn subnet_should_step_by_the_subnet_size() {
        let net = cidr("10.128.0.0/10");
        assert_eq!(net.subnet_count(24), 16384);
        assert_eq!(
            net.subnet(24, 0).map(|s| s.to_string()),
            Some("10.128.0.0/24".into())
        );
        assert_eq!(
            net.subnet(24, 300).map(|s| s.to_string()),
            Some("10.129.44.0/24".into())
        );
        assert_eq!(net.subnet(24, 16384), None);
    }

    #[test]
    fn host_should_stay_inside_the_network() {
        let net = cidr("10.244.3.0/24");
        assert_eq!(net.host(5), Some(Ipv4Addr::new(10, 244, 3, 5)));
        assert_eq!(net.host(256), None);
        assert_eq!(net.offset_of(Ipv4Addr::new(10, 244, 3, 9)), Some(9));
        assert_eq!(net.offset_of(Ipv4Addr::new(10, 244, 4, 9)), None);
    }

    #[test]
    fn parse_should_name_what_is_wrong() {
        let err = "10.0.0.1/24".parse::<Ipv4Cidr>().expect_err("host bits");
        assert!(err.to_string().contains("10.0.0.1/24"), "{err}");
        assert!(err.to_string().contains("host bits"), "{err}");
        assert!("10.0.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert_eq!(cidr("0.0.0.0/0").size(), 1 << 32);
    }
}
