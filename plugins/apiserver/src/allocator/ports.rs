//! NodePort allocation from `service_node_port_range`, as kube-apiserver's `portallocator`.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use super::bitmap::Bitmap;

/// A `service_node_port_range` that does not parse; fixing the config is the only remedy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a port range such as 30000-32767 (two ports from 1 to 65535, the first not above the second)")]
pub struct PortRangeError(String);

/// An inclusive range of node ports, e.g. `30000-32767`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PortRange {
    base: u16,
    max: u16,
}

impl Default for PortRange {
    /// `30000-32767`, kube-apiserver's default.
    fn default() -> PortRange {
        PortRange {
            base: 30000,
            max: 32767,
        }
    }
}

impl FromStr for PortRange {
    type Err = PortRangeError;

    fn from_str(s: &str) -> Result<PortRange, PortRangeError> {
        let bad = || PortRangeError(s.to_string());
        let (base, max) = s.trim().split_once('-').ok_or_else(bad)?;
        let base: u16 = base.trim().parse().map_err(|_| bad())?;
        let max: u16 = max.trim().parse().map_err(|_| bad())?;
        if base == 0 || max < base {
            return Err(bad());
        }
        Ok(PortRange { base, max })
    }
}

impl TryFrom<String> for PortRange {
    type Error = PortRangeError;

    fn try_from(s: String) -> Result<PortRange, PortRangeError> {
        s.parse()
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.base, self.max)
    }
}

/// Why a node port could not be allocated. The texts are kube-apiserver's, which clients match on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The requested port is outside the node port range.
    #[error("provided port is not in the valid range. The range of valid ports is {range}")]
    NotInRange {
        /// The node port range.
        range: PortRange,
    },
    /// The requested port belongs to another Service.
    #[error("provided port is already allocated")]
    Allocated,
    /// Every port of the range is taken; deleting a NodePort Service frees some.
    #[error("range is full")]
    Full,
}

/// The ports of the node port range and which of them Services hold.
#[derive(Debug, Clone)]
pub struct PortAllocator {
    range: PortRange,
    bits: Bitmap,
}

impl PortAllocator {
    /// An allocator over `range` with nothing taken.
    pub fn new(range: PortRange) -> PortAllocator {
        let size = u32::from(range.max - range.base) + 1;
        PortAllocator {
            range,
            bits: Bitmap::new(size, static_band(size)),
        }
    }

    /// Number of ports held.
    pub fn used(&self) -> u32 {
        self.bits.used()
    }

    fn offset(&self, port: i64) -> Option<u32> {
        (i64::from(self.range.base)..=i64::from(self.range.max))
            .contains(&port)
            .then(|| (port - i64::from(self.range.base)) as u32)
    }

    /// Takes `port`, asked for by a Service (any integer: out-of-range values are refused).
    pub fn allocate(&mut self, port: i64) -> Result<u16, PortError> {
        let offset = self
            .offset(port)
            .ok_or(PortError::NotInRange { range: self.range })?;
        if self.bits.take(offset) {
            Ok(self.range.base + offset as u16)
        } else {
            Err(PortError::Allocated)
        }
    }

    /// Takes a free port, from the upper band first.
    pub fn allocate_next(&mut self) -> Result<u16, PortError> {
        let offset = self.bits.take_next().ok_or(PortError::Full)?;
        Ok(self.range.base + offset as u16)
    }

    /// Gives `port` back; ports outside the range are ignored.
    pub fn release(&mut self, port: u16) {
        if let Some(offset) = self.offset(i64::from(port)) {
            self.bits.release(offset);
        }
    }
}

/// Size of the lower band kept for requested ports: `min(max(16, size/32), 128)`,
/// none for ranges of 16 ports or fewer (upstream `calculateRangeOffset`).
fn static_band(size: u32) -> u32 {
    if size <= 16 {
        0
    } else {
        (size / 32).clamp(16, 128)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> PortRange {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn port_range_should_parse_and_print_like_upstream() {
        assert_eq!(range("30000-32767"), PortRange::default());
        assert_eq!(PortRange::default().to_string(), "30000-32767");
        for bad in ["30000", "32767-30000", "0-10", "1-70000", "a-b"] {
            assert_eq!(
                bad.parse::<PortRange>(),
                Err(PortRangeError(bad.to_string()))
            );
        }
    }

    #[test]
    fn allocator_should_refuse_taken_and_out_of_range_ports_with_upstream_messages() {
        let mut a = PortAllocator::new(range("30000-32767"));
        assert_eq!(a.allocate(30080), Ok(30080));
        assert_eq!(
            a.allocate(30080).map_err(|e| e.to_string()),
            Err("provided port is already allocated".into())
        );
        for outside in [29999, 32768, 80, -1, 100_000] {
            assert_eq!(
                a.allocate(outside).map_err(|e| e.to_string()),
                Err("provided port is not in the valid range. The range of valid ports is 30000-32767".into())
            );
        }
        a.release(30080);
        assert_eq!(a.used(), 0);
    }

    #[test]
    fn allocator_should_hand_out_the_upper_band_first_and_fill_up() {
        let mut a = PortAllocator::new(range("30000-32767"));
        assert_eq!(a.allocate_next(), Ok(30086));
        let mut small = PortAllocator::new(range("30000-30002"));
        let got: Vec<u16> = (0..3).filter_map(|_| small.allocate_next().ok()).collect();
        assert_eq!(got, vec![30000, 30001, 30002]);
        assert_eq!(small.allocate_next(), Err(PortError::Full));
        small.release(30001);
        assert_eq!(small.allocate_next(), Ok(30001));
    }
}
