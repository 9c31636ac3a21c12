//! `[sip].trusted_peers` (DESIGN §2 step 1): CIDR ranges, IPv4 and IPv6. An IPv4-mapped IPv6
//! source (`::ffff:10.0.0.1`, from a dual-stack socket) is matched as the IPv4 address.

use std::net::IpAddr;
use std::str::FromStr;

/// One range: a network address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    /// `10.0.0.0/8`, `::1/128`, or a single address (`192.0.2.7`: `/32` or `/128`).
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("not an IP address: {addr:?}"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("prefix length must be 0..={max}"))?,
        };
        Ok(Cidr { net, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(
                u128::from(u32::from(n)),
                u128::from(u32::from(a)),
                32,
                self.prefix,
            ),
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                prefix_eq(u128::from(n), u128::from(a), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the top `prefix` bits of two `bits`-wide numbers agree.
fn prefix_eq(a: u128, b: u128, bits: u32, prefix: u8) -> bool {
    let shift = bits - u32::from(prefix);
    shift >= bits || (a >> shift) == (b >> shift)
}

/// Whether any range holds `ip`.
pub fn trusted(ranges: &[Cidr], ip: IpAddr) -> bool {
    ranges.iter().any(|c| c.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges() {
        let r: Vec<Cidr> = ["127.0.0.0/8", "::1/128", "10.255.255.0/24", "192.0.2.7"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert!(trusted(&r, ip("127.1.2.3")));
        assert!(trusted(&r, ip("::1")));
        assert!(trusted(&r, ip("::ffff:10.255.255.9")));
        assert!(trusted(&r, ip("192.0.2.7")));
        assert!(!trusted(&r, ip("192.0.2.8")));
        assert!(!trusted(&r, ip("10.255.254.1")));
        assert!(!trusted(&r, ip("::2")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("2001:db8::1")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("host/8".parse::<Cidr>().is_err());
    }
}
